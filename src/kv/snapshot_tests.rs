//! Tests of the snapshot body (src/kv/snapshot.rs) and of the store's
//! frozen base plus delta that lets a cursor walk while the machine applies.

use std::collections::BTreeMap;

use super::command::Command;
use super::machine::{Applied, LogRecord, StateMachine};
use super::session::SessionCheck;
use super::snapshot::{Restorer, SnapshotCursor, SNAPSHOT_RECORD_SIZE_MAX, SNAPSHOT_VERSION};
use super::store::FOLD_ENTRIES_PER_APPLY_MAX;
use crate::constants::{KEY_SIZE_MAX, SESSIONS_MAX, VALUE_SIZE_MAX};

/// xorshift64: the tests' seeded randomness.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

fn record(session: Option<(u64, u64)>, command: Command) -> Vec<u8> {
    let mut out = Vec::new();
    LogRecord::Command { session, command }.encode(&mut out);
    out
}

fn register() -> Vec<u8> {
    let mut out = Vec::new();
    LogRecord::Register.encode(&mut out);
    out
}

fn set(key: &[u8], value: &[u8]) -> Command {
    Command::Set {
        key: key.to_vec(),
        value: value.to_vec(),
    }
}

fn del(key: &[u8]) -> Command {
    Command::Del { key: key.to_vec() }
}

fn get(key: &[u8]) -> Command {
    Command::Get { key: key.to_vec() }
}

fn cas(key: &[u8], expected: Option<&[u8]>, new: &[u8]) -> Command {
    Command::Cas {
        key: key.to_vec(),
        expected: expected.map(<[u8]>::to_vec),
        new: new.to_vec(),
    }
}

/// Applies entries at consecutive indexes, in term 1.
struct Applier {
    machine: StateMachine,
    index_next: u64,
}

impl Applier {
    fn new() -> Applier {
        Applier {
            machine: StateMachine::default(),
            index_next: 1,
        }
    }

    fn apply(&mut self, data: &[u8]) -> Applied {
        let index = self.index_next;
        self.index_next += 1;
        self.machine.apply(index, 1, data)
    }
}

/// A small machine with a session of every reply kind, a registered
/// session with no command yet, and keys with empty and long values.
fn small_machine() -> StateMachine {
    let mut applier = Applier::new();
    let commands = [
        set(b"a", b"1"),
        get(b"a"),
        get(b"missing"),
        cas(b"a", None, b"x"),
        cas(b"nothing", Some(b"y"), b"x"),
        del(b"gone"),
    ];
    for command in commands {
        let Applied::Registered { client_id } = applier.apply(&register()) else {
            panic!("register failed");
        };
        applier.apply(&record(Some((client_id, 1)), command));
    }
    applier.apply(&register());
    applier.apply(&record(None, set(b"empty", b"")));
    applier.apply(&record(None, set(b"long", &[7; 300])));
    applier.apply(&record(None, set(&[0xff; 20], b"binary key")));
    applier.machine
}

fn body_of(machine: &mut StateMachine, chunk_size_max: usize) -> Vec<u8> {
    let mut cursor = machine.begin_snapshot();
    let body = walk(&mut cursor, chunk_size_max);
    assert_eq!(cursor.size_written(), body.len() as u64);
    body
}

/// Runs a cursor to the end, checking each chunk's bound.
fn walk(cursor: &mut SnapshotCursor, chunk_size_max: usize) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let start = body.len();
        let done = cursor.next_chunk(&mut body, chunk_size_max);
        let size = body.len() - start;
        assert!(size > 0, "every call makes progress");
        assert!(size <= chunk_size_max.max(SNAPSHOT_RECORD_SIZE_MAX));
        if done {
            let mut after = Vec::new();
            assert!(cursor.next_chunk(&mut after, chunk_size_max));
            assert!(after.is_empty() && cursor.is_done());
            return body;
        }
    }
}

/// Everything observable of a machine: pairs, session answers, digest.
fn assert_same_state(restored: &StateMachine, original: &StateMachine) {
    assert_eq!(restored.digest(), original.digest());
    assert_eq!(restored.store().to_pairs(), original.store().to_pairs());
    assert_eq!(restored.store().len(), original.store().len());
    assert_eq!(restored.sessions().records(), original.sessions().records());
    assert_eq!(
        restored.store().recompute_digest(),
        restored.store().digest()
    );
}

