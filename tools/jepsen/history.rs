//! The recorded history: operations as the checker sees them, plus the
//! event log written as JSON lines while the run goes on.

use raftlite::kv::{quote_if_needed, Position, ABSENT_EXPECTED};
use raftlite::reply::{Asked, Reply};
use raftlite_kit::json::Fixed;
use raftlite_kit::linearizability::{Action, Operation, Outcome};
use serde::{Serialize, Serializer};
use serde_json::Value;
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

    /// One JSON object per line (`event_line`).
    pub fn event(&self, kind: &str, fields: &[Field]) {
        let time_ms = self.now_ns() as f64 / 1e6;
        let Ok(line) = event_line(kind, time_ms, fields) else {
            return;
        };
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

/// One field of an event: its key and its value, a string or a number.
pub type Field = (&'static str, Value);

pub fn field(name: &'static str, value: &str) -> Field {
    (name, Value::from(value))
}

pub fn number(name: &'static str, value: u64) -> Field {
    (name, Value::from(value))
}

/// An event as one line of history.jsonl: `type`, `time_ms` (3 decimals),
/// then `fields` in their order; a final newline.
fn event_line(kind: &str, time_ms: f64, fields: &[Field]) -> serde_json::Result<String> {
    #[derive(Serialize)]
    struct Event<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        time_ms: Fixed<3>,
        #[serde(flatten)]
        fields: Fields<'a>,
    }
    struct Fields<'a>(&'a [Field]);
    impl Serialize for Fields<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_map(self.0.iter().map(|(name, value)| (name, value)))
        }
    }
    let event = Event {
        kind,
        time_ms: Fixed(Some(time_ms)),
        fields: Fields(fields),
    };
    Ok(serde_json::to_string(&event)? + "\n")
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
        // The lines as the hand-written JSON before serde wrote them.
        let line = |kind, time_ms, fields: &[Field]| event_line(kind, time_ms, fields).unwrap();
        let invoke = [number("client", 1), field("command", "SET k0 c1n0")];
        assert_eq!(
            line("invoke", 3.2794, &invoke),
            "{\"type\":\"invoke\",\"time_ms\":3.279,\"client\":1,\"command\":\"SET k0 c1n0\"}\n"
        );
        let fault = [
            field("fault", "stale-member"),
            field("nodes", "B"),
            field("was", "leader"),
            number("stale_term", u64::MAX),
            field("stale_cluster", "a\"b\\c\nd\u{1}\u{1f}é→"),
        ];
        assert_eq!(
            line("fault", 1676.1025, &fault),
            concat!(
                r#"{"type":"fault","time_ms":1676.102,"fault":"stale-member","nodes":"B","#,
                r#""was":"leader","stale_term":18446744073709551615,"#,
                r#""stale_cluster":"a\"b\\c\nd\u0001\u001fé→"}"#,
                "\n"
            )
        );
        assert_eq!(
            line("heal", 0.0, &[field("fault", "kill-leader")]),
            "{\"type\":\"heal\",\"time_ms\":0.000,\"fault\":\"kill-leader\"}\n"
        );
    }
}
