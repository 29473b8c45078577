//! The event loop: one thread, one `Poll`. Each turn drains the sockets,
//! makes one pass through the replica, writes and syncs once, then flushes
//! every connection once (which is also group commit). A leader's syncs of
//! its own records run on the disk-sync thread (disk_sync.rs) while the loop
//! goes on.

use super::clock::Clock;
use super::connection::Connection;
use super::disk_sync::DiskSyncer;
use super::handshake::LocalIdentity;
use super::logging::{RateLimiter, Throttle};
use super::peer_auth::NonceSource;
use super::peers::Refusals;
use super::timer_wheel::{TimerId, TimerWheel};
use super::transport::PeerTransport;
use crate::constants::{
    CLIENT_CONNECTIONS_MAX, CLIENT_REQUESTS_IN_FLIGHT_MAX, CONNECTION_SWEEP_INTERVAL_MS,
    POLL_EVENTS_MAX,
};
use crate::core::{ClusterId, Event, LogIndex, NodeId, Ready, Role, StepDownReason, Term};
use crate::driver::{DriveError, Driver, NodeIo, ReadyObserver, SnapshotEvent, SnapshotPolicy};
use crate::log;
use crate::replica::{ClientToken, NodeCounters, Replica};
use crate::reply::Reply;
use crate::storage::{Storage, SyncJob};
use mio::net::{TcpListener, UnixStream};
use mio::{Events, Poll, Token};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

pub(super) const LISTENER: Token = Token(0);
/// The socket a SIGTERM or SIGINT handler writes to (os.rs).
pub(super) const SHUTDOWN: Token = Token(1);
/// The first token handed to a connection.
const CONNECTION_TOKEN_FIRST: usize = 16;

/// Longest the loop sleeps with nothing scheduled.
const POLL_TIMEOUT_MS_MAX: u64 = 1000;

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
    /// Check connections against their timeouts.
    Sweep,
}

/// What a peer's handshakes told us, to explain a link that stays down.
#[derive(Clone, Debug)]
pub(super) struct PeerView {
    /// Where it says it listens (its hello).
    pub advertised: Option<String>,
    /// Where it will connect to us (its challenge).
    pub expects_us_at: Option<String>,
    /// Since when it has had no connection to us.
    pub inbound_absent_since_ms: Option<u64>,
    /// The cluster its latest handshake said it is bound to.
    pub cluster_id: Option<ClusterId>,
}

impl PeerView {
    fn new(now_ms: u64) -> PeerView {
        PeerView {
            advertised: None,
            expects_us_at: None,
            inbound_absent_since_ms: Some(now_ms),
            cluster_id: None,
        }
    }
}

/// Our outgoing connection to one peer.
pub(super) struct PeerLink {
    pub name: String,
    pub address: SocketAddr,
    pub token: Option<Token>,
    /// The handshake completed: our messages may go out here.
    pub connected: bool,
    pub backoff_ms: u64,
    /// The peer refused our last handshake (a configuration problem): the
    /// next attempt waits `refused_backoff_ms`, which grows.
    pub refused: bool,
    pub refused_backoff_ms: u64,
    pub timer: Option<TimerId>,
}