#[test]
fn a_body_round_trips_split_at_every_byte() {
    let mut machine = small_machine();
    let body = body_of(&mut machine, 1 << 20);
    assert_eq!(body[0], SNAPSHOT_VERSION);
    // The chunk size changes where chunks end, never the bytes.
    for chunk_size_max in [0, 1, 13, 100] {
        assert_eq!(body_of(&mut machine, chunk_size_max), body);
    }
    assert_same_state(&StateMachine::restore(&body).unwrap(), &machine);
    for split in 0..=body.len() {
        let mut restorer = Restorer::new();
        restorer.feed(&body[..split]).unwrap();
        restorer.feed(&body[split..]).unwrap();
        assert_same_state(&restorer.finish().unwrap(), &machine);
    }
    let mut restorer = Restorer::new();
    for byte in &body {
        restorer.feed(std::slice::from_ref(byte)).unwrap();
    }
    assert_eq!(restorer.size_fed(), body.len() as u64);
    assert_same_state(&restorer.finish().unwrap(), &machine);
}

#[test]
fn an_empty_machine_round_trips() {
    let mut machine = StateMachine::default();
    let body = body_of(&mut machine, 1);
    assert_same_state(&StateMachine::restore(&body).unwrap(), &machine);
}

#[test]
fn every_prefix_and_any_extra_byte_is_an_error() {
    let body = body_of(&mut small_machine(), 64);
    for cut in 0..body.len() {
        let error = StateMachine::restore(&body[..cut]).unwrap_err();
        assert!(error.offset <= cut as u64, "{error} for prefix {cut}");
        assert!(error.problem.contains("truncated"), "{error}");
    }
    let mut longer = body.clone();
    longer.push(0);
    let error = StateMachine::restore(&longer).unwrap_err();
    assert_eq!(error.offset, body.len() as u64);
}

#[test]
fn every_corrupted_byte_is_an_error() {
    let body = body_of(&mut small_machine(), 64);
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    for position in 0..body.len() {
        let mut corrupted = body.clone();
        corrupted[position] ^= 1 + random.below(255) as u8;
        let result = StateMachine::restore(&corrupted);
        assert!(result.is_err(), "byte {position} changed, body accepted");
    }
}

/// Seeded fuzz: several bytes changed, bytes cut out or put in, pure
/// garbage. Every outcome is an error, never a panic, and a restorer fed
/// the same bytes in pieces agrees.
#[test]
fn mangled_bodies_and_garbage_are_errors() {
    let body = body_of(&mut small_machine(), 64);
    let mut random = Random(0x2545_f491_4f6c_dd1d);
    for round in 0..3000 {
        let mut mangled = body.clone();
        match round % 3 {
            0 => {
                for _ in 0..1 + random.below(8) {
                    let position = random.below(mangled.len() as u64) as usize;
                    mangled[position] ^= 1 + random.below(255) as u8;
                }
            }
            1 => {
                let position = random.below(mangled.len() as u64) as usize;
                let count = (1 + random.below(16) as usize).min(mangled.len() - position);
                mangled.drain(position..position + count);
            }
            _ => {
                mangled = (0..random.below(400))
                    .map(|_| random.below(256) as u8)
                    .collect();
                if !mangled.is_empty() && random.below(2) == 0 {
                    mangled[0] = SNAPSHOT_VERSION;
                }
            }
        }
        let whole = StateMachine::restore(&mangled).map(|machine| machine.digest());
        assert!(whole.is_err(), "round {round} accepted");
        let mut restorer = Restorer::new();
        let mut pieces = mangled.as_slice();
        let mut result = Ok(());
        while !pieces.is_empty() && result.is_ok() {
            let size = (1 + random.below(40) as usize).min(pieces.len());
            let (piece, rest) = pieces.split_at(size);
            result = restorer.feed(piece);
            pieces = rest;
        }
        let pieced = result.and_then(|()| restorer.finish().map(|machine| machine.digest()));
        assert_eq!(pieced, whole, "round {round}");
    }
}

/// Builds bodies by hand, with a correct CRC, to reach the checks behind it.
struct Body(Vec<u8>);

impl Body {
    fn new() -> Body {
        Body(vec![SNAPSHOT_VERSION])
    }

