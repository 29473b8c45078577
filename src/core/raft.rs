//! The Raft state machine (Figure 2 of the paper). Roles have one
//! `step_*` function each; term handling happens once in `step` first.

use super::config::{Config, ConfigError};
use super::message::*;
use super::planted::PlantedBug;
use super::progress::{Progress, ProgressState};
use super::raft_log::RaftLog;
use super::ready::{Event, Ready, StepDownReason};
use super::rng::Rng;
use super::types::*;
use crate::constants::{APPEND_BATCH_ENTRIES_MAX, APPEND_BATCH_SIZE_MAX, APPLY_BATCH_ENTRIES_MAX};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    Candidate,
    Leader,
}

/// Why a proposal was refused. Either way it was certainly not appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposeError {
    NotLeader { leader: Option<NodeId> },
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
    config: Config,
    hard_state: HardState,
    hard_state_dirty: bool,
    log: RaftLog,
    role: Role,
    leader_id: Option<NodeId>,
    /// Candidate only: who granted us their vote this term.
    votes_granted: BTreeSet<NodeId>,
    /// Leader only: one entry per peer.
    progress: BTreeMap<NodeId, Progress>,
    now_ms: u64,
    election_deadline_ms: u64,
    heartbeat_deadline_ms: u64,
    rng: Rng,
    ready: Ready,
    #[cfg(feature = "planted-bugs")]
    planted_bug: Option<super::planted::PlantedBug>,
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
            log,
            role: Role::Follower,
            leader_id: None,
            votes_granted: BTreeSet::new(),
            progress: BTreeMap::new(),
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
        if now_ms < self.now_ms {
            return;
        }
        self.now_ms = now_ms;
        match self.role {
            Role::Follower | Role::Candidate => {
                if now_ms >= self.election_deadline_ms {
                    self.campaign();
                }
            }
            Role::Leader => {
                if now_ms >= self.heartbeat_deadline_ms {
                    self.heartbeat_deadline_ms = now_ms + self.config.heartbeat_interval_ms;
                    self.broadcast_heartbeat();
                }
            }
        }
    }

    /// The earliest time at which `advance_time` has something to do.
    pub fn next_deadline_ms(&self) -> u64 {
        match self.role {
            Role::Leader => self.heartbeat_deadline_ms,
            Role::Follower | Role::Candidate => self.election_deadline_ms,
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
        if message.term > self.hard_state.current_term {
            let leader =
                matches!(message.body, MessageBody::AppendEntries(_)).then_some(message.from);
            self.become_follower(
                message.term,
                leader,
                StepDownReason::HigherTerm { from: message.from },
            );
        } else if message.term < self.hard_state.current_term {
            self.answer_stale(&message);
            return;
        }
        match self.role {
            Role::Follower => self.step_follower(message),
            Role::Candidate => self.step_candidate(message),
            Role::Leader => self.step_leader(message),
        }
    }

    /// A client command. On success the entry is appended (not yet durable or
    /// committed) at the returned index and term.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(LogIndex, Term), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader_id,
            });
        }
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
        if self.role == Role::Leader {
            self.maybe_commit();
        }
    }

    /// Collects everything the runtime must do now.
    pub fn ready(&mut self) -> Ready {
        if self.role == Role::Leader {
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
        self.ready.committed_entries = self.log.take_committed(APPLY_BATCH_ENTRIES_MAX);
        std::mem::take(&mut self.ready)
    }

    /// Whether `ready` would return anything: the runtime calls `ready`
    /// again after `persisted`, which may have committed entries.
    pub fn has_ready(&self) -> bool {
        let log = &self.log;
        !self.ready.is_empty()
            || self.hard_state_dirty
            || log.has_unstable()
            || log.commit_index().min(log.persisted_index()) > log.last_applied()
            || self.progress.values().any(|progress| {
                progress.can_send_entries() && progress.next_index <= log.last_index()
            })
    }

    /// Test builds only: behave wrongly in one known way.
    #[cfg(feature = "planted-bugs")]
    pub fn plant_bug(&mut self, bug: Option<super::planted::PlantedBug>) {
        self.planted_bug = bug;
    }

    #[cfg(feature = "planted-bugs")]
    fn planted(&self, bug: super::planted::PlantedBug) -> bool {
        self.planted_bug == Some(bug)
    }

    #[cfg(not(feature = "planted-bugs"))]
    fn planted(&self, _bug: super::planted::PlantedBug) -> bool {
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

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn current_term(&self) -> Term {
        self.hard_state.current_term
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
        assert!(self.log.last_term() <= self.hard_state.current_term);
        if self.role == Role::Leader {
            assert_eq!(self.leader_id, Some(self.config.id));
            assert_eq!(self.hard_state.voted_for, Some(self.config.id));
            for progress in self.progress.values() {
                assert!(progress.match_index < progress.next_index);
                assert!(progress.next_index <= self.log.last_index().next());
            }
        }
    }

    // ---- role changes ----------------------------------------------------

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>, reason: StepDownReason) {
        assert!(term >= self.hard_state.current_term, "term going backwards");
        let was = self.role;
        if term > self.hard_state.current_term {
            self.hard_state = HardState {
                current_term: term,
                voted_for: None,
            };
            self.hard_state_dirty = true;
        }
        self.role = Role::Follower;
        self.progress.clear();
        self.votes_granted.clear();
        self.set_leader(leader);
        self.reset_election_deadline();
        if was != Role::Follower {
            self.ready
                .events
                .push(Event::BecameFollower { term, reason });
        }
    }

    fn set_leader(&mut self, leader: Option<NodeId>) {
        if leader.is_some() && leader != self.leader_id {
            if let Some(leader) = leader {
                self.ready.events.push(Event::LeaderChanged {
                    term: self.hard_state.current_term,
                    leader,
                });
            }
        }
        self.leader_id = leader;
    }

    /// §5.2: increment the term, vote for ourselves, ask everyone else.
    fn campaign(&mut self) {
        let term = Term(self.hard_state.current_term.0 + 1);
        self.hard_state = HardState {
            current_term: term,
            voted_for: Some(self.config.id),
        };
        self.hard_state_dirty = true;
        self.role = Role::Candidate;
        self.leader_id = None;
        self.votes_granted = BTreeSet::from([self.config.id]);
        self.reset_election_deadline();
        self.ready.events.push(Event::ElectionTimeout { term });
        let request = RequestVote {
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
        };
        let peers: Vec<NodeId> = self.config.peers().collect();
        for peer in peers {
            self.send(peer, MessageBody::RequestVote(request.clone()));
        }
        self.maybe_win_election();
    }

    fn maybe_win_election(&mut self) {
        if self.votes_granted.len() >= self.config.quorum() {
            self.become_leader();
        }
    }

    fn become_leader(&mut self) {
        assert_eq!(self.role, Role::Candidate);
        let term = self.hard_state.current_term;
        self.role = Role::Leader;
        self.set_leader(Some(self.config.id));
        self.ready.events.push(Event::BecameLeader {
            term,
            votes: self.votes_granted.len(),
        });
        self.votes_granted.clear();
        let next_index = self.log.last_index().next();
        let peers: Vec<NodeId> = self.config.peers().collect();
        self.progress = peers
            .into_iter()
            .map(|peer| (peer, Progress::new(next_index)))
            .collect();
        // §8: a no-op of the new term lets earlier entries commit (Figure 8).
        self.log.append_new(term, EntryKind::Noop, Vec::new());
        self.heartbeat_deadline_ms = self.now_ms + self.config.heartbeat_interval_ms;
    }

    fn reset_election_deadline(&mut self) {
        let timeout = self.rng.range_inclusive(
            self.config.election_timeout_ms_min,
            self.config.election_timeout_ms_max,
        );
        self.election_deadline_ms = self.now_ms + timeout;
    }

    // ---- per-role message handling ----------------------------------------

    fn step_follower(&mut self, message: Message) {
        match message.body {
            MessageBody::RequestVote(request) => self.handle_request_vote(message.from, &request),
            MessageBody::AppendEntries(request) => {
                self.handle_append_entries(message.from, request)
            }
            // Answers to requests of an earlier role at this term: nothing to do.
            MessageBody::RequestVoteResponse(_) | MessageBody::AppendEntriesResponse(_) => {}
        }
    }

    fn step_candidate(&mut self, message: Message) {
        match message.body {
            MessageBody::RequestVote(request) => self.handle_request_vote(message.from, &request),
            MessageBody::RequestVoteResponse(response) => {
                if response.vote_granted {
                    self.votes_granted.insert(message.from);
                    self.maybe_win_election();
                }
            }
            MessageBody::AppendEntries(request) => {
                // §5.2: a leader of our term exists; its AppendEntries is legitimate.
                let leader = message.from;
                self.become_follower(
                    self.hard_state.current_term,
                    Some(leader),
                    StepDownReason::LeaderExists { leader },
                );
                self.handle_append_entries(leader, request);
            }
            MessageBody::AppendEntriesResponse(_) => {}
        }
    }

    fn step_leader(&mut self, message: Message) {
        match message.body {
            MessageBody::RequestVote(request) => self.handle_request_vote(message.from, &request),
            MessageBody::AppendEntriesResponse(response) => {
                self.handle_append_response(message.from, &response)
            }
            MessageBody::AppendEntries(_) => {
                panic!(
                    "two leaders in term {}: {} and {}",
                    self.hard_state.current_term, self.config.id, message.from
                )
            }
            MessageBody::RequestVoteResponse(_) => {}
        }
    }

    /// A message from an earlier term. Tell its sender our term so a stale
    /// leader or candidate steps down (Figure 2, "Rules for all servers").
    fn answer_stale(&mut self, message: &Message) {
        match &message.body {
            MessageBody::RequestVote(_) => self.send(
                message.from,
                MessageBody::RequestVoteResponse(RequestVoteResponse {
                    vote_granted: false,
                }),
            ),
            MessageBody::AppendEntries(request) => self.send(
                message.from,
                MessageBody::AppendEntriesResponse(AppendEntriesResponse {
                    success: false,
                    index: request.prev_log_index,
                    conflict_term: None,
                    conflict_index: LogIndex(0),
                }),
            ),
            MessageBody::RequestVoteResponse(_) | MessageBody::AppendEntriesResponse(_) => {}
        }
    }

    /// Figure 2, RequestVote receiver: at most one vote per term, and only for
    /// a candidate whose log is at least as up-to-date as ours (§5.4.1).
    fn handle_request_vote(&mut self, candidate: NodeId, request: &RequestVote) {
        let can_vote = match self.hard_state.voted_for {
            None => self.leader_id.is_none(),
            Some(voted_for) => voted_for == candidate,
        } || self.planted(PlantedBug::SecondVoteInTerm);
        let granted = can_vote
            && self
                .log
                .is_up_to_date(request.last_log_index, request.last_log_term);
        if granted {
            self.hard_state.voted_for = Some(candidate);
            self.hard_state_dirty = true;
            self.reset_election_deadline();
        }
        let response = MessageBody::RequestVoteResponse(RequestVoteResponse {
            vote_granted: granted,
        });
        if self.planted(PlantedBug::VoteBeforePersist) {
            return self.send(candidate, response);
        }
        self.send_after_persist(candidate, response);
    }

    /// Figure 2, AppendEntries receiver.
    fn handle_append_entries(&mut self, leader: NodeId, request: AppendEntries) {
        debug_assert_eq!(self.role, Role::Follower);
        self.set_leader(Some(leader));
        self.reset_election_deadline();
        let prev_index = request.prev_log_index;
        if !self.log.matches(prev_index, request.prev_log_term) {
            let response = self.rejection(prev_index);
            self.send_after_persist(leader, MessageBody::AppendEntriesResponse(response));
            return;
        }
        let last_before = self.log.last_index();
        if self.planted(PlantedBug::TruncateOnMatchingAppend) {
            self.log.planted_cut_after(prev_index);
        }
        let last_new = self.log.append_from_leader(prev_index, request.entries);
        if self.log.last_index() < last_before {
            self.ready.events.push(Event::LogTruncated {
                from: self.log.last_index().next(),
            });
        }
        let commit = request.leader_commit.min(last_new);
        if self.log.commit_to(commit) {
            self.ready.events.push(Event::CommitAdvanced {
                commit_index: commit,
            });
        }
        let response = AppendEntriesResponse {
            success: true,
            index: last_new,
            conflict_term: None,
            conflict_index: LogIndex(0),
        };
        self.send_after_persist(leader, MessageBody::AppendEntriesResponse(response));
    }

    /// Fast backtracking: name our term at `prev_index` and where it starts,
    /// so the leader can skip a whole term per round trip.
    fn rejection(&self, prev_index: LogIndex) -> AppendEntriesResponse {
        let (conflict_term, conflict_index) = match self.log.term_at(prev_index) {
            None => (None, self.log.last_index().next()),
            Some(term) => {
                let first = self.log.first_index_of_term(term, prev_index);
                (Some(term), first.max(self.log.commit_index().next()))
            }
        };
        AppendEntriesResponse {
            success: false,
            index: prev_index,
            conflict_term,
            conflict_index,
        }
    }

    fn handle_append_response(&mut self, follower: NodeId, response: &AppendEntriesResponse) {
        let Some(progress) = self.progress.get_mut(&follower) else {
            return;
        };
        progress.recent_active = true;
        if response.success {
            let news = progress.acknowledge(response.index);
            if news && progress.state == ProgressState::Probe {
                progress.become_replicate();
            }
            if news {
                self.maybe_commit();
            }
            return;
        }
        if response.index <= progress.match_index {
            return; // stale: we already know it matches further
        }
        if progress.state == ProgressState::Probe && response.index.next() != progress.next_index {
            return; // answer to an older probe
        }
        let next = Self::next_after_rejection(&self.log, progress, response);
        progress.become_probe();
        progress.next_index = next;
    }

    fn next_after_rejection(
        log: &RaftLog,
        progress: &Progress,
        response: &AppendEntriesResponse,
    ) -> LogIndex {
        let hinted = match response.conflict_term {
            Some(term) => log
                .last_index_of_term(term)
                .map_or(response.conflict_index, |last| last.next()),
            None => response.conflict_index,
        };
        // Move strictly below the rejected prev index, never below the match.
        hinted.min(response.index).max(progress.match_index.next())
    }

    // ---- leader duties ---------------------------------------------------

    /// §5.3/§5.4.2: commit the highest index a majority stores, but only if
    /// its entry is of the current term (Figure 8).
    fn maybe_commit(&mut self) {
        let mut matched: Vec<LogIndex> = self.progress.values().map(|p| p.match_index).collect();
        matched.push(self.log.persisted_index());
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = matched[self.config.quorum() - 1];
        if candidate <= self.log.commit_index() {
            return;
        }
        let old_term = self.log.term_at(candidate) != Some(self.hard_state.current_term);
        if old_term && !self.planted(PlantedBug::CommitOldTermByCount) {
            return;
        }
        self.log.commit_to(candidate);
        self.ready.events.push(Event::CommitAdvanced {
            commit_index: candidate,
        });
    }

    fn broadcast_heartbeat(&mut self) {
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for peer in peers {
            self.send_heartbeat(peer);
        }
    }

    /// An empty AppendEntries at next_index - 1. In Probe it re-sends the
    /// probe (the last one may be lost); in Replicate a rejection reveals
    /// lost batches.
    fn send_heartbeat(&mut self, peer: NodeId) {
        let Some(progress) = self.progress.get_mut(&peer) else {
            return;
        };
        if progress.state == ProgressState::Probe {
            progress.probe_sent = false;
            self.send_append(peer);
            if self.progress.get(&peer).is_some_and(|p| p.probe_sent) {
                return;
            }
        }
        let Some(progress) = self.progress.get(&peer) else {
            return;
        };
        let prev_index = progress.next_index.prev();
        self.send_append_request(peer, prev_index, Vec::new());
    }

    /// Sends every batch the window allows to every peer.
    fn send_pending_appends(&mut self) {
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for peer in peers {
            while self.send_append(peer) {}
        }
    }

    /// Sends one batch to `peer` if flow control allows and it has entries to
    /// receive. Returns whether it sent.
    fn send_append(&mut self, peer: NodeId) -> bool {
        let Some(progress) = self.progress.get(&peer) else {
            return false;
        };
        if !progress.can_send_entries() || progress.next_index > self.log.last_index() {
            return false;
        }
        let next_index = progress.next_index;
        let entries =
            self.log
                .entries_from(next_index, APPEND_BATCH_ENTRIES_MAX, APPEND_BATCH_SIZE_MAX);
        let Some(last) = entries.last().map(|entry| entry.index) else {
            return false;
        };
        self.send_append_request(peer, next_index.prev(), entries);
        if let Some(progress) = self.progress.get_mut(&peer) {
            progress.sent(last);
        }
        true
    }

    fn send_append_request(&mut self, peer: NodeId, prev_log_index: LogIndex, entries: Vec<Entry>) {
        let Some(prev_log_term) = self.log.term_at(prev_log_index) else {
            panic!("prev index {prev_log_index} beyond the leader's log");
        };
        let request = AppendEntries {
            prev_log_index,
            prev_log_term,
            leader_commit: self.log.commit_index(),
            entries,
        };
        self.send(peer, MessageBody::AppendEntries(request));
    }

    // ---- output ----------------------------------------------------------

    fn message(&self, to: NodeId, body: MessageBody) -> Message {
        Message {
            from: self.config.id,
            to,
            term: self.hard_state.current_term,
            body,
        }
    }

    fn send(&mut self, to: NodeId, body: MessageBody) {
        let message = self.message(to, body);
        self.ready.messages.push(message);
    }

    fn send_after_persist(&mut self, to: NodeId, body: MessageBody) {
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
