//! A blocking client for one command at a time: connects, follows leader
//! hints, backs off between failed tries, and classifies replies. `submit`,
//! the tests and the benchmark use it.
//!
//! Every try of a command ends in one of three ways: a reply; "not sent"
//! (the request's bytes certainly never reached a node: the connect failed,
//! or the connection was found closed before its first byte was written);
//! or "unknown" (written, then no reply or the node's own `ERR TIMEOUT`).
//! Only an unknown try of a write can have been applied, so only that may
//! turn the end result into `ERR TIMEOUT`; a command none of whose tries can
//! have been applied ends in `ERR UNAVAILABLE reason`, the reason saying
//! what each node did.

use crate::constants::COMMAND_SIZE_MAX;
use crate::core::rng::Rng;
use crate::kv::ParseError;
use crate::reply::{Answer, Asked, Reply, ReplyKind};
use crate::wire::{encode_frame, ClientRequest, Frame, FrameDecoder};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Redirects followed for one command before giving up on hints.
const REDIRECTS_MAX: usize = 16;
/// Longest wait for one reply before trying another node.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1000);
/// First pause after a failed try. A refused loopback connect fails in
/// microseconds, so without a pause a down cluster is hammered thousands of
/// times a second; 10 ms is still short next to an election (150-300 ms), so
/// a node restarting or a leader hint racing an election costs little.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(10);
/// Longest pause between rounds of tries (one try of each known node): the
/// pauses double up to this. A tenth of a second keeps a client that waits
/// for a cluster to come back at a few dozen tries a second, and adds at
/// most that much to a failover (an election takes 150-300 ms; 500 ms
/// here doubled the median failover the bench measures).
pub const BACKOFF_MAX: Duration = Duration::from_millis(100);
/// Longest wait for a TCP connect (a SYN to a host that is gone).
const CONNECT_TIMEOUT_MAX: Duration = Duration::from_secs(2);
/// Nodes named in a synthesized `ERR UNAVAILABLE` reason, and the bytes of
/// what is said about each: the reply line stays short whatever happened.
const REASON_NODES_MAX: usize = 8;
const REASON_PART_SIZE_MAX: usize = 120;

const _: () = assert!(BACKOFF_INITIAL.as_millis() > 0);
const _: () = assert!(BACKOFF_INITIAL.as_millis() <= BACKOFF_MAX.as_millis());
const _: () = assert!(BACKOFF_MAX.as_millis() < ATTEMPT_TIMEOUT.as_millis());

/// Capped exponential backoff with "equal" jitter: after `n` failures the
/// pause is uniform in `[c/2, c]`, `c = min(BACKOFF_MAX, BACKOFF_INITIAL *
/// 2^n)`. The fixed half makes the pauses grow; the random half keeps
/// clients that failed together (a node died under all of them) from
/// retrying in lockstep. Shared by the blocking client and `bench`.
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

    /// Seeded from the clock and the process id, so that clients started in
    /// the same instant (a script's loop, a benchmark's processes) still
    /// draw different pauses.
    pub fn from_clock() -> Backoff {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64);
        Backoff::new(nanos ^ (u64::from(std::process::id()) << 32))
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

pub struct Connection {
    stream: TcpStream,
    decoder: FrameDecoder,
}

pub struct Client {
    /// Where to look for the cluster.
    seeds: Vec<String>,
    seed_next: usize,
    /// Failed tries since the last backoff pause (a round is one per seed).
    tries_since_pause: usize,
    /// Where to send the next command (the last known leader).
    target: String,
    connection: Option<Connection>,
    request_id_next: u64,
    timeout: Duration,
    redirect: bool,
    /// Opened on the first write; writes are numbered in it so that a
    /// retried write is applied at most once.
    session_id: Option<u64>,
    sequence: u64,
    /// Pauses between the failed tries of one command (reset per command).
    backoff: Backoff,
}

