//! Running seeds: one seed under `catch_unwind` (a panic in the core is a
//! finding, reported as property "core assertion"), with the default panic
//! output silenced, and the report a failure prints.

use super::options::{Options, STEPS_DEFAULT};
use super::property::{Property, Violation};
use super::simulator::Simulator;
use super::stats::Stats;
use super::trace::Echo;
use raftlite::core::PlantedBug;
use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

/// A seed that broke a property.
#[derive(Clone, Debug)]
pub struct Failure {
    pub seed: u64,
    pub size: usize,
    pub steps: u64,
    pub planted_bug: Option<PlantedBug>,
    pub violation: Violation,
    /// Where it happened.
    pub step: u64,
    pub time_ms: u64,
    pub trace_tail: Vec<String>,
}

impl Failure {
    /// The command that replays this run with its full trace.
    pub fn replay_command(&self) -> String {
        // A planted build goes to its own target dir, never over the real
        // binaries (the Makefile's PLANTED).
        let (target, features) = match self.planted_bug {
            Some(_) => (
                "CARGO_TARGET_DIR=target/planted ",
                " --features planted-bugs",
            ),
            None => ("", ""),
        };
        let mut command = format!(
            "{target}cargo run --release{features} --bin sim -- --seed {} --size {} --trace",
            self.seed, self.size
        );
        if self.steps != STEPS_DEFAULT {
            command.push_str(&format!(" --steps {}", self.steps));
        }
        if let Some(bug) = self.planted_bug {
            command.push_str(&format!(" --plant-bug {}", bug.name()));
        }
        command
    }

    /// The whole report: what broke, how to replay it, the last events.
    pub fn report(&self) -> String {
        let mut text = format!(
            "FAILED seed={} size={} property={}\n  {}\n  at step {}, {} ms simulated\n  replay: {}\n  last {} events:\n",
            self.seed,
            self.size,
            self.violation.property,
            self.violation.explanation,
            self.step,
            self.time_ms,
            self.replay_command(),
            self.trace_tail.len()
        );
        for line in &self.trace_tail {
            text.push_str("    ");
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

/// How one seed went.
pub struct SeedReport {
    pub stats: Stats,
    pub failure: Option<Failure>,
    /// Every trace line, with `Echo::Collect`.
    pub trace_lines: Vec<String>,
}

pub fn run_seed(options: &Options, echo: Echo) -> SeedReport {
    install_quiet_panic_hook();
    let mut simulator = Simulator::new(options.clone(), echo);
    QUIET.with(|quiet| quiet.set(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| simulator.run()));
    QUIET.with(|quiet| quiet.set(false));
    let violation = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(violation)) => Some(violation),
        Err(payload) => Some(Violation::new(
            Property::CoreAssertion,
            panic_explanation(payload.as_ref()),
        )),
    };
    let failure = violation.map(|violation| Failure {
        seed: options.seed,
        size: options.size,
        steps: options.steps,
        planted_bug: options.planted_bug,
        violation,
        step: simulator.step(),
        time_ms: simulator.now_ms(),
        trace_tail: simulator.trace.tail_lines(),
    });
    SeedReport {
        stats: simulator.stats(),
        failure,
        trace_lines: simulator.trace.take_lines(),
    }
}

thread_local! {
    /// Set while this thread runs a seed: its panics are findings, reported
    /// by the sweep, not noise for the terminal.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    static PANIC_LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Wraps the panic hook once: quiet threads record where they panicked,
/// other threads (other tests) keep the usual output.
fn install_quiet_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                let location = info.location().map(|location| location.to_string());
                PANIC_LOCATION.with(|slot| *slot.borrow_mut() = location);
            } else {
                previous(info);
            }
        }));
    });
}

fn panic_explanation(payload: &(dyn std::any::Any + Send)) -> String {
    let message = if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-text payload".to_string()
    };
    // assert_eq! puts left and right on lines of their own; a report
    // explanation is one line.
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let location = PANIC_LOCATION.with(|slot| slot.borrow_mut().take());
    match location {
        Some(location) => format!("{message} (at {location})"),
        None => message,
    }
}
