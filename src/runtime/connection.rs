//! One TCP connection: a reused receive buffer that decodes frames, and an
//! output queue with a send offset for partial writes (the mio/rustls shape).

use crate::constants::CONNECTION_OUTPUT_SIZE_MAX;
use crate::core::NodeId;
use crate::wire::FrameDecoder;
use mio::net::TcpStream;
use std::collections::HashMap;
use std::io::{self, Read, Write};

use super::timer_wheel::TimerId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionKind {
    /// Accepted; its first frame tells whether it is a peer or a client.
    Unidentified,
    Client,
    /// A peer that connected to us: we receive its messages here.
    InboundPeer(NodeId),
    /// Our connection to a peer: we send our messages here.
    OutboundPeer(NodeId),
}

pub enum ReadOutcome {
    Data(usize),
    /// The socket is drained for now.
    WouldBlock,
    Closed,
}

pub struct Connection {
    pub stream: TcpStream,
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
}

/// Read size per syscall.
const READ_CHUNK_SIZE: usize = 64 * 1024;

impl Connection {
    pub fn new(stream: TcpStream, kind: ConnectionKind, connecting: bool) -> Connection {
        Connection {
            stream,
            kind,
            connecting,
            decoder: FrameDecoder::new(),
            output: Vec::new(),
            output_offset: 0,
            writable_registered: connecting,
            requests_in_flight: HashMap::new(),
        }
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
