//! The event loop: one thread, one `Poll`. Each turn drains the sockets,
//! makes one pass through the replica, writes and syncs once, then flushes
//! every connection once (which is also group commit). A leader's syncs of
//! its own records run on the disk-sync thread (disk_sync.rs) while the loop
//! goes on.

use super::clock::Clock;
use super::connection::Connection;
use super::disk_sync::DiskSyncer;
use super::logging::Throttle;
use super::timer_wheel::{TimerId, TimerWheel};
use crate::constants::{CLIENT_CONNECTIONS_MAX, CLIENT_REQUESTS_IN_FLIGHT_MAX, POLL_EVENTS_MAX};
use crate::core::{
    Event, LogIndex, Message, MessageBody, NodeId, Ready, Role, StepDownReason, Term,
};
use crate::log;
use crate::replica::{ClientToken, NodeCounters, Replica};
use crate::storage::{Storage, StorageError, SyncJob};
use mio::net::TcpListener;
use mio::{Events, Poll, Token};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

pub(super) const LISTENER: Token = Token(0);

/// Longest the loop sleeps with nothing scheduled.
const POLL_TIMEOUT_MS_MAX: u64 = 1000;

/// Ready passes per loop turn before the loop polls again (a bound, not a
/// tuning knob: a pass normally settles in two).
const READY_PASSES_PER_TURN_MAX: usize = 16;

#[derive(Clone, Copy, Debug)]
pub(super) enum Timer {
    /// The core's next deadline (election timeout or heartbeat).
    Core,
    /// Reconnect to a peer, or give up on a connect that hangs.
    Peer(NodeId),
    /// A client proposal waited too long for commit.
    ClientRequest { index: LogIndex, token: ClientToken },
    /// Accept failed (out of descriptors): try again.
    Accept,
}

/// Our outgoing connection to one peer.
pub(super) struct PeerLink {
    pub name: String,
    pub address: SocketAddr,
    pub token: Option<Token>,
    pub connected: bool,
    pub backoff_ms: u64,
    pub timer: Option<TimerId>,
}

#[derive(Debug)]
pub enum RuntimeError {
    Io(String),
    Storage(StorageError),
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuntimeError::Io(message) => write!(f, "{message}"),
            RuntimeError::Storage(error) => write!(f, "storage failed: {error}"),
        }
    }
}

#[derive(Default)]
struct LogThrottles {
    appended: Throttle,
    committed: Throttle,
    applied: Throttle,
    last_appended_term: u64,
}

pub struct Server<S: Storage> {
    pub(super) poll: Poll,
    pub(super) listener: TcpListener,
    pub(super) connections: HashMap<Token, Connection>,
    pub(super) token_next: usize,
    pub(super) client_count: usize,
    /// By NodeId; None for this node.
    pub(super) links: Vec<Option<PeerLink>>,
    pub(super) replica: Replica,
    pub(super) storage: S,
    pub(super) timers: TimerWheel<Timer>,
    core_timer: Option<(TimerId, u64)>,
    pub(super) clock: Clock,
    pub(super) cluster_hash: u64,
    pub(super) names: Vec<String>,
    /// Connections with bytes left to read or frames left to decode.
    pub(super) read_backlog: Vec<Token>,
    /// Connections with output queued this turn.
    pub(super) dirty: Vec<Token>,
    ready_left_over: bool,
    throttles: LogThrottles,
    pub(super) counters: NodeCounters,
    syncer: DiskSyncer,
    /// The last entry the sync running on the syncer makes durable.
    sync_in_flight: Option<(LogIndex, Term)>,
    /// Records written while that sync ran: the next job, and its last entry.
    sync_waiting: Option<(SyncJob, LogIndex, Term)>,
}

/// What the daemon needs to start the loop.
pub struct ServerParts<S: Storage> {
    pub listener: TcpListener,
    pub replica: Replica,
    pub storage: S,
    pub clock: Clock,
    pub cluster_hash: u64,
    /// Each member's name and address, by NodeId.
    pub members: Vec<(String, SocketAddr)>,
}

