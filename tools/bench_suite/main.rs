//! bench-suite (`make bench`): the benchmark suite on a local 3-node
//! cluster — SET with 1, 64 and 256 clients, linearizable GET with 64,
//! leader failover over several trials, and a follower catching up a long
//! log — printed as one table and saved under run/bench/<timestamp>/.
//! With `--compare-etcd` (`make bench-compare`) the same workloads also run
//! against a 3-member etcd on loopback, with the same load generator, and
//! the table shows both with ratios, failover included (etcd with the
//! issue's heartbeat 50 ms and election 300 ms). `--failover-only` skips
//! the throughput and catch-up rows for a quick check of the failover ones.
//! The two 1M-key SET rows (issue 13: without snapshots and with one every
//! 20k entries) run after the others, or alone with `--snapshots-only`;
//! `--growth` runs instead the measurements of memory, disk and restart
//! time against history (`growth.rs`).

mod etcd;
mod etcd_client;
mod growth;
mod probe;
use etcd_client::EtcdClient;
// bench's etcd requests and responses (the failover client uses them too).
use raftlite_kit::etcd_gateway as gateway;

use raftlite::cli;
use raftlite::reply::{Answer, Reply};
use raftlite_kit::fault::{poll_until, sibling, ClusterSpec, LocalCluster};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

pub(crate) struct Options {
    duration_s: u64,
    trials: usize,
    catch_up_entries: u64,
    fsync: bool,
    out: PathBuf,
    compare_etcd: bool,
    failover_only: bool,
    snapshots_only: bool,
    /// `--growth S`: the history runs of `growth.rs`, S seconds each.
    growth_s: Option<u64>,
}

/// One workload's figures, read back from `bench --json`.
struct Row {
    name: String,
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    p999_ms: f64,
    /// The leader's STATUS `loop_turn_max_ms` after the run (since it
    /// started), if it answered.
    loop_turn_max_ms: Option<f64>,
    /// Said below the table: what else was measured during the row.
    notes: Vec<String>,
}

/// What the suite reads of `bench --json` (tools/bench/report.rs has the
/// whole object; the other keys are not read). A percentile is null when
/// no operation succeeded.
#[derive(Deserialize)]
struct BenchJson {
    ops_per_sec: Option<f64>,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    errors: u64,
    p999_ms: Option<f64>,
    cpu_user_s: Option<f64>,
    cpu_system_s: Option<f64>,
}

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;

/// What `main` returns, listed by `--help`.
const EXIT_CODES: &str = "Exit codes:\n\
\x20 0  every row ran; the table is printed and saved as table.md under --out (and --help)\n\
\x20 1  a step failed and the suite stopped (message on stderr): a cluster or etcd did\n\
\x20    not start or elect a leader, a bench run failed, a failover write was not\n\
\x20    acknowledged, a follower did not catch up, or a result could not be written\n\
\x20 2  usage error\n";

