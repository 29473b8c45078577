//! The node driver: the one place that turns the core's `Ready`s into
//! sends, writes and syncs, in the order docs/STORAGE.md states. The daemon
//! (src/runtime/server.rs) and the simulator (tools/kit/sim/) both run it; only
//! the storage, the transport and the sync executor under it differ.
//!
//! For each Ready, in this order:
//! 1. send `messages` (a leader's AppendEntries may leave before its own
//!    write: dissertation §10.2.1), and put them on the wire;
//! 2. write `entries` and `hard_state`, and make them durable: either on the
//!    spot (`Storage::sync`), or, when the Ready promises nothing to anyone
//!    (entries only: a leader's own proposals), by handing the fsync to the
//!    sync executor and going on;
//! 3. send `messages_after_persist` (votes and acknowledgements: they
//!    promise durable state, §3.8), only once everything written before
//!    them is durable, deferred syncs included;
//! 4. tell the core what is durable (`persisted`, `hard_state_persisted`);
//!    a deferred sync reports its entries when it finishes
//!    (`collect_finished_syncs`).
//!
//! Snapshots (snapshots.rs) ride on the same calls: the chunks a leader
//! sends are read from storage as they leave, the chunks a follower
//! receives are written with the rest of the Ready (its install before the
//! answers go), and each `drive` writes a bounded slice of a snapshot the
//! node is taking, whose fdatasync is a job of its own on the executor.

use crate::core::{LogIndex, Message, Ready, Term};
use crate::replica::Replica;
use crate::storage::{Storage, StorageError};
use std::fmt;

mod snapshots;

pub use snapshots::SnapshotEvent;

/// Ready passes per `drive` call before it returns (a bound, not a tuning
/// knob: a pass normally settles in two; the caller drives again later).
pub const READY_PASSES_PER_DRIVE_MAX: usize = 16;

/// Where a node's messages to its peers go. Sending never blocks and may
/// lose the message (Raft tolerates it).
pub trait Transport {
    fn send(&mut self, message: Message);
    /// Puts what was sent so far on the wire now: the driver calls it
    /// before a sync it will wait for, so that followers start on their
    /// copies meanwhile.
    fn flush(&mut self);
}

/// Runs the fdatasyncs the driver defers, one at a time, in order.
pub trait SyncExecutor<J> {
    fn submit(&mut self, job: J) -> Result<(), DriveError>;
    /// A finished job, if one is.
    fn try_finished(&mut self) -> Option<Result<J, DriveError>>;
    /// Waits for the job in flight to finish.
    fn wait_finished(&mut self) -> Result<J, DriveError>;
}

/// Sees each Ready before the driver acts on it (log lines, traces,
/// checkers), and the driver's snapshot steps. The default sees nothing.
pub trait ReadyObserver {
    fn ready(&mut self, _ready: &Ready, _replica: &Replica) {}
    fn snapshot(&mut self, _event: &SnapshotEvent, _replica: &Replica) {}
}

/// An observer that sees nothing.
pub struct Unobserved;

impl ReadyObserver for Unobserved {}

#[derive(Debug)]
pub enum DriveError {
    Storage(StorageError),
    /// The sync executor is gone (its thread ended).
    SyncExecutor(String),
}

impl fmt::Display for DriveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriveError::Storage(error) => write!(f, "storage failed: {error}"),
            DriveError::SyncExecutor(problem) => write!(f, "{problem}"),
        }
    }
}

impl From<StorageError> for DriveError {
    fn from(error: StorageError) -> DriveError {
        DriveError::Storage(error)
    }
}

/// When the driver snapshots the state machine and how much log it keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotPolicy {
    /// Snapshot once more than this many entries are applied past the
    /// last snapshot (`--snapshot-entries`); `u64::MAX`: only on request.
    pub entries: u64,
    /// Entries kept below the snapshot index (`--snapshot-trailing`).
    pub trailing: u64,
    /// State-machine bytes written per `drive` call while a snapshot is
    /// being taken: the bound on how long one loop turn spends on it.
    pub bytes_per_drive: usize,
    /// The pace of a snapshot's writing, in bytes per millisecond since it
    /// began (0: unpaced). A snapshot competes with the log for the disk
    /// and the CPU; paced, its cost is spread thin instead of taken back to
    /// back (docs/BENCHMARKS.md, "Snapshots").
    pub bytes_per_ms: u64,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy {
            entries: 100_000,
            trailing: 10_000,
            bytes_per_drive: SNAPSHOT_BYTES_PER_DRIVE_MAX,
            bytes_per_ms: SNAPSHOT_BYTES_PER_MS_DEFAULT,
        }
    }
}

/// 8 MiB/s: a 1M-key store (81 MB) in about 10 s, unless the log grows
/// too fast for that (`replica::SNAPSHOT_CATCH_UP_FACTOR`). Measured
/// against 32 MiB/s and unpaced in docs/BENCHMARKS.md, "Snapshots".
pub const SNAPSHOT_BYTES_PER_MS_DEFAULT: u64 = 8 * 1024 * 1024 / 1000;

/// The default and ceiling of `SnapshotPolicy::bytes_per_drive`: 256 KiB,
/// about 0.3 ms of the state machine's encoding (docs/DESIGN.md), which
/// matters once a snapshot runs unpaced (the log outran it): 1 MiB slices
/// then made 5-7 ms turns on the 1M-key row with `--fsync never`.
pub const SNAPSHOT_BYTES_PER_DRIVE_MAX: usize = 1 << 18;

