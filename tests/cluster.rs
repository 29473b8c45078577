//! Process-level tests of the daemon: real processes, real sockets.

mod common;

use common::{poll_until, run_submit};
use raftlite::reply::{classify, ReplyKind};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn one_leader_within_two_seconds() {
    let started = Instant::now();
    let cluster = common::cluster(3, &[]);
    let leader = cluster.require_leader(2 * SECOND);
    assert!(
        started.elapsed() < 2 * SECOND,
        "took {:?}",
        started.elapsed()
    );
    let terms: Vec<String> = (0..3)
        .filter_map(|index| cluster.status(index))
        .map(|status| status["term"].clone())
        .collect();
    assert_eq!(terms.len(), 3);
    assert!(
        terms.iter().all(|term| *term == terms[0]),
        "terms differ: {terms:?}"
    );
    let leaders = (0..3)
        .filter_map(|index| cluster.status(index))
        .filter(|status| status["role"] == "leader")
        .count();
    assert_eq!(leaders, 1, "leader {leader} should be alone");
}

#[test]
fn set_and_get_through_any_node() {
    let cluster = common::cluster(3, &[]);
    cluster.require_leader(2 * SECOND);
    for (index, node) in cluster.nodes.iter().enumerate() {
        let (reply, code) = run_submit(&[
            "--leader",
            &node.address(),
            "--cmd",
            &format!("SET key{index}=value {index}"),
        ]);
        assert!(
            reply.starts_with("OK index="),
            "SET via {}: {reply}",
            node.id
        );
        assert_eq!(code, 0);
    }
    for node in &cluster.nodes {
        for index in 0..3 {
            let (reply, code) = run_submit(&[
                "--leader",
                &node.address(),
                "--cmd",
                &format!("GET key{index}"),
            ]);
            assert_eq!(
                reply.trim(),
                format!("VALUE value {index}"),
                "GET via {}",
                node.id
            );
            assert_eq!(code, 0);
        }
    }
    let (reply, _) = run_submit(&[
        "--leader",
        &cluster.nodes[0].address(),
        "--cmd",
        "GET missing",
    ]);
    assert_eq!(reply.trim(), "NOT_FOUND");
    cluster.require_converged(2 * SECOND);
}

#[test]
fn leader_killed_new_leader_and_a_write_within_two_seconds() {
    let mut cluster = common::cluster(3, &[]);
    let leader = cluster.require_leader(2 * SECOND);
    let mut client = cluster.client(2 * SECOND);
    assert!(client.execute("SET before=1").starts_with("OK"));
    let killed_at = Instant::now();
    cluster.kill(leader);
    let reply = client.execute("SET after=2");
    let elapsed = killed_at.elapsed();
    assert!(reply.starts_with("OK"), "write after leader kill: {reply}");
    assert!(elapsed < 2 * SECOND, "took {elapsed:?}");
    let new_leader = cluster.require_leader(SECOND);
    assert_ne!(new_leader, leader);
    assert_eq!(client.execute("GET before"), "VALUE 1");
}

#[test]
fn follower_restarted_catches_up_to_the_leader() {
    let mut cluster = common::cluster(3, &[]);
    let leader = cluster.require_leader(2 * SECOND);
    let follower = (leader + 1) % 3;
    cluster.kill(follower);
    let mut client = cluster.client(5 * SECOND);
    for index in 0..200 {
        let reply = client.execute(&format!("SET k{index}={index}"));
        assert!(reply.starts_with("OK"), "SET {index}: {reply}");
    }
    cluster.start_node(follower).expect("restart");
    let (applied, _) = cluster.require_converged(5 * SECOND);
    assert!(applied >= 201, "applied {applied}");
    let status = cluster.status(follower).expect("follower answers");
    let leader_status = cluster.status(leader).expect("leader answers");
    assert_eq!(status["applied"], leader_status["applied"]);
    assert_eq!(status["digest"], leader_status["digest"]);
}

#[test]
fn without_a_majority_no_write_succeeds_and_service_returns_with_one_node() {
    let mut cluster = common::cluster(3, &[]);
    let leader = cluster.require_leader(2 * SECOND);
    let mut client = cluster.client(2 * SECOND);
    assert!(client.execute("SET a=1").starts_with("OK"));
    let survivor = leader;
    let down: Vec<usize> = (0..3).filter(|&index| index != survivor).collect();
    for &index in &down {
        cluster.kill(index);
    }
    let mut client = cluster.client(Duration::from_millis(1500));
    for attempt in 0..3 {
        let reply = client.execute(&format!("SET lost{attempt}=x"));
        assert!(
            !reply.starts_with("OK"),
            "a write succeeded without a majority: {reply}"
        );
    }
    cluster.start_node(down[0]).expect("restart");
    let mut client = cluster.client(10 * SECOND);
    let reply = client.execute("SET b=2");
    assert!(reply.starts_with("OK"), "after one node returned: {reply}");
    assert_eq!(client.execute("GET a"), "VALUE 1");
}

