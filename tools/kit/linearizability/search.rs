//! Wing & Gong's search for a linearization of one key's history, with
//! Lowe's memoization (Lowe 2017, "Testing for linearizability", §3).
//!
//! The completed operations' invocations and completions sit in one linked
//! list in time order. A configuration is the set of operations linearized so
//! far and the register value they leave. From the head, the search tries
//! each pending invocation in turn; an operation the register accepts is
//! linearized: its two events are unlinked and the walk restarts from the
//! head. Reaching a completion means that operation could no longer take
//! effect in time if anything else went next, so once the options before it
//! are spent the search undoes the last choice (relinking in the reverse
//! order of unlinking) and tries the next one. It succeeds once every
//! completed operation is linearized.
//!
//! Operations with an unknown outcome have no completion and sit in a second
//! list. They are tried after the completed ones, and only those invoked
//! before the first pending completion, so the search first looks for a
//! linearization without them and places one late, where a read needs it.
//!
//! These cuts keep the search small without losing any linearization:
//! - A read-only operation (a read, a mismatched CAS) that the register
//!   accepts is linearized at once, and its configuration then has no other
//!   option. Moving such an operation to the front of any linearization from
//!   here changes no register value and only lets the others go earlier, so
//!   if any linearization exists, one starts with it.
//! - The register may not leave a value that a pending operation still has to
//!   see when no pending operation can write that value again: that pending
//!   operation could then never take effect. This catches a wrong order of
//!   writes at once instead of at the read's completion, much later.
//! - An unknown operation is useful only right before an operation that
//!   requires the value it wrote: followed by anything else (necessarily a
//!   write that does not look at the value), it can be left out and the
//!   linearization still holds. So after an unknown operation only such an
//!   operation may go next, which keeps unknown writes from being tried at
//!   every point of the history. A configuration reached this way has fewer
//!   options, so the cache tells the two kinds apart.
//! - Of unknown operations with the same effect, only the earliest pending
//!   one is tried (see `step_unknown`).

use super::cache::{mix, Bitset, Cache, Configuration};
use super::links::{Links, HEAD};
use super::model::{Effect, ValueId, ABSENT};
use super::prepare::KeyHistory;

/// Linearized operations kept in a `DeadEnd` to show what led up to it.
const RECENT_OPERATIONS_COUNT: usize = 4;

/// Keeps the value's hash apart from the operations' hashes.
const STATE_HASH_SALT: u64 = 0x5EED_0F57_A7E5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum OperationRef {
    /// Index into `KeyHistory::completed`.
    Completed(usize),
    /// Index into `KeyHistory::unknown`.
    Unknown(usize),
}

#[derive(Debug)]
pub(super) enum SearchResult {
    Linearizable,
    Violation(DeadEnd),
    Exhausted,
}

/// The configuration with the most completed operations linearized from
/// which the search found no way on.
#[derive(Debug)]
pub(super) struct DeadEnd {
    pub linearized_count: usize,
    /// The completed operations linearized.
    pub linearized: Bitset,
    /// The completed operation whose completion the search could not pass.
    pub blocked: usize,
    /// The register value after the linearized prefix.
    pub state: ValueId,
    /// Whether a pending operation still has to see `state` and no pending
    /// operation can write it again, so that no write could go next.
    pub state_needed: bool,
    /// The last operations of the prefix, oldest first.
    pub recent: Vec<OperationRef>,
}

/// Per value, how many pending operations need it or can write it.
struct ValueDemand {
    /// Completed operations not linearized that require the value.
    observers_pending: Vec<usize>,
    /// Operations not linearized (completed or unknown) that can write it.
    writers_pending: Vec<usize>,
}

impl ValueDemand {
    fn new(history: &KeyHistory) -> ValueDemand {
        let values_count = history.values.len();
        let mut demand = ValueDemand {
            observers_pending: vec![0; values_count],
            writers_pending: vec![0; values_count],
        };
        for step in &history.completed {
            demand.update(step.effect, true, false);
        }
        for step in &history.unknown {
            demand.update(step.effect, false, false);
        }
        demand
    }

    /// Counts an operation out (`linearized`) or back in.
    fn update(&mut self, effect: Effect, is_completed: bool, linearized: bool) {
        let adjust = |count: &mut usize| match linearized {
            true => *count -= 1,
            false => *count += 1,
        };
        if let (true, Some(value)) = (is_completed, effect.observed()) {
            adjust(&mut self.observers_pending[value]);
        }
        if let Some(value) = effect.written() {
            adjust(&mut self.writers_pending[value]);
        }
    }

