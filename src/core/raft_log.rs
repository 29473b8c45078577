//! The log as the core sees it: the entries above its base in memory, plus
//! the watermarks that say how much is durable, committed and applied.
//!
//! The base is the last entry no longer held: the log was compacted up to
//! it (`compact_to`), or a snapshot covers it (`restored`,
//! `install_snapshot`). Below the base only the snapshot knows the state;
//! at the base the log still knows the term (for the AppendEntries
//! consistency check of the entry after it, §5.3) and which cluster the
//! compacted prefix belonged to (its Bootstrap entry is gone).

use std::collections::VecDeque;
use std::sync::Arc;

use super::membership::Configuration;
use super::types::{ClusterId, Entry, EntryKind, LogIndex, SnapshotMeta, Term};

/// A configuration and the entry that carried it (index 0 for the start
/// configuration, which no entry carries).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracked {
    pub index: LogIndex,
    pub term: Term,
    pub config: Arc<Configuration>,
}

/// The configurations the log holds (dissertation §4.1): each is in effect
/// from the moment it is appended, committed or not, and a truncation that
/// drops it puts the one before back in effect. Only the latest one at or
/// below last_applied and those above it are kept: nothing can take the
/// applied ones away.
#[derive(Debug)]
pub struct ConfigTrack {
    /// The latest configuration at or below last_applied: the start
    /// configuration, or one a log entry carried.
    base: Tracked,
    /// Configurations of entries above last_applied, ascending by index.
    /// Bound: one change is proposed only once the last committed (issue
    /// 14's rule R1), so this holds 0 to 2 in practice; the log's own
    /// length bounds it in any case.
    later: VecDeque<Tracked>,
    /// Bumped on every change of `current()`, so a caller can tell.
    version: u64,
    /// False once the log's configurations were found to disagree with
    /// the start configuration (`ignore_stored_configurations`): then only
    /// the start configuration is in effect, as before configurations
    /// were logged.
    follows_log: bool,
}

impl ConfigTrack {
    fn new(start: Arc<Configuration>) -> ConfigTrack {
        let base = Tracked {
            index: LogIndex(0),
            term: Term(0),
            config: start,
        };
        ConfigTrack {
            base,
            later: VecDeque::new(),
            version: 0,
            follows_log: true,
        }
    }

    /// Whether the configurations the log carries are in effect.
    pub fn follows_log(&self) -> bool {
        self.follows_log
    }

    /// The configuration in effect: the latest the log holds.
    pub fn current(&self) -> &Tracked {
        self.later.back().unwrap_or(&self.base)
    }

    /// The latest configuration at or below `index` that is still known
    /// (at or above the base): the committed one for `index` = commit.
    pub fn at(&self, index: LogIndex) -> &Tracked {
        let held = self
            .later
            .iter()
            .rev()
            .find(|tracked| tracked.index <= index);
        held.unwrap_or(&self.base)
    }

    /// The configuration entry above `commit`, if any.
    pub fn uncommitted(&self, commit: LogIndex) -> Option<&Tracked> {
        self.later.back().filter(|tracked| tracked.index > commit)
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// An entry joined the log: track what it carries. Its bytes were
    /// checked where they came in (`well_formed`, `Raft::restore`, or this
    /// node's own encoding), so one that does not decode is a bug here.
    fn appended(&mut self, entry: &Entry) {
        if !self.follows_log {
            return;
        }
        let Some(decoded) = Configuration::of_entry(entry) else {
            return;
        };
        let config = decoded.unwrap_or_else(|error| {
            panic!("entry {} carries a bad configuration: {error}", entry.index)
        });
        assert!(
            entry.index > self.current().index,
            "configurations out of order"
        );
        self.later.push_back(Tracked {
            index: entry.index,
            term: entry.term,
            config: Arc::new(config),
        });
        self.version += 1;
    }

    /// Entries from `index` on are gone (never applied ones): so are their
    /// configurations, and the one before is in effect again.
    fn truncated_from(&mut self, index: LogIndex) {
        assert!(
            self.base.index < index,
            "truncating an applied configuration"
        );
        let before = self.later.len();
        while self
            .later
            .back()
            .is_some_and(|tracked| tracked.index >= index)
        {
            self.later.pop_back();
        }
        if self.later.len() != before {
            self.version += 1;
        }
    }

    /// Entries up to `last_applied` were applied: their configurations
    /// can no longer go, and only the latest of them is needed.
    fn applied_to(&mut self, last_applied: LogIndex) {
        while self
            .later
            .front()
            .is_some_and(|tracked| tracked.index <= last_applied)
        {
            self.base = self.later.pop_front().expect("a front");
        }
    }

    /// A snapshot was installed up to `index`. The configurations of a
    /// kept suffix stay (those at or below `index` are applied now); a
    /// dropped log keeps only what was committed before, which any log of
    /// the cluster holds too. (The snapshot's own configuration takes over
    /// here once snapshots carry one.)
    fn installed(&mut self, index: LogIndex, suffix_kept: bool, commit_before: LogIndex) {
        if !suffix_kept {
            self.truncated_from(commit_before.next());
        }
        self.applied_to(index);
        self.version += 1;
    }

    fn check_invariants(&self, last_applied: LogIndex, last_index: LogIndex) {
        assert!(
            self.base.index <= last_applied,
            "base configuration unapplied"
        );
        let mut previous = self.base.index;
        for tracked in &self.later {
            assert!(tracked.index > previous, "configurations out of order");
            assert!(tracked.index > last_applied && tracked.index <= last_index);
            previous = tracked.index;
        }
    }
}

#[derive(Debug)]
pub struct RaftLog {
    /// `entries[i]` has index `base_index + 1 + i`. A deque: compaction
    /// drops from the front, and a Vec would move every entry left behind
    /// (hundreds of thousands while a paced snapshot is written).
    entries: VecDeque<Entry>,
    /// The last index no longer in `entries`; 0 for a log never compacted.
    /// Invariant: base_index <= last_applied (only applied entries, which
    /// a durable snapshot holds, are ever dropped).
    base_index: LogIndex,
    /// The term of the entry at `base_index` (0 at index 0).
    base_term: Term,
    /// The cluster the log's first entry (its Bootstrap) named, kept once
    /// that entry is compacted away; None while base_index is 0 (ask the
    /// entry) or for a log written before cluster ids.
    base_cluster_id: Option<ClusterId>,
    /// Invariant: base_index <= commit_index <= last_index.
    commit_index: LogIndex,
    /// Invariant: last_applied <= commit_index. It may pass persisted_index:
    /// a committed entry is durable on a majority, so it may be applied
    /// before this node's own copy is (a leader whose sync is still running,
    /// a follower that learns the commit with the entries).
    last_applied: LogIndex,
    /// Entries up to here are durable. Invariant: persisted_index < unstable_from.
    persisted_index: LogIndex,
    /// First entry not yet handed to storage. Invariant: above base_index.
    unstable_from: LogIndex,
    /// The configurations the entries carry. Invariant: one for each
    /// configuration-carrying entry above last_applied.
    configs: ConfigTrack,
}

impl RaftLog {
    /// A log restored from storage, never compacted: everything given is
    /// already durable. Its start configuration: three voters.
    #[cfg(test)]
    pub fn new(entries: Vec<Entry>) -> RaftLog {
        RaftLog::restored(Arc::new(Configuration::numbered(3)), None, entries)
    }

