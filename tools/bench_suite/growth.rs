//! `bench-suite --growth S`: memory, disk and restart time against the
//! length of the history (issue 13, "Why" and "Verification"). Each way —
//! snapshots at the daemon's defaults, and snapshots off
//! (`--snapshot-entries 1000000000`) — on a fresh 3-node cluster:
//!
//! 1. S seconds of `bench --clients 128 --read-ratio 0 --keys 1000` (the
//!    issue's load), sampling every 5 s the leader's last index and each
//!    node's RSS (/proc/PID/status VmRSS) and data-dir size (allocated
//!    blocks, as `du` counts them);
//! 2. then a follower killed (SIGKILL) and restarted: time until it answers
//!    STATUS, and until it has applied the leader's commit index;
//! 3. on another fresh cluster, a follower killed before 1M writes (a
//!    `bench --fill` of 1M keys, so the state is 1M live keys) and
//!    restarted after them: time until its applied index equals the
//!    leader's, and whether it went by snapshot (its log's `Installed
//!    snapshot from`).
//!
//! The report is Markdown (saved as growth.md), and growth.svg plots RSS
//! and data dir against time both ways.

use crate::probe::{self, LogMark, Window};
use crate::{field, fill_command, float_field, keep_logs, sibling, start_cluster, Options};
use raftlite_kit::fault::{poll_until, LocalCluster};
use std::fmt::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);
/// Writes the catch-up follower misses (the "1M writes").
const CATCH_UP_WRITES: u64 = 1_000_000;
/// How long a restarted node may take to answer or to catch up.
const RESTART_TIMEOUT: Duration = Duration::from_secs(180);
const MB: f64 = 1e6;

/// (label, daemon flags) of the two ways.
const WAYS: [(&str, &[&str]); 2] = [
    (
        "snapshots at the defaults (every 100k entries, 10k trailing)",
        &[],
    ),
    (
        "snapshots off (--snapshot-entries 1000000000)",
        &["--snapshot-entries", "1000000000"],
    ),
];

/// One sample of the history run.
struct Sample {
    seconds: f64,
    last_index: u64,
    rss_bytes: [u64; 3],
    dir_bytes: [u64; 3],
}

pub fn run(options: &Options, seconds: u64) -> Result<String, String> {
    let mut report = format!(
        "raftlite, 3 nodes on loopback, --fsync {}: memory, disk and restart time against \
         history under `bench --clients 128 --read-ratio 0 --keys 1000` (8-byte keys, 16-byte \
         values), {seconds} s each way\n",
        if options.fsync { "always" } else { "never" }
    );
    let mut histories = Vec::new();
    for (label, flags) in WAYS {
        let _ = write!(report, "\n### {label}\n\n");
        let cluster = start_cluster(options, "growth", flags)?;
        let (samples, usage) = history(&cluster, seconds)?;
        report.push_str(&samples_table(&samples));
        let _ = writeln!(report, "\n- during the writes ({usage})");
        let mut cluster = cluster;
        let _ = writeln!(report, "- {}", restart(&mut cluster)?);
        let way = if flags.is_empty() { "on" } else { "off" };
        keep_logs(&cluster, &options.out, &format!("growth-snapshots-{way}"));
        drop(cluster);
        let mut cluster = start_cluster(options, "growth-catch-up", flags)?;
        let _ = writeln!(report, "- {}", catch_up(&mut cluster)?);
        keep_logs(&cluster, &options.out, &format!("catch-up-snapshots-{way}"));
        histories.push((label, samples));
    }
    let svg = options.out.join("growth.svg");
    std::fs::write(&svg, plot(&histories)).map_err(|error| error.to_string())?;
    let _ = write!(report, "\nplot: {}\n", svg.display());
    Ok(report)
}

/// The load for `seconds`, sampled every 5 s; also the machine's
/// and the processes' CPU and the disk over the run.
fn history(cluster: &LocalCluster, seconds: u64) -> Result<(Vec<Sample>, String), String> {
    let leader = cluster
        .wait_for_leader(Duration::from_secs(5))
        .ok_or("no leader")?;
    let mut bench = Command::new(sibling("bench")?)
        .args(["--cluster", &cluster.addresses().join(",")])
        .args(["--clients", "128", "--read-ratio", "0", "--keys", "1000"])
        .args(["--duration", &seconds.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|error| format!("cannot run bench: {error}"))?;
    let mut processes = node_processes(cluster, leader);
    processes.push(("bench".to_string(), bench.id()));
    let window = Window::start(&processes);
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut next = started + SAMPLE_INTERVAL;
    while bench
        .try_wait()
        .map_err(|error| error.to_string())?
        .is_none()
    {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(100)));
            continue;
        }
        next += SAMPLE_INTERVAL;
        let seconds_in = started.elapsed().as_secs_f64();
        samples.push(sample(cluster, leader, seconds_in));
    }
    let usage = window.report();
    let status = bench.wait().map_err(|error| error.to_string())?;
    if !status.success() {
        return Err(format!("bench failed during the history run ({status})"));
    }
    Ok((samples, usage))
}

