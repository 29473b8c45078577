//! Client sessions (dissertation §6.3): each client numbers its commands,
//! and the state machine remembers the last number and reply per client,
//! so a command retried after a timeout or a leader change is applied at
//! most once. The table is replicated state: it changes only by applying
//! log entries, identically on every node.

use super::store::{Fnv1a, Outcome};
use crate::constants::SESSIONS_MAX;
use std::collections::{BTreeMap, BTreeSet};

/// The reply a command got when it was applied, kept for its retries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedReply {
    pub outcome: Outcome,
    /// Where the command was applied (a retry reports the original).
    pub index: u64,
    pub term: u64,
}

#[derive(Clone, Debug)]
struct Session {
    /// Invariant: the highest sequence applied for this client.
    last_sequence: u64,
    reply: Option<CachedReply>,
    /// Log index of the last entry that used this session (for eviction).
    last_active_index: u64,
}

/// One session as a snapshot body carries it (src/kv/snapshot.rs): every
/// field the table needs to answer duplicates and evict as it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct SessionRecord {
    pub(super) client_id: u64,
    pub(super) last_sequence: u64,
    pub(super) reply: Option<CachedReply>,
    pub(super) last_active_index: u64,
}

/// What the table says about a command numbered `sequence`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionCheck {
    /// New: apply it, then `record` the reply.
    Apply,
    /// Applied before: answer with the same reply, apply nothing.
    Duplicate(CachedReply),
    /// Older than the last one applied: the client has moved on already.
    Stale,
    /// Unknown or evicted session: whether an earlier try applied is lost.
    Expired,
}

#[derive(Clone, Debug, Default)]
pub struct Sessions {
    /// By client id, which is the log index of the client's REGISTER entry
    /// (unique and the same on every node).
    table: BTreeMap<u64, Session>,
    /// (last_active_index, client id) of every session: the first is the
    /// one to evict, found without scanning the table.
    /// Invariant: one element per session, matching the table.
    by_activity: BTreeSet<(u64, u64)>,
    /// XOR of `session_hash` over all sessions, kept as the table changes.
    digest: u64,
}

impl Sessions {
    /// Opens the session of a REGISTER entry at `index`. When the table is
    /// full the session idle longest (by log index, so deterministically)
    /// is evicted first.
    pub fn register(&mut self, index: u64) -> u64 {
        if self.table.len() >= SESSIONS_MAX {
            self.evict_idlest();
        }
        let session = Session {
            last_sequence: 0,
            reply: None,
            last_active_index: index,
        };
        self.digest ^= session_hash(index, 0);
        let previous = self.table.insert(index, session);
        assert!(previous.is_none(), "session {index} registered twice");
        self.by_activity.insert((index, index));
        index
    }

    fn evict_idlest(&mut self) {
        let Some((_, id)) = self.by_activity.pop_first() else {
            return;
        };
        if let Some(session) = self.table.remove(&id) {
            self.digest ^= session_hash(id, session.last_sequence);
        }
    }

    fn set_active(&mut self, client_id: u64, index: u64) {
        let Some(session) = self.table.get_mut(&client_id) else {
            return;
        };
        self.by_activity
            .remove(&(session.last_active_index, client_id));
        session.last_active_index = index;
        self.by_activity.insert((index, client_id));
    }

    pub fn check(&self, client_id: u64, sequence: u64) -> SessionCheck {
        let Some(session) = self.table.get(&client_id) else {
            return SessionCheck::Expired;
        };
        if sequence > session.last_sequence {
            return SessionCheck::Apply;
        }
        match (&session.reply, sequence == session.last_sequence) {
            (Some(reply), true) => SessionCheck::Duplicate(reply.clone()),
            _ => SessionCheck::Stale,
        }
    }

