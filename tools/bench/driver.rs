//! The load loop: one thread and one mio Poll drive every client. Each client
//! is the client machine `submit` runs (raftlite::client::machine: sessions,
//! numbering, leader hints, backoff, deadlines) over its own non-blocking
//! connection, with at most one request outstanding.
//! The loop runs at its own pace: drain the ready events, then one pass of
//! phase changes, open-loop releases and new operations, and every 10 ms one
//! sweep over the clients' timers (deadlines, pauses, slow connects).
//!
//! A run goes Setup (every client opens a session) → Fill (with --fill:
//! every key written once, in order, not counted) → Warmup (load, not
//! counted) → Measure → Drain (no new operations; the ones in flight may
//! finish) → Done.

use crate::connection::{Connection, Step};
use crate::options::Protocol;
use crate::report::{write_stdout, CpuSeconds, CpuTicks};
use crate::stats::{classify_reply, ErrorKind, ReplyClass, Stats};
use crate::workload::{Random, Schedule, Workload};
use mio::{Events, Poll, Token};
use raftlite::client::{Action, ClientConfig, ClientMachine, Try, TryResult};
use raftlite::reply::{Answer, Reply};
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Granularity of deadlines and pauses; open-loop sends do not wait for it.
const TIMER_SCAN_INTERVAL: Duration = Duration::from_millis(10);
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// A connect slower than this (SYN lost, host gone) is abandoned.
const CONNECT_TIMEOUT_MAX: Duration = Duration::from_secs(2);
/// How long operations in flight at the end may take to finish.
const DRAIN_DURATION_MAX: Duration = Duration::from_secs(3);
/// Setup waits at least this long for a first session: a cluster that is
/// electing a leader is slow, not unreachable.
const SETUP_DURATION_MIN: Duration = Duration::from_secs(5);
/// Clients opening their first connection at once. Listen queues are often
/// 128 deep (the daemon's is); a burst beyond that gets SYNs dropped and
/// retried a second later, so setup opens sessions in a rolling window.
const SETUP_CONNECTS_IN_FLIGHT_MAX: usize = 64;
const EVENTS_CAPACITY: usize = 1024;
/// Leader hints name cluster members, so a handful of entries suffice.
const ADDRESS_CACHE_MAX: usize = 64;

pub struct Settings {
    /// Resolved --cluster addresses; not empty.
    pub seeds: Vec<SocketAddr>,
    pub protocol: Protocol,
    pub clients: usize,
    pub workload: Workload,
    pub rate: Option<f64>,
    pub duration: Option<Duration>,
    pub ops: Option<u64>,
    pub warmup: Duration,
    pub timeout: Duration,
    pub seed: u64,
    /// Write every key once before the warmup (`--fill`).
    pub fill: bool,
}

/// What `run` hands to the report.
pub struct Outcome {
    /// False when no client could open a session during setup.
    pub reached: bool,
    pub last_error: Option<String>,
    pub measured: Stats,
    pub measured_seconds: f64,
    /// Measured operations neither finished by the end of the drain, nor (open
    /// loop) sent at all because their client was still busy.
    pub operations_unfinished: u64,
    pub cpu: Option<CpuSeconds>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Setup,
    Fill,
    Warmup,
    Measure,
    Drain,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    Register,
    Operation,
}

enum Waiting {
    /// Nothing sent and nothing planned.
    Nothing,
    /// A try is out; the machine moves on if no reply by `sent_at + limit`.
    Reply { sent_at: Instant, limit: Duration },
    /// The machine backs off before its next try.
    Pause { until: Instant },
}

/// An operation the client's machine runs (the command itself is the
/// machine's).
struct Operation {
    /// Latency counts from here: the scheduled send time in open loop, the
    /// actual start in closed loop.
    intended_start: Instant,
    measured: bool,
}

struct Client {
    connection: Connection,
    /// Where `connection` goes, or went last.
    target: SocketAddr,
    /// Chooses the node, numbers writes, pauses between rounds of tries
    /// and ends each command, as `submit` does.
    machine: ClientMachine,
    /// What the machine's command in flight is for.
    purpose: Option<Purpose>,
    random: Random,
    value: String,
    waiting: Waiting,
    operation: Option<Operation>,
    /// Set once the client has made its first request (setup admits
    /// clients a window at a time); an inactive client starts no operation.
    active: bool,
    registered_once: bool,
    /// Open loop: operations released to this client and started by it.
    /// Invariant: started <= released.
    released: u64,
    started: u64,
    ready_queued: bool,
}

