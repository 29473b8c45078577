//! A hashed timer wheel holding every deadline of the event loop: the core's
//! election deadline, peer reconnects and client request timeouts.
//!
//! Why a wheel: the loop holds up to thousands of timers, most of which are
//! cancelled before they fire (a reply arrives, a peer connects), so insert
//! and cancel must be O(1), and every loop turn asks "how long may poll
//! sleep?". A binary heap makes insert O(log n) and cancel awkward; a hashed
//! wheel makes both O(1).
//!
//! Layout (after mio-extras' `src/timer.rs`, with tokio's
//! `runtime/time/wheel/` bitmap for the next deadline):
//! - One level of `SLOT_COUNT` slots, 1 ms each. A timer lives in slot
//!   `deadline_ms % SLOT_COUNT` however far away it is, so a deadline more
//!   than one rotation ahead waits in its slot and each visit compares the
//!   stored deadline, skipping it until its own rotation comes.
//! - Entries live in a slab (a `Vec` with a free list); each slot is a doubly
//!   linked list threaded through the slab by index, so cancel unlinks an
//!   entry without searching and without allocating.
//! - A `TimerId` carries the entry's generation, bumped whenever the entry is
//!   freed, so a handle kept after its timer fired or was cancelled is
//!   recognised as stale instead of cancelling the timer that reuses the entry.
//! - An occupancy bitmap (one bit per slot, 16 words) finds the next occupied
//!   slot with at most 17 word scans, which gives the poll timeout.
//!
//! Time is always a parameter, never read here: the caller owns a monotonic
//! millisecond clock, which keeps the wheel deterministic under test and in
//! the simulator.

/// Slots in the wheel, 1 ms each, so one rotation spans `SLOT_COUNT` ms.
/// A power of two so that a slot is a mask, not a division.
pub const SLOT_COUNT: usize = 1024;

/// Timers a wheel from `TimerWheel::new` may hold at once. The runtime bounds
/// its timers well below this (client requests in flight, peers, one election
/// deadline); reaching it means a leak, so `insert` asserts rather than grows
/// without limit. The slab grows on demand, so an idle wheel stays small.
pub const CAPACITY_MAX_DEFAULT: usize = 1 << 20;

const SLOT_MASK: usize = SLOT_COUNT - 1;
const WORD_BITS: usize = u64::BITS as usize;
const OCCUPANCY_WORD_COUNT: usize = SLOT_COUNT / WORD_BITS;

/// The list after the wheel slots: timers inserted with a deadline that has
/// already passed. They fire at the very next `advance`, even one that does
/// not move time, so a zero-length timeout costs no extra millisecond.
const DUE_LIST: usize = SLOT_COUNT;
const LIST_COUNT: usize = SLOT_COUNT + 1;

/// The null link. Entry indexes stay below it (checked in `with_capacity_max`).
const NIL: u32 = u32::MAX;

const _: () = assert!(SLOT_COUNT.is_power_of_two());
const _: () = assert!(OCCUPANCY_WORD_COUNT * WORD_BITS == SLOT_COUNT);
const _: () = assert!(CAPACITY_MAX_DEFAULT < NIL as usize);

/// A handle to one inserted timer, used to cancel it.
///
/// The generation makes the handle safe to keep after the timer is gone: once
/// the entry is freed its generation moves on and the handle no longer
/// matches. (The generation wraps after 2^32 reuses of one entry; a handle
/// that old is not a realistic concern for this daemon.)
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

struct Entry<T> {
    /// `None` exactly while the entry is on the free list.
    value: Option<T>,
    deadline_ms: u64,
    /// Bumped each time the entry is freed, so old `TimerId`s stop matching.
    generation: u32,
    /// The list holding the entry: a slot index, or `DUE_LIST`.
    list: u32,
    previous: u32,
    /// The next entry on the same list, or on the free list while free.
    next: u32,
}

