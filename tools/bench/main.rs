//! bench: the load generator for raftlite. Many clients, one thread: each
//! client has its own TCP connection and session, one mio Poll drives them
//! all, so the generator costs little CPU next to the cluster it measures.
//! Closed loop by default, open loop with --rate (latency from the scheduled
//! send time, so a stalled cluster cannot hide its stall). See `bench --help`.
//!
//! With --protocol etcd the same clients drive etcd 3.4 through its JSON
//! gateway over HTTP/1.1, for comparing the two at equal client cost.
//!
//! Files: `options` (flags), `workload` (commands and schedule),
//! `connection` (one non-blocking socket), `etcd` (HTTP requests and
//! responses for etcd mode), `driver` (the loop and what each reply means),
//! `stats` and `histogram` (counting), `report` (text, JSON, CPU time) and
//! `svg` (the histogram picture).

mod connection;
mod driver;
mod histogram;
mod options;
mod report;
mod stats;
mod svg;
mod workload;

use options::{Options, Parsed};
use raftlite_kit::etcd_gateway as etcd;
use raftlite_kit::json;
use report::Summary;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use workload::Workload;

/// A run that completed, whatever errors it counted.
const EXIT_COMPLETED: u8 = 0;
/// No node answered: no client could open a session.
const EXIT_UNREACHABLE: u8 = 1;
const EXIT_USAGE: u8 = 2;
/// The run completed but --json or --hist could not be written.
const EXIT_OUTPUT_FAILED: u8 = 3;

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let options = match options::parse(&arguments) {
        Ok(Parsed::Run(options)) => *options,
        Ok(Parsed::Help) => {
            report::write_stdout(&options::usage());
            return ExitCode::from(EXIT_COMPLETED);
        }
        Err(error) => {
            report::write_stderr_line(&format!("bench: {error} (bench --help lists every flag)"));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let seeds = match resolve_cluster(&options.cluster) {
        Ok(seeds) => seeds,
        Err(error) => {
            report::write_stderr_line(&format!("bench: could not reach the cluster: {error}"));
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    ExitCode::from(run(&options, seeds))
}

/// Resolves every --cluster address once, before the loop (DNS blocks).
/// Names that do not resolve are skipped with a warning, so one bad entry
/// does not stop a run against the rest.
fn resolve_cluster(cluster: &[String]) -> Result<Vec<SocketAddr>, String> {
    let mut seeds = Vec::new();
    let mut last_error = String::new();
    for address in cluster {
        let resolved = match address.to_socket_addrs() {
            Ok(mut found) => found
                .next()
                .ok_or_else(|| format!("{address} resolves to no address")),
            Err(error) => Err(format!("cannot resolve {address}: {error}")),
        };
        match resolved {
            Ok(resolved) => seeds.push(resolved),
            Err(error) => {
                report::write_stderr_line(&format!("bench: warning: {error}; leaving it out"));
                last_error = error;
            }
        }
    }
    if seeds.is_empty() {
        return Err(last_error);
    }
    Ok(seeds)
}

fn run(options: &Options, seeds: Vec<SocketAddr>) -> u8 {
    let settings = driver::Settings {
        seeds,
        protocol: options.protocol,
        clients: options.clients,
        workload: Workload {
            keys: options.keys,
            key_size: options.key_size,
            value_size: options.value_size,
            read_ratio: options.read_ratio,
        },
        rate: options.rate,
        duration: options.duration,
        ops: options.ops,
        warmup: options.warmup,
        timeout: options.timeout,
        seed: options.seed,
        fill: options.fill,
    };
    let outcome = match driver::run(settings) {
        Ok(outcome) => outcome,
        Err(error) => {
            report::write_stderr_line(&format!("bench: event loop failed: {error}"));
            return EXIT_UNREACHABLE;
        }
    };
    if !outcome.reached {
        report::write_stderr_line(&format!(
            "bench: could not reach the cluster: no client opened a session (last error: {})",
            outcome.last_error.as_deref().unwrap_or("none")
        ));
        return EXIT_UNREACHABLE;
    }
    let summary = Summary {
        clients: options.clients,
        rate: options.rate,
        read_ratio: options.read_ratio,
        keys: options.keys,
        key_size: options.key_size,
        value_size: options.value_size,
        timeout_ms: options.timeout.as_millis() as u64,
        warmup_seconds: options.warmup.as_secs_f64(),
        measured_seconds: outcome.measured_seconds,
        stats: outcome.measured,
        operations_unfinished: outcome.operations_unfinished,
        cpu: outcome.cpu,
    };
    report::write_stdout(&summary.text());
    if summary.operations_unfinished > 0 && summary.rate.is_some() {
        report::write_stdout(&format!(
            "note       {} operations were not finished in time: the cluster (or this \
             machine) could not keep up with --rate, and the percentiles leave them out\n",
            summary.operations_unfinished
        ));
    }
    write_outputs(options, &summary)
}

type Render = fn(&Summary) -> Result<String, String>;

fn write_outputs(options: &Options, summary: &Summary) -> u8 {
    let mut code = EXIT_COMPLETED;
    let outputs: [(&Option<PathBuf>, Render); 2] = [
        (&options.json_path, |summary| {
            summary.json().map_err(|error| error.to_string())
        }),
        (&options.histogram_path, |summary| Ok(svg::render(summary))),
    ];
    for (path, render) in outputs {
        let Some(path) = path else {
            continue;
        };
        let written = render(summary)
            .and_then(|text| std::fs::write(path, text).map_err(|error| error.to_string()));
        if let Err(error) = written {
            report::write_stderr_line(&format!("bench: cannot write {}: {error}", path.display()));
            code = EXIT_OUTPUT_FAILED;
        }
    }
    code
}
