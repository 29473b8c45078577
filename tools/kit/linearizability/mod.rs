//! A linearizability checker for the histories the bench records.
//!
//! The model is a set of independent registers, one per key, each holding
//! `Option<String>` (`None` is an absent key); every key starts absent. A
//! history is linearizable when each operation can be given one instant
//! between its invocation and its completion at which it takes effect, so
//! that the results agree with applying the operations one at a time in
//! that order (Herlihy & Wing 1990).
//!
//! Linearizability is local (P-compositional), so each key is checked on its
//! own: the whole history is linearizable exactly when every key's
//! sub-history is. Per key, the search is Wing & Gong's backtracking over the
//! list of invocation and completion events, with Lowe's memoization of the
//! configurations already explored (Lowe 2017, "Testing for linearizability";
//! the same scheme as Porcupine and Knossos' `wgl`).
//!
//! How each outcome is treated:
//! - completed (`Value`, `Ok`, `Mismatch`): took effect once, between its
//!   invocation and its completion.
//! - `Failed` (NOT_LEADER, UNAVAILABLE, BAD_REQUEST): certainly did not take
//!   effect, so it is dropped.
//! - `Unknown` (TIMEOUT, or no reply): may take effect at any instant after
//!   its invocation, or never; its completion is taken as +infinity and the
//!   search may leave it out. A `Get` with an unknown outcome tells nothing
//!   and changes nothing, so it is dropped.

mod cache;
mod links;
mod model;
mod prepare;
mod report;
mod search;

#[cfg(test)]
mod random_tests;
#[cfg(test)]
mod tests;

use std::fmt;

pub use report::format_operation;

/// Search steps per key when the caller has no better figure. A step takes
/// about 50 ns and stores at most one configuration; the hardest histories
/// measured (one key, 64 concurrent clients) used about 5 s and 0.5 GB
/// before giving up.
pub const SEARCH_STEPS_MAX_DEFAULT: u64 = 100_000_000;

/// The request a client sent for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Get,
    Set(String),
    /// Makes the key absent; deleting an absent key is `Ok`.
    Del,
    /// Sets the key to `new` only if it holds `expected` (`None`: only if
    /// the key is absent).
    Cas {
        expected: Option<String>,
        new: String,
    },
}

/// What the client learned about its request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A `Get` completed: the value read, `None` for NOT_FOUND.
    Value(Option<String>),
    /// A `Set`, `Del` or `Cas` completed and took effect.
    Ok,
    /// A `Cas` completed without effect: the key held `current`.
    Mismatch { current: Option<String> },
    /// Certainly not applied (NOT_LEADER, UNAVAILABLE, BAD_REQUEST).
    Failed,
    /// Maybe applied, maybe not (TIMEOUT, or no reply at all).
    Unknown,
}

/// One request as the bench recorded it. Times are nanoseconds on one
/// monotonic clock; `complete_ns` is ignored for `Failed` and `Unknown`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub client: u64,
    pub key: String,
    pub action: Action,
    pub invoke_ns: u64,
    pub complete_ns: u64,
    pub outcome: Outcome,
}

/// A bound on search work: each key's search stops after `steps_max`
/// steps (a step looks at one operation in one configuration, or compares
/// with one remembered configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SearchBudget {
    pub steps_max: u64,
}

impl Default for SearchBudget {
    fn default() -> SearchBudget {
        SearchBudget {
            steps_max: SEARCH_STEPS_MAX_DEFAULT,
        }
    }
}

/// The result of `check`. Exactly one of three cases:
/// - linearizable: `linearizable`, no `failure`, not `timed_out`;
/// - not linearizable: `failure` is set (`timed_out` may also be set if an
///   earlier key ran out of budget);
/// - unknown: `timed_out`, no `failure`, and `timed_out_key` names the
///   first key whose search ran out of budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub linearizable: bool,
    /// Keys whose search ran (the search stops at the first violation).
    pub keys_checked: usize,
    /// Operations in the history minus `Failed` ones and `Get`s with an
    /// unknown outcome, over all keys.
    pub operations_checked: usize,
    pub failure: Option<Failure>,
    pub timed_out: bool,
    pub timed_out_key: Option<String>,
}

/// Where one key's history went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub key: String,
    /// A few operations of this key around the violation, in invocation
    /// order: the last ones the longest linearizable prefix placed, the
    /// operation that could not be placed after them, and the operations
    /// running concurrently with it.
    pub window: Vec<Operation>,
    pub explanation: String,
    /// The earliest invocation in the whole history: `Display` shows times
    /// in milliseconds from it.
    pub history_start_ns: u64,
}

/// Checks `history` against the register model, key by key (keys in sorted
/// order). Never panics on input data: an operation whose outcome its action
/// cannot produce (a `Get` answered `Ok`, a completion before the invocation)
/// cannot be explained by the model, so it makes the verdict "not
/// linearizable" with an explanation starting "malformed operation".
pub fn check(history: &[Operation], budget: SearchBudget) -> Verdict {
    let history_start_ns = history.iter().map(|operation| operation.invoke_ns).min();
    let history_start_ns = history_start_ns.unwrap_or(0);
    let keys = prepare::split_by_key(history);
    let mut verdict = Verdict {
        linearizable: false,
        keys_checked: 0,
        operations_checked: keys.values().map(|operations| operations.len()).sum(),
        failure: None,
        timed_out: false,
        timed_out_key: None,
    };
    if let Some(failure) = report::find_malformed(history, history_start_ns) {
        verdict.failure = Some(failure);
        return verdict;
    }
    for (key, operations) in keys {
        let key_history = prepare::KeyHistory::new(&operations);
        verdict.keys_checked += 1;
        match search::run(&key_history, budget.steps_max) {
            search::SearchResult::Linearizable => {}
            search::SearchResult::Violation(dead_end) => {
                let failure = report::failure(key, &key_history, &dead_end, history_start_ns);
                verdict.failure = Some(failure);
                return verdict;
            }
            search::SearchResult::Exhausted => {
                verdict.timed_out = true;
                verdict.timed_out_key.get_or_insert_with(|| key.to_string());
            }
        }
    }
    verdict.linearizable = !verdict.timed_out;
    verdict
}

impl fmt::Display for Verdict {
    /// One line: "linearizable: …", "NOT linearizable: key …: …" or
    /// "unknown: search budget exhausted on key …".
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(failure) = &self.failure {
            let explanation = failure.explanation.replace('\n', " ");
            let key = failure.key.escape_debug();
            return write!(formatter, "NOT linearizable: key {key}: {explanation}");
        }
        if self.timed_out {
            let key = self.timed_out_key.as_deref().unwrap_or("?").escape_debug();
            return write!(formatter, "unknown: search budget exhausted on key {key}");
        }
        write!(
            formatter,
            "linearizable: {} operations on {} keys",
            self.operations_checked, self.keys_checked
        )
    }
}

impl fmt::Display for Failure {
    /// The window, one operation per line, times in milliseconds from the
    /// start of the history.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, operation) in self.window.iter().enumerate() {
            if position > 0 {
                writeln!(formatter)?;
            }
            let line = format_operation(operation, self.history_start_ns);
            write!(formatter, "{line}")?;
        }
        Ok(())
    }
}
