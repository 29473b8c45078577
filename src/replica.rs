//! A replica is the Raft core, the state machine and the tables of client
//! requests waiting for commit or for a read confirmation: everything a node
//! does that is not IO. The daemon and the simulator both drive this type.

use crate::constants::PENDING_PROPOSALS_MAX;
use crate::core::{
    Entry, EntryKind, LogIndex, Message, NodeId, ProposeError, Raft, ReadState, Ready, Role, Term,
};
use crate::kv::{
    parse_request, quote_if_needed, Applied, CachedReply, LogRecord, Outcome, Position, Request,
    StateMachine,
};
use std::collections::BTreeMap;

/// Identifies a client request to the runtime: which connection, which
/// request on it. Opaque to the replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientToken {
    pub connection: u64,
    pub request_id: u64,
}

/// A client's session id and the command's number in it (0, 0: none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionTag {
    pub session_id: u64,
    pub sequence: u64,
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

#[derive(Clone, Debug)]
struct PendingRead {
    token: ClientToken,
    key: Vec<u8>,
}

/// Counters the runtime keeps and STATUS shows (useful when benchmarking).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeCounters {
    /// Entries written to this node's log.
    pub entries_appended: u64,
    /// Syncs that made something durable, and the entries they covered.
    pub fsyncs: u64,
    pub synced_entries: u64,
    /// AppendEntries sent (heartbeats included), those that carried entries
    /// and the entries they carried, and AppendEntries received.
    pub appends_sent: u64,
    pub appends_sent_with_entries: u64,
    pub appended_entries_sent: u64,
    pub appends_received: u64,
    /// Bytes read from and written to all sockets.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl NodeCounters {
    fn line(&self) -> String {
        let ratio = |numerator: u64, denominator: u64| {
            if denominator == 0 {
                0.0
            } else {
                numerator as f64 / denominator as f64
            }
        };
        format!(
            "entries_appended={} fsyncs={} synced_entries={} entries_per_fsync={:.1} appends_sent={} appends_received={} batch_average={:.1} bytes_in={} bytes_out={}",
            self.entries_appended,
            self.fsyncs,
            self.synced_entries,
            ratio(self.synced_entries, self.fsyncs),
            self.appends_sent,
            self.appends_received,
            ratio(self.appended_entries_sent, self.appends_sent_with_entries),
            self.bytes_in,
            self.bytes_out
        )
    }
}

pub struct Replica {
    raft: Raft,
    counters: NodeCounters,
    /// Fields the runtime adds at the end of STATUS (peers refused, ...).
    status_extra: String,
    machine: StateMachine,
    /// Members by NodeId (`members[id.0]`).
    members: Vec<Member>,
    /// Proposals of this leader waiting to apply, by log index.
    /// Invariant: empty unless this node is leader.
    pending: BTreeMap<LogIndex, Pending>,
    /// Reads waiting for the core's leadership check, by read context.
    reads_unconfirmed: BTreeMap<u64, PendingRead>,
    /// Confirmed reads waiting for the state machine to reach their index.
    reads_confirmed: Vec<(LogIndex, PendingRead)>,
    read_context_next: u64,
    replies: Vec<(ClientToken, String)>,
    /// Where each proposal is encoded before the core copies it into its
    /// log entry: reused so a proposal costs one allocation, not two. It
    /// keeps at most one command's worth (ENTRY_DATA_SIZE_MAX).
    proposal_buffer: Vec<u8>,
}

impl Replica {
    pub fn new(raft: Raft, members: Vec<Member>) -> Replica {
        Replica {
            raft,
            counters: NodeCounters::default(),
            status_extra: String::new(),
            machine: StateMachine::default(),
            members,
            pending: BTreeMap::new(),
            reads_unconfirmed: BTreeMap::new(),
            reads_confirmed: Vec::new(),
            read_context_next: 1,
            replies: Vec::new(),
            proposal_buffer: Vec::new(),
        }
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// For the simulator's planted bugs and white-box checks.
    pub fn raft_mut(&mut self) -> &mut Raft {
        &mut self.raft
    }

    pub fn machine(&self) -> &StateMachine {
        &self.machine
    }

    pub fn set_counters(&mut self, counters: NodeCounters) {
        self.counters = counters;
    }

    pub fn set_status_extra(&mut self, extra: String) {
        self.status_extra = extra;
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

    pub fn hard_state_persisted(&mut self, hard_state: crate::core::HardState) {
        self.raft.hard_state_persisted(hard_state);
    }

    pub fn has_ready(&self) -> bool {
        self.raft.has_ready()
    }

    /// One command line from a client. The reply comes now (parse errors,
    /// STATUS, redirects) or later; if it waits for a log entry, the index
    /// is returned so the runtime can time it out.
    pub fn handle_request(
        &mut self,
        token: ClientToken,
        session: SessionTag,
        line: &str,
    ) -> Option<LogIndex> {
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
                self.stale_get(token, &key);
                None
            }
            Request::Get { key } => {
                self.linearizable_get(token, key);
                None
            }
            Request::Register => self.propose(token, &LogRecord::Register),
            other => {
                let Some(command) = other.into_command() else {
                    unreachable!("every other request is a log command");
                };
                let session =
                    (session.session_id != 0).then_some((session.session_id, session.sequence));
                self.propose(token, &LogRecord::Command { session, command })
            }
        }
    }

