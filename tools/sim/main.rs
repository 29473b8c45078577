//! `sim`: the deterministic simulator from the command line.
//!
//!     sim --seeds N [--start S] [--size K] [--steps M] [--plant-bug NAME] [--keep-going]
//!     sim --seed S [--size K] [--steps M] [--trace] [--plant-bug NAME]
//!     sim --help
//!
//! A sweep runs seeds S..S+N (the size cycles 1/3/5/7 with the seed unless
//! --size is given), prints a progress line every second and a summary, and
//! stops at the first failure with its report (with --keep-going it prints
//! one line per failure and counts them instead). Exit status: 0 all passed,
//! 1 a property failed, 2 bad usage, 141 stdout closed (see `EXIT_CODES`).
//! The wall clock here only paces the progress line; runs themselves never
//! read it.

use getopts::Options as Getopts;
use raftlite::core::PlantedBug;
use raftlite_kit::sim::{
    run_seed, size_for_seed, Echo, Options, Stats, LIVENESS_BOUND_MS, STEPS_DEFAULT,
};
use std::time::{Duration, Instant};

const USAGE: &str = "usage: sim --seeds N [--start S] [--size K] [--steps M] [--plant-bug NAME] [--keep-going]\n       sim --seed S [--size K] [--steps M] [--trace] [--plant-bug NAME]\n       sim --help";

/// What `main` returns, listed by `--help`.
const EXIT_CODES: &str = "Exit codes:\n\
\x20 0    every seed passed (and --help)\n\
\x20 1    a property failed: the first failure's report on stdout (with --keep-going,\n\
\x20      one line per failure and a count); a panic in the code under test counts\n\
\x20 2    usage error\n\
\x20 141  stdout was closed (e.g. piped into head)\n";

const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Prints a line to stdout. If stdout is closed (`sim ... | head`), the
/// program ends quietly with the status a shell gives for SIGPIPE.
macro_rules! out {
    ($($argument:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($argument)*).is_err() {
            std::process::exit(141);
        }
    }};
}

enum Mode {
    Sweep {
        start: u64,
        count: u64,
        keep_going: bool,
    },
    One {
        seed: u64,
        trace: bool,
    },
}

struct Arguments {
    mode: Mode,
    size: Option<usize>,
    steps: u64,
    planted_bug: Option<PlantedBug>,
}

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let code = match parse(&arguments) {
        Ok(None) => {
            print!("{}\n{EXIT_CODES}", option_table().usage(USAGE));
            0
        }
        Ok(Some(arguments)) => match arguments.mode {
            Mode::Sweep {
                start,
                count,
                keep_going,
            } => sweep(&arguments, start, count, keep_going),
            Mode::One { seed, trace } => one(&arguments, seed, trace),
        },
        Err(message) => {
            eprintln!("sim: {message}\n{USAGE}");
            2
        }
    };
    std::process::exit(code);
}

fn option_table() -> Getopts {
    let mut getopts = Getopts::new();
    getopts.optopt("", "seeds", "run this many seeds", "N");
    getopts.optopt("", "start", "first seed of a sweep (default 0)", "S");
    getopts.optopt("", "seed", "run one seed", "S");
    getopts.optopt("", "size", "cluster size (default: 1/3/5/7 by seed)", "K");
    getopts.optopt(
        "",
        "steps",
        &format!("steps of the fault phase (default {STEPS_DEFAULT})"),
        "M",
    );
    getopts.optflag("", "trace", "print every event of the run");
    getopts.optflag("", "keep-going", "count failures instead of stopping");
    getopts.optopt(
        "",
        "plant-bug",
        "plant a known bug (needs the feature)",
        "NAME",
    );
    getopts.optflag("h", "help", "print this help");
    getopts
}