const USAGE: &str = "Usage: bench-suite [--duration S] [--trials N] [--catch-up N] [--fsync MODE] [--out DIR] [--compare-etcd] [--failover-only | --snapshots-only | --growth S]";

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let help = || format!("{}\n{EXIT_CODES}", option_table().usage(USAGE));
    let parsed = parse_options(&arguments);
    let options = match cli::options_or_exit("bench-suite", parsed, help, EXIT_USAGE) {
        Ok(options) => options,
        Err(code) => return code,
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-suite: {error}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn option_table() -> getopts::Options {
    let mut table = getopts::Options::new();
    table.optopt("", "duration", "seconds per workload (default 10)", "S");
    table.optopt("", "trials", "leader failover trials (default 10)", "N");
    table.optopt(
        "",
        "catch-up",
        "entries a follower catches up (default 100000)",
        "N",
    );
    table.optopt(
        "",
        "fsync",
        "always or never (default always: the headline)",
        "MODE",
    );
    table.optopt(
        "",
        "out",
        "where results go (default run/bench/<timestamp>)",
        "DIR",
    );
    table.optflag(
        "",
        "compare-etcd",
        "also run the workloads against a local 3-member etcd (needs the etcd binary)",
    );
    table.optflag(
        "",
        "failover-only",
        "run only the failover trials (with --compare-etcd, etcd's too): a quick check",
    );
    table.optflag(
        "",
        "snapshots-only",
        "run only the two 1M-key SET rows, without snapshots and with one every 20k entries (about 90 s)",
    );
    table.optopt(
        "",
        "growth",
        "instead of the suite: memory, disk and restart time against history, S seconds of \
         writes with snapshots at the defaults and with them off, then a follower catching up \
         1M writes each way (about 2 S + 90 seconds; growth.rs)",
        "S",
    );
    table.optflag("h", "help", "print this help");
    table
}

/// `Ok(None)` for --help.
fn parse_options(arguments: &[String]) -> Result<Option<Options>, String> {
    let matches = raftlite::cli::parse(&option_table(), arguments)?;
    if matches.opt_present("help") {
        return Ok(None);
    }
    if let Some(extra) = matches.free.first() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    let number = |name: &str, default: u64| -> Result<u64, String> {
        matches.opt_str(name).map_or(Ok(default), |text| {
            text.parse::<u64>()
                .ok()
                .filter(|&value| value > 0)
                .ok_or(format!("--{name} {text:?}: expected a positive number"))
        })
    };
    let fsync = match matches.opt_str("fsync").as_deref() {
        None | Some("always") => true,
        Some("never") => false,
        Some(other) => return Err(format!("--fsync {other:?}: expected always or never")),
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    Ok(Some(Options {
        duration_s: number("duration", 10)?,
        trials: number("trials", 10)? as usize,
        catch_up_entries: number("catch-up", 100_000)?,
        fsync,
        out: matches.opt_str("out").map_or_else(
            || PathBuf::from(format!("run/bench/{stamp}")),
            PathBuf::from,
        ),
        compare_etcd: matches.opt_present("compare-etcd"),
        failover_only: matches.opt_present("failover-only"),
        snapshots_only: matches.opt_present("snapshots-only"),
        growth_s: matches
            .opt_present("growth")
            .then(|| number("growth", 75))
            .transpose()?,
    }))
    .and_then(|options| match options {
        Some(options) if exclusive_modes(&options) > 1 => {
            Err("--failover-only, --snapshots-only and --growth exclude each other".to_string())
        }
        options => Ok(options),
    })
}

fn exclusive_modes(options: &Options) -> usize {
    [
        options.failover_only,
        options.snapshots_only,
        options.growth_s.is_some(),
    ]
    .iter()
    .filter(|&&mode| mode)
    .count()
}

/// A fresh 3-node cluster with a leader; `flags` go to every node.
pub(crate) fn start_cluster(
    options: &Options,
    name: &str,
    flags: &[&str],
) -> Result<LocalCluster, String> {
    let fsync = if options.fsync { "always" } else { "never" };
    let mut extra_arguments = vec!["--fsync".to_string(), fsync.to_string()];
    extra_arguments.extend(flags.iter().map(|flag| flag.to_string()));
    let spec = ClusterSpec {
        size: 3,
        dir: options.out.join(name),
        binary: sibling("raftlite")?,
        extra_arguments,
        proxied: false,
        remove_dir_on_drop: true,
    };
    let cluster =
        LocalCluster::start(spec).map_err(|error| format!("cannot start a cluster: {error}"))?;
    cluster
        .wait_for_leader(Duration::from_secs(5))
        .ok_or("no leader")?;
    Ok(cluster)
}

/// (name, clients, read ratio) of each throughput row.
const WORKLOADS: [(&str, usize, &str); 4] = [
    ("SET, 1 client", 1, "0"),
    ("SET, 64 clients", 64, "0"),
    ("SET, 256 clients", 256, "0"),
    ("GET (linearizable), 64 clients", 64, "1"),
];

fn run(options: &Options) -> Result<(), String> {
    std::fs::create_dir_all(&options.out).map_err(|error| error.to_string())?;
    if let Some(seconds) = options.growth_s {
        let report = growth::run(options, seconds)?;
        println!("{report}");
        return std::fs::write(options.out.join("growth.md"), &report)
            .map_err(|error| error.to_string());
    }
    let rows = if options.failover_only || options.snapshots_only {
        Vec::new()
    } else {
        raftlite_rows(options)?
    };
    let snapshot_rows = if options.failover_only {
        Vec::new()
    } else {
        snapshot_rows(options)?
    };
    let failovers = if options.snapshots_only {
        Vec::new()
    } else {
        failover_trials(options)?
    };
    let catch_up = if options.failover_only || options.snapshots_only {
        None
    } else {
        Some(catch_up(options)?)
    };
    let mut report = table(&rows, &snapshot_rows, &failovers, catch_up, options);
    if options.compare_etcd {
        let etcd_rows = if options.failover_only {
            Vec::new()
        } else {
            etcd_rows(options)?
        };
        let etcd_failovers = etcd_failover_trials(options)?;
        report.push_str(&comparison(&rows, &etcd_rows, &failovers, &etcd_failovers));
    }
    println!("{report}");
    std::fs::write(options.out.join("table.md"), &report).map_err(|error| error.to_string())
}

fn raftlite_rows(options: &Options) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for (name, clients, read_ratio) in WORKLOADS {
        let cluster = start_cluster(options, "throughput", &[])?;
        let target = Target {
            protocol: "raftlite",
            addresses: cluster.addresses(),
        };
        let workload = Workload {
            name,
            clients,
            read_ratio,
            keys: THROUGHPUT_KEYS,
        };
        let mut row = run_workload(options, &target, &workload)?;
        row.loop_turn_max_ms = leader_loop_turn_max_ms(&cluster);
        rows.push(row);
    }
    Ok(rows)
}

/// Keys of the throughput rows.
const THROUGHPUT_KEYS: u64 = 10_000;
/// Live keys of the snapshot rows (issue 13: "at 1M live keys").
const SNAPSHOT_ROW_KEYS: u64 = 1_000_000;
/// (name, --snapshot-entries) of the 1M-key rows: snapshots effectively
/// off (a threshold the run never reaches), then one every 20k entries;
/// trailing is the default.
const SNAPSHOT_WORKLOADS: [(&str, &str); 2] = [
    ("SET, 64 clients, 1M keys", "1000000000"),
    (
        "SET, 64 clients, 1M keys, snapshot every 20k entries",
        "20000",
    ),
];

/// The 1M-key rows, each on a fresh cluster after a fill of every key
/// (a separate `bench --fill`, so the measured run's log lines and CPU
/// are its own), with what the leader and the machine did meanwhile.
fn snapshot_rows(options: &Options) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for (name, snapshot_entries) in SNAPSHOT_WORKLOADS {
        let flags = ["--snapshot-entries", snapshot_entries];
        let cluster = start_cluster(options, "snapshots", &flags)?;
        let target = Target {
            protocol: "raftlite",
            addresses: cluster.addresses(),
        };
        let fill_line = fill(&target, SNAPSHOT_ROW_KEYS)?;
        let leader = cluster
            .wait_for_leader(Duration::from_secs(10))
            .ok_or("no leader after the fill")?;
        let turn_after_fill = float_field(&cluster, leader, "loop_turn_max_ms");
        let log = probe::LogMark::now(cluster.log_path(leader));
        let processes = growth::node_processes(&cluster, leader);
        let window = probe::Window::start(&processes);
        let workload = Workload {
            name,
            clients: 64,
            read_ratio: "0",
            keys: SNAPSHOT_ROW_KEYS,
        };
        let mut row = run_workload(options, &target, &workload)?;
        row.notes
            .push(format!("during the run ({})", window.report()));
        row.loop_turn_max_ms = float_field(&cluster, leader, "loop_turn_max_ms");
        let still = cluster.agreed_leader() == Some(leader);
        row.notes.insert(0, fill_line);
        row.notes.push(format!(
            "leader {}{}: loop_turn_max_ms {} after the fill, {} after the run; \
             during the run: {}",
            cluster.nodes[leader].id,
            if still {
                ""
            } else {
                " (no longer leader at the end)"
            },
            shown(turn_after_fill),
            shown(row.loop_turn_max_ms),
            probe::snapshots_line(&probe::snapshots_taken(&log.since()))
        ));
        keep_logs(&cluster, &options.out, &slug(name));
        rows.push(row);
    }
    Ok(rows)
}

