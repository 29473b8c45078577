//! Client requests and the log commands they become.
//!
//! A client sends one text line; `parse_request` turns it into a `Request`.
//! Requests that go through the log become a `Command`, which a log entry
//! carries in the binary layout written by `Command::encode`. Other programs
//! speak this grammar, so it changes only together with them.

use std::fmt;

use super::quote::{
    parse_quoted, parse_rest, parse_token, split_word, QuoteError, Token, ABSENT_EXPECTED,
};
use crate::constants::{APPEND_BATCH_SIZE_MAX, COMMAND_SIZE_MAX, KEY_SIZE_MAX, VALUE_SIZE_MAX};

/// A parsed client line. Keys and values are bytes: those of the line for
/// bare ones, the decoded bytes (not always UTF-8) for quoted ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Get {
        key: Vec<u8>,
    },
    Del {
        key: Vec<u8>,
    },
    /// Sets `key` to `new` only if its current value is `expected`; an
    /// `expected` of `None` (written `-`) means "only if absent".
    Cas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    },
    Status,
    /// Asks the node contacted to snapshot its state machine now (each node
    /// snapshots its own copy; nothing goes through the log).
    Snapshot,
    /// Asks the leader to hand leadership to the member named `id`
    /// (dissertation §3.10); nothing goes through the log.
    Transfer {
        id: String,
    },
    /// Opens a client session (sent by clients, not typed by users): the
    /// reply names the session id that numbers later commands.
    Register,
    /// A read of the local copy without going through the log: it may be
    /// stale, so it never becomes a `Command`.
    StaleGet {
        key: Vec<u8>,
    },
}

/// What a log entry carries: the requests the state machine applies in log
/// order. GET does not go through the log: the replica serves it by
/// ReadIndex (`Replica::linearizable_get`, docs/PROTOCOL.md). `Get` stays a
/// valid log command, applied as a read of the state at its index, so that
/// a log holding one still decodes and replays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Get {
        key: Vec<u8>,
    },
    Del {
        key: Vec<u8>,
    },
    Cas {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    },
}

/// Why a client line is not a request. `Display` is a short reason meant to
/// follow `ERR BAD_REQUEST `.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    Empty,
    LineTooLong {
        size: usize,
    },
    /// A line break inside the line would split the reply line, so it is
    /// refused rather than carried into a key or value.
    LineBreak,
    /// The verb as sent, cut to `VERB_SHOWN_CHARS_MAX` characters.
    UnknownVerb {
        verb: String,
    },
    /// The verb is known but its arguments do not fit; `usage` says how.
    Usage {
        usage: &'static str,
    },
    KeyEmpty,
    KeyHasEquals,
    KeyTooLong {
        size: usize,
    },
    ValueTooLong {
        size: usize,
    },
    /// A quoted key or value (`field` names which) does not parse.
    Quote {
        field: &'static str,
        error: QuoteError,
    },
}

/// Why bytes from a log entry are not a command. Entries come from disk and
/// from peers, so every malformed input is an error here, never a panic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    Truncated {
        field: &'static str,
        size_needed: usize,
        size_available: usize,
    },
    UnknownOp {
        op: u8,
    },
    FieldTooLong {
        field: &'static str,
        size: usize,
        size_max: usize,
    },
    KeyEmpty,
    BadPresence {
        byte: u8,
    },
    TrailingBytes {
        count: usize,
    },
}

const OP_SET: u8 = 1;
const OP_GET: u8 = 2;
const OP_DEL: u8 = 3;
const OP_CAS: u8 = 4;

const PRESENCE_ABSENT: u8 = 0;
const PRESENCE_PRESENT: u8 = 1;

/// Size of the big-endian length in front of each field.
const LENGTH_PREFIX_SIZE: usize = 4;

/// The largest encoding of any command: a CAS with the largest key, expected
/// value and new value.
pub const COMMAND_ENCODED_SIZE_MAX: usize =
    1 + LENGTH_PREFIX_SIZE + KEY_SIZE_MAX + 1 + 2 * (LENGTH_PREFIX_SIZE + VALUE_SIZE_MAX);

/// An unknown verb is echoed back; this keeps the echo short.
const VERB_SHOWN_CHARS_MAX: usize = 32;

// Any single command must fit in one AppendEntries batch, or a leader could
// never replicate it.
const _: () = assert!(COMMAND_ENCODED_SIZE_MAX <= APPEND_BATCH_SIZE_MAX);
// A field length must fit the u32 length prefix.
const _: () = assert!(VALUE_SIZE_MAX <= u32::MAX as usize);
const _: () = assert!(KEY_SIZE_MAX <= u32::MAX as usize);

