//! Simulated clients. Each runs one operation at a time against the
//! cluster the way `client.rs` does: open a session, number its writes in
//! it so a retry applies at most once, send to the node it believes leads,
//! follow NOT_LEADER hints, retry elsewhere after a timeout or a broken
//! connection. Every attempt is remembered so its reply can be checked.

use super::event;
use super::options::{CLIENT_RETRY_PAUSE_MS, KEYS_COUNT, OPERATIONS_PER_CLIENT_MAX};
use crate::core::rng::Rng;
use crate::core::LogIndex;
use crate::kv::{parse_request, LogRecord};
use crate::replica::{ClientToken, SessionTag};
use crate::reply::{Reply, ReplyKind};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    Set,
    Get,
    Del,
    Cas,
}

/// How often each verb is picked.
const VERB_WEIGHTS: [(Verb, u64); 4] = [
    (Verb::Set, 35),
    (Verb::Get, 30),
    (Verb::Del, 15),
    (Verb::Cas, 20),
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperationKind {
    /// Opens the client's session (REGISTER).
    Register,
    /// A command that goes through the log.
    Write,
    /// A linearizable read of `key` (ReadIndex, no log entry).
    Read { key: Vec<u8> },
}

/// One logical client operation, retried until it gets a definite answer.
pub struct Operation {
    pub line: String,
    pub kind: OperationKind,
    pub session: SessionTag,
    /// What the log must carry for it (empty for a read).
    pub data: Vec<u8>,
    /// The write each client makes after the faults stop.
    pub is_final: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptState {
    InFlight,
    /// The node appended it at `index` and owes a reply.
    Proposed {
        index: LogIndex,
    },
    Answered,
    /// The node crashed: no reply will come.
    ConnectionLost,
}

/// One send of an operation to one node.
pub struct Attempt {
    pub client: usize,
    pub node: usize,
    pub line: String,
    pub kind: OperationKind,
    pub data: Vec<u8>,
    pub state: AttemptState,
    /// The committed history's length when the client sent it: a read must
    /// see at least that much (linearizability).
    pub committed_at_send: LogIndex,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientState {
    /// Thinking or pausing; a ClientSend is scheduled, or the client has
    /// nothing left to do until the faults stop.
    Idle,
    Waiting {
        request_id: u64,
    },
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SessionState {
    /// This client writes without a session (at-least-once).
    Without,
    /// It must open one before its first write.
    Closed,
    Open {
        client_id: u64,
        sequence_last: u64,
    },
}

struct Client {
    target: usize,
    operation: Option<Operation>,
    state: ClientState,
    session: SessionState,
    operations_started: u64,
}

pub struct Workload {
    clients: Vec<Client>,
    attempts: BTreeMap<u64, Attempt>,
    request_id_next: u64,
    /// The faults stopped: each client's next operation is its final one.
    finishing: bool,
    size: usize,
    think_ms_max: u64,
    pub operations_completed: u64,
    pub replies: u64,
}

/// An attempt for the simulator to put on the wire.
pub struct Outgoing {
    pub node: usize,
    pub token: ClientToken,
    pub session: SessionTag,
    pub line: String,
}

impl Workload {
    /// Most clients use sessions, as `client.rs` does; some do not, so that
    /// both kinds of log command are exercised.
    pub fn new(rng: &mut Rng, clients_count: u64, size: usize, think_ms_max: u64) -> Workload {
        let clients = (0..clients_count)
            .map(|_| Client {
                target: random_node(rng, size),
                operation: None,
                state: ClientState::Idle,
                session: match rng.chance(3, 4) {
                    true => SessionState::Closed,
                    false => SessionState::Without,
                },
                operations_started: 0,
            })
            .collect();
        Workload {
            clients,
            attempts: BTreeMap::new(),
            request_id_next: 1,
            finishing: false,
            size,
            think_ms_max,
            operations_completed: 0,
            replies: 0,
        }
    }

    pub fn clients_count(&self) -> usize {
        self.clients.len()
    }

    pub fn think_ms(&self, rng: &mut Rng) -> u64 {
        rng.range_inclusive(0, self.think_ms_max)
    }

    pub fn attempt(&self, request_id: u64) -> Option<&Attempt> {
        self.attempts.get(&request_id)
    }

    /// The client's next attempt: the current operation again, or a new
    /// one. None if it has nothing to send.
    pub fn send(&mut self, rng: &mut Rng, client: usize, committed: LogIndex) -> Option<Outgoing> {
        if self.clients[client].state != ClientState::Idle {
            return None;
        }
        if self.clients[client].operation.is_none() {
            let operation = self.next_operation(rng, client)?;
            self.clients[client].operation = Some(operation);
        }
        let request_id = self.request_id_next;
        self.request_id_next += 1;
        let state = &mut self.clients[client];
        state.state = ClientState::Waiting { request_id };
        let operation = state.operation.as_ref().expect("set above");
        let attempt = Attempt {
            client,
            node: state.target,
            line: operation.line.clone(),
            kind: operation.kind.clone(),
            data: operation.data.clone(),
            state: AttemptState::InFlight,
            committed_at_send: committed,
        };
        let outgoing = Outgoing {
            node: state.target,
            token: ClientToken {
                connection: client as u64,
                request_id,
            },
            session: operation.session,
            line: operation.line.clone(),
        };
        self.attempts.insert(request_id, attempt);
        Some(outgoing)
    }

    fn next_operation(&mut self, rng: &mut Rng, client: usize) -> Option<Operation> {
        let finishing = self.finishing;
        let state = &mut self.clients[client];
        if state.session == SessionState::Closed {
            return Some(register());
        }
        if finishing {
            let line = format!("SET k{} c{client}-final", client as u64 % KEYS_COUNT);
            return Some(write(&mut state.session, line, true));
        }
        if state.operations_started == OPERATIONS_PER_CLIENT_MAX {
            return None;
        }
        state.operations_started += 1;
        let key = format!("k{}", rng.range_inclusive(0, KEYS_COUNT - 1));
        let value = format!("c{client}-{}", state.operations_started);
        let line = match pick_verb(rng) {
            Verb::Get => return Some(read(key)),
            Verb::Set => format!("SET {key} {value}"),
            Verb::Del => format!("DEL {key}"),
            Verb::Cas if rng.chance(1, 3) => format!("CAS {key} - {value}"),
            Verb::Cas => {
                let other = rng.range_inclusive(1, state.operations_started);
                format!("CAS {key} c{client}-{other} {value}")
            }
        };
        Some(write(&mut state.session, line, false))
    }

    /// The node appended the attempt's command at `index`.
    pub fn proposed(&mut self, request_id: u64, index: LogIndex) {
        if let Some(attempt) = self.attempts.get_mut(&request_id) {
            attempt.state = AttemptState::Proposed { index };
        }
    }

    /// The node replied (the reply is on its way to the client).
    pub fn answered(&mut self, request_id: u64) {
        self.replies += 1;
        if let Some(attempt) = self.attempts.get_mut(&request_id) {
            attempt.state = AttemptState::Answered;
        }
    }

    /// The attempt reached a node that is down: the connection failed.
    pub fn connection_lost(&mut self, request_id: u64) {
        if let Some(attempt) = self.attempts.get_mut(&request_id) {
            attempt.state = AttemptState::ConnectionLost;
        }
    }

    /// `node` crashed: its connections broke. Returns the clients waiting
    /// on it, with the attempt they wait on, to be told.
    pub fn node_crashed(&mut self, node: usize) -> Vec<(usize, u64)> {
        let mut broken = Vec::new();
        for (&request_id, attempt) in self.attempts.iter_mut() {
            let open = matches!(
                attempt.state,
                AttemptState::InFlight | AttemptState::Proposed { .. }
            );
            if attempt.node == node && open {
                attempt.state = AttemptState::ConnectionLost;
                let waiting = ClientState::Waiting { request_id };
                if self.clients[attempt.client].state == waiting {
                    broken.push((attempt.client, request_id));
                }
            }
        }
        broken
    }

    /// A reply reached the client. Returns after how long it sends next,
    /// if it does.
    pub fn receive(
        &mut self,
        rng: &mut Rng,
        client: usize,
        request_id: u64,
        reply: &event::Reply,
    ) -> Option<u64> {
        let state = &self.clients[client];
        if state.state != (ClientState::Waiting { request_id }) {
            return None; // a late reply to an attempt the client gave up on
        }
        let reply = match reply {
            event::Reply::Line(reply) => reply,
            event::Reply::Disconnected => return self.retry(rng, client, None),
        };
        match reply {
            Reply::Session { id } => {
                self.clients[client].session = SessionState::Open {
                    client_id: *id,
                    sequence_last: 0,
                };
                return self.complete(rng, client);
            }
            Reply::SessionExpired => {
                self.clients[client].session = SessionState::Closed;
                self.clients[client].operation = None;
                return self.retry(rng, client, None);
            }
            _ => {}
        }
        match reply.kind() {
            ReplyKind::Success | ReplyKind::Mismatch => self.complete(rng, client),
            ReplyKind::NotLeader => {
                let hint = reply.leader_hint().and_then(node_of_address);
                self.retry(rng, client, hint)
            }
            ReplyKind::Timeout | ReplyKind::Error => self.retry(rng, client, None),
        }
    }

    /// The client stopped waiting for `request_id`; it retries elsewhere.
    pub fn give_up(&mut self, rng: &mut Rng, client: usize, request_id: u64) -> Option<u64> {
        if self.clients[client].state != (ClientState::Waiting { request_id }) {
            return None;
        }
        self.retry(rng, client, None)
    }

    fn complete(&mut self, rng: &mut Rng, client: usize) -> Option<u64> {
        self.operations_completed += 1;
        let state = &mut self.clients[client];
        let operation = state.operation.take().expect("waiting means an operation");
        if operation.is_final {
            state.state = ClientState::Done;
            return None;
        }
        state.state = ClientState::Idle;
        Some(rng.range_inclusive(0, self.think_ms_max))
    }

    /// Tries again: at the hinted leader at once, or at a random node after
    /// a pause (an election may be running).
    fn retry(&mut self, rng: &mut Rng, client: usize, hint: Option<usize>) -> Option<u64> {
        let size = self.size;
        let state = &mut self.clients[client];
        state.state = ClientState::Idle;
        match hint.filter(|&node| node < size) {
            Some(node) => {
                state.target = node;
                Some(0)
            }
            None => {
                state.target = random_node(rng, size);
                Some(CLIENT_RETRY_PAUSE_MS)
            }
        }
    }

    /// The faults stopped. Returns the clients that sit idle with nothing
    /// scheduled, to be started on their final operation.
    pub fn begin_final(&mut self) -> Vec<usize> {
        self.finishing = true;
        (0..self.clients.len())
            .filter(|&client| {
                let state = &self.clients[client];
                state.state == ClientState::Idle
                    && state.operation.is_none()
                    && state.operations_started == OPERATIONS_PER_CLIENT_MAX
            })
            .collect()
    }

    pub fn all_done(&self) -> bool {
        self.clients
            .iter()
            .all(|client| client.state == ClientState::Done)
    }

    /// A client still working, and what on, for a liveness report.
    pub fn first_unfinished(&self) -> Option<(usize, String)> {
        let client = self
            .clients
            .iter()
            .position(|client| client.state != ClientState::Done)?;
        let line = self.clients[client]
            .operation
            .as_ref()
            .map_or("nothing".to_string(), |operation| operation.line.clone());
        Some((client, line))
    }

    /// A proposal a live node accepted and has not answered yet.
    pub fn first_unanswered_proposal(&self) -> Option<(u64, &Attempt)> {
        self.attempts
            .iter()
            .find(|(_, attempt)| matches!(attempt.state, AttemptState::Proposed { .. }))
            .map(|(&request_id, attempt)| (request_id, attempt))
    }
}

fn register() -> Operation {
    let mut data = Vec::new();
    LogRecord::Register.encode(&mut data);
    Operation {
        line: "REGISTER".to_string(),
        kind: OperationKind::Register,
        session: SessionTag::default(),
        data,
        is_final: false,
    }
}

fn read(key: String) -> Operation {
    Operation {
        line: format!("GET {key}"),
        kind: OperationKind::Read {
            key: key.into_bytes(),
        },
        session: SessionTag::default(),
        data: Vec::new(),
        is_final: false,
    }
}

/// A write, numbered in the client's session if it has one.
fn write(session: &mut SessionState, line: String, is_final: bool) -> Operation {
    let command = parse_request(&line)
        .ok()
        .and_then(|request| request.into_command())
        .expect("the workload only writes valid log commands");
    let tag = match session {
        SessionState::Open {
            client_id,
            sequence_last,
        } => {
            *sequence_last += 1;
            SessionTag {
                session_id: *client_id,
                sequence: *sequence_last,
            }
        }
        SessionState::Without | SessionState::Closed => SessionTag::default(),
    };
    let numbered = (tag.session_id != 0).then_some((tag.session_id, tag.sequence));
    let record = LogRecord::Command {
        session: numbered,
        command,
    };
    let mut data = Vec::new();
    record.encode(&mut data);
    Operation {
        line,
        kind: OperationKind::Write,
        session: tag,
        data,
        is_final,
    }
}

fn pick_verb(rng: &mut Rng) -> Verb {
    let total: u64 = VERB_WEIGHTS.iter().map(|(_, weight)| weight).sum();
    let mut roll = rng.range_inclusive(0, total - 1);
    for (verb, weight) in VERB_WEIGHTS {
        if roll < weight {
            return verb;
        }
        roll -= weight;
    }
    unreachable!("roll below the total weight")
}

fn random_node(rng: &mut Rng, size: usize) -> usize {
    rng.range_inclusive(0, size as u64 - 1) as usize
}

/// Member addresses are `sim:<index>` (see `Simulator::new`).
pub fn address_of_node(node: usize) -> String {
    format!("sim:{node}")
}

fn node_of_address(address: &str) -> Option<usize> {
    address.strip_prefix("sim:")?.parse().ok()
}
