//! The daemon's side of the driver's `Transport`: a peer message goes into
//! the output queue of our connection to that peer, and `flush` writes the
//! queues out. It borrows only the connections, so the driver can hold the
//! replica meanwhile; a connection that must close (a peer that stopped
//! reading, a failed write) is noted, and the loop closes it after the
//! drive.

use super::connection::Connection;
use super::server::PeerLink;
use crate::core::{Message, MessageBody};
use crate::driver::Transport;
use crate::replica::NodeCounters;
use crate::wire::encode_message;
use mio::{Interest, Registry, Token};
use std::collections::HashMap;

pub(super) struct PeerTransport<'a> {
    pub connections: &'a mut HashMap<Token, Connection>,
    /// By NodeId; None for this node.
    pub links: &'a [Option<PeerLink>],
    pub registry: &'a Registry,
    /// Connections with output queued this turn.
    pub dirty: &'a mut Vec<Token>,
    pub counters: &'a mut NodeCounters,
    /// Connections to close once the drive is over, and why.
    pub broken: &'a mut Vec<(Token, String)>,
}

impl Transport for PeerTransport<'_> {
    fn send(&mut self, message: Message) {
        if let MessageBody::AppendEntries(request) = &message.body {
            let entries = request.entries.len() as u64;
            self.counters.appends_sent += 1;
            self.counters.appends_sent_with_entries += u64::from(entries > 0);
            self.counters.appended_entries_sent += entries;
        }
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
        encode_message(&message, connection.output());
        if connection.output_overflowed() {
            self.broken.push((token, "peer is not reading".to_string()));
            return;
        }
        self.dirty.push(token);
    }

    fn flush(&mut self) {
        let mut dirty = std::mem::take(self.dirty);
        dirty.sort_unstable();
        dirty.dedup();
        for token in dirty {
            if let Err(reason) = flush_one(self.connections, self.registry, self.counters, token) {
                self.broken.push((token, reason));
            }
        }
    }
}

/// Writes one connection's queued output, and keeps WRITABLE interest
/// registered exactly while some is left. An error is why to close it.
pub(super) fn flush_one(
    connections: &mut HashMap<Token, Connection>,
    registry: &Registry,
    counters: &mut NodeCounters,
    token: Token,
) -> Result<(), String> {
    let Some(connection) = connections.get_mut(&token) else {
        return Ok(());
    };
    let queued = connection.queued_len();
    let flushed = connection.flush();
    counters.bytes_out += (queued - connection.queued_len()) as u64;
    let remaining = flushed.map_err(|error| format!("write failed: {error}"))?;
    if remaining == connection.writable_registered {
        return Ok(());
    }
    let interest = if remaining {
        Interest::READABLE | Interest::WRITABLE
    } else {
        Interest::READABLE
    };
    connection.writable_registered = remaining;
    registry
        .reregister(&mut connection.stream, token, interest)
        .map_err(|error| format!("cannot reregister: {error}"))
}
