//! The fault-injection bench, short: about a minute of faults on a real
//! cluster with a fixed seed; the checker must find the history
//! linearizable and every post-heal check must pass.

use raftlite_kit::fault::TempDir;
use std::process::Command;
use std::sync::Mutex;

const JEPSEN: &str = env!("CARGO_BIN_EXE_jepsen");

/// One bench at a time: each runs a whole cluster and its clients, and two
/// at once on a small machine would starve each other's timeouts.
static ONE_BENCH_AT_A_TIME: Mutex<()> = Mutex::new(());

fn run_bench(seed: &str, seconds: &str, extra: &[&str]) -> (bool, String, String) {
    let _turn = ONE_BENCH_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let out = TempDir::new("jepsen");
    let output = Command::new(JEPSEN)
        .args(["--time", seconds, "--seed", seed, "--out"])
        .arg(&out.0)
        .args(extra)
        .output()
        .expect("run jepsen");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let summary = std::fs::read_to_string(out.0.join("summary.json")).unwrap_or_default();
    assert!(
        out.0.join("history.jsonl").exists(),
        "the history is written"
    );
    (output.status.success(), stdout, summary)
}

#[cfg(not(feature = "planted-bugs"))]
#[test]
fn a_minute_of_faults_leaves_a_linearizable_history() {
    // Fifty seconds draw about fifteen faults of eleven kinds: the stale
    // member goes first so that every run has one.
    let (passed, stdout, summary) = run_bench("7", "50", &["--first-fault", "stale-member"]);
    assert!(passed, "{stdout}");
    assert!(summary.contains("\"linearizable\":true"), "{summary}");
    assert!(stdout.contains("verdict: linearizable"), "{stdout}");
    assert!(
        !summary.contains("\"faults\":{}"),
        "faults were injected: {summary}"
    );
    assert!(summary.contains("\"stale-member\":"), "{summary}");
    assert!(
        !summary.contains("\"snapshots\":{\"taken\":0,"),
        "the nodes took snapshots under the faults: {summary}"
    );
    assert!(
        !summary.contains("\"returned\":0,"),
        "a stale member returned: {summary}"
    );
}

#[cfg(feature = "planted-bugs")]
#[test]
fn the_checker_catches_a_leader_serving_stale_reads() {
    // Partitioned old leaders keep answering reads from their own state.
    let arguments = [
        "--plant-bug",
        "stale-leader-reads",
        "--keys",
        "2",
        "--faults",
        "isolate-leader",
    ];
    let (passed, stdout, summary) = run_bench("11", "30", &arguments);
    assert!(!passed, "the planted bug went unnoticed: {stdout}");
    assert!(summary.contains("\"linearizable\":false"), "{summary}");
}

#[cfg(feature = "planted-bugs")]
#[test]
fn the_bench_catches_a_stale_member_let_in() {
    // Every node admits peers and messages of another cluster. The stale
    // member's term, far above the cluster's, deposes the leader; if it
    // wins the election its log is sent to members bound to the cluster,
    // and if it loses theirs is sent to it. Either way the core's last
    // line of defence stops the receiving node ("dropping a known
    // cluster's log"). The bench must fail on that damage (a node that
    // stopped, no recovery, a stale value read), not only on the missing
    // refusals.
    let arguments = [
        "--plant-bug",
        "admit-foreign-cluster",
        "--keys",
        "1",
        "--faults",
        "stale-member",
    ];
    let (passed, stdout, summary) = run_bench("5", "6", &arguments);
    assert!(!passed, "the planted bug went unnoticed: {stdout}");
    let damage_seen = summary.contains("\"linearizable\":false")
        || summary.contains("\"converged\":null")
        || !summary.contains("\"exits\":[]");
    assert!(damage_seen, "{summary}");
}
