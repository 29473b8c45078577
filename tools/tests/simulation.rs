//! The deterministic simulator (tools/kit/sim, docs/TESTING.md) as part of
//! `make test`: a fixed sweep of seeds over cluster sizes 1, 3, 5 and 7,
//! each seed a safety phase under faults and a liveness phase that must
//! converge. With `--features planted-bugs`, the same sweep must find each
//! planted bug and name the property it breaks.

use raftlite_kit::sim::{run_seed, Echo, Options, SeedReport};
use std::ops::Range;

/// The fixed sweep: seeds 0..SWEEP_SEEDS, the size cycling 1/3/5/7 with
/// the seed, STEPS_DEFAULT steps of faults each.
const SWEEP_SEEDS: u64 = 8192;

/// The sweep runs as this many tests so the harness spreads it over cores.
const SWEEP_PARTS: u64 = 4;

const _: () = assert!(SWEEP_SEEDS >= 1000 && SWEEP_SEEDS.is_multiple_of(SWEEP_PARTS));

fn part(index: u64) -> Range<u64> {
    let length = SWEEP_SEEDS / SWEEP_PARTS;
    index * length..(index + 1) * length
}

/// Runs `seeds`; panics with the full report of the first failure.
fn sweep(seeds: Range<u64>) {
    for seed in seeds {
        let report = run_seed(&Options::for_seed(seed), Echo::Off);
        if let Some(failure) = report.failure {
            panic!("\n{}", failure.report());
        }
    }
}

#[test]
fn sweep_part_1_of_4() {
    sweep(part(0));
}

#[test]
fn sweep_part_2_of_4() {
    sweep(part(1));
}

#[test]
fn sweep_part_3_of_4() {
    sweep(part(2));
}

#[test]
fn sweep_part_4_of_4() {
    sweep(part(3));
}

/// Same seed, same run, event for event: the whole trace and the counters
/// of two runs of one seed are identical, for every cluster size.
#[test]
fn same_seed_same_run() {
    for seed in [0, 1, 2, 3, 4097] {
        let first = run_seed(&Options::for_seed(seed), Echo::Collect);
        let second = run_seed(&Options::for_seed(seed), Echo::Collect);
        assert!(first.trace_lines.len() > 100, "seed {seed} did little");
        assert_eq!(first.trace_lines, second.trace_lines, "seed {seed}");
        assert_eq!(first.stats, second.stats, "seed {seed}");
        let quiet = run_seed(&Options::for_seed(seed), Echo::Off);
        assert_eq!(first.stats, quiet.stats, "tracing must not change the run");
        let third = run_seed(&Options::for_seed(seed + 4), Echo::Collect);
        assert_ne!(first.trace_lines, third.trace_lines, "seeds must differ");
    }
}

/// The runs do something: elections, commits, faults of every kind.
#[test]
fn runs_exercise_the_cluster() {
    let mut total = raftlite_kit::sim::Stats::default();
    for seed in 0..64 {
        let SeedReport { stats, failure, .. } = run_seed(&Options::for_seed(seed), Echo::Off);
        assert!(failure.is_none(), "seed {seed} failed");
        total.add(&stats);
    }
    let faults = total.faults;
    assert!(total.elections > 64 && total.commits > 1000, "{total:?}");
    assert!(faults.crashes > 0 && faults.torn_writes > 0 && faults.restarts > 0);
    assert!(faults.pauses > 0 && faults.disks_slowed > 0);
    assert!(faults.partitions_symmetric > 0 && faults.partitions_one_way > 0);
    assert!(faults.messages_lost > 0 && faults.messages_duplicated > 0);
    assert!(faults.messages_delayed_long > 0 && faults.divergence_strikes > 0);
}

/// The code the simulator replays must stay deterministic: no clock, no
/// sockets, no files, no threads, no unordered maps, no outside randomness;
/// nor do the driver and the client machine the simulator runs.
/// The needles are split so this test does not find itself.
#[test]
fn deterministic_code_stays_pure() {
    let root = env!("CARGO_MANIFEST_DIR");
    let needles = [
        ["std::", "time"].concat(),
        ["Inst", "ant"].concat(),
        ["System", "Time"].concat(),
        ["std::", "net"].concat(),
        ["std::", "fs"].concat(),
        ["std::", "env"].concat(),
        ["std::", "thread"].concat(),
        ["Hash", "Map<"].concat(),
        ["Hash", "Map::"].concat(),
        ["Hash", "Set<"].concat(),
        ["Hash", "Set::"].concat(),
        ["mi", "o::"].concat(),
        ["ra", "nd::"].concat(),
    ];
    let mut paths = Vec::new();
    for directory in ["kit/sim", "../src/core", "../src/kv"] {
        let entries = std::fs::read_dir(format!("{root}/{directory}")).expect("source folder");
        for entry in entries {
            paths.push(entry.expect("directory entry").path());
        }
    }
    // The driver and the client machine run in the simulator as they are.
    for file in [
        "../src/driver/mod.rs",
        "../src/driver/snapshots.rs",
        "../src/client/machine.rs",
    ] {
        paths.push(std::path::PathBuf::from(format!("{root}/{file}")));
    }
    // A measurement run by hand (`--ignored`), never by the simulator: it
    // reads the clock to time a snapshot (its own header says so).
    paths.retain(|path| !path.ends_with("kv/snapshot_measure.rs"));
    for path in paths {
        let source = std::fs::read_to_string(&path).expect("source file");
        for needle in &needles {
            assert!(!source.contains(needle.as_str()), "{path:?} uses {needle}");
        }
    }
}