const USAGE_SET: &str = "SET needs key=value or key value";
const USAGE_GET: &str = "GET needs exactly one key";
const USAGE_DEL: &str = "DEL needs exactly one key";
const USAGE_SGET: &str = "SGET needs exactly one key";
const USAGE_CAS: &str = "CAS needs key expected new (expected - means absent)";
const USAGE_STATUS: &str = "STATUS takes no arguments";
const USAGE_SNAPSHOT: &str = "SNAPSHOT takes no arguments";
const USAGE_REGISTER: &str = "REGISTER takes no arguments";
const USAGE_TRANSFER: &str = "TRANSFER needs exactly one node id";

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Empty => write!(f, "empty command"),
            ParseError::LineTooLong { .. } => {
                write!(f, "command longer than {COMMAND_SIZE_MAX} bytes")
            }
            ParseError::LineBreak => write!(f, "line break inside command"),
            ParseError::UnknownVerb { verb } => write!(f, "unknown verb {verb:?}"),
            ParseError::Usage { usage } => write!(f, "{usage}"),
            ParseError::KeyEmpty => write!(f, "empty key"),
            ParseError::KeyHasEquals => write!(f, "key contains '='"),
            ParseError::KeyTooLong { .. } => write!(f, "key longer than {KEY_SIZE_MAX} bytes"),
            ParseError::ValueTooLong { .. } => {
                write!(f, "value longer than {VALUE_SIZE_MAX} bytes")
            }
            ParseError::Quote { field, error } => write!(f, "{error} in {field}"),
        }
    }
}

