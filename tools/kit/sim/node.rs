//! One simulated node: a process (the daemon's `Replica`, absent while
//! crashed), its disk (which outlives the process), and its clock.

use super::disk::Disk;
use super::event::Event;
use super::io::SimJob;
use super::simulator::Observed;
use raftlite::core::{LogIndex, Term};
use raftlite::driver::{Driver, SnapshotPolicy};
use raftlite::replica::Replica;
use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Up,
    /// Stopped like SIGSTOP: receives nothing, its timers do not fire.
    Paused,
    Crashed,
}

pub struct Node {
    /// Present unless crashed.
    pub replica: Option<Replica>,
    pub disk: Disk,
    pub state: NodeState,
    /// Global time at which this process started. Its clock reads global
    /// time minus this: monotonic, and back at zero after a restart, as the
    /// daemon's `Clock` is.
    pub boot_ms: u64,
    /// Counts process starts, so that timers and syncs of a dead process
    /// are ignored.
    pub incarnation: u64,
    /// Counts pauses, so that a scheduled resume knows its pause.
    pub pause: u64,
    /// Events that arrived while paused, in order (the kernel keeps them).
    pub held: Vec<Event>,
    /// When the core timer is scheduled, if it is.
    pub timer_at_ms: Option<u64>,
    /// A slow disk takes longer per sync; counts slowdowns so a scheduled
    /// recovery knows its slowdown.
    pub disk_slow: bool,
    pub disk_generation: u64,
    /// This node's disk is slow for the whole safety phase (one node on
    /// worse hardware).
    pub disk_slow_always: bool,
    /// Messages sent by incarnations below this one and still in flight are
    /// lost: the machine lost power before they left it.
    pub lost_outbox_below: u64,
    /// The commit index this process was last seen to reach.
    pub commit_seen: LogIndex,
    /// While another cluster's data dir runs in this node's place (the
    /// stale-member fault), its own disk, set aside until it comes back.
    pub own_disk: Option<Disk>,
    /// The process's driver (src/driver.rs): the deferred syncs it owes.
    pub driver: Driver<SimJob>,
    /// The process's sync thread: jobs and when each completes.
    pub sync_queue: VecDeque<(SimJob, u64)>,
    /// The process is blocked in an fsync until then.
    pub busy_until_ms: u64,
    /// What the process did after the fsync it is blocked in, for the
    /// checkers once that completes (drive.rs).
    pub after_fsync: Observed,
    /// (replies made, applied index) after each Ready pass of the last
    /// driver call, for the replies still to flush (drive.rs).
    pub reply_stamps: Vec<(usize, LogIndex)>,
    /// By incarnation: when that process died.
    pub ended_at_ms: Vec<u64>,
    /// Messages this process sent that promise durable state: when each
    /// left, and its term (checked against the disk after a crash).
    pub promises: Vec<(u64, Term)>,
}

impl Node {
    pub fn new(replica: Replica, policy: SnapshotPolicy) -> Node {
        Node {
            replica: Some(replica),
            disk: Disk::new(),
            state: NodeState::Up,
            boot_ms: 0,
            incarnation: 0,
            pause: 0,
            held: Vec::new(),
            timer_at_ms: None,
            disk_slow: false,
            disk_generation: 0,
            disk_slow_always: false,
            lost_outbox_below: 0,
            commit_seen: LogIndex(0),
            own_disk: None,
            driver: Driver::new(policy),
            sync_queue: VecDeque::new(),
            busy_until_ms: 0,
            after_fsync: Observed::default(),
            reply_stamps: Vec::new(),
            ended_at_ms: Vec::new(),
            promises: Vec::new(),
        }
    }

    /// The process's clock at global time `now_ms`.
    pub fn local_ms(&self, now_ms: u64) -> u64 {
        now_ms - self.boot_ms
    }

    pub fn is_up(&self) -> bool {
        self.state == NodeState::Up
    }

    /// Whether process `incarnation` was still running at `at_ms`.
    pub fn was_alive_at(&self, incarnation: u64, at_ms: u64) -> bool {
        self.ended_at_ms
            .get(incarnation as usize)
            .is_none_or(|&ended| at_ms <= ended)
    }

    /// Running another cluster's data dir: the checkers leave it out.
    pub fn is_stale(&self) -> bool {
        self.own_disk.is_some()
    }

    /// The disk that belongs to this member: its own, even while a stale
    /// one runs in its place (durability counts it).
    pub fn own_disk(&self) -> &Disk {
        self.own_disk.as_ref().unwrap_or(&self.disk)
    }

    pub fn replica(&self) -> &Replica {
        self.replica.as_ref().expect("node is not crashed")
    }

    pub fn replica_mut(&mut self) -> &mut Replica {
        self.replica.as_mut().expect("node is not crashed")
    }
}
