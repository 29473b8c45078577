//! Hand-made histories, each with the verdict a person would give it.
//! Times are in milliseconds; `x` is the key unless a test says otherwise.

use super::*;

const MILLISECOND_NS: u64 = 1_000_000;

fn operation(client: u64, action: Action, span_ms: (u64, u64), outcome: Outcome) -> Operation {
    Operation {
        client,
        key: "x".to_string(),
        action,
        invoke_ns: span_ms.0 * MILLISECOND_NS,
        complete_ns: span_ms.1 * MILLISECOND_NS,
        outcome,
    }
}

fn value(text: Option<&str>) -> Option<String> {
    text.map(str::to_string)
}

fn get(client: u64, span_ms: (u64, u64), read: Option<&str>) -> Operation {
    operation(client, Action::Get, span_ms, Outcome::Value(value(read)))
}

fn set(client: u64, span_ms: (u64, u64), written: &str) -> Operation {
    operation(
        client,
        Action::Set(written.to_string()),
        span_ms,
        Outcome::Ok,
    )
}

fn del(client: u64, span_ms: (u64, u64)) -> Operation {
    operation(client, Action::Del, span_ms, Outcome::Ok)
}

fn cas(client: u64, span_ms: (u64, u64), expected: Option<&str>, new: &str) -> Operation {
    let action = Action::Cas {
        expected: value(expected),
        new: new.to_string(),
    };
    operation(client, action, span_ms, Outcome::Ok)
}

fn cas_mismatch(
    client: u64,
    span_ms: (u64, u64),
    expected: Option<&str>,
    current: Option<&str>,
) -> Operation {
    let mut operation = cas(client, span_ms, expected, "new");
    operation.outcome = Outcome::Mismatch {
        current: value(current),
    };
    operation
}

fn with_outcome(mut operation: Operation, outcome: Outcome) -> Operation {
    operation.outcome = outcome;
    operation
}

fn on_key(mut operation: Operation, key: &str) -> Operation {
    operation.key = key.to_string();
    operation
}

fn verdict(history: &[Operation]) -> Verdict {
    let verdict = check(history, SearchBudget::default());
    println!("{verdict}");
    if let Some(failure) = &verdict.failure {
        println!("{failure}");
    }
    verdict
}

fn assert_linearizable(history: &[Operation]) {
    let verdict = verdict(history);
    assert!(verdict.linearizable, "{verdict}");
    assert!(verdict.failure.is_none() && !verdict.timed_out);
}

fn assert_violation(history: &[Operation], key: &str) -> Failure {
    let verdict = verdict(history);
    assert!(!verdict.linearizable && !verdict.timed_out, "{verdict}");
    let failure = verdict.failure.expect("a violation has a failure");
    assert_eq!(failure.key, key);
    failure
}

#[test]
fn empty_history_is_linearizable() {
    let verdict = verdict(&[]);
    assert!(verdict.linearizable);
    assert_eq!(verdict.to_string(), "linearizable: 0 operations on 0 keys");
}

#[test]
fn sequential_history_is_linearizable() {
    let history = [
        get(1, (0, 1), None),
        set(1, (2, 3), "a"),
        get(2, (4, 5), Some("a")),
        set(2, (6, 7), "b"),
        get(1, (8, 9), Some("b")),
        del(1, (10, 11)),
        get(2, (12, 13), None),
        cas(1, (14, 15), None, "c"),
        cas_mismatch(2, (16, 17), Some("a"), Some("c")),
        cas(2, (18, 19), Some("c"), "d"),
        get(1, (20, 21), Some("d")),
    ];
    assert_linearizable(&history);
    let verdict = verdict(&history);
    assert_eq!(verdict.to_string(), "linearizable: 11 operations on 1 keys");
}

#[test]
fn concurrent_reads_may_see_either_side_of_a_write() {
    let history = [
        set(1, (0, 10), "a"),
        get(2, (1, 5), None),
        get(3, (2, 12), Some("a")),
        get(4, (3, 4), None),
        get(5, (6, 20), Some("a")),
    ];
    assert_linearizable(&history);
}

#[test]
fn concurrent_writes_may_take_effect_in_either_order() {
    let history = [
        set(1, (0, 10), "a"),
        set(2, (0, 10), "b"),
        get(3, (11, 12), Some("a")),
        get(3, (13, 14), Some("a")),
    ];
    assert_linearizable(&history);
}

#[test]
fn reads_cannot_disagree_on_the_order_of_concurrent_writes() {
    let history = [
        set(1, (0, 10), "a"),
        set(2, (0, 10), "b"),
        get(3, (11, 12), Some("a")),
        get(4, (13, 14), Some("b")),
    ];
    assert_violation(&history, "x");
}

#[test]
fn operations_meeting_at_one_instant_count_as_concurrent() {
    let history = [set(1, (0, 10), "a"), get(2, (10, 20), None)];
    assert_linearizable(&history);
}

