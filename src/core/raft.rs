//! The Raft state machine (Figure 2 of the paper). This file holds the
//! node's state and its inputs and outputs; `election.rs`, `replication.rs`
//! and `read_index.rs` hold the rules. Term handling happens once, in
//! `step`, before a role's handler sees the message.

use super::config::{Config, ConfigError};
use super::message::*;
use super::planted::PlantedBug;
use super::progress::{Progress, ProgressState};
use super::raft_log::RaftLog;
use super::read_index::ReadQueue;
use super::ready::{Event, Ready, StepDownReason};
use super::rng::Rng;
use super::types::*;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    /// Asking for pre-votes; the term has not been incremented (§9.6).
    PreCandidate,
    Candidate,
    Leader,
}

/// Why a proposal or read was refused. Either way nothing was appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposeError {
    NotLeader {
        leader: Option<NodeId>,
    },
    /// Too many reads wait for confirmation already.
    Busy,
}

/// A snapshot of the node's state for STATUS lines and checkers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub id: NodeId,
    pub role: Role,
    pub term: Term,
    pub leader: Option<NodeId>,
    pub last_index: LogIndex,
    pub commit_index: LogIndex,
    pub last_applied: LogIndex,
}

pub struct Raft {
    pub(super) config: Config,
    pub(super) hard_state: HardState,
    pub(super) hard_state_dirty: bool,
    /// The cluster binding as far as storage has made it durable
    /// (`hard_state_persisted`); the leader counts itself past the Bootstrap
    /// entry only once it is.
    pub(super) durable_cluster_id: Option<ClusterId>,
    pub(super) log: RaftLog,
    pub(super) role: Role,
    pub(super) leader_id: Option<NodeId>,
    /// Follower: when the current leader was last heard from (stickiness).
    pub(super) leader_contact_ms: u64,
    /// (Pre-)candidate only: who granted us their (pre-)vote.
    pub(super) votes_granted: BTreeSet<NodeId>,
    /// Leader only: one entry per peer.
    pub(super) progress: BTreeMap<NodeId, Progress>,
    /// Leader only: reads waiting for a leadership check (§6.4).
    pub(super) reads: ReadQueue,
    pub(super) now_ms: u64,
    pub(super) election_deadline_ms: u64,
    pub(super) heartbeat_deadline_ms: u64,
    pub(super) rng: Rng,
    pub(super) ready: Ready,
    #[cfg(feature = "planted-bugs")]
    planted_bug: Option<PlantedBug>,
}

impl Raft {
    /// A node restored from its durable hard state and log.
    pub fn new(
        config: Config,
        hard_state: HardState,
        entries: Vec<Entry>,
        now_ms: u64,
    ) -> Result<Raft, ConfigError> {
        config.validate()?;
        let rng = Rng::new(config.seed ^ u64::from(config.id.0).wrapping_mul(0x9E37_79B9));
        let log = RaftLog::new(entries);
        assert!(
            log.last_term() <= hard_state.current_term,
            "log term {} above current term {}",
            log.last_term(),
            hard_state.current_term
        );
        let mut raft = Raft {
            config,
            hard_state,
            hard_state_dirty: false,
            durable_cluster_id: hard_state.cluster_id,
            log,
            role: Role::Follower,
            leader_id: None,
            leader_contact_ms: 0,
            votes_granted: BTreeSet::new(),
            progress: BTreeMap::new(),
            reads: ReadQueue::default(),
            now_ms,
            election_deadline_ms: 0,
            heartbeat_deadline_ms: 0,
            rng,
            ready: Ready::default(),
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        };
        raft.reset_election_deadline();
        Ok(raft)
    }

    // ---- inputs ----------------------------------------------------------

    /// Time moved to `now_ms`, without firing anything yet: the runtime
    /// calls this before stepping the messages of a loop turn, so deadlines
    /// they reset count from the time they arrived.
    pub fn observe_time(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
    }

