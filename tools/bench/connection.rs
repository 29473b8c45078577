//! One client's TCP connection to a node, non-blocking under mio: connecting,
//! connected or down; a reused receive buffer; an output buffer with a send
//! offset for partial writes; WRITABLE interest only while connecting or
//! while output is queued. It moves bytes and frames, and decides nothing.
//! The codec is raftlite's frames or, in etcd mode, HTTP (`etcd.rs`); either
//! way the driver gets a raftlite reply.

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use raftlite::constants::FRAME_SIZE_MAX;
use raftlite::reply::{Answer, Asked};
use raftlite::wire::{encode_frame, ClientRequest, Frame, FrameDecoder};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use crate::etcd::{self, HttpCodec};
use crate::options::{Protocol, CLIENTS_MAX};
use crate::stats::ErrorKind;

/// Bytes asked of one read: a typical reply is tens of bytes, a GET of the
/// largest value 64 KiB, so most replies arrive in one read.
const READ_CHUNK_SIZE: usize = 16 * 1024;

/// With one request outstanding a node has at most one reply to send, of at
/// most one frame. Twice that in one wakeup means the stream is not a reply
/// stream, and reading on would let it hold the loop.
const READ_SIZE_PER_EVENT_MAX: usize = 2 * (4 + FRAME_SIZE_MAX);
// The same bound holds two of etcd mode's largest responses.
const _: () = assert!(2 * etcd::RESPONSE_SIZE_MAX <= READ_SIZE_PER_EVENT_MAX);

/// Tokens carry the client index and the connection's generation, so an event
/// left over from a closed socket never reaches its replacement.
const TOKEN_GENERATIONS: usize = usize::MAX / CLIENTS_MAX;

enum Link {
    Down,
    Connecting { stream: TcpStream, since: Instant },
    Up { stream: TcpStream },
}

/// How requests become bytes and bytes become replies.
enum Codec {
    Raftlite(FrameDecoder),
    Etcd(HttpCodec),
}

/// What an event or a send produced.
pub enum Step {
    Nothing,
    /// The reply to the outstanding request.
    Reply(Answer),
    /// The connection failed and is closed: `ConnectFailed` if it never
    /// opened (nothing was sent), `ConnectionLost` or `ProtocolError` if it
    /// had (a request sent on it has an unknown outcome).
    Failed {
        kind: ErrorKind,
        error: String,
    },
}

pub struct Connection {
    client_index: usize,
    /// Incremented per socket; part of the token.
    generation: usize,
    link: Link,
    codec: Codec,
    /// Invariant: output_offset <= output.len(); at most one request's frame.
    output: Vec<u8>,
    output_offset: usize,
    writable_interest: bool,
    /// The request whose reply is wanted; replies to others are dropped.
    awaited_request_id: Option<u64>,
    request_id_next: u64,
}

impl Connection {
    pub fn new(client_index: usize, protocol: Protocol) -> Connection {
        assert!(client_index < CLIENTS_MAX);
        let codec = match protocol {
            Protocol::Raftlite => Codec::Raftlite(FrameDecoder::new()),
            Protocol::Etcd => Codec::Etcd(HttpCodec::default()),
        };
        Connection {
            client_index,
            generation: 0,
            link: Link::Down,
            codec,
            output: Vec::new(),
            output_offset: 0,
            writable_interest: false,
            awaited_request_id: None,
            request_id_next: 1,
        }
    }

    /// Whether an event with `token` is for the current socket.
    pub fn owns(&self, token: Token) -> bool {
        token == self.token() && !self.is_down()
    }

    pub fn token(&self) -> Token {
        Token(self.generation % TOKEN_GENERATIONS * CLIENTS_MAX + self.client_index)
    }

    /// The client index a token names, if the token is one of this program's.
    pub fn client_index_of(token: Token) -> usize {
        token.0 % CLIENTS_MAX
    }

    pub fn is_down(&self) -> bool {
        matches!(self.link, Link::Down)
    }

    /// When the pending connect started, if one is pending.
    pub fn connecting_since(&self) -> Option<Instant> {
        match self.link {
            Link::Connecting { since, .. } => Some(since),
            _ => None,
        }
    }

