//! The one committed history of the run: every entry any node committed,
//! in index order, with the reply its command must produce.

use super::hash::{entry_hash, prefix_hash};
use super::model::Model;
use raftlite::core::{ClusterId, Entry, EntryKind, LogIndex, Term};
use raftlite::kv::StateMachine;
use raftlite::reply::Reply;

pub struct HistoryEntry {
    pub term: Term,
    /// The earliest term known to have committed this entry: the lowest
    /// term of a node that counted it committed, this entry or a later one
    /// (committing an index commits everything before it). Never
    /// decreases along the history.
    pub commit_term: Term,
    pub entry_hash: u64,
    /// Prefix hash of the history up to and including this entry.
    pub prefix_hash: u64,
    pub expected_reply: Option<Reply>,
    /// The state machine's digest once every entry up to this one is
    /// applied: what every node's state must be at this index, however it
    /// got there (applying, or a snapshot).
    pub state_digest: u64,
}

#[derive(Default)]
pub struct History {
    entries: Vec<HistoryEntry>,
    model: Model,
    /// The daemon's state machine, applying the committed history in
    /// order as a replica does: the reference for every node's state.
    machine: StateMachine,
    /// The cluster the committed Bootstrap (entry 1) named.
    cluster_id: Option<ClusterId>,
}

impl History {
    pub fn new() -> History {
        History::default()
    }

    pub fn last_index(&self) -> LogIndex {
        LogIndex(self.entries.len() as u64)
    }

    pub fn get(&self, index: LogIndex) -> Option<&HistoryEntry> {
        let offset = usize::try_from(index.0.checked_sub(1)?).ok()?;
        self.entries.get(offset)
    }

    /// Prefix hash up to `index` (0 for the empty prefix). `index` must be
    /// within the history.
    pub fn prefix_hash(&self, index: LogIndex) -> u64 {
        if index.0 == 0 {
            return 0;
        }
        self.get(index)
            .expect("index within the history")
            .prefix_hash
    }

    /// The last index committed in a term below `term`: what a leader of
    /// `term` must hold (Leader Completeness, §5.4). A prefix, as commit
    /// terms never decrease along the history.
    pub fn last_index_committed_before(&self, term: Term) -> LogIndex {
        LogIndex(
            self.entries
                .partition_point(|entry| entry.commit_term < term) as u64,
        )
    }

    /// A node at `term` counts everything up to `index` committed.
    pub fn committed_in(&mut self, index: LogIndex, term: Term) {
        let end = (index.0 as usize).min(self.entries.len());
        for entry in self.entries[..end].iter_mut().rev() {
            if entry.commit_term <= term {
                break;
            }
            entry.commit_term = term;
        }
    }

    /// The state digest once every entry up to `index` is applied; None
    /// past the history.
    pub fn state_digest(&self, index: LogIndex) -> Option<u64> {
        match index.0 {
            0 => Some(StateMachine::default().digest()),
            _ => self.get(index).map(|entry| entry.state_digest),
        }
    }

    /// The cluster the committed Bootstrap named; None before it commits.
    pub fn cluster_id(&self) -> Option<ClusterId> {
        self.cluster_id
    }

    /// What `key` held once every entry up to `index` was applied.
    pub fn value_at(&self, key: &[u8], index: LogIndex) -> Option<&[u8]> {
        self.model.value_at(key, index)
    }

    /// Appends the next committed entry, counted committed by a node at
    /// `commit_term`, and runs it through the model. Returns the (session,
    /// sequence) it applied for the first time, if it did.
    pub fn extend(&mut self, entry: &Entry, commit_term: Term) -> Option<(u64, u64)> {
        assert_eq!(entry.index, self.last_index().next(), "history has a gap");
        let previous = self.prefix_hash(self.last_index());
        let expected_reply = self.model.apply(entry);
        if entry.index == LogIndex(1) {
            self.cluster_id = ClusterId::of_bootstrap(entry);
        }
        if entry.kind == EntryKind::Command {
            self.machine.apply(entry.index.0, entry.term.0, &entry.data);
        }
        self.entries.push(HistoryEntry {
            state_digest: self.machine.digest(),
            term: entry.term,
            commit_term,
            entry_hash: entry_hash(entry),
            prefix_hash: prefix_hash(previous, entry),
            expected_reply,
        });
        self.model.fresh()
    }
}
