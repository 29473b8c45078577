//! The simulated IO under the driver (src/driver.rs), the one the daemon
//! runs: a node's disk, its outgoing messages and its disk-sync thread.
//!
//! Time is what makes them differ from the daemon's: an fsync on the spot
//! takes a drawn while, and the node is blocked in it (as the daemon's loop
//! is): everything the driver sends after it leaves only when it completes,
//! and what arrives meanwhile waits. `busy_until` is that time; the node
//! and its messages carry it. A deferred fsync runs on the node's "sync
//! thread": one at a time, in order, each done after a drawn while, without
//! blocking the node; a crash before it completes loses what it covers.

use super::disk::{Disk, Op};
use super::snapshot_files::SimSnapshotFile;
use raftlite::core::rng::Rng;
use raftlite::core::{
    Entry, HardState, InstallSnapshot, LogIndex, Message, MessageBody, SnapshotMeta, SnapshotStatus,
};
use raftlite::driver::{DriveError, SyncExecutor, Transport};
use raftlite::storage::snapshot::{file_name, receiving_file_name, SNAPSHOT_CHUNK_SIZE_MAX};
use raftlite::storage::{SnapshotFile, Storage, StorageError};
use std::cell::Cell;
use std::collections::VecDeque;
use std::path::PathBuf;

/// How long one fsync takes on a node's disk now.
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    pub normal_ms_max: u64,
    pub slow_ms_max: u64,
    /// The disk is slow now (a slow-disk fault, or worse hardware).
    pub slow: bool,
    /// Chance that one sync stalls up to `slow_ms_max`.
    pub stall_per_mille: u64,
}

impl Latency {
    pub fn draw(&self, rng: &mut Rng) -> u64 {
        let stall = rng.chance(self.stall_per_mille, 1000);
        if self.slow || stall {
            return rng.range_inclusive(self.normal_ms_max, self.slow_ms_max);
        }
        rng.range_inclusive(0, self.normal_ms_max)
    }
}

/// A deferred fsync, of one of two kinds that must never be merged: the
/// log's covers the disk's writes up to `sequence`; a snapshot's covers
/// the finished file of the snapshot at `index`, another file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimJob {
    Log { sequence: u64 },
    Snapshot { index: LogIndex },
}

/// What the storage did with snapshots in one call, for the checkers, the
/// trace and the counters.
#[derive(Clone, Debug)]
pub enum SnapshotWrite {
    Begun {
        index: LogIndex,
    },
    /// This node's snapshot took its name, durable at `durable_at_ms`.
    Committed {
        file: SimSnapshotFile,
    },
    /// A leader's snapshot, checked and installed under its name.
    Received {
        file: SimSnapshotFile,
    },
    /// A received file failed its check and was removed.
    Refused {
        index: LogIndex,
        problem: String,
    },
    Compacted {
        upto: LogIndex,
    },
    Reset {
        index: LogIndex,
    },
}

/// The node's disk as the driver's storage.
pub struct SimStorage<'a> {
    pub disk: &'a mut Disk,
    /// When the node's loop is free again (it waits in its fsyncs).
    pub busy_until: &'a Cell<u64>,
    pub latency: Latency,
    pub rng: &'a mut Rng,
    /// This Ready's records, written by `sync` or `write_deferring_sync`.
    hard_state: Option<HardState>,
    entries: Vec<Entry>,
    /// This call's writes, for the trace.
    pub writes: Vec<TracedWrite>,
    /// This call's snapshot steps.
    pub snapshot_writes: Vec<SnapshotWrite>,
}

/// One write to the disk as the trace shows it.
#[derive(Clone, Copy, Debug)]
pub struct TracedWrite {
    pub hard_state: Option<HardState>,
    /// First and last index of the entries written.
    pub entries: Option<(u64, u64)>,
    /// When its fsync completes; None while the sync is deferred.
    pub durable_at_ms: Option<u64>,
}

impl<'a> SimStorage<'a> {
    pub fn new(
        disk: &'a mut Disk,
        busy_until: &'a Cell<u64>,
        latency: Latency,
        rng: &'a mut Rng,
    ) -> SimStorage<'a> {
        SimStorage {
            disk,
            busy_until,
            latency,
            rng,
            hard_state: None,
            entries: Vec::new(),
            writes: Vec::new(),
            snapshot_writes: Vec::new(),
        }
    }

    /// The node waits in one more fsync (a rename's directory sync, a
    /// received file's fdatasync): returns when it completes.
    fn wait_in_fsync(&mut self, after_ms: u64) -> u64 {
        let start = self.busy_until.get().max(after_ms);
        let at_ms = start + self.latency.draw(self.rng);
        self.busy_until.set(at_ms);
        at_ms
    }

    /// Puts this Ready's records on the disk; returns the write's sequence.
    fn write(&mut self) -> u64 {
        if self.hard_state.is_none() && self.entries.is_empty() {
            return self.disk.sequence_last();
        }
        let entries = std::mem::take(&mut self.entries);
        let range = entries.first().zip(entries.last());
        let range = range.map(|(first, last)| (first.index.0, last.index.0));
        let hard_state = self.hard_state.take();
        self.writes.push(TracedWrite {
            hard_state,
            entries: range,
            durable_at_ms: None,
        });
        self.disk.write(hard_state, entries)
    }
}

