//! Double-quoted keys and values, in redis-cli's convention: the one place
//! that writes and reads them, for the command parser and for every reply.
//!
//! A quoted string is `"…"` with backslash escapes: `\"`, `\\`, `\n`, `\r`,
//! `\t`, `\a`, `\b`, and `\xHH` for any byte (two hex digits, either case).
//! Any other escape is an error. Quoting writes those escapes for `"`, `\`
//! and control characters, and `\xHH` for other control characters and for
//! bytes that are not UTF-8, so a quoted string is one line of UTF-8 text
//! and reading it back gives the bytes that were quoted.
//!
//! Only a leading `"` starts a quoted string: a bare word with a `"` inside
//! it (`a"b`) is taken as it is, as it always was.

use std::borrow::Cow;
use std::fmt;

/// Where a key or value stands on its line, which decides what would make
/// its bare form ambiguous.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    /// A key: a word, which an `=` also ends in `SET key=value`.
    Key,
    /// A value with more text after it: whitespace would end it early.
    Word,
    /// A CAS expected value: a word where a bare `-` means "absent".
    Expected,
    /// A value that runs to the end of the line: only whitespace at its
    /// edges would be lost (readers trim the line).
    LineEnd,
}

/// The bare word a CAS expected value of "absent" is written as.
pub const ABSENT_EXPECTED: &str = "-";

/// Why a quoted string does not parse. Offsets count bytes from the
/// opening quote, which is byte 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuoteError {
    /// The line ended before the closing quote.
    Unterminated,
    /// A backslash followed by a character that is no escape.
    UnknownEscape { offset: usize, escape: char },
    /// `\x` not followed by two hex digits.
    BadHexEscape { offset: usize },
    /// Text right after the closing quote, where whitespace or the end of
    /// the line must be.
    TextAfterQuote { offset: usize },
}

/// A key or value as written: bare text, or the bytes a quoted string
/// decodes to. The parser needs to know which: a bare `-` means absent and
/// a bare `=` ends a key, but quoted ones are plain bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token<'a> {
    Bare(&'a str),
    Quoted(Vec<u8>),
}

impl fmt::Display for QuoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuoteError::Unterminated => write!(f, "unterminated quote"),
            QuoteError::UnknownEscape { offset, escape } => {
                write!(
                    f,
                    "unknown escape \\{} at byte {offset}",
                    escape.escape_debug()
                )
            }
            QuoteError::BadHexEscape { offset } => {
                write!(f, "\\x needs two hex digits at byte {offset}")
            }
            QuoteError::TextAfterQuote { offset } => {
                write!(f, "text after the closing quote at byte {offset}")
            }
        }
    }
}

impl std::error::Error for QuoteError {}

impl Token<'_> {
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Token::Bare(text) => text.as_bytes().to_vec(),
            Token::Quoted(bytes) => bytes,
        }
    }
}

/// `bytes` as they can be written at `position`: as they are when that is
/// unambiguous (so plain keys and values read as they always did), quoted
/// otherwise.
pub fn quote_if_needed(bytes: &[u8], position: Position) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) if !needs_quotes(text, position) => Cow::Borrowed(text),
        _ => Cow::Owned(quote(bytes)),
    }
}

/// What `quote_if_needed` gives, written straight into `out`: a reply line
/// is formatted into its frame without a String for a quoted value.
pub fn write_if_needed(out: &mut impl fmt::Write, bytes: &[u8], position: Position) -> fmt::Result {
    match std::str::from_utf8(bytes) {
        Ok(text) if !needs_quotes(text, position) => out.write_str(text),
        _ => write_quoted(out, bytes),
    }
}

/// Empty text, a quote (a leading one would start a quoted string), a
/// backslash (so no reader wonders whether it escapes) and control
/// characters (which could break the line) need quotes anywhere; the rest
/// depends on what may follow on the line.
fn needs_quotes(text: &str, position: Position) -> bool {
    if text.is_empty() || text.contains(is_escaped) {
        return true;
    }
    let has_whitespace = text.contains(char::is_whitespace);
    match position {
        Position::Key => has_whitespace || text.contains('='),
        Position::Word => has_whitespace,
        Position::Expected => has_whitespace || text == ABSENT_EXPECTED,
        Position::LineEnd => {
            text.starts_with(char::is_whitespace) || text.ends_with(char::is_whitespace)
        }
    }
}

/// Characters a quoted string writes as an escape.
fn is_escaped(character: char) -> bool {
    matches!(character, '"' | '\\') || character.is_control()
}

