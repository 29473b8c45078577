//! A blocking client for one command at a time: connects, follows leader
//! hints, and classifies replies. `submit`, the tests and the benchmark use it.

use crate::constants::COMMAND_SIZE_MAX;
use crate::wire::{encode_frame, ClientRequest, Frame, FrameDecoder};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Redirects followed for one command before giving up on hints.
const REDIRECTS_MAX: usize = 16;
/// Longest wait for one reply before trying another node.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1000);
/// Pause before retrying when no node knows a leader (an election is running).
pub const RETRY_PAUSE: Duration = Duration::from_millis(25);

/// How a reply line is classified (the `submit` exit codes follow this).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyKind {
    /// OK, VALUE, NOT_FOUND, STATUS (and SESSION, a REGISTER's answer).
    Success,
    /// CAS found another value: definite, and not applied.
    Mismatch,
    NotLeader,
    Timeout,
    /// Any other ERR: definite failure, never applied.
    Error,
}

pub fn classify(reply: &str) -> ReplyKind {
    let first = reply.split_whitespace().next().unwrap_or("");
    match first {
        "OK" | "VALUE" | "NOT_FOUND" | "STATUS" | "SESSION" => ReplyKind::Success,
        "MISMATCH" => ReplyKind::Mismatch,
        "ERR" => match reply.split_whitespace().nth(1) {
            Some("NOT_LEADER") => ReplyKind::NotLeader,
            Some("TIMEOUT") => ReplyKind::Timeout,
            _ => ReplyKind::Error,
        },
        _ => ReplyKind::Error,
    }
}

/// The `addr=` of an `ERR NOT_LEADER` reply, if it names one.
pub fn leader_hint(reply: &str) -> Option<&str> {
    reply
        .split_whitespace()
        .find_map(|field| field.strip_prefix("addr="))
}

pub struct Connection {
    stream: TcpStream,
    decoder: FrameDecoder,
}

pub struct Client {
    /// Where to look for the cluster.
    seeds: Vec<String>,
    seed_next: usize,
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
}

/// How a command may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Answered by the node contacted: never redirected or retried.
    Status,
    /// Changes nothing: safe to retry anywhere.
    Read,
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
            "GET" | "SGET" => Kind::Read,
            "SET" | "DEL" | "CAS" => Kind::Write,
            "REGISTER" => Kind::Register,
            _ => Kind::Other,
        }
    }

    fn retry_safe(self) -> bool {
        matches!(self, Kind::Read | Kind::Write | Kind::Register)
    }

    fn changes_state(self) -> bool {
        matches!(self, Kind::Write | Kind::Register)
    }
}

/// A definite failure may only be reported if no earlier try of the same
/// command can have been applied; otherwise the truth is "unknown".
fn settle(reply: String, progress: &Progress) -> String {
    let definite_failure = matches!(classify(&reply), ReplyKind::NotLeader | ReplyKind::Error);
    if progress.maybe_applied && definite_failure {
        return "ERR TIMEOUT".to_string();
    }
    reply
}

/// Where one command stands while it is retried.
struct Progress {
    deadline: Instant,
    redirects: usize,
    /// An earlier try may have been applied (unknown outcome).
    maybe_applied: bool,
    last_failure: Option<String>,
}

impl Client {
    /// `seeds` must not be empty.
    pub fn new(seeds: Vec<String>, timeout: Duration, redirect: bool) -> Client {
        assert!(!seeds.is_empty(), "a client needs at least one address");
        Client {
            target: seeds[0].clone(),
            seeds,
            seed_next: 1,
            connection: None,
            request_id_next: 1,
            timeout,
            redirect,
            session_id: None,
            sequence: 0,
        }
    }

