//! What one simulated run is: the cluster, how long the fault phase lasts,
//! and the fault mix drawn from the seed. Each seed gets its own mix
//! ("swarm testing"): some runs lose no messages but crash often, some
//! partition constantly, some have slow disks, so that no single set of
//! rates hides a bug.

use raftlite::core::rng::Rng;
use raftlite::core::{Limits, PlantedBug};
use raftlite::driver::{SnapshotPolicy, SNAPSHOT_BYTES_PER_DRIVE_MAX};

/// The cluster sizes a sweep cycles through.
pub const CLUSTER_SIZES: [usize; 4] = [1, 3, 5, 7];

/// Events run under faults before the faults stop. One event is one step:
/// a message delivered, a timer fired, a sync completed, a fault injected.
pub const STEPS_DEFAULT: u64 = 4000;

/// Once the faults stop (partitions healed, crashed nodes restarted, paused
/// nodes resumed, no more loss), the cluster must within this much simulated
/// time: elect a leader every node follows, resolve every pending client
/// request, let every client finish one more write, and converge (same log,
/// same commit, same applied state everywhere). The worst case it must
/// cover: a proposal accepted just before the heal waits out the server's
/// 5 s request timeout, and an election may take several 150-300 ms rounds.
pub const LIVENESS_BOUND_MS: u64 = 10_000;

/// Steps allowed in the liveness phase; a bound on the loop, far above what
/// 10 s of simulated time needs.
pub const LIVENESS_STEPS_MAX: u64 = 2_000_000;

/// The daemon's defaults (`--election-timeout 150-300 --heartbeat 50`).
pub const ELECTION_TIMEOUT_MS_MIN: u64 = 150;
pub const ELECTION_TIMEOUT_MS_MAX: u64 = 300;
pub const HEARTBEAT_INTERVAL_MS: u64 = 50;

/// Client and network limits.
pub const CLIENTS_MAX: u64 = 4;
pub const OPERATIONS_PER_CLIENT_MAX: u64 = 300;
pub const KEYS_COUNT: u64 = 4;

/// How long a stale member runs before its own data dir comes back, at
/// most.
pub const STALE_MEMBER_MS_MAX: u64 = 3000;
/// How long a client command may take, tries and pauses included:
/// `submit`'s default. (Each try gets the client machine's own
/// `ATTEMPT_TIMEOUT_MS` at most.)
pub const CLIENT_COMMAND_TIMEOUT_MS: u64 = 5000;
pub const MESSAGE_DELAY_MS_MIN: u64 = 1;
/// A delay spike: a message that takes this long at most, overtaken by
/// everything sent after it.
pub const MESSAGE_DELAY_SPIKE_MS_MAX: u64 = 600;
/// Client connections are local and quick.
pub const CLIENT_DELAY_MS_MAX: u64 = 5;

/// Fault durations.
pub const CRASH_DOWNTIME_MS_MAX: u64 = 3000;
/// A supervisor restarting the process at once.
pub const CRASH_DOWNTIME_QUICK_MS_MAX: u64 = 30;
pub const PAUSE_MS_MAX: u64 = 2000;
pub const PARTITION_MS_MAX: u64 = 3000;
pub const DISK_SLOW_MS_MAX: u64 = 4000;
/// A slow disk takes up to this long per sync.
pub const DISK_SLOW_SYNC_MS_MAX: u64 = 400;

/// Events a paused node holds for later (the kernel's socket buffers); more
/// are dropped, like a full buffer.
pub const HELD_EVENTS_MAX: usize = 4096;

/// Trace events kept for a failure report.
pub const TRACE_TAIL_EVENTS: usize = 50;