    /// Whether leaving `value` now would strand a pending operation.
    fn is_last_chance(&self, value: ValueId) -> bool {
        self.observers_pending[value] > 0 && self.writers_pending[value] == 0
    }
}

/// A linearized operation, to undo on backtracking.
struct Frame {
    operation: OperationRef,
    state_before: ValueId,
    completed_index_max_before: Option<usize>,
    /// The completion node that bounded the walk when the operation was
    /// linearized (meaningful for unknown operations, which resume there).
    barrier: usize,
    /// Linearized as a read-only operation: its configuration had no other
    /// option, so backing out of it backs out of that configuration too.
    forced: bool,
}

/// Where the walk of the current configuration stands. Each configuration
/// is walked in three passes: read-only operations, then the other completed
/// operations, then unknown ones.
enum Cursor {
    ReadOnly(usize),
    Event(usize),
    /// At this node of the unknown list; the first pending completion is
    /// node `barrier` of the event list.
    Unknown {
        node: usize,
        barrier: usize,
    },
}

struct Search<'h, 'a> {
    history: &'h KeyHistory<'a>,
    events: Links,
    unknown: Links,
    /// Per completed operation, its invocation and completion nodes.
    call_node: Vec<usize>,
    return_node: Vec<usize>,
    completed_linearized: Bitset,
    unknown_linearized: Bitset,
    /// Per completed operation, its share of `completed_hash`.
    operation_hash: Vec<u64>,
    /// Invariant: the XOR of `operation_hash` over `completed_linearized`.
    completed_hash: u64,
    /// Invariant: the highest index in `completed_linearized`.
    completed_index_max: Option<usize>,
    /// Invariant: the register after the stack's operations, in order.
    state: ValueId,
    /// Invariant: the completed operations not in `completed_linearized`.
    completed_remaining: usize,
    demand: ValueDemand,
    stack: Vec<Frame>,
    cache: Cache,
    deepest: Option<DeadEnd>,
}

/// Searches for a linearization of `history`, giving up after `steps_max`
/// steps. A step is one node of a walk or one cache entry compared, so the
/// budget bounds the time spent, and (each step adds at most one cache
/// entry) the memory.
pub(super) fn run(history: &KeyHistory, steps_max: u64) -> SearchResult {
    let mut search = Search::new(history);
    let mut cursor = Cursor::ReadOnly(search.events.next[HEAD]);
    let mut steps_count: u64 = 0;
    loop {
        if search.completed_remaining == 0 {
            return SearchResult::Linearizable;
        }
        if steps_count + search.cache.comparisons_count() >= steps_max {
            return SearchResult::Exhausted;
        }
        steps_count += 1;
        let next = match cursor {
            Cursor::ReadOnly(node) => search.step_read_only(node),
            Cursor::Event(node) => search.step_event(node),
            Cursor::Unknown { node, barrier } => search.step_unknown(node, barrier),
        };
        match next {
            Some(next) => cursor = next,
            None => return SearchResult::Violation(search.into_dead_end()),
        }
    }
}

impl<'h, 'a> Search<'h, 'a> {
    fn new(history: &'h KeyHistory<'a>) -> Search<'h, 'a> {
        let completed_count = history.completed.len();
        let mut call_node = vec![HEAD; completed_count];
        let mut return_node = vec![HEAD; completed_count];
        for (index, event) in history.events.iter().enumerate() {
            let nodes = if event.is_return {
                &mut return_node
            } else {
                &mut call_node
            };
            nodes[event.operation] = index + 1;
        }
        Search {
            history,
            events: Links::new(history.events.len()),
            unknown: Links::new(history.unknown.len()),
            call_node,
            return_node,
            completed_linearized: Bitset::new(completed_count),
            unknown_linearized: Bitset::new(history.unknown.len()),
            operation_hash: (0..completed_count as u64).map(mix).collect(),
            completed_hash: 0,
            completed_index_max: None,
            state: ABSENT,
            completed_remaining: completed_count,
            demand: ValueDemand::new(history),
            stack: Vec::with_capacity(completed_count + history.unknown.len()),
            cache: Cache::default(),
            deepest: None,
        }
    }

    /// First pass: a read-only operation the register accepts goes next.
    /// Returns `None` when the search has no option left.
    fn step_read_only(&mut self, node: usize) -> Option<Cursor> {
        if node == HEAD {
            // Unreachable: a pending operation's completion comes before the
            // end of the list, and the search stops once none is pending.
            // Backing up keeps a broken invariant from looping or panicking.
            return self.backtrack();
        }
        let event = self.history.events[node - 1];
        if event.is_return {
            return Some(Cursor::Event(self.events.next[HEAD]));
        }
        let effect = self.history.completed[event.operation].effect;
        if !effect.is_read_only() || effect.apply(self.state).is_none() {
            return Some(Cursor::ReadOnly(self.events.next[node]));
        }
        let operation = OperationRef::Completed(event.operation);
        if self.try_linearize(operation, node, true) {
            return Some(Cursor::ReadOnly(self.events.next[HEAD]));
        }
        // The configuration after it was explored before without success,
        // and it was this configuration's only option.
        self.backtrack()
    }