/// `Ok(None)` for --help.
fn parse(arguments: &[String]) -> Result<Option<Arguments>, String> {
    let matches = raftlite::cli::parse(&option_table(), arguments)?;
    if matches.opt_present("help") {
        return Ok(None);
    }
    if let Some(extra) = matches.free.first() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    let number = |name: &str| -> Result<Option<u64>, String> {
        matches
            .opt_str(name)
            .map(|text| {
                text.parse::<u64>()
                    .map_err(|_| format!("--{name} {text:?}: not a number"))
            })
            .transpose()
    };
    let size = number("size")?.map(|size| size as usize);
    if let Some(size) = size {
        if size == 0 || size > raftlite::constants::CLUSTER_SIZE_MAX {
            return Err(format!(
                "--size {size}: must be 1 to {}",
                raftlite::constants::CLUSTER_SIZE_MAX
            ));
        }
    }
    let steps = number("steps")?.unwrap_or(STEPS_DEFAULT);
    let planted_bug = match matches.opt_str("plant-bug") {
        None => None,
        Some(name) => Some(planted_bug(&name)?),
    };
    let mode = match (number("seeds")?, number("seed")?) {
        (Some(count), None) => Mode::Sweep {
            start: number("start")?.unwrap_or(0),
            count,
            keep_going: matches.opt_present("keep-going"),
        },
        (None, Some(seed)) => Mode::One {
            seed,
            trace: matches.opt_present("trace"),
        },
        _ => return Err("give exactly one of --seeds and --seed".to_string()),
    };
    Ok(Some(Arguments {
        mode,
        size,
        steps,
        planted_bug,
    }))
}

fn planted_bug(name: &str) -> Result<PlantedBug, String> {
    if !cfg!(feature = "planted-bugs") {
        return Err("--plant-bug needs a build with --features planted-bugs".to_string());
    }
    PlantedBug::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = PlantedBug::NAMED.iter().map(|bug| bug.name()).collect();
        format!("unknown bug {name:?}; known: {}", names.join(", "))
    })
}

fn options(arguments: &Arguments, seed: u64) -> Options {
    Options {
        seed,
        size: arguments.size.unwrap_or_else(|| size_for_seed(seed)),
        steps: arguments.steps,
        planted_bug: arguments.planted_bug,
    }
}

fn sweep(arguments: &Arguments, start: u64, count: u64, keep_going: bool) -> i32 {
    let started = Instant::now();
    let mut progress_at = started + PROGRESS_INTERVAL;
    let mut total = Stats::default();
    let mut failures = 0;
    for seed in start..start.saturating_add(count) {
        let report = run_seed(&options(arguments, seed), Echo::Off);
        total.add(&report.stats);
        let done = seed - start + 1;
        if let Some(failure) = report.failure {
            failures += 1;
            if keep_going {
                let violation = &failure.violation;
                out!(
                    "sim: FAILED seed={seed} size={} property={}: {}",
                    failure.size,
                    violation.property,
                    violation.explanation
                );
                continue;
            }
            summarize(&total, done - 1, started.elapsed());
            out!("{}", failure.report());
            return 1;
        }
        if Instant::now() >= progress_at {
            progress_at += PROGRESS_INTERVAL;
            let seconds = started.elapsed().as_secs_f64();
            out!(
                "sim: {done}/{count} seeds ({:.1}%), {:.0} seeds/s, last seed {seed}, commits {}, max term {}",
                100.0 * done as f64 / count as f64,
                done as f64 / seconds,
                total.commits,
                total.term_max
            );
        }
    }
    summarize(&total, count - failures, started.elapsed());
    if failures > 0 {
        out!("sim: {failures} of {count} seeds failed");
        return 1;
    }
    0
}

fn summarize(total: &Stats, passed: u64, elapsed: Duration) {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    out!(
        "sim: {passed} seeds passed in {seconds:.1} s ({:.0} seeds/s), {} steps, {:.0} s simulated",
        passed as f64 / seconds,
        total.steps,
        total.simulated_ms as f64 / 1000.0
    );
    out!("  faults: {}", total.faults);
    out!("  {}", total.snapshots);
    out!(
        "  elections={} commits={} max term={} client operations={} replies={} slowest recovery={} ms (bound {LIVENESS_BOUND_MS} ms)",
        total.elections,
        total.commits,
        total.term_max,
        total.client_operations,
        total.client_replies,
        total.liveness_ms
    );
}

fn one(arguments: &Arguments, seed: u64, trace: bool) -> i32 {
    let options = options(arguments, seed);
    let echo = if trace { Echo::Collect } else { Echo::Off };
    let started = Instant::now();
    let report = run_seed(&options, echo);
    for line in &report.trace_lines {
        out!("{line}");
    }
    match report.failure {
        Some(failure) => {
            out!("{}", failure.report());
            1
        }
        None => {
            out!("sim: seed {seed} size {} passed", options.size);
            summarize(&report.stats, 1, started.elapsed());
            0
        }
    }
}
