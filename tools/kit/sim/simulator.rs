//! The simulator: one seed, one run. It owns the event queue, the nodes,
//! the network and the clients, pops one event per step, lets the event's
//! node react through the daemon's own `Replica`, and runs the checkers.
//!
//! The run has two phases, as in TigerBeetle's VOPR: a safety phase of
//! `steps` events under faults, then a liveness phase without faults that
//! must converge within LIVENESS_BOUND_MS of simulated time.

use super::checker::{Applied, Checker, ObservedReply};
use super::disk::Disk;
use super::event::{Event, Reply};
use super::network::Network;
use super::node::{Node, NodeState};
use super::options::{
    FaultProfile, Options, ELECTION_TIMEOUT_MS_MAX, ELECTION_TIMEOUT_MS_MIN, HEARTBEAT_INTERVAL_MS,
    LIVENESS_BOUND_MS, LIVENESS_STEPS_MAX,
};
use super::property::{violated, Property, Violation};
use super::queue::EventQueue;
use super::snapshot_files::SimSnapshotFile;
use super::stats::Stats;
use super::trace::{Echo, Trace, TraceEvent};
use super::workload::{address_of_node, Ended, Workload};
use raftlite::core::rng::Rng;
use raftlite::core::{
    ClusterId, Config, Configuration, NodeId, Raft, Role, StartConfiguration, StoredSnapshot,
};
use raftlite::kv::StateMachine;
use raftlite::replica::{Member, Replica};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Faults,
    Liveness {
        healed_at_ms: u64,
        healed_at_step: u64,
    },
}

/// Salts that split one seed into independent streams (their names in
/// ASCII).
const SALT_PROFILE: u64 = 0x7072_6F66_696C_6500;
const SALT_NETWORK: u64 = 0x6E65_7477_6F72_6B00;
const SALT_FAULTS: u64 = 0x6661_756C_7473_0000;
const SALT_CLIENTS: u64 = 0x636C_6965_6E74_7300;
const SALT_DISK: u64 = 0x6469_736B_0000_0000;
const SALT_SYNCS: u64 = 0x7379_6E63_7300_0000;
const SALT_TRANSFERS: u64 = 0x7472_616E_7366_6572;

/// Independent random streams, so that a change in how often one part
/// draws does not reshuffle the others.
pub(super) struct Rngs {
    pub network: Rng,
    pub faults: Rng,
    pub clients: Rng,
    pub disk: Rng,
    /// The sync threads' latencies.
    pub syncs: Rng,
    /// The operator's leadership transfers (transfers.rs).
    pub transfers: Rng,
}

/// What a step did, for the checkers that run after it.
#[derive(Default)]
pub(super) struct Observed {
    /// Bit i set: node i changed.
    pub touched: u32,
    pub applied: Vec<Applied>,
    pub replies: Vec<ObservedReply>,
    pub disks_changed: bool,
    /// Nodes that became leader.
    pub elected: Vec<usize>,
    /// Nodes whose commit index advanced.
    pub commits: Vec<usize>,
    /// Client commands that ended.
    pub ended: Vec<Ended>,
    /// Snapshot files nodes took or installed, and how.
    pub snapshot_files: Vec<(usize, SimSnapshotFile, &'static str)>,
    /// The operator's TRANSFER replies: (node, reply).
    pub operator_replies: Vec<(usize, raftlite::reply::Reply)>,
}

// `touched` has a bit per node.
const _: () = assert!(raftlite::constants::CLUSTER_SIZE_MAX <= u32::BITS as usize);

impl Observed {
    pub fn touch(&mut self, node: usize) {
        self.touched |= 1 << node;
    }

    pub fn is_empty(&self) -> bool {
        self.touched == 0
            && self.applied.is_empty()
            && self.replies.is_empty()
            && !self.disks_changed
            && self.elected.is_empty()
            && self.commits.is_empty()
            && self.ended.is_empty()
            && self.snapshot_files.is_empty()
            && self.operator_replies.is_empty()
    }

