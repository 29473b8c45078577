//! Sockets: accepting (with a bounded number of client slots, the idlest
//! given up for a newcomer), reading and dispatching frames, client
//! requests and replies, flushing output, closing, and the sweep that
//! closes connections past their timeouts. Peer handshakes and links are in
//! peers.rs. Unknown tokens are normal (a connection closed earlier in the
//! same turn) and ignored.

use super::connection::{Connection, ConnectionKind, ReadOutcome};
use super::server::{Server, Timer, LISTENER};
use super::transport::flush_one;
use crate::constants::{
    CLIENT_IDLE_TIMEOUT_MS, CLIENT_REQUESTS_IN_FLIGHT_MAX, CONNECTION_READ_SIZE_PER_TURN_MAX,
    CONNECTION_SWEEP_INTERVAL_MS, EVICTION_SCAN_MAX, HANDSHAKE_TIMEOUT_MS,
    PARTIAL_FRAME_TIMEOUT_MS,
};
use crate::log;
use crate::log_limited;
use crate::replica::{ClientToken, SessionTag};
use crate::reply::Reply;
use crate::storage::Storage;
use crate::wire::{encode_client_response, encode_frame, ClientRequest, Frame};
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Token};
use std::io;
use std::net::SocketAddr;

/// Pause before accepting again after accept failed (out of descriptors).
const ACCEPT_RETRY_MS: u64 = 50;

