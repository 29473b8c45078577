//! The state machine's snapshot body: the bytes between the snapshot file's
//! header and trailer (docs/STORAGE.md, "Snapshot body (the state
//! machine)"). Produced a bounded chunk at a time from a frozen copy of the
//! store, so a loop turn never copies a large store at once, and restored
//! from chunks split at any byte, so a follower rebuilds across loop turns.
//!
//! All integers are big-endian. The body is
//!
//! ```text
//! version  u8 = 1
//! session* tag 1 | client_id u64 | last_sequence u64 | last_active_index u64
//!          | has_reply u8 (0, 1) | [index u64 | term u64 | outcome]
//! pair*    tag 2 | key_size u32 | key | value_size u32 | value
//! footer   tag 3 | key_count u64 | session_count u64 | digest u64 | crc32 u32
//!
//! outcome  kind u8: 0 Ok | 1 Value, then size u32 | bytes | 2 NotFound
//!          | 3 Mismatch (absent) | 4 Mismatch (present), then size u32 | bytes
//! ```
//!
//! Sessions come first, by increasing client id (at most SESSIONS_MAX),
//! then the pairs by strictly increasing key (1..=KEY_SIZE_MAX bytes, values
//! up to VALUE_SIZE_MAX). The footer's digest is `StateMachine::digest`
//! of the state the body holds, and its CRC-32 covers every body byte
//! before it; restore checks both, and the counts, and refuses any byte
//! after the footer. The CRC makes the body check itself wherever it
//! travels: the session digest does not cover cached replies.

use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use crate::constants::{KEY_SIZE_MAX, SESSIONS_MAX, VALUE_SIZE_MAX};

use super::key::Key;
use super::machine::StateMachine;
use super::session::{CachedReply, SessionRecord, Sessions};
use super::store::{pair_hash, Outcome, Pairs, Store};

/// The body format this code writes and the only one it reads.
pub const SNAPSHOT_VERSION: u8 = 1;

const TAG_SESSION: u8 = 1;
const TAG_PAIR: u8 = 2;
const TAG_FOOTER: u8 = 3;

const OUTCOME_OK: u8 = 0;
const OUTCOME_VALUE: u8 = 1;
const OUTCOME_NOT_FOUND: u8 = 2;
const OUTCOME_MISMATCH_ABSENT: u8 = 3;
const OUTCOME_MISMATCH_PRESENT: u8 = 4;

const SESSION_RECORD_SIZE_MAX: usize = 1 + 3 * 8 + 1 + 2 * 8 + 1 + 4 + VALUE_SIZE_MAX;
const PAIR_RECORD_SIZE_MAX: usize = 1 + 4 + KEY_SIZE_MAX + 4 + VALUE_SIZE_MAX;
const FOOTER_SIZE: usize = 1 + 3 * 8 + 4;

/// The largest record of a body: a chunk exceeds the size asked for by at
/// most this, and a restore buffers less than this between feeds.
pub const SNAPSHOT_RECORD_SIZE_MAX: usize = if SESSION_RECORD_SIZE_MAX > PAIR_RECORD_SIZE_MAX {
    SESSION_RECORD_SIZE_MAX
} else {
    PAIR_RECORD_SIZE_MAX
};

const _: () = assert!(FOOTER_SIZE <= SNAPSHOT_RECORD_SIZE_MAX);
const _: () = assert!(VALUE_SIZE_MAX <= u32::MAX as usize);

/// A body that cannot be restored: where, and why, in one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotError {
    /// Byte offset in the body of the field found wrong.
    pub offset: u64,
    pub problem: String,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "snapshot body byte {}: {}",
            self.offset, self.problem
        )
    }
}

impl std::error::Error for SnapshotError {}