pub struct Driver {
    settings: Settings,
    poll: Poll,
    /// The client machines' milliseconds count from here.
    base: Instant,
    clients: Vec<Client>,
    /// Leader hints by text; `None` caches a failed lookup.
    addresses: HashMap<String, Option<SocketAddr>>,
    phase: Phase,
    setup_start: Instant,
    /// The fill: the next key to hand out (keys 0..fill_next are written or
    /// in flight), when it began, and its writes that failed.
    /// Invariant: fill_next <= workload.keys.
    fill_next: u64,
    fill_start: Instant,
    fill_failed: u64,
    setup_deadline: Instant,
    // The run's instants, set when setup ends.
    run_start: Instant,
    measure_start: Instant,
    measure_end_planned: Option<Instant>,
    measure_end: Option<Instant>,
    drain_deadline: Instant,
    schedule: Option<Schedule>,
    /// Open loop: the next global operation number to release, and the
    /// count of released operations started.
    /// Invariant: started_total <= release_next.
    release_next: u64,
    started_total: u64,
    released_measured: u64,
    measured_started: u64,
    /// Operations begun and not finished, measured or not.
    in_progress: u64,
    sessions_opened: usize,
    /// Clients activated so far (a prefix of `clients`).
    /// Invariant: clients_active - sessions_opened <= SETUP_CONNECTS_IN_FLIGHT_MAX.
    clients_active: usize,
    /// Clients to offer a new operation; each at most once (`ready_queued`).
    ready: Vec<usize>,
    unmeasured: Stats,
    measured: Stats,
    second_operations: u64,
    progress_last: Instant,
    progress_next: Instant,
    scan_next: Instant,
    cpu_start: Option<CpuTicks>,
    cpu_end: Option<CpuTicks>,
    last_error: Option<String>,
}

/// Runs the whole benchmark; `Err` only if the poll itself fails.
pub fn run(settings: Settings) -> io::Result<Outcome> {
    let now = Instant::now();
    let mut driver = Driver::new(settings, now)?;
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    for _ in 0..SETUP_CONNECTS_IN_FLIGHT_MAX {
        driver.activate_next_client(now);
    }
    loop {
        let now = Instant::now();
        driver.turn(now);
        if driver.phase == Phase::Done {
            return Ok(driver.finish(now));
        }
        let timeout = driver.next_wake(now).saturating_duration_since(now);
        match driver.poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
        let now = Instant::now();
        for event in events.iter() {
            driver.on_event(event.token(), now);
        }
    }
}

impl Driver {
    fn new(settings: Settings, now: Instant) -> io::Result<Driver> {
        assert!(!settings.seeds.is_empty());
        assert!((1..=crate::options::CLIENTS_MAX).contains(&settings.clients));
        let clients = (0..settings.clients)
            .map(|index| Client {
                connection: Connection::new(index, settings.protocol),
                target: settings.seeds[index % settings.seeds.len()],
                machine: ClientMachine::new(machine_config(&settings, index)),
                purpose: None,
                random: Random::new(
                    settings.seed ^ (index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d),
                ),
                value: settings.workload.value_for_client(index),
                waiting: Waiting::Nothing,
                operation: None,
                active: false,
                registered_once: false,
                released: 0,
                started: 0,
                ready_queued: false,
            })
            .collect();
        let setup_duration = settings.timeout.max(SETUP_DURATION_MIN);
        Ok(Driver {
            poll: Poll::new()?,
            base: now,
            ready: Vec::with_capacity(settings.clients),
            settings,
            clients,
            addresses: HashMap::new(),
            phase: Phase::Setup,
            setup_start: now,
            fill_next: 0,
            fill_start: now,
            fill_failed: 0,
            setup_deadline: now + setup_duration,
            run_start: now,
            measure_start: now,
            measure_end_planned: None,
            measure_end: None,
            drain_deadline: now,
            schedule: None,
            release_next: 0,
            started_total: 0,
            released_measured: 0,
            measured_started: 0,
            in_progress: 0,
            sessions_opened: 0,
            clients_active: 0,
            unmeasured: Stats::default(),
            measured: Stats::default(),
            second_operations: 0,
            progress_last: now,
            progress_next: now,
            scan_next: now + TIMER_SCAN_INTERVAL,
            cpu_start: None,
            cpu_end: None,
            last_error: None,
        })
    }

    /// One pass of everything that is not an event.
    fn turn(&mut self, now: Instant) {
        self.advance_phase(now);
        if now >= self.scan_next {
            for index in 0..self.clients.len() {
                self.check_timers(index, now);
            }
            self.scan_next = now + TIMER_SCAN_INTERVAL;
        }
        self.release_due(now);
        self.start_ready(now);
        let running = self.issues_operations();
        if running && now >= self.progress_next {
            self.print_progress(now);
        }
    }

