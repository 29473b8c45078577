//! The nemesis: from a seed, a schedule of faults on real processes — kill
//! -9 and restart, SIGSTOP/SIGCONT pauses longer than an election timeout,
//! partitions cut at the link proxies (majority/minority, a bridge,
//! one-way), and a stale member (another cluster's data dir at a member's
//! address). Each fault is healed before the next one starts.

use crate::history::{self, Recorder};
use raftlite::core::rng::Rng;
use raftlite_kit::fault::{poll_until, ForeignDir, LocalCluster};
use std::collections::BTreeMap;
use std::time::Duration;

/// A stale member's term is pushed this far above the cluster's, so that
/// it would win any election it were let into and its log would replace
/// theirs.
const STALE_TERM_MARGIN: u64 = 50;

/// How long to wait, at the end of a stale-member fault, for every peer's
/// refusal to show in the stale member's STATUS (they come within
/// milliseconds of its start; the bound is for a loaded machine).
const STALE_REFUSALS_WITHIN: Duration = Duration::from_secs(5);

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
    StaleMember,
}

impl Fault {
    pub const ALL: [Fault; 11] = [
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
        Fault::StaleMember,
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
            Fault::StaleMember => "stale-member",
        }
    }
}

/// What the nemesis did and what it saw.
#[derive(Debug, Default)]
pub struct NemesisReport {
    pub faults: BTreeMap<&'static str, u64>,
    /// PreVote violations: a follower rejoined and the term rose anyway.
    pub term_jumps: Vec<String>,
    pub stale: StaleReport,
}

/// What the stale-member faults saw.
#[derive(Debug, Default)]
pub struct StaleReport {
    /// Stale members that came back (faults set up), and the peers they
    /// had between them: how many refusals there could be.
    pub returned: u64,
    pub peers: u64,
    /// Peers that refused a stale member's handshake (their cluster is not
    /// its), summed over the faults; each fault adds at most one per peer.
    pub refused_by_peers: u64,
    /// Peers whose handshake a stale member refused in turn, summed alike.
    pub refused_peers: u64,
    /// The highest term a stale member came back with.
    pub term_max: u64,
    /// Faults that proved nothing or worse: a stale member that could not
    /// be set up, or that some peer did not refuse.
    pub problems: Vec<String>,
}

/// The member running on a foreign data dir during a stale-member fault.
struct StaleRun {
    index: usize,
    term: u64,
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
    /// Keys the stale members write into (the workload's keys).
    keys: Vec<String>,
    /// One foreign data dir per member, made when first needed and reused.
    foreign: BTreeMap<usize, ForeignDir>,
    stale: Option<StaleRun>,
    /// Injected first, whatever the seed draws (`--first-fault`).
    first: Option<Fault>,
}

