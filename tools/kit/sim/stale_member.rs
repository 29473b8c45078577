//! The stale-member fault: a member's data dir is swapped, for a while,
//! for one from another cluster on the same addresses (an operator's
//! mistake, or an old disk image restored): the same node id, a higher
//! term, and writes to the same keys. It must be refused by the cluster
//! and change nothing there: its term, votes and entries never reach a
//! node of the cluster (`ClusterTag`, `HardState::cluster_id`).
//!
//! The fault comes only once a majority of the other members are bound to
//! the cluster: that is the guarantee (every acknowledged write lives on a
//! bound majority). Before, a stale member may capture nodes that hold
//! nothing anyone was promised, which is allowed and not checked here.
//! While it runs the checkers leave the node out, and durability counts
//! the member's own disk, set aside.

use super::disk::Disk;
use super::event::Event;
use super::options::STALE_MEMBER_MS_MAX;
use super::simulator::Simulator;
use super::trace::TraceEvent;
use raftlite::core::{ClusterId, Entry, EntryKind, HardState, LogIndex, Term};
use raftlite::kv::{Command, LogRecord};

/// Entries the stale data dir holds after its Bootstrap.
const STALE_ENTRIES_MAX: u64 = 6;

impl Simulator {
    pub(super) fn stale_member(&mut self) {
        let quorum = self.options.size / 2 + 1;
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|&node| self.nodes[node].is_up() && !self.nodes[node].is_stale())
            .filter(|&node| self.others_bound(node) >= quorum)
            .collect();
        let Some(node) = self.pick_from(&candidates) else {
            return;
        };
        self.power_off(node);
        let image = self.stale_image(node);
        let term = image.hard_state().current_term;
        let entries = image.last_index().0;
        let own = std::mem::replace(&mut self.nodes[node].disk, image);
        self.nodes[node].own_disk = Some(own);
        self.checker.node_replaced(node);
        self.stats.faults.stale_members += 1;
        self.record(TraceEvent::StaleMember {
            node,
            term,
            entries,
        });
        self.restart_soon(node);
        let duration_ms = self.rng.faults.range_inclusive(100, STALE_MEMBER_MS_MAX);
        let incarnation = self.nodes[node].incarnation;
        let event = Event::StaleMemberEnd { node, incarnation };
        self.queue.push(self.now_ms + duration_ms, event);
    }

    /// Members other than `node` whose disks say they are bound.
    pub(super) fn others_bound(&self, node: usize) -> usize {
        (0..self.nodes.len())
            .filter(|&other| other != node && !self.nodes[other].is_stale())
            .filter(|&other| self.nodes[other].disk.hard_state().cluster_id.is_some())
            .count()
    }

    /// Another cluster's data dir for `node`: its own Bootstrap, writes to
    /// the workload's keys with values no client writes, and a term above
    /// anything the run has reached, so that taking it would look up to
    /// date to any voter.
    fn stale_image(&mut self, node: usize) -> Disk {
        let cluster_id = ClusterId(self.rng.faults.next_u64() | 1);
        let term = Term(self.checker.term_max.0 + self.rng.faults.range_inclusive(2, 20));
        let count = self.rng.faults.range_inclusive(0, STALE_ENTRIES_MAX);
        let mut entries = vec![Entry {
            term: Term(1),
            index: LogIndex(1),
            kind: EntryKind::Bootstrap,
            data: cluster_id.to_bytes().as_slice().into(),
        }];
        for index in 2..=count + 1 {
            let key = format!("k{}", index % super::options::KEYS_COUNT);
            let command = Command::Set {
                key: key.into_bytes(),
                value: format!("stale-n{node}-{index}").into_bytes(),
            };
            let mut data = Vec::new();
            LogRecord::Command {
                session: None,
                command,
            }
            .encode(&mut data);
            entries.push(Entry {
                term: Term(term.0 - 1),
                index: LogIndex(index),
                kind: EntryKind::Command,
                data: data.as_slice().into(),
            });
        }
        let hard_state = HardState {
            current_term: term,
            voted_for: None,
            cluster_id: Some(cluster_id),
        };
        Disk::with_image(hard_state, &entries)
    }

    /// The member's own data dir comes back, as the operator would put it
    /// back: the stale process is stopped and the member restarts.
    pub(super) fn stale_member_end(&mut self, node: usize, incarnation: u64) {
        if self.nodes[node].incarnation != incarnation || !self.nodes[node].is_stale() {
            return;
        }
        self.end_stale_member(node);
    }

    fn end_stale_member(&mut self, node: usize) {
        if self.nodes[node].is_up() || self.nodes[node].state == super::node::NodeState::Paused {
            self.power_off(node);
        }
        let Some(own) = self.nodes[node].own_disk.take() else {
            return;
        };
        self.nodes[node].disk = own;
        self.checker.node_replaced(node);
        self.record(TraceEvent::StaleMemberEnd { node });
        self.restart_soon(node);
    }

    /// Liveness begins: every member gets its own data dir back.
    pub(super) fn end_stale_members(&mut self) {
        for node in 0..self.nodes.len() {
            if self.nodes[node].is_stale() {
                self.end_stale_member(node);
            }
        }
    }
}
