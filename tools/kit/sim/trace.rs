//! A readable record of a run, one event per line. A failure report shows
//! the last lines; `--trace` shows them all. Events are kept as small values
//! and turned into text only when someone reads them, so sweeps stay fast.

use super::disk::TornTail;
use super::event::Reply;
use super::network::DropReason;
use super::options::TRACE_TAIL_EVENTS;
use raftlite::core::{
    Event, HardState, LogIndex, Message, MessageBody, NodeId, SnapshotStatus, Term,
};
use raftlite::reply::Answer;
use std::collections::VecDeque;
use std::fmt;

/// A message in a few numbers.
#[derive(Clone, Copy, Debug)]
pub struct MessageSummary {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub body: BodySummary,
}

#[derive(Clone, Copy, Debug)]
pub enum BodySummary {
    RequestVote {
        last_index: LogIndex,
        last_term: Term,
        pre_vote: bool,
        transfer: bool,
    },
    TimeoutNow,
    Vote {
        granted: bool,
        pre_vote: bool,
    },
    Append {
        prev_index: LogIndex,
        prev_term: Term,
        count: usize,
        commit: LogIndex,
    },
    AppendResponse {
        success: bool,
        index: LogIndex,
        conflict_index: LogIndex,
    },
    Snapshot {
        index: LogIndex,
        offset: u64,
        size: usize,
        total_size: u64,
    },
    SnapshotResponse {
        index: LogIndex,
        status: SnapshotStatus,
    },
}

impl MessageSummary {
    pub fn of(message: &Message) -> MessageSummary {
        let body = match &message.body {
            MessageBody::RequestVote(request) => BodySummary::RequestVote {
                last_index: request.last_log_index,
                last_term: request.last_log_term,
                pre_vote: request.pre_vote,
                transfer: request.transfer,
            },
            MessageBody::TimeoutNow => BodySummary::TimeoutNow,
            MessageBody::RequestVoteResponse(response) => BodySummary::Vote {
                granted: response.vote_granted,
                pre_vote: response.pre_vote,
            },
            MessageBody::AppendEntries(request) => BodySummary::Append {
                prev_index: request.prev_log_index,
                prev_term: request.prev_log_term,
                count: request.entries.len(),
                commit: request.leader_commit,
            },
            MessageBody::AppendEntriesResponse(response) => BodySummary::AppendResponse {
                success: response.success,
                index: response.index,
                conflict_index: response.conflict_index,
            },
            MessageBody::InstallSnapshot(chunk) => BodySummary::Snapshot {
                index: chunk.meta.index,
                offset: chunk.offset,
                size: chunk.data.len(),
                total_size: chunk.total_size,
            },
            MessageBody::InstallSnapshotResponse(response) => BodySummary::SnapshotResponse {
                index: response.index,
                status: response.status,
            },
        };
        MessageSummary {
            from: message.from,
            to: message.to,
            term: message.term,
            body,
        }
    }
}

impl fmt::Display for MessageSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}→{} term={} ", self.from, self.to, self.term)?;
        match self.body {
            BodySummary::RequestVote {
                last_index,
                last_term,
                pre_vote,
                transfer,
            } => {
                let kind = match (pre_vote, transfer) {
                    (true, _) => "RequestPreVote",
                    (false, true) => "RequestTransferVote",
                    (false, false) => "RequestVote",
                };
                write!(f, "{kind} last={last_index}/{last_term}")
            }
            BodySummary::TimeoutNow => write!(f, "TimeoutNow"),
            BodySummary::Vote { granted, pre_vote } => {
                let kind = if pre_vote { "PreVote" } else { "Vote" };
                let answer = if granted { "granted" } else { "refused" };
                write!(f, "{kind} {answer}")
            }
            BodySummary::Append {
                prev_index,
                prev_term,
                count,
                commit,
            } => {
                let first = prev_index.next();
                let last = LogIndex(prev_index.0 + count as u64);
                match count {
                    0 => write!(f, "Heartbeat prev={prev_index}/{prev_term} commit={commit}"),
                    _ => write!(
                        f,
                        "Append prev={prev_index}/{prev_term} entries={first}..{last} commit={commit}"
                    ),
                }
            }
            BodySummary::AppendResponse {
                success: true,
                index,
                ..
            } => write!(f, "AppendOk index={index}"),
            BodySummary::AppendResponse {
                success: false,
                index,
                conflict_index,
            } => write!(f, "AppendReject prev={index} retry-from={conflict_index}"),
            BodySummary::Snapshot {
                index,
                offset,
                size,
                total_size,
            } => write!(
                f,
                "Snapshot index={index} bytes={offset}+{size} of {total_size}"
            ),
            BodySummary::SnapshotResponse { index, status } => {
                write!(f, "SnapshotAnswer index={index} {status:?}")
            }
        }
    }
}