    /// Time moved to `now_ms`; fires the election timer or the heartbeat.
    pub fn advance_time(&mut self, now_ms: u64) {
        self.observe_time(now_ms);
        match self.role {
            Role::Follower | Role::PreCandidate | Role::Candidate => {
                if self.now_ms >= self.election_deadline_ms {
                    self.election_timeout();
                }
            }
            Role::Leader => {
                if self.now_ms >= self.heartbeat_deadline_ms {
                    self.heartbeat_deadline_ms = self.now_ms + self.config.heartbeat_interval_ms;
                    let check_quorum =
                        self.config.check_quorum && !self.planted(PlantedBug::StaleLeaderReads);
                    if check_quorum && !self.quorum_active() {
                        return self.step_down_quorum_lost();
                    }
                    self.broadcast_heartbeat();
                }
            }
        }
    }

    /// The earliest time at which `advance_time` has something to do.
    pub fn next_deadline_ms(&self) -> u64 {
        match self.role {
            Role::Leader => self.heartbeat_deadline_ms,
            Role::Follower | Role::PreCandidate | Role::Candidate => self.election_deadline_ms,
        }
    }

    pub fn step(&mut self, message: Message) {
        assert_eq!(message.to, self.config.id, "message for another node");
        if !self.config.members.contains(&message.from) || message.from == self.config.id {
            return;
        }
        if !well_formed(&message) {
            return; // a faulty peer must not break the log's invariants
        }
        if self.is_foreign(&message) {
            let from = message.from;
            let cluster = message.cluster;
            self.ready
                .events
                .push(Event::ForeignMessageIgnored { from, cluster });
            return;
        }
        if message.term > self.hard_state.current_term {
            if !self.accept_higher_term(&message) {
                return;
            }
        } else if message.term < self.hard_state.current_term {
            return self.answer_stale(&message);
        }
        match self.role {
            Role::Follower => self.step_follower(message),
            Role::PreCandidate => self.step_pre_candidate(message),
            Role::Candidate => self.step_candidate(message),
            Role::Leader => self.step_leader(message),
        }
    }