    pub fn merge(&mut self, other: Observed) {
        self.touched |= other.touched;
        self.applied.extend(other.applied);
        self.replies.extend(other.replies);
        self.disks_changed |= other.disks_changed;
        self.elected.extend(other.elected);
        self.commits.extend(other.commits);
        self.ended.extend(other.ended);
        self.snapshot_files.extend(other.snapshot_files);
        self.operator_replies.extend(other.operator_replies);
    }
}

pub struct Simulator {
    pub(super) options: Options,
    pub(super) profile: FaultProfile,
    pub(super) now_ms: u64,
    pub(super) step: u64,
    pub(super) phase: Phase,
    pub(super) queue: EventQueue<Event>,
    pub(super) nodes: Vec<Node>,
    pub(super) members: Vec<Member>,
    pub(super) network: Network,
    pub(super) workload: Workload,
    pub(super) checker: Checker,
    pub trace: Trace,
    pub(super) stats: Stats,
    pub(super) rng: Rngs,
    pub(super) observed: Observed,
    /// Random faults hold off until then, so that a targeted fault plays
    /// out (see `divergence.rs`).
    pub(super) nemesis_quiet_until_ms: u64,
    /// This seed runs leadership transfers (half the seeds do).
    pub(super) transfers_enabled: bool,
    /// TRANSFER requests the operator sent: their request ids.
    pub(super) operator_requests: u64,
}

impl Simulator {
    pub fn new(options: Options, echo: Echo) -> Simulator {
        assert!(
            (1..=raftlite::constants::CLUSTER_SIZE_MAX).contains(&options.size),
            "cluster size {} out of range",
            options.size
        );
        let mut profile_rng = Rng::new(options.seed ^ SALT_PROFILE);
        let profile = FaultProfile::generate(&mut profile_rng);
        let mut rng = Rngs {
            network: Rng::new(options.seed ^ SALT_NETWORK),
            faults: Rng::new(options.seed ^ SALT_FAULTS),
            clients: Rng::new(options.seed ^ SALT_CLIENTS),
            disk: Rng::new(options.seed ^ SALT_DISK),
            syncs: Rng::new(options.seed ^ SALT_SYNCS),
            transfers: Rng::new(options.seed ^ SALT_TRANSFERS),
        };
        let transfers_enabled = rng.transfers.chance(1, 2);
        let members = (0..options.size)
            .map(|node| Member {
                name: format!("n{node}"),
                address: address_of_node(node),
            })
            .collect();
        let workload = Workload::new(
            &mut rng.clients,
            profile.clients_count,
            options.size,
            profile.client_think_ms_max,
            options.planted_bug,
        );
        Simulator {
            network: Network::new(&profile),
            checker: Checker::new(options.size),
            nodes: Vec::with_capacity(options.size),
            queue: EventQueue::new(),
            now_ms: 0,
            step: 0,
            phase: Phase::Faults,
            trace: Trace::new(echo),
            stats: Stats::default(),
            observed: Observed::default(),
            nemesis_quiet_until_ms: 0,
            transfers_enabled,
            operator_requests: 0,
            members,
            workload,
            profile,
            options,
            rng,
        }
    }

    pub fn stats(&self) -> Stats {
        let mut stats = self.stats;
        stats.steps = self.step;
        stats.simulated_ms = self.now_ms;
        stats.elections = self.checker.elections;
        stats.commits = self.checker.history.last_index().0;
        stats.term_max = self.checker.term_max.0;
        stats.client_operations = self.workload.operations_completed;
        stats.client_replies = self.workload.replies;
        stats
    }

    pub fn step(&self) -> u64 {
        self.step
    }

    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Runs both phases; Ok if every check held and the cluster recovered.
    pub fn run(&mut self) -> Result<(), Violation> {
        self.start();
        loop {
            if self.phase == Phase::Faults && self.step >= self.options.steps {
                self.stop_faults()?;
            }
            if let Phase::Liveness { healed_at_ms, .. } = self.phase {
                if self.recovered() {
                    self.stats.liveness_ms = self.now_ms - healed_at_ms;
                    return Ok(());
                }
            }
            let Some((time_ms, event)) = self.queue.pop() else {
                return violated(Property::Liveness, "nothing left to happen".to_string());
            };
            self.check_liveness_bound(time_ms)?;
            self.now_ms = time_ms;
            self.step += 1;
            if self.release_after_fsync() {
                self.check_step()?; // the state they saw, before it moves on
            }
            let node = event.node();
            self.dispatch(event)?;
            self.check_step()?;
            if node.is_some_and(|node| self.maybe_crash_after_step(node)) {
                self.check_step()?;
            }
        }
    }

