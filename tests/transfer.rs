//! Leadership transfer (`TRANSFER ID`, dissertation §3.10) on real
//! processes: the reply line, the new leader's STATUS, writes after it, and
//! a transfer to a node that cannot take over failing within an election
//! timeout while the old leader resumes.

mod common;

use common::{poll_until, run_submit};

use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn transfer_makes_the_target_leader_and_writes_keep_working() {
    let cluster = common::cluster(3, &[]);
    let leader = cluster.require_leader(2 * SECOND);
    let target = (leader + 1) % 3;
    let target_id = cluster.nodes[target].id.clone();
    let term_before: u64 = cluster.status(leader).expect("leader status")["term"]
        .parse()
        .expect("a term");
    let everyone = cluster.addresses().join(",");
    // Asked of a follower, the request follows NOT_LEADER to the leader.
    let follower = (leader + 2) % 3;
    let (reply, code) = run_submit(&[
        "--leader",
        &cluster.nodes[follower].address(),
        "--cmd",
        &format!("TRANSFER {target_id}"),
    ]);
    let status = cluster.status(target).expect("target status");
    assert_eq!(status["role"], "leader", "{reply}");
    // Issue 14's STATUS fields: the voters here, and this node's kind.
    assert_eq!(
        (&status["members"][..], &status["kind"][..]),
        ("3", "voter")
    );
    let term: u64 = status["term"].parse().expect("a term");
    assert!(term > term_before);
    assert_eq!(
        reply.trim_end(),
        format!("OK leader={target_id} term={term}")
    );
    assert_eq!(code, 0);
    let (reply, code) = run_submit(&["--cluster", &everyone, "--cmd", "SET after=transfer"]);
    assert!(reply.starts_with("OK index="), "{reply}");
    assert!(
        reply.trim_end().ends_with(&format!(" term={term}")),
        "{reply}"
    );
    assert_eq!(code, 0);
    let (reply, _) = run_submit(&["--cluster", &everyone, "--cmd", "GET after"]);
    assert_eq!(reply.trim_end(), "VALUE transfer");
    let log = std::fs::read_to_string(cluster.log_path(leader)).expect("old leader's log");
    assert!(
        log.contains(&format!(
            "Transferring leadership to {target_id} (term {term_before})"
        )),
        "{log}"
    );
    assert!(log.contains(&format!(
        "Transferred leadership to {target_id} (term {term})"
    )));
    // The leader itself: at once.
    let (reply, _) = run_submit(&[
        "--cluster",
        &everyone,
        "--cmd",
        &format!("TRANSFER {target_id}"),
    ]);
    assert_eq!(
        reply.trim_end(),
        format!("OK leader={target_id} term={term}")
    );
    let (reply, code) = run_submit(&["--cluster", &everyone, "--cmd", "TRANSFER nobody"]);
    assert_eq!(reply.trim_end(), "ERR BAD_REQUEST no member named nobody");
    assert_eq!(code, 1);
}

#[test]
fn a_transfer_that_cannot_happen_fails_within_an_election_timeout_and_the_leader_resumes() {
    let cluster = common::cluster(3, &[]);
    let leader = cluster.require_leader(2 * SECOND);
    let stopped = (leader + 1) % 3;
    let stopped_id = cluster.nodes[stopped].id.clone();
    assert!(cluster.signal(stopped, "STOP"));
    let leader_address = cluster.nodes[leader].address();
    let started = Instant::now();
    let (reply, code) = run_submit(&[
        "--leader",
        &leader_address,
        "--cmd",
        &format!("TRANSFER {stopped_id}"),
    ]);
    let elapsed = started.elapsed();
    assert_eq!(
        reply.trim_end(),
        format!(
            "ERR UNAVAILABLE leadership transfer to {stopped_id} did not complete within an \
             election timeout (300 ms)"
        )
    );
    assert_eq!(code, 1);
    assert!(elapsed < SECOND, "took {elapsed:?}");
    let (reply, code) = run_submit(&["--leader", &leader_address, "--cmd", "SET still=leader"]);
    assert!(reply.starts_with("OK index="), "{reply}");
    assert_eq!(code, 0);
    let status = cluster.status(leader).expect("leader status");
    assert_eq!(status["role"], "leader", "the old leader resumed");
    // The TimeoutNow the paused node missed still waits in its socket: once
    // it runs again it may start an election (safe; one election's cost).
    assert!(cluster.signal(stopped, "CONT"));
    let led = poll_until(3 * SECOND, || cluster.wait_for_leader(SECOND));
    assert!(led.is_some(), "no leader after the node resumed");
}
