//! The memo of configurations the search has already reached (Lowe 2017,
//! §3): a configuration is the set of operations linearized so far and the
//! register value they leave. Two paths that reach the same configuration
//! have the same futures, so the second one is cut.
//!
//! Operations with an unknown outcome make this a covering test rather than
//! an equality test: such an operation has no completion, so it never blocks
//! the search and its being still pending only adds options. A configuration
//! therefore has every future of one with the same completed operations and
//! value whose linearized unknown operations are a superset, and the search
//! cuts a configuration when one with a subset of its unknown operations was
//! seen. Without this, every unknown write that never took effect would
//! double the configurations for the rest of the history.
//!
//! A configuration also says whether its last operation was an unknown one,
//! since the search then limits what may go next (see `search`): one that
//! is not limited covers one that is.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::model::ValueId;

/// A set of operation indices.
#[derive(Clone, Debug)]
pub(super) struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    pub(super) fn new(bits_count: usize) -> Bitset {
        Bitset {
            words: vec![0; bits_count.div_ceil(64)],
        }
    }

    pub(super) fn insert(&mut self, index: usize) {
        self.words[index / 64] |= 1 << (index % 64);
    }

    pub(super) fn remove(&mut self, index: usize) {
        self.words[index / 64] &= !(1 << (index % 64));
    }

    /// Makes this set equal to `other` (of the same size), reusing memory.
    pub(super) fn copy_from(&mut self, other: &Bitset) {
        self.words.clone_from(&other.words);
    }

    pub(super) fn contains(&self, index: usize) -> bool {
        self.words[index / 64] & (1 << (index % 64)) != 0
    }

    /// The words from `first_word` to `end_word`, which must be those
    /// neither all ones (below) nor all zeros (above). Equal sets have equal
    /// spans, so the span and its start are an exact and compact stand-in for
    /// the set: the search linearizes operations roughly in invocation order,
    /// so the span stays about as wide as the concurrency, however long the
    /// history. The caller knows the bounds from its own bookkeeping, which
    /// spares scanning the whole set on every step.
    pub(super) fn span(&self, first_word: usize, end_word: usize) -> &[u64] {
        debug_assert_eq!(
            self.words
                .iter()
                .take_while(|&&word| word == u64::MAX)
                .count(),
            first_word
        );
        let end_word_scanned = self
            .words
            .iter()
            .rposition(|&word| word != 0)
            .map_or(0, |index| index + 1);
        debug_assert_eq!(end_word_scanned.max(first_word), end_word);
        &self.words[first_word..end_word]
    }

    fn contains_all(&self, subset_words: &[u64]) -> bool {
        debug_assert_eq!(subset_words.len(), self.words.len());
        let mut pairs = self.words.iter().zip(subset_words);
        pairs.all(|(&word, &subset_word)| subset_word & !word == 0)
    }
}

/// SplitMix64's finalizer: spreads an integer over 64 bits. Used for the
/// hash keys of operations and values (fixed, not random: the search is a
/// function of the history).
pub(super) fn mix(value: u64) -> u64 {
    let mut mixed = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    mixed ^ (mixed >> 31)
}

/// The map's keys are already well-mixed hashes, so hashing them again
/// would be wasted work.
#[derive(Default)]
struct IdentityHasher {
    hash: u64,
}

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.hash
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.hash = self.hash.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.hash = value;
    }
}

/// Marks the end of a chain of entries.
const NO_ENTRY: usize = usize::MAX;

/// A recorded configuration; its sets live in `Cache::words`.
struct Entry {
    state: ValueId,
    after_unknown: bool,
    completed_first_word: usize,
    completed_start: usize,
    completed_len: usize,
    unknown_start: usize,
    /// The next entry with the same hash, or `NO_ENTRY`.
    next: usize,
}

/// A configuration of the search, as the cache takes it.
pub(super) struct Configuration<'c> {
    /// A function of the completed set and the value only.
    pub hash: u64,
    /// The completed set's span: its first word and the words from there, as
    /// `Bitset::span` gives them.
    pub completed_first_word: usize,
    pub completed_words: &'c [u64],
    pub unknown: &'c Bitset,
    pub state: ValueId,
    pub after_unknown: bool,
}

/// Entries sit in one vector and their sets in another, chained by hash, so
/// that millions of them cost two allocations rather than millions.
#[derive(Default)]
pub(super) struct Cache {
    /// The first entry of each hash's chain. The hash covers the completed
    /// set and the value, not the unknown set, since covering is not
    /// equality.
    chains: HashMap<u64, usize, BuildHasherDefault<IdentityHasher>>,
    entries: Vec<Entry>,
    words: Vec<u64>,
    /// Entries compared so far: work that the search budget counts.
    comparisons_count: u64,
}

impl Cache {
    /// Records a configuration and returns true, or returns false if a
    /// configuration covering it was recorded before.
    pub(super) fn insert(&mut self, configuration: &Configuration) -> bool {
        let head = self
            .chains
            .get(&configuration.hash)
            .copied()
            .unwrap_or(NO_ENTRY);
        let mut index = head;
        while index != NO_ENTRY {
            self.comparisons_count += 1;
            if self.covers(&self.entries[index], configuration) {
                return false;
            }
            index = self.entries[index].next;
        }
        let completed_start = self.words.len();
        self.words.extend_from_slice(configuration.completed_words);
        let unknown_start = self.words.len();
        self.words.extend_from_slice(&configuration.unknown.words);
        self.chains.insert(configuration.hash, self.entries.len());
        self.entries.push(Entry {
            state: configuration.state,
            after_unknown: configuration.after_unknown,
            completed_first_word: configuration.completed_first_word,
            completed_start,
            completed_len: configuration.completed_words.len(),
            unknown_start,
            next: head,
        });
        true
    }

    fn covers(&self, entry: &Entry, configuration: &Configuration) -> bool {
        let completed_end = entry.completed_start + entry.completed_len;
        let unknown_end = entry.unknown_start + configuration.unknown.words.len();
        // The entries of a chain almost always share the completed set, so
        // the unknown sets are the likelier difference: test them before
        // comparing the completed spans.
        entry.state == configuration.state
            && (configuration.after_unknown || !entry.after_unknown)
            && entry.completed_first_word == configuration.completed_first_word
            && entry.completed_len == configuration.completed_words.len()
            && configuration
                .unknown
                .contains_all(&self.words[entry.unknown_start..unknown_end])
            && self.words[entry.completed_start..completed_end] == *configuration.completed_words
    }

    pub(super) fn comparisons_count(&self) -> u64 {
        self.comparisons_count
    }
}