    /// A client command. On success the entry is appended (not yet durable or
    /// committed) at the returned index and term. `data` is copied, so the
    /// caller may reuse its buffer.
    pub fn propose(&mut self, data: &[u8]) -> Result<(LogIndex, Term), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader_id,
            });
        }
        assert!(
            data.len() <= crate::constants::ENTRY_DATA_SIZE_MAX,
            "proposal of {} bytes",
            data.len()
        );
        let term = self.hard_state.current_term;
        let index = self.log.append_new(term, EntryKind::Command, data);
        Ok((index, term))
    }

    /// The runtime could not reach `peer` (connection lost): stop streaming to
    /// it and probe once it is back.
    pub fn report_unreachable(&mut self, peer: NodeId) {
        if let Some(progress) = self.progress.get_mut(&peer) {
            if progress.state == ProgressState::Replicate {
                progress.become_probe();
            }
        }
    }

    /// Storage made the log durable up to (index, term).
    pub fn persisted(&mut self, index: LogIndex, term: Term) {
        self.log.persisted(index, term);
        if self.log.commit_index() > LogIndex(0) {
            self.bind_to_cluster(); // deferred until the first entry was durable
        }
        if self.role == Role::Leader {
            self.maybe_commit();
        }
    }

    /// Storage made a Ready's `hard_state` durable.
    pub fn hard_state_persisted(&mut self, hard_state: HardState) {
        if hard_state.cluster_id.is_none() || self.durable_cluster_id.is_some() {
            return;
        }
        assert_eq!(hard_state.cluster_id, self.hard_state.cluster_id);
        self.durable_cluster_id = hard_state.cluster_id;
        if self.role == Role::Leader {
            self.maybe_commit();
        }
    }

    /// Binds this node for good to the cluster its first entry names, once
    /// that entry is known committed (`HardState::cluster_id`) and durable
    /// here.
    pub(super) fn bind_to_cluster(&mut self) {
        // Never durable without the entry it names (entries_before_binding).
        let first_durable = self.log.persisted_index() >= LogIndex(1);
        let first_committed = self.log.commit_index() >= LogIndex(1);
        if self.hard_state.cluster_id.is_some() || !first_durable || !first_committed {
            return;
        }
        let Some(cluster_id) = self
            .log
            .entry(LogIndex(1))
            .and_then(ClusterId::of_bootstrap)
        else {
            return; // a log from before cluster ids, or built by a test
        };
        self.hard_state.cluster_id = Some(cluster_id);
        self.hard_state_dirty = true;
        self.ready
            .events
            .push(Event::ClusterIdLearned { cluster_id });
    }

    /// Collects everything the runtime must do now.
    pub fn ready(&mut self) -> Ready {
        if self.role == Role::Leader {
            self.start_read_round();
            self.send_pending_appends();
        }
        let appended = self.log.take_unstable();
        if let Some(last) = appended.last() {
            self.ready.events.push(Event::EntriesAppended {
                count: appended.len(),
                term: last.term,
                last_index: last.index,
            });
        }
        self.ready.entries = appended;
        if self.hard_state_dirty {
            self.ready.hard_state = Some(self.hard_state);
            self.hard_state_dirty = false;
        }
        self.ready.committed_entries = self
            .log
            .take_committed(self.config.limits.apply_batch_entries_max);
        std::mem::take(&mut self.ready)
    }

    /// Whether `ready` would return anything: the runtime calls `ready`
    /// again after `persisted`, which may have committed entries.
    pub fn has_ready(&self) -> bool {
        let log = &self.log;
        !self.ready.is_empty()
            || self.hard_state_dirty
            || log.has_unstable()
            || log.commit_index() > log.last_applied()
            || self.reads.round_wanted()
            || self.progress.values().any(|progress| {
                progress.can_send_entries() && progress.next_index <= log.last_index()
            })
    }

    /// Test builds only: behave wrongly in one known way.
    #[cfg(feature = "planted-bugs")]
    pub fn plant_bug(&mut self, bug: Option<PlantedBug>) {
        self.planted_bug = bug;
    }

    /// Test builds only: the bug this node runs with, for the driver's own.
    #[cfg(feature = "planted-bugs")]
    pub fn planted_bug(&self) -> Option<PlantedBug> {
        self.planted_bug
    }

    #[cfg(feature = "planted-bugs")]
    pub(super) fn planted(&self, bug: PlantedBug) -> bool {
        self.planted_bug == Some(bug)
    }

    #[cfg(not(feature = "planted-bugs"))]
    pub(super) fn planted(&self, _bug: PlantedBug) -> bool {
        false
    }

    // ---- queries ---------------------------------------------------------

    pub fn status(&self) -> Status {
        Status {
            id: self.config.id,
            role: self.role,
            term: self.hard_state.current_term,
            leader: self.leader_id,
            last_index: self.log.last_index(),
            commit_index: self.log.commit_index(),
            last_applied: self.log.last_applied(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.config.id
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn current_term(&self) -> Term {
        self.hard_state.current_term
    }

    /// The cluster this node belongs to, once known (see `HardState`).
    pub fn cluster_id(&self) -> Option<ClusterId> {
        self.hard_state.cluster_id
    }

    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    pub fn leader_id(&self) -> Option<NodeId> {
        self.leader_id
    }

    pub fn log(&self) -> &RaftLog {
        &self.log
    }

    /// Expensive checks of the whole node, for debug builds and the simulator.
    pub fn check_invariants(&self) {
        self.log.check_invariants();
        if let Some(cluster_id) = self.hard_state.cluster_id {
            let first = self.log.entry(LogIndex(1));
            assert!(
                first.is_none_or(|entry| ClusterId::of_bootstrap(entry) == Some(cluster_id)),
                "log does not start with cluster {cluster_id}'s Bootstrap entry"
            );
        }
        assert!(self.log.last_term() <= self.hard_state.current_term);
        if self.role == Role::Leader {
            assert_eq!(self.leader_id, Some(self.config.id));
            assert_eq!(self.hard_state.voted_for, Some(self.config.id));
            for progress in self.progress.values() {
                assert!(progress.match_index < progress.next_index);
                assert!(progress.next_index <= self.log.last_index().next());
            }
        } else {
            assert!(self.progress.is_empty(), "only a leader tracks progress");
            assert!(self.reads.is_empty(), "only a leader serves reads");
        }
    }

    // ---- shared by the role files ----------------------------------------

    pub(super) fn become_follower(
        &mut self,
        term: Term,
        leader: Option<NodeId>,
        reason: StepDownReason,
    ) {
        assert!(term >= self.hard_state.current_term, "term going backwards");
        let was = self.role;
        if term > self.hard_state.current_term {
            self.hard_state = self.hard_state.new_term(term);
            self.hard_state_dirty = true;
        }
        self.role = Role::Follower;
        self.progress.clear();
        self.reads.clear();
        self.votes_granted.clear();
        self.leader_id = None;
        self.set_leader(leader);
        self.reset_election_deadline();
        if was != Role::Follower {
            self.ready
                .events
                .push(Event::BecameFollower { term, reason });
        }
    }

    pub(super) fn set_leader(&mut self, leader: Option<NodeId>) {
        if let Some(id) = leader {
            self.leader_contact_ms = self.now_ms;
            if self.leader_id != leader {
                self.ready.events.push(Event::LeaderChanged {
                    term: self.hard_state.current_term,
                    leader: id,
                });
            }
        }
        self.leader_id = leader;
    }

    pub(super) fn reset_election_deadline(&mut self) {
        let timeout = self.rng.range_inclusive(
            self.config.election_timeout_ms_min,
            self.config.election_timeout_ms_max,
        );
        self.election_deadline_ms = self.now_ms + timeout;
    }

    pub(super) fn message(&self, to: NodeId, body: MessageBody) -> Message {
        Message {
            from: self.config.id,
            to,
            term: self.hard_state.current_term,
            cluster: self.cluster_tag(),
            body,
        }
    }

    /// What this node's messages say of its cluster.
    pub fn cluster_tag(&self) -> ClusterTag {
        let log_id = self.hard_state.cluster_id.or_else(|| {
            self.log
                .entry(LogIndex(1))
                .and_then(ClusterId::of_bootstrap)
        });
        ClusterTag {
            log_id,
            bound: self.hard_state.cluster_id.is_some(),
        }
    }

    /// Whether this node's first entry is its cluster's for good: it is
    /// bound, or about to be (it knows the Bootstrap committed; only the
    /// binding's write waits for its copy of the entry to be durable).
    pub(super) fn knows_cluster(&self) -> bool {
        self.hard_state.cluster_id.is_some()
            || (self.log.commit_index() >= LogIndex(1) && self.log.first_is_bootstrap())
    }

    /// A message this node must not act on (it does not even take the
    /// term): (1) from a node bound to another cluster, once this node
    /// knows its own; (2) a request from a node whose log begins with
    /// another cluster's Bootstrap, once this node knows its own; (3) a vote
    /// request from a node bound to another cluster, whenever this node's
    /// log begins with a Bootstrap of its own. (3) is what keeps a stale
    /// member from gathering, in a new cluster's first heartbeat, the votes
    /// of nodes that hold a committed Bootstrap and do not know it yet:
    /// they all refuse it, and they are a majority. Answers from a node
    /// whose first entry differs still count: it may be one of ours whose
    /// uncommitted first entry we are about to replace.
    fn is_foreign(&self, message: &Message) -> bool {
        if self.planted(PlantedBug::AdmitForeignCluster) {
            return false;
        }
        let diverges = message.cluster.diverges_from(self.cluster_tag());
        if !diverges {
            return false;
        }
        let known = self.knows_cluster();
        match message.body {
            _ if message.cluster.bound && known => true,
            MessageBody::RequestVote(_) | MessageBody::AppendEntries(_) if known => true,
            MessageBody::RequestVote(_) => message.cluster.bound,
            _ => false,
        }
    }

    pub(super) fn send(&mut self, to: NodeId, body: MessageBody) {
        let message = self.message(to, body);
        self.ready.messages.push(message);
    }

    pub(super) fn send_after_persist(&mut self, to: NodeId, body: MessageBody) {
        let message = self.message(to, body);
        self.ready.messages_after_persist.push(message);
    }
}

/// Checks what the log's invariants rely on and a decoder cannot know:
/// entries follow prev_log_index, their terms never decrease, start at or
/// above prev_log_term, and never exceed the sender's term.
fn well_formed(message: &Message) -> bool {
    let MessageBody::AppendEntries(request) = &message.body else {
        return true;
    };
    let mut expected_index = request.prev_log_index.next();
    let mut previous_term = request.prev_log_term;
    for entry in &request.entries {
        if entry.index != expected_index || entry.term < previous_term || entry.term > message.term
        {
            return false;
        }
        expected_index = expected_index.next();
        previous_term = entry.term;
    }
    request.prev_log_term <= message.term
}
