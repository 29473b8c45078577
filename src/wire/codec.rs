//! Payloads ↔ types: the bytes that follow the version and type bytes of a
//! frame. The layouts are documented at the top of `frame.rs`.
//!
//! Decoding is strict: every byte of a payload must be accounted for, every
//! enum byte must be known and every length must be within its bound, because
//! a payload that parses loosely is how a corrupted or hostile stream gets past
//! the checks. Encoding asserts the same bounds, so a frame this side writes is
//! always one the other side accepts.

use std::fmt;

use byteorder::{BigEndian, ByteOrder};

use super::handshake::{
    encode_challenge, encode_hello, encode_refused, encode_welcome, read_challenge, read_hello,
    read_proof, read_refused, read_welcome,
};
use super::handshake::{PeerChallenge, PeerHello, PeerProof, PeerRefused, PeerWelcome};
use crate::constants::{
    APPEND_BATCH_ENTRIES_MAX, CLUSTER_SIZE_MAX, COMMAND_SIZE_MAX, ENTRY_DATA_SIZE_MAX,
    FRAME_SIZE_MAX, SNAPSHOT_CHUNK_SIZE_MAX,
};
use crate::core::{
    AppendEntries, AppendEntriesResponse, ClusterId, ClusterTag, Entry, EntryKind, InstallSnapshot,
    InstallSnapshotResponse, LogIndex, Message, MessageBody, NodeId, RequestVote,
    RequestVoteResponse, SnapshotMeta, SnapshotStatus, Term, ENTRY_HEADER_SIZE,
};

/// Everything that travels on a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// First frame on a peer connection (frame type 1).
    PeerHello(PeerHello),
    /// The accepting side's answer to a hello (frame type 8).
    PeerChallenge(PeerChallenge),
    /// The connecting side proves itself (frame type 9).
    PeerProof(PeerProof),
    /// The handshake succeeded; Raft RPCs may follow (frame type 10).
    PeerWelcome(PeerWelcome),
    /// Either side ends a handshake, saying why (frame type 11).
    PeerRefused(PeerRefused),
    /// A Raft RPC between peers (frame types 2 to 5, 12 and 13).
    Peer(Message),
    /// A client's command (frame type 6).
    ClientRequest(ClientRequest),
    /// The server's answer to one client command (frame type 7).
    ClientResponse(ClientResponse),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRequest {
    /// Chosen by the client and echoed in the response, so a client can
    /// pipeline requests and match the answers.
    pub request_id: u64,
    /// The client's session (0: none) and the command's number in it, so
    /// a retried command is applied at most once (dissertation §6.3).
    pub session_id: u64,
    pub sequence: u64,
    /// UTF-8, at most `COMMAND_SIZE_MAX` bytes.
    pub command: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientResponse {
    pub request_id: u64,
    /// UTF-8; bounded only by the frame size.
    pub reply: String,
}

/// Why a payload was refused. Fields are named as in the frame layouts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayloadError {
    Truncated {
        field: &'static str,
        size_needed: usize,
        size_remaining: usize,
    },
    TrailingBytes {
        count: usize,
    },
    FieldTooLarge {
        field: &'static str,
        size: u32,
        size_max: usize,
    },
    CountTooLarge {
        field: &'static str,
        count: u32,
        count_max: usize,
    },
    InvalidBool {
        field: &'static str,
        byte: u8,
    },
    InvalidPresence {
        field: &'static str,
        byte: u8,
    },
    InvalidUtf8 {
        field: &'static str,
    },
    InvalidEntryKind {
        position: usize,
        byte: u8,
    },
    NonConsecutiveEntry {
        position: usize,
        index_expected: u64,
        index_found: u64,
    },
    EntryIndexOverflow {
        prev_log_index: u64,
    },
    /// A field whose value is impossible on its own.
    Invalid(&'static str),
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated {
                field,
                size_needed,
                size_remaining,
            } => write!(
                f,
                "truncated at {field}: needs {size_needed} bytes, {size_remaining} remain"
            ),
            Self::TrailingBytes { count } => {
                write!(f, "{count} trailing bytes after the payload")
            }
            Self::FieldTooLarge {
                field,
                size,
                size_max,
            } => {
                write!(f, "{field} declares {size} bytes, maximum {size_max}")
            }
            Self::CountTooLarge {
                field,
                count,
                count_max,
            } => {
                write!(f, "declares {count} {field}, maximum {count_max}")
            }
            Self::InvalidBool { field, byte } => {
                write!(f, "{field} is byte {byte}, a bool must be 0 or 1")
            }
            Self::InvalidPresence { field, byte } => {
                write!(f, "{field} has presence byte {byte}, must be 0 or 1")
            }
            Self::InvalidUtf8 { field } => write!(f, "{field} is not valid UTF-8"),
            Self::InvalidEntryKind { position, byte } => {
                write!(f, "entry {position} has unknown kind byte {byte}")
            }
            Self::NonConsecutiveEntry {
                position,
                index_expected,
                index_found,
            } => write!(
                f,
                "entry {position} has index {index_found}, expected {index_expected} \
                 (entries must follow prev_log_index consecutively)"
            ),
            Self::Invalid(problem) => write!(f, "{problem}"),
            Self::EntryIndexOverflow { prev_log_index } => {
                write!(
                    f,
                    "entry indexes overflow after prev_log_index {prev_log_index}"
                )
            }
        }
    }
}

/// The frame type byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FrameType {
    PeerHello = 1,
    RequestVote = 2,
    RequestVoteResponse = 3,
    AppendEntries = 4,
    AppendEntriesResponse = 5,
    ClientRequest = 6,
    ClientResponse = 7,
    PeerChallenge = 8,
    PeerProof = 9,
    PeerWelcome = 10,
    PeerRefused = 11,
    InstallSnapshot = 12,
    InstallSnapshotResponse = 13,
    TimeoutNow = 14,
}

impl FrameType {
    pub(super) fn from_byte(byte: u8) -> Option<FrameType> {
        match byte {
            1 => Some(FrameType::PeerHello),
            2 => Some(FrameType::RequestVote),
            3 => Some(FrameType::RequestVoteResponse),
            4 => Some(FrameType::AppendEntries),
            5 => Some(FrameType::AppendEntriesResponse),
            6 => Some(FrameType::ClientRequest),
            7 => Some(FrameType::ClientResponse),
            8 => Some(FrameType::PeerChallenge),
            9 => Some(FrameType::PeerProof),
            10 => Some(FrameType::PeerWelcome),
            11 => Some(FrameType::PeerRefused),
            12 => Some(FrameType::InstallSnapshot),
            13 => Some(FrameType::InstallSnapshotResponse),
            14 => Some(FrameType::TimeoutNow),
            _ => None,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            FrameType::PeerHello => "PeerHello",
            FrameType::RequestVote => "RequestVote",
            FrameType::RequestVoteResponse => "RequestVoteResponse",
            FrameType::AppendEntries => "AppendEntries",
            FrameType::AppendEntriesResponse => "AppendEntriesResponse",
            FrameType::ClientRequest => "ClientRequest",
            FrameType::ClientResponse => "ClientResponse",
            FrameType::PeerChallenge => "PeerChallenge",
            FrameType::PeerProof => "PeerProof",
            FrameType::PeerWelcome => "PeerWelcome",
            FrameType::PeerRefused => "PeerRefused",
            FrameType::InstallSnapshot => "InstallSnapshot",
            FrameType::InstallSnapshotResponse => "InstallSnapshotResponse",
            FrameType::TimeoutNow => "TimeoutNow",
        }
    }
}

