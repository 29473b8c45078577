//! Process tests of snapshots (issue 13): memory and disk stay flat under
//! endless writes, a follower far behind catches up by snapshot, a restart
//! costs the state and not the history, a damaged snapshot is refused by
//! name (or passed over when an older one and the log cover it), and the
//! SNAPSHOT command and its STATUS fields.
//!
//! Load comes from `bench`, next to the daemon: `cargo test --release`
//! (`make test`) builds it with the workspace, but `cargo test --test
//! snapshots` alone does not, so run `cargo build --release --bins` first
//! there (a missing `bench` fails with that hint). The tests that drive
//! load hold the machine alone, so their counts come at the pace a loaded
//! 2-core machine allows; every wait is a poll with a generous bound.

mod common;

use common::{free_ports, poll_until, Cluster, TempDir, RAFTLITE};
use raftlite::client::Client;
use raftlite::constants::SNAPSHOT_CHUNK_SIZE_MAX;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

const SECOND: Duration = Duration::from_secs(1);

/// Tests that run `bench` flat out take the machine alone; the others
/// write little and may share it with each other.
static MACHINE: RwLock<()> = RwLock::new(());

fn shared_machine() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(PoisonError::into_inner)
}

fn whole_machine() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(PoisonError::into_inner)
}

// ---- load ------------------------------------------------------------------

/// A `bench` run against a cluster: SETs only, over a small key space.
/// Killed (by its own pid) when dropped.
struct Load {
    child: Child,
}

impl Load {
    /// Endless writes (until `stop` or drop) over `keys` keys.
    fn endless(cluster: &Cluster, keys: usize, value_size: usize) -> Load {
        Load::spawn(cluster, keys, value_size, &["--duration", "600"])
    }

    /// Exactly `operations` SETs, then `bench` exits (`finish`).
    fn counted(cluster: &Cluster, operations: u64, value_size: usize) -> Load {
        let operations = operations.to_string();
        Load::spawn(cluster, 300, value_size, &["--ops", &operations])
    }

    fn spawn(cluster: &Cluster, keys: usize, value_size: usize, extra: &[&str]) -> Load {
        let bench = Path::new(RAFTLITE).with_file_name("bench");
        assert!(
            bench.exists(),
            "{} is missing: `cargo build --release --bins` builds it",
            bench.display()
        );
        let child = Command::new(&bench)
            .args(["--cluster", &cluster.addresses().join(",")])
            .args(["--clients", "16", "--read-ratio", "0"])
            .args(["--keys", &keys.to_string()])
            .args(["--value-size", &value_size.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bench");
        Load { child }
    }

    /// Waits for a counted run to end by itself; panics after `timeout`.
    fn finish(mut self, timeout: Duration) {
        let status = poll_until(timeout, || self.child.try_wait().ok().flatten());
        let status = status.unwrap_or_else(|| panic!("bench did not finish in {timeout:?}"));
        assert!(status.success(), "bench failed: {status}");
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- observing nodes -------------------------------------------------------

/// Node `index`'s STATUS fields, waiting for a busy node.
fn status_of(cluster: &Cluster, index: usize) -> HashMap<String, String> {
    poll_until(10 * SECOND, || cluster.status(index)).unwrap_or_else(|| {
        panic!(
            "{} does not answer STATUS: {:?}",
            cluster.nodes[index].id,
            cluster.statuses()
        )
    })
}

fn number(status: &HashMap<String, String>, name: &str) -> u64 {
    status
        .get(name)
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("STATUS field {name} missing or not a number: {status:?}"))
}

/// Polls node `index` until it has applied at least `applied` entries.
fn wait_applied(cluster: &Cluster, index: usize, applied: u64, timeout: Duration) {
    let reached = poll_until(timeout, || {
        let status = cluster.status(index)?;
        (number(&status, "applied") >= applied).then_some(())
    });
    reached.unwrap_or_else(|| {
        panic!(
            "{} did not apply {applied} entries within {timeout:?}: {:?}",
            cluster.nodes[index].id,
            cluster.statuses()
        )
    })
}

/// One command to node `index` itself (STATUS and SNAPSHOT are answered
/// by the node contacted); the reply line.
fn ask(cluster: &Cluster, index: usize, command: &str) -> String {
    ask_address(&cluster.nodes[index].address(), command)
}

fn ask_address(address: &str, command: &str) -> String {
    let mut client = Client::new(vec![address.to_string()], 20 * SECOND, false);
    client.execute(command)
}

/// `OK snapshot index=I bytes=B` as (I, B).
fn snapshot_reply(reply: &str) -> (u64, u64) {
    let parsed = reply
        .strip_prefix("OK snapshot index=")
        .and_then(|rest| rest.split_once(" bytes="))
        .and_then(|(index, bytes)| Some((index.parse().ok()?, bytes.parse().ok()?)));
    parsed.unwrap_or_else(|| panic!("not a SNAPSHOT reply: {reply:?}"))
}

fn snapshot_path(data_dir: &Path, index: u64) -> PathBuf {
    data_dir.join(format!("snapshot-{index:020}.snap"))
}

/// The indexes of the snapshot files in a data dir, ascending.
fn snapshot_indexes(data_dir: &Path) -> Vec<u64> {
    let mut indexes: Vec<u64> = std::fs::read_dir(data_dir)
        .expect("read the data dir")
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().to_string();
            name.strip_prefix("snapshot-")?
                .strip_suffix(".snap")?
                .parse()
                .ok()
        })
        .collect();
    indexes.sort_unstable();
    indexes
}

/// The first index of the oldest log segment on disk.
fn first_segment_index(data_dir: &Path) -> u64 {
    std::fs::read_dir(data_dir.join("log"))
        .expect("read the log dir")
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().to_string();
            name.strip_suffix(".seg")?.parse().ok()
        })
        .min()
        .expect("a segment")
}

