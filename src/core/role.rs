//! The four roles and the state each one owns. The role changes only in the
//! `become_*` functions below. Each role handles messages in one `step_*`
//! function, after `Raft::step` has done the term checks common to all, and
//! time in one `tick_*` function (the layout of etcd-io/raft's raft.go).

use super::config::Limits;
use super::message::*;
use super::progress::Progress;
use super::raft::Raft;
use super::raft_log::RaftLog;
use super::read_index::ReadQueue;
use super::ready::{Event, StepDownReason};
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

/// The role with the state that only it has: a value that belongs to one
/// role cannot outlive it.
#[derive(Debug)]
pub(super) enum RoleState {
    Follower(FollowerState),
    PreCandidate(CandidateState),
    Candidate(CandidateState),
    Leader(LeaderState),
}

impl RoleState {
    pub(super) fn role(&self) -> Role {
        match self {
            RoleState::Follower(_) => Role::Follower,
            RoleState::PreCandidate(_) => Role::PreCandidate,
            RoleState::Candidate(_) => Role::Candidate,
            RoleState::Leader(_) => Role::Leader,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct FollowerState {
    /// The leader of the current term, once heard from.
    pub(super) leader: Option<LeaderContact>,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct LeaderContact {
    pub(super) id: NodeId,
    /// When it was last heard from: a follower that heard from its leader
    /// within an election timeout refuses votes (stickiness, §4.2.3).
    pub(super) heard_ms: u64,
}

#[derive(Debug)]
pub(super) struct CandidateState {
    /// Who granted us their vote (a pre-candidate: pre-vote) for the term
    /// asked about, ourselves included.
    pub(super) votes: BTreeSet<NodeId>,
}

/// Figure 2's "Volatile state on leaders", and what CheckQuorum, ReadIndex
/// and the heartbeat timer need besides.
#[derive(Debug)]
pub(super) struct LeaderState {
    /// One entry per peer.
    pub(super) progress: BTreeMap<NodeId, Progress>,
    /// Reads waiting for a leadership check (§6.4).
    pub(super) reads: ReadQueue,
    pub(super) heartbeat_deadline_ms: u64,
}

impl LeaderState {
    /// Whether some peer has entries to receive and room in its window
    /// (or needs a snapshot: the next send finds out).
    pub(super) fn has_appends_to_send(&self, log: &RaftLog) -> bool {
        self.progress.values().any(|progress| {
            let needs_snapshot = !progress.is_snapshot() && progress.next_index < log.first_index();
            needs_snapshot
                || (progress.can_send_entries() && progress.next_index <= log.last_index())
        })
    }

    /// Whether some peer in Snapshot state has room for a chunk.
    pub(super) fn has_chunks_to_send(&self, limits: &Limits) -> bool {
        let (size, count) = (
            limits.snapshot_chunk_size_max,
            limits.inflight_snapshot_chunks_max,
        );
        self.progress
            .values()
            .any(|progress| progress.has_chunk_to_send(size, count))
    }
}

impl Raft {
    // ---- role changes ----------------------------------------------------

    pub(super) fn become_follower(
        &mut self,
        term: Term,
        leader: Option<NodeId>,
        reason: StepDownReason,
    ) {
        assert!(term >= self.hard_state.current_term, "term going backwards");
        let was_follower = matches!(self.role, RoleState::Follower(_));
        if term > self.hard_state.current_term {
            self.hard_state = self.hard_state.new_term(term);
            self.hard_state_dirty = true;
        }
        self.role = RoleState::Follower(FollowerState::default());
        if let Some(leader) = leader {
            self.heard_from_leader(leader);
        }
        self.reset_election_deadline();
        if !was_follower {
            self.ready
                .events
                .push(Event::BecameFollower { term, reason });
        }
    }

    /// §9.6: asks for pre-votes for the next term, without moving to it.
    pub(super) fn become_pre_candidate(&mut self) {
        let term = Term(self.hard_state.current_term.0 + 1);
        self.role = RoleState::PreCandidate(CandidateState::voted_for_self(self.config.id));
        self.reset_election_deadline();
        self.ready.events.push(Event::ElectionTimeout {
            term,
            pre_vote: true,
        });
    }

    /// Figure 2, Candidates, "On conversion to candidate": increment the
    /// term, vote for ourselves, reset the election timer. Asking the
    /// others is `campaign`'s.
    pub(super) fn become_candidate(&mut self) {
        let term = Term(self.hard_state.current_term.0 + 1);
        self.hard_state = HardState {
            voted_for: Some(self.config.id),
            ..self.hard_state.new_term(term)
        };
        self.hard_state_dirty = true;
        self.role = RoleState::Candidate(CandidateState::voted_for_self(self.config.id));
        self.reset_election_deadline();
        self.ready.events.push(Event::ElectionTimeout {
            term,
            pre_vote: false,
        });
    }

    pub(super) fn become_leader(&mut self) {
        let RoleState::Candidate(candidate) = &self.role else {
            panic!(
                "{} becomes leader without being a candidate",
                self.config.id
            );
        };
        let votes = candidate.votes.len();
        let term = self.hard_state.current_term;
        let next_index = self.log.last_index().next();
        let progress = self
            .peers()
            .into_iter()
            .map(|peer| {
                (
                    peer,
                    Progress::new(next_index, self.now_ms, &self.config.limits),
                )
            })
            .collect();
        self.role = RoleState::Leader(LeaderState {
            progress,
            reads: ReadQueue::default(),
            heartbeat_deadline_ms: self.now_ms + self.config.heartbeat_interval_ms,
        });
        let leader = self.config.id;
        self.ready
            .events
            .push(Event::LeaderChanged { term, leader });
        self.ready.events.push(Event::BecameLeader { term, votes });
        // §8: a no-op of the new term lets earlier entries commit (Figure 8)
        // and tells ReadIndex the commit index is current (§6.4). The first
        // leader of a new cluster makes it the cluster's Bootstrap entry,
        // which also holds the configuration the cluster starts with.
        if self.log.last_index() == LogIndex(0) {
            let start = self.config.start.configuration();
            let payload = start.bootstrap_payload(self.config.bootstrap_cluster_id);
            self.log.append_new(term, EntryKind::Bootstrap, &payload);
        } else {
            self.log.append_new(term, EntryKind::Noop, &[]);
        }
    }

    /// A follower heard from the leader of its term: remember who, and when.
    pub(super) fn heard_from_leader(&mut self, leader: NodeId) {
        let term = self.hard_state.current_term;
        let RoleState::Follower(follower) = &mut self.role else {
            panic!(
                "{} hears from leader {leader} as a non-follower",
                self.config.id
            );
        };
        let contact = LeaderContact {
            id: leader,
            heard_ms: self.now_ms,
        };
        let known = follower.leader.replace(contact);
        if known.map(|known| known.id) != Some(leader) {
            self.ready
                .events
                .push(Event::LeaderChanged { term, leader });
        }
    }

    // ---- one step and one tick per role ----------------------------------

    pub(super) fn step_follower(&mut self, message: Message) {
        match message.body {
            MessageBody::RequestVote(request) => {
                self.handle_request_vote(message.from, message.term, &request)
            }
            MessageBody::AppendEntries(request) => {
                self.handle_append_entries(message.from, message.cluster, request)
            }
            MessageBody::InstallSnapshot(chunk) => {
                self.handle_install_snapshot(message.from, chunk)
            }
            MessageBody::TimeoutNow => self.handle_timeout_now(message.from),
            // Answers to requests of an earlier role: nothing to do.
            MessageBody::RequestVoteResponse(_)
            | MessageBody::AppendEntriesResponse(_)
            | MessageBody::InstallSnapshotResponse(_) => {}
        }
    }

    /// Pre-candidates and candidates alike; `count_vote` tells which
    /// answers count for which.
    pub(super) fn step_candidate(&mut self, message: Message) {
        match message.body {
            MessageBody::RequestVote(request) => {
                self.handle_request_vote(message.from, message.term, &request)
            }
            MessageBody::RequestVoteResponse(response) => {
                self.count_vote(message.from, message.term, &response)
            }
            MessageBody::AppendEntries(request) => {
                self.yield_to_leader(message.from, message.cluster, request)
            }
            MessageBody::InstallSnapshot(chunk) => {
                let leader = message.from;
                let reason = StepDownReason::LeaderExists { leader };
                self.become_follower(self.hard_state.current_term, Some(leader), reason);
                self.handle_install_snapshot(leader, chunk)
            }
            MessageBody::AppendEntriesResponse(_)
            | MessageBody::InstallSnapshotResponse(_)
            | MessageBody::TimeoutNow => {}
        }
    }

    pub(super) fn step_leader(&mut self, message: Message) {
        match message.body {
            MessageBody::RequestVote(request) => {
                self.handle_request_vote(message.from, message.term, &request)
            }
            MessageBody::AppendEntriesResponse(response) => {
                self.handle_append_response(message.from, message.cluster.bound, &response)
            }
            MessageBody::InstallSnapshotResponse(response) => {
                self.handle_snapshot_response(message.from, message.cluster.bound, &response)
            }
            MessageBody::AppendEntries(_) | MessageBody::InstallSnapshot(_) => {
                panic!(
                    "two leaders in term {}: {} and {}",
                    self.hard_state.current_term, self.config.id, message.from
                )
            }
            // TimeoutNow is for followers; a leader of our term sent it
            // before we won, so it is stale.
            MessageBody::RequestVoteResponse(_) | MessageBody::TimeoutNow => {}
        }
    }

    /// Followers and (pre-)candidates: Figure 2, "If election timeout
    /// elapses ... convert to candidate" (by way of PreVote, if enabled).
    pub(super) fn tick_election(&mut self) {
        if self.now_ms >= self.election_deadline_ms {
            self.election_timeout();
        }
    }

    /// The leader: Figure 2, "repeat [heartbeats] during idle periods to
    /// prevent election timeouts", after the CheckQuorum test.
    pub(super) fn tick_heartbeat(&mut self) {
        let check_quorum = self.check_quorum_enabled();
        let now_ms = self.now_ms;
        let config = &self.config;
        let configuration = &self.log.configs().current().config;
        let RoleState::Leader(leader) = &mut self.role else {
            return;
        };
        if now_ms < leader.heartbeat_deadline_ms {
            return;
        }
        leader.heartbeat_deadline_ms = now_ms + config.heartbeat_interval_ms;
        if check_quorum && !leader.quorum_active(now_ms, config, configuration) {
            return self.step_down_quorum_lost();
        }
        self.broadcast_heartbeat();
    }
}

impl CandidateState {
    fn voted_for_self(id: NodeId) -> CandidateState {
        CandidateState {
            votes: BTreeSet::from([id]),
        }
    }
}
