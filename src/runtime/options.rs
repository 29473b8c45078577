//! The daemon's command line, parsed and checked before anything starts.
//! Every rule has one early return with a message naming the problem.

use super::logging::Level;
use crate::constants::{CLUSTER_SIZE_MAX, NODE_ID_SIZE_MAX};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

pub const ELECTION_TIMEOUT_DEFAULT: &str = "150-300";
pub const HEARTBEAT_DEFAULT_MS: u64 = 50;
pub const HOST_DEFAULT: &str = "127.0.0.1";
/// Entries past the last snapshot that make the node take the next one.
pub const SNAPSHOT_ENTRIES_DEFAULT: u64 = 100_000;
/// Entries kept below a snapshot for followers a little behind.
pub const SNAPSHOT_TRAILING_DEFAULT: u64 = 10_000;
/// Ceiling of both: a log of more entries than this is no longer bounded
/// memory on any machine this runs on.
pub const SNAPSHOT_ENTRIES_MAX: u64 = 1_000_000_000;
/// `--log-segment-bytes` bounds: compaction frees disk a segment at a time.
pub const LOG_SEGMENT_BYTES_MIN: u64 = 1 << 20;
pub const LOG_SEGMENT_BYTES_MAX: u64 = crate::storage::disk::SEGMENT_SIZE_MAX_LIMIT;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    pub id: String,
    pub host: String,
    pub port: u16,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub id: String,
    pub host: String,
    pub port: u16,
    pub peers: Vec<PeerSpec>,
    pub data_dir: PathBuf,
    pub election_timeout_ms_min: u64,
    pub election_timeout_ms_max: u64,
    pub heartbeat_interval_ms: u64,
    /// fdatasync before acknowledging (`--fsync always`, the default).
    pub fsync: bool,
    pub log_level: Level,
    /// `--peer-secret FILE`: peers must prove they hold the same secret.
    pub peer_secret: Option<PathBuf>,
    /// `--snapshot-entries N`: snapshot once the log holds more than N
    /// entries past the last snapshot.
    pub snapshot_entries: u64,
    /// `--snapshot-trailing N`: entries kept below the snapshot index.
    pub snapshot_trailing: u64,
    /// `--log-segment-bytes N`: the size of one log segment file.
    pub log_segment_bytes: u64,
    /// Test builds only (feature `planted-bugs`): run with a known bug.
    pub planted_bug: Option<crate::core::PlantedBug>,
}

/// What the command line asked for.
pub enum Parsed {
    Run(Options),
    Help(String),
}

#[derive(Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

fn usage_error<T>(message: String) -> Result<T, UsageError> {
    Err(UsageError(message))
}

fn option_table() -> getopts::Options {
    let mut table = getopts::Options::new();
    table.optopt("", "id", "this node's id (required), e.g. A", "ID");
    table.optopt(
        "",
        "port",
        "TCP port for peers and clients (required)",
        "PORT",
    );
    table.optopt(
        "",
        "peers",
        "the other members, comma-separated ID:PORT (host 127.0.0.1) or ID:HOST:PORT (required; \"\" for a single node)",
        "LIST",
    );
    table.optopt(
        "",
        "host",
        "address to bind and advertise (default 127.0.0.1)",
        "ADDR",
    );
    table.optopt(
        "",
        "data-dir",
        "where state lives (default data/<ID>)",
        "DIR",
    );
    table.optopt(
        "",
        "election-timeout",
        "election timeout range in ms, randomized per election (default 150-300)",
        "MIN-MAX",
    );
    table.optopt(
        "",
        "heartbeat",
        "heartbeat interval in ms (default 50)",
        "MS",
    );
    table.optopt(
        "",
        "fsync",
        "always: sync the log before acknowledging; never: experiments only, a machine crash can lose acknowledged writes (default always)",
        "always|never",
    );
    table.optopt(
        "",
        "log-level",
        "error, warn, info or debug (default info)",
        "LEVEL",
    );
    table.optopt(
        "",
        "peer-secret",
        "file with the cluster's shared secret (one line of at least 32 characters, e.g. from `openssl rand -hex 32`; the same on every member): peers must prove it (default: none, any host that reaches the port can act as a peer)",
        "FILE",
    );
    table.optopt(
        "",
        "snapshot-entries",
        "snapshot the state machine once the log holds more than N entries past the last snapshot (default 100000)",
        "N",
    );
    table.optopt(
        "",
        "snapshot-trailing",
        "entries kept in the log below a snapshot, so a follower a little behind catches up from the log (default 10000)",
        "N",
    );
    table.optopt(
        "",
        "log-segment-bytes",
        "size of one log segment file; compaction deletes whole segments, so smaller ones free disk sooner (default 67108864, at least 1048576)",
        "N",
    );
    table.optflag("h", "help", "print this help");
    #[cfg(feature = "planted-bugs")]
    table.optopt(
        "",
        "plant-bug",
        "TEST BUILD ONLY: run with a known bug",
        "NAME",
    );
    table
}