impl StateMachine {
    /// Starts a snapshot of the state as it is now. O(1) in the number of
    /// keys (the store's base is shared, not copied) plus a copy of the
    /// session table (at most SESSIONS_MAX). The machine goes on applying
    /// while the cursor walks; its writes wait in the store's delta until
    /// the cursor is dropped. One snapshot at a time: it panics while
    /// another cursor lives (`is_snapshot_held`). A delta left by the
    /// previous snapshot and not yet drained is folded in first.
    pub fn begin_snapshot(&mut self) -> SnapshotCursor {
        let pairs = self.store.freeze();
        let (sessions, sessions_digest) = if self.planted_snapshot_without_sessions() {
            // The planted bug: the table is written as empty, and the
            // footer agrees, so the body restores cleanly without it.
            (Vec::new(), 0)
        } else {
            (self.sessions.records(), self.sessions.digest())
        };
        SnapshotCursor {
            key_count: pairs.len() as u64,
            session_count: sessions.len() as u64,
            digest: self.store.digest() ^ sessions_digest,
            pairs,
            sessions,
            stage: Stage::Version,
            crc: crc32fast::Hasher::new(),
            size_written: 0,
        }
    }

    /// True while a snapshot cursor holds the store's base.
    pub fn is_snapshot_held(&self) -> bool {
        self.store.is_frozen()
    }

    /// Why `begin_snapshot` would not be O(1) now, if it would not: a
    /// cursor still lives (it would panic), or the previous snapshot's
    /// writes have not all folded back (it would fold them first, about
    /// 1 µs each: a 1M-entry delta is a one-second stall). The runtime
    /// postpones a snapshot, or answers SNAPSHOT with UNAVAILABLE and this
    /// reason, until it is None.
    pub fn snapshot_blocked(&self) -> Option<&'static str> {
        if self.store.is_frozen() {
            Some("a snapshot is being written")
        } else if self.store.delta_len() > 0 {
            Some("the previous snapshot's writes are still being folded")
        } else {
            None
        }
    }

    /// Folds up to `entries_max` delta entries back into the store's base
    /// (none while a cursor holds it) and returns how many are left.
    /// Applies fold as they go; this drains the delta on idle loop turns,
    /// so an idle node does not keep one.
    pub fn fold_delta(&mut self, entries_max: usize) -> usize {
        self.store.fold(entries_max);
        self.store.delta_len()
    }

    /// Rebuilds a machine from a whole body.
    pub fn restore(body: &[u8]) -> Result<StateMachine, SnapshotError> {
        let mut restorer = Restorer::new();
        restorer.feed(body)?;
        restorer.finish()
    }
}

/// Where a cursor is in the body.
#[derive(Debug)]
enum Stage {
    Version,
    /// The index of the next session to write.
    Sessions(usize),
    /// The last key written (none yet: start at the first).
    Pairs(Option<Vec<u8>>),
    Footer,
    Done,
}

/// Produces one snapshot body a chunk at a time. Owns what it reads (a
/// shared, frozen store base and a copy of the session table), so it lives
/// across loop turns while the machine applies; dropping it abandons the
/// snapshot and releases the base.
pub struct SnapshotCursor {
    pairs: Arc<Pairs>,
    sessions: Vec<SessionRecord>,
    stage: Stage,
    key_count: u64,
    session_count: u64,
    digest: u64,
    /// Over every byte written so far (the footer's CRC).
    crc: crc32fast::Hasher,
    size_written: u64,
}

impl SnapshotCursor {
    /// Appends the next records to `out`, at most `size_max` bytes except
    /// that each call writes at least one record (up to
    /// SNAPSHOT_RECORD_SIZE_MAX). True once the body is complete (the
    /// footer is written; later calls append nothing).
    pub fn next_chunk(&mut self, out: &mut Vec<u8>, size_max: usize) -> bool {
        let start = out.len();
        loop {
            let room = Room { start, size_max };
            let full = match &mut self.stage {
                Stage::Version => {
                    out.push(SNAPSHOT_VERSION);
                    self.stage = Stage::Sessions(0);
                    false
                }
                Stage::Sessions(next) => {
                    let full = write_sessions(&self.sessions, next, out, room);
                    if *next == self.sessions.len() {
                        self.stage = Stage::Pairs(None);
                    }
                    full
                }
                Stage::Pairs(last_key) => {
                    let (full, done) = write_pairs(&self.pairs, last_key, out, room);
                    if done {
                        self.stage = Stage::Footer;
                    }
                    full
                }
                Stage::Footer => {
                    if out.len() > start && room.is_exceeded_by(out.len() + FOOTER_SIZE) {
                        true
                    } else {
                        self.crc.update(&out[start..]);
                        self.write_footer(out, start);
                        return true;
                    }
                }
                Stage::Done => return true,
            };
            if full {
                break;
            }
        }
        self.crc.update(&out[start..]);
        self.size_written += (out.len() - start) as u64;
        false
    }

