//! The simulator's agenda: events ordered by time, then by the order in
//! which they were scheduled, so simultaneous events always run in the same
//! order and a seed replays event for event.

use std::collections::BTreeMap;

/// More queued events than this means the simulator itself runs away (a
/// message storm feeding on itself); it stops rather than eat memory.
pub const EVENTS_QUEUED_MAX: usize = 1 << 20;

pub struct EventQueue<E> {
    events: BTreeMap<(u64, u64), E>,
    sequence_next: u64,
}

impl<E> EventQueue<E> {
    pub fn new() -> EventQueue<E> {
        EventQueue {
            events: BTreeMap::new(),
            sequence_next: 0,
        }
    }

    pub fn push(&mut self, time_ms: u64, event: E) {
        assert!(
            self.events.len() < EVENTS_QUEUED_MAX,
            "simulator event queue overflow ({EVENTS_QUEUED_MAX} events)"
        );
        self.events.insert((time_ms, self.sequence_next), event);
        self.sequence_next += 1;
    }

    /// The earliest event and its time.
    pub fn pop(&mut self) -> Option<(u64, E)> {
        self.events
            .pop_first()
            .map(|((time_ms, _sequence), event)| (time_ms, event))
    }
}

impl<E> Default for EventQueue<E> {
    fn default() -> EventQueue<E> {
        EventQueue::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simultaneous_events_keep_their_order() {
        let mut queue = EventQueue::new();
        queue.push(5, "second");
        queue.push(1, "first");
        queue.push(5, "third");
        assert_eq!(queue.pop(), Some((1, "first")));
        assert_eq!(queue.pop(), Some((5, "second")));
        assert_eq!(queue.pop(), Some((5, "third")));
        assert_eq!(queue.pop(), None);
    }
}