#[cfg(feature = "planted-bugs")]
fn parse_planted_bug(
    matches: &getopts::Matches,
) -> Result<Option<crate::core::PlantedBug>, UsageError> {
    match matches.opt_str("plant-bug") {
        None => Ok(None),
        Some(name) => match crate::core::PlantedBug::from_name(&name) {
            Some(bug) => Ok(Some(bug)),
            None => usage_error(format!("--plant-bug {name:?}: unknown bug")),
        },
    }
}

#[cfg(not(feature = "planted-bugs"))]
fn parse_planted_bug(
    _matches: &getopts::Matches,
) -> Result<Option<crate::core::PlantedBug>, UsageError> {
    Ok(None)
}

/// What `main` returns, listed by `--help`.
const EXIT_CODES: &str = "Exit codes:\n\
\x20 0  --help, or a clean stop on SIGTERM or SIGINT (make stop)\n\
\x20 1  could not start or had to stop: port in use, data dir locked or created for\n\
\x20    another --id, corrupt log or hard state, a bad --peer-secret, a disk error\n\
\x20    (one ERROR line on stderr names it)\n\
\x20 2  usage error (one line naming the flag)\n\
A node killed by another signal (kill_node.sh sends SIGKILL) ends with it.\n";

pub fn usage() -> String {
    let brief = "Usage: raftlite --id ID --port PORT --peers LIST [--host ADDR] [--data-dir DIR]\n\
                 \x20               [--election-timeout MIN-MAX] [--heartbeat MS] [--fsync always|never]\n\
                 \x20               [--log-level LEVEL] [--peer-secret FILE]\n\
                 \x20               [--snapshot-entries N] [--snapshot-trailing N] [--log-segment-bytes N]";
    format!("{}\n{EXIT_CODES}", option_table().usage(brief))
}

pub fn parse(arguments: &[String]) -> Result<Parsed, UsageError> {
    let matches = crate::cli::parse(&option_table(), arguments).map_err(UsageError)?;
    if matches.opt_present("help") {
        return Ok(Parsed::Help(usage()));
    }
    if let Some(extra) = matches.free.first() {
        return usage_error(format!("unexpected argument {extra:?}"));
    }
    let Some(id) = matches.opt_str("id") else {
        return usage_error("missing --id".to_string());
    };
    check_node_id(&id)?;
    let Some(port) = matches.opt_str("port") else {
        return usage_error("missing --port".to_string());
    };
    let port = parse_port(&port, "--port")?;
    let Some(peers) = matches.opt_str("peers") else {
        return usage_error("missing --peers (use --peers \"\" for a single node)".to_string());
    };
    let peers = parse_peers(&peers, &id)?;
    let host = matches
        .opt_str("host")
        .unwrap_or_else(|| HOST_DEFAULT.to_string());
    resolve(&host, port).map_err(|error| UsageError(format!("--host {host:?}: {error}")))?;
    let election = matches
        .opt_str("election-timeout")
        .unwrap_or_else(|| ELECTION_TIMEOUT_DEFAULT.to_string());
    let (election_timeout_ms_min, election_timeout_ms_max) = parse_range(&election)?;
    let heartbeat_interval_ms = match matches.opt_str("heartbeat") {
        None => HEARTBEAT_DEFAULT_MS,
        Some(text) => parse_positive(&text, "--heartbeat")?,
    };
    if heartbeat_interval_ms >= election_timeout_ms_min {
        return usage_error(format!(
            "--heartbeat {heartbeat_interval_ms} must be below the minimum election timeout {election_timeout_ms_min}"
        ));
    }
    let fsync = match matches.opt_str("fsync").as_deref() {
        None | Some("always") => true,
        Some("never") => false,
        Some(other) => return usage_error(format!("--fsync {other:?}: expected always or never")),
    };
    let log_level = match matches.opt_str("log-level") {
        None => Level::Info,
        Some(text) => match Level::parse(&text) {
            Some(level) => level,
            None => {
                return usage_error(format!(
                    "--log-level {text:?}: expected error, warn, info or debug"
                ))
            }
        },
    };
    let snapshot_entries = match matches.opt_str("snapshot-entries") {
        None => SNAPSHOT_ENTRIES_DEFAULT,
        Some(text) => parse_entry_count(&text, "--snapshot-entries", 1)?,
    };
    let snapshot_trailing = match matches.opt_str("snapshot-trailing") {
        None => SNAPSHOT_TRAILING_DEFAULT,
        Some(text) => parse_entry_count(&text, "--snapshot-trailing", 0)?,
    };
    let log_segment_bytes = match matches.opt_str("log-segment-bytes") {
        None => crate::storage::disk::SEGMENT_SIZE_MAX_DEFAULT,
        Some(text) => match text.parse::<u64>() {
            Ok(size) if (LOG_SEGMENT_BYTES_MIN..=LOG_SEGMENT_BYTES_MAX).contains(&size) => size,
            _ => {
                return usage_error(format!(
                    "--log-segment-bytes {text:?}: expected bytes, {LOG_SEGMENT_BYTES_MIN} to {LOG_SEGMENT_BYTES_MAX}"
                ))
            }
        },
    };
    let data_dir = matches
        .opt_str("data-dir")
        .map_or_else(|| PathBuf::from("data").join(&id), PathBuf::from);
    Ok(Parsed::Run(Options {
        id,
        host,
        port,
        peers,
        data_dir,
        election_timeout_ms_min,
        election_timeout_ms_max,
        heartbeat_interval_ms,
        fsync,
        log_level,
        peer_secret: matches.opt_str("peer-secret").map(PathBuf::from),
        snapshot_entries,
        snapshot_trailing,
        log_segment_bytes,
        planted_bug: parse_planted_bug(&matches)?,
    }))
}