#[derive(Debug)]
pub enum RuntimeError {
    Io(String),
    Drive(DriveError),
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RuntimeError::Io(message) => write!(f, "{message}"),
            RuntimeError::Drive(error) => write!(f, "{error}"),
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

pub struct Server<S: Storage<Job = SyncJob>> {
    pub(super) poll: Poll,
    pub(super) listener: TcpListener,
    /// Registered with `poll` for as long as the server runs.
    _shutdown_socket: UnixStream,
    pub(super) shutdown_requested: bool,
    /// A Timer::Accept is scheduled (accept failed; one retry at a time).
    pub(super) accept_retry_pending: bool,
    pub(super) connections: HashMap<Token, Connection>,
    pub(super) token_next: usize,
    /// Connections in client slots (clients, and accepted connections not
    /// yet identified), idlest first. Invariant: holds exactly those.
    pub(super) client_activity: BTreeSet<(u64, Token)>,
    /// CLIENT_CONNECTIONS_MAX, or fewer if the descriptor limit is lower.
    pub(super) client_slots_max: usize,
    /// By NodeId; None for this node.
    pub(super) links: Vec<Option<PeerLink>>,
    /// By NodeId: the peer's current connection to us.
    pub(super) inbound: Vec<Option<Token>>,
    /// By NodeId: what the peer's handshakes said about addresses.
    pub(super) views: Vec<PeerView>,
    pub(super) identity: LocalIdentity,
    pub(super) nonces: NonceSource,
    pub(super) cluster_id_seen: Option<ClusterId>,
    /// Refusals we gave and got, by (peer id as claimed, reason), with
    /// when, for STATUS.
    pub(super) refusals_given: Refusals,
    pub(super) refusals_received: Refusals,
    pub(super) limiter: RateLimiter,
    pub(super) replica: Replica,
    pub(super) storage: S,
    pub(super) timers: TimerWheel<Timer>,
    core_timer: Option<(TimerId, u64)>,
    pub(super) clock: Clock,
    /// Connections with bytes left to read or frames left to decode.
    pub(super) read_backlog: Vec<Token>,
    /// Connections with output queued this turn.
    pub(super) dirty: Vec<Token>,
    ready_left_over: bool,
    throttles: LogThrottles,
    pub(super) counters: NodeCounters,
    syncer: DiskSyncer,
    /// Owns the Ready contract, and the deferred syncs it owes the core.
    driver: Driver<SyncJob>,
}

/// What the daemon needs to start the loop.
pub struct ServerParts<S: Storage<Job = SyncJob>> {
    pub listener: TcpListener,
    /// Readable when a shutdown signal arrived (os::on_shutdown_signals).
    pub shutdown_socket: UnixStream,
    pub replica: Replica,
    pub storage: S,
    pub clock: Clock,
    pub identity: LocalIdentity,
    /// Seeds the handshake nonces; from the operating system's randomness.
    pub nonce_seed: [u8; 32],
    pub client_slots_max: usize,
    /// When to snapshot and how much log to keep (the --snapshot-* flags).
    pub snapshot_policy: SnapshotPolicy,
}

impl<S: Storage<Job = SyncJob>> Server<S> {
    pub fn new(parts: ServerParts<S>) -> Result<Server<S>, RuntimeError> {
        let poll = Poll::new()
            .map_err(|error| RuntimeError::Io(format!("cannot create poll: {error}")))?;
        let mut listener = parts.listener;
        poll.registry()
            .register(&mut listener, LISTENER, mio::Interest::READABLE)
            .map_err(|error| RuntimeError::Io(format!("cannot register listener: {error}")))?;
        let mut shutdown_socket = parts.shutdown_socket;
        poll.registry()
            .register(&mut shutdown_socket, SHUTDOWN, mio::Interest::READABLE)
            .map_err(|error| RuntimeError::Io(format!("cannot register signals: {error}")))?;
        let self_id = parts.replica.raft().id();
        let links = (0..parts.identity.members.len())
            .map(|index| {
                let (name, address) = &parts.identity.members[index];
                (index != self_id.0 as usize).then(|| PeerLink {
                    name: name.clone(),
                    address: *address,
                    token: None,
                    connected: false,
                    backoff_ms: crate::constants::RECONNECT_DELAY_MS_MIN,
                    refused: false,
                    refused_backoff_ms: crate::constants::REFUSED_RECONNECT_DELAY_MS_MIN,
                    timer: None,
                })
            })
            .collect();
        let syncer = DiskSyncer::start(poll.registry()).map_err(|error| {
            RuntimeError::Io(format!("cannot start the disk-sync thread: {error}"))
        })?;
        let now_ms = parts.clock.now_ms();
        let timer_capacity = CLIENT_CONNECTIONS_MAX * CLIENT_REQUESTS_IN_FLIGHT_MAX + 1024;
        let member_count = parts.identity.members.len();
        let cluster_id_seen = parts.replica.raft().cluster_id();
        Ok(Server {
            poll,
            listener,
            _shutdown_socket: shutdown_socket,
            shutdown_requested: false,
            accept_retry_pending: false,
            connections: HashMap::new(),
            token_next: CONNECTION_TOKEN_FIRST,
            client_activity: BTreeSet::new(),
            client_slots_max: parts.client_slots_max,
            links,
            inbound: vec![None; member_count],
            views: vec![PeerView::new(now_ms); member_count],
            identity: parts.identity,
            nonces: NonceSource::new(parts.nonce_seed),
            cluster_id_seen,
            refusals_given: Refusals::default(),
            refusals_received: Refusals::default(),
            limiter: RateLimiter::default(),
            replica: parts.replica,
            storage: parts.storage,
            timers: TimerWheel::with_capacity_max(now_ms, timer_capacity),
            core_timer: None,
            clock: parts.clock,
            read_backlog: Vec::new(),
            dirty: Vec::new(),
            ready_left_over: false,
            throttles: LogThrottles::default(),
            counters: NodeCounters::default(),
            syncer,
            driver: Driver::new(parts.snapshot_policy),
        })
    }

