//! A blocking etcd client for the failover trials: one PUT at a time over
//! HTTP/1.1 keep-alive to etcd's JSON gateway, retried across the members
//! the way raftlite's `Client` (src/client.rs) retries, so that both
//! failover rows time the same client behaviour. Requests and responses are
//! built and read by `bench`'s etcd mode (tools/kit/etcd_gateway.rs).

use crate::gateway::{self, Response};
use raftlite::reply::{Answer, Reply};
use serde::Deserialize;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

// raftlite's own retry timing, so both failover rows time the same client.
// etcd makes the per-try limit matter: a follower forwards a PUT to the
// leader it last knew, and if that leader is dead the PUT is lost while the
// follower holds the request for its own timeout (5 s plus two election
// timeouts), so ATTEMPT_TIMEOUT decides when the client moves on.
use raftlite::client::{still_open, Backoff, ATTEMPT_TIMEOUT};
/// raftlite's client never waits longer than this for a connect.
const CONNECT_TIMEOUT_MAX: Duration = Duration::from_secs(2);
/// Bytes read for one response before giving up on it: two of the largest
/// responses, the bound `bench`'s connections keep.
const BUFFERED_SIZE_MAX: usize = 2 * gateway::RESPONSE_SIZE_MAX;
/// One status request: a member that does not answer in this long is
/// counted as down (raftlite's STATUS client waits 500 ms too).
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);
const READ_SIZE: usize = 16 * 1024;

pub struct EtcdClient {
    /// Every member's client address, the dead included (as raftlite's seeds).
    members: Vec<SocketAddr>,
    /// Invariant: target < members.len().
    target: usize,
    member_next: usize,
    /// Kept open between PUTs to `target`.
    stream: Option<TcpStream>,
    /// raftlite's pauses between failed tries, reset per PUT as its
    /// client's are per command.
    backoff: Backoff,
}

enum Attempt {
    /// etcd answered, read as a raftlite reply (OK, or a failure).
    Reply(Answer),
    /// Certainly not delivered (could not connect).
    NotSent(String),
    /// Sent, then no whole response in time: the outcome is unknown.
    Unknown(String),
}

impl EtcdClient {
    /// `members` must not be empty.
    pub fn new(members: Vec<SocketAddr>) -> EtcdClient {
        assert!(!members.is_empty(), "a client needs at least one member");
        EtcdClient {
            members,
            target: 0,
            member_next: 1,
            stream: None,
            backoff: Backoff::from_clock(),
        }
    }

    /// Sends the next PUTs to member `index`, as raftlite's client ends up
    /// at the leader by following its hints (etcd sends none).
    pub fn aim(&mut self, index: usize) {
        assert!(index < self.members.len());
        if index != self.target {
            self.target = index;
            self.stream = None;
        }
    }

    /// PUTs `key`=`value`, retrying until etcd acknowledges it or `timeout`
    /// passes; the error is the last failure seen.
    pub fn put(&mut self, key: &str, value: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let command = format!("SET {key} {value}");
        let mut last_failure = "no try".to_string();
        self.backoff.reset();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(last_failure);
            }
            last_failure = match self.attempt(&command, remaining.min(ATTEMPT_TIMEOUT)) {
                Attempt::Reply(Answer::Reply(Reply::Ok { .. })) => return Ok(()),
                Attempt::Reply(answer) => answer.to_string(),
                Attempt::NotSent(failure) | Attempt::Unknown(failure) => failure,
            };
            // raftlite's client pauses after a refused or lost connection
            // and after "no leader known here"; etcd sends no leader hints,
            // so every failure here is one of those.
            self.next_member();
            let remaining = deadline.saturating_duration_since(Instant::now());
            std::thread::sleep(self.backoff.next_delay().min(remaining));
        }
    }

    fn next_member(&mut self) {
        self.target = self.member_next % self.members.len();
        self.member_next += 1;
        self.stream = None;
    }

    fn attempt(&mut self, command: &str, limit: Duration) -> Attempt {
        let address = self.members[self.target];
        let stream = match self.connected(limit) {
            Ok(stream) => stream,
            Err(error) => return Attempt::NotSent(format!("cannot connect to {address}: {error}")),
        };
        let mut request = Vec::new();
        let asked = gateway::encode_request(command, address, &mut request);
        match exchange(stream, &request, limit) {
            Ok(response) => Attempt::Reply(gateway::reply_for(asked, &response)),
            Err(error) => {
                self.stream = None;
                Attempt::Unknown(format!("{address}: {error}"))
            }
        }
    }

    /// The open connection to the target, after checking it is still alive:
    /// a member killed while we were idle left a FIN or RST behind, which
    /// raftlite's client notices before sending, and so does this one.
    fn connected(&mut self, limit: Duration) -> io::Result<&mut TcpStream> {
        if !self.stream.as_ref().is_some_and(still_open) {
            let address = self.members[self.target];
            self.stream = Some(connect(address, limit)?);
        }
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::other("no connection"))
    }
}