/// A single-level hashed timer wheel; see the module documentation.
pub struct TimerWheel<T> {
    /// The slab. Grows on demand up to `capacity_max`, never shrinks.
    entries: Vec<Entry<T>>,
    /// Head of the free list, threaded through `Entry::next`, or `NIL`.
    free_head: u32,
    /// Heads of the `SLOT_COUNT` slot lists, then of the due list.
    heads: Box<[u32; LIST_COUNT]>,
    /// Bit `s` is set exactly when slot `s` is non-empty. The due list has no bit.
    occupancy: [u64; OCCUPANCY_WORD_COUNT],
    /// Every millisecond up to and including this one has been processed.
    /// Invariant: entries in wheel slots have `deadline_ms > elapsed_ms`;
    /// entries in the due list have `deadline_ms <= elapsed_ms`.
    elapsed_ms: u64,
    /// A lower bound on the due list's deadlines; meaningful only while it is
    /// non-empty. Not raised on cancel, which keeps it a bound and O(1).
    due_deadline_ms_min: u64,
    /// Live timers. Invariant: `count <= capacity_max`.
    count: usize,
    capacity_max: usize,
}

impl<T> TimerWheel<T> {
    /// An empty wheel whose clock reads `now_ms`, holding at most
    /// `CAPACITY_MAX_DEFAULT` timers.
    pub fn new(now_ms: u64) -> Self {
        Self::with_capacity_max(now_ms, CAPACITY_MAX_DEFAULT)
    }

    /// An empty wheel whose clock reads `now_ms`, holding at most
    /// `capacity_max` timers at once.
    pub fn with_capacity_max(now_ms: u64, capacity_max: usize) -> Self {
        assert!(
            capacity_max > 0,
            "timer wheel capacity_max must be positive"
        );
        assert!(
            capacity_max < NIL as usize,
            "timer wheel capacity_max {capacity_max} does not fit a u32 index"
        );
        TimerWheel {
            entries: Vec::new(),
            free_head: NIL,
            heads: Box::new([NIL; LIST_COUNT]),
            occupancy: [0; OCCUPANCY_WORD_COUNT],
            elapsed_ms: now_ms,
            due_deadline_ms_min: 0,
            count: 0,
            capacity_max,
        }
    }

    /// Schedules `value` to be returned by the first `advance` whose `now_ms`
    /// reaches `deadline_ms`. A deadline at or before the wheel's time fires
    /// at the next `advance`. O(1).
    ///
    /// Panics when the wheel already holds `capacity_max` timers: the caller
    /// bounds its timers, so a full wheel is a bug (a leak), not a load spike.
    pub fn insert(&mut self, deadline_ms: u64, value: T) -> TimerId {
        assert!(
            self.count < self.capacity_max,
            "timer wheel is full ({} timers): the caller must bound its timers",
            self.capacity_max
        );
        let list = if deadline_ms <= self.elapsed_ms {
            self.note_due_deadline(deadline_ms);
            DUE_LIST
        } else {
            slot_of(deadline_ms)
        };
        let index = self.allocate(deadline_ms, value);
        self.link(list, index);
        self.count += 1;
        TimerId {
            index,
            generation: self.entries[index as usize].generation,
        }
    }

