//! jepsen: the fault-injection bench. Starts a cluster of real raftlite
//! processes behind link proxies, runs concurrent clients through `submit`,
//! injects faults from a seed, heals, and checks the recorded history with
//! our linearizability checker. Writes the history (JSON lines) and a
//! summary under run/jepsen/<timestamp>/.

mod history;
mod nemesis;
mod summary;
mod workers;

use history::Recorder;
use nemesis::Nemesis;
use raftlite::cli;
use raftlite_kit::fault::{sibling, ClusterSpec, LocalCluster};
use raftlite_kit::linearizability::{Action, Operation, SearchBudget};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const EXIT_VIOLATION: u8 = 1;
const EXIT_USAGE: u8 = 2;

/// What `main` returns, listed by `--help`.
const EXIT_CODES: &str = "Exit codes:\n\
\x20 0  the run passed: the history is linearizable, no term jumped, every stale\n\
\x20    member was refused by all its peers, no node stopped on its own, the cluster\n\
\x20    recovered and converged after healing and answered the final reads (and --help)\n\
\x20 1  the run failed one of those checks (the summary says which), or it could not\n\
\x20    run at all: the cluster did not start or elect a leader, a file could not be\n\
\x20    written (message on stderr)\n\
\x20 2  usage error\n";

const USAGE: &str =
    "Usage: jepsen [--time S] [--seed N] [--nodes 3|5] [--clients N] [--keys N] [--out DIR]\n\
\x20             [--faults LIST] [--first-fault NAME] [--plant-bug NAME] [--snapshot-entries N]";

/// Small thresholds, so that every run takes, compacts and installs
/// snapshots under its faults (a follower killed for a second misses more
/// than this many entries).
const SNAPSHOT_ENTRIES_DEFAULT: u64 = 500;

struct Options {
    time: Duration,
    seed: u64,
    nodes: usize,
    clients: usize,
    keys: usize,
    out: PathBuf,
    plant_bug: Option<String>,
    /// The nodes' --snapshot-entries (their --snapshot-trailing is a tenth).
    snapshot_entries: u64,
    faults: Vec<nemesis::Fault>,
    first_fault: Option<nemesis::Fault>,
}

fn option_table() -> getopts::Options {
    let mut table = getopts::Options::new();
    table.optopt("", "time", "seconds of faults (default 60)", "S");
    table.optopt(
        "",
        "seed",
        "seed of the fault schedule and the workload (default: from the clock, printed)",
        "N",
    );
    table.optopt("", "nodes", "cluster size, 3 or 5 (default 3)", "N");
    table.optopt(
        "",
        "clients",
        "concurrent clients, each a submit process (default 5)",
        "N",
    );
    table.optopt("", "keys", "size of the key set (default 3)", "N");
    table.optopt(
        "",
        "out",
        "where to write the run (default run/jepsen/<timestamp>)",
        "DIR",
    );
    table.optopt("", "faults", "comma-separated faults to inject (default: all of kill-leader, kill-follower, kill-minority, kill-all, pause-leader, pause-follower, isolate-leader, isolate-follower, bridge, one-way-from-leader, stale-member)", "LIST");
    table.optopt(
        "",
        "first-fault",
        "inject this fault first, then draw from --faults as usual",
        "NAME",
    );
    table.optopt(
        "",
        "plant-bug",
        "pass --plant-bug NAME to every node (test builds only)",
        "NAME",
    );
    table.optopt(
        "",
        "snapshot-entries",
        "the nodes' --snapshot-entries; --snapshot-trailing is a tenth of it, and log segments are 1 MiB (default 500: snapshots under every fault)",
        "N",
    );
    table.optflag("h", "help", "print this help");
    table
}

