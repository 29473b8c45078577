//! Framing: how frames sit on a byte stream, and the incremental decoder.
//!
//! Every frame is a big-endian `u32` length (the bytes after it), a version
//! byte (always 1), a frame type byte (1 to 14) and the payload. A declared
//! length below 2 (no room for version and type) or above `FRAME_SIZE_MAX`
//! (4 MiB) is an error as soon as the four length bytes have arrived, before
//! any of the body is waited for. An unknown version, an unknown frame type,
//! or a payload that does not parse exactly (codec.rs) is an error too.
//! Every error means the stream can no longer be trusted: the connection is
//! closed. The layout of every payload, byte by byte, is in
//! docs/PROTOCOL.md, the one place it is written down.

use std::fmt;

use byteorder::{BigEndian, ByteOrder};

use super::codec::{self, Frame, FrameType, PayloadError};
use crate::constants::FRAME_SIZE_MAX;
use crate::core::Message;

/// The only version this build speaks. A peer that sends another one is
/// refused rather than guessed at.
const PROTOCOL_VERSION: u8 = 1;

/// The u32 length field in front of every frame.
const LENGTH_PREFIX_SIZE: usize = 4;

/// Version and type bytes: the part of the declared length every frame has.
const FRAME_HEADER_SIZE: usize = 2;

/// One whole frame of the largest size, prefix included: the receive buffer
/// never needs more, because complete frames are taken out before reading on.
const RECEIVE_BUFFER_SIZE_MAX: usize = LENGTH_PREFIX_SIZE + FRAME_SIZE_MAX;

/// First allocation of a receive buffer: small, because most connections only
/// ever carry small frames (heartbeats, client commands).
const RECEIVE_BUFFER_SIZE_MIN: usize = 16 * 1024;

const _: () = assert!(FRAME_SIZE_MAX <= u32::MAX as usize);
const _: () = assert!(FRAME_HEADER_SIZE <= FRAME_SIZE_MAX);
const _: () = assert!(RECEIVE_BUFFER_SIZE_MIN <= RECEIVE_BUFFER_SIZE_MAX);

/// Why bytes from the network were refused. Every variant means the stream is
/// out of step or hostile, so the caller's only action is to close the
/// connection; the variants exist so the log line says exactly what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireError {
    FrameLengthTooSmall {
        length: u32,
    },
    FrameLengthTooLarge {
        length: u32,
    },
    UnknownVersion {
        version: u8,
    },
    UnknownFrameType {
        frame_type: u8,
    },
    /// The payload of a known frame type did not parse exactly. `frame` names
    /// the frame type.
    Payload {
        frame: &'static str,
        error: PayloadError,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FrameLengthTooSmall { length } => write!(
                f,
                "declared frame length {length} is below minimum {FRAME_HEADER_SIZE} \
                 (version and frame type)"
            ),
            Self::FrameLengthTooLarge { length } => write!(
                f,
                "declared frame length {length} exceeds maximum {FRAME_SIZE_MAX}"
            ),
            Self::UnknownVersion { version } => write!(
                f,
                "unknown protocol version {version} (expected {PROTOCOL_VERSION})"
            ),
            Self::UnknownFrameType { frame_type } => write!(f, "unknown frame type {frame_type}"),
            Self::Payload { frame, error } => write!(f, "{frame} frame: {error}"),
        }
    }
}

impl std::error::Error for WireError {}

/// Appends one encoded frame to `out`.
///
/// # Panics
/// If the frame breaks a bound the decoder enforces (encoded size above
/// `FRAME_SIZE_MAX`, a string over its limit, too many or non-consecutive
/// entries): sending it would only get the connection closed by the receiver,
/// so it is a bug on this side.
pub fn encode_frame(frame: &Frame, out: &mut Vec<u8>) {
    write_frame(out, codec::frame_type(frame), |out| {
        codec::encode_payload(frame, out)
    });
}

/// Appends one encoded Raft RPC to `out`, without building a `Frame` (which
/// would clone the entries). Same bytes and same panics as `encode_frame`.
pub fn encode_message(message: &Message, out: &mut Vec<u8>) {
    write_frame(out, codec::message_frame_type(&message.body), |out| {
        codec::encode_message_payload(message, out)
    });
}

/// Appends a `ClientResponse` frame whose reply is `reply` as `Display`
/// writes it, without building a String for it (one less allocation per
/// reply). Same bytes and same panics as `encode_frame`.
pub fn encode_client_response(request_id: u64, reply: &impl fmt::Display, out: &mut Vec<u8>) {
    write_frame(out, FrameType::ClientResponse, |out| {
        codec::encode_client_response_payload(request_id, reply, out)
    });
}