impl Storage for SimStorage<'_> {
    type Job = SimJob;

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.entries.extend_from_slice(entries);
        Ok(())
    }

    fn set_hard_state(&mut self, hard_state: HardState) -> Result<(), StorageError> {
        self.hard_state = Some(hard_state);
        Ok(())
    }

    /// The node waits: it is busy until the fsync completes, which covers
    /// everything written before it.
    fn sync(&mut self) -> Result<(), StorageError> {
        let sequence = self.write();
        let start = self.busy_until.get().max(self.disk.durable_at_last_ms());
        let at_ms = start + self.latency.draw(self.rng);
        self.disk.sync_through(sequence, at_ms);
        self.busy_until.set(at_ms);
        if let Some(write) = self.writes.last_mut() {
            write.durable_at_ms = Some(at_ms);
        }
        Ok(())
    }

    fn write_deferring_sync(&mut self) -> Result<Option<SimJob>, StorageError> {
        let sequence = self.write();
        Ok(Some(SimJob::Log { sequence }))
    }

    /// Only log jobs merge: a snapshot's fsync syncs another file, and a
    /// driver that merged it away would commit a file never synced.
    fn merge_jobs(older: SimJob, newer: SimJob) -> SimJob {
        match (older, newer) {
            (SimJob::Log { .. }, SimJob::Log { .. }) => newer,
            _ => panic!(
                "the driver merged a snapshot's fsync with another job: {older:?}, {newer:?}"
            ),
        }
    }

    fn snapshot_begin(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        self.disk.snapshots.begin(meta);
        let index = meta.index;
        self.snapshot_writes.push(SnapshotWrite::Begun { index });
        Ok(())
    }

    fn snapshot_append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.disk.snapshots.append(bytes);
        Ok(())
    }

    fn snapshot_finish(&mut self) -> Result<Option<SimJob>, StorageError> {
        let index = self.disk.snapshots.finish();
        Ok(Some(SimJob::Snapshot { index }))
    }

    /// The rename and the directory's fsync: the node waits in it, and the
    /// file is durable when it completes.
    fn snapshot_commit(&mut self, synced: Option<SimJob>) -> Result<u64, StorageError> {
        let Some(SimJob::Snapshot { index }) = synced else {
            panic!("a snapshot committed without its own fsync: {synced:?}");
        };
        assert!(
            self.disk.snapshots.is_finished(index),
            "no snapshot {index} finished"
        );
        let durable_at_ms = self.wait_in_fsync(0);
        let file = self.disk.snapshots.commit(index, durable_at_ms);
        let size = file.size_bytes();
        self.snapshot_writes.push(SnapshotWrite::Committed { file });
        Ok(size)
    }

    fn snapshot_abandon(&mut self) -> Result<(), StorageError> {
        self.disk.snapshots.abandon();
        Ok(())
    }

    fn receive_chunk(&mut self, chunk: &InstallSnapshot) -> Result<(), StorageError> {
        self.disk.snapshots.receive(chunk).map_err(|stored| {
            let index = chunk.meta.index;
            StorageError::BadChunk {
                path: PathBuf::from(receiving_file_name(index)),
                problem: format!("chunk at byte {}, {stored} bytes stored", chunk.offset),
            }
        })
    }

    fn receive_abandon(&mut self) -> Result<(), StorageError> {
        self.disk.snapshots.abandon_receive();
        Ok(())
    }

    /// The fdatasync, rename and directory sync on the spot: the node waits
    /// in them, and the file is durable when they complete.
    fn receive_finish(&mut self) -> Result<SnapshotFile, StorageError> {
        let receiving = self.disk.snapshots.receiving_index();
        let durable_at_ms = self.wait_in_fsync(0);
        match self.disk.snapshots.receive_finish(durable_at_ms) {
            Ok(file) => {
                let loaded = SnapshotFile {
                    meta: file.meta.clone(),
                    path: PathBuf::from(file_name(file.meta.index)),
                    size_bytes: file.size_bytes(),
                };
                self.snapshot_writes.push(SnapshotWrite::Received { file });
                Ok(loaded)
            }
            Err(refusal) => {
                let index = receiving.expect("a snapshot was received");
                let problem = refusal.problem.clone();
                self.snapshot_writes
                    .push(SnapshotWrite::Refused { index, problem });
                let path = PathBuf::from(receiving_file_name(index));
                Err(StorageError::corrupt(
                    &path,
                    refusal.offset,
                    refusal.problem,
                ))
            }
        }
    }

    fn snapshot_chunk(
        &mut self,
        index: LogIndex,
        offset: u64,
        size: usize,
    ) -> Result<Vec<u8>, StorageError> {
        assert!(size <= SNAPSHOT_CHUNK_SIZE_MAX, "chunk of {size} bytes");
        let file = (self.disk.snapshots.get(index)).ok_or(StorageError::NoSnapshot { index })?;
        let bytes = &file.bytes;
        let start = usize::try_from(offset).map_or(bytes.len(), |start| start.min(bytes.len()));
        let end = start.saturating_add(size).min(bytes.len());
        Ok(bytes[start..end].to_vec())
    }

    /// Compaction deletes whole segments with a directory sync after each;
    /// here it is one step, durable once the node gets there.
    fn compact(&mut self, upto: LogIndex) -> Result<usize, StorageError> {
        let covered = self
            .disk
            .snapshots
            .newest_index()
            .is_some_and(|newest| newest >= upto);
        assert!(
            covered,
            "compacting to {upto} without a snapshot that covers it"
        );
        if upto <= self.disk.base_index() {
            return Ok(0);
        }
        // The node waits in the directory syncs after the deletions.
        let at_ms = self.wait_in_fsync(0);
        self.disk.write_log_op(Op::Compact { upto }, at_ms);
        self.snapshot_writes.push(SnapshotWrite::Compacted { upto });
        Ok(1)
    }

    fn reset_to_snapshot(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        let installed = self.disk.snapshots.get(meta.index);
        assert!(
            installed.is_some_and(|file| file.meta.term == meta.term),
            "reset to snapshot {} that is not installed",
            meta.index
        );
        // The node waits in the directory syncs after the deletions; a
        // crash before they complete leaves the snapshot with the old log,
        // which recovery discards.
        let at_ms = self.wait_in_fsync(0);
        self.disk.write_log_op(Disk::reset_op(meta), at_ms);
        let index = meta.index;
        self.snapshot_writes.push(SnapshotWrite::Reset { index });
        Ok(())
    }
}