#[test]
fn five_node_cluster_survives_two_failures() {
    let mut cluster = common::cluster(5, &[]);
    let leader = cluster.require_leader(3 * SECOND);
    let mut client = cluster.client(3 * SECOND);
    assert!(client.execute("SET five=1").starts_with("OK"));
    cluster.kill(leader);
    cluster.kill((leader + 1) % 5);
    let reply = client.execute("SET five=2");
    assert!(reply.starts_with("OK"), "3 of 5 must serve: {reply}");
    assert_eq!(client.execute("GET five"), "VALUE 2");
    cluster.require_converged(3 * SECOND);
}

/// Writes `bytes` to the node, then waits for it to close the connection.
fn closed_after(address: &str, bytes: &[u8]) -> bool {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(2 * SECOND)).expect("timeout");
    stream.write_all(bytes).expect("write");
    let mut buffer = [0u8; 64];
    matches!(stream.read(&mut buffer), Ok(0) | Err(_))
}

#[test]
fn garbage_and_oversized_frames_close_only_that_connection() {
    let cluster = common::cluster(3, &[]);
    cluster.require_leader(2 * SECOND);
    let address = cluster.nodes[0].address();
    // A healthy client connection stays open throughout.
    let mut steady = cluster.client(2 * SECOND);
    assert!(steady.execute("SET steady=1").starts_with("OK"));

    let oversized = [0xFF, 0xFF, 0xFF, 0xFF];
    assert!(
        closed_after(&address, &oversized),
        "oversized length must close the connection"
    );
    let garbage = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert!(
        closed_after(&address, garbage),
        "garbage must close the connection"
    );
    let unknown_type = [0, 0, 0, 2, 1, 99];
    assert!(
        closed_after(&address, &unknown_type),
        "unknown frame type must close"
    );

    // A partial frame waits for more bytes rather than failing.
    let mut partial = TcpStream::connect(&address).expect("connect");
    partial.write_all(&[0, 0]).expect("write");

    assert!(
        steady.execute("SET steady=2").starts_with("OK"),
        "other connections keep working"
    );
    let mut fresh = cluster.client(2 * SECOND);
    assert_eq!(fresh.execute("GET steady"), "VALUE 2");
    let log = std::fs::read_to_string(cluster.log_path(0)).unwrap_or_default();
    assert!(
        log.contains("exceeds maximum"),
        "the node logs why it closed: {log}"
    );
}

#[test]
fn submit_exit_codes_follow_the_contract() {
    let cluster = common::cluster(3, &[]);
    let leader = cluster.require_leader(2 * SECOND);
    let follower = (leader + 1) % 3;
    let follower_address = cluster.nodes[follower].address();
    let (reply, code) = run_submit(&["--leader", &follower_address, "--cmd", "SET x=1"]);
    assert!(reply.starts_with("OK"), "{reply}");
    assert_eq!(code, 0, "OK after following the hint");
    let (reply, code) = run_submit(&[
        "--leader",
        &follower_address,
        "--no-redirect",
        "--cmd",
        "SET x=2",
    ]);
    let expected = format!(
        "ERR NOT_LEADER leader={} addr={}",
        cluster.nodes[leader].id,
        cluster.nodes[leader].address()
    );
    assert_eq!(reply.trim(), expected);
    assert_eq!(code, 3);
    let (reply, code) = run_submit(&["--leader", &follower_address, "--cmd", "STATUS"]);
    assert!(
        reply.starts_with(&format!(
            "STATUS id={} role=follower",
            cluster.nodes[follower].id
        )),
        "{reply}"
    );
    assert_eq!(code, 0, "STATUS is answered by the node contacted");
    let (reply, code) = run_submit(&["--leader", &follower_address, "--cmd", "FROB x"]);
    assert!(reply.starts_with("ERR BAD_REQUEST"), "{reply}");
    assert_eq!(code, 1);
    let (_, code) = run_submit(&[
        "--leader",
        &follower_address,
        "--cmd",
        "SET x=3",
        "--timeout",
        "soon",
    ]);
    assert_eq!(code, 2, "usage error");
    // --cluster too: --leader alone would go on to the default ports, where
    // anything may be listening.
    let (reply, code) = run_submit(&[
        "--leader",
        "127.0.0.1:1",
        "--cluster",
        "127.0.0.1:1",
        "--timeout",
        "300",
        "--cmd",
        "SET x=4",
    ]);
    assert_eq!(
        reply.trim(),
        "ERR UNAVAILABLE no node reachable (127.0.0.1:1: connection refused)"
    );
    assert_eq!(code, 1);
}