pub(super) fn frame_type(frame: &Frame) -> FrameType {
    match frame {
        Frame::PeerHello(_) => FrameType::PeerHello,
        Frame::PeerChallenge(_) => FrameType::PeerChallenge,
        Frame::PeerProof(_) => FrameType::PeerProof,
        Frame::PeerWelcome(_) => FrameType::PeerWelcome,
        Frame::PeerRefused(_) => FrameType::PeerRefused,
        Frame::Peer(message) => message_frame_type(&message.body),
        Frame::ClientRequest(_) => FrameType::ClientRequest,
        Frame::ClientResponse(_) => FrameType::ClientResponse,
    }
}

pub(super) fn message_frame_type(body: &MessageBody) -> FrameType {
    match body {
        MessageBody::RequestVote(_) => FrameType::RequestVote,
        MessageBody::RequestVoteResponse(_) => FrameType::RequestVoteResponse,
        MessageBody::AppendEntries(_) => FrameType::AppendEntries,
        MessageBody::AppendEntriesResponse(_) => FrameType::AppendEntriesResponse,
        MessageBody::InstallSnapshot(_) => FrameType::InstallSnapshot,
        MessageBody::InstallSnapshotResponse(_) => FrameType::InstallSnapshotResponse,
        MessageBody::TimeoutNow => FrameType::TimeoutNow,
    }
}

// ---------------------------------------------------------------------------
// Encoding. Writing to a Vec cannot fail, so these return nothing; the bounds
// they assert are the ones the decoder enforces on the other side.

pub(super) fn encode_payload(frame: &Frame, out: &mut Vec<u8>) {
    match frame {
        Frame::PeerHello(hello) => encode_hello(hello, out),
        Frame::PeerChallenge(challenge) => encode_challenge(challenge, out),
        Frame::PeerProof(proof) => out.extend_from_slice(&proof.proof),
        Frame::PeerWelcome(welcome) => encode_welcome(welcome, out),
        Frame::PeerRefused(refused) => encode_refused(refused, out),
        Frame::Peer(message) => encode_message_payload(message, out),
        Frame::ClientRequest(request) => {
            put_u64(out, request.request_id);
            put_u64(out, request.session_id);
            put_u64(out, request.sequence);
            put_string(out, &request.command, COMMAND_SIZE_MAX);
        }
        Frame::ClientResponse(response) => {
            put_u64(out, response.request_id);
            put_string(out, &response.reply, FRAME_SIZE_MAX);
        }
    }
}

/// A ClientResponse payload whose reply is `reply` as `Display` writes it,
/// formatted into `out` rather than into a String first. The same bytes as
/// `encode_payload` of a `ClientResponse` holding that text.
pub(super) fn encode_client_response_payload(
    request_id: u64,
    reply: &impl fmt::Display,
    out: &mut Vec<u8>,
) {
    put_u64(out, request_id);
    // The reply's size goes in front of it, so it is patched in once known.
    let size_at = out.len();
    put_u32(out, 0);
    let reply_at = out.len();
    std::io::Write::write_fmt(out, format_args!("{reply}"))
        .expect("writing into a Vec cannot fail");
    let size = out.len() - reply_at;
    assert!(
        size <= FRAME_SIZE_MAX,
        "field of {size} bytes exceeds maximum {FRAME_SIZE_MAX}"
    );
    BigEndian::write_u32(&mut out[size_at..reply_at], size as u32);
}

pub(super) fn encode_message_payload(message: &Message, out: &mut Vec<u8>) {
    put_u32(out, message.from.0);
    put_u32(out, message.to.0);
    put_u64(out, message.term.0);
    put_u64(out, message.cluster.log_id.map_or(0, |id| id.0));
    put_bool(out, message.cluster.bound);
    match &message.body {
        MessageBody::RequestVote(request) => {
            put_u64(out, request.last_log_index.0);
            put_u64(out, request.last_log_term.0);
            out.push(vote_flags(request));
        }
        MessageBody::RequestVoteResponse(response) => {
            put_bool(out, response.vote_granted);
            put_bool(out, response.pre_vote);
        }
        MessageBody::AppendEntries(append) => encode_append_entries(append, out),
        MessageBody::AppendEntriesResponse(response) => {
            put_bool(out, response.success);
            put_u64(out, response.index.0);
            put_option_term(out, response.conflict_term);
            put_u64(out, response.conflict_index.0);
            put_u64(out, response.round);
        }
        MessageBody::InstallSnapshot(chunk) => encode_install_snapshot(chunk, out),
        MessageBody::InstallSnapshotResponse(response) => {
            put_u64(out, response.index.0);
            put_u64(out, response.term.0);
            let (status, value) = match response.status {
                SnapshotStatus::Accepted { stored } => (SNAPSHOT_ACCEPTED, stored),
                SnapshotStatus::OutOfOrder { stored } => (SNAPSHOT_OUT_OF_ORDER, stored),
                SnapshotStatus::Installed { match_index } => (SNAPSHOT_INSTALLED, match_index.0),
                SnapshotStatus::Failed => (SNAPSHOT_FAILED, 0),
            };
            out.push(status);
            put_u64(out, value);
        }
        MessageBody::TimeoutNow => {} // the common header says it all
    }
}

/// The flags byte of a RequestVote. Bit 0 was the `pre_vote` bool, so a
/// plain or pre-vote request is the same byte as before; a transfer sets
/// bit 1, which a node that knows only the bool refuses as malformed
/// rather than misreading (docs/PROTOCOL.md).
const VOTE_PRE_VOTE: u8 = 1 << 0;
const VOTE_TRANSFER: u8 = 1 << 1;

fn vote_flags(request: &RequestVote) -> u8 {
    let pre_vote = if request.pre_vote { VOTE_PRE_VOTE } else { 0 };
    let transfer = if request.transfer { VOTE_TRANSFER } else { 0 };
    pre_vote | transfer
}

/// The status byte of an InstallSnapshotResponse.
const SNAPSHOT_ACCEPTED: u8 = 0;
const SNAPSHOT_OUT_OF_ORDER: u8 = 1;
const SNAPSHOT_INSTALLED: u8 = 2;
const SNAPSHOT_FAILED: u8 = 3;

fn encode_install_snapshot(chunk: &InstallSnapshot, out: &mut Vec<u8>) {
    // The bounds the decoder enforces (`read_install_snapshot`).
    assert!(
        chunk.meta.index > LogIndex(0),
        "a snapshot at index 0 covers nothing"
    );
    assert!(
        !chunk.data.is_empty(),
        "an empty snapshot chunk at {}",
        chunk.offset
    );
    let end = chunk.offset.checked_add(chunk.data.len() as u64);
    assert!(
        end.is_some_and(|end| end <= chunk.total_size),
        "snapshot chunk at {} runs past the file's {} bytes",
        chunk.offset,
        chunk.total_size
    );
    assert!(
        chunk.meta.voters.len() <= CLUSTER_SIZE_MAX,
        "snapshot names {} voters",
        chunk.meta.voters.len()
    );
    put_u64(out, chunk.meta.index.0);
    put_u64(out, chunk.meta.term.0);
    put_u64(out, chunk.meta.cluster_id.map_or(0, |id| id.0));
    put_u32(out, chunk.meta.voters.len() as u32);
    for voter in &chunk.meta.voters {
        put_u32(out, voter.0);
    }
    put_u64(out, chunk.offset);
    put_u64(out, chunk.total_size);
    put_bytes(out, &chunk.data, SNAPSHOT_CHUNK_SIZE_MAX);
}

