//! Process tests of a node's edges (issue 11, "At the edges"): a member back
//! with another cluster's data dir, a data dir started under another id,
//! thousands of idle and half-written connections, a node the cluster
//! refuses, a member restarted on another port (or with a wrong address
//! for a peer), a stranger that claims to be the leader of a cluster with
//! a peer secret or tries to forge log lines, and SIGTERM. Each of them
//! fails on the code before issue 11 (6e13101).

mod common;

use common::{poll_until, run_submit, Cluster, TempDir, RAFTLITE};
use raftlite::client::Client;
use raftlite::constants::{CLIENT_CONNECTIONS_MAX, HANDSHAKE_TIMEOUT_MS, PARTIAL_FRAME_TIMEOUT_MS};
use raftlite::core::{
    AppendEntries, ClusterId, ClusterTag, Entry, InstallSnapshot, LogIndex, Message, MessageBody,
    NodeId, SnapshotMeta, Term,
};
use raftlite::kv::{parse_request, LogRecord};
use raftlite::wire::{
    encode_frame, encode_message, ClientRequest, Frame, FrameDecoder, PeerHello, PeerProof,
    PeerRefused, RefusalReason, NONCE_SIZE, PROOF_SIZE,
};
use raftlite_kit::fault::{free_ports, LinkProxy};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);

/// The connection-exhaustion test holds thousands of descriptors and keeps
/// a node busy for seconds: it runs alone, while the others may share the
/// machine with each other.
static MACHINE: RwLock<()> = RwLock::new(());

fn shared_machine() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(PoisonError::into_inner)
}

fn whole_machine() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(PoisonError::into_inner)
}

// ---- helpers ---------------------------------------------------------------

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |metadata| metadata.len())
}

/// The lines a log file gained after byte `offset`.
fn lines_after(path: &Path, offset: u64) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = (offset as usize).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..])
        .lines()
        .map(str::to_string)
        .collect()
}

fn count_containing(lines: &[String], text: &str) -> usize {
    lines.iter().filter(|line| line.contains(text)).count()
}

/// Copies a data dir (files and subdirectories).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the data dir") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

/// Node `index`'s STATUS fields, waiting a little for a busy node.
fn status_of(cluster: &Cluster, index: usize) -> HashMap<String, String> {
    poll_until(3 * SECOND, || cluster.status(index)).unwrap_or_else(|| {
        panic!(
            "{} does not answer STATUS: {:?}",
            cluster.nodes[index].id,
            cluster.statuses()
        )
    })
}

fn term_of(cluster: &Cluster, index: usize) -> u64 {
    status_of(cluster, index)["term"]
        .parse()
        .expect("a numeric term")
}

/// Kills the leader and starts it again, `rounds` times: each round costs
/// an election, so the term rises. Returns the term reached.
fn raise_term(cluster: &mut Cluster, rounds: usize) -> u64 {
    for _ in 0..rounds {
        let leader = cluster.require_leader(3 * SECOND);
        cluster.kill(leader);
        cluster.require_leader(3 * SECOND);
        cluster.start_node(leader).expect("restart the old leader");
    }
    let leader = cluster.require_leader(3 * SECOND);
    term_of(cluster, leader)
}

/// Every running node's (term, leader), for "nothing changed" checks.
fn terms_and_leaders(cluster: &Cluster) -> Vec<(String, String, String)> {
    cluster
        .running()
        .into_iter()
        .map(|index| {
            let status = status_of(cluster, index);
            (
                cluster.nodes[index].id.clone(),
                status["term"].clone(),
                status["leader"].clone(),
            )
        })
        .collect()
}

/// A `raftlite` process outside the harness's cluster, with its stderr in
/// `log`; killed (if still running) when dropped.
struct Daemon {
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    fn start(arguments: &[String], log: PathBuf) -> Daemon {
        let file = std::fs::File::create(&log).expect("create the log file");
        let child = Command::new(RAFTLITE)
            .args(arguments)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn raftlite");
        Daemon {
            child: Some(child),
            log,
        }
    }

    fn lines(&self) -> Vec<String> {
        lines_after(&self.log, 0)
    }

    /// Waits up to `timeout` for the process to exit by itself.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let status = poll_until(timeout, || child.try_wait().ok().flatten())?;
        self.child = None;
        Some(status)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "---- {} ----\n{}",
                self.log.display(),
                self.lines().join("\n")
            );
        }
    }
}

/// Reads frames until the node closes the connection or `timeout` passes.
/// Returns the frames and whether the node closed it.
fn frames_until_closed(stream: &mut TcpStream, timeout: Duration) -> (Vec<Frame>, bool) {
    let deadline = Instant::now() + timeout;
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (frames, false);
        }
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(decoder.spare(64 * 1024)) {
            Ok(0) => return (frames, true),
            Ok(count) => decoder.commit(count),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (frames, false)
            }
            Err(_) => return (frames, true), // reset: closed too
        }
        while let Some(frame) = decoder.next_frame().expect("the node sends valid frames") {
            frames.push(frame);
        }
    }
}

fn frame_bytes(frames: &[Frame]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for frame in frames {
        encode_frame(frame, &mut bytes);
    }
    bytes
}

// ---- 1. a stale member -----------------------------------------------------

