//! Turns the operations of one key into what the search walks: interned
//! values, effects, and the time-ordered list of events.

use std::collections::{BTreeMap, HashMap};

use super::model::{Effect, ValueId, ABSENT};
use super::{Action, Operation, Outcome};

/// Groups the operations that can matter by key, in history order. Dropped:
/// `Failed` operations (certainly not applied) and `Get`s with an unknown
/// outcome (a read that may or may not have happened changes nothing).
pub(super) fn split_by_key(history: &[Operation]) -> BTreeMap<&str, Vec<&Operation>> {
    let mut keys: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    for operation in history {
        let dropped = matches!(
            (&operation.action, &operation.outcome),
            (_, Outcome::Failed) | (Action::Get, Outcome::Unknown)
        );
        if !dropped {
            keys.entry(operation.key.as_str())
                .or_default()
                .push(operation);
        }
    }
    keys
}

/// One operation of the key, as the search sees it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Step<'a> {
    pub effect: Effect,
    pub source: &'a Operation,
}

/// An invocation or completion of a completed operation.
#[derive(Clone, Copy, Debug)]
pub(super) struct Event {
    /// Index into `KeyHistory::completed`.
    pub operation: usize,
    pub is_return: bool,
    /// Rank among all events of the key (unknown invocations included), so
    /// that the search can tell whether an unknown operation was invoked
    /// before a completion.
    pub position: usize,
}

/// The sub-history of one key, ready for the search.
#[derive(Debug)]
pub(super) struct KeyHistory<'a> {
    /// The value table: `values[id]` is the value `id` stands for.
    pub values: Vec<Option<&'a str>>,
    /// Operations that completed, in invocation order.
    pub completed: Vec<Step<'a>>,
    /// Operations with an unknown outcome that the search must consider, in
    /// invocation order.
    pub unknown: Vec<Step<'a>>,
    /// Invocations and completions of `completed`, in time order.
    pub events: Vec<Event>,
    /// For each of `unknown`, the position of its invocation among `events`.
    pub unknown_positions: Vec<usize>,
    /// For each of `unknown`, the previous one with the same effect, if any.
    pub unknown_twin_previous: Vec<Option<usize>>,
}

/// An event before sorting: time, then invocations before completions at the
/// same instant (the two operations are then taken as concurrent, the
/// reading that cannot raise a false alarm), then a tie-break for a
/// deterministic order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct EventSortKey {
    time_ns: u64,
    is_return: bool,
    is_unknown: bool,
    operation: usize,
}

impl<'a> KeyHistory<'a> {
    pub(super) fn new(operations: &[&'a Operation]) -> KeyHistory<'a> {
        let mut values: Vec<Option<&'a str>> = vec![None];
        let mut value_ids: HashMap<&'a str, ValueId> = HashMap::new();
        let mut completed = Vec::new();
        let mut unknown = Vec::new();
        for &operation in operations {
            let Some(effect) = effect_of(operation, &mut values, &mut value_ids) else {
                continue;
            };
            let step = Step {
                effect,
                source: operation,
            };
            match operation.outcome {
                Outcome::Unknown => unknown.push(step),
                _ => completed.push(step),
            }
        }
        completed.sort_by_key(|step| step.source.invoke_ns);
        unknown.sort_by_key(|step| step.source.invoke_ns);
        let unknown = without_unobserved_writes(unknown, &completed, values.len());
        let (events, unknown_positions) = order_events(&completed, &unknown);
        let unknown_twin_previous = twins_previous(&unknown);
        KeyHistory {
            values,
            completed,
            unknown,
            events,
            unknown_positions,
            unknown_twin_previous,
        }
    }
}

/// The search's view of one operation, or `None` for an operation the
/// search ignores: dropped ones, and outcomes the action cannot have (those
/// are reported as malformed before any search runs).
fn effect_of<'a>(
    operation: &'a Operation,
    values: &mut Vec<Option<&'a str>>,
    value_ids: &mut HashMap<&'a str, ValueId>,
) -> Option<Effect> {
    let mut intern = |value: Option<&'a str>| -> ValueId {
        let Some(text) = value else {
            return ABSENT;
        };
        *value_ids.entry(text).or_insert_with(|| {
            values.push(Some(text));
            values.len() - 1
        })
    };
    let effect = match (&operation.action, &operation.outcome) {
        (Action::Get, Outcome::Value(value)) => Effect::Read {
            value: intern(value.as_deref()),
        },
        (Action::Set(value), Outcome::Ok | Outcome::Unknown) => Effect::Write {
            value: intern(Some(value)),
        },
        (Action::Del, Outcome::Ok | Outcome::Unknown) => Effect::Write { value: ABSENT },
        (Action::Cas { expected, new }, Outcome::Ok) => Effect::CasApplied {
            expected: intern(expected.as_deref()),
            new: intern(Some(new)),
        },
        (Action::Cas { expected, .. }, Outcome::Mismatch { current }) => Effect::CasMismatch {
            expected: intern(expected.as_deref()),
            current: intern(current.as_deref()),
        },
        (Action::Cas { expected, new }, Outcome::Unknown) => Effect::CasUnknown {
            expected: intern(expected.as_deref()),
            new: intern(Some(new)),
        },
        _ => return None,
    };
    Some(effect)
}

