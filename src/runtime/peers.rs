//! Peer connections: the handshake on both sides (rules in handshake.rs),
//! Raft RPCs on established connections, and our outgoing links with
//! their reconnect backoff. Each node sends its own messages on its own
//! outgoing connection to each peer and receives on the peer's.

use super::connection::{Connection, ConnectionKind};
use super::handshake::InboundHello;
use super::logging::one_line;
use super::server::{Server, Timer};
use crate::constants::{
    RECONNECT_DELAY_MS_MAX, RECONNECT_DELAY_MS_MIN, REFUSALS_REMEMBERED_MAX,
    REFUSED_RECONNECT_DELAY_MS_MAX, REFUSED_RECONNECT_DELAY_MS_MIN,
};
use crate::core::{Message, MessageBody, NodeId};
use crate::log;
use crate::log_limited;
use crate::storage::Storage;
use crate::wire::{Frame, PeerChallenge, PeerHello, PeerRefused, RefusalReason};
use mio::net::TcpStream;
use mio::{Interest, Token};
use std::collections::BTreeMap;
use std::io;

/// A connect that has not completed by then is abandoned and retried; the
/// handshake after it must finish within the same time.
const CONNECT_TIMEOUT_MS: u64 = 1000;

/// How long a refusal stays visible in STATUS.
const REFUSAL_SHOWN_MS: u64 = 60_000;

/// A peer we reach that has not connected back for this long is reported:
/// it sends us nothing, and the usual cause is an address mix-up.
const PEER_SILENT_WARN_MS: u64 = 5_000;

impl<S: Storage<Job = crate::storage::SyncJob>> Server<S> {
    /// A frame on a connection that is not a client's: the handshake, or
    /// Raft RPCs once it is done. Anything out of place ends the connection.
    pub(super) fn peer_frame(&mut self, token: Token, frame: Frame) {
        let Some(connection) = self.connections.get(&token) else {
            return;
        };
        match (frame, connection.kind.clone()) {
            (Frame::PeerHello(hello), ConnectionKind::Unidentified) => self.hello(token, hello),
            (Frame::PeerProof(proof), ConnectionKind::InboundHandshake(inbound)) => {
                self.proof(token, &inbound, &proof.proof)
            }
            (
                Frame::PeerChallenge(challenge),
                ConnectionKind::OutboundHandshake {
                    peer,
                    hello: Some(hello),
                    proved: false,
                },
            ) => self.challenge(token, peer, &hello, &challenge),
            (
                Frame::PeerWelcome(welcome),
                ConnectionKind::OutboundHandshake {
                    peer, proved: true, ..
                },
            ) => self.welcomed(token, peer, &welcome),
            (Frame::PeerRefused(refused), kind) => self.refused_by_peer(token, &kind, &refused),
            (
                Frame::Peer(message),
                ConnectionKind::InboundPeer(peer) | ConnectionKind::OutboundPeer(peer),
            ) => self.peer_message(token, peer, message),
            (frame, kind) => {
                let what = super::network::frame_name(&frame);
                let text = format!(
                    "a {what} frame has no place on a {} connection",
                    kind_name(&kind)
                );
                self.refuse(
                    token,
                    PeerRefused::new(RefusalReason::Protocol, &text),
                    None,
                );
            }
        }
    }

    // ---- accepting side --------------------------------------------------

    fn hello(&mut self, token: Token, hello: PeerHello) {
        let inbound = InboundHello {
            hello,
            our_nonce: self.nonces.next_nonce(),
            our_cluster: self.replica.raft().cluster_id(),
        };
        match self.identity.challenge(&inbound) {
            Ok(challenge) => {
                self.send_frame(token, &Frame::PeerChallenge(challenge));
                if let Some(connection) = self.connections.get_mut(&token) {
                    connection.kind = ConnectionKind::InboundHandshake(Box::new(inbound));
                }
            }
            Err(refusal) => {
                let name = inbound.hello.node_id.clone();
                self.refuse(token, refusal, Some(name));
            }
        }
    }