    fn write_footer(&mut self, out: &mut Vec<u8>, start: usize) {
        let footer_start = out.len();
        out.push(TAG_FOOTER);
        out.extend_from_slice(&self.key_count.to_be_bytes());
        out.extend_from_slice(&self.session_count.to_be_bytes());
        out.extend_from_slice(&self.digest.to_be_bytes());
        self.crc.update(&out[footer_start..]);
        let crc = self.crc.clone().finalize();
        out.extend_from_slice(&crc.to_be_bytes());
        self.size_written += (out.len() - start) as u64;
        self.stage = Stage::Done;
    }

    /// The number of keys the body holds.
    pub fn key_count(&self) -> u64 {
        self.key_count
    }

    /// The `StateMachine::digest` of the state the body holds.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Body bytes produced so far (the whole size once complete).
    pub fn size_written(&self) -> u64 {
        self.size_written
    }

    pub fn is_done(&self) -> bool {
        matches!(self.stage, Stage::Done)
    }
}

/// Counts, not contents: a cursor can hold millions of pairs.
impl fmt::Debug for SnapshotCursor {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SnapshotCursor")
            .field("key_count", &self.key_count)
            .field("session_count", &self.session_count)
            .field("stage", &self.stage)
            .field("size_written", &self.size_written)
            .finish_non_exhaustive()
    }
}

/// The budget of one `next_chunk` call.
#[derive(Clone, Copy)]
struct Room {
    start: usize,
    size_max: usize,
}

impl Room {
    /// Whether a chunk ending at `end` would be too large. Callers let the
    /// first record of a call through anyway, so every call makes progress.
    fn is_exceeded_by(self, end: usize) -> bool {
        end - self.start > self.size_max
    }
}

/// Writes sessions from `*next` on while they fit; true when the chunk is
/// full.
fn write_sessions(
    sessions: &[SessionRecord],
    next: &mut usize,
    out: &mut Vec<u8>,
    room: Room,
) -> bool {
    while let Some(session) = sessions.get(*next) {
        let record_start = out.len();
        encode_session(session, out);
        if record_start > room.start && room.is_exceeded_by(out.len()) {
            out.truncate(record_start);
            return true;
        }
        *next += 1;
    }
    false
}

/// Writes the pairs after `last_key` while they fit. Returns (chunk full,
/// no pairs left).
fn write_pairs(
    pairs: &Pairs,
    last_key: &mut Option<Vec<u8>>,
    out: &mut Vec<u8>,
    room: Room,
) -> (bool, bool) {
    let lower = match last_key.as_deref() {
        Some(key) => Bound::Excluded(key),
        None => Bound::Unbounded,
    };
    let mut written = None;
    let mut full = false;
    for (key, value) in pairs.range::<[u8], _>((lower, Bound::Unbounded)) {
        let record_start = out.len();
        encode_pair(key.as_bytes(), value, out);
        if record_start > room.start && room.is_exceeded_by(out.len()) {
            out.truncate(record_start);
            full = true;
            break;
        }
        written = Some(key);
    }
    if let Some(key) = written {
        *last_key = Some(key.as_bytes().to_vec());
    }
    (full, !full)
}

fn encode_session(session: &SessionRecord, out: &mut Vec<u8>) {
    out.push(TAG_SESSION);
    out.extend_from_slice(&session.client_id.to_be_bytes());
    out.extend_from_slice(&session.last_sequence.to_be_bytes());
    out.extend_from_slice(&session.last_active_index.to_be_bytes());
    let Some(reply) = &session.reply else {
        out.push(0);
        return;
    };
    out.push(1);
    out.extend_from_slice(&reply.index.to_be_bytes());
    out.extend_from_slice(&reply.term.to_be_bytes());
    match &reply.outcome {
        Outcome::Ok => out.push(OUTCOME_OK),
        Outcome::Value(value) => {
            out.push(OUTCOME_VALUE);
            encode_bytes(value, out);
        }
        Outcome::NotFound => out.push(OUTCOME_NOT_FOUND),
        Outcome::Mismatch { current: None } => out.push(OUTCOME_MISMATCH_ABSENT),
        Outcome::Mismatch {
            current: Some(value),
        } => {
            out.push(OUTCOME_MISMATCH_PRESENT);
            encode_bytes(value, out);
        }
    }
}