fn parse_number(
    matches: &getopts::Matches,
    name: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, String> {
    match matches.opt_str(name) {
        None => Ok(default),
        Some(text) => match text.parse::<u64>() {
            Ok(value) if range.contains(&value) => Ok(value),
            _ => Err(format!(
                "--{name} {text:?}: expected a number in {}..={}",
                range.start(),
                range.end()
            )),
        },
    }
}

fn parse_options(arguments: &[String]) -> Result<Option<Options>, String> {
    let matches = raftlite::cli::parse(&option_table(), arguments)?;
    if matches.opt_present("help") {
        return Ok(None);
    }
    if let Some(extra) = matches.free.first() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    let clock_seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |elapsed| elapsed.as_secs());
    let nodes = parse_number(&matches, "nodes", 3, 3..=5)?;
    if nodes == 4 {
        return Err("--nodes 4: use 3 or 5".to_string());
    }
    let out = matches.opt_str("out").map_or_else(
        || PathBuf::from("run/jepsen").join(summary::timestamp()),
        PathBuf::from,
    );
    Ok(Some(Options {
        time: Duration::from_secs(parse_number(&matches, "time", 60, 1..=86_400)?),
        seed: parse_number(&matches, "seed", clock_seed, 0..=u64::MAX)?,
        nodes: nodes as usize,
        clients: parse_number(&matches, "clients", 5, 1..=64)? as usize,
        keys: parse_number(&matches, "keys", 3, 1..=1000)? as usize,
        out,
        plant_bug: matches.opt_str("plant-bug"),
        snapshot_entries: parse_number(
            &matches,
            "snapshot-entries",
            SNAPSHOT_ENTRIES_DEFAULT,
            1..=1_000_000_000,
        )?,
        faults: parse_faults(matches.opt_str("faults"))?,
        first_fault: parse_first_fault(matches.opt_str("first-fault"))?,
    }))
}

fn parse_faults(list: Option<String>) -> Result<Vec<nemesis::Fault>, String> {
    let Some(list) = list else {
        return Ok(nemesis::Fault::ALL.to_vec());
    };
    list.split(',')
        .map(|name| {
            nemesis::Fault::from_name(name.trim())
                .ok_or(format!("--faults: unknown fault {name:?}"))
        })
        .collect()
}

fn parse_first_fault(name: Option<String>) -> Result<Option<nemesis::Fault>, String> {
    let Some(name) = name else { return Ok(None) };
    let fault = nemesis::Fault::from_name(&name);
    fault
        .map(Some)
        .ok_or(format!("--first-fault: unknown fault {name:?}"))
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let help = || format!("{}\n{EXIT_CODES}", option_table().usage(USAGE));
    let parsed = parse_options(&arguments);
    let options = match cli::options_or_exit("jepsen", parsed, help, EXIT_USAGE) {
        Ok(options) => options,
        Err(code) => return code,
    };
    match run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_VIOLATION),
        Err(error) => {
            eprintln!("jepsen: {error}");
            ExitCode::from(EXIT_VIOLATION)
        }
    }
}

/// Counts the snapshot lines in the nodes' logs (a log that cannot be
/// read counts nothing: the summary then shows fewer).
fn count_snapshots(cluster: &LocalCluster) -> summary::SnapshotCounts {
    let mut counts = summary::SnapshotCounts::default();
    for index in 0..cluster.nodes.len() {
        let text = std::fs::read_to_string(cluster.log_path(index)).unwrap_or_default();
        for line in text.lines() {
            counts.taken += u64::from(line.contains("] Snapshot taken ("));
            counts.installed += u64::from(line.contains("] Installed snapshot from "));
            counts.compactions += u64::from(line.contains("] Log compacted below index "));
        }
    }
    counts
}

fn start_cluster(options: &Options) -> Result<LocalCluster, String> {
    let mut extra = vec!["--log-level".to_string(), "info".to_string()];
    let snapshots = [
        "--snapshot-entries".to_string(),
        options.snapshot_entries.to_string(),
        "--snapshot-trailing".to_string(),
        (options.snapshot_entries / 10).to_string(),
        "--log-segment-bytes".to_string(),
        (1 << 20).to_string(),
    ];
    extra.extend(snapshots);
    if let Some(bug) = &options.plant_bug {
        extra.extend(["--plant-bug".to_string(), bug.clone()]);
    }
    let spec = ClusterSpec {
        size: options.nodes,
        dir: options.out.join("cluster"),
        binary: sibling("raftlite")?,
        extra_arguments: extra,
        proxied: true,
        remove_dir_on_drop: false,
    };
    LocalCluster::start(spec).map_err(|error| format!("cannot start the cluster: {error}"))
}

