//! The durable storage engine: the hard state in a two-slot file, the log in
//! append-only segment files, an exclusive lock on the data dir. Layout,
//! ordering rules and what recovery repairs or refuses: docs/STORAGE.md.
//!
//! `append` and `set_hard_state` only encode and remember; `sync` writes
//! the hard state and fdatasyncs it, then writes the log records and
//! fdatasyncs them. Deferring the writes to `sync` is what lets it order the
//! two: a record of a new term must never be durable while the hard state on
//! disk still holds an older term, because recovery refuses that log.

use super::hard_state::{
    sync_path, HardStateFile, NodeName, RecoveredHardState, HARD_STATE_FILE_NAME,
};
use super::remover::{self, Remover};
use super::segment::{
    self, HeaderRead, RecordPosition, ScanEnd, ScanStart, TornReason, RECORD_HEADER_SIZE,
    RECORD_PAYLOAD_SIZE_MAX, SEGMENT_FILE_SUFFIX, SEGMENT_HEADER_SIZE,
};
use super::snapshot::{self, SNAPSHOT_CHUNK_SIZE_MAX};
use super::snapshot_recovery::{self, Chosen, LogFate, LogShape, RejectedSnapshot};
use super::snapshot_writer::{ChunkReceiver, FinishedSnapshot, SnapshotWriter};
use super::{Recovered, SnapshotFile, Storage, StorageError, StorageStats, SyncJob};
use crate::core::{
    ClusterId, Entry, HardState, InstallSnapshot, LogIndex, PlantedBug, SnapshotMeta, Term,
};
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const LOCK_FILE_NAME: &str = "LOCK";
pub const LOG_DIRECTORY_NAME: &str = "log";
/// A new segment starts once the next record would push the newest past this.
pub const SEGMENT_SIZE_MAX_DEFAULT: u64 = 64 * 1024 * 1024;
/// Smallest segment bound accepted (tests use small ones to cross segment
/// boundaries often): a header and one empty record.
pub const SEGMENT_SIZE_MAX_MIN: u64 = (SEGMENT_HEADER_SIZE + RECORD_HEADER_SIZE) as u64;
/// Largest segment bound accepted. Recovery reads a whole segment into
/// memory, and refuses any segment file larger than this.
pub const SEGMENT_SIZE_MAX_LIMIT: u64 = 1024 * 1024 * 1024;
/// Segment files recovery accepts in one log directory (64 TiB of default
/// segments; the whole log is held in memory long before that).
pub const SEGMENT_COUNT_MAX: usize = 1 << 20;
/// The newest segment grows by this much (with a hole) whenever a write
/// would pass its end. Writing inside the file's size spares each fdatasync
/// the inode-size update, and on ext4 the journal commit, that growing the
/// file costs (docs/STORAGE.md); a step rather than the whole segment keeps
/// the zeros recovery must read, and check, small.
pub const PREALLOCATION_STEP: u64 = 4 * 1024 * 1024;
/// Bytes of encoded-record buffer kept between syncs; a bigger batch's
/// buffer is released after its write.
const PENDING_SIZE_RETAINED_MAX: usize = 8 * 1024 * 1024;

// A segment holds the records that fit its bound, or one larger record
// alone: either way no bigger than the limit recovery accepts.
const _: () = assert!(
    (SEGMENT_HEADER_SIZE + RECORD_HEADER_SIZE + RECORD_PAYLOAD_SIZE_MAX) as u64
        <= SEGMENT_SIZE_MAX_LIMIT
);
const _: () = assert!(SEGMENT_SIZE_MAX_MIN <= SEGMENT_SIZE_MAX_DEFAULT);
const _: () = assert!(SEGMENT_SIZE_MAX_DEFAULT <= SEGMENT_SIZE_MAX_LIMIT);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskOptions {
    /// false skips every fdatasync and fsync (`--fsync never`): for
    /// experiments only, acknowledged writes can be lost on power loss.
    pub fsync: bool,
    pub segment_size_max: u64,
    /// The node this data dir must belong to: recorded when the dir is
    /// created, and a dir recorded under another id is refused. NONE (tests)
    /// records nothing and checks nothing.
    pub node_name: NodeName,
    /// Test builds only (feature `planted-bugs`): recovery misbehaves in
    /// one known way (`RecoveryKeepsForeignLog`); ignored otherwise.
    pub planted_bug: Option<PlantedBug>,
}

impl Default for DiskOptions {
    fn default() -> DiskOptions {
        DiskOptions {
            fsync: true,
            segment_size_max: SEGMENT_SIZE_MAX_DEFAULT,
            node_name: NodeName::NONE,
            planted_bug: None,
        }
    }
}

impl DiskOptions {
    pub fn validate(&self) -> Result<(), StorageError> {
        let size = self.segment_size_max;
        if !(SEGMENT_SIZE_MAX_MIN..=SEGMENT_SIZE_MAX_LIMIT).contains(&size) {
            return Err(StorageError::InvalidOptions {
                problem: format!(
                    "segment size bound {size} outside {SEGMENT_SIZE_MAX_MIN}..={SEGMENT_SIZE_MAX_LIMIT} bytes"
                ),
            });
        }
        Ok(())
    }
}

/// The end of the newest segment that recovery cut off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub path: PathBuf,
    /// The file was cut to this many bytes (0 when it was removed).
    pub offset: u64,
    /// Bytes of data dropped from the end of the file (the preallocated
    /// zeros after them are not counted).
    pub size_dropped: u64,
    pub reason: TornReason,
    /// The segment header itself was torn, so the whole file was removed.
    pub file_removed: bool,
}

/// What recovery found; the runtime logs it (one line, `Display`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// No hard state and no log: a new node (the hard-state file was created).
    pub fresh: bool,
    /// The snapshot the node starts from; 0 without one.
    pub snapshot_index: LogIndex,
    pub segment_count: usize,
    pub entry_count: usize,
    /// Bytes in the segment files kept.
    pub log_size: u64,
    pub torn_tail: Option<TornTail>,
    /// The hard-state slot that failed its CRC; the other one was used.
    pub hard_state_slot_torn: Option<usize>,
    /// Damaged snapshot files newer than the one used (left in place).
    pub snapshots_rejected: Vec<RejectedSnapshot>,
    /// Unfinished snapshot files (`.tmp`) removed.
    pub temporaries_removed: Vec<PathBuf>,
    /// Why the whole log was dropped: it did not hold the snapshot's last
    /// entry, as after an install a crash interrupted before its reset.
    pub log_discarded: Option<String>,
}

