//! A node's simulated disk, modelled as a write-ahead log: each Ready's hard
//! state and entries are appended, in that order, to one stream of records,
//! and become durable only when a sync that covers them completes, some
//! time later: an fsync on the spot (the node waits for it) or a deferred
//! one (it does not). The driver decides which (src/driver.rs); `io.rs`
//! turns its calls into these writes and sync times.
//!
//! A crash keeps a random prefix of the records not durable by then and
//! loses the rest (a torn tail), as a real disk may. The
//! hard state goes before the entries of the same Ready because entries of a
//! term are only written after that term is; a disk that kept the entries
//! without the hard state would restart with a log ahead of its term, which
//! `Raft::new` refuses. The real storage must keep this order too.
//!
//! Snapshots (docs/STORAGE.md): the disk keeps snapshot files
//! (`snapshot_files.rs`), and its log has a base: entries at or below it
//! were compacted away, or dropped by an install (`Reset`). Compaction and
//! reset go in the same ordered stream as the records, each durable once
//! the node has got there (after the syncs before it): a crash before that
//! leaves the log as it was, which recovery accepts as the real one does.

use super::hash::prefix_hash;
use super::snapshot_files::{CrashedFiles, SimSnapshotFile, SnapshotFiles};
use raftlite::core::rng::Rng;
use raftlite::core::{Entry, HardState, LogIndex, PlantedBug, SnapshotMeta, Term};
use raftlite::storage::snapshot_recovery;
use std::collections::VecDeque;

/// Writes waiting for their sync on one disk. A runtime that kept writing
/// without ever syncing would be broken; this catches it.
pub const WRITES_PENDING_MAX: usize = 4096;

/// What one write does to the log.
#[derive(Debug)]
pub enum Op {
    /// One Ready's records.
    Records {
        hard_state: Option<HardState>,
        /// Consecutive; if the first index is at or below the stored last
        /// index, the stored suffix from there is replaced (the Ready
        /// contract).
        entries: Vec<Entry>,
    },
    /// Entries at or below `upto` go: a durable snapshot covers them.
    Compact { upto: LogIndex },
    /// An install dropped the whole log: it continues at `index + 1`.
    Reset { index: LogIndex, term: Term },
}

#[derive(Debug)]
pub struct Write {
    pub op: Op,
    /// When a sync that covers it completes; None until one is issued.
    pub durable_at_ms: Option<u64>,
    /// Counts this disk's writes, so that a deferred sync can say how far
    /// it reaches.
    pub sequence: u64,
}

/// What a crash did to the unsynced tail, in records (a hard state is one
/// record, each entry one), and to snapshot files under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub records_kept: u64,
    pub records_lost: u64,
    /// A compaction or reset that had not completed.
    pub log_ops_lost: u64,
    pub files: CrashedFiles,
}

/// What a process finds on the disk at start, as the daemon's recovery
/// returns it (docs/STORAGE.md, "Recovery with snapshots").
pub struct Recovered {
    pub hard_state: HardState,
    pub snapshot: Option<SimSnapshotFile>,
    /// The entries after the snapshot (from index 1 without one).
    pub entries: Vec<Entry>,
    /// The log did not hold the snapshot's last entry: it was discarded,
    /// as an install cut short by a crash would have.
    pub log_discarded: bool,
}

#[derive(Default)]
pub struct Disk {
    hard_state: HardState,
    /// The last index no longer held (0: never compacted), and its term.
    base_index: LogIndex,
    base_term: Term,
    /// The prefix hash at the base: the disk's own, if it compacted; after
    /// a reset, none until the checker anchors it to the committed history
    /// (`anchor`).
    base_hash: Option<u64>,
    /// `entries[i]` has index `base_index + 1 + i`.
    entries: Vec<Entry>,
    /// prefix_hashes[i] is the prefix hash of the log up to entries[i].
    prefix_hashes: Vec<u64>,
    /// Written, not yet durable, oldest first.
    pending: VecDeque<Write>,
    /// The sequence of the last write made.
    sequence_last: u64,
    /// The lowest index rewritten since `take_changed_from` last ran.
    changed_from: Option<LogIndex>,
    pub snapshots: SnapshotFiles,
    /// The time of the last `settle`: files durable by then count.
    settled_ms: u64,
}