/// How a command may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Answered by the node contacted: never redirected or retried.
    Status,
    /// Changes nothing: safe to retry anywhere (GET).
    Read,
    /// The same, read from the node's own copy (SGET).
    StaleRead,
    /// Numbered in the session: a retry is applied at most once.
    Write,
    /// Opening a session: a retry at worst leaves an unused session.
    Register,
    /// Anything else (the server will refuse it): sent once.
    Other,
}

impl Kind {
    fn of(command: &str) -> Kind {
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        match verb.as_str() {
            "STATUS" => Kind::Status,
            "GET" => Kind::Read,
            "SGET" => Kind::StaleRead,
            "SET" | "DEL" | "CAS" => Kind::Write,
            "REGISTER" => Kind::Register,
            _ => Kind::Other,
        }
    }

    fn retry_safe(self) -> bool {
        matches!(
            self,
            Kind::Read | Kind::StaleRead | Kind::Write | Kind::Register
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
fn settle(answer: Answer, progress: &Progress) -> Answer {
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
fn conclude(progress: &Progress, kind: Kind) -> Reply {
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
struct Progress {
    deadline: Instant,
    redirects: usize,
    /// A try of the command was written and not definitely answered: it may
    /// have been applied (unknown outcome). Only writes set it: a read or a
    /// STATUS changes nothing, and a lost REGISTER at worst leaves an unused
    /// session while the command behind it has not been sent.
    maybe_applied: bool,
    observations: Observations,
}

impl Progress {
    fn new(deadline: Instant) -> Progress {
        Progress {
            deadline,
            redirects: 0,
            maybe_applied: false,
            observations: Observations::default(),
        }
    }
}

/// What happened at one node, as far as the client can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
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
struct Observations {
    /// (address, what happened there), in the order first tried.
    nodes: Vec<(String, String)>,
    /// Some node was left out of `nodes` (it was full).
    nodes_left_out: bool,
    seen_answer: bool,
    seen_unanswered: bool,
}

impl Observations {
    fn record(&mut self, address: &str, seen: Seen, what: &str) {
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
    fn unavailable(&self, headline: &str) -> Reply {
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
fn error_words(reply: &Reply) -> String {
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

impl Client {
    /// `seeds` must not be empty.
    pub fn new(seeds: Vec<String>, timeout: Duration, redirect: bool) -> Client {
        assert!(!seeds.is_empty(), "a client needs at least one address");
        Client {
            target: seeds[0].clone(),
            seeds,
            seed_next: 1,
            tries_since_pause: 0,
            connection: None,
            request_id_next: 1,
            timeout,
            redirect,
            session_id: None,
            sequence: 0,
            backoff: Backoff::from_clock(),
        }
    }

    /// Runs one command and returns its reply line: a node's as it came,
    /// or one the client made up (docs/PROTOCOL.md lists those).
    pub fn execute(&mut self, command: &str) -> String {
        self.ask(command).to_string()
    }

    /// Runs one command and returns its answer. Unknown outcomes are
    /// retried (writes under their session number) until the timeout.
    pub fn ask(&mut self, command: &str) -> Answer {
        if command.len() > COMMAND_SIZE_MAX {
            // The node's own words for it, without sending it.
            let error = ParseError::LineTooLong {
                size: command.len(),
            };
            return Reply::BadRequest(error.to_string().into()).into();
        }
        let kind = Kind::of(command);
        let mut progress = Progress::new(Instant::now() + self.timeout);
        self.backoff.reset();
        self.tries_since_pause = 0;
        loop {
            let tag = match kind {
                Kind::Write => match self.session(&mut progress) {
                    Ok(session_id) => (session_id, self.sequence + 1),
                    Err(answer) => return answer,
                },
                _ => (0, 0),
            };
            match self.run(command, kind, tag, &mut progress) {
                Ok(answer) => {
                    if kind == Kind::Write {
                        self.sequence += 1;
                    }
                    return answer;
                }
                // The session was forgotten by the cluster: if no earlier try
                // can have applied, open a new one and go on.
                Err(Expired) if !progress.maybe_applied => self.session_id = None,
                Err(Expired) => {
                    self.session_id = None;
                    return Reply::Timeout.into();
                }
            }
        }
    }

    /// The session id, opening one first if needed.
    fn session(&mut self, progress: &mut Progress) -> Result<u64, Answer> {
        if let Some(session_id) = self.session_id {
            return Ok(session_id);
        }
        let answer = self
            .run("REGISTER", Kind::Register, (0, 0), progress)
            .unwrap_or(Answer::Reply(Reply::Timeout));
        match answer {
            Answer::Reply(Reply::Session { id }) => {
                self.session_id = Some(id);
                self.sequence = 0;
                progress.redirects = 0;
                Ok(id)
            }
            other => Err(other),
        }
    }

    /// Sends until a final reply or the deadline.
    fn run(
        &mut self,
        command: &str,
        kind: Kind,
        tag: (u64, u64),
        progress: &mut Progress,
    ) -> Result<Answer, Expired> {
        loop {
            let remaining = progress.deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok(conclude(progress, kind).into());
            }
            // One unresponsive node (paused, or cut off) must not use up the
            // whole deadline: give each try a slice and move on.
            let answer = match self.attempt(command, tag, remaining.min(ATTEMPT_TIMEOUT)) {
                Attempt::Reply(line) => Answer::from_line(line, kind.asked()),
                // STATUS describes the node asked; another node's would
                // mislead. It changes nothing, so no answer is no outcome.
                Attempt::NotSent(what) | Attempt::Unknown(what) if kind == Kind::Status => {
                    let reason = format!("{}: {what}", self.target);
                    return Ok(Reply::Unavailable(reason.into()).into());
                }
                Attempt::NotSent(what) => {
                    progress
                        .observations
                        .record(&self.target, Seen::NotSent, &what);
                    self.back_off_and_move_on(progress);
                    continue;
                }
                // A verb this client does not know may change state on a
                // newer server: sent once, its loss is an unknown outcome.
                Attempt::Unknown(_) if kind == Kind::Other => return Ok(Reply::Timeout.into()),
                Attempt::Unknown(what) => {
                    progress
                        .observations
                        .record(&self.target, Seen::Unanswered, &what);
                    progress.maybe_applied |= kind == Kind::Write;
                    // A reset right after the write fails as fast as a refused
                    // connect does: pause here too, or a node that accepts
                    // and drops connections is retried in a tight loop.
                    self.back_off_and_move_on(progress);
                    continue;
                }
            };
            match self.judge(&answer, kind, progress) {
                Verdict::Final => return Ok(settle(answer, progress)),
                Verdict::Retry => {}
                Verdict::Expired => return Err(Expired),
            }
        }
    }

    /// Decides what a reply means for the command in flight.
    fn judge(&mut self, answer: &Answer, kind: Kind, progress: &mut Progress) -> Verdict {
        if kind == Kind::Status {
            return Verdict::Final;
        }
        let Answer::Reply(reply) = answer else {
            return Verdict::Final; // a line this build cannot read: an error
        };
        match reply {
            Reply::SessionExpired => Verdict::Expired,
            Reply::NotLeader { .. } if self.redirect => {
                progress
                    .observations
                    .record(&self.target, Seen::Answered, &error_words(reply));
                match reply.leader_hint() {
                    // Following a hint is immediate: the hinted node is
                    // likely the leader, and no pause would make it more so.
                    Some(address) if progress.redirects < REDIRECTS_MAX => {
                        progress.redirects += 1;
                        self.retarget(address.to_string());
                    }
                    // No leader known here (an election is running, or no
                    // majority is up), or hints that go round in circles.
                    _ => self.back_off_and_move_on(progress),
                }
                Verdict::Retry
            }
            // The node took the command and gave up on it (it waited, or its
            // leadership just changed): try the next node at once.
            Reply::Timeout if kind.retry_safe() => {
                progress
                    .observations
                    .record(&self.target, Seen::Unanswered, &error_words(reply));
                progress.maybe_applied |= kind == Kind::Write;
                self.next_seed();
                Verdict::Retry
            }
            _ => Verdict::Final,
        }
    }

    /// Moves to the next seed; once every seed was tried since the last
    /// pause, pauses first, longer with each round that failed (never past
    /// the command's deadline). Trying the other nodes at once is what
    /// finds a new leader quickly; the pause is what keeps a cluster that
    /// is down from being hammered.
    fn back_off_and_move_on(&mut self, progress: &Progress) {
        self.next_seed();
        self.tries_since_pause += 1;
        if self.tries_since_pause < self.seeds.len() {
            return;
        }
        self.tries_since_pause = 0;
        let remaining = progress.deadline.saturating_duration_since(Instant::now());
        std::thread::sleep(self.backoff.next_delay().min(remaining));
    }

    fn retarget(&mut self, address: String) {
        if address != self.target {
            self.target = address;
            self.connection = None;
        }
    }

    fn next_seed(&mut self) {
        let address = self.seeds[self.seed_next % self.seeds.len()].clone();
        self.seed_next += 1;
        self.retarget(address);
        self.connection = None;
    }

    fn attempt(&mut self, command: &str, tag: (u64, u64), limit: Duration) -> Attempt {
        let request_id = self.request_id_next;
        self.request_id_next += 1;
        let mut frame = Vec::new();
        let request = Frame::ClientRequest(ClientRequest {
            request_id,
            session_id: tag.0,
            sequence: tag.1,
            command: command.to_string(),
        });
        encode_frame(&request, &mut frame);
        let connection = match self.connected(limit) {
            Ok(connection) => connection,
            Err(what) => return Attempt::NotSent(what),
        };
        let result = match write_request(&mut connection.stream, &frame, limit) {
            Ok(()) => {
                read_reply(connection, request_id, limit).map_err(|error| lost(&error, limit))
            }
            // Not one byte of this request left: it cannot have reached the
            // node, whatever the node did with earlier ones.
            Err((0, error)) => {
                self.connection = None;
                return Attempt::NotSent(format!(
                    "{} before the request was sent",
                    error_text(&error)
                ));
            }
            // Part of it left. A node cannot act on part of a frame, but
            // count on nothing the socket layer did not promise: unknown.
            Err((_, error)) => Err(format!("{} while sending the request", error_text(&error))),
        };
        match result {
            Ok(reply) => Attempt::Reply(reply),
            Err(what) => {
                self.connection = None;
                Attempt::Unknown(what)
            }
        }
    }

    /// The open connection to the target. A kept connection is checked
    /// first (a node that died or timed us out while we were idle left a
    /// FIN or RST behind; a command written into that socket would end
    /// "unknown" for nothing) and replaced if closed. A fresh one is checked
    /// too: a node at its connection limit accepts and closes at once, and
    /// if that close has already arrived, nothing has been sent yet.
    fn connected(&mut self, limit: Duration) -> Result<&mut Connection, String> {
        let alive = self
            .connection
            .as_ref()
            .is_some_and(|connection| still_open(&connection.stream));
        if !alive {
            self.connection = None;
            let stream = connect(&self.target, limit.min(CONNECT_TIMEOUT_MAX))?;
            if let Err(error) = check_open(&stream) {
                return Err(format!(
                    "{} before the request was sent",
                    error_text(&error)
                ));
            }
            self.connection = Some(Connection {
                stream,
                decoder: FrameDecoder::new(),
            });
        }
        self.connection
            .as_mut()
            .ok_or_else(|| "no connection".to_string())
    }
}

/// The cluster no longer knows our session.
struct Expired;

enum Verdict {
    Final,
    Retry,
    Expired,
}

enum Attempt {
    /// The node's reply line.
    Reply(String),
    /// Certainly not delivered; says why ("connection refused").
    NotSent(String),
    /// Written, then no reply: the outcome is unknown; says why.
    Unknown(String),
}

fn connect(target: &str, limit: Duration) -> Result<TcpStream, String> {
    let address = resolve(target).map_err(|error| format!("cannot resolve: {error}"))?;
    let stream =
        TcpStream::connect_timeout(&address, limit).map_err(|error| match error.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                format!("connect timed out after {} ms", limit.as_millis())
            }
            _ => error_text(&error),
        })?;
    // Requests are small and latency is the point: no Nagle delay.
    stream
        .set_nodelay(true)
        .map_err(|error| error_text(&error))?;
    Ok(stream)
}

fn resolve(address: &str) -> io::Result<SocketAddr> {
    address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("{address} resolves to nothing")))
}

/// Short, lower-case words for the socket errors a client meets; others as
/// the system says them.
fn error_text(error: &io::Error) -> String {
    let text = match error.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::ConnectionReset => "connection reset",
        io::ErrorKind::ConnectionAborted => "connection aborted",
        io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof => "connection closed",
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timed out",
        _ => return error.to_string(),
    };
    text.to_string()
}

/// Why a written request got no reply.
fn lost(error: &io::Error, limit: Duration) -> String {
    match error.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            format!("no reply within {} ms", limit.as_millis())
        }
        io::ErrorKind::InvalidData => format!("bad reply: {error}"),
        _ => format!("{} after the request was sent", error_text(error)),
    }
}

/// False once the peer has closed or reset the connection (checked without
/// blocking, before a request is sent on a kept connection).
pub fn still_open(stream: &TcpStream) -> bool {
    check_open(stream).is_ok()
}

/// `Ok` while the connection is open; the close (`UnexpectedEof`) or reset
/// the peer left behind otherwise. Reads nothing off the stream.
fn check_open(stream: &TcpStream) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    let mut byte = [0u8; 1];
    let state = match stream.peek(&mut byte) {
        Ok(0) => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
        Ok(_) => Ok(()), // unexpected bytes; the read will sort them out
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(error) => Err(error),
    };
    stream.set_nonblocking(false)?;
    state
}