    fn pair(mut self, key: &[u8], value: &[u8]) -> Body {
        self.0.push(2);
        self.0.extend_from_slice(&(key.len() as u32).to_be_bytes());
        self.0.extend_from_slice(key);
        self.0
            .extend_from_slice(&(value.len() as u32).to_be_bytes());
        self.0.extend_from_slice(value);
        self
    }

    /// A registered session with no command yet.
    fn session(mut self, client_id: u64) -> Body {
        self.0.push(1);
        for field in [client_id, 0, client_id] {
            self.0.extend_from_slice(&field.to_be_bytes());
        }
        self.0.push(0);
        self
    }

    fn footer(mut self, key_count: u64, session_count: u64, digest: u64) -> Vec<u8> {
        self.0.push(3);
        for field in [key_count, session_count, digest] {
            self.0.extend_from_slice(&field.to_be_bytes());
        }
        let crc = crc32fast::hash(&self.0);
        self.0.extend_from_slice(&crc.to_be_bytes());
        self.0
    }
}

fn problem(body: &[u8]) -> (u64, String) {
    let error = StateMachine::restore(body).unwrap_err();
    assert!(!error.to_string().contains('\n'));
    (error.offset, error.problem)
}

#[test]
fn the_footer_checks_counts_and_digest() {
    let mut applier = Applier::new();
    applier.apply(&record(None, set(b"a", b"1")));
    let digest = applier.machine.digest();
    let valid = Body::new().pair(b"a", b"1").footer(1, 0, digest);
    assert_eq!(StateMachine::restore(&valid).unwrap().digest(), digest);
    assert_eq!(
        body_of(&mut applier.machine, 100),
        valid,
        "the documented layout"
    );
    let footer = valid.len() as u64 - 29;
    let wrong_keys = Body::new().pair(b"a", b"1").footer(2, 0, digest);
    assert_eq!(problem(&wrong_keys).0, footer + 1);
    let wrong_sessions = Body::new().pair(b"a", b"1").footer(1, 1, digest);
    assert_eq!(problem(&wrong_sessions).0, footer + 9);
    let wrong_digest = Body::new().pair(b"a", b"1").footer(1, 0, digest ^ 1);
    let (offset, text) = problem(&wrong_digest);
    assert_eq!(offset, footer + 17);
    assert!(text.contains("digest mismatch"), "{text}");
}

#[test]
fn impossible_sizes_and_orders_are_errors() {
    let too_long_key = vec![b'k'; KEY_SIZE_MAX + 1];
    let cases: [(Vec<u8>, u64, &str); 7] = [
        (vec![SNAPSHOT_VERSION + 1], 0, "unknown body version"),
        (vec![SNAPSHOT_VERSION, 9], 1, "unknown record tag 9"),
        (
            Body::new().pair(b"", b"v").footer(1, 0, 0),
            2,
            "key of 0 bytes",
        ),
        (
            Body::new().pair(&too_long_key, b"").footer(1, 0, 0),
            2,
            "key of 1025",
        ),
        (
            Body::new().pair(b"b", b"").pair(b"a", b"").footer(2, 0, 0),
            12,
            "out of order",
        ),
        (
            Body::new().pair(b"a", b"").session(1).footer(1, 1, 0),
            11,
            "session after",
        ),
        (
            Body::new().session(2).session(2).footer(0, 2, 0),
            28,
            "session 2 out of order",
        ),
    ];
    for (body, offset, text) in cases {
        let (found_offset, found) = problem(&body);
        assert_eq!(found_offset, offset, "{found}");
        assert!(found.contains(text), "{found} (expected {text})");
    }
    // A size above the bound is refused as soon as it is read, before any
    // of the bytes it announces arrive.
    let mut header = vec![SNAPSHOT_VERSION, 2];
    header.extend_from_slice(&(VALUE_SIZE_MAX as u32 + 1).to_be_bytes());
    let mut restorer = Restorer::new();
    let error = restorer.feed(&header).unwrap_err();
    assert!(error.problem.contains("key of"), "{error}");
    assert_eq!(restorer.feed(b"more").unwrap_err(), error, "failure sticks");
    let mut full = Body::new();
    for client_id in 1..=SESSIONS_MAX as u64 + 1 {
        full = full.session(client_id);
    }
    let (_, found) = problem(&full.footer(0, SESSIONS_MAX as u64 + 1, 0));
    assert!(found.contains("more than"), "{found}");
}