impl<'a> Nemesis<'a> {
    pub fn new(
        cluster: &'a mut LocalCluster,
        recorder: &'a Recorder,
        seed: u64,
        faults: Vec<Fault>,
        keys: usize,
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
            keys: (0..keys).map(|index| format!("k{index}")).collect(),
            foreign: BTreeMap::new(),
            stale: None,
            first: None,
        }
    }

    /// Makes `fault` the first one injected.
    pub fn inject_first(&mut self, fault: Fault) {
        self.first = Some(fault);
    }

    /// One quiet period, then one fault held for a while, then healing.
    pub fn round(&mut self) {
        self.sleep_between(800, 2000);
        // Drawn even when `first` overrides it, so that the rest of the
        // seed's schedule stays the same.
        let drawn = self.faults[self.rng.range_inclusive(0, self.faults.len() as u64 - 1) as usize];
        let fault = self.first.take().unwrap_or(drawn);
        let leader = self.cluster.wait_for_leader(Duration::from_secs(3));
        let before = leader.and_then(|leader| self.term_of(leader)).zip(leader);
        let nodes = self.inject(fault, leader);
        *self.report.faults.entry(fault.name()).or_default() += 1;
        let names: Vec<String> = nodes
            .iter()
            .map(|&index| self.cluster.nodes[index].id.clone())
            .collect();
        let mut fields = vec![
            history::field("fault", fault.name()),
            history::field("nodes", &names.join(",")),
        ];
        fields.extend(self.stale_fields(leader));
        self.recorder.event("fault", &fields);
        self.sleep_between(700, 2500);
        let mut fields = vec![history::field("fault", fault.name())];
        fields.extend(self.heal());
        self.recorder.event("heal", &fields);
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
            Fault::StaleMember => {
                let victim = if self.rng.chance(1, 2) {
                    leader
                } else {
                    follower
                };
                self.stale_member(victim)
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

    /// Restarts, resumes and reconnects everything, and puts a stale
    /// member's own data dir back. Returns fields for the heal record.
    pub fn heal(&mut self) -> Vec<history::Field> {
        self.cluster.heal();
        for index in std::mem::take(&mut self.paused) {
            self.cluster.signal(index, "CONT");
        }
        for index in std::mem::take(&mut self.killed) {
            let _ = self.cluster.start_node(index);
        }
        match self.stale.take() {
            Some(stale) => self.end_stale_member(&stale),
            None => Vec::new(),
        }
    }

    /// A stale member returns: `index` is killed and restarted, with its
    /// original command line, on a copy of a foreign data dir made under
    /// its id — another cluster's, holding the workload's keys with values
    /// no client writes (`stale-<id>-<n>`) and a term far above the
    /// cluster's. Its peers must refuse it, so none of those values may
    /// ever be read: one that were would be a value the checker's register
    /// model cannot explain (nothing in the history wrote it), and the
    /// history would not be linearizable.
    fn stale_member(&mut self, index: usize) -> Vec<usize> {
        let term_now = (0..self.cluster.nodes.len())
            .filter_map(|node| self.term_of(node))
            .max()
            .unwrap_or(0);
        let (binary, parent) = (self.cluster.binary(), self.cluster.dir().join("foreign"));
        let id = self.cluster.nodes[index].id.clone();
        let foreign = self
            .foreign
            .entry(index)
            .or_insert_with(|| ForeignDir::new(binary, &id, &parent));
        let started = foreign
            .prepare(term_now + STALE_TERM_MARGIN, &self.keys)
            .and_then(|()| self.cluster.start_on_foreign_data(index, &foreign.dir));
        if let Err(error) = started {
            let problem = format!("stale member {id} could not be set up: {error}");
            self.report.stale.problems.push(problem);
            return Vec::new();
        }
        let term = foreign.term;
        self.report.stale.term_max = self.report.stale.term_max.max(term);
        self.stale = Some(StaleRun { index, term });
        vec![index]
    }

    /// For the fault record: whether the stale member was the leader, and
    /// what it came back with.
    fn stale_fields(&self, leader: Option<usize>) -> Vec<history::Field> {
        let Some(stale) = &self.stale else {
            return Vec::new();
        };
        let role = if leader == Some(stale.index) {
            "leader"
        } else {
            "follower"
        };
        let cluster = self
            .foreign
            .get(&stale.index)
            .map_or("", |foreign| foreign.cluster.as_str());
        vec![
            history::field("was", role),
            history::number("stale_term", stale.term),
            history::field("stale_cluster", cluster),
        ]
    }

    /// Counts the refusals its STATUS shows (waiting until every peer has
    /// refused it), then gives the member its own data dir back.
    fn end_stale_member(&mut self, stale: &StaleRun) -> Vec<history::Field> {
        let id = self.cluster.nodes[stale.index].id.clone();
        let peers = self.cluster.nodes.len() - 1;
        let refusals = |cluster: &LocalCluster| {
            let status = cluster.status(stale.index)?;
            let by = cluster_refusals(status.get("refused_by"));
            Some((by, cluster_refusals(status.get("refused"))))
        };
        let all_refused = poll_until(STALE_REFUSALS_WITHIN, || {
            refusals(self.cluster).filter(|(by, _)| by.len() == peers)
        });
        let (by, refused) = all_refused
            .or_else(|| refusals(self.cluster))
            .unwrap_or_default();
        let report = &mut self.report.stale;
        report.returned += 1;
        report.peers += peers as u64;
        report.refused_by_peers += by.len() as u64;
        report.refused_peers += refused.len() as u64;
        if by.len() < peers {
            let names = if by.is_empty() {
                "none".to_string()
            } else {
                by.join(",")
            };
            report.problems.push(format!(
                "stale member {id} (term {}): only {} of its {peers} peers refused it ({names})",
                stale.term,
                by.len()
            ));
        }
        if let Err(error) = self.cluster.restore_data(stale.index) {
            report.problems.push(format!(
                "{id}'s own data dir could not be put back: {error}"
            ));
        }
        vec![
            history::field("refused_by", &by.join(",")),
            history::field("refused", &refused.join(",")),
        ]
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

/// The ids in a STATUS `refused=`/`refused_by=` list (`ID:reason,...` or
/// `none`) refused for their cluster id.
fn cluster_refusals(list: Option<&String>) -> Vec<String> {
    let Some(list) = list else {
        return Vec::new();
    };
    list.split(',')
        .filter_map(|item| item.split_once(':'))
        .filter(|(_, reason)| *reason == "cluster_id")
        .map(|(id, _)| id.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_refusals_name_the_nodes_refused_for_their_cluster() {
        let list = |text: &str| cluster_refusals(Some(&text.to_string()));
        assert_eq!(list("B:cluster_id,C:member_list,D:cluster_id"), ["B", "D"]);
        assert!(list("none").is_empty());
        assert!(cluster_refusals(None).is_empty());
    }
}
