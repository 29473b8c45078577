//! The safety checkers. The simulator calls them after every step, on the
//! nodes the step touched (a node nobody touched has not changed). Each
//! check is incremental so that a sweep stays fast: logs are compared
//! through prefix hashes remembered per (index, term), never entry by entry.

use super::disk::Disk;
use super::hash::{entry_hash_of, prefix_hash};
use super::history::History;
use super::model::read_reply;
use super::node::Node;
use super::outcomes::Outcomes;
use super::property::{violated, Property, Violation};
use super::snapshot_files::SimSnapshotFile;
use super::workload::{AttemptState, OperationKind};
use raftlite::core::raft_log::RaftLog;
use raftlite::core::Raft;
use raftlite::core::{ClusterId, Entry, EntryKind, HardState, LogIndex, Role, Status, Term};
use raftlite::reply::Reply;
use std::collections::btree_map::Entry as MapEntry;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug)]
struct Watermarks {
    term: Term,
    commit_index: LogIndex,
    last_applied: LogIndex,
}

/// What the checker remembers of one entry of a node's in-memory log.
#[derive(Clone, Copy, Debug)]
struct ShadowEntry {
    term: Term,
    prefix_hash: u64,
}

/// What the checker remembers of a node's in-memory log: its entries above
/// a base, where the prefix hash is the committed history's (the log
/// began there from a snapshot), or unknown (a snapshot beyond the
/// history the checker has seen: nothing above it is compared then).
#[derive(Clone, Debug, Default)]
struct Shadow {
    base_index: LogIndex,
    base_term: Term,
    /// Some(0) for a log from index 1.
    base_hash: Option<u64>,
    /// `entries[i]` is at `base_index + 1 + i`.
    entries: Vec<ShadowEntry>,
}

impl Shadow {
    fn from_index_one() -> Shadow {
        Shadow {
            base_hash: Some(0),
            ..Shadow::default()
        }
    }

    fn last_index(&self) -> LogIndex {
        LogIndex(self.base_index.0 + self.entries.len() as u64)
    }

    fn get(&self, index: LogIndex) -> Option<&ShadowEntry> {
        let offset = index.0.checked_sub(self.base_index.0 + 1)?;
        self.entries.get(usize::try_from(offset).ok()?)
    }

    fn term_at(&self, index: LogIndex) -> Option<Term> {
        match index == self.base_index {
            true => Some(self.base_term),
            false => self.get(index).map(|known| known.term),
        }
    }

    /// The prefix hash up to `index`, if known: at or below the base, the
    /// history's when anchored (the node holds that prefix as its
    /// snapshot, checked against the history when it arrived).
    fn prefix_hash(&self, index: LogIndex) -> Option<u64> {
        let base_hash = self.base_hash?;
        match index == self.base_index {
            true => Some(base_hash),
            false => self.get(index).map(|known| known.prefix_hash),
        }
    }

    fn truncate(&mut self, last: LogIndex) {
        let keep = last.0.saturating_sub(self.base_index.0) as usize;
        self.entries.truncate(keep);
    }
}

/// One thing a node did to its state machine, in order.
#[derive(Clone, Copy, Debug)]
pub enum ApplyStep {
    /// Applied the entry (index, term) whose `entry_hash` is `hash`.
    Entry {
        index: LogIndex,
        term: Term,
        hash: u64,
    },
    /// Replaced its state with a leader's snapshot up to `index`.
    Installed { index: LogIndex },
}

/// What one node did to its state machine in one driver call, and its
/// state digest after.
pub struct Applied {
    pub node: usize,
    pub steps: Vec<ApplyStep>,
    /// The entries applied, in order (the history extends from them when
    /// the node's log no longer holds them).
    pub entries: Vec<Entry>,
    pub last_applied: LogIndex,
    pub digest: u64,
}

