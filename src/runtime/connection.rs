//! One TCP connection: a reused receive buffer that decodes frames, and an
//! output queue with a send offset for partial writes (the mio/rustls shape).

use super::handshake::InboundHello;
use super::timer_wheel::TimerId;
use crate::constants::CONNECTION_OUTPUT_SIZE_MAX;
use crate::core::NodeId;
use crate::wire::{Frame, FrameDecoder, PeerHello, WireError};
use mio::net::TcpStream;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;

/// What a connection is, which decides the frames it may carry. Only the
/// two `*Peer` kinds carry Raft RPCs: a connection becomes one only through
/// a completed handshake (handshake.rs), and never after it carried a
/// client request.
#[derive(Clone, Debug)]
pub enum ConnectionKind {
    /// Accepted; its first frame tells whether it is a peer or a client.
    Unidentified,
    Client,
    /// Accepted; its hello was answered with a challenge.
    InboundHandshake(Box<InboundHello>),
    /// A peer that connected to us: we receive its messages here.
    InboundPeer(NodeId),
    /// Ours, to a peer: connecting (no hello yet), or waiting for the
    /// challenge, then for the welcome (`proved`).
    OutboundHandshake {
        peer: NodeId,
        hello: Option<Box<PeerHello>>,
        proved: bool,
    },
    /// Our connection to a peer: we send our messages here.
    OutboundPeer(NodeId),
}

impl ConnectionKind {
    /// Connections that count against the client limit and may be closed
    /// when idle: everything not known to be one of our peers.
    pub fn is_client_slot(&self) -> bool {
        matches!(
            self,
            ConnectionKind::Unidentified
                | ConnectionKind::Client
                | ConnectionKind::InboundHandshake(_)
        )
    }

    pub fn outbound_peer(&self) -> Option<NodeId> {
        match self {
            ConnectionKind::OutboundHandshake { peer, .. } | ConnectionKind::OutboundPeer(peer) => {
                Some(*peer)
            }
            _ => None,
        }
    }
}

pub enum ReadOutcome {
    Data(usize),
    /// The socket is drained for now.
    WouldBlock,
    Closed,
}

pub struct Connection {
    pub stream: TcpStream,
    /// The other end, for log lines.
    pub remote: SocketAddr,
    pub kind: ConnectionKind,
    /// Outbound only: the non-blocking connect has not completed yet.
    pub connecting: bool,
    pub decoder: FrameDecoder,
    output: Vec<u8>,
    /// Bytes of `output` already written. Invariant: output_offset <= output.len().
    output_offset: usize,
    /// WRITABLE interest is registered (only while output is queued).
    pub writable_registered: bool,
    /// Client only: request id → its timeout timer, for requests not yet
    /// answered. Bounded by CLIENT_REQUESTS_IN_FLIGHT_MAX.
    pub requests_in_flight: HashMap<u64, Option<TimerId>>,
    pub opened_ms: u64,
    /// When bytes last arrived (or the connection opened).
    pub active_ms: u64,
    /// Since when the decoder has held part of a frame, if it does.
    pub partial_since_ms: Option<u64>,
}

/// Read size per syscall.
const READ_CHUNK_SIZE: usize = 64 * 1024;

impl Connection {
    pub fn new(
        stream: TcpStream,
        remote: SocketAddr,
        kind: ConnectionKind,
        connecting: bool,
        now_ms: u64,
    ) -> Connection {
        Connection {
            stream,
            remote,
            kind,
            connecting,
            decoder: FrameDecoder::new(),
            output: Vec::new(),
            output_offset: 0,
            writable_registered: connecting,
            requests_in_flight: HashMap::new(),
            opened_ms: now_ms,
            active_ms: now_ms,
            partial_since_ms: None,
        }
    }

