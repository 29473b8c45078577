//! Reply lines as one type: every line a node sends a client, and every line
//! the client makes up when no node gave it a final answer. `Display` writes
//! a line exactly as docs/PROTOCOL.md lists it (the lines are a contract that
//! scripts and other clients read); `Reply::parse` reads one back. Nothing
//! else writes or reads reply text.
//!
//! Keys and values follow the quoting rules of `kv::quote`. The parser takes
//! only the form `Display` writes (numbers without leading zeros, values
//! quoted exactly when they must be), so a line that parses is written back
//! byte for byte, and a client passes a node's line on unchanged by passing
//! on its `Reply`.

use crate::core::{LogIndex, Term};
use crate::kv::{parse_quoted, quote_if_needed, write_if_needed, Position};
use std::borrow::Cow;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A write (SET, DEL, a CAS that matched) applied at `index` in `term`.
    Ok {
        index: LogIndex,
        term: Term,
    },
    /// What GET read; on the line the value runs to the end.
    Value(Vec<u8>),
    /// GET found no value.
    NotFound,
    /// What SGET read from the node's own copy, applied up to `applied`
    /// (possibly stale); on the line the value is one word.
    StaleValue {
        value: Vec<u8>,
        applied: LogIndex,
    },
    StaleNotFound {
        applied: LogIndex,
    },
    /// A CAS found another value than it expected (`None`: no value).
    Mismatch {
        current: Option<Vec<u8>>,
    },
    /// REGISTER opened session `id`.
    Session {
        id: u64,
    },
    Status(Status),
    /// SNAPSHOT: a snapshot of the state machine up to `index`, `bytes`
    /// long, is durable on the node asked.
    SnapshotTaken {
        index: LogIndex,
        bytes: u64,
    },
    /// TRANSFER: the member named `leader` leads `term` (it was asked to
    /// take over, or led already).
    Transferred {
        leader: String,
        term: Term,
    },
    /// Certainly not appended; `leader` is where to try, if this node knows.
    NotLeader {
        leader: Option<Leader>,
    },
    /// The outcome is unknown: the command may still be applied.
    Timeout,
    /// Certainly not applied; the reason (one line) says why.
    Unavailable(Cow<'static, str>),
    /// Malformed or refused, never applied; the reason is one line.
    BadRequest(Cow<'static, str>),
    /// The session is no longer known: nothing was applied now, but an
    /// earlier try of the same command may have been.
    SessionExpired,
}

/// The leader a NOT_LEADER names: its member id and the address clients
/// reach it at, each one word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leader {
    pub id: String,
    pub address: String,
}

/// A STATUS line's fields in their order on the line. Scripts read them by
/// name and new ones only ever go at the end, so this is a list rather than
/// a struct. Names and values are words (no whitespace) and a name holds no
/// `=`, so the line splits back into the same fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    fields: Vec<(String, String)>,
}

/// How a reply is classified (the `submit` exit codes follow this).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyKind {
    /// OK, VALUE, NOT_FOUND, STATUS (and SESSION, a REGISTER's answer).
    Success,
    /// CAS found another value: definite, and not applied.
    Mismatch,
    NotLeader,
    Timeout,
    /// Any other ERR, or a line that is no reply: definite failure, never
    /// applied.
    Error,
}

/// What was asked, where the line alone cannot tell: `VALUE w stale
/// applied=N` is SGET's answer, but also GET's for a value that reads
/// `w stale applied=N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asked {
    StaleRead,
    Other,
}

/// Why a line is not a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A reply is one line.
    LineBreak,
    /// The first word names no reply this build knows.
    Unknown,
    /// A reply known by its first word (`form`) whose rest does not fit it,
    /// or is not written the way a node writes it.
    Malformed { form: &'static str },
}

/// A line as a client received it: the reply it says, or, when this build
/// cannot read it (a newer node's reply, or a bug), the line as it came.
/// Such a line counts as a definite error, as any unknown ERR does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Reply(Reply),
    Unreadable(String),
}

