//! A replica is the Raft core, the key-value store and the table of client
//! proposals waiting for commit: everything a node does that is not IO. The
//! daemon and the simulator both drive this type.

use crate::constants::PENDING_PROPOSALS_MAX;
use crate::core::{
    Entry, EntryKind, LogIndex, Message, NodeId, ProposeError, Raft, Ready, Role, Term,
};
use crate::kv::{format_value, parse_request, Command, Outcome, Request, Store};
use std::collections::BTreeMap;

/// Identifies a client request to the runtime: which connection, which
/// request on it. Opaque to the replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientToken {
    pub connection: u64,
    pub request_id: u64,
}

/// How clients reach a member: its user-facing id and its address.
#[derive(Clone, Debug)]
pub struct Member {
    pub name: String,
    pub address: String,
}

#[derive(Clone, Copy, Debug)]
struct Pending {
    token: ClientToken,
    term: Term,
}

/// Counters shown in STATUS.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counters {
    pub entries_applied: u64,
}

pub struct Replica {
    raft: Raft,
    store: Store,
    /// Members by NodeId (`members[id.0]`).
    members: Vec<Member>,
    /// Proposals of this leader waiting to apply, by log index.
    /// Invariant: empty unless this node is leader.
    pending: BTreeMap<LogIndex, Pending>,
    replies: Vec<(ClientToken, String)>,
    counters: Counters,
}

impl Replica {
    pub fn new(raft: Raft, members: Vec<Member>) -> Replica {
        Replica {
            raft,
            store: Store::new(),
            members,
            pending: BTreeMap::new(),
            replies: Vec::new(),
            counters: Counters::default(),
        }
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn observe_time(&mut self, now_ms: u64) {
        self.raft.observe_time(now_ms);
    }

    pub fn advance_time(&mut self, now_ms: u64) {
        self.raft.advance_time(now_ms);
    }

    pub fn step(&mut self, message: Message) {
        self.raft.step(message);
    }

    pub fn report_unreachable(&mut self, peer: NodeId) {
        self.raft.report_unreachable(peer);
    }

    pub fn persisted(&mut self, index: LogIndex, term: Term) {
        self.raft.persisted(index, term);
    }

    pub fn has_ready(&self) -> bool {
        self.raft.has_ready()
    }

    /// One command line from a client. The reply comes now (parse errors,
    /// STATUS, redirects) or when the proposal applies; in that case the
    /// index it waits for is returned.
    pub fn handle_request(&mut self, token: ClientToken, line: &str) -> Option<LogIndex> {
        let request = match parse_request(line) {
            Ok(request) => request,
            Err(error) => {
                self.reply(token, format!("ERR BAD_REQUEST {error}"));
                return None;
            }
        };
        match request {
            Request::Status => {
                let line = self.status_line();
                self.reply(token, line);
                None
            }
            Request::StaleGet { key } => {
                let applied = self.raft.log().last_applied();
                let line = match self.store.get(&key) {
                    Some(value) => format!("VALUE {} stale applied={applied}", format_value(value)),
                    None => format!("NOT_FOUND stale applied={applied}"),
                };
                self.reply(token, line);
                None
            }
            other => match other.into_command() {
                Some(command) => self.propose(token, &command),
                None => unreachable!("every other request is a log command"),
            },
        }
    }

    fn propose(&mut self, token: ClientToken, command: &Command) -> Option<LogIndex> {
        if self.raft.role() == Role::Leader && self.pending.len() >= PENDING_PROPOSALS_MAX {
            self.reply(
                token,
                "ERR UNAVAILABLE too many pending requests".to_string(),
            );
            return None;
        }
        let mut data = Vec::with_capacity(command.encoded_size());
        command.encode(&mut data);
        match self.raft.propose(data) {
            Ok((index, term)) => {
                self.pending.insert(index, Pending { token, term });
                Some(index)
            }
            Err(ProposeError::NotLeader { leader }) => {
                let line = self.not_leader_line(leader);
                self.reply(token, line);
                None
            }
        }
    }

    /// The runtime gave up waiting for `token` (proposed at `index`): the
    /// outcome is unknown, the entry may still commit.
    pub fn expire(&mut self, index: LogIndex, token: ClientToken) {
        if self
            .pending
            .get(&index)
            .is_some_and(|pending| pending.token == token)
        {
            self.pending.remove(&index);
            self.reply(token, "ERR TIMEOUT".to_string());
        }
    }

    /// Takes the core's Ready, applies what it committed and answers the
    /// clients waiting for it. The Ready goes on to the runtime for IO.
    pub fn ready(&mut self) -> Ready {
        let ready = self.raft.ready();
        for entry in &ready.committed_entries {
            self.apply(entry);
        }
        if self.raft.role() != Role::Leader && !self.pending.is_empty() {
            self.fail_pending();
        }
        ready
    }

    pub fn take_replies(&mut self) -> Vec<(ClientToken, String)> {
        std::mem::take(&mut self.replies)
    }

    /// Leadership was lost: whatever is pending may or may not commit under
    /// the next leader, so the honest answer is "unknown".
    fn fail_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for (_, pending) in pending {
            self.reply(pending.token, "ERR TIMEOUT".to_string());
        }
    }

