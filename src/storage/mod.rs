//! Where the log and the hard state live between runs. The runtime writes
//! each Ready's entries and hard state here and syncs once per loop turn.
//!
//! `disk` is the durable engine (layout and rules in docs/STORAGE.md):
//! `segment` holds the log record format, `hard_state` the two-slot hard-state
//! file, `snapshot` the snapshot file's format and loader, `snapshot_writer`
//! how one is written or received. `memory` keeps nothing and serves tests
//! and experiments.

pub mod disk;
pub mod hard_state;
pub mod memory;
pub mod remover;
pub mod segment;
pub mod snapshot;
pub mod snapshot_recovery;
pub mod snapshot_writer;

#[cfg(test)]
mod disk_tests;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod test_support;

use crate::core::{Entry, HardState, InstallSnapshot, LogIndex, SnapshotMeta};
use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use disk::{DiskOptions, DiskStorage, RecoveryReport, TornTail};
pub use hard_state::NodeName;
pub use memory::MemoryStorage;
pub use segment::TornReason;
pub use snapshot::{LoadedSnapshot, SnapshotFile};
pub use snapshot_recovery::RejectedSnapshot;
pub use snapshot_writer::{ChunkReceiver, FinishedSnapshot, SnapshotWriter};

/// What a node starts from: the newest usable snapshot, then the log after
/// it.
#[derive(Debug, Default)]
pub struct Recovered {
    pub hard_state: HardState,
    /// The state machine starts from its body; the core's log from its
    /// index and term.
    pub snapshot: Option<LoadedSnapshot>,
    /// The entries after the snapshot (from index 1 without one),
    /// consecutive: what the core's log starts with.
    pub entries: Vec<Entry>,
}

/// Counters for STATUS. `fsyncs / synced_entries` is the group-commit ratio.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// `sync()` calls and finished `SyncJob`s that made something durable
    /// with fdatasync.
    pub fsyncs: u64,
    /// Entries made durable by those calls.
    pub synced_entries: u64,
}

/// Errors a caller can act on: `Locked` and `Corrupt` stop a start (exit 1
/// with the message), everything at run time stops the node.
#[derive(Debug)]
pub enum StorageError {
    /// Another process holds the data dir's lock file.
    Locked {
        path: PathBuf,
    },
    /// The data dir was created for another node id.
    WrongNode {
        path: PathBuf,
        stored: String,
        given: String,
    },
    /// Damage recovery will not repair, or an impossible record. Nothing on
    /// disk was changed. `problem` is one line.
    Corrupt {
        path: PathBuf,
        offset: u64,
        problem: String,
    },
    Io {
        path: PathBuf,
        operation: &'static str,
        error: io::Error,
    },
    /// An entry whose payload does not fit a log record (it can only come
    /// from a peer: the leader bounds commands long before this).
    EntryTooLarge {
        index: LogIndex,
        size: usize,
        size_max: usize,
    },
    /// An earlier write or sync failed. After a failed fdatasync the kernel
    /// may have dropped the dirty pages, so retrying could report success
    /// for data that never reached the disk: the node must restart.
    Halted,
    InvalidOptions {
        problem: String,
    },
    /// A file compaction or retention dropped could not be removed (on the
    /// remover's thread); the node stops, as it would have inline.
    RemovalFailed {
        problem: String,
    },
    /// A snapshot chunk from the network that cannot be stored as sent
    /// (out of order, too large). Nothing was written: the caller closes
    /// that connection and carries on.
    BadChunk {
        path: PathBuf,
        problem: String,
    },
    /// A snapshot body larger than a snapshot file may be.
    SnapshotTooLarge {
        size: u64,
        size_max: u64,
    },
    /// The leader asked for chunks of a snapshot this storage does not
    /// hold.
    NoSnapshot {
        index: LogIndex,
    },
}

impl StorageError {
    pub fn corrupt(path: &Path, offset: u64, problem: String) -> StorageError {
        assert!(!problem.contains('\n'), "a corruption message is one line");
        StorageError::Corrupt {
            path: path.to_path_buf(),
            offset,
            problem,
        }
    }