    /// The next complete frame, keeping track of how long part of one has
    /// waited: since the end of the last complete frame, so that a stream
    /// whose reads always end mid-frame (a busy peer link, a pipelining
    /// client) is not taken for one that stalls.
    pub fn next_frame(&mut self, now_ms: u64) -> Result<Option<Frame>, WireError> {
        let frame = self.decoder.next_frame()?;
        if frame.is_some() {
            self.partial_since_ms = None;
        } else if self.decoder.buffered_len() > 0 {
            self.partial_since_ms.get_or_insert(now_ms);
        }
        Ok(frame)
    }

    /// One read into the decoder's free space. The caller drains complete
    /// frames before calling again.
    pub fn read_chunk(&mut self) -> io::Result<ReadOutcome> {
        loop {
            let spare = self.decoder.spare(READ_CHUNK_SIZE);
            match self.stream.read(spare) {
                Ok(0) => return Ok(ReadOutcome::Closed),
                Ok(count) => {
                    self.decoder.commit(count);
                    return Ok(ReadOutcome::Data(count));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(ReadOutcome::WouldBlock)
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Where to encode outgoing frames. Call `output_overflowed` after.
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.output
    }

    /// A peer or client that stopped reading must not grow our memory.
    pub fn output_overflowed(&self) -> bool {
        self.output.len() - self.output_offset > CONNECTION_OUTPUT_SIZE_MAX
    }

    /// Bytes queued and not yet written.
    pub fn queued_len(&self) -> usize {
        self.output.len() - self.output_offset
    }

    pub fn has_output(&self) -> bool {
        self.output_offset < self.output.len()
    }

    /// Writes until done or WouldBlock. Returns whether output remains.
    pub fn flush(&mut self) -> io::Result<bool> {
        while self.output_offset < self.output.len() {
            match self.stream.write(&self.output[self.output_offset..]) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote 0 bytes")),
                Ok(count) => self.output_offset += count,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        if self.output_offset == self.output.len() {
            self.output.clear();
            self.output_offset = 0;
            return Ok(false);
        }
        // Keep the queue compact so a long-lived slow reader does not pin
        // an ever larger buffer.
        if self.output_offset > self.output.len() / 2 {
            self.output.drain(..self.output_offset);
            self.output_offset = 0;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{encode_frame, ClientRequest};

    /// Review finding: a stream that always ends a read mid-frame kept the
    /// time of its first partial frame, and was closed as stalled after
    /// PARTIAL_FRAME_TIMEOUT_MS though every frame completed in time.
    #[test]
    fn the_partial_frame_clock_starts_again_with_each_complete_frame() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, address) = listener.accept().unwrap();
        let stream = TcpStream::from_std(client);
        let mut connection = Connection::new(stream, address, ConnectionKind::Client, false, 0);
        let mut bytes = Vec::new();
        for request_id in 0..3 {
            let command = "GET k".to_string();
            let request = ClientRequest {
                request_id,
                session_id: 0,
                sequence: 0,
                command,
            };
            encode_frame(&Frame::ClientRequest(request), &mut bytes);
        }
        let frame_size = bytes.len() / 3;
        let feed = |connection: &mut Connection, chunk: &[u8], now_ms: u64| {
            connection.decoder.spare(chunk.len())[..chunk.len()].copy_from_slice(chunk);
            connection.decoder.commit(chunk.len());
            while connection.next_frame(now_ms).unwrap().is_some() {}
        };
        feed(&mut connection, &bytes[..frame_size / 2], 0);
        assert_eq!(connection.partial_since_ms, Some(0));
        feed(
            &mut connection,
            &bytes[frame_size / 2..frame_size + frame_size / 2],
            9_000,
        );
        assert_eq!(
            connection.partial_since_ms,
            Some(9_000),
            "frame 1 completed at 9 s"
        );
        feed(
            &mut connection,
            &bytes[frame_size + frame_size / 2..],
            18_000,
        );
        assert_eq!(connection.partial_since_ms, None, "nothing left over");
    }
}