#[test]
fn stale_read_is_not_linearizable() {
    let history = [
        set(1, (0, 10), "1"),
        set(2, (20, 30), "2"),
        get(3, (40, 50), Some("1")),
        get(4, (60, 70), Some("2")),
    ];
    let failure = assert_violation(&history, "x");
    assert!(failure.window.contains(&history[1]), "{failure}");
    assert!(failure.window.contains(&history[2]), "{failure}");
    // The search finds that the first set cannot be overwritten while the
    // stale read still has to see its value.
    let explanation = &failure.explanation;
    assert!(
        explanation.contains("leaving the key \"1\", which client 3"),
        "{explanation}"
    );
    assert!(
        explanation.contains("get -> \"1\" has yet to see"),
        "{explanation}"
    );
    assert!(explanation.contains("then client 2 [20.000 ms, 30.000 ms] set(\"2\")"));
}

#[test]
fn lost_acknowledged_write_is_not_linearizable() {
    let history = [
        set(1, (0, 1), "a"),
        get(2, (2, 3), Some("a")),
        on_key(set(3, (2, 3), "other"), "y"),
        set(1, (4, 5), "b"),
        on_key(get(3, (5, 6), Some("other")), "y"),
        get(2, (100, 101), Some("a")),
    ];
    let failure = assert_violation(&history, "x");
    assert!(failure.window.contains(&history[3]), "{failure}");
    assert!(failure.window.contains(&history[5]), "{failure}");
}

#[test]
fn cas_taking_effect_twice_is_not_linearizable() {
    let history = [
        set(1, (0, 1), "0"),
        cas(1, (2, 3), Some("0"), "1"),
        cas(2, (4, 5), Some("0"), "1"),
    ];
    assert_violation(&history, "x");
}

#[test]
fn concurrent_cas_increments_cannot_both_succeed() {
    // Two clients increment a counter from 0 at once; both are told Ok, but
    // only one of them can have seen 0.
    let history = [
        set(1, (0, 1), "0"),
        cas(1, (10, 20), Some("0"), "1"),
        cas(2, (10, 20), Some("0"), "1"),
        get(3, (30, 31), Some("1")),
    ];
    assert_violation(&history, "x");
    let mut fixed = history.clone();
    fixed[2] = cas_mismatch(2, (10, 20), Some("0"), Some("1"));
    assert_linearizable(&fixed);
}

#[test]
fn counter_showing_more_increments_than_acknowledged_is_not_linearizable() {
    let history = [
        set(1, (0, 1), "0"),
        cas(1, (2, 3), Some("0"), "1"),
        cas(2, (4, 5), Some("1"), "2"),
        with_outcome(cas(3, (6, 7), Some("2"), "3"), Outcome::Failed),
        get(1, (8, 9), Some("3")),
    ];
    assert_violation(&history, "x");
}

#[test]
fn unknown_write_may_take_effect_long_after() {
    let history = [
        set(1, (0, 1), "a"),
        with_outcome(set(2, (2, 3), "b"), Outcome::Unknown),
        get(3, (4, 5), Some("a")),
        set(1, (6, 7), "c"),
        get(3, (8, 9), Some("c")),
        get(3, (1000, 1001), Some("b")),
    ];
    assert_linearizable(&history);
}

#[test]
fn unknown_write_never_observed_is_linearizable() {
    let history = [
        set(1, (0, 1), "a"),
        with_outcome(set(2, (2, 3), "b"), Outcome::Unknown),
        with_outcome(del(2, (4, 5)), Outcome::Unknown),
        get(3, (6, 7), Some("a")),
        get(3, (100, 101), Some("a")),
    ];
    assert_linearizable(&history);
}

#[test]
fn unknown_write_cannot_take_effect_before_its_invocation() {
    let history = [
        set(1, (0, 1), "a"),
        get(3, (2, 3), Some("b")),
        with_outcome(set(2, (4, 5), "b"), Outcome::Unknown),
    ];
    assert_violation(&history, "x");
}

#[test]
fn unknown_write_takes_effect_at_most_once() {
    let history = [
        set(1, (0, 1), "a"),
        with_outcome(set(2, (2, 3), "b"), Outcome::Unknown),
        get(3, (4, 5), Some("b")),
        set(1, (6, 7), "c"),
        get(3, (8, 9), Some("b")),
    ];
    assert_violation(&history, "x");
}

#[test]
fn unknown_cas_applies_only_when_it_matches() {
    let applied = [
        set(1, (0, 1), "0"),
        with_outcome(cas(2, (2, 3), Some("0"), "1"), Outcome::Unknown),
        get(3, (4, 5), Some("1")),
    ];
    assert_linearizable(&applied);
    let mismatched = [
        set(1, (0, 1), "0"),
        with_outcome(cas(2, (2, 3), Some("5"), "1"), Outcome::Unknown),
        get(3, (4, 5), Some("1")),
    ];
    assert_violation(&mismatched, "x");
}

#[test]
fn read_of_a_value_nobody_wrote_is_not_linearizable() {
    let history = [
        set(1, (0, 1), "a"),
        get(2, (2, 3), Some("a")),
        get(2, (4, 5), Some("zzz")),
        get(2, (6, 7), Some("a")),
    ];
    let failure = assert_violation(&history, "x");
    assert!(failure.window.contains(&history[2]), "{failure}");
}