impl std::error::Error for ParseError {}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated {
                field,
                size_needed,
                size_available,
            } => write!(
                f,
                "truncated {field}: needs {size_needed} bytes, {size_available} left"
            ),
            DecodeError::UnknownOp { op } => write!(f, "unknown op {op}"),
            DecodeError::FieldTooLong {
                field,
                size,
                size_max,
            } => write!(f, "{field} of {size} bytes exceeds {size_max}"),
            DecodeError::KeyEmpty => write!(f, "empty key"),
            DecodeError::BadPresence { byte } => write!(f, "bad presence byte {byte}"),
            DecodeError::TrailingBytes { count } => write!(f, "{count} trailing bytes"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Parses one client line (with or without its line ending).
///
/// Whitespace is Rust's (`char::is_whitespace`). Arguments are separated by
/// runs of whitespace. Each key and value is either bare or a quoted string
/// (see `quote.rs`). A bare SET value or CAS new value is the rest of the
/// line after that run, so it may hold spaces and '=' but never starts with
/// whitespace unless written as `SET key= value`; only a leading `"` makes
/// it a quoted string.
pub fn parse_request(line: &str) -> Result<Request, ParseError> {
    // Checked before trimming so the bound holds on what the client sent.
    if line.len() > COMMAND_SIZE_MAX {
        return Err(ParseError::LineTooLong { size: line.len() });
    }
    let line = line.trim();
    if line.is_empty() {
        return Err(ParseError::Empty);
    }
    if line.contains(['\n', '\r']) {
        return Err(ParseError::LineBreak);
    }
    let (verb, arguments) = split_word(line);
    parse_verb(verb, arguments)
}

fn parse_verb(verb: &str, arguments: &str) -> Result<Request, ParseError> {
    let is = |name: &str| verb.eq_ignore_ascii_case(name);
    if is("SET") {
        parse_set(arguments)
    } else if is("GET") {
        let key = parse_key_only(arguments, USAGE_GET)?;
        Ok(Request::Get { key })
    } else if is("DEL") {
        let key = parse_key_only(arguments, USAGE_DEL)?;
        Ok(Request::Del { key })
    } else if is("SGET") {
        let key = parse_key_only(arguments, USAGE_SGET)?;
        Ok(Request::StaleGet { key })
    } else if is("CAS") {
        parse_cas(arguments)
    } else if is("STATUS") {
        if !arguments.is_empty() {
            return Err(ParseError::Usage {
                usage: USAGE_STATUS,
            });
        }
        Ok(Request::Status)
    } else if is("SNAPSHOT") {
        if !arguments.is_empty() {
            return Err(ParseError::Usage {
                usage: USAGE_SNAPSHOT,
            });
        }
        Ok(Request::Snapshot)
    } else if is("TRANSFER") {
        parse_transfer(arguments)
    } else if is("REGISTER") {
        if !arguments.is_empty() {
            return Err(ParseError::Usage {
                usage: USAGE_REGISTER,
            });
        }
        Ok(Request::Register)
    } else {
        let verb = verb.chars().take(VERB_SHOWN_CHARS_MAX).collect();
        Err(ParseError::UnknownVerb { verb })
    }
}

/// One word, as long as a node id may be; whether it names a member is the
/// replica's to say.
fn parse_transfer(arguments: &str) -> Result<Request, ParseError> {
    let usage = ParseError::Usage {
        usage: USAGE_TRANSFER,
    };
    let one_word = !arguments.is_empty() && !arguments.contains(char::is_whitespace);
    if !one_word || arguments.len() > crate::constants::NODE_ID_SIZE_MAX {
        return Err(usage);
    }
    Ok(Request::Transfer {
        id: arguments.to_string(),
    })
}

/// Names the field a quoting error is in.
fn in_field(field: &'static str) -> impl Fn(QuoteError) -> ParseError {
    move |error| ParseError::Quote { field, error }
}

fn parse_set(arguments: &str) -> Result<Request, ParseError> {
    let (key, value) = split_set(arguments)?;
    let key = check_key(key)?;
    let value = check_value(parse_rest(value).map_err(in_field("value"))?)?;
    Ok(Request::Set { key, value })
}

/// The key of a SET and the text of its value: `SET key=value` when an '='
/// comes right after the key (for a bare key: the first '=', if it comes
/// before any whitespace), otherwise `SET key value`.
fn split_set(arguments: &str) -> Result<(Token<'_>, &str), ParseError> {
    let usage = ParseError::Usage { usage: USAGE_SET };
    if !arguments.starts_with('"') {
        let (word, rest) = split_word(arguments);
        return match word.find('=') {
            // `word` starts `arguments`, so the index is valid in both; the
            // value runs to the end of the line, past any whitespace.
            Some(index) => Ok((Token::Bare(&word[..index]), &arguments[index + 1..])),
            None if !word.is_empty() && !rest.is_empty() => Ok((Token::Bare(word), rest)),
            None => Err(usage),
        };
    }
    let (key, after) = parse_quoted(arguments).map_err(in_field("key"))?;
    if let Some(value) = after.strip_prefix('=') {
        return Ok((Token::Quoted(key), value));
    }
    if !after.is_empty() && !after.starts_with(char::is_whitespace) {
        let offset = arguments.len() - after.len();
        return Err(in_field("key")(QuoteError::TextAfterQuote { offset }));
    }
    match after.trim_start() {
        "" => Err(usage),
        value => Ok((Token::Quoted(key), value)),
    }
}

/// `CAS key expected new`: `expected` is one word (a bare `-` for absent),
/// `new` is the rest of the line. So a bare expected value cannot hold
/// whitespace or be the single character `-`; a quoted one can.
fn parse_cas(arguments: &str) -> Result<Request, ParseError> {
    let (key, rest) = parse_token(arguments).map_err(in_field("key"))?;
    let (expected, new) = parse_token(rest).map_err(in_field("expected value"))?;
    if new.is_empty() {
        return Err(ParseError::Usage { usage: USAGE_CAS });
    }
    let key = check_key(key)?;
    let expected = match expected {
        Token::Bare(ABSENT_EXPECTED) => None,
        expected => Some(check_value(expected)?),
    };
    let new = check_value(parse_rest(new).map_err(in_field("new value"))?)?;
    Ok(Request::Cas { key, expected, new })
}

fn parse_key_only(arguments: &str, usage: &'static str) -> Result<Vec<u8>, ParseError> {
    let (key, rest) = parse_token(arguments).map_err(in_field("key"))?;
    if key == Token::Bare("") || !rest.is_empty() {
        return Err(ParseError::Usage { usage });
    }
    check_key(key)
}

/// The limits hold on the decoded bytes, however the key was written.
fn check_key(key: Token<'_>) -> Result<Vec<u8>, ParseError> {
    // A bare '=' would have ended the key in `SET key=value`; a quoted key
    // may hold one.
    let has_bare_equals = match &key {
        Token::Bare(text) => {
            // Bare keys come from `split_word` or stop before the first
            // whitespace.
            assert!(!text.contains(char::is_whitespace));
            text.contains('=')
        }
        Token::Quoted(_) => false,
    };
    let key = key.into_bytes();
    if key.is_empty() {
        return Err(ParseError::KeyEmpty);
    }
    if key.len() > KEY_SIZE_MAX {
        return Err(ParseError::KeyTooLong { size: key.len() });
    }
    if has_bare_equals {
        return Err(ParseError::KeyHasEquals);
    }
    Ok(key)
}

fn check_value(value: Token<'_>) -> Result<Vec<u8>, ParseError> {
    let value = value.into_bytes();
    if value.len() > VALUE_SIZE_MAX {
        return Err(ParseError::ValueTooLong { size: value.len() });
    }
    Ok(value)
}

impl Request {
    /// The command a log entry carries for this request; `None` for requests
    /// answered without the log.
    pub fn into_command(self) -> Option<Command> {
        match self {
            Request::Set { key, value } => Some(Command::Set { key, value }),
            Request::Get { key } => Some(Command::Get { key }),
            Request::Del { key } => Some(Command::Del { key }),
            Request::Cas { key, expected, new } => Some(Command::Cas { key, expected, new }),
            Request::Status
            | Request::Snapshot
            | Request::Transfer { .. }
            | Request::Register
            | Request::StaleGet { .. } => None,
        }
    }
}

impl Command {
    /// The key every command acts on.
    pub fn key(&self) -> &[u8] {
        match self {
            Command::Set { key, .. }
            | Command::Get { key }
            | Command::Del { key }
            | Command::Cas { key, .. } => key,
        }
    }

    /// Bytes `encode` appends for this command.
    pub fn encoded_size(&self) -> usize {
        let field = |bytes: &[u8]| LENGTH_PREFIX_SIZE + bytes.len();
        let body = match self {
            Command::Set { key, value } => field(key) + field(value),
            Command::Get { key } | Command::Del { key } => field(key),
            Command::Cas { key, expected, new } => {
                let expected_size = expected.as_deref().map_or(0, field);
                field(key) + 1 + expected_size + field(new)
            }
        };
        1 + body
    }

    /// Appends the binary form: an op byte, then each field as a big-endian
    /// u32 length and its bytes. CAS puts a presence byte (0 absent, 1
    /// present) before the expected value, which follows only if present.
    ///
    /// Commands come from `parse_request` or `decode`, which enforce the
    /// limits, so a command over a limit is a programmer error.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let size_before = out.len();
        out.reserve(self.encoded_size());
        match self {
            Command::Set { key, value } => {
                out.push(OP_SET);
                put_key(out, key);
                put_field(out, value, VALUE_SIZE_MAX);
            }
            Command::Get { key } => {
                out.push(OP_GET);
                put_key(out, key);
            }
            Command::Del { key } => {
                out.push(OP_DEL);
                put_key(out, key);
            }
            Command::Cas { key, expected, new } => {
                out.push(OP_CAS);
                put_key(out, key);
                put_expected(out, expected.as_deref());
                put_field(out, new, VALUE_SIZE_MAX);
            }
        }
        assert_eq!(out.len() - size_before, self.encoded_size());
        assert!(out.len() - size_before <= COMMAND_ENCODED_SIZE_MAX);
    }

    /// Reads exactly one command from `bytes`; anything else is an error.
    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        let mut reader = Reader { bytes, offset: 0 };
        let command = match reader.byte("op")? {
            OP_SET => Command::Set {
                key: reader.key()?,
                value: reader.field("value", VALUE_SIZE_MAX)?,
            },
            OP_GET => Command::Get { key: reader.key()? },
            OP_DEL => Command::Del { key: reader.key()? },
            OP_CAS => Command::Cas {
                key: reader.key()?,
                expected: reader.expected()?,
                new: reader.field("new", VALUE_SIZE_MAX)?,
            },
            op => return Err(DecodeError::UnknownOp { op }),
        };
        reader.finish()?;
        // The same bounds as on the encode side.
        assert_eq!(command.encoded_size(), bytes.len());
        Ok(command)
    }
}