#[derive(Clone, Debug)]
pub enum TraceEvent {
    /// The operator sends a TRANSFER line to a node, and its reply.
    OperatorRequest {
        node: usize,
        line: String,
    },
    OperatorReply {
        node: usize,
        line: String,
    },
    Send {
        message: MessageSummary,
        after_sync: bool,
    },
    Receive(MessageSummary),
    Drop {
        message: MessageSummary,
        reason: DropReason,
    },
    Core {
        node: usize,
        event: Event,
    },
    /// A write queued for the disk, durable at `complete_at_ms`.
    Write {
        node: usize,
        hard_state: Option<HardState>,
        entries: Option<(LogIndex, LogIndex)>,
        /// None: its fsync is deferred to the sync thread.
        durable_at_ms: Option<u64>,
    },
    /// A deferred fsync completed.
    Synced {
        node: usize,
    },
    Crash {
        node: usize,
        torn: TornTail,
        durable_last_index: LogIndex,
        durable_hard_state: HardState,
    },
    Restart {
        node: usize,
        hard_state: HardState,
        last_index: LogIndex,
        /// The snapshot it restored its state machine from.
        snapshot_index: Option<LogIndex>,
    },
    /// What the driver reported of a snapshot step that went wrong.
    DriverSnapshot {
        node: usize,
        event: raftlite::driver::SnapshotEvent,
    },
    /// A snapshot step on a node's disk.
    Snapshot {
        node: usize,
        trace: SnapshotTrace,
    },
    Pause {
        node: usize,
    },
    Resume {
        node: usize,
        held: usize,
    },
    Partition {
        links: Vec<(usize, usize)>,
        one_way: bool,
    },
    PartitionHealed,
    DiskSlow {
        node: usize,
    },
    DiskRecovered {
        node: usize,
    },
    StaleMember {
        node: usize,
        term: Term,
        entries: u64,
    },
    StaleMemberEnd {
        node: usize,
    },
    ForeignLog {
        node: usize,
        term: Term,
        entries: u64,
    },
    ClientSend {
        client: usize,
        node: usize,
        request_id: u64,
        line: String,
    },
    ClientReceive {
        client: usize,
        request_id: u64,
        reply: Reply,
    },
    ClientGiveUp {
        client: usize,
        request_id: u64,
    },
    /// The client machine pauses before its next round of tries.
    ClientPause {
        client: usize,
        until_ms: u64,
    },
    /// A command ended with what `submit` would print.
    ClientDone {
        client: usize,
        line: String,
        answer: Answer,
    },
    Proposed {
        node: usize,
        request_id: u64,
        index: LogIndex,
    },
    NodeReply {
        node: usize,
        request_id: u64,
        line: raftlite::reply::Reply,
    },
    FaultsStop,
    /// The targeted fault of `divergence.rs`.
    Strike {
        leader: usize,
        divergent: usize,
        holders: Vec<usize>,
    },
    /// The run's setup, first line of every trace.
    Start {
        seed: u64,
        size: usize,
        profile: String,
    },
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceEvent::Send {
                message,
                after_sync,
            } => {
                let when = if *after_sync { "after sync" } else { "now" };
                write!(f, "send {message} ({when})")
            }
            TraceEvent::Receive(message) => write!(f, "recv {message}"),
            TraceEvent::Drop { message, reason } => write!(f, "drop {message} ({reason:?})"),
            TraceEvent::Core { node, event } => write!(f, "n{node} {}", core_event(event)),
            TraceEvent::Synced { node } => write!(f, "n{node} deferred sync completed"),
            TraceEvent::Snapshot { node, trace } => write!(f, "n{node} {trace}"),
            TraceEvent::DriverSnapshot { node, event } => write!(f, "n{node} driver: {event:?}"),
            TraceEvent::Write {
                node,
                hard_state,
                entries,
                durable_at_ms,
            } => write_write(f, *node, *hard_state, *entries, *durable_at_ms),
            other => write_fault_or_client(f, other),
        }
    }
}