impl RecoveryReport {
    /// Whether recovery repaired or passed over something: worth a warning
    /// rather than the usual info line.
    pub fn needs_attention(&self) -> bool {
        self.torn_tail.is_some()
            || self.hard_state_slot_torn.is_some()
            || !self.snapshots_rejected.is_empty()
            || !self.temporaries_removed.is_empty()
            || self.log_discarded.is_some()
    }
}

impl fmt::Display for TornTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = if self.file_removed { "removed" } else { "cut" };
        write!(
            f,
            "torn tail {action}: {} at byte {}, {} bytes dropped ({})",
            self.path.display(),
            self.offset,
            self.size_dropped,
            self.reason
        )
    }
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "storage recovered{}: ",
            if self.fresh { " (new data dir)" } else { "" }
        )?;
        if self.snapshot_index.0 > 0 {
            write!(f, "snapshot at index {}, then ", self.snapshot_index)?;
        }
        write!(
            f,
            "{} segments, {} entries, {} bytes of log",
            self.segment_count, self.entry_count, self.log_size
        )?;
        if let Some(torn_tail) = &self.torn_tail {
            write!(f, "; {torn_tail}")?;
        }
        if let Some(slot) = self.hard_state_slot_torn {
            write!(
                f,
                "; hard-state slot {slot} was torn, the other slot was used"
            )?;
        }
        for rejected in &self.snapshots_rejected {
            write!(f, "; snapshot rejected, an older one used: {rejected}")?;
        }
        if let Some(reason) = &self.log_discarded {
            write!(f, "; log discarded ({reason}: an install cut short)")?;
        }
        for path in &self.temporaries_removed {
            write!(f, "; unfinished snapshot file removed: {}", path.display())?;
        }
        Ok(())
    }
}

/// One segment file as the engine tracks it.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    first_index: LogIndex,
    /// Invariant: records[i] holds index first_index + i.
    records: Vec<RecordPosition>,
    /// Bytes in the file: the header and every record.
    size: u64,
}

impl Segment {
    /// The index of the next record this segment would take.
    fn index_next(&self) -> LogIndex {
        LogIndex(self.first_index.0 + self.records.len() as u64)
    }

    /// The last index held; first_index - 1 while the segment is empty.
    fn last_index(&self) -> LogIndex {
        LogIndex(self.index_next().0 - 1)
    }
}

/// Records encoded by `append`, written by the next `sync`.
#[derive(Debug, Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Invariant: records[i] holds index first_index + i; offsets are into
    /// `bytes`.
    records: Vec<RecordPosition>,
    first_index: LogIndex,
}

impl Pending {
    fn push(&mut self, entry: &Entry) {
        if self.records.is_empty() {
            self.first_index = entry.index;
        }
        assert_eq!(
            entry.index.0,
            self.first_index.0 + self.records.len() as u64
        );
        self.records.push(RecordPosition {
            offset: self.bytes.len() as u64,
            term: entry.term,
        });
        segment::encode_record(entry, &mut self.bytes);
    }

    fn last_index(&self) -> Option<LogIndex> {
        let count = self.records.len() as u64;
        (count > 0).then(|| LogIndex(self.first_index.0 + count - 1))
    }

    /// Drops the records from `cut` on.
    fn truncate_from(&mut self, cut: LogIndex) {
        assert!(cut >= self.first_index);
        let keep = (cut.0 - self.first_index.0) as usize;
        if let Some(record) = self.records.get(keep) {
            self.bytes.truncate(record.offset as usize);
            self.records.truncate(keep);
        }
    }

    /// Byte range in `bytes` of the `count` records from `position`.
    fn byte_range(&self, position: usize, count: usize) -> (usize, usize) {
        let start = self.records[position].offset as usize;
        let end = self
            .records
            .get(position + count)
            .map_or(self.bytes.len(), |record| record.offset as usize);
        (start, end)
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.records.clear();
        self.bytes.shrink_to(PENDING_SIZE_RETAINED_MAX);
        self.records
            .shrink_to(PENDING_SIZE_RETAINED_MAX / RECORD_HEADER_SIZE);
    }
}

/// Everything recovery read from the log directory, before any repair.
#[derive(Debug)]
struct LogScan {
    segments: Vec<Segment>,
    entries: Vec<Entry>,
    torn_tail: Option<TornTail>,
    /// The oldest segment file and the index its name announces, also when
    /// its header was torn: where the log starts, for the snapshot checks.
    first_named: Option<(LogIndex, PathBuf)>,
}

impl LogScan {
    fn shape(&self) -> LogShape<'_> {
        LogShape {
            first_segment: self
                .first_named
                .as_ref()
                .map(|(index, path)| (*index, path.as_path())),
            index_next: self.segments.last().map(Segment::index_next),
            entries: &self.entries,
        }
    }
}

/// What the read-only phase of recovery found and decided.
struct Findings {
    log: LogScan,
    /// Unfinished snapshot files, removed once every check passed.
    temporaries: Vec<PathBuf>,
    chosen: Chosen,
    fate: LogFate,
    /// None for a new data dir.
    hard_state: Option<RecoveredHardState>,
}

fn inspect_data_directory(
    directory: &Path,
    log_directory: &Path,
    options: DiskOptions,
) -> Result<Findings, StorageError> {
    let log = scan_log(log_directory)?;
    let listing = snapshot::list(directory)?;
    let chosen = snapshot_recovery::choose(&listing, &log.entries)?;
    let meta = chosen.snapshot.as_ref().map(|loaded| &loaded.file.meta);
    let fate = snapshot_recovery::reconcile(meta, &log.shape(), options.planted_bug)?;
    let hard_state_path = directory.join(HARD_STATE_FILE_NAME);
    let hard_state = recover_hard_state(&hard_state_path, &log, meta)?;
    if let Some(recovered) = &hard_state {
        check_owner(directory, recovered.node_name, options.node_name)?;
    }
    Ok(Findings {
        log,
        temporaries: listing.temporaries,
        chosen,
        fate,
        hard_state,
    })
}

/// The entries after `base` (a snapshot covers the rest).
fn entries_after(mut entries: Vec<Entry>, base: LogIndex) -> Vec<Entry> {
    let covered = entries
        .iter()
        .take_while(|entry| entry.index <= base)
        .count();
    entries.drain(..covered);
    entries
}

