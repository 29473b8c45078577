//! Simulated clients. Each runs the real client machine
//! (src/client/machine.rs), one command at a time, over simulated
//! connections: it opens a session, numbers its writes in it so a retry
//! applies at most once, sends to the node it believes leads, follows
//! NOT_LEADER hints, backs off and retries elsewhere, and ends each command
//! with the answer `submit` would print. Every try is remembered so the
//! node's reply can be checked, and every end so the outcome can be.

use super::options::{CLIENT_COMMAND_TIMEOUT_MS, KEYS_COUNT, OPERATIONS_PER_CLIENT_MAX};
use raftlite::client::{Action, ClientConfig, ClientMachine, Try, TryResult};
use raftlite::core::rng::Rng;
use raftlite::core::{LogIndex, PlantedBug};
use raftlite::kv::{parse_request, LogRecord};
use raftlite::replica::{ClientToken, SessionTag};
use raftlite::reply::{Answer, ReplyKind};
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

/// One command a client runs to its end (a reply, or the client's own
/// ERR TIMEOUT / ERR UNAVAILABLE), through as many tries as the client
/// machine makes.
pub struct Operation {
    /// Numbers the commands of the run, for the outcome checks.
    pub id: u64,
    pub line: String,
    pub kind: OperationKind,
    /// The write each client makes after the faults stop: run again until
    /// it succeeds.
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

/// One try of a command at one node (the client machine's `Try`).
pub struct Attempt {
    pub client: usize,
    pub node: usize,
    pub line: String,
    pub kind: OperationKind,
    /// What the log must carry for it (empty for a read).
    pub data: Vec<u8>,
    pub state: AttemptState,
    /// The committed history's length when the client sent it: a read must
    /// see at least that much (linearizability).
    pub committed_at_send: LogIndex,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientState {
    /// Thinking; a ClientSend is scheduled, or the client has nothing left
    /// to do until the faults stop.
    Idle,
    Waiting {
        request_id: u64,
    },
    /// The machine pauses between rounds of tries; a ClientResume is
    /// scheduled.
    Paused,
    Done,
}

struct Client {
    machine: ClientMachine,
    operation: Option<Operation>,
    state: ClientState,
    operations_started: u64,
}

pub struct Workload {
    clients: Vec<Client>,
    attempts: BTreeMap<u64, Attempt>,
    request_id_next: u64,
    operation_id_next: u64,
    /// The faults stopped: each client's next operation is its final one.
    finishing: bool,
    think_ms_max: u64,
    pub operations_completed: u64,
    pub replies: u64,
}

/// A try for the simulator to put on the wire.
pub struct Outgoing {
    pub node: usize,
    pub token: ClientToken,
    pub session: SessionTag,
    pub line: String,
    /// The client gives up on it after this long (the machine's limit).
    pub timeout_ms: u64,
    /// The command it is a try of (`Operation::id`).
    pub operation: u64,
}

/// A command that ended, for the outcome checks.
pub struct Ended {
    pub operation: Operation,
    pub answer: Answer,
}

/// What the simulator must do for a client after the machine acted.
pub enum Next {
    Send(Outgoing),
    /// Resume the machine then.
    Pause {
        until_ms: u64,
    },
    /// The command ended; the client starts its next one after
    /// `think_ms`, if it has one.
    Ended {
        ended: Ended,
        think_ms: Option<u64>,
    },
}

impl Workload {
    /// Every client runs the real client machine (src/client/machine.rs)
    /// over the members' addresses in its own order. Most number their
    /// writes in a session, as `submit` does; some do not, so that
    /// unnumbered log commands are exercised too.
    pub fn new(
        rng: &mut Rng,
        clients_count: u64,
        size: usize,
        think_ms_max: u64,
        planted_bug: Option<PlantedBug>,
    ) -> Workload {
        let clients = (0..clients_count)
            .map(|_| Client {
                machine: ClientMachine::new(ClientConfig {
                    seeds: shuffled_addresses(rng, size),
                    timeout_ms: CLIENT_COMMAND_TIMEOUT_MS,
                    redirect: true,
                    sessions: rng.chance(3, 4),
                    seed: rng.next_u64(),
                    planted_bug,
                }),
                operation: None,
                state: ClientState::Idle,
                operations_started: 0,
            })
            .collect();
        Workload {
            clients,
            attempts: BTreeMap::new(),
            request_id_next: 1,
            operation_id_next: 1,
            finishing: false,
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

    /// The client starts its next command (the final one again, if that
    /// failed). None if it has nothing to do.
    pub fn start(
        &mut self,
        rng: &mut Rng,
        client: usize,
        now_ms: u64,
        committed: LogIndex,
    ) -> Option<Next> {
        if self.clients[client].state != ClientState::Idle {
            return None;
        }
        if self.clients[client].operation.is_none() {
            let operation = self.next_operation(rng, client)?;
            self.clients[client].operation = Some(operation);
        }
        let state = &mut self.clients[client];
        let line = &state.operation.as_ref().expect("set above").line;
        let action = state.machine.start(line, now_ms);
        Some(self.act(rng, client, action, committed))
    }

    /// The try the client waits on ended: `result` is what its IO saw.
    pub fn try_finished(
        &mut self,
        rng: &mut Rng,
        client: usize,
        request_id: u64,
        result: TryResult,
        now_ms: u64,
        committed: LogIndex,
    ) -> Option<Next> {
        if self.clients[client].state != (ClientState::Waiting { request_id }) {
            return None; // a late reply to a try the client gave up on
        }
        let action = self.clients[client].machine.try_finished(result, now_ms);
        Some(self.act(rng, client, action, committed))
    }

    /// The client's pause is over.
    pub fn resume(
        &mut self,
        rng: &mut Rng,
        client: usize,
        now_ms: u64,
        committed: LogIndex,
    ) -> Option<Next> {
        if self.clients[client].state != ClientState::Paused {
            return None;
        }
        let action = self.clients[client].machine.resume(now_ms);
        Some(self.act(rng, client, action, committed))
    }

    /// Whether the client waits on `request_id`.
    pub fn waits_on(&self, client: usize, request_id: u64) -> bool {
        self.clients[client].state == (ClientState::Waiting { request_id })
    }

    fn act(&mut self, rng: &mut Rng, client: usize, action: Action, committed: LogIndex) -> Next {
        match action {
            Action::Send(attempt) => Next::Send(self.sent(client, attempt, committed)),
            Action::Pause { until_ms } => {
                self.clients[client].state = ClientState::Paused;
                Next::Pause { until_ms }
            }
            Action::Done(answer) => self.ended(rng, client, answer),
        }
    }

    /// Records the try, so that the node's reply can be checked.
    fn sent(&mut self, client: usize, attempt: Try, committed: LogIndex) -> Outgoing {
        let request_id = self.request_id_next;
        self.request_id_next += 1;
        let node = node_of_address(&attempt.to).expect("clients know only member addresses");
        let request = attempt.request;
        let operation = self.clients[client]
            .operation
            .as_ref()
            .expect("a command runs");
        let operation_id = operation.id;
        let session = SessionTag {
            session_id: request.session_id,
            sequence: request.sequence,
        };
        let (kind, data) = match (&operation.kind, request.command.as_str()) {
            (_, "REGISTER") => (OperationKind::Register, record_of(&LogRecord::Register)),
            (OperationKind::Write, line) => (OperationKind::Write, write_record(line, session)),
            (kind, _) => (kind.clone(), Vec::new()),
        };
        self.attempts.insert(
            request_id,
            Attempt {
                client,
                node,
                line: request.command.clone(),
                kind,
                data,
                state: AttemptState::InFlight,
                committed_at_send: committed,
            },
        );
        self.clients[client].state = ClientState::Waiting { request_id };
        Outgoing {
            node,
            token: ClientToken {
                connection: client as u64,
                request_id,
            },
            session,
            line: request.command,
            timeout_ms: attempt.limit_ms,
            operation: operation_id,
        }
    }

    fn ended(&mut self, rng: &mut Rng, client: usize, answer: Answer) -> Next {
        self.operations_completed += 1;
        let state = &mut self.clients[client];
        let operation = state.operation.take().expect("a command ran");
        let succeeded = matches!(answer.kind(), ReplyKind::Success | ReplyKind::Mismatch);
        let think_ms = match (operation.is_final, succeeded) {
            (true, true) => {
                state.state = ClientState::Done;
                None
            }
            (true, false) => {
                // Again, as a new command: the final write must land.
                state.operation = Some(Operation {
                    id: self.operation_id_next,
                    line: operation.line.clone(),
                    kind: operation.kind.clone(),
                    is_final: true,
                });
                self.operation_id_next += 1;
                state.state = ClientState::Idle;
                Some(rng.range_inclusive(0, self.think_ms_max))
            }
            (false, _) => {
                state.state = ClientState::Idle;
                Some(rng.range_inclusive(0, self.think_ms_max))
            }
        };
        let ended = Ended { operation, answer };
        Next::Ended { ended, think_ms }
    }

    fn next_operation(&mut self, rng: &mut Rng, client: usize) -> Option<Operation> {
        let id = self.operation_id_next;
        let state = &mut self.clients[client];
        let (line, kind, is_final) = if self.finishing {
            let line = format!("SET k{} c{client}-final", client as u64 % KEYS_COUNT);
            (line, OperationKind::Write, true)
        } else {
            if state.operations_started == OPERATIONS_PER_CLIENT_MAX {
                return None;
            }
            state.operations_started += 1;
            let (line, kind) = pick_operation(rng, client, state.operations_started);
            (line, kind, false)
        };
        self.operation_id_next += 1;
        Some(Operation {
            id,
            line,
            kind,
            is_final,
        })
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

/// A random command of the mix: the line and its kind.
fn pick_operation(rng: &mut Rng, client: usize, number: u64) -> (String, OperationKind) {
    let key = format!("k{}", rng.range_inclusive(0, KEYS_COUNT - 1));
    let value = format!("c{client}-{number}");
    let line = match pick_verb(rng) {
        Verb::Get => {
            let line = format!("GET {key}");
            let kind = OperationKind::Read {
                key: key.into_bytes(),
            };
            return (line, kind);
        }
        Verb::Set => format!("SET {key} {value}"),
        Verb::Del => format!("DEL {key}"),
        Verb::Cas if rng.chance(1, 3) => format!("CAS {key} - {value}"),
        Verb::Cas => {
            let other = rng.range_inclusive(1, number);
            format!("CAS {key} c{client}-{other} {value}")
        }
    };
    (line, OperationKind::Write)
}

fn record_of(record: &LogRecord) -> Vec<u8> {
    let mut data = Vec::new();
    record.encode(&mut data);
    data
}

/// The log record a write's try becomes, numbered in its session if the
/// try carries one.
fn write_record(line: &str, tag: SessionTag) -> Vec<u8> {
    let command = parse_request(line)
        .ok()
        .and_then(|request| request.into_command())
        .expect("the workload only writes valid log commands");
    let numbered = (tag.session_id != 0).then_some((tag.session_id, tag.sequence));
    record_of(&LogRecord::Command {
        session: numbered,
        command,
    })
}

/// The members' addresses in a random order: where this client looks
/// first.
fn shuffled_addresses(rng: &mut Rng, size: usize) -> Vec<String> {
    let mut nodes: Vec<usize> = (0..size).collect();
    for last in (1..size).rev() {
        let other = rng.range_inclusive(0, last as u64) as usize;
        nodes.swap(last, other);
    }
    nodes.into_iter().map(address_of_node).collect()
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

/// Member addresses are `sim:<index>` (see `Simulator::new`).
pub fn address_of_node(node: usize) -> String {
    format!("sim:{node}")
}

fn node_of_address(address: &str) -> Option<usize> {
    address.strip_prefix("sim:")?.parse().ok()
}