    /// For `map_err`: wraps an io::Error with the file and what was tried.
    pub fn io(path: &Path, operation: &'static str) -> impl FnOnce(io::Error) -> StorageError {
        let path = path.to_path_buf();
        move |error| StorageError::Io {
            path,
            operation,
            error,
        }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Locked { path } => write!(
                f,
                "data dir is locked by another process: {} is held \
                 (check raftlite.pid; two processes on one data dir would corrupt it)",
                path.display()
            ),
            StorageError::Corrupt {
                path,
                offset,
                problem,
            } => {
                let what = if path.file_name() == Some(OsStr::new(hard_state::HARD_STATE_FILE_NAME))
                {
                    "hard state"
                } else if snapshot::is_snapshot_file(path) {
                    "snapshot"
                } else {
                    "log"
                };
                write!(
                    f,
                    "corrupt {what}: {} at byte {offset}: {problem}; see docs/OPERATIONS.md",
                    path.display()
                )
            }
            StorageError::WrongNode {
                path,
                stored,
                given,
            } => write!(
                f,
                "data dir {} belongs to node {stored}, not {given}: a node started on another \
                 node's data would vote and acknowledge with its term, vote and log \
                 (start it as --id {stored}, or give {given} its own data dir)",
                path.display()
            ),
            StorageError::Io {
                path,
                operation,
                error,
            } => write!(f, "cannot {operation} {}: {error}", path.display()),
            StorageError::EntryTooLarge {
                index,
                size,
                size_max,
            } => write!(
                f,
                "entry {index} carries {size} bytes, more than a log record holds ({size_max})"
            ),
            StorageError::Halted => write!(
                f,
                "storage stopped after an earlier write or sync error; restart the node"
            ),
            StorageError::InvalidOptions { problem } => {
                write!(f, "invalid storage options: {problem}")
            }
            StorageError::RemovalFailed { problem } => {
                write!(
                    f,
                    "removing a file the log no longer needs failed: {problem}"
                )
            }
            StorageError::BadChunk { path, problem } => {
                write!(
                    f,
                    "snapshot chunk refused for {}: {problem}",
                    path.display()
                )
            }
            StorageError::SnapshotTooLarge { size, size_max } => write!(
                f,
                "snapshot of {size} bytes is larger than a snapshot file may be ({size_max})"
            ),
            StorageError::NoSnapshot { index } => {
                write!(f, "no snapshot file at index {index} in this storage")
            }
        }
    }
}

impl std::error::Error for StorageError {}

/// The fdatasync that makes written records durable, handed to another
/// thread so the event loop need not wait for it. Also what a finished
/// snapshot file owes before its rename (`SnapshotWriter::finish`, with
/// `entries` 0): such a job syncs another file, so it must not be merged
/// with the log's (`merge_jobs` keeps only the newer file).
#[derive(Debug)]
pub struct SyncJob {
    /// The newest segment's file (or the snapshot's), shared with the
    /// storage.
    pub file: std::sync::Arc<std::fs::File>,
    pub path: PathBuf,
    /// Entries written since the previous sync, for the counters.
    pub entries: u64,
}

impl SyncJob {
    pub fn run(&self) -> Result<(), StorageError> {
        self.file
            .sync_data()
            .map_err(StorageError::io(&self.path, "fdatasync"))
    }
}