/// Writes the whole frame; on failure, how many bytes had been written
/// (zero means none of this request left the client).
fn write_request(
    stream: &mut TcpStream,
    frame: &[u8],
    limit: Duration,
) -> Result<(), (usize, io::Error)> {
    // A node that stops reading must not block us past the try's limit.
    stream
        .set_write_timeout(Some(limit))
        .map_err(|error| (0, error))?;
    let mut written = 0;
    while written < frame.len() {
        match stream.write(&frame[written..]) {
            Ok(0) => return Err((written, io::ErrorKind::WriteZero.into())),
            Ok(count) => written += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err((written, error)),
        }
    }
    Ok(())
}

fn read_reply(
    connection: &mut Connection,
    request_id: u64,
    remaining: Duration,
) -> io::Result<String> {
    let deadline = Instant::now() + remaining;
    loop {
        match connection.decoder.next_frame() {
            Ok(Some(Frame::ClientResponse(response))) if response.request_id == request_id => {
                return Ok(response.reply)
            }
            Ok(Some(_)) => continue, // an answer to an earlier, abandoned request
            Ok(None) => {}
            Err(error) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    error.to_string(),
                ))
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no reply in time"));
        }
        connection.stream.set_read_timeout(Some(left))?;
        let spare = connection.decoder.spare(16 * 1024);
        let count = connection.stream.read(spare)?;
        if count == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        connection.decoder.commit(count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_pauses_are_bounded_grow_and_are_jittered() {
        let steps = 12;
        let mut pauses_by_step = vec![Vec::new(); steps];
        for seed in 0..64 {
            let mut backoff = Backoff::new(seed);
            for (step, pauses) in pauses_by_step.iter_mut().enumerate() {
                let pause = backoff.next_delay();
                let ceiling = (BACKOFF_INITIAL * 2u32.pow(step as u32)).min(BACKOFF_MAX);
                assert!(
                    pause <= ceiling && pause >= ceiling / 2,
                    "{pause:?} at {step}"
                );
                pauses.push(pause);
            }
            backoff.reset();
            assert!(backoff.next_delay() <= BACKOFF_INITIAL, "reset starts over");
        }
        for step in 1..steps {
            let shortest = pauses_by_step[step].iter().min();
            let longest_before = pauses_by_step[step - 1].iter().max();
            // The floor doubles until the cap: a pause is never shorter than
            // half the one before could have been.
            assert!(shortest >= longest_before.map(|pause| *pause / 2).as_ref());
        }
        assert!(pauses_by_step[0].iter().max() < pauses_by_step[6].iter().min());
        for pauses in &pauses_by_step {
            let mut distinct = pauses.clone();
            distinct.sort();
            distinct.dedup();
            assert!(distinct.len() > 16, "jittered: {} distinct", distinct.len());
            assert!(pauses.iter().all(|pause| *pause <= BACKOFF_MAX));
        }
    }

    #[test]
    fn an_unavailable_reason_is_bounded() {
        let mut observations = Observations::default();
        let long = "x".repeat(1000);
        for port in 0..20 {
            observations.record(&format!("10.0.0.1:{port}"), Seen::NotSent, &long);
        }
        observations.record("10.0.0.1:0", Seen::NotSent, "connection refused");
        let Reply::Unavailable(reason) = observations.unavailable("no node reachable") else {
            panic!("unavailable");
        };
        assert!(reason
            .starts_with("no node reachable (10.0.0.1:0: connection refused; 10.0.0.1:1: xxx"));
        assert!(reason.ends_with("...; other nodes)"), "{reason}");
        assert!(reason.len() < REASON_NODES_MAX * (2 * REASON_PART_SIZE_MAX + 4) + 64);
    }
}

