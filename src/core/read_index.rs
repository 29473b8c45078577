//! Linearizable reads without log writes (ReadIndex, dissertation §6.4).
//! The leader notes its commit index, proves it is still leader by a round
//! of heartbeats a majority answers, and the read may then be served once
//! the state machine has applied that index. Reads that arrive while a
//! round is being set up share it.

use super::planted::PlantedBug;
use super::progress::quorum_value;
use super::raft::{ProposeError, Raft};
use super::ready::ReadState;
use super::role::RoleState;
use super::types::*;
use std::collections::VecDeque;

#[derive(Clone, Copy, Debug)]
struct PendingRead {
    context: u64,
    index: LogIndex,
    /// The heartbeat round that will confirm it; None until one is sent.
    round: Option<u64>,
}

/// A leader's reads (`LeaderState::reads`). Invariant: rounds never decrease along
/// `pending`, and reads without a round come last.
#[derive(Debug, Default)]
pub struct ReadQueue {
    /// The latest heartbeat round; every AppendEntries carries it.
    round: u64,
    /// Reads that arrived before this leader committed an entry of its
    /// term: its commit index may still be behind the cluster's.
    waiting_for_commit: VecDeque<u64>,
    pending: VecDeque<PendingRead>,
}

impl ReadQueue {
    pub fn round(&self) -> u64 {
        self.round
    }

    pub fn round_wanted(&self) -> bool {
        self.pending.back().is_some_and(|read| read.round.is_none())
    }

    fn len(&self) -> usize {
        self.waiting_for_commit.len() + self.pending.len()
    }

    /// A read the current commit index answers, once a round confirms it.
    fn push_pending(&mut self, context: u64, index: LogIndex) {
        self.pending.push_back(PendingRead {
            context,
            index,
            round: None,
        });
    }

    /// Starts a round for every read registered since the last.
    fn start_round(&mut self) {
        self.round += 1;
        for read in self.pending.iter_mut().rev() {
            if read.round.is_some() {
                break;
            }
            read.round = Some(self.round);
        }
    }

    /// Hands out every read whose round is `confirmed` or earlier.
    fn confirm(&mut self, confirmed: u64, read_states: &mut Vec<ReadState>) {
        while let Some(read) = self.pending.front() {
            match read.round {
                Some(round) if round <= confirmed => {}
                _ => break,
            }
            read_states.push(ReadState {
                context: read.context,
                index: read.index,
            });
            self.pending.pop_front();
        }
    }
}

impl Raft {
    /// Registers a linearizable read identified by `context`. It comes back
    /// in `Ready::read_states` once confirmed; if leadership is lost first,
    /// it never does (the caller fails it when the role changes).
    pub fn read_index(&mut self, context: u64) -> Result<(), ProposeError> {
        let reads_pending_max = self.config.limits.reads_pending_max;
        let stale_reads = self.planted(PlantedBug::StaleLeaderReads);
        let committed_in_term = self.committed_in_current_term();
        let index = self.log.commit_index();
        let RoleState::Leader(leader) = &mut self.role else {
            return Err(ProposeError::NotLeader {
                leader: self.leader_id(),
            });
        };
        if leader.reads.len() >= reads_pending_max {
            return Err(ProposeError::Busy);
        }
        if stale_reads {
            self.ready.read_states.push(ReadState { context, index });
        } else if committed_in_term {
            leader.reads.push_pending(context, index);
        } else {
            leader.reads.waiting_for_commit.push_back(context);
        }
        Ok(())
    }

    fn committed_in_current_term(&self) -> bool {
        self.log.term_at(self.log.commit_index()) == Some(self.hard_state.current_term)
    }

    /// The leader's first commit of its term makes waiting reads servable.
    pub(super) fn release_reads_waiting_for_commit(&mut self) {
        if !self.committed_in_current_term() {
            return;
        }
        let index = self.log.commit_index();
        let RoleState::Leader(leader) = &mut self.role else {
            return;
        };
        while let Some(context) = leader.reads.waiting_for_commit.pop_front() {
            leader.reads.push_pending(context, index);
        }
    }

    /// One heartbeat round covers every read registered since the last.
    pub(super) fn start_read_round(&mut self) {
        let RoleState::Leader(leader) = &mut self.role else {
            return;
        };
        if !leader.reads.round_wanted() {
            return;
        }
        leader.reads.start_round();
        self.broadcast_heartbeat();
        self.confirm_reads();
    }

    /// Releases every read whose round a majority (counting us) answered.
    /// Only voters' acknowledgements count, as for commits.
    pub(super) fn confirm_reads(&mut self) {
        let configuration = &self.log.configs().current().config;
        let RoleState::Leader(leader) = &mut self.role else {
            return;
        };
        let own = configuration
            .is_voter(self.config.id)
            .then_some(leader.reads.round);
        let acknowledged = leader.progress.iter();
        let voters = acknowledged.filter(|(&id, _)| configuration.is_voter(id));
        let rounds = voters.map(|(_, progress)| progress.round_acknowledged);
        let confirmed = quorum_value(rounds.chain(own), configuration.quorum());
        leader.reads.confirm(confirmed, &mut self.ready.read_states);
    }
}
