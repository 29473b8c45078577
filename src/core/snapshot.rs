//! Snapshots (§7 of the paper; chapter 5 of the dissertation): the
//! snapshots this node holds, what the runtime tells the core about them,
//! a follower receiving and installing its leader's, and the leader's
//! side of streaming one to a follower that needs entries it no longer
//! holds (progress state `Snapshot`, as etcd's StateSnapshot; chunks at
//! byte offsets, as LogCabin's InstallSnapshot).
//!
//! Who calls what, when:
//! - any node, once a snapshot it took is durable: `snapshot_taken`; then,
//!   when the runtime chooses to drop the log below it, `compact`;
//! - a follower's runtime, after writing the last of the
//!   `Ready::snapshot_chunks_received`: checks the file, installs it and
//!   restores the state machine from it, then calls `snapshot_installed`
//!   (or `snapshot_install_failed` if the check failed);
//! - a leader's runtime sends each `Ready::snapshot_chunks_to_send` once
//!   it has read its bytes from the snapshot file.

use super::message::*;
use super::planted::PlantedBug;
use super::progress::{Progress, SnapshotTransfer};
use super::raft::Raft;
use super::ready::Event;
use super::role::RoleState;
use super::types::*;

/// This node's two newest durable snapshots. Storage keeps both (and
/// deletes an older one only once a newer one is durable), so a transfer
/// of the older one may finish after a newer one is taken.
#[derive(Debug, Default)]
pub(super) struct Snapshots {
    newest: Option<StoredSnapshot>,
    previous: Option<StoredSnapshot>,
}

impl Snapshots {
    pub(super) fn restored(snapshot: Option<StoredSnapshot>) -> Snapshots {
        Snapshots {
            newest: snapshot,
            previous: None,
        }
    }

    pub(super) fn newest(&self) -> Option<&StoredSnapshot> {
        self.newest.as_ref()
    }

    /// The snapshot at (index, term), if storage still keeps it.
    pub(super) fn find(&self, index: LogIndex, term: Term) -> Option<&StoredSnapshot> {
        [self.newest.as_ref(), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|snapshot| snapshot.meta.index == index && snapshot.meta.term == term)
    }

    /// Keeps the two newest; one no newer than both is already gone.
    fn record(&mut self, snapshot: StoredSnapshot) {
        let index = snapshot.meta.index;
        let newest_index = self.newest.as_ref().map(|s| s.meta.index);
        let previous_index = self.previous.as_ref().map(|s| s.meta.index);
        if newest_index.is_none_or(|newest| index > newest) {
            self.previous = self.newest.replace(snapshot);
        } else if newest_index != Some(index) && previous_index.is_none_or(|p| index > p) {
            self.previous = Some(snapshot);
        }
    }
}

/// A snapshot a follower receives. Invariant: stored <= total_size.
#[derive(Debug)]
pub(super) struct SnapshotReceive {
    /// Who sends it: a chunk of the same snapshot from another leader
    /// starts over, since two nodes' files of one snapshot need not be
    /// byte for byte the same.
    leader: NodeId,
    meta: SnapshotMeta,
    total_size: u64,
    /// Bytes handed to the runtime so far: the offset wanted next.
    stored: u64,
    /// The last chunk went to the runtime, which is installing the file.
    installing: bool,
}

impl SnapshotReceive {
    fn is_of(&self, leader: NodeId, chunk: &InstallSnapshot) -> bool {
        self.leader == leader && chunk.same_snapshot(&self.meta, self.total_size)
    }
}

// ---- what the runtime tells the core ----------------------------------

