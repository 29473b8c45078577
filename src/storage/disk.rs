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
use super::segment::{
    self, HeaderRead, RecordPosition, ScanEnd, ScanStart, TornReason, RECORD_HEADER_SIZE,
    RECORD_PAYLOAD_SIZE_MAX, SEGMENT_FILE_SUFFIX, SEGMENT_HEADER_SIZE,
};
use super::{Recovered, Storage, StorageError, StorageStats, SyncJob};
use crate::core::{ClusterId, Entry, HardState, LogIndex, Term};
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
}

impl Default for DiskOptions {
    fn default() -> DiskOptions {
        DiskOptions {
            fsync: true,
            segment_size_max: SEGMENT_SIZE_MAX_DEFAULT,
            node_name: NodeName::NONE,
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
    pub segment_count: usize,
    pub entry_count: usize,
    /// Bytes in the segment files kept.
    pub log_size: u64,
    pub torn_tail: Option<TornTail>,
    /// The hard-state slot that failed its CRC; the other one was used.
    pub hard_state_slot_torn: Option<usize>,
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
            "storage recovered{}: {} segments, {} entries, {} bytes of log",
            if self.fresh { " (new data dir)" } else { "" },
            self.segment_count,
            self.entry_count,
            self.log_size
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
}

#[derive(Debug)]
pub struct DiskStorage {
    options: DiskOptions,
    log_directory: PathBuf,
    /// Holds the exclusive lock on `<dir>/LOCK` for the life of the storage.
    _lock_file: File,
    hard_state_file: HardStateFile,
    /// The newest hard state handed in; written by the next sync while
    /// `hard_state_pending`.
    hard_state: HardState,
    hard_state_pending: bool,
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
}

impl DiskStorage {
    /// Locks the data dir, recovers the hard state and the log, cuts a torn
    /// tail if there is one. Refuses (changing nothing on disk) anything else
    /// that is damaged. Creates the dir and an empty hard state if new.
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
        let log = scan_log(&log_directory)?;
        let hard_state_path = directory.join(HARD_STATE_FILE_NAME);
        let recovered_hard_state = recover_hard_state(&hard_state_path, &log)?;
        if let Some(recovered) = &recovered_hard_state {
            check_owner(directory, recovered.node_name, options.node_name)?;
        }
        if let Some(torn_tail) = &log.torn_tail {
            repair_torn_tail(torn_tail, &log_directory, options.fsync)?;
        }
        let fresh = recovered_hard_state.is_none();
        let recovered_hard_state = match recovered_hard_state {
            Some(recovered) => recovered,
            None => RecoveredHardState {
                file: HardStateFile::create(directory, options.node_name, options.fsync)?,
                hard_state: HardState::default(),
                node_name: options.node_name,
                slot_index: 1,
                slot_torn: None,
            },
        };
        let newest_file = match log.segments.last() {
            Some(newest) => Some(Arc::new(open_for_writing(&newest.path)?)),
            None => None,
        };
        let newest_file_size = match &newest_file {
            Some(file) => file_size(file, &log.segments[log.segments.len() - 1].path)?,
            None => 0,
        };
        let report = RecoveryReport {
            fresh,
            segment_count: log.segments.len(),
            entry_count: log.entries.len(),
            log_size: log.segments.iter().map(|segment| segment.size).sum(),
            torn_tail: log.torn_tail,
            hard_state_slot_torn: recovered_hard_state.slot_torn,
        };
        let storage = DiskStorage {
            options,
            log_directory,
            _lock_file: lock_file,
            hard_state_file: recovered_hard_state.file,
            hard_state: recovered_hard_state.hard_state,
            hard_state_pending: false,
            segments: log.segments,
            newest_file,
            newest_file_size,
            pending: Pending::default(),
            stats: StorageStats::default(),
            halted: false,
        };
        let recovered = Recovered {
            hard_state: recovered_hard_state.hard_state,
            entries: log.entries,
        };
        Ok((storage, recovered, report))
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
            .map_or(LogIndex(0), |segment| segment.last_index())
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
            .map_or(Term(0), |record| record.term)
    }

    fn check_running(&self) -> Result<(), StorageError> {
        if self.halted {
            return Err(StorageError::Halted);
        }
        Ok(())
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
            first.index.0 >= 1 && first.index <= last_index.next(),
            "append at {} would leave a gap after {last_index}",
            first.index
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
/// segment starts; the log starts at index 1 (nothing is compacted yet).
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
    let expected = previous.map_or(LogIndex(1), Segment::index_next);
    if header_index != expected {
        let problem = match previous {
            Some(previous) => format!(
                "segment starts at index {header_index} but the previous one ends at {} (gap)",
                previous.last_index()
            ),
            None => format!("log starts at index {header_index}, expected 1"),
        };
        return Err(StorageError::corrupt(path, 0, problem));
    }
    Ok(())
}

/// The hard state, or None for a new data dir. Refuses a missing file next
/// to a non-empty log, and a log whose last term is above the current term.
fn recover_hard_state(
    path: &Path,
    log: &LogScan,
) -> Result<Option<RecoveredHardState>, StorageError> {
    match fs::symlink_metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if let Some(last) = log.entries.last() {
                let problem = format!(
                    "hard-state file missing but the log holds entries up to {}",
                    last.index
                );
                return Err(StorageError::corrupt(path, 0, problem));
            }
            return Ok(None);
        }
        Err(error) => return Err(StorageError::io(path, "stat")(error)),
        Ok(_) => {}
    }
    let recovered = HardStateFile::recover(path)?;
    let offset = recovered.slot_index as u64 * super::hard_state::HARD_STATE_SLOT_STRIDE;
    if let (Some(cluster_id), Some(first)) = (recovered.hard_state.cluster_id, log.entries.first())
    {
        if ClusterId::of_bootstrap(first) != Some(cluster_id) {
            let problem = format!(
                "the hard state names cluster {cluster_id} but the log does not start with its Bootstrap entry"
            );
            return Err(StorageError::corrupt(path, offset, problem));
        }
    }
    if let Some(last) = log.entries.last() {
        if last.term > recovered.hard_state.current_term {
            let problem = format!(
                "current term {} is below the term {} of log entry {}",
                recovered.hard_state.current_term, last.term, last.index
            );
            return Err(StorageError::corrupt(path, offset, problem));
        }
    }
    Ok(Some(recovered))
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