/// What the job running on the executor makes durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InFlight {
    /// Log records, up to this entry.
    Log(LogIndex, Term),
    /// The snapshot file being taken.
    Snapshot,
    /// The snapshot file as written so far: nothing waits on it.
    SnapshotFlush,
}

/// Snapshot bytes written between two flushes of its file (when the
/// executor is free): the disk takes it in pieces this size.
pub const SNAPSHOT_FLUSH_BYTES: u64 = 1024 * 1024;

/// What the driver keeps between calls: the deferred syncs it owes the
/// core, the snapshot policy, and a counter for STATUS.
#[derive(Debug)]
pub struct Driver<J> {
    sync_in_flight: Option<InFlight>,
    /// Records written while that job ran: the next job, and its last entry.
    sync_waiting: Option<(J, LogIndex, Term)>,
    /// The snapshot file's sync, waiting for the executor (log jobs go
    /// first: the leader's own durability waits on them).
    snapshot_sync_waiting: Option<J>,
    policy: SnapshotPolicy,
    /// Where the log is to be compacted to, once what is durable and
    /// applied here reaches it.
    compact_target: Option<LogIndex>,
    /// Compaction steps taken and segments removed since the last report.
    compacted: Option<(u64, usize)>,
    /// Snapshot bytes written since its file was last flushed.
    snapshot_unflushed: u64,
    /// Reused for the state machine's bytes of each `drive`.
    snapshot_buffer: Vec<u8>,
    /// The snapshot whose sync is in flight was abandoned: its commit is
    /// skipped.
    snapshot_superseded: bool,
    /// Reported to the observer at the end of the next `drive`.
    snapshot_events: Vec<SnapshotEvent>,
    /// A snapshot from the leader, restored as it arrives.
    receiving: Option<snapshots::Receiving>,
    /// Entries handed to storage.
    pub entries_appended: u64,
}

impl<J> Default for Driver<J> {
    fn default() -> Self {
        Driver::new(SnapshotPolicy::default())
    }
}

impl<J> Driver<J> {
    pub fn new(policy: SnapshotPolicy) -> Driver<J> {
        assert!(
            (1..=SNAPSHOT_BYTES_PER_DRIVE_MAX).contains(&policy.bytes_per_drive),
            "snapshot bytes per drive {}",
            policy.bytes_per_drive
        );
        Driver {
            sync_in_flight: None,
            sync_waiting: None,
            snapshot_sync_waiting: None,
            policy,
            compact_target: None,
            compacted: None,
            snapshot_unflushed: 0,
            snapshot_buffer: Vec::new(),
            snapshot_superseded: false,
            snapshot_events: Vec::new(),
            receiving: None,
            entries_appended: 0,
        }
    }
}

/// The three things a node's IO is made of, borrowed for one call.
pub struct NodeIo<'a, S, T, X> {
    pub storage: &'a mut S,
    pub transport: &'a mut T,
    pub syncer: &'a mut X,
}

impl<J> Driver<J> {
    /// Ready passes until the replica has nothing left to do, or the bound,
    /// then one snapshot step. Returns whether work is left over (the
    /// caller drives again soon).
    pub fn drive<S, T, X>(
        &mut self,
        replica: &mut Replica,
        io: NodeIo<'_, S, T, X>,
        observer: &mut impl ReadyObserver,
    ) -> Result<bool, DriveError>
    where
        S: Storage<Job = J>,
        T: Transport,
        X: SyncExecutor<J>,
    {
        let NodeIo {
            storage,
            transport,
            syncer,
        } = io;
        let mut passes = 0;
        while replica.has_ready() && passes < READY_PASSES_PER_DRIVE_MAX {
            let ready = replica.ready();
            observer.ready(&ready, replica);
            self.handle(ready, replica, storage, transport, syncer, observer)?;
            passes += 1;
        }
        let snapshot_work_left = self.snapshot_step(replica, storage, syncer, observer)?;
        Ok(replica.has_ready() || snapshot_work_left)
    }

    fn handle<S, T, X>(
        &mut self,
        ready: Ready,
        replica: &mut Replica,
        storage: &mut S,
        transport: &mut T,
        syncer: &mut X,
        observer: &mut impl ReadyObserver,
    ) -> Result<(), DriveError>
    where
        S: Storage<Job = J>,
        T: Transport,
        X: SyncExecutor<J>,
    {
        let mut ready = ready;
        for message in std::mem::take(&mut ready.messages) {
            transport.send(message);
        }
        let chunks = std::mem::take(&mut ready.snapshot_chunks_to_send);
        snapshots::send_snapshot_chunks(chunks, storage, transport, replica, observer)?;
        let mut after_persist = std::mem::take(&mut ready.messages_after_persist);
        if ready.hard_state.is_none() && planted_ack_before_sync(replica) {
            // The planted bug: acknowledgements leave with the messages,
            // before the write they acknowledge is durable.
            for message in std::mem::take(&mut after_persist) {
                transport.send(message);
            }
        }
        let deferrable = ready.hard_state.is_none() && after_persist.is_empty();
        let mut deferred = false;
        if ready.hard_state.is_some() || !ready.entries.is_empty() {
            transport.flush();
            if deferrable {
                deferred = self.write_deferring_sync(&ready.entries, storage, syncer)?;
            } else {
                self.settle_syncs(replica, storage, syncer)?;
                self.write_and_sync(&ready, storage)?;
            }
        }
        let received = std::mem::take(&mut ready.snapshot_chunks_received);
        self.store_snapshot_chunks(received, replica, storage, syncer)?;
        if !after_persist.is_empty() {
            // What they promise may rest on records an earlier deferred
            // sync still owes.
            self.settle_syncs(replica, storage, syncer)?;
        }
        for message in after_persist {
            transport.send(message);
        }
        if let (Some(last), false) = (ready.entries.last(), deferred) {
            replica.persisted(last.index, last.term);
        }
        if let Some(hard_state) = ready.hard_state {
            replica.hard_state_persisted(hard_state);
        }
        Ok(())
    }