/// A `.tmp` snapshot file is a write or receive a crash cut short: never
/// valid, so it goes.
fn remove_temporaries(
    paths: &[PathBuf],
    directory: &Path,
    fsync: bool,
) -> Result<(), StorageError> {
    for path in paths {
        fs::remove_file(path).map_err(StorageError::io(path, "remove"))?;
    }
    if fsync && !paths.is_empty() {
        sync_path(directory)?;
    }
    Ok(())
}

#[derive(Debug)]
pub struct DiskStorage {
    options: DiskOptions,
    directory: PathBuf,
    log_directory: PathBuf,
    /// Holds the exclusive lock on `<dir>/LOCK` for the life of the storage.
    _lock_file: File,
    hard_state_file: HardStateFile,
    /// The newest hard state handed in; written by the next sync while
    /// `hard_state_pending`.
    hard_state: HardState,
    hard_state_pending: bool,
    /// The snapshot the log continues (0, 0 without one): with no segments
    /// the next append is `base_index + 1`, and no append goes at or below
    /// it (a snapshot covers only committed entries).
    base_index: LogIndex,
    base_term: Term,
    /// Oldest first, indexes consecutive; the last one is the newest.
    segments: Vec<Segment>,
    /// The newest segment, open for writing. Invariant: Some exactly when
    /// `segments` is not empty.
    /// Shared with a `SyncJob` running elsewhere, so a deferred sync costs
    /// no second descriptor.
    newest_file: Option<Arc<File>>,
    /// The newest segment file's length: its records, then preallocated
    /// zeros.
    newest_file_size: u64,
    pending: Pending,
    stats: StorageStats,
    /// Set by a failed write, truncation or sync: every later call fails.
    halted: bool,
    /// The snapshot file the leader streams chunks from, kept open so that
    /// retention unlinking it mid-send does not cut the send short.
    snapshot_reader: Option<(LogIndex, PathBuf, File)>,
    /// This node's snapshot being written, then waiting for its sync.
    snapshot_writing: Option<SnapshotWriter>,
    snapshot_finished: Option<FinishedSnapshot>,
    /// The leader's snapshot being received.
    receiving: Option<ChunkReceiver>,
    /// Removes what compaction and retention drop, off the event loop.
    remover: Remover,
}

impl DiskStorage {
    /// Locks the data dir, recovers the hard state, the newest usable
    /// snapshot and the log after it. Repairs only what a crash leaves (a
    /// torn tail, unfinished snapshot files, the log of an interrupted
    /// install); refuses (changing nothing on disk) anything else that is
    /// damaged. Creates the dir and an empty hard state if new.
    pub fn open(
        directory: &Path,
        options: DiskOptions,
    ) -> Result<(DiskStorage, Recovered, RecoveryReport), StorageError> {
        options.validate()?;
        fs::create_dir_all(directory).map_err(StorageError::io(directory, "create directory"))?;
        let lock_file = lock_data_directory(directory)?;
        let log_directory = directory.join(LOG_DIRECTORY_NAME);
        create_log_directory(directory, &log_directory, options.fsync)?;
        // Read and check everything before changing anything, so that a
        // refusal leaves every file as it was for the operator to inspect.
        let Findings {
            mut log,
            temporaries,
            chosen,
            fate,
            hard_state,
        } = inspect_data_directory(directory, &log_directory, options)?;
        remove_temporaries(&temporaries, directory, options.fsync)?;
        if let Some(torn_tail) = &log.torn_tail {
            repair_torn_tail(torn_tail, &log_directory, options.fsync)?;
        }
        let fresh = hard_state.is_none();
        let hard_state = match hard_state {
            Some(recovered) => recovered,
            None => RecoveredHardState {
                file: HardStateFile::create(directory, options.node_name, options.fsync)?,
                hard_state: HardState::default(),
                node_name: options.node_name,
                slot_index: 1,
                slot_torn: None,
            },
        };
        let base = chosen
            .snapshot
            .as_ref()
            .map_or((LogIndex(0), Term(0)), |loaded| {
                (loaded.file.meta.index, loaded.file.meta.term)
            });
        let mut entries = entries_after(std::mem::take(&mut log.entries), base.0);
        let slot_torn = hard_state.slot_torn;
        let torn_tail = log.torn_tail.take();
        let mut storage = DiskStorage::new(directory, options, lock_file, hard_state, log, base)?;
        let log_discarded = match fate {
            LogFate::Keep => None,
            LogFate::Discard(reason) => {
                storage.remove_segments_from(LogIndex(1))?;
                storage.newest_file_size = 0;
                entries.clear();
                Some(reason)
            }
        };
        let report = RecoveryReport {
            fresh,
            snapshot_index: base.0,
            segment_count: storage.segments.len(),
            entry_count: entries.len(),
            log_size: storage.segments.iter().map(|segment| segment.size).sum(),
            torn_tail,
            hard_state_slot_torn: slot_torn,
            snapshots_rejected: chosen.rejected,
            temporaries_removed: temporaries,
            log_discarded,
        };
        let recovered = Recovered {
            hard_state: storage.hard_state,
            snapshot: chosen.snapshot,
            entries,
        };
        Ok((storage, recovered, report))
    }

    fn new(
        directory: &Path,
        options: DiskOptions,
        lock_file: File,
        hard_state: RecoveredHardState,
        log: LogScan,
        base: (LogIndex, Term),
    ) -> Result<DiskStorage, StorageError> {
        let newest_file = match log.segments.last() {
            Some(newest) => Some(Arc::new(open_for_writing(&newest.path)?)),
            None => None,
        };
        let newest_file_size = match &newest_file {
            Some(file) => file_size(file, &log.segments[log.segments.len() - 1].path)?,
            None => 0,
        };
        let remover = Remover::start(options.fsync)
            .map_err(StorageError::io(directory, "start the remover thread for"))?;
        let log_directory = directory.join(LOG_DIRECTORY_NAME);
        for place in [directory, log_directory.as_path()] {
            for path in remover::leftover_removals(place)? {
                remover.handle().remove(path, place)?;
            }
        }
        Ok(DiskStorage {
            options,
            directory: directory.to_path_buf(),
            log_directory,
            _lock_file: lock_file,
            hard_state_file: hard_state.file,
            hard_state: hard_state.hard_state,
            hard_state_pending: false,
            base_index: base.0,
            base_term: base.1,
            segments: log.segments,
            newest_file,
            newest_file_size,
            pending: Pending::default(),
            stats: StorageStats::default(),
            halted: false,
            snapshot_reader: None,
            snapshot_writing: None,
            snapshot_finished: None,
            receiving: None,
            remover,
        })
    }

