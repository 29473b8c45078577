//! A replica is the Raft core, the state machine and the tables of client
//! requests waiting for commit or for a read confirmation: everything a node
//! does that is not IO. The daemon and the simulator both drive this type.

use crate::constants::PENDING_PROPOSALS_MAX;
use crate::core::{
    Entry, EntryKind, LogIndex, Message, NodeId, ProposeError, Raft, ReadState, Ready, Role, Term,
};
use crate::core::{Event, MemberKind, TransferError, TransferOutcome};
use crate::kv::{parse_request, Applied, CachedReply, LogRecord, Outcome, Request, StateMachine};
use crate::reply::{Leader, Reply, Status};
use std::collections::BTreeMap;

mod snapshot;

pub use snapshot::{
    SnapshotTaken, COMPACT_ENTRIES_PER_DRIVE_MAX, FOLD_ENTRIES_PER_DRIVE_MAX,
    SNAPSHOT_CATCH_UP_FACTOR,
};

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
    /// The longest loop turn since start (from poll's return to the end of
    /// the turn's work), in microseconds: what a client or a peer waited
    /// at worst for the loop to look at it.
    pub loop_turn_max_us: u64,
}

impl NodeCounters {
    fn push_fields(&self, status: &mut Status) {
        let ratio = |numerator: u64, denominator: u64| {
            if denominator == 0 {
                0.0
            } else {
                numerator as f64 / denominator as f64
            }
        };
        status.push("entries_appended", self.entries_appended);
        status.push("fsyncs", self.fsyncs);
        status.push("synced_entries", self.synced_entries);
        let per_fsync = ratio(self.synced_entries, self.fsyncs);
        status.push("entries_per_fsync", format_args!("{per_fsync:.1}"));
        status.push("appends_sent", self.appends_sent);
        status.push("appends_received", self.appends_received);
        let batch = ratio(self.appended_entries_sent, self.appends_sent_with_entries);
        status.push("batch_average", format_args!("{batch:.1}"));
        status.push("bytes_in", self.bytes_in);
        status.push("bytes_out", self.bytes_out);
    }
}

pub struct Replica {
    raft: Raft,
    counters: NodeCounters,
    /// Fields the runtime adds at the end of STATUS (peers refused, ...).
    status_extra: Vec<(&'static str, String)>,
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
    replies: Vec<(ClientToken, Reply)>,
    /// Where each proposal is encoded before the core copies it into its
    /// log entry: reused so a proposal costs one allocation, not two. It
    /// keeps at most one command's worth (ENTRY_DATA_SIZE_MAX).
    proposal_buffer: Vec<u8>,
    /// The snapshot being taken, and SNAPSHOT requests waiting for the
    /// next one to begin (bounded by the client slots).
    taking: Option<snapshot::Taking>,
    snapshot_requests: Vec<ClientToken>,
    /// The TRANSFER request waiting for the transfer under way to end (one:
    /// the core runs one transfer at a time and refuses a second).
    transfer_request: Option<ClientToken>,
}

impl Replica {
    pub fn new(raft: Raft, members: Vec<Member>) -> Replica {
        Replica::restored(raft, members, StateMachine::default())
    }

    /// A replica whose state machine was restored from the snapshot the
    /// core was restored with (`Raft::restore`).
    pub fn restored(raft: Raft, members: Vec<Member>, machine: StateMachine) -> Replica {
        let base = raft
            .snapshot()
            .map_or(LogIndex(0), |snapshot| snapshot.meta.index);
        assert_eq!(
            raft.log().last_applied(),
            base,
            "the state machine starts at the snapshot"
        );
        let mut replica = Replica {
            raft,
            counters: NodeCounters::default(),
            status_extra: Vec::new(),
            machine,
            members,
            pending: BTreeMap::new(),
            reads_unconfirmed: BTreeMap::new(),
            reads_confirmed: Vec::new(),
            read_context_next: 1,
            replies: Vec::new(),
            proposal_buffer: Vec::new(),
            taking: None,
            snapshot_requests: Vec::new(),
            transfer_request: None,
        };
        replica.plant_bug_in_machine();
        replica
    }

