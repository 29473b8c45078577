//! Elections (§5.2, §5.4.1) with PreVote, leader stickiness and
//! CheckQuorum (§9.6 of the dissertation).

use super::message::*;
use super::planted::PlantedBug;
use super::progress::Progress;
use super::raft::{Raft, Role};
use super::ready::{Event, StepDownReason};
use super::types::*;
use std::collections::BTreeSet;

impl Raft {
    /// The election timer fired: ask for pre-votes first, if enabled.
    pub(super) fn election_timeout(&mut self) {
        if self.config.pre_vote {
            self.start_pre_vote();
        } else {
            self.campaign();
        }
    }

    /// §9.6: find out whether a majority would vote for us before
    /// disturbing anyone's term.
    fn start_pre_vote(&mut self) {
        let term = Term(self.hard_state.current_term.0 + 1);
        self.role = Role::PreCandidate;
        self.leader_id = None;
        self.votes_granted = BTreeSet::from([self.config.id]);
        self.reset_election_deadline();
        self.ready.events.push(Event::ElectionTimeout {
            term,
            pre_vote: true,
        });
        self.request_votes(term, true);
        if self.votes_granted.len() >= self.config.quorum() {
            self.campaign();
        }
    }

    /// §5.2: increment the term, vote for ourselves, ask everyone else.
    pub(super) fn campaign(&mut self) {
        let term = Term(self.hard_state.current_term.0 + 1);
        self.hard_state = HardState {
            voted_for: Some(self.config.id),
            ..self.hard_state.new_term(term)
        };
        self.hard_state_dirty = true;
        self.role = Role::Candidate;
        self.leader_id = None;
        self.votes_granted = BTreeSet::from([self.config.id]);
        self.reset_election_deadline();
        self.ready.events.push(Event::ElectionTimeout {
            term,
            pre_vote: false,
        });
        self.request_votes(term, false);
        self.maybe_win_election();
    }

    fn request_votes(&mut self, term: Term, pre_vote: bool) {
        let request = RequestVote {
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            pre_vote,
        };
        let peers: Vec<NodeId> = self.config.peers().collect();
        for peer in peers {
            let mut message = self.message(peer, MessageBody::RequestVote(request.clone()));
            message.term = term;
            // A real vote request waits for our own vote to be durable: the
            // grants it brings count that vote, and a crash that lost it
            // could let us vote for someone else in the same term and so
            // make two leaders (found by the simulator with asynchronous
            // writes). Pre-votes change nothing and need no write.
            if pre_vote {
                self.ready.messages.push(message);
            } else {
                self.ready.messages_after_persist.push(message);
            }
        }
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
        let now_ms = self.now_ms;
        let limits = self.config.limits;
        let peers: Vec<NodeId> = self.config.peers().collect();
        self.progress = peers
            .into_iter()
            .map(|peer| (peer, Progress::new(next_index, now_ms, &limits)))
            .collect();
        // §8: a no-op of the new term lets earlier entries commit (Figure 8)
        // and tells ReadIndex the commit index is current (§6.4). The first
        // leader of a new cluster makes it the cluster's Bootstrap entry.
        if self.log.last_index() == LogIndex(0) {
            let cluster_id = self.config.bootstrap_cluster_id.to_bytes();
            self.log.append_new(term, EntryKind::Bootstrap, &cluster_id);
        } else {
            self.log.append_new(term, EntryKind::Noop, &[]);
        }
        self.heartbeat_deadline_ms = self.now_ms + self.config.heartbeat_interval_ms;
    }

    /// Does a current leader exist, as far as we know? Then vote requests
    /// are ignored (§4.2.3 of the dissertation): a node that was cut off and
    /// comes back must not depose a healthy leader.
    fn in_lease(&self) -> bool {
        if !self.config.check_quorum {
            return false;
        }
        match self.role {
            Role::Leader => true,
            Role::Follower => {
                self.leader_id.is_some()
                    && self.now_ms < self.leader_contact_ms + self.config.election_timeout_ms_min
            }
            Role::PreCandidate | Role::Candidate => false,
        }
    }

    /// A message with a higher term. Returns whether to go on handling it
    /// (at the new term) or drop it.
    pub(super) fn accept_higher_term(&mut self, message: &Message) -> bool {
        let from = message.from;
        match &message.body {
            MessageBody::RequestVote(_) if self.in_lease() => false,
            // Neither a pre-vote request nor a granted pre-vote changes terms.
            MessageBody::RequestVote(request) if request.pre_vote => true,
            MessageBody::RequestVoteResponse(response)
                if response.pre_vote && response.vote_granted =>
            {
                true
            }
            MessageBody::AppendEntries(_) => {
                let reason = StepDownReason::HigherTerm { from };
                self.become_follower(message.term, Some(from), reason);
                true
            }
            _ => {
                let reason = StepDownReason::HigherTerm { from };
                self.become_follower(message.term, None, reason);
                true
            }
        }
    }