    /// The earliest instant something is due besides socket events.
    fn next_wake(&self, now: Instant) -> Instant {
        if !self.ready.is_empty() && self.issues_operations() {
            return now;
        }
        let mut wake = self.scan_next;
        let phase_end = match self.phase {
            Phase::Setup => Some(self.setup_deadline),
            Phase::Fill => None,
            Phase::Warmup => Some(self.measure_start),
            Phase::Measure => self.measure_end_planned,
            Phase::Drain => Some(self.drain_deadline),
            Phase::Done => None,
        };
        wake = wake.min(phase_end.unwrap_or(wake));
        if self.phase != Phase::Setup {
            wake = wake.min(self.progress_next);
        }
        if let Some(schedule) = &self.schedule {
            // A release due but not made is blocked (--ops reached): no wake.
            let due = schedule.due(self.release_next);
            if due > now {
                wake = wake.min(due);
            }
        }
        wake
    }

    fn advance_phase(&mut self, now: Instant) {
        match self.phase {
            Phase::Setup => self.check_setup(now),
            Phase::Fill if self.fill_complete() => self.end_fill(now),
            Phase::Warmup if now >= self.measure_start => self.enter_measure(),
            Phase::Measure if self.measurement_complete(now) => self.end_measure(now),
            Phase::Drain if self.drained() || now >= self.drain_deadline => {
                self.phase = Phase::Done;
            }
            _ => {}
        }
    }

    /// Whether operations may be released and started. Drain still starts
    /// open-loop operations scheduled before the end: they belong to the
    /// window even when the loop noticed them late.
    fn issues_operations(&self) -> bool {
        matches!(
            self.phase,
            Phase::Fill | Phase::Warmup | Phase::Measure | Phase::Drain
        )
    }

    /// Nothing in flight and (open loop) nothing released waits to start.
    fn drained(&self) -> bool {
        self.in_progress == 0 && self.started_total == self.release_next
    }

    fn check_setup(&mut self, now: Instant) {
        if self.sessions_opened < self.clients.len() && now < self.setup_deadline {
            return;
        }
        if self.sessions_opened == 0 {
            self.phase = Phase::Done;
            return;
        }
        // etcd mode's "session" is a first linearizable read (etcd.rs).
        let opened = match self.settings.protocol {
            Protocol::Raftlite => "opened a session",
            Protocol::Etcd => "connected and read",
        };
        write_stdout(&format!(
            "setup: {} of {} clients {opened} in {:.3} s ({})\n",
            self.sessions_opened,
            self.clients.len(),
            (now - self.setup_start).as_secs_f64(),
            errors_line(&self.unmeasured)
        ));
        // Setup errors (first contacts redirected to the leader) are not load.
        self.unmeasured = Stats::default();
        if self.settings.fill {
            self.begin_fill(now);
        } else {
            self.begin_load(now);
        }
    }

    /// Every client takes the next unwritten key until all are handed out.
    fn begin_fill(&mut self, now: Instant) {
        self.phase = Phase::Fill;
        self.fill_start = now;
        self.run_start = now;
        self.progress_last = now;
        self.progress_next = now + PROGRESS_INTERVAL;
        for index in 0..self.clients.len() {
            self.enqueue_ready(index);
        }
    }

    fn fill_complete(&self) -> bool {
        self.fill_next == self.settings.workload.keys && self.in_progress == 0
    }

    fn end_fill(&mut self, now: Instant) {
        let seconds = (now - self.fill_start).as_secs_f64();
        let keys = self.settings.workload.keys;
        write_stdout(&format!(
            "fill: {keys} keys written in {seconds:.3} s ({:.0} keys/s; {} failed; {})\n",
            keys as f64 / seconds.max(f64::EPSILON),
            self.fill_failed,
            errors_line(&self.unmeasured)
        ));
        self.unmeasured = Stats::default();
        self.begin_load(now);
    }

    /// The warmup and the measured window start from `now`.
    fn begin_load(&mut self, now: Instant) {
        self.run_start = now;
        self.measure_start = now + self.settings.warmup;
        self.measure_end_planned = self
            .settings
            .duration
            .map(|duration| self.measure_start + duration);
        self.schedule = self
            .settings
            .rate
            .map(|rate| Schedule::new(now, rate, self.clients.len()));
        self.progress_last = now;
        self.progress_next = now + PROGRESS_INTERVAL;
        for index in 0..self.clients.len() {
            self.enqueue_ready(index);
        }
        self.phase = Phase::Warmup;
        if self.settings.warmup.is_zero() {
            self.enter_measure();
        }
    }

    fn enter_measure(&mut self) {
        self.phase = Phase::Measure;
        self.cpu_start = CpuTicks::read();
    }

    fn measurement_complete(&self, now: Instant) -> bool {
        let time_up = self.measure_end_planned.is_some_and(|end| now >= end);
        let count_reached = self
            .settings
            .ops
            .is_some_and(|target| self.measured.operations_finished() >= target);
        time_up || count_reached
    }

    fn end_measure(&mut self, now: Instant) {
        self.cpu_end = CpuTicks::read();
        // A time-bounded window ends exactly at its planned end; a
        // count-bounded one when the last operation finished.
        let planned = self.measure_end_planned.filter(|end| now >= *end);
        self.measure_end = Some(planned.unwrap_or(now));
        self.drain_deadline = now + self.settings.timeout.min(DRAIN_DURATION_MAX);
        self.phase = Phase::Drain;
    }