/// A reply a node sent, with the state its attempt was in when it did.
pub struct ObservedReply {
    pub node: usize,
    pub request_id: u64,
    /// The reply (what its line says).
    pub line: Reply,
    pub state: AttemptState,
    pub request_line: String,
    pub kind: OperationKind,
    pub data: Vec<u8>,
    pub committed_at_send: LogIndex,
    /// The node's applied index when it replied: a read sees that state.
    pub node_applied: LogIndex,
}

pub struct Checker {
    quorum: usize,
    /// Who led each term, over the whole run.
    leaders: BTreeMap<Term, usize>,
    /// Prefix hash of every (index, term) any log held.
    positions: BTreeMap<(LogIndex, Term), u64>,
    /// Each node's in-memory log as last checked.
    shadows: Vec<Shadow>,
    /// Entries nodes applied beyond the committed history, by index: the
    /// history extends from them where a committer's log was already
    /// compacted past them when it was checked.
    applied_beyond: BTreeMap<LogIndex, Entry>,
    pub history: History,
    /// None while the node is crashed: a new process starts afresh.
    watermarks: Vec<Option<Watermarks>>,
    /// The commit index each node had when last checked.
    commits_checked: Vec<LogIndex>,
    /// The next index each node must apply.
    applied_next: Vec<LogIndex>,
    /// Highest term each node sent in a reply released after a sync.
    promised_terms: Vec<Term>,
    /// The state digest after applying up to an index, and who saw it first.
    digests: BTreeMap<LogIndex, (u64, usize)>,
    pub elections: u64,
    pub term_max: Term,
    /// What each client command ended with, against what was applied.
    pub outcomes: Outcomes,
    /// The cluster of the foreign log a node was given (foreign_log.rs):
    /// a log or disk that begins with its Bootstrap holds another
    /// cluster's entries, which Log Matching leaves out.
    foreign_logs: Vec<Option<ClusterId>>,
}

impl Checker {
    /// The node the checker saw lead `term`, if any.
    pub fn leader_of(&self, term: Term) -> Option<usize> {
        self.leaders.get(&term).copied()
    }

    pub fn new(size: usize) -> Checker {
        Checker {
            quorum: size / 2 + 1,
            leaders: BTreeMap::new(),
            positions: BTreeMap::new(),
            shadows: vec![Shadow::from_index_one(); size],
            applied_beyond: BTreeMap::new(),
            history: History::new(),
            watermarks: vec![None; size],
            commits_checked: vec![LogIndex(0); size],
            applied_next: vec![LogIndex(1); size],
            promised_terms: vec![Term(0); size],
            digests: BTreeMap::new(),
            elections: 0,
            term_max: Term(0),
            outcomes: Outcomes::default(),
            foreign_logs: vec![None; size],
        }
    }

    /// Every per-node check, after a step that touched `node`.
    pub fn check_node(&mut self, nodes: &[Node], node: usize) -> Result<(), Violation> {
        let Some(replica) = nodes[node].replica.as_ref() else {
            return Ok(()); // crashed: only its disk remains, checked apart
        };
        if nodes[node].is_stale() {
            return Ok(()); // another cluster's history (stale_member.rs)
        }
        let raft = replica.raft();
        raft.check_invariants();
        let status = raft.status();
        self.check_monotonic(node, &status)?;
        let elected = self.check_election(node, &status)?;
        if !self.begins_foreign(node, raft.log().base_index(), raft.log().first_cluster_id()) {
            self.check_log_matching(node, raft.log())?;
        }
        check_compaction(node, raft)?;
        let digest = replica.machine().digest();
        self.check_state(node, status.last_applied, digest, "state machine")?;
        if elected {
            let needed = self.history.last_index_committed_before(status.term);
            self.check_complete(node, status.term, needed, None)?;
        }
        self.check_commit(nodes, node, raft.log(), &status)
    }

