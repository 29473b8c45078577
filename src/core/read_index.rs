//! Linearizable reads without log writes (ReadIndex, dissertation §6.4).
//! The leader notes its commit index, proves it is still leader by a round
//! of heartbeats a majority answers, and the read may then be served once
//! the state machine has applied that index. Reads that arrive while a
//! round is being set up share it.

use super::progress::quorum_value;
use super::raft::{ProposeError, Raft, Role};
use super::ready::ReadState;
use super::types::*;
use std::collections::VecDeque;

#[derive(Clone, Copy, Debug)]
struct PendingRead {
    context: u64,
    index: LogIndex,
    /// The heartbeat round that will confirm it; None until one is sent.
    round: Option<u64>,
}

/// Leader-only queue of reads. Invariant: rounds never decrease along
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

    pub fn is_empty(&self) -> bool {
        self.waiting_for_commit.is_empty() && self.pending.is_empty()
    }

    fn len(&self) -> usize {
        self.waiting_for_commit.len() + self.pending.len()
    }

    /// Dropped when leadership ends: the caller answers those reads itself.
    pub fn clear(&mut self) {
        self.waiting_for_commit.clear();
        self.pending.clear();
    }
}

impl Raft {
    /// Registers a linearizable read identified by `context`. It comes back
    /// in `Ready::read_states` once confirmed; if leadership is lost first,
    /// it never does (the caller fails it when the role changes).
    pub fn read_index(&mut self, context: u64) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader_id,
            });
        }
        if self.reads.len() >= self.config.limits.reads_pending_max {
            return Err(ProposeError::Busy);
        }
        if self.planted(super::planted::PlantedBug::StaleLeaderReads) {
            let index = self.log.commit_index();
            self.ready.read_states.push(ReadState { context, index });
            return Ok(());
        }
        if self.committed_in_current_term() {
            let index = self.log.commit_index();
            self.reads.pending.push_back(PendingRead {
                context,
                index,
                round: None,
            });
        } else {
            self.reads.waiting_for_commit.push_back(context);
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
        while let Some(context) = self.reads.waiting_for_commit.pop_front() {
            self.reads.pending.push_back(PendingRead {
                context,
                index,
                round: None,
            });
        }
    }

    /// One heartbeat round covers every read registered since the last.
    pub(super) fn start_read_round(&mut self) {
        if !self.reads.round_wanted() {
            return;
        }
        self.reads.round += 1;
        let round = self.reads.round;
        for read in self.reads.pending.iter_mut().rev() {
            if read.round.is_some() {
                break;
            }
            read.round = Some(round);
        }
        self.broadcast_heartbeat();
        self.confirm_reads();
    }

    /// Releases every read whose round a majority (counting us) answered.
    pub(super) fn confirm_reads(&mut self) {
        let acknowledged = self.progress.values();
        let rounds = acknowledged.map(|progress| progress.round_acknowledged);
        let confirmed = quorum_value(rounds.chain([self.reads.round]), self.config.quorum());
        while let Some(read) = self.reads.pending.front() {
            match read.round {
                Some(round) if round <= confirmed => {}
                _ => break,
            }
            self.ready.read_states.push(ReadState {
                context: read.context,
                index: read.index,
            });
            self.reads.pending.pop_front();
        }
    }
}