    /// Second pass: the other completed operations invoked before the first
    /// pending completion.
    fn step_event(&mut self, node: usize) -> Option<Cursor> {
        if node == HEAD {
            return self.backtrack(); // Unreachable, as in `step_read_only`.
        }
        let event = self.history.events[node - 1];
        if event.is_return {
            // This operation must take effect before it completes, and no
            // completed operation can go next: try the unknown ones.
            let first = self.unknown.next[HEAD];
            return Some(Cursor::Unknown {
                node: first,
                barrier: node,
            });
        }
        let effect = self.history.completed[event.operation].effect;
        let operation = OperationRef::Completed(event.operation);
        let allowed = !effect.is_read_only() && self.may_go_next(effect);
        if allowed && self.try_linearize(operation, node, false) {
            return Some(Cursor::ReadOnly(self.events.next[HEAD]));
        }
        Some(Cursor::Event(self.events.next[node]))
    }

    /// Third pass: unknown operations invoked before the first pending
    /// completion, node `barrier`.
    fn step_unknown(&mut self, node: usize, barrier: usize) -> Option<Cursor> {
        let barrier_position = self.history.events[barrier - 1].position;
        // The list is in invocation order, so the first operation invoked
        // after the barrier ends the options of this configuration.
        if node == HEAD || self.history.unknown_positions[node - 1] > barrier_position {
            self.record_dead_end(barrier);
            return self.backtrack();
        }
        // Of unknown operations with the same effect, only the earliest
        // pending one is tried: any linearization using a later one works
        // as well with the earlier one in its place, which was invoked
        // first. Without this, each pending copy of a common effect (say,
        // a delete) would double the configurations.
        let index = node - 1;
        let twin_pending = self.history.unknown_twin_previous[index]
            .is_some_and(|twin| !self.unknown_linearized.contains(twin));
        let allowed = !twin_pending && self.may_go_next(self.history.unknown[index].effect);
        if allowed && self.try_linearize(OperationRef::Unknown(index), barrier, false) {
            return Some(Cursor::ReadOnly(self.events.next[HEAD]));
        }
        let next = self.unknown.next[node];
        Some(Cursor::Unknown {
            node: next,
            barrier,
        })
    }

    /// Right after an unknown operation, only one that requires the value it
    /// left may go next. (Read-only operations the register accepts always
    /// do, so the first pass needs no such test.)
    fn may_go_next(&self, effect: Effect) -> bool {
        let last = self.stack.last().map(|frame| frame.operation);
        let after_unknown = matches!(last, Some(OperationRef::Unknown(_)));
        !after_unknown || effect.observed() == Some(self.state)
    }

    fn effect(&self, operation: OperationRef) -> Effect {
        match operation {
            OperationRef::Completed(index) => self.history.completed[index].effect,
            OperationRef::Unknown(index) => self.history.unknown[index].effect,
        }
    }

    /// Linearizes `operation` next if the register accepts it, it strands no
    /// pending operation, and the resulting configuration is new; returns
    /// whether it did.
    fn try_linearize(&mut self, operation: OperationRef, barrier: usize, forced: bool) -> bool {
        let Some(state_after) = self.effect(operation).apply(self.state) else {
            return false;
        };
        let frame = Frame {
            operation,
            state_before: self.state,
            completed_index_max_before: self.completed_index_max,
            barrier,
            forced,
        };
        self.mark(operation, true);
        if state_after != self.state && self.demand.is_last_chance(self.state) {
            self.mark(operation, false);
            return false;
        }
        self.lift(operation);
        if let OperationRef::Completed(index) = operation {
            self.completed_index_max = self.completed_index_max.max(Some(index));
        }
        let after_unknown = matches!(operation, OperationRef::Unknown(_));
        if !self.remember(state_after, after_unknown) {
            self.completed_index_max = frame.completed_index_max_before;
            self.unlift(operation);
            self.mark(operation, false);
            return false;
        }
        self.stack.push(frame);
        self.state = state_after;
        true
    }

