//! The nemesis: from a seed, a schedule of faults on real processes — kill
//! -9 and restart, SIGSTOP/SIGCONT pauses longer than an election timeout,
//! and partitions cut at the link proxies (majority/minority, a bridge,
//! one-way). Each fault is healed before the next one starts.

use crate::history::{self, Recorder};
use raftlite::core::rng::Rng;
use raftlite::fault::LocalCluster;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    KillLeader,
    KillFollower,
    KillMinority,
    KillAll,
    PauseLeader,
    PauseFollower,
    IsolateLeader,
    IsolateFollower,
    Bridge,
    OneWayFromLeader,
}

impl Fault {
    pub const ALL: [Fault; 10] = [
        Fault::KillLeader,
        Fault::KillFollower,
        Fault::KillMinority,
        Fault::KillAll,
        Fault::PauseLeader,
        Fault::PauseFollower,
        Fault::IsolateLeader,
        Fault::IsolateFollower,
        Fault::Bridge,
        Fault::OneWayFromLeader,
    ];

    pub fn from_name(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|fault| fault.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill-leader",
            Fault::KillFollower => "kill-follower",
            Fault::KillMinority => "kill-minority",
            Fault::KillAll => "kill-all",
            Fault::PauseLeader => "pause-leader",
            Fault::PauseFollower => "pause-follower",
            Fault::IsolateLeader => "isolate-leader",
            Fault::IsolateFollower => "isolate-follower",
            Fault::Bridge => "bridge",
            Fault::OneWayFromLeader => "one-way-from-leader",
        }
    }
}

/// What the nemesis did and what it saw.
#[derive(Debug, Default)]
pub struct NemesisReport {
    pub faults: BTreeMap<&'static str, u64>,
    /// PreVote violations: a follower rejoined and the term rose anyway.
    pub term_jumps: Vec<String>,
}

pub struct Nemesis<'a> {
    cluster: &'a mut LocalCluster,
    /// The faults to draw from (all of them by default).
    faults: Vec<Fault>,
    recorder: &'a Recorder,
    rng: Rng,
    pub report: NemesisReport,
    killed: Vec<usize>,
    paused: Vec<usize>,
}

impl<'a> Nemesis<'a> {
    pub fn new(
        cluster: &'a mut LocalCluster,
        recorder: &'a Recorder,
        seed: u64,
        faults: Vec<Fault>,
    ) -> Nemesis<'a> {
        assert!(!faults.is_empty(), "the nemesis needs at least one fault");
        Nemesis {
            cluster,
            faults,
            recorder,
            rng: Rng::new(seed ^ 0x6e65_6d65_7369_7321),
            report: NemesisReport::default(),
            killed: Vec::new(),
            paused: Vec::new(),
        }
    }

    /// One quiet period, then one fault held for a while, then healing.
    pub fn round(&mut self) {
        self.sleep_between(800, 2000);
        let fault = self.faults[self.rng.range_inclusive(0, self.faults.len() as u64 - 1) as usize];
        let leader = self.cluster.wait_for_leader(Duration::from_secs(3));
        let before = leader.and_then(|leader| self.term_of(leader)).zip(leader);
        let nodes = self.inject(fault, leader);
        *self.report.faults.entry(fault.name()).or_default() += 1;
        let names: Vec<String> = nodes
            .iter()
            .map(|&index| self.cluster.nodes[index].id.clone())
            .collect();
        self.recorder.event(
            "fault",
            &[
                history::field("fault", fault.name()),
                history::field("nodes", &names.join(",")),
            ],
        );
        self.sleep_between(700, 2500);
        self.heal();
        self.recorder
            .event("heal", &[history::field("fault", fault.name())]);
        if fault == Fault::IsolateFollower {
            self.check_term_kept(before);
        }
    }

    fn sleep_between(&mut self, low_ms: u64, high_ms: u64) {
        std::thread::sleep(Duration::from_millis(
            self.rng.range_inclusive(low_ms, high_ms),
        ));
    }

    fn term_of(&self, index: usize) -> Option<u64> {
        self.cluster.status(index)?.get("term")?.parse().ok()
    }

    /// Applies `fault`; returns the nodes it hit.
    fn inject(&mut self, fault: Fault, leader: Option<usize>) -> Vec<usize> {
        let size = self.cluster.nodes.len();
        let leader = leader.unwrap_or(0);
        let follower = (leader + 1 + self.rng.range_inclusive(0, size as u64 - 2) as usize) % size;
        match fault {
            Fault::KillLeader => self.kill(&[leader]),
            Fault::KillFollower => self.kill(&[follower]),
            Fault::KillMinority => self.kill(&self.minority(leader)),
            Fault::KillAll => self.kill(&(0..size).collect::<Vec<_>>()),
            Fault::PauseLeader => self.pause(&[leader]),
            Fault::PauseFollower => self.pause(&[follower]),
            Fault::IsolateLeader => self.isolate(leader),
            Fault::IsolateFollower => self.isolate(follower),
            Fault::Bridge => self.bridge(leader),
            Fault::OneWayFromLeader => {
                self.cluster.block_link(leader, follower, true);
                vec![leader, follower]
            }
        }
    }

    /// A minority including the leader.
    fn minority(&self, leader: usize) -> Vec<usize> {
        let size = self.cluster.nodes.len();
        (0..(size - 1) / 2)
            .map(|offset| (leader + offset) % size)
            .collect()
    }

    fn kill(&mut self, nodes: &[usize]) -> Vec<usize> {
        for &index in nodes {
            self.cluster.kill(index);
            self.killed.push(index);
        }
        nodes.to_vec()
    }

    fn pause(&mut self, nodes: &[usize]) -> Vec<usize> {
        for &index in nodes {
            if self.cluster.signal(index, "STOP") {
                self.paused.push(index);
            }
        }
        nodes.to_vec()
    }

    fn isolate(&mut self, index: usize) -> Vec<usize> {
        self.cluster.isolate(index, true);
        vec![index]
    }

    /// Two halves that cannot talk, and one node (not the leader) that
    /// talks to both: the leader's half is the smaller one.
    fn bridge(&mut self, leader: usize) -> Vec<usize> {
        let size = self.cluster.nodes.len();
        let bridge = (leader + 1) % size;
        let leader_half: Vec<usize> = vec![leader];
        let other_half: Vec<usize> = (0..size)
            .filter(|&index| index != leader && index != bridge)
            .collect();
        for &a in &leader_half {
            for &b in &other_half {
                self.cluster.block_link(a, b, true);
                self.cluster.block_link(b, a, true);
            }
        }
        vec![bridge]
    }

    /// Restarts, resumes and reconnects everything.
    pub fn heal(&mut self) {
        self.cluster.heal();
        for index in std::mem::take(&mut self.paused) {
            self.cluster.signal(index, "CONT");
        }
        for index in std::mem::take(&mut self.killed) {
            let _ = self.cluster.start_node(index);
        }
    }

    /// PreVote: a follower cut off and reconnected must not raise the term
    /// of a leader that kept its majority.
    fn check_term_kept(&mut self, before: Option<(u64, usize)>) {
        let Some((term, leader)) = before else { return };
        std::thread::sleep(Duration::from_millis(1500));
        let now_leader = self.cluster.wait_for_leader(Duration::from_secs(3));
        let now_term = now_leader.and_then(|index| self.term_of(index));
        if now_leader == Some(leader) && now_term.is_some_and(|now| now != term) {
            self.report.term_jumps.push(format!(
                "term rose from {term} to {} when an isolated follower rejoined",
                now_term.unwrap_or(0)
            ));
        }
    }
}
