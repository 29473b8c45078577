//! The log as the core sees it: every entry in memory, plus the watermarks
//! that say how much is durable, committed and applied.

use super::types::{Entry, EntryKind, LogIndex, Term};

#[derive(Debug)]
pub struct RaftLog {
    /// `entries[i]` has index `i + 1`; there is no compaction yet.
    entries: Vec<Entry>,
    /// Invariant: commit_index <= last_index.
    commit_index: LogIndex,
    /// Invariant: last_applied <= commit_index. It may pass persisted_index:
    /// a committed entry is durable on a majority, so it may be applied
    /// before this node's own copy is (a leader whose sync is still running,
    /// a follower that learns the commit with the entries).
    last_applied: LogIndex,
    /// Entries up to here are durable. Invariant: persisted_index < unstable_from.
    persisted_index: LogIndex,
    /// First entry not yet handed to storage.
    unstable_from: LogIndex,
}

impl RaftLog {
    /// A log restored from storage: everything given is already durable.
    pub fn new(entries: Vec<Entry>) -> RaftLog {
        for (offset, entry) in entries.iter().enumerate() {
            assert_eq!(entry.index.0, offset as u64 + 1, "restored log has a gap");
        }
        let last = LogIndex(entries.len() as u64);
        RaftLog {
            entries,
            commit_index: LogIndex(0),
            last_applied: LogIndex(0),
            persisted_index: last,
            unstable_from: last.next(),
        }
    }

    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.entries.len() as u64)
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(Term(0), |entry| entry.term)
    }

    pub fn commit_index(&self) -> LogIndex {
        self.commit_index
    }

    pub fn last_applied(&self) -> LogIndex {
        self.last_applied
    }

    pub fn persisted_index(&self) -> LogIndex {
        self.persisted_index
    }

    /// Term of the entry at `index`; index 0 has term 0; None past the end.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index.0 == 0 {
            return Some(Term(0));
        }
        self.entry(index).map(|entry| entry.term)
    }

    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        let offset = usize::try_from(index.0.checked_sub(1)?).ok()?;
        self.entries.get(offset)
    }

    /// Whether this log begins with a cluster's Bootstrap entry (a log
    /// written before cluster ids, or built by hand in a test, does not).
    pub fn first_is_bootstrap(&self) -> bool {
        self.entries
            .first()
            .is_some_and(|entry| entry.kind == EntryKind::Bootstrap)
    }

    /// The index of the first command entry, or the one after the log.
    /// Costs the leading no-ops: only asked while a node is not bound to
    /// its cluster, when the log is young.
    pub fn first_command_index(&self) -> LogIndex {
        self.entries
            .iter()
            .find(|entry| entry.kind == EntryKind::Command)
            .map_or(self.last_index().next(), |entry| entry.index)
    }

    /// The AppendEntries consistency check (§5.3; Figure 2, AppendEntries
    /// receiver, step 2): we hold an entry at `index` of `term`.
    pub fn matches(&self, index: LogIndex, term: Term) -> bool {
        self.term_at(index) == Some(term)
    }

    /// §5.4.1: a candidate's log is at least as up-to-date as ours.
    pub fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// The leader appends a new entry of its own term. The payload is copied
    /// once, here; everything downstream shares it.
    pub fn append_new(&mut self, term: Term, kind: EntryKind, data: &[u8]) -> LogIndex {
        assert!(term >= self.last_term(), "term going backwards in the log");
        let index = self.last_index().next();
        self.entries.push(Entry {
            term,
            index,
            kind,
            data: data.into(),
        });
        index
    }

    /// A follower takes the entries that follow a matching `prev_index`.
    /// Entries it already has are kept; only a conflicting suffix is cut
    /// (Figure 2, AppendEntries receiver steps 3 and 4). Returns the index of
    /// the last entry of the request.
    pub fn append_from_leader(&mut self, prev_index: LogIndex, entries: Vec<Entry>) -> LogIndex {
        let last_new = LogIndex(prev_index.0 + entries.len() as u64);
        for entry in entries {
            match self.term_at(entry.index) {
                Some(term) if term == entry.term => continue,
                Some(_) => self.truncate_from(entry.index),
                None => {}
            }
            assert_eq!(entry.index, self.last_index().next(), "append leaves a gap");
            self.entries.push(entry);
        }
        last_new
    }

    /// The planted bug `TruncateOnMatchingAppend`: cut after `prev_index`
    /// without the safety check, hiding the damage from the local asserts
    /// so that only the simulator's checkers can find it.
    pub fn planted_cut_after(&mut self, prev_index: LogIndex) {
        if prev_index >= self.last_index() {
            return;
        }
        self.entries.truncate(prev_index.0 as usize);
        self.unstable_from = self.unstable_from.min(prev_index.next());
        self.persisted_index = self.persisted_index.min(prev_index);
        self.commit_index = self.commit_index.min(prev_index);
        self.last_applied = self.last_applied.min(prev_index);
    }

    /// Drops the whole log, which must hold nothing committed: the node's
    /// first entry turned out not to be its cluster's.
    pub fn truncate_all_uncommitted(&mut self) {
        self.truncate_from(LogIndex(1));
    }

    fn truncate_from(&mut self, index: LogIndex) {
        assert!(
            index > self.commit_index,
            "truncating committed entry {index} (commit {})",
            self.commit_index
        );
        self.entries.truncate(index.prev().0 as usize);
        self.unstable_from = self.unstable_from.min(index);
        self.persisted_index = self.persisted_index.min(index.prev());
    }

    /// Up to `count_max` entries from `from`, stopping before `size_max`
    /// bytes (at least one entry if any).
    pub fn entries_from(&self, from: LogIndex, count_max: usize, size_max: usize) -> Vec<Entry> {
        let mut batch = Vec::new();
        let mut size = 0;
        let mut index = from;
        while let Some(entry) = self.entry(index) {
            if batch.len() == count_max
                || (!batch.is_empty() && size + entry.size_bytes() > size_max)
            {
                break;
            }
            size += entry.size_bytes();
            batch.push(entry.clone());
            index = index.next();
        }
        batch
    }

    /// Entries not yet handed to storage; the first may be at or below the
    /// storage's last index, which tells it to cut its suffix first.
    pub fn take_unstable(&mut self) -> Vec<Entry> {
        let from = self.unstable_from;
        self.unstable_from = self.last_index().next();
        self.entries_from(from, usize::MAX, usize::MAX)
    }

    pub fn has_unstable(&self) -> bool {
        self.unstable_from <= self.last_index()
    }

    /// Storage made everything up to (index, term) durable. Ignored if that
    /// entry has since been replaced.
    pub fn persisted(&mut self, index: LogIndex, term: Term) {
        if self.matches(index, term) && index < self.unstable_from && index > self.persisted_index {
            self.persisted_index = index;
        }
    }

    pub fn commit_to(&mut self, index: LogIndex) -> bool {
        assert!(index <= self.last_index(), "commit {index} beyond the log");
        if index <= self.commit_index {
            return false;
        }
        self.commit_index = index;
        true
    }

    /// Committed entries not yet applied (at most `count_max`), marked
    /// applied as they are handed out.
    pub fn take_committed(&mut self, count_max: usize) -> Vec<Entry> {
        let applicable = self.commit_index;
        if applicable <= self.last_applied {
            return Vec::new();
        }
        // Bound the count before copying, not after: the batch is built
        // once, with no second Vec to trim it.
        let applicable_count = usize::try_from(applicable.0 - self.last_applied.0)
            .map_or(count_max, |count| count.min(count_max));
        let batch = self.entries_from(self.last_applied.next(), applicable_count, usize::MAX);
        if let Some(last) = batch.last() {
            self.last_applied = last.index;
        }
        batch
    }

    /// First index holding `term`, searching at or below `at` (terms never
    /// decrease along the log, so a binary search finds it).
    pub fn first_index_of_term(&self, term: Term, at: LogIndex) -> LogIndex {
        let limit = (at.0 as usize).min(self.entries.len());
        let offset = self.entries[..limit].partition_point(|entry| entry.term < term);
        LogIndex(offset as u64 + 1)
    }

    /// Last index holding `term`, if the log has any entry of it.
    pub fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        let end = self.entries.partition_point(|entry| entry.term <= term);
        let entry = self.entries[..end].last()?;
        (entry.term == term).then_some(entry.index)
    }

    /// Expensive structural checks, for debug builds and the simulator.
    pub fn check_invariants(&self) {
        assert!(self.commit_index <= self.last_index());
        assert!(self.last_applied <= self.commit_index);
        assert!(self.persisted_index < self.unstable_from);
        for pair in self.entries.windows(2) {
            assert_eq!(pair[1].index, pair[0].index.next());
            assert!(pair[1].term >= pair[0].term, "terms decrease in the log");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with_terms(terms: &[u64]) -> RaftLog {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(offset, &term)| Entry::command(offset as u64 + 1, term, b"x"))
            .collect();
        RaftLog::new(entries)
    }

    #[test]
    fn matching_entries_are_never_truncated() {
        let mut log = log_with_terms(&[1, 1, 2, 2]);
        let last = log.append_from_leader(LogIndex(1), vec![Entry::command(2, 1, b"x")]);
        assert_eq!(last, LogIndex(2));
        assert_eq!(
            log.last_index(),
            LogIndex(4),
            "a stale, matching request must not cut the log"
        );
    }

    #[test]
    fn conflicting_suffix_is_replaced() {
        let mut log = log_with_terms(&[1, 1, 2, 2]);
        log.append_from_leader(LogIndex(2), vec![Entry::command(3, 3, b"x")]);
        assert_eq!(log.last_index(), LogIndex(3));
        assert_eq!(log.term_at(LogIndex(3)), Some(Term(3)));
        let unstable = log.take_unstable();
        assert_eq!(unstable.len(), 1);
        assert_eq!(unstable[0].index, LogIndex(3));
        assert_eq!(log.persisted_index(), LogIndex(2));
    }

    #[test]
    #[should_panic(expected = "truncating committed")]
    fn truncating_committed_entries_stops_the_node() {
        let mut log = log_with_terms(&[1, 1, 2]);
        log.commit_to(LogIndex(3));
        log.append_from_leader(LogIndex(2), vec![Entry::command(3, 3, b"x")]);
    }

    #[test]
    fn term_searches() {
        let log = log_with_terms(&[1, 1, 3, 3, 3, 5]);
        assert_eq!(log.first_index_of_term(Term(3), LogIndex(5)), LogIndex(3));
        assert_eq!(log.last_index_of_term(Term(3)), Some(LogIndex(5)));
        assert_eq!(log.last_index_of_term(Term(2)), None);
        assert_eq!(log.last_index_of_term(Term(5)), Some(LogIndex(6)));
    }

    #[test]
    fn committed_entries_are_applied_before_they_are_durable_here() {
        let mut log = log_with_terms(&[1, 1]);
        log.append_new(Term(1), EntryKind::Command, &[]);
        log.commit_to(LogIndex(2));
        assert_eq!(log.take_committed(100).len(), 2);
        log.commit_to(LogIndex(3));
        let applied = log.take_committed(100);
        assert_eq!(applied.len(), 1, "committed means durable on a majority");
        assert_eq!(log.persisted_index(), LogIndex(2));
        log.take_unstable();
        log.persisted(LogIndex(3), Term(1));
        assert!(log.take_committed(100).is_empty());
        assert_eq!(log.last_applied(), LogIndex(3));
        log.check_invariants();
    }

    #[test]
    fn batches_respect_count_and_size() {
        let log = log_with_terms(&[1; 10]);
        assert_eq!(log.entries_from(LogIndex(1), 3, usize::MAX).len(), 3);
        let one_entry_size = Entry::command(1, 1, b"x").size_bytes();
        assert_eq!(
            log.entries_from(LogIndex(1), 100, one_entry_size * 2).len(),
            2
        );
        assert_eq!(
            log.entries_from(LogIndex(1), 100, 1).len(),
            1,
            "always at least one"
        );
        assert!(log.entries_from(LogIndex(11), 100, 100).is_empty());
    }
}
