//! The driver's snapshot steps: taking one (a bounded slice of the state
//! machine's bytes per `drive`, then its own fdatasync on the executor,
//! then commit and compaction), sending the chunks a leader's core asks
//! for, and storing and installing the chunks a follower receives.

use super::{
    DriveError, Driver, InFlight, ReadyObserver, SyncExecutor, Transport, SNAPSHOT_FLUSH_BYTES,
};
use crate::core::{ChunkToSend, InstallSnapshot, LogIndex, SnapshotMeta};
use crate::kv::{Restorer, StateMachine};
use crate::replica::{Replica, SnapshotTaken};
use crate::storage::snapshot::BodyFinder;
use crate::storage::{Storage, StorageError};

/// A snapshot being received: its body is restored as the chunks come, a
/// chunk's worth per Ready, so that the install costs no long stall.
#[derive(Debug, Default)]
pub(super) struct Receiving {
    finder: BodyFinder,
    restorer: Restorer,
    /// Bytes stored since the file was last flushed.
    unflushed: u64,
}

/// What the driver did with snapshots, for log lines and traces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotEvent {
    /// A snapshot this node took is durable.
    Taken(SnapshotTaken),
    /// The log was compacted: it now begins at `first_index`, and storage
    /// removed `segments` whole segments below it.
    Compacted {
        first_index: LogIndex,
        segments: usize,
    },
    /// A chunk the core asked to send could not be read (the file is gone
    /// or changed). The core asks again on a later heartbeat, for the same
    /// offset of the same file, or of the newest one once that file is
    /// gone: a file that stays unreadable is asked for again each time.
    ChunkUnreadable { index: LogIndex, problem: String },
    /// A snapshot received from the leader failed its check and was
    /// discarded; the leader starts over.
    InstallFailed { index: LogIndex, problem: String },
}

impl<J> Driver<J> {
    /// Once per `drive`: compacts what a durable snapshot allows, writes
    /// the next slice of a snapshot being taken (or begins one that is
    /// due), and reports what happened. Returns whether work is left (a
    /// slice to write, a delta to fold): the caller drives again soon
    /// rather than at its next event.
    pub(super) fn snapshot_step<S, X>(
        &mut self,
        replica: &mut Replica,
        storage: &mut S,
        syncer: &mut X,
        observer: &mut impl ReadyObserver,
    ) -> Result<bool, DriveError>
    where
        S: Storage<Job = J>,
        X: SyncExecutor<J>,
    {
        let compaction_left = self.compact(replica, storage)?;
        let snapshot_left = if replica.snapshot_writing() {
            self.write_snapshot_slice(replica, storage, syncer)?
        } else if replica.snapshot_due(self.policy.entries) {
            let meta = replica.begin_snapshot();
            storage.snapshot_begin(&meta)?;
            self.write_snapshot_slice(replica, storage, syncer)?
        } else {
            replica.fold_idle()
        };
        for event in std::mem::take(&mut self.snapshot_events) {
            observer.snapshot(&event, replica);
        }
        Ok(compaction_left || snapshot_left)
    }

    /// Writes the next slice, if the pace allows one now. Returns whether
    /// a slice is due at once (the caller drives again soon); a paced one
    /// waits for the next turn.
    fn write_snapshot_slice<S, X>(
        &mut self,
        replica: &mut Replica,
        storage: &mut S,
        syncer: &mut X,
    ) -> Result<bool, DriveError>
    where
        S: Storage<Job = J>,
        X: SyncExecutor<J>,
    {
        let budget = replica.snapshot_budget(self.policy.bytes_per_ms, self.policy.entries);
        if budget == 0 {
            return Ok(false);
        }
        let size = usize::try_from(budget).map_or(self.policy.bytes_per_drive, |budget| {
            budget.min(self.policy.bytes_per_drive)
        });
        self.snapshot_buffer.clear();
        let done = replica.snapshot_chunk(&mut self.snapshot_buffer, size);
        storage.snapshot_append(&self.snapshot_buffer)?;
        self.snapshot_unflushed += self.snapshot_buffer.len() as u64;
        // Keep one slice's worth, not the largest ever asked for.
        self.snapshot_buffer.shrink_to(self.policy.bytes_per_drive);
        if !done {
            self.flush_snapshot(storage, syncer)?;
            return Ok(replica.snapshot_budget(self.policy.bytes_per_ms, self.policy.entries) > 0);
        }
        self.snapshot_unflushed = 0;
        match storage.snapshot_finish()? {
            None => self.commit_snapshot(None, replica, storage)?,
            Some(job) => {
                self.snapshot_sync_waiting = Some(job);
                self.submit_next(syncer)?;
            }
        }
        Ok(false)
    }