/// Issue 11's scenario: B's data dir from an old cluster comes back at B's
/// address, with a higher term, next to a new cluster of A and C.
#[test]
fn a_member_back_with_an_old_clusters_data_dir_changes_nothing_in_the_new_one() {
    let _machine = shared_machine();
    let mut cluster = common::cluster(3, &[]);
    cluster.require_leader(2 * SECOND);
    let mut client = cluster.client(5 * SECOND);
    for index in 0..10 {
        let reply = client.execute(&format!("SET old{index}=from-the-old-cluster"));
        assert!(reply.starts_with("OK"), "old{index}: {reply}");
    }
    // The dangerous case: B comes back with a higher term than the new
    // cluster has, so on the old code its replies would depose the leader.
    raise_term(&mut cluster, 5);
    cluster.require_converged(5 * SECOND);
    let old_term = term_of(&cluster, 1);
    // (Read with get: on the code before cluster ids, the test fails
    // where the new cluster is disturbed, not here.)
    let old_cluster = status_of(&cluster, 1).get("cluster").cloned();
    for index in 0..3 {
        cluster.kill(index);
    }
    let saved = cluster.dir().join("B-data-of-the-old-cluster");
    copy_dir(&cluster.data_dir(1), &saved);
    for index in 0..3 {
        std::fs::remove_dir_all(cluster.data_dir(index)).expect("wipe a data dir");
    }

    // A new cluster on the same ports: A and C with fresh data dirs.
    cluster.start_node(0).expect("start A");
    cluster.start_node(2).expect("start C");
    let leader = cluster.require_leader(3 * SECOND);
    let new_members = vec![cluster.nodes[0].address(), cluster.nodes[2].address()];
    let mut client = Client::new(new_members, 5 * SECOND, true);
    for index in 0..50 {
        let reply = client.execute(&format!("SET x{index}=value{index}"));
        assert!(reply.starts_with("OK"), "x{index}: {reply}");
    }
    let leader_id = cluster.nodes[leader].id.clone();
    let new_term = term_of(&cluster, leader);
    let new_cluster = status_of(&cluster, leader).get("cluster").cloned();
    assert!(
        old_term > new_term,
        "B must come back with the higher term (old {old_term}, new {new_term}) for this test to mean anything"
    );

    copy_dir(&saved, &cluster.data_dir(1));
    let b_log_start = file_size(&cluster.log_path(1));
    let b_started = Instant::now();
    cluster.start_node(1).expect("start B on its old data dir");

    // For 5 s the new cluster keeps its leader and its term.
    let mut samples = 0;
    while b_started.elapsed() < 5 * SECOND {
        for index in [0, 2] {
            let Some(status) = cluster.status(index) else {
                continue;
            };
            let id = &cluster.nodes[index].id;
            assert_eq!(
                status["term"],
                new_term.to_string(),
                "{id}'s term changed after B came back: {status:?}"
            );
            assert_eq!(
                status["leader"], leader_id,
                "{id}'s leader changed after B came back: {status:?}"
            );
            samples += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(samples >= 10, "only {samples} STATUS answers in 5 s");
    let b_lines = lines_after(&cluster.log_path(1), b_log_start);

    for index in 0..50 {
        assert_eq!(
            client.execute(&format!("GET x{index}")),
            format!("VALUE value{index}"),
            "x{index}"
        );
    }
    for index in 0..10 {
        assert_eq!(
            client.execute(&format!("GET old{index}")),
            "NOT_FOUND",
            "the old cluster's key old{index} leaked into the new one"
        );
    }
    // Each side refuses the other's handshake (whichever dialled), and
    // names it by id.
    for index in [0, 2] {
        let status = status_of(&cluster, index);
        for field in ["refused", "refused_by"] {
            assert_eq!(
                status[field], "B:cluster_id",
                "{}'s {field}: {status:?}",
                cluster.nodes[index].id
            );
        }
    }
    let b_status = status_of(&cluster, 1);
    for field in ["refused", "refused_by"] {
        assert_eq!(
            b_status[field], "A:cluster_id,C:cluster_id",
            "B's {field}: {b_status:?}"
        );
    }
    assert_ne!(old_cluster, new_cluster, "two clusters, two ids");
    assert_eq!(
        b_status.get("cluster"),
        old_cluster.as_ref(),
        "B keeps its own"
    );
    assert_ne!(b_status["role"], "leader");
    for other in ["A", "C"] {
        assert!(
            b_lines
                .iter()
                .any(|line| line.contains(&format!("Peer {other} ("))
                    && line.contains("refused us")
                    && line.contains("cluster")),
            "B's log does not say {other} refused it: {b_lines:#?}"
        );
    }
    assert!(
        b_lines
            .iter()
            .any(|line| line.contains("ERROR This node belongs to cluster")
                && line.contains("A, C (a majority)")),
        "B's log does not say it is the stale one: {b_lines:#?}"
    );
    assert!(
        b_lines.len() < 50,
        "B wrote {} lines in 5 s: {b_lines:#?}",
        b_lines.len()
    );
}

// ---- 2. a data dir under another id ----------------------------------------

#[test]
fn a_data_dir_started_under_another_id_is_refused_and_left_as_it_was() {
    let _machine = shared_machine();
    let mut cluster = common::cluster(3, &[]);
    cluster.require_leader(2 * SECOND);
    let reply = cluster.client(5 * SECOND).execute("SET kept=1");
    assert!(reply.starts_with("OK"), "{reply}");
    cluster.require_converged(3 * SECOND);
    cluster.kill(2);
    let dir = TempDir::new("other-id");
    let copy = dir.0.join("C-data");
    copy_dir(&cluster.data_dir(2), &copy);
    let before = common::files_in(&copy);

    let port = free_ports(1).expect("a free port")[0];
    let arguments: Vec<String> = [
        "--id",
        "Q",
        "--port",
        &port.to_string(),
        "--peers",
        "",
        "--data-dir",
        &copy.display().to_string(),
    ]
    .map(str::to_string)
    .to_vec();
    let mut node = Daemon::start(&arguments, dir.0.join("Q.log"));
    let status = node.wait_exit(5 * SECOND);
    assert_eq!(
        status.and_then(|status| status.code()),
        Some(1),
        "Q on C's data dir must exit 1 within 5 s: {:?}",
        node.lines()
    );
    let lines = node.lines();
    let errors: Vec<&String> = lines.iter().filter(|line| line.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "one ERROR line: {lines:#?}");
    assert!(
        errors[0].contains("belongs to node C, not Q"),
        "the line names both ids: {}",
        errors[0]
    );
    let after = common::files_in(&copy);
    let changed: Vec<&PathBuf> = before
        .keys()
        .chain(after.keys())
        .filter(|path| before.get(*path) != after.get(*path))
        .collect();
    assert!(changed.is_empty(), "the refused start changed {changed:?}");
}

// ---- 3. connection exhaustion ----------------------------------------------

/// What each test connection did before it went quiet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opening {
    /// Nothing at all.
    Silent,
    /// Half a first frame (a declared length of 100, 10 bytes of it).
    HalfFrame,
    /// A whole request, then half of the next.
    RequestThenHalfFrame,
    /// A whole request, then nothing (an idle client).
    Request,
}

/// In the order they are opened: those that name themselves first, so that
/// the handshake timeout of the others has not run out by the time the
/// test asks the full node to take a write.
const OPENINGS: [Opening; 4] = [
    Opening::Request,
    Opening::RequestThenHalfFrame,
    Opening::Silent,
    Opening::HalfFrame,
];

fn opening_bytes(opening: Opening, request_id: u64) -> Vec<u8> {
    let half_frame = [0, 0, 0, 100, 1, 6, 0, 0, 0, 0, 0, 0, 0, 0];
    let request = frame_bytes(&[Frame::ClientRequest(ClientRequest {
        request_id,
        session_id: 0,
        sequence: 0,
        command: "SGET idle".to_string(),
    })]);
    match opening {
        Opening::Silent => Vec::new(),
        Opening::HalfFrame => half_frame.to_vec(),
        Opening::RequestThenHalfFrame => [request, half_frame.to_vec()].concat(),
        Opening::Request => request,
    }
}

/// Whether the node has closed this connection (reads what it sent).
fn closed_by_node(stream: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(error) if error.kind() == ErrorKind::WouldBlock => return false,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(_) => return true,
        }
    }
}

