//! Elections (§5.2, §5.4.1) with PreVote, leader stickiness and
//! CheckQuorum (§9.6 of the dissertation).

use super::config::Config;
use super::membership::Configuration;
use super::message::*;
use super::planted::PlantedBug;
use super::raft::{Envelope, Raft};
use super::ready::StepDownReason;
use super::role::{CandidateState, LeaderState, RoleState};
use super::types::*;

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
        self.become_pre_candidate();
        let term = Term(self.hard_state.current_term.0 + 1);
        self.request_votes(term, true, false);
        self.poll();
    }

    /// Figure 2, Candidates: "On conversion to candidate, start election"
    /// (`become_candidate`), then "Send RequestVote RPCs to all other
    /// servers" (§5.2).
    pub(super) fn campaign(&mut self) {
        self.become_candidate();
        self.request_votes(self.hard_state.current_term, false, false);
        self.poll();
    }

    /// §3.10: the leader told us to campaign (`TimeoutNow`). No PreVote,
    /// and the requests say so, so that voters in the leader's lease answer.
    pub(super) fn campaign_for_transfer(&mut self) {
        self.become_candidate();
        self.request_votes(self.hard_state.current_term, false, true);
        self.poll();
    }

    fn request_votes(&mut self, term: Term, pre_vote: bool, transfer: bool) {
        let request = RequestVote {
            last_log_index: self.log.last_index(),
            last_log_term: self.log.last_term(),
            pre_vote,
            transfer,
        };
        let envelope = Envelope {
            term,
            ..self.envelope()
        };
        // A real vote request waits for our own vote to be durable: the
        // grants it brings count that vote, and a crash that lost it could
        // let us vote for someone else in the same term and so make two
        // leaders (found by the simulator with asynchronous writes).
        // Pre-votes change nothing and need no write.
        let queue = if pre_vote {
            &mut self.ready.messages
        } else {
            &mut self.ready.messages_after_persist
        };
        // Only voters: a learner's grant would not count.
        let configuration = &self.log.configs().current().config;
        let voters = configuration.voters().filter(|&id| id != self.config.id);
        for peer in voters {
            queue.push(envelope.to(peer, MessageBody::RequestVote(request.clone())));
        }
    }

    /// A (pre-)candidate's answer. A pre-candidate counts granted pre-votes
    /// for the term it asks about; a candidate, granted votes (of its term:
    /// `step` saw to that).
    pub(super) fn count_vote(&mut self, voter: NodeId, term: Term, response: &RequestVoteResponse) {
        let round_term = Term(self.hard_state.current_term.0 + 1);
        let (candidate, counts) = match &mut self.role {
            RoleState::PreCandidate(candidate) => {
                (candidate, response.pre_vote && term == round_term)
            }
            RoleState::Candidate(candidate) => (candidate, !response.pre_vote),
            RoleState::Follower(_) | RoleState::Leader(_) => return,
        };
        if counts && response.vote_granted {
            candidate.votes.insert(voter);
            self.poll();
        }
    }

    /// Figure 2, Candidates: "If votes received from majority of servers:
    /// become leader". A majority of pre-votes earns a real election.
    /// Only voters of the configuration in effect count (a learner answers
    /// like any node, §4.2.1 of the dissertation, but is no voter).
    fn poll(&mut self) {
        let configuration = self.configuration();
        let quorum = configuration.quorum();
        let won = |candidate: &CandidateState| {
            let voters = candidate.votes.iter();
            voters.filter(|&&id| configuration.is_voter(id)).count() >= quorum
        };
        match &self.role {
            RoleState::PreCandidate(candidate) if won(candidate) => self.campaign(),
            RoleState::Candidate(candidate) if won(candidate) => self.become_leader(),
            _ => {}
        }
    }

    /// Does a current leader exist, as far as we know? Then vote requests
    /// are ignored (§4.2.3 of the dissertation): a node that was cut off and
    /// comes back must not depose a healthy leader.
    fn in_lease(&self) -> bool {
        if !self.config.check_quorum {
            return false;
        }
        match &self.role {
            RoleState::Leader(_) => true,
            RoleState::Follower(follower) => follower.leader.is_some_and(|leader| {
                self.now_ms < leader.heard_ms + self.config.election_timeout_ms_min
            }),
            RoleState::PreCandidate(_) | RoleState::Candidate(_) => false,
        }
    }

    /// Figure 2, Rules for all servers: "If RPC request or response contains
    /// term T > currentTerm: set currentTerm = T, convert to follower", but
    /// for PreVote and stickiness (§9.6), which leave the term alone.
    /// Returns whether to go on handling the message or drop it.
    pub(super) fn accept_higher_term(&mut self, message: &Message) -> bool {
        let from = message.from;
        match &message.body {
            // A transfer's vote request is answered even within the lease:
            // the leader itself asked for the election (§3.10).
            MessageBody::RequestVote(request) if self.in_lease() && !request.transfer => false,
            // Neither a pre-vote request nor a granted pre-vote changes terms.
            MessageBody::RequestVote(request) if request.pre_vote => true,
            MessageBody::RequestVoteResponse(response)
                if response.pre_vote && response.vote_granted =>
            {
                true
            }
            MessageBody::AppendEntries(_) | MessageBody::InstallSnapshot(_) => {
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

    /// A message from an earlier term. Figure 2, both receivers, step 1:
    /// "Reply false if term < currentTerm"; the reply carries our term, so
    /// a stale leader or candidate steps down.
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
            MessageBody::InstallSnapshot(chunk) => {
                // Only its term matters: the sender steps down on it.
                let response = InstallSnapshotResponse {
                    index: chunk.meta.index,
                    term: chunk.meta.term,
                    status: SnapshotStatus::OutOfOrder { stored: 0 },
                };
                self.send(message.from, MessageBody::InstallSnapshotResponse(response))
            }
            MessageBody::RequestVoteResponse(_)
            | MessageBody::AppendEntriesResponse(_)
            | MessageBody::InstallSnapshotResponse(_)
            | MessageBody::TimeoutNow => {}
        }
    }

    /// Figure 2, Candidates: "If AppendEntries RPC received from new leader:
    /// convert to follower" (§5.2: it leads our term; its request stands).
    pub(super) fn yield_to_leader(
        &mut self,
        leader: NodeId,
        cluster: ClusterTag,
        request: AppendEntries,
    ) {
        let reason = StepDownReason::LeaderExists { leader };
        self.become_follower(self.hard_state.current_term, Some(leader), reason);
        self.handle_append_entries(leader, cluster, request);
    }

    /// Figure 2, RequestVote receiver: at most one vote per term
    /// (`can_vote_for`), and only for a candidate whose log is at least as
    /// up-to-date as ours (`RaftLog::is_up_to_date`, §5.4.1).
    pub(super) fn handle_request_vote(
        &mut self,
        candidate: NodeId,
        term: Term,
        request: &RequestVote,
    ) {
        let up_to_date = self
            .log
            .is_up_to_date(request.last_log_index, request.last_log_term)
            || (request.transfer && self.planted(PlantedBug::TransferVoteIgnoresLog));
        if request.pre_vote {
            return self.answer_pre_vote(candidate, term, up_to_date);
        }
        let granted = self.can_vote_for(candidate) && up_to_date;
        if granted {
            self.grant_vote(candidate);
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

    /// Pre-votes follow the vote's rules for the term asked about, but
    /// change nothing here and need no write.
    fn answer_pre_vote(&mut self, candidate: NodeId, term: Term, up_to_date: bool) {
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
        self.ready.messages.push(message);
    }

    /// Figure 2, Followers: granting a vote, like hearing from the leader,
    /// restarts the election timer.
    fn grant_vote(&mut self, candidate: NodeId) {
        self.hard_state.voted_for = Some(candidate);
        self.hard_state_dirty = true;
        self.reset_election_deadline();
    }

    /// Figure 2, RequestVote receiver: "If votedFor is null or candidateId".
    /// A node that heard from this term's leader before voting in it votes
    /// for no one (as etcd-io/raft).
    fn can_vote_for(&self, candidate: NodeId) -> bool {
        let by_rule = match self.hard_state.voted_for {
            None => self.leader_id().is_none(),
            Some(voted_for) => voted_for == candidate,
        };
        by_rule || self.planted(PlantedBug::SecondVoteInTerm)
    }

    /// Whether the leader runs CheckQuorum (a planted bug turns it off).
    pub(super) fn check_quorum_enabled(&self) -> bool {
        self.config.check_quorum && !self.planted(PlantedBug::StaleLeaderReads)
    }

    pub(super) fn step_down_quorum_lost(&mut self) {
        let term = self.hard_state.current_term;
        self.become_follower(term, None, StepDownReason::QuorumLost);
    }
}

impl LeaderState {
    /// CheckQuorum: has a majority (counting ourselves) been heard from
    /// within the window (`Config::check_quorum_window_ms`)? Safety never
    /// depends on this timing (reads confirm leadership with a heartbeat
    /// round); it decides how soon a cut-off leader stops taking requests.
    /// Only the voters of `configuration` count, the leader among them if
    /// it is one.
    pub(super) fn quorum_active(
        &self,
        now_ms: u64,
        config: &Config,
        configuration: &Configuration,
    ) -> bool {
        let window_ms = config.check_quorum_window_ms();
        let active = self
            .progress
            .iter()
            .filter(|(&id, _)| configuration.is_voter(id))
            .filter(|(_, progress)| now_ms < progress.last_contact_ms + window_ms)
            .count();
        let own = usize::from(configuration.is_voter(config.id));
        active + own >= configuration.quorum()
    }
}
