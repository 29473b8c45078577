//! The recorded history: operations as the checker sees them, plus the
//! event log written as JSON lines while the run goes on.

use raftlite::kv::{quote_if_needed, Position, ABSENT_EXPECTED};
use raftlite::reply::{Asked, Reply};
use raftlite_kit::json::json_string;
use raftlite_kit::linearizability::{Action, Operation, Outcome};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::Mutex;
use std::time::Instant;

/// Shared by the client threads and the nemesis.
pub struct Recorder {
    start: Instant,
    operations: Mutex<Vec<Operation>>,
    events: Mutex<BufWriter<File>>,
}

impl Recorder {
    pub fn new(events: File) -> Recorder {
        Recorder {
            start: Instant::now(),
            operations: Mutex::new(Vec::new()),
            events: Mutex::new(BufWriter::new(events)),
        }
    }

    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// One JSON object per line; `fields` are already-encoded `"key":value`
    /// pairs.
    pub fn event(&self, kind: &str, fields: &[String]) {
        let time_ms = self.now_ns() as f64 / 1e6;
        let mut line = format!("{{\"type\":{},\"time_ms\":{time_ms:.3}", json_string(kind));
        for field in fields {
            line.push(',');
            line.push_str(field);
        }
        line.push_str("}\n");
        if let Ok(mut events) = self.events.lock() {
            let _ = events.write_all(line.as_bytes());
        }
    }

    pub fn record(&self, operation: Operation) {
        if let Ok(mut operations) = self.operations.lock() {
            operations.push(operation);
        }
    }

    pub fn operations(&self) -> Vec<Operation> {
        self.operations
            .lock()
            .map(|operations| operations.clone())
            .unwrap_or_default()
    }

    pub fn flush(&self) {
        if let Ok(mut events) = self.events.lock() {
            let _ = events.flush();
        }
    }
}

pub fn field(name: &str, value: &str) -> String {
    format!("{}:{}", json_string(name), json_string(value))
}

pub fn number(name: &str, value: u64) -> String {
    format!("{}:{value}", json_string(name))
}

/// The command line for an action on `key`, quoting keys and values the
/// way the server reads them back (the bench's own are plain, but a `-`
/// expected value or one with spaces must not change meaning).
pub fn command(key: &str, action: &Action) -> String {
    let key = quote_if_needed(key.as_bytes(), Position::Key);
    let line_end = |value: &str| quote_if_needed(value.as_bytes(), Position::LineEnd).into_owned();
    match action {
        Action::Get => format!("GET {key}"),
        Action::Set(value) => format!("SET {key} {}", line_end(value)),
        Action::Del => format!("DEL {key}"),
        Action::Cas { expected, new } => {
            let expected = expected
                .as_deref()
                .map_or(ABSENT_EXPECTED.into(), |expected| {
                    quote_if_needed(expected.as_bytes(), Position::Expected)
                });
            format!("CAS {key} {expected} {}", line_end(new))
        }
    }
}

/// What a reply line from `submit` says about the operation's effect (an
/// empty line: submit died, the outcome is unknown). A line that is no
/// reply, such as a VALUE whose value does not parse, is a server bug; it
/// still says the operation changed nothing, so it counts as failed.
pub fn outcome(line: &str) -> Outcome {
    if line.is_empty() {
        return Outcome::Unknown;
    }
    // The bench sends GET, SET and CAS, never SGET.
    match Reply::parse_answer(line, Asked::Other) {
        Ok(Reply::Ok { .. }) => Outcome::Ok,
        Ok(Reply::Value(value)) => Outcome::Value(Some(text(&value))),
        Ok(Reply::NotFound) => Outcome::Value(None),
        Ok(Reply::Mismatch { current }) => Outcome::Mismatch {
            current: current.as_deref().map(text),
        },
        Ok(Reply::Timeout) => Outcome::Unknown,
        _ => Outcome::Failed,
    }
}

/// The history holds text: the bench only writes ASCII, so bytes that are
/// not UTF-8 (which it never wrote) may show as U+FFFD.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_map_to_outcomes() {
        use raftlite::core::{LogIndex, Term};
        let of = |reply: Reply| outcome(&reply.to_string());
        let ok = Reply::Ok {
            index: LogIndex(3),
            term: Term(1),
        };
        let value = |text: &str| Reply::Value(text.as_bytes().to_vec());
        let mismatch = |current: Option<&str>| Reply::Mismatch {
            current: current.map(|text| text.as_bytes().to_vec()),
        };
        let text_value = |text: &str| Outcome::Value(Some(text.to_string()));
        assert_eq!(of(ok), Outcome::Ok);
        assert_eq!(of(value("a b")), text_value("a b"));
        assert_eq!(of(value("a b ")), text_value("a b "));
        assert_eq!(of(value("")), text_value(""));
        assert_eq!(of(value("-")), text_value("-"));
        // GET's value, though it reads like SGET's reply.
        let stale_looking = "x stale applied=3";
        assert_eq!(of(value(stale_looking)), text_value(stale_looking));
        assert_eq!(of(Reply::NotFound), Outcome::Value(None));
        assert_eq!(of(mismatch(None)), Outcome::Mismatch { current: None });
        assert_eq!(
            of(mismatch(Some("NOT_FOUND"))),
            Outcome::Mismatch {
                current: Some("NOT_FOUND".into())
            }
        );
        assert_eq!(
            of(mismatch(Some("x\"y"))),
            Outcome::Mismatch {
                current: Some("x\"y".into())
            }
        );
        assert_eq!(of(Reply::Timeout), Outcome::Unknown);
        assert_eq!(outcome(""), Outcome::Unknown, "submit died");
        assert_eq!(of(Reply::NotLeader { leader: None }), Outcome::Failed);
        assert_eq!(of(Reply::Unavailable("busy".into())), Outcome::Failed);
        // A server bug: the line is no reply.
        assert_eq!(outcome(r#"VALUE "unterminated"#), Outcome::Failed);
    }

    #[test]
    fn commands_and_json() {
        let cas = Action::Cas {
            expected: None,
            new: "v".into(),
        };
        assert_eq!(command("k", &cas), "CAS k - v");
        let literal_dash = Action::Cas {
            expected: Some("-".into()),
            new: "a b".into(),
        };
        assert_eq!(command("k", &literal_dash), r#"CAS k "-" a b"#);
        assert_eq!(command("a b", &Action::Get), r#"GET "a b""#);
        assert_eq!(command("k", &Action::Set(String::new())), r#"SET k """#);
    }
}