const _: () = assert!(ELECTION_TIMEOUT_MS_MIN <= ELECTION_TIMEOUT_MS_MAX);
const _: () = assert!(HEARTBEAT_INTERVAL_MS < ELECTION_TIMEOUT_MS_MIN);
const _: () = assert!(CLUSTER_SIZES[3] <= raftlite::constants::CLUSTER_SIZE_MAX);
const _: () = assert!(
    raftlite::client::machine::ATTEMPT_TIMEOUT_MS < raftlite::constants::CLIENT_REQUEST_TIMEOUT_MS
);
// A request accepted at the heal is answered by the server's timeout at the
// latest, and the client needs a few attempts after that.
const _: () = assert!(
    raftlite::constants::CLIENT_REQUEST_TIMEOUT_MS
        + 4 * raftlite::client::machine::ATTEMPT_TIMEOUT_MS
        <= LIVENESS_BOUND_MS
);

/// How one run is set up; everything else follows from the seed.
#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    pub size: usize,
    pub steps: u64,
    pub planted_bug: Option<PlantedBug>,
}

impl Options {
    /// The sweep's choice for `seed`: the size cycles with the seed.
    pub fn for_seed(seed: u64) -> Options {
        Options {
            seed,
            size: size_for_seed(seed),
            steps: STEPS_DEFAULT,
            planted_bug: None,
        }
    }
}

pub fn size_for_seed(seed: u64) -> usize {
    CLUSTER_SIZES[(seed % CLUSTER_SIZES.len() as u64) as usize]
}

/// The kind of trouble a run is about. Independent random knobs rarely
/// line up into the long chains some bugs need, so part of the seeds draw
/// their knobs from a family built for one kind of chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Every knob drawn on its own: the broad sweep.
    Mixed,
    /// Leaders cut off as they are elected, disks that stall, strikes on
    /// commits over divergent logs: entries of many terms at the same
    /// indexes, where commit rules break (Figure 8).
    LeaderChurn,
    /// Elections under crashes at term changes, duplicated and late
    /// messages: where votes and terms that were not durable get reused.
    ElectionStorm,
}

/// The fault mix of one run. Rates are per mille of messages or writes.
#[derive(Clone, Debug)]
pub struct FaultProfile {
    pub family: Family,
    pub message_loss_per_mille: u64,
    pub message_duplicate_per_mille: u64,
    pub message_delay_ms_max: u64,
    pub message_delay_spike_per_mille: u64,
    /// Time between two fault injections, at most.
    pub nemesis_interval_ms_max: u64,
    /// A partition lasts 1..=this: short ones make leadership flap.
    pub partition_ms_max: u64,
    /// Chance that a node is cut off the moment it becomes leader.
    pub isolate_new_leader_per_mille: u64,
    pub crash_weight: u64,
    /// Chance that the node an event went to crashes right after it.
    pub crash_after_step_per_mille: u64,
    /// The same, when the node has a term change (a vote, a new term, a
    /// new leader's first entries) written but not yet synced.
    pub crash_in_term_change_per_mille: u64,
    pub pause_weight: u64,
    pub partition_weight: u64,
    pub disk_weight: u64,
    /// A member is replaced, for a while, by another cluster's data dir
    /// with a higher term (stale_member.rs).
    pub stale_member_weight: u64,
    /// A member's data dir is replaced, for good, by one of another
    /// cluster that never formed, whose terms agree with ours
    /// (foreign_log.rs).
    pub foreign_log_weight: u64,
    /// A normal disk syncs in 0..=this.
    pub sync_latency_ms_max: u64,
    /// Chance that one sync stalls (up to DISK_SLOW_SYNC_MS_MAX), as fsync
    /// does now and then on real disks.
    pub sync_stall_per_mille: u64,
    /// One node's disk is slow all along.
    pub one_slow_disk: bool,
    /// Arms the targeted fault of `divergence.rs`.
    pub strike_divergence: bool,
    /// The core's PreVote and CheckQuorum (§9.6); the daemon runs both.
    pub pre_vote: bool,
    pub check_quorum: bool,
    pub clients_count: u64,
    pub client_think_ms_max: u64,
    /// The core's batch, window and queue bounds: the daemon's defaults,
    /// or in part of the seeds tiny ones (`small_limits`).
    pub limits: Limits,
    /// When nodes snapshot and how much log they keep below: in most seeds
    /// tiny thresholds, so that snapshots, compactions and installs happen
    /// all the time; in some never (`snapshot_policy`).
    pub snapshot_policy: SnapshotPolicy,
}

