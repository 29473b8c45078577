//! Leadership transfers at random times during the safety phase, under the
//! same faults as everything else. An operator sends `TRANSFER nX` to the
//! node it believes leads, through the replica's own request path
//! (`Replica::handle_request`, as the daemon's loop calls it). The sim's
//! clients run only the workload's verbs and its checker models only
//! their replies, so the operator is not one of them; its replies are
//! checked here: `OK leader=nX term=T` must name the node the checker saw
//! win term T.
//!
//! Transfers are on in half the seeds, drawn from their own stream, so the
//! seeds without keep the event sequence they had before transfers existed.

use super::event::Event;
use super::node::NodeState;
use super::property::{violated, Property, Violation};
use super::simulator::{Phase, Simulator};
use super::trace::TraceEvent;
use raftlite::core::{Role, Term};
use raftlite::replica::{ClientToken, SessionTag};
use raftlite::reply::Reply;

/// The connection id of the operator's requests: no client has it.
pub(super) const OPERATOR_CONNECTION: u64 = u64::MAX;
/// Time between two transfers, at most: several per election timeout at
/// the low end, so that transfers overlap elections, crashes and each
/// other.
const TRANSFER_INTERVAL_MS_MAX: u64 = 2_000;
/// A third of the transfers pause their target as they start, for longer
/// than the transfer may take: the leader gives up and takes writes again,
/// and the target reads its TimeoutNow only once it runs again, with a log
/// that lacks what was committed meanwhile (the vote's log check must
/// stop it: planted bug `transfer-vote-ignores-log`).
const TARGET_PAUSED_MS_MIN: u64 = 400;
const TARGET_PAUSED_MS_MAX: u64 = 1_500;

impl Simulator {
    pub(super) fn schedule_transfer(&mut self) {
        if !self.transfers_enabled {
            return;
        }
        let delay_ms = self
            .rng
            .transfers
            .range_inclusive(1, TRANSFER_INTERVAL_MS_MAX);
        self.queue.push(self.now_ms + delay_ms, Event::Transfer);
    }

    /// Picks a leader (a live one if any, else any live node: a TRANSFER
    /// at a follower is answered NOT_LEADER) and a target (now and then
    /// the node itself, or a name that is no member).
    pub(super) fn transfer(&mut self) {
        if self.phase != Phase::Faults {
            return;
        }
        self.schedule_transfer();
        let size = self.nodes.len();
        let up: Vec<usize> = (0..size)
            .filter(|&node| self.nodes[node].state == NodeState::Up)
            .collect();
        let leaders: Vec<usize> = up
            .iter()
            .copied()
            .filter(|&node| self.nodes[node].replica().raft().role() == Role::Leader)
            .collect();
        let candidates = if leaders.is_empty() { up } else { leaders };
        if candidates.is_empty() {
            return;
        }
        let rng = &mut self.rng.transfers;
        let node = candidates[rng.range_inclusive(0, candidates.len() as u64 - 1) as usize];
        let target = rng.range_inclusive(0, size as u64) as usize; // `size`: no member
        self.operator_requests += 1;
        self.stats.faults.transfers += 1;
        let token = ClientToken {
            connection: OPERATOR_CONNECTION,
            request_id: self.operator_requests,
        };
        let line = format!("TRANSFER n{target}");
        self.record(TraceEvent::OperatorRequest {
            node,
            line: line.clone(),
        });
        self.queue
            .push(self.now_ms, Event::OperatorRequest { node, token, line });
        let target_up = target < size && target != node && self.nodes[target].is_up();
        if target_up && self.rng.transfers.chance(1, 3) {
            let rng = &mut self.rng.transfers;
            let paused_ms = rng.range_inclusive(TARGET_PAUSED_MS_MIN, TARGET_PAUSED_MS_MAX);
            self.pause_node(target, paused_ms);
        }
    }

    pub(super) fn operator_request(&mut self, node: usize, token: ClientToken, line: &str) {
        if self.nodes[node].state != NodeState::Up {
            return; // crashed meanwhile: the connection is gone
        }
        let local_ms = self.nodes[node].local_ms(self.now_ms);
        let replica = self.nodes[node].replica_mut();
        replica.observe_time(local_ms);
        let proposed = replica.handle_request(token, SessionTag::default(), line);
        assert!(proposed.is_none(), "TRANSFER goes through no log entry");
        self.drive(node);
    }

    /// An operator's reply: a success must name the node that won that
    /// term, as far as the checker saw elections (a stale member's replies
    /// are left out, as the clients' are).
    pub(super) fn check_operator_reply(
        &mut self,
        node: usize,
        reply: &Reply,
    ) -> Result<(), Violation> {
        self.record(TraceEvent::OperatorReply {
            node,
            line: reply.to_string(),
        });
        let Reply::Transferred { leader, term } = reply else {
            return Ok(());
        };
        if self.nodes[node].is_stale() {
            return Ok(()); // another cluster's history: its leaders are not ours
        }
        let won = self
            .checker
            .leader_of(*term)
            .map(|winner| format!("n{winner}"));
        if won.as_deref() == Some(leader.as_str()) {
            self.stats.faults.transfers_succeeded += 1;
            return Ok(());
        }
        let Term(term) = term;
        violated(
            Property::ClientSemantics,
            format!("n{node} answered TRANSFER with {reply}, but term {term}'s leader was {won:?}"),
        )
    }
}
