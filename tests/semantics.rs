//! Process-level tests of the client semantics: linearizable reads,
//! exactly-once writes across leader changes, PreVote and CheckQuorum.

mod common;

use common::poll_until;
use raftlite::client::Client;
use raftlite::reply::{classify, Answer, Reply, ReplyKind};
use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn a_leader_cut_off_from_both_followers_stops_serving_reads() {
    let cluster = common::cluster(3, &[]);
    let leader = cluster.require_leader(2 * SECOND);
    let mut writer = cluster.client(2 * SECOND);
    assert!(writer.execute("SET k=v1").starts_with("OK"));
    let followers: Vec<usize> = (0..3).filter(|&index| index != leader).collect();
    for &index in &followers {
        cluster.signal(index, "STOP");
    }
    let stopped_at = Instant::now();
    let mut reader = Client::new(
        vec![cluster.nodes[leader].address()],
        Duration::from_millis(400),
        false,
    );
    let mut stepped_down_after = None;
    while stopped_at.elapsed() < 4 * SECOND {
        let reply = reader.execute("GET k");
        assert!(
            !reply.starts_with("VALUE"),
            "a read confirmed without a majority: {reply}"
        );
        let role = cluster.status(leader).map(|status| status["role"].clone());
        if role.as_deref() == Some("follower") {
            stepped_down_after = Some(stopped_at.elapsed());
            break;
        }
    }
    for &index in &followers {
        cluster.signal(index, "CONT");
    }
    let elapsed = stepped_down_after.expect("the cut-off leader never stepped down");
    // CheckQuorum: a window of four maximum election timeouts (1.2 s) plus
    // a heartbeat; the bound here leaves room for a loaded machine.
    assert!(elapsed < 2 * SECOND, "stepped down only after {elapsed:?}");
    let mut client = cluster.client(3 * SECOND);
    assert_eq!(client.execute("GET k"), "VALUE v1", "service resumes");
}

#[test]
fn a_paused_follower_that_wakes_does_not_disturb_the_leader() {
    let cluster = common::cluster(3, &[]);
    let leader = cluster.require_leader(2 * SECOND);
    let term_before = cluster.status(leader).expect("leader answers")["term"].clone();
    let follower = (leader + 1) % 3;
    cluster.signal(follower, "STOP");
    let mut client = cluster.client(2 * SECOND);
    for index in 0..20 {
        let reply = client.execute(&format!("SET p{index}=1"));
        assert!(reply.starts_with("OK"), "SET {index}: {reply}");
    }
    std::thread::sleep(Duration::from_millis(1500)); // far beyond its election timeout
    cluster.signal(follower, "CONT");
    cluster.require_converged(3 * SECOND);
    let statuses: Vec<_> = (0..3).filter_map(|index| cluster.status(index)).collect();
    assert_eq!(statuses.len(), 3);
    for status in &statuses {
        assert_eq!(status["term"], term_before, "no new term: {statuses:?}");
        assert_eq!(status["leader"], cluster.nodes[leader].id);
    }
}

/// The number a GET of the counter read, or None for any other answer.
fn counter_value(answer: &Answer) -> Option<u64> {
    match answer {
        Answer::Reply(Reply::Value(value)) => std::str::from_utf8(value).ok()?.parse().ok(),
        _ => None,
    }
}

/// Increments a counter with CAS until `count` increments were acknowledged;
/// returns (acknowledged, unknown outcomes).
fn increment(client: &mut Client, count: usize) -> (usize, usize) {
    let (mut acknowledged, mut unknown) = (0, 0);
    while acknowledged < count {
        let current = client.ask("GET counter");
        let Some(value) = counter_value(&current) else {
            assert_eq!(current.kind(), ReplyKind::Timeout, "GET counter: {current}");
            continue;
        };
        let reply = client.execute(&format!("CAS counter {value} {}", value + 1));
        match classify(&reply) {
            ReplyKind::Success => acknowledged += 1,
            ReplyKind::Mismatch => {}
            ReplyKind::Timeout => unknown += 1,
            _ => panic!("CAS: {reply}"),
        }
    }
    (acknowledged, unknown)
}

#[test]
fn writes_retried_across_leader_kills_apply_exactly_once() {
    let mut cluster = common::cluster(3, &[]);
    cluster.require_leader(2 * SECOND);
    let mut client = cluster.client(10 * SECOND);
    assert!(client.execute("SET counter=0").starts_with("OK"));
    let (mut acknowledged, mut unknown) = increment(&mut client, 30);
    for _ in 0..2 {
        let leader = cluster.require_leader(3 * SECOND);
        cluster.kill(leader);
        let (more, more_unknown) = increment(&mut client, 30);
        acknowledged += more;
        unknown += more_unknown;
        cluster.start_node(leader).expect("restart");
    }
    let answer = client.ask("GET counter");
    let final_value = counter_value(&answer).unwrap_or_else(|| panic!("GET counter: {answer}"));
    let final_value = usize::try_from(final_value).expect("a small counter");
    assert!(
        final_value >= acknowledged && final_value <= acknowledged + unknown,
        "counter {final_value}, {acknowledged} acknowledged, {unknown} unknown"
    );
    assert_eq!(
        unknown, 0,
        "submit retries until its deadline: no unknown outcome expected"
    );
}