/// Copies the nodes' logs out of a cluster's dir (removed with it) to
/// `<prefix>-<id>.log` under `out`, for reading the loop's stalls after.
pub(crate) fn keep_logs(cluster: &LocalCluster, out: &Path, prefix: &str) {
    for (index, node) in cluster.nodes.iter().enumerate() {
        let kept = out.join(format!("{prefix}-{}.log", node.id));
        if let Err(error) = std::fs::copy(cluster.log_path(index), &kept) {
            eprintln!("bench-suite: cannot keep {}: {error}", kept.display());
        }
    }
}

/// A workload's name as a file name: its letters and digits, lower case.
fn slug(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_lowercase()
}

/// Writes every one of `keys` keys once (`bench --fill`, 64 clients,
/// 64-byte values); returns bench's `fill:` line.
/// `bench --fill` of `keys` keys (8-byte keys, 64-byte values, 64
/// clients) into the cluster at `addresses`, and one operation after it.
pub(crate) fn fill_command(addresses: &[String], keys: u64) -> Result<Command, String> {
    let mut command = Command::new(sibling("bench")?);
    command
        .args(["--cluster", &addresses.join(",")])
        .args([
            "--clients",
            "64",
            "--read-ratio",
            "0",
            "--fill",
            "--ops",
            "1",
        ])
        .args(["--key-size", "8", "--value-size", "64"])
        .args(["--keys", &keys.to_string()]);
    Ok(command)
}