/// ("leader A" / "follower B", pid) of each running node.
pub(crate) fn node_processes(cluster: &LocalCluster, leader: usize) -> Vec<(String, u32)> {
    (0..cluster.nodes.len())
        .filter_map(|index| {
            let role = if index == leader {
                "leader"
            } else {
                "follower"
            };
            let name = format!("{role} {}", cluster.nodes[index].id);
            Some((name, cluster.pid(index)?))
        })
        .collect()
}

fn sample(cluster: &LocalCluster, leader: usize, seconds: f64) -> Sample {
    let mut rss_bytes = [0; 3];
    let mut dir_bytes = [0; 3];
    for index in 0..3 {
        rss_bytes[index] = cluster.pid(index).and_then(probe::rss_bytes).unwrap_or(0);
        dir_bytes[index] = probe::dir_bytes(&cluster.data_dir(index));
    }
    Sample {
        seconds,
        last_index: field(cluster, leader, "last_index").unwrap_or(0),
        rss_bytes,
        dir_bytes,
    }
}

fn samples_table(samples: &[Sample]) -> String {
    let mut text = String::from(
        "| after | last index | RSS A / B / C | data dir A / B / C |\n|---|---|---|---|\n",
    );
    for sample in samples {
        let megabytes = |values: &[u64; 3]| {
            let shown: Vec<String> = values
                .iter()
                .map(|&bytes| format!("{:.0}", bytes as f64 / MB))
                .collect();
            format!("{} MB", shown.join(" / "))
        };
        let _ = writeln!(
            text,
            "| {:.0} s | {:.2} M | {} | {} |",
            sample.seconds,
            sample.last_index as f64 / 1e6,
            megabytes(&sample.rss_bytes),
            megabytes(&sample.dir_bytes)
        );
    }
    text
}

/// Kill -9 a follower once the cluster has converged, start it again:
/// time to its first STATUS answer and until it has applied the leader's
/// commit, and what its recovery line says.
fn restart(cluster: &mut LocalCluster) -> Result<String, String> {
    let (applied, _) = cluster
        .wait_converged(Duration::from_secs(60))
        .ok_or("the cluster did not converge after the writes")?;
    let leader = cluster
        .wait_for_leader(Duration::from_secs(5))
        .ok_or("no leader")?;
    let follower = (leader + 1) % 3;
    cluster.kill(follower);
    let log = LogMark::now(cluster.log_path(follower));
    let started = Instant::now();
    cluster
        .start_node(follower)
        .map_err(|error| error.to_string())?;
    poll_until(RESTART_TIMEOUT, || cluster.status(follower))
        .ok_or("the restarted follower did not answer STATUS")?;
    let answered = started.elapsed().as_secs_f64();
    poll_until(RESTART_TIMEOUT, || {
        field(cluster, follower, "applied").filter(|&now| now >= applied)
    })
    .ok_or("the restarted follower did not catch up")?;
    let caught_up = started.elapsed().as_secs_f64();
    let recovered = log.since();
    let recovered = recovered
        .lines()
        .find(|line| line.contains("Recovered"))
        .map_or("no Recovered line", |line| line.trim());
    Ok(format!(
        "restart of follower {} after {applied} entries: STATUS answered after {answered:.2} s, \
         applied {applied} after {caught_up:.2} s; its log: `{recovered}`",
        cluster.nodes[follower].id
    ))
}