#[test]
fn stale_reads_are_labelled_and_served_by_any_node() {
    let cluster = common::cluster(3, &[]);
    let leader = cluster.require_leader(2 * SECOND);
    let mut client = cluster.client(2 * SECOND);
    assert!(client.execute("SET s=1").starts_with("OK"));
    let follower = (leader + 1) % 3;
    let mut local = Client::new(vec![cluster.nodes[follower].address()], SECOND, false);
    let reply = poll_until(2 * SECOND, || {
        let reply = local.execute("SGET s");
        reply.starts_with("VALUE 1 stale applied=").then_some(reply)
    });
    assert!(
        reply.is_some(),
        "the follower answers SGET locally once it applied"
    );
    assert!(local
        .execute("SGET nothing")
        .starts_with("NOT_FOUND stale applied="));
    let reply = local.execute("GET s");
    assert!(
        reply.starts_with("ERR NOT_LEADER leader="),
        "GET is linearizable only on the leader: {reply}"
    );
}

#[test]
fn cas_creates_only_if_absent_and_reports_mismatches() {
    let cluster = common::cluster(3, &[]);
    cluster.require_leader(2 * SECOND);
    let mut client = cluster.client(2 * SECOND);
    assert!(client.execute("CAS c - first").starts_with("OK index="));
    assert_eq!(client.execute("CAS c - second"), "MISMATCH current=first");
    assert!(client.execute("CAS c first third").starts_with("OK"));
    assert_eq!(client.execute("CAS d x y"), "MISMATCH absent");
    assert_eq!(client.execute("GET c"), "VALUE third");
}

#[test]
fn a_node_back_from_a_long_isolation_does_not_raise_the_term() {
    let mut cluster = common::proxied_cluster(3, &[]);
    let leader = cluster.require_leader(2 * SECOND);
    let term_before = cluster.status(leader).expect("leader answers")["term"].clone();
    let outsider = (leader + 1) % 3;
    cluster.isolate(outsider, true);
    let mut client = cluster.client(3 * SECOND);
    for index in 0..20 {
        assert!(client.execute(&format!("SET i{index}=1")).starts_with("OK"));
    }
    // Many election timeouts pass; with PreVote the outsider never gets a
    // majority of pre-votes, so it never increments its term.
    std::thread::sleep(Duration::from_millis(2000));
    let outsider_status = cluster
        .status(outsider)
        .expect("the outsider answers clients");
    assert_eq!(
        outsider_status["term"], term_before,
        "pre-votes only: {outsider_status:?}"
    );
    // It is also restarted while cut off, then the links come back.
    cluster.kill(outsider);
    cluster.start_node(outsider).expect("restart");
    std::thread::sleep(Duration::from_millis(700));
    cluster.isolate(outsider, false);
    cluster.require_converged(5 * SECOND);
    for index in 0..3 {
        let status = cluster.status(index).expect("answers");
        assert_eq!(
            status["term"], term_before,
            "the cluster's term is unchanged: {status:?}"
        );
        assert_eq!(status["leader"], cluster.nodes[leader].id);
    }
}

#[test]
fn quoted_keys_and_values_read_back_and_absence_is_a_word() {
    let cluster = common::cluster(3, &[]);
    let leader = cluster.require_leader(2 * SECOND);
    let mut client = cluster.client(2 * SECOND);
    assert!(client.execute(r#"SET "a b" "-""#).starts_with("OK index="));
    assert_eq!(client.execute(r#"GET "a b""#), "VALUE -");
    // The leader applied the SET before it answered, so its local copy
    // has it.
    let mut local = Client::new(vec![cluster.nodes[leader].address()], SECOND, false);
    let reply = local.execute(r#"SGET "a b""#);
    assert!(reply.starts_with("VALUE - stale applied="), "{reply}");
    // A quoted "-" is the value, not "absent".
    let reply = client.execute(r#"CAS "a b" "-" "x y""#);
    assert!(reply.starts_with("OK index="), "{reply}");
    let reply = local.execute(r#"SGET "a b""#);
    assert!(
        reply.starts_with(r#"VALUE "x y" stale applied="#),
        "{reply}"
    );
    assert_eq!(client.execute(r#"CAS "a b" - z"#), "MISMATCH current=x y");
    assert_eq!(
        client.execute(r#"CAS "no such key" x y"#),
        "MISMATCH absent"
    );
    assert_eq!(
        client.execute(r#"GET "a"b"#),
        "ERR BAD_REQUEST text after the closing quote at byte 3 in key"
    );
}