    /// Runs one command and returns its reply line. Unknown outcomes are
    /// retried (writes under their session number) until the timeout.
    pub fn execute(&mut self, command: &str) -> String {
        if command.len() > COMMAND_SIZE_MAX {
            return format!("ERR BAD_REQUEST command longer than {COMMAND_SIZE_MAX} bytes");
        }
        let kind = Kind::of(command);
        let mut progress = Progress {
            deadline: Instant::now() + self.timeout,
            redirects: 0,
            maybe_applied: false,
            last_failure: None,
        };
        loop {
            let tag = match kind {
                Kind::Write => match self.session(&mut progress) {
                    Ok(session_id) => (session_id, self.sequence + 1),
                    Err(reply) => return reply,
                },
                _ => (0, 0),
            };
            match self.run(command, kind, tag, &mut progress) {
                Ok(reply) => {
                    if kind == Kind::Write {
                        self.sequence += 1;
                    }
                    return reply;
                }
                // The session was forgotten by the cluster: if no earlier try
                // can have applied, open a new one and go on.
                Err(Expired) if !progress.maybe_applied => self.session_id = None,
                Err(Expired) => {
                    self.session_id = None;
                    return "ERR TIMEOUT".to_string();
                }
            }
        }
    }

    /// The session id, opening one first if needed.
    fn session(&mut self, progress: &mut Progress) -> Result<u64, String> {
        if let Some(session_id) = self.session_id {
            return Ok(session_id);
        }
        let reply = self
            .run("REGISTER", Kind::Register, (0, 0), progress)
            .unwrap_or_else(|_| "ERR TIMEOUT".to_string());
        let session_id = reply
            .strip_prefix("SESSION id=")
            .and_then(|text| text.trim().parse::<u64>().ok());
        match session_id {
            Some(session_id) => {
                self.session_id = Some(session_id);
                self.sequence = 0;
                progress.redirects = 0;
                Ok(session_id)
            }
            None => Err(reply),
        }
    }

    /// Sends until a final reply or the deadline.
    fn run(
        &mut self,
        command: &str,
        kind: Kind,
        tag: (u64, u64),
        progress: &mut Progress,
    ) -> Result<String, Expired> {
        loop {
            let remaining = progress.deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                let last = progress.last_failure.take();
                return Ok(settle(
                    last.unwrap_or_else(|| "ERR TIMEOUT".to_string()),
                    progress,
                ));
            }
            // One unresponsive node (paused, or cut off) must not use up the
            // whole deadline: give each try a slice and move on.
            let reply = match self.attempt(command, tag, remaining.min(ATTEMPT_TIMEOUT)) {
                Attempt::Reply(reply) => reply,
                Attempt::NotSent(error) => {
                    let line = format!(
                        "ERR UNAVAILABLE no node reachable (last tried {}: {error})",
                        self.target
                    );
                    if kind == Kind::Status {
                        return Ok(line);
                    }
                    progress.last_failure = Some(line);
                    self.pause_and_move_on(remaining);
                    continue;
                }
                Attempt::Unknown if kind.retry_safe() => {
                    progress.maybe_applied |= kind.changes_state();
                    progress.last_failure = Some("ERR TIMEOUT".to_string());
                    self.next_seed();
                    continue;
                }
                Attempt::Unknown => return Ok("ERR TIMEOUT".to_string()),
            };
            match self.judge(&reply, kind, progress, remaining) {
                Verdict::Final => return Ok(settle(reply, progress)),
                Verdict::Retry => progress.last_failure = Some(reply),
                Verdict::Expired => return Err(Expired),
            }
        }
    }

    /// Decides what a reply means for the command in flight.
    fn judge(
        &mut self,
        reply: &str,
        kind: Kind,
        progress: &mut Progress,
        remaining: Duration,
    ) -> Verdict {
        if kind == Kind::Status {
            return Verdict::Final;
        }
        if reply.starts_with("ERR SESSION_EXPIRED") {
            return Verdict::Expired;
        }
        match classify(reply) {
            ReplyKind::NotLeader if self.redirect => {
                match leader_hint(reply) {
                    Some(address) if progress.redirects < REDIRECTS_MAX => {
                        progress.redirects += 1;
                        self.retarget(address.to_string());
                    }
                    _ => self.pause_and_move_on(remaining),
                }
                Verdict::Retry
            }
            ReplyKind::Timeout if kind.retry_safe() => {
                progress.maybe_applied |= kind.changes_state();
                self.next_seed();
                Verdict::Retry
            }
            _ => Verdict::Final,
        }
    }

    fn pause_and_move_on(&mut self, remaining: Duration) {
        self.next_seed();
        std::thread::sleep(RETRY_PAUSE.min(remaining));
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

    fn attempt(&mut self, command: &str, tag: (u64, u64), remaining: Duration) -> Attempt {
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
        let connection = match self.connected(remaining) {
            Ok(connection) => connection,
            Err(error) => return Attempt::NotSent(error.to_string()),
        };
        let result = connection
            .stream
            .write_all(&frame)
            .and_then(|()| read_reply(connection, request_id, remaining));
        match result {
            Ok(reply) => Attempt::Reply(reply),
            Err(_) => {
                self.connection = None;
                Attempt::Unknown
            }
        }
    }

    /// The open connection to the target, after checking it is still alive
    /// (a node that died while we were idle left a FIN or RST behind; a
    /// command written into that socket would end "unknown" for nothing).
    fn connected(&mut self, remaining: Duration) -> io::Result<&mut Connection> {
        let alive = self
            .connection
            .as_ref()
            .is_some_and(|connection| still_open(&connection.stream));
        if !alive {
            self.connection = None;
            let address = resolve(&self.target)?;
            let stream =
                TcpStream::connect_timeout(&address, remaining.min(Duration::from_secs(2)))?;
            stream.set_nodelay(true)?;
            self.connection = Some(Connection {
                stream,
                decoder: FrameDecoder::new(),
            });
        }
        self.connection
            .as_mut()
            .ok_or_else(|| io::Error::other("no connection"))
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
    Reply(String),
    /// Certainly not delivered (could not connect).
    NotSent(String),
    /// Sent, then the connection failed: the outcome is unknown.
    Unknown,
}

fn resolve(address: &str) -> io::Result<SocketAddr> {
    address
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("{address} resolves to nothing")))
}