    /// Removes the timer and returns its value, or `None` when the handle is
    /// stale (the timer already fired or was cancelled). O(1).
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let entry = self.entries.get(id.index as usize)?;
        if entry.generation != id.generation || entry.value.is_none() {
            return None;
        }
        self.unlink(id.index);
        Some(self.release(id.index))
    }

    /// Moves the wheel's clock to `now_ms` and appends to `expired` the value
    /// of every timer whose deadline is at or before `now_ms`, each exactly
    /// once and in no particular order.
    ///
    /// Visits each slot at most once per call, so a long pause (SIGSTOP, a
    /// suspended VM) costs one rotation, not one step per lost millisecond.
    /// A `now_ms` behind the wheel's clock is ignored: the clock is monotonic,
    /// so this can only be a caller passing a stale reading.
    pub fn advance(&mut self, now_ms: u64, expired: &mut Vec<T>) {
        if now_ms < self.elapsed_ms {
            return;
        }
        self.expire_due(expired);
        if now_ms == self.elapsed_ms {
            return;
        }
        let tick_count = now_ms - self.elapsed_ms;
        let slot_first = slot_of(self.elapsed_ms + 1);
        let slot_visit_count = tick_count.min(SLOT_COUNT as u64) as usize;
        for offset in 0..slot_visit_count {
            let slot = (slot_first + offset) & SLOT_MASK;
            if self.is_slot_occupied(slot) {
                self.expire_slot(slot, now_ms, expired);
            }
        }
        self.elapsed_ms = now_ms;
    }

    /// A lower bound on the next deadline, for the poll timeout; `None` when
    /// the wheel is empty.
    ///
    /// It is the first millisecond after the wheel's clock that maps to an
    /// occupied slot. That is exact while every timer is within one rotation;
    /// a timer several rotations ahead can make it early (the loop wakes,
    /// advances, and asks again), but never late. With timers already due it
    /// is at or before the wheel's clock, so the poll should not sleep.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        if self.heads[DUE_LIST] != NIL {
            return Some(self.due_deadline_ms_min);
        }
        let slot_start = slot_of(self.elapsed_ms.wrapping_add(1));
        let slot = self.occupied_slot_from(slot_start)?;
        let distance = ((slot + SLOT_COUNT - slot_start) & SLOT_MASK) as u64;
        Some(self.elapsed_ms.saturating_add(1 + distance))
    }

    /// The number of live timers.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no timers are live.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn note_due_deadline(&mut self, deadline_ms: u64) {
        if self.heads[DUE_LIST] == NIL || deadline_ms < self.due_deadline_ms_min {
            self.due_deadline_ms_min = deadline_ms;
        }
    }

    /// Fires the whole due list: its deadlines are all at or before the clock.
    fn expire_due(&mut self, expired: &mut Vec<T>) {
        while self.heads[DUE_LIST] != NIL {
            let index = self.heads[DUE_LIST];
            self.unlink(index);
            expired.push(self.release(index));
        }
    }

    /// Fires the entries of one slot that are due, leaving those that belong
    /// to a later rotation.
    fn expire_slot(&mut self, slot: usize, now_ms: u64, expired: &mut Vec<T>) {
        let mut index = self.heads[slot];
        while index != NIL {
            let entry = &self.entries[index as usize];
            let next = entry.next;
            if entry.deadline_ms <= now_ms {
                self.unlink(index);
                expired.push(self.release(index));
            }
            index = next;
        }
    }

    /// The first occupied slot at or after `slot_start`, wrapping round.
    fn occupied_slot_from(&self, slot_start: usize) -> Option<usize> {
        let word_start = slot_start / WORD_BITS;
        let bit_start = slot_start % WORD_BITS;
        // The start word is read twice: first for its bits at or after the
        // start, and last, after wrapping round, for the bits before it (any
        // bit at or after the start would have been found the first time).
        for step in 0..=OCCUPANCY_WORD_COUNT {
            let word_index = (word_start + step) % OCCUPANCY_WORD_COUNT;
            let mut word = self.occupancy[word_index];
            if step == 0 {
                word &= u64::MAX << bit_start;
            }
            if word != 0 {
                return Some(word_index * WORD_BITS + word.trailing_zeros() as usize);
            }
        }
        None
    }

    fn is_slot_occupied(&self, slot: usize) -> bool {
        self.occupancy[slot / WORD_BITS] & (1 << (slot % WORD_BITS)) != 0
    }

    /// Takes an entry from the free list, or grows the slab, and fills it.
    /// The caller has checked the capacity.
    fn allocate(&mut self, deadline_ms: u64, value: T) -> u32 {
        if self.free_head == NIL {
            assert!(self.entries.len() < self.capacity_max);
            self.entries.push(Entry {
                value: Some(value),
                deadline_ms,
                generation: 0,
                list: NIL,
                previous: NIL,
                next: NIL,
            });
            return (self.entries.len() - 1) as u32;
        }
        let index = self.free_head;
        let entry = &mut self.entries[index as usize];
        assert!(entry.value.is_none(), "free list holds a live timer");
        self.free_head = entry.next;
        entry.value = Some(value);
        entry.deadline_ms = deadline_ms;
        index
    }

    /// Empties an unlinked entry, retires its generation and frees it.
    fn release(&mut self, index: u32) -> T {
        let entry = &mut self.entries[index as usize];
        let value = entry.value.take().expect("released a free timer entry");
        entry.generation = entry.generation.wrapping_add(1);
        entry.list = NIL;
        entry.previous = NIL;
        entry.next = self.free_head;
        self.free_head = index;
        assert!(self.count > 0);
        self.count -= 1;
        value
    }

    /// Pushes the entry on the front of `list`.
    fn link(&mut self, list: usize, index: u32) {
        assert!(list < LIST_COUNT);
        let head = self.heads[list];
        let entry = &mut self.entries[index as usize];
        entry.list = list as u32;
        entry.previous = NIL;
        entry.next = head;
        if head != NIL {
            self.entries[head as usize].previous = index;
        }
        self.heads[list] = index;
        if list < SLOT_COUNT {
            self.occupancy[list / WORD_BITS] |= 1 << (list % WORD_BITS);
        }
    }

    /// Removes the entry from its list, clearing the slot's bit if it empties.
    fn unlink(&mut self, index: u32) {
        let entry = &self.entries[index as usize];
        let (list, previous, next) = (entry.list as usize, entry.previous, entry.next);
        assert!(
            list < LIST_COUNT,
            "unlinked a timer entry that is on no list"
        );
        if previous == NIL {
            assert_eq!(self.heads[list], index, "list head out of sync");
            self.heads[list] = next;
        } else {
            self.entries[previous as usize].next = next;
        }
        if next != NIL {
            self.entries[next as usize].previous = previous;
        }
        if list < SLOT_COUNT && self.heads[list] == NIL {
            self.occupancy[list / WORD_BITS] &= !(1 << (list % WORD_BITS));
        }
    }
}