/// Ids appear in peer lists and log lines: keep them to a safe alphabet.
pub fn check_node_id(id: &str) -> Result<(), UsageError> {
    if id.is_empty() || id.len() > NODE_ID_SIZE_MAX {
        return usage_error(format!(
            "node id {id:?} must be 1 to {NODE_ID_SIZE_MAX} characters"
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.';
    if !id.chars().all(allowed) {
        return usage_error(format!(
            "node id {id:?} may only contain letters, digits, '_', '-' and '.'"
        ));
    }
    Ok(())
}

fn parse_port(text: &str, what: &str) -> Result<u16, UsageError> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => usage_error(format!("{what} {text:?}: expected a port number 1-65535")),
    }
}

fn parse_positive(text: &str, what: &str) -> Result<u64, UsageError> {
    match text.parse::<u64>() {
        Ok(value) if value > 0 && value <= 3_600_000 => Ok(value),
        _ => usage_error(format!(
            "{what} {text:?}: expected milliseconds, 1 to 3600000"
        )),
    }
}

fn parse_entry_count(text: &str, what: &str, min: u64) -> Result<u64, UsageError> {
    match text.parse::<u64>() {
        Ok(count) if (min..=SNAPSHOT_ENTRIES_MAX).contains(&count) => Ok(count),
        _ => usage_error(format!(
            "{what} {text:?}: expected a number of entries, {min} to {SNAPSHOT_ENTRIES_MAX}"
        )),
    }
}

fn parse_range(text: &str) -> Result<(u64, u64), UsageError> {
    let Some((min, max)) = text.split_once('-') else {
        return usage_error(format!(
            "--election-timeout {text:?}: expected MIN-MAX, e.g. 150-300"
        ));
    };
    let min = parse_positive(min, "--election-timeout minimum")?;
    let max = parse_positive(max, "--election-timeout maximum")?;
    if min > max {
        return usage_error(format!(
            "--election-timeout {text:?}: minimum above maximum"
        ));
    }
    Ok((min, max))
}

/// `ID:PORT` (host 127.0.0.1) or `ID:HOST:PORT`, comma-separated.
pub fn parse_peers(text: &str, own_id: &str) -> Result<Vec<PeerSpec>, UsageError> {
    let mut peers: Vec<PeerSpec> = Vec::new();
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let peer = parse_peer(item)?;
        if peer.id == own_id {
            return usage_error(format!("--peers includes this node's own id {own_id:?}"));
        }
        if peers.iter().any(|other| other.id == peer.id) {
            return usage_error(format!("--peers names {:?} twice", peer.id));
        }
        peers.push(peer);
    }
    if peers.len() + 1 > CLUSTER_SIZE_MAX {
        return usage_error(format!(
            "{} members; at most {CLUSTER_SIZE_MAX} are supported",
            peers.len() + 1
        ));
    }
    Ok(peers)
}