#[cfg(test)]
mod settle_tests {
    use super::*;

    fn progress(maybe_applied: bool) -> Progress {
        let mut progress = Progress::new(Instant::now());
        progress.maybe_applied = maybe_applied;
        progress
    }

    fn unavailable(reason: String) -> Reply {
        Reply::Unavailable(reason.into())
    }

    #[test]
    fn a_definite_failure_after_an_unknown_try_is_reported_unknown() {
        let timeout = Answer::Reply(Reply::Timeout);
        let refused = Answer::Reply(unavailable("no node reachable".into()));
        assert_eq!(settle(refused.clone(), &progress(false)), refused);
        assert_eq!(settle(refused, &progress(true)), timeout);
        let not_leader = Answer::Reply(Reply::NotLeader { leader: None });
        assert_eq!(settle(not_leader, &progress(true)), timeout);
        let unreadable = Answer::Unreadable("SOMETHING_NEW".into());
        assert_eq!(settle(unreadable, &progress(true)), timeout);
        let ok = Answer::Reply(Reply::Ok {
            index: crate::core::LogIndex(4),
            term: crate::core::Term(2),
        });
        assert_eq!(
            settle(ok.clone(), &progress(true)),
            ok,
            "success stays success"
        );
    }

    #[test]
    fn the_deadline_ends_in_timeout_only_if_a_write_may_have_been_applied() {
        let mut never_sent = progress(false);
        let refused = (Seen::NotSent, "connection refused");
        never_sent
            .observations
            .record("127.0.0.1:1", refused.0, refused.1);
        assert_eq!(
            conclude(&never_sent, Kind::Write),
            unavailable("no node reachable (127.0.0.1:1: connection refused)".into())
        );
        let mut lost = progress(false);
        lost.observations
            .record("127.0.0.1:2", Seen::Unanswered, "no reply within 1000 ms");
        lost.observations
            .record("127.0.0.1:1", refused.0, refused.1);
        let details = "(127.0.0.1:2: no reply within 1000 ms; 127.0.0.1:1: connection refused)";
        assert_eq!(
            conclude(&lost, Kind::Register),
            unavailable(format!("no session opened {details}"))
        );
        assert_eq!(
            conclude(&lost, Kind::Read),
            unavailable(format!("no reply {details}"))
        );
        let not_leader = error_words(&Reply::NotLeader { leader: None });
        lost.observations
            .record("127.0.0.1:1", Seen::Answered, &not_leader);
        assert_eq!(
            conclude(&lost, Kind::StaleRead),
            unavailable(format!(
                "no leader (127.0.0.1:2: no reply within 1000 ms; 127.0.0.1:1: {not_leader})"
            ))
        );
        lost.maybe_applied = true;
        assert_eq!(conclude(&lost, Kind::Write), Reply::Timeout);
    }
}

