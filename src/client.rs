//! A blocking client for one command at a time: connects, follows leader
//! hints, and classifies replies. `submit`, the tests and the benchmark use it.

use crate::constants::COMMAND_SIZE_MAX;
use crate::wire::{encode_frame, ClientRequest, Frame, FrameDecoder};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Redirects followed for one command before giving up on hints.
const REDIRECTS_MAX: usize = 16;
/// Pause before retrying when no node knows a leader (an election is running).
const RETRY_PAUSE: Duration = Duration::from_millis(25);

/// How a reply line is classified (the `submit` exit codes follow this).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyKind {
    /// OK, VALUE, NOT_FOUND, STATUS.
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
        "OK" | "VALUE" | "NOT_FOUND" | "STATUS" => ReplyKind::Success,
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
        }
    }

    /// Runs one command and returns its reply line.
    pub fn execute(&mut self, command: &str) -> String {
        if command.len() > COMMAND_SIZE_MAX {
            return format!("ERR BAD_REQUEST command longer than {COMMAND_SIZE_MAX} bytes");
        }
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        // STATUS is answered by the node contacted; reads change nothing, so
        // they may be retried anywhere.
        let is_status = verb == "STATUS" || verb == "SGET";
        let retry_safe = is_status || verb == "GET";
        let deadline = Instant::now() + self.timeout;
        let mut redirects = 0;
        let mut last_failure: Option<String> = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return last_failure.unwrap_or_else(|| "ERR TIMEOUT".to_string());
            }
            let reply = match self.attempt(command, remaining) {
                Attempt::Reply(reply) => reply,
                Attempt::NotSent(error) => {
                    last_failure = Some(format!(
                        "ERR UNAVAILABLE no node reachable (last tried {}: {error})",
                        self.target
                    ));
                    if is_status {
                        return last_failure.unwrap_or_default();
                    }
                    self.next_seed();
                    std::thread::sleep(RETRY_PAUSE.min(remaining));
                    continue;
                }
                Attempt::Unknown if retry_safe && !is_status => {
                    last_failure = Some("ERR TIMEOUT".to_string());
                    self.next_seed();
                    continue;
                }
                Attempt::Unknown => return "ERR TIMEOUT".to_string(),
            };
            if is_status || !self.redirect || classify(&reply) != ReplyKind::NotLeader {
                return reply;
            }
            match leader_hint(&reply) {
                Some(address) if redirects < REDIRECTS_MAX => {
                    redirects += 1;
                    self.retarget(address.to_string());
                }
                _ => {
                    self.next_seed();
                    std::thread::sleep(RETRY_PAUSE.min(remaining));
                }
            }
            last_failure = Some(reply);
        }
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

    fn attempt(&mut self, command: &str, remaining: Duration) -> Attempt {
        let request_id = self.request_id_next;
        self.request_id_next += 1;
        let mut frame = Vec::new();
        let request = Frame::ClientRequest(ClientRequest {
            request_id,
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

fn still_open(stream: &TcpStream) -> bool {
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
        assert_eq!(classify("MISMATCH current=4"), ReplyKind::Mismatch);
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