fn put_key(out: &mut Vec<u8>, key: &[u8]) {
    assert!(!key.is_empty());
    put_field(out, key, KEY_SIZE_MAX);
}

fn put_expected(out: &mut Vec<u8>, expected: Option<&[u8]>) {
    match expected {
        None => out.push(PRESENCE_ABSENT),
        Some(expected) => {
            out.push(PRESENCE_PRESENT);
            put_field(out, expected, VALUE_SIZE_MAX);
        }
    }
}

fn put_field(out: &mut Vec<u8>, bytes: &[u8], size_max: usize) {
    assert!(bytes.len() <= size_max);
    let length = u32::try_from(bytes.len()).expect("limits fit u32 (asserted at compile time)");
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A cursor over untrusted bytes; every read checks what is left.
struct Reader<'a> {
    bytes: &'a [u8],
    /// Invariant: offset <= bytes.len().
    offset: usize,
}

impl Reader<'_> {
    fn take(&mut self, field: &'static str, size: usize) -> Result<&[u8], DecodeError> {
        let size_available = self.bytes.len() - self.offset;
        if size > size_available {
            return Err(DecodeError::Truncated {
                field,
                size_needed: size,
                size_available,
            });
        }
        let taken = &self.bytes[self.offset..self.offset + size];
        self.offset += size;
        Ok(taken)
    }

    fn byte(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(field, 1)?[0])
    }

    /// A length-prefixed field. The length is checked against the limit
    /// before the bytes, so a huge declared length is "too long", not
    /// "truncated", and nothing is allocated for it.
    fn field(&mut self, field: &'static str, size_max: usize) -> Result<Vec<u8>, DecodeError> {
        let prefix = self.take(field, LENGTH_PREFIX_SIZE)?;
        let length = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        let size = usize::try_from(length).unwrap_or(usize::MAX);
        if size > size_max {
            return Err(DecodeError::FieldTooLong {
                field,
                size,
                size_max,
            });
        }
        Ok(self.take(field, size)?.to_vec())
    }

    fn key(&mut self) -> Result<Vec<u8>, DecodeError> {
        let key = self.field("key", KEY_SIZE_MAX)?;
        if key.is_empty() {
            return Err(DecodeError::KeyEmpty);
        }
        Ok(key)
    }

    fn expected(&mut self) -> Result<Option<Vec<u8>>, DecodeError> {
        match self.byte("presence")? {
            PRESENCE_ABSENT => Ok(None),
            PRESENCE_PRESENT => Ok(Some(self.field("expected", VALUE_SIZE_MAX)?)),
            byte => Err(DecodeError::BadPresence { byte }),
        }
    }

    fn finish(self) -> Result<(), DecodeError> {
        match self.bytes.len() - self.offset {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rng::Rng;
    use crate::kv::quote::{quote_if_needed, Position};

    fn set(key: &str, value: &str) -> Request {
        Request::Set {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        }
    }

    fn key_request(make: fn(Vec<u8>) -> Request, key: &str) -> Request {
        make(key.as_bytes().to_vec())
    }

    fn cas(key: &str, expected: Option<&str>, new: &str) -> Request {
        Request::Cas {
            key: key.as_bytes().to_vec(),
            expected: expected.map(|expected| expected.as_bytes().to_vec()),
            new: new.as_bytes().to_vec(),
        }
    }

    fn reason(line: &str) -> String {
        match parse_request(line) {
            Ok(request) => panic!("{line:?} parsed as {request:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn parse_set_both_forms() {
        let cases = [
            ("SET a=1", set("a", "1")),
            ("set a 1", set("a", "1")),
            ("SeT a=b=c d", set("a", "b=c d")),
            ("SET a hello world", set("a", "hello world")),
            ("SET a   spaced   out", set("a", "spaced   out")),
            ("SET a x=y", set("a", "x=y")),
            ("SET a =y", set("a", "=y")),
            ("SET a=", set("a", "")),
            ("SET a= v", set("a", " v")),
            ("  SET a=1 \r\n", set("a", "1")),
            ("\tSET\tk\tv w\r", set("k", "v w")),
            ("SET ключ значение", set("ключ", "значение")),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_request(line), Ok(expected), "{line:?}");
        }
    }

    #[test]
    fn parse_other_verbs() {
        let get = |key: Vec<u8>| Request::Get { key };
        let del = |key: Vec<u8>| Request::Del { key };
        let stale_get = |key: Vec<u8>| Request::StaleGet { key };
        let cases = [
            ("GET a", key_request(get, "a")),
            ("get  a ", key_request(get, "a")),
            ("DEL a", key_request(del, "a")),
            ("SGET a", key_request(stale_get, "a")),
            ("status", Request::Status),
            ("STATUS\r\n", Request::Status),
            ("snapshot", Request::Snapshot),
            ("transfer B", Request::Transfer { id: "B".into() }),
            (
                "TRANSFER  node-2 ",
                Request::Transfer {
                    id: "node-2".into(),
                },
            ),
            ("CAS a - 1", cas("a", None, "1")),
            ("cas a 1 2", cas("a", Some("1"), "2")),
            ("CAS a 1 new value", cas("a", Some("1"), "new value")),
            ("CAS a x=y -", cas("a", Some("x=y"), "-")),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_request(line), Ok(expected), "{line:?}");
        }
    }

    #[test]
    fn parse_errors_give_short_reasons() {
        let cases = [
            ("", "empty command"),
            (" \r\n", "empty command"),
            ("FOO a", "unknown verb \"FOO\""),
            ("SETX a=1", "unknown verb \"SETX\""),
            ("SET", USAGE_SET),
            ("SET a", USAGE_SET),
            ("SET a \r", USAGE_SET),
            ("SET =1", "empty key"),
            ("GET", USAGE_GET),
            ("GET a b", USAGE_GET),
            ("GET a=b", "key contains '='"),
            ("DEL", USAGE_DEL),
            ("SGET a b", USAGE_SGET),
            ("CAS a 1", USAGE_CAS),
            ("CAS a", USAGE_CAS),
            ("CAS a=b 1 2", "key contains '='"),
            ("STATUS now", USAGE_STATUS),
            ("SNAPSHOT now", USAGE_SNAPSHOT),
            ("TRANSFER", USAGE_TRANSFER),
            ("TRANSFER B C", USAGE_TRANSFER),
            ("SET a\rb=1", "line break inside command"),
            ("SET a=1\nGET a", "line break inside command"),
        ];
        for (line, expected) in cases {
            assert_eq!(reason(line), expected, "{line:?}");
        }
    }

    fn bytes_set(key: &[u8], value: &[u8]) -> Request {
        Request::Set {
            key: key.to_vec(),
            value: value.to_vec(),
        }
    }

    #[test]
    fn parse_quoted_keys_and_values() {
        let get = |key: Vec<u8>| Request::Get { key };
        let del = |key: Vec<u8>| Request::Del { key };
        let stale_get = |key: Vec<u8>| Request::StaleGet { key };
        let cases = [
            (r#"SET "a b"="c d""#, set("a b", "c d")),
            (r#"SET "a b" "c d""#, set("a b", "c d")),
            (r#"SET "a b"=c d"#, set("a b", "c d")),
            (r#"SET "a b"   c d"#, set("a b", "c d")),
            (r#"SET "a b"="#, set("a b", "")),
            (r#"SET k "-""#, set("k", "-")),
            (r#"SET k """#, set("k", "")),
            (r#"SET k="v w""#, set("k", "v w")),
            (r#"SET "a=b" c"#, set("a=b", "c")),
            (r#"SET "a=b"=c"#, set("a=b", "c")),
            (r#"SET k "\"q\" \\ \t""#, set("k", "\"q\" \\ \t")),
            (r#"SET k "NOT_FOUND""#, set("k", "NOT_FOUND")),
            (r#"CAS k "-" new"#, cas("k", Some("-"), "new")),
            (r#"CAS "a b" - "x y""#, cas("a b", None, "x y")),
            (r#"CAS k "" """#, cas("k", Some(""), "")),
            (r#"CAS k "a b" c d"#, cas("k", Some("a b"), "c d")),
            (r#"GET "a b""#, key_request(get, "a b")),
            (r#"DEL "a b""#, key_request(del, "a b")),
            (r#"SGET "a b""#, key_request(stale_get, "a b")),
            (r#"GET "a=b""#, key_request(get, "a=b")),
            (r#"GET "-""#, key_request(get, "-")),
            // Only a leading quote starts a quoted string.
            (r#"GET a"b"#, key_request(get, "a\"b")),
            (r#"SET k v "w""#, set("k", "v \"w\"")),
            (r#"SET k= "v""#, set("k", " \"v\"")),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_request(line), Ok(expected), "{line:?}");
        }
        let binary = parse_request(r#"SET "\x00\xff" "\xc3\x28\n""#);
        assert_eq!(binary, Ok(bytes_set(b"\x00\xff", b"\xc3\x28\n")));
    }

    #[test]
    fn parse_quote_errors_say_what_and_where() {
        let cases = [
            (r#"GET "a"#, "unterminated quote in key"),
            (
                r#"GET "a"b"#,
                "text after the closing quote at byte 3 in key",
            ),
            (
                r#"SET "a"b=c"#,
                "text after the closing quote at byte 3 in key",
            ),
            (r#"SET "a\q"=1"#, "unknown escape \\q at byte 2 in key"),
            (
                r#"SET k "v"x"#,
                "text after the closing quote at byte 3 in value",
            ),
            (
                r#"SET k "v" x"#,
                "text after the closing quote at byte 3 in value",
            ),
            (
                r#"SET k="\x4""#,
                "\\x needs two hex digits at byte 1 in value",
            ),
            (r#"SET k "abc"#, "unterminated quote in value"),
            (r#"CAS k "e x"#, "unterminated quote in expected value"),
            (
                r#"CAS k "e"x n"#,
                "text after the closing quote at byte 3 in expected value",
            ),
            (r#"CAS k - "n"#, "unterminated quote in new value"),
            (r#"CAS "k" "e""#, USAGE_CAS),
            (r#"GET "a" b"#, USAGE_GET),
            (r#"SET "a""#, USAGE_SET),
            (r#"GET """#, "empty key"),
            (r#"SET ""=v"#, "empty key"),
            (r#"CAS "" - v"#, "empty key"),
            (r#"SET k "a\"#, "unterminated quote in value"),
        ];
        for (line, expected) in cases {
            assert_eq!(reason(line), expected, "{line:?}");
        }
    }

    #[test]
    fn parse_limits_hold_on_decoded_bytes() {
        // Four line bytes per key byte, but the key is at the limit.
        let key_max = "\\x6b".repeat(KEY_SIZE_MAX);
        let parsed = parse_request(&format!("GET \"{key_max}\""));
        let get_max = Request::Get {
            key: vec![b'k'; KEY_SIZE_MAX],
        };
        assert_eq!(parsed, Ok(get_max));
        let key_long = "\\x6b".repeat(KEY_SIZE_MAX + 1);
        assert_eq!(
            reason(&format!("GET \"{key_long}\"")),
            "key longer than 1024 bytes"
        );
        let value_long = "v".repeat(VALUE_SIZE_MAX + 1);
        assert_eq!(
            reason(&format!("SET k \"{value_long}\"")),
            "value longer than 65536 bytes"
        );
        let value_max = "v".repeat(VALUE_SIZE_MAX);
        let parsed = parse_request(&format!("CAS k \"{value_max}\" -"));
        assert_eq!(parsed, Ok(cas("k", Some(&value_max), "-")));
    }

    /// A request written with `quote_if_needed` at each position parses
    /// back to itself, for random keys and values.
    #[test]
    fn written_requests_parse_back() {
        let mut random = Rng::new(0x0051_0a7e_0000_0003);
        for _ in 0..20_000 {
            let (key, value) = (random_field(&mut random), random_field(&mut random));
            if key.is_empty() {
                continue;
            }
            let written_key = quote_if_needed(&key, Position::Key);
            let lines = [
                format!(
                    "SET {written_key}={}",
                    quote_if_needed(&value, Position::LineEnd)
                ),
                format!(
                    "SET {written_key} {}",
                    quote_if_needed(&value, Position::LineEnd)
                ),
            ];
            for line in lines {
                assert_eq!(parse_request(&line), Ok(bytes_set(&key, &value)), "{line}");
            }
            let expected = (random.index(3) > 0).then(|| random_field(&mut random));
            let written_expected = expected.as_deref().map_or(ABSENT_EXPECTED.into(), |bytes| {
                quote_if_needed(bytes, Position::Expected)
            });
            let written_new = quote_if_needed(&value, Position::LineEnd);
            let line = format!("CAS {written_key} {written_expected} {written_new}");
            let request = Request::Cas {
                key,
                expected,
                new: value,
            };
            assert_eq!(parse_request(&line), Ok(request), "{line}");
        }
    }

    fn random_field(random: &mut Rng) -> Vec<u8> {
        let pieces: [&[u8]; 12] = [
            b"a",
            b" ",
            b"-",
            b"=",
            b"\"",
            b"\\",
            b"\t",
            b"\n",
            b"\xff",
            b"NOT_FOUND",
            b"x",
            b"\r",
        ];
        (0..random.index(6))
            .flat_map(|_| pieces[random.index(pieces.len())].iter().copied())
            .collect()
    }

    #[test]
    fn parse_unknown_verb_echo_is_bounded_and_escaped() {
        let verb = "X".repeat(1000);
        let expected = format!("unknown verb \"{}\"", "X".repeat(VERB_SHOWN_CHARS_MAX));
        assert_eq!(reason(&verb), expected);
        assert_eq!(reason("F\u{1}O"), "unknown verb \"F\\u{1}O\"");
    }

    #[test]
    fn parse_enforces_size_limits() {
        let key_max = "k".repeat(KEY_SIZE_MAX);
        let value_max = "v".repeat(VALUE_SIZE_MAX);
        let line = format!("SET {key_max}={value_max}");
        assert_eq!(parse_request(&line), Ok(set(&key_max, &value_max)));

        let key_long = "k".repeat(KEY_SIZE_MAX + 1);
        assert_eq!(
            reason(&format!("GET {key_long}")),
            "key longer than 1024 bytes"
        );
        let value_long = "v".repeat(VALUE_SIZE_MAX + 1);
        assert_eq!(
            reason(&format!("SET a {value_long}")),
            "value longer than 65536 bytes"
        );
        assert_eq!(
            reason(&format!("CAS a {value_long} 1")),
            "value longer than 65536 bytes"
        );
        let line_long = format!("SET a={}", "v".repeat(COMMAND_SIZE_MAX));
        assert_eq!(
            parse_request(&line_long),
            Err(ParseError::LineTooLong {
                size: line_long.len()
            })
        );
        // The bound is on the line as sent, padding included.
        let padded = format!("GET a{}", " ".repeat(COMMAND_SIZE_MAX));
        assert!(matches!(
            parse_request(&padded),
            Err(ParseError::LineTooLong { .. })
        ));
    }

    #[test]
    fn into_command_keeps_log_requests_only() {
        assert_eq!(parse_request("STATUS").unwrap().into_command(), None);
        assert_eq!(parse_request("SGET a").unwrap().into_command(), None);
        let command = parse_request("CAS a - b c").unwrap().into_command();
        let expected = Command::Cas {
            key: b"a".to_vec(),
            expected: None,
            new: b"b c".to_vec(),
        };
        assert_eq!(command, Some(expected));
    }

    fn sample_commands() -> Vec<Command> {
        let bytes = |text: &str| text.as_bytes().to_vec();
        vec![
            Command::Set {
                key: bytes("a"),
                value: bytes("1"),
            },
            Command::Set {
                key: bytes("empty"),
                value: Vec::new(),
            },
            Command::Set {
                key: vec![b'k'; KEY_SIZE_MAX],
                value: vec![0xff; VALUE_SIZE_MAX],
            },
            Command::Get { key: bytes("a") },
            Command::Del { key: bytes("a") },
            Command::Cas {
                key: bytes("a"),
                expected: None,
                new: bytes("x"),
            },
            Command::Cas {
                key: bytes("a"),
                expected: Some(Vec::new()),
                new: Vec::new(),
            },
            Command::Cas {
                key: vec![b'k'; KEY_SIZE_MAX],
                expected: Some(vec![1; VALUE_SIZE_MAX]),
                new: vec![2; VALUE_SIZE_MAX],
            },
        ]
    }

    fn encoded(command: &Command) -> Vec<u8> {
        let mut out = Vec::new();
        command.encode(&mut out);
        out
    }

    #[test]
    fn encode_decode_round_trip() {
        for command in sample_commands() {
            let bytes = encoded(&command);
            assert_eq!(bytes.len(), command.encoded_size());
            assert_eq!(Command::decode(&bytes), Ok(command));
        }
    }

    #[test]
    fn encode_appends_and_matches_layout() {
        let mut out = vec![9];
        Command::Set {
            key: b"ab".to_vec(),
            value: b"c".to_vec(),
        }
        .encode(&mut out);
        assert_eq!(out, [9, 1, 0, 0, 0, 2, b'a', b'b', 0, 0, 0, 1, b'c']);
        let cas = Command::Cas {
            key: b"k".to_vec(),
            expected: Some(b"e".to_vec()),
            new: b"n".to_vec(),
        };
        let expected = [4, 0, 0, 0, 1, b'k', 1, 0, 0, 0, 1, b'e', 0, 0, 0, 1, b'n'];
        assert_eq!(encoded(&cas), expected);
        let largest = sample_commands().iter().map(Command::encoded_size).max();
        assert_eq!(largest, Some(COMMAND_ENCODED_SIZE_MAX));
    }

    #[test]
    fn decode_rejects_every_proper_prefix() {
        for command in sample_commands() {
            let bytes = encoded(&command);
            for size in 0..bytes.len() {
                let result = Command::decode(&bytes[..size]);
                assert!(
                    matches!(result, Err(DecodeError::Truncated { .. })),
                    "{size}: {result:?}"
                );
            }
        }
    }

    #[test]
    fn decode_errors_are_precise() {
        let truncated_op = DecodeError::Truncated {
            field: "op",
            size_needed: 1,
            size_available: 0,
        };
        assert_eq!(Command::decode(&[]), Err(truncated_op));
        assert_eq!(Command::decode(&[7]), Err(DecodeError::UnknownOp { op: 7 }));
        assert_eq!(
            Command::decode(&[2, 0, 0, 0, 1, b'a', 0]),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
        assert_eq!(
            Command::decode(&[3, 0, 0, 0, 0]),
            Err(DecodeError::KeyEmpty)
        );
        assert_eq!(
            Command::decode(&[4, 0, 0, 0, 1, b'a', 2]),
            Err(DecodeError::BadPresence { byte: 2 })
        );
        assert_eq!(
            Command::decode(&[2, 0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::FieldTooLong {
                field: "key",
                size: u32::MAX as usize,
                size_max: KEY_SIZE_MAX
            })
        );
        assert_eq!(
            Command::decode(&[2, 0, 0, 0, 5, b'a']),
            Err(DecodeError::Truncated {
                field: "key",
                size_needed: 5,
                size_available: 1
            })
        );
    }

    #[test]
    fn decode_rejects_fields_one_over_the_limit() {
        let mut bytes = encoded(&Command::Set {
            key: b"a".to_vec(),
            value: Vec::new(),
        });
        let over = u32::try_from(VALUE_SIZE_MAX + 1).unwrap();
        bytes.truncate(bytes.len() - LENGTH_PREFIX_SIZE);
        bytes.extend_from_slice(&over.to_be_bytes());
        bytes.resize(bytes.len() + VALUE_SIZE_MAX + 1, b'v');
        assert_eq!(
            Command::decode(&bytes),
            Err(DecodeError::FieldTooLong {
                field: "value",
                size: VALUE_SIZE_MAX + 1,
                size_max: VALUE_SIZE_MAX
            })
        );
    }

    /// Random bytes, then valid encodings with random damage: decode must
    /// never panic, and whatever it accepts must re-encode to the same bytes
    /// (the encoding is canonical).
    #[test]
    fn decode_fuzz_never_panics() {
        let mut random = Rng::new(0x9e37_79b9_7f4a_7c15);
        let samples: Vec<Vec<u8>> = sample_commands().iter().map(encoded).collect();
        let mut accepted_count = 0;
        for round in 0..200_000 {
            let bytes = match round % 2 {
                0 => random_bytes(&mut random),
                _ => damaged(&mut random, &samples),
            };
            if let Ok(command) = Command::decode(&bytes) {
                assert_eq!(encoded(&command), bytes);
                accepted_count += 1;
            }
        }
        assert!(
            accepted_count > 0,
            "the fuzz loop never reached a valid input"
        );
    }

    fn random_bytes(random: &mut Rng) -> Vec<u8> {
        let size = random.index(24);
        let mut bytes: Vec<u8> = (0..size).map(|_| random.next_u64() as u8).collect();
        // Small numbers make valid ops and short lengths likely.
        for byte in bytes.iter_mut() {
            if random.index(2) == 0 {
                *byte %= 6;
            }
        }
        bytes
    }

    fn damaged(random: &mut Rng, samples: &[Vec<u8>]) -> Vec<u8> {
        let mut bytes = samples[random.index(samples.len())].clone();
        match random.index(3) {
            0 => {
                let index = random.index(bytes.len());
                bytes[index] ^= 1 << random.index(8);
            }
            1 => bytes.truncate(random.index(bytes.len() + 1)),
            _ => bytes.push(random.next_u64() as u8),
        }
        bytes
    }

    /// Random lines from a small alphabet: parsing never panics, and every
    /// log request survives encode and decode unchanged.
    #[test]
    fn parse_fuzz_round_trips_through_the_log_encoding() {
        let alphabet = [
            "SET", "get", "DEL", "CAS", "SGET", "STATUS", " ", "=", "-", "a", "é", "\t", "\r",
            "\"", "\\", "\\x",
        ];
        let mut random = Rng::new(42);
        for _ in 0..100_000 {
            let line: String = (0..random.index(8))
                .map(|_| alphabet[random.index(alphabet.len())])
                .collect();
            let Ok(request) = parse_request(&line) else {
                continue;
            };
            if let Some(command) = request.into_command() {
                assert_eq!(Command::decode(&encoded(&command)), Ok(command));
            }
        }
    }
}