/// The client against stand-in nodes on loopback ports: what it answers
/// when nothing, or nothing useful, answers it.
#[cfg(test)]
mod unavailable_tests {
    use super::*;
    use crate::wire::encode_client_response;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    /// A loopback port nothing listens on (bound, then released).
    fn dead_address() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        format!("{address}")
    }

    /// A node that accepts each connection and closes it at once, as a node
    /// at its connection limit does; returns its address and the count of
    /// connections it accepted. The thread ends when `stop` is set.
    fn dropping_node(stop: Arc<AtomicBool>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = format!("{}", listener.local_addr().expect("address"));
        listener.set_nonblocking(true).expect("nonblocking");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        drop(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        });
        (address, accepted)
    }

    type Respond = dyn Fn(&ClientRequest) -> Option<Reply> + Send + Sync;

    /// A node that answers each request with `respond` (`None`: never).
    fn fake_node(respond: Arc<Respond>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = format!("{}", listener.local_addr().expect("address"));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let respond = Arc::clone(&respond);
                std::thread::spawn(move || serve(stream, &*respond));
            }
        });
        address
    }

    fn serve(mut stream: TcpStream, respond: &Respond) {
        let mut decoder = FrameDecoder::new();
        loop {
            let count = match stream.read(decoder.spare(4096)) {
                Ok(0) | Err(_) => return,
                Ok(count) => count,
            };
            decoder.commit(count);
            while let Ok(Some(Frame::ClientRequest(request))) = decoder.next_frame() {
                let Some(reply) = respond(&request) else {
                    continue;
                };
                let mut out = Vec::new();
                encode_client_response(request.request_id, &reply, &mut out);
                if stream.write_all(&out).is_err() {
                    return;
                }
            }
        }
    }

    fn client(seeds: &[&String], timeout_ms: u64) -> Client {
        let seeds = seeds.iter().map(|seed| seed.to_string()).collect();
        Client::new(seeds, Duration::from_millis(timeout_ms), true)
    }

    /// The reason of an `ERR UNAVAILABLE` answer.
    fn unavailable_reason(answer: Answer) -> String {
        match answer {
            Answer::Reply(Reply::Unavailable(reason)) => reason.into_owned(),
            other => panic!("not unavailable: {other}"),
        }
    }

    fn unavailable(reason: String) -> Answer {
        Answer::Reply(Reply::Unavailable(reason.into()))
    }

    /// The "12,000 retries a second": a node that drops every
    /// connection must be retried at a pace, and a write that never got
    /// past opening its session is unavailable, not unknown.
    #[test]
    fn a_node_that_drops_every_connection_is_not_retried_in_a_tight_loop() {
        let stop = Arc::new(AtomicBool::new(false));
        let (address, accepted) = dropping_node(Arc::clone(&stop));
        let started = Instant::now();
        let answer = client(&[&address], 1000).ask("SET idle=1");
        let elapsed = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let tries = accepted.load(Ordering::Relaxed);
        let reason = unavailable_reason(answer);
        assert!(reason.contains(&address), "{reason}");
        assert!(
            (1..=40).contains(&tries),
            "{tries} connections in {elapsed:?}"
        );
        assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    }

    #[test]
    fn refused_everywhere_names_each_node() {
        let (first, second) = (dead_address(), dead_address());
        let answer = client(&[&first, &second], 300).ask("SET x=1");
        assert_eq!(
            answer,
            unavailable(format!(
                "no node reachable ({first}: connection refused; {second}: connection refused)"
            ))
        );
        let answer = client(&[&first, &second], 300).ask("STATUS");
        assert_eq!(answer, unavailable(format!("{first}: connection refused")));
    }

    #[test]
    fn nodes_that_know_no_leader_end_in_no_leader() {
        let node = fake_node(Arc::new(|_| Some(Reply::NotLeader { leader: None })));
        let dead = dead_address();
        let answer = client(&[&node, &dead], 400).ask("GET x");
        let said = error_words(&Reply::NotLeader { leader: None });
        assert_eq!(
            answer,
            unavailable(format!(
                "no leader ({node}: {said}; {dead}: connection refused)"
            ))
        );
    }

    /// A leader that lost its majority takes a write and answers TIMEOUT
    /// when it steps down (CheckQuorum); from then on it knows no leader.
    /// The first write's outcome is unknown; the next one was refused by a
    /// node that is up, and says so.
    #[test]
    fn a_leader_losing_its_majority_times_out_then_knows_no_leader() {
        let writes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&writes);
        let node = fake_node(Arc::new(move |request: &ClientRequest| {
            let mut writes = seen.lock().expect("lock");
            if request.command == "REGISTER" {
                return Some(Reply::Session { id: 7 });
            }
            writes.push((request.command.clone(), request.sequence));
            let first = writes.len() == 1;
            Some(if first {
                Reply::Timeout
            } else {
                Reply::NotLeader { leader: None }
            })
        }));
        let dead = dead_address();
        let mut client = client(&[&node, &dead], 500);
        assert_eq!(client.ask("SET a=1"), Answer::Reply(Reply::Timeout));
        // It starts where the first command ended, so either node is first.
        let reason = unavailable_reason(client.ask("SET b=2"));
        assert!(reason.starts_with("no leader ("), "{reason}");
        let said = error_words(&Reply::NotLeader { leader: None });
        assert!(reason.contains(&format!("{node}: {said}")), "{reason}");
        assert!(
            reason.contains(&format!("{dead}: connection refused")),
            "{reason}"
        );
        let writes = writes.lock().expect("lock");
        assert!(writes.len() >= 3, "{writes:?}");
        for (command, sequence) in writes.iter() {
            // Retries keep their command's number in the session.
            let expected = if command == "SET a=1" { 1 } else { 2 };
            assert_eq!(*sequence, expected, "{writes:?}");
        }
    }

    /// A read or a STATUS changes nothing: sent and never answered, it ends
    /// unavailable (certainly not applied), not unknown.
    #[test]
    fn a_read_never_answered_is_unavailable() {
        let node = fake_node(Arc::new(|_| None));
        let reason = unavailable_reason(client(&[&node], 300).ask("GET x"));
        let expected = format!("no reply ({node}: no reply within ");
        assert!(reason.starts_with(&expected), "{reason}");
        let reason = unavailable_reason(client(&[&node], 300).ask("STATUS"));
        let expected = format!("{node}: no reply within ");
        assert!(reason.starts_with(&expected), "{reason}");
    }

    #[test]
    fn a_write_sent_and_never_answered_stays_unknown() {
        let node = fake_node(Arc::new(|request: &ClientRequest| {
            (request.command == "REGISTER").then_some(Reply::Session { id: 3 })
        }));
        let answer = client(&[&node], 300).ask("SET x=1");
        assert_eq!(answer, Answer::Reply(Reply::Timeout));
    }

    /// A line this build cannot read reaches the caller as it came, and
    /// ends the command as a definite error.
    #[test]
    fn a_line_no_reply_reads_as_is_passed_on_unchanged() {
        let line = "SOMETHING_NEW from a newer node";
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let node = format!("{}", listener.local_addr().expect("address"));
        std::thread::spawn(move || {
            let Some(mut stream) = listener.incoming().flatten().next() else {
                return;
            };
            let mut decoder = FrameDecoder::new();
            while let Ok(count @ 1..) = stream.read(decoder.spare(4096)) {
                decoder.commit(count);
                while let Ok(Some(Frame::ClientRequest(request))) = decoder.next_frame() {
                    let mut out = Vec::new();
                    encode_client_response(request.request_id, &line, &mut out);
                    let _ = stream.write_all(&out);
                }
            }
        });
        let answer = client(&[&node], 300).ask("GET x");
        assert_eq!(answer, Answer::Unreadable(line.to_string()));
        assert_eq!(answer.kind(), ReplyKind::Error);
    }
}