/// Drops the connections the node closed, until none of `kinds` is left
/// open or `deadline` passes; returns how many of those are still open.
fn close_wait(open: &mut Vec<(Opening, TcpStream)>, kinds: &[Opening], deadline: Instant) -> usize {
    loop {
        open.retain_mut(|(_, stream)| !closed_by_node(stream));
        let left = open
            .iter()
            .filter(|(opening, _)| kinds.contains(opening))
            .count();
        if left == 0 || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn thousands_of_idle_and_half_written_connections_neither_lock_out_a_client_nor_flood_the_log() {
    let _machine = whole_machine();
    let test_started = Instant::now();
    let limit = raftlite::runtime::os::raise_open_files_limit().expect("read the open-files limit");
    let wanted = CLIENT_CONNECTIONS_MAX + 104;
    // Room for the test's own descriptors (and the cluster's pipes).
    let count = wanted.min(limit.saturating_sub(256) as usize);
    if count < wanted {
        eprintln!("the open-files limit is {limit}: opening {count} connections, not {wanted}");
    }
    let cluster = common::cluster(1, &[]);
    cluster.require_leader(2 * SECOND);
    let address = cluster.nodes[0].address();

    let opened_at = Instant::now();
    let mut connections: Vec<(Opening, TcpStream)> = Vec::with_capacity(count);
    for index in 0..count {
        let opening = OPENINGS[index * OPENINGS.len() / count];
        let mut stream = TcpStream::connect(&address).expect("connect");
        stream
            .write_all(&opening_bytes(opening, index as u64 + 1))
            .expect("write the opening bytes");
        connections.push((opening, stream));
    }
    let opened_in = opened_at.elapsed();
    for (_, stream) in &connections {
        stream.set_nonblocking(true).expect("non-blocking");
    }
    // Everything a client can do meets a full house: every slot is taken.
    let slots = count.min(CLIENT_CONNECTIONS_MAX);
    let full = poll_until(3 * SECOND, || {
        let clients: usize = cluster.status(0)?.get("clients")?.parse().ok()?;
        (clients + 16 >= slots).then_some(clients)
    });
    assert!(
        full.is_some(),
        "the node never held {slots} connections (opened {count} in {opened_in:?}): {:?}",
        cluster.statuses()
    );
    let asked_at = Instant::now();
    let (reply, code) = run_submit(&[
        "--cluster",
        &address,
        "--timeout",
        "10000",
        "--cmd",
        "SET idle=1",
    ]);
    let answered_in = asked_at.elapsed();
    assert!(
        reply.starts_with("OK") && code == 0,
        "SET with every slot taken: {reply} (exit {code})"
    );
    assert!(answered_in < 10 * SECOND, "SET took {answered_in:?}");
    let (reply, _) = run_submit(&["--cluster", &address, "--cmd", "GET idle"]);
    assert_eq!(reply.trim(), "VALUE 1");

    // The node closes what stalls: no first frame within the handshake
    // timeout, half a frame held longer than the partial-frame timeout.
    let margin = Duration::from_millis(3000) + opened_in;
    let mut open = connections;
    let first_frame_kinds = [Opening::Silent, Opening::HalfFrame];
    let deadline = opened_at + Duration::from_millis(HANDSHAKE_TIMEOUT_MS) + margin;
    let left = close_wait(&mut open, &first_frame_kinds, deadline);
    assert_eq!(
        left,
        0,
        "connections without a first frame still open {:?} after they were opened",
        opened_at.elapsed()
    );
    let deadline = opened_at + Duration::from_millis(PARTIAL_FRAME_TIMEOUT_MS) + margin;
    let left = close_wait(&mut open, &[Opening::RequestThenHalfFrame], deadline);
    assert_eq!(
        left,
        0,
        "clients holding half a frame still open {:?} after they were opened",
        opened_at.elapsed()
    );
    // ... and keeps idle clients until the (longer) idle timeout, but for
    // the idlest, closed to admit newer connections.
    let idle_clients = open.len();
    assert!(
        idle_clients >= count / OPENINGS.len() / 2,
        "only {idle_clients} idle clients left open"
    );
    let (_, last) = open.last_mut().expect("an idle client left");
    last.set_nonblocking(false).expect("blocking");
    let status = frame_bytes(&[Frame::ClientRequest(ClientRequest {
        request_id: 1_000_000,
        session_id: 0,
        sequence: 0,
        command: "STATUS".to_string(),
    })]);
    last.write_all(&status).expect("an idle client asks again");
    let (frames, _) = frames_until_closed(last, SECOND);
    assert!(
        frames.iter().any(|frame| matches!(frame,
            Frame::ClientResponse(response) if response.request_id == 1_000_000)),
        "an idle client is still served: {frames:?}"
    );
    drop(open);

    let log = lines_after(&cluster.log_path(0), 0);
    assert!(
        log.len() < 200,
        "the node wrote {} lines: {:#?}",
        log.len(),
        &log[..log.len().min(40)]
    );
    let sweeps = [
        "no request or peer handshake within the handshake timeout",
        "part of a frame held longer than the partial-frame timeout",
    ];
    for reason in sweeps {
        assert!(
            count_containing(&log, reason) >= 1,
            "the log does not say '{reason}': {log:#?}"
        );
    }
    assert!(
        test_started.elapsed() < 40 * SECOND,
        "took {:?}",
        test_started.elapsed()
    );
}

// ---- 4. a refused node, a moved node ----------------------------------------

#[test]
fn a_node_the_cluster_refuses_backs_off_and_both_sides_say_why() {
    let _machine = shared_machine();
    let cluster = common::cluster(3, &[]);
    cluster.require_leader(2 * SECOND);
    let before = terms_and_leaders(&cluster);
    let dir = TempDir::new("stranger");
    // D dials A and B through proxies that count its attempts.
    let to_a = LinkProxy::start(cluster.nodes[0].port).expect("proxy to A");
    let to_b = LinkProxy::start(cluster.nodes[1].port).expect("proxy to B");
    let port = free_ports(1).expect("a free port")[0];
    let arguments: Vec<String> = [
        "--id".to_string(),
        "D".to_string(),
        "--port".to_string(),
        port.to_string(),
        "--peers".to_string(),
        format!("A:{},B:{}", to_a.port, to_b.port),
        "--data-dir".to_string(),
        dir.0.join("data").display().to_string(),
    ]
    .to_vec();
    let a_log_start = file_size(&cluster.log_path(0));
    let d_started = Instant::now();
    let stranger = Daemon::start(&arguments, dir.0.join("D.log"));
    let d_address = format!("127.0.0.1:{port}");

    let reason_named = poll_until(5 * SECOND, || {
        let lines = stranger.lines();
        lines
            .iter()
            .any(|line| line.contains("refused us") && line.contains("not a member"))
            .then_some(())
    });
    assert!(
        reason_named.is_some(),
        "D's log does not say why it is refused: {:#?}",
        stranger.lines()
    );
    let watch = 6 * SECOND;
    std::thread::sleep(watch.saturating_sub(d_started.elapsed()));
    let d_lines = stranger.lines();
    let attempts = [to_a.connections_accepted(), to_b.connections_accepted()];
    let elapsed = d_started.elapsed();

    // An isolated node also says "Timeout → PreCandidate" at each election
    // timeout (4 or 5 a second): that is not what this test bounds.
    let timeouts = count_containing(&d_lines, "Timeout → PreCandidate");
    let peer_lines = d_lines
        .iter()
        .filter(|line| line.contains("Peer ") || line.contains("efused"))
        .count();
    assert!(
        d_lines.len() - timeouts < 10 && peer_lines <= 6 && d_lines.len() < 60,
        "D wrote {} lines ({peer_lines} about peers, {timeouts} election timeouts) in {elapsed:?}: {d_lines:#?}",
        d_lines.len()
    );
    // A refused node waits 1 s, then 2 s, then 4 s (and a quarter more at
    // most): 3 or 4 tries per peer in 6 s, where a reconnect every 10-500
    // ms would be dozens.
    for (name, tries) in ["A", "B"].iter().zip(attempts) {
        assert!(
            (2..=5).contains(&tries),
            "D dialled {name} {tries} times in {elapsed:?}"
        );
    }
    let a_lines = lines_after(&cluster.log_path(0), a_log_start);
    // One line per reason per 10 s, however often D knocks.
    let refusing = count_containing(&a_lines, "Refused peer D");
    let about_d = a_lines
        .iter()
        .filter(|line| {
            ["peer D ", "Peer D ", "\"D\""]
                .iter()
                .any(|name| line.contains(name))
        })
        .count();
    assert!(
        (1..=2).contains(&refusing) && about_d == refusing,
        "A's log names D {about_d} times, its refusal {refusing} times: {a_lines:#?}"
    );
    let a_status = status_of(&cluster, 0);
    assert!(
        a_status["refused"].contains("D:unknown_node"),
        "A's STATUS: {a_status:?}"
    );
    let mut client = Client::new(vec![d_address], SECOND, false);
    let d_status = client.execute("STATUS");
    assert!(
        d_status.contains("A:unknown_node") && d_status.contains("B:unknown_node"),
        "D's STATUS: {d_status}"
    );
    assert_eq!(terms_and_leaders(&cluster), before, "the cluster changed");
}

/// Changes the value of `flag` in node `index`'s saved command line.
fn set_argument(cluster: &mut Cluster, index: usize, flag: &str, value: &str) {
    let arguments = &mut cluster.nodes[index].arguments;
    let position = arguments
        .iter()
        .position(|argument| argument == flag)
        .unwrap_or_else(|| panic!("{flag} in {arguments:?}"));
    arguments[position + 1] = value.to_string();
}

#[test]
fn a_member_restarted_on_another_port_is_named_on_both_sides() {
    let _machine = shared_machine();
    let mut cluster = common::cluster(3, &[]);
    cluster.require_leader(2 * SECOND);
    let listed = cluster.nodes[2].address();
    let log_starts: Vec<u64> = (0..3)
        .map(|index| file_size(&cluster.log_path(index)))
        .collect();
    cluster.kill(2);
    let other_port = free_ports(1).expect("a free port")[0];
    set_argument(&mut cluster, 2, "--port", &other_port.to_string());
    cluster.nodes[2].port = other_port;
    cluster.start_node(2).expect("start C on another port");
    let moved = format!("127.0.0.1:{other_port}");

    // A and B dial C where their member lists say and fail; C told them
    // where it listens when it connected to them, and they say so. That
    // line is rate-limited per peer (10 s), and one may have gone out when
    // the cluster started: allow for the rest of that interval.
    let unreachable = format!("Peer C unreachable at {listed}");
    let hint = format!("it connected to us saying it listens on {moved}");
    let named = poll_until(15 * SECOND, || {
        (0..2).find(|&index| {
            lines_after(&cluster.log_path(index), log_starts[index])
                .iter()
                .any(|line| line.contains(&unreachable) && line.contains(&hint))
        })
    });
    assert!(
        named.is_some(),
        "neither A nor B says '{unreachable}: ...; {hint}': {}",
        cluster.log_tails(20)
    );
    let mismatch = format!("its member list has this node at {listed}, but it listens on {moved}");
    let explained = poll_until(10 * SECOND, || {
        let lines = lines_after(&cluster.log_path(2), log_starts[2]);
        lines
            .iter()
            .any(|line| line.contains("has not connected to us") && line.contains(&mismatch))
            .then_some(())
    });
    assert!(
        explained.is_some(),
        "C's log does not say '{mismatch}': {}",
        cluster.log_tails(20)
    );
}

/// The other way round: C comes back with a wrong address for A in its
/// member list. A, which reached C all along and was connected to by C
/// before, must notice that C no longer connects to it, and say why.
#[test]
fn a_member_restarted_with_a_wrong_address_for_a_peer_is_named_by_that_peer() {
    let _machine = shared_machine();
    let mut cluster = common::cluster(3, &[]);
    cluster.require_leader(2 * SECOND);
    cluster.require_converged(3 * SECOND);
    let a_address = cluster.nodes[0].address();
    let wrong_port = free_ports(1).expect("a free port")[0];
    let peers = format!("A:{wrong_port},B:{}", cluster.nodes[1].port);
    let a_log_start = file_size(&cluster.log_path(0));
    cluster.kill(2);
    set_argument(&mut cluster, 2, "--peers", &peers);
    cluster
        .start_node(2)
        .expect("restart C with a wrong address for A");

    let mismatch = format!(
        "Peer C has not connected to us for 5 s though we reach it: its member list has this node at 127.0.0.1:{wrong_port}, but it listens on {a_address}"
    );
    let explained = poll_until(10 * SECOND, || {
        let lines = lines_after(&cluster.log_path(0), a_log_start);
        lines
            .iter()
            .any(|line| line.contains(&mismatch))
            .then_some(())
    });
    assert!(
        explained.is_some(),
        "A's log does not say '{mismatch}': {}",
        cluster.log_tails(20)
    );
}

// ---- 5. impersonation without the secret ------------------------------------

/// A 64-hex-digit secret in a file only its owner reads.
fn secret_file(dir: &TempDir) -> PathBuf {
    let path = dir.0.join("peer-secret");
    let secret = "5f1c".repeat(16);
    std::fs::write(&path, format!("{secret}\n")).expect("write the secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(&path, mode).expect("chmod 600");
    }
    path
}

/// What a stranger without the secret says to follower `to`, claiming to be
/// the leader `from`: a hello, and an AppendEntries 100 terms ahead whose
/// entry, if it were taken, would write `injected` and commit at once.
fn impersonation(
    cluster: &Cluster,
    from: usize,
    to: usize,
    authenticated: bool,
) -> (Frame, Vec<u8>) {
    let status = status_of(cluster, to);
    let term: u64 = status["term"].parse().expect("term");
    let last_index: u64 = status["last_index"].parse().expect("last index");
    let cluster_id = u64::from_str_radix(&status["cluster"], 16)
        .ok()
        .map(ClusterId);
    let hello = Frame::PeerHello(PeerHello {
        node_id: cluster.nodes[from].id.clone(),
        address: cluster.nodes[from].address(),
        members: cluster.nodes.iter().map(|node| node.id.clone()).collect(),
        cluster_id,
        nonce: [7; NONCE_SIZE],
        authenticated,
    });
    let command = parse_request("SET injected=by-a-stranger")
        .expect("a request")
        .into_command()
        .expect("a command");
    let mut data = Vec::new();
    LogRecord::Command {
        session: None,
        command,
    }
    .encode(&mut data);
    let forged_term = term + 100;
    let append = Message {
        from: NodeId(from as u32),
        to: NodeId(to as u32),
        term: Term(forged_term),
        cluster: ClusterTag {
            log_id: cluster_id,
            bound: cluster_id.is_some(),
        },
        body: MessageBody::AppendEntries(AppendEntries {
            prev_log_index: LogIndex(last_index),
            prev_log_term: Term(term),
            leader_commit: LogIndex(last_index + 1),
            round: 0,
            entries: vec![Entry::command(last_index + 1, forged_term, &data)],
        }),
    };
    let mut append_bytes = Vec::new();
    encode_message(&append, &mut append_bytes);
    (hello, append_bytes)
}

/// Sends `bytes` on a fresh connection to `address`; returns what the node
/// sent back before it closed the connection (within 5 s).
fn send_and_read(address: &str, bytes: &[u8]) -> (Vec<Frame>, bool) {
    let mut stream = TcpStream::connect(address).expect("connect");
    // The node may close before reading all of it: that is fine.
    let _ = stream.write_all(bytes);
    frames_until_closed(&mut stream, 5 * SECOND)
}

fn refusal_of(frames: &[Frame]) -> Option<RefusalReason> {
    frames.iter().find_map(|frame| match frame {
        Frame::PeerRefused(refused) => Some(refused.reason),
        _ => None,
    })
}

#[test]
fn a_stranger_without_the_peer_secret_cannot_pose_as_the_leader() {
    let _machine = shared_machine();
    let dir = TempDir::new("secret");
    let secret = secret_file(&dir);
    let secret = secret.display().to_string();
    let cluster = common::cluster(3, &["--peer-secret", &secret]);
    let leader = cluster.require_leader(3 * SECOND);
    let reply = cluster.client(5 * SECOND).execute("SET before=1");
    assert!(reply.starts_with("OK"), "{reply}");
    cluster.require_converged(3 * SECOND);
    let before = terms_and_leaders(&cluster);
    let follower = (leader + 1) % 3;
    let address = cluster.nodes[follower].address();
    let welcomed = |frames: &[Frame]| {
        frames
            .iter()
            .any(|frame| matches!(frame, Frame::PeerWelcome(_)))
    };

    // Claims a secret, then sends Raft RPCs without proving it.
    let (hello, append) = impersonation(&cluster, leader, follower, true);
    let (frames, closed) = send_and_read(&address, &[frame_bytes(&[hello]), append].concat());
    assert!(closed && !welcomed(&frames), "{frames:?}");
    assert_eq!(refusal_of(&frames), Some(RefusalReason::Protocol));

    // Claims a secret and sends a proof it could not compute.
    let (hello, append) = impersonation(&cluster, leader, follower, true);
    let proof = Frame::PeerProof(PeerProof {
        proof: [0; PROOF_SIZE],
    });
    let bytes = [frame_bytes(&[hello, proof]), append].concat();
    let (frames, closed) = send_and_read(&address, &bytes);
    assert!(closed && !welcomed(&frames), "{frames:?}");
    assert!(
        frames
            .iter()
            .any(|frame| matches!(frame, Frame::PeerChallenge(_))),
        "{frames:?}"
    );
    assert_eq!(refusal_of(&frames), Some(RefusalReason::Authentication));

    // Offers no secret at all.
    let (hello, append) = impersonation(&cluster, leader, follower, false);
    let (frames, closed) = send_and_read(&address, &[frame_bytes(&[hello]), append].concat());
    assert!(closed && !welcomed(&frames), "{frames:?}");
    assert_eq!(
        refusal_of(&frames),
        Some(RefusalReason::SecretConfiguration)
    );

    // A client connection can never turn into a peer connection.
    let mut stream = TcpStream::connect(&address).expect("connect");
    let status = Frame::ClientRequest(ClientRequest {
        request_id: 1,
        session_id: 0,
        sequence: 0,
        command: "STATUS".to_string(),
    });
    stream
        .write_all(&frame_bytes(&[status]))
        .expect("send STATUS");
    let mut decoder = FrameDecoder::new();
    stream.set_read_timeout(Some(5 * SECOND)).expect("timeout");
    let reply = loop {
        if let Some(frame) = decoder.next_frame().expect("a valid reply") {
            break frame;
        }
        let read = stream.read(decoder.spare(4096)).expect("the STATUS reply");
        assert!(read > 0, "closed before answering STATUS");
        decoder.commit(read);
    };
    assert!(
        matches!(&reply, Frame::ClientResponse(response) if response.reply.starts_with("STATUS")),
        "{reply:?}"
    );
    let (hello, append) = impersonation(&cluster, leader, follower, true);
    let _ = stream.write_all(&[frame_bytes(&[hello]), append].concat());
    let (frames, closed) = frames_until_closed(&mut stream, 5 * SECOND);
    assert!(
        closed && frames.is_empty(),
        "a client connection that sent a PeerHello: closed {closed}, got {frames:?}"
    );

    std::thread::sleep(2 * SECOND);
    assert_eq!(
        terms_and_leaders(&cluster),
        before,
        "a stranger changed a term or a leader"
    );
    let mut reader = Client::new(vec![address.clone()], 2 * SECOND, false);
    let reply = reader.execute("SGET injected");
    assert!(reply.starts_with("NOT_FOUND"), "on the follower: {reply}");
    assert_eq!(
        cluster.client(5 * SECOND).execute("GET injected"),
        "NOT_FOUND"
    );
    assert_eq!(cluster.client(5 * SECOND).execute("GET before"), "VALUE 1");
}

/// Before any proof, a stranger may call itself anything and refuse our
/// challenge with any text: none of it may become a log line of its own or
/// a STATUS field.
#[test]
fn what_a_stranger_claims_cannot_forge_log_lines_or_status_fields() {
    let _machine = shared_machine();
    let dir = TempDir::new("forged");
    let secret = secret_file(&dir).display().to_string();
    let cluster = common::cluster(1, &["--peer-secret", &secret]);
    cluster.require_leader(2 * SECOND);
    let address = cluster.nodes[0].address();
    let hello = |node_id: &str, authenticated: bool| {
        Frame::PeerHello(PeerHello {
            node_id: node_id.to_string(),
            address: "127.0.0.1:1\n00:00:00.000 [A] forged".to_string(),
            members: vec!["A".to_string()],
            cluster_id: None,
            nonce: [9; NONCE_SIZE],
            authenticated,
        })
    };
    // Refused at its hello (it offers no secret), under the id it claims.
    let forged_id = "Z role=candidate term=999\n00:00:00.000 [A] forged";
    let (frames, _) = send_and_read(&address, &frame_bytes(&[hello(forged_id, false)]));
    assert_eq!(
        refusal_of(&frames),
        Some(RefusalReason::SecretConfiguration)
    );
    // Refuses our challenge, saying what it likes.
    let text = "no\n00:00:00.000 [A] forged";
    let refusal = Frame::PeerRefused(PeerRefused::new(RefusalReason::Authentication, text));
    let (frames, closed) = send_and_read(&address, &frame_bytes(&[hello("A", true), refusal]));
    assert!(closed, "{frames:?}");

    let reply = Client::new(vec![address], 2 * SECOND, false).execute("STATUS");
    assert!(
        !reply.contains('\n') && !reply.contains("term=999") && !reply.contains("role=candidate"),
        "STATUS carries what the stranger claimed: {reply:?}"
    );
    let status = status_of(&cluster, 0);
    assert_eq!(status["role"], "leader");
    assert_eq!(status["refused"], "?:secret_configuration", "{status:?}");
    // A refusal on a connection it made to us proves nothing of who sent
    // it: logged as a claim, not shown as a peer's refusal.
    assert_eq!(status["refused_by"], "none", "{status:?}");
    let log = lines_after(&cluster.log_path(0), 0);
    let forged: Vec<&String> = log
        .iter()
        .filter(|line| line.get(12..17) != Some(" [A] ") || line.as_bytes().get(2) != Some(&b':'))
        .collect();
    assert!(
        forged.is_empty(),
        "lines the node did not write: {forged:#?}"
    );
    assert_eq!(
        count_containing(&log, "forged"),
        2,
        "both refusals are logged, escaped, each on its line: {log:#?}"
    );
}

/// A local address that is not loopback (the one a default route would
/// use), if the machine has one. Nothing is sent: a UDP connect only picks
/// a route.
fn non_loopback_address() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn a_node_listening_beyond_loopback_without_a_secret_warns() {
    let _machine = shared_machine();
    let Some(ip) = non_loopback_address() else {
        eprintln!("no non-loopback address on this machine: check skipped");
        return;
    };
    let Ok(port) = std::net::TcpListener::bind((ip, 0)).and_then(|l| l.local_addr()) else {
        eprintln!("cannot bind {ip}: check skipped");
        return;
    };
    let dir = TempDir::new("exposed");
    let arguments: Vec<String> = [
        "--id".to_string(),
        "A".to_string(),
        "--host".to_string(),
        ip.to_string(),
        "--port".to_string(),
        port.port().to_string(),
        "--peers".to_string(),
        String::new(),
        "--data-dir".to_string(),
        dir.0.join("data").display().to_string(),
    ]
    .to_vec();
    let node = Daemon::start(&arguments, dir.0.join("A.log"));
    let warned = poll_until(5 * SECOND, || {
        node.lines()
            .iter()
            .any(|line| line.contains("WARN") && line.contains("without --peer-secret"))
            .then_some(())
    });
    assert!(warned.is_some(), "no warning: {:#?}", node.lines());
}

// ---- 6. SIGTERM ------------------------------------------------------------

#[test]
fn sigterm_stops_a_node_cleanly_with_exit_0_a_last_line_and_no_pid_file() {
    let _machine = shared_machine();
    let mut cluster = common::cluster(3, &[]);
    let leader = cluster.require_leader(2 * SECOND);
    let reply = cluster.client(5 * SECOND).execute("SET before=1");
    assert!(reply.starts_with("OK"), "{reply}");
    for (index, signal) in [(leader, "TERM"), ((leader + 1) % 3, "INT")] {
        let pid = cluster.pid(index).expect("running");
        let pid_file = cluster.data_dir(index).join("raftlite.pid");
        assert_eq!(
            std::fs::read_to_string(&pid_file)
                .expect("a pid file")
                .trim(),
            pid.to_string()
        );
        let sent = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success());
        let status = cluster.wait_exit(index, 5 * SECOND);
        let id = &cluster.nodes[index].id;
        assert_eq!(
            status.and_then(|status| status.code()),
            Some(0),
            "{id} after SIG{signal}: {status:?}"
        );
        let log = lines_after(&cluster.log_path(index), 0);
        let last = log.last().expect("a log line");
        assert!(
            last.contains(&format!("Shutting down on SIG{signal}")),
            "{id}'s last line: {last}"
        );
        assert!(!pid_file.exists(), "{id}'s pid file is still there");
    }
    // What the stopped leader acknowledged is there when it comes back.
    cluster.start_node(leader).expect("restart");
    cluster.require_leader(3 * SECOND);
    assert_eq!(cluster.client(5 * SECOND).execute("GET before"), "VALUE 1");
}

/// Issue 13: an out-of-order snapshot chunk closes the connection it came
/// on and changes nothing. Here one claiming to be the leader, at the
/// follower's term, for a snapshot the follower is not receiving.
#[test]
fn an_out_of_order_snapshot_chunk_closes_its_connection_and_changes_nothing() {
    let _machine = shared_machine();
    let cluster = common::cluster(3, &[]);
    let leader = cluster.require_leader(3 * SECOND);
    let reply = cluster.client(5 * SECOND).execute("SET before=1");
    assert!(reply.starts_with("OK"), "{reply}");
    cluster.require_converged(3 * SECOND);
    let follower = (leader + 1) % 3;
    let status = status_of(&cluster, follower);
    let term: u64 = status["term"].parse().expect("term");
    let cluster_id = u64::from_str_radix(&status["cluster"], 16)
        .ok()
        .map(ClusterId);
    let log_start = file_size(&cluster.log_path(follower));
    let hello = Frame::PeerHello(PeerHello {
        node_id: cluster.nodes[leader].id.clone(),
        address: cluster.nodes[leader].address(),
        members: cluster.nodes.iter().map(|node| node.id.clone()).collect(),
        cluster_id,
        nonce: [3; NONCE_SIZE],
        authenticated: false,
    });
    let chunk = Message {
        from: NodeId(leader as u32),
        to: NodeId(follower as u32),
        term: Term(term),
        cluster: ClusterTag {
            log_id: cluster_id,
            bound: cluster_id.is_some(),
        },
        body: MessageBody::InstallSnapshot(InstallSnapshot {
            meta: SnapshotMeta {
                index: LogIndex(1_000_000),
                term: Term(term),
                cluster_id,
                voters: (0..3).map(NodeId).collect(),
            },
            offset: 4096,
            total_size: 8192,
            data: vec![0u8; 16].into(),
        }),
    };
    let mut chunk_bytes = Vec::new();
    encode_message(&chunk, &mut chunk_bytes);
    let address = cluster.nodes[follower].address();
    // Without a secret any proof verifies: the hello, a proof and the chunk
    // can go at once.
    let proof = Frame::PeerProof(PeerProof {
        proof: [0; PROOF_SIZE],
    });
    let bytes = [frame_bytes(&[hello, proof]), chunk_bytes].concat();
    // The real leader, paused, cannot reconnect and displace this
    // connection: only the chunk's rule can close it.
    assert!(cluster.signal(leader, "STOP"));
    let mut stream = TcpStream::connect(&address).expect("connect");
    stream.write_all(&bytes).expect("send");
    let (frames, closed) = frames_until_closed(&mut stream, SECOND);
    assert!(cluster.signal(leader, "CONT"));
    // (What the node sent before closing may be lost to the reset.)
    assert!(closed, "the connection stayed open: {frames:?}");
    let log = lines_after(&cluster.log_path(follower), log_start);
    let expected = format!(
        "Closing the connection from {}: a chunk of snapshot 1000000 at offset 4096, but this node holds 0 bytes of it",
        cluster.nodes[leader].id
    );
    assert_eq!(count_containing(&log, &expected), 1, "{log:#?}");

    let after = status_of(&cluster, follower);
    // (The pause may have cost the leader its term.)
    for field in ["snapshot_index", "first_index", "cluster"] {
        assert_eq!(after[field], status[field], "{field}: {after:?}");
    }
    let reply = cluster.client(5 * SECOND).execute("SET after=2");
    assert!(reply.starts_with("OK"), "{reply}");
    cluster.require_converged(5 * SECOND);
}