impl<S: Storage> Server<S> {
    pub fn new(parts: ServerParts<S>) -> Result<Server<S>, RuntimeError> {
        let poll = Poll::new()
            .map_err(|error| RuntimeError::Io(format!("cannot create poll: {error}")))?;
        let mut listener = parts.listener;
        poll.registry()
            .register(&mut listener, LISTENER, mio::Interest::READABLE)
            .map_err(|error| RuntimeError::Io(format!("cannot register listener: {error}")))?;
        let self_id = parts.replica.raft().id();
        let links = parts
            .members
            .iter()
            .enumerate()
            .map(|(index, (name, address))| {
                (index != self_id.0 as usize).then(|| PeerLink {
                    name: name.clone(),
                    address: *address,
                    token: None,
                    connected: false,
                    backoff_ms: crate::constants::RECONNECT_DELAY_MS_MIN,
                    timer: None,
                })
            })
            .collect();
        let syncer = DiskSyncer::start(poll.registry()).map_err(|error| {
            RuntimeError::Io(format!("cannot start the disk-sync thread: {error}"))
        })?;
        let now_ms = parts.clock.now_ms();
        let timer_capacity = CLIENT_CONNECTIONS_MAX * CLIENT_REQUESTS_IN_FLIGHT_MAX + 1024;
        Ok(Server {
            poll,
            listener,
            connections: HashMap::new(),
            token_next: 1,
            client_count: 0,
            links,
            replica: parts.replica,
            storage: parts.storage,
            timers: TimerWheel::with_capacity_max(now_ms, timer_capacity),
            core_timer: None,
            clock: parts.clock,
            cluster_hash: parts.cluster_hash,
            names: parts.members.into_iter().map(|(name, _)| name).collect(),
            read_backlog: Vec::new(),
            dirty: Vec::new(),
            ready_left_over: false,
            throttles: LogThrottles::default(),
            counters: NodeCounters::default(),
            syncer,
            sync_in_flight: None,
            sync_waiting: None,
        })
    }

    /// Runs until a fatal error (a storage failure stops the node: it must
    /// not go on acknowledging with a hole in its log).
    pub fn run(&mut self) -> Result<(), RuntimeError> {
        let mut events = Events::with_capacity(POLL_EVENTS_MAX);
        for peer in self.peer_ids() {
            self.connect(peer);
        }
        self.schedule_core_timer();
        loop {
            let timeout = self.poll_timeout();
            if let Err(error) = self.poll.poll(&mut events, Some(timeout)) {
                if error.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(RuntimeError::Io(format!("poll failed: {error}")));
            }
            let now_ms = self.clock.now_ms();
            self.replica.observe_time(now_ms);
            for event in events.iter() {
                self.handle_event(event);
            }
            self.drain_read_backlog();
            self.collect_finished_syncs()?;
            self.fire_timers(now_ms);
            self.replica.advance_time(now_ms);
            self.drive()?;
            self.replica.set_counters(self.counters);
            self.deliver_replies();
            self.flush_dirty();
            self.schedule_core_timer();
            self.log_throttled(now_ms);
        }
    }

    pub(super) fn peer_ids(&self) -> Vec<NodeId> {
        (0..self.links.len())
            .filter(|&index| self.links[index].is_some())
            .map(|index| NodeId(index as u32))
            .collect()
    }

    fn poll_timeout(&self) -> Duration {
        if !self.read_backlog.is_empty() || self.ready_left_over {
            return Duration::ZERO;
        }
        let now_ms = self.clock.now_ms();
        let wait_ms = self
            .timers
            .next_deadline_ms()
            .map_or(POLL_TIMEOUT_MS_MAX, |deadline| {
                deadline.saturating_sub(now_ms)
            })
            .min(POLL_TIMEOUT_MS_MAX);
        Duration::from_millis(wait_ms)
    }

    fn fire_timers(&mut self, now_ms: u64) {
        let mut expired = Vec::new();
        self.timers.advance(now_ms, &mut expired);
        for timer in expired {
            match timer {
                Timer::Core => self.core_timer = None,
                Timer::Peer(peer) => self.peer_timer_fired(peer),
                Timer::Accept => self.accept_all(),
                Timer::ClientRequest { index, token } => {
                    if let Some(connection) =
                        self.connections.get_mut(&Token(token.connection as usize))
                    {
                        if let Some(slot) = connection.requests_in_flight.get_mut(&token.request_id)
                        {
                            *slot = None; // fired: nothing left to cancel
                        }
                    }
                    self.replica.expire(index, token);
                }
            }
        }
    }

    fn schedule_core_timer(&mut self) {
        let deadline = self.replica.raft().next_deadline_ms();
        if let Some((id, scheduled)) = self.core_timer {
            if scheduled == deadline {
                return;
            }
            self.timers.cancel(id);
        }
        let id = self.timers.insert(deadline, Timer::Core);
        self.core_timer = Some((id, deadline));
    }