/// Each planted bug must be found by the default sweep, and the failure
/// must name the property the bug breaks (docs/TESTING.md explains each).
#[cfg(feature = "planted-bugs")]
mod planted {
    use super::*;
    use raftlite::core::PlantedBug;
    use raftlite_kit::sim::{Failure, Property};

    /// The first failure the default sweep finds with `bug` planted, and
    /// the index of its seed.
    fn first_failure(bug: PlantedBug) -> Failure {
        first_failure_where(bug, |_| true)
    }

    fn first_failure_where(bug: PlantedBug, wanted: impl Fn(&Failure) -> bool) -> Failure {
        for seed in 0..SWEEP_SEEDS {
            let options = Options {
                planted_bug: Some(bug),
                ..Options::for_seed(seed)
            };
            if let Some(failure) = run_seed(&options, Echo::Off).failure {
                if wanted(&failure) {
                    eprintln!(
                        "{bug:?}: first found at seed {seed} (size {}): {}: {}",
                        failure.size, failure.violation.property, failure.violation.explanation
                    );
                    return failure;
                }
            }
        }
        panic!("the default sweep of {SWEEP_SEEDS} seeds never found {bug:?}");
    }

    fn assert_property(failure: &Failure, expected: &[Property]) {
        assert!(
            expected.contains(&failure.violation.property),
            "expected one of {expected:?}, got:\n{}",
            failure.report()
        );
    }

    /// Figure 8: an old-term entry committed by counting replicas is lost
    /// when the leader dies before its own term is durable, and a node with
    /// a newer conflicting entry is elected without it.
    #[test]
    fn commit_old_term_by_count() {
        let failure = first_failure(PlantedBug::CommitOldTermByCount);
        let expected = [
            Property::LeaderCompleteness,
            Property::StateMachineSafety,
            Property::Durability,
        ];
        assert_property(&failure, &expected);
    }

    /// Two candidates win one term with the same voter. When the voter that
    /// votes twice is itself the leader of that term, the core's own
    /// invariant (a leader voted for itself) stops it first.
    #[test]
    fn second_vote_in_term() {
        let failure = first_failure(PlantedBug::SecondVoteInTerm);
        let expected = [Property::ElectionSafety, Property::CoreAssertion];
        assert_property(&failure, &expected);
    }

    /// The simulator's own checker sees the double leader too, without the
    /// core's invariant.
    #[test]
    fn second_vote_in_term_breaks_election_safety() {
        let bug = PlantedBug::SecondVoteInTerm;
        let failure = first_failure_where(bug, |failure| {
            failure.violation.property == Property::ElectionSafety
        });
        assert_property(&failure, &[Property::ElectionSafety]);
    }

    /// A vote lost in a crash is cast again in the same term for another
    /// candidate: two leaders of one term, or a leader elected on a log a
    /// majority never vouched for. Most often the checker sees it first:
    /// the voter restarts below the term its vote promised was durable.
    #[test]
    fn vote_before_persist() {
        let failure = first_failure(PlantedBug::VoteBeforePersist);
        let expected = [
            Property::Monotonicity,
            Property::ElectionSafety,
            Property::LeaderCompleteness,
        ];
        assert_property(&failure, &expected);
    }

    /// A late AppendEntries cuts a follower's log below its commit index:
    /// the commit (and applied) index goes backwards on a live node. When
    /// the cut shows only later, disks lose committed entries, or a leader
    /// is elected without them.
    #[test]
    fn truncate_on_matching_append() {
        let failure = first_failure(PlantedBug::TruncateOnMatchingAppend);
        let expected = [
            Property::Monotonicity,
            Property::Durability,
            Property::StateMachineSafety,
            Property::LeaderCompleteness,
        ];
        assert_property(&failure, &expected);
    }

    /// Nodes of the cluster take the term, votes and entries of a stale
    /// member (another cluster's data dir at a member's address): it wins
    /// elections with its higher term and rewrites their logs, committed
    /// entries included; the core's own assertions, or the history checks,
    /// stop it.
    #[test]
    fn admit_foreign_cluster() {
        let failure = first_failure(PlantedBug::AdmitForeignCluster);
        let expected = [
            Property::CoreAssertion,
            Property::StateMachineSafety,
            Property::LeaderCompleteness,
            Property::Durability,
            Property::ClientSemantics,
        ];
        assert_property(&failure, &expected);
    }

