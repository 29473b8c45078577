//! Known Raft bugs that a test build can plant, one at a time, to show the
//! simulator finds them (feature `planted-bugs`; absent from real builds).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlantedBug {
    /// Commit an entry of an earlier term by counting replicas (Figure 8).
    CommitOldTermByCount,
    /// Grant a vote to a second candidate in the same term.
    SecondVoteInTerm,
    /// Answer a vote request before the vote is durable.
    VoteBeforePersist,
    /// On an AppendEntries whose prev entry matches, cut everything after it
    /// even when the entries sent are already there (e.g. a heartbeat).
    TruncateOnMatchingAppend,
    /// A leader answers reads from its own state without confirming it is
    /// still leader, and never steps down for lack of a quorum (reachable
    /// on real processes: a partitioned old leader serves stale reads).
    StaleLeaderReads,
    /// A leader counts the acknowledgements of nodes not bound to the
    /// cluster (and its own, before its binding is durable) for commands.
    CountUnboundAcks,
    /// Peers of different clusters are admitted to each other.
    AdmitForeignCluster,
    /// The driver sends a follower's append acknowledgements before the
    /// sync that covers them has finished (src/driver.rs).
    AckBeforeSync,
    /// The client retries a write whose outcome is unknown under a new
    /// sequence number (src/client/machine.rs).
    RetryNewSequence,
    /// The state machine's snapshot body leaves the session table out
    /// (written as empty, footer to match, so it restores cleanly): a
    /// node restored from it has forgotten every session, and exactly-once
    /// no longer holds across the snapshot (src/kv/snapshot.rs).
    SnapshotWithoutSessions,
    /// A follower installs a snapshot at or below what it has applied,
    /// rolling its state machine back while its log moves on.
    InstallOlderSnapshot,
    /// Compaction discards committed entries the state machine has not
    /// applied yet, which it then never sees.
    CompactUnapplied,
    /// A follower installing a snapshot keeps its log's suffix whenever the
    /// log holds the snapshot's last entry with its term, even when the log
    /// began with another cluster's Bootstrap (an unbound node's, whose
    /// terms agree by chance only): it holds the leader's snapshot followed
    /// by the other cluster's entries (src/core/raft_log.rs).
    InstallKeepsForeignLog,
    /// Recovery keeps the log next to the snapshot an interrupted install
    /// received whenever the log holds the snapshot's last entry with its
    /// term, even when the log began with another cluster's Bootstrap: the
    /// storage's half of `InstallKeepsForeignLog`
    /// (src/storage/snapshot_recovery.rs).
    RecoveryKeepsForeignLog,
    /// A snapshot taken before the node is bound names no cluster (the
    /// hard state's binding, not the log's Bootstrap): whoever installs it
    /// can never bind (src/replica/snapshot.rs).
    SnapshotWithoutCluster,
    /// A voter grants a leadership transfer's vote request (§3.10) without
    /// the §5.4.1 up-to-date check, trusting that the leader caught the
    /// target up: a target that read its TimeoutNow late (paused) wins with
    /// a log that lacks entries committed since.
    TransferVoteIgnoresLog,
}

impl PlantedBug {
    /// The bugs the simulator's planted-bug tests must find. StaleLeaderReads
    /// is left out here because it is the one the process-level bench must
    /// find (the simulator finds it too, as "client semantics");
    /// CountUnboundAcks because only a stale member arriving in the
    /// milliseconds before a new cluster's majority is bound can exploit
    /// it, which the simulator does not stage: a core test finds it.
    /// AdmitForeignCluster is found by both the simulator and the bench.
    /// The three snapshot bugs are found now that the simulator takes,
    /// compacts and installs snapshots; the two foreign-log ones with the
    /// foreign-log fault (a member given another cluster's unbound log at
    /// our terms), and SnapshotWithoutCluster by the check that every
    /// snapshot names the committed Bootstrap's cluster.
    pub const ALL: [PlantedBug; 11] = [
        PlantedBug::CommitOldTermByCount,
        PlantedBug::SecondVoteInTerm,
        PlantedBug::VoteBeforePersist,
        PlantedBug::TruncateOnMatchingAppend,
        PlantedBug::AdmitForeignCluster,
        PlantedBug::SnapshotWithoutSessions,
        PlantedBug::InstallOlderSnapshot,
        PlantedBug::CompactUnapplied,
        PlantedBug::InstallKeepsForeignLog,
        PlantedBug::RecoveryKeepsForeignLog,
        PlantedBug::SnapshotWithoutCluster,
    ];

    /// Every bug a test build can plant.
    pub const NAMED: [PlantedBug; 16] = [
        PlantedBug::CommitOldTermByCount,
        PlantedBug::SecondVoteInTerm,
        PlantedBug::VoteBeforePersist,
        PlantedBug::TruncateOnMatchingAppend,
        PlantedBug::AdmitForeignCluster,
        PlantedBug::StaleLeaderReads,
        PlantedBug::CountUnboundAcks,
        PlantedBug::AckBeforeSync,
        PlantedBug::RetryNewSequence,
        PlantedBug::SnapshotWithoutSessions,
        PlantedBug::InstallOlderSnapshot,
        PlantedBug::CompactUnapplied,
        PlantedBug::InstallKeepsForeignLog,
        PlantedBug::RecoveryKeepsForeignLog,
        PlantedBug::SnapshotWithoutCluster,
        PlantedBug::TransferVoteIgnoresLog,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::CommitOldTermByCount => "commit-old-term-by-count",
            PlantedBug::SecondVoteInTerm => "second-vote-in-term",
            PlantedBug::VoteBeforePersist => "vote-before-persist",
            PlantedBug::TruncateOnMatchingAppend => "truncate-on-matching-append",
            PlantedBug::StaleLeaderReads => "stale-leader-reads",
            PlantedBug::CountUnboundAcks => "count-unbound-acks",
            PlantedBug::AdmitForeignCluster => "admit-foreign-cluster",
            PlantedBug::AckBeforeSync => "ack-before-sync",
            PlantedBug::RetryNewSequence => "retry-new-sequence",
            PlantedBug::SnapshotWithoutSessions => "snapshot-without-sessions",
            PlantedBug::InstallOlderSnapshot => "install-older-snapshot",
            PlantedBug::CompactUnapplied => "compact-unapplied",
            PlantedBug::InstallKeepsForeignLog => "install-keeps-foreign-log",
            PlantedBug::RecoveryKeepsForeignLog => "recovery-keeps-foreign-log",
            PlantedBug::SnapshotWithoutCluster => "snapshot-without-cluster",
            PlantedBug::TransferVoteIgnoresLog => "transfer-vote-ignores-log",
        }
    }

    pub fn from_name(name: &str) -> Option<PlantedBug> {
        Self::NAMED.into_iter().find(|bug| bug.name() == name)
    }
}