/// What one member says about itself and its cluster
/// (`POST /v3/maintenance/status`).
pub struct MemberStatus {
    pub member_id: String,
    /// None while the member knows no leader (the gateway leaves zeros out).
    pub leader: Option<String>,
    /// The member's commit index.
    pub raft_index: u64,
    pub raft_applied_index: u64,
}

/// The status of the member at `address`, or None if it does not answer.
pub fn status(address: SocketAddr) -> Option<MemberStatus> {
    let mut stream = connect(address, STATUS_TIMEOUT).ok()?;
    let mut request = Vec::new();
    gateway::encode_post("/v3/maintenance/status", b"{}", address, &mut request);
    let response = exchange(&mut stream, &request, STATUS_TIMEOUT).ok()?;
    if response.status != 200 {
        return None;
    }
    parse_status(&response.body)
}

/// A status response body, as far as the suite reads it. The gateway
/// writes 64-bit numbers as JSON strings and leaves zeros and empty fields
/// out.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusBody {
    header: StatusHeader,
    leader: Option<String>,
    raft_index: Option<String>,
    raft_applied_index: Option<String>,
}

#[derive(Deserialize)]
struct StatusHeader {
    member_id: String,
}

/// None for a body that is not a status, or whose numbers do not parse.
fn parse_status(body: &[u8]) -> Option<MemberStatus> {
    let status: StatusBody = serde_json::from_slice(body).ok()?;
    let number = |text: Option<String>| text.map_or(Some(0), |text| text.parse().ok());
    Some(MemberStatus {
        member_id: status.header.member_id,
        leader: status.leader,
        raft_index: number(status.raft_index)?,
        raft_applied_index: number(status.raft_applied_index)?,
    })
}

fn connect(address: SocketAddr, limit: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&address, limit.min(CONNECT_TIMEOUT_MAX))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sends `request` and reads its response, all within `limit`.
fn exchange(stream: &mut TcpStream, request: &[u8], limit: Duration) -> io::Result<Response> {
    let deadline = Instant::now() + limit;
    stream.set_write_timeout(Some(limit))?;
    stream.write_all(request)?;
    let mut buffer = Vec::new();
    let mut piece = [0u8; READ_SIZE];
    loop {
        // One request is outstanding, so the first response is its answer.
        if let Some((response, _)) = gateway::parse_response(&buffer).map_err(invalid)? {
            return Ok(response);
        }
        if buffer.len() > BUFFERED_SIZE_MAX {
            return Err(invalid(format!(
                "over {BUFFERED_SIZE_MAX} bytes without a whole response"
            )));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no reply in time"));
        }
        stream.set_read_timeout(Some(left))?;
        let count = stream.read(&mut piece)?;
        if count == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        buffer.extend_from_slice(&piece[..count]);
    }
}

fn invalid(error: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS_BODY: &str = r#"{"header":{"cluster_id":"3607923663545146636","member_id":"443629905751424238","revision":"1","raft_term":"2"},"version":"3.4.23","dbSize":"20480","leader":"852156329802383804","raftIndex":"8","raftTerm":"2","raftAppliedIndex":"7","dbSizeInUse":"16384"}"#;

    #[test]
    fn status_fields_are_read_from_the_gateway_strings() {
        let status = parse_status(STATUS_BODY.as_bytes()).expect("a status");
        assert_eq!(status.member_id, "443629905751424238");
        assert_eq!(status.leader.as_deref(), Some("852156329802383804"));
        assert_eq!((status.raft_index, status.raft_applied_index), (8, 7));
        // No leader known, nothing applied yet: the gateway leaves them out.
        let fresh =
            parse_status(br#"{"header":{"member_id":"1"},"version":"3.4.23"}"#).expect("a status");
        assert_eq!(fresh.leader, None);
        assert_eq!((fresh.raft_index, fresh.raft_applied_index), (0, 0));
        for not_a_status in [
            &br#"{"header":{}}"#[..],
            br#"{"header":{"member_id":"1"},"raftIndex":"x"}"#,
            br#"{"header":{"member_id":"1"},"raftIndex":8}"#,
            b"{\"header\":",
            b"",
        ] {
            assert!(parse_status(not_a_status).is_none(), "{not_a_status:?}");
        }
    }

    #[test]
    fn the_client_cycles_through_every_member_from_its_target() {
        let members: Vec<SocketAddr> = (0..3)
            .map(|index| SocketAddr::from(([127, 0, 0, 1], 2379 + index)))
            .collect();
        let mut client = EtcdClient::new(members);
        client.aim(2);
        let mut visited = Vec::new();
        for _ in 0..4 {
            client.next_member();
            visited.push(client.target);
        }
        assert_eq!(visited, [1, 2, 0, 1]);
    }
}