    fn check_monotonic(&mut self, node: usize, status: &Status) -> Result<(), Violation> {
        self.term_max = self.term_max.max(status.term);
        let now = Watermarks {
            term: status.term,
            commit_index: status.commit_index,
            last_applied: status.last_applied,
        };
        let before = self.watermarks[node].replace(now);
        let Some(before) = before else {
            return Ok(());
        };
        let mut backwards = Vec::new();
        if now.term < before.term {
            backwards.push(format!("term {} → {}", before.term, now.term));
        }
        if now.commit_index < before.commit_index {
            let (from, to) = (before.commit_index, now.commit_index);
            backwards.push(format!("commit index {from} → {to}"));
        }
        if now.last_applied < before.last_applied {
            let (from, to) = (before.last_applied, now.last_applied);
            backwards.push(format!("applied index {from} → {to}"));
        }
        if backwards.is_empty() {
            return Ok(());
        }
        violated(
            Property::Monotonicity,
            format!(
                "n{node} went backwards while live: {}",
                backwards.join(", ")
            ),
        )
    }

    /// Brings the node's shadow up to date with its log and checks each new
    /// (index, term) against every log that held it.
    ///
    /// An entry counts as existing once another node holds it or a disk
    /// does: a leader's own entries that only ever lived in the memory of a
    /// process that died never existed for anyone, so they are checked but
    /// not registered. (A one-node cluster elects itself before its term
    /// is durable, may crash, and may lead the same term again with other
    /// entries; nobody ever saw the first ones.)
    fn check_log_matching(&mut self, node: usize, log: &RaftLog) -> Result<(), Violation> {
        let base = log.base_index();
        let base_term = log.term_at(base).expect("the log knows its base's term");
        // A log compacted within what the shadow holds still connects to
        // it; one that starts from an installed or restored snapshot the
        // shadow does not reach starts a new shadow at its base.
        let shadow = &self.shadows[node];
        let connects = base >= shadow.base_index && shadow.term_at(base) == Some(base_term);
        // An unanchored shadow starts again once the history reaches it.
        if !connects || shadow.base_hash.is_none() {
            let base_hash = self.anchor(node, base, base_term, "log starts from a snapshot")?;
            self.shadows[node] = Shadow {
                base_index: base,
                base_term,
                base_hash,
                entries: Vec::new(),
            };
        }
        let shadow = &mut self.shadows[node];
        let last = log.last_index();
        let mut keep = shadow.last_index().min(last);
        // An entry keeps its place unless a truncation replaced it, and a
        // replacement has another term (two leaders of one term aside,
        // which Election Safety reports first).
        while keep > base && shadow.term_at(keep) != log.term_at(keep) {
            keep = keep.prev();
        }
        shadow.truncate(keep);
        let anchored = shadow.base_hash.is_some();
        for index in keep.0 + 1..=last.0 {
            let entry = log.entry(LogIndex(index)).expect("within the log");
            let previous = shadow.entries.last().map(|known| known.prefix_hash);
            let previous = previous.or(shadow.base_hash).unwrap_or(0);
            let hash = prefix_hash(previous, entry);
            shadow.entries.push(ShadowEntry {
                term: entry.term,
                prefix_hash: hash,
            });
            let created_here = self.leaders.get(&entry.term) == Some(&node);
            if !anchored {
                continue; // its prefix is unknown: nothing to compare
            }
            match self.positions.entry((entry.index, entry.term)) {
                MapEntry::Vacant(vacant) => {
                    if !created_here {
                        vacant.insert(hash);
                    }
                }
                MapEntry::Occupied(known) if *known.get() != hash => {
                    return violated(
                        Property::LogMatching,
                        format!(
                            "n{node} holds entry {}/{} but its log up to there differs from another log holding {}/{}",
                            entry.index, entry.term, entry.index, entry.term
                        ),
                    );
                }
                MapEntry::Occupied(_) => {}
            }
        }
        Ok(())
    }

    /// The committed history's prefix hash at (index, term), where a log
    /// starts from a snapshot: the snapshot must be of the history. None
    /// when the history does not reach `index` yet.
    fn anchor(
        &self,
        node: usize,
        index: LogIndex,
        term: Term,
        what: &str,
    ) -> Result<Option<u64>, Violation> {
        if index.0 == 0 {
            return Ok(Some(0));
        }
        let Some(committed) = self.history.get(index) else {
            return Ok(None);
        };
        if committed.term != term {
            return violated(
                Property::StateMachineSafety,
                format!(
                    "n{node}'s {what} at {index}/{term}, but the committed entry at {index} has term {}",
                    committed.term
                ),
            );
        }
        Ok(Some(committed.prefix_hash))
    }