impl FaultProfile {
    pub fn generate(rng: &mut Rng) -> FaultProfile {
        let mut profile = FaultProfile::mixed(rng);
        match pick(rng, &[0, 0, 1, 2]) {
            1 => profile.churn_leaders(rng),
            2 => profile.storm_elections(rng),
            _ => {}
        }
        // Drawn last, so the other knobs of a seed stay as they were.
        if profile.family == Family::Mixed {
            profile.stale_member_weight = pick(rng, &[0, 0, 1, 3]);
        }
        if rng.chance(1, 4) {
            profile.limits = small_limits(rng);
        }
        profile.snapshot_policy = snapshot_policy(rng);
        if rng.chance(1, 3) {
            profile.limits = small_snapshot_chunks(rng, profile.limits);
        }
        if rng.chance(1, 3) {
            // Applying lags committing, a few entries per Ready, while
            // followers still take large batches: a compaction may come
            // while committed entries wait to be applied.
            profile.limits.apply_batch_entries_max = pick(rng, &[1, 2, 4]) as usize;
        }
        // Drawn last too; where the seed snapshots, so that a member with
        // a foreign log may be sent a snapshot.
        let snapshots = profile.snapshot_policy != SNAPSHOT_NEVER;
        if profile.family == Family::Mixed && snapshots && rng.chance(1, 2) {
            profile.foreign_log_weight = pick(rng, &[1, 3]);
        }
        profile
    }

    fn mixed(rng: &mut Rng) -> FaultProfile {
        FaultProfile {
            family: Family::Mixed,
            message_loss_per_mille: pick(rng, &[0, 0, 10, 50, 150, 300]),
            message_duplicate_per_mille: pick(rng, &[0, 10, 50]),
            message_delay_ms_max: pick(rng, &[2, 10, 40]),
            message_delay_spike_per_mille: pick(rng, &[0, 10, 50]),
            nemesis_interval_ms_max: pick(rng, &[30, 100, 400, 1500]),
            partition_ms_max: pick(rng, &[300, 1000, PARTITION_MS_MAX]),
            isolate_new_leader_per_mille: pick(rng, &[0, 0, 200, 500]),
            crash_weight: pick(rng, &[0, 2, 6]),
            crash_after_step_per_mille: pick(rng, &[0, 0, 1, 4]),
            crash_in_term_change_per_mille: pick(rng, &[0, 10, 50, 200]),
            pause_weight: pick(rng, &[0, 2, 4]),
            partition_weight: pick(rng, &[0, 2, 6]),
            disk_weight: pick(rng, &[0, 2, 4]),
            stale_member_weight: 0,
            foreign_log_weight: 0,
            sync_latency_ms_max: pick(rng, &[1, 5, 30]),
            sync_stall_per_mille: pick(rng, &[0, 20, 100]),
            one_slow_disk: rng.chance(1, 2),
            strike_divergence: rng.chance(1, 2),
            pre_vote: rng.chance(7, 8),
            check_quorum: rng.chance(7, 8),
            clients_count: rng.range_inclusive(1, CLIENTS_MAX),
            client_think_ms_max: pick(rng, &[1, 20, 100]),
            limits: Limits::default(),
            snapshot_policy: SNAPSHOT_NEVER,
        }
    }

    /// No random nemesis: only new leaders cut off, stalling disks and the
    /// targeted strike, so that the chains they start are not broken up.
    fn churn_leaders(&mut self, rng: &mut Rng) {
        self.family = Family::LeaderChurn;
        self.crash_weight = 0;
        self.pause_weight = 0;
        self.partition_weight = 0;
        self.disk_weight = 0;
        self.message_loss_per_mille = pick(rng, &[0, 10, 50]);
        self.isolate_new_leader_per_mille = pick(rng, &[500, 700]);
        self.sync_stall_per_mille = pick(rng, &[100, 400]);
        self.strike_divergence = true;
    }