#[test]
fn sessions_survive_a_round_trip() {
    let mut original = Applier::new();
    let mut client_ids = Vec::new();
    for _ in 0..3 {
        let Applied::Registered { client_id } = original.apply(&register()) else {
            panic!("register failed");
        };
        client_ids.push(client_id);
    }
    let increment = record(Some((client_ids[0], 1)), cas(b"n", None, b"1"));
    let Applied::Reply(reply) = original.apply(&increment) else {
        panic!("not applied");
    };
    // The third is used last, so the second is now the idlest.
    original.apply(&record(Some((client_ids[2], 1)), get(b"n")));
    let body = body_of(&mut original.machine, 50);
    let mut restored = Applier {
        machine: StateMachine::restore(&body).unwrap(),
        index_next: original.index_next,
    };
    assert_same_state(&restored.machine, &original.machine);

    // The retry after restore is a duplicate: the original reply, and
    // nothing applied (a second CAS would find "1" and fail).
    assert_eq!(restored.apply(&increment), Applied::Reply(reply));
    assert_eq!(restored.machine.store().get(b"n"), Some(&b"1"[..]));

    // Eviction picks the same session on both: the idlest.
    original.apply(&increment);
    for _ in 0..SESSIONS_MAX - 2 {
        assert_eq!(original.apply(&register()), restored.apply(&register()));
    }
    let check = |machine: &StateMachine, client_id| machine.sessions().check(client_id, 2);
    assert_eq!(
        check(&restored.machine, client_ids[1]),
        SessionCheck::Expired
    );
    for &client_id in &client_ids {
        assert_eq!(
            check(&restored.machine, client_id),
            check(&original.machine, client_id)
        );
    }
    assert_eq!(restored.machine.digest(), original.machine.digest());
}

/// A random command, on a key space small enough to hit existing keys.
fn random_command(random: &mut Random, keys: u64) -> Command {
    let key = format!("k{:05}", random.below(keys)).into_bytes();
    let value = format!("v{}", random.below(5)).into_bytes();
    match random.below(5) {
        0 | 1 => set(&key, &value),
        2 => del(&key),
        3 => cas(&key, Some(&value), b"c"),
        _ => cas(&key, None, &value),
    }
}

/// The cursor gives the state as of `begin_snapshot` while the machine
/// goes on applying, and the machine is the same as one that never had a
/// cursor: during the walk, after the cursor is dropped, and once the
/// delta has drained.
#[test]
fn a_cursor_walks_the_state_it_began_with_while_the_machine_applies() {
    let mut random = Random(0x1234_5678_9abc_def1);
    let mut live = Applier::new();
    for _ in 0..3000 {
        live.apply(&record(None, random_command(&mut random, 2000)));
    }
    let mut reference = Applier {
        machine: live.machine.clone(),
        index_next: live.index_next,
    };
    let frozen = live.machine.clone();
    let mut cursor = live.machine.begin_snapshot();
    assert!(live.machine.is_snapshot_held());
    assert_eq!(cursor.digest(), frozen.digest());
    let mut body = Vec::new();
    while !cursor.next_chunk(&mut body, 512) {
        for _ in 0..random.below(20) {
            let data = record(None, random_command(&mut random, 2500));
            assert_eq!(live.apply(&data), reference.apply(&data));
        }
        assert_eq!(live.machine.digest(), reference.machine.digest());
    }
    assert!(
        live.machine.store().delta_len() > 0,
        "writes went to the delta"
    );
    assert_same_state(&StateMachine::restore(&body).unwrap(), &frozen);
    assert_same_state(&live.machine, &reference.machine);
    drop(cursor);
    assert!(!live.machine.is_snapshot_held(), "the base is released");

    let delta_len = live.machine.store().delta_len();
    for _ in 0..delta_len.div_ceil(FOLD_ENTRIES_PER_APPLY_MAX) {
        let data = record(None, random_command(&mut random, 2500));
        assert_eq!(live.apply(&data), reference.apply(&data));
    }
    assert_eq!(live.machine.store().delta_len(), 0, "the delta drained");
    assert_same_state(&live.machine, &reference.machine);
}

