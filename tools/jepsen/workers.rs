//! Client workers: each drives one `submit` process in its stdin/stdout
//! mode, a random mix of GET, SET and CAS over a small key set, and records
//! every operation with its invocation and completion time.

use crate::history::{self, Recorder};
use raftlite::core::rng::Rng;
use raftlite_kit::linearizability::{Action, Operation, Outcome};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub struct WorkerSpec {
    pub client: u64,
    pub seed: u64,
    pub submit: PathBuf,
    pub addresses: String,
    /// Pinned clients talk to one node only and never follow a leader
    /// hint, like a Jepsen client bound to its node: they are the ones that
    /// would see a deposed leader's stale state.
    pub pinned_to: Option<String>,
    pub keys: usize,
    /// submit's own deadline per command, in ms.
    pub timeout_ms: u64,
}

struct Submit {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Submit {
    fn spawn(spec: &WorkerSpec) -> Option<Submit> {
        let timeout = spec.timeout_ms.to_string();
        let mut arguments = vec!["--timeout", &timeout];
        match &spec.pinned_to {
            Some(address) => arguments.extend(["--leader", address, "--no-redirect"]),
            None => arguments.extend(["--cluster", &spec.addresses]),
        }
        let mut child = Command::new(&spec.submit)
            .args(&arguments)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let stdin = child.stdin.take()?;
        let stdout = BufReader::new(child.stdout.take()?);
        Some(Submit {
            child,
            stdin,
            stdout,
        })
    }

    /// One command, one reply line; None if the process died.
    fn call(&mut self, line: &str) -> Option<String> {
        writeln!(self.stdin, "{line}").ok()?;
        self.stdin.flush().ok()?;
        let mut reply = String::new();
        match self.stdout.read_line(&mut reply) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(reply.trim_end().to_string()),
        }
    }
}

impl Drop for Submit {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs until `stop`; returns how many operations it completed.
pub fn run(spec: WorkerSpec, recorder: Arc<Recorder>, stop: Arc<AtomicBool>) -> u64 {
    let mut rng = Rng::new(spec.seed);
    let mut submit = Submit::spawn(&spec);
    let mut last_seen: Vec<Option<String>> = vec![None; spec.keys];
    let mut count = 0;
    while !stop.load(Ordering::Relaxed) {
        let key_index = rng.range_inclusive(0, spec.keys as u64 - 1) as usize;
        let key = format!("k{key_index}");
        let action = choose(&mut rng, spec.client, count, &last_seen[key_index]);
        let line = history::command(&key, &action);
        recorder.event(
            "invoke",
            &[
                history::number("client", spec.client),
                history::field("command", &line),
            ],
        );
        let invoke_ns = recorder.now_ns();
        let reply = submit.as_mut().and_then(|process| process.call(&line));
        let complete_ns = recorder.now_ns();
        if reply.is_none() {
            submit = Submit::spawn(&spec); // it died: the outcome is unknown
        }
        let reply = reply.unwrap_or_default();
        recorder.event(
            "complete",
            &[
                history::number("client", spec.client),
                history::field("reply", &reply),
            ],
        );
        let outcome = history::outcome(&reply);
        if outcome == Outcome::Failed {
            // A pinned client on a follower fails fast; do not spin.
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        remember(&mut last_seen[key_index], &action, &outcome);
        recorder.record(Operation {
            client: spec.client,
            key,
            action,
            invoke_ns,
            complete_ns,
            outcome,
        });
        count += 1;
    }
    count
}

/// 40% GET, 30% SET, 30% CAS (expecting the value this client saw last).
fn choose(rng: &mut Rng, client: u64, count: u64, last_seen: &Option<String>) -> Action {
    let value = format!("c{client}n{count}");
    match rng.range_inclusive(0, 9) {
        0..=3 => Action::Get,
        4..=6 => Action::Set(value),
        _ => Action::Cas {
            expected: last_seen.clone(),
            new: value,
        },
    }
}

fn remember(last_seen: &mut Option<String>, action: &Action, outcome: &Outcome) {
    match (action, outcome) {
        (_, Outcome::Value(value)) => *last_seen = value.clone(),
        (Action::Set(value), Outcome::Ok) => *last_seen = Some(value.clone()),
        (Action::Cas { new, .. }, Outcome::Ok) => *last_seen = Some(new.clone()),
        (_, Outcome::Mismatch { current }) => *last_seen = current.clone(),
        _ => {}
    }
}