/// Bytes of every file under `dir` (apparent sizes: a preallocated
/// segment counts whole).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(metadata) if metadata.is_dir() => dir_bytes(&entry.path()),
            Ok(metadata) => metadata.len(),
            Err(_) => 0,
        })
        .sum()
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("a VmRSS line");
    line.split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS in kB")
}

fn log_size(cluster: &Cluster, index: usize) -> u64 {
    std::fs::metadata(cluster.log_path(index)).map_or(0, |metadata| metadata.len())
}

/// The lines node `index`'s log gained after byte `offset`.
fn log_after(cluster: &Cluster, index: usize, offset: u64) -> Vec<String> {
    let bytes = std::fs::read(cluster.log_path(index)).unwrap_or_default();
    let start = (offset as usize).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..])
        .lines()
        .map(str::to_string)
        .collect()
}

fn wait_log_line(cluster: &Cluster, index: usize, offset: u64, text: &str, timeout: Duration) {
    let found = poll_until(timeout, || {
        let lines = log_after(cluster, index, offset);
        lines.iter().any(|line| line.contains(text)).then_some(())
    });
    found.unwrap_or_else(|| {
        panic!(
            "{}'s log has no line with {text:?} within {timeout:?}",
            cluster.nodes[index].id
        )
    })
}

/// Flips one bit in the middle of a snapshot file's body: its CRC no
/// longer matches. Returns the file's size.
fn damage_snapshot(path: &Path) -> u64 {
    let mut bytes = std::fs::read(path).expect("read the snapshot");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x04;
    std::fs::write(path, &bytes).expect("write the snapshot");
    bytes.len() as u64
}

// ---- 1. flat memory and disk -----------------------------------------------

struct Sample {
    applied: u64,
    leader_rss_kib: u64,
    dir_bytes: Vec<u64>,
}

fn sample(cluster: &Cluster, leader: usize, leader_pid: u32) -> Sample {
    Sample {
        applied: number(&status_of(cluster, leader), "applied"),
        leader_rss_kib: rss_kib(leader_pid),
        dir_bytes: (0..3)
            .map(|index| dir_bytes(&cluster.data_dir(index)))
            .collect(),
    }
}

/// With snapshots every 5000 entries, 500 trailing and 1 MiB segments, a
/// data dir holds two small snapshots (300 keys of 100 bytes: ~40 KB
/// each), the segments from 500 below the last snapshot on (at most the
/// 5500 entries since, one segment of slack below them because
/// compaction deletes whole segments, and the newest, preallocated whole:
/// about 3 MiB at the most, 1 MiB at the least). So between any two
/// moments a dir grows by at most ~2 MiB; 3 MiB leaves margin. The
/// leader's memory holds the same bounded log and 300 keys: its RSS
/// moves by a few hundred KiB; 4 MiB leaves margin for the allocator.
/// With snapshots off (--snapshot-entries 1000000000) the same 100 000
/// entries add ~16 MB to every dir and ~20 MB to the leader's RSS.
const DIR_GROWTH_BYTES_MAX: u64 = 3 << 20;
const RSS_GROWTH_KIB_MAX: u64 = 4 << 10;

