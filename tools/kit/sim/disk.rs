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

use super::hash::prefix_hash;
use raftlite::core::rng::Rng;
use raftlite::core::{Entry, HardState, LogIndex, Term};
use std::collections::VecDeque;

/// Writes waiting for their sync on one disk. A runtime that kept writing
/// without ever syncing would be broken; this catches it.
pub const WRITES_PENDING_MAX: usize = 4096;

/// One Ready's write.
#[derive(Debug)]
pub struct Write {
    pub hard_state: Option<HardState>,
    /// Consecutive; if the first index is at or below the stored last index,
    /// the stored suffix from there is replaced (the Ready contract).
    pub entries: Vec<Entry>,
    /// When a sync that covers it completes; None until one is issued.
    /// Never decreasing along the queue: syncs complete in order.
    pub durable_at_ms: Option<u64>,
    /// Counts this disk's writes, so that a deferred sync can say how far
    /// it reaches.
    pub sequence: u64,
}

/// What a crash did to the unsynced tail, in records (a hard state is one
/// record, each entry one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub records_kept: u64,
    pub records_lost: u64,
}

#[derive(Default)]
pub struct Disk {
    hard_state: HardState,
    entries: Vec<Entry>,
    /// prefix_hashes[i] is the prefix hash of entries[..=i].
    prefix_hashes: Vec<u64>,
    /// Written, not yet durable, oldest first.
    pending: VecDeque<Write>,
    /// The sequence of the last write made.
    sequence_last: u64,
    /// The lowest index rewritten since `take_changed_from` last ran.
    changed_from: Option<LogIndex>,
}

impl Disk {
    pub fn new() -> Disk {
        Disk::default()
    }

    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// A disk that already holds `entries` and `hard_state`, synced: the
    /// data dir of another cluster, for the stale-member fault.
    pub fn with_image(hard_state: HardState, entries: &[Entry]) -> Disk {
        let mut disk = Disk {
            hard_state,
            ..Disk::default()
        };
        disk.append(entries);
        disk.changed_from = None;
        disk
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.entries.len() as u64)
    }

    /// The prefix hash of the durable log up to `index` (0 for the empty
    /// prefix); None past the end.
    pub fn prefix_hash(&self, index: LogIndex) -> Option<u64> {
        match index.0 {
            0 => Some(0),
            index => self.prefix_hashes.get(index as usize - 1).copied(),
        }
    }

    /// The lowest index made durable since the last call, if any.
    pub fn take_changed_from(&mut self) -> Option<LogIndex> {
        self.changed_from.take()
    }

    /// Whether an unsynced write changes the term: a new hard state, or
    /// entries of a term newer than the durable log's last. Crashes in that
    /// window are the ones that test what a node may promise before a sync.
    pub fn has_pending_term_change(&self) -> bool {
        let durable_term = self.entries.last().map_or(Term(0), |entry| entry.term);
        self.pending.iter().any(|write| {
            write.hard_state.is_some()
                || write.entries.iter().any(|entry| entry.term > durable_term)
        })
    }

    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes a Ready's records; returns the write's sequence.
    pub fn write(&mut self, hard_state: Option<HardState>, entries: Vec<Entry>) -> u64 {
        assert!(
            self.pending.len() < WRITES_PENDING_MAX,
            "disk queue overflow"
        );
        self.sequence_last += 1;
        self.pending.push_back(Write {
            hard_state,
            entries,
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
        debug_assert!(
            self.pending
                .iter()
                .filter_map(|write| write.durable_at_ms)
                .collect::<Vec<_>>()
                .windows(2)
                .all(|pair| pair[0] <= pair[1]),
            "syncs complete out of order"
        );
    }

    /// Makes durable what syncs completed by `now_ms`. Returns whether
    /// anything became durable.
    pub fn settle(&mut self, now_ms: u64) -> bool {
        let mut changed = false;
        while self
            .pending
            .front()
            .is_some_and(|write| write.durable_at_ms.is_some_and(|at| at <= now_ms))
        {
            let write = self.pending.pop_front().expect("front exists");
            if let Some(hard_state) = write.hard_state {
                self.hard_state = hard_state;
            }
            self.append(&write.entries);
            changed = true;
        }
        changed
    }

    /// The node crashed at `now_ms`: what was durable by then stays; of the
    /// rest, a random prefix of the records survives (a torn tail).
    pub fn crash(&mut self, now_ms: u64, rng: &mut Rng) -> TornTail {
        self.settle(now_ms);
        let records_total: u64 = self.pending.iter().map(record_count).sum();
        let records_kept = rng.range_inclusive(0, records_total);
        self.crash_keeping(records_kept)
    }

    /// The power went at `now_ms`: the disk's volatile cache is gone with
    /// everything not durable by then.
    pub fn lose_unsynced(&mut self, now_ms: u64) -> TornTail {
        self.settle(now_ms);
        self.crash_keeping(0)
    }

    fn crash_keeping(&mut self, records_kept: u64) -> TornTail {
        let pending = std::mem::take(&mut self.pending);
        let records_total: u64 = pending.iter().map(record_count).sum();
        assert!(records_kept <= records_total);
        let mut records_left = records_kept;
        for write in pending {
            if let Some(hard_state) = write.hard_state {
                if records_left == 0 {
                    break;
                }
                self.hard_state = hard_state;
                records_left -= 1;
            }
            let kept = (records_left as usize).min(write.entries.len());
            self.append(&write.entries[..kept]);
            records_left -= kept as u64;
            if kept < write.entries.len() {
                break;
            }
        }
        TornTail {
            records_kept,
            records_lost: records_total - records_kept,
        }
    }

    /// Appends consecutive entries, replacing the stored suffix from the
    /// first one's index.
    fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        assert!(
            first.index.0 >= 1 && first.index <= self.last_index().next(),
            "write at {} leaves a gap after stored last index {}",
            first.index,
            self.last_index()
        );
        let changed_from = self
            .changed_from
            .map_or(first.index, |from| from.min(first.index));
        self.changed_from = Some(changed_from);
        let keep = first.index.0 as usize - 1;
        self.entries.truncate(keep);
        self.prefix_hashes.truncate(keep);
        for entry in entries {
            assert_eq!(
                entry.index,
                self.last_index().next(),
                "write not consecutive"
            );
            let previous = self.prefix_hashes.last().copied().unwrap_or(0);
            self.prefix_hashes.push(prefix_hash(previous, entry));
            self.entries.push(entry.clone());
        }
    }
}

fn record_count(write: &Write) -> u64 {
    u64::from(write.hard_state.is_some()) + write.entries.len() as u64
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
        assert_eq!(disk.entries()[2].term, Term(2));
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
}