fn encode_pair(key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.push(TAG_PAIR);
    encode_bytes(key, out);
    encode_bytes(value, out);
}

fn encode_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    // The store and the sessions hold nothing above VALUE_SIZE_MAX.
    let size = u32::try_from(bytes.len()).expect("sizes bounded by VALUE_SIZE_MAX");
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Rebuilds a state machine from a body fed in pieces split anywhere.
/// Each `feed` does work in proportion to the bytes fed (plus at most one
/// record carried over), so a follower restores across loop turns.
#[derive(Default)]
pub struct Restorer {
    /// The start of a record split across feeds (less than one record).
    pending: Vec<u8>,
    /// Body offset of the first byte not yet consumed (`pending` starts here).
    offset: u64,
    stage: RestoreStage,
    pairs: Pairs,
    store_digest: u64,
    sessions: Sessions,
    last_client_id: Option<u64>,
    crc: crc32fast::Hasher,
    /// The first error: a failed restorer refuses everything after it.
    failed: Option<SnapshotError>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum RestoreStage {
    #[default]
    Version,
    Records,
    Done,
}

impl fmt::Debug for Restorer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Restorer")
            .field("size_fed", &self.size_fed())
            .field("stage", &self.stage)
            .field("key_count", &self.pairs.len())
            .field("session_count", &self.sessions.len())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

/// What one record parse got to.
enum Step {
    /// A record of this many bytes was read and accepted.
    Consumed(usize),
    /// The record needs at least this many bytes (from its start).
    Short(usize),
}

impl Restorer {
    pub fn new() -> Restorer {
        Restorer::default()
    }

    /// The next piece of the body.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.feed_checked(bytes);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }

    /// The machine, once the whole body (up to its footer) was fed.
    pub fn finish(self) -> Result<StateMachine, SnapshotError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        if self.stage != RestoreStage::Done {
            let problem = if self.pending.is_empty() {
                "truncated: the body ends before its footer".to_string()
            } else {
                format!(
                    "truncated inside a record ({} bytes of it)",
                    self.pending.len()
                )
            };
            return Err(SnapshotError {
                offset: self.offset + self.pending.len() as u64,
                problem,
            });
        }
        assert!(self.pending.is_empty());
        let store = Store::from_restored(self.pairs, self.store_digest);
        Ok(StateMachine::from_restored(store, self.sessions))
    }

    /// Body bytes fed so far.
    pub fn size_fed(&self) -> u64 {
        self.offset + self.pending.len() as u64
    }

    fn feed_checked(&mut self, mut bytes: &[u8]) -> Result<(), SnapshotError> {
        // A record split across feeds is completed first, a field at a
        // time as its sizes become known, so `pending` stays below one
        // record.
        while !self.pending.is_empty() {
            let mut pending = std::mem::take(&mut self.pending);
            match self.step(&pending)? {
                Step::Consumed(size) => pending.drain(..size).for_each(drop),
                Step::Short(_) if bytes.is_empty() => {
                    self.pending = pending;
                    return Ok(());
                }
                Step::Short(size_needed) => {
                    let take = (size_needed - pending.len()).min(bytes.len());
                    pending.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                }
            }
            self.pending = pending;
        }
        let mut position = 0;
        while position < bytes.len() {
            match self.step(&bytes[position..])? {
                Step::Consumed(size) => position += size,
                Step::Short(_) => break,
            }
        }
        self.pending.extend_from_slice(&bytes[position..]);
        debug_assert!(self.pending.len() < SNAPSHOT_RECORD_SIZE_MAX);
        Ok(())
    }

    /// Reads and accepts the record at the start of `input`.
    fn step(&mut self, input: &[u8]) -> Result<Step, SnapshotError> {
        let mut reader = Reader { input, position: 0 };
        let parsed = match self.stage {
            RestoreStage::Version => reader.u8().map(Record::Version),
            RestoreStage::Records => parse_record(&mut reader),
            RestoreStage::Done => Err(reader.invalid("bytes after the footer".to_string())),
        };
        match parsed {
            Ok(record) => {
                let size = reader.position;
                self.accept(record, &input[..size])?;
                self.offset += size as u64;
                Ok(Step::Consumed(size))
            }
            Err(Failure::Short { size_needed }) => Ok(Step::Short(size_needed)),
            Err(Failure::Invalid { position, problem }) => Err(self.error_at(position, problem)),
        }
    }