#[test]
fn memory_and_disk_stay_flat_under_endless_writes_to_few_keys() {
    let _machine = whole_machine();
    let flags = [
        "--snapshot-entries",
        "5000",
        "--snapshot-trailing",
        "500",
        "--log-segment-bytes",
        "1048576",
    ];
    let mut cluster = common::cluster(3, &flags);
    let leader = cluster.require_leader(5 * SECOND);
    let leader_pid = cluster.pid(leader).expect("the leader runs");
    let _load = Load::endless(&cluster, 300, 100);
    wait_applied(&cluster, leader, 50_000, 60 * SECOND);
    let first = sample(&cluster, leader, leader_pid);
    wait_applied(&cluster, leader, first.applied + 100_000, 90 * SECOND);
    let second = sample(&cluster, leader, leader_pid);
    let report = format!(
        "at {} entries: rss {} KiB, dirs {:?}; at {}: rss {} KiB, dirs {:?}",
        first.applied,
        first.leader_rss_kib,
        first.dir_bytes,
        second.applied,
        second.leader_rss_kib,
        second.dir_bytes
    );
    eprintln!("{report}");
    let rss_growth = second.leader_rss_kib.saturating_sub(first.leader_rss_kib);
    assert!(
        rss_growth <= RSS_GROWTH_KIB_MAX,
        "the leader's RSS grew by {rss_growth} KiB: {report}"
    );
    for (before, after) in first.dir_bytes.iter().zip(&second.dir_bytes) {
        let growth = after.saturating_sub(*before);
        assert!(
            growth <= DIR_GROWTH_BYTES_MAX,
            "a data dir grew by {growth} bytes: {report}"
        );
    }
    let status = status_of(&cluster, leader);
    assert!(
        number(&status, "snapshot_index") > first.applied,
        "snapshots were taken: {status:?}"
    );
    assert_eq!(cluster.exits(), Vec::<String>::new(), "no node stopped");
}

// ---- 2. catch-up by snapshot -----------------------------------------------

/// The sizes in the `Sending snapshot to ID (index=.., bytes=B)` lines.
fn sent_snapshot_sizes(lines: &[String], to: &str) -> Vec<u64> {
    let prefix = format!("Sending snapshot to {to} (index=");
    lines
        .iter()
        .filter_map(|line| {
            let rest = line.split_once(&prefix)?.1;
            let bytes = rest.split_once("bytes=")?.1.strip_suffix(')')?;
            bytes.parse().ok()
        })
        .collect()
}