impl Reply {
    /// Reads a line (without its line ending). A line that fits SGET's
    /// form is read as SGET's; `parse_answer` knows better when the
    /// request is known.
    pub fn parse(line: &str) -> Result<Reply, ParseError> {
        Reply::parse_answer(line, Asked::StaleRead)
    }

    /// Reads a line that answers what was `asked`.
    pub fn parse_answer(line: &str, asked: Asked) -> Result<Reply, ParseError> {
        if line.contains(['\n', '\r']) {
            return Err(ParseError::LineBreak);
        }
        let (word, rest) = split_word(line);
        let (form, reply) = match word {
            "OK" => ("OK", rest.and_then(parse_ok)),
            "VALUE" => ("VALUE", rest.and_then(|rest| parse_value(rest, asked))),
            "NOT_FOUND" => ("NOT_FOUND", parse_not_found(rest)),
            "MISMATCH" => ("MISMATCH", rest.and_then(parse_mismatch)),
            "SESSION" => ("SESSION", rest.and_then(parse_session)),
            "STATUS" => ("STATUS", parse_status(rest)),
            "ERR" => ("ERR", rest.and_then(parse_error)),
            _ => return Err(ParseError::Unknown),
        };
        reply.ok_or(ParseError::Malformed { form })
    }

    pub fn kind(&self) -> ReplyKind {
        match self {
            Reply::Ok { .. }
            | Reply::Value(_)
            | Reply::NotFound
            | Reply::StaleValue { .. }
            | Reply::StaleNotFound { .. }
            | Reply::Session { .. }
            | Reply::Status(_)
            | Reply::SnapshotTaken { .. }
            | Reply::Transferred { .. } => ReplyKind::Success,
            Reply::Mismatch { .. } => ReplyKind::Mismatch,
            Reply::NotLeader { .. } => ReplyKind::NotLeader,
            Reply::Timeout => ReplyKind::Timeout,
            Reply::Unavailable(_) | Reply::BadRequest(_) | Reply::SessionExpired => {
                ReplyKind::Error
            }
        }
    }

    /// The address a NOT_LEADER names, if it names one.
    pub fn leader_hint(&self) -> Option<&str> {
        match self {
            Reply::NotLeader {
                leader: Some(leader),
            } => Some(&leader.address),
            _ => None,
        }
    }

    /// An error's words after `ERR ` (`NOT_LEADER leader=unknown`), which
    /// is how a line the client makes up names what a node said.
    pub fn error_words(&self) -> Option<impl fmt::Display + '_> {
        let is_error = matches!(
            self.kind(),
            ReplyKind::NotLeader | ReplyKind::Timeout | ReplyKind::Error
        );
        is_error.then_some(ErrorWords(self))
    }
}

/// The kind of a line (one that is no reply is an error).
pub fn classify(line: &str) -> ReplyKind {
    Reply::parse(line).map_or(ReplyKind::Error, |reply| reply.kind())
}

impl Status {
    /// Appends `name=value` at the end of the line.
    ///
    /// # Panics
    /// If `name` is empty or holds `=`, or either holds whitespace: the line
    /// would no longer split into its fields, a bug on this side.
    pub fn push(&mut self, name: &str, value: impl fmt::Display) {
        let value = value.to_string();
        assert!(is_field_name(name), "STATUS field name {name:?}");
        assert!(is_word(&value), "STATUS field {name}={value:?}");
        self.fields.push((name.to_string(), value));
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn fields(&self) -> &[(String, String)] {
        &self.fields
    }
}

impl Answer {
    /// What a node's `line` says, in answer to what was `asked`.
    pub fn from_line(line: String, asked: Asked) -> Answer {
        match Reply::parse_answer(&line, asked) {
            Ok(reply) => Answer::Reply(reply),
            Err(_) => Answer::Unreadable(line),
        }
    }

    pub fn reply(&self) -> Option<&Reply> {
        match self {
            Answer::Reply(reply) => Some(reply),
            Answer::Unreadable(_) => None,
        }
    }