    /// Runs until SIGTERM or SIGINT (Ok) or a fatal error (a storage
    /// failure stops the node: it must not go on acknowledging with a hole
    /// in its log).
    pub fn run(&mut self) -> Result<(), RuntimeError> {
        let mut events = Events::with_capacity(POLL_EVENTS_MAX);
        for peer in self.peer_ids() {
            self.connect(peer);
        }
        self.schedule_core_timer();
        self.update_status_extra();
        let sweep_at = self.clock.now_ms() + CONNECTION_SWEEP_INTERVAL_MS;
        self.timers.insert(sweep_at, Timer::Sweep);
        while !self.shutdown_requested {
            let timeout = self.poll_timeout();
            if let Err(error) = self.poll.poll(&mut events, Some(timeout)) {
                if error.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(RuntimeError::Io(format!("poll failed: {error}")));
            }
            let started_us = self.clock.now_us();
            let now_ms = self.clock.now_ms();
            self.replica.observe_time(now_ms);
            for event in events.iter() {
                self.handle_event(event);
            }
            self.turn(now_ms)?;
            let took_us = self.clock.now_us().saturating_sub(started_us);
            self.counters.loop_turn_max_us = self.counters.loop_turn_max_us.max(took_us);
        }
        self.shut_down()
    }

    /// Everything after the sockets' events in one loop turn.
    fn turn(&mut self, now_ms: u64) -> Result<(), RuntimeError> {
        self.drain_read_backlog();
        self.collect_finished_syncs()?;
        self.fire_timers(now_ms);
        self.replica.advance_time(now_ms);
        self.drive()?;
        self.check_cluster_id();
        self.replica.set_counters(self.counters);
        self.deliver_replies();
        self.flush_dirty();
        self.schedule_core_timer();
        self.log_throttled(now_ms, false);
        Ok(())
    }

    /// A clean stop: what was written is made durable, the pending progress
    /// lines are written, and one line says the node stopped and where.
    fn shut_down(&mut self) -> Result<(), RuntimeError> {
        let settled =
            self.driver
                .settle_all_syncs(&mut self.replica, &mut self.storage, &mut self.syncer);
        settled.map_err(RuntimeError::Drive)?;
        self.flush_dirty();
        self.log_throttled(self.clock.now_ms(), true);
        let status = self.replica.raft().status();
        let signal = super::os::shutdown_signal().map_or("a signal", super::os::signal_name);
        log!(
            Info,
            "Shutting down on {signal} (role {}, term {}, last index {}, commit {}, applied {})",
            role_name(status.role),
            status.term,
            status.last_index,
            status.commit_index,
            status.last_applied
        );
        Ok(())
    }