fn encode_append_entries(append: &AppendEntries, out: &mut Vec<u8>) {
    assert!(
        append.entries.len() <= APPEND_BATCH_ENTRIES_MAX,
        "AppendEntries carries {} entries, maximum {APPEND_BATCH_ENTRIES_MAX}",
        append.entries.len()
    );
    put_u64(out, append.prev_log_index.0);
    put_u64(out, append.prev_log_term.0);
    put_u64(out, append.leader_commit.0);
    put_u64(out, append.round);
    put_u32(out, append.entries.len() as u32);
    let mut index_expected = append.prev_log_index;
    for entry in &append.entries {
        // The receiver rejects a gap or a reorder, so the sender must never
        // build one (Figure 2: entries follow prev_log_index).
        index_expected = index_expected.next();
        assert_eq!(
            entry.index, index_expected,
            "AppendEntries entries are not consecutive"
        );
        put_u64(out, entry.term.0);
        put_u64(out, entry.index.0);
        out.push(entry.kind as u8);
        put_bytes(out, &entry.data, ENTRY_DATA_SIZE_MAX);
    }
}

pub(super) fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

pub(super) fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_be_bytes());
}

pub(super) fn put_bool(out: &mut Vec<u8>, value: bool) {
    out.push(u8::from(value));
}

/// A presence byte, then the term only when present.
pub(super) fn put_option_term(out: &mut Vec<u8>, value: Option<Term>) {
    match value {
        None => out.push(0),
        Some(term) => {
            out.push(1);
            put_u64(out, term.0);
        }
    }
}