    /// A disk whose log was reset to a snapshot gets its prefix anchored
    /// to the history (checking the snapshot's term against it).
    pub fn anchor_disk(&self, node: usize, disk: &mut Disk) -> Result<(), Violation> {
        let Some((index, term)) = disk.unanchored_base() else {
            return Ok(());
        };
        if let Some(hash) = self.anchor(node, index, term, "disk's log starts from a snapshot")? {
            disk.anchor(hash);
        }
        Ok(())
    }

    /// Election Safety. Returns whether `node` just became leader.
    fn check_election(&mut self, node: usize, status: &Status) -> Result<bool, Violation> {
        if status.role != Role::Leader {
            return Ok(false);
        }
        match self.leaders.entry(status.term) {
            MapEntry::Occupied(known) if *known.get() != node => violated(
                Property::ElectionSafety,
                format!(
                    "n{} and n{node} are both leaders of term {}",
                    known.get(),
                    status.term
                ),
            ),
            MapEntry::Occupied(_) => Ok(false),
            MapEntry::Vacant(vacant) => {
                vacant.insert(node);
                self.elections += 1;
                Ok(true)
            }
        }
    }

    /// Leader Completeness: `node`, leader of `term`, holds every entry
    /// committed up to `needed`.
    fn check_complete(
        &self,
        node: usize,
        term: Term,
        needed: LogIndex,
        committer: Option<(usize, Term)>,
    ) -> Result<(), Violation> {
        if self.shadow_matches_history(node, needed) {
            return Ok(());
        }
        let missing = self.first_divergence(node, needed);
        let committed = self.history.get(missing).expect("within the history");
        let by = match committer {
            Some((committer, at)) => format!("n{committer} counted it committed at term {at}"),
            None => format!("committed at term {}", committed.commit_term),
        };
        violated(
            Property::LeaderCompleteness,
            format!(
                "n{node}, leader of term {term}, lacks entry {missing}/{} ({by})",
                committed.term
            ),
        )
    }

    /// Whether the node's log holds the history up to `index`; a prefix
    /// its snapshot holds counts (an anchored base is the history's).
    fn shadow_matches_history(&self, node: usize, index: LogIndex) -> bool {
        if index.0 == 0 {
            return true;
        }
        let shadow = &self.shadows[node];
        if index < shadow.base_index {
            return shadow.base_hash.is_some();
        }
        shadow.prefix_hash(index) == Some(self.history.prefix_hash(index))
    }

    /// The first index at or below `limit` where the node's log and the
    /// committed history differ (prefix matches are monotone, so a binary
    /// search finds it).
    fn first_divergence(&self, node: usize, limit: LogIndex) -> LogIndex {
        let matching = partition_point(LogIndex(0), limit, |index| {
            self.shadow_matches_history(node, index)
        });
        matching.next()
    }

    /// Extends the committed history with what `node` committed beyond it,
    /// after checking that what they share agrees.
    fn check_commit(
        &mut self,
        nodes: &[Node],
        node: usize,
        log: &RaftLog,
        status: &Status,
    ) -> Result<(), Violation> {
        let commit_index = status.commit_index;
        let known = self.history.last_index();
        let shared = commit_index.min(known);
        if !self.shadow_matches_history(node, shared) {
            let index = self.first_divergence(node, shared);
            return violated(
                Property::StateMachineSafety,
                format!(
                    "n{node} committed {}/{} where entry {index}/{} was committed before",
                    index,
                    log.term_at(index).unwrap_or_default(),
                    self.history.get(index).expect("within the history").term
                ),
            );
        }
        self.history.committed_in(shared, status.term);
        for index in known.0 + 1..=commit_index.0 {
            let index = LogIndex(index);
            // Compacted already (the node applied and snapshotted within
            // one call): as it applied it, if anyone saw it.
            let Some(entry) = log.entry(index).or(self.applied_beyond.get(&index)) else {
                break;
            };
            if let Some(number) = self.history.extend(entry, status.term) {
                self.outcomes.applied(number, entry.index)?;
            }
        }
        let known = self.history.last_index();
        self.applied_beyond.retain(|&index, _| index > known);
        if self.commits_checked[node] == commit_index {
            return Ok(());
        }
        self.commits_checked[node] = commit_index;
        self.check_later_leaders(nodes, node, status.term, commit_index)
    }