    /// The data dir (snapshot files live here).
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Starts writing a snapshot file in the data dir.
    pub fn snapshot_writer(&self, meta: SnapshotMeta) -> Result<SnapshotWriter, StorageError> {
        self.check_running()?;
        let writer = SnapshotWriter::create(&self.directory, meta, self.options.fsync)?;
        Ok(writer.with_remover(self.remover.handle()))
    }

    /// Starts receiving the leader's snapshot at (index, term).
    pub fn chunk_receiver(&self, meta: SnapshotMeta) -> Result<ChunkReceiver, StorageError> {
        self.check_running()?;
        let receiver = ChunkReceiver::create(&self.directory, meta, self.options.fsync)?;
        Ok(receiver.with_remover(self.remover.handle()))
    }

    /// The first index the log on disk still holds (the base's successor
    /// when it holds none).
    pub fn first_index(&self) -> LogIndex {
        self.segments
            .first()
            .map_or(self.base_index.next(), |segment| segment.first_index)
    }

    /// Index of the last entry handed in (written or pending).
    pub fn last_index(&self) -> LogIndex {
        self.pending
            .last_index()
            .unwrap_or_else(|| self.written_last_index())
    }

    fn written_last_index(&self) -> LogIndex {
        self.segments
            .last()
            .map_or(self.base_index, |segment| segment.last_index())
    }

    fn last_term(&self) -> Term {
        if let Some(record) = self.pending.records.last() {
            return record.term;
        }
        // Only the newest segment can be empty, so at most two are looked at.
        self.segments
            .iter()
            .rev()
            .find_map(|segment| segment.records.last())
            .map_or(self.base_term, |record| record.term)
    }

    fn check_running(&self) -> Result<(), StorageError> {
        if self.halted {
            return Err(StorageError::Halted);
        }
        if let Some(problem) = self.remover.failure() {
            return Err(StorageError::RemovalFailed { problem });
        }
        Ok(())
    }

    /// Waits until the files compaction and retention dropped are removed
    /// (tests; a clean stop waits by dropping the storage).
    pub fn wait_removals(&self) {
        self.remover.wait();
    }

    fn halt_on_error<T>(&mut self, result: Result<T, StorageError>) -> Result<T, StorageError> {
        if result.is_err() {
            self.halted = true;
        }
        result
    }

    /// Removes the entries from `cut` on. On disk (rare: a follower meeting
    /// a new leader's conflicting suffix): whole segments from the newest
    /// backwards, then a cut inside the segment that holds `cut`, synced
    /// before any new record is written, so old bytes can never reappear
    /// after new ones. A crash at any step leaves a prefix of the old log no
    /// shorter than `cut - 1`.
    fn truncate_from(&mut self, cut: LogIndex) -> Result<(), StorageError> {
        if cut > self.written_last_index() {
            self.pending.truncate_from(cut);
            return Ok(());
        }
        self.pending.clear();
        self.remove_segments_from(cut)?;
        self.truncate_newest_segment(cut)
    }