    fn apply(&mut self, entry: &Entry) {
        self.counters.entries_applied += 1;
        let outcome = match entry.kind {
            EntryKind::Noop => None,
            // Decoding is deterministic, so every node skips the same bad entry.
            EntryKind::Command => Command::decode(&entry.data)
                .ok()
                .map(|command| self.store.apply(&command)),
        };
        let Some(pending) = self.pending.remove(&entry.index) else {
            return;
        };
        let line = if pending.term != entry.term {
            // Our entry was replaced; it will never apply. Leadership was
            // lost in between, which the contract reports as unknown.
            "ERR TIMEOUT".to_string()
        } else {
            match outcome {
                Some(outcome) => Self::outcome_line(outcome, entry),
                None => "ERR BAD_REQUEST undecodable command".to_string(),
            }
        };
        self.reply(pending.token, line);
    }

    fn outcome_line(outcome: Outcome, entry: &Entry) -> String {
        match outcome {
            Outcome::Ok => format!("OK index={} term={}", entry.index, entry.term),
            Outcome::Value(value) => format!("VALUE {}", format_value(&value)),
            Outcome::NotFound => "NOT_FOUND".to_string(),
            Outcome::Mismatch {
                current: Some(value),
            } => {
                format!("MISMATCH current={}", format_value(&value))
            }
            Outcome::Mismatch { current: None } => "MISMATCH current=NOT_FOUND".to_string(),
        }
    }

    fn reply(&mut self, token: ClientToken, line: String) {
        self.replies.push((token, line));
    }

    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.members.get(id.0 as usize)
    }

    fn not_leader_line(&self, leader: Option<NodeId>) -> String {
        match leader.and_then(|id| self.member(id)) {
            Some(member) => format!(
                "ERR NOT_LEADER leader={} addr={}",
                member.name, member.address
            ),
            None => "ERR NOT_LEADER leader=unknown".to_string(),
        }
    }

    pub fn status_line(&self) -> String {
        let status = self.raft.status();
        let name = |id: Option<NodeId>| {
            id.and_then(|id| self.member(id))
                .map_or("unknown".to_string(), |member| member.name.clone())
        };
        let role = match status.role {
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        };
        format!(
            "STATUS id={} role={role} term={} leader={} last_index={} commit={} applied={} digest={:016x}",
            name(Some(status.id)),
            status.term,
            name(status.leader),
            status.last_index,
            status.commit_index,
            status.last_applied,
            self.store.digest()
        )
    }

    /// Observations for the runtime's log lines.
    pub fn counters(&self) -> Counters {
        self.counters
    }
}