/// Writes a placeholder length, the header and the payload, then patches the
/// length once the payload size is known.
fn write_frame(out: &mut Vec<u8>, frame_type: FrameType, write_payload: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_PREFIX_SIZE]);
    out.push(PROTOCOL_VERSION);
    out.push(frame_type as u8);
    write_payload(out);
    let length = out.len() - start - LENGTH_PREFIX_SIZE;
    assert!(length >= FRAME_HEADER_SIZE);
    assert!(
        length <= FRAME_SIZE_MAX,
        "encoded {} frame of {length} bytes exceeds maximum {FRAME_SIZE_MAX}",
        frame_type.name()
    );
    BigEndian::write_u32(&mut out[start..start + LENGTH_PREFIX_SIZE], length as u32);
}

/// The same bounds `write_frame` asserts, checked on bytes from the network.
fn check_frame_length(length: u32) -> Result<(), WireError> {
    if (length as usize) < FRAME_HEADER_SIZE {
        return Err(WireError::FrameLengthTooSmall { length });
    }
    if length as usize > FRAME_SIZE_MAX {
        return Err(WireError::FrameLengthTooLarge { length });
    }
    Ok(())
}

/// Size of the first frame in `pending`, length prefix included, once all of
/// it has arrived. The declared length is checked as soon as the prefix is
/// in, so an oversized frame is refused without waiting for (or buffering)
/// its body.
fn complete_frame_size(pending: &[u8]) -> Result<Option<usize>, WireError> {
    let Some(prefix) = pending.get(..LENGTH_PREFIX_SIZE) else {
        return Ok(None);
    };
    let length = BigEndian::read_u32(prefix);
    check_frame_length(length)?;
    let frame_size = LENGTH_PREFIX_SIZE + length as usize;
    assert!(frame_size <= RECEIVE_BUFFER_SIZE_MAX);
    if pending.len() < frame_size {
        Ok(None)
    } else {
        Ok(Some(frame_size))
    }
}

/// Decodes the bytes after the length prefix: version, type, payload.
fn decode_frame_body(body: &[u8]) -> Result<Frame, WireError> {
    let [version, frame_type_byte, payload @ ..] = body else {
        // `check_frame_length` already refused this; kept as an error, not an
        // assertion, because these are bytes from the network.
        return Err(WireError::FrameLengthTooSmall {
            length: body.len() as u32,
        });
    };
    if *version != PROTOCOL_VERSION {
        return Err(WireError::UnknownVersion { version: *version });
    }
    let frame_type = FrameType::from_byte(*frame_type_byte).ok_or(WireError::UnknownFrameType {
        frame_type: *frame_type_byte,
    })?;
    codec::decode_payload(frame_type, payload).map_err(|error| WireError::Payload {
        frame: frame_type.name(),
        error,
    })
}

/// Turns a byte stream, arriving in pieces of any size, into frames.
///
/// Use: `spare()` for room, read from the socket into it, `commit()` the count
/// read, then call `next_frame()` until it returns `Ok(None)` before reading
/// again. After an `Err` the connection must be closed; the offending bytes
/// stay at the front, so further calls return the same error.
pub struct FrameDecoder {
    /// Receive buffer, reused across reads. Bytes in `consumed..filled` have
    /// arrived but are not yet returned as frames; bytes past `filled` are
    /// room for the next read.
    /// Invariant: consumed <= filled <= buffer.len() <= RECEIVE_BUFFER_SIZE_MAX.
    buffer: Vec<u8>,
    consumed: usize,
    filled: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new()
    }
}

impl FrameDecoder {
    pub fn new() -> Self {
        FrameDecoder {
            buffer: Vec::new(),
            consumed: 0,
            filled: 0,
        }
    }

    /// Space to read into: at least `min` spare bytes at the end of the buffer,
    /// or, when the buffer bound leaves less than `min`, all the room left.
    /// That room is never empty once `next_frame()` has returned `Ok(None)`,
    /// because a partial frame is always smaller than the bound.
    pub fn spare(&mut self, min: usize) -> &mut [u8] {
        assert!(min > 0);
        self.check_invariants();
        let room_needed = min.min(RECEIVE_BUFFER_SIZE_MAX - self.buffered_len());
        // An empty slice would make the caller's read return 0, which looks
        // like the peer closing the connection.
        assert!(
            room_needed > 0,
            "receive buffer full: drain next_frame() before reading more"
        );
        if self.buffer.len() - self.filled < room_needed {
            self.compact();
        }
        if self.buffer.len() - self.filled < room_needed {
            self.grow(self.filled + room_needed);
        }
        assert!(self.buffer.len() - self.filled >= room_needed);
        &mut self.buffer[self.filled..]
    }

