//! etcd mode: the same commands as raftlite mode, sent to etcd 3.4 through its
//! gRPC-gateway JSON API over HTTP/1.1 keep-alive. `SET k v` becomes
//! `POST /v3/kv/put`, `GET k` a linearizable `POST /v3/kv/range`. Responses
//! are read back into raftlite's replies (OK, VALUE, NOT_FOUND, UNAVAILABLE),
//! so the driver's accounting applies unchanged.
//!
//! etcd has no sessions: the driver's setup `REGISTER` becomes a range of
//! `PROBE_KEY`, a linearizable read that proves the member is connected and
//! its cluster has a leader, answered as session 0. etcd never sees the
//! session or sequence numbers.
//!
//! Pure: no IO; the connection moves the bytes.

use raftlite::constants::{KEY_SIZE_MAX, VALUE_SIZE_MAX};
use raftlite::core::{LogIndex, Term};
use raftlite::reply::{Answer, Reply};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// The key setup reads; outside the workload's `k<digits>` keys.
pub const PROBE_KEY: &str = "bench-probe";

/// Status line and headers: etcd sends about 150 bytes.
const HEADER_SIZE_MAX: usize = 16 * 1024;

/// The largest response: a range of one key holding the largest value, both
/// base64 inside JSON (the header object, revisions and field names take
/// under 1 KiB), after the HTTP header.
pub const RESPONSE_SIZE_MAX: usize = 256 * 1024;
const _: () = assert!(
    HEADER_SIZE_MAX + base64_size(KEY_SIZE_MAX) + base64_size(VALUE_SIZE_MAX) + 1024
        <= RESPONSE_SIZE_MAX
);

/// Bytes one incomplete response may occupy. Chunk size lines add a few
/// bytes per chunk, so a real body of chunks stays far below this; a peer
/// that sends more without finishing a response is not answering.
const BUFFERED_SIZE_MAX: usize = HEADER_SIZE_MAX + 2 * RESPONSE_SIZE_MAX;

/// Bytes of an error body quoted in a reply (it ends up in `last_error`).
const ERROR_QUOTE_SIZE_MAX: usize = 160;

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// What was asked, so the response can be read as the right reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Setup's stand-in for REGISTER: a range of `PROBE_KEY`.
    Probe,
    Put,
    Range,
}

/// One parsed HTTP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Padded standard base64 of `size` bytes: what grpc-gateway expects for
/// protobuf `bytes` fields.
pub const fn base64_size(size: usize) -> usize {
    size.div_ceil(3) * 4
}

pub fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(base64_size(bytes.len()));
    for group in bytes.chunks(3) {
        let padded = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let bits = u32::from(padded[0]) << 16 | u32::from(padded[1]) << 8 | u32::from(padded[2]);
        for position in 0..4 {
            if position <= group.len() {
                let sextet = (bits >> (18 - 6 * position)) & 0x3f;
                out.push(char::from(BASE64_ALPHABET[sextet as usize]));
            } else {
                out.push('=');
            }
        }
    }
    assert_eq!(out.len(), base64_size(bytes.len()));
    out
}

/// The body of a put (key and value) or a range (key alone), both base64.
#[derive(Serialize)]
struct KeyValue {
    key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
}

/// What is read of a 200 response's body: every etcd KV response has a
/// header, and a range that found its key has `kvs` (the gateway leaves
/// empty fields out). Nothing inside them is read.
#[derive(Deserialize)]
struct KvBody {
    header: Option<IgnoredAny>,
    #[serde(default)]
    kvs: Vec<IgnoredAny>,
}

