//! Sockets: accepting, reading and dispatching frames, connecting to peers
//! with backoff, and flushing output. Unknown tokens are normal (a
//! connection closed earlier in the same turn) and ignored.

use super::connection::{Connection, ConnectionKind, ReadOutcome};
use super::server::{Server, Timer, LISTENER};
use crate::constants::{
    CLIENT_CONNECTIONS_MAX, CLIENT_REQUESTS_IN_FLIGHT_MAX, CONNECTION_READ_SIZE_PER_TURN_MAX,
    RECONNECT_DELAY_MS_MAX, RECONNECT_DELAY_MS_MIN,
};
use crate::core::{Message, MessageBody, NodeId};
use crate::log;
use crate::replica::{ClientToken, SessionTag};
use crate::storage::Storage;
use crate::wire::{encode_frame, encode_message, ClientRequest, ClientResponse, Frame, PeerHello};
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Token};
use std::io;

/// A connect that has not completed by then is abandoned and retried.
const CONNECT_TIMEOUT_MS: u64 = 1000;

/// Pause before accepting again after accept failed (out of descriptors).
const ACCEPT_RETRY_MS: u64 = 50;

impl<S: Storage> Server<S> {
    pub(super) fn handle_event(&mut self, event: &Event) {
        let token = event.token();
        if token == LISTENER {
            self.accept_all();
            return;
        }
        let Some(connection) = self.connections.get(&token) else {
            return;
        };
        if connection.connecting {
            self.finish_connect(token);
            return;
        }
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.read_connection(token);
        }
        if event.is_writable() {
            self.flush_connection(token);
        }
    }

    pub(super) fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, address)) => self.accepted(stream, address),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    // Typically EMFILE. Edge-triggered readiness will not
                    // repeat for the connections still waiting: try again
                    // shortly rather than leave them hanging.
                    log!(
                        Warn,
                        "accept failed: {error}; retrying in {ACCEPT_RETRY_MS} ms"
                    );
                    let deadline = self.clock.now_ms() + ACCEPT_RETRY_MS;
                    self.timers.insert(deadline, Timer::Accept);
                    return;
                }
            }
        }
    }

    fn accepted(&mut self, mut stream: TcpStream, address: std::net::SocketAddr) {
        if self.connections.len() >= CLIENT_CONNECTIONS_MAX + self.links.len() * 2 {
            log!(
                Warn,
                "refusing connection from {address}: {} connections open",
                self.connections.len()
            );
            return;
        }
        let _ = stream.set_nodelay(true);
        let token = self.next_token();
        if let Err(error) = self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
        {
            log!(Warn, "cannot register connection from {address}: {error}");
            return;
        }
        log!(Debug, "Accepted connection from {address}");
        self.connections.insert(
            token,
            Connection::new(stream, ConnectionKind::Unidentified, false),
        );
        // Bytes may already be waiting; edge-triggered readiness will not repeat.
        self.read_backlog.push(token);
    }

    fn next_token(&mut self) -> Token {
        let token = Token(self.token_next);
        self.token_next += 1;
        token
    }

    pub(super) fn drain_read_backlog(&mut self) {
        let backlog = std::mem::take(&mut self.read_backlog);
        for token in backlog {
            self.read_connection(token);
        }
    }

    /// Edge-triggered: read until WouldBlock or the per-turn budget, and
    /// hand out every complete frame after each read, so the receive buffer
    /// never holds more than one partial frame when it takes more bytes.
    fn read_connection(&mut self, token: Token) {
        let mut total = 0;
        loop {
            if !self.decode_frames(token) {
                return; // at its in-flight bound; a reply resumes it
            }
            if total >= CONNECTION_READ_SIZE_PER_TURN_MAX {
                self.read_backlog.push(token);
                return;
            }
            let Some(connection) = self.connections.get_mut(&token) else {
                return;
            };
            match connection.read_chunk() {
                Ok(ReadOutcome::Data(count)) => {
                    total += count;
                    self.counters.bytes_in += count as u64;
                }
                Ok(ReadOutcome::WouldBlock) => return,
                Ok(ReadOutcome::Closed) => return self.close(token, "closed by the other side"),
                Err(error) => return self.close(token, &format!("read failed: {error}")),
            }
        }
    }

    /// Dispatches every complete frame. Returns false if it stopped early
    /// (client at its in-flight bound) with frames left to decode.
    fn decode_frames(&mut self, token: Token) -> bool {
        loop {
            let Some(connection) = self.connections.get_mut(&token) else {
                return true;
            };
            if connection.requests_in_flight.len() >= CLIENT_REQUESTS_IN_FLIGHT_MAX {
                return false;
            }
            match connection.decoder.next_frame() {
                Ok(Some(frame)) => self.dispatch(token, frame),
                Ok(None) => return true,
                Err(error) => {
                    self.close(token, &format!("malformed frame: {error}"));
                    return true;
                }
            }
        }
    }

    fn dispatch(&mut self, token: Token, frame: Frame) {
        let Some(kind) = self
            .connections
            .get(&token)
            .map(|connection| connection.kind)
        else {
            return;
        };
        match (frame, kind) {
            (Frame::PeerHello(hello), ConnectionKind::Unidentified) => {
                self.peer_hello(token, &hello)
            }
            (
                Frame::Peer(message),
                ConnectionKind::InboundPeer(peer) | ConnectionKind::OutboundPeer(peer),
            ) => self.peer_message(token, peer, message),
            (
                Frame::ClientRequest(request),
                ConnectionKind::Unidentified | ConnectionKind::Client,
            ) => self.client_request(token, kind, request),
            (frame, kind) => {
                let what = match frame {
                    Frame::PeerHello(_) => "PeerHello",
                    Frame::Peer(_) => "peer message",
                    Frame::ClientRequest(_) => "ClientRequest",
                    Frame::ClientResponse(_) => "ClientResponse",
                };
                self.close(
                    token,
                    &format!("unexpected {what} on a {kind:?} connection"),
                );
            }
        }
    }

    fn peer_hello(&mut self, token: Token, hello: &PeerHello) {
        if hello.cluster_hash != self.cluster_hash {
            return self.close(
                token,
                &format!(
                    "peer {:?} has a different member list (cluster hash mismatch)",
                    hello.node_id
                ),
            );
        }
        let self_id = self.replica.raft().id();
        let position = self.names.iter().position(|name| *name == hello.node_id);
        let Some(peer) = position
            .map(|index| NodeId(index as u32))
            .filter(|&id| id != self_id)
        else {
            return self.close(
                token,
                &format!("hello from unknown peer {:?}", hello.node_id),
            );
        };
        if let Some(connection) = self.connections.get_mut(&token) {
            connection.kind = ConnectionKind::InboundPeer(peer);
        }
        log!(Debug, "Peer {} connected to us", hello.node_id);
        // It is back: do not wait out our backoff before we can answer it.
        let reconnect_now = self.links[peer.0 as usize]
            .as_ref()
            .is_some_and(|link| link.token.is_none());
        if reconnect_now {
            self.connect(peer);
        }
    }

    fn peer_message(&mut self, token: Token, peer: NodeId, message: Message) {
        let self_id = self.replica.raft().id();
        if message.from != peer || message.to != self_id {
            return self.close(
                token,
                &format!(
                    "message from {} to {} on {peer}'s connection",
                    message.from, message.to
                ),
            );
        }
        if matches!(message.body, MessageBody::AppendEntries(_)) {
            self.counters.appends_received += 1;
        }
        self.replica.step(message);
    }

    fn client_request(&mut self, token: Token, kind: ConnectionKind, request: ClientRequest) {
        if kind == ConnectionKind::Unidentified {
            if self.client_count >= CLIENT_CONNECTIONS_MAX {
                return self.close(token, "too many client connections");
            }
            self.client_count += 1;
        }
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        connection.kind = ConnectionKind::Client;
        if connection
            .requests_in_flight
            .contains_key(&request.request_id)
        {
            return self.close(
                token,
                &format!("request id {} reused while in flight", request.request_id),
            );
        }
        connection
            .requests_in_flight
            .insert(request.request_id, None);
        let client = ClientToken {
            connection: token.0 as u64,
            request_id: request.request_id,
        };
        let session = SessionTag {
            session_id: request.session_id,
            sequence: request.sequence,
        };
        if let Some(index) = self
            .replica
            .handle_request(client, session, &request.command)
        {
            let deadline = self.clock.now_ms() + crate::constants::CLIENT_REQUEST_TIMEOUT_MS;
            let timer = self.timers.insert(
                deadline,
                Timer::ClientRequest {
                    index,
                    token: client,
                },
            );
            if let Some(connection) = self.connections.get_mut(&token) {
                connection
                    .requests_in_flight
                    .insert(request.request_id, Some(timer));
            }
        }
    }

    pub(super) fn send_client_reply(&mut self, client: ClientToken, reply: String) {
        let token = Token(client.connection as usize);
        let Some(connection) = self.connections.get_mut(&token) else {
            return; // the client went away
        };
        let Some(timer) = connection.requests_in_flight.remove(&client.request_id) else {
            return;
        };
        let was_full = connection.requests_in_flight.len() + 1 >= CLIENT_REQUESTS_IN_FLIGHT_MAX;
        let response = Frame::ClientResponse(ClientResponse {
            request_id: client.request_id,
            reply,
        });
        encode_frame(&response, connection.output());
        let overflowed = connection.output_overflowed();
        if let Some(timer) = timer {
            self.timers.cancel(timer);
        }
        if overflowed {
            return self.close(token, "client is not reading its replies");
        }
        self.dirty.push(token);
        if was_full {
            self.read_backlog.push(token); // it may have requests left to decode
        }
    }

    pub(super) fn send_peer_message(&mut self, message: &Message) {
        let Some(link) = self
            .links
            .get(message.to.0 as usize)
            .and_then(Option::as_ref)
        else {
            return;
        };
        let Some(token) = link.token.filter(|_| link.connected) else {
            return; // Raft tolerates loss; the peer catches up once connected
        };
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        encode_message(message, connection.output());
        if connection.output_overflowed() {
            return self.close(token, "peer is not reading");
        }
        self.dirty.push(token);
    }

    pub(super) fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for token in dirty {
            self.flush_connection(token);
        }
    }

    fn flush_connection(&mut self, token: Token) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        let queued = connection.queued_len();
        let flushed = connection.flush();
        self.counters.bytes_out += (queued - connection.queued_len()) as u64;
        let remaining = match flushed {
            Ok(remaining) => remaining,
            Err(error) => return self.close(token, &format!("write failed: {error}")),
        };
        if remaining == connection.writable_registered {
            return;
        }
        // WRITABLE interest only while output is queued.
        let interest = if remaining {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        connection.writable_registered = remaining;
        if let Err(error) = self
            .poll
            .registry()
            .reregister(&mut connection.stream, token, interest)
        {
            self.close(token, &format!("cannot reregister: {error}"));
        }
    }

    pub(super) fn close(&mut self, token: Token, reason: &str) {
        let Some(mut connection) = self.connections.remove(&token) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut connection.stream);
        for timer in connection.requests_in_flight.values().flatten() {
            self.timers.cancel(*timer);
        }
        match connection.kind {
            ConnectionKind::Client => {
                self.client_count -= 1;
                log!(Debug, "Client connection closed: {reason}");
            }
            ConnectionKind::Unidentified => log!(Info, "Closed connection: {reason}"),
            ConnectionKind::InboundPeer(peer) => {
                log!(
                    Debug,
                    "Inbound connection from {} closed: {reason}",
                    self.names[peer.0 as usize]
                )
            }
            ConnectionKind::OutboundPeer(peer) => {
                self.link_lost(peer, connection.connecting, reason)
            }
        }
    }

    // ---- outgoing peer links --------------------------------------------

    pub(super) fn connect(&mut self, peer: NodeId) {
        let token = self.next_token();
        let now_ms = self.clock.now_ms();
        let Some(link) = self.links[peer.0 as usize].as_mut() else {
            return;
        };
        if let Some(timer) = link.timer.take() {
            self.timers.cancel(timer);
        }
        let mut stream = match TcpStream::connect(link.address) {
            Ok(stream) => stream,
            Err(error) => {
                log!(Debug, "connect to {} failed: {error}", link.name);
                return self.schedule_reconnect(peer);
            }
        };
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(error) = self.poll.registry().register(&mut stream, token, interest) {
            log!(Warn, "cannot register connection to {}: {error}", link.name);
            return self.schedule_reconnect(peer);
        }
        link.token = Some(token);
        link.timer = Some(
            self.timers
                .insert(now_ms + CONNECT_TIMEOUT_MS, Timer::Peer(peer)),
        );
        self.connections.insert(
            token,
            Connection::new(stream, ConnectionKind::OutboundPeer(peer), true),
        );
    }

    /// A non-blocking connect is a state: on WRITABLE, `take_error` then
    /// `peer_addr` tell whether it completed.
    fn finish_connect(&mut self, token: Token) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        match connection.stream.take_error() {
            Ok(None) => {}
            Ok(Some(error)) | Err(error) => {
                return self.close(token, &format!("connect failed: {error}"))
            }
        }
        match connection.stream.peer_addr() {
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::NotConnected => return,
            Err(error) => return self.close(token, &format!("connect failed: {error}")),
        }
        connection.connecting = false;
        let _ = connection.stream.set_nodelay(true);
        let ConnectionKind::OutboundPeer(peer) = connection.kind else {
            return;
        };
        let hello = Frame::PeerHello(PeerHello {
            cluster_hash: self.cluster_hash,
            node_id: self.names[self.replica.raft().id().0 as usize].clone(),
        });
        encode_frame(&hello, connection.output());
        self.dirty.push(token);
        self.read_backlog.push(token);
        let Some(link) = self.links[peer.0 as usize].as_mut() else {
            return;
        };
        link.connected = true;
        link.backoff_ms = RECONNECT_DELAY_MS_MIN;
        if let Some(timer) = link.timer.take() {
            self.timers.cancel(timer);
        }
        log!(Info, "Peer {} connected ({})", link.name, link.address);
    }

    fn link_lost(&mut self, peer: NodeId, was_connecting: bool, reason: &str) {
        let Some(link) = self.links[peer.0 as usize].as_mut() else {
            return;
        };
        let was_connected = link.connected;
        link.token = None;
        link.connected = false;
        if was_connected {
            log!(Info, "Peer {} disconnected: {reason}", link.name);
            self.replica.report_unreachable(peer);
        } else if was_connecting {
            log!(Debug, "Peer {} unreachable: {reason}", link.name);
        }
        self.schedule_reconnect(peer);
    }

    fn schedule_reconnect(&mut self, peer: NodeId) {
        let now_ms = self.clock.now_ms();
        let Some(link) = self.links[peer.0 as usize].as_mut() else {
            return;
        };
        if let Some(timer) = link.timer.take() {
            self.timers.cancel(timer);
        }
        let delay_ms = link.backoff_ms;
        link.backoff_ms = (delay_ms * 2).min(RECONNECT_DELAY_MS_MAX);
        link.timer = Some(self.timers.insert(now_ms + delay_ms, Timer::Peer(peer)));
    }

    /// Either the backoff ended (connect again) or a connect hung too long.
    pub(super) fn peer_timer_fired(&mut self, peer: NodeId) {
        let Some(link) = self.links[peer.0 as usize].as_mut() else {
            return;
        };
        link.timer = None;
        match link.token {
            None => self.connect(peer),
            Some(token) if !link.connected => self.close(token, "connect timed out"),
            Some(_) => {}
        }
    }
}
