//! Process-level durability: nothing a node acknowledged is lost by kill -9
//! of any number of nodes; recovery is from disk; bad data stops the node.

mod common;

use common::{poll_until, Cluster, RAFTLITE};
use raftlite::client::Client;
use raftlite::reply::{classify, ReplyKind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);

/// Client threads writing unique keys until `stop`; returns the
/// acknowledged (key, value) pairs.
fn write_until_stopped(
    cluster: &Cluster,
    clients: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<(String, String)>>> {
    (0..clients)
        .map(|client_index| {
            let addresses = cluster.addresses();
            let stop = Arc::clone(stop);
            std::thread::spawn(move || {
                let mut client = Client::new(addresses, Duration::from_millis(800), true);
                let mut acknowledged = Vec::new();
                let mut sequence = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (key, value) = (
                        format!("c{client_index}-{sequence}"),
                        format!("v{sequence}"),
                    );
                    let reply = client.execute(&format!("SET {key}={value}"));
                    if classify(&reply) == ReplyKind::Success {
                        acknowledged.push((key, value));
                    }
                    sequence += 1;
                }
                acknowledged
            })
        })
        .collect()
}

fn check_all_readable(cluster: &Cluster, acknowledged: &[(String, String)]) {
    let mut client = cluster.client(10 * SECOND);
    for (key, value) in acknowledged {
        let reply = client.execute(&format!("GET {key}"));
        assert_eq!(
            reply,
            format!("VALUE {value}"),
            "acknowledged write {key}={value} lost"
        );
    }
}

#[test]
fn killing_every_node_at_once_loses_no_acknowledged_write() {
    for seed in [1u64, 2, 3] {
        let mut cluster = common::cluster(3, &[]);
        cluster.require_leader(2 * SECOND);
        let stop = Arc::new(AtomicBool::new(false));
        let writers = write_until_stopped(&cluster, 4, &stop);
        // A different moment for each seed, while writes are in flight.
        std::thread::sleep(Duration::from_millis(300 + seed * 170));
        for index in 0..3 {
            cluster.kill(index);
        }
        stop.store(true, Ordering::Relaxed);
        let acknowledged: Vec<(String, String)> = writers
            .into_iter()
            .flat_map(|writer| writer.join().expect("writer thread"))
            .collect();
        assert!(
            acknowledged.len() > 20,
            "seed {seed}: only {} writes before the kill",
            acknowledged.len()
        );
        for index in 0..3 {
            cluster.start_node(index).expect("restart");
        }
        cluster.require_leader(3 * SECOND);
        check_all_readable(&cluster, &acknowledged);
        cluster.require_converged(5 * SECOND);
    }
}

#[test]
fn leader_killed_while_writes_flow_comes_back_consistent() {
    let mut cluster = common::cluster(3, &[]);
    let leader = cluster.require_leader(2 * SECOND);
    let stop = Arc::new(AtomicBool::new(false));
    let writers = write_until_stopped(&cluster, 4, &stop);
    std::thread::sleep(Duration::from_millis(400));
    cluster.kill(leader);
    std::thread::sleep(Duration::from_millis(400));
    cluster.start_node(leader).expect("restart");
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let acknowledged: Vec<(String, String)> = writers
        .into_iter()
        .flat_map(|writer| writer.join().expect("writer thread"))
        .collect();
    let (applied, _) = cluster.require_converged(5 * SECOND);
    assert!(applied > 0);
    check_all_readable(&cluster, &acknowledged);
}

#[test]
fn a_restarted_node_recovers_its_log_from_disk_before_hearing_the_leader() {
    let mut cluster = common::cluster(3, &[]);
    let leader = cluster.require_leader(2 * SECOND);
    let mut client = cluster.client(2 * SECOND);
    for index in 0..100 {
        assert!(client
            .execute(&format!("SET r{index}={index}"))
            .starts_with("OK"));
    }
    let (applied, _) = cluster.require_converged(3 * SECOND);
    let follower = (leader + 1) % 3;
    cluster.kill(follower);
    let others: Vec<usize> = (0..3).filter(|&index| index != follower).collect();
    for &index in &others {
        cluster.signal(index, "STOP");
    }
    cluster.start_node(follower).expect("restart");
    let status = poll_until(2 * SECOND, || cluster.status(follower));
    for &index in &others {
        cluster.signal(index, "CONT");
    }
    let status = status.expect("the restarted node answers STATUS");
    assert_eq!(
        status["last_index"].parse::<u64>().ok(),
        Some(applied),
        "its log came back from disk, not from the leader: {status:?}"
    );
    let log = std::fs::read_to_string(cluster.log_path(follower)).unwrap_or_default();
    assert!(
        log.contains(&format!("Recovered {applied} entries")),
        "recovery is logged:\n{log}"
    );
    cluster.require_converged(3 * SECOND);
}