    fn write_and_sync<S: Storage<Job = J>>(
        &mut self,
        ready: &Ready,
        storage: &mut S,
    ) -> Result<(), DriveError> {
        if !ready.entries.is_empty() {
            storage.append(&ready.entries)?;
        }
        if let Some(hard_state) = ready.hard_state {
            storage.set_hard_state(hard_state)?;
        }
        storage.sync()?;
        self.entries_appended += ready.entries.len() as u64;
        Ok(())
    }

    /// Writes the records and leaves their fdatasync to the executor. True
    /// when `persisted` will come from `sync_finished`, false when they are
    /// durable already.
    fn write_deferring_sync<S, X>(
        &mut self,
        entries: &[crate::core::Entry],
        storage: &mut S,
        syncer: &mut X,
    ) -> Result<bool, DriveError>
    where
        S: Storage<Job = J>,
        X: SyncExecutor<J>,
    {
        let Some(last) = entries.last() else {
            return Ok(false);
        };
        storage.append(entries)?;
        self.entries_appended += entries.len() as u64;
        let Some(job) = storage.write_deferring_sync()? else {
            return Ok(false);
        };
        if self.sync_in_flight.is_none() {
            syncer.submit(job)?;
            self.sync_in_flight = Some(InFlight::Log(last.index, last.term));
            return Ok(true);
        }
        // The newer job covers every record the waiting one does (those in
        // an older segment were synced when it was sealed): it replaces it.
        let job = match self.sync_waiting.take() {
            Some((waiting, _, _)) => S::merge_jobs(waiting, job),
            None => job,
        };
        self.sync_waiting = Some((job, last.index, last.term));
        Ok(true)
    }

    /// Takes the results of finished syncs without waiting.
    pub fn collect_finished_syncs<S, X>(
        &mut self,
        replica: &mut Replica,
        storage: &mut S,
        syncer: &mut X,
    ) -> Result<(), DriveError>
    where
        S: Storage<Job = J>,
        X: SyncExecutor<J>,
    {
        while let Some(result) = syncer.try_finished() {
            self.sync_finished(result?, replica, storage, syncer)?;
        }
        Ok(())
    }

    /// Waits until every deferred sync of the log is done: what follows
    /// promises durable state, or syncs on the spot, and must come after
    /// them. A snapshot's sync alone is not waited for (it covers no log
    /// record), unless a log job queues behind it.
    pub fn settle_syncs<S, X>(
        &mut self,
        replica: &mut Replica,
        storage: &mut S,
        syncer: &mut X,
    ) -> Result<(), DriveError>
    where
        S: Storage<Job = J>,
        X: SyncExecutor<J>,
    {
        self.wait_while(Self::log_sync_owed, replica, storage, syncer)
    }

    fn log_sync_owed(&self) -> bool {
        matches!(self.sync_in_flight, Some(InFlight::Log(..))) || self.sync_waiting.is_some()
    }

    /// Waits for every job, the snapshot's too (a clean stop).
    pub fn settle_all_syncs<S, X>(
        &mut self,
        replica: &mut Replica,
        storage: &mut S,
        syncer: &mut X,
    ) -> Result<(), DriveError>
    where
        S: Storage<Job = J>,
        X: SyncExecutor<J>,
    {
        self.wait_while(Self::syncing, replica, storage, syncer)
    }

    /// Waits for the executor's jobs, in order, while `owed` says so.
    fn wait_while<S, X>(
        &mut self,
        owed: fn(&Self) -> bool,
        replica: &mut Replica,
        storage: &mut S,
        syncer: &mut X,
    ) -> Result<(), DriveError>
    where
        S: Storage<Job = J>,
        X: SyncExecutor<J>,
    {
        while owed(self) {
            let job = syncer.wait_finished()?;
            self.sync_finished(job, replica, storage, syncer)?;
        }
        Ok(())
    }

    fn sync_finished<S, X>(
        &mut self,
        job: J,
        replica: &mut Replica,
        storage: &mut S,
        syncer: &mut X,
    ) -> Result<(), DriveError>
    where
        S: Storage<Job = J>,
        X: SyncExecutor<J>,
    {
        match self.sync_in_flight.take() {
            Some(InFlight::Log(index, term)) => {
                storage.deferred_sync_done(&job);
                replica.persisted(index, term);
            }
            Some(InFlight::Snapshot) => self.commit_snapshot(Some(job), replica, storage)?,
            Some(InFlight::SnapshotFlush) => {}
            None => panic!("a sync finished that was never submitted"),
        }
        self.submit_next(syncer)
    }

    /// Hands the executor its next job, the log's before the snapshot's.
    fn submit_next<X: SyncExecutor<J>>(&mut self, syncer: &mut X) -> Result<(), DriveError> {
        if self.sync_in_flight.is_some() {
            return Ok(());
        }
        if let Some((next, index, term)) = self.sync_waiting.take() {
            syncer.submit(next)?;
            self.sync_in_flight = Some(InFlight::Log(index, term));
        } else if let Some(next) = self.snapshot_sync_waiting.take() {
            syncer.submit(next)?;
            self.sync_in_flight = Some(InFlight::Snapshot);
        }
        Ok(())
    }

    /// Whether a deferred sync is still owed (the core waits for it).
    pub fn syncing(&self) -> bool {
        self.sync_in_flight.is_some()
    }
}

