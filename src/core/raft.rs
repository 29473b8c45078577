//! The Raft state machine (Figure 2 of the paper). This file holds the
//! node's state and its inputs and outputs; `role.rs` holds the roles, their
//! state and their step and tick functions; `election.rs`, `replication.rs`
//! and `read_index.rs` hold the rules. Term handling happens once, in
//! `step`, before a role's handler sees the message.

use super::config::{Config, ConfigError};
use super::membership::Configuration;
use super::message::*;
use super::planted::PlantedBug;
use super::progress::ProgressState;
use super::raft_log::RaftLog;
use super::ready::{Event, Ready};
use super::rng::Rng;
pub use super::role::Role;
use super::role::{FollowerState, RoleState};
use super::snapshot::{SnapshotReceive, Snapshots};
use super::transfer::Transfer;
use super::types::*;
use std::sync::Arc;

/// Why a proposal or read was refused. Either way nothing was appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposeError {
    NotLeader {
        leader: Option<NodeId>,
    },
    /// Too many reads wait for confirmation already.
    Busy,
    /// This leader is handing leadership to `to` (§3.10) and appends
    /// nothing meanwhile; `to` is where to try.
    Transferring {
        to: NodeId,
    },
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
    pub(super) role: RoleState,
    pub(super) now_ms: u64,
    /// When the election timer fires; a leader ignores it. It is not part
    /// of the roles' states because resetting it draws from `rng` in any
    /// role (a leader that grants a vote under a planted bug too), and the
    /// draws decide every later timeout.
    pub(super) election_deadline_ms: u64,
    pub(super) rng: Rng,
    /// This node's durable snapshots, as far as the core needs them.
    pub(super) snapshots: Snapshots,
    /// The snapshot a follower is receiving, if any. Not a role's: the
    /// bytes stored so far outlast an election this node joins.
    pub(super) receiving: Option<SnapshotReceive>,
    /// The leadership transfer under way (`transfer.rs`), if any.
    pub(super) transfer: Option<Transfer>,
    pub(super) ready: Ready,
    #[cfg(feature = "planted-bugs")]
    planted_bug: Option<PlantedBug>,
}

impl Raft {
    /// A node restored from its durable hard state and log, without a
    /// snapshot.
    pub fn new(
        config: Config,
        hard_state: HardState,
        entries: Vec<Entry>,
        now_ms: u64,
    ) -> Result<Raft, ConfigError> {
        Raft::restore(config, hard_state, None, entries, now_ms)
    }