    fn start(&mut self) {
        self.record(TraceEvent::Start {
            seed: self.options.seed,
            size: self.options.size,
            profile: format!("{:?}", self.profile),
        });
        for node in 0..self.options.size {
            let (replica, _, _) = self.new_replica(node).expect("an empty disk recovers");
            self.nodes
                .push(Node::new(replica, self.profile.snapshot_policy));
            self.schedule_timer(node);
        }
        if self.profile.one_slow_disk {
            let node = self
                .rng
                .faults
                .range_inclusive(0, self.options.size as u64 - 1);
            self.nodes[node as usize].disk_slow_always = true;
        }
        for client in 0..self.workload.clients_count() {
            let think_ms = self.workload.think_ms(&mut self.rng.clients);
            self.queue.push(think_ms, Event::ClientSend { client });
        }
        self.schedule_nemesis();
        self.schedule_transfer();
    }

    /// A fresh process for `node`, started from its disk (empty at first)
    /// as the daemon's recovery starts one: the newest snapshot restores
    /// the state machine, the log after it the core. Returns the snapshot
    /// it started from, for the checkers.
    pub(super) fn new_replica(
        &mut self,
        node: usize,
    ) -> Result<(Replica, Option<SimSnapshotFile>, bool), Violation> {
        let seed = self.rng.faults.next_u64();
        let config = Config {
            id: NodeId(node as u32),
            start: StartConfiguration::Bootstrap(Configuration::numbered(self.options.size)),
            election_timeout_ms_min: ELECTION_TIMEOUT_MS_MIN,
            election_timeout_ms_max: ELECTION_TIMEOUT_MS_MAX,
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
            seed,
            // Every process draws its own, as the daemon does at each start.
            bootstrap_cluster_id: ClusterId(seed.rotate_left(29) | 1),
            pre_vote: self.profile.pre_vote,
            check_quorum: self.profile.check_quorum,
            limits: self.profile.limits,
        };
        let planted_bug = self.options.planted_bug;
        let recovered = match self.nodes.get_mut(node) {
            Some(state) => state.disk.recover(planted_bug).or_else(|problem| {
                violated(
                    Property::Durability,
                    format!("n{node} cannot restart from its disk: {problem}"),
                )
            })?,
            None => Disk::new().recover(None).expect("an empty disk recovers"),
        };
        let (snapshot, machine) = match &recovered.snapshot {
            None => (None, StateMachine::default()),
            Some(file) => {
                let machine = StateMachine::restore(file.body()).expect("a sim file restores");
                let stored = StoredSnapshot {
                    meta: file.meta.clone(),
                    size_bytes: file.size_bytes(),
                };
                (Some(stored), machine)
            }
        };
        let (hard_state, entries) = (recovered.hard_state, recovered.entries);
        let mut raft =
            Raft::restore(config, hard_state, snapshot, entries, 0).expect("valid configuration");
        self.plant_bug(&mut raft);
        let replica = Replica::restored(raft, self.members.clone(), machine);
        Ok((replica, recovered.snapshot, recovered.log_discarded))
    }

    #[cfg(feature = "planted-bugs")]
    fn plant_bug(&self, raft: &mut Raft) {
        raft.plant_bug(self.options.planted_bug);
    }

    #[cfg(not(feature = "planted-bugs"))]
    fn plant_bug(&self, _raft: &mut Raft) {
        assert!(
            self.options.planted_bug.is_none(),
            "planting a bug needs --features planted-bugs"
        );
    }

    pub(super) fn record(&mut self, event: TraceEvent) {
        self.trace.record(self.step, self.now_ms, event);
    }

