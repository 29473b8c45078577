//! A targeted fault for the commit rule, in the spirit of FoundationDB's
//! "buggify": random faults rarely line up into Figure 8 of the Raft paper
//! (a leader commits an entry while another node holds a conflicting entry
//! of a newer term, then the leader dies and that node is elected), so the
//! simulator helps them line up.
//!
//! When a leader's commit index advances over an index where another node
//! holds an entry of a newer term, the simulator may crash the leader on
//! the spot (its unsynced writes torn) and cut off the nodes that already
//! hold the leader's term. Under the correct rule (§5.4.2) the leader only
//! committed what a majority holding its term stores, so the nodes left are
//! a minority and cannot elect the divergent node. Under a wrong rule they
//! can, and Leader Completeness fails.

use super::event::Event;
use super::node::NodeState;
use super::options::{CRASH_DOWNTIME_QUICK_MS_MAX, ELECTION_TIMEOUT_MS_MAX};
use super::simulator::{Phase, Simulator};
use super::trace::TraceEvent;
use raftlite::core::{LogIndex, Role, Term};
use std::collections::BTreeSet;

impl Simulator {
    /// Called after a step in which `leader` reported a commit advance.
    pub(super) fn maybe_strike_divergence(&mut self, leader: usize) {
        let Some(replica) = self.nodes[leader].replica.as_ref() else {
            return;
        };
        let status = replica.raft().status();
        let from = self.nodes[leader].commit_seen.next();
        self.nodes[leader].commit_seen = status.commit_index;
        let armed = self.profile.strike_divergence && self.phase == Phase::Faults;
        if !armed || status.role != Role::Leader || from > status.commit_index {
            return;
        }
        let Some(divergent) = self.divergent_node(leader, from, status.commit_index) else {
            return;
        };
        self.strike(leader, divergent, status.term);
    }

    /// Another node holding, in from..=to, an entry of a newer term than
    /// the leader's entry at the same index.
    fn divergent_node(&self, leader: usize, from: LogIndex, to: LogIndex) -> Option<usize> {
        let log = self.nodes[leader].replica().raft().log();
        (0..self.nodes.len())
            .filter(|&other| other != leader)
            .find(|&other| {
                (from.0..=to.0).any(|index| {
                    let index = LogIndex(index);
                    match (log.term_at(index), self.term_at(other, index)) {
                        (Some(ours), Some(theirs)) => theirs > ours,
                        _ => false,
                    }
                })
            })
    }

    /// A node's term at `index`: from its memory if it runs, else its disk.
    fn term_at(&self, node: usize, index: LogIndex) -> Option<Term> {
        let state = &self.nodes[node];
        match state.replica.as_ref() {
            Some(replica) => replica.raft().log().term_at(index),
            None => state.disk.term_at(index).filter(|_| index.0 > 0),
        }
    }

    fn last_term(&self, node: usize) -> Term {
        let state = &self.nodes[node];
        match state.replica.as_ref() {
            Some(replica) => replica.raft().log().last_term(),
            None => state.disk.last_term(),
        }
    }

    fn strike(&mut self, leader: usize, divergent: usize, term: Term) {
        let holders: BTreeSet<usize> = (0..self.nodes.len())
            .filter(|&node| node != leader && self.last_term(node) >= term)
            .collect();
        self.stats.faults.divergence_strikes += 1;
        self.record(TraceEvent::Strike {
            leader,
            divergent,
            holders: holders.iter().copied().collect(),
        });
        self.power_off(leader);
        self.restart_soon(leader);
        if self.nodes[divergent].state == NodeState::Crashed {
            self.restart_soon(divergent);
        }
        if !holders.is_empty() {
            let mut links = BTreeSet::new();
            for &inside in &holders {
                for outside in (0..self.nodes.len()).filter(|node| !holders.contains(node)) {
                    links.insert((inside, outside));
                    links.insert((outside, inside));
                }
            }
            // Long enough for the nodes left to hold an election.
            let duration_ms = self.rng.faults.range_inclusive(
                2 * ELECTION_TIMEOUT_MS_MAX,
                2 * ELECTION_TIMEOUT_MS_MAX + self.profile.partition_ms_max,
            );
            self.cut(links, false, duration_ms);
            self.nemesis_quiet_until_ms = self.now_ms + duration_ms;
        }
    }

    pub(super) fn restart_soon(&mut self, node: usize) {
        let downtime_ms = self
            .rng
            .faults
            .range_inclusive(0, CRASH_DOWNTIME_QUICK_MS_MAX);
        let incarnation = self.nodes[node].incarnation;
        let event = Event::Restart { node, incarnation };
        self.queue.push(self.now_ms + downtime_ms, event);
    }
}
