//! The blocking client: the client machine (machine.rs) over a TCP
//! connection and the thread's own clock. `submit` and the tests use it.

use super::machine::{Action, Backoff, ClientConfig, ClientMachine, Try, TryResult};
use crate::core::PlantedBug;
use crate::reply::Answer;
use crate::wire::{encode_frame, Frame, FrameDecoder};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest wait for one reply before trying another node.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(super::machine::ATTEMPT_TIMEOUT_MS);
/// Longest wait for a TCP connect (a SYN to a host that is gone).
const CONNECT_TIMEOUT_MAX: Duration = Duration::from_secs(2);

impl Backoff {
    /// Seeded from the clock and the process id, so that clients started in
    /// the same instant (a script's loop, a benchmark's processes) still
    /// draw different pauses.
    pub fn from_clock() -> Backoff {
        Backoff::new(clock_seed())
    }
}

/// A seed that differs between processes and runs.
pub fn clock_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

pub struct Connection {
    /// The address it was opened to.
    address: String,
    stream: TcpStream,
    decoder: FrameDecoder,
}

pub struct Client {
    machine: ClientMachine,
    /// The machine's milliseconds count from here.
    started: Instant,
    connection: Option<Connection>,
}

impl Client {
    /// `seeds` must not be empty.
    pub fn new(seeds: Vec<String>, timeout: Duration, redirect: bool) -> Client {
        Client::with_planted_bug(seeds, timeout, redirect, None)
    }

    /// As `new`, running one planted bug (test builds only; feature
    /// `planted-bugs`).
    pub fn with_planted_bug(
        seeds: Vec<String>,
        timeout: Duration,
        redirect: bool,
        planted_bug: Option<PlantedBug>,
    ) -> Client {
        let config = ClientConfig {
            seeds,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            redirect,
            sessions: true,
            seed: clock_seed(),
            planted_bug,
        };
        Client {
            machine: ClientMachine::new(config),
            started: Instant::now(),
            connection: None,
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
        let mut action = self.machine.start(command, self.now_ms());
        loop {
            action = match action {
                Action::Done(answer) => return answer,
                Action::Pause { until_ms } => {
                    let pause_ms = until_ms.saturating_sub(self.now_ms());
                    std::thread::sleep(Duration::from_millis(pause_ms));
                    self.machine.resume(self.now_ms())
                }
                Action::Send(attempt) => {
                    let result = self.attempt(&attempt);
                    self.machine.try_finished(result, self.now_ms())
                }
            };
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn attempt(&mut self, attempt: &Try) -> TryResult {
        let limit = Duration::from_millis(attempt.limit_ms);
        let mut frame = Vec::new();
        encode_frame(&Frame::ClientRequest(attempt.request.clone()), &mut frame);
        let connection = match self.connected(&attempt.to, attempt.reconnect, limit) {
            Ok(connection) => connection,
            Err(what) => return TryResult::NotSent(what),
        };
        let request_id = attempt.request.request_id;
        let result = match write_request(&mut connection.stream, &frame, limit) {
            Ok(()) => {
                read_reply(connection, request_id, limit).map_err(|error| lost(&error, limit))
            }
            // Not one byte of this request left: it cannot have reached the
            // node, whatever the node did with earlier ones.
            Err((0, error)) => {
                self.connection = None;
                return TryResult::NotSent(format!(
                    "{} before the request was sent",
                    error_text(&error)
                ));
            }
            // Part of it left. A node cannot act on part of a frame, but
            // count on nothing the socket layer did not promise: unknown.
            Err((_, error)) => Err(format!("{} while sending the request", error_text(&error))),
        };
        match result {
            Ok(line) => TryResult::Reply(Answer::from_line(line, attempt.asked)),
            Err(what) => {
                self.connection = None;
                TryResult::Unknown(what)
            }
        }
    }

    /// The open connection to `address`. A kept connection is checked
    /// first (a node that died or timed us out while we were idle left a
    /// FIN or RST behind; a command written into that socket would end
    /// "unknown" for nothing) and replaced if closed. A fresh one is checked
    /// too: a node at its connection limit accepts and closes at once, and
    /// if that close has already arrived, nothing has been sent yet.
    fn connected(
        &mut self,
        address: &str,
        reconnect: bool,
        limit: Duration,
    ) -> Result<&mut Connection, String> {
        let reusable = self.connection.as_ref().is_some_and(|connection| {
            !reconnect && connection.address == address && still_open(&connection.stream)
        });
        if !reusable {
            self.connection = None;
            let stream = connect(address, limit.min(CONNECT_TIMEOUT_MAX))?;
            if let Err(error) = check_open(&stream) {
                return Err(format!(
                    "{} before the request was sent",
                    error_text(&error)
                ));
            }
            self.connection = Some(Connection {
                address: address.to_string(),
                stream,
                decoder: FrameDecoder::new(),
            });
        }
        self.connection
            .as_mut()
            .ok_or_else(|| "no connection".to_string())
    }
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

/// The client against stand-in nodes on loopback ports: what it answers
/// when nothing, or nothing useful, answers it.
#[cfg(test)]
mod unavailable_tests {
    use super::super::machine::error_words;
    use super::*;
    use crate::reply::{Reply, ReplyKind};
    use crate::wire::encode_client_response;
    use crate::wire::ClientRequest;
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