    fn dispatch(&mut self, event: Event) -> Result<(), Violation> {
        if let Some(node) = event.node() {
            if self.nodes[node].state == NodeState::Paused {
                self.hold(node, event);
                return Ok(());
            }
            let busy_until_ms = self.nodes[node].busy_until_ms;
            if busy_until_ms > self.now_ms && self.nodes[node].is_up() {
                // Blocked in an fsync: the event waits, as on the daemon's loop.
                self.queue.push(busy_until_ms, event);
                return Ok(());
            }
        }
        match event {
            Event::Deliver {
                message,
                sender_incarnation,
                leaves_ms,
            } => self.deliver(message, sender_incarnation, leaves_ms),
            Event::CoreTimer { node, incarnation } => self.fire_timer(node, incarnation),
            Event::Drive { node, incarnation } => {
                if self.is_live(node, incarnation) {
                    self.drive(node);
                }
            }
            Event::SyncComplete { node, incarnation } => self.complete_syncs(node, incarnation),
            Event::Unblocked => {} // release_after_fsync did its work
            Event::ClientRequest {
                node,
                token,
                session,
                line,
            } => self.client_request(node, token, session, line),
            Event::RequestExpire {
                node,
                incarnation,
                index,
                token,
            } => self.expire_request(node, incarnation, index, token),
            Event::ClientReply {
                client,
                request_id,
                reply,
                sender,
            } => {
                // A line written by a process that died first never left.
                let alive = |(node, incarnation, at_ms): (usize, u64, u64)| {
                    self.nodes[node].was_alive_at(incarnation, at_ms)
                };
                let reply = match sender.is_none_or(alive) {
                    true => reply,
                    false => Reply::Disconnected,
                };
                self.client_reply(client, request_id, reply)
            }
            Event::ClientTimeout { client, request_id } => self.client_timeout(client, request_id),
            Event::ClientSend { client } => self.client_send(client),
            Event::ClientResume { client } => self.client_resume(client),
            Event::OperatorRequest { node, token, line } => {
                self.operator_request(node, token, &line)
            }
            other => return self.dispatch_fault(other),
        }
        Ok(())
    }

    fn dispatch_fault(&mut self, event: Event) -> Result<(), Violation> {
        match event {
            Event::Nemesis => self.nemesis(),
            Event::Transfer => self.transfer(),
            Event::Restart { node, incarnation } => self.restart(node, incarnation)?,
            Event::Resume { node, pause } => self.resume(node, pause),
            Event::PartitionHeal { generation } => self.heal_partition(generation),
            Event::DiskRecover { node, generation } => self.recover_disk(node, generation),
            Event::StaleMemberEnd { node, incarnation } => self.stale_member_end(node, incarnation),
            other => unreachable!("not a fault event: {other:?}"),
        }
        Ok(())
    }

    /// A paused process cannot take the event; the kernel keeps it. Its
    /// timers need not be kept: resuming fires whatever is due.
    fn hold(&mut self, node: usize, event: Event) {
        let state = &mut self.nodes[node];
        let timer = matches!(event, Event::CoreTimer { .. } | Event::Drive { .. });
        if !timer && state.held.len() < super::options::HELD_EVENTS_MAX {
            state.held.push(event);
        }
    }

    pub(super) fn is_live(&self, node: usize, incarnation: u64) -> bool {
        let state = &self.nodes[node];
        state.state == NodeState::Up && state.incarnation == incarnation
    }

    /// The checkers, on what this step changed.
    fn check_step(&mut self) -> Result<(), Violation> {
        self.settle_disks();
        let observed = std::mem::take(&mut self.observed);
        self.check_observed(&observed)?;
        for &node in &observed.elected {
            self.maybe_isolate_new_leader(node);
        }
        for &node in &observed.commits {
            self.maybe_strike_divergence(node);
        }
        if self.observed.touched != 0 || self.observed.disks_changed {
            return self.check_step(); // a targeted fault just changed nodes
        }
        Ok(())
    }

    /// What nodes did after an fsync that has completed by now, for the
    /// checkers (drive.rs). Returns whether there was any.
    fn release_after_fsync(&mut self) -> bool {
        let mut released = false;
        for node in &mut self.nodes {
            if node.busy_until_ms <= self.now_ms && !node.after_fsync.is_empty() {
                self.observed.merge(std::mem::take(&mut node.after_fsync));
                released = true;
            }
        }
        released
    }

    /// Writes whose fsync completed by now are durable: a sync the node
    /// waited in has no event of its own, so every step settles them.
    fn settle_disks(&mut self) {
        for node in &mut self.nodes {
            if node.disk.settle(self.now_ms) {
                self.observed.disks_changed = true;
            }
        }
    }