/// The slot a deadline hashes to.
fn slot_of(deadline_ms: u64) -> usize {
    (deadline_ms & SLOT_MASK as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rng::Rng;

    fn advanced<T>(wheel: &mut TimerWheel<T>, now_ms: u64) -> Vec<T> {
        let mut expired = Vec::new();
        wheel.advance(now_ms, &mut expired);
        expired
    }

    /// Walks every list and checks links, bitmap, list placement and count.
    fn check_invariants<T>(wheel: &TimerWheel<T>) {
        let mut linked_count = 0;
        for list in 0..LIST_COUNT {
            let mut previous = NIL;
            let mut index = wheel.heads[list];
            while index != NIL {
                let entry = &wheel.entries[index as usize];
                assert!(entry.value.is_some());
                assert_eq!(entry.list as usize, list);
                assert_eq!(entry.previous, previous);
                if list == DUE_LIST {
                    assert!(entry.deadline_ms <= wheel.elapsed_ms);
                    assert!(entry.deadline_ms >= wheel.due_deadline_ms_min);
                } else {
                    assert!(entry.deadline_ms > wheel.elapsed_ms);
                    assert_eq!(slot_of(entry.deadline_ms), list);
                }
                linked_count += 1;
                previous = index;
                index = entry.next;
            }
            if list < SLOT_COUNT {
                assert_eq!(wheel.is_slot_occupied(list), wheel.heads[list] != NIL);
            }
        }
        assert_eq!(linked_count, wheel.count);
        assert!(wheel.count <= wheel.capacity_max);
    }

    #[test]
    fn empty_wheel_has_no_next_deadline() {
        let mut wheel: TimerWheel<u32> = TimerWheel::new(500);
        assert_eq!(wheel.next_deadline_ms(), None);
        assert!(wheel.is_empty());
        assert!(advanced(&mut wheel, 10_000).is_empty());
        assert_eq!(wheel.next_deadline_ms(), None);
        let id = wheel.insert(10_050, 1);
        assert_eq!(wheel.cancel(id), Some(1));
        assert_eq!(wheel.next_deadline_ms(), None);
        assert_eq!(wheel.len(), 0);
    }

    #[test]
    fn fires_at_deadline_and_not_before() {
        let mut wheel = TimerWheel::new(1_000);
        wheel.insert(1_150, "a");
        wheel.insert(1_150, "b");
        wheel.insert(1_300, "c");
        assert_eq!(wheel.len(), 3);
        assert_eq!(wheel.next_deadline_ms(), Some(1_150));
        assert!(advanced(&mut wheel, 1_149).is_empty());
        let mut fired = advanced(&mut wheel, 1_150);
        fired.sort();
        assert_eq!(fired, vec!["a", "b"]);
        assert_eq!(wheel.next_deadline_ms(), Some(1_300));
        assert!(advanced(&mut wheel, 1_299).is_empty());
        assert_eq!(advanced(&mut wheel, 1_301), vec!["c"]);
        assert!(wheel.is_empty());
        check_invariants(&wheel);
    }

    #[test]
    fn past_deadline_fires_at_next_advance_even_without_time_moving() {
        let mut wheel = TimerWheel::new(1_000);
        wheel.insert(1_000, 1);
        wheel.insert(3, 2);
        assert_eq!(wheel.next_deadline_ms(), Some(3));
        let mut fired = advanced(&mut wheel, 1_000);
        fired.sort();
        assert_eq!(fired, vec![1, 2]);
        wheel.insert(999, 3);
        assert_eq!(advanced(&mut wheel, 1_000), vec![3]);
        assert_eq!(wheel.next_deadline_ms(), None);
    }

    #[test]
    fn time_going_backwards_is_ignored() {
        let mut wheel = TimerWheel::new(5_000);
        wheel.insert(5_010, 1);
        assert!(advanced(&mut wheel, 4_000).is_empty());
        assert!(advanced(&mut wheel, 5_009).is_empty());
        assert!(advanced(&mut wheel, 0).is_empty());
        assert_eq!(wheel.next_deadline_ms(), Some(5_010));
        assert_eq!(advanced(&mut wheel, 5_010), vec![1]);
    }

    #[test]
    fn cancel_before_fire_returns_value_and_it_never_fires() {
        let mut wheel = TimerWheel::new(0);
        let a = wheel.insert(100, 'a');
        wheel.insert(100, 'b');
        assert_eq!(wheel.cancel(a), Some('a'));
        assert_eq!(wheel.cancel(a), None);
        assert_eq!(wheel.len(), 1);
        assert_eq!(advanced(&mut wheel, 200), vec!['b']);
        check_invariants(&wheel);
    }

    #[test]
    fn cancel_after_fire_returns_none() {
        let mut wheel = TimerWheel::new(0);
        let id = wheel.insert(10, 7);
        assert_eq!(advanced(&mut wheel, 10), vec![7]);
        assert_eq!(wheel.cancel(id), None);
        assert!(wheel.is_empty());
    }

    #[test]
    fn stale_id_after_entry_reuse_returns_none() {
        let mut wheel = TimerWheel::new(0);
        let old = wheel.insert(10, "old");
        assert_eq!(wheel.cancel(old), Some("old"));
        let new = wheel.insert(20, "new");
        // The slab reused the freed entry; only the generation tells them apart.
        assert_eq!(new.index, old.index);
        assert_ne!(new.generation, old.generation);
        assert_eq!(wheel.cancel(old), None);
        assert_eq!(wheel.len(), 1);
        assert_eq!(advanced(&mut wheel, 20), vec!["new"]);
        let newer = wheel.insert(30, "newer");
        assert_eq!(newer.index, old.index);
        assert_eq!(wheel.cancel(new), None);
        assert_eq!(wheel.cancel(old), None);
        assert_eq!(wheel.cancel(newer), Some("newer"));
    }

    #[test]
    fn deadlines_beyond_one_rotation_fire_only_at_their_time() {
        let span_ms = SLOT_COUNT as u64;
        let mut wheel = TimerWheel::new(0);
        // Same slot as 5, but one and three rotations later.
        wheel.insert(5, "near");
        wheel.insert(5 + span_ms, "one rotation");
        wheel.insert(5 + 3 * span_ms, "three rotations");
        assert_eq!(advanced(&mut wheel, 5), vec!["near"]);
        assert!(advanced(&mut wheel, 4 + span_ms).is_empty());
        assert_eq!(advanced(&mut wheel, 5 + span_ms), vec!["one rotation"]);
        for now_ms in (6 + span_ms..5 + 3 * span_ms).step_by(97) {
            assert!(advanced(&mut wheel, now_ms).is_empty());
        }
        assert!(advanced(&mut wheel, 4 + 3 * span_ms).is_empty());
        assert_eq!(
            advanced(&mut wheel, 5 + 3 * span_ms),
            vec!["three rotations"]
        );
        assert!(wheel.is_empty());
    }

    #[test]
    fn far_deadline_gives_early_but_never_late_next_deadline() {
        let mut wheel = TimerWheel::new(0);
        let deadline_ms = 10 * SLOT_COUNT as u64 + 3;
        wheel.insert(deadline_ms, ());
        let mut now_ms = 0;
        let mut wake_count = 0;
        while !wheel.is_empty() {
            let next_ms = wheel.next_deadline_ms().unwrap();
            assert!(next_ms > now_ms && next_ms <= deadline_ms);
            now_ms = next_ms;
            let fired = advanced(&mut wheel, now_ms);
            assert_eq!(fired.len(), usize::from(now_ms == deadline_ms));
            wake_count += 1;
        }
        assert_eq!(now_ms, deadline_ms);
        assert_eq!(wake_count, 11);
    }

    #[test]
    fn ten_second_jump_fires_everything_due_exactly_once() {
        let mut wheel = TimerWheel::new(1_000);
        let mut due_values = Vec::new();
        for value in 0..5_000u64 {
            let deadline_ms = 1_000 + value * 3;
            wheel.insert(deadline_ms, value);
            if deadline_ms <= 11_000 {
                due_values.push(value);
            }
        }
        let mut fired = advanced(&mut wheel, 11_000);
        fired.sort_unstable();
        assert_eq!(fired, due_values);
        assert_eq!(wheel.len(), 5_000 - due_values.len());
        check_invariants(&wheel);
        // The earliest left is 11_002, but slot 11_001 holds 12_025 (a later
        // rotation), so the bound may be one early; never late.
        let next_ms = wheel.next_deadline_ms().unwrap();
        assert!((11_001..=11_002).contains(&next_ms));
        assert!(advanced(&mut wheel, 11_001).is_empty());
        let mut rest = advanced(&mut wheel, 100_000);
        rest.sort_unstable();
        assert_eq!(rest, (due_values.len() as u64..5_000).collect::<Vec<_>>());
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        let mut wheel = TimerWheel::new(u64::MAX - 10);
        wheel.insert(u64::MAX, 1);
        assert_eq!(wheel.next_deadline_ms(), Some(u64::MAX));
        assert_eq!(advanced(&mut wheel, u64::MAX), vec![1]);
        wheel.insert(u64::MAX, 2);
        assert_eq!(wheel.next_deadline_ms(), Some(u64::MAX));
        assert_eq!(advanced(&mut wheel, u64::MAX), vec![2]);
        assert_eq!(wheel.next_deadline_ms(), None);
    }

    #[test]
    #[should_panic(expected = "timer wheel is full")]
    fn insert_on_full_wheel_panics() {
        let mut wheel = TimerWheel::with_capacity_max(0, 2);
        wheel.insert(1, ());
        wheel.insert(2, ());
        wheel.insert(3, ());
    }

    #[test]
    fn capacity_is_reusable_after_fire_and_cancel() {
        let mut wheel = TimerWheel::with_capacity_max(0, 2);
        let a = wheel.insert(1, 1);
        wheel.insert(2, 2);
        wheel.cancel(a);
        wheel.insert(3, 3);
        assert_eq!(advanced(&mut wheel, 3).len(), 2);
        wheel.insert(4, 4);
        wheel.insert(5, 5);
        assert_eq!(wheel.entries.len(), 2);
    }

    /// The naive model: a list of live timers, scanned in full.
    struct Model {
        now_ms: u64,
        timers: Vec<(TimerId, u64, u64)>,
    }

    impl Model {
        fn deadline_ms_min(&self) -> Option<u64> {
            self.timers
                .iter()
                .map(|&(_, deadline_ms, _)| deadline_ms)
                .min()
        }

        /// Fires like the wheel, recording the fired handles in `dead_ids`.
        fn advance(&mut self, now_ms: u64, dead_ids: &mut Vec<TimerId>) -> Vec<u64> {
            if now_ms < self.now_ms {
                return Vec::new();
            }
            self.now_ms = now_ms;
            let mut fired = Vec::new();
            for &(id, deadline_ms, value) in &self.timers {
                if deadline_ms <= now_ms {
                    fired.push(value);
                    dead_ids.push(id);
                }
            }
            self.timers
                .retain(|&(_, deadline_ms, _)| deadline_ms > now_ms);
            fired.sort_unstable();
            fired
        }
    }

    /// Checks `next_deadline_ms` against the model: never later than the
    /// earliest real deadline, and exact when every timer lies within one
    /// rotation ahead (so the loop never spins on an early answer).
    fn check_next_deadline(wheel: &TimerWheel<u64>, model: &Model) {
        let next_ms = wheel.next_deadline_ms();
        let Some(deadline_ms_min) = model.deadline_ms_min() else {
            assert_eq!(next_ms, None);
            return;
        };
        let next_ms = next_ms.expect("a non-empty wheel must report a deadline");
        assert!(next_ms <= deadline_ms_min, "{next_ms} > {deadline_ms_min}");
        let within_one_rotation = model.timers.iter().all(|&(_, deadline_ms, _)| {
            deadline_ms > model.now_ms && deadline_ms <= model.now_ms + SLOT_COUNT as u64
        });
        if within_one_rotation {
            assert_eq!(next_ms, deadline_ms_min);
        }
    }

    fn random_step(
        random: &mut Rng,
        wheel: &mut TimerWheel<u64>,
        model: &mut Model,
        value_next: &mut u64,
        dead_ids: &mut Vec<TimerId>,
    ) {
        match random.below(10) {
            0..=3 => {
                // Mostly near, sometimes past, sometimes several rotations out.
                let offset_ms = match random.below(8) {
                    0 => 0,
                    1 => random.below(5 * SLOT_COUNT as u64),
                    _ => random.below(SLOT_COUNT as u64),
                };
                let deadline_ms = (model.now_ms + offset_ms).saturating_sub(random.below(40));
                let id = wheel.insert(deadline_ms, *value_next);
                model.timers.push((id, deadline_ms, *value_next));
                *value_next += 1;
            }
            4..=5 if !model.timers.is_empty() => {
                let position = random.below(model.timers.len() as u64) as usize;
                let (id, _, value) = model.timers.swap_remove(position);
                assert_eq!(wheel.cancel(id), Some(value));
                dead_ids.push(id);
            }
            6 if !dead_ids.is_empty() => {
                let id = dead_ids[random.below(dead_ids.len() as u64) as usize];
                assert_eq!(wheel.cancel(id), None);
            }
            _ => {
                let now_ms = match random.below(10) {
                    0 => model.now_ms.saturating_sub(random.below(50)),
                    1 => model.now_ms + random.below(8 * SLOT_COUNT as u64),
                    2 => wheel.next_deadline_ms().unwrap_or(model.now_ms),
                    _ => model.now_ms + random.below(64),
                };
                let mut fired = advanced(wheel, now_ms);
                fired.sort_unstable();
                assert_eq!(fired, model.advance(now_ms, dead_ids));
            }
        }
    }

    #[test]
    fn randomized_against_naive_model() {
        for seed in 1..=20u64 {
            let mut random = Rng::new(seed);
            let now_ms = random.below(1 << 40);
            let mut wheel = TimerWheel::with_capacity_max(now_ms, 4096);
            let mut model = Model {
                now_ms,
                timers: Vec::new(),
            };
            let mut value_next = 0;
            let mut dead_ids = Vec::new();
            for _ in 0..5_000 {
                random_step(
                    &mut random,
                    &mut wheel,
                    &mut model,
                    &mut value_next,
                    &mut dead_ids,
                );
                assert_eq!(wheel.len(), model.timers.len());
                check_next_deadline(&wheel, &model);
            }
            check_invariants(&wheel);
            let mut rest = advanced(&mut wheel, u64::MAX);
            rest.sort_unstable();
            assert_eq!(rest, model.advance(u64::MAX, &mut dead_ids));
            assert!(wheel.is_empty());
        }
    }
}