    /// Entries `committer` counts committed at `term` must be in the log of
    /// every current leader of a later term, whenever it was elected.
    fn check_later_leaders(
        &self,
        nodes: &[Node],
        committer: usize,
        term: Term,
        commit_index: LogIndex,
    ) -> Result<(), Violation> {
        for (node, other) in nodes.iter().enumerate() {
            let Some(replica) = other.replica.as_ref() else {
                continue;
            };
            let status = replica.raft().status();
            if status.role == Role::Leader && status.term > term {
                let by = Some((committer, term));
                self.check_complete(node, status.term, commit_index, by)?;
            }
        }
        Ok(())
    }

    /// Entries a node applied, kept while the history has not reached them.
    pub fn remember_applied(&mut self, applied: &Applied) {
        let known = self.history.last_index();
        for entry in applied.entries.iter().filter(|entry| entry.index > known) {
            self.applied_beyond
                .entry(entry.index)
                .or_insert_with(|| entry.clone());
        }
    }

    /// State Machine Safety: a node applies the history in order, one
    /// entry after the other, or moves past it only by installing a
    /// leader's snapshot ahead of what it applied; and its state matches
    /// every other node's at the same index.
    pub fn check_applied(&mut self, applied: &Applied) -> Result<(), Violation> {
        let node = applied.node;
        for &step in &applied.steps {
            let expected = self.applied_next[node];
            let (index, term, hash) = match step {
                ApplyStep::Installed { index } if index < expected => {
                    return violated(
                        Property::StateMachineSafety,
                        format!(
                            "n{node} installed snapshot {index} though it had applied up to {}: its state machine went back",
                            expected.prev()
                        ),
                    );
                }
                ApplyStep::Installed { index } => {
                    self.applied_next[node] = index.next();
                    continue;
                }
                ApplyStep::Entry { index, term, hash } => (index, term, hash),
            };
            if index != expected {
                return violated(
                    Property::StateMachineSafety,
                    format!("n{node} applied index {index} when {expected} was next"),
                );
            }
            let Some(committed) = self.history.get(index) else {
                return violated(
                    Property::StateMachineSafety,
                    format!("n{node} applied {index}/{term}, which no node committed"),
                );
            };
            if committed.entry_hash != hash {
                return violated(
                    Property::StateMachineSafety,
                    format!(
                        "n{node} applied {index}/{term} but the committed entry there is {index}/{}",
                        committed.term
                    ),
                );
            }
            self.applied_next[node] = index.next();
        }
        let what = "key-value state";
        self.check_state(node, applied.last_applied, applied.digest, what)
    }

    /// A node's state after applying up to `index` is the committed
    /// history's there, however it got there (applying entries, taking,
    /// installing or restarting from a snapshot). Past the history (not
    /// yet seen committed), it is the same on every node: the first to
    /// report one sets it.
    fn check_state(
        &mut self,
        node: usize,
        index: LogIndex,
        digest: u64,
        what: &str,
    ) -> Result<(), Violation> {
        if let Some(expected) = self.history.state_digest(index) {
            if expected != digest {
                return violated(
                    Property::StateMachineSafety,
                    format!(
                        "n{node}'s {what} after applying to {index} is not the committed history's state there"
                    ),
                );
            }
            return Ok(());
        }
        match self.digests.entry(index) {
            MapEntry::Vacant(vacant) => {
                vacant.insert((digest, node));
                Ok(())
            }
            MapEntry::Occupied(known) if known.get().0 != digest => violated(
                Property::StateMachineSafety,
                format!(
                    "n{node}'s {what} after applying to {index} differs from n{}'s there",
                    known.get().1,
                ),
            ),
            MapEntry::Occupied(_) => Ok(()),
        }
    }

