//! What a failed check tells a person: the window of operations around the
//! violation, the one-line explanation, and how an operation is printed.

use super::prepare::KeyHistory;
use super::search::{DeadEnd, OperationRef};
use super::{Action, Failure, Operation, Outcome};

/// Most operations shown in a failure window: enough for the writes and
/// reads that conflict, few enough to read.
const WINDOW_OPERATIONS_MAX: usize = 24;

/// One operation on one line: client, invocation and completion in
/// milliseconds from `origin_ns`, action and outcome. For example
/// `client 3 [12.345 ms, 15.002 ms] cas("1" => "2") -> mismatch (current "7")`.
pub fn format_operation(operation: &Operation, origin_ns: u64) -> String {
    let invoke = milliseconds(operation.invoke_ns, origin_ns);
    let complete = match operation.outcome {
        Outcome::Unknown => "?".to_string(),
        _ => milliseconds(operation.complete_ns, origin_ns),
    };
    let action = match &operation.action {
        Action::Get => "get".to_string(),
        Action::Set(value) => format!("set({value:?})"),
        Action::Del => "del".to_string(),
        Action::Cas { expected, new } => format!("cas({} => {new:?})", value_text(expected)),
    };
    let outcome = match &operation.outcome {
        Outcome::Value(value) => value_text(value),
        Outcome::Ok => "ok".to_string(),
        Outcome::Mismatch { current } => format!("mismatch (current {})", value_text(current)),
        Outcome::Failed => "failed".to_string(),
        Outcome::Unknown => "unknown".to_string(),
    };
    let client = operation.client;
    format!("client {client} [{invoke}, {complete}] {action} -> {outcome}")
}

/// A value quoted and escaped (so it stays on one line), or `absent`.
fn value_text(value: &Option<String>) -> String {
    match value {
        Some(text) => format!("{text:?}"),
        None => "absent".to_string(),
    }
}

fn milliseconds(time_ns: u64, origin_ns: u64) -> String {
    let elapsed_us = time_ns.saturating_sub(origin_ns) / 1_000;
    format!("{}.{:03} ms", elapsed_us / 1_000, elapsed_us % 1_000)
}

/// The first operation whose outcome its action cannot have, or that
/// completed before it was invoked.
pub(super) fn find_malformed(history: &[Operation], history_start_ns: u64) -> Option<Failure> {
    history.iter().find_map(|operation| {
        let reason = malformed_reason(operation, history_start_ns)?;
        Some(Failure {
            key: operation.key.clone(),
            window: vec![operation.clone()],
            explanation: format!("malformed operation: {reason}"),
            history_start_ns,
        })
    })
}

fn malformed_reason(operation: &Operation, history_start_ns: u64) -> Option<String> {
    let fits = matches!(
        (&operation.action, &operation.outcome),
        (_, Outcome::Failed | Outcome::Unknown)
            | (Action::Get, Outcome::Value(_))
            | (Action::Set(_) | Action::Del, Outcome::Ok)
            | (Action::Cas { .. }, Outcome::Ok | Outcome::Mismatch { .. })
    );
    if !fits {
        let client = operation.client;
        let text = format_operation(operation, history_start_ns);
        return Some(format!(
            "client {client}'s action cannot have this outcome: {text}"
        ));
    }
    let completed = !matches!(operation.outcome, Outcome::Failed | Outcome::Unknown);
    if completed && operation.complete_ns < operation.invoke_ns {
        let (invoke_ns, complete_ns) = (operation.invoke_ns, operation.complete_ns);
        return Some(format!(
            "client {} completed at {complete_ns} ns, before its invocation at {invoke_ns} ns",
            operation.client
        ));
    }
    None
}

/// The failure of `key`, from the search's deepest dead end.
pub(super) fn failure(
    key: &str,
    history: &KeyHistory,
    dead_end: &DeadEnd,
    history_start_ns: u64,
) -> Failure {
    let blocked = history.completed[dead_end.blocked].source;
    let state = match history.values.get(dead_end.state).copied().flatten() {
        Some(text) => format!("{text:?}"),
        None => "absent".to_string(),
    };
    let needed_by = needed_by(history, dead_end);
    let needed = match needed_by {
        Some(index) => format!(
            ", which {} has yet to see and no pending operation writes again",
            format_operation(history.completed[index].source, history_start_ns)
        ),
        None => String::new(),
    };
    let explanation = format!(
        "at most {} of the {} completed operations linearize, leaving the key {state}{needed}; \
         then {} cannot take effect before it completes",
        dead_end.linearized_count,
        history.completed.len(),
        format_operation(blocked, history_start_ns),
    );
    let mut chosen = dead_end.recent.clone();
    chosen.push(OperationRef::Completed(dead_end.blocked));
    chosen.extend(needed_by.map(OperationRef::Completed));
    let window = window(history, dead_end.blocked, chosen)
        .into_iter()
        .map(|operation| source(history, operation).clone())
        .collect();
    Failure {
        key: key.to_string(),
        window,
        explanation,
        history_start_ns,
    }
}

/// When the dead end's value must stay for a pending operation (so that no
/// write could go next), the first such operation.
fn needed_by(history: &KeyHistory, dead_end: &DeadEnd) -> Option<usize> {
    if !dead_end.state_needed {
        return None;
    }
    (0..history.completed.len()).find(|&index| {
        let observed = history.completed[index].effect.observed();
        observed == Some(dead_end.state) && !dead_end.linearized.contains(index)
    })
}

/// The `chosen` operations plus those overlapping the `blocked` one and
/// invoked since the earliest chosen one (the nearest in time first, up to
/// `WINDOW_OPERATIONS_MAX` in all), in invocation order.
fn window(
    history: &KeyHistory,
    blocked: usize,
    mut chosen: Vec<OperationRef>,
) -> Vec<OperationRef> {
    let blocked = history.completed[blocked].source;
    let chosen_sources = chosen.iter().map(|&operation| source(history, operation));
    let start_ns = chosen_sources.map(|operation| operation.invoke_ns).min();
    let start_ns = start_ns.unwrap_or(blocked.invoke_ns);
    let completed = (0..history.completed.len()).map(OperationRef::Completed);
    let unknown = (0..history.unknown.len()).map(OperationRef::Unknown);
    let mut overlapping: Vec<OperationRef> = completed
        .chain(unknown)
        .filter(|&operation| {
            let candidate = source(history, operation);
            let end_ns = match candidate.outcome {
                Outcome::Unknown => u64::MAX,
                _ => candidate.complete_ns,
            };
            candidate.invoke_ns >= start_ns
                && candidate.invoke_ns <= blocked.complete_ns
                && end_ns >= blocked.invoke_ns
                && !chosen.contains(&operation)
        })
        .collect();
    overlapping.sort_by_key(|&operation| {
        source(history, operation)
            .invoke_ns
            .abs_diff(blocked.invoke_ns)
    });
    overlapping.truncate(WINDOW_OPERATIONS_MAX.saturating_sub(chosen.len()));
    chosen.extend(overlapping);
    chosen.sort_by_key(|&operation| (source(history, operation).invoke_ns, operation));
    chosen.dedup();
    chosen
}

fn source<'a>(history: &KeyHistory<'a>, operation: OperationRef) -> &'a Operation {
    match operation {
        OperationRef::Completed(index) => history.completed[index].source,
        OperationRef::Unknown(index) => history.unknown[index].source,
    }
}
