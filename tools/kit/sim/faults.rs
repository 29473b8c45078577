//! The nemesis: node, disk and network faults injected at random times
//! during the safety phase, each undone after a random while, and all
//! undone at once when the liveness phase begins.

use super::disk::TornTail;
use super::event::{Event, Reply};
use super::node::NodeState;
use super::options::{
    CRASH_DOWNTIME_MS_MAX, CRASH_DOWNTIME_QUICK_MS_MAX, DISK_SLOW_MS_MAX, PAUSE_MS_MAX,
};
use super::property::Violation;
use super::simulator::{Phase, Simulator};
use super::trace::TraceEvent;
use raftlite::core::{LogIndex, NodeId, Role};
use raftlite::driver::Driver;
use std::collections::BTreeSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Crash,
    Pause,
    Partition,
    SlowDisk,
    StaleMember,
    ForeignLog,
}

impl Simulator {
    pub(super) fn schedule_nemesis(&mut self) {
        let interval_ms_max = self.profile.nemesis_interval_ms_max;
        let delay_ms = self.rng.faults.range_inclusive(1, interval_ms_max);
        self.queue.push(self.now_ms + delay_ms, Event::Nemesis);
    }

    pub(super) fn nemesis(&mut self) {
        if self.phase != Phase::Faults {
            return;
        }
        self.schedule_nemesis();
        if self.now_ms < self.nemesis_quiet_until_ms {
            return;
        }
        match self.pick_fault() {
            Some(Fault::Crash) => self.crash_some_node(),
            Some(Fault::Pause) => self.pause_some_node(),
            Some(Fault::Partition) => self.partition(),
            Some(Fault::SlowDisk) => self.slow_some_disk(),
            Some(Fault::StaleMember) => self.stale_member(),
            Some(Fault::ForeignLog) => self.foreign_log(),
            None => {}
        }
    }

    fn pick_fault(&mut self) -> Option<Fault> {
        let profile = &self.profile;
        let weights = [
            (Fault::Crash, profile.crash_weight),
            (Fault::Pause, profile.pause_weight),
            (Fault::Partition, profile.partition_weight),
            (Fault::SlowDisk, profile.disk_weight),
            (Fault::StaleMember, profile.stale_member_weight),
            (Fault::ForeignLog, profile.foreign_log_weight),
        ];
        let total = profile.weight_total();
        if total == 0 {
            return None;
        }
        let mut roll = self.rng.faults.range_inclusive(0, total - 1);
        for (fault, weight) in weights {
            if roll < weight {
                return Some(fault);
            }
            roll -= weight;
        }
        unreachable!("roll below the total weight")
    }

    /// A random node among those `eligible`, if any.
    fn pick_node(&mut self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let candidates: Vec<usize> = (0..self.nodes.len()).filter(|&n| eligible(n)).collect();
        self.pick_from(&candidates)
    }