    /// Passes through the replica until it has nothing more to do: log,
    /// send, persist and sync, send what waited for the sync, apply.
    fn drive(&mut self) -> Result<(), RuntimeError> {
        self.ready_left_over = false;
        for _ in 0..READY_PASSES_PER_TURN_MAX {
            if !self.replica.has_ready() {
                return Ok(());
            }
            let mut ready = self.replica.ready();
            self.log_ready(&ready);
            self.send_messages(std::mem::take(&mut ready.messages));
            let mut sync_deferred = false;
            if ready.needs_persist() {
                // Let followers start on their copy while ours is synced
                // (dissertation §10.2.1): commit latency becomes the slower
                // of the two syncs, not their sum.
                self.flush_dirty();
                if may_defer_sync(&ready) {
                    sync_deferred = self.persist_deferring_sync(&ready)?;
                } else {
                    self.settle_syncs()?;
                    self.persist(&ready)?;
                }
            }
            self.send_messages(ready.messages_after_persist);
            if let (Some(last), false) = (ready.entries.last(), sync_deferred) {
                self.replica.persisted(last.index, last.term);
            }
        }
        self.ready_left_over = self.replica.has_ready();
        Ok(())
    }

    /// Writes the records and leaves their fdatasync to the syncer. True
    /// when `persisted` will come from `sync_finished`, false when they are
    /// durable already.
    fn persist_deferring_sync(&mut self, ready: &Ready) -> Result<bool, RuntimeError> {
        let Some(last) = ready.entries.last() else {
            return Ok(false);
        };
        self.storage
            .append(&ready.entries)
            .map_err(RuntimeError::Storage)?;
        self.counters.entries_appended += ready.entries.len() as u64;
        let job = self
            .storage
            .write_deferring_sync()
            .map_err(RuntimeError::Storage)?;
        let Some(mut job) = job else {
            self.note_storage_stats();
            return Ok(false);
        };
        if self.sync_in_flight.is_none() {
            self.syncer.submit(job)?;
            self.sync_in_flight = Some((last.index, last.term));
            return Ok(true);
        }
        // The newer job covers every record the waiting one does: those in
        // an older segment were synced when that segment was sealed.
        if let Some((waiting, _, _)) = self.sync_waiting.take() {
            job.entries += waiting.entries;
        }
        self.sync_waiting = Some((job, last.index, last.term));
        Ok(true)
    }

    /// Takes the results of finished syncs without waiting.
    fn collect_finished_syncs(&mut self) -> Result<(), RuntimeError> {
        while let Some(result) = self.syncer.try_finished() {
            self.sync_finished(result?)?;
        }
        Ok(())
    }

    /// Waits until every deferred sync is done: what follows promises
    /// durable state, or syncs on the loop, and must come after them.
    fn settle_syncs(&mut self) -> Result<(), RuntimeError> {
        while self.sync_in_flight.is_some() {
            let job = self.syncer.wait_finished()?;
            self.sync_finished(job)?;
        }
        Ok(())
    }

    fn sync_finished(&mut self, job: SyncJob) -> Result<(), RuntimeError> {
        self.storage.deferred_sync_done(&job);
        self.note_storage_stats();
        let (index, term) = self
            .sync_in_flight
            .take()
            .expect("a finished sync was submitted");
        self.replica.persisted(index, term);
        if let Some((next, index, term)) = self.sync_waiting.take() {
            self.syncer.submit(next)?;
            self.sync_in_flight = Some((index, term));
        }
        Ok(())
    }

    fn note_storage_stats(&mut self) {
        let stats = self.storage.stats();
        self.counters.fsyncs = stats.fsyncs;
        self.counters.synced_entries = stats.synced_entries;
    }

    fn persist(&mut self, ready: &Ready) -> Result<(), RuntimeError> {
        if !ready.entries.is_empty() {
            self.storage
                .append(&ready.entries)
                .map_err(RuntimeError::Storage)?;
        }
        if let Some(hard_state) = ready.hard_state {
            self.storage
                .set_hard_state(hard_state)
                .map_err(RuntimeError::Storage)?;
        }
        self.storage.sync().map_err(RuntimeError::Storage)?;
        self.note_storage_stats();
        self.counters.entries_appended += ready.entries.len() as u64;
        Ok(())
    }

    fn deliver_replies(&mut self) {
        for (token, line) in self.replica.take_replies() {
            self.send_client_reply(token, line);
        }
    }

    // ---- log lines -------------------------------------------------------

