//! The replica's side of snapshots: when one is due, the cursor that walks
//! the state machine while it goes on applying, the SNAPSHOT requests
//! waiting for it, compaction, and a follower's install. No IO: the driver
//! moves the bytes (src/driver.rs).

use super::{ClientToken, Replica};
use crate::core::{LogIndex, SnapshotMeta};
use crate::kv::{SnapshotCursor, StateMachine};
use crate::reply::Reply;

/// Store entries folded back per drive while no snapshot is being taken
/// (the delta a snapshot leaves drains on idle turns). At 1M keys a fold
/// costs 2-4 µs (a miss at each level of the base's tree): 1024 per drive
/// made 2.4-4.5 ms turns; 256 keep a turn near a millisecond.
pub const FOLD_ENTRIES_PER_DRIVE_MAX: usize = 256;

/// Entries compaction drops per drive: freeing one costs about 120 ns
/// (16,384 made 2 ms turns), and a snapshot of a large store lets a few
/// hundred thousand pile up.
pub const COMPACT_ENTRIES_PER_DRIVE_MAX: u64 = 4096;

/// A paced snapshot goes at full speed once the log has grown by this many
/// times `--snapshot-entries` since it began: the log stays bounded by
/// about the threshold times this, however large the store.
pub const SNAPSHOT_CATCH_UP_FACTOR: u64 = 16;

/// A snapshot of the state machine being taken.
pub(super) struct Taking {
    meta: SnapshotMeta,
    cursor: SnapshotCursor,
    started_ms: u64,
    /// SNAPSHOT requests answered once it is durable.
    requested_by: Vec<ClientToken>,
    /// Its bytes are all written; it waits for its sync and commit.
    written: bool,
}

/// What a durable snapshot was, for the log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotTaken {
    pub meta: SnapshotMeta,
    pub keys: u64,
    pub size_bytes: u64,
    pub took_ms: u64,
}

impl Replica {
    /// SNAPSHOT: answered now if there is nothing new to snapshot or one
    /// is being taken, else once the next one is durable.
    pub(super) fn request_snapshot(&mut self, token: ClientToken) {
        let applied = self.raft.log().last_applied();
        if let Some(taking) = &self.taking {
            let reason = format!(
                "a snapshot is already being written (index {})",
                taking.meta.index
            );
            return self.reply(token, Reply::Unavailable(reason.into()));
        }
        if self.raft.is_installing_snapshot() {
            let reason = "a snapshot from the leader is being installed";
            return self.reply(token, Reply::Unavailable(reason.into()));
        }
        if applied.0 == 0 {
            let reason = "nothing is applied yet, so there is nothing to snapshot";
            return self.reply(token, Reply::Unavailable(reason.into()));
        }
        match self.raft.snapshot() {
            Some(snapshot) if snapshot.meta.index == applied => {
                let (index, bytes) = (snapshot.meta.index, snapshot.size_bytes);
                self.reply(token, Reply::SnapshotTaken { index, bytes });
            }
            _ => self.snapshot_requests.push(token),
        }
    }

    /// Whether a snapshot should begin now: asked for, or more than
    /// `entries` applied past the last one; and nothing stands in the way.
    pub fn snapshot_due(&self, entries: u64) -> bool {
        let applied = self.raft.log().last_applied();
        let last = self
            .raft
            .snapshot()
            .map_or(0, |snapshot| snapshot.meta.index.0);
        let wanted =
            !self.snapshot_requests.is_empty() || applied.0 - last.min(applied.0) > entries;
        wanted
            && applied.0 > last
            && self.taking.is_none()
            && !self.raft.is_installing_snapshot()
            && self.machine.snapshot_blocked().is_none()
            && self.raft.log().term_at(applied).is_some()
    }

    /// Starts a snapshot of the state machine as it is now (everything up
    /// to the applied index). `snapshot_due` must have said yes.
    pub fn begin_snapshot(&mut self) -> SnapshotMeta {
        assert!(self.taking.is_none(), "a snapshot is being taken already");
        let index = self.raft.log().last_applied();
        let Some(term) = self.raft.log().term_at(index) else {
            panic!("snapshot at {index}, whose term the log no longer holds");
        };
        // Before this node is bound (its own copy of the Bootstrap not yet
        // durable) its log still names the cluster: the Bootstrap is applied,
        // so committed. A snapshot without it would leave whoever installs
        // it unable ever to bind.
        let cluster_id = match self.raft.cluster_id() {
            None if planted_snapshot_without_cluster(&self.raft) => None,
            bound => bound.or_else(|| self.raft.log().first_cluster_id()),
        };
        let meta = SnapshotMeta {
            index,
            term,
            cluster_id,
            // The snapshot's index is applied: its configuration is known.
            voters: self
                .raft
                .log()
                .configs()
                .at(index)
                .config
                .voters()
                .collect(),
        };
        self.taking = Some(Taking {
            meta: meta.clone(),
            cursor: self.machine.begin_snapshot(),
            started_ms: self.raft.now_ms(),
            requested_by: std::mem::take(&mut self.snapshot_requests),
            written: false,
        });
        meta
    }

    /// Whether a snapshot's bytes are still being produced.
    pub fn snapshot_writing(&self) -> bool {
        self.taking.as_ref().is_some_and(|taking| !taking.written)
    }