impl Raft {
    /// A snapshot of this node's state machine up to `meta.index` is
    /// durable, its file `size_bytes` long. A leader streams the newest to
    /// followers that need it.
    pub fn snapshot_taken(&mut self, meta: SnapshotMeta, size_bytes: u64) {
        assert!(size_bytes > 0, "snapshot {} has an empty file", meta.index);
        assert!(
            meta.index <= self.log.last_applied(),
            "snapshot {} of state not applied (applied {})",
            meta.index,
            self.log.last_applied()
        );
        if let Some(term) = self.log.term_at(meta.index) {
            assert_eq!(term, meta.term, "snapshot {} of another term", meta.index);
        }
        self.snapshots.record(StoredSnapshot { meta, size_bytes });
    }

    /// Drops the log up to `index`, which the runtime chose (the snapshot
    /// index less the trailing entries kept for slow followers, clamped to
    /// what is applied and durable): a durable snapshot must cover it.
    pub fn compact(&mut self, index: LogIndex) {
        if self.planted(PlantedBug::CompactUnapplied) {
            return self.log.planted_compact_unapplied(index);
        }
        let covered = self
            .snapshots
            .newest()
            .is_some_and(|snapshot| snapshot.meta.index >= index);
        assert!(
            covered || index <= self.log.base_index(),
            "compacting to {index}, past the newest durable snapshot"
        );
        self.log.compact_to(index);
    }

    /// Follower: the runtime checked the file whose last chunk it was
    /// handed, installed it, and restored the state machine from it.
    /// `meta` is the chunks' (`InstallSnapshot::meta`): a file whose own
    /// header says otherwise failed its check (`snapshot_install_failed`),
    /// since the chunks came from the network. The
    /// log keeps its suffix after `meta.index` if it holds that entry (and
    /// belongs to the snapshot's cluster), else drops everything; commit
    /// and applied move to `meta.index`. Returns whether the suffix was
    /// kept: if not, storage must drop its whole log (the next Ready's
    /// entries follow the snapshot); if so, its entries up to `meta.index`
    /// may go.
    pub fn snapshot_installed(&mut self, meta: SnapshotMeta) -> bool {
        let receive = self.receiving.take().expect("no snapshot was received");
        assert!(
            receive.installing && receive.meta == meta,
            "installed snapshot {} is not the one received",
            meta.index
        );
        // The check that refused it as a chunk still holds: no committed
        // entries were handed out while it was being installed.
        if !self.planted(PlantedBug::InstallOlderSnapshot) {
            assert!(
                meta.index > self.log.last_applied(),
                "installing snapshot {} at or below applied {}",
                meta.index,
                self.log.last_applied()
            );
        }
        let suffix_kept = if self.planted(PlantedBug::InstallKeepsForeignLog) {
            self.log.planted_install_keeping_foreign_log(&meta)
        } else {
            self.log.install_snapshot(&meta)
        };
        self.bind_to_snapshot_cluster(&meta);
        let (index, term) = (meta.index, meta.term);
        self.snapshots.record(StoredSnapshot {
            meta,
            size_bytes: receive.total_size,
        });
        let from = receive.leader;
        self.ready
            .events
            .push(Event::SnapshotInstalled { from, index });
        let status = SnapshotStatus::Installed {
            match_index: self.log.commit_index(),
        };
        let response = InstallSnapshotResponse {
            index,
            term,
            status,
        };
        self.send_after_persist(from, MessageBody::InstallSnapshotResponse(response));
        suffix_kept
    }

    /// Follower: the file whose last chunk the runtime was handed failed
    /// its check (the runtime discards it). The leader starts over.
    pub fn snapshot_install_failed(&mut self, index: LogIndex) {
        let receive = self.receiving.take().expect("no snapshot was received");
        assert!(
            receive.installing && receive.meta.index == index,
            "failed snapshot {index} is not the one received"
        );
        let response = InstallSnapshotResponse {
            index,
            term: receive.meta.term,
            status: SnapshotStatus::Failed,
        };
        self.send(
            receive.leader,
            MessageBody::InstallSnapshotResponse(response),
        );
    }

    /// The newest durable snapshot this node holds.
    pub fn snapshot(&self) -> Option<&StoredSnapshot> {
        self.snapshots.newest()
    }