    fn log_ready(&mut self, ready: &Ready) {
        for event in &ready.events {
            self.log_event(event);
        }
        if !ready.committed_entries.is_empty() {
            self.throttles
                .applied
                .add(ready.committed_entries.len() as u64);
            if crate::runtime::logging::enabled(crate::runtime::logging::Level::Debug) {
                for entry in &ready.committed_entries {
                    log!(
                        Debug,
                        "Applied entry (index={}, term={}, cmd={})",
                        entry.index,
                        entry.term,
                        super::describe::entry(entry)
                    );
                }
            }
        }
    }

    fn name(&self, id: NodeId) -> &str {
        self.names.get(id.0 as usize).map_or("?", String::as_str)
    }

    fn log_event(&mut self, event: &Event) {
        match event {
            Event::ElectionTimeout {
                term,
                pre_vote: true,
            } => log!(
                Info,
                "Timeout → PreCandidate (asking pre-votes for term {term})"
            ),
            Event::ElectionTimeout {
                term,
                pre_vote: false,
            } => log!(Info, "Timeout → Candidate (term {term})"),
            Event::BecameLeader { term, votes } => log!(
                Info,
                "Received votes → Leader (term {term}, {votes} of {} votes)",
                self.names.len()
            ),
            Event::BecameFollower { term, reason } => {
                let why = match reason {
                    StepDownReason::HigherTerm { from } => {
                        format!("saw term {term} from {}", self.name(*from))
                    }
                    StepDownReason::LeaderExists { leader } => {
                        format!("{} is leader", self.name(*leader))
                    }
                    StepDownReason::QuorumLost => {
                        "no majority heard from within an election timeout".to_string()
                    }
                };
                log!(Info, "Step down → Follower (term {term}): {why}");
            }
            Event::LeaderChanged { term, leader } => {
                if self.replica.raft().role() != Role::Leader {
                    log!(
                        Info,
                        "Following leader {} (term {term})",
                        self.name(*leader)
                    );
                }
            }
            Event::EntriesAppended {
                count,
                term,
                last_index,
            } => {
                log!(
                    Debug,
                    "Appended {count} entries (term={term}, last index={last_index})"
                );
                self.throttles.last_appended_term = term.0;
                self.throttles.appended.add(*count as u64);
            }
            Event::LogTruncated { from } => log!(
                Info,
                "Log truncated from index {from} (conflict with leader)"
            ),
            Event::FollowerLostEntries {
                follower,
                acknowledged,
                last_index,
            } => log!(
                Warn,
                "Follower {} lost entries it had acknowledged (log ends at {last_index}, acknowledged {acknowledged}): was its data dir wiped?",
                self.name(*follower)
            ),
            Event::CommitAdvanced { .. } => {
                self.throttles.committed.add(1);
            }
        }
    }

    /// Progress lines at most every Throttle::INTERVAL_MS, with totals.
    fn log_throttled(&mut self, now_ms: u64) {
        let status = self.replica.raft().status();
        if let Some(count) = self.throttles.appended.due(now_ms) {
            let term = self.throttles.last_appended_term;
            if status.role == Role::Leader {
                log!(
                    Info,
                    "Append log entries (count={count}, term={term}, last index={})",
                    status.last_index
                );
            } else {
                log!(
                    Info,
                    "Append success; appended {count} entries (term={term})"
                );
            }
        }
        if self.throttles.committed.due(now_ms).is_some() {
            log!(Info, "Entry committed (index={})", status.commit_index);
        }
        if let Some(count) = self.throttles.applied.due(now_ms) {
            log!(
                Info,
                "Applied {count} entries (applied={})",
                status.last_applied
            );
        }
    }

    // ---- messages --------------------------------------------------------

    fn send_messages(&mut self, messages: Vec<Message>) {
        for message in messages {
            if let MessageBody::AppendEntries(request) = &message.body {
                let entries = request.entries.len() as u64;
                self.counters.appends_sent += 1;
                self.counters.appends_sent_with_entries += u64::from(entries > 0);
                self.counters.appended_entries_sent += entries;
            }
            self.send_peer_message(&message);
        }
    }
}

/// Only records whose durability promises nothing to anyone may wait for
/// the syncer: a new hard state (a term, a vote) and acks or votes that
/// ride on this write are synced on the loop, in order, as before. In
/// practice that is a leader appending its own entries.
fn may_defer_sync(ready: &Ready) -> bool {
    ready.hard_state.is_none()
        && ready.messages_after_persist.is_empty()
        && !ready.entries.is_empty()
}
