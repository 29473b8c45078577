//! Leadership transfer (dissertation §3.10, as etcd-io/raft does it): the
//! leader stops taking proposals, brings the target's log up to its own
//! last index, then sends it `TimeoutNow`; the target campaigns at once,
//! without PreVote, and its vote requests carry `transfer` so that voters
//! within the leader's lease still answer them. Voters keep the §5.4.1
//! up-to-date check, so a transfer never elects a node that lacks a
//! committed entry. The transfer ends when the target is known to lead a
//! later term, when another node does, or after an election timeout
//! (`election_timeout_ms_max`), when a node that still leads takes
//! proposals again.

use super::message::*;
use super::raft::Raft;
use super::ready::Event;
use super::role::RoleState;
use super::types::*;

/// Why a transfer was not started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferError {
    /// Only the leader transfers; `leader` is the one this node knows.
    NotLeader { leader: Option<NodeId> },
    /// The target is this node, the leader of `term`: nothing to do.
    AlreadyLeader { term: Term },
    /// The target is not a voter of this cluster.
    NotAVoter,
    /// A transfer to `to` is running.
    InProgress { to: NodeId },
}

/// A transfer begun: the leader of `term` hands over to `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferStarted {
    pub to: NodeId,
    pub term: Term,
    /// When it is given up, in core milliseconds.
    pub deadline_ms: u64,
}

/// How a transfer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferOutcome {
    /// The target leads `term`, later than the transfer's.
    Succeeded { term: Term },
    /// `leader` leads `term` instead (it may be this node again).
    OtherLeader { leader: NodeId, term: Term },
    /// The deadline passed with this node still leading the transfer's
    /// term: it takes proposals again. `timeout_ms` is how long it waited.
    TimedOut { timeout_ms: u64 },
    /// The deadline passed and no leader of a later term is known.
    NoLeader { timeout_ms: u64 },
}

/// The transfer under way. It lives on `Raft`, outside the roles, because
/// it outlives the leader's step-down: the outcome is known only once a
/// leader of a later term is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Transfer {
    pub(super) to: NodeId,
    /// The term this node led when the transfer began.
    pub(super) started_term: Term,
    pub(super) deadline_ms: u64,
    /// TimeoutNow went out (once: a second election would only disturb).
    pub(super) timeout_now_sent: bool,
}

impl Raft {
    /// Starts handing leadership to `to`. Proposals are refused
    /// (`ProposeError::Transferring`) until the transfer ends; the outcome
    /// comes as `Event::TransferEnded`.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<TransferStarted, TransferError> {
        let term = self.hard_state.current_term;
        if !self.is_leader() {
            let leader = self.leader_id();
            return Err(TransferError::NotLeader { leader });
        }
        if to == self.config.id {
            return Err(TransferError::AlreadyLeader { term });
        }
        if !self.configuration().is_voter(to) {
            return Err(TransferError::NotAVoter);
        }
        if let Some(transfer) = self.transfer {
            return Err(TransferError::InProgress { to: transfer.to });
        }
        let deadline_ms = self.now_ms + self.config.election_timeout_ms_max;
        self.transfer = Some(Transfer {
            to,
            started_term: term,
            deadline_ms,
            timeout_now_sent: false,
        });
        self.ready.events.push(Event::TransferStarted {
            to,
            term,
            deadline_ms,
        });
        self.send_timeout_now_if_caught_up();
        Ok(TransferStarted {
            to,
            term,
            deadline_ms,
        })
    }

    /// The target of the transfer under way, if any.
    pub fn transferring_to(&self) -> Option<NodeId> {
        self.transfer.map(|transfer| transfer.to)
    }

    /// Sends TimeoutNow once the target's log matches ours to our last
    /// index: at the start if it does already, else on the ack that gets it
    /// there. Nothing is appended meanwhile, so the index stands still.
    pub(super) fn send_timeout_now_if_caught_up(&mut self) {
        let last_index = self.log.last_index();
        let Some(transfer) = &mut self.transfer else {
            return;
        };
        let RoleState::Leader(leader) = &self.role else {
            return;
        };
        if transfer.timeout_now_sent || transfer.started_term != self.hard_state.current_term {
            return;
        }
        let caught_up = leader
            .progress
            .get(&transfer.to)
            .is_some_and(|progress| progress.match_index == last_index);
        if !caught_up {
            return;
        }
        transfer.timeout_now_sent = true;
        let to = transfer.to;
        self.send(to, MessageBody::TimeoutNow);
    }

    /// The target: TimeoutNow from the leader of our term. Campaign now,
    /// skipping PreVote: the leader asked, so no one's term is raised by a
    /// node that could not win.
    pub(super) fn handle_timeout_now(&mut self, from: NodeId) {
        if self.leader_id() != Some(from) {
            return; // not from the leader we follow: ignore
        }
        if !self.configuration().is_voter(self.config.id) {
            return; // a learner never campaigns (its votes would not count)
        }
        self.campaign_for_transfer();
    }

    /// Ends the transfer once its outcome is known: called after every
    /// input that can change the leader, the term or the time.
    pub(super) fn check_transfer(&mut self) {
        let Some(transfer) = self.transfer else {
            return;
        };
        let term = self.hard_state.current_term;
        let later_leader = self.leader_id().filter(|_| term > transfer.started_term);
        let timeout_ms = self.config.election_timeout_ms_max;
        let outcome = match later_leader {
            Some(leader) if leader == transfer.to => TransferOutcome::Succeeded { term },
            Some(leader) => TransferOutcome::OtherLeader { leader, term },
            None if self.now_ms < transfer.deadline_ms => return,
            None if self.is_leader() => TransferOutcome::TimedOut { timeout_ms },
            None => TransferOutcome::NoLeader { timeout_ms },
        };
        self.transfer = None;
        let to = transfer.to;
        self.ready.events.push(Event::TransferEnded { to, outcome });
    }
}