    /// The last chunk of a snapshot went to the runtime, which has not said
    /// yet whether it installed it.
    pub fn is_installing_snapshot(&self) -> bool {
        self.receiving
            .as_ref()
            .is_some_and(|receive| receive.installing)
    }

    /// A node whose state machine holds a snapshot of its cluster is bound
    /// to it, as if it had seen the Bootstrap commit (it did, in the
    /// snapshot). Our own binding to another is ruled out by `is_foreign`.
    fn bind_to_snapshot_cluster(&mut self, meta: &SnapshotMeta) {
        let Some(cluster_id) = meta.cluster_id else {
            return;
        };
        match self.hard_state.cluster_id {
            Some(bound) => assert_eq!(bound, cluster_id, "installed another cluster's snapshot"),
            None => {
                self.hard_state.cluster_id = Some(cluster_id);
                self.hard_state_dirty = true;
                self.ready
                    .events
                    .push(Event::ClusterIdLearned { cluster_id });
            }
        }
    }
}

// ---- the follower's side ----------------------------------------------

impl Raft {
    /// A chunk from the leader of our term (`step` did the term checks, as
    /// for AppendEntries: it holds off our election timer like one). It is
    /// taken only if it continues what we stored of its snapshot, or starts
    /// a new one at offset 0; anything else is answered with what we hold,
    /// changing nothing. A snapshot our state machine already covers is
    /// refused: installing it would roll the state machine back.
    pub(super) fn handle_install_snapshot(&mut self, leader: NodeId, chunk: InstallSnapshot) {
        self.heard_from_leader(leader);
        self.reset_election_deadline();
        if self.is_installing_snapshot() {
            return; // its answer comes with `snapshot_installed`
        }
        let covered = chunk.meta.index <= self.log.last_applied();
        if covered && !self.planted(PlantedBug::InstallOlderSnapshot) {
            return self.refuse_covered_snapshot(leader, &chunk);
        }
        let stored = self
            .receiving
            .as_ref()
            .filter(|receive| receive.is_of(leader, &chunk))
            .map(|receive| receive.stored);
        let expected = stored.unwrap_or(0);
        if chunk.offset != expected {
            self.ready.events.push(Event::SnapshotChunkOutOfOrder {
                from: leader,
                index: chunk.meta.index,
                offset: chunk.offset,
                stored: expected,
            });
            let status = SnapshotStatus::OutOfOrder { stored: expected };
            return self.answer_chunk(leader, &chunk, status);
        }
        if stored.is_none() {
            // A new transfer: what was stored of another snapshot is dropped.
            self.receiving = Some(SnapshotReceive {
                leader,
                meta: chunk.meta.clone(),
                total_size: chunk.total_size,
                stored: 0,
                installing: false,
            });
        }
        let receive = self.receiving.as_mut().expect("receiving a snapshot");
        receive.stored += chunk.data.len() as u64;
        receive.installing = chunk.is_last();
        let status = SnapshotStatus::Accepted {
            stored: receive.stored,
        };
        let last = receive.installing;
        if !last {
            self.answer_chunk(leader, &chunk, status);
        }
        self.ready.snapshot_chunks_received.push(chunk);
    }

    /// §7 says a follower that already holds the snapshot's last entry
    /// keeps what follows it; one whose state machine has applied that far
    /// holds more: its log matches the leader's up to its commit index.
    fn refuse_covered_snapshot(&mut self, leader: NodeId, chunk: &InstallSnapshot) {
        let applied = self.log.last_applied();
        if self
            .receiving
            .as_ref()
            .is_some_and(|receive| receive.meta.index <= applied)
        {
            self.receiving = None;
        }
        let status = SnapshotStatus::Installed {
            match_index: self.log.commit_index(),
        };
        self.answer_chunk(leader, chunk, status);
    }

