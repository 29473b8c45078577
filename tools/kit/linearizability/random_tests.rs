//! Histories generated from a sequential register: every operation takes
//! effect at a random instant inside its interval (an unknown one at a random
//! instant after its invocation, or never), so each history is linearizable
//! by construction. The checker must accept them all, and reject each once a
//! read is changed to a value nobody wrote. On tiny arbitrary histories it
//! must agree with a brute-force search written from the definition.

use raftlite::core::rng::Rng;
use std::collections::HashMap;
use std::time::Instant;

use super::*;

const MICROSECOND_NS: u64 = 1_000;

/// Histories compared with the brute-force checker.
const TINY_HISTORIES_COUNT: usize = 50_000;

#[derive(Clone, Copy, Debug)]
struct Workload {
    operations_count: usize,
    clients_count: u64,
    keys_count: u64,
    unknown_percent: u64,
    failed_percent: u64,
    /// Values come from "0".."3" instead of being unique per write, which
    /// makes reads ambiguous and the search harder.
    values_few: bool,
    seed: u64,
}

/// An operation and the instant it takes effect (`None`: never).
struct Planned {
    operation: Operation,
    effect_ns: Option<u64>,
}

fn generate(workload: Workload) -> Vec<Operation> {
    let mut rng = Rng::new(workload.seed);
    let mut planned = plan(&mut rng, workload);
    apply_in_effect_order(&mut planned);
    planned
        .into_iter()
        .map(|planned| planned.operation)
        .collect()
}

/// Draws the operations, their intervals and outcome kinds; completed
/// outcomes are filled in later by `apply_in_effect_order`.
fn plan(rng: &mut Rng, workload: Workload) -> Vec<Planned> {
    let mut client_free_ns = vec![0u64; workload.clients_count as usize];
    let mut written: HashMap<String, Vec<String>> = HashMap::new();
    let mut planned = Vec::with_capacity(workload.operations_count);
    for index in 0..workload.operations_count {
        let client = rng.below(workload.clients_count);
        let invoke_ns = client_free_ns[client as usize] + rng.below(50) * MICROSECOND_NS;
        let mut duration_ns = (10 + rng.below(1_000)) * MICROSECOND_NS;
        if rng.chance(2, 100) {
            duration_ns *= 20;
        }
        let complete_ns = invoke_ns + duration_ns;
        client_free_ns[client as usize] = complete_ns;
        let key = format!("k{}", rng.below(workload.keys_count));
        let history = written.entry(key.clone()).or_default();
        let action = random_action(rng, workload, index, history);
        let (outcome, effect_ns) = if rng.chance(workload.unknown_percent, 100) {
            let effect_ns = invoke_ns + rng.below(10 * duration_ns + 1);
            (Outcome::Unknown, rng.chance(50, 100).then_some(effect_ns))
        } else if rng.chance(workload.failed_percent, 100) {
            (Outcome::Failed, None)
        } else {
            (Outcome::Ok, Some(invoke_ns + rng.below(duration_ns + 1)))
        };
        let operation = Operation {
            client,
            key,
            action,
            invoke_ns,
            complete_ns,
            outcome,
        };
        planned.push(Planned {
            operation,
            effect_ns,
        });
    }
    planned
}

fn random_action(
    rng: &mut Rng,
    workload: Workload,
    index: usize,
    written: &mut Vec<String>,
) -> Action {
    let value = if workload.values_few {
        rng.below(4).to_string()
    } else {
        format!("v{index}")
    };
    match rng.below(100) {
        0..=39 => Action::Get,
        40..=64 => {
            written.push(value.clone());
            Action::Set(value)
        }
        65..=74 => Action::Del,
        _ => {
            // Expect a recent value, so that some of them match.
            let recent_count = written.len().min(3) as u64;
            let pick = rng.below(recent_count + 1);
            let expected =
                (pick < recent_count).then(|| written[written.len() - 1 - pick as usize].clone());
            written.push(value.clone());
            Action::Cas {
                expected,
                new: value,
            }
        }
    }
}