impl<S: Storage<Job = crate::storage::SyncJob>> Server<S> {
    pub(super) fn handle_event(&mut self, event: &Event) {
        let token = event.token();
        if token == LISTENER {
            self.accept_all();
            return;
        }
        if token == super::server::SHUTDOWN {
            self.shutdown_requested = true;
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
                Err(error) => return self.accept_failed(&error),
            }
        }
    }

    /// Typically EMFILE. Edge-triggered readiness will not repeat for the
    /// connections still waiting: make room and try again shortly.
    fn accept_failed(&mut self, error: &io::Error) {
        let now_ms = self.clock.now_ms();
        log_limited!(
            self.limiter,
            now_ms,
            Warn,
            "accept failed",
            0,
            "Accept failed: {error}; retrying in {ACCEPT_RETRY_MS} ms"
        );
        self.evict_idlest_client("out of file descriptors");
        // One retry at a time, however many readiness events failed.
        if !self.accept_retry_pending {
            self.accept_retry_pending = true;
            self.timers.insert(now_ms + ACCEPT_RETRY_MS, Timer::Accept);
        }
    }

    fn accepted(&mut self, mut stream: TcpStream, address: SocketAddr) {
        if self.client_slot_count() >= self.client_slots_max
            && !self.evict_idlest_client("the connection limit was reached")
        {
            let now_ms = self.clock.now_ms();
            log_limited!(
                self.limiter,
                now_ms,
                Warn,
                "connection refused",
                0,
                "Refused a connection from {address}: all {} client connections are busy",
                self.client_slots_max
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
        let now_ms = self.clock.now_ms();
        let connection =
            Connection::new(stream, address, ConnectionKind::Unidentified, false, now_ms);
        self.connections.insert(token, connection);
        self.client_activity.insert((now_ms, token));
        // Bytes may already be waiting; edge-triggered readiness will not repeat.
        self.read_backlog.push(token);
    }

    pub(super) fn client_slot_count(&self) -> usize {
        self.client_activity.len()
    }

    /// Closes the client connection that has been quiet longest and has no
    /// request waiting for an answer. Returns whether one was closed.
    fn evict_idlest_client(&mut self, why: &str) -> bool {
        let victim = self
            .client_activity
            .iter()
            .take(EVICTION_SCAN_MAX)
            .map(|&(_, token)| token)
            .find(|token| {
                self.connections
                    .get(token)
                    .is_some_and(|connection| connection.requests_in_flight.is_empty())
            });
        let Some(token) = victim else {
            return false;
        };
        let now_ms = self.clock.now_ms();
        log_limited!(
            self.limiter,
            now_ms,
            Info,
            "connection evicted",
            0,
            "Closed the idlest client connection to admit a new one ({why})"
        );
        self.close(token, "closed to admit a newer client");
        true
    }

    pub(super) fn next_token(&mut self) -> Token {
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
                    self.note_activity(token);
                }
                Ok(ReadOutcome::WouldBlock) => return,
                Ok(ReadOutcome::Closed) => return self.close(token, "closed by the other side"),
                Err(error) => return self.close(token, &format!("read failed: {error}")),
            }
        }
    }

    /// Keeps the idleness order of client slots current.
    fn note_activity(&mut self, token: Token) {
        let now_ms = self.clock.now_ms();
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        let before = connection.active_ms;
        if before == now_ms {
            return;
        }
        connection.active_ms = now_ms;
        if connection.kind.is_client_slot() {
            self.client_activity.remove(&(before, token));
            self.client_activity.insert((now_ms, token));
        }
    }

    /// Dispatches every complete frame. Returns false if it stopped early
    /// (client at its in-flight bound) with frames left to decode.
    fn decode_frames(&mut self, token: Token) -> bool {
        loop {
            let now_ms = self.clock.now_ms();
            let Some(connection) = self.connections.get_mut(&token) else {
                return true;
            };
            if connection.requests_in_flight.len() >= CLIENT_REQUESTS_IN_FLIGHT_MAX {
                return false;
            }
            match connection.next_frame(now_ms) {
                Ok(Some(frame)) => self.dispatch(token, frame),
                Ok(None) => return true,
                Err(error) => {
                    self.malformed_frame(token, &error.to_string());
                    return true;
                }
            }
        }
    }

    fn malformed_frame(&mut self, token: Token, error: &str) {
        let remote = self.remote_of(token);
        let now_ms = self.clock.now_ms();
        log_limited!(
            self.limiter,
            now_ms,
            Warn,
            "malformed frame",
            0,
            "Closed the connection from {remote}: malformed frame: {error}"
        );
        self.close(token, &format!("malformed frame: {error}"));
    }

    pub(super) fn remote_of(&self, token: Token) -> String {
        self.connections
            .get(&token)
            .map_or("?".to_string(), |connection| connection.remote.to_string())
    }

    fn dispatch(&mut self, token: Token, frame: Frame) {
        let Some(connection) = self.connections.get(&token) else {
            return;
        };
        match (frame, &connection.kind) {
            (Frame::ClientRequest(request), ConnectionKind::Unidentified) => {
                self.identify_client(token);
                self.client_request(token, request);
            }
            (Frame::ClientRequest(request), ConnectionKind::Client) => {
                self.client_request(token, request)
            }
            (frame, ConnectionKind::Client) => {
                let what = frame_name(&frame);
                self.close(token, &format!("a client connection sent a {what} frame"));
            }
            (frame, _) => self.peer_frame(token, frame),
        }
    }

    fn identify_client(&mut self, token: Token) {
        if let Some(connection) = self.connections.get_mut(&token) {
            connection.kind = ConnectionKind::Client;
        }
    }

    fn client_request(&mut self, token: Token, request: ClientRequest) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
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

    pub(super) fn send_client_reply(&mut self, client: ClientToken, reply: Reply) {
        let token = Token(client.connection as usize);
        let Some(connection) = self.connections.get_mut(&token) else {
            return; // the client went away
        };
        let Some(timer) = connection.requests_in_flight.remove(&client.request_id) else {
            return;
        };
        let was_full = connection.requests_in_flight.len() + 1 >= CLIENT_REQUESTS_IN_FLIGHT_MAX;
        encode_client_response(client.request_id, &reply, connection.output());
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

    /// Queues a frame on a connection (handshake frames, refusals).
    pub(super) fn send_frame(&mut self, token: Token, frame: &Frame) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        encode_frame(frame, connection.output());
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

    pub(super) fn flush_connection(&mut self, token: Token) {
        let registry = self.poll.registry();
        let flushed = flush_one(&mut self.connections, registry, &mut self.counters, token);
        if let Err(reason) = flushed {
            self.close(token, &reason);
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
        if connection.kind.is_client_slot() {
            self.client_activity.remove(&(connection.active_ms, token));
        }
        let remote = connection.remote;
        match connection.kind {
            ConnectionKind::Client => log!(Debug, "Client {remote} closed: {reason}"),
            ConnectionKind::Unidentified | ConnectionKind::InboundHandshake(_) => {
                log!(Debug, "Connection from {remote} closed: {reason}")
            }
            ConnectionKind::InboundPeer(peer) => {
                log!(
                    Debug,
                    "Inbound connection from {} closed: {reason}",
                    self.name(peer)
                );
                if self.inbound[peer.0 as usize] == Some(token) {
                    self.inbound[peer.0 as usize] = None;
                    // From now on it is a peer that does not connect to us
                    // (check_silent_peers), as at start.
                    let now_ms = self.clock.now_ms();
                    self.views[peer.0 as usize].inbound_absent_since_ms = Some(now_ms);
                }
            }
            ConnectionKind::OutboundHandshake { peer, .. } | ConnectionKind::OutboundPeer(peer) => {
                self.link_lost(peer, connection.connecting, reason)
            }
        }
    }

    /// Closes connections past their timeouts: no handshake in time, half a
    /// frame held too long, a client idle too long. Runs every
    /// CONNECTION_SWEEP_INTERVAL_MS.
    pub(super) fn sweep_connections(&mut self) {
        let now_ms = self.clock.now_ms();
        let expired: Vec<(Token, &'static str)> = self
            .connections
            .iter()
            .filter_map(|(&token, connection)| {
                expiry(connection, now_ms).map(|reason| (token, reason))
            })
            .collect();
        for (token, reason) in expired {
            let remote = self.remote_of(token);
            log_limited!(
                self.limiter,
                now_ms,
                Info,
                reason,
                0,
                "Closed the connection from {remote}: {reason}"
            );
            self.close(token, reason);
        }
        self.check_silent_peers();
        self.update_status_extra();
        let deadline = now_ms + CONNECTION_SWEEP_INTERVAL_MS;
        self.timers.insert(deadline, Timer::Sweep);
    }
}

/// Why a connection has outstayed its welcome, if it has.
fn expiry(connection: &Connection, now_ms: u64) -> Option<&'static str> {
    let since = |at_ms: u64| now_ms.saturating_sub(at_ms);
    let handshaking = matches!(
        connection.kind,
        ConnectionKind::Unidentified | ConnectionKind::InboundHandshake(_)
    );
    if handshaking && since(connection.opened_ms) >= HANDSHAKE_TIMEOUT_MS {
        return Some("no request or peer handshake within the handshake timeout");
    }
    // An established peer may send a 4 MiB batch over a slow link; the
    // timeout is for clients and strangers.
    let established_peer = matches!(
        connection.kind,
        ConnectionKind::InboundPeer(_) | ConnectionKind::OutboundPeer(_)
    );
    if !established_peer
        && connection
            .partial_since_ms
            .is_some_and(|at_ms| since(at_ms) >= PARTIAL_FRAME_TIMEOUT_MS)
    {
        return Some("part of a frame held longer than the partial-frame timeout");
    }
    let idle_client = matches!(connection.kind, ConnectionKind::Client)
        && connection.requests_in_flight.is_empty()
        && !connection.has_output();
    if idle_client && since(connection.active_ms) >= CLIENT_IDLE_TIMEOUT_MS {
        return Some("client idle longer than the idle timeout");
    }
    None
}

pub(super) fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::PeerHello(_) => "PeerHello",
        Frame::PeerChallenge(_) => "PeerChallenge",
        Frame::PeerProof(_) => "PeerProof",
        Frame::PeerWelcome(_) => "PeerWelcome",
        Frame::PeerRefused(_) => "PeerRefused",
        Frame::Peer(_) => "peer message",
        Frame::ClientRequest(_) => "ClientRequest",
        Frame::ClientResponse(_) => "ClientResponse",
    }
}
