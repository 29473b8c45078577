//! The replicated state machine: the key-value store plus the client
//! session table, and the record format a log entry carries.

use super::command::{Command, DecodeError};
use super::session::{CachedReply, SessionCheck, Sessions};
use super::store::Store;
#[cfg(feature = "planted-bugs")]
use crate::core::PlantedBug;

const TAG_COMMAND: u8 = 1;
const TAG_SESSION_COMMAND: u8 = 2;
const TAG_REGISTER: u8 = 3;

/// What a command entry carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogRecord {
    /// A command, numbered within a client session if it has one.
    Command {
        session: Option<(u64, u64)>,
        command: Command,
    },
    /// Opens a session whose id is this entry's index.
    Register,
}

/// What applying one entry produced for the client waiting on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The command's reply (for a duplicate, the original one).
    Reply(CachedReply),
    Registered {
        client_id: u64,
    },
    /// The session is unknown: an earlier try of this command may or may not
    /// have been applied, so nothing is applied now.
    SessionExpired,
    /// A sequence number older than the session's last: not applied.
    StaleSequence,
    /// Bytes no node can decode; every node skips them alike.
    Undecodable(DecodeError),
}

impl LogRecord {
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            LogRecord::Register => out.push(TAG_REGISTER),
            LogRecord::Command {
                session: None,
                command,
            } => {
                out.push(TAG_COMMAND);
                command.encode(out);
            }
            LogRecord::Command {
                session: Some((client_id, sequence)),
                command,
            } => {
                out.push(TAG_SESSION_COMMAND);
                out.extend_from_slice(&client_id.to_be_bytes());
                out.extend_from_slice(&sequence.to_be_bytes());
                command.encode(out);
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<LogRecord, DecodeError> {
        let Some((&tag, rest)) = bytes.split_first() else {
            return Err(DecodeError::Truncated {
                field: "record tag",
                size_needed: 1,
                size_available: 0,
            });
        };
        match tag {
            TAG_REGISTER if rest.is_empty() => Ok(LogRecord::Register),
            TAG_REGISTER => Err(DecodeError::TrailingBytes { count: rest.len() }),
            TAG_COMMAND => Ok(LogRecord::Command {
                session: None,
                command: Command::decode(rest)?,
            }),
            TAG_SESSION_COMMAND => decode_session_command(rest),
            op => Err(DecodeError::UnknownOp { op }),
        }
    }
}

fn decode_session_command(bytes: &[u8]) -> Result<LogRecord, DecodeError> {
    if bytes.len() < 16 {
        return Err(DecodeError::Truncated {
            field: "session",
            size_needed: 16,
            size_available: bytes.len(),
        });
    }
    let (session, rest) = bytes.split_at(16);
    let (client_id, sequence) = session.split_at(8);
    let to_u64 = |part: &[u8]| {
        let mut word = [0u8; 8];
        word.copy_from_slice(part);
        u64::from_be_bytes(word)
    };
    Ok(LogRecord::Command {
        session: Some((to_u64(client_id), to_u64(sequence))),
        command: Command::decode(rest)?,
    })
}

#[derive(Clone, Debug, Default)]
pub struct StateMachine {
    pub(super) store: Store,
    pub(super) sessions: Sessions,
    /// Test builds only: the bug the snapshot code plants.
    #[cfg(feature = "planted-bugs")]
    planted_bug: Option<PlantedBug>,
}

impl StateMachine {
    /// A machine a restore rebuilt (src/kv/snapshot.rs).
    pub(super) fn from_restored(store: Store, sessions: Sessions) -> StateMachine {
        StateMachine {
            store,
            sessions,
            #[cfg(feature = "planted-bugs")]
            planted_bug: None,
        }
    }

    /// Test builds only: misbehave in one known way. The replica plants
    /// it again in a machine it restores.
    #[cfg(feature = "planted-bugs")]
    pub fn plant_bug(&mut self, bug: Option<PlantedBug>) {
        self.planted_bug = bug;
    }