/// 3000 keys of 500 bytes: a snapshot of ~1.6 MB, more than one chunk
/// (SNAPSHOT_CHUNK_SIZE_MAX), so the transfer goes by offsets.
#[test]
fn a_follower_behind_the_compacted_log_catches_up_by_snapshot() {
    let _machine = whole_machine();
    let flags = [
        "--snapshot-entries",
        "2000",
        "--snapshot-trailing",
        "200",
        "--log-segment-bytes",
        "1048576",
    ];
    let mut cluster = common::cluster(3, &flags);
    let leader = cluster.require_leader(5 * SECOND);
    let follower = (leader + 1) % 3;
    Load::counted(&cluster, 1000, 500).finish(30 * SECOND);
    let behind = number(&status_of(&cluster, follower), "last_index");
    // The leader may start the transfer while the follower is still down
    // (it sends chunks into the void until the follower is back), so its
    // `Sending snapshot` line is looked for from the kill on.
    let sent_from: Vec<u64> = (0..3).map(|index| log_size(&cluster, index)).collect();
    cluster.kill(follower);
    let load = Load::endless(&cluster, 3000, 500);
    // The leader's log must begin well past anything the follower holds
    // (it may have appended a few more entries than its STATUS said).
    let compacted = poll_until(60 * SECOND, || {
        let status = cluster.status(leader)?;
        (number(&status, "first_index") > behind + 10_000).then_some(status)
    });
    let compacted = compacted.unwrap_or_else(|| {
        panic!(
            "the leader did not compact past {behind}: {:?}",
            cluster.statuses()
        )
    });
    let offsets: Vec<u64> = (0..3).map(|index| log_size(&cluster, index)).collect();
    cluster.start_node(follower).expect("restart the follower");
    // Installed while the writes go on; then they stop and all converge.
    let installed = "Installed snapshot from ";
    wait_log_line(
        &cluster,
        follower,
        offsets[follower],
        installed,
        30 * SECOND,
    );
    drop(load);
    let (applied, digest) = cluster.require_converged(30 * SECOND);
    assert!(applied > number(&compacted, "first_index"));
    let status = status_of(&cluster, follower);
    assert_eq!(
        (number(&status, "applied"), &status["digest"]),
        (applied, &digest)
    );
    // Leadership may have moved meanwhile: any other node may have sent it.
    let to = &cluster.nodes[follower].id;
    let sizes: Vec<u64> = (0..3)
        .filter(|&index| index != follower)
        .flat_map(|index| sent_snapshot_sizes(&log_after(&cluster, index, sent_from[index]), to))
        .collect();
    assert!(
        sizes
            .iter()
            .any(|&size| size > SNAPSHOT_CHUNK_SIZE_MAX as u64),
        "no node logged sending {to} a snapshot of more than one chunk: {sizes:?}"
    );
    assert_eq!(cluster.exits(), Vec::<String>::new(), "no node stopped");
}

// ---- 3. restart cost -------------------------------------------------------

const RESTART_SNAPSHOT_ENTRIES: u64 = 5000;
const RESTART_TRAILING: u64 = 500;
/// Entries applied while a snapshot is being written and synced (it
/// covers the applied index it began at), and not yet committed ones: a
/// few loop turns of writes.
const RESTART_ENTRIES_MARGIN: u64 = 2500;

/// The `Recovered snapshot at index I and N entries` line, as (I, N).
fn recovered_line(lines: &[String]) -> (u64, u64) {
    let parsed = lines.iter().find_map(|line| {
        let rest = line.split_once("Recovered snapshot at index ")?.1;
        let (index, rest) = rest.split_once(" and ")?;
        let entries = rest.split_once(" entries")?.0;
        Some((index.parse().ok()?, entries.parse().ok()?))
    });
    parsed.unwrap_or_else(|| panic!("no `Recovered snapshot at index` line: {lines:?}"))
}

#[test]
fn a_restart_reads_the_snapshot_and_a_bounded_tail_not_the_whole_history() {
    let _machine = whole_machine();
    let entries = RESTART_SNAPSHOT_ENTRIES.to_string();
    let trailing = RESTART_TRAILING.to_string();
    let flags = [
        "--snapshot-entries",
        &entries,
        "--snapshot-trailing",
        &trailing,
        "--log-segment-bytes",
        "1048576",
    ];
    let mut cluster = common::cluster(1, &flags);
    cluster.require_leader(5 * SECOND);
    let load = Load::endless(&cluster, 300, 100);
    let bound = RESTART_SNAPSHOT_ENTRIES + RESTART_TRAILING + RESTART_ENTRIES_MARGIN;
    let history = 10 * bound;
    wait_applied(&cluster, 0, history, 60 * SECOND);
    drop(load);
    let (applied, digest) = cluster.require_converged(10 * SECOND);
    cluster.kill(0);
    let offset = log_size(&cluster, 0);
    let started = Instant::now();
    cluster.start_node(0).expect("restart");
    let answered = poll_until(10 * SECOND, || cluster.status(0));
    let took = started.elapsed();
    assert!(
        answered.is_some(),
        "no STATUS answer within 10 s of the restart"
    );
    let (index, tail) = recovered_line(&log_after(&cluster, 0, offset));
    assert!(
        tail <= bound && index + tail == applied,
        "recovered a snapshot at {index} and {tail} entries, for {applied} applied (bound {bound})"
    );
    assert!(
        took < 5 * SECOND,
        "STATUS answered {took:?} after the restart"
    );
    // Its state came back whole: the same digest once it re-applied.
    let back = poll_until(10 * SECOND, || {
        let status = cluster.status(0)?;
        (number(&status, "applied") >= applied && status["digest"] == digest).then_some(())
    });
    assert!(
        back.is_some(),
        "digest {digest} not back: {:?}",
        cluster.statuses()
    );
}