    fn proof(&mut self, token: Token, inbound: &InboundHello, proof: &[u8; 32]) {
        let cluster_now = self.replica.raft().cluster_id();
        let (peer, welcome) = match self.identity.admit(inbound, proof, cluster_now) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                let name = inbound.hello.node_id.clone();
                return self.refuse(token, refusal, Some(name));
            }
        };
        self.send_frame(token, &Frame::PeerWelcome(welcome));
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        connection.kind = ConnectionKind::InboundPeer(peer);
        let active_ms = connection.active_ms;
        self.client_activity.remove(&(active_ms, token));
        let view = &mut self.views[peer.0 as usize];
        view.advertised = Some(one_line(&inbound.hello.address));
        view.cluster_id = inbound.hello.cluster_id;
        view.inbound_absent_since_ms = None;
        // One inbound connection per peer: a reconnect replaces the old one.
        if let Some(old) = self.inbound[peer.0 as usize].replace(token) {
            self.close(old, "replaced by a newer connection from the same peer");
        }
        log!(Debug, "Peer {} connected to us", self.name(peer));
        // It is back: do not wait out our backoff before we can answer it.
        let reconnect_now = self.links[peer.0 as usize]
            .as_ref()
            .is_some_and(|link| link.token.is_none());
        if reconnect_now {
            self.connect(peer);
        }
    }

    /// Sends the refusal, closes, and remembers it for STATUS and the log.
    fn refuse(&mut self, token: Token, refusal: PeerRefused, claimed_name: Option<String>) {
        let whence = self.whence(token);
        let now_ms = self.clock.now_ms();
        // With a secret, who a connection is counts only once its proof
        // verified: a refusal before that is the claim of anyone at all.
        let unproved = matches!(
            refusal.reason,
            RefusalReason::SecretConfiguration | RefusalReason::Authentication
        ) && self.identity.secret.is_some();
        let who = match (claimed_name, unproved) {
            (Some(name), false) => shown_id(&name),
            _ => "?".to_string(),
        };
        log_limited!(
            self.limiter,
            now_ms,
            Warn,
            "refused a peer",
            refusal.reason as u64,
            "Refused peer {who} ({whence}): {}",
            one_line(&refusal.text) // it may quote what the peer claimed
        );
        self.refusals_given.note(who, refusal.reason.name(), now_ms);
        self.check_stale(refusal.reason);
        self.update_status_extra();
        self.send_frame(token, &Frame::PeerRefused(refusal));
        self.flush_connection(token);
        self.close(token, "refused");
    }

    // ---- connecting side -------------------------------------------------

    fn challenge(
        &mut self,
        token: Token,
        peer: NodeId,
        hello: &PeerHello,
        challenge: &PeerChallenge,
    ) {
        let proof = match self.identity.answer_challenge(peer, hello, challenge) {
            Ok(proof) => proof,
            Err(refusal) => {
                let name = challenge.node_id.clone();
                self.note_link_refused(peer);
                return self.refuse(token, refusal, Some(name));
            }
        };
        self.views[peer.0 as usize].cluster_id = challenge.cluster_id;
        self.send_frame(token, &Frame::PeerProof(crate::wire::PeerProof { proof }));
        if let Some(connection) = self.connections.get_mut(&token) {
            if let ConnectionKind::OutboundHandshake { proved, .. } = &mut connection.kind {
                *proved = true;
            }
        }
    }

    fn welcomed(&mut self, token: Token, peer: NodeId, welcome: &crate::wire::PeerWelcome) {
        self.views[peer.0 as usize].expects_us_at = Some(one_line(&welcome.your_address));
        if let Some(connection) = self.connections.get_mut(&token) {
            connection.kind = ConnectionKind::OutboundPeer(peer);
        }
        let Some(link) = self.links[peer.0 as usize].as_mut() else {
            return;
        };
        link.connected = true;
        link.backoff_ms = RECONNECT_DELAY_MS_MIN;
        link.refused_backoff_ms = REFUSED_RECONNECT_DELAY_MS_MIN;
        link.refused = false;
        if let Some(timer) = link.timer.take() {
            self.timers.cancel(timer);
        }
        log!(Info, "Peer {} connected ({})", link.name, link.address);
    }

    /// The other side refused the handshake: say why, once in a while, and
    /// (if it was our link) wait long before trying again.
    fn refused_by_peer(&mut self, token: Token, kind: &ConnectionKind, refused: &PeerRefused) {
        let (who, member, trusted) = match kind {
            ConnectionKind::OutboundHandshake { peer, .. } | ConnectionKind::OutboundPeer(peer) => {
                (self.name(*peer).to_string(), Some(*peer), true)
            }
            ConnectionKind::InboundPeer(peer) => (self.name(*peer).to_string(), Some(*peer), true),
            // Its hello said who it is. With a secret, nothing proved it
            // yet (a refusal carries no proof): logged as a claim, kept out
            // of STATUS. Without one, no claim is ever proved, and this one
            // is as good as any.
            ConnectionKind::InboundHandshake(inbound) => {
                let claimed = shown_id(&inbound.hello.node_id);
                let member = self
                    .identity
                    .members
                    .iter()
                    .position(|(name, _)| *name == claimed)
                    .map(|index| NodeId(index as u32));
                match self.identity.secret.is_some() {
                    true => (format!("claiming to be {claimed}"), member, false),
                    false => (claimed, member, true),
                }
            }
            ConnectionKind::Unidentified | ConnectionKind::Client => {
                let text = "a PeerRefused frame before any handshake";
                return self.close(token, text);
            }
        };
        let whence = self.whence(token);
        let now_ms = self.clock.now_ms();
        log_limited!(
            self.limiter,
            now_ms,
            Warn,
            "refused by a peer",
            refused.reason as u64 * 64 + member.map_or(63, |member| u64::from(member.0)),
            "Peer {who} ({whence}) refused us: {}",
            one_line(&refused.text)
        );
        if trusted {
            self.refusals_received
                .note(who, refused.reason.name(), now_ms);
            self.check_stale(refused.reason);
            self.update_status_extra();
        }
        if let Some(peer) = kind.outbound_peer() {
            self.note_link_refused(peer);
        }
        self.close(token, "refused by the other side");
    }

    /// The core ignored a message from `peer`, of another cluster: say so,
    /// and, if both are bound, drop its connections so that the handshake
    /// refuses it with the reason (both sides log it, STATUS shows it).
    pub(super) fn foreign_peer_seen(&mut self, peer: NodeId, cluster: crate::core::ClusterTag) {
        let now_ms = self.clock.now_ms();
        let name = self.name(peer).to_string();
        let theirs = cluster
            .log_id
            .map_or("none".to_string(), |id| id.to_string());
        let ours = self
            .replica
            .raft()
            .cluster_tag()
            .log_id
            .map_or("none".to_string(), |id| id.to_string());
        log_limited!(
            self.limiter,
            now_ms,
            Warn,
            "foreign message",
            u64::from(peer.0),
            "Ignored a message from {name}: its log begins with cluster {theirs}, this node's with {ours}"
        );
        let both_bound = cluster.bound && self.replica.raft().cluster_id().is_some();
        if !both_bound {
            return;
        }
        self.views[peer.0 as usize].cluster_id = cluster.log_id;
        let tokens: Vec<Token> = [
            self.inbound[peer.0 as usize],
            self.links[peer.0 as usize]
                .as_ref()
                .and_then(|link| link.token),
        ]
        .into_iter()
        .flatten()
        .collect();
        for token in tokens {
            self.close(token, "it belongs to another cluster");
        }
    }

    /// Which way a connection goes, for log lines: an address we dialled is
    /// the peer's; one it came from is an ephemeral port of the peer's.
    fn whence(&self, token: Token) -> String {
        let remote = self.remote_of(token);
        let outbound = self
            .connections
            .get(&token)
            .is_some_and(|connection| connection.kind.outbound_peer().is_some());
        match outbound {
            true => format!("dialled at {remote}"),
            false => format!("connecting from {remote}"),
        }
    }

    /// When a majority of the other members refuse this node for its
    /// cluster, this node is the stale one: say so plainly, and what to do.
    fn check_stale(&mut self, reason: RefusalReason) {
        if reason != RefusalReason::ClusterId {
            return;
        }
        let now_ms = self.clock.now_ms();
        let names = self.identity.member_names();
        // Whichever side spoke first, the pair disagrees on the cluster.
        let mut refusing = self
            .refusals_received
            .members_refusing(&names, "cluster_id", now_ms);
        let given = self
            .refusals_given
            .members_refusing(&names, "cluster_id", now_ms);
        refusing.extend(given);
        refusing.sort();
        refusing.dedup();
        let others_needed = self.identity.members.len() / 2 + 1;
        if refusing.len() < others_needed.min(self.identity.members.len() - 1) {
            return;
        }
        let ours = self
            .replica
            .raft()
            .cluster_id()
            .map_or("none".to_string(), |id| id.to_string());
        log_limited!(
            self.limiter,
            now_ms,
            Error,
            "stale member",
            0,
            "This node belongs to cluster {ours}, but {} (a majority) do not: its data dir is from another cluster. Stop it, move its data dir aside, and start it again to rejoin empty (docs/OPERATIONS.md, \"A stale data dir\")",
            refusing.join(", ")
        );
    }

    /// The next reconnect to `peer` waits the long, growing refusal delay.
    fn note_link_refused(&mut self, peer: NodeId) {
        if let Some(link) = self.links[peer.0 as usize].as_mut() {
            link.refused = true;
        }
    }

    // ---- established connections -----------------------------------------

    fn peer_message(&mut self, token: Token, peer: NodeId, message: Message) {
        let self_id = self.replica.raft().id();
        if message.from != peer || message.to != self_id {
            let text = format!(
                "message from {} to {} on {}'s connection",
                message.from,
                message.to,
                self.name(peer)
            );
            let refusal = PeerRefused::new(RefusalReason::Protocol, &text);
            return self.refuse(token, refusal, Some(self.name(peer).to_string()));
        }
        if matches!(message.body, MessageBody::AppendEntries(_)) {
            self.counters.appends_received += 1;
        }
        self.replica.step(message);
        self.check_cluster_id();
    }

    /// Once this node is bound to its cluster, the connections of peers
    /// whose handshake named another cluster are dropped: they are made
    /// again, and refused with the reason (the core already ignores their
    /// requests; this keeps the refusal visible).
    pub(super) fn check_cluster_id(&mut self) {
        let now = self.replica.raft().cluster_id();
        if now == self.cluster_id_seen {
            return;
        }
        self.cluster_id_seen = now;
        let foreign: Vec<Token> = self
            .connections
            .iter()
            .filter(|(_, connection)| {
                let peer = match connection.kind {
                    ConnectionKind::InboundPeer(peer) | ConnectionKind::OutboundPeer(peer) => peer,
                    _ => return false,
                };
                let theirs = self.views[peer.0 as usize].cluster_id;
                !crate::core::ClusterId::admits(now, theirs)
            })
            .map(|(&token, _)| token)
            .collect();
        for token in foreign {
            self.close(token, "its handshake named another cluster");
        }
    }

    /// Peers we reach that do not connect back are named, with what their
    /// handshake told us (called by the sweep).
    pub(super) fn check_silent_peers(&mut self) {
        let now_ms = self.clock.now_ms();
        let own = self.identity.address().to_string();
        for peer in self.peer_ids() {
            let connected = self.links[peer.0 as usize]
                .as_ref()
                .is_some_and(|link| link.connected);
            let view = &self.views[peer.0 as usize];
            let silent = view
                .inbound_absent_since_ms
                .is_some_and(|since| now_ms >= since + PEER_SILENT_WARN_MS);
            if !connected || !silent {
                continue;
            }
            let why = match &view.expects_us_at {
                Some(expected) if *expected != own => format!(
                    "its member list has this node at {expected}, but it listens on {own} (restarted with another --port or --host?)"
                ),
                _ => "is this node reachable from it?".to_string(),
            };
            let name = self.name(peer).to_string();
            log_limited!(
                self.limiter,
                now_ms,
                Warn,
                "peer silent",
                u64::from(peer.0),
                "Peer {name} has not connected to us for {} s though we reach it: {why}",
                PEER_SILENT_WARN_MS / 1000
            );
        }
    }

    // ---- outgoing links --------------------------------------------------

    pub(super) fn connect(&mut self, peer: NodeId) {
        let token = self.next_token();
        let now_ms = self.clock.now_ms();
        let Some(link) = self.links[peer.0 as usize].as_mut() else {
            return;
        };
        if let Some(timer) = link.timer.take() {
            self.timers.cancel(timer);
        }
        let address = link.address;
        let mut stream = match TcpStream::connect(address) {
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
        let kind = ConnectionKind::OutboundHandshake {
            peer,
            hello: None,
            proved: false,
        };
        let connection = Connection::new(stream, address, kind, true, now_ms);
        self.connections.insert(token, connection);
    }

    /// A non-blocking connect is a state: on WRITABLE, `take_error` then
    /// `peer_addr` tell whether it completed. Then the hello goes out.
    pub(super) fn finish_connect(&mut self, token: Token) {
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
        let ConnectionKind::OutboundHandshake { peer, .. } = connection.kind else {
            return;
        };
        let cluster_id = self.replica.raft().cluster_id();
        let hello = self.identity.hello(cluster_id, self.nonces.next_nonce());
        self.send_frame(token, &Frame::PeerHello(hello.clone()));
        if let Some(connection) = self.connections.get_mut(&token) {
            connection.kind = ConnectionKind::OutboundHandshake {
                peer,
                hello: Some(Box::new(hello)),
                proved: false,
            };
        }
        self.read_backlog.push(token);
    }

    pub(super) fn link_lost(&mut self, peer: NodeId, was_connecting: bool, reason: &str) {
        let now_ms = self.clock.now_ms();
        let Some(link) = self.links[peer.0 as usize].as_mut() else {
            return;
        };
        let was_connected = link.connected;
        link.token = None;
        link.connected = false;
        let (name, address) = (link.name.clone(), link.address);
        if was_connected {
            log!(Info, "Peer {name} disconnected: {reason}");
            self.replica.report_unreachable(peer);
        } else if was_connecting {
            let hint = match &self.views[peer.0 as usize].advertised {
                Some(advertised) if *advertised != address.to_string() => format!(
                    "; it connected to us saying it listens on {advertised} (restarted with another --port or --host?)"
                ),
                _ => String::new(),
            };
            log_limited!(
                self.limiter,
                now_ms,
                Info,
                "peer unreachable",
                u64::from(peer.0),
                "Peer {name} unreachable at {address}: {reason} (retrying with backoff){hint}"
            );
        }
        self.schedule_reconnect(peer);
    }

    fn schedule_reconnect(&mut self, peer: NodeId) {
        let now_ms = self.clock.now_ms();
        let jitter = self.nonces.next_nonce()[0];
        let Some(link) = self.links[peer.0 as usize].as_mut() else {
            return;
        };
        if let Some(timer) = link.timer.take() {
            self.timers.cancel(timer);
        }
        let delay_ms = if link.refused {
            let delay_ms = link.refused_backoff_ms;
            link.refused_backoff_ms = (delay_ms * 2).min(REFUSED_RECONNECT_DELAY_MS_MAX);
            // Up to a quarter more, so refused nodes do not retry in step.
            delay_ms + delay_ms * u64::from(jitter) / 1024
        } else {
            let delay_ms = link.backoff_ms;
            link.backoff_ms = (delay_ms * 2).min(RECONNECT_DELAY_MS_MAX);
            delay_ms
        };
        link.timer = Some(self.timers.insert(now_ms + delay_ms, Timer::Peer(peer)));
    }

    /// Either the backoff ended (connect again) or a connect or handshake
    /// hung too long.
    pub(super) fn peer_timer_fired(&mut self, peer: NodeId) {
        let Some(link) = self.links[peer.0 as usize].as_mut() else {
            return;
        };
        link.timer = None;
        match link.token {
            None => self.connect(peer),
            Some(token) if !link.connected => self.close(token, "connect or handshake timed out"),
            Some(_) => {}
        }
    }

    pub(super) fn name(&self, id: NodeId) -> &str {
        self.identity
            .members
            .get(id.0 as usize)
            .map_or("?", |(name, _)| name.as_str())
    }
}