/// The planted bug `ack-before-sync`: a follower's acknowledgements leave
/// before the sync that covers them has finished.
#[cfg(feature = "planted-bugs")]
fn planted_ack_before_sync(replica: &Replica) -> bool {
    replica.raft().planted_bug() == Some(crate::core::PlantedBug::AckBeforeSync)
}

#[cfg(not(feature = "planted-bugs"))]
fn planted_ack_before_sync(_replica: &Replica) -> bool {
    false
}

/// The Ready contract, checked on the order of what the driver does: a
/// log of every write, sync, send and executor call, from fake IO.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{
        ClusterId, ClusterTag, Config, Configuration, Entry, HardState, InstallSnapshot, Limits,
        MessageBody, NodeId, Raft, RequestVote, RequestVoteResponse, SnapshotMeta,
        StartConfiguration,
    };
    use crate::kv::StateMachine;
    use crate::replica::{ClientToken, Member, Replica, SessionTag};
    use crate::reply::Reply;
    use crate::storage::SnapshotFile;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;

    type Log = Rc<RefCell<Vec<String>>>;

    struct FakeStorage(Log, crate::storage::MemoryStorage);

    impl Storage for FakeStorage {
        type Job = u64;

        fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
            let (first, last) = (entries[0].index, entries[entries.len() - 1].index);
            self.0.borrow_mut().push(format!("append {first}..{last}"));
            Ok(())
        }

        fn set_hard_state(&mut self, hard_state: HardState) -> Result<(), StorageError> {
            let term = hard_state.current_term;
            self.0.borrow_mut().push(format!("hard state term {term}"));
            Ok(())
        }

        fn sync(&mut self) -> Result<(), StorageError> {
            self.0.borrow_mut().push("sync".to_string());
            Ok(())
        }

        fn write_deferring_sync(&mut self) -> Result<Option<u64>, StorageError> {
            let job = self.0.borrow().len() as u64;
            self.0.borrow_mut().push(format!("defer #{job}"));
            Ok(Some(job))
        }

        fn merge_jobs(_older: u64, newer: u64) -> u64 {
            newer
        }

        fn snapshot_begin(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
            let (index, cluster) = (meta.index, meta.cluster_id);
            let cluster = cluster.map_or("none".to_string(), |id| id.to_string());
            self.0
                .borrow_mut()
                .push(format!("snapshot {index} begin cluster {cluster}"));
            self.1.snapshot_begin(meta)
        }

        fn snapshot_append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
            let size = bytes.len();
            self.0.borrow_mut().push(format!("snapshot append {size}"));
            self.1.snapshot_append(bytes)
        }

        fn snapshot_finish(&mut self) -> Result<Option<u64>, StorageError> {
            self.1.snapshot_finish()?;
            let job = self.0.borrow().len() as u64;
            self.0.borrow_mut().push(format!("snapshot finish #{job}"));
            Ok(Some(job))
        }

        fn snapshot_commit(&mut self, synced: Option<u64>) -> Result<u64, StorageError> {
            let job = synced.expect("the snapshot's sync ran");
            self.0.borrow_mut().push(format!("snapshot commit #{job}"));
            self.1.snapshot_commit(Some(()))
        }

        fn snapshot_abandon(&mut self) -> Result<(), StorageError> {
            self.1.snapshot_abandon()
        }

        fn receive_chunk(&mut self, chunk: &InstallSnapshot) -> Result<(), StorageError> {
            let offset = chunk.offset;
            self.0
                .borrow_mut()
                .push(format!("receive chunk at {offset}"));
            self.1.receive_chunk(chunk)
        }

        fn receive_flush(&mut self) -> Option<u64> {
            let job = self.0.borrow().len() as u64;
            self.0.borrow_mut().push(format!("receive flush #{job}"));
            Some(job)
        }

        fn receive_finish(&mut self) -> Result<SnapshotFile, StorageError> {
            self.0.borrow_mut().push("receive finish".to_string());
            self.1.receive_finish()
        }

        fn receive_abandon(&mut self) -> Result<(), StorageError> {
            self.0.borrow_mut().push("receive abandon".to_string());
            self.1.receive_abandon()
        }

        fn snapshot_chunk(
            &mut self,
            index: LogIndex,
            offset: u64,
            size: usize,
        ) -> Result<Vec<u8>, StorageError> {
            self.1.snapshot_chunk(index, offset, size)
        }
    }

    struct FakeTransport(Log);

    impl Transport for FakeTransport {
        fn send(&mut self, message: Message) {
            let what = match &message.body {
                MessageBody::RequestVote(_) => "vote request",
                MessageBody::RequestVoteResponse(_) => "vote answer",
                MessageBody::AppendEntries(_) => "append",
                MessageBody::AppendEntriesResponse(_) => "append answer",
                MessageBody::InstallSnapshot(_) => "snapshot chunk",
                MessageBody::InstallSnapshotResponse(_) => "snapshot answer",
                MessageBody::TimeoutNow => "timeout now",
            };
            let to = message.to.0;
            self.0.borrow_mut().push(format!("send {what} to n{to}"));
        }

        fn flush(&mut self) {
            self.0.borrow_mut().push("flush".to_string());
        }
    }

    /// Jobs finish only when the test says so (`finished`), or when the
    /// driver waits for them.
    struct FakeSyncer {
        log: Log,
        running: VecDeque<u64>,
        finished: bool,
    }

    impl SyncExecutor<u64> for FakeSyncer {
        fn submit(&mut self, job: u64) -> Result<(), DriveError> {
            self.log.borrow_mut().push(format!("submit #{job}"));
            self.running.push_back(job);
            Ok(())
        }

        fn try_finished(&mut self) -> Option<Result<u64, DriveError>> {
            match self.finished {
                true => self.running.pop_front().map(Ok),
                false => None,
            }
        }

        fn wait_finished(&mut self) -> Result<u64, DriveError> {
            let job = self.running.pop_front().expect("a job to wait for");
            self.log.borrow_mut().push(format!("wait #{job}"));
            Ok(job)
        }
    }

    struct Node {
        replica: Replica,
        driver: Driver<u64>,
        log: Log,
        storage: FakeStorage,
        transport: FakeTransport,
        syncer: FakeSyncer,
    }

    impl Node {
        fn new(size: u32) -> Node {
            let config = Config {
                id: NodeId(0),
                start: StartConfiguration::Bootstrap(Configuration::numbered(size as usize)),
                election_timeout_ms_min: 150,
                election_timeout_ms_max: 300,
                heartbeat_interval_ms: 50,
                seed: 1,
                bootstrap_cluster_id: ClusterId(0x1234),
                pre_vote: false,
                check_quorum: false,
                limits: Limits::default(),
            };
            let raft = Raft::new(config, HardState::default(), Vec::new(), 0).expect("valid");
            let members = (0..size)
                .map(|node| Member {
                    name: format!("n{node}"),
                    address: format!("127.0.0.1:{}", 9000 + node),
                })
                .collect();
            let log = Log::default();
            Node {
                replica: Replica::new(raft, members),
                driver: Driver::default(),
                storage: FakeStorage(Rc::clone(&log), Default::default()),
                transport: FakeTransport(Rc::clone(&log)),
                syncer: FakeSyncer {
                    log: Rc::clone(&log),
                    running: VecDeque::new(),
                    finished: false,
                },
                log,
            }
        }

        /// Drives, and returns what the driver did.
        fn drive(&mut self) -> Vec<String> {
            let io = NodeIo {
                storage: &mut self.storage,
                transport: &mut self.transport,
                syncer: &mut self.syncer,
            };
            let left = self.driver.drive(&mut self.replica, io, &mut Unobserved);
            let left = left.expect("fake IO never fails");
            assert!(
                !left || self.replica.snapshot_writing(),
                "settles in one call, but for a snapshot's next slice"
            );
            self.log.borrow_mut().drain(..).collect()
        }

        fn collect(&mut self) -> Vec<String> {
            let (storage, syncer) = (&mut self.storage, &mut self.syncer);
            let result = self
                .driver
                .collect_finished_syncs(&mut self.replica, storage, syncer);
            result.expect("fake IO never fails");
            self.log.borrow_mut().drain(..).collect()
        }

        fn commit_index(&self) -> LogIndex {
            self.replica.raft().status().commit_index
        }
    }

    fn position(done: &[String], what: &str) -> usize {
        let found = done.iter().position(|line| line.starts_with(what));
        found.unwrap_or_else(|| panic!("no {what:?} in {done:?}"))
    }

    fn message(from: u32, term: u64, body: MessageBody) -> Message {
        Message {
            from: NodeId(from),
            to: NodeId(0),
            term: Term(term),
            cluster: ClusterTag::default(),
            body,
        }
    }

    /// Node 0 of three, elected in term 1 with node 1's vote.
    fn leader_of_three() -> Node {
        let mut node = Node::new(3);
        node.replica.advance_time(1000);
        node.drive();
        let granted = RequestVoteResponse {
            vote_granted: true,
            pre_vote: false,
        };
        node.replica
            .step(message(1, 1, MessageBody::RequestVoteResponse(granted)));
        node
    }

    #[test]
    fn vote_requests_leave_only_after_the_new_term_is_durable() {
        let mut node = Node::new(3);
        node.replica.advance_time(1000);
        let done = node.drive();
        let synced = position(&done, "sync");
        assert!(position(&done, "hard state term 1") < synced, "{done:?}");
        assert!(synced < position(&done, "send vote request"), "{done:?}");
        assert_eq!(
            done.iter().filter(|line| line.starts_with("send")).count(),
            2
        );
    }

    #[test]
    fn a_leaders_own_entries_sync_off_the_loop_and_commit_once_it_finishes() {
        let mut node = Node::new(1);
        node.replica.advance_time(1000);
        node.drive();
        let committed = node.commit_index();
        let token = ClientToken {
            connection: 1,
            request_id: 1,
        };
        let index = node
            .replica
            .handle_request(token, SessionTag::default(), "SET x 1")
            .expect("proposed");
        let done = node.drive();
        assert!(
            position(&done, "defer #") < position(&done, "submit #"),
            "{done:?}"
        );
        assert!(
            !done.contains(&"sync".to_string()),
            "not on the loop: {done:?}"
        );
        assert!(node.driver.syncing());
        assert_eq!(node.commit_index(), committed, "not durable anywhere yet");
        assert!(node.collect().is_empty(), "still running");
        node.syncer.finished = true;
        node.collect();
        assert!(!node.driver.syncing());
        assert_eq!(node.commit_index(), index, "durable on the one node");
    }

    #[test]
    fn a_leaders_appends_leave_before_its_own_write() {
        let mut node = leader_of_three();
        let done = node.drive();
        assert!(
            position(&done, "send append") < position(&done, "append 1..1"),
            "{done:?}"
        );
        assert!(
            position(&done, "flush") < position(&done, "defer #"),
            "{done:?}"
        );
    }

    /// A vote promises the term is durable; with the leader's own entries
    /// still syncing, the driver waits for that sync, then writes and syncs
    /// the new term, and only then lets the vote leave.
    #[test]
    fn a_vote_waits_for_the_deferred_sync_and_its_own() {
        let mut node = leader_of_three();
        node.drive();
        assert!(node.driver.syncing());
        let request = RequestVote {
            last_log_index: LogIndex(10),
            last_log_term: Term(4),
            pre_vote: false,
            transfer: false,
        };
        node.replica
            .step(message(2, 5, MessageBody::RequestVote(request)));
        let done = node.drive();
        let waited = position(&done, "wait #");
        let written = position(&done, "hard state term 5");
        let synced = written + position(&done[written..], "sync");
        assert!(
            waited < written && synced < position(&done, "send vote answer"),
            "{done:?}"
        );
        assert!(!node.driver.syncing());
    }

    fn token(request_id: u64) -> ClientToken {
        ClientToken {
            connection: 1,
            request_id,
        }
    }

    /// A lone leader with a tiny snapshot policy, `count` SETs applied.
    fn leader_with_writes(policy: SnapshotPolicy, count: u64) -> Node {
        let mut node = Node::new(1);
        node.driver = Driver::new(policy);
        node.syncer.finished = true;
        node.replica.advance_time(1000);
        node.drive();
        for request in 1..=count {
            let line = format!("SET key{request} value{request}");
            node.replica
                .handle_request(token(request), SessionTag::default(), &line);
            node.drive();
            node.collect();
            node.drive();
        }
        node
    }

    fn lines_like<'a>(done: &'a [String], what: &str) -> Vec<&'a String> {
        done.iter().filter(|line| line.starts_with(what)).collect()
    }

    /// A snapshot is written a slice per drive, its fdatasync is a job of
    /// its own, and only once that job is done does the core learn of it,
    /// SNAPSHOT get its answer and the log get compacted.
    #[test]
    fn a_snapshot_is_written_in_slices_synced_apart_then_committed_and_compacted() {
        let policy = SnapshotPolicy {
            entries: u64::MAX,
            trailing: 2,
            bytes_per_drive: 64,
            bytes_per_ms: 0,
        };
        let mut node = leader_with_writes(policy, 20);
        node.syncer.finished = false;
        node.replica.take_replies();
        node.replica
            .handle_request(token(99), SessionTag::default(), "SNAPSHOT");
        let mut done = Vec::new();
        while !done
            .iter()
            .any(|line: &String| line.starts_with("snapshot finish"))
        {
            let before = done.len();
            done.extend(node.drive());
            assert!(done.len() > before, "no progress: {done:?}");
        }
        let slices = lines_like(&done, "snapshot append");
        assert!(slices.len() > 5, "written in slices: {done:?}");
        assert!(
            slices.iter().all(|line| line["snapshot append ".len()..]
                .parse::<usize>()
                .is_ok_and(|size| size <= 64 + crate::kv::SNAPSHOT_RECORD_SIZE_MAX)),
            "{slices:?}"
        );
        assert!(position(&done, "snapshot finish #") < position(&done, "submit #"));
        assert!(node.replica.raft().snapshot().is_none(), "not durable yet");
        assert!(
            node.replica.take_replies().is_empty(),
            "answered once durable"
        );
        node.syncer.finished = true;
        let collected = node.collect();
        assert!(position(&collected, "snapshot commit #") < collected.len());
        let applied = node.replica.raft().log().last_applied();
        let snapshot = node.replica.raft().snapshot().expect("durable").clone();
        assert_eq!(snapshot.meta.index, applied);
        let replies = node.replica.take_replies();
        let expected = Reply::SnapshotTaken {
            index: applied,
            bytes: snapshot.size_bytes,
        };
        assert_eq!(replies, vec![(token(99), expected)]);
        node.drive();
        assert_eq!(
            node.replica.raft().log().first_index(),
            LogIndex(applied.0 - 2 + 1),
            "compacted to the snapshot less the trailing entries"
        );
    }

    /// The log's deferred sync queues behind a snapshot's, is never merged
    /// into it, and goes first once both wait.
    #[test]
    fn a_snapshot_job_is_never_merged_with_the_logs() {
        let policy = SnapshotPolicy {
            entries: u64::MAX,
            trailing: 0,
            bytes_per_drive: SNAPSHOT_BYTES_PER_DRIVE_MAX,
            bytes_per_ms: 0,
        };
        let mut node = leader_with_writes(policy, 3);
        node.syncer.finished = false;
        node.replica
            .handle_request(token(50), SessionTag::default(), "SNAPSHOT");
        let done = node.drive();
        let snapshot_job = position(&done, "snapshot finish #");
        assert!(snapshot_job < position(&done, "submit #"), "{done:?}");
        node.replica
            .handle_request(token(51), SessionTag::default(), "SET b 2");
        let done = node.drive();
        assert!(position(&done, "defer #") < done.len());
        assert!(lines_like(&done, "submit #").is_empty(), "queued: {done:?}");
        node.syncer.finished = true;
        let done = node.collect();
        assert!(
            position(&done, "snapshot commit #") < position(&done, "submit #"),
            "{done:?}"
        );
        assert_eq!(lines_like(&done, "snapshot commit").len(), 1);
        assert!(!node.driver.syncing(), "both jobs done");
    }

    /// What a leader would send: the file of a machine with a few keys.
    fn snapshot_file(index: u64) -> (SnapshotMeta, Vec<u8>, u64) {
        let mut machine = StateMachine::default();
        for key in 1..=index {
            let mut record = Vec::new();
            let command = crate::kv::Command::Set {
                key: format!("k{key}").into_bytes(),
                value: b"v".to_vec(),
            };
            crate::kv::LogRecord::Command {
                session: None,
                command,
            }
            .encode(&mut record);
            machine.apply(key, 1, &record);
        }
        let mut cursor = machine.begin_snapshot();
        let mut body = Vec::new();
        while !cursor.next_chunk(&mut body, 1 << 20) {}
        let meta = SnapshotMeta {
            index: LogIndex(index),
            term: Term(1),
            cluster_id: Some(ClusterId(0x1234)),
            voters: vec![NodeId(0), NodeId(1), NodeId(2)],
        };
        let file = crate::storage::snapshot::encode_file(&meta, &body);
        (meta, file, machine.digest())
    }

    fn send_chunks(node: &mut Node, meta: &SnapshotMeta, file: &[u8], size: usize) -> Vec<String> {
        send_chunks_of(node, meta, file, 0..file.len(), size)
    }

    /// The chunks of `file` (of `size` bytes) that cover `range`.
    fn send_chunks_of(
        node: &mut Node,
        meta: &SnapshotMeta,
        file: &[u8],
        range: std::ops::Range<usize>,
        size: usize,
    ) -> Vec<String> {
        let mut done = Vec::new();
        let from = range.start;
        for (number, piece) in file[range].chunks(size).enumerate() {
            let chunk = InstallSnapshot {
                meta: meta.clone(),
                offset: (from + number * size) as u64,
                total_size: file.len() as u64,
                data: piece.to_vec().into(),
            };
            node.replica
                .step(message(1, 1, MessageBody::InstallSnapshot(chunk)));
            done.extend(node.drive());
        }
        done
    }

    /// A follower writes each chunk before its answer leaves, checks and
    /// installs the file the last one completes, and restores the state
    /// machine from it.
    #[test]
    fn a_follower_stores_chunks_before_answering_and_installs_the_last() {
        let mut node = Node::new(3);
        let (meta, file, digest) = snapshot_file(12);
        let done = send_chunks(&mut node, &meta, &file, 40);
        let first_answer = position(&done, "send snapshot answer");
        assert!(
            position(&done, "receive chunk at 0") < first_answer,
            "{done:?}"
        );
        let finished = position(&done, "receive finish");
        assert!(
            lines_like(&done[finished..], "send snapshot answer").len() == 1,
            "{done:?}"
        );
        assert_eq!(node.replica.machine().digest(), digest);
        assert_eq!(node.replica.raft().log().last_applied(), LogIndex(12));
        assert_eq!(
            node.replica.raft().snapshot().map(|s| s.meta.index),
            Some(LogIndex(12))
        );
    }

    /// A large snapshot received is synced every SNAPSHOT_FLUSH_BYTES on
    /// the executor while it is free, so the install's own sync on the loop
    /// has little left; never while the executor is busy.
    #[test]
    fn a_received_snapshot_is_flushed_off_the_loop_as_it_arrives() {
        let mut node = Node::new(3);
        let (meta, file, digest) = snapshot_file(200_000);
        assert!(
            file.len() as u64 > 2 * SNAPSHOT_FLUSH_BYTES,
            "{}",
            file.len()
        );
        let size = 64 * 1024;
        let per_flush = usize::try_from(SNAPSHOT_FLUSH_BYTES).unwrap() / size;
        let megabyte = per_flush * size;
        let done = send_chunks_of(&mut node, &meta, &file, 0..megabyte, size);
        let flushes = lines_like(&done, "receive flush");
        assert_eq!(flushes.len(), 1, "{done:?}");
        let job = flushes[0].trim_start_matches("receive flush ");
        assert!(done.contains(&format!("submit {job}")), "{done:?}");
        // The flush still runs: the next megabyte is not flushed meanwhile.
        let busy = send_chunks_of(&mut node, &meta, &file, megabyte..2 * megabyte, size);
        assert!(lines_like(&busy, "receive flush").is_empty(), "{busy:?}");
        node.syncer.finished = true;
        node.collect();
        let done = send_chunks_of(&mut node, &meta, &file, 2 * megabyte..file.len(), size);
        assert!(!lines_like(&done, "receive flush").is_empty(), "{done:?}");
        assert!(done.iter().any(|line| line == "receive finish"), "{done:?}");
        assert_eq!(node.replica.machine().digest(), digest);
    }

    /// A file that fails its check is discarded and the state machine is
    /// untouched; the leader is told to start over.
    #[test]
    fn a_damaged_snapshot_is_discarded_and_changes_nothing() {
        let mut node = Node::new(3);
        let (meta, mut file, _) = snapshot_file(12);
        let middle = file.len() / 2;
        file[middle] ^= 1;
        send_chunks(&mut node, &meta, &file, 40);
        assert_eq!(
            node.replica.machine().digest(),
            StateMachine::default().digest()
        );
        assert_eq!(node.replica.raft().log().last_applied(), LogIndex(0));
        assert!(node.replica.raft().snapshot().is_none());
        assert!(!node.replica.raft().is_installing_snapshot());
    }

    /// A first leader's own copy of the Bootstrap may be durable after the
    /// followers' acks committed and applied it: it is not bound yet, but
    /// a snapshot of it still names the cluster.
    /// Both followers acknowledge entry 1 (the Bootstrap) of term 1: it
    /// commits while the leader's own copy may not be durable yet.
    fn both_followers_ack_the_bootstrap(node: &mut Node) {
        let ack = crate::core::AppendEntriesResponse {
            success: true,
            index: LogIndex(1),
            conflict_term: None,
            conflict_index: LogIndex(0),
            round: 0,
        };
        for follower in [1, 2] {
            let body = MessageBody::AppendEntriesResponse(ack.clone());
            let mut answer = message(follower, 1, body);
            answer.cluster.log_id = Some(ClusterId(0x1234));
            node.replica.step(answer);
        }
    }

    #[test]
    fn a_snapshot_before_the_leader_is_bound_names_its_cluster() {
        let mut node = leader_of_three();
        node.drive();
        assert!(node.driver.syncing(), "its own Bootstrap not durable yet");
        both_followers_ack_the_bootstrap(&mut node);
        node.drive();
        assert_eq!(node.replica.raft().log().last_applied(), LogIndex(1));
        assert_eq!(node.replica.raft().cluster_id(), None, "not bound yet");
        node.replica
            .handle_request(token(7), SessionTag::default(), "SNAPSHOT");
        let done = node.drive();
        let begun = lines_like(&done, "snapshot 1 begin");
        assert_eq!(begun.len(), 1, "{done:?}");
        assert!(begun[0].ends_with("cluster 0000000000001234"), "{begun:?}");
    }

    /// The same with `SnapshotWithoutCluster` planted: the snapshot names
    /// no cluster, and a follower that installed it could never bind.
    #[cfg(feature = "planted-bugs")]
    #[test]
    fn planted_snapshot_without_cluster_names_none_before_the_leader_is_bound() {
        let mut node = leader_of_three();
        node.replica
            .plant_bug(Some(crate::core::PlantedBug::SnapshotWithoutCluster));
        node.drive();
        both_followers_ack_the_bootstrap(&mut node);
        node.drive();
        assert_eq!(node.replica.raft().cluster_id(), None, "not bound yet");
        node.replica
            .handle_request(token(7), SessionTag::default(), "SNAPSHOT");
        let done = node.drive();
        let begun = lines_like(&done, "snapshot 1 begin");
        assert_eq!(begun.len(), 1, "{done:?}");
        assert!(begun[0].ends_with("cluster none"), "{begun:?}");
    }

    /// A file whose CRC holds but whose body does not restore (another
    /// body version, say) is refused before it takes its final name: it
    /// never becomes this node's newest snapshot.
    #[test]
    fn a_snapshot_whose_body_does_not_restore_is_never_installed() {
        let mut node = Node::new(3);
        let (meta, _, _) = snapshot_file(12);
        let file = crate::storage::snapshot::encode_file(&meta, b"not a state machine");
        let done = send_chunks(&mut node, &meta, &file, 40);
        assert!(position(&done, "receive abandon") < done.len(), "{done:?}");
        assert!(lines_like(&done, "receive finish").is_empty(), "{done:?}");
        let kept = node.storage.1.snapshot_chunk(LogIndex(12), 0, 10);
        assert!(kept.is_err(), "no file kept");
        assert_eq!(node.replica.raft().log().last_applied(), LogIndex(0));
        assert!(node.replica.raft().snapshot().is_none());
    }

    fn appended_bytes(done: &[String]) -> usize {
        lines_like(done, "snapshot append ")
            .iter()
            .map(|line| {
                line["snapshot append ".len()..]
                    .parse::<usize>()
                    .unwrap_or(0)
            })
            .sum()
    }

    /// A paced snapshot writes no more than its pace allows since it
    /// began, and nothing more until time moves.
    #[test]
    fn a_snapshot_is_written_at_its_pace() {
        let policy = SnapshotPolicy {
            entries: u64::MAX,
            trailing: 0,
            bytes_per_drive: SNAPSHOT_BYTES_PER_DRIVE_MAX,
            bytes_per_ms: 100,
        };
        let mut node = leader_with_writes(policy, 40);
        node.replica
            .handle_request(token(90), SessionTag::default(), "SNAPSHOT");
        let slack = crate::kv::SNAPSHOT_RECORD_SIZE_MAX;
        let mut written = 0;
        for _ in 0..5 {
            written += appended_bytes(&node.drive());
        }
        assert!(written > 0 && written <= 100 + slack, "{written}");
        let again = node.drive();
        assert_eq!(appended_bytes(&again), 0, "no time passed: {again:?}");
        node.replica.advance_time(1000 + 10);
        let later = node.drive();
        let total = written + appended_bytes(&later);
        assert!(total > written && total <= 1100 + slack, "{later:?}");
    }

    fn write(node: &mut Node, request: u64) {
        let line = format!("SET key{request} value{request}");
        node.replica
            .handle_request(token(request), SessionTag::default(), &line);
        node.drive();
        node.collect();
        node.drive();
    }

    /// A paced snapshot of a store the log outruns goes faster: once the
    /// log has grown by the catch-up factor times the threshold since it
    /// began, it is done, however slow its pace by time.
    #[test]
    fn a_paced_snapshot_catches_up_with_a_fast_log() {
        let policy = SnapshotPolicy {
            entries: 2,
            trailing: 0,
            bytes_per_drive: SNAPSHOT_BYTES_PER_DRIVE_MAX,
            bytes_per_ms: 1,
        };
        let mut node = leader_with_writes(policy, 20);
        node.replica.advance_time(1_000_000);
        node.drive();
        node.collect();
        let first = node
            .replica
            .raft()
            .snapshot()
            .expect("the first, by time")
            .clone();
        // No time passes from here: only the log's growth can pace it.
        let window = 2 * crate::replica::SNAPSHOT_CATCH_UP_FACTOR;
        for request in 100..100 + window + 8 {
            write(&mut node, request);
        }
        let second = node.replica.raft().snapshot().expect("a snapshot").clone();
        assert!(
            second.meta.index > first.meta.index,
            "done by the log's pace: {first:?} then {second:?}"
        );
    }
}