/// Appends the HTTP request for one workload command (`REGISTER`, `GET k`
/// or `SET k v`) and returns what it asks. `host` fills the Host header,
/// which HTTP/1.1 requires and etcd's Go server checks.
pub fn encode_request(command: &str, host: SocketAddr, out: &mut Vec<u8>) -> Request {
    let mut words = command.splitn(3, ' ');
    let (request, path, key, value) = match (words.next(), words.next(), words.next()) {
        (Some("REGISTER"), None, None) => (Request::Probe, "/v3/kv/range", PROBE_KEY, None),
        (Some("GET"), Some(key), None) => (Request::Range, "/v3/kv/range", key, None),
        (Some("SET"), Some(key), Some(value)) => (Request::Put, "/v3/kv/put", key, Some(value)),
        // The workload builds every command; anything else is a bug here.
        _ => panic!("etcd mode cannot send {command:?}"),
    };
    let body = KeyValue {
        key: base64(key.as_bytes()),
        value: value.map(|value| base64(value.as_bytes())),
    };
    let body = serde_json::to_vec(&body).expect("two strings are JSON");
    encode_post(path, &body, host, out);
    request
}

/// Appends a POST of the JSON `body` to `path`: every gateway call is one.
pub fn encode_post(path: &str, body: &[u8], host: SocketAddr, out: &mut Vec<u8>) {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
}

/// The raftlite reply the driver understands for `response` to `request`.
/// Any status but 200 is a definite failure (gRPC errors arrive as 4xx or
/// 5xx with a JSON error body), counted as UNAVAILABLE. The driver only
/// counts outcomes, so a put's revision and a range's value are not read:
/// OK carries index and term 0, VALUE an empty value.
pub fn reply_for(request: Request, response: &Response) -> Answer {
    if response.status != 200 {
        let reason = format!("etcd HTTP {}: {}", response.status, quote(&response.body));
        return Reply::Unavailable(reason.into()).into();
    }
    let body: KvBody = match serde_json::from_slice(&response.body) {
        Ok(body) => body,
        Err(error) => {
            let quoted = quote(&response.body);
            return Answer::Unreadable(format!("etcd sent no JSON ({error}): {quoted}"));
        }
    };
    if body.header.is_none() {
        // Every etcd KV response has a header; a 200 without one came from
        // something that is not etcd's gateway.
        return Answer::Unreadable(format!("no etcd header: {}", quote(&response.body)));
    }
    let reply = match request {
        Request::Probe => Reply::Session { id: 0 },
        Request::Put => Reply::Ok {
            index: LogIndex(0),
            term: Term(0),
        },
        Request::Range if body.kvs.is_empty() => Reply::NotFound,
        Request::Range => Reply::Value(Vec::new()),
    };
    reply.into()
}

/// One connection's response side: bytes in, whole responses out. One
/// request is outstanding at a time, and HTTP/1.1 answers in order, so the
/// next response is the awaited request's.
#[derive(Debug, Default)]
pub struct HttpCodec {
    buffer: Vec<u8>,
    /// Invariant: filled <= buffer.len(); bytes past `filled` are spare room.
    filled: usize,
    awaited: Option<Request>,
}

impl HttpCodec {
    /// Appends the request for `command` and awaits its response.
    pub fn encode(&mut self, command: &str, host: SocketAddr, out: &mut Vec<u8>) {
        self.awaited = Some(encode_request(command, host, out));
    }

    /// Room for the next read; never empty (an empty slice reads 0, which
    /// looks like the peer closing).
    pub fn spare(&mut self, size: usize) -> &mut [u8] {
        assert!(size > 0);
        if self.buffer.len() < self.filled + size {
            self.buffer.resize(self.filled + size, 0);
        }
        &mut self.buffer[self.filled..self.filled + size]
    }

    pub fn commit(&mut self, count: usize) {
        assert!(self.filled + count <= self.buffer.len());
        self.filled += count;
    }

    /// The awaited request's reply once its whole response is in; `Err`
    /// when the bytes are not a response or nothing was asked.
    pub fn take_reply(&mut self) -> Result<Option<Answer>, String> {
        let Some((response, consumed)) = parse_response(&self.buffer[..self.filled])? else {
            if self.filled > BUFFERED_SIZE_MAX {
                return Err(format!(
                    "over {BUFFERED_SIZE_MAX} bytes without a whole response"
                ));
            }
            return Ok(None);
        };
        self.buffer.copy_within(consumed..self.filled, 0);
        self.filled -= consumed;
        let Some(request) = self.awaited.take() else {
            return Err("etcd sent a response nobody asked for".to_string());
        };
        Ok(Some(reply_for(request, &response)))
    }

