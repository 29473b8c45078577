//! The reference model of the replicated state machine, written apart from
//! `kv::StateMachine`: a plain ordered map and a session table that say
//! which reply each committed entry must produce, and what a key held at
//! any index (for reads, which do not go through the log). A new command
//! means one arm in `apply_command`.

use raftlite::constants::SESSIONS_MAX;
use raftlite::core::{Entry, EntryKind, LogIndex};
use raftlite::kv::{Command, LogRecord};
use raftlite::reply::Reply;
use std::collections::BTreeMap;

/// The values one key took, in log order, with the index that set each
/// (None: deleted).
type KeyHistory = Vec<(LogIndex, Option<Vec<u8>>)>;

struct Session {
    last_sequence: u64,
    /// The reply of the command numbered `last_sequence`, for its retries.
    reply: Option<Reply>,
}

#[derive(Default)]
pub struct Model {
    map: BTreeMap<Vec<u8>, Vec<u8>>,
    changes: BTreeMap<Vec<u8>, KeyHistory>,
    /// By client id: the index of the session's REGISTER entry.
    sessions: BTreeMap<u64, Session>,
    /// The (session, sequence) the last entry applied for the first time.
    fresh: Option<(u64, u64)>,
}

impl Model {
    /// Applies the next committed entry; returns the reply the client
    /// whose proposal it is must get, or None for a no-op.
    pub fn apply(&mut self, entry: &Entry) -> Option<Reply> {
        self.fresh = None;
        if entry.kind != EntryKind::Command {
            return None;
        }
        let record = match LogRecord::decode(&entry.data) {
            Ok(record) => record,
            Err(error) => {
                let reason = format!("undecodable command: {error}");
                return Some(Reply::BadRequest(reason.into()));
            }
        };
        let reply = match record {
            LogRecord::Register => self.register(entry.index),
            LogRecord::Command {
                session: None,
                command,
            } => self.apply_command(entry, &command),
            LogRecord::Command {
                session: Some((client_id, sequence)),
                command,
            } => self.apply_in_session(entry, client_id, sequence, &command),
        };
        Some(reply)
    }

    /// The (session, sequence) of the last entry applied, if it was a
    /// numbered command applied for the first time (not a retry's
    /// duplicate, not refused).
    pub fn fresh(&self) -> Option<(u64, u64)> {
        self.fresh
    }

    /// What `key` held once every entry up to `index` was applied.
    pub fn value_at(&self, key: &[u8], index: LogIndex) -> Option<&[u8]> {
        let changes = self.changes.get(key)?;
        let applied = changes.partition_point(|(changed_at, _)| *changed_at <= index);
        let (_, value) = applied.checked_sub(1).map(|last| &changes[last])?;
        value.as_deref()
    }

    fn register(&mut self, index: LogIndex) -> Reply {
        // The workload opens a handful of sessions, far from the table's
        // limit, so the model never needs to evict.
        assert!(self.sessions.len() < SESSIONS_MAX, "too many sessions");
        let session = Session {
            last_sequence: 0,
            reply: None,
        };
        self.sessions.insert(index.0, session);
        Reply::Session { id: index.0 }
    }

    /// Dissertation §6.3: a command numbered within a session applies once;
    /// its retries get the first reply.
    fn apply_in_session(
        &mut self,
        entry: &Entry,
        client_id: u64,
        sequence: u64,
        command: &Command,
    ) -> Reply {
        let stale = || Reply::BadRequest("stale sequence number".into());
        let Some(session) = self.sessions.get(&client_id) else {
            return Reply::SessionExpired;
        };
        if sequence < session.last_sequence {
            return stale();
        }
        if sequence == session.last_sequence {
            return session.reply.clone().unwrap_or_else(stale);
        }
        let reply = self.apply_command(entry, command);
        self.fresh = Some((client_id, sequence));
        let session = self.sessions.get_mut(&client_id).expect("looked up above");
        session.last_sequence = sequence;
        session.reply = Some(reply.clone());
        reply
    }

