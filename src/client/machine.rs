//! The client's rules, without IO: which node to try, when to pause, how to
//! number writes in a session, and what a command's end result is. Every
//! client runs this machine (`submit` through `blocking.rs`, `bench` on its
//! mio loop, the simulator's clients on simulated time); only the IO under
//! it differs, as with the node driver (src/driver.rs).
//!
//! A command goes: `start` → `Action::Send` (a try at one node) → the IO
//! reports how the try ended with `try_finished` → another `Send`, a
//! `Pause` (the IO calls `resume` at its end) or `Done` with the answer.
//! Time is whatever milliseconds the IO counts, only ever compared.
//!
//! Every try ends in one of three ways: a reply; "not sent" (the request's
//! bytes certainly never reached a node: the connect failed, or the
//! connection was found closed before its first byte was written); or
//! "unknown" (written, then no reply or the node's own `ERR TIMEOUT`). Only
//! an unknown try of a write can have been applied, so only that may turn
//! the end result into `ERR TIMEOUT`; a command none of whose tries can have
//! been applied ends in `ERR UNAVAILABLE reason`, the reason saying what
//! each node did. A retried write keeps its number in the session, so the
//! cluster applies it at most once.

use crate::constants::COMMAND_SIZE_MAX;
use crate::core::rng::Rng;
use crate::core::PlantedBug;
use crate::kv::ParseError;
use crate::reply::{Answer, Asked, Reply, ReplyKind};
use crate::wire::ClientRequest;
use core::time::Duration;

/// Redirects followed for one command before giving up on hints.
pub const REDIRECTS_MAX: usize = 16;
/// Longest wait for one reply before trying another node.
pub const ATTEMPT_TIMEOUT_MS: u64 = 1000;
/// First pause after a failed round of tries. A refused loopback connect
/// fails in microseconds, so without a pause a down cluster is hammered
/// thousands of times a second; 10 ms is still short next to an election
/// (150-300 ms), so a node restarting or a leader hint racing an election
/// costs little.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(10);
/// Longest pause between rounds of tries (one try of each known node): the
/// pauses double up to this. A tenth of a second keeps a client that waits
/// for a cluster to come back at a few dozen tries a second, and adds at
/// most that much to a failover (an election takes 150-300 ms; 500 ms
/// here doubled the median failover the bench measures).
pub const BACKOFF_MAX: Duration = Duration::from_millis(100);
/// Nodes named in a synthesized `ERR UNAVAILABLE` reason, and the bytes of
/// what is said about each: the reply line stays short whatever happened.
pub(super) const REASON_NODES_MAX: usize = 8;
pub(super) const REASON_PART_SIZE_MAX: usize = 120;

const _: () = assert!(BACKOFF_INITIAL.as_millis() > 0);
const _: () = assert!(BACKOFF_INITIAL.as_millis() <= BACKOFF_MAX.as_millis());
const _: () = assert!(BACKOFF_MAX.as_millis() < ATTEMPT_TIMEOUT_MS as u128);

/// Capped exponential backoff with "equal" jitter: after `n` failures the
/// pause is uniform in `[c/2, c]`, `c = min(BACKOFF_MAX, BACKOFF_INITIAL *
/// 2^n)`. The fixed half makes the pauses grow; the random half keeps
/// clients that failed together (a node died under all of them) from
/// retrying in lockstep.
#[derive(Clone, Debug)]
pub struct Backoff {
    rng: Rng,
    /// Failures since the last `reset`; saturates, the pause is capped anyway.
    failures: u32,
}

impl Backoff {
    pub fn new(seed: u64) -> Backoff {
        Backoff {
            rng: Rng::new(seed),
            failures: 0,
        }
    }