    /// Compaction, oldest first: each removal is made durable before the
    /// next, so a crash leaves a log that still starts at a segment
    /// boundary with no hole (a later removal durable before an earlier one
    /// would leave a gap, which recovery refuses).
    fn remove_segments_through(&mut self, upto: LogIndex) -> Result<usize, StorageError> {
        self.assert_behind_snapshot(upto)?;
        let mut removed = 0;
        for _ in 0..self.segments.len() {
            let oldest = &self.segments[0];
            if self.segments.len() == 1 || oldest.last_index() > upto {
                break;
            }
            // Oldest first, each with its directory sync, on the remover's
            // thread: a crash leaves a suffix of the log, never a gap.
            let segment = self.segments.remove(0);
            self.remover
                .handle()
                .remove(segment.path, &self.log_directory)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// The log below `index` may go only once a durable snapshot covers
    /// it: recovery refuses a log that starts after the snapshot's index + 1.
    fn assert_behind_snapshot(&self, index: LogIndex) -> Result<(), StorageError> {
        let newest = snapshot::newest_index(&self.directory)?.unwrap_or(LogIndex(0));
        assert!(
            index <= newest,
            "log dropped to {index} but the newest snapshot file is at {newest}"
        );
        Ok(())
    }

    /// After an install: newest segment first (as a truncation), so a crash
    /// leaves a prefix of the old log, which recovery discards because it
    /// does not hold the snapshot's last entry with its term.
    fn reset_log(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        self.assert_behind_snapshot(meta.index)?;
        assert!(
            meta.index >= self.base_index,
            "reset to {} below the snapshot at {}",
            meta.index,
            self.base_index
        );
        self.pending.clear();
        self.remove_segments_from(LogIndex(1))?;
        self.newest_file = None;
        self.newest_file_size = 0;
        self.base_index = meta.index;
        self.base_term = meta.term;
        Ok(())
    }

    fn remove_segments_from(&mut self, cut: LogIndex) -> Result<(), StorageError> {
        for _ in 0..self.segments.len() {
            let Some(newest) = self.segments.last() else {
                break;
            };
            if newest.first_index < cut {
                break;
            }
            self.newest_file = None;
            fs::remove_file(&newest.path).map_err(StorageError::io(&newest.path, "remove"))?;
            // One directory sync per removal: removals must not become
            // durable out of order, or a crash could leave a gap.
            if self.options.fsync {
                sync_path(&self.log_directory)?;
            }
            self.segments.pop();
        }
        Ok(())
    }

    fn truncate_newest_segment(&mut self, cut: LogIndex) -> Result<(), StorageError> {
        let Some(newest) = self.segments.last_mut() else {
            return Ok(());
        };
        assert!(newest.first_index < cut);
        if self.newest_file.is_none() {
            self.newest_file = Some(Arc::new(open_for_writing(&newest.path)?));
        }
        let Some(position) = newest.records.get((cut.0 - newest.first_index.0) as usize) else {
            return Ok(()); // the removed segment started exactly at `cut`
        };
        let size = position.offset;
        let file = self.newest_file.as_ref().expect("opened above");
        // Cutting frees the old bytes, so space preallocated after the cut
        // reads as zeros: no old record can reappear behind a shorter new
        // one.
        file.set_len(size)
            .map_err(StorageError::io(&newest.path, "truncate"))?;
        self.newest_file_size = size;
        if self.options.fsync {
            file.sync_data()
                .map_err(StorageError::io(&newest.path, "fdatasync"))?;
        }
        newest
            .records
            .truncate((cut.0 - newest.first_index.0) as usize);
        newest.size = size;
        assert_eq!(newest.index_next(), cut);
        Ok(())
    }

    /// Writes the hard state, then the log records, syncing each.
    fn write_and_sync(&mut self) -> Result<(), StorageError> {
        let mut synced = false;
        if self.hard_state_pending {
            self.hard_state_file.write(self.hard_state)?;
            if self.options.fsync {
                self.hard_state_file.sync()?;
                synced = true;
            }
            self.hard_state_pending = false;
        }
        let entry_count = self.pending.records.len();
        if let Some(last) = self.pending.records.last() {
            // What recovery checks, checked on the way in (§5.1: a node
            // never holds an entry from a term above its current term).
            assert!(
                last.term <= self.hard_state.current_term,
                "entry term {} above current term {}",
                last.term,
                self.hard_state.current_term
            );
            self.write_pending()?;
            if self.options.fsync {
                self.sync_newest()?;
                synced = true;
            }
        }
        if synced {
            self.stats.fsyncs += 1;
            self.stats.synced_entries += entry_count as u64;
        }
        Ok(())
    }

    fn sync_job(&self, entries: u64) -> SyncJob {
        let (Some(newest), Some(file)) = (self.segments.last(), &self.newest_file) else {
            unreachable!("records were just written to the newest segment");
        };
        SyncJob {
            file: Arc::clone(file),
            path: newest.path.clone(),
            entries,
        }
    }

    fn seal_newest(&self) -> Result<(), StorageError> {
        let (Some(newest), Some(file)) = (self.segments.last(), &self.newest_file) else {
            return Ok(());
        };
        file.set_len(newest.size)
            .map_err(StorageError::io(&newest.path, "truncate"))?;
        if self.options.fsync {
            self.sync_newest()?;
        }
        Ok(())
    }

    fn sync_newest(&self) -> Result<(), StorageError> {
        let (Some(newest), Some(file)) = (self.segments.last(), &self.newest_file) else {
            return Ok(());
        };
        file.sync_data()
            .map_err(StorageError::io(&newest.path, "fdatasync"))
    }

    /// Writes the pending records, one write per segment they land in,
    /// starting a new segment whenever the next record does not fit.
    fn write_pending(&mut self) -> Result<(), StorageError> {
        let record_count = self.pending.records.len();
        let mut position = 0;
        // Each pass writes at least one record or starts a segment, and a
        // fresh segment always takes the next record: two passes per record.
        for _ in 0..2 * record_count {
            if position == record_count {
                break;
            }
            let count = self.records_fitting(position);
            if count == 0 {
                let first_index = LogIndex(self.pending.first_index.0 + position as u64);
                self.start_segment(first_index)?;
                continue;
            }
            self.write_records(position, count)?;
            position += count;
        }
        assert_eq!(position, record_count);
        self.pending.clear();
        Ok(())
    }

    /// How many records from `position` fit the newest segment; an empty
    /// segment takes at least one, however large.
    fn records_fitting(&self, position: usize) -> usize {
        let Some(newest) = self.segments.last() else {
            return 0;
        };
        let mut size = newest.size;
        let mut count = 0;
        for offset in position..self.pending.records.len() {
            let (start, end) = self.pending.byte_range(offset, 1);
            size += (end - start) as u64;
            let fits = size <= self.options.segment_size_max;
            let alone_in_empty_segment = count == 0 && newest.records.is_empty();
            if !(fits || alone_in_empty_segment) {
                break;
            }
            count += 1;
        }
        count
    }

    fn write_records(&mut self, position: usize, count: usize) -> Result<(), StorageError> {
        let newest = self
            .segments
            .last_mut()
            .expect("records fit only an existing segment");
        let file = self
            .newest_file
            .as_ref()
            .expect("the newest segment is open");
        assert_eq!(
            newest.index_next().0,
            self.pending.first_index.0 + position as u64
        );
        let (start, end) = self.pending.byte_range(position, count);
        let write_end = newest.size + (end - start) as u64;
        if write_end > self.newest_file_size {
            let grown = (write_end + PREALLOCATION_STEP)
                .min(self.options.segment_size_max)
                .max(write_end);
            file.set_len(grown)
                .map_err(StorageError::io(&newest.path, "preallocate"))?;
            self.newest_file_size = grown;
        }
        file.write_all_at(&self.pending.bytes[start..end], newest.size)
            .map_err(StorageError::io(&newest.path, "write"))?;
        for record in &self.pending.records[position..position + count] {
            newest.records.push(RecordPosition {
                offset: newest.size + (record.offset - start as u64),
                term: record.term,
            });
        }
        newest.size += (end - start) as u64;
        Ok(())
    }

    /// Seals the newest segment and creates the next. The sealed one is cut
    /// to its records and synced first, and the new file and its directory
    /// entry before any record goes in: a crash must never leave a newer
    /// segment on disk after a hole in an older one (recovery would refuse
    /// the gap), and only the newest segment may end in preallocated zeros.
    fn start_segment(&mut self, first_index: LogIndex) -> Result<(), StorageError> {
        assert_eq!(first_index, self.written_last_index().next());
        self.seal_newest()?;
        let path = self.log_directory.join(segment::file_name(first_index));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(StorageError::io(&path, "create"))?;
        let mut header = Vec::with_capacity(SEGMENT_HEADER_SIZE);
        segment::encode_header(first_index, &mut header);
        file.write_all_at(&header, 0)
            .map_err(StorageError::io(&path, "write"))?;
        if self.options.fsync {
            file.sync_data()
                .map_err(StorageError::io(&path, "fdatasync"))?;
            sync_path(&self.log_directory)?;
        }
        self.segments.push(Segment {
            path,
            first_index,
            records: Vec::new(),
            size: SEGMENT_HEADER_SIZE as u64,
        });
        self.newest_file = Some(Arc::new(file));
        self.newest_file_size = SEGMENT_HEADER_SIZE as u64;
        Ok(())
    }
}

impl Storage for DiskStorage {
    type Job = SyncJob;

    fn merge_jobs(older: SyncJob, mut newer: SyncJob) -> SyncJob {
        newer.entries += older.entries;
        newer
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.check_running()?;
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if let Some(large) = entries
            .iter()
            .find(|entry| entry.data.len() > RECORD_PAYLOAD_SIZE_MAX)
        {
            return Err(StorageError::EntryTooLarge {
                index: large.index,
                size: large.data.len(),
                size_max: RECORD_PAYLOAD_SIZE_MAX,
            });
        }
        let last_index = self.last_index();
        assert!(
            first.index <= last_index.next(),
            "append at {} would leave a gap after {last_index}",
            first.index
        );
        assert!(
            first.index > self.base_index,
            "append at {} at or below the snapshot at {}",
            first.index,
            self.base_index
        );
        if first.index <= last_index {
            let result = self.truncate_from(first.index);
            self.halt_on_error(result)?;
        }
        let mut term_previous = self.last_term();
        for (offset, entry) in entries.iter().enumerate() {
            assert_eq!(
                entry.index.0,
                first.index.0 + offset as u64,
                "entries not consecutive"
            );
            assert!(
                entry.term >= term_previous,
                "term goes backwards at {}",
                entry.index
            );
            self.pending.push(entry);
            term_previous = entry.term;
        }
        Ok(())
    }

    fn set_hard_state(&mut self, hard_state: HardState) -> Result<(), StorageError> {
        self.check_running()?;
        let previous = self.hard_state;
        assert!(
            hard_state.current_term >= previous.current_term,
            "current term goes backwards"
        );
        assert!(
            hard_state.current_term > previous.current_term
                || previous.voted_for.is_none()
                || hard_state.voted_for == previous.voted_for,
            "vote changed within term {}",
            hard_state.current_term
        );
        assert!(
            previous.cluster_id.is_none() || hard_state.cluster_id == previous.cluster_id,
            "cluster id changed once set"
        );
        self.hard_state = hard_state;
        self.hard_state_pending = true;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.check_running()?;
        let result = self.write_and_sync();
        self.halt_on_error(result)
    }

    fn stats(&self) -> StorageStats {
        self.stats
    }

    /// The hard state, when pending, is synced here first as in `sync`:
    /// records of a new term must not reach the disk before it.
    fn write_deferring_sync(&mut self) -> Result<Option<SyncJob>, StorageError> {
        self.check_running()?;
        if self.hard_state_pending || !self.options.fsync {
            self.sync()?;
            return Ok(None);
        }
        let entries = self.pending.records.len() as u64;
        if entries == 0 {
            return Ok(None);
        }
        let result = self.write_pending();
        self.halt_on_error(result)?;
        Ok(Some(self.sync_job(entries)))
    }

    fn deferred_sync_done(&mut self, job: &SyncJob) {
        self.stats.fsyncs += 1;
        self.stats.synced_entries += job.entries;
    }

    /// Deletes whole segments whose entries are all at or below `upto`,
    /// oldest first, never the newest.
    fn compact(&mut self, upto: LogIndex) -> Result<usize, StorageError> {
        self.check_running()?;
        let result = self.remove_segments_through(upto);
        self.halt_on_error(result)
    }

    /// Removes every segment, newest first; the next segment is created by
    /// the next append, at `meta.index + 1`.
    fn reset_to_snapshot(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        self.check_running()?;
        let result = self.reset_log(meta);
        self.halt_on_error(result)
    }

    fn snapshot_begin(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        self.snapshot_abandon()?;
        self.snapshot_writing = Some(self.snapshot_writer(meta.clone())?);
        Ok(())
    }

    fn snapshot_append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.check_running()?;
        let writer = self.snapshot_writing.as_mut().expect("no snapshot begun");
        writer.append(bytes)
    }

    fn snapshot_flush(&mut self) -> Option<SyncJob> {
        self.snapshot_writing
            .as_ref()
            .and_then(SnapshotWriter::flush_job)
    }

    fn snapshot_finish(&mut self) -> Result<Option<SyncJob>, StorageError> {
        self.check_running()?;
        let writer = self.snapshot_writing.take().expect("no snapshot begun");
        let (finished, job) = writer.finish()?;
        self.snapshot_finished = Some(finished);
        Ok(job)
    }

    fn snapshot_commit(&mut self, synced: Option<SyncJob>) -> Result<u64, StorageError> {
        self.check_running()?;
        let finished = self.snapshot_finished.take().expect("no snapshot finished");
        Ok(finished.commit(synced)?.size_bytes)
    }

    fn snapshot_abandon(&mut self) -> Result<(), StorageError> {
        if let Some(finished) = self.snapshot_finished.take() {
            // Its sync may still run on the sync thread, through its own
            // handle: unlinking the name under it is harmless.
            finished.abandon()?;
        }
        match self.snapshot_writing.take() {
            Some(writer) => writer.abandon(),
            None => Ok(()),
        }
    }

    fn receive_chunk(&mut self, chunk: &InstallSnapshot) -> Result<(), StorageError> {
        self.check_running()?;
        if chunk.offset == 0 {
            if let Some(previous) = self.receiving.take() {
                previous.abandon()?;
            }
            self.receiving = Some(self.chunk_receiver(chunk.meta.clone())?);
        }
        let Some(receiver) = self.receiving.as_mut() else {
            return Err(StorageError::BadChunk {
                path: self.directory.clone(),
                problem: format!("chunk at byte {} before one at 0", chunk.offset),
            });
        };
        receiver.write_chunk(chunk.offset, &chunk.data)
    }

    fn receive_flush(&mut self) -> Option<SyncJob> {
        self.receiving.as_ref().and_then(ChunkReceiver::flush_job)
    }

    fn receive_finish(&mut self) -> Result<SnapshotFile, StorageError> {
        self.check_running()?;
        let receiver = self.receiving.take().expect("no snapshot received");
        receiver.finish()
    }

    fn receive_abandon(&mut self) -> Result<(), StorageError> {
        match self.receiving.take() {
            Some(receiver) => receiver.abandon(),
            None => Ok(()),
        }
    }

    fn snapshot_chunk(
        &mut self,
        index: LogIndex,
        offset: u64,
        size: usize,
    ) -> Result<Vec<u8>, StorageError> {
        self.check_running()?;
        assert!(size <= SNAPSHOT_CHUNK_SIZE_MAX, "chunk of {size} bytes");
        if self.snapshot_reader.as_ref().map(|(held, _, _)| *held) != Some(index) {
            let path = self.directory.join(snapshot::file_name(index));
            let file = match File::open(&path) {
                Ok(file) => file,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    return Err(StorageError::NoSnapshot { index })
                }
                Err(error) => return Err(StorageError::io(&path, "open")(error)),
            };
            self.snapshot_reader = Some((index, path, file));
        }
        let (_, path, file) = self.snapshot_reader.as_ref().expect("opened above");
        snapshot::read_chunk_from(file, path, offset, size)
    }
}