/// Drops unknown operations whose written value no operation can require
/// after them. Such a write can always be left out: were it linearized at
/// some instant, the operations from there up to the next write (or the end)
/// all complete after its invocation, so none of them requires the value it
/// wrote; they are blind writes or deletes, just as valid without it.
/// Keeping it would double the configurations the search may explore for as
/// long as it is pending, which for an unknown operation is the rest of the
/// history. (One pass: a dropped CAS's own requirement still counts.)
fn without_unobserved_writes<'a>(
    unknown: Vec<Step<'a>>,
    completed: &[Step<'a>],
    values_count: usize,
) -> Vec<Step<'a>> {
    // Per value, the latest completion of an operation that requires it:
    // only an operation completing after a write's invocation can come after
    // the write (an unknown operation may complete at any time).
    let mut required_until_ns: Vec<Option<u64>> = vec![None; values_count];
    let completed_requirements = completed.iter().map(|step| (step, step.source.complete_ns));
    let unknown_requirements = unknown.iter().map(|step| (step, u64::MAX));
    for (step, complete_ns) in completed_requirements.chain(unknown_requirements) {
        if let Some(value) = step.effect.observed() {
            let until_ns = &mut required_until_ns[value];
            *until_ns = (*until_ns).max(Some(complete_ns));
        }
    }
    unknown
        .into_iter()
        .filter(|step| match step.effect.written() {
            Some(value) => {
                required_until_ns[value].is_some_and(|until_ns| until_ns >= step.source.invoke_ns)
            }
            None => true,
        })
        .collect()
}

/// For each operation, the previous one with the same effect. Unknown
/// operations with the same effect are interchangeable once both are
/// invoked, so the search uses them in invocation order only.
fn twins_previous(unknown: &[Step]) -> Vec<Option<usize>> {
    let mut last_by_effect: HashMap<Effect, usize> = HashMap::new();
    let mut twins_previous = Vec::with_capacity(unknown.len());
    for (index, step) in unknown.iter().enumerate() {
        twins_previous.push(last_by_effect.insert(step.effect, index));
    }
    twins_previous
}

/// Sorts the events of the key and returns the completed operations' events
/// with their positions, and the positions of the unknown invocations.
fn order_events(completed: &[Step], unknown: &[Step]) -> (Vec<Event>, Vec<usize>) {
    let mut keys = Vec::with_capacity(completed.len() * 2 + unknown.len());
    for (operation, step) in completed.iter().enumerate() {
        let invoke_ns = step.source.invoke_ns;
        // A completion before the invocation is malformed and reported
        // before the search; clamping keeps the call ahead of its return.
        let complete_ns = step.source.complete_ns.max(invoke_ns);
        for (time_ns, is_return) in [(invoke_ns, false), (complete_ns, true)] {
            let is_unknown = false;
            keys.push(EventSortKey {
                time_ns,
                is_return,
                is_unknown,
                operation,
            });
        }
    }
    for (operation, step) in unknown.iter().enumerate() {
        keys.push(EventSortKey {
            time_ns: step.source.invoke_ns,
            is_return: false,
            is_unknown: true,
            operation,
        });
    }
    keys.sort_unstable();
    let mut events = Vec::with_capacity(completed.len() * 2);
    let mut unknown_positions = vec![0; unknown.len()];
    for (position, key) in keys.iter().enumerate() {
        if key.is_unknown {
            unknown_positions[key.operation] = position;
        } else {
            events.push(Event {
                operation: key.operation,
                is_return: key.is_return,
                position,
            });
        }
    }
    (events, unknown_positions)
}