    /// The pause before the next try; each call counts one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let initial = BACKOFF_INITIAL.as_micros() as u64;
        let cap = BACKOFF_MAX.as_micros() as u64;
        // 2^20 times the initial pause is far beyond the cap: no overflow.
        let ceiling = (initial << self.failures.min(20)).min(cap);
        self.failures = self.failures.saturating_add(1);
        let floor = ceiling / 2;
        Duration::from_micros(floor + self.rng.range_inclusive(0, ceiling - floor))
    }

    /// A try succeeded (or a new command starts): pauses start small again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// How a client is set up.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Where to look for the cluster; not empty. Tries start at the first.
    pub seeds: Vec<String>,
    /// How long one command may take, tries and pauses included.
    pub timeout_ms: u64,
    /// Follow `ERR NOT_LEADER` hints and try other nodes.
    pub redirect: bool,
    /// Number writes in a session (exactly once). Without, writes go
    /// unnumbered and a retry may apply twice: only the simulator turns
    /// this off, to exercise unnumbered log commands.
    pub sessions: bool,
    /// Seeds the backoff's jitter.
    pub seed: u64,
    /// Test builds only (feature `planted-bugs`): misbehave in one way.
    pub planted_bug: Option<PlantedBug>,
}

/// A try the IO must make: send `request` to `to` and report how it ended
/// within `limit_ms` (no reply by then: unknown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Try {
    pub to: String,
    /// Do not reuse a kept connection to `to`: the client moved on from it.
    pub reconnect: bool,
    pub request: ClientRequest,
    pub limit_ms: u64,
    /// How to read the reply line (`Answer::from_line`).
    pub asked: Asked,
}

/// What the IO must do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Send(Try),
    /// Wait until then, then call `resume`.
    Pause {
        until_ms: u64,
    },
    /// The command is over.
    Done(Answer),
}

/// How a try ended, as the IO saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TryResult {
    Reply(Answer),
    /// Certainly not delivered; says why ("connection refused").
    NotSent(String),
    /// Written, then no reply: the outcome is unknown; says why.
    Unknown(String),
}

/// How a command may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Answered by the node contacted (STATUS, SNAPSHOT): never
    /// redirected or retried.
    Status,
    /// Changes nothing: safe to retry anywhere (GET).
    Read,
    /// The same, read from the node's own copy (SGET).
    StaleRead,
    /// Numbered in the session: a retry is applied at most once.
    Write,
    /// Opening a session: a retry at worst leaves an unused session.
    Register,
    /// An admin request to the leader (TRANSFER): no session, follows
    /// NOT_LEADER, and safe to retry (a transfer that happened answers a
    /// retry at the new leader with `OK leader=` at once).
    Admin,
    /// Anything else (the server will refuse it): sent once.
    Other,
}

impl Kind {
    pub fn of(command: &str) -> Kind {
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match verb.as_str() {
            "STATUS" | "SNAPSHOT" => Kind::Status,
            "GET" => Kind::Read,
            "SGET" => Kind::StaleRead,
            "SET" | "DEL" | "CAS" => Kind::Write,
            "REGISTER" => Kind::Register,
            "TRANSFER" => Kind::Admin,
            _ => Kind::Other,
        }
    }

    fn retry_safe(self) -> bool {
        matches!(
            self,
            Kind::Read | Kind::StaleRead | Kind::Write | Kind::Register | Kind::Admin
        )
    }

    fn asked(self) -> Asked {
        match self {
            Kind::StaleRead => Asked::StaleRead,
            _ => Asked::Other,
        }
    }
}

/// A definite failure may only be reported if no earlier try of the same
/// command can have been applied; otherwise the truth is "unknown".
pub(super) fn settle(answer: Answer, progress: &Progress) -> Answer {
    let definite_failure = matches!(answer.kind(), ReplyKind::NotLeader | ReplyKind::Error);
    if progress.maybe_applied && definite_failure {
        return Reply::Timeout.into();
    }
    answer
}

