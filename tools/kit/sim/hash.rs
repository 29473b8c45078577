//! A small hash with a fixed definition, for comparing logs and entries.
//! Not `std`'s hasher: its output may change between Rust releases, and the
//! same seed must give the same run everywhere.

use raftlite::core::{Entry, EntryKind, LogIndex, Term};

/// 64-bit FNV-1a (Fowler–Noll–Vo).
#[derive(Clone, Copy, Debug)]
pub struct Fnv1a {
    state: u64,
}

impl Fnv1a {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    pub fn new() -> Fnv1a {
        Fnv1a {
            state: Fnv1a::OFFSET_BASIS,
        }
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.state ^= u64::from(byte);
            self.state = self.state.wrapping_mul(Fnv1a::PRIME);
        }
    }

    pub fn write_u64(&mut self, value: u64) {
        self.write(&value.to_be_bytes());
    }

    pub fn finish(&self) -> u64 {
        self.state
    }
}

impl Default for Fnv1a {
    fn default() -> Fnv1a {
        Fnv1a::new()
    }
}

/// The hash of everything that makes an entry the entry it is. The length
/// of the payload goes first so that no two different entries share a byte
/// string.
pub fn entry_hash(entry: &Entry) -> u64 {
    entry_hash_of(entry.index, entry.term, entry.kind, &entry.data)
}

/// `entry_hash` of an entry given by its parts, for comparing a client's
/// command with what the log holds.
pub fn entry_hash_of(index: LogIndex, term: Term, kind: EntryKind, data: &[u8]) -> u64 {
    let mut hash = Fnv1a::new();
    hash.write_u64(index.0);
    hash.write_u64(term.0);
    hash.write(&[kind as u8]);
    hash.write_u64(data.len() as u64);
    hash.write(data);
    hash.finish()
}

/// The hash of a log prefix, from the hash of the prefix before `entry`
/// (0 for the empty prefix). Equal prefix hashes at an index mean equal logs
/// up to that index, barring a 64-bit collision.
pub fn prefix_hash(previous: u64, entry: &Entry) -> u64 {
    let mut hash = Fnv1a::new();
    hash.write_u64(previous);
    hash.write_u64(entry_hash(entry));
    hash.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_hash_depends_on_every_entry() {
        let one = prefix_hash(
            prefix_hash(0, &Entry::command(1, 1, b"a")),
            &Entry::command(2, 1, b"b"),
        );
        let other = prefix_hash(
            prefix_hash(0, &Entry::command(1, 1, b"x")),
            &Entry::command(2, 1, b"b"),
        );
        assert_ne!(one, other);
        assert_ne!(
            entry_hash(&Entry::command(1, 1, b"a")),
            entry_hash(&Entry::command(1, 2, b"a"))
        );
    }
}