/// Refusals given or received, by (peer id as claimed, reason), with when
/// each was last seen: what STATUS shows. Anyone who connects may claim a
/// new id each time, so the table is bounded: when it is full, the entry
/// seen longest ago makes room.
#[derive(Debug, Default)]
pub(super) struct Refusals {
    seen_ms: BTreeMap<(String, &'static str), u64>,
}

impl Refusals {
    pub(super) fn note(&mut self, name: String, reason: &'static str, now_ms: u64) {
        let key = (name, reason);
        if !self.seen_ms.contains_key(&key) && self.seen_ms.len() >= REFUSALS_REMEMBERED_MAX {
            let oldest = self
                .seen_ms
                .iter()
                .min_by_key(|(_, at_ms)| **at_ms)
                .map(|(key, _)| key.clone());
            if let Some(oldest) = oldest {
                self.seen_ms.remove(&oldest);
            }
        }
        self.seen_ms.insert(key, now_ms);
        assert!(self.seen_ms.len() <= REFUSALS_REMEMBERED_MAX);
    }

    /// Which of `members` refused with `reason` within REFUSAL_SHOWN_MS.
    pub(super) fn members_refusing(
        &self,
        members: &[String],
        reason: &'static str,
        now_ms: u64,
    ) -> Vec<String> {
        self.seen_ms
            .iter()
            .filter(|((name, why), at_ms)| {
                *why == reason && now_ms < **at_ms + REFUSAL_SHOWN_MS && members.contains(name)
            })
            .map(|((name, _), _)| name.clone())
            .collect()
    }