    pub(super) fn pick_from(&mut self, candidates: &[usize]) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        let choice = self
            .rng
            .faults
            .range_inclusive(0, candidates.len() as u64 - 1);
        Some(candidates[choice as usize])
    }

    /// Nodes in `candidates` that lead, if any does, half the time: the
    /// leader is where most of the protocol happens, so faults there find
    /// the most.
    fn prefer_leaders(&mut self, candidates: Vec<usize>) -> Vec<usize> {
        let nodes = &self.nodes;
        let leaders: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&node| {
                nodes[node]
                    .replica
                    .as_ref()
                    .is_some_and(|replica| replica.raft().role() == Role::Leader)
            })
            .collect();
        if !leaders.is_empty() && self.rng.faults.chance(1, 2) {
            return leaders;
        }
        candidates
    }

    /// The victim: often the leader, and half the time a node with a write
    /// in flight (crashes that tear a write test persistence).
    fn crash_some_node(&mut self) {
        let nodes = &self.nodes;
        let alive: Vec<usize> = (0..nodes.len())
            .filter(|&node| nodes[node].state != NodeState::Crashed)
            .collect();
        let alive = self.prefer_leaders(alive);
        let nodes = &self.nodes;
        let writing: Vec<usize> = alive
            .iter()
            .copied()
            .filter(|&node| {
                let disk = &nodes[node].disk;
                disk.has_pending() || disk.has_snapshot_in_progress()
            })
            .collect();
        let prefer_writing = self.rng.faults.chance(1, 2);
        let candidates = match prefer_writing && !writing.is_empty() {
            true => writing,
            false => alive,
        };
        if let Some(node) = self.pick_from(&candidates) {
            self.crash_and_restart_later(node);
        }
    }

    /// Crash at any point: right after a step, the node that took it may
    /// die, however far it got (mid-election, mid-commit, mid-write).
    /// Returns whether it did.
    pub(super) fn maybe_crash_after_step(&mut self, node: usize) -> bool {
        let per_mille = match self.nodes[node].disk.has_pending_term_change() {
            true => self.profile.crash_in_term_change_per_mille,
            false => self.profile.crash_after_step_per_mille,
        };
        let eligible = self.phase == Phase::Faults && self.nodes[node].is_up();
        if !eligible || !self.rng.faults.chance(per_mille, 1000) {
            return false;
        }
        // Straight back up: a process that dies at a term change and
        // returns at once is the hardest test of what it promised.
        self.crash(node);
        self.restart_soon(node);
        true
    }

    fn crash_and_restart_later(&mut self, node: usize) {
        match self.rng.faults.chance(1, 2) {
            true => self.power_off(node),
            false => self.crash(node),
        }
        let downtime_ms = match self.rng.faults.chance(1, 2) {
            true => self
                .rng
                .faults
                .range_inclusive(0, CRASH_DOWNTIME_QUICK_MS_MAX),
            false => self.rng.faults.range_inclusive(0, CRASH_DOWNTIME_MS_MAX),
        };
        let incarnation = self.nodes[node].incarnation;
        let event = Event::Restart { node, incarnation };
        self.queue.push(self.now_ms + downtime_ms, event);
    }

    /// The machine loses power: everything not synced is gone, and so are
    /// the messages it sent that are still in flight.
    pub(super) fn power_off(&mut self, node: usize) {
        let torn = self.nodes[node].disk.lose_unsynced(self.now_ms);
        self.stop_process(node, torn);
        self.nodes[node].lost_outbox_below = self.nodes[node].incarnation;
    }

    /// The node crashes: the disk keeps a random prefix of what was not
    /// synced (a torn tail).
    pub(super) fn crash(&mut self, node: usize) {
        let torn = self.nodes[node].disk.crash(self.now_ms, &mut self.rng.disk);
        self.stop_process(node, torn);
    }

    /// The process is gone: clients see their connections break, peers see
    /// theirs reset.
    fn stop_process(&mut self, node: usize, torn: TornTail) {
        self.stats.faults.crashes += 1;
        self.stats.faults.torn_writes += u64::from(torn.records_lost > 0);
        let mid_snapshot = torn.files.any() || torn.log_ops_lost > 0;
        self.stats.snapshots.crashes_mid_snapshot += u64::from(mid_snapshot);
        let now_ms = self.now_ms;
        let state = &mut self.nodes[node];
        state.replica = None;
        state.state = NodeState::Crashed;
        state
            .ended_at_ms
            .resize(state.incarnation as usize + 1, now_ms);
        state.incarnation += 1;
        state.held.clear();
        state.timer_at_ms = None;
        state.driver = Driver::new(self.profile.snapshot_policy);
        state.sync_queue.clear();
        state.busy_until_ms = 0;
        state.after_fsync = Default::default(); // a future that never came
                                                // What it had sent by now promised durable state; what waited for
                                                // an fsync still running never left.
        let promised = std::mem::take(&mut state.promises);
        for (leaves_ms, term) in promised {
            if leaves_ms <= now_ms {
                self.checker.promised_term(node, term);
            }
        }
        self.record(TraceEvent::Crash {
            node,
            torn,
            durable_last_index: self.nodes[node].disk.last_index(),
            durable_hard_state: self.nodes[node].disk.hard_state(),
        });
        self.checker.node_crashed(node);
        self.observed.disks_changed = true;
        for (client, request_id) in self.workload.node_crashed(node) {
            self.reply_to_client(client, request_id, Reply::Disconnected, None);
        }
        for peer in 0..self.nodes.len() {
            if self.nodes[peer].is_up() {
                let lost = NodeId(node as u32);
                self.nodes[peer].replica_mut().report_unreachable(lost);
                self.observed.touch(peer);
            }
        }
    }

    /// A new process starts from the disk image.
    pub(super) fn restart(&mut self, node: usize, incarnation: u64) -> Result<(), Violation> {
        let state = &self.nodes[node];
        if state.state != NodeState::Crashed || state.incarnation != incarnation {
            return Ok(());
        }
        let (replica, snapshot, log_discarded) = self.new_replica(node)?;
        let hard_state = self.nodes[node].disk.hard_state();
        let last_index = self.nodes[node].disk.last_index();
        let snapshot_index = snapshot.as_ref().map(|file| file.meta.index);
        let state = &mut self.nodes[node];
        state.replica = Some(replica);
        state.state = NodeState::Up;
        state.commit_seen = LogIndex(0);
        state.boot_ms = self.now_ms;
        self.stats.faults.restarts += 1;
        self.record(TraceEvent::Restart {
            node,
            hard_state,
            last_index,
            snapshot_index,
        });
        self.checker.node_restarted(node, hard_state)?;
        self.checker.node_restored(node, snapshot.as_ref())?;
        self.stats.snapshots.restarts_from_snapshot += u64::from(snapshot.is_some());
        self.stats.snapshots.logs_discarded += u64::from(log_discarded);
        self.observed.touch(node);
        self.schedule_timer(node);
        Ok(())
    }

    fn pause_some_node(&mut self) {
        let nodes = &self.nodes;
        let up: Vec<usize> = (0..nodes.len())
            .filter(|&node| nodes[node].is_up())
            .collect();
        let candidates = self.prefer_leaders(up);
        let Some(node) = self.pick_from(&candidates) else {
            return;
        };
        let duration_ms = self.rng.faults.range_inclusive(1, PAUSE_MS_MAX);
        self.pause_node(node, duration_ms);
    }

    /// Stops `node`'s process (it must be up) for `duration_ms`.
    pub(super) fn pause_node(&mut self, node: usize, duration_ms: u64) {
        let state = &mut self.nodes[node];
        state.state = NodeState::Paused;
        state.pause += 1;
        state.timer_at_ms = None;
        let pause = state.pause;
        self.stats.faults.pauses += 1;
        self.record(TraceEvent::Pause { node });
        // A process blocked in an fsync stops when it returns: what it
        // sends after the fsync has left by then (drive.rs).
        let starts_ms = self.nodes[node].busy_until_ms.max(self.now_ms);
        let event = Event::Resume { node, pause };
        self.queue.push(starts_ms + duration_ms, event);
    }

    /// The process continues: what arrived meanwhile is taken in order, and
    /// its timers fire at once with the clock jumped forward.
    pub(super) fn resume(&mut self, node: usize, pause: u64) {
        let state = &mut self.nodes[node];
        if state.state != NodeState::Paused || state.pause != pause {
            return;
        }
        state.state = NodeState::Up;
        let held = std::mem::take(&mut state.held);
        self.record(TraceEvent::Resume {
            node,
            held: held.len(),
        });
        for event in held {
            self.queue.push(self.now_ms, event);
        }
        let incarnation = self.nodes[node].incarnation;
        self.nodes[node].timer_at_ms = Some(self.now_ms);
        self.queue
            .push(self.now_ms, Event::CoreTimer { node, incarnation });
    }

    fn partition(&mut self) {
        let size = self.nodes.len();
        if size == 1 {
            return;
        }
        let one_way = self.rng.faults.chance(1, 3);
        let links = match one_way {
            true => self.one_way_links(size),
            false => self.symmetric_links(size),
        };
        let duration_ms = self
            .rng
            .faults
            .range_inclusive(1, self.profile.partition_ms_max);
        self.cut(links, one_way, duration_ms);
    }

    pub(super) fn cut(&mut self, links: BTreeSet<(usize, usize)>, one_way: bool, duration_ms: u64) {
        if one_way {
            self.stats.faults.partitions_one_way += 1;
        } else {
            self.stats.faults.partitions_symmetric += 1;
        }
        self.record(TraceEvent::Partition {
            links: links.iter().copied().collect(),
            one_way,
        });
        self.report_cut_links(&links);
        let generation = self.network.cut(links);
        let event = Event::PartitionHeal { generation };
        self.queue.push(self.now_ms + duration_ms, event);
    }

    /// A leader cut off the moment it is elected keeps taking client
    /// writes it cannot replicate, and the others elect another: entries of
    /// different terms pile up at the same indexes, the ground on which
    /// commit rules are tested (Figure 8 of the paper).
    pub(super) fn maybe_isolate_new_leader(&mut self, node: usize) {
        let per_mille = self.profile.isolate_new_leader_per_mille;
        let size = self.nodes.len();
        let quiet = self.now_ms < self.nemesis_quiet_until_ms;
        if self.phase != Phase::Faults || size == 1 || quiet {
            return;
        }
        if !self.rng.faults.chance(per_mille, 1000) {
            return;
        }
        let mut links = BTreeSet::new();
        for other in (0..size).filter(|&other| other != node) {
            links.insert((node, other));
            links.insert((other, node));
        }
        let duration_ms = self
            .rng
            .faults
            .range_inclusive(1, self.profile.partition_ms_max);
        self.cut(links, false, duration_ms);
    }

    /// Splits the nodes into two sides (often one node alone) that cannot
    /// talk to each other at all.
    fn symmetric_links(&mut self, size: usize) -> BTreeSet<(usize, usize)> {
        let isolate_one = self.rng.faults.chance(1, 2);
        let everyone = self.prefer_leaders((0..size).collect());
        let alone = self.pick_from(&everyone).expect("a cluster has nodes");
        let mut side: Vec<bool> = (0..size)
            .map(|node| match isolate_one {
                true => node == alone,
                false => node == alone || self.rng.faults.chance(1, 2),
            })
            .collect();
        if side.iter().all(|&inside| inside) {
            side[(alone + 1) % size] = false; // both sides non-empty
        }
        let mut links = BTreeSet::new();
        for from in 0..size {
            for to in 0..size {
                if side[from] != side[to] {
                    links.insert((from, to));
                }
            }
        }
        links
    }

    /// One node hears nobody (or nobody hears it) while the rest works,
    /// plus a few random one-way cuts.
    fn one_way_links(&mut self, size: usize) -> BTreeSet<(usize, usize)> {
        let node = self.rng.faults.range_inclusive(0, size as u64 - 1) as usize;
        let inbound = self.rng.faults.chance(1, 2);
        let mut links = BTreeSet::new();
        for other in (0..size).filter(|&other| other != node) {
            links.insert(if inbound {
                (other, node)
            } else {
                (node, other)
            });
            let (from, to) = (other, (other + 1) % size);
            if from != to && self.rng.faults.chance(1, 4) {
                links.insert((from, to));
            }
        }
        links
    }

    /// A sender may notice a cut link as a reset connection, as the
    /// daemon's network layer does; or it may not.
    fn report_cut_links(&mut self, links: &BTreeSet<(usize, usize)>) {
        for &(from, to) in links {
            if self.nodes[from].is_up() && self.rng.faults.chance(1, 2) {
                let peer = NodeId(to as u32);
                self.nodes[from].replica_mut().report_unreachable(peer);
                self.observed.touch(from);
            }
        }
    }

    pub(super) fn heal_partition(&mut self, generation: u64) {
        if self.network.generation() != generation {
            return;
        }
        self.network.heal();
        self.stats.faults.partition_heals += 1;
        self.record(TraceEvent::PartitionHealed);
    }

    fn slow_some_disk(&mut self) {
        let Some(node) = self.pick_node(|_| true) else {
            return;
        };
        let state = &mut self.nodes[node];
        state.disk_slow = true;
        state.disk_generation += 1;
        let generation = state.disk_generation;
        self.stats.faults.disks_slowed += 1;
        self.record(TraceEvent::DiskSlow { node });
        let duration_ms = self.rng.faults.range_inclusive(1, DISK_SLOW_MS_MAX);
        let event = Event::DiskRecover { node, generation };
        self.queue.push(self.now_ms + duration_ms, event);
    }

    pub(super) fn recover_disk(&mut self, node: usize, generation: u64) {
        let state = &mut self.nodes[node];
        if state.disk_generation == generation && state.disk_slow {
            state.disk_slow = false;
            self.record(TraceEvent::DiskRecovered { node });
        }
    }

    /// The safety phase ends: every fault is undone now, and each client
    /// starts its final write once its current operation is done.
    pub(super) fn stop_faults(&mut self) -> Result<(), Violation> {
        self.phase = Phase::Liveness {
            healed_at_ms: self.now_ms,
            healed_at_step: self.step,
        };
        self.record(TraceEvent::FaultsStop);
        self.network.calm();
        self.profile.sync_stall_per_mille = 0;
        self.end_stale_members();
        for node in 0..self.nodes.len() {
            let state = &mut self.nodes[node];
            state.disk_slow = false;
            state.disk_slow_always = false;
            state.disk_generation += 1;
            let (incarnation, pause) = (state.incarnation, state.pause);
            match state.state {
                NodeState::Crashed => self.restart(node, incarnation)?,
                NodeState::Paused => self.resume(node, pause),
                NodeState::Up => {}
            }
        }
        for client in self.workload.begin_final() {
            self.queue.push(self.now_ms, Event::ClientSend { client });
        }
        Ok(())
    }
}