fn fill(target: &Target, keys: u64) -> Result<String, String> {
    let output = fill_command(&target.addresses, keys)?
        .output()
        .map_err(|error| format!("cannot run bench: {error}"))?;
    if !output.status.success() {
        return Err(format!("bench --fill failed ({})", output.status));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().find(|line| line.starts_with("fill: "));
    Ok(line.unwrap_or("fill: no summary line").to_string())
}

/// The leader's `loop_turn_max_ms`, if a leader answers.
fn leader_loop_turn_max_ms(cluster: &LocalCluster) -> Option<f64> {
    let leader = cluster.wait_for_leader(Duration::from_secs(2))?;
    float_field(cluster, leader, "loop_turn_max_ms")
}

fn shown(value: Option<f64>) -> String {
    value.map_or("?".to_string(), |value| format!("{value:.1}"))
}

/// One throughput workload.
struct Workload<'a> {
    name: &'a str,
    clients: usize,
    read_ratio: &'a str,
    keys: u64,
}

/// Where `bench` sends its load.
struct Target {
    protocol: &'static str,
    addresses: Vec<String>,
}

fn etcd_rows(options: &Options) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for (name, clients, read_ratio) in WORKLOADS {
        let etcd = etcd::EtcdCluster::start(&options.out.join("etcd"), &[])?;
        let target = Target {
            protocol: "etcd",
            addresses: etcd.addresses(),
        };
        let name = format!("etcd {name}");
        let workload = Workload {
            name: &name,
            clients,
            read_ratio,
            keys: THROUGHPUT_KEYS,
        };
        rows.push(run_workload(options, &target, &workload)?);
    }
    Ok(rows)
}

/// raftlite and etcd side by side, with raftlite's ratio to etcd: of
/// throughput for the workloads, of time for failover.
fn comparison(
    raftlite: &[Row],
    etcd: &[Row],
    raftlite_failovers: &[f64],
    etcd_failovers: &[f64],
) -> String {
    let mut text = String::from(
        "\nraftlite against etcd 3.4 (3 members on loopback, fsync on, default flags), same load generator\n\n\
         | workload | raftlite ops/s | etcd ops/s | ratio | raftlite p50 / p99 ms | etcd p50 / p99 ms |\n|---|---|---|---|---|---|\n",
    );
    for (ours, theirs) in raftlite.iter().zip(etcd) {
        text.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.1}x | {:.2} / {:.2} | {:.2} / {:.2} |\n",
            ours.name,
            ours.ops_per_sec,
            theirs.ops_per_sec,
            ours.ops_per_sec / theirs.ops_per_sec,
            ours.p50_ms,
            ours.p99_ms,
            theirs.p50_ms,
            theirs.p99_ms
        ));
    }
    let (ours, theirs) = (raftlite_failovers, etcd_failovers);
    text.push_str(&format!(
        "| kill -9 leader → next acknowledged write ({} trials; etcd heartbeat 50 ms, election 300 ms) \
         | | | time {:.2}x median, {:.2}x max | median {:.0} / max {:.0} | median {:.0} / max {:.0} |\n",
        theirs.len(),
        median(ours) / median(theirs),
        maximum(ours) / maximum(theirs),
        median(ours),
        maximum(ours),
        median(theirs),
        maximum(theirs)
    ));
    text.push_str(&format!(
        "\netcd failover trials (ms): {:?}\n",
        rounded(theirs)
    ));
    text
}