    fn error_at(&self, position: usize, problem: String) -> SnapshotError {
        SnapshotError {
            offset: self.offset + position as u64,
            problem,
        }
    }

    /// Checks a parsed record against what came before and adds it.
    fn accept(&mut self, record: Record, bytes: &[u8]) -> Result<(), SnapshotError> {
        match record {
            Record::Version(SNAPSHOT_VERSION) => self.stage = RestoreStage::Records,
            Record::Version(version) => {
                let problem =
                    format!("unknown body version {version} (expected {SNAPSHOT_VERSION})");
                return Err(self.error_at(0, problem));
            }
            Record::Session(session) => self.accept_session(session)?,
            Record::Pair { key, value } => self.accept_pair(key, value)?,
            Record::Footer(footer) => {
                let (covered, _) = bytes.split_at(bytes.len() - 4);
                self.crc.update(covered);
                return self.accept_footer(footer);
            }
        }
        self.crc.update(bytes);
        Ok(())
    }

    fn accept_session(&mut self, session: SessionRecord) -> Result<(), SnapshotError> {
        if !self.pairs.is_empty() {
            return Err(self.error_at(0, "a session after the first key".to_string()));
        }
        if self.sessions.len() >= SESSIONS_MAX {
            return Err(self.error_at(0, format!("more than {SESSIONS_MAX} sessions")));
        }
        let client_id = session.client_id;
        if self.last_client_id.is_some_and(|last| client_id <= last) {
            return Err(self.error_at(1, format!("session {client_id} out of order")));
        }
        if let Some(problem) = session_impossible(&session) {
            return Err(self.error_at(1, format!("session {client_id}: {problem}")));
        }
        self.last_client_id = Some(client_id);
        self.sessions.insert_restored(session);
        Ok(())
    }

    fn accept_pair(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), SnapshotError> {
        if let Some((last, _)) = self.pairs.last_key_value() {
            if key.as_slice() <= last.as_bytes() {
                return Err(self.error_at(1, "keys out of order".to_string()));
            }
        }
        self.store_digest ^= pair_hash(&key, &value);
        self.pairs.insert(Key::new(&key), value);
        Ok(())
    }

    fn accept_footer(&mut self, footer: Footer) -> Result<(), SnapshotError> {
        let key_count = self.pairs.len() as u64;
        if footer.key_count != key_count {
            let problem = format!(
                "footer says {} keys, body has {key_count}",
                footer.key_count
            );
            return Err(self.error_at(1, problem));
        }
        let session_count = self.sessions.len() as u64;
        if footer.session_count != session_count {
            let problem = format!(
                "footer says {} sessions, body has {session_count}",
                footer.session_count
            );
            return Err(self.error_at(9, problem));
        }
        let digest = self.store_digest ^ self.sessions.digest();
        if footer.digest != digest {
            let problem = format!(
                "digest mismatch: footer {:016x}, body {digest:016x}",
                footer.digest
            );
            return Err(self.error_at(17, problem));
        }
        let crc = self.crc.clone().finalize();
        if footer.crc != crc {
            let problem = format!("CRC mismatch: footer {:08x}, body {crc:08x}", footer.crc);
            return Err(self.error_at(25, problem));
        }
        self.stage = RestoreStage::Done;
        Ok(())
    }
}

/// A session field combination the table never holds, if any: a reply
/// exactly when a command was recorded, at or after registering, and the
/// last activity at or after both.
fn session_impossible(session: &SessionRecord) -> Option<&'static str> {
    if session.reply.is_some() != (session.last_sequence > 0) {
        return Some("a reply without a sequence, or a sequence without a reply");
    }
    if session.last_active_index < session.client_id {
        return Some("active before it was registered");
    }
    match &session.reply {
        Some(reply) if reply.index > session.last_active_index => {
            Some("its reply is newer than its last activity")
        }
        Some(reply) if reply.index <= session.client_id => {
            Some("its reply is older than its registration")
        }
        _ => None,
    }
}

