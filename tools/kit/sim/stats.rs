//! What a run did, for the sweep's summary line.

use std::fmt;

/// Faults injected, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub crashes: u64,
    /// Crashes that lost part of an unsynced write (a torn tail).
    pub torn_writes: u64,
    pub restarts: u64,
    pub pauses: u64,
    pub partitions_symmetric: u64,
    pub partitions_one_way: u64,
    pub partition_heals: u64,
    pub disks_slowed: u64,
    pub stale_members: u64,
    pub foreign_logs: u64,
    pub messages_lost: u64,
    pub messages_blocked: u64,
    pub messages_duplicated: u64,
    pub messages_delayed_long: u64,
    /// Targeted crashes of a leader committing over a divergent log.
    pub divergence_strikes: u64,
    /// TRANSFER requests the operator sent, and transfers that succeeded.
    pub transfers: u64,
    pub transfers_succeeded: u64,
}

impl FaultCounts {
    pub fn add(&mut self, other: &FaultCounts) {
        self.crashes += other.crashes;
        self.torn_writes += other.torn_writes;
        self.restarts += other.restarts;
        self.pauses += other.pauses;
        self.partitions_symmetric += other.partitions_symmetric;
        self.partitions_one_way += other.partitions_one_way;
        self.partition_heals += other.partition_heals;
        self.disks_slowed += other.disks_slowed;
        self.stale_members += other.stale_members;
        self.foreign_logs += other.foreign_logs;
        self.messages_lost += other.messages_lost;
        self.messages_blocked += other.messages_blocked;
        self.messages_duplicated += other.messages_duplicated;
        self.messages_delayed_long += other.messages_delayed_long;
        self.divergence_strikes += other.divergence_strikes;
        self.transfers += other.transfers;
        self.transfers_succeeded += other.transfers_succeeded;
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "crash={} torn={} restart={} pause={} partition={} one-way={} heal={} slow-disk={} \
             stale-member={} foreign-log={} lost={} blocked={} duplicated={} delayed={} strikes={} \
             transfer={} transferred={}",
            self.crashes,
            self.torn_writes,
            self.restarts,
            self.pauses,
            self.partitions_symmetric,
            self.partitions_one_way,
            self.partition_heals,
            self.disks_slowed,
            self.stale_members,
            self.foreign_logs,
            self.messages_lost,
            self.messages_blocked,
            self.messages_duplicated,
            self.messages_delayed_long,
            self.divergence_strikes,
            self.transfers,
            self.transfers_succeeded
        )
    }
}

/// What nodes did with snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnapshotCounts {
    /// Snapshots a node took of its own state and committed.
    pub taken: u64,
    /// Leaders' snapshots a follower checked and installed.
    pub installed: u64,
    /// Received files that failed their check.
    pub refused: u64,
    pub compactions: u64,
    /// Installs that dropped the follower's log.
    pub resets: u64,
    /// Restarts from a snapshot on disk.
    pub restarts_from_snapshot: u64,
    /// Restarts that discarded a log not holding the snapshot's entry.
    pub logs_discarded: u64,
    /// InstallSnapshot chunks sent.
    pub chunks_sent: u64,
    /// Crashes while a snapshot was being written, received, committed,
    /// or a compaction or reset was not yet durable.
    pub crashes_mid_snapshot: u64,
}

impl SnapshotCounts {
    pub fn add(&mut self, other: &SnapshotCounts) {
        self.taken += other.taken;
        self.installed += other.installed;
        self.refused += other.refused;
        self.compactions += other.compactions;
        self.resets += other.resets;
        self.restarts_from_snapshot += other.restarts_from_snapshot;
        self.logs_discarded += other.logs_discarded;
        self.chunks_sent += other.chunks_sent;
        self.crashes_mid_snapshot += other.crashes_mid_snapshot;
    }
}

impl fmt::Display for SnapshotCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "snapshots={} installs={} refused={} compactions={} resets={} \
             restarts-from-snapshot={} logs-discarded={} chunks={} crash-mid-snapshot={}",
            self.taken,
            self.installed,
            self.refused,
            self.compactions,
            self.resets,
            self.restarts_from_snapshot,
            self.logs_discarded,
            self.chunks_sent,
            self.crashes_mid_snapshot
        )
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub steps: u64,
    pub simulated_ms: u64,
    pub faults: FaultCounts,
    pub snapshots: SnapshotCounts,
    /// Distinct (term, leader) pairs seen.
    pub elections: u64,
    /// Length of the committed history at the end.
    pub commits: u64,
    pub term_max: u64,
    pub client_operations: u64,
    pub client_replies: u64,
    /// Time from the heal to full recovery.
    pub liveness_ms: u64,
}

impl Stats {
    /// Sums counters; maxima stay maxima.
    pub fn add(&mut self, other: &Stats) {
        self.steps += other.steps;
        self.simulated_ms += other.simulated_ms;
        self.faults.add(&other.faults);
        self.snapshots.add(&other.snapshots);
        self.elections += other.elections;
        self.commits += other.commits;
        self.term_max = self.term_max.max(other.term_max);
        self.client_operations += other.client_operations;
        self.client_replies += other.client_replies;
        self.liveness_ms = self.liveness_ms.max(other.liveness_ms);
    }
}
