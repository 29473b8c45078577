//! Everything that can happen in a simulated run, one event per step.

use raftlite::core::{LogIndex, Message};
use raftlite::replica::{ClientToken, SessionTag};

/// What a client receives for an attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A reply from the node (what its line says).
    Line(raftlite::reply::Reply),
    /// The connection broke (the node crashed) after the request reached
    /// it, before a reply came: the outcome is unknown.
    Disconnected,
    /// The node was down when the request came: the connect failed, and
    /// the request certainly did not reach it.
    Refused,
}

#[derive(Clone, Debug)]
pub enum Event {
    /// A peer message reaches its destination; `sender_incarnation` is the
    /// sender's process when it sent it.
    Deliver {
        message: Message,
        sender_incarnation: u64,
        /// When it left the sender (later than it was made, if the sender
        /// was blocked in an fsync): lost if the sender died before.
        leaves_ms: u64,
    },
    /// The core's next deadline (election timeout or heartbeat) is due.
    /// Stale if the node has rescheduled since.
    CoreTimer {
        node: usize,
        incarnation: u64,
    },
    /// The node has more Ready passes to make (the driver hit READY_PASSES_PER_DRIVE_MAX).
    Drive {
        node: usize,
        incarnation: u64,
    },
    /// An fsync a node waited in has completed: the step that takes this
    /// hands the checkers what the node did after it (drive.rs).
    Unblocked,
    /// The disk completed the syncs due by now.
    SyncComplete {
        node: usize,
        incarnation: u64,
    },
    /// A client's request line reaches a node.
    ClientRequest {
        node: usize,
        token: ClientToken,
        session: SessionTag,
        line: String,
    },
    /// The server gave up waiting for a proposal to commit (the daemon's
    /// CLIENT_REQUEST_TIMEOUT_MS timer).
    RequestExpire {
        node: usize,
        incarnation: u64,
        index: LogIndex,
        token: ClientToken,
    },
    /// A reply, or a broken connection, reaches a client.
    ClientReply {
        client: usize,
        request_id: u64,
        reply: Reply,
        /// The node, process and time it left, for a line: lost (the
        /// connection broke instead) if that process died before.
        sender: Option<(usize, u64, u64)>,
    },
    /// A client stops waiting for an attempt.
    ClientTimeout {
        client: usize,
        request_id: u64,
    },
    /// A client starts its next command (after thinking).
    ClientSend {
        client: usize,
    },
    /// A client's pause between rounds of tries is over.
    ClientResume {
        client: usize,
    },
    /// Time to inject the next fault.
    Nemesis,
    Restart {
        node: usize,
        incarnation: u64,
    },
    Resume {
        node: usize,
        pause: u64,
    },
    PartitionHeal {
        generation: u64,
    },
    DiskRecover {
        node: usize,
        generation: u64,
    },
    /// Time for the operator's next TRANSFER (transfers.rs).
    Transfer,
    /// The operator's request line reaches a node.
    OperatorRequest {
        node: usize,
        token: ClientToken,
        line: String,
    },
    /// The stale member's time is up: its own data dir comes back.
    StaleMemberEnd {
        node: usize,
        incarnation: u64,
    },
}

impl Event {
    /// The node whose process handles this event, if any: a paused node
    /// holds these until it resumes.
    pub fn node(&self) -> Option<usize> {
        match self {
            Event::Deliver { message, .. } => Some(message.to.0 as usize),
            Event::CoreTimer { node, .. }
            | Event::Drive { node, .. }
            | Event::SyncComplete { node, .. }
            | Event::ClientRequest { node, .. }
            | Event::OperatorRequest { node, .. }
            | Event::RequestExpire { node, .. } => Some(*node),
            _ => None,
        }
    }
}