    /// A message from an earlier term. Tell its sender our term so a stale
    /// leader or candidate steps down (Figure 2, "Rules for all servers").
    pub(super) fn answer_stale(&mut self, message: &Message) {
        match &message.body {
            MessageBody::RequestVote(request) => {
                let response = RequestVoteResponse {
                    vote_granted: false,
                    pre_vote: request.pre_vote,
                };
                self.send(message.from, MessageBody::RequestVoteResponse(response))
            }
            MessageBody::AppendEntries(request) => {
                let response = AppendEntriesResponse {
                    success: false,
                    index: request.prev_log_index,
                    conflict_term: None,
                    // Marks an answer to a request of an earlier term. Its
                    // sender may lead a later term by the time it arrives
                    // (a restarted leader): it must not count it as an
                    // acknowledgement of a read round or as a rejection.
                    conflict_index: LogIndex(0),
                    round: 0,
                };
                self.send(message.from, MessageBody::AppendEntriesResponse(response))
            }
            MessageBody::RequestVoteResponse(_) | MessageBody::AppendEntriesResponse(_) => {}
        }
    }

    pub(super) fn step_follower(&mut self, message: Message) {
        match message.body {
            MessageBody::RequestVote(request) => {
                self.handle_request_vote(message.from, message.term, &request)
            }
            MessageBody::AppendEntries(request) => {
                self.handle_append_entries(message.from, message.cluster, request)
            }
            // Answers to requests of an earlier role: nothing to do.
            MessageBody::RequestVoteResponse(_) | MessageBody::AppendEntriesResponse(_) => {}
        }
    }

    pub(super) fn step_pre_candidate(&mut self, message: Message) {
        match message.body {
            MessageBody::RequestVote(request) => {
                self.handle_request_vote(message.from, message.term, &request)
            }
            MessageBody::RequestVoteResponse(response) => {
                let for_our_round =
                    response.pre_vote && message.term == Term(self.hard_state.current_term.0 + 1);
                if for_our_round && response.vote_granted {
                    self.votes_granted.insert(message.from);
                    if self.votes_granted.len() >= self.config.quorum() {
                        self.campaign();
                    }
                }
            }
            MessageBody::AppendEntries(request) => {
                self.yield_to_leader(message.from, message.cluster, request)
            }
            MessageBody::AppendEntriesResponse(_) => {}
        }
    }

    pub(super) fn step_candidate(&mut self, message: Message) {
        match message.body {
            MessageBody::RequestVote(request) => {
                self.handle_request_vote(message.from, message.term, &request)
            }
            MessageBody::RequestVoteResponse(response) => {
                if response.vote_granted && !response.pre_vote {
                    self.votes_granted.insert(message.from);
                    self.maybe_win_election();
                }
            }
            MessageBody::AppendEntries(request) => {
                self.yield_to_leader(message.from, message.cluster, request)
            }
            MessageBody::AppendEntriesResponse(_) => {}
        }
    }

    /// §5.2: a leader of our term exists; its AppendEntries is legitimate.
    fn yield_to_leader(&mut self, leader: NodeId, cluster: ClusterTag, request: AppendEntries) {
        let reason = StepDownReason::LeaderExists { leader };
        self.become_follower(self.hard_state.current_term, Some(leader), reason);
        self.handle_append_entries(leader, cluster, request);
    }

    /// Figure 2, RequestVote receiver: at most one vote per term, and only for
    /// a candidate whose log is at least as up-to-date as ours (§5.4.1).
    /// Pre-votes follow the same rules for the term asked about, but change
    /// nothing here and need no write.
    pub(super) fn handle_request_vote(
        &mut self,
        candidate: NodeId,
        term: Term,
        request: &RequestVote,
    ) {
        let up_to_date = self
            .log
            .is_up_to_date(request.last_log_index, request.last_log_term);
        if request.pre_vote {
            let would_vote = term > self.hard_state.current_term || self.can_vote_for(candidate);
            let granted = would_vote && up_to_date && !self.in_lease();
            let response = RequestVoteResponse {
                vote_granted: granted,
                pre_vote: true,
            };
            let mut message = self.message(candidate, MessageBody::RequestVoteResponse(response));
            if granted {
                message.term = term; // so the pre-candidate counts it for its round
            }
            return self.ready.messages.push(message);
        }
        let granted = self.can_vote_for(candidate) && up_to_date;
        if granted {
            self.hard_state.voted_for = Some(candidate);
            self.hard_state_dirty = true;
            self.reset_election_deadline();
        }
        let response = MessageBody::RequestVoteResponse(RequestVoteResponse {
            vote_granted: granted,
            pre_vote: false,
        });
        if self.planted(PlantedBug::VoteBeforePersist) {
            return self.send(candidate, response);
        }
        self.send_after_persist(candidate, response);
    }

    fn can_vote_for(&self, candidate: NodeId) -> bool {
        let by_rule = match self.hard_state.voted_for {
            None => self.leader_id.is_none(),
            Some(voted_for) => voted_for == candidate,
        };
        by_rule || self.planted(PlantedBug::SecondVoteInTerm)
    }

    /// CheckQuorum: has a majority (counting ourselves) been heard from
    /// within the window (`Config::check_quorum_window_ms`)? Safety never
    /// depends on this timing (reads confirm leadership with a heartbeat
    /// round); it decides how soon a cut-off leader stops taking requests.
    pub(super) fn quorum_active(&self) -> bool {
        let window_ms = self.config.check_quorum_window_ms();
        let active = self
            .progress
            .values()
            .filter(|progress| self.now_ms < progress.last_contact_ms + window_ms)
            .count();
        active + 1 >= self.config.quorum()
    }

    pub(super) fn step_down_quorum_lost(&mut self) {
        let term = self.hard_state.current_term;
        self.become_follower(term, None, StepDownReason::QuorumLost);
    }
}