    /// Every `SNAPSHOT_FLUSH_BYTES`, syncs what the snapshot file holds so
    /// far, if the executor is free: the disk then takes the snapshot in
    /// pieces, and the sync that makes it durable has little left to do
    /// (one large flush made the followers' log syncs wait behind it).
    fn flush_snapshot<S, X>(&mut self, storage: &mut S, syncer: &mut X) -> Result<(), DriveError>
    where
        S: Storage<Job = J>,
        X: SyncExecutor<J>,
    {
        if self.snapshot_unflushed < SNAPSHOT_FLUSH_BYTES || !self.executor_idle() {
            return Ok(());
        }
        if let Some(job) = storage.snapshot_flush() {
            syncer.submit(job)?;
            self.sync_in_flight = Some(InFlight::SnapshotFlush);
        }
        self.snapshot_unflushed = 0;
        Ok(())
    }

    /// The snapshot file is synced (by `job`): it becomes durable, the
    /// core learns of it, and compaction may follow.
    pub(super) fn commit_snapshot<S: Storage<Job = J>>(
        &mut self,
        job: Option<J>,
        replica: &mut Replica,
        storage: &mut S,
    ) -> Result<(), DriveError> {
        if std::mem::take(&mut self.snapshot_superseded) {
            // Abandoned while its sync ran: a snapshot from the leader
            // replaced the state it holds.
            return Ok(());
        }
        let size_bytes = storage.snapshot_commit(job)?;
        let taken = replica.snapshot_taken(size_bytes);
        let target = taken.meta.index.0.saturating_sub(self.policy.trailing);
        self.compact_target = Some(LogIndex(target));
        self.snapshot_events.push(SnapshotEvent::Taken(taken));
        Ok(())
    }

    /// Compacts the core's log and storage towards the target the last
    /// snapshot set, as far as what is durable and applied here allows, a
    /// bounded step per drive. Returns whether a step is left that could
    /// be taken at once.
    fn compact<S: Storage<Job = J>>(
        &mut self,
        replica: &mut Replica,
        storage: &mut S,
    ) -> Result<bool, DriveError> {
        let Some(target) = self.compact_target else {
            return Ok(false);
        };
        if let Some(point) = replica.compaction_point(self.policy.trailing) {
            replica.raft_mut().compact(point);
            let segments = storage.compact(point)?;
            let (steps, removed) = self.compacted.unwrap_or((0, 0));
            self.compacted = Some((steps + 1, removed + segments));
        }
        if replica.raft().log().base_index() >= target {
            self.compact_target = None;
        }
        let step_left = self.compact_target.is_some()
            && replica.compaction_point(self.policy.trailing).is_some();
        // One line for the steps that got as far as they can for now.
        if let (false, Some((_, segments))) = (step_left, self.compacted) {
            self.compacted = None;
            let first_index = replica.raft().log().first_index();
            self.snapshot_events.push(SnapshotEvent::Compacted {
                first_index,
                segments,
            });
        }
        Ok(step_left)
    }

    /// Whether the executor has nothing to do or waiting: a flush may go.
    fn executor_idle(&self) -> bool {
        self.sync_in_flight.is_none()
            && self.sync_waiting.is_none()
            && self.snapshot_sync_waiting.is_none()
    }

    /// Follower: writes the chunks received (in order; the core checked
    /// the order) and installs the snapshot their last one completes.
    pub(super) fn store_snapshot_chunks<S, X>(
        &mut self,
        received: Vec<InstallSnapshot>,
        replica: &mut Replica,
        storage: &mut S,
        syncer: &mut X,
    ) -> Result<(), DriveError>
    where
        S: Storage<Job = J>,
        X: SyncExecutor<J>,
    {
        for chunk in received {
            storage.receive_chunk(&chunk)?;
            if chunk.offset == 0 {
                self.receiving = Some(Receiving::default());
            }
            if let Some(receiving) = self.receiving.as_mut() {
                let body = receiving
                    .finder
                    .body_of(chunk.offset, &chunk.data, chunk.total_size);
                // A failure sticks in the restorer; `install` reports it.
                let _ = receiving.restorer.feed(body);
                receiving.unflushed += chunk.data.len() as u64;
            }
            if chunk.is_last() {
                self.install(chunk.meta, replica, storage)?;
            } else {
                self.flush_received(storage, syncer)?;
            }
        }
        Ok(())
    }