    pub fn kind(&self) -> ReplyKind {
        self.reply().map_or(ReplyKind::Error, Reply::kind)
    }
}

impl From<Reply> for Answer {
    fn from(reply: Reply) -> Answer {
        Answer::Reply(reply)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Ok { index, term } => write!(f, "OK index={index} term={term}"),
            Reply::SnapshotTaken { index, bytes } => {
                write!(f, "OK snapshot index={index} bytes={bytes}")
            }
            Reply::Transferred { leader, term } => write!(f, "OK leader={leader} term={term}"),
            Reply::Value(value) => {
                f.write_str("VALUE ")?;
                write_if_needed(f, value, Position::LineEnd)
            }
            Reply::NotFound => f.write_str("NOT_FOUND"),
            Reply::StaleValue { value, applied } => {
                f.write_str("VALUE ")?;
                write_if_needed(f, value, Position::Word)?;
                write!(f, " stale applied={applied}")
            }
            Reply::StaleNotFound { applied } => write!(f, "NOT_FOUND stale applied={applied}"),
            // Absence is a word of its own, so a value that reads NOT_FOUND
            // is not taken for it.
            Reply::Mismatch { current: None } => f.write_str("MISMATCH absent"),
            Reply::Mismatch {
                current: Some(value),
            } => {
                f.write_str("MISMATCH current=")?;
                write_if_needed(f, value, Position::LineEnd)
            }
            Reply::Session { id } => write!(f, "SESSION id={id}"),
            Reply::Status(status) => {
                f.write_str("STATUS")?;
                for (name, value) in &status.fields {
                    write!(f, " {name}={value}")?;
                }
                Ok(())
            }
            Reply::NotLeader { .. }
            | Reply::Timeout
            | Reply::Unavailable(_)
            | Reply::BadRequest(_)
            | Reply::SessionExpired => write!(f, "ERR {}", ErrorWords(self)),
        }
    }
}

/// The words of an error reply after `ERR `.
struct ErrorWords<'a>(&'a Reply);

impl fmt::Display for ErrorWords<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Reply::NotLeader {
                leader: Some(leader),
            } => write!(f, "NOT_LEADER leader={} addr={}", leader.id, leader.address),
            Reply::NotLeader { leader: None } => f.write_str("NOT_LEADER leader=unknown"),
            Reply::Timeout => f.write_str("TIMEOUT"),
            Reply::Unavailable(reason) => write!(f, "UNAVAILABLE {reason}"),
            Reply::BadRequest(reason) => write!(f, "BAD_REQUEST {reason}"),
            Reply::SessionExpired => f.write_str("SESSION_EXPIRED"),
            other => unreachable!("{other:?} is no error"),
        }
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Reply(reply) => reply.fmt(f),
            Answer::Unreadable(line) => f.write_str(line),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::LineBreak => f.write_str("a line break inside the reply"),
            ParseError::Unknown => f.write_str("not a reply"),
            ParseError::Malformed { form } => write!(f, "a malformed {form} reply"),
        }
    }
}

impl std::error::Error for ParseError {}

/// The first word and the rest after a single space, if there is a space.
fn split_word(text: &str) -> (&str, Option<&str>) {
    match text.split_once(' ') {
        Some((word, rest)) => (word, Some(rest)),
        None => (text, None),
    }
}

fn parse_ok(rest: &str) -> Option<Reply> {
    if let Some(snapshot) = rest.strip_prefix("snapshot ") {
        return parse_snapshot_taken(snapshot);
    }
    if let Some(transferred) = rest.strip_prefix("leader=") {
        return parse_transferred(transferred);
    }
    let (index, term) = rest.strip_prefix("index=")?.split_once(" term=")?;
    Some(Reply::Ok {
        index: LogIndex(number(index)?),
        term: Term(number(term)?),
    })
}

fn parse_snapshot_taken(rest: &str) -> Option<Reply> {
    let (index, bytes) = rest.strip_prefix("index=")?.split_once(" bytes=")?;
    Some(Reply::SnapshotTaken {
        index: LogIndex(number(index)?),
        bytes: number(bytes)?,
    })
}