/// `bytes` as a quoted string, always.
pub fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    write_quoted(&mut out, bytes).expect("a String takes any text");
    out
}

fn write_quoted(out: &mut impl fmt::Write, bytes: &[u8]) -> fmt::Result {
    out.write_char('"')?;
    for chunk in bytes.utf8_chunks() {
        for character in chunk.valid().chars() {
            write_escaped(out, character)?;
        }
        for &byte in chunk.invalid() {
            write_hex(out, byte)?;
        }
    }
    out.write_char('"')
}

fn write_escaped(out: &mut impl fmt::Write, character: char) -> fmt::Result {
    let escape = match character {
        '"' => "\\\"",
        '\\' => "\\\\",
        '\n' => "\\n",
        '\r' => "\\r",
        '\t' => "\\t",
        '\u{7}' => "\\a",
        '\u{8}' => "\\b",
        character if character.is_control() => {
            // C0, DEL and C1 controls: each UTF-8 byte as \xHH.
            let mut buffer = [0; 4];
            for &byte in character.encode_utf8(&mut buffer).as_bytes() {
                write_hex(out, byte)?;
            }
            return Ok(());
        }
        character => return out.write_char(character),
    };
    out.write_str(escape)
}

fn write_hex(out: &mut impl fmt::Write, byte: u8) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.write_str("\\x")?;
    out.write_char(char::from(DIGITS[usize::from(byte >> 4)]))?;
    out.write_char(char::from(DIGITS[usize::from(byte & 0xf)]))
}