    /// Test builds only: plants `bug` in the core and the state machine.
    #[cfg(feature = "planted-bugs")]
    pub fn plant_bug(&mut self, bug: Option<crate::core::PlantedBug>) {
        self.raft.plant_bug(bug);
        self.plant_bug_in_machine();
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

    pub fn set_status_extra(&mut self, extra: Vec<(&'static str, String)>) {
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
                self.reply(token, Reply::BadRequest(error.to_string().into()));
                return None;
            }
        };
        match request {
            Request::Status => {
                let status = self.status();
                self.reply(token, Reply::Status(status));
                None
            }
            Request::Snapshot => {
                self.request_snapshot(token);
                None
            }
            Request::Transfer { id } => {
                self.transfer(token, &id);
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
        let reply = match self.machine.store().get(key) {
            Some(value) => Reply::StaleValue {
                value: value.to_vec(),
                applied,
            },
            None => Reply::StaleNotFound { applied },
        };
        self.reply(token, reply);
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
                let reply = self.not_leader(leader);
                self.reply(token, reply);
            }
            Err(ProposeError::Busy) => {
                self.reply(token, Reply::Unavailable("too many pending reads".into()));
            }
            Err(ProposeError::Transferring { to }) => {
                let reply = self.not_leader(Some(to));
                self.reply(token, reply);
            }
        }
    }

    fn propose(&mut self, token: ClientToken, record: &LogRecord) -> Option<LogIndex> {
        if self.raft.role() == Role::Leader && self.pending.len() >= PENDING_PROPOSALS_MAX {
            self.reply(
                token,
                Reply::Unavailable("too many pending requests".into()),
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
                let reply = self.not_leader(leader);
                self.reply(token, reply);
                None
            }
            Err(ProposeError::Busy) => {
                self.reply(token, Reply::Unavailable("busy".into()));
                None
            }
            // Certainly not appended: sent on to the node taking over,
            // which leads as soon as it wins.
            Err(ProposeError::Transferring { to }) => {
                let reply = self.not_leader(Some(to));
                self.reply(token, reply);
                None
            }
        }
    }

    /// TRANSFER ID (dissertation §3.10). Answered at once unless a
    /// transfer starts; then when it ends (`answer_transfer`).
    fn transfer(&mut self, token: ClientToken, name: &str) {
        let Some(to) = self.member_named(name) else {
            let reason = format!("no member named {name}");
            return self.reply(token, Reply::BadRequest(reason.into()));
        };
        let reply = match self.raft.transfer_leadership(to) {
            Ok(_) => {
                self.transfer_request = Some(token);
                return;
            }
            Err(TransferError::NotLeader { leader }) => self.not_leader(leader),
            Err(TransferError::AlreadyLeader { term }) => Reply::Transferred {
                leader: name.to_string(),
                term,
            },
            Err(TransferError::NotAVoter) => {
                Reply::BadRequest(format!("{name} is not a voter").into())
            }
            Err(TransferError::InProgress { .. }) => {
                Reply::Unavailable("leadership transfer in progress".into())
            }
        };
        self.reply(token, reply);
    }

    /// The reply a transfer to `to` that ended with `outcome` gets; the
    /// runtime logs the same words.
    pub fn transfer_reply(&self, to: NodeId, outcome: TransferOutcome) -> Reply {
        let name = |id: NodeId| self.member(id).map_or("unknown", |m| m.name.as_str());
        let reason = match outcome {
            TransferOutcome::Succeeded { term } => {
                let leader = name(to).to_string();
                return Reply::Transferred { leader, term };
            }
            TransferOutcome::OtherLeader { leader, term } => {
                format!(
                    "{} became leader (term {term}), not {}",
                    name(leader),
                    name(to)
                )
            }
            TransferOutcome::TimedOut { timeout_ms } => format!(
                "leadership transfer to {} did not complete within an election timeout \
                 ({timeout_ms} ms)",
                name(to)
            ),
            TransferOutcome::NoLeader { timeout_ms } => {
                format!("no leader elected within an election timeout ({timeout_ms} ms)")
            }
        };
        Reply::Unavailable(reason.into())
    }