    /// Queues one request (replacing any unsent one) and sends what it can,
    /// connecting to `address` first if the link is down.
    pub fn send(
        &mut self,
        registry: &Registry,
        address: SocketAddr,
        tag: (u64, u64),
        command: &str,
        now: Instant,
    ) -> Step {
        // HTTP/1.1 has no request ids: with an earlier response still due,
        // that response would be taken for this request's.
        let response_due =
            matches!(self.codec, Codec::Etcd(_)) && self.awaited_request_id.is_some();
        if self.output_offset > 0 || response_due {
            // Part of an abandoned request is on the wire; appending another
            // frame after a cut would desynchronize the stream, so start over.
            self.close(registry);
        }
        let request_id = self.request_id_next;
        self.request_id_next += 1;
        self.awaited_request_id = Some(request_id);
        self.output.clear();
        self.output_offset = 0;
        match &mut self.codec {
            Codec::Raftlite(_) => {
                let request = Frame::ClientRequest(ClientRequest {
                    request_id,
                    session_id: tag.0,
                    sequence: tag.1,
                    command: command.to_string(),
                });
                encode_frame(&request, &mut self.output);
            }
            Codec::Etcd(http) => http.encode(command, address, &mut self.output),
        }
        let result = match self.link {
            Link::Down => self.connect(registry, address, now),
            Link::Connecting { .. } => Ok(()),
            Link::Up { .. } => self.flush(registry),
        };
        match result {
            Ok(()) => Step::Nothing,
            Err(error) => self.fail(registry, None, error.to_string()),
        }
    }

    /// Handles readiness for this connection's token.
    pub fn on_event(&mut self, registry: &Registry) -> Step {
        if let Link::Connecting { .. } = self.link {
            match self.finish_connect() {
                Ok(true) => {}
                Ok(false) => return Step::Nothing,
                Err(error) => return self.fail(registry, None, error.to_string()),
            }
        }
        if let Err(error) = self.flush(registry) {
            return self.fail(registry, None, error.to_string());
        }
        match self.receive() {
            Ok(Some(reply)) => Step::Reply(reply),
            Ok(None) => Step::Nothing,
            Err((kind, error)) => self.fail(registry, Some(kind), error),
        }
    }

    /// Closes the socket (if any) and forgets the request in flight.
    pub fn close(&mut self, registry: &Registry) {
        match std::mem::replace(&mut self.link, Link::Down) {
            Link::Connecting { mut stream, .. } | Link::Up { mut stream } => {
                // Failing to deregister a socket about to be closed changes
                // nothing: closing removes it from the poll set anyway.
                let _ = registry.deregister(&mut stream);
            }
            Link::Down => {}
        }
        self.output.clear();
        self.output_offset = 0;
        self.writable_interest = false;
        self.awaited_request_id = None;
        // A partial frame from the old socket must not prefix the new stream.
        match &mut self.codec {
            Codec::Raftlite(decoder) if decoder.buffered_len() > 0 => {
                *decoder = FrameDecoder::new();
            }
            Codec::Raftlite(_) => {}
            Codec::Etcd(http) => http.reset(),
        }
    }

    /// Closes after an error; `kind` defaults by state: a link that never
    /// came up failed to connect, one that was up was lost.
    fn fail(&mut self, registry: &Registry, kind: Option<ErrorKind>, error: String) -> Step {
        let kind = kind.unwrap_or(match self.link {
            Link::Up { .. } => ErrorKind::ConnectionLost,
            Link::Down | Link::Connecting { .. } => ErrorKind::ConnectFailed,
        });
        self.close(registry);
        Step::Failed { kind, error }
    }