#[test]
fn a_second_daemon_on_the_same_data_dir_exits_1() {
    let cluster = common::cluster(1, &[]);
    cluster.require_leader(2 * SECOND);
    let mut arguments = cluster.nodes[0].arguments.clone();
    let port_position = arguments
        .iter()
        .position(|argument| argument == "--port")
        .expect("--port");
    arguments[port_position + 1] = common::free_ports(1).expect("port")[0].to_string();
    let output = std::process::Command::new(RAFTLITE)
        .args(&arguments)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("locked by another process"), "{stderr}");
    assert!(
        cluster.status(0).is_some(),
        "the first daemon keeps serving"
    );
}

#[test]
fn a_corrupt_log_refuses_to_start_naming_the_file_and_offset() {
    let mut cluster = common::cluster(1, &[]);
    cluster.require_leader(2 * SECOND);
    let mut client = cluster.client(2 * SECOND);
    for index in 0..20 {
        assert!(client
            .execute(&format!("SET x{index}=some value {index}"))
            .starts_with("OK"));
    }
    cluster.kill(0);
    let log_dir = cluster.data_dir(0).join("log");
    let segment = std::fs::read_dir(&log_dir)
        .expect("log dir")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|extension| extension == "seg"))
        .expect("a segment");
    let mut bytes = std::fs::read(&segment).expect("read segment");
    // The middle of the records, not of the file: the newest segment is
    // preallocated, and damage in its zero tail is no acknowledged data.
    let records_end = bytes.iter().rposition(|&byte| byte != 0).expect("records");
    let middle = records_end / 2;
    bytes[middle] ^= 0x10;
    std::fs::write(&segment, &bytes).expect("write segment");
    let started = Instant::now();
    let output = std::process::Command::new(RAFTLITE)
        .args(&cluster.nodes[0].arguments)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < 5 * SECOND);
    let file_name = segment
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("?");
    assert!(stderr.contains(file_name), "names the file: {stderr}");
    assert!(stderr.contains("byte "), "names the offset: {stderr}");
    assert!(
        stderr.contains("docs/OPERATIONS.md"),
        "points to the guide: {stderr}"
    );
    assert_eq!(
        std::fs::read(&segment).expect("read"),
        bytes,
        "nothing is rewritten"
    );
}

#[test]
fn storage_counters_show_group_commit() {
    let cluster = common::cluster(3, &[]);
    let leader = cluster.require_leader(2 * SECOND);
    let written = Arc::new(Mutex::new(0usize));
    let threads: Vec<_> = (0..8)
        .map(|thread| {
            let addresses = cluster.addresses();
            let written = Arc::clone(&written);
            std::thread::spawn(move || {
                let mut client = Client::new(addresses, 2 * SECOND, true);
                for index in 0..50 {
                    if client
                        .execute(&format!("SET g{thread}-{index}=1"))
                        .starts_with("OK")
                    {
                        *written.lock().expect("lock") += 1;
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("writer");
    }
    let status = cluster.status(leader).expect("leader answers");
    let fsyncs: u64 = status["fsyncs"].parse().expect("fsyncs");
    let synced: u64 = status["synced_entries"].parse().expect("synced_entries");
    assert!(
        synced >= *written.lock().expect("lock") as u64,
        "{status:?}"
    );
    assert!(
        fsyncs > 0 && fsyncs < synced,
        "concurrent writes share syncs: {status:?}"
    );
    let number = |status: &std::collections::HashMap<String, String>, name: &str| -> f64 {
        status
            .get(name)
            .and_then(|value| value.parse().ok())
            .unwrap_or(-1.0)
    };
    assert!(number(&status, "entries_per_fsync") > 1.0, "{status:?}");
    assert!(number(&status, "appends_sent") > 0.0, "{status:?}");
    assert!(number(&status, "batch_average") >= 1.0, "{status:?}");
    assert!(number(&status, "bytes_in") > 0.0 && number(&status, "bytes_out") > 0.0);
    assert!(
        number(&status, "entries_appended") >= synced as f64 - 1.0,
        "{status:?}"
    );
    let follower = cluster.status((leader + 1) % 3).expect("follower answers");
    assert!(number(&follower, "appends_received") > 0.0, "{follower:?}");
}