    /// Every `SNAPSHOT_FLUSH_BYTES` received, syncs the file so far on the
    /// executor, if it is free, as `flush_snapshot` does for one taken: the
    /// install's fdatasync, on the loop, then has little left to write.
    fn flush_received<S, X>(&mut self, storage: &mut S, syncer: &mut X) -> Result<(), DriveError>
    where
        S: Storage<Job = J>,
        X: SyncExecutor<J>,
    {
        let idle = self.executor_idle();
        let Some(receiving) = self.receiving.as_mut() else {
            return Ok(());
        };
        if receiving.unflushed < SNAPSHOT_FLUSH_BYTES || !idle {
            return Ok(());
        }
        receiving.unflushed = 0;
        if let Some(job) = storage.receive_flush() {
            syncer.submit(job)?;
            self.sync_in_flight = Some(InFlight::SnapshotFlush);
        }
        Ok(())
    }

    fn install<S: Storage<Job = J>>(
        &mut self,
        meta: SnapshotMeta,
        replica: &mut Replica,
        storage: &mut S,
    ) -> Result<(), DriveError> {
        let index = meta.index;
        let restorer = self.receiving.take().map(|receiving| receiving.restorer);
        let machine = match checked_machine(storage, &meta, restorer) {
            Ok(machine) => machine,
            Err(Refused(problem)) => {
                self.snapshot_events
                    .push(SnapshotEvent::InstallFailed { index, problem });
                replica.raft_mut().snapshot_install_failed(index);
                return Ok(());
            }
            Err(Failed(error)) => return Err(error.into()),
        };
        self.abandon_own_snapshot(storage)?;
        if replica.install_snapshot(meta.clone(), machine) {
            // The log holds the snapshot's entry: what lies below it may go.
            storage.compact(index)?;
        } else {
            storage.reset_to_snapshot(&meta)?;
        }
        Ok(())
    }

    /// A snapshot this node was taking walks state the install replaces.
    fn abandon_own_snapshot<S: Storage<Job = J>>(
        &mut self,
        storage: &mut S,
    ) -> Result<(), DriveError> {
        storage.snapshot_abandon()?;
        self.snapshot_sync_waiting = None;
        if self.sync_in_flight == Some(InFlight::Snapshot) {
            self.snapshot_superseded = true;
        }
        Ok(())
    }
}

/// Why a received snapshot was not installed: refused (it goes, the node
/// goes on) or a failure of the node's own storage (it stops).
enum InstallError {
    Refused(String),
    Failed(StorageError),
}
use InstallError::{Failed, Refused};

/// The state machine restored from the chunks as they came, then the file
/// checked whole against what they announced and installed under its
/// final name: a file whose body does not restore never becomes this
/// node's newest snapshot.
fn checked_machine<S: Storage>(
    storage: &mut S,
    meta: &SnapshotMeta,
    restorer: Option<Restorer>,
) -> Result<StateMachine, InstallError> {
    let restored = match restorer {
        Some(restorer) => restorer.finish().map_err(|error| error.to_string()),
        None => Err("its first chunk was never seen".to_string()),
    };
    let machine = match restored {
        Ok(machine) => machine,
        Err(problem) => {
            storage.receive_abandon().map_err(Failed)?;
            return Err(Refused(format!("snapshot {}: {problem}", meta.index)));
        }
    };
    match storage.receive_finish() {
        Ok(_) => Ok(machine),
        Err(error @ StorageError::Corrupt { .. }) => Err(Refused(error.to_string())),
        Err(error) => Err(Failed(error)),
    }
}

/// Leader: reads each chunk the core asked for and sends it.
pub(super) fn send_snapshot_chunks<S: Storage, T: Transport>(
    chunks: Vec<ChunkToSend>,
    storage: &mut S,
    transport: &mut T,
    replica: &Replica,
    observer: &mut impl ReadyObserver,
) -> Result<(), DriveError> {
    for chunk in chunks {
        let index = chunk.meta.index;
        let problem = match storage.snapshot_chunk(index, chunk.offset, chunk.size) {
            Ok(bytes) if bytes.len() == chunk.size => {
                transport.send(chunk.into_message(bytes.into()));
                continue;
            }
            Ok(bytes) => format!(
                "{} bytes at byte {} where {} were expected: the file changed",
                bytes.len(),
                chunk.offset,
                chunk.size
            ),
            Err(error @ StorageError::NoSnapshot { .. }) => error.to_string(),
            Err(error) => return Err(error.into()),
        };
        observer.snapshot(&SnapshotEvent::ChunkUnreadable { index, problem }, replica);
    }
    Ok(())
}