    /// Answers go once the chunks taken before them are written.
    fn answer_chunk(&mut self, leader: NodeId, chunk: &InstallSnapshot, status: SnapshotStatus) {
        let response = InstallSnapshotResponse {
            index: chunk.meta.index,
            term: chunk.meta.term,
            status,
        };
        self.send_after_persist(leader, MessageBody::InstallSnapshotResponse(response));
    }

    pub(super) fn check_snapshot_invariants(&self) {
        if let Some(receive) = &self.receiving {
            assert!(receive.stored <= receive.total_size);
            assert_eq!(receive.installing, receive.stored == receive.total_size);
        }
        // Nothing is compacted that no durable snapshot holds (the planted
        // CompactUnapplied hides its damage from this check too).
        let covered = self
            .snapshots
            .newest()
            .is_some_and(|newest| newest.meta.index >= self.log.base_index());
        let compacted = self.log.base_index() > LogIndex(0);
        assert!(
            covered || !compacted || self.planted(PlantedBug::CompactUnapplied),
            "log compacted past the newest snapshot"
        );
    }
}

// ---- the leader's side -------------------------------------------------

impl Raft {
    /// A follower's answer about a snapshot we stream to it.
    pub(super) fn handle_snapshot_response(
        &mut self,
        follower: NodeId,
        bound: bool,
        response: &InstallSnapshotResponse,
    ) {
        let now_ms = self.now_ms;
        let RoleState::Leader(leader) = &mut self.role else {
            return;
        };
        let Some(progress) = leader.progress.get_mut(&follower) else {
            return;
        };
        progress.last_contact_ms = now_ms;
        let newly_bound = bound && !progress.bound;
        progress.bound = bound;
        let news = match response.status {
            SnapshotStatus::Installed { match_index } => transfer_done(progress, match_index),
            status => {
                transfer_report(progress, response, status, now_ms);
                false
            }
        };
        if news || newly_bound {
            self.commit_by_majority();
        }
    }
}

/// The follower's state covers a snapshot, and its log matches ours up to
/// `match_index`: replicate from there. If we no longer hold the entries
/// after it either, the next send starts a new snapshot, and only then
/// (no loop, hashicorp/raft#212). Returns whether it told anything new.
pub(super) fn transfer_done(progress: &mut Progress, match_index: LogIndex) -> bool {
    let news = progress.acknowledge(match_index);
    if progress.is_snapshot() || progress.state == super::progress::ProgressState::Probe {
        progress.become_replicate();
    }
    news
}

/// How far the follower got with the transfer the answer is about.
fn transfer_report(
    progress: &mut Progress,
    response: &InstallSnapshotResponse,
    status: SnapshotStatus,
    now_ms: u64,
) {
    let Some(transfer) = progress.snapshot_transfer() else {
        return; // the transfer is over
    };
    if transfer.index != response.index || transfer.term != response.term {
        return; // about an earlier transfer
    }
    match status {
        SnapshotStatus::Accepted { stored } => transfer.accepted(stored, now_ms),
        SnapshotStatus::OutOfOrder { stored } => transfer.out_of_order(stored, now_ms),
        SnapshotStatus::Failed => transfer.restart(now_ms),
        SnapshotStatus::Installed { .. } => unreachable!("handled by transfer_done"),
    }
}

/// Starts streaming `snapshot` to `follower`.
pub(super) fn start_transfer(
    follower: NodeId,
    progress: &mut Progress,
    snapshot: &StoredSnapshot,
    now_ms: u64,
    events: &mut Vec<Event>,
) {
    let meta = &snapshot.meta;
    let transfer = SnapshotTransfer::new(meta.index, meta.term, snapshot.size_bytes, now_ms);
    progress.become_snapshot(transfer);
    events.push(Event::SnapshotSendStarted {
        follower,
        index: meta.index,
        size_bytes: snapshot.size_bytes,
    });
}
