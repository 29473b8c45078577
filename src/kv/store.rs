//! The key-value state machine. Every node applies the same committed
//! commands in the same order (Raft §5.3, State Machine Safety §5.4.3), so
//! `apply` must be deterministic: no clock, no randomness, no IO, and no
//! iteration over unordered containers.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::constants::{KEY_SIZE_MAX, VALUE_SIZE_MAX};

use super::command::Command;
use super::key::Key;

/// What applying a command produced, for the client that proposed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Value(Vec<u8>),
    NotFound,
    /// A CAS found a value other than the one expected (`None`: absent).
    Mismatch {
        current: Option<Vec<u8>>,
    },
}

/// Up to this many keys, debug builds recompute the digest after every
/// apply. Beyond it the O(n) check would make long debug runs quadratic, so
/// tests call `recompute_digest` themselves.
const DIGEST_CHECK_KEYS_MAX: usize = 256;

/// Delta entries folded back into the base per apply once no snapshot
/// holds the base. While no cursor holds it the delta does not grow, so
/// any bound above zero drains it; a small one keeps each apply cheap.
pub const FOLD_ENTRIES_PER_APPLY_MAX: usize = 1;

/// The pairs, ordered so that iteration (and anything built from it, such
/// as a snapshot) is identical on every node.
pub(super) type Pairs = BTreeMap<Key, Vec<u8>>;

/// The key-value map as a frozen base plus a delta of newer writes, so a
/// snapshot can walk the base across many loop turns while the store goes
/// on applying (docs/DESIGN.md, "Snapshots that do not stall the loop").
///
/// While a snapshot cursor shares `base` (its `Arc` is not unique), writes
/// go to `delta`; once it is unique again they go straight to `base`, and
/// each apply folds up to FOLD_ENTRIES_PER_APPLY_MAX delta entries back.
/// Reads look in the delta first.
#[derive(Debug, Default)]
pub struct Store {
    base: Arc<Pairs>,
    /// Writes not yet in `base`: `Some(value)` set, `None` deleted.
    /// Invariant: a `None` entry's key is in `base` (deleting a key that
    /// only the delta holds removes the entry instead).
    delta: BTreeMap<Key, Option<Vec<u8>>>,
    /// Invariant: the number of keys in the merged view.
    len: usize,
    /// Invariant: digest == recompute_digest(), the XOR of `pair_hash` over
    /// all pairs. XOR lets one change update it in O(1) in any order.
    digest: u64,
}

/// A copy owns its pairs: sharing the base would leave both stores writing
/// to deltas that never fold while the other lives.
impl Clone for Store {
    fn clone(&self) -> Store {
        let pairs: Pairs = self
            .pairs_unordered()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        Store {
            base: Arc::new(pairs),
            delta: BTreeMap::new(),
            len: self.len,
            digest: self.digest,
        }
    }
}

impl Store {
    pub fn new() -> Store {
        Store::default()
    }