    fn apply_command(&mut self, entry: &Entry, command: &Command) -> Reply {
        let ok = Reply::Ok {
            index: entry.index,
            term: entry.term,
        };
        match command {
            Command::Set { key, value } => {
                self.set(entry.index, key, Some(value.clone()));
                ok
            }
            Command::Del { key } => {
                self.set(entry.index, key, None);
                ok
            }
            Command::Get { key } => read_reply(self.map.get(key).map(Vec::as_slice)),
            Command::Cas { key, expected, new } => {
                let current = self.map.get(key);
                if current != expected.as_ref() {
                    let current = current.cloned();
                    return Reply::Mismatch { current };
                }
                self.set(entry.index, key, Some(new.clone()));
                ok
            }
        }
    }

    fn set(&mut self, index: LogIndex, key: &[u8], value: Option<Vec<u8>>) {
        match &value {
            Some(value) => self.map.insert(key.to_vec(), value.clone()),
            None => self.map.remove(key),
        };
        let changes = self.changes.entry(key.to_vec()).or_default();
        changes.push((index, value));
    }
}

/// The reply to a linearizable read that found `value`.
pub fn read_reply(value: Option<&[u8]>) -> Reply {
    match value {
        Some(value) => Reply::Value(value.to_vec()),
        None => Reply::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftlite::core::Term;
    use raftlite::kv::parse_request;

    fn entry(index: u64, record: &LogRecord) -> Entry {
        let mut data = Vec::new();
        record.encode(&mut data);
        Entry::command(index, 1, &data)
    }

    fn command(line: &str, session: Option<(u64, u64)>) -> LogRecord {
        let command = parse_request(line)
            .ok()
            .and_then(|request| request.into_command())
            .expect("a log command");
        LogRecord::Command { session, command }
    }

    #[test]
    fn sessions_apply_once_and_reads_see_any_index() {
        let mut model = Model::default();
        let register = model.apply(&entry(1, &LogRecord::Register));
        assert_eq!(register, Some(Reply::Session { id: 1 }));
        let set = command("SET k a", Some((1, 1)));
        let ok = Reply::Ok {
            index: LogIndex(2),
            term: Term(1),
        };
        assert_eq!(model.apply(&entry(2, &set)), Some(ok.clone()));
        assert_eq!(
            model.apply(&entry(3, &set)),
            Some(ok),
            "a retry gets the first reply"
        );
        let del = command("DEL k", None);
        model.apply(&entry(4, &del));
        assert_eq!(model.value_at(b"k", LogIndex(1)), None);
        assert_eq!(model.value_at(b"k", LogIndex(3)), Some(&b"a"[..]));
        assert_eq!(model.value_at(b"k", LogIndex(4)), None);
        let expired = command("SET k b", Some((9, 1)));
        assert_eq!(
            model.apply(&entry(5, &expired)),
            Some(Reply::SessionExpired)
        );
    }

    /// Absence is not a value, and values that look like it are values.
    #[test]
    fn replies_tell_absence_from_values_that_look_like_it() {
        let mut model = Model::default();
        let apply = |model: &mut Model, index: u64, request: &str| {
            model.apply(&entry(index, &command(request, None)))
        };
        let mismatch = |current: Option<&[u8]>| {
            Some(Reply::Mismatch {
                current: current.map(<[u8]>::to_vec),
            })
        };
        assert_eq!(apply(&mut model, 1, "CAS k x y"), mismatch(None));
        apply(&mut model, 2, "SET k NOT_FOUND");
        let reply = apply(&mut model, 3, "CAS k - y");
        assert_eq!(reply, mismatch(Some(b"NOT_FOUND")));
        apply(&mut model, 4, r#"SET "a b" -"#);
        let reply = apply(&mut model, 5, r#"GET "a b""#);
        assert_eq!(reply, Some(Reply::Value(b"-".to_vec())));
        apply(&mut model, 6, r#"SET k """#);
        assert_eq!(apply(&mut model, 7, "CAS k - y"), mismatch(Some(b"")));
        assert_eq!(apply(&mut model, 8, "GET gone"), Some(Reply::NotFound));
    }
}