fn lock_data_directory(directory: &Path) -> Result<File, StorageError> {
    let path = directory.join(LOCK_FILE_NAME);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(StorageError::io(&path, "open"))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StorageError::Locked { path }),
        Err(TryLockError::Error(error)) => Err(StorageError::Io {
            path,
            operation: "lock",
            error,
        }),
    }
}

fn create_log_directory(
    directory: &Path,
    log_directory: &Path,
    fsync: bool,
) -> Result<(), StorageError> {
    match fs::create_dir(log_directory) {
        Ok(()) if fsync => sync_path(directory),
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(StorageError::Io {
            path: log_directory.to_path_buf(),
            operation: "create directory",
            error,
        }),
    }
}

fn file_size(file: &File, path: &Path) -> Result<u64, StorageError> {
    Ok(file
        .metadata()
        .map_err(StorageError::io(path, "stat"))?
        .len())
}

fn open_for_writing(path: &Path) -> Result<File, StorageError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(StorageError::io(path, "open"))
}

/// Segment files by first index, oldest first. A `.seg` file whose name is
/// not 20 digits is refused; other files are left alone.
fn list_segments(log_directory: &Path) -> Result<Vec<(LogIndex, PathBuf)>, StorageError> {
    let listing = fs::read_dir(log_directory).map_err(StorageError::io(log_directory, "list"))?;
    let mut segments = Vec::new();
    for item in listing {
        let item = item.map_err(StorageError::io(log_directory, "list"))?;
        let path = item.path();
        let name = item.file_name().to_string_lossy().into_owned();
        if !name.ends_with(SEGMENT_FILE_SUFFIX) {
            continue;
        }
        let Some(first_index) = segment::parse_file_name(&name) else {
            let problem = "segment file name is not a 20-digit first index and .seg".to_string();
            return Err(StorageError::corrupt(&path, 0, problem));
        };
        if segments.len() == SEGMENT_COUNT_MAX {
            let problem = format!("more than {SEGMENT_COUNT_MAX} segment files");
            return Err(StorageError::corrupt(log_directory, 0, problem));
        }
        segments.push((first_index, path));
    }
    segments.sort();
    Ok(segments)
}