    /// Hands the runtime's STATUS fields to the replica, which answers
    /// STATUS: called when they change and by every sweep (they expire).
    pub(super) fn update_status_extra(&mut self) {
        let now_ms = self.clock.now_ms();
        let extra = vec![
            ("refused", self.refusals_given.text(now_ms)),
            ("refused_by", self.refusals_received.text(now_ms)),
            ("clients", self.client_slot_count().to_string()),
        ];
        self.replica.set_status_extra(extra);
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
                Timer::Accept => {
                    self.accept_retry_pending = false;
                    self.accept_all();
                }
                Timer::Sweep => self.sweep_connections(),
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

    /// The driver's Ready passes (src/driver.rs): send, write and sync or
    /// defer the sync, send what waited for it, tell the core. The log
    /// lines for what the core reported come after, as do the connections
    /// the transport found broken.
    fn drive(&mut self) -> Result<(), RuntimeError> {
        let mut broken = Vec::new();
        let mut observer = ServerObserver::default();
        let mut transport = PeerTransport {
            connections: &mut self.connections,
            links: &self.links,
            registry: self.poll.registry(),
            dirty: &mut self.dirty,
            counters: &mut self.counters,
            broken: &mut broken,
        };
        let io = NodeIo {
            storage: &mut self.storage,
            transport: &mut transport,
            syncer: &mut self.syncer,
        };
        let left_over = self.driver.drive(&mut self.replica, io, &mut observer);
        self.ready_left_over = left_over.map_err(RuntimeError::Drive)?;
        self.after_drive(observer, broken);
        Ok(())
    }

    fn after_drive(&mut self, observer: ServerObserver, broken: Vec<(Token, String)>) {
        for (token, reason) in broken {
            self.close(token, &reason);
        }
        for event in &observer.events {
            self.log_event(event);
        }
        for event in &observer.snapshot_events {
            self.log_snapshot_event(event);
        }
        self.throttles.applied.add(observer.applied);
        self.note_storage_stats();
    }

    /// Takes the results of finished deferred syncs without waiting.
    fn collect_finished_syncs(&mut self) -> Result<(), RuntimeError> {
        let collected = self.driver.collect_finished_syncs(
            &mut self.replica,
            &mut self.storage,
            &mut self.syncer,
        );
        collected.map_err(RuntimeError::Drive)?;
        self.note_storage_stats();
        Ok(())
    }

    fn note_storage_stats(&mut self) {
        let stats = self.storage.stats();
        self.counters.fsyncs = stats.fsyncs;
        self.counters.synced_entries = stats.synced_entries;
        self.counters.entries_appended = self.driver.entries_appended;
    }

    fn deliver_replies(&mut self) {
        for (token, line) in self.replica.take_replies() {
            self.send_client_reply(token, line);
        }
    }

    // ---- log lines -------------------------------------------------------

    fn step_down_reason(&self, term: Term, reason: &StepDownReason) -> String {
        match reason {
            StepDownReason::HigherTerm { from } => {
                format!("saw term {term} from {}", self.name(*from))
            }
            StepDownReason::LeaderExists { leader } => format!("{} is leader", self.name(*leader)),
            StepDownReason::QuorumLost => {
                "no majority heard from within an election timeout".to_string()
            }
        }
    }

    fn log_event(&mut self, event: &Event) {
        match event {
            // A node that cannot win (cut off, refused, moved) asks again
            // every election timeout for the same term: one line per term
            // per interval, with the count.
            Event::ElectionTimeout {
                term,
                pre_vote: true,
            } => {
                let now_ms = self.clock.now_ms();
                crate::log_limited!(
                    self.limiter,
                    now_ms,
                    Info,
                    "pre-vote",
                    term.0,
                    "Timeout → PreCandidate (asking pre-votes for term {term})"
                )
            }
            Event::ElectionTimeout {
                term,
                pre_vote: false,
            } => log!(Info, "Timeout → Candidate (term {term})"),
            Event::BecameLeader { term, votes } => log!(
                Info,
                "Received votes → Leader (term {term}, {votes} of {} votes)",
                self.identity.members.len()
            ),
            Event::BecameFollower { term, reason } => {
                let why = self.step_down_reason(*term, reason);
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
            Event::ForeignMessageIgnored { from, cluster } => {
                self.foreign_peer_seen(*from, *cluster)
            }
            Event::ClusterIdLearned { cluster_id } => log!(
                Info,
                "Cluster id {cluster_id}: this node now refuses peers of any other cluster"
            ),
            Event::StoredConfigurationIgnored { index } => log!(
                Warn,
                "The configuration in the log (index {index}) has other voters than --peers; running under --peers"
            ),
            Event::SnapshotSendStarted {
                follower,
                index,
                size_bytes,
            } => log!(
                Info,
                "Sending snapshot to {} (index={index}, bytes={size_bytes})",
                self.name(*follower)
            ),
            Event::SnapshotInstalled { from, index } => log!(
                Info,
                "Installed snapshot from {} (index={index})",
                self.name(*from)
            ),
            Event::SnapshotChunkOutOfOrder {
                from,
                index,
                offset,
                stored,
            } => self.close_out_of_order_sender(*from, *index, *offset, *stored),
            Event::TransferStarted { to, term, .. } => log!(
                Info,
                "Transferring leadership to {} (term {term})",
                self.name(*to)
            ),
            Event::TransferEnded { to, outcome } => {
                match self.replica.transfer_reply(*to, *outcome) {
                    Reply::Transferred { leader, term } => {
                        log!(Info, "Transferred leadership to {leader} (term {term})")
                    }
                    Reply::Unavailable(reason) => log!(
                        Warn,
                        "Leadership transfer to {} failed: {reason}",
                        self.name(*to)
                    ),
                    other => log!(Warn, "Leadership transfer to {}: {other}", self.name(*to)),
                }
            }
        }
    }

    /// The rule for an out-of-order chunk: the connection it came
    /// on is closed (the core changed nothing, and answered on our own link
    /// to the sender, so the leader still learns where to resume).
    fn close_out_of_order_sender(
        &mut self,
        from: NodeId,
        index: LogIndex,
        offset: u64,
        stored: u64,
    ) {
        let name = self.name(from).to_string();
        crate::log_limited!(
            self.limiter,
            self.clock.now_ms(),
            Warn,
            "snapshot-out-of-order",
            u64::from(from.0),
            "Closing the connection from {name}: a chunk of snapshot {index} at offset {offset}, \
             but this node holds {stored} bytes of it; nothing changed, it resumes from {stored}"
        );
        if let Some(token) = self.inbound[from.0 as usize] {
            self.close(token, "snapshot chunk out of order");
        }
    }

    fn log_snapshot_event(&mut self, event: &SnapshotEvent) {
        match event {
            SnapshotEvent::Taken(taken) => log!(
                Info,
                "Snapshot taken (index={}, term={}, keys={}, bytes={}) in {} ms",
                taken.meta.index,
                taken.meta.term,
                taken.keys,
                taken.size_bytes,
                taken.took_ms
            ),
            SnapshotEvent::Compacted {
                first_index,
                segments,
            } => log!(
                Info,
                "Log compacted below index {first_index} ({segments} segments removed)"
            ),
            SnapshotEvent::ChunkUnreadable { index, problem } => crate::log_limited!(
                self.limiter,
                self.clock.now_ms(),
                Warn,
                "snapshot-chunk",
                index.0,
                "Cannot read a chunk of snapshot {index} to send: {problem}"
            ),
            SnapshotEvent::InstallFailed { index, problem } => log!(
                Warn,
                "Snapshot {index} from the leader failed its check and was discarded: {problem}"
            ),
        }
    }

    /// Progress lines at most every Throttle::INTERVAL_MS, with totals
    /// (all that are pending when `flush`, at shutdown).
    fn log_throttled(&mut self, now_ms: u64, flush: bool) {
        let status = self.replica.raft().status();
        let now_ms = if flush { u64::MAX } else { now_ms };
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
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Follower => "follower",
        Role::PreCandidate => "precandidate",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

/// Collects what the core reported in each Ready of one drive, for the log
/// lines after it (they need the whole server; the driver holds parts).
#[derive(Default)]
struct ServerObserver {
    events: Vec<Event>,
    snapshot_events: Vec<SnapshotEvent>,
    applied: u64,
}

impl ReadyObserver for ServerObserver {
    fn snapshot(&mut self, event: &SnapshotEvent, _replica: &Replica) {
        self.snapshot_events.push(event.clone());
    }

    fn ready(&mut self, ready: &Ready, _replica: &Replica) {
        self.events.extend(ready.events.iter().cloned());
        self.applied += ready.committed_entries.len() as u64;
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