impl Disk {
    pub fn new() -> Disk {
        Disk {
            base_hash: Some(0),
            ..Disk::default()
        }
    }

    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// A disk that already holds `entries` and `hard_state`, synced: the
    /// data dir of another cluster, for the stale-member fault.
    pub fn with_image(hard_state: HardState, entries: &[Entry]) -> Disk {
        let mut disk = Disk {
            hard_state,
            ..Disk::new()
        };
        disk.append(entries);
        disk.changed_from = None;
        disk
    }

    pub fn base_index(&self) -> LogIndex {
        self.base_index
    }

    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.base_index.0 + self.entries.len() as u64)
    }

    fn offset_of(&self, index: LogIndex) -> Option<usize> {
        let offset = index.0.checked_sub(self.base_index.0 + 1)?;
        usize::try_from(offset).ok()
    }

    /// The durable entry at `index`, if the log holds it.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.entries.get(self.offset_of(index)?)
    }

    /// The term at `index`: the base's at the base, None below or past it.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.base_index {
            return Some(self.base_term);
        }
        self.entry(index).map(|entry| entry.term)
    }

    pub fn last_term(&self) -> Term {
        self.entries
            .last()
            .map_or(self.base_term, |entry| entry.term)
    }

    /// The prefix hash of the durable log up to `index` (at the base: the
    /// anchor, if known); None below the base and past the end.
    pub fn prefix_hash(&self, index: LogIndex) -> Option<u64> {
        if index == self.base_index {
            return self.base_hash;
        }
        self.base_hash?;
        self.prefix_hashes.get(self.offset_of(index)?).copied()
    }

    /// A reset's base (index, term) that the checker has not anchored yet.
    pub fn unanchored_base(&self) -> Option<(LogIndex, Term)> {
        match self.base_hash {
            None => Some((self.base_index, self.base_term)),
            Some(_) => None,
        }
    }

    /// The committed history's prefix hash at the base: the log's hashes
    /// continue from it.
    pub fn anchor(&mut self, hash: u64) {
        self.base_hash = Some(hash);
        self.rehash_from(0);
    }

    /// The lowest index made durable since the last call, if any.
    pub fn take_changed_from(&mut self) -> Option<LogIndex> {
        self.changed_from.take()
    }

    /// Whether an unsynced write changes the term: a new hard state, or
    /// entries of a term newer than the durable log's last. Crashes in that
    /// window are the ones that test what a node may promise before a sync.
    pub fn has_pending_term_change(&self) -> bool {
        let durable_term = self.last_term();
        self.pending.iter().any(|write| match &write.op {
            Op::Records {
                hard_state,
                entries,
            } => hard_state.is_some() || entries.iter().any(|entry| entry.term > durable_term),
            _ => false,
        })
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether a snapshot is being written, received or committed: a crash
    /// now cuts it short.
    pub fn has_snapshot_in_progress(&self) -> bool {
        self.snapshots.in_progress()
            || self
                .pending
                .iter()
                .any(|write| !matches!(write.op, Op::Records { .. }))
    }

    /// Writes a Ready's records; returns the write's sequence.
    pub fn write(&mut self, hard_state: Option<HardState>, entries: Vec<Entry>) -> u64 {
        self.push(Op::Records {
            hard_state,
            entries,
        })
    }

    /// Queues a compaction or a reset, durable at `at_ms` at the earliest
    /// (after the writes before it).
    pub fn write_log_op(&mut self, op: Op, at_ms: u64) -> u64 {
        let sequence = self.push(op);
        self.sync_through(sequence, at_ms);
        sequence
    }

    fn push(&mut self, op: Op) -> u64 {
        assert!(
            self.pending.len() < WRITES_PENDING_MAX,
            "disk queue overflow"
        );
        self.sequence_last += 1;
        self.pending.push_back(Write {
            op,
            durable_at_ms: None,
            sequence: self.sequence_last,
        });
        self.sequence_last
    }

    pub fn sequence_last(&self) -> u64 {
        self.sequence_last
    }

    /// The latest time a sync issued so far completes (0: none pending).
    pub fn durable_at_last_ms(&self) -> u64 {
        self.pending
            .iter()
            .filter_map(|write| write.durable_at_ms)
            .max()
            .unwrap_or(0)
    }

    /// A sync completing at `at_ms` covers every write up to `sequence`;
    /// writes an earlier sync covers keep the earlier time.
    pub fn sync_through(&mut self, sequence: u64, at_ms: u64) {
        for write in self.pending.iter_mut() {
            if write.sequence > sequence {
                break;
            }
            let at = write
                .durable_at_ms
                .map_or(at_ms, |earlier| earlier.min(at_ms));
            write.durable_at_ms = Some(at);
        }
    }

    /// Makes durable what syncs completed by `now_ms`, in write order (a
    /// write is durable only once every write before it is). Returns
    /// whether anything became durable.
    pub fn settle(&mut self, now_ms: u64) -> bool {
        self.settled_ms = self.settled_ms.max(now_ms);
        self.snapshots.settle(now_ms);
        let mut changed = false;
        while self
            .pending
            .front()
            .is_some_and(|write| write.durable_at_ms.is_some_and(|at| at <= now_ms))
        {
            let write = self.pending.pop_front().expect("front exists");
            self.apply(write.op);
            changed = true;
        }
        changed
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Records {
                hard_state,
                entries,
            } => {
                if let Some(hard_state) = hard_state {
                    self.hard_state = hard_state;
                }
                self.append(&entries);
            }
            Op::Compact { upto } => self.compact(upto),
            Op::Reset { index, term } => self.reset(index, term),
        }
    }

    /// The node crashed at `now_ms`: what was durable by then stays; of the
    /// rest, a random prefix of the records survives (a torn tail).
    pub fn crash(&mut self, now_ms: u64, rng: &mut Rng) -> TornTail {
        self.settle(now_ms);
        let records_total = self.records_before_log_op();
        let records_kept = rng.range_inclusive(0, records_total);
        self.crash_keeping(now_ms, records_kept)
    }

    /// The power went at `now_ms`: the disk's volatile cache is gone with
    /// everything not durable by then.
    pub fn lose_unsynced(&mut self, now_ms: u64) -> TornTail {
        self.settle(now_ms);
        self.crash_keeping(now_ms, 0)
    }

    /// Records a torn tail can keep: those before the first compaction or
    /// reset not yet durable (a log operation is all or nothing here, and
    /// whatever follows it waits for it).
    fn records_before_log_op(&self) -> u64 {
        let mut total = 0;
        for write in &self.pending {
            match &write.op {
                Op::Records {
                    hard_state,
                    entries,
                } => total += u64::from(hard_state.is_some()) + entries.len() as u64,
                _ => break,
            }
        }
        total
    }

    fn crash_keeping(&mut self, now_ms: u64, records_kept: u64) -> TornTail {
        let pending = std::mem::take(&mut self.pending);
        let records_total: u64 = pending.iter().map(record_count).sum();
        let log_ops_lost = pending
            .iter()
            .filter(|write| record_count(write) == 0)
            .count();
        let mut records_left = records_kept;
        for write in pending {
            let Op::Records {
                hard_state,
                entries,
            } = write.op
            else {
                break;
            };
            if let Some(hard_state) = hard_state {
                if records_left == 0 {
                    break;
                }
                self.hard_state = hard_state;
                records_left -= 1;
            }
            let kept = (records_left as usize).min(entries.len());
            self.append(&entries[..kept]);
            records_left -= kept as u64;
            if kept < entries.len() {
                break;
            }
        }
        assert_eq!(records_left, 0, "kept more records than were written");
        TornTail {
            records_kept,
            records_lost: records_total - records_kept,
            log_ops_lost: log_ops_lost as u64,
            files: self.snapshots.crash(now_ms),
        }
    }

    /// Appends consecutive entries, replacing the stored suffix from the
    /// first one's index.
    fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        assert!(
            first.index > self.base_index && first.index <= self.last_index().next(),
            "write at {} leaves a gap after stored last index {} (log base {})",
            first.index,
            self.last_index(),
            self.base_index
        );
        let changed_from = self
            .changed_from
            .map_or(first.index, |from| from.min(first.index));
        self.changed_from = Some(changed_from);
        let keep = self.offset_of(first.index).expect("above the base");
        self.entries.truncate(keep);
        self.prefix_hashes.truncate(keep);
        for entry in entries {
            assert_eq!(
                entry.index,
                self.last_index().next(),
                "write not consecutive"
            );
            self.entries.push(entry.clone());
        }
        self.rehash_from(keep);
    }

    /// Recomputes the prefix hashes from entries[from] on.
    fn rehash_from(&mut self, from: usize) {
        self.prefix_hashes.truncate(from);
        let Some(base_hash) = self.base_hash else {
            return; // unanchored: `anchor` computes them
        };
        for entry in &self.entries[from..] {
            let previous = self.prefix_hashes.last().copied().unwrap_or(base_hash);
            self.prefix_hashes.push(prefix_hash(previous, entry));
        }
    }

    /// Drops entries at or below `upto` (as far as the log reaches).
    fn compact(&mut self, upto: LogIndex) {
        let upto = upto.min(self.last_index());
        if upto <= self.base_index {
            return;
        }
        let offset = self.offset_of(upto).expect("above the base");
        self.base_term = self.entries[offset].term;
        self.base_hash = self.base_hash.map(|_| self.prefix_hashes[offset]);
        self.entries.drain(..=offset);
        if self.base_hash.is_some() {
            self.prefix_hashes.drain(..=offset);
        }
        self.base_index = upto;
    }

    /// The whole log goes; it continues after (index, term).
    fn reset(&mut self, index: LogIndex, term: Term) {
        self.entries.clear();
        self.prefix_hashes.clear();
        self.base_index = index;
        self.base_term = term;
        self.base_hash = None;
        self.changed_from = Some(self.changed_from.map_or(index, |from| from.min(index)));
    }

    /// The newest snapshot durable now.
    pub fn newest_snapshot(&self) -> Option<&SimSnapshotFile> {
        self.snapshots.newest_durable(self.settled_ms)
    }

    /// What a new process starts from: the newest snapshot, then the log
    /// after it, as the daemon's recovery does. A log that does not hold
    /// the snapshot's last entry (an install cut short) is discarded here
    /// too. Err: a disk the real recovery would refuse (a gap between the
    /// snapshot and the log), which only a broken runtime leaves.
    /// `planted_bug` goes to the daemon's recovery rule it shares.
    pub fn recover(&mut self, planted_bug: Option<PlantedBug>) -> Result<Recovered, String> {
        assert!(
            self.pending.is_empty(),
            "recovering a disk with writes in flight"
        );
        let snapshot = self.newest_snapshot().cloned();
        let Some(snapshot) = snapshot else {
            if self.base_index > LogIndex(0) {
                return Err(format!(
                    "its log was compacted to {} and it holds no snapshot",
                    self.base_index
                ));
            }
            return Ok(self.recovered(None, false));
        };
        let meta = &snapshot.meta;
        if self.base_index > meta.index {
            return Err(format!(
                "its log starts after {} but its newest snapshot ends at {} (gap)",
                self.base_index, meta.index
            ));
        }
        // A log that began with another cluster's Bootstrap goes too, by the
        // daemon's own rule (an unbound node's install a crash cut short).
        let foreign =
            snapshot_recovery::began_with_another_cluster(meta, &self.entries, planted_bug);
        let holds = self.term_at(meta.index) == Some(meta.term) && !foreign;
        if !holds {
            self.reset(meta.index, meta.term);
        }
        Ok(self.recovered(Some(snapshot), !holds))
    }

    fn recovered(&self, snapshot: Option<SimSnapshotFile>, log_discarded: bool) -> Recovered {
        let after = snapshot
            .as_ref()
            .map_or(LogIndex(0), |file| file.meta.index);
        let entries = (self.entries.iter())
            .filter(|entry| entry.index > after)
            .cloned()
            .collect();
        Recovered {
            hard_state: self.hard_state,
            snapshot,
            entries,
            log_discarded,
        }
    }

    /// The base a reset of `meta` gives, for the trace.
    pub fn reset_op(meta: &SnapshotMeta) -> Op {
        Op::Reset {
            index: meta.index,
            term: meta.term,
        }
    }
}

