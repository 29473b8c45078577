//! The RPCs of Figure 2, as the core sends and receives them.

use super::types::{ClusterId, Entry, LogIndex, NodeId, SnapshotMeta, Term};
use std::sync::Arc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    /// Which cluster the sender's log belongs to (see `ClusterTag`).
    pub cluster: ClusterTag,
    pub body: MessageBody,
}

/// The sender's cluster, carried by every RPC so that a node never takes
/// the term, vote or entries of a node of another cluster (a stale data dir
/// at a member's address), whatever the connection under it checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterTag {
    /// The cluster id the sender's first entry (its Bootstrap) names; None
    /// if its log is empty.
    pub log_id: Option<ClusterId>,
    /// The sender is bound to that cluster (`HardState::cluster_id`).
    pub bound: bool,
}

impl ClusterTag {
    /// Both logs begin with a Bootstrap entry, and not the same one.
    pub fn diverges_from(self, other: ClusterTag) -> bool {
        matches!((self.log_id, other.log_id), (Some(a), Some(b)) if a != b)
    }

    /// Both are bound to a cluster, and not the same: nothing may pass.
    pub fn foreign_to(self, other: ClusterTag) -> bool {
        self.bound && other.bound && self.diverges_from(other)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    RequestVote(RequestVote),
    RequestVoteResponse(RequestVoteResponse),
    AppendEntries(AppendEntries),
    AppendEntriesResponse(AppendEntriesResponse),
    InstallSnapshot(InstallSnapshot),
    InstallSnapshotResponse(InstallSnapshotResponse),
    /// Leadership transfer (dissertation §3.10): the leader tells a caught-up
    /// follower to start an election now. Nothing but the common header.
    TimeoutNow,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestVote {
    pub last_log_index: LogIndex,
    pub last_log_term: Term,
    /// A pre-vote (§9.6): the message's term is the term the sender would
    /// campaign in; nobody changes term or vote because of it.
    pub pre_vote: bool,
    /// Sent by a candidate the leader told to campaign (`TimeoutNow`):
    /// voters answer it even while they hear from a leader (stickiness),
    /// still only for an up-to-date log. Never set with `pre_vote`.
    pub transfer: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestVoteResponse {
    pub vote_granted: bool,
    /// Answers a pre-vote. A granted pre-vote carries the requested term.
    pub pre_vote: bool,
}

/// Doubles as the heartbeat when `entries` is empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendEntries {
    pub prev_log_index: LogIndex,
    pub prev_log_term: Term,
    pub leader_commit: LogIndex,
    /// The leader's heartbeat round when it sent this; echoed in the
    /// response. A majority echoing round r confirms the leadership that
    /// ReadIndex reads registered before round r depend on (§6.4).
    pub round: u64,
    pub entries: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendEntriesResponse {
    pub success: bool,
    /// On success: the last index this request made the follower match
    /// (prev_log_index + entries.len()), not the follower's last index; for
    /// a request from below the follower's snapshot, the follower's commit
    /// index (committed entries match the leader's, §5.4).
    /// On failure: the prev_log_index that was rejected, so the leader can tell a
    /// stale rejection from a current one.
    pub index: LogIndex,
    /// Fast backtracking hint on failure (Raft dissertation §5.3 / etcd): the
    /// follower's term at prev_log_index if it has one, and the first index the
    /// leader should try next (at least 1). A conflict index of 0 marks the
    /// answer to a request from an earlier term: only its term matters.
    pub conflict_term: Option<Term>,
    pub conflict_index: LogIndex,
    /// The `round` of the AppendEntries this answers.
    pub round: u64,
}

/// One piece of a snapshot file (§7; byte-offset chunks as LogCabin's):
/// `data` is the file's bytes from `offset`. Every chunk names the whole
/// snapshot, so a follower tells a new transfer from the rest of the one
/// it is receiving, and knows the snapshot once the last chunk is in.
/// Only the driver builds one, from a `ChunkToSend` and the file: a chunk
/// without its bytes cannot exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallSnapshot {
    pub meta: SnapshotMeta,
    pub offset: u64,
    /// The whole file's size. Invariant: offset + data.len() <= total_size.
    pub total_size: u64,
    /// At most SNAPSHOT_CHUNK_SIZE_MAX bytes; shared, as entries are.
    pub data: Arc<[u8]>,
}

impl InstallSnapshot {
    /// The chunk that ends the file.
    pub fn is_last(&self) -> bool {
        self.offset + self.data.len() as u64 == self.total_size
    }

    /// Whether two chunks belong to the same snapshot file.
    pub fn same_snapshot(&self, meta: &SnapshotMeta, total_size: u64) -> bool {
        self.meta.index == meta.index
            && self.meta.term == meta.term
            && self.total_size == total_size
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallSnapshotResponse {
    /// The snapshot the answered chunk named.
    pub index: LogIndex,
    pub term: Term,
    pub status: SnapshotStatus,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotStatus {
    /// The chunk was taken: the follower holds `stored` bytes of the file,
    /// the offset it wants next.
    Accepted { stored: u64 },
    /// The chunk did not start at `stored`, what the follower holds of
    /// this snapshot (0 for one it is not receiving): nothing changed.
    OutOfOrder { stored: u64 },
    /// The follower's state covers the snapshot (it installed it, or had
    /// applied that far already): its log matches the leader's up to
    /// `match_index`, at least the snapshot's index (it is committed).
    Installed { match_index: LogIndex },
    /// The whole file failed the follower's checks; it starts over at 0.
    Failed,
}

/// A chunk a leader's core wants sent. The core cannot read files, so the
/// driver reads `size` bytes at `offset` of the snapshot file at
/// `meta.index` and sends `into_message` of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkToSend {
    pub from: NodeId,
    pub to: NodeId,
    pub term: Term,
    pub cluster: ClusterTag,
    pub meta: SnapshotMeta,
    pub offset: u64,
    /// At most `Limits::snapshot_chunk_size_max`, and within the file.
    pub size: usize,
    pub total_size: u64,
}

impl ChunkToSend {
    /// The message, once its bytes are read; they must be `size` bytes.
    pub fn into_message(self, data: Arc<[u8]>) -> Message {
        assert_eq!(
            data.len(),
            self.size,
            "snapshot chunk at {} filled with the wrong size",
            self.offset
        );
        Message {
            from: self.from,
            to: self.to,
            term: self.term,
            cluster: self.cluster,
            body: MessageBody::InstallSnapshot(InstallSnapshot {
                meta: self.meta,
                offset: self.offset,
                total_size: self.total_size,
                data,
            }),
        }
    }
}