    fn on_event(&mut self, token: Token, now: Instant) {
        let index = Connection::client_index_of(token);
        let Some(client) = self.clients.get_mut(index) else {
            return; // not one of ours: ignored
        };
        if !client.connection.owns(token) {
            return; // left over from a socket closed in this batch
        }
        let step = client.connection.on_event(self.poll.registry());
        self.on_step(index, step, now);
    }

    fn on_step(&mut self, index: usize, step: Step, now: Instant) {
        match step {
            Step::Nothing => {}
            Step::Reply(reply) => self.on_reply(index, &reply, now),
            Step::Failed { kind, error } => self.on_connection_failure(index, kind, &error, now),
        }
    }

    /// The client machine's time for `now`.
    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.base).as_millis()).unwrap_or(u64::MAX)
    }

    /// Carries out what the client's machine asked for.
    fn act(&mut self, index: usize, action: Action, now: Instant) {
        match action {
            Action::Send(attempt) => self.send_try(index, attempt, now),
            Action::Pause { until_ms } => {
                let until = self.base + Duration::from_millis(until_ms);
                self.clients[index].waiting = Waiting::Pause { until };
            }
            Action::Done(answer) => self.command_done(index, answer, now),
        }
    }

    /// Puts the machine's try on the wire: on the kept connection if it
    /// goes to the same node and the machine did not move on from it.
    fn send_try(&mut self, index: usize, attempt: Try, now: Instant) {
        let Some(address) = self.resolve(&attempt.to) else {
            let what = format!("cannot resolve {}", attempt.to);
            return self.try_finished(index, TryResult::NotSent(what), now);
        };
        let registry = self.poll.registry();
        let client = &mut self.clients[index];
        if attempt.reconnect || client.target != address {
            client.connection.close(registry);
            client.target = address;
        }
        client.waiting = Waiting::Reply {
            sent_at: now,
            limit: Duration::from_millis(attempt.limit_ms),
        };
        let request = &attempt.request;
        let tag = (request.session_id, request.sequence);
        let step = client
            .connection
            .send(registry, address, tag, &request.command, now);
        self.on_step(index, step, now);
    }

    fn try_finished(&mut self, index: usize, result: TryResult, now: Instant) {
        self.clients[index].waiting = Waiting::Nothing;
        let now_ms = self.ms(now);
        let action = self.clients[index].machine.try_finished(result, now_ms);
        self.act(index, action, now);
    }

    /// Every error reply is counted as it comes; the machine decides what
    /// it means for the command.
    fn on_reply(&mut self, index: usize, reply: &Answer, now: Instant) {
        if !matches!(self.clients[index].waiting, Waiting::Reply { .. }) {
            return; // nothing was asked: ignored
        }
        let opening = self.clients[index].purpose == Some(Purpose::Register);
        let error = match classify_reply(reply) {
            ReplyClass::Success => None,
            ReplyClass::Error(kind) => Some(kind),
        };
        let error = match (opening, reply) {
            (true, Answer::Reply(Reply::Session { .. })) => None,
            (true, _) => error.or(Some(ErrorKind::OtherReply)),
            (false, _) => error,
        };
        if let Some(kind) = error {
            self.record_error(kind);
            self.last_error = Some(format!("{}: {reply}", self.clients[index].target));
        }
        self.try_finished(index, TryResult::Reply(reply.clone()), now);
    }

    /// Lets the next waiting client open its session. Called once per opened
    /// session, which keeps the window of first connects bounded.
    fn activate_next_client(&mut self, now: Instant) {
        let index = self.clients_active;
        if index == self.clients.len() {
            return;
        }
        self.clients_active += 1;
        self.clients[index].active = true;
        self.open_session(index, now);
    }

    fn open_session(&mut self, index: usize, now: Instant) {
        let now_ms = self.ms(now);
        let client = &mut self.clients[index];
        client.purpose = Some(Purpose::Register);
        let action = client.machine.open_session(now_ms);
        self.act(index, action, now);
    }

    /// The machine ended a command: a session opened (or not), or an
    /// operation succeeded or failed.
    fn command_done(&mut self, index: usize, answer: Answer, now: Instant) {
        let client = &mut self.clients[index];
        client.waiting = Waiting::Nothing;
        match client.purpose.take() {
            Some(Purpose::Register) => match answer {
                Answer::Reply(Reply::Session { .. }) => self.on_registered(index, now),
                // Setup keeps trying; later, a write opens it on its own.
                _ if self.phase == Phase::Setup => self.open_session(index, now),
                _ => self.enqueue_ready(index),
            },
            Some(Purpose::Operation) => {
                let succeeded = classify_reply(&answer) == ReplyClass::Success;
                self.finish_operation(index, succeeded, now);
            }
            None => {}
        }
    }

    fn on_registered(&mut self, index: usize, now: Instant) {
        let client = &mut self.clients[index];
        let first_session = !client.registered_once;
        client.registered_once = true;
        self.enqueue_ready(index);
        if first_session {
            self.sessions_opened += 1;
            self.activate_next_client(now);
        }
    }

    /// A connection failed: counted; for the try out on it, "not sent" if
    /// it never opened, else "unknown".
    fn on_connection_failure(&mut self, index: usize, kind: ErrorKind, error: &str, now: Instant) {
        self.record_error(kind);
        self.last_error = Some(format!("{}: {error}", self.clients[index].target));
        if !matches!(self.clients[index].waiting, Waiting::Reply { .. }) {
            return; // an idle connection: the next try opens another
        }
        let result = match kind {
            ErrorKind::ConnectFailed => TryResult::NotSent(error.to_string()),
            _ => TryResult::Unknown(error.to_string()),
        };
        self.try_finished(index, result, now);
    }

    /// Slow connects, tries past their limit and pauses that are over,
    /// checked every TIMER_SCAN_INTERVAL.
    fn check_timers(&mut self, index: usize, now: Instant) {
        let connect_timeout = self.settings.timeout.min(CONNECT_TIMEOUT_MAX);
        let client = &mut self.clients[index];
        if client
            .connection
            .connecting_since()
            .is_some_and(|since| now - since >= connect_timeout)
        {
            client.connection.close(self.poll.registry());
            let error = format!("connect timed out after {} ms", connect_timeout.as_millis());
            return self.on_connection_failure(index, ErrorKind::ConnectFailed, &error, now);
        }
        match client.waiting {
            Waiting::Reply { sent_at, limit } if now - sent_at >= limit => {
                // Dropped, so that a late reply cannot be taken for the
                // next request's, and a stalled node is left behind.
                client.connection.close(self.poll.registry());
                self.record_error(ErrorKind::Timeout);
                let what = format!("no reply within {} ms", limit.as_millis());
                self.try_finished(index, TryResult::Unknown(what), now);
            }
            Waiting::Pause { until } if now >= until => {
                client.waiting = Waiting::Nothing;
                let now_ms = self.ms(now);
                let action = self.clients[index].machine.resume(now_ms);
                self.act(index, action, now);
            }
            _ => {}
        }
    }

    fn finish_operation(&mut self, index: usize, succeeded: bool, now: Instant) {
        let client = &mut self.clients[index];
        let Some(operation) = client.operation.take() else {
            return;
        };
        client.waiting = Waiting::Nothing;
        assert!(self.in_progress > 0);
        self.in_progress -= 1;
        let stats = if operation.measured {
            &mut self.measured
        } else {
            &mut self.unmeasured
        };
        if succeeded {
            stats.record_success(now.saturating_duration_since(operation.intended_start));
            self.second_operations += 1;
        } else {
            stats.record_failure();
            self.fill_failed += u64::from(self.phase == Phase::Fill);
        }
        self.enqueue_ready(index);
    }

    /// A leader hint as a socket address. Hints are IP:PORT unless the
    /// cluster was started with host names; a name is looked up once (that
    /// blocks the loop, hence the cache) and a failure is remembered too.
    fn resolve(&mut self, text: &str) -> Option<SocketAddr> {
        if let Ok(address) = text.parse::<SocketAddr>() {
            return Some(address);
        }
        if let Some(cached) = self.addresses.get(text) {
            return *cached;
        }
        let address = text
            .to_socket_addrs()
            .ok()
            .and_then(|mut found| found.next());
        if self.addresses.len() < ADDRESS_CACHE_MAX {
            self.addresses.insert(text.to_string(), address);
        }
        address
    }

    fn record_error(&mut self, kind: ErrorKind) {
        match self.phase {
            Phase::Measure | Phase::Drain => self.measured.record_error(kind),
            Phase::Setup | Phase::Fill | Phase::Warmup | Phase::Done => {
                self.unmeasured.record_error(kind)
            }
        }
    }

    fn enqueue_ready(&mut self, index: usize) {
        let client = &mut self.clients[index];
        if !client.ready_queued {
            client.ready_queued = true;
            self.ready.push(index);
        }
    }

    /// Open loop: hands each operation whose send time has come to its
    /// client. A busy client keeps it (a count, not a queue) and sends it when
    /// free; its latency still counts from the scheduled time.
    fn release_due(&mut self, now: Instant) {
        let Some(schedule) = self.schedule.clone() else {
            return;
        };
        if !self.issues_operations() {
            return;
        }
        loop {
            let due = schedule.due(self.release_next);
            if due > now || self.measure_end_planned.is_some_and(|end| due >= end) {
                return;
            }
            let measured = due >= self.measure_start;
            if measured
                && self
                    .settings
                    .ops
                    .is_some_and(|target| self.released_measured >= target)
            {
                return;
            }
            self.released_measured += u64::from(measured);
            let index = schedule.client_of(self.release_next);
            self.release_next += 1;
            self.clients[index].released += 1;
            self.enqueue_ready(index);
        }
    }

    /// Offers a new operation to each client queued as ready. Clients queued
    /// again meanwhile wait for the next turn, so one turn stays bounded.
    fn start_ready(&mut self, now: Instant) {
        if !self.issues_operations() {
            return;
        }
        let count = self.ready.len();
        for position in 0..count {
            let index = self.ready[position];
            self.clients[index].ready_queued = false;
            self.start_operation_if_due(index, now);
        }
        self.ready.drain(..count);
    }

    fn start_operation_if_due(&mut self, index: usize, now: Instant) {
        let client = &self.clients[index];
        let busy = client.operation.is_some()
            || client.machine.busy()
            || !matches!(client.waiting, Waiting::Nothing);
        if busy || !client.active {
            return;
        }
        if self.phase == Phase::Fill {
            return self.begin_fill_write(index, now);
        }
        let intended = match &self.schedule {
            None => {
                // Closed loop: the end of the window ends new operations.
                if self.phase == Phase::Drain {
                    return;
                }
                let counting = self.phase == Phase::Measure;
                if counting
                    && self
                        .settings
                        .ops
                        .is_some_and(|target| self.measured_started >= target)
                {
                    return;
                }
                now
            }
            Some(schedule) if client.started < client.released => {
                schedule.due(schedule.number_of(index, client.started))
            }
            Some(_) => return,
        };
        self.begin_operation(index, intended, now);
    }

    /// The fill's next key, written by client `index`; nothing once every
    /// key is handed out.
    fn begin_fill_write(&mut self, index: usize, now: Instant) {
        let key_index = self.fill_next;
        if key_index == self.settings.workload.keys {
            return;
        }
        self.fill_next += 1;
        self.in_progress += 1;
        let now_ms = self.ms(now);
        let client = &mut self.clients[index];
        let command = self
            .settings
            .workload
            .fill_command(key_index, &client.value);
        let action = client.machine.start(&command, now_ms);
        client.purpose = Some(Purpose::Operation);
        client.operation = Some(Operation {
            intended_start: now,
            measured: false,
        });
        self.act(index, action, now);
    }

    fn begin_operation(&mut self, index: usize, intended: Instant, now: Instant) {
        let measured = matches!(self.phase, Phase::Measure | Phase::Drain)
            && intended >= self.measure_start
            && self.measure_end_planned.is_none_or(|end| intended < end);
        self.measured_started += u64::from(measured);
        self.in_progress += 1;
        let now_ms = self.ms(now);
        let client = &mut self.clients[index];
        let (_, command) = self
            .settings
            .workload
            .next_command(&mut client.random, &client.value);
        let action = client.machine.start(&command, now_ms);
        client.purpose = Some(Purpose::Operation);
        client.operation = Some(Operation {
            intended_start: intended,
            measured,
        });
        if self.schedule.is_some() {
            client.started += 1;
            self.started_total += 1;
        }
        self.act(index, action, now);
    }

    fn print_progress(&mut self, now: Instant) {
        let interval = now
            .saturating_duration_since(self.progress_last)
            .as_secs_f64();
        let (label, stats) = match self.phase {
            Phase::Fill => ("  (fill)", &self.unmeasured),
            Phase::Warmup => ("  (warmup)", &self.unmeasured),
            Phase::Drain => ("  (drain)", &self.measured),
            _ => ("", &self.measured),
        };
        write_stdout(&format!(
            "{:>7.1} s {:>10.0} ops/s   total {:>10}   errors {:>7}{label}\n",
            (now - self.run_start).as_secs_f64(),
            self.second_operations as f64 / interval.max(f64::EPSILON),
            stats.operations_succeeded,
            stats.errors_total(),
        ));
        self.second_operations = 0;
        self.progress_last = now;
        // After a stall, resume the one-second rhythm instead of catching up.
        self.progress_next = (self.progress_next + PROGRESS_INTERVAL).max(now);
    }

    fn finish(&mut self, now: Instant) -> Outcome {
        let reached = self.sessions_opened > 0;
        let measure_end = self.measure_end.unwrap_or(now);
        let measured_seconds = if reached {
            measure_end
                .saturating_duration_since(self.measure_start)
                .as_secs_f64()
        } else {
            0.0
        };
        let cpu_end = self.cpu_end.or_else(CpuTicks::read);
        let cpu = match (self.cpu_start, cpu_end) {
            (Some(start), Some(end)) => Some(end.seconds_since(start)),
            _ => None,
        };
        Outcome {
            reached,
            last_error: self.last_error.take(),
            measured: std::mem::take(&mut self.measured),
            measured_seconds,
            operations_unfinished: self.count_unfinished(),
            cpu,
        }
    }

    /// Measured operations in flight at the end, plus (open loop) measured
    /// operations released to a client that never got to send them.
    fn count_unfinished(&self) -> u64 {
        let in_flight = self
            .clients
            .iter()
            .filter(|client| {
                client
                    .operation
                    .as_ref()
                    .is_some_and(|operation| operation.measured)
            })
            .count() as u64;
        let Some(schedule) = &self.schedule else {
            return in_flight;
        };
        let first_measured = schedule.first_due_from(self.measure_start);
        let clients = self.clients.len() as u64;
        let backlog: u64 = self
            .clients
            .iter()
            .enumerate()
            .map(|(index, client)| {
                // The client's k-th operation has number index + k * clients.
                let first = first_measured
                    .saturating_sub(index as u64)
                    .div_ceil(clients);
                client.released.saturating_sub(client.started.max(first))
            })
            .sum();
        in_flight + backlog
    }
}