#[test]
fn failed_write_is_dropped() {
    let history = [
        with_outcome(set(1, (0, 1), "a"), Outcome::Failed),
        get(2, (2, 3), None),
    ];
    assert_linearizable(&history);
    let observed = [
        with_outcome(set(1, (0, 1), "a"), Outcome::Failed),
        get(2, (2, 3), Some("a")),
    ];
    assert_violation(&observed, "x");
}

#[test]
fn get_with_unknown_outcome_is_dropped() {
    let history = [
        set(1, (0, 1), "a"),
        with_outcome(get(2, (2, 3), None), Outcome::Unknown),
        with_outcome(get(2, (4, 5), None), Outcome::Failed),
    ];
    let verdict = verdict(&history);
    assert!(verdict.linearizable);
    assert_eq!(verdict.operations_checked, 1);
}

#[test]
fn del_makes_the_key_absent_and_deleting_an_absent_key_is_ok() {
    let history = [
        del(1, (0, 1)),
        get(1, (2, 3), None),
        set(1, (4, 5), "a"),
        del(2, (6, 7)),
        get(1, (8, 9), None),
        del(2, (10, 11)),
    ];
    assert_linearizable(&history);
    let resurrected = [
        set(1, (0, 1), "a"),
        del(2, (2, 3)),
        get(1, (4, 5), Some("a")),
    ];
    assert_violation(&resurrected, "x");
}

#[test]
fn cas_expecting_absent_applies_only_to_an_absent_key() {
    let history = [
        cas(1, (0, 1), None, "a"),
        cas_mismatch(2, (2, 3), None, Some("a")),
        del(1, (4, 5)),
        cas(2, (6, 7), None, "b"),
        get(1, (8, 9), Some("b")),
    ];
    assert_linearizable(&history);
    let wrongly_applied = [set(1, (0, 1), "a"), cas(2, (2, 3), None, "b")];
    assert_violation(&wrongly_applied, "x");
    let wrong_mismatch = [cas_mismatch(1, (0, 1), None, None)];
    assert_violation(&wrong_mismatch, "x");
    let wrong_current = [
        set(1, (0, 1), "a"),
        cas_mismatch(2, (2, 3), Some("b"), None),
    ];
    assert_violation(&wrong_current, "x");
}

#[test]
fn keys_are_checked_independently() {
    let history = [
        on_key(set(1, (0, 10), "a"), "a"),
        on_key(set(1, (0, 10), "b"), "b"),
        on_key(get(2, (20, 30), Some("a")), "a"),
        on_key(get(2, (20, 30), None), "b"),
        on_key(get(2, (20, 30), None), "c"),
    ];
    let failure = assert_violation(&history, "b");
    assert_eq!(failure.window.len(), 2, "{failure}");
    let verdict = verdict(&history);
    assert_eq!(verdict.keys_checked, 2);
    assert!(verdict.to_string().starts_with("NOT linearizable: key b: "));
}

#[test]
fn malformed_operation_is_reported_not_panicked_on() {
    let history = [operation(1, Action::Get, (0, 1), Outcome::Ok)];
    let failure = assert_violation(&history, "x");
    assert!(failure.explanation.starts_with("malformed operation"));
    let backwards = [get(1, (5, 4), None)];
    let failure = assert_violation(&backwards, "x");
    assert!(failure.explanation.contains("before its invocation"));
}

#[test]
fn exhausted_budget_is_reported_as_unknown() {
    let history = [
        set(1, (0, 10), "a"),
        set(2, (0, 10), "b"),
        get(3, (11, 12), Some("a")),
    ];
    let verdict = check(&history, SearchBudget { steps_max: 1 });
    assert!(!verdict.linearizable && verdict.timed_out && verdict.failure.is_none());
    assert_eq!(verdict.timed_out_key.as_deref(), Some("x"));
    assert_eq!(
        verdict.to_string(),
        "unknown: search budget exhausted on key x"
    );
}

#[test]
fn verdict_and_failure_print_as_promised() {
    let history = [set(1, (0, 10), "1"), get(2, (20, 30), None)];
    let failure = assert_violation(&history, "x");
    let verdict = verdict(&history);
    assert_eq!(
        verdict.to_string(),
        "NOT linearizable: key x: at most 0 of the 2 completed operations linearize, \
         leaving the key absent, which client 2 [20.000 ms, 30.000 ms] get -> absent has yet \
         to see and no pending operation writes again; then client 1 [0.000 ms, 10.000 ms] \
         set(\"1\") -> ok cannot take effect before it completes"
    );
    assert_eq!(
        failure.to_string(),
        "client 1 [0.000 ms, 10.000 ms] set(\"1\") -> ok\n\
         client 2 [20.000 ms, 30.000 ms] get -> absent"
    );
    let timed_out = with_outcome(cas(7, (1, 2), None, "n\nl"), Outcome::Unknown);
    assert_eq!(
        format_operation(&timed_out, 0),
        "client 7 [1.000 ms, ?] cas(absent => \"n\\nl\") -> unknown"
    );
}