/// The end of a command whose deadline passed without a final reply: unknown
/// if a try may have been applied, else unavailable, headed by the most
/// telling thing seen: a node that answered (it is up but knows no leader it
/// can send us to), a request that went unanswered (for a write, the
/// REGISTER before it: the command itself was never sent), or only
/// connections that failed before sending.
pub(super) fn conclude(progress: &Progress, kind: Kind) -> Reply {
    if progress.maybe_applied {
        return Reply::Timeout;
    }
    let observations = &progress.observations;
    let headline = if observations.seen_answer {
        "no leader"
    } else if !observations.seen_unanswered {
        "no node reachable"
    } else if kind == Kind::Register {
        "no session opened"
    } else {
        "no reply"
    };
    observations.unavailable(headline)
}

/// Where one command stands while it is retried.
pub(super) struct Progress {
    deadline_ms: u64,
    redirects: usize,
    /// A try of the command was written and not definitely answered: it may
    /// have been applied (unknown outcome). Only writes set it: a read or a
    /// STATUS changes nothing, and a lost REGISTER at worst leaves an unused
    /// session while the command behind it has not been sent.
    pub(super) maybe_applied: bool,
    pub(super) observations: Observations,
}

impl Progress {
    pub(super) fn new(deadline_ms: u64) -> Progress {
        Progress {
            deadline_ms,
            redirects: 0,
            maybe_applied: false,
            observations: Observations::default(),
        }
    }
}

/// What happened at one node, as far as the client can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Seen {
    /// The request certainly did not reach it.
    NotSent,
    /// The request was written; no reply came, or `ERR TIMEOUT`.
    Unanswered,
    /// It answered, but not with what the command needs (`NOT_LEADER`).
    Answered,
}

/// The latest event at each node a command tried, for the reason of an
/// `ERR UNAVAILABLE` line. Bounded: `REASON_NODES_MAX` nodes, each part
/// `REASON_PART_SIZE_MAX` bytes.
#[derive(Default)]
pub(super) struct Observations {
    /// (address, what happened there), in the order first tried.
    nodes: Vec<(String, String)>,
    /// Some node was left out of `nodes` (it was full).
    nodes_left_out: bool,
    seen_answer: bool,
    seen_unanswered: bool,
}

impl Observations {
    pub(super) fn record(&mut self, address: &str, seen: Seen, what: &str) {
        self.seen_answer |= seen == Seen::Answered;
        self.seen_unanswered |= seen == Seen::Unanswered;
        let what = truncated(what, REASON_PART_SIZE_MAX);
        let address = truncated(address, REASON_PART_SIZE_MAX);
        if let Some(node) = self.nodes.iter_mut().find(|node| node.0 == address) {
            node.1 = what;
        } else if self.nodes.len() < REASON_NODES_MAX {
            self.nodes.push((address, what));
        } else {
            self.nodes_left_out = true;
        }
    }

    /// `ERR UNAVAILABLE headline (node: what; node: what; ...)`.
    pub(super) fn unavailable(&self, headline: &str) -> Reply {
        let mut parts: Vec<String> = self
            .nodes
            .iter()
            .map(|(address, what)| format!("{address}: {what}"))
            .collect();
        if self.nodes_left_out {
            parts.push("other nodes".to_string());
        }
        if parts.is_empty() {
            parts.push("no node tried before the deadline".to_string());
        }
        Reply::Unavailable(format!("{headline} ({})", parts.join("; ")).into())
    }
}

/// What a node said, as an `ERR UNAVAILABLE` reason names it
/// (`NOT_LEADER leader=unknown`).
pub(super) fn error_words(reply: &Reply) -> String {
    reply
        .error_words()
        .map_or_else(String::new, |words| words.to_string())
}

/// `text` cut to at most `size_max` bytes, at a character boundary.
fn truncated(text: &str, size_max: usize) -> String {
    if text.len() <= size_max {
        return text.to_string();
    }
    let mut end = size_max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// What the command in flight is trying now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Opening the session its write needs (or, for `open_session`, the
    /// whole command).
    Registering,
    /// The command itself.
    Running,
}