/// Runs the operations that take effect through a sequential register, in
/// the order of their effect instants, and records what completed ones saw.
fn apply_in_effect_order(planned: &mut [Planned]) {
    let mut order: Vec<usize> = (0..planned.len())
        .filter(|&index| planned[index].effect_ns.is_some())
        .collect();
    order.sort_by_key(|&index| (planned[index].effect_ns, index));
    let mut registers: HashMap<String, Option<String>> = HashMap::new();
    for index in order {
        let operation = &mut planned[index].operation;
        let register = registers.entry(operation.key.clone()).or_default();
        let outcome = match &operation.action {
            Action::Get => Outcome::Value(register.clone()),
            Action::Set(value) => {
                *register = Some(value.clone());
                Outcome::Ok
            }
            Action::Del => {
                *register = None;
                Outcome::Ok
            }
            Action::Cas { expected, new } if register == expected => {
                *register = Some(new.clone());
                Outcome::Ok
            }
            Action::Cas { .. } => Outcome::Mismatch {
                current: register.clone(),
            },
        };
        if operation.outcome != Outcome::Unknown {
            operation.outcome = outcome;
        }
    }
}

fn small_workload(seed: u64) -> Workload {
    Workload {
        operations_count: 300,
        clients_count: 1 + seed % 6,
        keys_count: 1 + seed % 3,
        unknown_percent: 5,
        failed_percent: 5,
        values_few: seed.is_multiple_of(2),
        seed,
    }
}

#[test]
fn generated_histories_are_linearizable() {
    for seed in 1..=60 {
        let history = generate(small_workload(seed));
        let verdict = check(&history, SearchBudget::default());
        assert!(verdict.linearizable, "seed {seed}: {verdict}");
    }
}

#[test]
fn generated_histories_with_a_forged_read_are_not() {
    for seed in 1..=60 {
        let mut history = generate(small_workload(seed));
        let mut rng = Rng::new(seed + 1_000);
        let reads: Vec<usize> = (0..history.len())
            .filter(|&index| matches!(history[index].outcome, Outcome::Value(_)))
            .collect();
        let forged = reads[rng.below(reads.len() as u64) as usize];
        history[forged].outcome = Outcome::Value(Some("never written".to_string()));
        let verdict = check(&history, SearchBudget::default());
        assert!(
            !verdict.linearizable && !verdict.timed_out,
            "seed {seed}: {verdict}"
        );
        let failure = verdict.failure.expect("a violation has a failure");
        assert_eq!(failure.key, history[forged].key, "seed {seed}");
        assert!(
            failure.window.contains(&history[forged]),
            "seed {seed}: {failure}"
        );
    }
}

/// Not a benchmark with a threshold (machines differ): prints the times, so
/// run it with `cargo test --release large -- --nocapture`. A violation can
/// cost more than a pass, since the search must rule out every way to reach
/// it; here the check stops at the first failing key.
#[test]
fn large_generated_history_timing() {
    for (clients_count, values_few) in [(16, false), (16, true), (64, false)] {
        let workload = Workload {
            operations_count: 20_000,
            clients_count,
            keys_count: 10,
            unknown_percent: 2,
            failed_percent: 2,
            values_few,
            seed: 7,
        };
        let mut history = generate(workload);
        let verdict = timed_check(&history, workload);
        assert!(verdict.linearizable, "{verdict}");
        let reads: Vec<usize> = (0..history.len())
            .filter(|&index| matches!(history[index].outcome, Outcome::Value(_)))
            .collect();
        let forged = reads[reads.len() / 2];
        history[forged].outcome = Outcome::Value(Some("never written".to_string()));
        let verdict = timed_check(&history, workload);
        assert!(!verdict.linearizable && !verdict.timed_out, "{verdict}");
    }
}

fn timed_check(history: &[Operation], workload: Workload) -> Verdict {
    let unknown = history
        .iter()
        .filter(|operation| operation.outcome == Outcome::Unknown);
    let unknown_count = unknown.count();
    let started = Instant::now();
    let verdict = check(history, SearchBudget::default());
    let elapsed_ms = started.elapsed().as_secs_f64() * 1_000.0;
    println!(
        "{} operations ({unknown_count} unknown), {} clients, {} keys, values_few={}: \
         {elapsed_ms:.1} ms: {verdict}",
        history.len(),
        workload.clients_count,
        workload.keys_count,
        workload.values_few,
    );
    verdict
}