/// Reads the quoted string `text` starts with: its bytes, and the text
/// after its closing quote (whatever that is; the caller decides).
pub fn parse_quoted(text: &str) -> Result<(Vec<u8>, &str), QuoteError> {
    assert!(text.starts_with('"'), "the caller checked for the quote");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 1;
    while index < bytes.len() {
        match bytes[index] {
            // Both are ASCII, so `index + 1` is a character boundary.
            b'"' => return Ok((out, &text[index + 1..])),
            b'\\' => index = unescape(text, index, &mut out)?,
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    Err(QuoteError::Unterminated)
}

/// Decodes the escape whose backslash is at `offset` in `text`; returns the
/// offset after it.
fn unescape(text: &str, offset: usize, out: &mut Vec<u8>) -> Result<usize, QuoteError> {
    let bytes = text.as_bytes();
    let Some(&letter) = bytes.get(offset + 1) else {
        return Err(QuoteError::Unterminated);
    };
    let byte = match letter {
        b'"' => b'"',
        b'\\' => b'\\',
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'a' => 0x07,
        b'b' => 0x08,
        b'x' => {
            let digit = |index: usize| bytes.get(index).and_then(|&byte| hex_digit(byte));
            let (Some(high), Some(low)) = (digit(offset + 2), digit(offset + 3)) else {
                return Err(QuoteError::BadHexEscape { offset });
            };
            out.push(high << 4 | low);
            return Ok(offset + 4);
        }
        _ => {
            // After the ASCII backslash: a character boundary.
            let escape = text[offset + 1..].chars().next().unwrap_or('?');
            return Err(QuoteError::UnknownEscape { offset, escape });
        }
    };
    out.push(byte);
    Ok(offset + 2)
}

fn hex_digit(byte: u8) -> Option<u8> {
    let digit = char::from(byte).to_digit(16)?;
    u8::try_from(digit).ok()
}

/// Splits off the first word. `text` starts with a non-whitespace character
/// or is empty; the rest starts at the next word, or is empty.
pub fn split_word(text: &str) -> (&str, &str) {
    match text.find(char::is_whitespace) {
        Some(index) => (&text[..index], text[index..].trim_start()),
        None => (text, ""),
    }
}

/// A key or value that more text may follow: a quoted string, which must
/// end at whitespace or at the end of `text`, or a bare word up to the next
/// whitespace. The rest starts at the next word, or is empty.
pub fn parse_token(text: &str) -> Result<(Token<'_>, &str), QuoteError> {
    if !text.starts_with('"') {
        let (word, rest) = split_word(text);
        return Ok((Token::Bare(word), rest));
    }
    let (bytes, after) = parse_quoted(text)?;
    if !after.is_empty() && !after.starts_with(char::is_whitespace) {
        let offset = text.len() - after.len();
        return Err(QuoteError::TextAfterQuote { offset });
    }
    Ok((Token::Quoted(bytes), after.trim_start()))
}

/// A value that runs to the end of `text`: a quoted string with nothing
/// but whitespace after it, or else all of `text` as it is.
pub fn parse_rest(text: &str) -> Result<Token<'_>, QuoteError> {
    if !text.starts_with('"') {
        return Ok(Token::Bare(text));
    }
    let (bytes, after) = parse_quoted(text)?;
    if !after.trim_end().is_empty() {
        let offset = text.len() - after.len();
        return Err(QuoteError::TextAfterQuote { offset });
    }
    Ok(Token::Quoted(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rng::Rng;

    fn quoted(text: &str) -> Result<Vec<u8>, QuoteError> {
        parse_quoted(text).map(|(bytes, _)| bytes)
    }

    #[test]
    fn plain_text_stays_bare() {
        let positions = [
            Position::Key,
            Position::Word,
            Position::Expected,
            Position::LineEnd,
        ];
        for text in ["5", "hello", "c1-2", "NOT_FOUND", "ключ", "a'b"] {
            for position in positions {
                assert_eq!(
                    quote_if_needed(text.as_bytes(), position),
                    text,
                    "{position:?}"
                );
            }
        }
        assert_eq!(
            quote_if_needed(b"hello world", Position::LineEnd),
            "hello world"
        );
        assert_eq!(quote_if_needed(b"a=b", Position::Word), "a=b");
        assert_eq!(quote_if_needed(b"-", Position::Word), "-");
        assert_eq!(quote_if_needed(b"-", Position::Key), "-");
    }

    #[test]
    fn ambiguous_text_is_quoted() {
        let cases: [(&[u8], Position, &str); 14] = [
            (b"", Position::LineEnd, r#""""#),
            (b"", Position::Word, r#""""#),
            (b"a b", Position::Word, r#""a b""#),
            (b"a b", Position::Key, r#""a b""#),
            (b" a", Position::LineEnd, r#"" a""#),
            (b"a ", Position::LineEnd, r#""a ""#),
            (b"a=b", Position::Key, r#""a=b""#),
            (b"-", Position::Expected, r#""-""#),
            (b"\"x", Position::LineEnd, r#""\"x""#),
            (b"a\"b", Position::Word, r#""a\"b""#),
            (b"a\\b", Position::LineEnd, r#""a\\b""#),
            (b"a\tb\r\n", Position::LineEnd, r#""a\tb\r\n""#),
            (
                b"\x00\x07\x08\x1b\x7f",
                Position::Word,
                r#""\x00\a\b\x1b\x7f""#,
            ),
            (b"\xff\xc3", Position::LineEnd, r#""\xff\xc3""#),
        ];
        for (bytes, position, expected) in cases {
            assert_eq!(quote_if_needed(bytes, position), expected, "{bytes:?}");
        }
        // A C1 control is escaped byte by byte; other UTF-8 stays as it is.
        assert_eq!(quote("é\u{85}".as_bytes()), r#""é\xc2\x85""#);
    }

    #[test]
    fn parse_quoted_decodes_every_escape() {
        let cases: [(&str, &[u8]); 7] = [
            (r#""""#, b""),
            (r#""a b""#, b"a b"),
            (r#""\"\\\n\r\t\a\b""#, b"\"\\\n\r\t\x07\x08"),
            (r#""\x00\xff\xAb""#, b"\x00\xff\xab"),
            (r#""a=b -""#, b"a=b -"),
            (r#""é""#, "é".as_bytes()),
            (r#""'single'""#, b"'single'"),
        ];
        for (text, expected) in cases {
            assert_eq!(quoted(text), Ok(expected.to_vec()), "{text}");
        }
        assert_eq!(parse_quoted(r#""a" rest"#), Ok((b"a".to_vec(), " rest")));
        assert_eq!(parse_quoted(r#""a"=b"#), Ok((b"a".to_vec(), "=b")));
    }

    #[test]
    fn parse_quoted_errors_say_what_and_where() {
        let cases = [
            (r#"""#, QuoteError::Unterminated),
            (r#""abc"#, QuoteError::Unterminated),
            (r#""abc\"#, QuoteError::Unterminated),
            (r#""ab\"#, QuoteError::Unterminated),
            (
                r#""a\qb""#,
                QuoteError::UnknownEscape {
                    offset: 2,
                    escape: 'q',
                },
            ),
            (
                r#""\é""#,
                QuoteError::UnknownEscape {
                    offset: 1,
                    escape: 'é',
                },
            ),
            (r#""\x4""#, QuoteError::BadHexEscape { offset: 1 }),
            (r#""ab\xg0""#, QuoteError::BadHexEscape { offset: 3 }),
            (r#""\x"#, QuoteError::BadHexEscape { offset: 1 }),
        ];
        for (text, expected) in cases {
            assert_eq!(quoted(text), Err(expected), "{text}");
        }
        let reason = |error: QuoteError| error.to_string();
        assert_eq!(reason(QuoteError::Unterminated), "unterminated quote");
        let unknown = QuoteError::UnknownEscape {
            offset: 2,
            escape: 'q',
        };
        assert_eq!(reason(unknown), "unknown escape \\q at byte 2");
        let hex = QuoteError::BadHexEscape { offset: 1 };
        assert_eq!(reason(hex), "\\x needs two hex digits at byte 1");
        let after = QuoteError::TextAfterQuote { offset: 3 };
        assert_eq!(reason(after), "text after the closing quote at byte 3");
    }

    #[test]
    fn tokens_end_at_whitespace_and_rests_at_the_line_end() {
        let bare = |text| Ok((Token::Bare(text), ""));
        assert_eq!(parse_token("a"), bare("a"));
        assert_eq!(parse_token("a\"b"), bare("a\"b"));
        assert_eq!(parse_token("a  b c"), Ok((Token::Bare("a"), "b c")));
        let quoted_token = Token::Quoted(b"a b".to_vec());
        assert_eq!(parse_token(r#""a b"  c"#), Ok((quoted_token, "c")));
        assert_eq!(
            parse_token(r#""a"b"#),
            Err(QuoteError::TextAfterQuote { offset: 3 })
        );
        assert_eq!(parse_rest("a b "), Ok(Token::Bare("a b ")));
        assert_eq!(parse_rest(r#""a b" "#), Ok(Token::Quoted(b"a b".to_vec())));
        assert_eq!(
            parse_rest(r#""a" b"#),
            Err(QuoteError::TextAfterQuote { offset: 3 })
        );
    }

    fn random_bytes(random: &mut Rng) -> Vec<u8> {
        // Quotes, backslashes, spaces, `-`, `=`, controls, UTF-8 pieces and
        // stray bytes are the interesting cases; any byte may appear.
        let alphabet: &[&[u8]] = &[
            b"\"",
            b"\\",
            b" ",
            b"-",
            b"=",
            b"a",
            b"x",
            b"\n",
            b"\t",
            b"\x00",
            b"\x7f",
            b"\xff",
            "é".as_bytes(),
            "\u{85}".as_bytes(),
            b"\xc3",
            b"NOT_FOUND",
        ];
        let mut bytes = Vec::new();
        for _ in 0..random.index(12) {
            match random.index(4) {
                0 => bytes.push(random.next_u64() as u8),
                _ => bytes.extend_from_slice(alphabet[random.index(alphabet.len())]),
            }
        }
        bytes
    }

    /// For arbitrary bytes at every position: the written form reads back
    /// as the same bytes, through the reader that position uses.
    #[test]
    fn quote_round_trips_arbitrary_bytes() {
        let mut random = Rng::new(0x5151_7a7a_0000_0011);
        for _ in 0..50_000 {
            let bytes = random_bytes(&mut random);
            assert_eq!(quoted(&quote(&bytes)), Ok(bytes.clone()));
            let word = quote_if_needed(&bytes, Position::Word);
            let (token, rest) = parse_token(&word).expect("a written word parses");
            assert_eq!((token.into_bytes(), rest), (bytes.clone(), ""), "{word}");
            // A bare `-` would mean absent, a bare `=` would end the key.
            let expected = quote_if_needed(&bytes, Position::Expected);
            let (token, _) = parse_token(&expected).expect("a written expected value parses");
            assert_ne!(token, Token::Bare(ABSENT_EXPECTED));
            assert_eq!(token.into_bytes(), bytes, "{expected}");
            let key = quote_if_needed(&bytes, Position::Key);
            let (token, _) = parse_token(&key).expect("a written key parses");
            assert!(!matches!(token, Token::Bare(text) if text.contains('=')));
            assert_eq!(token.into_bytes(), bytes, "{key}");
            let line_end = quote_if_needed(&bytes, Position::LineEnd);
            let token = parse_rest(line_end.trim()).expect("a written rest parses");
            assert_eq!(token.into_bytes(), bytes, "{line_end}");
            let written = quote(&bytes);
            assert!(!written.contains(char::is_control), "{written}");
            for position in [
                Position::Key,
                Position::Word,
                Position::Expected,
                Position::LineEnd,
            ] {
                let mut direct = String::new();
                write_if_needed(&mut direct, &bytes, position).expect("into a String");
                assert_eq!(direct, quote_if_needed(&bytes, position), "{position:?}");
            }
        }
    }
}
