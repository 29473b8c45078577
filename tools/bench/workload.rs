//! What the clients send and when: the seeded choice of GET or SET and key,
//! the command text, and the open-loop send schedule. Pure: time is passed in.

use std::fmt::Write;
use std::time::{Duration, Instant};

/// splitmix64: tiny, seeded, good enough to spread keys. Seeded so that two
/// runs with the same flags send the same commands.
#[derive(Clone, Debug)]
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Random {
        Random(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    /// Uniform in 0..bound (multiply-shift: no modulo bias worth noticing).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0);
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationKind {
    /// `GET key`: linearizable, needs no session.
    Read,
    /// `SET key value`: numbered in the client's session.
    Write,
}

/// The shape of the load; validated by the options parser.
#[derive(Clone, Debug)]
pub struct Workload {
    pub keys: u64,
    pub key_size: usize,
    pub value_size: usize,
    pub read_ratio: f64,
}

impl Workload {
    /// Draws the next operation: its kind and its command line.
    pub fn next_command(&self, random: &mut Random, value: &str) -> (OperationKind, String) {
        let kind = if random.unit() < self.read_ratio {
            OperationKind::Read
        } else {
            OperationKind::Write
        };
        let key_index = random.below(self.keys);
        (kind, self.command(kind, key_index, value))
    }

    /// The fill's write of key `key_index` (`bench --fill`).
    pub fn fill_command(&self, key_index: u64, value: &str) -> String {
        self.command(OperationKind::Write, key_index, value)
    }

    fn command(&self, kind: OperationKind, key_index: u64, value: &str) -> String {
        let mut command = String::with_capacity(5 + self.key_size + self.value_size);
        command.push_str(match kind {
            OperationKind::Read => "GET ",
            OperationKind::Write => "SET ",
        });
        self.push_key(key_index, &mut command);
        if kind == OperationKind::Write {
            command.push(' ');
            command.push_str(value);
        }
        command
    }

    /// `k` and the index zero-padded to `key_size` bytes, e.g. `k0000042`.
    pub fn push_key(&self, key_index: u64, out: &mut String) {
        assert!(key_index < self.keys);
        let width = self.key_size - 1;
        let _ = write!(out, "k{key_index:0width$}");
    }

    /// The value a client writes: its number, then filler, cut to
    /// `value_size` bytes (values differ across clients, so a reader can tell
    /// whose write it sees).
    pub fn value_for_client(&self, client_index: usize) -> String {
        let mut value = format!("c{client_index}-");
        while value.len() < self.value_size {
            value.push('v');
        }
        value.truncate(self.value_size);
        value
    }
}

/// Open-loop schedule: operation `j` (counting from 0 across all clients) is
/// due at `start + j / rate` and belongs to client `j % clients`, so each
/// client's operations are evenly spaced and the clients interleave.
#[derive(Clone, Debug)]
pub struct Schedule {
    start: Instant,
    rate: f64,
    clients: u64,
}

impl Schedule {
    pub fn new(start: Instant, rate: f64, clients: usize) -> Schedule {
        assert!(rate > 0.0 && rate.is_finite());
        assert!(clients > 0);
        Schedule {
            start,
            rate,
            clients: clients as u64,
        }
    }

    /// When operation `number` (global) should be sent.
    pub fn due(&self, number: u64) -> Instant {
        self.start + Duration::from_secs_f64(number as f64 / self.rate)
    }

    pub fn client_of(&self, number: u64) -> usize {
        (number % self.clients) as usize
    }

    /// The global number of a client's `count`-th operation.
    pub fn number_of(&self, client_index: usize, count: u64) -> u64 {
        client_index as u64 + count * self.clients
    }

    /// The first operation due at or after `instant`.
    pub fn first_due_from(&self, instant: Instant) -> u64 {
        let seconds = instant.saturating_duration_since(self.start).as_secs_f64();
        let mut number = (seconds * self.rate).floor() as u64;
        // Float rounding can land one off either way; settle it exactly.
        while number > 0 && self.due(number - 1) >= instant {
            number -= 1;
        }
        while self.due(number) < instant {
            number += 1;
        }
        number
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(read_ratio: f64) -> Workload {
        Workload {
            keys: 100,
            key_size: 8,
            value_size: 10,
            read_ratio,
        }
    }

    #[test]
    fn keys_are_padded_to_the_key_size() {
        let mut key = String::new();
        workload(0.5).push_key(42, &mut key);
        assert_eq!(key, "k0000042");
        let wide = Workload {
            keys: 10,
            key_size: 2,
            ..workload(0.5)
        };
        key.clear();
        wide.push_key(9, &mut key);
        assert_eq!(key, "k9");
    }

    #[test]
    fn commands_follow_the_read_ratio_and_key_space() {
        let mut random = Random::new(3);
        let workload = workload(0.25);
        let value = workload.value_for_client(7);
        assert_eq!(value, "c7-vvvvvvv");
        let mut reads = 0;
        for _ in 0..10_000 {
            let (kind, command) = workload.next_command(&mut random, &value);
            let parts: Vec<&str> = command.split(' ').collect();
            assert_eq!(parts[1].len(), 8);
            assert!(parts[1][1..].parse::<u64>().unwrap() < 100);
            match kind {
                OperationKind::Read => {
                    reads += 1;
                    assert_eq!(parts.len(), 2);
                    assert_eq!(parts[0], "GET");
                }
                OperationKind::Write => assert_eq!(parts, ["SET", parts[1], value.as_str()]),
            }
        }
        assert!((2300..2700).contains(&reads), "{reads} reads");
        assert_eq!(
            Workload {
                value_size: 2,
                ..workload
            }
            .value_for_client(123),
            "c1"
        );
    }

    #[test]
    fn fill_commands_write_the_key_asked_for() {
        let workload = workload(0.9);
        assert_eq!(workload.fill_command(0, "vv"), "SET k0000000 vv");
        assert_eq!(workload.fill_command(99, "vv"), "SET k0000099 vv");
    }

    #[test]
    fn open_loop_schedule_interleaves_clients_at_fixed_intervals() {
        let start = Instant::now();
        let schedule = Schedule::new(start, 1000.0, 4);
        assert_eq!(schedule.due(0), start);
        assert_eq!(schedule.due(1500), start + Duration::from_millis(1500));
        assert_eq!(schedule.client_of(6), 2);
        assert_eq!(schedule.number_of(2, 1), 6);
        assert_eq!(schedule.first_due_from(start), 0);
        assert_eq!(schedule.first_due_from(start + Duration::from_millis(2)), 2);
        let between = start + Duration::from_micros(2500);
        assert_eq!(schedule.first_due_from(between), 3);
        let odd = Schedule::new(start, 3.0, 1);
        for number in 0..100 {
            assert_eq!(odd.first_due_from(odd.due(number)), number);
        }
    }
}