    /// A snapshot file a node took or installed holds the state applied at
    /// its index on every node: a follower's state after an install is
    /// the leader's at that index (and a node's own snapshot is its state).
    pub fn check_snapshot_file(
        &mut self,
        node: usize,
        file: &SimSnapshotFile,
        how: &str,
    ) -> Result<(), Violation> {
        let meta = &file.meta;
        self.anchor(node, meta.index, meta.term, how)?;
        self.check_snapshot_cluster(node, file, how)?;
        self.check_state(node, meta.index, file.digest, how)
    }

    /// A snapshot covers the committed Bootstrap (entry 1), so it names the
    /// cluster that entry named: whoever installs it binds to that cluster,
    /// as a node that applied the entry does.
    fn check_snapshot_cluster(
        &self,
        node: usize,
        file: &SimSnapshotFile,
        how: &str,
    ) -> Result<(), Violation> {
        let Some(committed) = self.history.cluster_id() else {
            return Ok(()); // no Bootstrap committed (a log built by a test)
        };
        if file.meta.cluster_id == Some(committed) {
            return Ok(());
        }
        let named = file
            .meta
            .cluster_id
            .map_or("none".to_string(), |id| id.to_string());
        violated(
            Property::StateMachineSafety,
            format!(
                "n{node}'s {how} at {} names cluster {named}, but the committed Bootstrap named {committed}: whoever installs it cannot bind",
                file.meta.index
            ),
        )
    }

    /// A node restarted from `snapshot` (if any): its state machine starts
    /// there, and it next applies the entry after it.
    pub fn node_restored(
        &mut self,
        node: usize,
        snapshot: Option<&SimSnapshotFile>,
    ) -> Result<(), Violation> {
        let Some(file) = snapshot else {
            return Ok(());
        };
        self.applied_next[node] = file.meta.index.next();
        self.check_snapshot_file(node, file, "snapshot it restarted from")
    }

    /// Client semantics. Replies that carry no outcome (NOT_LEADER,
    /// TIMEOUT, UNAVAILABLE) are always allowed. Any other reply to a log
    /// command is what applying the entry it became produced, and must be
    /// exactly what the model says that entry returns. A read returns what
    /// the key held at the node's applied index, which must cover every
    /// entry committed before the client sent it (linearizability).
    pub fn check_reply(&self, reply: &ObservedReply) -> Result<(), Violation> {
        let no_outcome = matches!(
            reply.line,
            Reply::NotLeader { .. } | Reply::Timeout | Reply::Unavailable(_)
        );
        if no_outcome {
            return Ok(());
        }
        let what = format!(
            "n{} answered #{} ({}) with {:?}",
            reply.node,
            reply.request_id,
            reply.request_line,
            reply.line.to_string()
        );
        match &reply.kind {
            OperationKind::Read { key } => self.check_read(reply, key, &what),
            OperationKind::Register | OperationKind::Write => self.check_outcome(reply, &what),
        }
    }

    fn check_outcome(&self, reply: &ObservedReply, what: &str) -> Result<(), Violation> {
        let AttemptState::Proposed { index } = reply.state else {
            return violated(
                Property::ClientSemantics,
                format!("{what} without having proposed it"),
            );
        };
        let Some(committed) = self.history.get(index) else {
            return violated(
                Property::ClientSemantics,
                format!("{what}, but index {index} is not committed"),
            );
        };
        let ours = entry_hash_of(index, committed.term, EntryKind::Command, &reply.data);
        if committed.entry_hash != ours {
            return violated(
                Property::ClientSemantics,
                format!("{what}, but index {index} holds another command"),
            );
        }
        if committed.expected_reply.as_ref() != Some(&reply.line) {
            let expected = committed.expected_reply.as_ref().map(Reply::to_string);
            return violated(
                Property::ClientSemantics,
                format!("{what}; the committed history at {index} says {expected:?}"),
            );
        }
        Ok(())
    }