/// A follower down while 1M writes (1M distinct keys) commit, then
/// restarted: time until its applied index equals the leader's, and how.
fn catch_up(cluster: &mut LocalCluster) -> Result<String, String> {
    let leader = cluster
        .wait_for_leader(Duration::from_secs(5))
        .ok_or("no leader")?;
    let follower = (leader + 1) % 3;
    // From the kill: the leader starts sending once a snapshot exists past
    // what the follower has, before the follower is back.
    let leader_log = LogMark::now(cluster.log_path(leader));
    cluster.kill(follower);
    let written = Instant::now();
    let status = fill_command(&cluster.addresses(), CATCH_UP_WRITES)?
        .stdout(Stdio::null())
        .status()
        .map_err(|error| format!("cannot run bench: {error}"))?;
    if !status.success() {
        return Err("bench failed while the follower was down".to_string());
    }
    let writing = written.elapsed().as_secs_f64();
    let target = field(cluster, leader, "commit").ok_or("leader status")?;
    let leader_snapshot = field(cluster, leader, "snapshot_index").unwrap_or(0);
    let leader_first = field(cluster, leader, "first_index").unwrap_or(0);
    let follower_log = LogMark::now(cluster.log_path(follower));
    let mut processes = node_processes(cluster, leader);
    let started = Instant::now();
    cluster
        .start_node(follower)
        .map_err(|error| error.to_string())?;
    if let Some(pid) = cluster.pid(follower) {
        processes.push((format!("restarted {}", cluster.nodes[follower].id), pid));
    }
    let window = Window::start(&processes);
    poll_until(RESTART_TIMEOUT, || {
        field(cluster, follower, "applied").filter(|&applied| applied >= target)
    })
    .ok_or("the follower did not catch up")?;
    let caught_up = started.elapsed().as_secs_f64();
    let usage = window.report();
    let installed = follower_log
        .since()
        .lines()
        .filter(|line| line.contains("Installed snapshot from"))
        .count();
    let leader_text = leader_log.since();
    let sent: Vec<&str> = leader_text
        .lines()
        .filter(|line| line.contains("Sending snapshot to"))
        .collect();
    let turn = float_field(cluster, follower, "loop_turn_max_ms");
    let converged = cluster.wait_converged(Duration::from_secs(30)).map_or(
        "the nodes did not converge within 30 s".to_string(),
        |(at, digest)| format!("all three then at applied {at}, digest {digest}"),
    );
    Ok(format!(
        "catch-up: follower {} killed, {CATCH_UP_WRITES} writes in {writing:.1} s (leader's \
         commit {target}, snapshot_index {leader_snapshot}, first_index {leader_first}), \
         restarted: applied {target} after {caught_up:.2} s; {installed} snapshots installed \
         ({}); the follower's loop_turn_max_ms {}; {converged}; during the catch-up ({usage})",
        cluster.nodes[follower].id,
        match sent.last() {
            None => "the leader logged no `Sending snapshot`: by the log".to_string(),
            Some(last) => format!(
                "the leader logged {} `Sending snapshot` since the kill, the last `{}`",
                sent.len(),
                last.trim()
            ),
        },
        turn.map_or("?".to_string(), |ms| format!("{ms:.1}")),
    ))
}

/// (legend, colour, (seconds, MB) points) of one line of the plot.
type Series = (String, &'static str, Vec<(f64, f64)>);

/// The largest node's RSS and data dir against time, both ways: one SVG,
/// four lines.
fn plot(histories: &[(&str, Vec<Sample>)]) -> String {
    const WIDTH: f64 = 640.0;
    const HEIGHT: f64 = 360.0;
    const LEFT: f64 = 60.0;
    const BOTTOM: f64 = 40.0;
    const TOP: f64 = 30.0;
    const RIGHT: f64 = 20.0;
    let largest = |values: &[u64; 3]| *values.iter().max().unwrap_or(&0) as f64 / MB;
    let mut series: Vec<Series> = Vec::new();
    let colors = [["#1f77b4", "#aec7e8"], ["#d62728", "#ff9896"]];
    for ((label, samples), color) in histories.iter().zip(colors) {
        let short = label.split(" (").next().unwrap_or(label);
        let rss = samples
            .iter()
            .map(|sample| (sample.seconds, largest(&sample.rss_bytes)))
            .collect();
        let dir = samples
            .iter()
            .map(|sample| (sample.seconds, largest(&sample.dir_bytes)))
            .collect();
        series.push((format!("RSS, {short}"), color[0], rss));
        series.push((format!("data dir, {short}"), color[1], dir));
    }
    let points = series.iter().flat_map(|(_, _, points)| points);
    let x_max = points.clone().map(|point| point.0).fold(1.0, f64::max);
    let y_max = points.map(|point| point.1).fold(1.0, f64::max) * 1.1;
    let x = |seconds: f64| LEFT + seconds / x_max * (WIDTH - LEFT - RIGHT);
    let y = |mb: f64| HEIGHT - BOTTOM - mb / y_max * (HEIGHT - BOTTOM - TOP);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"18\">largest node's RSS and data dir (MB) against seconds of \
         writes</text>\n\
         <line x1=\"{LEFT}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"black\"/>\n\
         <line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{0}\" stroke=\"black\"/>\n",
        HEIGHT - BOTTOM,
        WIDTH - RIGHT
    );
    for step in 0..=4 {
        let mb = y_max / 4.0 * f64::from(step);
        let seconds = x_max / 4.0 * f64::from(step);
        let _ = writeln!(
            svg,
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{mb:.0}</text>\n\
             <text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"middle\">{seconds:.0} s</text>",
            LEFT - 6.0,
            y(mb) + 4.0,
            x(seconds),
            HEIGHT - BOTTOM + 16.0
        );
    }
    for (rank, (name, color, points)) in series.iter().enumerate() {
        let path: Vec<String> = points
            .iter()
            .map(|&(seconds, mb)| format!("{:.1},{:.1}", x(seconds), y(mb)))
            .collect();
        let legend_y = TOP + 14.0 * rank as f64;
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n\
             <text x=\"{:.0}\" y=\"{legend_y:.0}\" fill=\"{color}\">{name}</text>",
            path.join(" "),
            LEFT + 10.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}