    fn connect(
        &mut self,
        registry: &Registry,
        address: SocketAddr,
        now: Instant,
    ) -> io::Result<()> {
        assert!(self.is_down());
        self.generation = self.generation.wrapping_add(1);
        let mut stream = TcpStream::connect(address)?;
        registry.register(
            &mut stream,
            self.token(),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.writable_interest = true;
        self.link = Link::Connecting { stream, since: now };
        Ok(())
    }

    /// A non-blocking connect is done once the socket reports an error or a
    /// peer address; `Ok(false)` means still in progress (a spurious wakeup).
    fn finish_connect(&mut self) -> io::Result<bool> {
        let Link::Connecting { stream, .. } = &self.link else {
            return Ok(true);
        };
        if let Some(error) = stream.take_error()? {
            return Err(error);
        }
        match stream.peer_addr() {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::NotConnected => return Ok(false),
            Err(error) => return Err(error),
        }
        // Requests are small and latency is the point: no Nagle delay.
        stream.set_nodelay(true)?;
        if let Link::Connecting { stream, .. } = std::mem::replace(&mut self.link, Link::Down) {
            self.link = Link::Up { stream };
        }
        Ok(true)
    }

    /// Writes queued output until done or the socket is full, and keeps
    /// WRITABLE interest exactly while output remains.
    fn flush(&mut self, registry: &Registry) -> io::Result<()> {
        let Link::Up { stream } = &mut self.link else {
            return Ok(());
        };
        while self.output_offset < self.output.len() {
            match stream.write(&self.output[self.output_offset..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(count) => self.output_offset += count,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        }
        let pending = self.output_offset < self.output.len();
        if !pending {
            self.output.clear();
            self.output_offset = 0;
        }
        if pending != self.writable_interest {
            let interest = if pending {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let token = self.token();
            if let Link::Up { stream } = &mut self.link {
                registry.reregister(stream, token, interest)?;
            }
            self.writable_interest = pending;
        }
        Ok(())
    }

    /// Reads until the socket is drained and returns the awaited reply if it
    /// came. A read shorter than the room offered means the socket was empty
    /// at that moment, and any later byte raises a new edge, so the extra
    /// read that would only return WouldBlock is skipped.
    fn receive(&mut self) -> Result<Option<Answer>, (ErrorKind, String)> {
        let mut reply = None;
        let mut size_read = 0;
        loop {
            let Link::Up { stream } = &mut self.link else {
                return Ok(reply);
            };
            let spare = match &mut self.codec {
                Codec::Raftlite(decoder) => decoder.spare(READ_CHUNK_SIZE),
                Codec::Etcd(http) => http.spare(READ_CHUNK_SIZE),
            };
            let room = spare.len();
            let count = match stream.read(spare) {
                Ok(0) => return Err(lost("connection closed by the node".to_string())),
                Ok(count) => count,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(reply),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(lost(error.to_string())),
            };
            match &mut self.codec {
                Codec::Raftlite(decoder) => decoder.commit(count),
                Codec::Etcd(http) => http.commit(count),
            }
            size_read += count;
            self.take_replies(&mut reply)
                .map_err(|error| (ErrorKind::ProtocolError, error))?;
            if size_read > READ_SIZE_PER_EVENT_MAX {
                let error = format!("node sent over {READ_SIZE_PER_EVENT_MAX} bytes unasked");
                return Err((ErrorKind::ProtocolError, error));
            }
            if count < room {
                return Ok(reply);
            }
        }
    }

    /// Drains complete replies; the codec must be empty of whole replies
    /// before the next read.
    fn take_replies(&mut self, reply: &mut Option<Answer>) -> Result<(), String> {
        let decoder = match &mut self.codec {
            Codec::Raftlite(decoder) => decoder,
            Codec::Etcd(http) => {
                while let Some(answer) = http.take_reply()? {
                    self.awaited_request_id = None;
                    *reply = Some(answer);
                }
                return Ok(());
            }
        };
        loop {
            match decoder.next_frame() {
                Ok(None) => return Ok(()),
                Ok(Some(Frame::ClientResponse(response))) => {
                    if self.awaited_request_id == Some(response.request_id) {
                        self.awaited_request_id = None;
                        // The bench sends GET and SET, never SGET.
                        *reply = Some(Answer::from_line(response.reply, Asked::Other));
                    }
                }
                Ok(Some(_)) => return Err("node sent a frame that is not a reply".to_string()),
                Err(error) => return Err(format!("bad frame from node: {error}")),
            }
        }
    }
}

fn lost(error: String) -> (ErrorKind, String) {
    (ErrorKind::ConnectionLost, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_the_client_and_change_with_each_socket() {
        let mut connection = Connection::new(4095, Protocol::Raftlite);
        let first = connection.token();
        connection.generation += 1;
        let second = connection.token();
        assert_ne!(first, second);
        assert_eq!(Connection::client_index_of(first), 4095);
        assert_eq!(Connection::client_index_of(second), 4095);
        connection.generation = usize::MAX;
        assert_eq!(Connection::client_index_of(connection.token()), 4095);
    }
}