    fn check_read(&self, reply: &ObservedReply, key: &[u8], what: &str) -> Result<(), Violation> {
        let applied = reply.node_applied;
        if applied < reply.committed_at_send {
            return violated(
                Property::ClientSemantics,
                format!(
                    "{what}: a stale read, served at applied index {applied} though entry {} was committed before it was sent",
                    reply.committed_at_send
                ),
            );
        }
        let expected = read_reply(self.history.value_at(key, applied));
        if reply.line != expected {
            let expected = expected.to_string();
            return violated(
                Property::ClientSemantics,
                format!("{what}; at applied index {applied} the key held {expected:?}"),
            );
        }
        Ok(())
    }

    /// A message promising durable state left `node` at `term`: its disk
    /// must not come back below it.
    pub fn promised_term(&mut self, node: usize, term: Term) {
        self.promised_terms[node] = self.promised_terms[node].max(term);
    }

    pub fn node_crashed(&mut self, node: usize) {
        self.watermarks[node] = None;
        self.shadows[node] = Shadow::from_index_one();
        self.applied_next[node] = LogIndex(1);
        self.commits_checked[node] = LogIndex(0);
    }

    /// Another data dir now runs as `node` (stale_member.rs): what the
    /// one before promised does not bind it.
    pub fn node_replaced(&mut self, node: usize) {
        self.node_crashed(node);
        self.promised_terms[node] = Term(0);
    }

    /// `node` now runs a foreign log of `cluster_id` (foreign_log.rs): its
    /// term and vote are the member's, so its promises stand.
    pub fn node_took_foreign_log(&mut self, node: usize, cluster_id: ClusterId) {
        self.node_crashed(node);
        self.foreign_logs[node] = Some(cluster_id);
    }

    /// Whether a log (or disk) of `node` with this base and first cluster
    /// still begins with the foreign Bootstrap it was given.
    fn begins_foreign(&self, node: usize, base: LogIndex, first: Option<ClusterId>) -> bool {
        base == LogIndex(0) && first.is_some() && first == self.foreign_logs[node]
    }

    /// How many disks other than `node`'s hold the whole committed history
    /// durably (in the log, or below a durable snapshot).
    pub fn others_holding_history(&self, nodes: &[Node], node: usize) -> usize {
        let committed = self.history.last_index();
        (nodes.iter().enumerate())
            .filter(|&(other, state)| other != node && !state.is_stale())
            .filter(|(_, state)| self.durable_prefix(state.own_disk()) >= committed)
            .count()
    }

    /// A node restarts from its disk: never below a term it promised.
    pub fn node_restarted(&mut self, node: usize, hard_state: HardState) -> Result<(), Violation> {
        let promised = self.promised_terms[node];
        if hard_state.current_term < promised {
            return violated(
                Property::Monotonicity,
                format!(
                    "n{node} restarted at term {}, below term {promised} that a vote or an acknowledgement it sent promised was durable",
                    hard_state.current_term
                ),
            );
        }
        Ok(())
    }

    /// Durability: every committed entry is on a majority of disks. (Not
    /// on every disk that once held it: a node that does not know an entry
    /// is committed may see its copy replaced by a leader of a term older
    /// than the one that committed it, as Raft allows; the majority that
    /// committed it has moved past that term and refuses such a leader.)
    ///
    /// `changed_from[node]` is the lowest index its disk rewrote since the
    /// last call, if any.
    pub fn check_durability(
        &mut self,
        nodes: &[Node],
        changed_from: &[Option<LogIndex>],
    ) -> Result<(), Violation> {
        let committed = self.history.last_index();
        let mut held = Vec::with_capacity(nodes.len());
        for (node, state) in nodes.iter().enumerate() {
            if let (Some(from), false) = (changed_from[node], state.is_stale()) {
                self.register_durable(node, &state.disk, from)?;
            }
            held.push(self.durable_prefix(state.own_disk()));
        }
        held.sort_unstable_by(|a, b| b.cmp(a));
        let majority_holds = held[self.quorum - 1];
        if majority_holds < committed {
            return violated(
                Property::Durability,
                format!(
                    "committed entry {} is on fewer than {} disks",
                    majority_holds.next(),
                    self.quorum
                ),
            );
        }
        Ok(())
    }