/// The node's sync thread: one job at a time, in order.
pub struct SimSyncer<'a> {
    /// Jobs handed over and when each completes, oldest first. Kept by the
    /// node between calls (the thread outlives one loop turn).
    pub queue: &'a mut VecDeque<(SimJob, u64)>,
    pub busy_until: &'a Cell<u64>,
    /// The node's time now.
    pub now_ms: u64,
    pub latency: Latency,
    pub rng: &'a mut Rng,
    /// Jobs handed over in this call: the simulator marks their writes
    /// durable at their time and schedules their completion.
    pub submitted: Vec<(SimJob, u64)>,
}

impl SyncExecutor<SimJob> for SimSyncer<'_> {
    fn submit(&mut self, job: SimJob) -> Result<(), DriveError> {
        let after = self.queue.back().map_or(0, |(_, at)| *at);
        let start = self.busy_until.get().max(self.now_ms).max(after);
        let at_ms = start + self.latency.draw(self.rng);
        self.queue.push_back((job, at_ms));
        self.submitted.push((job, at_ms));
        Ok(())
    }

    fn try_finished(&mut self) -> Option<Result<SimJob, DriveError>> {
        let now_ms = self.busy_until.get().max(self.now_ms);
        if self.queue.front().is_some_and(|(_, at)| *at <= now_ms) {
            return self.queue.pop_front().map(|(job, _)| Ok(job));
        }
        None
    }

    /// The node waits for the job: it is busy until it completes.
    fn wait_finished(&mut self) -> Result<SimJob, DriveError> {
        let Some((job, at_ms)) = self.queue.pop_front() else {
            return Err(DriveError::SyncExecutor("no sync in flight".to_string()));
        };
        self.busy_until.set(self.busy_until.get().max(at_ms));
        Ok(job)
    }
}

/// The node's outgoing messages, each stamped with when it leaves.
pub struct SimTransport<'a> {
    pub busy_until: &'a Cell<u64>,
    pub now_ms: u64,
    pub sent: Vec<(Message, u64)>,
}

impl Transport for SimTransport<'_> {
    fn send(&mut self, message: Message) {
        let leaves_ms = self.busy_until.get().max(self.now_ms);
        self.sent.push((message, leaves_ms));
    }

    fn flush(&mut self) {}
}

/// Whether a message promises the durable state it carries (votes, and
/// answers to AppendEntries but the stale-term one): the simulator's own
/// reading of Raft, independent of where the core puts them.
pub fn promises_durable_state(message: &Message) -> bool {
    match &message.body {
        MessageBody::RequestVote(request) => !request.pre_vote,
        MessageBody::RequestVoteResponse(response) => !response.pre_vote,
        MessageBody::AppendEntriesResponse(response) => {
            response.success || response.conflict_index.0 != 0
        }
        MessageBody::AppendEntries(_) | MessageBody::InstallSnapshot(_) => false,
        MessageBody::TimeoutNow => false,
        // An installed snapshot is durable; a chunk's answer promises nothing.
        MessageBody::InstallSnapshotResponse(response) => {
            matches!(response.status, SnapshotStatus::Installed { .. })
        }
    }
}