    /// Applies one committed command. DEL of a missing key is `Ok`: the
    /// key is absent afterwards either way, and a client retrying a DEL whose
    /// reply it lost should not see a failure.
    pub fn apply(&mut self, command: &Command) -> Outcome {
        let key = command.key();
        // Parse and decode enforce these; a breach is a programmer error.
        assert!(!key.is_empty() && key.len() <= KEY_SIZE_MAX);
        let outcome = match command {
            Command::Set { key, value } => {
                self.put(key, value);
                Outcome::Ok
            }
            Command::Get { key } => match self.get(key) {
                Some(value) => Outcome::Value(value.to_vec()),
                None => Outcome::NotFound,
            },
            Command::Del { key } => {
                self.remove(key);
                Outcome::Ok
            }
            Command::Cas { key, expected, new } => {
                self.compare_and_set(key, expected.as_deref(), new)
            }
        };
        self.fold(FOLD_ENTRIES_PER_APPLY_MAX);
        if self.len <= DIGEST_CHECK_KEYS_MAX {
            debug_assert_eq!(self.digest, self.recompute_digest());
            debug_assert_eq!(self.len, self.pairs_unordered().count());
        }
        outcome
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        match self.delta.get(key) {
            Some(value) => value.as_deref(),
            None => self.base.get(key).map(Vec::as_slice),
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A hash of the applied state: equal on nodes that applied the same
    /// prefix of the log, so comparing digests finds a diverged replica.
    /// Not a cryptographic hash; it only detects accidents.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// The digest computed from scratch in O(n), to check the incremental one.
    pub fn recompute_digest(&self) -> u64 {
        self.pairs_unordered().fold(0, |digest, (key, value)| {
            digest ^ pair_hash(key.as_bytes(), value)
        })
    }

    /// Writes not yet folded into the base (0 once the delta has drained).
    pub fn delta_len(&self) -> usize {
        self.delta.len()
    }

    /// True while a snapshot cursor holds the base.
    pub fn is_frozen(&self) -> bool {
        Arc::strong_count(&self.base) > 1
    }

    /// Every pair of the merged view, in no particular order (digests and
    /// counts do not need one).
    fn pairs_unordered(&self) -> impl Iterator<Item = (&Key, &Vec<u8>)> {
        let base = self
            .base
            .iter()
            .filter(|(key, _)| !self.delta.contains_key(*key));
        let delta = self
            .delta
            .iter()
            .filter_map(|(key, value)| value.as_ref().map(|value| (key, value)));
        base.chain(delta)
    }

    /// The whole state as one ordered map (tests compare stores with it).
    #[cfg(test)]
    pub(super) fn to_pairs(&self) -> BTreeMap<Vec<u8>, Vec<u8>> {
        self.pairs_unordered()
            .map(|(key, value)| (key.as_bytes().to_vec(), value.clone()))
            .collect()
    }

    /// Hands a snapshot the base, which then stays frozen until the cursor
    /// is dropped. Whatever the delta still holds is folded in first, so
    /// the base is the whole state: usually nothing, as the delta drains
    /// at FOLD_ENTRIES_PER_APPLY_MAX per apply; after a burst of writes
    /// during the previous snapshot, the rest of that burst. The caller
    /// takes one snapshot at a time: a base still shared is a programmer
    /// error (the runtime answers a second SNAPSHOT with UNAVAILABLE).
    pub(super) fn freeze(&mut self) -> Arc<Pairs> {
        assert!(!self.is_frozen(), "a snapshot cursor still holds the store");
        self.fold(usize::MAX);
        assert!(self.delta.is_empty());
        debug_assert_eq!(self.len, self.base.len());
        Arc::clone(&self.base)
    }

    /// A store from pairs a restore has checked (and hashed) already.
    pub(super) fn from_restored(pairs: Pairs, digest: u64) -> Store {
        Store {
            len: pairs.len(),
            base: Arc::new(pairs),
            delta: BTreeMap::new(),
            digest,
        }
    }

    /// Moves up to `entries_max` delta entries into the base, when no
    /// cursor holds it.
    pub(super) fn fold(&mut self, entries_max: usize) {
        let Some(base) = Arc::get_mut(&mut self.base) else {
            return;
        };
        for _ in 0..entries_max {
            let Some((key, value)) = self.delta.pop_first() else {
                return;
            };
            match value {
                Some(value) => base.insert(key, value),
                None => base.remove(&key),
            };
        }
    }

    /// One search of each map where it can (a search of the 1M-key base
    /// costs a cache miss per level): an existing key's value is replaced
    /// in place, found by the same lookup that reads it for the digest.
    fn put(&mut self, key: &[u8], value: &[u8]) {
        assert!(value.len() <= VALUE_SIZE_MAX);
        self.digest ^= pair_hash(key, value);
        if let Some(base) = Arc::get_mut(&mut self.base) {
            // Unfrozen: the delta is draining, and usually empty; an entry
            // there is newer than the base's.
            let in_delta = self.delta.remove(key);
            let old_hash = match base.get_mut(key) {
                Some(slot) => {
                    let hash = match &in_delta {
                        Some(newer) => newer.as_deref().map(|old| pair_hash(key, old)),
                        None => Some(pair_hash(key, slot)),
                    };
                    value.clone_into(slot);
                    hash
                }
                None => {
                    base.insert(Key::new(key), value.to_vec());
                    in_delta.flatten().map(|old| pair_hash(key, &old))
                }
            };
            self.count_replaced(old_hash);
            return;
        }
        let old_hash = match self.delta.get_mut(key) {
            Some(slot) => {
                let hash = slot.as_deref().map(|old| pair_hash(key, old));
                *slot = Some(value.to_vec());
                hash
            }
            None => {
                let hash = self.base.get(key).map(|old| pair_hash(key, old));
                self.delta.insert(Key::new(key), Some(value.to_vec()));
                hash
            }
        };
        self.count_replaced(old_hash);
    }

    /// A put replaced the pair hashing to `old_hash`, or added a key.
    fn count_replaced(&mut self, old_hash: Option<u64>) {
        match old_hash {
            Some(hash) => self.digest ^= hash,
            None => self.len += 1,
        }
    }

    fn remove(&mut self, key: &[u8]) {
        let Some(hash_old) = self.get(key).map(|value_old| pair_hash(key, value_old)) else {
            return;
        };
        self.digest ^= hash_old;
        self.len -= 1;
        if let Some(base) = Arc::get_mut(&mut self.base) {
            self.delta.remove(key);
            base.remove(key);
        } else if self.base.contains_key(key) {
            self.delta.insert(Key::new(key), None);
        } else {
            self.delta.remove(key);
        }
    }

    fn compare_and_set(&mut self, key: &[u8], expected: Option<&[u8]>, new: &[u8]) -> Outcome {
        let current = self.get(key);
        if current != expected {
            let current = current.map(<[u8]>::to_vec);
            return Outcome::Mismatch { current };
        }
        self.put(key, new);
        Outcome::Ok
    }
}

/// The hash of one pair: FNV-1a over the key length (u64, big-endian), the
/// key and the value. The length keeps ("ab", "c") apart from ("a", "bc").
pub(super) fn pair_hash(key: &[u8], value: &[u8]) -> u64 {
    let key_size = u64::try_from(key.len()).expect("key size bounded by KEY_SIZE_MAX");
    let mut hash = Fnv1a::new();
    hash.write(&key_size.to_be_bytes());
    hash.write(key);
    hash.write(value);
    hash.finish()
}

/// 64-bit FNV-1a (Fowler–Noll–Vo), written here because the digest must be
/// the same on every node and every build, which `std`'s hashers do not
/// promise.
pub(super) struct Fnv1a {
    state: u64,
}

impl Fnv1a {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    pub(super) fn new() -> Fnv1a {
        Fnv1a {
            state: Fnv1a::OFFSET_BASIS,
        }
    }

    pub(super) fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.state ^= u64::from(byte);
            self.state = self.state.wrapping_mul(Fnv1a::PRIME);
        }
    }