fn write_write(
    f: &mut fmt::Formatter<'_>,
    node: usize,
    hard_state: Option<HardState>,
    entries: Option<(LogIndex, LogIndex)>,
    durable_at_ms: Option<u64>,
) -> fmt::Result {
    write!(f, "n{node} writes")?;
    if let Some(hard_state) = hard_state {
        write!(f, " hard state {}", hard_state_text(hard_state))?;
    }
    if let Some((first, last)) = entries {
        write!(f, " entries {first}..{last}")?;
    }
    match durable_at_ms {
        Some(at_ms) => write!(f, " (durable at {at_ms}ms; the node waits for it)"),
        None => write!(f, " (fsync deferred to the sync thread)"),
    }
}

fn write_fault_or_client(f: &mut fmt::Formatter<'_>, event: &TraceEvent) -> fmt::Result {
    match event {
        TraceEvent::Crash {
            node,
            torn,
            durable_last_index,
            durable_hard_state,
        } => {
            write!(
                f,
                "CRASH n{node}: kept {} unsynced record(s), lost {}; disk has log to {durable_last_index}, {}",
                torn.records_kept,
                torn.records_lost,
                hard_state_text(*durable_hard_state)
            )?;
            write_lost_snapshot_steps(f, torn)
        }
        TraceEvent::Restart {
            node,
            hard_state,
            last_index,
            snapshot_index,
        } => {
            write!(f, "RESTART n{node} from disk: {}", hard_state_text(*hard_state))?;
            if let Some(index) = snapshot_index {
                write!(f, ", snapshot {index}")?;
            }
            write!(f, ", log to {last_index}")
        }
        TraceEvent::Pause { node } => write!(f, "PAUSE n{node}"),
        TraceEvent::Resume { node, held } => {
            write!(f, "RESUME n{node} ({held} held event(s), clock jumps)")
        }
        TraceEvent::Partition { links, one_way } => write_partition(f, links, *one_way),
        TraceEvent::PartitionHealed => write!(f, "HEAL partition"),
        TraceEvent::DiskSlow { node } => write!(f, "SLOW DISK n{node}"),
        TraceEvent::DiskRecovered { node } => write!(f, "disk of n{node} back to normal"),
        TraceEvent::StaleMember {
            node,
            term,
            entries,
        } => write!(
            f,
            "STALE MEMBER n{node}: another cluster's data dir (term {term}, {entries} entries) in its place"
        ),
        TraceEvent::StaleMemberEnd { node } => write!(f, "n{node} gets its own data dir back"),
        TraceEvent::ForeignLog {
            node,
            term,
            entries,
        } => write!(
            f,
            "FOREIGN LOG n{node}: for good, an unbound data dir of another cluster (term {term}, {entries} entries at our terms) in its place"
        ),
        TraceEvent::FaultsStop => write!(f, "FAULTS STOP: liveness phase begins"),
        TraceEvent::Strike {
            leader,
            divergent,
            holders,
        } => write!(
            f,
            "STRIKE: n{leader} committed over n{divergent}'s newer-term entry; crash n{leader}, cut off {holders:?}"
        ),
        TraceEvent::Start {
            seed,
            size,
            profile,
        } => write!(f, "START seed={seed} size={size} {profile}"),
        other => write_client(f, other),
    }
}