struct Command {
    line: String,
    kind: Kind,
    stage: Stage,
    /// `open_session`: done once the session is open.
    session_only: bool,
    progress: Progress,
}

/// What a reply means for the command in flight.
enum Verdict {
    Final,
    /// Try again (the machine has chosen where, and whether to pause).
    Retry(Action),
    /// The cluster no longer knows our session.
    Expired,
}

/// One client: at most one command in flight.
pub struct ClientMachine {
    config: ClientConfig,
    seed_next: usize,
    /// Failed tries since the last backoff pause (a round is one per seed).
    tries_since_pause: usize,
    /// Where to send the next try (the last known leader).
    target: String,
    reconnect: bool,
    request_id_next: u64,
    /// Opened before the first write; writes are numbered in it so that a
    /// retried write is applied at most once.
    session_id: Option<u64>,
    /// The number of the last write that ended in this session.
    sequence: u64,
    backoff: Backoff,
    command: Option<Command>,
}

impl ClientMachine {
    pub fn new(config: ClientConfig) -> ClientMachine {
        assert!(
            !config.seeds.is_empty(),
            "a client needs at least one address"
        );
        ClientMachine {
            target: config.seeds[0].clone(),
            seed_next: 1,
            tries_since_pause: 0,
            reconnect: false,
            request_id_next: 1,
            session_id: None,
            sequence: 0,
            backoff: Backoff::new(config.seed),
            command: None,
            config,
        }
    }

    pub fn session_id(&self) -> Option<u64> {
        self.session_id
    }

    /// Whether a command is in flight.
    pub fn busy(&self) -> bool {
        self.command.is_some()
    }

    /// Starts `command`; the answer comes with `Action::Done`.
    pub fn start(&mut self, command: &str, now_ms: u64) -> Action {
        assert!(self.command.is_none(), "one command at a time");
        if command.len() > COMMAND_SIZE_MAX {
            // The node's own words for it, without sending it.
            let error = ParseError::LineTooLong {
                size: command.len(),
            };
            return Action::Done(Reply::BadRequest(error.to_string().into()).into());
        }
        let kind = Kind::of(command);
        let needs_session = kind == Kind::Write && self.config.sessions;
        let stage = match needs_session && self.session_id.is_none() {
            true => Stage::Registering,
            false => Stage::Running,
        };
        self.begin(command, kind, stage, false, now_ms)
    }

    /// Opens a session (as before a first write), and ends there: Done
    /// with the `SESSION` reply, or with why none could be opened.
    pub fn open_session(&mut self, now_ms: u64) -> Action {
        assert!(self.command.is_none(), "one command at a time");
        self.session_id = None;
        self.begin("REGISTER", Kind::Register, Stage::Registering, true, now_ms)
    }

    fn begin(
        &mut self,
        line: &str,
        kind: Kind,
        stage: Stage,
        session_only: bool,
        now_ms: u64,
    ) -> Action {
        self.backoff.reset();
        self.tries_since_pause = 0;
        let deadline_ms = now_ms.saturating_add(self.config.timeout_ms);
        self.command = Some(Command {
            line: line.to_string(),
            kind,
            stage,
            session_only,
            progress: Progress::new(deadline_ms),
        });
        self.next_try(now_ms)
    }

    /// A pause the machine asked for is over.
    pub fn resume(&mut self, now_ms: u64) -> Action {
        self.next_try(now_ms)
    }