    /// A follower acknowledges entries before the fsync that makes them
    /// durable (the driver's ordering, src/driver.rs): the leader commits
    /// on acks a crash can take back, and a committed entry ends up on
    /// fewer disks than a majority, or a leader is elected without it.
    #[test]
    fn ack_before_sync() {
        let failure = first_failure(PlantedBug::AckBeforeSync);
        let expected = [
            Property::Durability,
            Property::LeaderCompleteness,
            Property::StateMachineSafety,
        ];
        assert_property(&failure, &expected);
    }

    /// The client machine retries a write whose outcome is unknown under a
    /// new sequence number: the session cannot tell the retry from a new
    /// write, and a write whose first try had taken effect takes effect
    /// again.
    #[test]
    fn retry_new_sequence() {
        let failure = first_failure(PlantedBug::RetryNewSequence);
        assert_property(&failure, &[Property::ClientSemantics]);
        let explanation = &failure.violation.explanation;
        assert!(explanation.contains("took effect twice"), "{explanation}");
    }

    /// The snapshot body leaves the session table out: a node's own
    /// snapshot, and any follower or restart restored from it, is not the
    /// state the committed history gives at its index.
    #[test]
    fn snapshot_without_sessions() {
        let failure = first_failure(PlantedBug::SnapshotWithoutSessions);
        let expected = [Property::StateMachineSafety, Property::ClientSemantics];
        assert_property(&failure, &expected);
    }

    /// A follower installs a snapshot at or below what it applied: its
    /// state machine goes back while its applied index stays.
    #[test]
    fn install_older_snapshot() {
        let failure = first_failure(PlantedBug::InstallOlderSnapshot);
        assert_property(&failure, &[Property::StateMachineSafety]);
    }

    /// Compaction discards entries past what the state machine applied
    /// and past the snapshot that covers the log: the node holds them
    /// nowhere (Durability), its state skips them (State Machine Safety),
    /// or a follower needing them is sent the old snapshot forever.
    #[test]
    fn compact_unapplied() {
        let failure = first_failure(PlantedBug::CompactUnapplied);
        let expected = [
            Property::Durability,
            Property::StateMachineSafety,
            Property::Liveness,
        ];
        assert_property(&failure, &expected);
    }

    /// A member whose data dir became an unbound log of another cluster,
    /// at our terms (the foreign-log fault), installs the leader's snapshot
    /// and keeps that log's suffix: the leader's next AppendEntries finds
    /// its terms in place, and the node holds the other cluster's entries
    /// after our snapshot.
    #[test]
    fn install_keeps_foreign_log() {
        let failure = first_failure(PlantedBug::InstallKeepsForeignLog);
        let expected = [Property::LogMatching, Property::StateMachineSafety];
        assert_property(&failure, &expected);
    }

    /// The same log kept by recovery, after a crash between the install
    /// and the reset of the disk's log.
    #[test]
    fn recovery_keeps_foreign_log() {
        let failure = first_failure(PlantedBug::RecoveryKeepsForeignLog);
        let expected = [Property::LogMatching, Property::StateMachineSafety];
        assert_property(&failure, &expected);
    }

    /// A snapshot taken before its node is bound names no cluster: the
    /// checker holds every snapshot file to the committed Bootstrap's.
    #[test]
    fn snapshot_without_cluster() {
        let failure = first_failure(PlantedBug::SnapshotWithoutCluster);
        assert_property(&failure, &[Property::StateMachineSafety]);
        let explanation = &failure.violation.explanation;
        assert!(explanation.contains("names cluster none"), "{explanation}");
    }

    /// A transfer's vote granted without the log check: a target paused
    /// while its transfer timed out reads its TimeoutNow late and wins
    /// without entries committed meanwhile.
    #[test]
    fn transfer_vote_ignores_log() {
        let failure = first_failure(PlantedBug::TransferVoteIgnoresLog);
        let expected = [
            Property::LeaderCompleteness,
            Property::StateMachineSafety,
            Property::LogMatching,
            Property::Durability,
        ];
        assert_property(&failure, &expected);
    }

    /// Not in `PlantedBug::ALL` (the process-level bench is meant to find
    /// it), but the simulator's read check finds it too: a leader that
    /// answers reads without confirming its leadership, or before it has
    /// committed an entry of its term, serves state older than writes that
    /// committed before the read was sent.
    #[test]
    fn stale_leader_reads() {
        let failure = first_failure(PlantedBug::StaleLeaderReads);
        assert_property(&failure, &[Property::ClientSemantics]);
    }
}