fn read_segment_file(path: &Path) -> Result<Vec<u8>, StorageError> {
    let metadata = fs::metadata(path).map_err(StorageError::io(path, "stat"))?;
    if !metadata.is_file() {
        return Err(StorageError::corrupt(
            path,
            0,
            "not a regular file".to_string(),
        ));
    }
    let too_large = |size: u64| {
        let problem = format!("segment file has {size} bytes, more than {SEGMENT_SIZE_MAX_LIMIT}");
        StorageError::corrupt(path, 0, problem)
    };
    if metadata.len() > SEGMENT_SIZE_MAX_LIMIT {
        return Err(too_large(metadata.len()));
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    File::open(path)
        .and_then(|file| {
            file.take(SEGMENT_SIZE_MAX_LIMIT + 1)
                .read_to_end(&mut bytes)
        })
        .map_err(StorageError::io(path, "read"))?;
    if bytes.len() as u64 > SEGMENT_SIZE_MAX_LIMIT {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Reads and checks every segment, oldest first, without changing any.
fn scan_log(log_directory: &Path) -> Result<LogScan, StorageError> {
    let listing = list_segments(log_directory)?;
    let mut log = LogScan {
        segments: Vec::with_capacity(listing.len()),
        entries: Vec::new(),
        torn_tail: None,
        first_named: listing.first().cloned(),
    };
    let newest_position = listing.len().saturating_sub(1);
    for (position, (name_index, path)) in listing.into_iter().enumerate() {
        let is_newest = position == newest_position;
        let bytes = read_segment_file(&path)?;
        if let Some(segment) = scan_segment(&mut log, &bytes, name_index, path, is_newest)? {
            log.segments.push(segment);
        }
    }
    Ok(log)
}

/// Checks one segment's header and records against the log so far. None
/// when the newest segment's header is torn (the file is then dropped).
fn scan_segment(
    log: &mut LogScan,
    bytes: &[u8],
    name_index: LogIndex,
    path: PathBuf,
    is_newest: bool,
) -> Result<Option<Segment>, StorageError> {
    let first_index = match segment::read_header(bytes, is_newest) {
        HeaderRead::Valid { first_index } => first_index,
        HeaderRead::Invalid(corruption) => {
            return Err(StorageError::corrupt(
                &path,
                corruption.offset,
                corruption.problem,
            ))
        }
        HeaderRead::Torn(reason) => {
            // Only a segment created next can be half-created: anything else
            // is a gap, not a crash.
            check_segment_start(&path, name_index, name_index, log.segments.last())?;
            log.torn_tail = Some(TornTail {
                path,
                offset: 0,
                size_dropped: written_size_after(bytes, 0),
                reason,
                file_removed: true,
            });
            return Ok(None);
        }
    };
    check_segment_start(&path, name_index, first_index, log.segments.last())?;
    let start = ScanStart {
        first_index,
        term_previous: log.entries.last().map_or(Term(0), |entry| entry.term),
    };
    let mut records = Vec::new();
    let end = segment::scan_records(bytes, start, is_newest, &mut log.entries, &mut records)
        .map_err(|corruption| {
            StorageError::corrupt(&path, corruption.offset, corruption.problem)
        })?;
    if records.is_empty() && !is_newest {
        let problem = "segment holds no records but is not the newest".to_string();
        return Err(StorageError::corrupt(
            &path,
            SEGMENT_HEADER_SIZE as u64,
            problem,
        ));
    }
    let size = match end {
        ScanEnd::Clean { offset } => offset,
        ScanEnd::Torn { offset, reason } => {
            log.torn_tail = Some(TornTail {
                path: path.clone(),
                offset,
                size_dropped: written_size_after(bytes, offset),
                reason,
                file_removed: false,
            });
            offset
        }
    };
    Ok(Some(Segment {
        path,
        first_index,
        records,
        size,
    }))
}

/// Bytes a torn tail from `offset` held that were ever written: up to its
/// last nonzero byte. The newest segment's preallocated zeros after it were
/// never data, and counting them (4 MiB for one cut record) misled.
fn written_size_after(bytes: &[u8], offset: u64) -> u64 {
    let start = offset as usize;
    let written = bytes[start..]
        .iter()
        .rposition(|&byte| byte != 0)
        .map_or(0, |last| last + 1);
    written as u64
}

/// The name, the header and the previous segment agree on where this
/// segment starts. Where the oldest may start depends on the snapshot
/// (`snapshot_recovery::reconcile` checks it).
fn check_segment_start(
    path: &Path,
    name_index: LogIndex,
    header_index: LogIndex,
    previous: Option<&Segment>,
) -> Result<(), StorageError> {
    if name_index != header_index {
        let problem =
            format!("file name says first index {name_index}, header says {header_index}");
        return Err(StorageError::corrupt(path, 0, problem));
    }
    let Some(previous) = previous else {
        return Ok(());
    };
    if header_index != previous.index_next() {
        let problem = format!(
            "segment starts at index {header_index} but the previous one ends at {} (gap)",
            previous.last_index()
        );
        return Err(StorageError::corrupt(path, 0, problem));
    }
    Ok(())
}

/// The hard state, or None for a new data dir. Refuses a missing file next
/// to a non-empty log or a snapshot, a log whose last term (or a snapshot
/// whose term) is above the current term, and a cluster the log or the
/// snapshot contradicts.
fn recover_hard_state(
    path: &Path,
    log: &LogScan,
    snapshot: Option<&SnapshotMeta>,
) -> Result<Option<RecoveredHardState>, StorageError> {
    match fs::symlink_metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let held = match (log.entries.last(), snapshot) {
                (Some(last), _) => Some(("the log", last.index)),
                (None, Some(meta)) => Some(("a snapshot", meta.index)),
                (None, None) => None,
            };
            if let Some((holder, index)) = held {
                let problem =
                    format!("hard-state file missing but {holder} holds entries up to {index}");
                return Err(StorageError::corrupt(path, 0, problem));
            }
            return Ok(None);
        }
        Err(error) => return Err(StorageError::io(path, "stat")(error)),
        Ok(_) => {}
    }
    let recovered = HardStateFile::recover(path)?;
    let offset = recovered.slot_index as u64 * super::hard_state::HARD_STATE_SLOT_STRIDE;
    let refuse = |problem: String| Err(StorageError::corrupt(path, offset, problem));
    let current_term = recovered.hard_state.current_term;
    if let Some(cluster_id) = recovered.hard_state.cluster_id {
        if let Some(problem) = cluster_contradiction(cluster_id, log, snapshot) {
            return refuse(problem);
        }
    }
    if let Some(last) = log.entries.last() {
        if last.term > current_term {
            return refuse(format!(
                "current term {current_term} is below the term {} of log entry {}",
                last.term, last.index
            ));
        }
    }
    if let Some(meta) = snapshot.filter(|meta| meta.term > current_term) {
        return refuse(format!(
            "current term {current_term} is below the term {} of the snapshot at {}",
            meta.term, meta.index
        ));
    }
    Ok(Some(recovered))
}

/// A log that still starts at index 1 must start with the cluster's
/// Bootstrap entry; a snapshot must name the same cluster.
fn cluster_contradiction(
    cluster_id: ClusterId,
    log: &LogScan,
    snapshot: Option<&SnapshotMeta>,
) -> Option<String> {
    if let Some(first) = log
        .entries
        .first()
        .filter(|first| first.index == LogIndex(1))
    {
        if ClusterId::of_bootstrap(first) != Some(cluster_id) {
            return Some(format!(
                "the hard state names cluster {cluster_id} but the log does not start with its Bootstrap entry"
            ));
        }
    }
    match snapshot.and_then(|meta| meta.cluster_id.map(|id| (meta.index, id))) {
        Some((index, snapshot_cluster)) if snapshot_cluster != cluster_id => Some(format!(
            "the hard state names cluster {cluster_id} but the snapshot at {index} belongs to {snapshot_cluster}"
        )),
        _ => None,
    }
}

/// A data dir belongs to the node id it was created under: started under
/// another, it would vote and acknowledge with someone else's term, vote
/// and log.
fn check_owner(directory: &Path, stored: NodeName, given: NodeName) -> Result<(), StorageError> {
    if given.is_none() || stored == given {
        return Ok(());
    }
    Err(StorageError::WrongNode {
        path: directory.to_path_buf(),
        stored: stored.to_string(),
        given: given.to_string(),
    })
}

/// Cuts the newest segment back to its last good record, or removes it if
/// even its header is torn.
fn repair_torn_tail(
    torn_tail: &TornTail,
    log_directory: &Path,
    fsync: bool,
) -> Result<(), StorageError> {
    let path = &torn_tail.path;
    if torn_tail.file_removed {
        fs::remove_file(path).map_err(StorageError::io(path, "remove"))?;
        if fsync {
            sync_path(log_directory)?;
        }
        return Ok(());
    }
    let file = open_for_writing(path)?;
    file.set_len(torn_tail.offset)
        .map_err(StorageError::io(path, "truncate"))?;
    if fsync {
        file.sync_data()
            .map_err(StorageError::io(path, "fdatasync"))?;
    }
    Ok(())
}

#[cfg(test)]
impl DiskStorage {
    /// Lets tests make the next write fail.
    pub(super) fn replace_newest_file_for_test(&mut self, file: File) {
        assert!(self.newest_file.is_some());
        self.newest_file = Some(Arc::new(file));
    }

    pub(super) fn replace_hard_state_file_for_test(&mut self, file: File) {
        self.hard_state_file.replace_file_for_test(file);
    }

    pub(super) fn segment_paths_for_test(&self) -> Vec<PathBuf> {
        self.segments
            .iter()
            .map(|segment| segment.path.clone())
            .collect()
    }
}