    /// The IO's account of the try it was sent on.
    pub fn try_finished(&mut self, result: TryResult, now_ms: u64) -> Action {
        let kind = self.kind_now();
        let answer = match result {
            TryResult::Reply(answer) => answer,
            // STATUS describes the node asked; another node's would
            // mislead. It changes nothing, so no answer is no outcome.
            TryResult::NotSent(what) | TryResult::Unknown(what) if kind == Kind::Status => {
                let reason = format!("{}: {what}", self.target);
                return self.done(Reply::Unavailable(reason.into()).into());
            }
            TryResult::NotSent(what) => {
                self.record(Seen::NotSent, &what);
                return self.back_off_and_move_on(now_ms);
            }
            // A verb this client does not know may change state on a newer
            // server: sent once, its loss is an unknown outcome.
            TryResult::Unknown(_) if kind == Kind::Other => {
                return self.done(Reply::Timeout.into())
            }
            TryResult::Unknown(what) => {
                self.record(Seen::Unanswered, &what);
                self.maybe_applied(kind);
                // A reset right after the write fails as fast as a refused
                // connect does: pause here too, or a node that accepts and
                // drops connections is retried in a tight loop.
                return self.back_off_and_move_on(now_ms);
            }
        };
        match self.judge(&answer, kind, now_ms) {
            Verdict::Final => self.final_answer(answer, now_ms),
            Verdict::Retry(action) => action,
            Verdict::Expired => self.session_expired(now_ms),
        }
    }

    fn command(&self) -> &Command {
        self.command.as_ref().expect("a command in flight")
    }

    fn progress_mut(&mut self) -> &mut Progress {
        &mut self.command.as_mut().expect("a command in flight").progress
    }

    /// The kind of what is being tried now (a write's REGISTER is a
    /// REGISTER).
    fn kind_now(&self) -> Kind {
        let command = self.command();
        match command.stage {
            Stage::Registering => Kind::Register,
            Stage::Running => command.kind,
        }
    }

    fn record(&mut self, seen: Seen, what: &str) {
        let target = self.target.clone();
        self.progress_mut().observations.record(&target, seen, what);
    }

    /// A try of `kind` may have been applied.
    fn maybe_applied(&mut self, kind: Kind) {
        if kind != Kind::Write {
            return;
        }
        self.progress_mut().maybe_applied = true;
        if planted_retry_new_sequence(&self.config) {
            // The planted bug: the retry goes under a new number, so the
            // cluster cannot tell it from a new write.
            self.sequence += 1;
        }
    }

    /// The next try, or the end of the command if its time is up.
    fn next_try(&mut self, now_ms: u64) -> Action {
        let kind = self.kind_now();
        let command = self.command();
        let remaining_ms = command.progress.deadline_ms.saturating_sub(now_ms);
        if remaining_ms == 0 {
            let answer = conclude(&command.progress, kind);
            return self.done(answer.into());
        }
        let (line, session_id, sequence) = match (command.stage, self.session_id) {
            (Stage::Registering, _) => ("REGISTER".to_string(), 0, 0),
            (Stage::Running, Some(session_id)) if kind == Kind::Write && self.config.sessions => {
                (command.line.clone(), session_id, self.sequence + 1)
            }
            (Stage::Running, _) => (command.line.clone(), 0, 0),
        };
        let request_id = self.request_id_next;
        self.request_id_next += 1;
        Action::Send(Try {
            to: self.target.clone(),
            reconnect: std::mem::take(&mut self.reconnect),
            request: ClientRequest {
                request_id,
                session_id,
                sequence,
                command: line,
            },
            limit_ms: remaining_ms.min(ATTEMPT_TIMEOUT_MS),
            asked: kind.asked(),
        })
    }

    /// Decides what a reply means for the command in flight.
    fn judge(&mut self, answer: &Answer, kind: Kind, now_ms: u64) -> Verdict {
        if kind == Kind::Status {
            return Verdict::Final;
        }
        let Answer::Reply(reply) = answer else {
            return Verdict::Final; // a line this build cannot read: an error
        };
        match reply {
            Reply::SessionExpired => Verdict::Expired,
            Reply::NotLeader { .. } if self.config.redirect => {
                self.record(Seen::Answered, &error_words(reply));
                Verdict::Retry(self.follow_hint(reply.leader_hint(), now_ms))
            }
            // The node took the command and gave up on it (it waited, or its
            // leadership just changed): try the next node at once.
            Reply::Timeout if kind.retry_safe() => {
                self.record(Seen::Unanswered, &error_words(reply));
                self.maybe_applied(kind);
                self.next_seed();
                Verdict::Retry(self.next_try(now_ms))
            }
            _ => Verdict::Final,
        }
    }