/// A snapshot begun while the previous one's delta is still there folds
/// it in first; an abandoned cursor leaves nothing behind.
#[test]
fn a_second_snapshot_after_an_abandoned_one_sees_every_write() {
    let mut random = Random(0x0dd_ba11);
    let mut applier = Applier::new();
    for _ in 0..500 {
        applier.apply(&record(None, random_command(&mut random, 400)));
    }
    let mut abandoned = applier.machine.begin_snapshot();
    let mut partial = Vec::new();
    assert!(!abandoned.next_chunk(&mut partial, 100));
    for _ in 0..300 {
        applier.apply(&record(None, random_command(&mut random, 600)));
    }
    assert_eq!(
        applier.machine.snapshot_blocked(),
        Some("a snapshot is being written")
    );
    assert_eq!(
        applier.machine.fold_delta(10),
        applier.machine.store().delta_len()
    );
    drop(abandoned);
    assert!(applier.machine.store().delta_len() > FOLD_ENTRIES_PER_APPLY_MAX);
    assert!(applier.machine.snapshot_blocked().is_some());
    let expected = applier.machine.clone();
    let body = body_of(&mut applier.machine, 300);
    assert_eq!(applier.machine.store().delta_len(), 0);
    assert_same_state(&StateMachine::restore(&body).unwrap(), &expected);
}

/// An idle node drains the delta without applying anything, and a
/// snapshot is then O(1) again.
#[test]
fn fold_delta_drains_on_idle_turns() {
    let mut applier = Applier::new();
    let cursor = applier.machine.begin_snapshot();
    for number in 0..100u32 {
        applier.apply(&record(None, set(&number.to_be_bytes(), b"v")));
    }
    let expected = applier.machine.clone();
    drop(cursor);
    let mut left = applier.machine.store().delta_len();
    assert!(left > 0);
    while left > 0 {
        let next = applier.machine.fold_delta(7);
        assert_eq!(next, left.saturating_sub(7));
        left = next;
    }
    assert_eq!(applier.machine.snapshot_blocked(), None);
    assert_same_state(&applier.machine, &expected);
}

/// The store's reads during a walk: a key set, deleted and set again in
/// the delta, a base key deleted, a delta-only key deleted.
#[test]
fn reads_see_the_delta_over_the_base() {
    let mut applier = Applier::new();
    applier.apply(&record(None, set(b"base", b"1")));
    applier.apply(&record(None, set(b"kept", b"1")));
    let cursor = applier.machine.begin_snapshot();
    let writes = [
        set(b"base", b"2"),
        del(b"base"),
        set(b"new", b"1"),
        del(b"new"),
        set(b"again", b"1"),
        del(b"again"),
        set(b"again", b"2"),
    ];
    for command in writes {
        applier.apply(&record(None, command));
    }
    let store = applier.machine.store();
    let expected: BTreeMap<Vec<u8>, Vec<u8>> = [(&b"again"[..], &b"2"[..]), (b"kept", b"1")]
        .map(|(key, value)| (key.to_vec(), value.to_vec()))
        .into();
    assert_eq!(store.to_pairs(), expected);
    assert_eq!((store.get(b"base"), store.get(b"new")), (None, None));
    assert_eq!(store.len(), 2);
    assert_eq!(store.digest(), store.recompute_digest());
    assert_eq!(
        store.delta_len(),
        2,
        "base deleted, again set; new left no trace"
    );
    drop(cursor);
}

#[cfg(feature = "planted-bugs")]
#[test]
fn planted_snapshot_without_sessions_restores_cleanly_and_forgets_them() {
    use crate::core::PlantedBug;
    let mut applier = Applier::new();
    let Applied::Registered { client_id } = applier.apply(&register()) else {
        panic!("register failed");
    };
    let write = record(Some((client_id, 1)), set(b"a", b"1"));
    applier.apply(&write);
    applier
        .machine
        .plant_bug(Some(PlantedBug::SnapshotWithoutSessions));
    let body = body_of(&mut applier.machine, 100);
    let restored = StateMachine::restore(&body).expect("the body restores cleanly");
    assert!(restored.sessions().is_empty(), "the table was left out");
    assert_eq!(restored.store().digest(), applier.machine.store().digest());
    assert_ne!(restored.digest(), applier.machine.digest());
    let mut restored = Applier {
        machine: restored,
        index_next: applier.index_next,
    };
    assert_eq!(restored.apply(&write), Applied::SessionExpired);
}