/// The same trials against etcd with `etcd::FAILOVER_FLAGS`: kill -9 its
/// leader, then time until the next PUT is acknowledged by a client that
/// retries the way raftlite's does (`etcd_client`).
fn etcd_failover_trials(options: &Options) -> Result<Vec<f64>, String> {
    let dir = options.out.join("etcd-failover");
    let mut etcd = etcd::EtcdCluster::start(&dir, &etcd::FAILOVER_FLAGS)?;
    let mut client = EtcdClient::new(etcd.socket_addresses());
    let mut results = Vec::new();
    for trial in 0..options.trials {
        let leader = etcd
            .wait_healthy(ETCD_HEALTHY_TIMEOUT)
            .ok_or("etcd: no leader")?;
        // Start from a live connection to the leader, as raftlite's client
        // does after its warm-up write.
        client.aim(leader);
        client
            .put(&format!("warm{trial}"), "1", FAILOVER_WRITE_TIMEOUT)
            .map_err(|error| format!("etcd trial {trial}, warm-up write: {error}"))?;
        let killed_at = Instant::now();
        etcd.kill(leader);
        let acknowledged = client.put(&format!("failover{trial}"), "1", FAILOVER_WRITE_TIMEOUT);
        let elapsed_ms = killed_at.elapsed().as_secs_f64() * 1000.0;
        acknowledged.map_err(|error| format!("etcd trial {trial}: {error}"))?;
        results.push(elapsed_ms);
        etcd.start_member(leader)?;
        etcd.wait_healthy(ETCD_HEALTHY_TIMEOUT)
            .ok_or("etcd: the restarted member did not rejoin")?;
    }
    Ok(results)
}

fn run_workload(options: &Options, target: &Target, workload: &Workload) -> Result<Row, String> {
    let Workload {
        name,
        clients,
        read_ratio,
        keys,
    } = *workload;
    let slug = slug(name);
    let json = options.out.join(format!("{slug}.json"));
    let status = Command::new(sibling("bench")?)
        .args(["--protocol", target.protocol])
        .args([
            "--cluster",
            &target.addresses.join(","),
            "--clients",
            &clients.to_string(),
        ])
        .args([
            "--duration",
            &options.duration_s.to_string(),
            "--warmup",
            "2",
            "--read-ratio",
            read_ratio,
        ])
        .args(["--key-size", "8", "--value-size", "64"])
        .args(["--keys", &keys.to_string()])
        .arg("--json")
        .arg(&json)
        .arg("--hist")
        .arg(options.out.join(format!("{slug}.svg")))
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|error| format!("cannot run bench: {error}"))?;
    if !status.success() {
        return Err(format!("bench failed for {name}"));
    }
    read_row(name, &json)
}

/// The row for workload `name` from the file `bench --json` wrote; a
/// missing or malformed file is an error that names it.
fn read_row(name: &str, path: &Path) -> Result<Row, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let json: BenchJson = serde_json::from_str(&text)
        .map_err(|error| format!("{} is not bench's JSON: {error}", path.display()))?;
    // null (nothing measured) shows as NaN in the table.
    let cpu = json.cpu_user_s.zip(json.cpu_system_s);
    Ok(Row {
        name: name.to_string(),
        ops_per_sec: json.ops_per_sec.unwrap_or(f64::NAN),
        p50_ms: json.p50_ms.unwrap_or(f64::NAN),
        p99_ms: json.p99_ms.unwrap_or(f64::NAN),
        errors: json.errors,
        p999_ms: json.p999_ms.unwrap_or(f64::NAN),
        loop_turn_max_ms: None,
        notes: cpu
            .map(|(user, system)| {
                format!("bench's own CPU: {user:.2} s user, {system:.2} s system")
            })
            .into_iter()
            .collect(),
    })
}

/// How long a failover trial's client keeps retrying its write.
const FAILOVER_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// etcd takes a second or two to start a member and replay its log.
const ETCD_HEALTHY_TIMEOUT: Duration = Duration::from_secs(20);