// ---- 4. a damaged snapshot -------------------------------------------------

/// SNAPSHOT to node `index` after `operations` more SETs of `value_size`
/// bytes; the snapshot's index.
fn write_then_snapshot(cluster: &Cluster, index: usize, operations: u64, value_size: usize) -> u64 {
    Load::counted(cluster, operations, value_size).finish(60 * SECOND);
    // A follower snapshots what it has applied: let it catch up first.
    let leader = cluster.require_leader(5 * SECOND);
    let target = number(&status_of(cluster, leader), "commit");
    wait_applied(cluster, index, target, 20 * SECOND);
    let (snapshot_index, bytes) = snapshot_reply(&ask(cluster, index, "SNAPSHOT"));
    let path = snapshot_path(&cluster.data_dir(index), snapshot_index);
    assert_eq!(
        std::fs::metadata(&path).map(|meta| meta.len()).ok(),
        Some(bytes)
    );
    snapshot_index
}

/// Small segments, no trailing log, snapshots only on request: the log
/// after the second snapshot begins past the first one (1 KB values fill
/// a 1 MiB segment in ~1000 entries), so nothing covers the damaged
/// newest snapshot and the start is refused.
#[test]
fn a_damaged_snapshot_the_log_cannot_replace_is_refused_by_name_and_changes_nothing() {
    let _machine = shared_machine();
    let flags = [
        "--snapshot-entries",
        "1000000000",
        "--snapshot-trailing",
        "0",
        "--log-segment-bytes",
        "1048576",
    ];
    let mut cluster = common::cluster(1, &flags);
    cluster.require_leader(5 * SECOND);
    let older = write_then_snapshot(&cluster, 0, 3000, 1000);
    let newer = write_then_snapshot(&cluster, 0, 3000, 1000);
    let data_dir = cluster.data_dir(0);
    let compacted = poll_until(10 * SECOND, || {
        (first_segment_index(&data_dir) > older + 1).then_some(())
    });
    assert!(
        compacted.is_some(),
        "the log still begins at {} (older snapshot {older})",
        first_segment_index(&data_dir)
    );
    cluster.kill(0);
    assert_eq!(snapshot_indexes(&data_dir), vec![older, newer]);
    let path = snapshot_path(&data_dir, newer);
    let size = damage_snapshot(&path);
    let before = common::files_in(&data_dir);
    let offset = log_size(&cluster, 0);
    cluster.start_node(0).expect("start");
    let status = cluster.wait_exit(0, 20 * SECOND);
    let lines = log_after(&cluster, 0, offset);
    assert_eq!(
        status.and_then(|status| status.code()),
        Some(1),
        "{lines:?}"
    );
    // The CRC covers the body: a flipped body byte is reported where the
    // CRC sits, size - 12 (docs/STORAGE.md, "Snapshot file").
    let location = format!(
        "corrupt snapshot: {} at byte {}: ",
        path.display(),
        size - 12
    );
    assert!(
        lines.len() == 1 && lines[0].contains(&location),
        "one line, naming the file and the CRC's offset ({location:?}): {lines:?}"
    );
    assert!(
        common::files_in(&data_dir) == before,
        "the data dir changed"
    );
}