enum Record {
    Version(u8),
    Session(SessionRecord),
    Pair { key: Vec<u8>, value: Vec<u8> },
    Footer(Footer),
}

struct Footer {
    key_count: u64,
    session_count: u64,
    digest: u64,
    crc: u32,
}

enum Failure {
    /// Not enough bytes yet: the record needs at least this many.
    Short { size_needed: usize },
    /// Wrong bytes, at this position in the record.
    Invalid { position: usize, problem: String },
}

/// Reads fields from the start of one record.
struct Reader<'a> {
    input: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, size: usize) -> Result<&'a [u8], Failure> {
        let end = self.position + size;
        let Some(bytes) = self.input.get(self.position..end) else {
            return Err(Failure::Short { size_needed: end });
        };
        self.position = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, Failure> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, Failure> {
        let mut word = [0u8; 4];
        word.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(word))
    }

    fn u64(&mut self) -> Result<u64, Failure> {
        let mut word = [0u8; 8];
        word.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(word))
    }

    /// A size-prefixed byte string of `size_min..=size_max` bytes; the size
    /// is checked before its bytes are waited for.
    fn bytes(&mut self, what: &str, size_min: usize, size_max: usize) -> Result<Vec<u8>, Failure> {
        let size_position = self.position;
        let size = self.u32()? as usize;
        if size < size_min || size > size_max {
            let problem = format!("{what} of {size} bytes (allowed {size_min}..={size_max})");
            return Err(Failure::Invalid {
                position: size_position,
                problem,
            });
        }
        Ok(self.take(size)?.to_vec())
    }

    /// An error about the field that starts at the current position.
    fn invalid(&self, problem: String) -> Failure {
        Failure::Invalid {
            position: self.position,
            problem,
        }
    }
}

fn parse_record(reader: &mut Reader) -> Result<Record, Failure> {
    match reader.u8()? {
        TAG_SESSION => Ok(Record::Session(parse_session(reader)?)),
        TAG_PAIR => Ok(Record::Pair {
            key: reader.bytes("key", 1, KEY_SIZE_MAX)?,
            value: reader.bytes("value", 0, VALUE_SIZE_MAX)?,
        }),
        TAG_FOOTER => Ok(Record::Footer(Footer {
            key_count: reader.u64()?,
            session_count: reader.u64()?,
            digest: reader.u64()?,
            crc: reader.u32()?,
        })),
        tag => Err(Failure::Invalid {
            position: 0,
            problem: format!("unknown record tag {tag}"),
        }),
    }
}

fn parse_session(reader: &mut Reader) -> Result<SessionRecord, Failure> {
    let client_id = reader.u64()?;
    let last_sequence = reader.u64()?;
    let last_active_index = reader.u64()?;
    let flag_position = reader.position;
    let reply = match reader.u8()? {
        0 => None,
        1 => Some(CachedReply {
            index: reader.u64()?,
            term: reader.u64()?,
            outcome: parse_outcome(reader)?,
        }),
        flag => {
            return Err(Failure::Invalid {
                position: flag_position,
                problem: format!("reply flag {flag} (expected 0 or 1)"),
            })
        }
    };
    Ok(SessionRecord {
        client_id,
        last_sequence,
        reply,
        last_active_index,
    })
}

fn parse_outcome(reader: &mut Reader) -> Result<Outcome, Failure> {
    let kind_position = reader.position;
    match reader.u8()? {
        OUTCOME_OK => Ok(Outcome::Ok),
        OUTCOME_VALUE => Ok(Outcome::Value(reader.bytes("value", 0, VALUE_SIZE_MAX)?)),
        OUTCOME_NOT_FOUND => Ok(Outcome::NotFound),
        OUTCOME_MISMATCH_ABSENT => Ok(Outcome::Mismatch { current: None }),
        OUTCOME_MISMATCH_PRESENT => Ok(Outcome::Mismatch {
            current: Some(reader.bytes("value", 0, VALUE_SIZE_MAX)?),
        }),
        kind => Err(Failure::Invalid {
            position: kind_position,
            problem: format!("unknown outcome kind {kind}"),
        }),
    }
}