#[test]
fn submit_reads_one_command_per_line_and_answers_each_in_order() {
    let cluster = common::cluster(3, &[]);
    cluster.require_leader(2 * SECOND);
    let mut child = std::process::Command::new(common::SUBMIT)
        .args(["--cluster", &cluster.addresses().join(",")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn submit");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(b"SET a=1\nset b two words\nGET a\nGET b\nDEL a\nGET a\nBOGUS\n\nSTATUS\n")
        .expect("write commands");
    drop(stdin);
    let output = child.wait_with_output().expect("submit finishes");
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9, "one reply per line: {lines:?}");
    assert!(lines[0].starts_with("OK index="));
    assert!(lines[1].starts_with("OK index="));
    assert_eq!(lines[2], "VALUE 1");
    assert_eq!(lines[3], "VALUE two words");
    assert!(lines[4].starts_with("OK"));
    assert_eq!(lines[5], "NOT_FOUND");
    assert!(lines[6].starts_with("ERR BAD_REQUEST"));
    assert!(lines[7].starts_with("ERR BAD_REQUEST"));
    assert!(lines[8].starts_with("STATUS id="));
}

#[test]
fn a_node_that_lost_leadership_never_reports_success_for_its_pending_write() {
    // A paused leader keeps its pending proposal; when it wakes, a new leader
    // exists and the proposal's fate must not be reported as OK unless it
    // committed. Pausing with SIGSTOP exercises stale timers too.
    let cluster = common::cluster(3, &[]);
    let leader = cluster.require_leader(2 * SECOND);
    cluster.signal(leader, "STOP");
    let others: Vec<usize> = (0..3).filter(|&index| index != leader).collect();
    let new_leader = poll_until(3 * SECOND, || {
        others.iter().copied().find(|&index| {
            cluster
                .status(index)
                .is_some_and(|status| status["role"] == "leader")
        })
    });
    assert!(
        new_leader.is_some(),
        "the others elect a leader while the old one sleeps"
    );
    cluster.signal(leader, "CONT");
    let stepped_down = poll_until(3 * SECOND, || {
        cluster
            .status(leader)
            .filter(|status| status["role"] == "follower")
            .map(|_| ())
    });
    assert!(
        stepped_down.is_some(),
        "the old leader steps down when it wakes"
    );
    let mut client = cluster.client(3 * SECOND);
    let reply = client.execute("SET after_pause=1");
    assert_eq!(classify(&reply), ReplyKind::Success, "{reply}");
    cluster.require_converged(3 * SECOND);
}

#[test]
fn a_client_pipelining_megabytes_of_requests_gets_every_reply() {
    use raftlite::wire::{encode_frame, ClientRequest, Frame, FrameDecoder};
    let cluster = common::cluster(3, &[]);
    let leader = cluster.require_leader(2 * SECOND);
    let mut stream = TcpStream::connect(cluster.nodes[leader].address()).expect("connect");
    let value = "v".repeat(60 * 1024);
    let count = 120u64; // about 7 MiB, more than one read budget
    let mut bytes = Vec::new();
    for request_id in 1..=count {
        let request = Frame::ClientRequest(ClientRequest {
            request_id,
            session_id: 0,
            sequence: 0,
            command: format!("SET big{request_id} {value}"),
        });
        encode_frame(&request, &mut bytes);
    }
    let writer = {
        let mut stream = stream.try_clone().expect("clone");
        std::thread::spawn(move || stream.write_all(&bytes).expect("write requests"))
    };
    stream.set_read_timeout(Some(10 * SECOND)).expect("timeout");
    let mut decoder = FrameDecoder::new();
    let mut replies = 0;
    while replies < count {
        let read = stream
            .read(decoder.spare(64 * 1024))
            .expect("the node keeps serving");
        assert!(
            read > 0,
            "the node closed the connection after {replies} replies"
        );
        decoder.commit(read);
        while let Some(frame) = decoder.next_frame().expect("valid reply") {
            let Frame::ClientResponse(response) = frame else {
                panic!("not a response")
            };
            assert!(response.reply.starts_with("OK"), "{}", response.reply);
            replies += 1;
        }
    }
    writer.join().expect("writer");
    cluster.require_converged(5 * SECOND);
}