fn record_count(write: &Write) -> u64 {
    match &write.op {
        Op::Records {
            hard_state,
            entries,
        } => u64::from(hard_state.is_some()) + entries.len() as u64,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftlite::core::NodeId;

    fn entries(first: u64, last: u64, term: u64) -> Vec<Entry> {
        (first..=last)
            .map(|index| Entry::command(index, term, &[]))
            .collect()
    }

    #[test]
    fn writes_become_durable_in_order_and_replace_suffixes() {
        let mut disk = Disk::new();
        let first = disk.write(None, entries(1, 4, 1));
        disk.sync_through(first, 10);
        let second = disk.write(None, entries(3, 3, 2));
        disk.sync_through(second, 20);
        assert!(!disk.settle(9));
        assert!(disk.settle(10));
        assert_eq!(disk.last_index(), LogIndex(4));
        disk.settle(20);
        assert_eq!(disk.last_index(), LogIndex(3));
        assert_eq!(
            disk.entry(LogIndex(3)).map(|entry| entry.term),
            Some(Term(2))
        );
    }

    #[test]
    fn a_write_no_sync_covers_yet_is_never_durable() {
        let mut disk = Disk::new();
        disk.write(None, entries(1, 2, 1));
        assert!(!disk.settle(u64::MAX));
        assert!(disk.has_pending());
        let torn = disk.lose_unsynced(100);
        assert_eq!((torn.records_kept, torn.records_lost), (0, 2));
    }

    #[test]
    fn an_earlier_sync_keeps_its_time_when_a_later_one_covers_it_too() {
        let mut disk = Disk::new();
        let deferred = disk.write(None, entries(1, 1, 1));
        let inline = disk.write(None, entries(2, 2, 1));
        disk.sync_through(inline, 50);
        disk.sync_through(deferred, 30);
        disk.settle(30);
        assert_eq!(disk.last_index(), LogIndex(1));
        disk.settle(50);
        assert_eq!(disk.last_index(), LogIndex(2));
    }

    #[test]
    fn a_crash_keeps_only_a_prefix_of_unsynced_records() {
        let hard_state = HardState {
            current_term: Term(3),
            voted_for: Some(NodeId(1)),
            cluster_id: None,
        };
        for seed in 0..50 {
            let mut disk = Disk::new();
            let write = disk.write(Some(hard_state), entries(1, 5, 3));
            disk.sync_through(write, 10);
            let torn = disk.crash(9, &mut Rng::new(seed));
            assert_eq!(torn.records_kept + torn.records_lost, 6);
            let entries_kept = torn.records_kept.saturating_sub(1);
            assert_eq!(disk.last_index(), LogIndex(entries_kept));
            let hard_state_kept = torn.records_kept >= 1;
            assert_eq!(disk.hard_state() == hard_state, hard_state_kept);
            assert!(!disk.has_pending());
        }
    }

    fn meta(index: u64, term: u64) -> SnapshotMeta {
        SnapshotMeta {
            index: LogIndex(index),
            term: Term(term),
            cluster_id: None,
            voters: vec![NodeId(0)],
        }
    }

    /// A durable snapshot file at `index` on the disk, durable at `at_ms`.
    fn snapshot(disk: &mut Disk, index: u64, term: u64, at_ms: u64) {
        let mut machine = raftlite::kv::StateMachine::default();
        let mut cursor = machine.begin_snapshot();
        let mut body = Vec::new();
        while !cursor.next_chunk(&mut body, 1 << 10) {}
        disk.snapshots.begin(&meta(index, term));
        disk.snapshots.append(&body);
        let index = disk.snapshots.finish();
        disk.snapshots.commit(index, at_ms);
    }

    #[test]
    fn a_compaction_is_durable_after_the_writes_before_it_and_keeps_the_hashes() {
        let mut disk = Disk::new();
        let write = disk.write(None, entries(1, 6, 1));
        disk.sync_through(write, 10);
        disk.settle(10);
        let hash_at_5 = disk.prefix_hash(LogIndex(5));
        snapshot(&mut disk, 5, 1, 20);
        disk.write_log_op(Op::Compact { upto: LogIndex(4) }, 20);
        let torn = disk.crash(15, &mut Rng::new(1));
        assert_eq!(torn.log_ops_lost, 1);
        assert_eq!(
            disk.base_index(),
            LogIndex(0),
            "not durable at 15: not done"
        );
        assert!(disk.newest_snapshot().is_none(), "its snapshot neither");
        snapshot(&mut disk, 5, 1, 20);
        disk.write_log_op(Op::Compact { upto: LogIndex(4) }, 20);
        disk.settle(20);
        assert_eq!(
            (disk.base_index(), disk.last_index()),
            (LogIndex(4), LogIndex(6))
        );
        assert!(disk.entry(LogIndex(4)).is_none() && disk.entry(LogIndex(5)).is_some());
        assert_eq!(disk.prefix_hash(LogIndex(5)), hash_at_5);
        let recovered = disk.recover(None).expect("recovers");
        let first = recovered.entries.first().map(|entry| entry.index);
        assert_eq!(first, Some(LogIndex(6)), "entries after the snapshot");
    }

    #[test]
    fn a_reset_drops_the_log_and_the_next_write_continues_after_the_snapshot() {
        let mut disk = Disk::new();
        let write = disk.write(None, entries(1, 3, 1));
        disk.sync_through(write, 5);
        disk.settle(5);
        snapshot(&mut disk, 9, 2, 10);
        disk.write_log_op(
            Op::Reset {
                index: LogIndex(9),
                term: Term(2),
            },
            10,
        );
        let next = disk.write(None, entries(10, 11, 2));
        disk.sync_through(next, 12);
        disk.settle(12);
        assert_eq!(
            (disk.base_index(), disk.last_index()),
            (LogIndex(9), LogIndex(11))
        );
        assert_eq!(disk.unanchored_base(), Some((LogIndex(9), Term(2))));
        assert_eq!(disk.prefix_hash(LogIndex(10)), None, "unanchored");
        disk.anchor(77);
        assert_eq!(disk.prefix_hash(LogIndex(9)), Some(77));
        assert!(disk.prefix_hash(LogIndex(10)).is_some());
    }

    #[test]
    fn recovery_discards_a_log_that_does_not_hold_the_snapshots_entry() {
        let mut disk = Disk::new();
        let write = disk.write(None, entries(1, 3, 1));
        disk.sync_through(write, 5);
        disk.settle(5);
        // An install whose reset a crash cut short: the snapshot is durable,
        // the old log is still there.
        snapshot(&mut disk, 9, 2, 10);
        disk.write_log_op(
            Op::Reset {
                index: LogIndex(9),
                term: Term(2),
            },
            30,
        );
        disk.crash(20, &mut Rng::new(3));
        let recovered = disk.recover(None).expect("recovers");
        assert!(recovered.log_discarded && recovered.entries.is_empty());
        assert_eq!(disk.base_index(), LogIndex(9));
    }

    #[test]
    fn recovery_refuses_a_log_compacted_past_every_snapshot() {
        let mut disk = Disk::new();
        let write = disk.write(None, entries(1, 6, 1));
        disk.sync_through(write, 5);
        disk.settle(5);
        snapshot(&mut disk, 3, 1, 5);
        disk.write_log_op(Op::Compact { upto: LogIndex(5) }, 5);
        disk.settle(5);
        let refused = disk.recover(None).err().expect("a gap");
        assert!(refused.contains("gap"), "{refused}");
    }
}