    /// A log restored from storage at start-up: the newest durable
    /// snapshot, if any, and the entries storage holds, all durable. The
    /// entries may begin below the snapshot (the trailing log kept for slow
    /// followers); then the first of them becomes the base, since only its
    /// term, not its predecessor's, is known. Entries that do not hold the
    /// snapshot's last entry go, as `install_snapshot` drops them (a crash
    /// may come between installing a snapshot and dropping the log it
    /// replaced); only a gap after the snapshot is damage. Commit and
    /// applied start at the snapshot's index: the state machine was
    /// restored from it. The configuration in effect is the latest the
    /// entries carry, else `start`; the caller checked that every
    /// configuration they carry decodes.
    pub fn restored(
        start: Arc<Configuration>,
        snapshot: Option<&SnapshotMeta>,
        entries: Vec<Entry>,
    ) -> RaftLog {
        let (snapshot_index, snapshot_term) =
            snapshot.map_or((LogIndex(0), Term(0)), |meta| (meta.index, meta.term));
        let mut log = RaftLog {
            entries: entries.into(),
            base_index: snapshot_index,
            base_term: snapshot_term,
            base_cluster_id: snapshot.and_then(|meta| meta.cluster_id),
            commit_index: snapshot_index,
            last_applied: snapshot_index,
            persisted_index: LogIndex(0),
            unstable_from: LogIndex(0),
            configs: ConfigTrack::new(start),
        };
        if let Some(first) = log.entries.front() {
            if first.index <= snapshot_index {
                let held = log
                    .entries
                    .iter()
                    .find(|entry| entry.index == snapshot_index);
                if held.is_some_and(|entry| entry.term == snapshot_term) {
                    log.base_index = first.index;
                    log.base_term = first.term;
                    log.entries.pop_front();
                } else {
                    log.entries.clear();
                }
            }
        }
        for (offset, entry) in log.entries.iter().enumerate() {
            let expected = log.base_index.0 + 1 + offset as u64;
            assert_eq!(entry.index.0, expected, "restored log has a gap");
        }
        log.persisted_index = log.last_index();
        log.unstable_from = log.last_index().next();
        for entry in &log.entries {
            log.configs.appended(entry);
        }
        log.configs.applied_to(log.last_applied);
        log
    }

    /// The configurations this log holds; `current()` is in effect.
    pub fn configs(&self) -> &ConfigTrack {
        &self.configs
    }

    /// From now on only `start` is in effect, whatever the entries carry
    /// (`Event::StoredConfigurationIgnored` says why).
    pub fn ignore_stored_configurations(&mut self, start: Arc<Configuration>) {
        let version = self.configs.version + 1;
        self.configs = ConfigTrack {
            version,
            follows_log: false,
            ..ConfigTrack::new(start)
        };
    }

    /// The first index still held; `base_index + 1`.
    pub fn first_index(&self) -> LogIndex {
        self.base_index.next()
    }