    #[cfg(feature = "planted-bugs")]
    pub(super) fn planted_snapshot_without_sessions(&self) -> bool {
        self.planted_bug == Some(PlantedBug::SnapshotWithoutSessions)
    }

    #[cfg(not(feature = "planted-bugs"))]
    pub(super) fn planted_snapshot_without_sessions(&self) -> bool {
        false
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    /// Applies the command entry at (index, term).
    pub fn apply(&mut self, index: u64, term: u64, data: &[u8]) -> Applied {
        let record = match LogRecord::decode(data) {
            Ok(record) => record,
            Err(error) => return Applied::Undecodable(error),
        };
        match record {
            LogRecord::Register => Applied::Registered {
                client_id: self.sessions.register(index),
            },
            LogRecord::Command {
                session: None,
                command,
            } => Applied::Reply(self.apply_command(index, term, &command)),
            LogRecord::Command {
                session: Some((client_id, sequence)),
                command,
            } => self.apply_in_session(index, term, client_id, sequence, &command),
        }
    }

    fn apply_in_session(
        &mut self,
        index: u64,
        term: u64,
        client_id: u64,
        sequence: u64,
        command: &Command,
    ) -> Applied {
        match self.sessions.check(client_id, sequence) {
            SessionCheck::Apply => {
                let reply = self.apply_command(index, term, command);
                self.sessions.record(client_id, sequence, reply.clone());
                Applied::Reply(reply)
            }
            SessionCheck::Duplicate(reply) => {
                self.sessions.touch(client_id, index);
                Applied::Reply(reply)
            }
            SessionCheck::Stale => Applied::StaleSequence,
            SessionCheck::Expired => Applied::SessionExpired,
        }
    }

    fn apply_command(&mut self, index: u64, term: u64, command: &Command) -> CachedReply {
        CachedReply {
            outcome: self.store.apply(command),
            index,
            term,
        }
    }

    /// Equal on nodes that applied the same entries: covers the keys and
    /// the session table.
    pub fn digest(&self) -> u64 {
        self.store.digest() ^ self.sessions.digest()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::Outcome;

    fn set(key: &str, value: &str) -> Command {
        Command::Set {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        }
    }

    fn encoded(record: &LogRecord) -> Vec<u8> {
        let mut out = Vec::new();
        record.encode(&mut out);
        out
    }

    #[test]
    fn records_round_trip_and_garbage_is_an_error() {
        let records = [
            LogRecord::Register,
            LogRecord::Command {
                session: None,
                command: set("a", "1"),
            },
            LogRecord::Command {
                session: Some((7, 9)),
                command: set("b", "2"),
            },
        ];
        for record in records {
            let bytes = encoded(&record);
            assert_eq!(LogRecord::decode(&bytes), Ok(record));
            for cut in 0..bytes.len() {
                assert!(LogRecord::decode(&bytes[..cut]).is_err(), "prefix {cut}");
            }
        }
        assert!(LogRecord::decode(&[9]).is_err());
    }

    #[test]
    fn a_retried_session_command_applies_once() {
        let mut machine = StateMachine::default();
        let Applied::Registered { client_id } = machine.apply(1, 1, &encoded(&LogRecord::Register))
        else {
            panic!("register failed");
        };
        let cas = Command::Cas {
            key: b"n".to_vec(),
            expected: None,
            new: b"1".to_vec(),
        };
        let record = encoded(&LogRecord::Command {
            session: Some((client_id, 1)),
            command: cas,
        });
        let first = machine.apply(2, 1, &record);
        let retry = machine.apply(3, 2, &record);
        assert_eq!(first, retry, "the retry gets the original reply");
        let Applied::Reply(reply) = first else {
            panic!("not a reply");
        };
        assert_eq!(
            (reply.outcome, reply.index, reply.term),
            (Outcome::Ok, 2, 1)
        );
        let expired = encoded(&LogRecord::Command {
            session: Some((999, 1)),
            command: set("x", "y"),
        });
        assert_eq!(machine.apply(4, 2, &expired), Applied::SessionExpired);
        assert_eq!(machine.store().get(b"x"), None, "nothing applied");
    }
}