/// Whether `remaining` (indices into `history`) can be ordered after a
/// prefix that left `state`, by trying every order: the definition of
/// linearizability, written independently of the checker's model and
/// search. Only for histories of a few operations.
fn brute_force(history: &[Operation], remaining: &[usize], state: &Option<String>) -> bool {
    let is_unknown = |index: usize| history[index].outcome == Outcome::Unknown;
    if remaining.iter().all(|&index| is_unknown(index)) {
        return true;
    }
    for (position, &index) in remaining.iter().enumerate() {
        let operation = &history[index];
        // A completed operation that finished before this one began must
        // come first.
        let blocked = remaining
            .iter()
            .any(|&other| !is_unknown(other) && history[other].complete_ns < operation.invoke_ns);
        if blocked {
            continue;
        }
        let mut rest = remaining.to_vec();
        rest.remove(position);
        for state_after in states_after(operation, state) {
            if brute_force(history, &rest, &state_after) {
                return true;
            }
        }
    }
    false
}

/// The register values `operation` may leave when it takes effect on
/// `state` (none if its outcome is impossible there).
fn states_after(operation: &Operation, state: &Option<String>) -> Vec<Option<String>> {
    let unchanged = vec![state.clone()];
    match (&operation.action, &operation.outcome) {
        (Action::Get, Outcome::Value(value)) if value == state => unchanged,
        (Action::Set(value), Outcome::Ok | Outcome::Unknown) => vec![Some(value.clone())],
        (Action::Del, Outcome::Ok | Outcome::Unknown) => vec![None],
        (Action::Cas { expected, new }, Outcome::Ok) if expected == state => {
            vec![Some(new.clone())]
        }
        (Action::Cas { expected, .. }, Outcome::Mismatch { current })
            if current == state && expected != state =>
        {
            unchanged
        }
        (Action::Cas { expected, new }, Outcome::Unknown) if expected == state => {
            vec![Some(new.clone())]
        }
        (Action::Cas { .. }, Outcome::Unknown) => unchanged,
        _ => Vec::new(),
    }
}

/// A tiny history with arbitrary (mostly wrong) outcomes over two values, on
/// one key, with ties in time.
fn tiny_random_history(rng: &mut Rng) -> Vec<Operation> {
    let operations_count = 2 + rng.below(6) as usize;
    let mut history = Vec::with_capacity(operations_count);
    let random_value = |rng: &mut Rng| match rng.below(3) {
        0 => None,
        pick => Some(pick.to_string()),
    };
    for _ in 0..operations_count {
        let invoke_ns = rng.below(8);
        let complete_ns = invoke_ns + rng.below(5);
        let (action, outcome) = match rng.below(4) {
            0 => (Action::Get, Outcome::Value(random_value(rng))),
            1 => (Action::Set(rng.below(3).to_string()), Outcome::Ok),
            2 => (Action::Del, Outcome::Ok),
            _ => {
                let expected = random_value(rng);
                let new = rng.below(3).to_string();
                let outcome = match rng.below(2) {
                    0 => Outcome::Ok,
                    _ => Outcome::Mismatch {
                        current: random_value(rng),
                    },
                };
                (Action::Cas { expected, new }, outcome)
            }
        };
        let outcome = match rng.below(10) {
            0 | 1 => Outcome::Unknown,
            2 => Outcome::Failed,
            _ => outcome,
        };
        history.push(Operation {
            client: 0,
            key: "x".to_string(),
            action,
            invoke_ns,
            complete_ns,
            outcome,
        });
    }
    history
}

#[test]
fn checker_agrees_with_brute_force_on_tiny_histories() {
    let mut rng = Rng::new(99);
    let mut linearizable_count = 0;
    for case in 0..TINY_HISTORIES_COUNT {
        let history = tiny_random_history(&mut rng);
        let kept: Vec<usize> = (0..history.len())
            .filter(|&index| {
                let operation = &history[index];
                let unknown_read =
                    operation.action == Action::Get && operation.outcome == Outcome::Unknown;
                operation.outcome != Outcome::Failed && !unknown_read
            })
            .collect();
        let expected = brute_force(&history, &kept, &None);
        let verdict = check(&history, SearchBudget::default());
        assert!(!verdict.timed_out);
        assert_eq!(
            verdict.linearizable, expected,
            "case {case}: {verdict}\n{history:#?}"
        );
        linearizable_count += usize::from(expected);
    }
    println!("{linearizable_count} of {TINY_HISTORIES_COUNT} tiny histories linearizable");
    assert!(linearizable_count > 5_000);
}