    /// The last index no longer held (0 if the log was never compacted).
    pub fn base_index(&self) -> LogIndex {
        self.base_index
    }

    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.base_index.0 + self.entries.len() as u64)
    }

    /// The last entry's term; with no entries, the base's.
    pub fn last_term(&self) -> Term {
        self.entries
            .back()
            .map_or(self.base_term, |entry| entry.term)
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

    /// Term of the entry at `index`: the base's at the base (index 0 has
    /// term 0); None below it (compacted) and past the end.
    pub fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.base_index {
            return Some(self.base_term);
        }
        self.entry(index).map(|entry| entry.term)
    }

    /// The entry at `index`, if held: above the base, up to the last.
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.entries.get(self.offset_of(index)?)
    }

    /// Where `index` sits in `entries`, if above the base.
    fn offset_of(&self, index: LogIndex) -> Option<usize> {
        let above_base = index.0.checked_sub(self.base_index.0)?;
        usize::try_from(above_base.checked_sub(1)?).ok()
    }

    /// Whether this log begins with a cluster's Bootstrap entry (a log
    /// written before cluster ids, or built by hand in a test, does not).
    /// Once that entry is compacted, the base remembers what it named.
    pub fn first_is_bootstrap(&self) -> bool {
        if self.base_index > LogIndex(0) {
            return self.base_cluster_id.is_some();
        }
        self.entries
            .front()
            .is_some_and(|entry| entry.kind == EntryKind::Bootstrap)
    }

    /// The cluster this log's first entry named, held or compacted.
    pub fn first_cluster_id(&self) -> Option<ClusterId> {
        if self.base_index > LogIndex(0) {
            return self.base_cluster_id;
        }
        self.entry(LogIndex(1)).and_then(ClusterId::of_bootstrap)
    }

    /// The index of the first command entry, or the one after the log.
    /// Costs the leading no-ops: only asked while a node is not bound to
    /// its cluster, when the log is young. A compacted log may have had its
    /// first command below the base, which is committed: it answers the
    /// first index, which counts no unbound node past what is committed.
    pub fn first_command_index(&self) -> LogIndex {
        if self.base_index > LogIndex(0) {
            return self.first_index();
        }
        self.entries
            .iter()
            .find(|entry| entry.kind == EntryKind::Command)
            .map_or(self.last_index().next(), |entry| entry.index)
    }

    /// The AppendEntries consistency check (§5.3; Figure 2, AppendEntries
    /// receiver, step 2): we hold an entry at `index` of `term`. False below
    /// the base, where the term is gone: callers treat a compacted (so
    /// committed) prefix before asking.
    pub fn matches(&self, index: LogIndex, term: Term) -> bool {
        self.term_at(index) == Some(term)
    }

    /// §5.4.1: a candidate's log is at least as up-to-date as ours (an
    /// empty tail above a snapshot ends at the snapshot's last entry).
    pub fn is_up_to_date(&self, last_index: LogIndex, last_term: Term) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// The leader appends a new entry of its own term. The payload is copied
    /// once, here; everything downstream shares it.
    pub fn append_new(&mut self, term: Term, kind: EntryKind, data: &[u8]) -> LogIndex {
        assert!(term >= self.last_term(), "term going backwards in the log");
        let index = self.last_index().next();
        let entry = Entry {
            term,
            index,
            kind,
            data: data.into(),
        };
        self.configs.appended(&entry);
        self.entries.push_back(entry);
        index
    }

    /// A follower takes the entries that follow a matching `prev_index`
    /// (at or above the base: `matches` said so). Entries it already has
    /// are kept; only a conflicting suffix is cut (Figure 2, AppendEntries
    /// receiver steps 3 and 4). Returns the index of the last entry of the
    /// request.
    pub fn append_from_leader(&mut self, prev_index: LogIndex, entries: Vec<Entry>) -> LogIndex {
        assert!(prev_index >= self.base_index, "append below the base");
        let last_new = LogIndex(prev_index.0 + entries.len() as u64);
        for entry in entries {
            match self.term_at(entry.index) {
                Some(term) if term == entry.term => continue,
                Some(_) => self.truncate_from(entry.index),
                None => {}
            }
            assert_eq!(entry.index, self.last_index().next(), "append leaves a gap");
            self.configs.appended(&entry);
            self.entries.push_back(entry);
        }
        last_new
    }

    /// The planted bug `TruncateOnMatchingAppend`: cut after `prev_index`
    /// without the safety check, hiding the damage from the local asserts
    /// so that only the simulator's checkers can find it.
    pub fn planted_cut_after(&mut self, prev_index: LogIndex) {
        if prev_index >= self.last_index() || prev_index < self.base_index {
            return;
        }
        self.entries
            .truncate((prev_index.0 - self.base_index.0) as usize);
        self.unstable_from = self.unstable_from.min(prev_index.next());
        self.persisted_index = self.persisted_index.min(prev_index);
        self.commit_index = self.commit_index.min(prev_index);
        self.last_applied = self.last_applied.min(prev_index);
        // The bug may cut applied entries too. The configuration in
        // effect then stays as it was, so that the damage is the log's
        // alone and no local assert trips over the bookkeeping.
        let configs = &mut self.configs;
        configs.base.index = configs.base.index.min(prev_index);
        configs.truncated_from(prev_index.next());
    }

    /// Drops the whole log, which must hold nothing committed: the node's
    /// first entry turned out not to be its cluster's.
    pub fn truncate_all_uncommitted(&mut self) {
        self.truncate_from(self.first_index());
    }

    fn truncate_from(&mut self, index: LogIndex) {
        assert!(
            index > self.commit_index,
            "truncating committed entry {index} (commit {})",
            self.commit_index
        );
        self.entries
            .truncate((index.prev().0 - self.base_index.0) as usize);
        self.unstable_from = self.unstable_from.min(index);
        self.persisted_index = self.persisted_index.min(index.prev());
        self.configs.truncated_from(index);
    }

    /// Drops the entries at and below `index`, which a durable snapshot
    /// covers (the caller's to check): they must be applied, or the state
    /// machine would never see them, and durable, or storage could be
    /// asked to write what is gone. At or below the base, nothing to do.
    pub fn compact_to(&mut self, index: LogIndex) {
        if index <= self.base_index {
            return;
        }
        assert!(
            index <= self.last_applied,
            "compacting to {index} past applied {}",
            self.last_applied
        );
        assert!(
            index <= self.persisted_index,
            "compacting to {index} past durable {}",
            self.persisted_index
        );
        self.drop_through(index);
    }

    /// The planted bug `CompactUnapplied`: compacts as far as the commit
    /// index, applied or not, and marks what it dropped applied, so the
    /// state machine silently misses those entries and no local assert
    /// notices: only the simulator's checkers can find it.
    pub fn planted_compact_unapplied(&mut self, index: LogIndex) {
        let index = index.max(self.commit_index.min(self.persisted_index));
        if index <= self.base_index || index > self.persisted_index {
            return;
        }
        self.drop_through(index);
        self.last_applied = self.last_applied.max(index);
        self.configs.applied_to(self.last_applied);
    }

    /// Moves the base up to `index`, which the log holds.
    fn drop_through(&mut self, index: LogIndex) {
        let term = self.term_at(index).expect("compacting past the end");
        self.base_cluster_id = self.first_cluster_id();
        let offset = self.offset_of(index).expect("above the base");
        self.entries.drain(..=offset);
        self.base_index = index;
        self.base_term = term;
    }

    /// A snapshot was installed: the state machine now holds everything up
    /// to `meta.index`. If the log holds that entry, the suffix after it
    /// agrees with the leader's log up to there and stays (a later
    /// AppendEntries cuts whatever conflicts after it); otherwise every
    /// entry goes, and so it does if the log began with another cluster's
    /// Bootstrap (an unbound node's, never committed), whose terms say
    /// nothing about the leader's log. Commit and applied move to the
    /// snapshot (applied only up: the caller refuses snapshots at or below
    /// it), and so does what is durable: the snapshot is. Returns whether
    /// the suffix was kept.
    pub fn install_snapshot(&mut self, meta: &SnapshotMeta) -> bool {
        let foreign = matches!(
            (self.first_cluster_id(), meta.cluster_id),
            (Some(ours), Some(theirs)) if ours != theirs
        );
        self.install_snapshot_of(meta, foreign)
    }

    /// The planted bug `InstallKeepsForeignLog`: installs as if every log
    /// were the snapshot's cluster's, so a log that began with another
    /// cluster's Bootstrap keeps its suffix when its terms agree by chance.
    pub fn planted_install_keeping_foreign_log(&mut self, meta: &SnapshotMeta) -> bool {
        self.install_snapshot_of(meta, false)
    }

    fn install_snapshot_of(&mut self, meta: &SnapshotMeta, foreign: bool) -> bool {
        if meta.index <= self.base_index {
            return true; // only the planted InstallOlderSnapshot gets here
        }
        let suffix_kept =
            !foreign && meta.index <= self.last_index() && self.matches(meta.index, meta.term);
        self.configs
            .installed(meta.index, suffix_kept, self.commit_index);
        if suffix_kept {
            if meta.index > self.base_index {
                let offset = self.offset_of(meta.index).expect("above the base");
                self.entries.drain(..=offset);
            }
        } else {
            self.entries.clear();
        }
        self.base_index = meta.index;
        self.base_term = meta.term;
        self.base_cluster_id = meta.cluster_id;
        self.commit_index = self.commit_index.max(meta.index);
        self.last_applied = self.last_applied.max(meta.index);
        if !suffix_kept {
            self.unstable_from = meta.index.next();
            self.persisted_index = meta.index;
        } else {
            self.unstable_from = self.unstable_from.max(meta.index.next());
            self.persisted_index = self.persisted_index.max(meta.index);
        }
        suffix_kept
    }

    /// Up to `count_max` entries from `from`, stopping before `size_max`
    /// bytes (at least one entry if any). Empty from at or below the base.
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
            self.configs.applied_to(self.last_applied);
        }
        batch
    }

    /// First index holding `term`, searching at or below `at` (terms never
    /// decrease along the log, so a binary search finds it). Never below
    /// the first index held: a term that began under the base is answered
    /// with the first index, a hint that is still safe to back off to.
    pub fn first_index_of_term(&self, term: Term, at: LogIndex) -> LogIndex {
        let held = at.0.saturating_sub(self.base_index.0);
        let limit =
            usize::try_from(held).map_or(self.entries.len(), |held| held.min(self.entries.len()));
        // Terms never decrease, so the prefix's partition point is the
        // whole log's, capped at the prefix.
        let offset = self
            .entries
            .partition_point(|entry| entry.term < term)
            .min(limit);
        LogIndex(self.base_index.0 + offset as u64 + 1)
    }

    /// Last index holding `term`, if the log has any entry of it (the base
    /// counts: its term is known).
    pub fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        let end = self.entries.partition_point(|entry| entry.term <= term);
        match end.checked_sub(1).and_then(|last| self.entries.get(last)) {
            Some(entry) => (entry.term == term).then_some(entry.index),
            None => {
                (self.base_index > LogIndex(0) && self.base_term == term).then_some(self.base_index)
            }
        }
    }

    /// Expensive structural checks, for debug builds and the simulator.
    pub fn check_invariants(&self) {
        assert!(self.commit_index <= self.last_index());
        assert!(self.last_applied <= self.commit_index);
        assert!(self.base_index <= self.last_applied, "compacted unapplied");
        assert!(self.persisted_index < self.unstable_from);
        assert!(self.unstable_from > self.base_index);
        if let Some(first) = self.entries.front() {
            assert_eq!(first.index, self.first_index());
            assert!(first.term >= self.base_term, "terms decrease in the log");
        }
        for (earlier, later) in self.entries.iter().zip(self.entries.iter().skip(1)) {
            assert_eq!(later.index, earlier.index.next());
            assert!(later.term >= earlier.term, "terms decrease in the log");
        }
        self.configs
            .check_invariants(self.last_applied, self.last_index());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log restored with the test start configuration (`RaftLog::new`'s).
    fn restored(snapshot: Option<&SnapshotMeta>, entries: Vec<Entry>) -> RaftLog {
        RaftLog::restored(Arc::new(Configuration::numbered(3)), snapshot, entries)
    }

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

    // ---- a log with a base ----------------------------------------------

    fn meta(index: u64, term: u64) -> SnapshotMeta {
        SnapshotMeta {
            index: LogIndex(index),
            term: Term(term),
            cluster_id: Some(ClusterId(9)),
            voters: Vec::new(),
        }
    }

    /// Entries `first..` of `terms`, the first being a Bootstrap of
    /// cluster 9 when `first` is 1.
    fn entries_from_index(first: u64, terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .zip(first..)
            .map(|(&term, index)| match index {
                1 => Entry {
                    kind: EntryKind::Bootstrap,
                    ..Entry::command(1, term, &ClusterId(9).to_bytes())
                },
                _ => Entry::command(index, term, b"x"),
            })
            .collect()
    }

    /// Entries 1..=terms.len(), all applied and durable.
    fn applied_log(terms: &[u64]) -> RaftLog {
        let mut log = RaftLog::new(entries_from_index(1, terms));
        log.commit_to(log.last_index());
        log.take_committed(usize::MAX);
        log
    }

    #[test]
    fn compaction_moves_the_base_and_keeps_offsets() {
        let mut log = applied_log(&[1, 1, 2, 2, 3, 3]);
        log.compact_to(LogIndex(4));
        log.check_invariants();
        assert_eq!(log.first_index(), LogIndex(5));
        assert_eq!(log.base_index(), LogIndex(4));
        assert_eq!(log.last_index(), LogIndex(6));
        assert_eq!(log.term_at(LogIndex(4)), Some(Term(2)), "the base's term");
        assert_eq!(log.term_at(LogIndex(3)), None, "compacted");
        assert_eq!(log.term_at(LogIndex(0)), None, "compacted too");
        assert!(log.entry(LogIndex(4)).is_none());
        assert_eq!(log.entry(LogIndex(5)).map(|e| e.index), Some(LogIndex(5)));
        assert!(log.matches(LogIndex(4), Term(2)));
        assert!(!log.matches(LogIndex(3), Term(2)));
        let batch = log.entries_from(LogIndex(5), 10, usize::MAX);
        assert_eq!(batch.len(), 2);
        assert!(log.entries_from(LogIndex(4), 10, usize::MAX).is_empty());
        log.compact_to(LogIndex(2));
        assert_eq!(
            log.first_index(),
            LogIndex(5),
            "compacting below is a no-op"
        );
    }

    #[test]
    fn compacted_log_remembers_its_cluster() {
        let mut log = applied_log(&[1, 1, 2]);
        assert!(log.first_is_bootstrap());
        assert_eq!(log.first_cluster_id(), Some(ClusterId(9)));
        log.compact_to(LogIndex(2));
        assert!(log.first_is_bootstrap(), "the Bootstrap is in the snapshot");
        assert_eq!(log.first_cluster_id(), Some(ClusterId(9)));
        assert_eq!(log.first_command_index(), LogIndex(3));
    }

    #[test]
    #[should_panic(expected = "past applied")]
    fn compacting_unapplied_entries_stops_the_node() {
        let mut log = RaftLog::new(entries_from_index(1, &[1, 1, 1]));
        log.commit_to(LogIndex(3));
        log.take_committed(2);
        log.compact_to(LogIndex(3));
    }

    #[test]
    #[should_panic(expected = "past durable")]
    fn compacting_entries_not_yet_durable_stops_the_node() {
        let mut log = applied_log(&[1, 1]);
        log.append_new(Term(1), EntryKind::Command, b"y");
        log.commit_to(LogIndex(3));
        log.take_committed(10);
        log.compact_to(LogIndex(3));
    }

    #[test]
    fn terms_and_searches_across_the_base() {
        let mut log = applied_log(&[1, 2, 2, 2, 3, 3, 5]);
        log.compact_to(LogIndex(3));
        assert_eq!(log.last_index_of_term(Term(2)), Some(LogIndex(4)));
        assert_eq!(log.last_index_of_term(Term(1)), None, "compacted away");
        assert_eq!(log.first_index_of_term(Term(3), LogIndex(6)), LogIndex(5));
        assert_eq!(
            log.first_index_of_term(Term(2), LogIndex(4)),
            LogIndex(4),
            "a term begun below the base starts, for the log, at its first index"
        );
        assert_eq!(log.first_index_of_term(Term(5), LogIndex(100)), LogIndex(7));
        log.compact_to(LogIndex(4));
        assert_eq!(
            log.last_index_of_term(Term(2)),
            Some(LogIndex(4)),
            "the base's term counts"
        );
        log.compact_to(LogIndex(7));
        assert_eq!(log.last_term(), Term(5), "an empty tail ends at the base");
        assert_eq!(log.last_index(), LogIndex(7));
        assert!(log.is_up_to_date(LogIndex(7), Term(5)));
        assert!(!log.is_up_to_date(LogIndex(6), Term(5)));
        assert!(!log.is_up_to_date(LogIndex(9), Term(4)));
    }

    #[test]
    fn appends_truncation_and_commits_work_above_the_base() {
        let mut log = applied_log(&[1, 1]);
        log.append_from_leader(LogIndex(2), vec![Entry::command(3, 2, b"x")]);
        log.compact_to(LogIndex(2));
        let last = log.append_from_leader(
            LogIndex(2),
            vec![Entry::command(3, 3, b"x"), Entry::command(4, 3, b"x")],
        );
        assert_eq!(last, LogIndex(4));
        assert_eq!(log.term_at(LogIndex(3)), Some(Term(3)), "conflict replaced");
        let unstable = log.take_unstable();
        assert_eq!(unstable.first().map(|e| e.index), Some(LogIndex(3)));
        log.persisted(LogIndex(4), Term(3));
        assert_eq!(log.persisted_index(), LogIndex(4));
        assert!(log.commit_to(LogIndex(4)));
        let applied = log.take_committed(10);
        assert_eq!(
            applied.iter().map(|e| e.index.0).collect::<Vec<_>>(),
            [3, 4]
        );
        log.check_invariants();
    }

    #[test]
    fn restored_from_a_snapshot_starts_committed_and_applied_at_it() {
        let log = restored(Some(&meta(10, 4)), entries_from_index(11, &[4, 5]));
        log.check_invariants();
        assert_eq!(log.first_index(), LogIndex(11));
        assert_eq!(log.last_index(), LogIndex(12));
        assert_eq!(log.commit_index(), LogIndex(10));
        assert_eq!(log.last_applied(), LogIndex(10));
        assert_eq!(log.persisted_index(), LogIndex(12));
        assert_eq!(log.term_at(LogIndex(10)), Some(Term(4)));
        assert_eq!(log.first_cluster_id(), Some(ClusterId(9)));
        let empty = restored(Some(&meta(10, 4)), Vec::new());
        assert_eq!(empty.last_index(), LogIndex(10));
        assert_eq!(empty.last_term(), Term(4));
        assert!(!empty.has_unstable());
    }

    #[test]
    fn restored_with_a_trailing_log_below_the_snapshot_keeps_it() {
        let entries = entries_from_index(7, &[3, 3, 4, 4, 4, 5]);
        let log = restored(Some(&meta(10, 4)), entries);
        log.check_invariants();
        assert_eq!(
            log.base_index(),
            LogIndex(7),
            "the first entry's term is known"
        );
        assert_eq!(log.term_at(LogIndex(7)), Some(Term(3)));
        assert_eq!(log.term_at(LogIndex(8)), Some(Term(3)));
        assert_eq!(log.last_index(), LogIndex(12));
        assert_eq!(log.last_applied(), LogIndex(10));
    }

    #[test]
    fn restored_log_that_does_not_hold_its_snapshot_is_dropped() {
        let conflicting = restored(Some(&meta(10, 4)), entries_from_index(9, &[4, 5, 5]));
        conflicting.check_invariants();
        assert_eq!(
            conflicting.last_index(),
            LogIndex(10),
            "as an install drops it"
        );
        assert_eq!(conflicting.last_term(), Term(4));
        let below = restored(Some(&meta(10, 4)), entries_from_index(5, &[3, 3]));
        assert_eq!(below.first_index(), LogIndex(11));
        assert_eq!(below.last_index(), LogIndex(10));
    }

    #[test]
    #[should_panic(expected = "has a gap")]
    fn restored_log_with_a_gap_after_its_snapshot_stops_the_node() {
        restored(Some(&meta(10, 4)), entries_from_index(12, &[4]));
    }

    #[test]
    fn install_keeps_a_matching_suffix() {
        let mut log = applied_log(&[1, 1]);
        log.append_from_leader(
            LogIndex(2),
            entries_from_index(3, &[2, 2, 3, 3]), // 3..=6, not committed
        );
        log.take_unstable();
        log.persisted(LogIndex(6), Term(3));
        assert!(log.install_snapshot(&meta(4, 2)));
        log.check_invariants();
        assert_eq!(log.first_index(), LogIndex(5));
        assert_eq!(log.last_index(), LogIndex(6), "the suffix after it stays");
        assert_eq!(log.commit_index(), LogIndex(4));
        assert_eq!(log.last_applied(), LogIndex(4));
        assert_eq!(log.persisted_index(), LogIndex(6));
        assert!(!log.has_unstable());
    }

    #[test]
    fn install_drops_a_conflicting_log() {
        let mut log = applied_log(&[1, 1]);
        log.append_from_leader(LogIndex(2), entries_from_index(3, &[2, 2, 2]));
        assert!(!log.install_snapshot(&meta(4, 3)), "term 2 at 4, not 3");
        log.check_invariants();
        assert_eq!(log.last_index(), LogIndex(4));
        assert_eq!(log.last_term(), Term(3));
        assert!(
            log.entry(LogIndex(5)).is_none(),
            "nothing after it survives"
        );
        assert_eq!(log.commit_index(), LogIndex(4));
        assert_eq!(log.last_applied(), LogIndex(4));
        assert_eq!(log.persisted_index(), LogIndex(4));
        assert!(!log.has_unstable(), "dropped entries are not written");
    }

    #[test]
    fn install_drops_another_clusters_log_even_where_terms_agree() {
        let mut log = RaftLog::new(entries_from_index(1, &[1, 1, 1]));
        let mut foreign = meta(2, 1);
        foreign.cluster_id = Some(ClusterId(8));
        assert!(!log.install_snapshot(&foreign));
        log.check_invariants();
        assert_eq!(log.last_index(), LogIndex(2));
        assert_eq!(log.first_cluster_id(), Some(ClusterId(8)));
    }

    #[test]
    fn planted_install_keeps_another_clusters_log_where_terms_agree() {
        let mut log = RaftLog::new(entries_from_index(1, &[1, 1, 1]));
        let mut foreign = meta(2, 1);
        foreign.cluster_id = Some(ClusterId(8));
        assert!(log.planted_install_keeping_foreign_log(&foreign));
        log.check_invariants();
        assert_eq!(log.last_index(), LogIndex(3), "cluster 9's entry 3 stays");
        assert_eq!(log.first_cluster_id(), Some(ClusterId(8)));
    }

    #[test]
    fn install_past_the_end_drops_the_log() {
        let mut log = applied_log(&[1, 1]);
        assert!(!log.install_snapshot(&meta(9, 2)));
        log.check_invariants();
        assert_eq!(log.first_index(), LogIndex(10));
        assert_eq!(log.last_index(), LogIndex(9));
        assert_eq!(log.term_at(LogIndex(9)), Some(Term(2)));
        assert_eq!(log.first_cluster_id(), Some(ClusterId(9)));
    }

    #[test]
    fn planted_compaction_skips_unapplied_entries_without_tripping_asserts() {
        let mut log = RaftLog::new(entries_from_index(1, &[1, 1, 1, 1]));
        log.commit_to(LogIndex(4));
        log.take_committed(1);
        log.planted_compact_unapplied(LogIndex(1));
        log.check_invariants();
        assert_eq!(log.base_index(), LogIndex(4));
        assert!(log.take_committed(10).is_empty(), "2..=4 are never applied");
    }
}

#[cfg(test)]
mod config_track_tests {
    use super::*;
    use crate::core::membership::Change;

    fn start() -> Arc<Configuration> {
        Arc::new(Configuration::numbered(3))
    }

    /// The start configuration with a learner added, and so on: one
    /// distinct configuration per `step`.
    fn changed(step: u16) -> Configuration {
        let mut configuration = (*start()).clone();
        for tag in 0..=step {
            let name = format!("l{tag}");
            let address = format!("127.0.0.1:{}", 7000 + tag)
                .parse()
                .expect("address");
            let change = Change::AddLearner { name, address };
            configuration = configuration
                .apply(&change, LogIndex(0), Term(0))
                .expect("adds");
        }
        configuration
    }

    fn config_entry(index: u64, term: u64, configuration: &Configuration) -> Entry {
        Entry {
            kind: EntryKind::Configuration,
            ..Entry::command(index, term, &configuration.to_bytes())
        }
    }

    /// Index 1 a Bootstrap with the start configuration, then commands.
    fn bootstrap(term: u64) -> Entry {
        let payload = start().bootstrap_payload(ClusterId(9));
        Entry {
            kind: EntryKind::Bootstrap,
            ..Entry::command(1, term, &payload)
        }
    }

    fn current(log: &RaftLog) -> (LogIndex, Configuration) {
        let tracked = log.configs().current();
        (tracked.index, (*tracked.config).clone())
    }

    #[test]
    fn a_configuration_is_in_effect_once_appended() {
        let mut log = RaftLog::restored(start(), None, Vec::new());
        assert_eq!(current(&log), (LogIndex(0), (*start()).clone()));
        log.append_new(
            Term(1),
            EntryKind::Bootstrap,
            &start().bootstrap_payload(ClusterId(9)),
        );
        assert_eq!(current(&log).0, LogIndex(1), "the Bootstrap's");
        log.append_new(Term(1), EntryKind::Command, b"x");
        let version = log.configs().version();
        log.append_new(Term(1), EntryKind::Configuration, &changed(0).to_bytes());
        assert_eq!(
            current(&log),
            (LogIndex(3), changed(0)),
            "not committed yet"
        );
        assert_eq!(log.configs().version(), version + 1);
        assert_eq!(
            log.configs().uncommitted(LogIndex(0)).map(|t| t.index),
            Some(LogIndex(3))
        );
        log.check_invariants();
    }

    #[test]
    fn an_uncommitted_configuration_truncated_rolls_back() {
        let mut log = RaftLog::new(vec![bootstrap(1), Entry::command(2, 1, b"x")]);
        log.commit_to(LogIndex(2));
        log.take_committed(10);
        log.append_from_leader(
            LogIndex(2),
            vec![
                config_entry(3, 2, &changed(0)),
                config_entry(4, 2, &changed(1)),
            ],
        );
        assert_eq!(current(&log), (LogIndex(4), changed(1)));
        let version = log.configs().version();
        // A new leader's log has a command at 4: the second change goes.
        log.append_from_leader(LogIndex(3), vec![Entry::command(4, 3, b"y")]);
        assert_eq!(current(&log), (LogIndex(3), changed(0)), "the one before");
        assert_eq!(log.configs().version(), version + 1);
        // And one with a command at 3 drops the first, back to the Bootstrap's.
        log.append_from_leader(LogIndex(2), vec![Entry::command(3, 4, b"z")]);
        assert_eq!(current(&log), (LogIndex(1), (*start()).clone()));
        log.check_invariants();
    }

    #[test]
    fn commit_and_apply_fold_configurations_into_the_base() {
        let entries = vec![
            bootstrap(1),
            config_entry(2, 1, &changed(0)),
            Entry::command(3, 1, b"x"),
            config_entry(4, 1, &changed(1)),
        ];
        let mut log = RaftLog::new(entries);
        assert_eq!(log.configs().later.len(), 3, "none applied");
        log.commit_to(LogIndex(3));
        assert_eq!(
            log.configs().at(LogIndex(3)).index,
            LogIndex(2),
            "committed"
        );
        let uncommitted = log.configs().uncommitted(LogIndex(3));
        assert_eq!(uncommitted.map(|t| t.index), Some(LogIndex(4)));
        log.take_committed(2);
        assert_eq!(log.configs().base.index, LogIndex(2), "folded on apply");
        assert_eq!(log.configs().later.len(), 1);
        log.take_committed(10);
        assert_eq!(log.configs().base.index, LogIndex(2));
        log.commit_to(LogIndex(4));
        log.take_committed(10);
        assert_eq!(log.configs().base.index, LogIndex(4));
        assert!(log.configs().later.is_empty());
        assert_eq!(current(&log), (LogIndex(4), changed(1)));
        assert_eq!(
            log.configs().at(LogIndex(3)).index,
            LogIndex(4),
            "only the latest is kept"
        );
        log.compact_to(LogIndex(4));
        assert_eq!(
            current(&log),
            (LogIndex(4), changed(1)),
            "compaction keeps it"
        );
        log.check_invariants();
    }

    fn snapshot_at(index: u64, term: u64) -> SnapshotMeta {
        SnapshotMeta {
            index: LogIndex(index),
            term: Term(term),
            cluster_id: Some(ClusterId(9)),
            voters: Vec::new(),
        }
    }

    #[test]
    fn an_install_keeps_the_configurations_of_a_kept_suffix() {
        let mut log = RaftLog::new(vec![bootstrap(1)]);
        log.append_from_leader(
            LogIndex(1),
            vec![
                config_entry(2, 1, &changed(0)),
                Entry::command(3, 1, b"x"),
                config_entry(4, 1, &changed(1)),
            ],
        );
        assert!(log.install_snapshot(&snapshot_at(3, 1)));
        assert_eq!(
            log.configs().base.index,
            LogIndex(2),
            "applied with the snapshot"
        );
        assert_eq!(current(&log), (LogIndex(4), changed(1)), "above it, kept");
        log.check_invariants();
    }

    #[test]
    fn an_install_that_drops_the_log_drops_its_uncommitted_configurations() {
        let mut log = RaftLog::new(vec![bootstrap(1), config_entry(2, 1, &changed(0))]);
        log.commit_to(LogIndex(2));
        log.append_from_leader(LogIndex(2), vec![config_entry(3, 1, &changed(1))]);
        assert!(
            !log.install_snapshot(&snapshot_at(5, 2)),
            "term 2 at 5: no match"
        );
        assert_eq!(
            current(&log),
            (LogIndex(2), changed(0)),
            "the committed one"
        );
        assert!(log.configs().later.is_empty());
        log.check_invariants();
    }

    #[test]
    fn a_restore_scans_the_entries_above_the_snapshot() {
        let entries = vec![
            Entry::command(7, 3, b"x"),
            config_entry(8, 3, &changed(0)),
            Entry::command(9, 3, b"x"),
            Entry::command(10, 4, b"x"),
            config_entry(11, 4, &changed(1)),
        ];
        let log = RaftLog::restored(start(), Some(&snapshot_at(10, 4)), entries);
        assert_eq!(
            log.configs().base.index,
            LogIndex(8),
            "the trailing log's, applied"
        );
        assert_eq!(current(&log), (LogIndex(11), changed(1)));
        assert!(log.configs().uncommitted(LogIndex(10)).is_some());
        log.check_invariants();
        let plain = RaftLog::restored(start(), Some(&snapshot_at(10, 4)), Vec::new());
        assert_eq!(
            current(&plain),
            (LogIndex(0), (*start()).clone()),
            "the start's"
        );
    }

    #[test]
    fn a_legacy_eight_byte_bootstrap_carries_no_configuration() {
        let legacy = Entry {
            kind: EntryKind::Bootstrap,
            ..Entry::command(1, 1, &ClusterId(9).to_bytes())
        };
        let log = RaftLog::new(vec![legacy.clone(), Entry::command(2, 1, b"x")]);
        assert_eq!(Configuration::of_entry(&legacy), None);
        assert_eq!(current(&log), (LogIndex(0), (*start()).clone()));
        assert_eq!(log.first_cluster_id(), Some(ClusterId(9)));
        assert_eq!(ClusterId::of_bootstrap(&bootstrap(1)), Some(ClusterId(9)));
    }
}
