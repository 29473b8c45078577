//! What one pass through the core asks of the runtime.

use super::message::{ChunkToSend, ClusterTag, InstallSnapshot, Message};
use super::transfer::TransferOutcome;
use super::types::{ClusterId, Entry, HardState, LogIndex, NodeId, Term};

/// The runtime must, in this order: make `hard_state`, `entries` and
/// `snapshot_chunks_received` durable (entries whose first index is at or
/// below the stored last index replace that suffix), then send
/// `messages_after_persist` and call `Raft::persisted` (and, for a hard
/// state, `Raft::hard_state_persisted`). `messages` may leave at once,
/// before the write (§10.2.1 of the dissertation: a leader may send
/// AppendEntries in parallel with its own write), and so may the chunks of
/// `snapshot_chunks_to_send`, once read. `committed_entries` are durable on
/// a majority (not necessarily here yet) and are applied in order; while a
/// received snapshot is being installed there are none.
#[derive(Debug, Default)]
pub struct Ready {
    pub hard_state: Option<HardState>,
    pub entries: Vec<Entry>,
    pub messages: Vec<Message>,
    /// Messages that promise durable state (vote requests and grants, append
    /// acks): sending one before the write could vote twice in a term after
    /// a crash.
    pub messages_after_persist: Vec<Message>,
    pub committed_entries: Vec<Entry>,
    /// Leader: chunks of its snapshot files to send, each once its bytes
    /// are read (`ChunkToSend::into_message`). Kept apart from `messages`
    /// because the core cannot read files, and a message always carries
    /// its bytes.
    pub snapshot_chunks_to_send: Vec<ChunkToSend>,
    /// Follower: chunks of the snapshot it receives, in order, to append to
    /// the file being received (a chunk at offset 0 starts a new one)
    /// before `messages_after_persist` leave. Written, not necessarily
    /// synced: the file is synced once, before it is installed, and a node
    /// that restarts has forgotten the transfer (its first answer asks for
    /// offset 0). After the last one
    /// (`InstallSnapshot::is_last`) the runtime checks the file, installs
    /// it and restores the state machine from it, then calls
    /// `Raft::snapshot_installed`, or `Raft::snapshot_install_failed` if
    /// the check failed.
    pub snapshot_chunks_received: Vec<InstallSnapshot>,
    /// ReadIndex reads whose leadership check passed: each may be answered
    /// once the state machine has applied `index`.
    pub read_states: Vec<ReadState>,
    pub events: Vec<Event>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The caller's identifier for the read.
    pub context: u64,
    pub index: LogIndex,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.messages_after_persist.is_empty()
            && self.committed_entries.is_empty()
            && self.snapshot_chunks_to_send.is_empty()
            && self.snapshot_chunks_received.is_empty()
            && self.read_states.is_empty()
            && self.events.is_empty()
    }

    pub fn needs_persist(&self) -> bool {
        self.hard_state.is_some()
            || !self.entries.is_empty()
            || !self.snapshot_chunks_received.is_empty()
    }
}

/// State changes worth a log line or a trace event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The election timer fired: this node now asks for pre-votes for `term`
    /// (`pre_vote`) or is a candidate in it.
    ElectionTimeout {
        term: Term,
        pre_vote: bool,
    },
    BecameLeader {
        term: Term,
        votes: usize,
    },
    BecameFollower {
        term: Term,
        reason: StepDownReason,
    },
    /// A leader became known (or changed) at this term.
    LeaderChanged {
        term: Term,
        leader: NodeId,
    },
    /// Entries were appended to this node's log.
    EntriesAppended {
        count: usize,
        term: Term,
        last_index: LogIndex,
    },
    /// A follower cut a conflicting suffix.
    LogTruncated {
        from: LogIndex,
    },
    /// A follower's log ends below what it had acknowledged: it lost
    /// durable state (a wiped data dir). Worth a loud log line.
    FollowerLostEntries {
        follower: NodeId,
        acknowledged: LogIndex,
        last_index: LogIndex,
    },
    CommitAdvanced {
        commit_index: LogIndex,
    },
    /// This node now knows, durably once this Ready is persisted, which
    /// cluster it belongs to.
    ClusterIdLearned {
        cluster_id: ClusterId,
    },
    /// At start-up the log's configuration (from the entry at `index`)
    /// had other voters than the start configuration, and the node runs
    /// under the start configuration, as before configurations were in
    /// the log: a data dir of another cluster, say a single node's, put
    /// at a member's address, must not form a majority of its own.
    StoredConfigurationIgnored {
        index: LogIndex,
    },
    /// A leader starts streaming its snapshot at `index` (of `size_bytes`)
    /// to `follower`, which needs entries the leader no longer holds.
    SnapshotSendStarted {
        follower: NodeId,
        index: LogIndex,
        size_bytes: u64,
    },
    /// A follower installed the snapshot at `index` that `from` sent.
    SnapshotInstalled {
        from: NodeId,
        index: LogIndex,
    },
    /// A message from a node of another cluster (or of none this node
    /// recognises) was ignored, term and all (`Raft::is_foreign`).
    ForeignMessageIgnored {
        from: NodeId,
        cluster: ClusterTag,
    },
    /// A snapshot chunk from `from` did not start where this node's copy
    /// of snapshot `index` ends (`stored` bytes; 0: not receiving it). It
    /// changed nothing and was answered with `stored`, on this node's own
    /// link to `from`; the runtime closes the connection it came on, so
    /// that whatever else is in flight behind it goes too.
    SnapshotChunkOutOfOrder {
        from: NodeId,
        index: LogIndex,
        offset: u64,
        stored: u64,
    },
    /// This leader of `term` hands leadership to `to`, and takes no
    /// proposals until the transfer ends (by `deadline_ms` at the latest).
    TransferStarted {
        to: NodeId,
        term: Term,
        deadline_ms: u64,
    },
    /// The transfer to `to` ended.
    TransferEnded {
        to: NodeId,
        outcome: TransferOutcome,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepDownReason {
    /// A message carried a higher term.
    HigherTerm { from: NodeId },
    /// A candidate learned of the current term's leader.
    LeaderExists { leader: NodeId },
    /// CheckQuorum: no majority answered for an election timeout.
    QuorumLost,
}