    pub(super) fn finish(&self) -> u64 {
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(key: &str, value: &str) -> Command {
        Command::Set {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        }
    }

    fn get(key: &str) -> Command {
        Command::Get {
            key: key.as_bytes().to_vec(),
        }
    }

    fn del(key: &str) -> Command {
        Command::Del {
            key: key.as_bytes().to_vec(),
        }
    }

    fn cas(key: &str, expected: Option<&str>, new: &str) -> Command {
        Command::Cas {
            key: key.as_bytes().to_vec(),
            expected: expected.map(|expected| expected.as_bytes().to_vec()),
            new: new.as_bytes().to_vec(),
        }
    }

    fn mismatch(current: Option<&str>) -> Outcome {
        Outcome::Mismatch {
            current: current.map(|current| current.as_bytes().to_vec()),
        }
    }

    #[test]
    fn set_get_del() {
        let mut store = Store::new();
        assert!(store.is_empty());
        assert_eq!(store.apply(&get("a")), Outcome::NotFound);
        assert_eq!(store.apply(&set("a", "1")), Outcome::Ok);
        assert_eq!(store.apply(&get("a")), Outcome::Value(b"1".to_vec()));
        assert_eq!(store.apply(&set("a", "2")), Outcome::Ok);
        assert_eq!(store.get(b"a"), Some(&b"2"[..]));
        assert_eq!(store.len(), 1);
        assert_eq!(store.apply(&del("a")), Outcome::Ok);
        assert_eq!(store.apply(&get("a")), Outcome::NotFound);
        // Idempotent: deleting a missing key succeeds.
        assert_eq!(store.apply(&del("a")), Outcome::Ok);
        assert_eq!(store.apply(&set("empty", "")), Outcome::Ok);
        assert_eq!(store.apply(&get("empty")), Outcome::Value(Vec::new()));
    }

    #[test]
    fn compare_and_set() {
        let mut store = Store::new();
        assert_eq!(store.apply(&cas("a", Some("1"), "2")), mismatch(None));
        assert_eq!(store.apply(&cas("a", None, "1")), Outcome::Ok);
        assert_eq!(store.apply(&cas("a", None, "9")), mismatch(Some("1")));
        assert_eq!(store.apply(&cas("a", Some("0"), "9")), mismatch(Some("1")));
        assert_eq!(store.apply(&cas("a", Some("1"), "2")), Outcome::Ok);
        assert_eq!(store.get(b"a"), Some(&b"2"[..]));
        // An empty value is present, not absent.
        assert_eq!(store.apply(&set("e", "")), Outcome::Ok);
        assert_eq!(store.apply(&cas("e", None, "x")), mismatch(Some("")));
        assert_eq!(store.apply(&cas("e", Some(""), "x")), Outcome::Ok);
        assert_eq!(store.recompute_digest(), store.digest());
    }

    #[test]
    fn fnv1a_matches_reference_vectors() {
        let hash = |bytes: &[u8]| {
            let mut hash = Fnv1a::new();
            hash.write(bytes);
            hash.finish()
        };
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash(b"foobar"), 0x8594_4171_f739_67e8);
    }