    /// Those seen within REFUSAL_SHOWN_MS, as `ID:reason,...` (the first
    /// 8 by id) or `none`.
    pub(super) fn text(&mut self, now_ms: u64) -> String {
        self.seen_ms
            .retain(|_, at_ms| now_ms < *at_ms + REFUSAL_SHOWN_MS);
        if self.seen_ms.is_empty() {
            return "none".to_string();
        }
        let items: Vec<String> = self
            .seen_ms
            .keys()
            .take(8)
            .map(|(name, reason)| format!("{name}:{reason}"))
            .collect();
        items.join(",")
    }
}

/// An id another node claimed (in a hello or a challenge), as logs and
/// STATUS show it: only if it is a valid node id, for anyone may claim
/// anything before a handshake is proved, spaces, `=` and line breaks too.
fn shown_id(claimed: &str) -> String {
    match super::options::check_node_id(claimed) {
        Ok(()) => claimed.to_string(),
        Err(_) => "?".to_string(),
    }
}

fn kind_name(kind: &ConnectionKind) -> &'static str {
    match kind {
        ConnectionKind::Unidentified => "new",
        ConnectionKind::Client => "client",
        ConnectionKind::InboundHandshake(_) | ConnectionKind::OutboundHandshake { .. } => {
            "handshaking peer"
        }
        ConnectionKind::InboundPeer(_) | ConnectionKind::OutboundPeer(_) => "peer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_shown_for_a_while_and_the_table_stays_bounded() {
        let mut refusals = Refusals::default();
        assert_eq!(refusals.text(0), "none");
        refusals.note("D".to_string(), "unknown_node", 0);
        refusals.note("B".to_string(), "cluster_id", 10);
        refusals.note("D".to_string(), "unknown_node", 20);
        assert_eq!(refusals.text(30), "B:cluster_id,D:unknown_node");
        assert_eq!(refusals.text(REFUSAL_SHOWN_MS + 15), "D:unknown_node");
        assert_eq!(refusals.text(REFUSAL_SHOWN_MS + 20), "none");
        // A stranger claiming a new id on each connection.
        let start_ms = 10 * REFUSAL_SHOWN_MS;
        refusals.note("B".to_string(), "cluster_id", start_ms);
        for count in 0..10 * REFUSALS_REMEMBERED_MAX as u64 {
            refusals.note(format!("x{count:05}"), "unknown_node", start_ms + 1 + count);
            assert!(refusals.seen_ms.len() <= REFUSALS_REMEMBERED_MAX);
        }
        assert!(
            !refusals
                .seen_ms
                .contains_key(&("B".to_string(), "cluster_id")),
            "the oldest made room"
        );
        let newest = format!("x{:05}", 10 * REFUSALS_REMEMBERED_MAX - 1);
        assert!(refusals.seen_ms.contains_key(&(newest, "unknown_node")));
    }
}