fn parse_peer(item: &str) -> Result<PeerSpec, UsageError> {
    let parts: Vec<&str> = item.split(':').collect();
    let (id, host, port) = match parts.as_slice() {
        [id, port] => (*id, HOST_DEFAULT, *port),
        [id, host, port] => (*id, *host, *port),
        _ => return usage_error(format!("peer {item:?}: expected ID:PORT or ID:HOST:PORT")),
    };
    check_node_id(id)?;
    let port = parse_port(port, &format!("peer {item:?} port"))?;
    if host.is_empty() {
        return usage_error(format!("peer {item:?}: empty host"));
    }
    resolve(host, port).map_err(|error| UsageError(format!("peer {item:?}: {error}")))?;
    Ok(PeerSpec {
        id: id.to_string(),
        host: host.to_string(),
        port,
    })
}

/// Resolves once, at start-up (may block on DNS; the loop is not running yet).
pub fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    match (host, port).to_socket_addrs() {
        Ok(mut addresses) => addresses
            .next()
            .ok_or_else(|| format!("{host:?} resolves to no address")),
        Err(error) => Err(format!("cannot resolve {host:?}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> Result<Options, String> {
        let arguments: Vec<String> = line.split_whitespace().map(String::from).collect();
        match parse(&arguments) {
            Ok(Parsed::Run(options)) => Ok(options),
            Ok(Parsed::Help(_)) => Err("help".to_string()),
            Err(error) => Err(error.0),
        }
    }

    #[test]
    fn seed_command_line_works_unchanged() {
        let options = run("--id A --port 8000 --peers B:8001,C:8002").expect("valid");
        assert_eq!(options.id, "A");
        assert_eq!(options.peers.len(), 2);
        assert_eq!(options.peers[0].host, "127.0.0.1");
        assert_eq!(options.data_dir, PathBuf::from("data/A"));
        assert_eq!(
            (
                options.election_timeout_ms_min,
                options.election_timeout_ms_max
            ),
            (150, 300)
        );
        assert_eq!(options.heartbeat_interval_ms, 50);
        assert_eq!(
            (options.snapshot_entries, options.snapshot_trailing),
            (100_000, 10_000)
        );
    }

    #[test]
    fn host_form_of_peers() {
        let options = run("--id A --port 8000 --peers B:10.0.1.12:8001").expect("valid");
        assert_eq!(options.peers[0].host, "10.0.1.12");
        assert_eq!(options.peers[0].port, 8001);
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            ("--port 8000 --peers B:8001", "missing --id"),
            ("--id A --peers B:8001", "missing --port"),
            ("--id A --port 8000", "missing --peers"),
            ("--id A --port 8000 --peers A:8001", "own id"),
            ("--id A --port 8000 --peers B:8001,B:8002", "twice"),
            ("--id A --port 8000 --peers B:80x1", "port"),
            ("--id A --port 8000 --peers B", "ID:PORT"),
            ("--id A --port 0 --peers B:8001", "--port"),
            (
                "--id A --port 8000 --peers B:8001 --election-timeout 300-150",
                "minimum above",
            ),
            (
                "--id A --port 8000 --peers B:8001 --heartbeat 500",
                "below the minimum",
            ),
            ("--id A --port 8000 --peers B:8001 --bogus", "bogus"),
            (
                "--id A --port 8000 --peers B:8001 --log-level loud",
                "log-level",
            ),
            ("--id A,B --port 8000 --peers C:8001", "may only contain"),
            ("--id A --port --peers B:8001", "--port needs a value"),
            ("--id A --port 8000 --peers", "--peers needs a value"),
            (
                "--id A --port 8000 --peers B:8001 --fsync sometimes",
                "--fsync",
            ),
            (
                "--id A --port 8000 --peers B:8001 --snapshot-entries 0",
                "--snapshot-entries \"0\": expected a number of entries, 1 to",
            ),
            (
                "--id A --port 8000 --peers B:8001 --snapshot-trailing -1",
                "--snapshot-trailing \"-1\"",
            ),
            (
                "--id A --port 8000 --peers B:8001 --snapshot-entries 1e6",
                "--snapshot-entries",
            ),
            (
                "--id A --port 8000 --peers B:8001 --log-segment-bytes 4096",
                "--log-segment-bytes \"4096\": expected bytes, 1048576 to",
            ),
        ];
        for (line, expected) in cases {
            let error = run(line).expect_err(line);
            assert!(error.contains(expected), "{line}: {error}");
        }
    }

    #[test]
    fn help_lists_every_flag_with_its_default() {
        let text = usage();
        for flag in [
            "--id",
            "--port",
            "--peers",
            "--host",
            "--data-dir",
            "--election-timeout",
            "--heartbeat",
            "--fsync",
            "--log-level",
            "--snapshot-entries",
            "--snapshot-trailing",
            "--log-segment-bytes",
        ] {
            assert!(text.contains(flag), "{flag} missing from help");
        }
        assert!(text.contains("default 150-300"));
        assert!(text.contains("(default 100000)") && text.contains("(default 10000)"));
    }
}