    fn store_after(commands: &[Command]) -> Store {
        let mut store = Store::new();
        for command in commands {
            store.apply(command);
        }
        store
    }

    #[test]
    fn digest_depends_on_state_not_history() {
        let first = store_after(&[set("a", "1"), set("b", "2"), set("c", "3")]);
        let second = store_after(&[
            set("c", "x"),
            set("b", "2"),
            set("z", "gone"),
            cas("a", None, "1"),
            del("z"),
            set("c", "3"),
            get("a"),
        ]);
        assert_eq!(first.to_pairs(), second.to_pairs());
        assert_eq!(first.digest(), second.digest());
        assert_eq!(store_after(&[set("a", "1"), del("a")]).digest(), 0);
        assert_eq!(Store::new().digest(), 0);
    }

    #[test]
    fn digest_tells_different_states_apart() {
        let digests = [
            store_after(&[]).digest(),
            store_after(&[set("a", "1")]).digest(),
            store_after(&[set("a", "2")]).digest(),
            store_after(&[set("b", "1")]).digest(),
            store_after(&[set("a", "")]).digest(),
            store_after(&[set("ab", "c")]).digest(),
            store_after(&[set("a", "bc")]).digest(),
            store_after(&[set("a", "1"), set("b", "2")]).digest(),
            store_after(&[set("a", "2"), set("b", "1")]).digest(),
        ];
        for (index, digest) in digests.iter().enumerate() {
            for other in &digests[index + 1..] {
                assert_ne!(digest, other);
            }
        }
    }

    /// Two replicas apply one random command stream; the digest stays equal
    /// to the recomputed one past the size where debug builds stop checking.
    #[test]
    fn digest_stays_consistent_under_random_commands() {
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut random = move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        let mut replica = Store::new();
        let mut commands = Vec::new();
        for step in 0..20_000 {
            let key = format!("k{}", random(DIGEST_CHECK_KEYS_MAX as u64 * 2));
            let value = format!("v{}", random(4));
            let command = match random(4) {
                0 => set(&key, &value),
                1 => del(&key),
                2 => cas(&key, Some(&value), "c"),
                _ => cas(&key, None, &value),
            };
            replica.apply(&command);
            commands.push(command);
            if step % 97 == 0 {
                assert_eq!(replica.digest(), replica.recompute_digest());
            }
        }
        assert!(replica.len() > DIGEST_CHECK_KEYS_MAX);
        let other = store_after(&commands);
        assert_eq!(other.digest(), replica.digest());
        assert_eq!(other.digest(), other.recompute_digest());
    }

    /// The state machine must stay pure: the simulator replays it, and every
    /// replica must compute the same thing. The needles are split so this
    /// test does not find itself.
    #[test]
    fn state_machine_sources_stay_pure() {
        let sources = [
            ("mod.rs", include_str!("mod.rs")),
            ("command.rs", include_str!("command.rs")),
            ("quote.rs", include_str!("quote.rs")),
            ("store.rs", include_str!("store.rs")),
            ("machine.rs", include_str!("machine.rs")),
            ("session.rs", include_str!("session.rs")),
            ("snapshot.rs", include_str!("snapshot.rs")),
            ("snapshot_tests.rs", include_str!("snapshot_tests.rs")),
        ];
        let needles = [
            ["std::", "net"].concat(),
            ["std::", "fs"].concat(),
            ["std::", "time"].concat(),
            ["std::", "env"].concat(),
            ["std::", "process"].concat(),
            ["std::", "thread"].concat(),
            ["std::collections::", "HashMap"].concat(),
            ["std::collections::", "HashSet"].concat(),
            ["mi", "o::"].concat(),
            ["ra", "nd::"].concat(),
        ];
        for (name, source) in sources {
            for needle in &needles {
                assert!(!source.contains(needle.as_str()), "{name} uses {needle}");
            }
        }
    }
}