/// Every entry kept (trailing as long as the history): the log holds what
/// the damaged newest snapshot covered, so the node starts from the older
/// one, says which file it passed over, and catches up.
#[test]
fn a_damaged_snapshot_an_older_one_and_the_log_cover_is_passed_over_by_name() {
    let _machine = shared_machine();
    let flags = [
        "--snapshot-entries",
        "1000000000",
        "--snapshot-trailing",
        "1000000000",
    ];
    let mut cluster = common::cluster(3, &flags);
    let leader = cluster.require_leader(5 * SECOND);
    let follower = (leader + 1) % 3;
    let older = write_then_snapshot(&cluster, follower, 1000, 100);
    let newer = write_then_snapshot(&cluster, follower, 1000, 100);
    assert!(newer > older);
    cluster.kill(follower);
    let data_dir = cluster.data_dir(follower);
    assert_eq!(snapshot_indexes(&data_dir), vec![older, newer]);
    let path = snapshot_path(&data_dir, newer);
    let size = damage_snapshot(&path);
    let damaged = std::fs::read(&path).expect("read");
    Load::counted(&cluster, 500, 100).finish(60 * SECOND);
    let offset = log_size(&cluster, follower);
    cluster.start_node(follower).expect("restart");
    let (applied, digest) = cluster.require_converged(30 * SECOND);
    let lines = log_after(&cluster, follower, offset);
    let warning = format!(
        "snapshot rejected, an older one used: {} at byte {}: ",
        path.display(),
        size - 12
    );
    assert!(
        lines.iter().any(|line| line.contains(&warning)),
        "warns naming the file ({warning:?}): {lines:?}"
    );
    assert_eq!(recovered_line(&lines).0, older, "{lines:?}");
    let status = status_of(&cluster, follower);
    assert_eq!(
        (number(&status, "applied"), &status["digest"]),
        (applied, &digest)
    );
    assert_eq!(
        std::fs::read(&path).ok(),
        Some(damaged),
        "the damaged file is left for the operator"
    );
    assert_eq!(cluster.exits(), Vec::<String>::new(), "no node stopped");
}

// ---- 5. SNAPSHOT and STATUS ------------------------------------------------

#[test]
fn snapshot_answers_with_its_index_and_size_and_status_shows_it() {
    let _machine = shared_machine();
    let cluster = common::cluster(1, &[]);
    cluster.require_leader(5 * SECOND);
    let mut client = cluster.client(5 * SECOND);
    for index in 0..100 {
        let reply = client.execute(&format!("SET s{index}=value {index}"));
        assert!(reply.starts_with("OK"), "{reply}");
    }
    let (applied, _) = cluster.require_converged(5 * SECOND);
    let reply = ask(&cluster, 0, "SNAPSHOT");
    let (index, bytes) = snapshot_reply(&reply);
    assert_eq!(index, applied, "{reply}");
    let path = snapshot_path(&cluster.data_dir(0), index);
    let size = std::fs::metadata(&path).map(|meta| meta.len()).ok();
    assert_eq!(size, Some(bytes), "{} holds the snapshot", path.display());
    let status = status_of(&cluster, 0);
    assert_eq!(number(&status, "snapshot_index"), index, "{status:?}");
    let first_index = number(&status, "first_index");
    assert!((1..=index + 1).contains(&first_index), "{status:?}");
    let loop_turn: Option<f64> = status["loop_turn_max_ms"].parse().ok();
    assert!(loop_turn.is_some_and(|ms| ms >= 0.0), "{status:?}");
    // Nothing new since: the same snapshot, answered at once.
    assert_eq!(ask(&cluster, 0, "SNAPSHOT"), reply);
}

/// A member whose peers never answer: it applies nothing, ever.
struct LoneMember {
    child: Child,
    address: String,
    _dir: TempDir,
}

impl LoneMember {
    fn start() -> LoneMember {
        let dir = TempDir::new("snapshot-lone");
        let ports = free_ports(3).expect("ports");
        let peers = format!("B:{},C:{}", ports[1], ports[2]);
        let child = Command::new(RAFTLITE)
            .args([
                "--id",
                "A",
                "--port",
                &ports[0].to_string(),
                "--peers",
                &peers,
            ])
            .arg("--data-dir")
            .arg(dir.0.join("A"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start raftlite");
        let address = format!("127.0.0.1:{}", ports[0]);
        LoneMember {
            child,
            address,
            _dir: dir,
        }
    }
}

impl Drop for LoneMember {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn snapshot_on_a_node_with_nothing_applied_is_unavailable() {
    let _machine = shared_machine();
    let lone = LoneMember::start();
    let status = poll_until(10 * SECOND, || {
        let reply = ask_address(&lone.address, "STATUS");
        reply.starts_with("STATUS").then_some(reply)
    });
    let status = status.expect("the node answers STATUS");
    assert!(status.contains(" applied=0 "), "{status}");
    let reply = ask_address(&lone.address, "SNAPSHOT");
    assert!(reply.starts_with("ERR UNAVAILABLE "), "{reply}");
    assert!(status.contains(" snapshot_index=0"), "{status}");
}