    /// How many more bytes of the snapshot being written may go now: at
    /// `bytes_per_ms` since it began (0: unpaced, no bound), and unpaced
    /// once the log has grown by `SNAPSHOT_CATCH_UP_FACTOR` times
    /// `entries` since it began, so that a large store's snapshot still
    /// bounds the log.
    pub fn snapshot_budget(&self, bytes_per_ms: u64, entries: u64) -> u64 {
        let Some(taking) = &self.taking else {
            return 0;
        };
        let applied_since = self.raft.log().last_applied().0 - taking.meta.index.0;
        let window = entries.saturating_mul(SNAPSHOT_CATCH_UP_FACTOR);
        if bytes_per_ms == 0 || applied_since >= window {
            return u64::MAX;
        }
        let elapsed_ms = self.raft.now_ms().saturating_sub(taking.started_ms) + 1;
        let by_time = elapsed_ms.saturating_mul(bytes_per_ms);
        by_time.saturating_sub(taking.cursor.size_written())
    }

    /// Appends about `size_max` more bytes of the snapshot being taken to
    /// `out`; true once they are all out.
    pub fn snapshot_chunk(&mut self, out: &mut Vec<u8>, size_max: usize) -> bool {
        let taking = self.taking.as_mut().expect("no snapshot being taken");
        assert!(
            !taking.written,
            "snapshot {} already written",
            taking.meta.index
        );
        taking.written = taking.cursor.next_chunk(out, size_max);
        taking.written
    }

    /// The snapshot being taken is durable, its file `size_bytes` long:
    /// the core may stream it and compact below it, and SNAPSHOT requests
    /// get their answer.
    pub fn snapshot_taken(&mut self, size_bytes: u64) -> SnapshotTaken {
        let taking = self.taking.take().expect("no snapshot being taken");
        assert!(
            taking.written,
            "snapshot {} not fully written",
            taking.meta.index
        );
        let index = taking.meta.index;
        for token in taking.requested_by {
            self.reply(
                token,
                Reply::SnapshotTaken {
                    index,
                    bytes: size_bytes,
                },
            );
        }
        self.raft.snapshot_taken(taking.meta.clone(), size_bytes);
        SnapshotTaken {
            keys: taking.cursor.key_count(),
            meta: taking.meta,
            size_bytes,
            took_ms: self.raft.now_ms().saturating_sub(taking.started_ms),
        }
    }

    /// Gives up the snapshot being taken (a newer one from the leader
    /// replaces the state it walks).
    pub fn snapshot_abandoned(&mut self, reason: &str) {
        if let Some(taking) = self.taking.take() {
            for token in taking.requested_by {
                self.reply(token, Reply::Unavailable(reason.to_string().into()));
            }
        }
    }

    /// Folds back some of what the last snapshot left in the store's
    /// delta, while no snapshot is being taken; true while some is left.
    pub fn fold_idle(&mut self) -> bool {
        self.taking.is_none() && self.machine.fold_delta(FOLD_ENTRIES_PER_DRIVE_MAX) > 0
    }

    /// Where the log may be compacted to now: `trailing` entries below the
    /// newest snapshot, no further than what is applied and durable here,
    /// and at most `COMPACT_ENTRIES_PER_DRIVE_MAX` past the base (the
    /// driver goes on at its next drive). None when that is not past the
    /// log's base.
    pub fn compaction_point(&self, trailing: u64) -> Option<LogIndex> {
        let snapshot = self.raft.snapshot()?;
        let log = self.raft.log();
        let point = LogIndex(snapshot.meta.index.0.saturating_sub(trailing))
            .min(log.persisted_index())
            .min(log.last_applied())
            .min(LogIndex(log.base_index().0 + COMPACT_ENTRIES_PER_DRIVE_MAX));
        (point > log.base_index()).then_some(point)
    }

    /// Follower: the snapshot `meta` the leader sent is durable and its
    /// body restored into `machine`; it replaces the state machine.
    /// Returns whether the log kept its suffix (if not, storage drops it).
    pub fn install_snapshot(&mut self, meta: SnapshotMeta, machine: StateMachine) -> bool {
        self.snapshot_abandoned("superseded by a snapshot from the leader");
        self.machine = machine;
        self.plant_bug_in_machine();
        let kept = self.raft.snapshot_installed(meta);
        // Requests that waited for a snapshot of what is applied now have
        // one: the installed file is this node's newest.
        if let Some(snapshot) = self.raft.snapshot() {
            let (index, bytes) = (snapshot.meta.index, snapshot.size_bytes);
            for token in std::mem::take(&mut self.snapshot_requests) {
                self.reply(token, Reply::SnapshotTaken { index, bytes });
            }
        }
        kept
    }

    #[cfg(feature = "planted-bugs")]
    pub(super) fn plant_bug_in_machine(&mut self) {
        self.machine.plant_bug(self.raft.planted_bug());
    }

    #[cfg(not(feature = "planted-bugs"))]
    pub(super) fn plant_bug_in_machine(&mut self) {}
}

/// The planted bug `snapshot-without-cluster`: a snapshot taken before the
/// node is bound names the hard state's cluster, which is none yet.
#[cfg(feature = "planted-bugs")]
fn planted_snapshot_without_cluster(raft: &crate::core::Raft) -> bool {
    raft.planted_bug() == Some(crate::core::PlantedBug::SnapshotWithoutCluster)
}

#[cfg(not(feature = "planted-bugs"))]
fn planted_snapshot_without_cluster(_raft: &crate::core::Raft) -> bool {
    false
}