fn write_lost_snapshot_steps(f: &mut fmt::Formatter<'_>, torn: &TornTail) -> fmt::Result {
    let files = torn.files;
    let lost = [
        (files.writing, "the snapshot being written"),
        (files.receiving, "the snapshot being received"),
        (files.committing, "a snapshot not yet durable"),
        (
            torn.log_ops_lost > 0,
            "a compaction or reset not yet durable",
        ),
    ];
    for (_, what) in lost.iter().filter(|(lost, _)| *lost) {
        write!(f, "; lost {what}")?;
    }
    Ok(())
}

fn write_client(f: &mut fmt::Formatter<'_>, event: &TraceEvent) -> fmt::Result {
    match event {
        TraceEvent::ClientSend {
            client,
            node,
            request_id,
            line,
        } => write!(f, "c{client} → n{node} #{request_id} {line}"),
        TraceEvent::OperatorRequest { node, line } => write!(f, "operator → n{node} {line}"),
        TraceEvent::OperatorReply { node, line } => write!(f, "n{node} → operator {line}"),
        TraceEvent::ClientReceive {
            client,
            request_id,
            reply: Reply::Line(line),
        } => write!(f, "c{client} ← #{request_id} {line}"),
        TraceEvent::ClientReceive {
            client,
            request_id,
            reply: Reply::Disconnected,
        } => write!(f, "c{client} ← #{request_id} connection lost"),
        TraceEvent::ClientReceive {
            client,
            request_id,
            reply: Reply::Refused,
        } => write!(f, "c{client} ← #{request_id} connection refused"),
        TraceEvent::ClientPause { client, until_ms } => {
            write!(f, "c{client} pauses until {until_ms}ms")
        }
        TraceEvent::ClientDone {
            client,
            line,
            answer,
        } => write!(f, "c{client} done: {line} → {answer}"),
        TraceEvent::ClientGiveUp { client, request_id } => {
            write!(f, "c{client} gives up on #{request_id}")
        }
        TraceEvent::Proposed {
            node,
            request_id,
            index,
        } => write!(f, "n{node} proposed #{request_id} at index {index}"),
        TraceEvent::NodeReply {
            node,
            request_id,
            line,
        } => write!(f, "n{node} replies #{request_id}: {line}"),
        other => write!(f, "{other:?}"),
    }
}

fn write_partition(
    f: &mut fmt::Formatter<'_>,
    links: &[(usize, usize)],
    one_way: bool,
) -> fmt::Result {
    let kind = if one_way { "one-way" } else { "symmetric" };
    write!(f, "PARTITION ({kind}) cuts")?;
    for (from, to) in links {
        write!(f, " n{from}→n{to}")?;
    }
    Ok(())
}

fn hard_state_text(hard_state: HardState) -> String {
    match hard_state.voted_for {
        Some(vote) => format!("term={} voted={vote}", hard_state.current_term),
        None => format!("term={} voted=none", hard_state.current_term),
    }
}

fn core_event(event: &Event) -> String {
    match event {
        Event::ElectionTimeout {
            term,
            pre_vote: true,
        } => format!("election timeout → asks pre-votes for term {term}"),
        Event::ElectionTimeout {
            term,
            pre_vote: false,
        } => format!("campaigns → candidate term {term}"),
        Event::BecameLeader { term, votes } => format!("LEADER term {term} ({votes} votes)"),
        Event::BecameFollower { term, reason } => format!("follower term {term} ({reason:?})"),
        Event::LeaderChanged { term, leader } => format!("follows {leader} in term {term}"),
        Event::EntriesAppended {
            count,
            term,
            last_index,
        } => format!("appended {count} entries to {last_index} (last term {term})"),
        Event::LogTruncated { from } => format!("log truncated from {from}"),
        Event::CommitAdvanced { commit_index } => format!("commit → {commit_index}"),
        Event::ClusterIdLearned { cluster_id } => format!("cluster id {cluster_id} learned"),
        Event::StoredConfigurationIgnored { index } => {
            format!("stored configuration at {index} ignored")
        }
        Event::ForeignMessageIgnored { from, cluster } => {
            format!("ignored a message from {from} of another cluster ({cluster:?})")
        }
        Event::FollowerLostEntries {
            follower,
            acknowledged,
            last_index,
        } => format!(
            "{follower} lost acknowledged entries: its log ends at {last_index}, below {acknowledged}"
        ),
        Event::SnapshotSendStarted {
            follower,
            index,
            size_bytes,
        } => format!("sends snapshot {index} ({size_bytes} bytes) to {follower}"),
        Event::SnapshotInstalled { from, index } => {
            format!("installed snapshot {index} from {from}")
        }
        Event::SnapshotChunkOutOfOrder {
            from,
            index,
            offset,
            stored,
        } => format!(
            "chunk of snapshot {index} from {from} at offset {offset} out of order (holds {stored})"
        ),
        Event::TransferStarted {
            to,
            term,
            deadline_ms,
        } => format!("transfers leadership of term {term} to {to} (until {deadline_ms} ms)"),
        Event::TransferEnded { to, outcome } => {
            format!("transfer to {to} ended: {outcome:?}")
        }
    }
}