pub(super) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8], size_max: usize) {
    assert!(
        bytes.len() <= size_max,
        "field of {} bytes exceeds maximum {size_max}",
        bytes.len()
    );
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

pub(super) fn put_string(out: &mut Vec<u8>, string: &str, size_max: usize) {
    put_bytes(out, string.as_bytes(), size_max);
}

// ---------------------------------------------------------------------------
// Decoding. Every read goes through `Reader::take`, which is the one place
// that checks a field fits in what is left of the payload.

/// Decodes one payload, which must be consumed exactly.
pub(super) fn decode_payload(frame_type: FrameType, payload: &[u8]) -> Result<Frame, PayloadError> {
    let mut reader = Reader { bytes: payload };
    let frame = match frame_type {
        FrameType::PeerHello => Frame::PeerHello(read_hello(&mut reader)?),
        FrameType::PeerChallenge => Frame::PeerChallenge(read_challenge(&mut reader)?),
        FrameType::PeerProof => Frame::PeerProof(read_proof(&mut reader)?),
        FrameType::PeerWelcome => Frame::PeerWelcome(read_welcome(&mut reader)?),
        FrameType::PeerRefused => Frame::PeerRefused(read_refused(&mut reader)?),
        FrameType::RequestVote => Frame::Peer(read_message(&mut reader, read_request_vote)?),
        FrameType::RequestVoteResponse => {
            Frame::Peer(read_message(&mut reader, read_request_vote_response)?)
        }
        FrameType::AppendEntries => Frame::Peer(read_message(&mut reader, read_append_entries)?),
        FrameType::AppendEntriesResponse => {
            Frame::Peer(read_message(&mut reader, read_append_entries_response)?)
        }
        FrameType::InstallSnapshot => {
            Frame::Peer(read_message(&mut reader, read_install_snapshot)?)
        }
        FrameType::InstallSnapshotResponse => {
            Frame::Peer(read_message(&mut reader, read_install_snapshot_response)?)
        }
        FrameType::TimeoutNow => {
            Frame::Peer(read_message(&mut reader, |_| Ok(MessageBody::TimeoutNow))?)
        }
        FrameType::ClientRequest => Frame::ClientRequest(read_client_request(&mut reader)?),
        FrameType::ClientResponse => Frame::ClientResponse(read_client_response(&mut reader)?),
    };
    reader.finish()?;
    Ok(frame)
}

fn read_client_request(reader: &mut Reader<'_>) -> Result<ClientRequest, PayloadError> {
    let request_id = reader.read_u64("request_id")?;
    let session_id = reader.read_u64("session_id")?;
    let sequence = reader.read_u64("sequence")?;
    let command = reader.read_string("command", COMMAND_SIZE_MAX)?;
    Ok(ClientRequest {
        request_id,
        session_id,
        sequence,
        command,
    })
}

fn read_client_response(reader: &mut Reader<'_>) -> Result<ClientResponse, PayloadError> {
    let request_id = reader.read_u64("request_id")?;
    let reply = reader.read_string("reply", FRAME_SIZE_MAX)?;
    Ok(ClientResponse { request_id, reply })
}

type ReadBody = fn(&mut Reader<'_>) -> Result<MessageBody, PayloadError>;

/// The common header of every Raft RPC, then the body `read_body` reads.
fn read_message(reader: &mut Reader<'_>, read_body: ReadBody) -> Result<Message, PayloadError> {
    let from = NodeId(reader.read_u32("from")?);
    let to = NodeId(reader.read_u32("to")?);
    let term = Term(reader.read_u64("term")?);
    let cluster = read_cluster_tag(reader)?;
    let body = read_body(reader)?;
    Ok(Message {
        from,
        to,
        term,
        cluster,
        body,
    })
}

fn read_cluster_tag(reader: &mut Reader<'_>) -> Result<ClusterTag, PayloadError> {
    let log_id = match reader.read_u64("cluster_id")? {
        0 => None,
        id => Some(ClusterId(id)),
    };
    let bound = reader.read_bool("cluster_bound")?;
    if bound && log_id.is_none() {
        return Err(PayloadError::Invalid(
            "cluster_bound set without a cluster_id",
        ));
    }
    Ok(ClusterTag { log_id, bound })
}

fn read_request_vote(reader: &mut Reader<'_>) -> Result<MessageBody, PayloadError> {
    let last_log_index = LogIndex(reader.read_u64("last_log_index")?);
    let last_log_term = Term(reader.read_u64("last_log_term")?);
    let flags = reader.read_u8("vote_flags")?;
    if flags & !(VOTE_PRE_VOTE | VOTE_TRANSFER) != 0 {
        return Err(PayloadError::Invalid("unknown RequestVote flag bits"));
    }
    let (pre_vote, transfer) = (flags & VOTE_PRE_VOTE != 0, flags & VOTE_TRANSFER != 0);
    if pre_vote && transfer {
        return Err(PayloadError::Invalid(
            "a transfer's vote request is never a pre-vote",
        ));
    }
    Ok(MessageBody::RequestVote(RequestVote {
        last_log_index,
        last_log_term,
        pre_vote,
        transfer,
    }))
}

fn read_request_vote_response(reader: &mut Reader<'_>) -> Result<MessageBody, PayloadError> {
    let vote_granted = reader.read_bool("vote_granted")?;
    let pre_vote = reader.read_bool("pre_vote")?;
    Ok(MessageBody::RequestVoteResponse(RequestVoteResponse {
        vote_granted,
        pre_vote,
    }))
}

fn read_append_entries(reader: &mut Reader<'_>) -> Result<MessageBody, PayloadError> {
    let prev_log_index = LogIndex(reader.read_u64("prev_log_index")?);
    let prev_log_term = Term(reader.read_u64("prev_log_term")?);
    let leader_commit = LogIndex(reader.read_u64("leader_commit")?);
    let round = reader.read_u64("round")?;
    let entries = read_entries(reader, prev_log_index)?;
    Ok(MessageBody::AppendEntries(AppendEntries {
        prev_log_index,
        prev_log_term,
        leader_commit,
        round,
        entries,
    }))
}

fn read_append_entries_response(reader: &mut Reader<'_>) -> Result<MessageBody, PayloadError> {
    let success = reader.read_bool("success")?;
    let index = LogIndex(reader.read_u64("index")?);
    let conflict_term = reader.read_option_term("conflict_term")?;
    let conflict_index = LogIndex(reader.read_u64("conflict_index")?);
    let round = reader.read_u64("round")?;
    Ok(MessageBody::AppendEntriesResponse(AppendEntriesResponse {
        success,
        index,
        conflict_term,
        conflict_index,
        round,
    }))
}

/// A chunk must lie within its file and carry at least one byte, and its
/// snapshot must cover at least one entry: a chunk that breaks any of these
/// cannot come from a correct leader.
fn read_install_snapshot(reader: &mut Reader<'_>) -> Result<MessageBody, PayloadError> {
    let meta = read_snapshot_meta(reader)?;
    let offset = reader.read_u64("offset")?;
    let total_size = reader.read_u64("total_size")?;
    let data_size = reader.read_size("data", SNAPSHOT_CHUNK_SIZE_MAX)?;
    let data = reader.take(data_size, "data")?;
    if data.is_empty() {
        return Err(PayloadError::Invalid("empty snapshot chunk"));
    }
    if total_size > crate::storage::snapshot::SNAPSHOT_FILE_SIZE_MAX {
        return Err(PayloadError::Invalid(
            "snapshot chunk of a file larger than a snapshot may be",
        ));
    }
    let end = offset.checked_add(data_size as u64);
    if end.is_none_or(|end| end > total_size) {
        return Err(PayloadError::Invalid(
            "snapshot chunk runs past the end of its file",
        ));
    }
    Ok(MessageBody::InstallSnapshot(InstallSnapshot {
        meta,
        offset,
        total_size,
        data: data.into(),
    }))
}

fn read_snapshot_meta(reader: &mut Reader<'_>) -> Result<SnapshotMeta, PayloadError> {
    let index = LogIndex(reader.read_u64("snapshot_index")?);
    if index == LogIndex(0) {
        return Err(PayloadError::Invalid("snapshot_index 0 covers nothing"));
    }
    let term = Term(reader.read_u64("snapshot_term")?);
    let cluster_id = match reader.read_u64("snapshot_cluster_id")? {
        0 => None,
        id => Some(ClusterId(id)),
    };
    let count = reader.read_count("voters", CLUSTER_SIZE_MAX)?;
    let mut voters = Vec::with_capacity(count);
    for _ in 0..count {
        voters.push(NodeId(reader.read_u32("voter")?));
    }
    Ok(SnapshotMeta {
        index,
        term,
        cluster_id,
        voters,
    })
}

fn read_install_snapshot_response(reader: &mut Reader<'_>) -> Result<MessageBody, PayloadError> {
    let index = LogIndex(reader.read_u64("snapshot_index")?);
    let term = Term(reader.read_u64("snapshot_term")?);
    let status_byte = reader.read_u8("status")?;
    let value = reader.read_u64("status value")?;
    let status = match status_byte {
        SNAPSHOT_ACCEPTED => SnapshotStatus::Accepted { stored: value },
        SNAPSHOT_OUT_OF_ORDER => SnapshotStatus::OutOfOrder { stored: value },
        SNAPSHOT_INSTALLED => SnapshotStatus::Installed {
            match_index: LogIndex(value),
        },
        SNAPSHOT_FAILED if value == 0 => SnapshotStatus::Failed,
        SNAPSHOT_FAILED => return Err(PayloadError::Invalid("status failed with a value")),
        _ => return Err(PayloadError::Invalid("unknown snapshot status")),
    };
    Ok(MessageBody::InstallSnapshotResponse(
        InstallSnapshotResponse {
            index,
            term,
            status,
        },
    ))
}

/// Entries must continue the log right after `prev_log_index` with no gap:
/// the follower's consistency check (Raft §5.3) is only meaningful then, so a
/// batch that is not consecutive is rejected here, before the core sees it.
fn read_entries(
    reader: &mut Reader<'_>,
    prev_log_index: LogIndex,
) -> Result<Vec<Entry>, PayloadError> {
    let count = reader.read_count("entries", APPEND_BATCH_ENTRIES_MAX)?;
    // Reserve for the entries the remaining bytes can hold, not for the
    // declared count, so a lying count cannot make us allocate.
    let mut entries = Vec::with_capacity(count.min(reader.remaining() / ENTRY_HEADER_SIZE));
    for position in 0..count {
        let index_expected = prev_log_index.0.checked_add(position as u64 + 1).ok_or(
            PayloadError::EntryIndexOverflow {
                prev_log_index: prev_log_index.0,
            },
        )?;
        let entry = read_entry(reader, position)?;
        if entry.index.0 != index_expected {
            return Err(PayloadError::NonConsecutiveEntry {
                position,
                index_expected,
                index_found: entry.index.0,
            });
        }
        entries.push(entry);
    }
    assert_eq!(entries.len(), count);
    Ok(entries)
}

fn read_entry(reader: &mut Reader<'_>, position: usize) -> Result<Entry, PayloadError> {
    let term = Term(reader.read_u64("entry term")?);
    let index = LogIndex(reader.read_u64("entry index")?);
    let kind_byte = reader.read_u8("entry kind")?;
    let kind = EntryKind::from_byte(kind_byte).ok_or(PayloadError::InvalidEntryKind {
        position,
        byte: kind_byte,
    })?;
    let data_size = reader.read_size("entry data", ENTRY_DATA_SIZE_MAX)?;
    let data = reader.take(data_size, "entry data")?.into();
    Ok(Entry {
        term,
        index,
        kind,
        data,
    })
}

/// A cursor over one payload.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub(super) fn take(
        &mut self,
        size: usize,
        field: &'static str,
    ) -> Result<&'a [u8], PayloadError> {
        if size > self.bytes.len() {
            return Err(PayloadError::Truncated {
                field,
                size_needed: size,
                size_remaining: self.bytes.len(),
            });
        }
        let (field_bytes, rest) = self.bytes.split_at(size);
        self.bytes = rest;
        Ok(field_bytes)
    }

    pub(super) fn read_u8(&mut self, field: &'static str) -> Result<u8, PayloadError> {
        Ok(self.take(1, field)?[0])
    }

    pub(super) fn read_u32(&mut self, field: &'static str) -> Result<u32, PayloadError> {
        Ok(BigEndian::read_u32(self.take(4, field)?))
    }

    pub(super) fn read_u64(&mut self, field: &'static str) -> Result<u64, PayloadError> {
        Ok(BigEndian::read_u64(self.take(8, field)?))
    }

    pub(super) fn read_bool(&mut self, field: &'static str) -> Result<bool, PayloadError> {
        match self.read_u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(PayloadError::InvalidBool { field, byte }),
        }
    }

    fn read_option_term(&mut self, field: &'static str) -> Result<Option<Term>, PayloadError> {
        match self.read_u8(field)? {
            0 => Ok(None),
            1 => Ok(Some(Term(self.read_u64(field)?))),
            byte => Err(PayloadError::InvalidPresence { field, byte }),
        }
    }

    /// A u32 byte length, checked against its bound before anything is taken.
    pub(super) fn read_size(
        &mut self,
        field: &'static str,
        size_max: usize,
    ) -> Result<usize, PayloadError> {
        let size = self.read_u32(field)?;
        if size as usize > size_max {
            return Err(PayloadError::FieldTooLarge {
                field,
                size,
                size_max,
            });
        }
        Ok(size as usize)
    }

    /// A u32 item count, checked against its bound before anything is read.
    pub(super) fn read_count(
        &mut self,
        field: &'static str,
        count_max: usize,
    ) -> Result<usize, PayloadError> {
        let count = self.read_u32(field)?;
        if count as usize > count_max {
            return Err(PayloadError::CountTooLarge {
                field,
                count,
                count_max,
            });
        }
        Ok(count as usize)
    }

    pub(super) fn read_string(
        &mut self,
        field: &'static str,
        size_max: usize,
    ) -> Result<String, PayloadError> {
        let size = self.read_size(field, size_max)?;
        let bytes = self.take(size, field)?;
        match std::str::from_utf8(bytes) {
            Ok(string) => Ok(string.to_owned()),
            Err(_) => Err(PayloadError::InvalidUtf8 { field }),
        }
    }

    /// A payload must end exactly where its last field does.
    fn finish(self) -> Result<(), PayloadError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(PayloadError::TrailingBytes {
                count: self.bytes.len(),
            })
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::constants::NODE_ID_SIZE_MAX;
    use crate::wire::{encode_frame, encode_message, FrameDecoder, RefusalReason, WireError};

    fn message(term: u64, body: MessageBody) -> Frame {
        Frame::Peer(Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(term),
            cluster: ClusterTag {
                log_id: Some(ClusterId(0x1234)),
                bound: term.is_multiple_of(2),
            },
            body,
        })
    }

    fn hello(node_id: &str) -> PeerHello {
        PeerHello {
            node_id: node_id.to_string(),
            address: "127.0.0.1:8000".to_string(),
            members: vec!["A".to_string(), node_id.to_string()],
            cluster_id: Some(ClusterId(u64::MAX)),
            nonce: [7; 32],
            authenticated: true,
        }
    }

    /// Bytes before a Raft RPC's body: from, to, term, cluster id, committed.
    const MESSAGE_HEADER_SIZE: usize = 4 + 4 + 8 + 8 + 1;

    /// The leader's no-op: the one other kind the codec must carry.
    fn noop(index: u64, term: u64) -> Entry {
        Entry {
            kind: EntryKind::Noop,
            ..Entry::command(index, term, &[])
        }
    }

    fn append_entries(prev_log_index: u64, entries: Vec<Entry>) -> Frame {
        message(
            7,
            MessageBody::AppendEntries(AppendEntries {
                prev_log_index: LogIndex(prev_log_index),
                prev_log_term: Term(6),
                leader_commit: LogIndex(prev_log_index),
                round: 3,
                entries,
            }),
        )
    }

    fn snapshot_meta(voter_count: u32) -> SnapshotMeta {
        SnapshotMeta {
            index: LogIndex(41),
            term: Term(3),
            cluster_id: Some(ClusterId(0x1234)),
            voters: (0..voter_count).map(NodeId).collect(),
        }
    }

    fn install_snapshot(offset: u64, data: &[u8], total_size: u64) -> Frame {
        message(
            4,
            MessageBody::InstallSnapshot(InstallSnapshot {
                meta: snapshot_meta(3),
                offset,
                total_size,
                data: data.into(),
            }),
        )
    }

    fn snapshot_answer(status: SnapshotStatus) -> Frame {
        message(
            4,
            MessageBody::InstallSnapshotResponse(InstallSnapshotResponse {
                index: LogIndex(41),
                term: Term(3),
                status,
            }),
        )
    }

    /// One small frame of every type and shape, for round trips and fuzzing.
    pub(in crate::wire) fn sample_frames() -> Vec<Frame> {
        vec![
            Frame::PeerHello(hello("n1")),
            Frame::PeerHello(PeerHello {
                node_id: String::new(),
                address: String::new(),
                members: Vec::new(),
                cluster_id: None,
                nonce: [0; 32],
                authenticated: false,
            }),
            message(
                3,
                MessageBody::RequestVote(RequestVote {
                    last_log_index: LogIndex(41),
                    last_log_term: Term(2),
                    pre_vote: true,
                    transfer: false,
                }),
            ),
            message(
                5,
                MessageBody::RequestVote(RequestVote {
                    last_log_index: LogIndex(41),
                    last_log_term: Term(5),
                    pre_vote: false,
                    transfer: true,
                }),
            ),
            message(6, MessageBody::TimeoutNow),
            message(
                3,
                MessageBody::RequestVoteResponse(RequestVoteResponse {
                    vote_granted: true,
                    pre_vote: false,
                }),
            ),
            message(
                4,
                MessageBody::RequestVoteResponse(RequestVoteResponse {
                    vote_granted: false,
                    pre_vote: true,
                }),
            ),
            append_entries(0, Vec::new()),
            append_entries(
                9,
                vec![
                    noop(10, 6),
                    Entry::command(11, 7, b"SET a 1"),
                    Entry::command(12, 7, &[0, 255, 1]),
                ],
            ),
            message(
                7,
                MessageBody::AppendEntriesResponse(AppendEntriesResponse {
                    success: true,
                    index: LogIndex(12),
                    conflict_term: None,
                    conflict_index: LogIndex(0),
                    round: 0,
                }),
            ),
            message(
                7,
                MessageBody::AppendEntriesResponse(AppendEntriesResponse {
                    success: false,
                    index: LogIndex(9),
                    conflict_term: Some(Term(5)),
                    conflict_index: LogIndex(4),
                    round: u64::MAX,
                }),
            ),
            Frame::ClientRequest(ClientRequest {
                request_id: 77,
                session_id: 12,
                sequence: 3,
                command: "GET clé".into(),
            }),
            Frame::ClientResponse(ClientResponse {
                request_id: 77,
                reply: "OK".into(),
            }),
            Frame::ClientResponse(ClientResponse {
                request_id: u64::MAX,
                reply: String::new(),
            }),
            Frame::PeerChallenge(PeerChallenge {
                node_id: "B".into(),
                cluster_id: Some(ClusterId(3)),
                nonce: [1; 32],
                proof: [2; 32],
            }),
            Frame::PeerProof(PeerProof { proof: [9; 32] }),
            Frame::PeerWelcome(PeerWelcome {
                your_address: "10.0.0.1:8000".into(),
            }),
            Frame::PeerRefused(PeerRefused::new(
                RefusalReason::ClusterId,
                "another cluster",
            )),
            install_snapshot(0, b"RLSNAP", 100),
            install_snapshot(94, &[0, 255, 7, 1, 2, 3], 100),
            message(
                3,
                MessageBody::InstallSnapshot(InstallSnapshot {
                    meta: SnapshotMeta {
                        cluster_id: None,
                        ..snapshot_meta(0)
                    },
                    offset: crate::storage::snapshot::SNAPSHOT_FILE_SIZE_MAX - 1,
                    total_size: crate::storage::snapshot::SNAPSHOT_FILE_SIZE_MAX,
                    data: vec![9].into(),
                }),
            ),
            snapshot_answer(SnapshotStatus::Accepted { stored: 6 }),
            snapshot_answer(SnapshotStatus::OutOfOrder { stored: 0 }),
            snapshot_answer(SnapshotStatus::Installed {
                match_index: LogIndex(44),
            }),
            snapshot_answer(SnapshotStatus::Failed),
        ]
    }

    fn encode(frame: &Frame) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(frame, &mut out);
        out
    }

    fn decode_one(bytes: &[u8]) -> Result<Frame, WireError> {
        let mut decoder = FrameDecoder::new();
        let spare = decoder.spare(bytes.len());
        spare[..bytes.len()].copy_from_slice(bytes);
        decoder.commit(bytes.len());
        let frame = decoder.next_frame()?.expect("test frame is complete");
        assert_eq!(decoder.buffered_len(), 0);
        Ok(frame)
    }

    /// Decodes a frame of `frame_type` around `payload`, which must be refused.
    fn payload_error(frame_type: u8, payload: &[u8]) -> PayloadError {
        let frame_type_name = FrameType::from_byte(frame_type).unwrap().name();
        match decode_one(&raw_frame(1, frame_type, payload)) {
            Err(WireError::Payload { frame, error }) if frame == frame_type_name => error,
            other => panic!("expected a {frame_type_name} payload error, got {other:?}"),
        }
    }

    fn assert_round_trip(frame: &Frame) {
        let bytes = encode(frame);
        assert_eq!(decode_one(&bytes).as_ref(), Ok(frame));
    }

    /// A frame with a correct length prefix around `payload`.
    pub(in crate::wire) fn raw_frame(version: u8, frame_type: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = ((payload.len() + 2) as u32).to_be_bytes().to_vec();
        out.push(version);
        out.push(frame_type);
        out.extend_from_slice(payload);
        out
    }

    /// The payload of an encoded frame (after length, version and type).
    fn payload_of(frame: &Frame) -> Vec<u8> {
        encode(frame)[6..].to_vec()
    }

    #[test]
    fn every_sample_frame_round_trips() {
        for frame in sample_frames() {
            assert_round_trip(&frame);
        }
    }

    #[test]
    fn large_entries_and_strings_at_their_bounds_round_trip() {
        let large = vec![0xab; ENTRY_DATA_SIZE_MAX];
        assert_round_trip(&append_entries(
            100,
            vec![Entry::command(101, 7, &large), noop(102, 7)],
        ));
        let node_id = "x".repeat(NODE_ID_SIZE_MAX);
        let mut full = hello(&node_id);
        full.members = vec![node_id.clone(); crate::constants::CLUSTER_SIZE_MAX];
        full.address = "a".repeat(crate::wire::ADDRESS_SIZE_MAX);
        assert_round_trip(&Frame::PeerHello(full));
        let command = "c".repeat(COMMAND_SIZE_MAX);
        assert_round_trip(&Frame::ClientRequest(ClientRequest {
            request_id: 1,
            session_id: 0,
            sequence: 0,
            command,
        }));
    }

    /// The codec carries configuration entries and a Bootstrap holding a
    /// configuration as opaque payloads, like any other entry.
    #[test]
    fn configuration_entries_round_trip() {
        let configuration = crate::core::Configuration::numbered(5);
        let bootstrap = Entry {
            kind: EntryKind::Bootstrap,
            ..Entry::command(1, 1, &configuration.bootstrap_payload(ClusterId(9)))
        };
        let change = Entry {
            kind: EntryKind::Configuration,
            ..Entry::command(2, 1, &configuration.to_bytes())
        };
        let frame = append_entries(0, vec![bootstrap, change]);
        assert_round_trip(&frame);
        let Ok(Frame::Peer(message)) = decode_one(&encode(&frame)) else {
            panic!("not a message");
        };
        let MessageBody::AppendEntries(request) = message.body else {
            panic!("not an AppendEntries");
        };
        for entry in &request.entries {
            let decoded = crate::core::membership::Configuration::of_entry(entry);
            assert_eq!(decoded, Some(Ok(configuration.clone())));
        }
    }

    #[test]
    fn full_batch_of_entries_round_trips() {
        let entries = (1..=APPEND_BATCH_ENTRIES_MAX as u64)
            .map(|index| Entry::command(index, 1, &index.to_be_bytes()))
            .collect();
        assert_round_trip(&append_entries(0, entries));
    }

    #[test]
    fn encode_message_writes_the_same_bytes_as_encode_frame() {
        for frame in sample_frames() {
            if let Frame::Peer(message) = &frame {
                let mut out = vec![9, 9];
                encode_message(message, &mut out);
                assert_eq!(&out[..2], &[9, 9], "encoding appends, never overwrites");
                assert_eq!(out[2..], encode(&frame)[..]);
            }
        }
    }

    #[test]
    fn request_vote_layout_is_as_documented() {
        let frame = message(
            3,
            MessageBody::RequestVote(RequestVote {
                last_log_index: LogIndex(5),
                last_log_term: Term(2),
                pre_vote: true,
                transfer: false,
            }),
        );
        let mut expected = vec![0, 0, 0, 44, 1, 2];
        expected.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
        expected.extend_from_slice(&3u64.to_be_bytes());
        expected.extend_from_slice(&0x1234u64.to_be_bytes()); // cluster id
        expected.push(0); // not bound (odd term)
        expected.extend_from_slice(&5u64.to_be_bytes());
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.push(1);
        assert_eq!(encode(&frame), expected);
    }

    #[test]
    fn timeout_now_is_the_common_header_alone() {
        let frame = message(4, MessageBody::TimeoutNow);
        let mut expected = vec![0, 0, 0, 27, 1, 14];
        expected.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
        expected.extend_from_slice(&4u64.to_be_bytes());
        expected.extend_from_slice(&0x1234u64.to_be_bytes()); // cluster id
        expected.push(1); // bound (even term)
        assert_eq!(encode(&frame), expected);
        assert_eq!(payload_of(&frame).len(), MESSAGE_HEADER_SIZE);
        let mut longer = payload_of(&frame);
        longer.push(0);
        let error = payload_error(14, &longer);
        assert_eq!(error, PayloadError::TrailingBytes { count: 1 });
    }

    /// The flags byte: bit 0 pre-vote (the old bool's byte), bit 1
    /// transfer. A plain request is byte-identical to the old layout.
    #[test]
    fn request_vote_flags_are_as_documented() {
        let flags_of = |pre_vote, transfer| {
            let frame = message(
                3,
                MessageBody::RequestVote(RequestVote {
                    last_log_index: LogIndex(5),
                    last_log_term: Term(2),
                    pre_vote,
                    transfer,
                }),
            );
            *encode(&frame).last().unwrap()
        };
        assert_eq!(flags_of(false, false), 0);
        assert_eq!(flags_of(true, false), 1);
        assert_eq!(flags_of(false, true), 2);
    }

    #[test]
    fn unknown_or_contradictory_vote_flags_are_refused() {
        let frame = &sample_frames()[3];
        let mut payload = payload_of(frame);
        let flags_at = payload.len() - 1;
        assert_eq!(payload[flags_at], 2, "the sample is a transfer request");
        for flags in [4u8, 0x80, 0xff] {
            payload[flags_at] = flags;
            let error = payload_error(2, &payload);
            assert_eq!(
                error,
                PayloadError::Invalid("unknown RequestVote flag bits")
            );
        }
        payload[flags_at] = 3;
        let error = payload_error(2, &payload);
        let expected = PayloadError::Invalid("a transfer's vote request is never a pre-vote");
        assert_eq!(error, expected);
    }

    #[test]
    fn non_consecutive_entry_indexes_are_refused() {
        // Encode a valid batch, then rewrite the second entry's index from 11 to 12.
        let frame = append_entries(9, vec![noop(10, 7), noop(11, 7)]);
        let mut payload = payload_of(&frame);
        let second_index_offset = MESSAGE_HEADER_SIZE + 32 + 4 + ENTRY_HEADER_SIZE + 8;
        assert_eq!(
            payload[second_index_offset..second_index_offset + 8],
            11u64.to_be_bytes()
        );
        payload[second_index_offset + 7] = 12;
        let error = payload_error(4, &payload);
        assert_eq!(
            error,
            PayloadError::NonConsecutiveEntry {
                position: 1,
                index_expected: 11,
                index_found: 12
            }
        );
    }

    #[test]
    fn first_entry_must_follow_prev_log_index() {
        let frame = append_entries(9, vec![noop(10, 7)]);
        let mut payload = payload_of(&frame);
        // prev_log_index (right after the common header) from 9 to 3.
        payload[MESSAGE_HEADER_SIZE + 7] = 3;
        let error = payload_error(4, &payload);
        assert_eq!(
            error,
            PayloadError::NonConsecutiveEntry {
                position: 0,
                index_expected: 4,
                index_found: 10
            }
        );
    }

    #[test]
    fn entry_index_overflow_is_refused() {
        let mut payload = payload_of(&append_entries(9, vec![noop(10, 7)]));
        payload[MESSAGE_HEADER_SIZE..MESSAGE_HEADER_SIZE + 8]
            .copy_from_slice(&u64::MAX.to_be_bytes());
        let error = payload_error(4, &payload);
        assert_eq!(
            error,
            PayloadError::EntryIndexOverflow {
                prev_log_index: u64::MAX
            }
        );
    }

    #[test]
    fn bool_byte_other_than_zero_or_one_is_refused() {
        let frame = message(
            3,
            MessageBody::RequestVoteResponse(RequestVoteResponse {
                vote_granted: true,
                pre_vote: false,
            }),
        );
        let mut payload = payload_of(&frame);
        payload[MESSAGE_HEADER_SIZE] = 2;
        let error = payload_error(3, &payload);
        assert_eq!(
            error,
            PayloadError::InvalidBool {
                field: "vote_granted",
                byte: 2
            }
        );
        assert_eq!(
            decode_one(&raw_frame(1, 3, &payload))
                .unwrap_err()
                .to_string(),
            "RequestVoteResponse frame: vote_granted is byte 2, a bool must be 0 or 1"
        );
    }

    #[test]
    fn presence_byte_other_than_zero_or_one_is_refused() {
        let frame = &sample_frames()[9];
        let mut payload = payload_of(frame);
        // Common header, success, index: then the presence byte.
        payload[MESSAGE_HEADER_SIZE + 1 + 8] = 7;
        let error = payload_error(5, &payload);
        assert_eq!(
            error,
            PayloadError::InvalidPresence {
                field: "conflict_term",
                byte: 7
            }
        );
    }

    #[test]
    fn unknown_entry_kind_is_refused() {
        let mut payload = payload_of(&append_entries(9, vec![noop(10, 7)]));
        payload[MESSAGE_HEADER_SIZE + 32 + 4 + 16] = 4; // 3 is Configuration
        let error = payload_error(4, &payload);
        assert_eq!(
            error,
            PayloadError::InvalidEntryKind {
                position: 0,
                byte: 4
            }
        );
    }

    #[test]
    fn entry_count_over_its_bound_is_refused_before_reading_entries() {
        let mut payload = payload_of(&append_entries(0, Vec::new()));
        let count = APPEND_BATCH_ENTRIES_MAX as u32 + 1;
        payload[MESSAGE_HEADER_SIZE + 32..].copy_from_slice(&count.to_be_bytes());
        let error = payload_error(4, &payload);
        assert_eq!(
            error,
            PayloadError::CountTooLarge {
                field: "entries",
                count,
                count_max: APPEND_BATCH_ENTRIES_MAX
            }
        );
    }

    #[test]
    fn lying_entry_count_is_truncation_not_allocation() {
        let mut payload = payload_of(&append_entries(0, Vec::new()));
        payload[MESSAGE_HEADER_SIZE + 32..]
            .copy_from_slice(&(APPEND_BATCH_ENTRIES_MAX as u32).to_be_bytes());
        let error = payload_error(4, &payload);
        assert!(
            matches!(
                error,
                PayloadError::Truncated {
                    field: "entry term",
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn node_id_over_its_bound_is_refused() {
        let mut payload = (NODE_ID_SIZE_MAX as u32 + 1).to_be_bytes().to_vec();
        payload.extend_from_slice(&[b'a'; NODE_ID_SIZE_MAX + 1]);
        let error = payload_error(1, &payload);
        assert_eq!(
            error,
            PayloadError::FieldTooLarge {
                field: "node_id",
                size: NODE_ID_SIZE_MAX as u32 + 1,
                size_max: NODE_ID_SIZE_MAX
            }
        );
    }

    #[test]
    fn invalid_utf8_command_is_refused() {
        let mut payload = 5u64.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0; 16]); // session id and sequence
        payload.extend_from_slice(&2u32.to_be_bytes());
        payload.extend_from_slice(&[0xc3, 0x28]);
        let error = payload_error(6, &payload);
        assert_eq!(error, PayloadError::InvalidUtf8 { field: "command" });
    }

    #[test]
    fn string_size_beyond_the_payload_is_truncation() {
        let mut payload = 5u64.to_be_bytes().to_vec();
        payload.extend_from_slice(&10u32.to_be_bytes());
        payload.extend_from_slice(b"short");
        let error = payload_error(7, &payload);
        assert_eq!(
            error,
            PayloadError::Truncated {
                field: "reply",
                size_needed: 10,
                size_remaining: 5
            }
        );
    }

    #[test]
    #[should_panic(expected = "exceeds maximum")]
    fn encoding_an_oversized_node_id_is_a_bug() {
        let node_id = "x".repeat(NODE_ID_SIZE_MAX + 1);
        encode(&Frame::PeerHello(hello(&node_id)));
    }

    #[test]
    #[should_panic(expected = "not consecutive")]
    fn encoding_non_consecutive_entries_is_a_bug() {
        encode(&append_entries(9, vec![noop(10, 7), noop(12, 7)]));
    }

    #[test]
    #[should_panic(expected = "exceeds maximum")]
    fn encoding_an_oversized_frame_is_a_bug() {
        let reply = "r".repeat(FRAME_SIZE_MAX);
        encode(&Frame::ClientResponse(ClientResponse {
            request_id: 1,
            reply,
        }));
    }

    // ---- InstallSnapshot and its answer ----------------------------------

    /// Bytes of an InstallSnapshot body before its offset, with `voters`.
    fn snapshot_meta_size(voters: usize) -> usize {
        8 + 8 + 8 + 4 + 4 * voters
    }

    #[test]
    fn install_snapshot_layout_is_as_documented() {
        let frame = install_snapshot(94, &[0xaa, 0xbb], 100);
        let mut expected = Vec::new();
        let body_size = MESSAGE_HEADER_SIZE + snapshot_meta_size(3) + 8 + 8 + 4 + 2;
        expected.extend_from_slice(&(body_size as u32 + 2).to_be_bytes());
        expected.extend_from_slice(&[1, 12]);
        expected.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
        expected.extend_from_slice(&4u64.to_be_bytes());
        expected.extend_from_slice(&0x1234u64.to_be_bytes());
        expected.push(1); // bound (even term)
        expected.extend_from_slice(&41u64.to_be_bytes()); // snapshot index
        expected.extend_from_slice(&3u64.to_be_bytes()); // snapshot term
        expected.extend_from_slice(&0x1234u64.to_be_bytes()); // its cluster
        expected.extend_from_slice(&3u32.to_be_bytes()); // voters
        for voter in 0u32..3 {
            expected.extend_from_slice(&voter.to_be_bytes());
        }
        expected.extend_from_slice(&94u64.to_be_bytes()); // offset
        expected.extend_from_slice(&100u64.to_be_bytes()); // total size
        expected.extend_from_slice(&2u32.to_be_bytes());
        expected.extend_from_slice(&[0xaa, 0xbb]);
        assert_eq!(encode(&frame), expected);
    }

    #[test]
    fn install_snapshot_response_layout_is_as_documented() {
        let cases = [
            (SnapshotStatus::Accepted { stored: 6 }, 0, 6u64),
            (SnapshotStatus::OutOfOrder { stored: 5 }, 1, 5),
            (
                SnapshotStatus::Installed {
                    match_index: LogIndex(44),
                },
                2,
                44,
            ),
            (SnapshotStatus::Failed, 3, 0),
        ];
        for (status, status_byte, value) in cases {
            let payload = payload_of(&snapshot_answer(status));
            let mut expected = payload[..MESSAGE_HEADER_SIZE].to_vec();
            expected.extend_from_slice(&41u64.to_be_bytes());
            expected.extend_from_slice(&3u64.to_be_bytes());
            expected.push(status_byte);
            expected.extend_from_slice(&value.to_be_bytes());
            assert_eq!(payload, expected, "{status:?}");
            assert_eq!(encode(&snapshot_answer(status))[5], 13);
        }
    }

    #[test]
    fn full_snapshot_chunk_with_every_voter_round_trips_within_a_frame() {
        let data = vec![0x5a; SNAPSHOT_CHUNK_SIZE_MAX];
        let frame = message(
            2,
            MessageBody::InstallSnapshot(InstallSnapshot {
                meta: snapshot_meta(CLUSTER_SIZE_MAX as u32),
                offset: 0,
                total_size: SNAPSHOT_CHUNK_SIZE_MAX as u64,
                data: data.into(),
            }),
        );
        assert!(encode(&frame).len() <= FRAME_SIZE_MAX + 4);
        assert_round_trip(&frame);
    }

    #[test]
    fn every_truncation_of_a_snapshot_frame_is_refused_as_truncation() {
        let frames = [
            install_snapshot(94, &[1, 2, 3], 100),
            snapshot_answer(SnapshotStatus::Installed {
                match_index: LogIndex(44),
            }),
        ];
        for frame in frames {
            let payload = payload_of(&frame);
            let frame_type = encode(&frame)[5];
            for size in 0..payload.len() {
                let error = payload_error(frame_type, &payload[..size]);
                assert!(
                    matches!(error, PayloadError::Truncated { .. }),
                    "{size} of {} bytes: {error}",
                    payload.len()
                );
            }
        }
    }

    /// The InstallSnapshot payload of `install_snapshot(offset, data,
    /// total)` with its fields at the given offsets rewritten.
    fn chunk_payload() -> Vec<u8> {
        payload_of(&install_snapshot(94, &[1, 2, 3], 100))
    }

    const CHUNK_META_AT: usize = MESSAGE_HEADER_SIZE;
    const CHUNK_VOTERS_AT: usize = CHUNK_META_AT + 24;
    const CHUNK_OFFSET_AT: usize = CHUNK_META_AT + 28 + 12;
    const CHUNK_DATA_SIZE_AT: usize = CHUNK_OFFSET_AT + 16;

    #[test]
    fn snapshot_chunk_past_the_end_of_its_file_is_refused() {
        let mut payload = chunk_payload();
        payload[CHUNK_OFFSET_AT..CHUNK_OFFSET_AT + 8].copy_from_slice(&98u64.to_be_bytes());
        let expected = PayloadError::Invalid("snapshot chunk runs past the end of its file");
        assert_eq!(payload_error(12, &payload), expected);
        payload[CHUNK_OFFSET_AT..CHUNK_OFFSET_AT + 8].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(payload_error(12, &payload), expected, "offset overflow");
    }

    /// A peer cannot make a follower store more than a snapshot file may
    /// hold (storage would refuse it, and that refusal would stop the node).
    #[test]
    fn snapshot_chunk_of_an_oversized_file_is_refused() {
        let mut payload = chunk_payload();
        let total_at = CHUNK_OFFSET_AT + 8;
        let too_large = crate::storage::snapshot::SNAPSHOT_FILE_SIZE_MAX + 1;
        payload[total_at..total_at + 8].copy_from_slice(&too_large.to_be_bytes());
        let expected =
            PayloadError::Invalid("snapshot chunk of a file larger than a snapshot may be");
        assert_eq!(payload_error(12, &payload), expected);
    }

    #[test]
    fn empty_snapshot_chunk_is_refused() {
        let mut payload = chunk_payload();
        payload.truncate(CHUNK_DATA_SIZE_AT);
        payload.extend_from_slice(&0u32.to_be_bytes());
        let error = payload_error(12, &payload);
        assert_eq!(error, PayloadError::Invalid("empty snapshot chunk"));
    }

    #[test]
    fn snapshot_at_index_zero_is_refused() {
        let mut payload = chunk_payload();
        payload[CHUNK_META_AT..CHUNK_META_AT + 8].copy_from_slice(&0u64.to_be_bytes());
        let error = payload_error(12, &payload);
        assert_eq!(
            error,
            PayloadError::Invalid("snapshot_index 0 covers nothing")
        );
    }

    #[test]
    fn snapshot_voters_over_their_bound_are_refused_before_reading_them() {
        let mut payload = chunk_payload();
        let count = CLUSTER_SIZE_MAX as u32 + 1;
        payload[CHUNK_VOTERS_AT..CHUNK_VOTERS_AT + 4].copy_from_slice(&count.to_be_bytes());
        let error = payload_error(12, &payload);
        let expected = PayloadError::CountTooLarge {
            field: "voters",
            count,
            count_max: CLUSTER_SIZE_MAX,
        };
        assert_eq!(error, expected);
    }

    #[test]
    fn snapshot_chunk_over_its_bound_is_refused_before_reading_it() {
        let mut payload = chunk_payload();
        payload.truncate(CHUNK_DATA_SIZE_AT);
        let size = SNAPSHOT_CHUNK_SIZE_MAX as u32 + 1;
        payload.extend_from_slice(&size.to_be_bytes());
        let error = payload_error(12, &payload);
        let expected = PayloadError::FieldTooLarge {
            field: "data",
            size,
            size_max: SNAPSHOT_CHUNK_SIZE_MAX,
        };
        assert_eq!(error, expected);
    }

    #[test]
    fn unknown_snapshot_status_and_failed_with_a_value_are_refused() {
        let mut payload = payload_of(&snapshot_answer(SnapshotStatus::Failed));
        let status_at = MESSAGE_HEADER_SIZE + 16;
        payload[status_at] = 4;
        let error = payload_error(13, &payload);
        assert_eq!(error, PayloadError::Invalid("unknown snapshot status"));
        payload[status_at] = 3;
        payload[status_at + 8] = 1;
        let error = payload_error(13, &payload);
        assert_eq!(error, PayloadError::Invalid("status failed with a value"));
    }

    #[test]
    #[should_panic(expected = "runs past the file")]
    fn encoding_a_chunk_past_its_file_is_a_bug() {
        encode(&install_snapshot(99, &[1, 2], 100));
    }

    #[test]
    #[should_panic(expected = "empty snapshot chunk")]
    fn encoding_an_empty_chunk_is_a_bug() {
        encode(&install_snapshot(0, &[], 100));
    }

    #[test]
    #[should_panic(expected = "exceeds maximum")]
    fn encoding_an_oversized_chunk_is_a_bug() {
        let data = vec![0; SNAPSHOT_CHUNK_SIZE_MAX + 1];
        encode(&install_snapshot(0, &data, data.len() as u64));
    }
}