pub trait Storage {
    /// A deferred fdatasync (`write_deferring_sync`), run elsewhere.
    type Job;
    /// Appends `entries` (consecutive). If the first index is at or below the
    /// stored last index, the stored suffix from there is replaced.
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError>;
    fn set_hard_state(&mut self, hard_state: HardState) -> Result<(), StorageError>;
    /// Makes everything written so far durable.
    fn sync(&mut self) -> Result<(), StorageError>;
    /// Like `sync`, but may stop after writing the records and return the
    /// fdatasync still owed, for the caller to run (once, to completion,
    /// then report with `deferred_sync_done`) before it treats them as
    /// durable. None: everything is durable already.
    fn write_deferring_sync(&mut self) -> Result<Option<Self::Job>, StorageError> {
        self.sync()?;
        Ok(None)
    }
    /// A job from `write_deferring_sync` finished without error.
    fn deferred_sync_done(&mut self, _job: &Self::Job) {}
    /// One job that does what `older` and then `newer` would: the caller
    /// runs one job at a time, and a newer one covers everything written.
    fn merge_jobs(older: Self::Job, newer: Self::Job) -> Self::Job;
    /// Counters for STATUS; storage that never syncs reports zeros.
    fn stats(&self) -> StorageStats {
        StorageStats::default()
    }
    /// Drops stored entries at or below `upto`, which a durable snapshot
    /// covers, as far as the storage can do so in whole units (segments);
    /// returns how many units it removed. The default keeps no log of its
    /// own (the core holds it), so there is nothing to remove: 0.
    fn compact(&mut self, _upto: LogIndex) -> Result<usize, StorageError> {
        Ok(0)
    }
    /// A follower installed the snapshot `meta` (already durable) and
    /// discarded its log: afterwards the log is empty and the next append
    /// is `meta.index + 1`. The default keeps no log of its own: nothing
    /// to discard.
    fn reset_to_snapshot(&mut self, _meta: &SnapshotMeta) -> Result<(), StorageError> {
        Ok(())
    }
    // Snapshot files (docs/STORAGE.md, "Snapshot file"). A node writes at
    // most one snapshot of its own and receives at most one at a time.

    /// Starts the file of a snapshot this node takes of its state machine
    /// up to `meta.index`, abandoning one still being written.
    fn snapshot_begin(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError>;
    /// Appends state-machine bytes to the file `snapshot_begin` started.
    fn snapshot_append(&mut self, bytes: &[u8]) -> Result<(), StorageError>;
    /// A sync of the snapshot file as written so far, to run on the
    /// executor now and then while it is written (None: nothing to sync,
    /// or storage that needs none). The default has none.
    fn snapshot_flush(&mut self) -> Option<Self::Job> {
        None
    }
    /// Ends the file; returns the fdatasync it still owes (None: none), to
    /// run on the sync executor, apart from the log's jobs (never merged
    /// with them), before `snapshot_commit`.
    fn snapshot_finish(&mut self) -> Result<Option<Self::Job>, StorageError>;
    /// `synced` (the job `snapshot_finish` returned) has run: the file
    /// takes its final name and is durable, and retention removes what it
    /// no longer keeps. Returns the file's size in bytes.
    fn snapshot_commit(&mut self, synced: Option<Self::Job>) -> Result<u64, StorageError>;
    /// Gives up the snapshot being written, if there is one.
    fn snapshot_abandon(&mut self) -> Result<(), StorageError>;
    /// Stores a chunk of the leader's snapshot file, in order: one at
    /// offset 0 starts a new file (abandoning any other being received).
    fn receive_chunk(&mut self, chunk: &InstallSnapshot) -> Result<(), StorageError>;
    /// A sync of the snapshot file received so far, to run on the executor
    /// now and then while chunks arrive, so that `receive_finish`'s own
    /// fdatasync, on the loop, has little left to write. The default has
    /// none.
    fn receive_flush(&mut self) -> Option<Self::Job> {
        None
    }
    /// The last chunk is stored: the file is synced, checked whole
    /// (structure, CRC, the meta the chunks announced) and
    /// installed under its final name. (The state machine was restored
    /// from the chunks as they came: `snapshot::BodyFinder`.) A file that
    /// fails is removed and the error is `Corrupt`; the node goes on
    /// without it.
    fn receive_finish(&mut self) -> Result<SnapshotFile, StorageError>;
    /// Gives up the snapshot being received (its body failed to restore):
    /// its file goes, and nothing else changes.
    fn receive_abandon(&mut self) -> Result<(), StorageError>;
    /// Up to `size` bytes of the durable snapshot file at `index` from
    /// `offset` (fewer only at its end), for the leader's InstallSnapshot
    /// chunks. The default holds no snapshot files: `NoSnapshot`.
    fn snapshot_chunk(
        &mut self,
        index: LogIndex,
        _offset: u64,
        _size: usize,
    ) -> Result<Vec<u8>, StorageError> {
        Err(StorageError::NoSnapshot { index })
    }
}