    /// Following a hint is immediate: the hinted node is likely the leader,
    /// and no pause would make it more so. No leader known (an election is
    /// running, or no majority is up), or hints that go round in circles:
    /// the next node, after a pause once a round has failed.
    fn follow_hint(&mut self, hint: Option<&str>, now_ms: u64) -> Action {
        let progress = self.progress_mut();
        match hint {
            Some(address) if progress.redirects < REDIRECTS_MAX => {
                progress.redirects += 1;
                self.retarget(address.to_string());
                self.next_try(now_ms)
            }
            _ => self.back_off_and_move_on(now_ms),
        }
    }

    fn final_answer(&mut self, answer: Answer, now_ms: u64) -> Action {
        let command = self.command.as_mut().expect("a command in flight");
        if command.stage == Stage::Registering {
            let Answer::Reply(Reply::Session { id }) = answer else {
                return self.done(answer); // no session: the write was never sent
            };
            if command.session_only {
                self.session_id = Some(id);
                self.sequence = 0;
                return self.done(answer);
            }
            command.stage = Stage::Running;
            command.progress.redirects = 0;
            self.session_id = Some(id);
            self.sequence = 0;
            return self.next_try(now_ms);
        }
        let answer = settle(answer, &command.progress);
        self.done(answer)
    }

    /// The session was forgotten by the cluster: if no earlier try can have
    /// applied, open a new one and go on.
    fn session_expired(&mut self, now_ms: u64) -> Action {
        self.session_id = None;
        let command = self.command.as_mut().expect("a command in flight");
        if command.stage == Stage::Registering || command.progress.maybe_applied {
            return self.done(Reply::Timeout.into());
        }
        command.stage = Stage::Registering;
        self.next_try(now_ms)
    }

    /// Ends the command. A write that was sent used up its number, whatever
    /// its end: the next write must not be taken for its retry.
    fn done(&mut self, answer: Answer) -> Action {
        let command = self.command.take().expect("a command in flight");
        if command.stage == Stage::Running && command.kind == Kind::Write {
            self.sequence += 1;
        }
        Action::Done(answer)
    }

    /// Moves to the next seed; once every seed was tried since the last
    /// pause, pauses first, longer with each round that failed (never past
    /// the command's deadline). Trying the other nodes at once is what
    /// finds a new leader quickly; the pause is what keeps a cluster that
    /// is down from being hammered.
    fn back_off_and_move_on(&mut self, now_ms: u64) -> Action {
        self.next_seed();
        self.tries_since_pause += 1;
        if self.tries_since_pause < self.config.seeds.len() {
            return self.next_try(now_ms);
        }
        self.tries_since_pause = 0;
        let remaining_ms = self.command().progress.deadline_ms.saturating_sub(now_ms);
        let pause_ms = (self.backoff.next_delay().as_micros() as u64).div_ceil(1000);
        match pause_ms.min(remaining_ms) {
            0 => self.next_try(now_ms),
            pause_ms => Action::Pause {
                until_ms: now_ms + pause_ms,
            },
        }
    }

    fn retarget(&mut self, address: String) {
        if address != self.target {
            self.target = address;
            self.reconnect = true;
        }
    }

    fn next_seed(&mut self) {
        let seeds = &self.config.seeds;
        let address = seeds[self.seed_next % seeds.len()].clone();
        self.seed_next += 1;
        self.retarget(address);
        self.reconnect = true;
    }
}

#[cfg(feature = "planted-bugs")]
fn planted_retry_new_sequence(config: &ClientConfig) -> bool {
    config.planted_bug == Some(PlantedBug::RetryNewSequence)
}

#[cfg(not(feature = "planted-bugs"))]
fn planted_retry_new_sequence(_config: &ClientConfig) -> bool {
    false
}