    fn check_observed(&mut self, observed: &Observed) -> Result<(), Violation> {
        let committed_before = self.checker.history.last_index();
        for applied in &observed.applied {
            if !self.nodes[applied.node].is_stale() {
                self.checker.remember_applied(applied);
            }
        }
        for node in 0..self.nodes.len() {
            // A node blocked in an fsync is checked when it completes: its
            // memory is already past it (drive.rs).
            let busy = self.nodes[node].busy_until_ms > self.now_ms;
            if observed.touched & (1 << node) != 0 && !busy {
                self.checker.check_node(&self.nodes, node)?;
            }
        }
        // A stale member runs another cluster's history: nothing it
        // applies or answers is this cluster's.
        for applied in &observed.applied {
            if !self.nodes[applied.node].is_stale() {
                self.checker.check_applied(applied)?;
            }
        }
        for reply in &observed.replies {
            if !self.nodes[reply.node].is_stale() {
                self.checker.check_reply(reply)?;
            }
        }
        for ended in &observed.ended {
            self.checker.outcomes.ended(ended)?;
        }
        for (node, reply) in &observed.operator_replies {
            self.check_operator_reply(*node, reply)?;
        }
        for (node, file, how) in &observed.snapshot_files {
            if !self.nodes[*node].is_stale() {
                self.checker.check_snapshot_file(*node, file, how)?;
            }
        }
        if observed.disks_changed || self.checker.history.last_index() > committed_before {
            for node in 0..self.nodes.len() {
                let state = &mut self.nodes[node];
                let own = state.own_disk.as_mut().unwrap_or(&mut state.disk);
                self.checker.anchor_disk(node, own)?;
            }
            let changed_from: Vec<_> = (self.nodes.iter_mut())
                .map(|node| node.disk.take_changed_from())
                .collect();
            self.checker.check_durability(&self.nodes, &changed_from)?;
        }
        Ok(())
    }

    /// Recovered: every client finished, every proposal was answered, and
    /// all nodes follow one leader with the same log, fully committed and
    /// applied, and the same state.
    fn recovered(&self) -> bool {
        self.workload.all_done()
            && self.workload.first_unanswered_proposal().is_none()
            && self.unconverged().is_none()
    }

    /// Why the nodes have not converged yet, if they have not.
    fn unconverged(&self) -> Option<String> {
        let Some(leader) = self.nodes.iter().position(|node| {
            node.replica
                .as_ref()
                .is_some_and(|replica| replica.raft().role() == Role::Leader)
        }) else {
            return Some("no node is leader".to_string());
        };
        let expected = self.nodes[leader].replica().raft().status();
        let digest = self.nodes[leader].replica().machine().digest();
        for (node, state) in self.nodes.iter().enumerate() {
            let Some(replica) = state.replica.as_ref() else {
                return Some(format!("n{node} is down"));
            };
            let status = replica.raft().status();
            let same = status.term == expected.term
                && status.leader == Some(NodeId(leader as u32))
                && status.last_index == expected.last_index
                && status.commit_index == status.last_index
                && status.last_applied == status.commit_index
                && replica.machine().digest() == digest
                && !state.disk.has_pending();
            if !same {
                return Some(format!(
                    "n{node} at term {} following {:?}, log {} commit {} applied {}; leader n{leader} at term {} has log {}",
                    status.term, status.leader, status.last_index, status.commit_index,
                    status.last_applied, expected.term, expected.last_index
                ));
            }
        }
        None
    }

    fn check_liveness_bound(&self, time_ms: u64) -> Result<(), Violation> {
        let Phase::Liveness {
            healed_at_ms,
            healed_at_step,
        } = self.phase
        else {
            return Ok(());
        };
        let late = time_ms > healed_at_ms + LIVENESS_BOUND_MS;
        if !late && self.step - healed_at_step < LIVENESS_STEPS_MAX {
            return Ok(());
        }
        let why = if let Some((client, line)) = self.workload.first_unfinished() {
            format!("client c{client} still has not finished {line:?}")
        } else if let Some((request_id, attempt)) = self.workload.first_unanswered_proposal() {
            format!(
                "n{} never answered proposal #{request_id} ({})",
                attempt.node, attempt.line
            )
        } else {
            self.unconverged().unwrap_or_default()
        };
        violated(
            Property::Liveness,
            format!("not recovered {LIVENESS_BOUND_MS} ms after the faults stopped: {why}"),
        )
    }
}