    /// Forgets the connection's bytes and request: a new socket starts clean.
    pub fn reset(&mut self) {
        self.filled = 0;
        self.awaited = None;
    }
}

/// The first complete response in `bytes` and its length; `Ok(None)` while
/// it is incomplete. Bodies are framed by Content-Length or chunked transfer
/// coding: Go's server sets Content-Length when the whole body fits its
/// 2 KiB buffer and goes chunked beyond (a range of a large value).
pub fn parse_response(bytes: &[u8]) -> Result<Option<(Response, usize)>, String> {
    let Some(head_end) = find(bytes, b"\r\n\r\n") else {
        if bytes.len() > HEADER_SIZE_MAX {
            return Err(format!("HTTP header over {HEADER_SIZE_MAX} bytes"));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&bytes[..head_end])
        .map_err(|_| "HTTP header is not text".to_string())?;
    let (status, framing) = parse_head(head)?;
    let body_start = head_end + 4;
    let rest = &bytes[body_start..];
    let framed = match framing {
        Framing::Length(length) if rest.len() < length => None,
        Framing::Length(length) => Some((rest[..length].to_vec(), length)),
        Framing::Chunked => parse_chunked(rest)?,
    };
    Ok(framed.map(|(body, size)| (Response { status, body }, body_start + size)))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
}

/// Status code and body framing from the status line and headers.
fn parse_head(head: &str) -> Result<(u16, Framing), String> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut fields = status_line.split(' ');
    let status = match (fields.next(), fields.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") => code.parse::<u16>().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("bad HTTP status line {status_line:?}"))?;
    let mut framing = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("bad HTTP header line {line:?}"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let length = value
                .parse::<usize>()
                .map_err(|_| format!("bad Content-Length {value:?}"))?;
            if length > RESPONSE_SIZE_MAX {
                return Err(format!(
                    "HTTP body of {length} bytes; at most {RESPONSE_SIZE_MAX}"
                ));
            }
            framing = framing.or(Some(Framing::Length(length)));
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked wins over a Content-Length (RFC 9112 §6.3).
            if value.to_ascii_lowercase().ends_with("chunked") {
                framing = Some(Framing::Chunked);
            }
        }
    }
    // A 204 or 304 has no body; any other response without a length would
    // run to the end of the connection, which keep-alive cannot use.
    match (framing, status) {
        (Some(framing), _) => Ok((status, framing)),
        (None, 204 | 304) => Ok((status, Framing::Length(0))),
        (None, _) => Err(format!("HTTP {status} response without a length")),
    }
}