/// Client `index`'s machine: the --cluster addresses starting at its own
/// (the first connections spread over the nodes given), `--timeout` per
/// command.
fn machine_config(settings: &Settings, index: usize) -> ClientConfig {
    let seeds = &settings.seeds;
    let start = index % seeds.len();
    let ordered = seeds[start..].iter().chain(&seeds[..start]);
    ClientConfig {
        seeds: ordered.map(SocketAddr::to_string).collect(),
        timeout_ms: u64::try_from(settings.timeout.as_millis()).unwrap_or(u64::MAX),
        redirect: true,
        sessions: true,
        seed: settings.seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        planted_bug: None,
    }
}

/// "no errors", or the count of each kind seen.
fn errors_line(stats: &Stats) -> String {
    let kinds = stats.error_counts();
    if kinds.is_empty() {
        "no errors".to_string()
    } else {
        format!("errors: {}", kinds.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftlite::core::{LogIndex, Term};
    use raftlite::reply::Leader;
    use raftlite::wire::{encode_client_response, Frame, FrameDecoder};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    /// A stand-in node on a loopback port: each request's command goes
    /// through `answer`, and `None` means never reply.
    fn fake_node(answer: fn(&str, u64, u64) -> Option<Reply>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || serve(stream, answer));
            }
        });
        address
    }

    fn serve(mut stream: TcpStream, answer: fn(&str, u64, u64) -> Option<Reply>) {
        let mut decoder = FrameDecoder::new();
        loop {
            let spare = decoder.spare(4096);
            let count = match stream.read(spare) {
                Ok(0) | Err(_) => return,
                Ok(count) => count,
            };
            decoder.commit(count);
            while let Ok(Some(Frame::ClientRequest(request))) = decoder.next_frame() {
                let reply = answer(&request.command, request.session_id, request.sequence);
                let Some(reply) = reply else { continue };
                let mut out = Vec::new();
                encode_client_response(request.request_id, &reply, &mut out);
                if stream.write_all(&out).is_err() {
                    return;
                }
            }
        }
    }

    /// Answers REGISTER; closes the connection on anything else.
    fn serve_sessions_only(mut stream: TcpStream) {
        let mut decoder = FrameDecoder::new();
        while let Ok(count @ 1..) = stream.read(decoder.spare(4096)) {
            decoder.commit(count);
            while let Ok(Some(Frame::ClientRequest(request))) = decoder.next_frame() {
                if request.command != "REGISTER" {
                    return;
                }
                let mut out = Vec::new();
                let reply = Reply::Session { id: 7 };
                encode_client_response(request.request_id, &reply, &mut out);
                if stream.write_all(&out).is_err() {
                    return;
                }
            }
        }
    }

    fn leader_answer(command: &str, session_id: u64, sequence: u64) -> Option<Reply> {
        let reply = match command.split(' ').next() {
            Some("REGISTER") => Reply::Session { id: 7 },
            // Writes must come numbered in the session.
            Some("SET") if session_id == 7 && sequence > 0 => Reply::Ok {
                index: LogIndex(9),
                term: Term(1),
            },
            Some("GET") if session_id == 0 => Reply::NotFound,
            _ => Reply::BadRequest("unexpected".into()),
        };
        Some(reply)
    }

    fn settings(seeds: Vec<SocketAddr>, read_ratio: f64, timeout_ms: u64) -> Settings {
        Settings {
            seeds,
            protocol: Protocol::Raftlite,
            clients: 4,
            workload: Workload {
                keys: 1000,
                key_size: 8,
                value_size: 16,
                read_ratio,
            },
            rate: None,
            duration: Some(Duration::from_millis(300)),
            ops: None,
            warmup: Duration::ZERO,
            timeout: Duration::from_millis(timeout_ms),
            seed: 1,
            fill: false,
        }
    }

    #[test]
    fn clients_follow_the_leader_hint_and_number_their_writes() {
        static LEADER: std::sync::OnceLock<SocketAddr> = std::sync::OnceLock::new();
        let leader = *LEADER.get_or_init(|| fake_node(leader_answer));
        let follower = fake_node(|_, _, _| {
            let leader = LEADER.get().expect("leader first");
            let leader = Leader {
                id: "A".to_string(),
                address: leader.to_string(),
            };
            Some(Reply::NotLeader {
                leader: Some(leader),
            })
        });
        let started = Instant::now();
        let outcome = run(settings(vec![follower, leader], 0.5, 1000)).expect("runs");
        assert!(outcome.reached);
        assert!(outcome.measured.operations_succeeded > 100);
        assert_eq!(outcome.measured.operations_failed, 0);
        // Redirects happened in setup; once on the leader, clients stay there.
        assert_eq!(outcome.measured.errors_total(), 0);
        assert!((outcome.measured_seconds - 0.3).abs() < 1e-9);
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// The keys of every SET the fill test's node received.
    static FILLED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

    #[test]
    fn fill_writes_every_key_once_before_the_measured_reads() {
        let node = fake_node(|command, session_id, sequence| {
            if let Some(rest) = command.strip_prefix("SET ") {
                let key = rest.split(' ').next().unwrap_or_default().to_string();
                FILLED.lock().expect("not poisoned").push(key);
            }
            leader_answer(command, session_id, sequence)
        });
        let mut settings = settings(vec![node], 1.0, 1000);
        settings.workload.keys = 50;
        settings.fill = true;
        let outcome = run(settings).expect("runs");
        // Only reads are measured; the fill's writes are not counted.
        assert!(outcome.measured.operations_succeeded > 0);
        assert_eq!(outcome.measured.errors_total(), 0);
        let mut filled = FILLED.lock().expect("not poisoned").clone();
        filled.sort();
        let expected: Vec<String> = (0..50).map(|index| format!("k{index:07}")).collect();
        assert_eq!(filled, expected);
    }

    #[test]
    fn unanswered_operations_time_out_and_the_run_still_ends_on_time() {
        let node = fake_node(|command, session_id, sequence| {
            if command.starts_with("SET") {
                return None; // the write is never answered
            }
            leader_answer(command, session_id, sequence)
        });
        let started = Instant::now();
        let outcome = run(settings(vec![node], 0.5, 50)).expect("runs");
        let measured = &outcome.measured;
        assert!(measured.operations_succeeded > 0, "reads succeed");
        assert!(measured.operations_failed > 0, "writes time out");
        assert_eq!(
            measured.error_count(ErrorKind::Timeout),
            measured.operations_failed
        );
        // Setup, 300 ms of load, then at most one timeout of drain.
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn open_loop_sends_at_the_scheduled_rate() {
        let node = fake_node(leader_answer);
        let mut settings = settings(vec![node], 0.5, 1000);
        settings.rate = Some(2000.0);
        let outcome = run(settings).expect("runs");
        // 2000/s for 300 ms: 600 operations are due; all but the ones in
        // flight at the very end finish.
        let finished = outcome.measured.operations_succeeded + outcome.operations_unfinished;
        assert_eq!(finished, 600);
        assert_eq!(outcome.measured.operations_failed, 0);
    }

    /// A node that opens sessions but drops the connection on every
    /// operation, as a node at its connection limit or one that just died
    /// would: clients count the lost connections and reconnect at a pace.
    #[test]
    fn lost_connections_are_counted_and_retried_with_backoff() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static ACCEPTED: AtomicUsize = AtomicUsize::new(0);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                ACCEPTED.fetch_add(1, Ordering::Relaxed);
                std::thread::spawn(move || serve_sessions_only(stream));
            }
        });
        let outcome = run(settings(vec![address], 0.5, 1000)).expect("runs");
        let measured = &outcome.measured;
        assert_eq!(measured.operations_succeeded, 0);
        assert!(measured.error_count(ErrorKind::ConnectionLost) > 0);
        // 4 clients for 300 ms plus up to 1 s of drain: a fixed 25 ms pause
        // made about 130 connections, the backoff about 30.
        let accepted = ACCEPTED.load(Ordering::Relaxed);
        assert!(accepted <= 4 * 20, "{accepted} connections");
    }

    #[test]
    fn definite_errors_fail_the_operation_without_retry() {
        let node = fake_node(|command, session_id, sequence| {
            if command.starts_with("GET") {
                return Some(Reply::Unavailable("too many pending reads".into()));
            }
            leader_answer(command, session_id, sequence)
        });
        let outcome = run(settings(vec![node], 1.0, 1000)).expect("runs");
        let measured = &outcome.measured;
        assert_eq!(measured.operations_succeeded, 0);
        assert!(measured.operations_failed > 0);
        assert_eq!(
            measured.error_count(ErrorKind::Unavailable),
            measured.operations_failed
        );
    }
}