/// kill -9 the leader, then time until the next write is acknowledged.
fn failover_trials(options: &Options) -> Result<Vec<f64>, String> {
    let mut cluster = start_cluster(options, "failover", &[])?;
    let mut client = cluster.client(FAILOVER_WRITE_TIMEOUT);
    let mut results = Vec::new();
    for trial in 0..options.trials {
        let leader = cluster
            .wait_for_leader(Duration::from_secs(5))
            .ok_or("no leader")?;
        client.execute(&format!("SET warm{trial}=1"));
        let killed_at = Instant::now();
        cluster.kill(leader);
        let answer = client.ask(&format!("SET failover{trial}=1"));
        let elapsed_ms = killed_at.elapsed().as_secs_f64() * 1000.0;
        if !matches!(answer, Answer::Reply(Reply::Ok { .. })) {
            return Err(format!("trial {trial}: {answer}"));
        }
        results.push(elapsed_ms);
        cluster
            .start_node(leader)
            .map_err(|error| error.to_string())?;
        cluster
            .wait_converged(Duration::from_secs(10))
            .ok_or("no convergence")?;
    }
    Ok(results)
}

/// A follower down while `catch_up_entries` writes commit, then restarted:
/// seconds until it has applied all of them.
fn catch_up(options: &Options) -> Result<f64, String> {
    let mut cluster = start_cluster(options, "catch-up", &[])?;
    let leader = cluster
        .wait_for_leader(Duration::from_secs(5))
        .ok_or("no leader")?;
    let follower = (leader + 1) % 3;
    cluster.kill(follower);
    let status = Command::new(sibling("bench")?)
        .args([
            "--cluster",
            &cluster.addresses().join(","),
            "--clients",
            "64",
            "--read-ratio",
            "0",
        ])
        .args([
            "--ops",
            &options.catch_up_entries.to_string(),
            "--value-size",
            "64",
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|error| error.to_string())?;
    if !status.success() {
        return Err("bench failed while the follower was down".to_string());
    }
    let target: u64 = field(&cluster, leader, "commit").ok_or("leader status")?;
    let started = Instant::now();
    cluster
        .start_node(follower)
        .map_err(|error| error.to_string())?;
    let caught_up = poll_until(Duration::from_secs(120), || {
        field(&cluster, follower, "applied").filter(|&applied| applied >= target)
    });
    caught_up.ok_or("the follower did not catch up in 120 s")?;
    Ok(started.elapsed().as_secs_f64())
}

pub(crate) fn field(cluster: &LocalCluster, index: usize, name: &str) -> Option<u64> {
    cluster.status(index)?.get(name)?.parse().ok()
}

pub(crate) fn float_field(cluster: &LocalCluster, index: usize, name: &str) -> Option<f64> {
    cluster.status(index)?.get(name)?.parse().ok()
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

fn maximum(values: &[f64]) -> f64 {
    values.iter().copied().fold(0.0, f64::max)
}

/// Whole milliseconds, for the trials lists.
fn rounded(values: &[f64]) -> Vec<f64> {
    values.iter().map(|ms| ms.round()).collect()
}

/// raftlite's table; without a catch-up time (`--failover-only`) its row is
/// left out, and so are the failover row without trials
/// (`--snapshots-only`). The last two columns came with the snapshot rows
/// (issue 13); the columns before them keep their places, for the tools
/// that read the table.
fn table(
    rows: &[Row],
    snapshot_rows: &[Row],
    failovers: &[f64],
    catch_up_s: Option<f64>,
    options: &Options,
) -> String {
    let mut text = format!(
        "raftlite, 3 nodes on loopback, --fsync {}, 8-byte keys, 64-byte values, {} s per workload\n\n",
        if options.fsync { "always" } else { "never" },
        options.duration_s
    );
    text.push_str(
        "| workload | ops/s | p50 ms | p99 ms | errors | p99.9 ms | leader loop_turn_max_ms |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for row in rows.iter().chain(snapshot_rows) {
        text.push_str(&format!(
            "| {} | {:.0} | {:.3} | {:.3} | {} | {:.3} | {} |\n",
            row.name,
            row.ops_per_sec,
            row.p50_ms,
            row.p99_ms,
            row.errors,
            row.p999_ms,
            shown(row.loop_turn_max_ms)
        ));
    }
    if !failovers.is_empty() {
        text.push_str(&format!(
            "| kill -9 leader → next acknowledged write ({} trials) | | median {:.0} ms | max {:.0} ms | | | |\n",
            failovers.len(),
            median(failovers),
            maximum(failovers)
        ));
    }
    if let Some(catch_up_s) = catch_up_s {
        text.push_str(&format!(
            "| follower catches up {} entries | {:.0} entries/s | {:.2} s total | | | | |\n",
            options.catch_up_entries,
            options.catch_up_entries as f64 / catch_up_s,
            catch_up_s
        ));
    }
    text.push_str(&snapshot_notes(snapshot_rows));
    if !failovers.is_empty() {
        text.push_str(&format!("\nfailover trials (ms): {:?}", rounded(failovers)));
    }
    text.push_str(&format!("\nresults: {}\n", options.out.display()));
    text
}

/// The snapshot rows' p99.9 ratio against the issue's target, then what
/// each row's notes say.
fn snapshot_notes(rows: &[Row]) -> String {
    let [without, with] = rows else {
        return String::new();
    };
    let ratio = with.p999_ms / without.p999_ms;
    let verdict = if ratio <= 2.0 { "met" } else { "MISSED" };
    let mut text = format!(
        "\n1M keys, p99.9 with snapshots every 20k entries / without: {:.3} / {:.3} ms = {ratio:.2}x \
         (issue 13's target: at most 2x: {verdict}); p99 {:.2}x, ops/s {:.2}x\n",
        with.p999_ms,
        without.p999_ms,
        with.p99_ms / without.p99_ms,
        with.ops_per_sec / without.ops_per_sec
    );
    for row in rows {
        text.push_str(&format!("\n{}:\n", row.name));
        for note in &row.notes {
            text.push_str(&format!("- {note}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, ops_per_sec: f64) -> Row {
        Row {
            name: name.to_string(),
            ops_per_sec,
            p50_ms: 1.0,
            p99_ms: 2.0,
            errors: 0,
            p999_ms: 3.0,
            loop_turn_max_ms: None,
            notes: Vec::new(),
        }
    }

    /// A line `bench --json` wrote.
    const BENCH_JSON: &str = concat!(
        r#"{"ops_per_sec":500.0,"p50_ms":0.759,"p90_ms":1.191,"p99_ms":1.375,"#,
        r#""p999_ms":2.303,"max_ms":3.632,"mean_ms":0.771,"errors":7,"#,
        r#""errors_by_kind":{"NOT_LEADER":7,"TIMEOUT":0,"UNAVAILABLE":0,"BAD_REQUEST":0,"#,
        r#""SESSION_EXPIRED":0,"OTHER_REPLY":0,"CONNECT_FAILED":0,"CONNECTION_LOST":0,"#,
        r#""PROTOCOL_ERROR":0},"clients":16,"mode":"open","rate":500.000,"#,
        r#""duration_s":2.000,"warmup_s":1.000,"read_ratio":0.3000,"keys":100000,"#,
        r#""key_size":8,"value_size":16,"timeout_ms":5000,"ops":1000,"ops_failed":0,"#,
        r#""ops_unfinished":0,"latency_saturated":0,"cpu_user_s":0.08,"cpu_system_s":0.00}"#,
        "\n"
    );

    #[test]
    fn rows_are_read_from_bench_json_and_bad_files_are_named() {
        let dir = raftlite_kit::fault::TempDir::new("bench-suite");
        let path = dir.0.join("set1client.json");
        std::fs::write(&path, BENCH_JSON).expect("write");
        let row = read_row("SET, 1 client", &path).expect("bench's JSON");
        assert_eq!(row.name, "SET, 1 client");
        assert_eq!(
            (row.ops_per_sec, row.p50_ms, row.p99_ms),
            (500.0, 0.759, 1.375)
        );
        assert_eq!(row.errors, 7);
        let nothing_measured = BENCH_JSON.replace(r#""p50_ms":0.759"#, r#""p50_ms":null"#);
        std::fs::write(&path, nothing_measured).expect("write");
        let row = read_row("x", &path).expect("null is allowed");
        assert!(row.p50_ms.is_nan());
        let shown = path.display().to_string();
        for (text, complaint) in [
            ("", "EOF while parsing"),
            ("{\"ops_per_sec\":1.0,", "EOF while parsing"),
            ("42", "invalid type: integer `42`"),
            (
                r#"{"ops_per_sec":1.0,"p50_ms":1.0,"p99_ms":1.0}"#,
                "missing field `errors`",
            ),
            (
                r#"{"ops_per_sec":"fast","p50_ms":1,"p99_ms":1,"errors":0}"#,
                "invalid type",
            ),
        ] {
            std::fs::write(&path, text).expect("write");
            let error = read_row("x", &path).err().expect("refused");
            assert!(
                error.starts_with(&format!("{shown} is not bench's JSON: ")),
                "{error}"
            );
            assert!(error.contains(complaint), "{text:?}: {error}");
        }
        let missing = dir.0.join("absent.json");
        let error = read_row("x", &missing).err().expect("refused");
        assert!(
            error.starts_with(&format!("cannot read {}: ", missing.display())),
            "{error}"
        );
    }

    #[test]
    fn the_comparison_ends_with_both_failover_rows_and_etcds_trials() {
        let raftlite = [row("SET, 1 client", 2000.0)];
        let etcd = [row("etcd SET, 1 client", 1000.0)];
        let text = comparison(&raftlite, &etcd, &[200.0, 300.0, 250.0], &[1000.0, 1200.0]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines.contains(&"| SET, 1 client | 2000 | 1000 | 2.0x | 1.00 / 2.00 | 1.00 / 2.00 |")
        );
        assert!(lines.contains(
            &"| kill -9 leader → next acknowledged write (2 trials; etcd heartbeat 50 ms, \
              election 300 ms) | | | time 0.21x median, 0.25x max | median 250 / max 300 \
              | median 1200 / max 1200 |"
        ));
        assert_eq!(
            lines.last(),
            Some(&"etcd failover trials (ms): [1000.0, 1200.0]")
        );
    }

    fn options(arguments: &str) -> Result<Option<Options>, String> {
        let arguments: Vec<String> = arguments.split_whitespace().map(String::from).collect();
        parse_options(&arguments)
    }

    #[test]
    fn the_table_keeps_its_first_columns_and_judges_the_snapshot_rows() {
        let options = options("--out /tmp/x").expect("valid").expect("not help");
        let mut without = row("SET, 64 clients, 1M keys", 30000.0);
        without.p999_ms = 10.0;
        let mut with = row(
            "SET, 64 clients, 1M keys, snapshot every 20k entries",
            27000.0,
        );
        with.p999_ms = 25.0;
        with.loop_turn_max_ms = Some(4.5);
        with.notes.push("3 snapshots taken".to_string());
        let rows = [row("SET, 1 client", 2000.0)];
        let text = table(&rows, &[without, with], &[200.0], Some(0.5), &options);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.contains(&"| SET, 1 client | 2000 | 1.000 | 2.000 | 0 | 3.000 | ? |"));
        assert!(lines
            .iter()
            .any(|line| line
                .starts_with("| workload | ops/s | p50 ms | p99 ms | errors | p99.9 ms |")));
        assert!(lines.contains(
            &"| SET, 64 clients, 1M keys, snapshot every 20k entries | 27000 | 1.000 | 2.000 | 0 | 25.000 | 4.5 |"
        ));
        assert!(lines.iter().any(|line| line.contains("= 2.50x")
            && line.contains("at most 2x: MISSED")
            && line.contains("ops/s 0.90x")));
        assert!(lines.contains(&"- 3 snapshots taken"));
        assert!(lines
            .iter()
            .any(|line| line.starts_with("| kill -9 leader")));
        // Without snapshot rows there is no verdict line.
        let text = table(&rows, &[], &[200.0], Some(0.5), &options);
        assert!(!text.contains("target"));
    }

    #[test]
    fn modes_exclude_each_other_and_growth_takes_seconds() {
        let growth = options("--growth 30").expect("valid").expect("not help");
        assert_eq!(growth.growth_s, Some(30));
        assert!(options("--snapshots-only").expect("valid").is_some());
        for line in [
            "--growth 30 --snapshots-only",
            "--failover-only --snapshots-only",
            "--growth 30 --failover-only",
        ] {
            let error = options(line).err().expect("refused");
            assert!(error.contains("exclude each other"), "{line}: {error}");
        }
        assert!(options("--growth 0").is_err());
    }
}