    /// Log Matching for disks: entries a write made durable since the last
    /// check join the (index, term) registry.
    fn register_durable(
        &mut self,
        node: usize,
        disk: &Disk,
        from: LogIndex,
    ) -> Result<(), Violation> {
        let first = disk.entry(LogIndex(1)).and_then(ClusterId::of_bootstrap);
        if self.begins_foreign(node, disk.base_index(), first) {
            return Ok(()); // another cluster's entries (foreign_log.rs)
        }
        let from = from.max(disk.base_index().next());
        for index in from.0..=disk.last_index().0 {
            let entry = disk.entry(LogIndex(index)).expect("within the disk");
            let Some(hash) = disk.prefix_hash(entry.index) else {
                return Ok(()); // a reset log not anchored yet: nothing to compare
            };
            match self.positions.entry((entry.index, entry.term)) {
                MapEntry::Vacant(vacant) => {
                    vacant.insert(hash);
                }
                MapEntry::Occupied(known) if *known.get() != hash => {
                    return violated(
                        Property::LogMatching,
                        format!(
                            "the disk of n{node} holds entry {}/{} but its log up to there differs from another log holding it",
                            entry.index, entry.term
                        ),
                    );
                }
                MapEntry::Occupied(_) => {}
            }
        }
        Ok(())
    }

    /// How much of the committed history the disk holds, as a prefix: its
    /// newest durable snapshot (of the history: checked when it was made),
    /// then its log as far as it matches.
    fn durable_prefix(&self, disk: &Disk) -> LogIndex {
        let known = self.history.last_index();
        let snapshot = disk.newest_snapshot().map(|file| &file.meta);
        let covered = snapshot
            .filter(|meta| meta.index <= known)
            .filter(|meta| self.history.get(meta.index).map(|e| e.term) == Some(meta.term))
            .map_or(LogIndex(0), |meta| meta.index);
        let base = disk.base_index();
        let matches = |index: LogIndex| {
            index <= known && disk.prefix_hash(index) == Some(self.history.prefix_hash(index))
        };
        if !matches(base) {
            return covered;
        }
        let limit = disk.last_index().min(known);
        let held = partition_point(base, limit, matches);
        held.max(covered)
    }
}

/// A node holds every entry it applied in its log or in its newest
/// snapshot: its log is never compacted past that snapshot (the entries
/// between would be gone from the node, and a follower needing them could
/// only be sent the snapshot, again and again).
fn check_compaction(node: usize, raft: &Raft) -> Result<(), Violation> {
    let base = raft.log().base_index();
    let covered = raft
        .snapshot()
        .map_or(LogIndex(0), |snapshot| snapshot.meta.index);
    if base <= covered {
        return Ok(());
    }
    violated(
        Property::Durability,
        format!(
            "n{node} compacted its log to {base}, past its newest snapshot at {covered}: entries {}..={base} are in neither",
            covered.next()
        ),
    )
}

/// The largest index in low..=limit for which `holds` is true, given that
/// it holds for `low` and, once false, stays false.
fn partition_point(low: LogIndex, limit: LogIndex, holds: impl Fn(LogIndex) -> bool) -> LogIndex {
    let (mut low, mut high) = (low.0, limit.0.max(low.0));
    while low < high {
        let middle = low + (high - low).div_ceil(2);
        if holds(LogIndex(middle)) {
            low = middle;
        } else {
            high = middle - 1;
        }
    }
    LogIndex(low)
}