    /// Many elections, crashes right at term changes, and votes that
    /// arrive late or twice.
    fn storm_elections(&mut self, rng: &mut Rng) {
        self.family = Family::ElectionStorm;
        self.isolate_new_leader_per_mille = pick(rng, &[200, 500]);
        self.crash_in_term_change_per_mille = pick(rng, &[100, 300]);
        self.message_duplicate_per_mille = 50;
        self.message_delay_spike_per_mille = 50;
        self.sync_stall_per_mille = pick(rng, &[100, 400]);
        self.one_slow_disk = true;
    }

    /// The sum of the fault weights; zero means a run without node or
    /// network faults beyond message loss and delay.
    pub fn weight_total(&self) -> u64 {
        self.crash_weight
            + self.pause_weight
            + self.partition_weight
            + self.disk_weight
            + self.stale_member_weight
            + self.foreign_log_weight
    }
}

/// Bounds far below the defaults, where batching and flow control hit
/// their edges all the time: one or two appends in flight, one or two
/// entries per batch, byte caps a single entry fills (it still goes: a
/// batch holds at least one), one entry applied per Ready, a read refused
/// as soon as one or two wait.
fn small_limits(rng: &mut Rng) -> Limits {
    let small = |rng: &mut Rng, choices: &[u64]| pick(rng, choices) as usize;
    Limits {
        inflight_appends_max: small(rng, &[1, 2]),
        append_batch_entries_max: small(rng, &[1, 2]),
        append_batch_size_max: rng.range_inclusive(64, 256) as usize,
        inflight_bytes_max: small(rng, &[1, 64, 256, 1024]),
        apply_batch_entries_max: 1,
        reads_pending_max: small(rng, &[1, 2]),
        ..Limits::default()
    }
}

/// A policy that never snapshots (the daemon's only on request).
pub const SNAPSHOT_NEVER: SnapshotPolicy = SnapshotPolicy {
    entries: u64::MAX,
    trailing: 0,
    bytes_per_drive: SNAPSHOT_BYTES_PER_DRIVE_MAX,
    bytes_per_ms: 0,
};

/// In one seed of six no snapshots (the log from index 1, as before);
/// otherwise a snapshot every 5 to 200 applied entries, 0 to 50 of them
/// kept below it (0: every follower a little behind needs an install),
/// written 16 bytes to 1 MiB per loop turn (16: a snapshot spans many
/// turns, and crashes, installs and elections land in the middle).
fn snapshot_policy(rng: &mut Rng) -> SnapshotPolicy {
    if rng.chance(1, 6) {
        return SNAPSHOT_NEVER;
    }
    SnapshotPolicy {
        entries: pick(rng, &[5, 10, 20, 50, 200]),
        trailing: pick(rng, &[0, 0, 2, 10, 50]),
        bytes_per_drive: pick(
            rng,
            &[16, 64, 512, 4096, SNAPSHOT_BYTES_PER_DRIVE_MAX as u64],
        ) as usize,
        // Unpaced in most seeds; paced to a few bytes per ms in some, so
        // that a snapshot spans elections, crashes and installs.
        bytes_per_ms: pick(rng, &[0, 0, 0, 1, 8]),
    }
}

/// Chunks of a few bytes and one or two in flight: a transfer is many
/// messages, so losses, duplicates, reordering and crashes hit it midway.
fn small_snapshot_chunks(rng: &mut Rng, limits: Limits) -> Limits {
    Limits {
        snapshot_chunk_size_max: pick(rng, &[16, 64, 512]) as usize,
        inflight_snapshot_chunks_max: pick(rng, &[1, 2]) as usize,
        ..limits
    }
}

/// One of `choices`, uniformly.
pub fn pick(rng: &mut Rng, choices: &[u64]) -> u64 {
    assert!(!choices.is_empty());
    choices[rng.range_inclusive(0, choices.len() as u64 - 1) as usize]
}