    /// Records the reply of a command `check` allowed to apply.
    pub fn record(&mut self, client_id: u64, sequence: u64, reply: CachedReply) {
        let Some(session) = self.table.get_mut(&client_id) else {
            panic!("recording for unknown session {client_id}");
        };
        assert!(sequence > session.last_sequence, "sequence going backwards");
        self.digest ^= session_hash(client_id, session.last_sequence);
        self.digest ^= session_hash(client_id, sequence);
        session.last_sequence = sequence;
        let index = reply.index;
        session.reply = Some(reply);
        self.set_active(client_id, index);
    }

    /// Marks the session used by the entry at `index` (a duplicate too).
    pub fn touch(&mut self, client_id: u64, index: u64) {
        self.set_active(client_id, index);
    }

    /// Every session, by client id, for a snapshot.
    pub(super) fn records(&self) -> Vec<SessionRecord> {
        let record = |(&client_id, session): (&u64, &Session)| SessionRecord {
            client_id,
            last_sequence: session.last_sequence,
            reply: session.reply.clone(),
            last_active_index: session.last_active_index,
        };
        self.table.iter().map(record).collect()
    }

    /// Adds a session a restore read and checked (new id, room left).
    pub(super) fn insert_restored(&mut self, record: SessionRecord) {
        assert!(self.table.len() < SESSIONS_MAX, "restore checks the bound");
        let SessionRecord {
            client_id,
            last_sequence,
            reply,
            last_active_index,
        } = record;
        let session = Session {
            last_sequence,
            reply,
            last_active_index,
        };
        let previous = self.table.insert(client_id, session);
        assert!(previous.is_none(), "restore checks the order of sessions");
        self.by_activity.insert((last_active_index, client_id));
        self.digest ^= session_hash(client_id, last_sequence);
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn digest(&self) -> u64 {
        self.digest
    }
}

fn session_hash(client_id: u64, sequence: u64) -> u64 {
    let mut hash = Fnv1a::new();
    hash.write(b"session");
    hash.write(&client_id.to_be_bytes());
    hash.write(&sequence.to_be_bytes());
    hash.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(index: u64) -> CachedReply {
        CachedReply {
            outcome: Outcome::Ok,
            index,
            term: 1,
        }
    }

    #[test]
    fn a_retried_command_is_a_duplicate_with_the_original_reply() {
        let mut sessions = Sessions::default();
        let id = sessions.register(5);
        assert_eq!(sessions.check(id, 1), SessionCheck::Apply);
        sessions.record(id, 1, reply(7));
        assert_eq!(sessions.check(id, 1), SessionCheck::Duplicate(reply(7)));
        assert_eq!(sessions.check(id, 2), SessionCheck::Apply);
        sessions.record(id, 2, reply(9));
        assert_eq!(sessions.check(id, 1), SessionCheck::Stale);
        assert_eq!(sessions.check(99, 1), SessionCheck::Expired);
    }

    #[test]
    fn the_table_is_bounded_and_evicts_the_idlest() {
        let mut sessions = Sessions::default();
        for index in 1..=SESSIONS_MAX as u64 {
            sessions.register(index);
        }
        sessions.touch(1, SESSIONS_MAX as u64 + 1);
        sessions.register(SESSIONS_MAX as u64 + 2);
        assert_eq!(sessions.len(), SESSIONS_MAX);
        assert_eq!(sessions.check(2, 1), SessionCheck::Expired, "2 was idlest");
        assert_eq!(sessions.check(1, 1), SessionCheck::Apply, "1 was touched");
        assert_eq!(sessions.by_activity.len(), sessions.table.len());
    }

    #[test]
    fn digest_follows_the_table() {
        let mut a = Sessions::default();
        let mut b = Sessions::default();
        a.register(1);
        a.register(2);
        b.register(2);
        b.register(1);
        assert_eq!(a.digest(), b.digest());
        a.record(1, 1, reply(3));
        assert_ne!(a.digest(), b.digest());
        b.record(1, 1, reply(3));
        assert_eq!(a.digest(), b.digest());
    }
}