    /// A node restored at start-up from its durable hard state, its newest
    /// valid snapshot (the state machine was restored from it) and the log
    /// entries storage holds, which may begin below the snapshot. A node
    /// with a snapshot is bound to the snapshot's cluster: its Bootstrap
    /// entry was committed, applied and is durable in the snapshot.
    pub fn restore(
        config: Config,
        mut hard_state: HardState,
        snapshot: Option<StoredSnapshot>,
        entries: Vec<Entry>,
        now_ms: u64,
    ) -> Result<Raft, ConfigError> {
        config.validate()?;
        let rng = Rng::new(config.seed ^ u64::from(config.id.0).wrapping_mul(0x9E37_79B9));
        let mut hard_state_dirty = false;
        if let Some(snapshot_cluster) = snapshot.as_ref().and_then(|s| s.meta.cluster_id) {
            match hard_state.cluster_id {
                None => {
                    hard_state.cluster_id = Some(snapshot_cluster);
                    hard_state_dirty = true;
                }
                Some(bound) if bound != snapshot_cluster => {
                    let snapshot = snapshot_cluster;
                    return Err(ConfigError::SnapshotOfAnotherCluster { bound, snapshot });
                }
                Some(_) => {}
            }
        }
        check_stored_configurations(&entries)?;
        let start = Arc::new(config.start.configuration().clone());
        let mut log = RaftLog::restored(
            Arc::clone(&start),
            snapshot.as_ref().map(|s| &s.meta),
            entries,
        );
        // Until the start-up plan of issue 14 decides between a stored
        // configuration and --peers, quorums stay those of --peers.
        let stored = log.configs().current().clone();
        let ignored = !stored.config.voters().eq(start.voters());
        if ignored {
            log.ignore_stored_configurations(start);
        }
        assert!(
            log.last_term() <= hard_state.current_term,
            "log term {} above current term {}",
            log.last_term(),
            hard_state.current_term
        );
        let mut raft = Raft {
            config,
            hard_state,
            hard_state_dirty,
            // The snapshot is durable, and names the cluster as well.
            durable_cluster_id: hard_state.cluster_id,
            log,
            role: RoleState::Follower(FollowerState::default()),
            now_ms,
            election_deadline_ms: 0,
            rng,
            snapshots: Snapshots::restored(snapshot),
            receiving: None,
            transfer: None,
            ready: Ready::default(),
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        };
        raft.reset_election_deadline();
        if ignored {
            let index = stored.index;
            let event = Event::StoredConfigurationIgnored { index };
            raft.ready.events.push(event);
        }
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
            RoleState::Leader(_) => self.tick_heartbeat(),
            _ => self.tick_election(),
        }
        self.check_transfer();
    }

    /// The earliest time at which `advance_time` has something to do.
    pub fn next_deadline_ms(&self) -> u64 {
        let role_deadline_ms = match &self.role {
            RoleState::Leader(leader) => leader.heartbeat_deadline_ms,
            _ => self.election_deadline_ms,
        };
        let transfer_deadline_ms = self.transfer.map_or(u64::MAX, |t| t.deadline_ms);
        role_deadline_ms.min(transfer_deadline_ms)
    }

    /// Messages from nodes outside the configuration are taken too: a new
    /// leader may be one this node's log does not know yet. What counts
    /// toward a majority is decided by the configuration, never by who
    /// may talk.
    pub fn step(&mut self, message: Message) {
        assert_eq!(message.to, self.config.id, "message for another node");
        if message.from == self.config.id {
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
            RoleState::Follower(_) => self.step_follower(message),
            RoleState::PreCandidate(_) | RoleState::Candidate(_) => self.step_candidate(message),
            RoleState::Leader(_) => self.step_leader(message),
        }
        self.send_timeout_now_if_caught_up();
        self.check_transfer();
    }

    /// A client command. On success the entry is appended (not yet durable or
    /// committed) at the returned index and term. `data` is copied, so the
    /// caller may reuse its buffer.
    pub fn propose(&mut self, data: &[u8]) -> Result<(LogIndex, Term), ProposeError> {
        if !self.is_leader() {
            return Err(ProposeError::NotLeader {
                leader: self.leader_id(),
            });
        }
        if let Some(to) = self.transferring_to() {
            return Err(ProposeError::Transferring { to });
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
        let RoleState::Leader(leader) = &mut self.role else {
            return;
        };
        let now_ms = self.now_ms;
        if let Some(progress) = leader.progress.get_mut(&peer) {
            match &mut progress.state {
                ProgressState::Replicate => progress.become_probe(),
                // The chunks in flight are lost with the connection; what
                // the follower said it stored is not.
                ProgressState::Snapshot(transfer) => transfer.resume(now_ms),
                ProgressState::Probe => {}
            }
        }
    }

    /// Storage made the log durable up to (index, term).
    pub fn persisted(&mut self, index: LogIndex, term: Term) {
        self.log.persisted(index, term);
        if self.log.commit_index() > LogIndex(0) {
            self.bind_to_cluster(); // deferred until the first entry was durable
        }
        if self.is_leader() {
            self.commit_by_majority();
        }
    }

    /// Storage made a Ready's `hard_state` durable.
    pub fn hard_state_persisted(&mut self, hard_state: HardState) {
        if hard_state.cluster_id.is_none() || self.durable_cluster_id.is_some() {
            return;
        }
        assert_eq!(hard_state.cluster_id, self.hard_state.cluster_id);
        self.durable_cluster_id = hard_state.cluster_id;
        if self.is_leader() {
            self.commit_by_majority();
        }
    }

    /// Binds this node for good to the cluster its first entry names, once
    /// that entry is known committed (`HardState::cluster_id`) and durable
    /// here.
    pub(super) fn bind_to_cluster(&mut self) {
        // Never durable without the entry it names (entries_before_binding);
        // a compacted one is in a durable snapshot.
        let first_durable = self.log.persisted_index() >= LogIndex(1);
        let first_committed = self.log.commit_index() >= LogIndex(1);
        if self.hard_state.cluster_id.is_some() || !first_durable || !first_committed {
            return;
        }
        let Some(cluster_id) = self.log.first_cluster_id() else {
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
        if self.is_leader() {
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
        // A snapshot being installed replaces the state machine: entries
        // applied meanwhile would be lost, or applied twice.
        if !self.is_installing_snapshot() {
            self.ready.committed_entries = self
                .log
                .take_committed(self.config.limits.apply_batch_entries_max);
        }
        std::mem::take(&mut self.ready)
    }

    /// Whether `ready` would return anything: the runtime calls `ready`
    /// again after `persisted`, which may have committed entries.
    pub fn has_ready(&self) -> bool {
        let log = &self.log;
        !self.ready.is_empty()
            || self.hard_state_dirty
            || log.has_unstable()
            || (log.commit_index() > log.last_applied() && !self.is_installing_snapshot())
            || match &self.role {
                RoleState::Leader(leader) => {
                    leader.reads.round_wanted()
                        || leader.has_appends_to_send(log)
                        || leader.has_chunks_to_send(&self.config.limits)
                }
                _ => false,
            }
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
            role: self.role(),
            term: self.hard_state.current_term,
            leader: self.leader_id(),
            last_index: self.log.last_index(),
            commit_index: self.log.commit_index(),
            last_applied: self.log.last_applied(),
        }
    }

    /// The latest time the runtime reported.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn id(&self) -> NodeId {
        self.config.id
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn role(&self) -> Role {
        self.role.role()
    }

    pub(super) fn is_leader(&self) -> bool {
        matches!(self.role, RoleState::Leader(_))
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

    /// The leader of the current term, as far as this node knows.
    pub fn leader_id(&self) -> Option<NodeId> {
        match &self.role {
            RoleState::Follower(follower) => follower.leader.map(|leader| leader.id),
            RoleState::PreCandidate(_) | RoleState::Candidate(_) => None,
            RoleState::Leader(_) => Some(self.config.id),
        }
    }

    pub fn log(&self) -> &RaftLog {
        &self.log
    }

    /// The configuration in effect: the latest the log holds, committed or
    /// not (dissertation §4.1), else the start configuration.
    pub fn configuration(&self) -> &Configuration {
        &self.log.configs().current().config
    }

    /// The other members, voters and learners: whom a leader replicates to.
    pub(super) fn peers(&self) -> Vec<NodeId> {
        let members = self.configuration().members.iter();
        let others = members.filter(|member| member.id != self.config.id);
        others.map(|member| member.id).collect()
    }

    /// Expensive checks of the whole node, for debug builds and the simulator.
    pub fn check_invariants(&self) {
        self.log.check_invariants();
        self.check_snapshot_invariants();
        if let Some(cluster_id) = self.hard_state.cluster_id {
            let first = self.log.first_cluster_id();
            let empty = self.log.last_index() == LogIndex(0);
            assert!(
                empty || first == Some(cluster_id),
                "log does not start with cluster {cluster_id}'s Bootstrap entry"
            );
        }
        assert!(self.log.last_term() <= self.hard_state.current_term);
        if let Some(transfer) = self.transfer {
            assert_ne!(transfer.to, self.config.id, "transfer to ourselves");
            assert!(transfer.started_term <= self.hard_state.current_term);
        }
        match &self.role {
            RoleState::Leader(leader) => {
                assert_eq!(self.hard_state.voted_for, Some(self.config.id));
                let peers = self.peers();
                assert!(peers.iter().all(|peer| leader.progress.contains_key(peer)));
                for progress in leader.progress.values() {
                    assert!(progress.match_index < progress.next_index);
                    assert!(progress.next_index <= self.log.last_index().next());
                }
            }
            RoleState::PreCandidate(candidate) | RoleState::Candidate(candidate) => {
                assert!(candidate.votes.contains(&self.config.id));
            }
            RoleState::Follower(_) => {}
        }
    }

    // ---- shared by the role and rule files -------------------------------

    pub(super) fn reset_election_deadline(&mut self) {
        let timeout = self.rng.range_inclusive(
            self.config.election_timeout_ms_min,
            self.config.election_timeout_ms_max,
        );
        self.election_deadline_ms = self.now_ms + timeout;
    }

    pub(super) fn message(&self, to: NodeId, body: MessageBody) -> Message {
        self.envelope().to(to, body)
    }

    /// What this node's messages carry besides their body, taken once for
    /// a batch of sends (the cluster tag costs a look at the log).
    pub(super) fn envelope(&self) -> Envelope {
        Envelope {
            from: self.config.id,
            term: self.hard_state.current_term,
            cluster: self.cluster_tag(),
        }
    }

    /// What this node's messages say of its cluster.
    pub fn cluster_tag(&self) -> ClusterTag {
        let log_id = self
            .hard_state
            .cluster_id
            .or_else(|| self.log.first_cluster_id());
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
            MessageBody::RequestVote(_)
            | MessageBody::AppendEntries(_)
            | MessageBody::InstallSnapshot(_)
                if known =>
            {
                true
            }
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

#[derive(Clone, Copy, Debug)]
pub(super) struct Envelope {
    pub(super) from: NodeId,
    pub(super) term: Term,
    pub(super) cluster: ClusterTag,
}

impl Envelope {
    pub(super) fn to(self, to: NodeId, body: MessageBody) -> Message {
        Message {
            from: self.from,
            to,
            term: self.term,
            cluster: self.cluster,
            body,
        }
    }
}

/// A configuration in the stored log that does not decode is damage the
/// node must not start on (a peer's is dropped by `well_formed`).
fn check_stored_configurations(entries: &[Entry]) -> Result<(), ConfigError> {
    for entry in entries {
        if let Some(Err(problem)) = Configuration::of_entry(entry) {
            let index = entry.index;
            return Err(ConfigError::StoredConfiguration { index, problem });
        }
    }
    Ok(())
}

/// Checks what the log's invariants rely on and a decoder cannot know:
/// entries follow prev_log_index, their terms never decrease, start at or
/// above prev_log_term, and never exceed the sender's term; a snapshot
/// chunk lies within its file, and its snapshot is of the sender's term or
/// earlier and of the sender's cluster.
fn well_formed(message: &Message) -> bool {
    let request = match &message.body {
        MessageBody::AppendEntries(request) => request,
        MessageBody::InstallSnapshot(chunk) => return well_formed_chunk(message, chunk),
        _ => return true,
    };
    let mut expected_index = request.prev_log_index.next();
    let mut previous_term = request.prev_log_term;
    for entry in &request.entries {
        if entry.index != expected_index || entry.term < previous_term || entry.term > message.term
        {
            return false;
        }
        if matches!(Configuration::of_entry(entry), Some(Err(_))) {
            return false; // the log would hold what it cannot read
        }
        expected_index = expected_index.next();
        previous_term = entry.term;
    }
    request.prev_log_term <= message.term
}

fn well_formed_chunk(message: &Message, chunk: &InstallSnapshot) -> bool {
    let within_file = chunk
        .offset
        .checked_add(chunk.data.len() as u64)
        .is_some_and(|end| end <= chunk.total_size);
    let same_cluster = match (chunk.meta.cluster_id, message.cluster.log_id) {
        (Some(snapshot), Some(sender)) => snapshot == sender,
        _ => true,
    };
    within_file
        && same_cluster
        && !chunk.data.is_empty()
        && chunk.data.len() <= crate::constants::SNAPSHOT_CHUNK_SIZE_MAX
        && chunk.meta.index > LogIndex(0)
        && chunk.meta.term <= message.term
}