fn parse_transferred(rest: &str) -> Option<Reply> {
    let (leader, term) = rest.split_once(" term=")?;
    if leader.is_empty() || !is_word(leader) {
        return None;
    }
    Some(Reply::Transferred {
        leader: leader.to_string(),
        term: Term(number(term)?),
    })
}

fn parse_value(rest: &str, asked: Asked) -> Option<Reply> {
    let stale = || {
        // The last one: a quoted value may hold the same words.
        let (word, applied) = rest.rsplit_once(" stale applied=")?;
        Some(Reply::StaleValue {
            value: value(word, Position::Word)?,
            applied: LogIndex(number(applied)?),
        })
    };
    let fresh = || value(rest, Position::LineEnd).map(Reply::Value);
    match asked {
        Asked::StaleRead => stale().or_else(fresh),
        Asked::Other => fresh().or_else(stale),
    }
}

fn parse_not_found(rest: Option<&str>) -> Option<Reply> {
    let Some(rest) = rest else {
        return Some(Reply::NotFound);
    };
    let applied = number(rest.strip_prefix("stale applied=")?)?;
    Some(Reply::StaleNotFound {
        applied: LogIndex(applied),
    })
}

fn parse_mismatch(rest: &str) -> Option<Reply> {
    if rest == "absent" {
        return Some(Reply::Mismatch { current: None });
    }
    let current = value(rest.strip_prefix("current=")?, Position::LineEnd)?;
    Some(Reply::Mismatch {
        current: Some(current),
    })
}

fn parse_session(rest: &str) -> Option<Reply> {
    let id = number(rest.strip_prefix("id=")?)?;
    Some(Reply::Session { id })
}

fn parse_status(rest: Option<&str>) -> Option<Reply> {
    let mut status = Status::default();
    for field in rest.into_iter().flat_map(|rest| rest.split(' ')) {
        let (name, value) = field.split_once('=')?;
        if !is_field_name(name) || !is_word(value) {
            return None;
        }
        status.fields.push((name.to_string(), value.to_string()));
    }
    Some(Reply::Status(status))
}

fn parse_error(rest: &str) -> Option<Reply> {
    let reason = |reason: &str| Cow::Owned(reason.to_string());
    match split_word(rest) {
        ("NOT_LEADER", Some(rest)) => parse_not_leader(rest),
        ("TIMEOUT", None) => Some(Reply::Timeout),
        ("UNAVAILABLE", Some(rest)) => Some(Reply::Unavailable(reason(rest))),
        ("BAD_REQUEST", Some(rest)) => Some(Reply::BadRequest(reason(rest))),
        ("SESSION_EXPIRED", None) => Some(Reply::SessionExpired),
        _ => None,
    }
}

fn parse_not_leader(rest: &str) -> Option<Reply> {
    let leader = rest.strip_prefix("leader=")?;
    if leader == "unknown" {
        return Some(Reply::NotLeader { leader: None });
    }
    let (id, address) = leader.split_once(" addr=")?;
    let words = !id.is_empty() && is_word(id) && !address.is_empty() && is_word(address);
    words.then(|| Reply::NotLeader {
        leader: Some(Leader {
            id: id.to_string(),
            address: address.to_string(),
        }),
    })
}

/// A value at `position`, written exactly as a node writes that value:
/// bare, or quoted when it must be.
fn value(text: &str, position: Position) -> Option<Vec<u8>> {
    let bytes = if text.starts_with('"') {
        let (bytes, after) = parse_quoted(text).ok()?;
        if !after.is_empty() {
            return None;
        }
        bytes
    } else {
        text.as_bytes().to_vec()
    };
    (*quote_if_needed(&bytes, position) == *text).then_some(bytes)
}

/// A decimal number as `Display` writes one: digits, no leading zero.
fn number(text: &str) -> Option<u64> {
    let digits = !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
    let canonical = digits && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

fn is_word(text: &str) -> bool {
    !text.contains(char::is_whitespace)
}

fn is_field_name(text: &str) -> bool {
    !text.is_empty() && is_word(text) && !text.contains('=')
}

#[cfg(test)]
mod tests;