/// A snapshot step in a few numbers.
#[derive(Clone, Debug)]
pub enum SnapshotTrace {
    Begun {
        index: LogIndex,
    },
    Committed {
        index: LogIndex,
        term: Term,
        size_bytes: u64,
        durable_at_ms: u64,
    },
    Received {
        index: LogIndex,
        term: Term,
        size_bytes: u64,
        durable_at_ms: u64,
    },
    Refused {
        index: LogIndex,
        problem: String,
    },
    Compacted {
        upto: LogIndex,
    },
    Reset {
        index: LogIndex,
    },
}

impl fmt::Display for SnapshotTrace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotTrace::Begun { index } => write!(f, "begins writing snapshot {index}"),
            SnapshotTrace::Committed {
                index,
                term,
                size_bytes,
                durable_at_ms,
            } => write!(
                f,
                "commits snapshot {index}/{term} ({size_bytes} bytes; durable at {durable_at_ms}ms)"
            ),
            SnapshotTrace::Received {
                index,
                term,
                size_bytes,
                durable_at_ms,
            } => write!(
                f,
                "installs the leader's snapshot {index}/{term} ({size_bytes} bytes; durable at {durable_at_ms}ms)"
            ),
            SnapshotTrace::Refused { index, problem } => {
                write!(f, "refuses the received snapshot {index}: {problem}")
            }
            SnapshotTrace::Compacted { upto } => write!(f, "compacts its disk's log to {upto}"),
            SnapshotTrace::Reset { index } => {
                write!(f, "drops its disk's log: it continues after snapshot {index}")
            }
        }
    }
}

/// Whether trace lines are kept as text as they happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Echo {
    Off,
    Collect,
}

pub struct Trace {
    tail: VecDeque<(u64, u64, TraceEvent)>,
    echo: Echo,
    lines: Vec<String>,
}

impl Trace {
    pub fn new(echo: Echo) -> Trace {
        Trace {
            tail: VecDeque::with_capacity(TRACE_TAIL_EVENTS + 1),
            echo,
            lines: Vec::new(),
        }
    }

    pub fn record(&mut self, step: u64, time_ms: u64, event: TraceEvent) {
        if self.echo == Echo::Collect {
            self.lines.push(line(step, time_ms, &event));
        }
        if self.tail.len() == TRACE_TAIL_EVENTS {
            self.tail.pop_front();
        }
        self.tail.push_back((step, time_ms, event));
    }

    /// The lines collected since the last call (with `Echo::Collect`).
    pub fn take_lines(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lines)
    }

    /// The last TRACE_TAIL_EVENTS events as lines.
    pub fn tail_lines(&self) -> Vec<String> {
        self.tail
            .iter()
            .map(|(step, time_ms, event)| line(*step, *time_ms, event))
            .collect()
    }
}

fn line(step: u64, time_ms: u64, event: &TraceEvent) -> String {
    format!("{step:>7} {time_ms:>7}ms  {event}")
}