fn run(options: &Options) -> Result<bool, String> {
    std::fs::create_dir_all(&options.out)
        .map_err(|error| format!("{}: {error}", options.out.display()))?;
    println!(
        "jepsen: seed {} time {}s nodes {} clients {} -> {}",
        options.seed,
        options.time.as_secs(),
        options.nodes,
        options.clients,
        options.out.display()
    );
    let mut cluster = start_cluster(options)?;
    cluster
        .wait_for_leader(Duration::from_secs(5))
        .ok_or("no leader at start")?;
    let events = std::fs::File::create(options.out.join("history.jsonl"))
        .map_err(|error| error.to_string())?;
    let recorder = Arc::new(Recorder::new(events));
    let stop = Arc::new(AtomicBool::new(false));
    let workers = start_workers(options, &cluster, &recorder, &stop)?;
    let mut nemesis = Nemesis::new(
        &mut cluster,
        &recorder,
        options.seed,
        options.faults.clone(),
        options.keys,
    );
    if let Some(fault) = options.first_fault {
        nemesis.inject_first(fault);
    }
    let faults_started = Instant::now();
    while faults_started.elapsed() < options.time {
        nemesis.round();
    }
    nemesis.heal();
    let nemesis_report = std::mem::take(&mut nemesis.report);
    let faults_ms = recorder.now_ns() / 1_000_000;
    let recovered = cluster.wait_for_leader(Duration::from_secs(15)).is_some();
    std::thread::sleep(Duration::from_secs(1)); // clients see the healed cluster
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    final_reads(&cluster, &recorder, options.keys);
    let converged = cluster.wait_converged(Duration::from_secs(15));
    let exits = cluster.exits();
    recorder.flush();
    let operations = recorder.operations();
    let verdict = raftlite_kit::linearizability::check(&operations, SearchBudget::default());
    let report = summary::Summary::new(
        &operations,
        &verdict,
        nemesis_report,
        recovered,
        converged,
        faults_ms,
        exits,
    )
    .with_snapshots(count_snapshots(&cluster));
    report
        .write(&options.out)
        .map_err(|error| format!("cannot write the summary: {error}"))?;
    println!("{}", report.text());
    if let Some(failure) = &verdict.failure {
        println!("{failure}");
    }
    Ok(report.passed())
}

fn start_workers(
    options: &Options,
    cluster: &LocalCluster,
    recorder: &Arc<Recorder>,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<std::thread::JoinHandle<u64>>, String> {
    let submit = sibling("submit")?;
    let nodes = cluster.addresses();
    let addresses = nodes.join(",");
    Ok((0..options.clients as u64)
        .map(|client| {
            // Even clients are pinned to one node each, odd ones follow the leader.
            let pinned_to =
                (client % 2 == 0).then(|| nodes[(client as usize / 2) % nodes.len()].clone());
            let spec = workers::WorkerSpec {
                client,
                seed: options.seed.wrapping_mul(31).wrapping_add(client),
                submit: submit.clone(),
                addresses: addresses.clone(),
                pinned_to,
                keys: options.keys,
                timeout_ms: 1500,
            };
            let (recorder, stop) = (Arc::clone(recorder), Arc::clone(stop));
            std::thread::spawn(move || workers::run(spec, recorder, stop))
        })
        .collect())
}

/// After healing: every key read once more, linearizably. An acknowledged
/// write that was lost shows up here as a read the checker cannot explain.
fn final_reads(cluster: &LocalCluster, recorder: &Recorder, keys: usize) {
    let mut client = cluster.client(Duration::from_secs(10));
    for key_index in 0..keys {
        let key = format!("k{key_index}");
        let invoke_ns = recorder.now_ns();
        let reply = client.execute(&format!("GET {key}"));
        let complete_ns = recorder.now_ns();
        recorder.event(
            "final-read",
            &[history::field("key", &key), history::field("reply", &reply)],
        );
        recorder.record(Operation {
            client: u64::MAX,
            key,
            action: Action::Get,
            invoke_ns,
            complete_ns,
            outcome: history::outcome(&reply),
        });
    }
}