/// A chunked body (size line, data, CRLF; a zero size ends it, after
/// optional trailers and an empty line) and the bytes it took.
fn parse_chunked(bytes: &[u8]) -> Result<Option<(Vec<u8>, usize)>, String> {
    let mut body = Vec::new();
    let mut position = 0;
    loop {
        let Some(line_size) = find(&bytes[position..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&bytes[position..position + line_size])
            .map_err(|_| "chunk size line is not text".to_string())?;
        // Chunk extensions (";name=value") are allowed and ignored.
        let digits = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(digits, 16)
            .map_err(|_| format!("bad chunk size line {line:?}"))?;
        position += line_size + 2;
        if size == 0 {
            return Ok(end_of_trailers(bytes, position).map(|end| (body, end)));
        }
        if body.len() + size > RESPONSE_SIZE_MAX {
            return Err(format!("chunked HTTP body over {RESPONSE_SIZE_MAX} bytes"));
        }
        if bytes.len() < position + size + 2 {
            return Ok(None);
        }
        if &bytes[position + size..position + size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".to_string());
        }
        body.extend_from_slice(&bytes[position..position + size]);
        position += size + 2;
    }
}

/// Where the trailer section starting at `position` ends (after its empty
/// line), if it is all in.
fn end_of_trailers(bytes: &[u8], mut position: usize) -> Option<usize> {
    loop {
        let line_size = find(&bytes[position..], b"\r\n")?;
        position += line_size + 2;
        if line_size == 0 {
            return Some(position);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A short, one-line rendering of an error body.
fn quote(body: &[u8]) -> String {
    let shown = &body[..body.len().min(ERROR_QUOTE_SIZE_MAX)];
    String::from_utf8_lossy(shown).replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
        // Every sextet value, including the two symbols.
        assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
        assert_eq!(base64(&[0, 0, 0]), "AAAA");
    }

    fn request_text(command: &str) -> (Request, String) {
        let host: SocketAddr = "127.0.0.1:22379".parse().expect("address");
        let mut out = Vec::new();
        let request = encode_request(command, host, &mut out);
        (request, String::from_utf8(out).expect("requests are ASCII"))
    }

    #[test]
    fn a_set_is_a_put_with_base64_key_and_value() {
        let (request, text) = request_text("SET k0000042 c1-vvvv");
        assert_eq!(request, Request::Put);
        let body = r#"{"key":"azAwMDAwNDI=","value":"YzEtdnZ2dg=="}"#;
        let expected = format!(
            "POST /v3/kv/put HTTP/1.1\r\nHost: 127.0.0.1:22379\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn a_get_and_the_setup_probe_are_ranges() {
        let (request, text) = request_text("GET k0000042");
        assert_eq!(request, Request::Range);
        assert!(text.starts_with("POST /v3/kv/range HTTP/1.1\r\n"));
        assert!(text.contains("Content-Length: 22\r\n"));
        assert!(text.ends_with("\r\n\r\n{\"key\":\"azAwMDAwNDI=\"}"));
        let (request, text) = request_text("REGISTER");
        assert_eq!(request, Request::Probe);
        assert!(text.ends_with(&format!("{{\"key\":\"{}\"}}", base64(PROBE_KEY.as_bytes()))));
    }

    const PUT_RESPONSE: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
        Grpc-Metadata-Content-Type: application/grpc\r\nDate: Fri, 27 Nov 2026 05:00:00 GMT\r\n\
        Content-Length: 114\r\n\r\n\
        {\"header\":{\"cluster_id\":\"14841639068965178418\",\"member_id\":\"10276657743932975437\",\
        \"revision\":\"2\",\"raft_term\":\"2\"}}";

    const RANGE_RESPONSE_CHUNKED: &str = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
        Transfer-Encoding: chunked\r\n\r\n\
        d\r\n{\"header\":{},\r\n\
        1b;name=value\r\n\"kvs\":[{\"key\":\"azAwMDAwNDI=\r\n\
        a\r\n\"}],\"count\r\n\
        5\r\n\":\"1\"\r\n\
        1\r\n}\r\n\
        0\r\nX-Trailer: yes\r\n\r\n";

    /// Feeds `wire` to a codec `piece_size` bytes per read, as a socket
    /// might, and collects the replies.
    fn replies_in_pieces(wire: &[u8], piece_size: usize, requests: &[Request]) -> Vec<Answer> {
        let mut codec = HttpCodec::default();
        let mut replies = Vec::new();
        let mut awaiting = requests.iter();
        codec.awaited = awaiting.next().copied();
        for piece in wire.chunks(piece_size) {
            codec.spare(piece.len()).copy_from_slice(piece);
            codec.commit(piece.len());
            while let Some(reply) = codec.take_reply().expect("valid response") {
                replies.push(reply);
                codec.awaited = awaiting.next().copied();
            }
        }
        assert_eq!(codec.filled, 0, "nothing left over");
        replies
    }

    #[test]
    fn content_length_responses_are_found_across_any_split() {
        let mut wire = PUT_RESPONSE.as_bytes().to_vec();
        wire.extend_from_slice(PUT_RESPONSE.as_bytes());
        for piece_size in [1, 2, 7, 100, wire.len()] {
            let replies = replies_in_pieces(&wire, piece_size, &[Request::Put, Request::Probe]);
            let expected = [
                Answer::Reply(Reply::Ok {
                    index: LogIndex(0),
                    term: Term(0),
                }),
                Answer::Reply(Reply::Session { id: 0 }),
            ];
            assert_eq!(replies, expected, "pieces of {piece_size}");
        }
    }

    #[test]
    fn chunked_responses_are_joined_across_any_split() {
        let (response, size) = parse_response(RANGE_RESPONSE_CHUNKED.as_bytes())
            .expect("valid")
            .expect("complete");
        assert_eq!(size, RANGE_RESPONSE_CHUNKED.len());
        assert_eq!(
            response.body,
            br#"{"header":{},"kvs":[{"key":"azAwMDAwNDI="}],"count":"1"}"#
        );
        let mut wire = RANGE_RESPONSE_CHUNKED.as_bytes().to_vec();
        wire.extend_from_slice(PUT_RESPONSE.as_bytes());
        for piece_size in [1, 3, 16, wire.len()] {
            let replies = replies_in_pieces(&wire, piece_size, &[Request::Range, Request::Range]);
            let expected = [Reply::Value(Vec::new()), Reply::NotFound].map(Answer::Reply);
            assert_eq!(replies, expected, "pieces of {piece_size}");
        }
    }

    #[test]
    fn errors_become_definite_failures() {
        let body = r#"{"error":"etcdserver: request timed out","code":14}"#;
        let wire = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let replies = replies_in_pieces(wire.as_bytes(), 5, &[Request::Put]);
        assert_eq!(replies.len(), 1);
        let Answer::Reply(Reply::Unavailable(reason)) = &replies[0] else {
            panic!("unavailable: {}", replies[0]);
        };
        assert!(reason.starts_with("etcd HTTP 503: {\"error\""), "{reason}");
        let not_etcd = Response {
            status: 200,
            body: b"{}".to_vec(),
        };
        let answer = reply_for(Request::Put, &not_etcd);
        assert_eq!(answer, Answer::Unreadable("no etcd header: {}".to_string()));
        let not_json = Response {
            status: 200,
            body: b"<html>\"header\"".to_vec(),
        };
        let Answer::Unreadable(reason) = reply_for(Request::Put, &not_json) else {
            panic!("unreadable");
        };
        assert!(
            reason.starts_with("etcd sent no JSON (expected value at line 1 column 1): <html>"),
            "{reason}"
        );
    }

    #[test]
    fn malformed_or_unasked_responses_are_refused() {
        let bad = [
            "SSH-2.0-OpenSSH\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\nServer: no length\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd",
        ];
        for wire in bad {
            assert!(parse_response(wire.as_bytes()).is_err(), "{wire:?}");
        }
        assert!(parse_response(&vec![b'x'; HEADER_SIZE_MAX + 1]).is_err());
        let mut codec = HttpCodec::default();
        let wire = PUT_RESPONSE.as_bytes();
        codec.spare(wire.len()).copy_from_slice(wire);
        codec.commit(wire.len());
        assert!(codec.take_reply().is_err(), "nothing was asked");
        let mut codec = HttpCodec {
            awaited: Some(Request::Range),
            ..HttpCodec::default()
        };
        let endless = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        codec.spare(endless.len()).copy_from_slice(endless);
        codec.commit(endless.len());
        // One-byte chunks forever, a read's worth at a time: the body stays
        // small, the bytes do not.
        let piece = b"1\r\nx\r\n".repeat(16 * 1024 / 6);
        let mut refused = false;
        for _ in 0..BUFFERED_SIZE_MAX / piece.len() + 2 {
            codec.spare(piece.len()).copy_from_slice(&piece);
            codec.commit(piece.len());
            if codec.take_reply().is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused);
    }
}