    fn answer_transfer(&mut self, events: &[Event]) {
        for event in events {
            if let Event::TransferEnded { to, outcome } = event {
                let reply = self.transfer_reply(*to, *outcome);
                if let Some(token) = self.transfer_request.take() {
                    self.reply(token, reply);
                }
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
            self.reply(token, Reply::Timeout);
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
        self.answer_transfer(&ready.events);
        if self.raft.role() != Role::Leader {
            self.fail_pending();
        }
        ready
    }

    /// The replies made since the last `take_replies`, oldest first.
    pub fn replies(&self) -> &[(ClientToken, Reply)] {
        &self.replies
    }

    pub fn take_replies(&mut self) -> Vec<(ClientToken, Reply)> {
        std::mem::take(&mut self.replies)
    }

    /// Leadership was lost: a pending write may or may not commit under the
    /// next leader, so its honest answer is "unknown"; an unconfirmed read
    /// certainly did nothing and may go to the new leader.
    fn fail_pending(&mut self) {
        for (_, pending) in std::mem::take(&mut self.pending) {
            self.reply(pending.token, Reply::Timeout);
        }
        let leader = self.raft.leader_id();
        for (_, read) in std::mem::take(&mut self.reads_unconfirmed) {
            let reply = self.not_leader(leader);
            self.reply(read.token, reply);
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
            let reply = match self.machine.store().get(&read.key) {
                Some(value) => Reply::Value(value.to_vec()),
                None => Reply::NotFound,
            };
            self.reply(read.token, reply);
        }
    }

    fn apply(&mut self, entry: &Entry) {
        let applied = match entry.kind {
            EntryKind::Noop | EntryKind::Bootstrap | EntryKind::Configuration => None,
            EntryKind::Command => {
                Some(self.machine.apply(entry.index.0, entry.term.0, &entry.data))
            }
        };
        let Some(pending) = self.pending.remove(&entry.index) else {
            return;
        };
        let reply = match applied {
            // Our entry was replaced; it will never apply. Leadership was
            // lost in between, which the contract reports as unknown.
            _ if pending.term != entry.term => Reply::Timeout,
            Some(applied) => applied_reply(applied),
            None => Reply::Timeout,
        };
        self.reply(pending.token, reply);
    }

    fn reply(&mut self, token: ClientToken, reply: Reply) {
        self.replies.push((token, reply));
    }

    pub fn member(&self, id: NodeId) -> Option<&Member> {
        self.members.get(id.0 as usize)
    }

    fn member_named(&self, name: &str) -> Option<NodeId> {
        let index = self.members.iter().position(|member| member.name == name)?;
        Some(NodeId(index as u32))
    }

    fn not_leader(&self, leader: Option<NodeId>) -> Reply {
        let leader = leader.and_then(|id| self.member(id)).map(|member| Leader {
            id: member.name.clone(),
            address: member.address.clone(),
        });
        Reply::NotLeader { leader }
    }

    /// STATUS's fields; new ones only ever go at the end (scripts read
    /// them).
    fn status(&self) -> Status {
        let core = self.raft.status();
        let name = |id: Option<NodeId>| {
            id.and_then(|id| self.member(id))
                .map_or("unknown".to_string(), |member| member.name.clone())
        };
        let role = match core.role {
            Role::Follower => "follower",
            Role::PreCandidate => "precandidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        };
        let cluster = self
            .raft
            .cluster_id()
            .map_or("none".to_string(), |id| id.to_string());
        let mut status = Status::default();
        status.push("id", name(Some(core.id)));
        status.push("role", role);
        status.push("term", core.term);
        status.push("leader", name(core.leader));
        status.push("last_index", core.last_index);
        status.push("commit", core.commit_index);
        status.push("applied", core.last_applied);
        status.push("digest", format_args!("{:016x}", self.machine.digest()));
        self.counters.push_fields(&mut status);
        status.push("cluster", cluster);
        for (field, value) in &self.status_extra {
            status.push(field, value);
        }
        let turn_max_ms = self.counters.loop_turn_max_us as f64 / 1000.0;
        status.push("loop_turn_max_ms", format_args!("{turn_max_ms:.1}"));
        let snapshot_index = self.raft.snapshot().map_or(LogIndex(0), |s| s.meta.index);
        status.push("snapshot_index", snapshot_index);
        status.push("first_index", self.raft.log().first_index());
        // Issue 14: the voters of the configuration in effect here, and
        // what this node is in it (`none`: not in it, e.g. removed).
        let configuration = self.raft.configuration();
        status.push("members", configuration.voters().count());
        let kind = match configuration.member(core.id).map(|member| member.kind) {
            Some(MemberKind::Voter) => "voter",
            Some(MemberKind::Learner) => "learner",
            None => "none",
        };
        status.push("kind", kind);
        status
    }
}

fn applied_reply(applied: Applied) -> Reply {
    match applied {
        Applied::Reply(reply) => command_reply(reply),
        Applied::Registered { client_id } => Reply::Session { id: client_id },
        Applied::SessionExpired => Reply::SessionExpired,
        Applied::StaleSequence => Reply::BadRequest("stale sequence number".into()),
        Applied::Undecodable(error) => {
            Reply::BadRequest(format!("undecodable command: {error}").into())
        }
    }
}

/// A command's reply (for a retry, the original one, index and term too).
fn command_reply(reply: CachedReply) -> Reply {
    match reply.outcome {
        Outcome::Ok => Reply::Ok {
            index: LogIndex(reply.index),
            term: Term(reply.term),
        },
        Outcome::Value(value) => Reply::Value(value),
        Outcome::NotFound => Reply::NotFound,
        Outcome::Mismatch { current } => Reply::Mismatch { current },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{ClusterId, Config, Configuration, HardState, Limits, StartConfiguration};

    /// Node `id` of `size` numbered voters, with the default timeouts.
    fn config_of(id: u32, size: usize) -> Config {
        Config {
            id: NodeId(id),
            start: StartConfiguration::Bootstrap(Configuration::numbered(size)),
            election_timeout_ms_min: 150,
            election_timeout_ms_max: 300,
            heartbeat_interval_ms: 50,
            seed: 1,
            bootstrap_cluster_id: ClusterId(0x1234),
            pre_vote: true,
            check_quorum: true,
            limits: Limits::default(),
        }
    }

    fn replica() -> Replica {
        let config = config_of(0, 2);
        let raft = Raft::new(config, HardState::default(), Vec::new(), 0).expect("valid");
        let member = |name: &str, port: u16| Member {
            name: name.to_string(),
            address: format!("127.0.0.1:{port}"),
        };
        Replica::new(raft, vec![member("A", 8000), member("B", 8001)])
    }

    /// The line the code before typed replies wrote for this node, byte
    /// for byte.
    #[test]
    fn status_writes_every_field_in_its_place() {
        let mut replica = replica();
        replica.set_counters(NodeCounters {
            entries_appended: 10,
            fsyncs: 4,
            synced_entries: 9,
            appends_sent: 7,
            appends_sent_with_entries: 3,
            appended_entries_sent: 8,
            appends_received: 2,
            bytes_in: 1000,
            bytes_out: 2000,
            loop_turn_max_us: 2345,
        });
        replica.set_status_extra(vec![
            ("refused", "none".to_string()),
            ("refused_by", "B:cluster_id".to_string()),
            ("clients", "3".to_string()),
        ]);
        assert_eq!(
            Reply::Status(replica.status()).to_string(),
            "STATUS id=A role=follower term=0 leader=unknown last_index=0 commit=0 applied=0 digest=0000000000000000 entries_appended=10 fsyncs=4 synced_entries=9 entries_per_fsync=2.2 appends_sent=7 appends_received=2 batch_average=2.7 bytes_in=1000 bytes_out=2000 cluster=none refused=none refused_by=B:cluster_id clients=3 loop_turn_max_ms=2.3 snapshot_index=0 first_index=1 members=2 kind=voter"
        );
    }

    #[test]
    fn a_follower_names_the_leader_it_knows() {
        let replica = replica();
        let leader = Leader {
            id: "B".to_string(),
            address: "127.0.0.1:8001".to_string(),
        };
        assert_eq!(
            replica.not_leader(Some(NodeId(1))),
            Reply::NotLeader {
                leader: Some(leader)
            }
        );
        let unknown = Reply::NotLeader { leader: None };
        assert_eq!(replica.not_leader(None), unknown);
        assert_eq!(
            replica.not_leader(Some(NodeId(7))),
            unknown,
            "an id outside the member list names no one"
        );
    }

    /// Requests answered at once, without the log.
    #[test]
    fn requests_answered_at_once() {
        let token = ClientToken {
            connection: 1,
            request_id: 1,
        };
        let mut replica = replica();
        for line in ["SGET k", "GET k", "GET \"a"] {
            replica.handle_request(token, SessionTag::default(), line);
        }
        let replies: Vec<Reply> = replica
            .take_replies()
            .into_iter()
            .map(|(_, reply)| reply)
            .collect();
        let parse_error = parse_request("GET \"a").expect_err("unterminated");
        let expected = [
            Reply::StaleNotFound {
                applied: LogIndex(0),
            },
            Reply::NotLeader { leader: None },
            Reply::BadRequest(parse_error.to_string().into()),
        ];
        assert_eq!(replies, expected);
    }

    // ---- TRANSFER ----------------------------------------------------------

    /// Three replicas A, B, C (nodes 0-2) delivering to each other by hand;
    /// messages to a node in `cut` are dropped.
    struct Trio {
        replicas: Vec<Replica>,
        now_ms: u64,
        cut: Option<usize>,
    }

    const TOKEN: ClientToken = ClientToken {
        connection: 9,
        request_id: 1,
    };

    impl Trio {
        fn new() -> Trio {
            let members: Vec<Member> = ["A", "B", "C"]
                .iter()
                .enumerate()
                .map(|(id, name)| Member {
                    name: name.to_string(),
                    address: format!("127.0.0.1:{}", 8000 + id),
                })
                .collect();
            let replicas = (0..3)
                .map(|id| {
                    let config = config_of(id, 3);
                    let raft = Raft::new(config, HardState::default(), Vec::new(), 0).unwrap();
                    Replica::new(raft, members.clone())
                })
                .collect();
            let mut trio = Trio {
                replicas,
                now_ms: 0,
                cut: None,
            };
            let deadline = trio.replicas[0].raft().next_deadline_ms();
            trio.replicas[0].advance_time(deadline);
            trio.now_ms = deadline;
            trio.settle();
            assert_eq!(trio.replicas[0].raft().role(), Role::Leader);
            trio
        }

        fn settle(&mut self) {
            for _ in 0..1000 {
                let mut messages = Vec::new();
                for replica in &mut self.replicas {
                    let ready = replica.ready();
                    if let Some(hard_state) = ready.hard_state {
                        replica.hard_state_persisted(hard_state);
                    }
                    if let Some(last) = ready.entries.last() {
                        replica.persisted(last.index, last.term);
                    }
                    messages.extend(ready.messages);
                    messages.extend(ready.messages_after_persist);
                }
                if messages.is_empty() && self.replicas.iter().all(|r| !r.has_ready()) {
                    return;
                }
                for message in messages {
                    let to = message.to.0 as usize;
                    if self.cut != Some(to) && self.cut != Some(message.from.0 as usize) {
                        self.replicas[to].step(message);
                    }
                }
            }
            panic!("never settled");
        }

        /// Moves every clock on by `ms`, a heartbeat at a time.
        fn wait(&mut self, ms: u64) {
            let end = self.now_ms + ms;
            while self.now_ms < end {
                self.now_ms = (self.now_ms + 25).min(end);
                for replica in &mut self.replicas {
                    replica.advance_time(self.now_ms);
                }
                self.settle();
            }
        }

        fn ask(&mut self, node: usize, line: &str) -> Vec<String> {
            self.replicas[node].handle_request(TOKEN, SessionTag::default(), line);
            self.settle();
            self.replies(node)
        }

        fn replies(&mut self, node: usize) -> Vec<String> {
            let replies = self.replicas[node].take_replies();
            replies.iter().map(|(_, reply)| reply.to_string()).collect()
        }
    }

    #[test]
    fn transfer_answers_once_the_target_leads() {
        let mut trio = Trio::new();
        assert_eq!(trio.ask(0, "TRANSFER C"), ["OK leader=C term=2"]);
        assert_eq!(trio.replicas[2].raft().role(), Role::Leader);
        assert_eq!(
            trio.ask(2, "SET k=v").len(),
            1,
            "the new leader takes writes"
        );
    }

    #[test]
    fn transfer_answers_at_once_where_it_cannot_start() {
        let mut trio = Trio::new();
        assert_eq!(trio.ask(0, "TRANSFER A"), ["OK leader=A term=1"]);
        assert_eq!(
            trio.ask(0, "TRANSFER Z"),
            ["ERR BAD_REQUEST no member named Z"]
        );
        assert_eq!(
            trio.ask(1, "TRANSFER C"),
            ["ERR NOT_LEADER leader=A addr=127.0.0.1:8000"]
        );
        assert_eq!(
            trio.ask(1, "TRANSFER"),
            ["ERR BAD_REQUEST TRANSFER needs exactly one node id"]
        );
    }

    #[test]
    fn during_a_transfer_writes_go_to_the_target_and_a_failed_one_resumes() {
        let mut trio = Trio::new();
        trio.cut = Some(2);
        assert!(trio.ask(0, "TRANSFER C").is_empty(), "waits");
        assert_eq!(
            trio.ask(0, "SET k=v"),
            ["ERR NOT_LEADER leader=C addr=127.0.0.1:8002"]
        );
        assert_eq!(
            trio.ask(0, "TRANSFER B"),
            ["ERR UNAVAILABLE leadership transfer in progress"]
        );
        trio.wait(300);
        assert_eq!(
            trio.replies(0),
            ["ERR UNAVAILABLE leadership transfer to C did not complete within an election timeout (300 ms)"]
        );
        assert_eq!(trio.replicas[0].raft().role(), Role::Leader);
        let set = trio.ask(0, "SET k=v");
        assert!(set[0].starts_with("OK index="), "{set:?}");
    }
}