/// False once the peer has closed or reset the connection (checked without
/// blocking, before a request is sent on a kept connection).
pub fn still_open(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    let open = match stream.peek(&mut byte) {
        Ok(0) => false,
        Ok(_) => true, // unexpected bytes; the read will sort them out
        Err(error) => error.kind() == io::ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).is_ok() && open
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
    fn replies_are_classified_by_their_first_words() {
        assert_eq!(classify("OK index=3 term=1"), ReplyKind::Success);
        assert_eq!(classify("VALUE 5"), ReplyKind::Success);
        assert_eq!(classify("NOT_FOUND"), ReplyKind::Success);
        assert_eq!(classify("STATUS id=A role=leader"), ReplyKind::Success);
        assert_eq!(classify("SESSION id=12"), ReplyKind::Success);
        assert_eq!(classify("MISMATCH current=4"), ReplyKind::Mismatch);
        assert_eq!(classify("MISMATCH absent"), ReplyKind::Mismatch);
        assert_eq!(
            classify(r#"VALUE "a b" stale applied=3"#),
            ReplyKind::Success
        );
        assert_eq!(
            classify("ERR NOT_LEADER leader=unknown"),
            ReplyKind::NotLeader
        );
        assert_eq!(classify("ERR TIMEOUT"), ReplyKind::Timeout);
        assert_eq!(classify("ERR BAD_REQUEST empty command"), ReplyKind::Error);
        assert_eq!(classify("garbage"), ReplyKind::Error);
    }

    #[test]
    fn leader_hint_is_the_addr_field() {
        assert_eq!(
            leader_hint("ERR NOT_LEADER leader=B addr=127.0.0.1:8001"),
            Some("127.0.0.1:8001")
        );
        assert_eq!(leader_hint("ERR NOT_LEADER leader=unknown"), None);
    }
}

#[cfg(test)]
mod settle_tests {
    use super::*;

    fn progress(maybe_applied: bool) -> Progress {
        Progress {
            deadline: Instant::now(),
            redirects: 0,
            maybe_applied,
            last_failure: None,
        }
    }

    #[test]
    fn a_definite_failure_after_an_unknown_try_is_reported_unknown() {
        let unavailable = "ERR UNAVAILABLE no node reachable".to_string();
        assert_eq!(settle(unavailable.clone(), &progress(false)), unavailable);
        assert_eq!(settle(unavailable, &progress(true)), "ERR TIMEOUT");
        let not_leader = "ERR NOT_LEADER leader=unknown".to_string();
        assert_eq!(settle(not_leader, &progress(true)), "ERR TIMEOUT");
        let ok = "OK index=4 term=2".to_string();
        assert_eq!(
            settle(ok.clone(), &progress(true)),
            ok,
            "success stays success"
        );
    }
}