    /// Records the current sets with `state` in the cache; false if a
    /// configuration covering them was seen before.
    fn remember(&mut self, state: ValueId, after_unknown: bool) -> bool {
        // Completed operations are numbered in invocation order and the event
        // list holds pending invocations in that order, so the first node is
        // the lowest pending operation.
        let first_pending = match self.events.next[HEAD] {
            HEAD => self.history.completed.len(),
            node => self.history.events[node - 1].operation,
        };
        let first_word = first_pending / 64;
        let end_word = self.completed_index_max.map_or(0, |index| index / 64 + 1);
        let configuration = Configuration {
            hash: self.completed_hash ^ mix(state as u64 ^ STATE_HASH_SALT),
            completed_first_word: first_word,
            completed_words: self
                .completed_linearized
                .span(first_word, end_word.max(first_word)),
            unknown: &self.unknown_linearized,
            state,
            after_unknown,
        };
        self.cache.insert(&configuration)
    }

    /// Takes the operation's events out of their list.
    fn lift(&mut self, operation: OperationRef) {
        match operation {
            OperationRef::Completed(index) => {
                self.events.unlink(self.call_node[index]);
                self.events.unlink(self.return_node[index]);
            }
            OperationRef::Unknown(index) => self.unknown.unlink(index + 1),
        }
    }

    /// Puts back what `lift` took out (the last lifted operation only).
    fn unlift(&mut self, operation: OperationRef) {
        match operation {
            OperationRef::Completed(index) => {
                self.events.relink(self.return_node[index]);
                self.events.relink(self.call_node[index]);
            }
            OperationRef::Unknown(index) => self.unknown.relink(index + 1),
        }
    }

    /// Undoes linearizations up to the last configuration with options left
    /// and returns where its walk resumes, or `None` if there is none.
    fn backtrack(&mut self) -> Option<Cursor> {
        loop {
            let frame = self.stack.pop()?;
            self.state = frame.state_before;
            self.completed_index_max = frame.completed_index_max_before;
            self.unlift(frame.operation);
            self.mark(frame.operation, false);
            if frame.forced {
                continue;
            }
            return Some(match frame.operation {
                OperationRef::Completed(index) => {
                    Cursor::Event(self.events.next[self.call_node[index]])
                }
                OperationRef::Unknown(index) => Cursor::Unknown {
                    node: self.unknown.next[index + 1],
                    barrier: frame.barrier,
                },
            });
        }
    }

    /// Adds `operation` to the linearized sets (or takes it out).
    fn mark(&mut self, operation: OperationRef, linearized: bool) {
        let effect = self.effect(operation);
        match operation {
            OperationRef::Completed(index) => {
                if linearized {
                    self.completed_linearized.insert(index);
                    self.completed_remaining -= 1;
                } else {
                    self.completed_linearized.remove(index);
                    self.completed_remaining += 1;
                }
                self.completed_hash ^= self.operation_hash[index];
                self.demand.update(effect, true, linearized);
            }
            OperationRef::Unknown(index) => {
                if linearized {
                    self.unknown_linearized.insert(index);
                } else {
                    self.unknown_linearized.remove(index);
                }
                self.demand.update(effect, false, linearized);
            }
        }
    }

    /// Remembers this configuration if it is the deepest dead end so far.
    fn record_dead_end(&mut self, barrier: usize) {
        let linearized_count = self.history.completed.len() - self.completed_remaining;
        let deeper = self
            .deepest
            .as_ref()
            .is_none_or(|deepest| deepest.linearized_count < linearized_count);
        if !deeper {
            return;
        }
        // Reuse the old snapshot's buffer: a new deepest dead end may come
        // once per completed operation.
        let mut linearized = match self.deepest.take() {
            Some(deepest) => deepest.linearized,
            None => Bitset::new(self.history.completed.len()),
        };
        linearized.copy_from(&self.completed_linearized);
        let recent_start = self.stack.len().saturating_sub(RECENT_OPERATIONS_COUNT);
        let recent = self.stack[recent_start..]
            .iter()
            .map(|frame| frame.operation);
        self.deepest = Some(DeadEnd {
            linearized_count,
            linearized,
            blocked: self.history.events[barrier - 1].operation,
            state: self.state,
            state_needed: self.demand.is_last_chance(self.state),
            recent: recent.collect(),
        });
    }

    fn into_dead_end(self) -> DeadEnd {
        // Every backtrack that empties the stack starts at a recorded dead
        // end, so this is set; the fallback only keeps a broken invariant
        // from becoming a panic.
        let completed_count = self.history.completed.len();
        self.deepest.unwrap_or(DeadEnd {
            linearized_count: 0,
            linearized: Bitset::new(completed_count),
            blocked: 0,
            state: ABSENT,
            state_needed: false,
            recent: Vec::new(),
        })
    }
}