    /// Records that `count` bytes were written at the start of `spare()`.
    pub fn commit(&mut self, count: usize) {
        assert!(
            count <= self.buffer.len() - self.filled,
            "committed more bytes than spare() gave"
        );
        self.filled += count;
        self.check_invariants();
    }

    /// The next complete frame; `Ok(None)` while a partial frame waits for
    /// more bytes; `Err` on a malformed or oversized frame.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        self.check_invariants();
        let pending = &self.buffer[self.consumed..self.filled];
        let Some(frame_size) = complete_frame_size(pending)? else {
            return Ok(None);
        };
        let frame = decode_frame_body(&pending[LENGTH_PREFIX_SIZE..frame_size])?;
        self.consumed += frame_size;
        if self.consumed == self.filled {
            // Nothing left to keep: rewinding is free and saves a later copy.
            self.consumed = 0;
            self.filled = 0;
        }
        Ok(Some(frame))
    }

    /// Bytes received but not yet returned as frames.
    pub fn buffered_len(&self) -> usize {
        self.filled - self.consumed
    }

    /// Moves the unconsumed bytes (at most one partial frame when the caller
    /// drains before reading) to the front, so the room behind them is reused
    /// instead of growing the buffer.
    fn compact(&mut self) {
        if self.consumed == 0 {
            return;
        }
        self.buffer.copy_within(self.consumed..self.filled, 0);
        self.filled -= self.consumed;
        self.consumed = 0;
    }

    /// Doubling keeps the copies amortized; the bound keeps one connection's
    /// memory to one largest frame.
    fn grow(&mut self, size_needed: usize) {
        assert!(size_needed <= RECEIVE_BUFFER_SIZE_MAX);
        let size = size_needed
            .max(self.buffer.len() * 2)
            .clamp(RECEIVE_BUFFER_SIZE_MIN, RECEIVE_BUFFER_SIZE_MAX);
        assert!(size >= size_needed);
        self.buffer.resize(size, 0);
    }

    fn check_invariants(&self) {
        assert!(self.consumed <= self.filled);
        assert!(self.filled <= self.buffer.len());
        assert!(self.buffer.len() <= RECEIVE_BUFFER_SIZE_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rng::Rng;
    use crate::wire::codec::tests::{raw_frame, sample_frames};
    use crate::wire::codec::PayloadError;
    use crate::wire::{ClientResponse, PeerRefused, RefusalReason};

    /// Feeds `bytes` to a fresh decoder `chunk_size` bytes per read, draining
    /// after each read as the runtime does. Returns the frames decoded before
    /// the end or the first error, and that error.
    fn decode_chunked(bytes: &[u8], chunk_size: usize) -> (Vec<Frame>, Option<WireError>) {
        let mut decoder = FrameDecoder::new();
        let mut frames = Vec::new();
        let mut remaining = bytes;
        while !remaining.is_empty() {
            let spare = decoder.spare(chunk_size.min(remaining.len()));
            let count = spare.len().min(chunk_size).min(remaining.len());
            spare[..count].copy_from_slice(&remaining[..count]);
            decoder.commit(count);
            remaining = &remaining[count..];
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => frames.push(frame),
                    Ok(None) => break,
                    Err(error) => return (frames, Some(error)),
                }
            }
        }
        (frames, None)
    }

    fn encode_all(frames: &[Frame]) -> Vec<u8> {
        let mut out = Vec::new();
        for frame in frames {
            encode_frame(frame, &mut out);
        }
        out
    }

    fn first_error(bytes: &[u8]) -> WireError {
        let (frames, error) = decode_chunked(bytes, bytes.len().max(1));
        assert!(frames.is_empty());
        error.expect("bytes are malformed")
    }

    #[test]
    fn several_frames_in_one_buffer_decode_in_order() {
        let frames = sample_frames();
        let bytes = encode_all(&frames);
        assert_eq!(decode_chunked(&bytes, bytes.len()), (frames, None));
    }

    #[test]
    fn frames_fed_one_byte_at_a_time_decode_once_complete() {
        let frames = sample_frames();
        let bytes = encode_all(&frames[..2]);
        let first_size = encode_all(&frames[..1]).len();
        let mut decoder = FrameDecoder::new();
        for (position, byte) in bytes.iter().enumerate() {
            decoder.spare(1)[0] = *byte;
            decoder.commit(1);
            let frame = decoder.next_frame().unwrap();
            if position + 1 == first_size {
                assert_eq!(frame.as_ref(), Some(&frames[0]));
            } else if position + 1 == bytes.len() {
                assert_eq!(frame.as_ref(), Some(&frames[1]));
            } else {
                assert_eq!(frame, None, "frame returned early at byte {position}");
            }
        }
        assert_eq!(decoder.buffered_len(), 0);
    }

    #[test]
    fn every_chunk_size_decodes_the_same_frames() {
        let frames = sample_frames();
        let bytes = encode_all(&frames);
        for chunk_size in 1..=bytes.len() {
            assert_eq!(decode_chunked(&bytes, chunk_size), (frames.clone(), None));
        }
    }

    #[test]
    fn oversized_declared_length_errors_right_after_four_bytes() {
        let mut decoder = FrameDecoder::new();
        let length = FRAME_SIZE_MAX as u32 + 1;
        decoder.spare(3)[..3].copy_from_slice(&length.to_be_bytes()[..3]);
        decoder.commit(3);
        assert_eq!(decoder.next_frame(), Ok(None));
        decoder.spare(1)[0] = length.to_be_bytes()[3];
        decoder.commit(1);
        let error = decoder.next_frame().unwrap_err();
        assert_eq!(error, WireError::FrameLengthTooLarge { length });
        assert_eq!(
            error.to_string(),
            "declared frame length 4194305 exceeds maximum 4194304"
        );
        // Errors are sticky: the connection is to be closed, not resynchronized.
        assert_eq!(decoder.next_frame(), Err(error));
        assert_eq!(
            first_error(&u32::MAX.to_be_bytes()),
            WireError::FrameLengthTooLarge { length: u32::MAX }
        );
    }

    #[test]
    fn declared_length_without_room_for_version_and_type_is_refused() {
        assert_eq!(
            first_error(&[0, 0, 0, 0]),
            WireError::FrameLengthTooSmall { length: 0 }
        );
        assert_eq!(
            first_error(&[0, 0, 0, 1, 1]),
            WireError::FrameLengthTooSmall { length: 1 }
        );
    }

    #[test]
    fn unknown_version_is_refused() {
        assert_eq!(
            first_error(&raw_frame(0, 1, &[])),
            WireError::UnknownVersion { version: 0 }
        );
        assert_eq!(
            first_error(&raw_frame(2, 1, &[])),
            WireError::UnknownVersion { version: 2 }
        );
    }

    #[test]
    fn unknown_frame_type_is_refused() {
        for frame_type in [0, 15, 255] {
            let error = first_error(&raw_frame(1, frame_type, &[]));
            assert_eq!(error, WireError::UnknownFrameType { frame_type });
        }
    }

    #[test]
    fn declared_length_shorter_than_the_payload_needs_is_truncation() {
        let frame = &sample_frames()[2];
        let bytes = encode_all(std::slice::from_ref(frame));
        // Drop pre_vote and the last three bytes of last_log_term, and shrink
        // the length to match.
        let mut truncated = raw_frame(1, 2, &bytes[6..bytes.len() - 4]);
        let error = first_error(&truncated);
        assert_eq!(
            error,
            WireError::Payload {
                frame: "RequestVote",
                error: PayloadError::Truncated {
                    field: "last_log_term",
                    size_needed: 8,
                    size_remaining: 5
                }
            }
        );
        // The bytes that follow belong to the next frame, never to this one.
        truncated.extend_from_slice(&bytes[bytes.len() - 4..]);
        assert_eq!(decode_chunked(&truncated, 1).1, Some(error));
    }

    #[test]
    fn trailing_bytes_inside_a_frame_are_refused() {
        for frame in sample_frames() {
            let bytes = encode_all(std::slice::from_ref(&frame));
            let mut payload = bytes[6..].to_vec();
            payload.push(0);
            let error = first_error(&raw_frame(1, bytes[5], &payload));
            assert!(
                matches!(
                    error,
                    WireError::Payload {
                        error: PayloadError::TrailingBytes { count: 1 },
                        ..
                    }
                ),
                "{error}"
            );
        }
    }

    #[test]
    fn a_client_response_written_from_its_display_is_the_same_frame() {
        for reply in ["", "a reply", "\"é\\x\"", &"r".repeat(70_000)] {
            let mut direct = vec![7];
            encode_client_response(9, &reply, &mut direct);
            let response = ClientResponse {
                request_id: 9,
                reply: reply.to_string(),
            };
            let mut framed = vec![7];
            encode_frame(&Frame::ClientResponse(response), &mut framed);
            assert_eq!(direct, framed, "{reply:?}");
        }
    }

    #[test]
    fn frame_of_exactly_the_maximum_size_decodes_and_one_more_byte_does_not() {
        // Length = version + type + request_id + reply size + reply.
        let reply = "r".repeat(FRAME_SIZE_MAX - 2 - 8 - 4);
        let frame = Frame::ClientResponse(ClientResponse {
            request_id: 3,
            reply,
        });
        let bytes = encode_all(std::slice::from_ref(&frame));
        assert_eq!(bytes.len(), RECEIVE_BUFFER_SIZE_MAX);
        assert_eq!(decode_chunked(&bytes, 64 * 1024), (vec![frame], None));
        let mut oversized = bytes;
        oversized[..4].copy_from_slice(&(FRAME_SIZE_MAX as u32 + 1).to_be_bytes());
        assert_eq!(
            first_error(&oversized[..4]),
            WireError::FrameLengthTooLarge {
                length: FRAME_SIZE_MAX as u32 + 1
            }
        );
    }

    #[test]
    fn receive_buffer_stays_within_its_bound_and_clamps_spare() {
        let reply = "r".repeat(FRAME_SIZE_MAX - 2 - 8 - 4);
        let frame = Frame::ClientResponse(ClientResponse {
            request_id: 3,
            reply,
        });
        let mut bytes = encode_all(&sample_frames()[..1]);
        encode_frame(&frame, &mut bytes);
        let mut decoder = FrameDecoder::new();
        let mut remaining = &bytes[..];
        let mut frames = Vec::new();
        while !remaining.is_empty() {
            let spare = decoder.spare(1024 * 1024);
            assert!(!spare.is_empty());
            let count = spare.len().min(remaining.len());
            spare[..count].copy_from_slice(&remaining[..count]);
            decoder.commit(count);
            remaining = &remaining[count..];
            assert!(decoder.buffer.len() <= RECEIVE_BUFFER_SIZE_MAX);
            while let Some(frame) = decoder.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1], frame);
    }

    #[test]
    fn small_frames_reuse_a_small_buffer() {
        let hello = Frame::PeerRefused(PeerRefused::new(RefusalReason::Protocol, "node"));
        let bytes = encode_all(&vec![hello; 10_000]);
        let mut decoder = FrameDecoder::new();
        let mut count_decoded = 0;
        // Odd chunk size, so reads keep ending mid-frame and compaction runs.
        for chunk in bytes.chunks(1000) {
            let spare = decoder.spare(chunk.len());
            spare[..chunk.len()].copy_from_slice(chunk);
            decoder.commit(chunk.len());
            while decoder.next_frame().unwrap().is_some() {
                count_decoded += 1;
            }
        }
        assert_eq!(count_decoded, 10_000);
        assert_eq!(decoder.buffer.len(), RECEIVE_BUFFER_SIZE_MIN);
    }

    #[test]
    #[should_panic(expected = "committed more bytes")]
    fn committing_more_than_spare_is_a_bug() {
        let mut decoder = FrameDecoder::new();
        let room = decoder.spare(1).len();
        decoder.commit(room + 1);
    }

    /// Whatever the input, decoding must not panic, and every frame it does
    /// accept must re-encode to exactly the bytes it came from (the encoding is
    /// canonical, and the encoder's assertions agree with the decoder's checks).
    fn check_decoding_is_total_and_canonical(bytes: &[u8], chunk_size: usize) {
        let (frames, _) = decode_chunked(bytes, chunk_size);
        let reencoded = encode_all(&frames);
        assert_eq!(reencoded[..], bytes[..reencoded.len()]);
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut random = Rng::new(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let mut bytes: Vec<u8> = (0..random.index(256))
                .map(|_| random.next_u64() as u8)
                .collect();
            // Half the time, a plausible header, so the payload parsers get exercised.
            if bytes.len() >= 6 && random.index(2) == 0 {
                let length = (bytes.len() - 4 + random.index(3)) as u32;
                bytes[..4].copy_from_slice(&length.saturating_sub(1).to_be_bytes());
                bytes[4] = 1;
                bytes[5] = 1 + random.index(14) as u8;
            }
            check_decoding_is_total_and_canonical(&bytes, 1 + random.index(64));
        }
    }

    #[test]
    fn mutated_valid_frames_never_panic() {
        let valid = encode_all(&sample_frames());
        let mut random = Rng::new(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let mut bytes = valid.clone();
            for _ in 0..1 + random.index(4) {
                let position = random.index(bytes.len());
                match random.index(3) {
                    0 => bytes[position] = random.next_u64() as u8,
                    1 => bytes[position] ^= 1 << random.index(8),
                    _ => bytes.truncate(position.max(1)),
                }
            }
            check_decoding_is_total_and_canonical(&bytes, 1 + random.index(128));
        }
    }
}