    fn stale_get(&mut self, token: ClientToken, key: &[u8]) {
        let applied = self.raft.log().last_applied();
        let line = stale_read_line(self.machine.store().get(key), applied);
        self.reply(token, line);
    }

    /// ReadIndex (§6.4): no log write; answered once leadership is confirmed
    /// and the state machine has caught up with the read's index.
    fn linearizable_get(&mut self, token: ClientToken, key: Vec<u8>) {
        let context = self.read_context_next;
        match self.raft.read_index(context) {
            Ok(()) => {
                self.read_context_next += 1;
                self.reads_unconfirmed
                    .insert(context, PendingRead { token, key });
            }
            Err(ProposeError::NotLeader { leader }) => {
                let line = self.not_leader_line(leader);
                self.reply(token, line);
            }
            Err(ProposeError::Busy) => {
                self.reply(token, "ERR UNAVAILABLE too many pending reads".to_string());
            }
        }
    }

    fn propose(&mut self, token: ClientToken, record: &LogRecord) -> Option<LogIndex> {
        if self.raft.role() == Role::Leader && self.pending.len() >= PENDING_PROPOSALS_MAX {
            self.reply(
                token,
                "ERR UNAVAILABLE too many pending requests".to_string(),
            );
            return None;
        }
        self.proposal_buffer.clear();
        record.encode(&mut self.proposal_buffer);
        match self.raft.propose(&self.proposal_buffer) {
            Ok((index, term)) => {
                self.pending.insert(index, Pending { token, term });
                Some(index)
            }
            Err(ProposeError::NotLeader { leader }) => {
                let line = self.not_leader_line(leader);
                self.reply(token, line);
                None
            }
            Err(ProposeError::Busy) => {
                self.reply(token, "ERR UNAVAILABLE busy".to_string());
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
        self.confirm_reads(&ready.read_states);
        self.serve_confirmed_reads();
        if self.raft.role() != Role::Leader {
            self.fail_pending();
        }
        ready
    }

    /// The replies made since the last `take_replies`, oldest first.
    pub fn replies(&self) -> &[(ClientToken, String)] {
        &self.replies
    }

    pub fn take_replies(&mut self) -> Vec<(ClientToken, String)> {
        std::mem::take(&mut self.replies)
    }

    /// Leadership was lost: a pending write may or may not commit under the
    /// next leader, so its honest answer is "unknown"; an unconfirmed read
    /// certainly did nothing and may go to the new leader.
    fn fail_pending(&mut self) {
        for (_, pending) in std::mem::take(&mut self.pending) {
            self.reply(pending.token, "ERR TIMEOUT".to_string());
        }
        let leader = self.raft.leader_id();
        for (_, read) in std::mem::take(&mut self.reads_unconfirmed) {
            let line = self.not_leader_line(leader);
            self.reply(read.token, line);
        }
    }

    fn confirm_reads(&mut self, read_states: &[ReadState]) {
        for state in read_states {
            if let Some(read) = self.reads_unconfirmed.remove(&state.context) {
                self.reads_confirmed.push((state.index, read));
            }
        }
    }

    /// Confirmed reads are linearizable at their index even if leadership
    /// is lost afterwards: the entries up to it are committed.
    fn serve_confirmed_reads(&mut self) {
        let applied = self.raft.log().last_applied();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_confirmed)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.reads_confirmed = waiting;
        for (_, read) in ready {
            let line = read_line(self.machine.store().get(&read.key));
            self.reply(read.token, line);
        }
    }

    fn apply(&mut self, entry: &Entry) {
        let applied = match entry.kind {
            EntryKind::Noop | EntryKind::Bootstrap => None,
            EntryKind::Command => {
                Some(self.machine.apply(entry.index.0, entry.term.0, &entry.data))
            }
        };
        let Some(pending) = self.pending.remove(&entry.index) else {
            return;
        };
        let line = match applied {
            // Our entry was replaced; it will never apply. Leadership was
            // lost in between, which the contract reports as unknown.
            _ if pending.term != entry.term => "ERR TIMEOUT".to_string(),
            Some(applied) => applied_line(applied),
            None => "ERR TIMEOUT".to_string(),
        };
        self.reply(pending.token, line);
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
            Role::PreCandidate => "precandidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        };
        let cluster = self
            .raft
            .cluster_id()
            .map_or("none".to_string(), |id| id.to_string());
        let mut line = format!(
            "STATUS id={} role={role} term={} leader={} last_index={} commit={} applied={} digest={:016x} {} cluster={cluster}",
            name(Some(status.id)),
            status.term,
            name(status.leader),
            status.last_index,
            status.commit_index,
            status.last_applied,
            self.machine.digest(),
            self.counters.line()
        );
        if !self.status_extra.is_empty() {
            line.push(' ');
            line.push_str(&self.status_extra);
        }
        line
    }
}

fn applied_line(applied: Applied) -> String {
    match applied {
        Applied::Reply(reply) => reply_line(&reply),
        Applied::Registered { client_id } => format!("SESSION id={client_id}"),
        Applied::SessionExpired => "ERR SESSION_EXPIRED".to_string(),
        Applied::StaleSequence => "ERR BAD_REQUEST stale sequence number".to_string(),
        Applied::Undecodable(error) => format!("ERR BAD_REQUEST undecodable command: {error}"),
    }
}

fn reply_line(reply: &CachedReply) -> String {
    match &reply.outcome {
        Outcome::Ok => format!("OK index={} term={}", reply.index, reply.term),
        Outcome::Value(value) => read_line(Some(value)),
        Outcome::NotFound => read_line(None),
        Outcome::Mismatch { current } => mismatch_line(current.as_deref()),
    }
}

/// `VALUE v` or `NOT_FOUND`. The value runs to the end of the line, so
/// it is quoted only if it is empty, has whitespace at an edge or holds
/// quotes, backslashes, control characters or non-UTF-8 bytes.
fn read_line(value: Option<&[u8]>) -> String {
    match value {
        Some(value) => format!("VALUE {}", quote_if_needed(value, Position::LineEnd)),
        None => "NOT_FOUND".to_string(),
    }
}

/// Text follows the value here, so a value with whitespace is quoted.
fn stale_read_line(value: Option<&[u8]>, applied: LogIndex) -> String {
    match value {
        Some(value) => {
            let value = quote_if_needed(value, Position::Word);
            format!("VALUE {value} stale applied={applied}")
        }
        None => format!("NOT_FOUND stale applied={applied}"),
    }
}

/// A failed CAS: the current value, or `MISMATCH absent`, so a value that
/// reads NOT_FOUND (`MISMATCH current=NOT_FOUND`) is not taken for absence.
fn mismatch_line(current: Option<&[u8]>) -> String {
    match current {
        Some(value) => format!(
            "MISMATCH current={}",
            quote_if_needed(value, Position::LineEnd)
        ),
        None => "MISMATCH absent".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_reply_as_they_always_did() {
        assert_eq!(read_line(Some(b"5")), "VALUE 5");
        assert_eq!(read_line(Some(b"hello world")), "VALUE hello world");
        assert_eq!(read_line(None), "NOT_FOUND");
        let applied = LogIndex(7);
        assert_eq!(
            stale_read_line(Some(b"1"), applied),
            "VALUE 1 stale applied=7"
        );
        assert_eq!(stale_read_line(None, applied), "NOT_FOUND stale applied=7");
        assert_eq!(mismatch_line(Some(b"first")), "MISMATCH current=first");
    }

    #[test]
    fn ambiguous_values_are_quoted_and_absence_is_a_word() {
        assert_eq!(read_line(Some(b"")), r#"VALUE """#);
        assert_eq!(read_line(Some(b"-")), "VALUE -");
        assert_eq!(read_line(Some(b"NOT_FOUND")), "VALUE NOT_FOUND");
        assert_eq!(read_line(Some(b" padded ")), r#"VALUE " padded ""#);
        assert_eq!(read_line(Some(b"a\nb\xff")), r#"VALUE "a\nb\xff""#);
        let stale = stale_read_line(Some(b"a b"), LogIndex(3));
        assert_eq!(stale, r#"VALUE "a b" stale applied=3"#);
        assert_eq!(mismatch_line(None), "MISMATCH absent");
        assert_eq!(
            mismatch_line(Some(b"NOT_FOUND")),
            "MISMATCH current=NOT_FOUND"
        );
        assert_eq!(mismatch_line(Some(b"-")), "MISMATCH current=-");
        assert_eq!(mismatch_line(Some(b"")), r#"MISMATCH current="""#);
        assert_eq!(mismatch_line(Some(b"x y")), "MISMATCH current=x y");
    }
}
