//! The command line: every flag, its default and its bounds. Each rule is one
//! early return with a message naming the flag, so a usage error is one line.

use raftlite::constants::{CLUSTER_SIZE_MAX, COMMAND_SIZE_MAX, KEY_SIZE_MAX, VALUE_SIZE_MAX};
use std::path::PathBuf;
use std::time::Duration;

pub const CLUSTER_DEFAULT: &str = "127.0.0.1:8000,127.0.0.1:8001,127.0.0.1:8002";

/// One TCP connection and one session per client; the daemon accepts at most
/// `CLIENT_CONNECTIONS_MAX` (4096) connections and remembers `SESSIONS_MAX`
/// (4096) sessions, so more clients would only evict each other.
pub const CLIENTS_MAX: usize = 4096;
pub const CLIENTS_DEFAULT: usize = 16;

pub const DURATION_DEFAULT_S: f64 = 10.0;
/// A day: long enough for any soak run, short enough to catch a typo.
pub const DURATION_MAX_S: f64 = 86_400.0;
pub const WARMUP_MAX_S: f64 = 3_600.0;
pub const OPS_MAX: u64 = 1_000_000_000_000;

/// Open-loop rate bound: far above what one thread can send, so it only
/// catches typos (the schedule's arithmetic stays exact below it).
pub const RATE_MAX: f64 = 10_000_000.0;

pub const KEY_SIZE_DEFAULT: usize = 8;
pub const VALUE_SIZE_DEFAULT: usize = 16;
pub const KEYS_DEFAULT: u64 = 100_000;
pub const KEYS_MAX: u64 = 1_000_000_000_000;
pub const READ_RATIO_DEFAULT: f64 = 0.5;
pub const TIMEOUT_DEFAULT_MS: u64 = 5000;
pub const TIMEOUT_MAX_MS: u64 = 600_000;
pub const SEED_DEFAULT: u64 = 1;

/// The longest command the workload builds ("SET " key " " value) must fit
/// what the daemon accepts.
const _: () = assert!(4 + KEY_SIZE_MAX + 1 + VALUE_SIZE_MAX <= COMMAND_SIZE_MAX);
const _: () = assert!(CLIENTS_DEFAULT <= CLIENTS_MAX);

/// What the clients speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// raftlite's binary frames, with sessions.
    Raftlite,
    /// etcd 3.4's JSON gateway over HTTP/1.1, without sessions (`etcd.rs`).
    Etcd,
}

/// Everything a run needs, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// HOST:PORT strings as given (resolved later, in `main`).
    pub cluster: Vec<String>,
    pub protocol: Protocol,
    pub clients: usize,
    /// Measured time after the warmup; `None` only with `--ops` alone.
    pub duration: Option<Duration>,
    /// Operations to measure; the run ends when they have finished.
    pub ops: Option<u64>,
    pub warmup: Duration,
    /// Open loop at this many operations per second across all clients;
    /// `None` is closed loop.
    pub rate: Option<f64>,
    pub key_size: usize,
    pub value_size: usize,
    pub keys: u64,
    pub read_ratio: f64,
    pub timeout: Duration,
    pub seed: u64,
    pub json_path: Option<PathBuf>,
    pub histogram_path: Option<PathBuf>,
    /// Before the run, write each of the `keys` keys once, in order.
    pub fill: bool,
}

pub enum Parsed {
    /// Boxed: `Options` is large next to `Help`.
    Run(Box<Options>),
    Help,
}

fn option_table() -> getopts::Options {
    let mut table = getopts::Options::new();
    let flags: [(&str, &str, String); 17] = [
        ("cluster", "HOST:PORT,...", format!("nodes to contact, comma-separated; the only source of addresses besides leader hints (default {CLUSTER_DEFAULT})")),
        ("protocol", "raftlite|etcd", "what the nodes speak: raftlite frames, or etcd 3.4's JSON gateway over HTTP/1.1 (PUT and linearizable RANGE, no sessions; --cluster lists client URLs) (default raftlite)".to_string()),
        ("clients", "N", format!("concurrent clients, each with its own TCP connection and session, one request outstanding (default {CLIENTS_DEFAULT}, at most {CLIENTS_MAX})")),
        ("duration", "S", format!("seconds to measure after the warmup (default {DURATION_DEFAULT_S}; with --ops: no time limit unless given)")),
        ("ops", "N", "stop once N measured operations have finished, ok or failed (default: run for --duration)".to_string()),
        ("warmup", "S", "seconds of load before measuring starts; not counted (default 0)".to_string()),
        ("rate", "R", "open loop: R operations per second across all clients at fixed intervals; latency counts from the scheduled send time (default: closed loop)".to_string()),
        ("key-size", "B", format!("key size in bytes, 'k' and zero-padded digits, e.g. k0000042 (default {KEY_SIZE_DEFAULT})")),
        ("value-size", "B", format!("value size in bytes for SET (default {VALUE_SIZE_DEFAULT}, at most {VALUE_SIZE_MAX})")),
        ("keys", "N", format!("key space: keys are drawn uniformly from N keys (default {KEYS_DEFAULT})")),
        ("read-ratio", "F", format!("share of GET operations, 0 to 1; the rest are SET (default {READ_RATIO_DEFAULT})")),
        ("timeout", "MS", format!("give up on an operation after MS milliseconds, count TIMEOUT and move on (default {TIMEOUT_DEFAULT_MS})")),
        ("seed", "N", format!("seed of the key and read/write choices (default {SEED_DEFAULT})")),
        ("json", "FILE", "also write the summary as one JSON object to FILE (default: none)".to_string()),
        ("hist", "FILE.svg", "also draw the latency histogram as SVG to FILE (default: none)".to_string()),
        ("fill", "", "first SET every one of the --keys keys once, in key order across the clients, so the store holds them all live; then warm up and measure as usual (the fill is not counted; a line says how long it took) (default: no fill)".to_string()),
        ("help", "", "print this help".to_string()),
    ];
    for (name, hint, description) in flags {
        if hint.is_empty() {
            let short = if name == "help" { "h" } else { "" };
            table.optflag(short, name, &description);
        } else {
            table.optopt("", name, &description, hint);
        }
    }
    table
}

pub fn usage() -> String {
    let brief = "Usage: bench [--cluster HOST:PORT,...] [--clients N] [--duration S | --ops N] [--rate R] [options]\n\n\
Drives a raftlite cluster with SET and GET commands and reports throughput,\n\
errors and latency. Each client opens its own TCP connection and session\n\
(REGISTER), numbers its writes in it like submit, and keeps one request\n\
outstanding; one thread drives every client. Operations are retried across\n\
NOT_LEADER redirects and reconnects until they succeed or --timeout passes.\n\n\
Output: a progress line per second, then a summary, on stdout. Latency is\n\
measured on successful operations, including their retries. Client CPU time\n\
comes from /proc/self/stat (fields 14 and 15, at 100 clock ticks per second).\n\n\
Exit codes: 0 run completed (errors are counted, not fatal), 1 the cluster\n\
could not be reached (no session opened within --timeout, at least 5 s) or the\n\
event loop failed, 2 usage error, 3 a --json or --hist file could not be written.";
    option_table().usage(brief)
}

/// `Ok(Parsed::Help)` for --help; `Err` is the one-line usage error.
pub fn parse(arguments: &[String]) -> Result<Parsed, String> {
    let matches = raftlite::cli::parse(&option_table(), arguments)?;
    if matches.opt_present("help") {
        return Ok(Parsed::Help);
    }
    if let Some(extra) = matches.free.first() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    let text = |name: &str| matches.opt_str(name);
    let ops = optional(text("ops"), |value| parse_count(value, "ops", 1, OPS_MAX))?;
    let duration_s = match (text("duration"), ops) {
        (Some(value), _) => Some(parse_seconds(&value, "duration", false, DURATION_MAX_S)?),
        (None, Some(_)) => None,
        (None, None) => Some(DURATION_DEFAULT_S),
    };
    let keys = optional(text("keys"), |value| {
        parse_count(value, "keys", 1, KEYS_MAX)
    })?
    .unwrap_or(KEYS_DEFAULT);
    let key_size = match text("key-size") {
        Some(value) => parse_count(&value, "key-size", 1, KEY_SIZE_MAX as u64)? as usize,
        None => KEY_SIZE_DEFAULT,
    };
    check_key_size(key_size, keys)?;
    let options = Options {
        cluster: parse_cluster(text("cluster").as_deref().unwrap_or(CLUSTER_DEFAULT))?,
        protocol: optional(text("protocol"), parse_protocol)?.unwrap_or(Protocol::Raftlite),
        clients: count_or(text("clients"), "clients", 1, CLIENTS_MAX, CLIENTS_DEFAULT)?,
        duration: duration_s.map(Duration::from_secs_f64),
        ops,
        warmup: Duration::from_secs_f64(match text("warmup") {
            Some(value) => parse_seconds(&value, "warmup", true, WARMUP_MAX_S)?,
            None => 0.0,
        }),
        rate: optional(text("rate"), parse_rate)?,
        key_size,
        value_size: count_or(
            text("value-size"),
            "value-size",
            1,
            VALUE_SIZE_MAX,
            VALUE_SIZE_DEFAULT,
        )?,
        keys,
        read_ratio: optional(text("read-ratio"), parse_ratio)?.unwrap_or(READ_RATIO_DEFAULT),
        timeout: Duration::from_millis(
            optional(text("timeout"), |value| {
                parse_count(value, "timeout", 1, TIMEOUT_MAX_MS)
            })?
            .unwrap_or(TIMEOUT_DEFAULT_MS),
        ),
        seed: optional(text("seed"), |value| {
            parse_count(value, "seed", 0, u64::MAX)
        })?
        .unwrap_or(SEED_DEFAULT),
        json_path: text("json").map(PathBuf::from),
        histogram_path: text("hist").map(PathBuf::from),
        fill: matches.opt_present("fill"),
    };
    Ok(Parsed::Run(Box::new(options)))
}

fn optional<T>(
    text: Option<String>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, String> {
    text.map(|value| parse(&value)).transpose()
}

fn count_or(
    text: Option<String>,
    name: &str,
    min: usize,
    max: usize,
    default: usize,
) -> Result<usize, String> {
    match text {
        Some(value) => Ok(parse_count(&value, name, min as u64, max as u64)? as usize),
        None => Ok(default),
    }
}

fn parse_count(text: &str, name: &str, min: u64, max: u64) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(format!(
            "--{name} {text:?}: expected a whole number from {min} to {max}"
        )),
    }
}

fn parse_seconds(text: &str, name: &str, zero_allowed: bool, max: f64) -> Result<f64, String> {
    let lowest_ok = |value: f64| {
        if zero_allowed {
            value >= 0.0
        } else {
            value > 0.0
        }
    };
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && lowest_ok(value) && value <= max => Ok(value),
        _ => Err(format!(
            "--{name} {text:?}: expected seconds {} 0 and at most {max}",
            if zero_allowed { "from" } else { "above" }
        )),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 && value <= RATE_MAX => Ok(value),
        _ => Err(format!(
            "--rate {text:?}: expected operations per second above 0 and at most {RATE_MAX}"
        )),
    }
}

fn parse_protocol(text: &str) -> Result<Protocol, String> {
    match text.trim() {
        "raftlite" => Ok(Protocol::Raftlite),
        "etcd" => Ok(Protocol::Etcd),
        _ => Err(format!("--protocol {text:?}: expected raftlite or etcd")),
    }
}

fn parse_ratio(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err(format!(
            "--read-ratio {text:?}: expected a number from 0 to 1"
        )),
    }
}

/// The key is 'k' and the key index zero-padded to the rest of the size, so
/// the largest index must fit in `key_size - 1` digits.
fn check_key_size(key_size: usize, keys: u64) -> Result<(), String> {
    let digits = decimal_digits(keys - 1);
    if key_size < 1 + digits {
        return Err(format!(
            "--key-size {key_size}: {keys} keys need at least {} bytes ('k' and {digits} digits)",
            1 + digits
        ));
    }
    Ok(())
}

pub fn decimal_digits(value: u64) -> usize {
    value.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// Accepts `HOST:PORT` items; duplicates are refused because they would skew
/// how clients spread over the nodes.
fn parse_cluster(text: &str) -> Result<Vec<String>, String> {
    let mut addresses: Vec<String> = Vec::new();
    for item in text
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let address = item.trim_start_matches("http://").trim_end_matches('/');
        let valid = match address.rsplit_once(':') {
            Some((host, port)) => {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port > 0)
            }
            None => false,
        };
        if !valid {
            return Err(format!("--cluster item {item:?}: expected HOST:PORT"));
        }
        if addresses.iter().any(|known| known == address) {
            return Err(format!("--cluster lists {address} twice"));
        }
        addresses.push(address.to_string());
    }
    if addresses.is_empty() {
        return Err("--cluster: expected at least one HOST:PORT".to_string());
    }
    if addresses.len() > CLUSTER_SIZE_MAX {
        return Err(format!(
            "--cluster: {} addresses; at most {CLUSTER_SIZE_MAX}",
            addresses.len()
        ));
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str) -> Result<Options, String> {
        let arguments: Vec<String> = line.split_whitespace().map(String::from).collect();
        match parse(&arguments)? {
            Parsed::Run(options) => Ok(*options),
            Parsed::Help => Err("help".to_string()),
        }
    }

    #[test]
    fn defaults_describe_a_closed_loop_run_against_the_local_cluster() {
        let options = run("").expect("valid");
        assert_eq!(
            options.cluster,
            ["127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002"]
        );
        assert_eq!(options.protocol, Protocol::Raftlite);
        assert_eq!(options.clients, CLIENTS_DEFAULT);
        assert_eq!(options.duration, Some(Duration::from_secs(10)));
        assert_eq!(options.ops, None);
        assert_eq!(options.warmup, Duration::ZERO);
        assert_eq!(options.rate, None);
        assert_eq!((options.key_size, options.value_size), (8, 16));
        assert_eq!(options.keys, 100_000);
        assert_eq!(options.read_ratio, 0.5);
        assert_eq!(options.timeout, Duration::from_millis(5000));
        assert_eq!((options.json_path, options.histogram_path), (None, None));
        assert!(!options.fill);
    }

    #[test]
    fn every_flag_is_read() {
        let options = run(
            "--cluster 10.0.1.12:8000,node-b:9000 --clients 64 --duration 2.5 --ops 1000 \
             --warmup 1 --rate 5000 --key-size 12 --value-size 100 --keys 1000 \
             --read-ratio 0.9 --timeout 250 --seed 7 --json out.json --hist out.svg --protocol etcd \
             --fill",
        )
        .expect("valid");
        assert_eq!(options.cluster, ["10.0.1.12:8000", "node-b:9000"]);
        assert_eq!(options.protocol, Protocol::Etcd);
        assert_eq!(options.clients, 64);
        assert_eq!(options.duration, Some(Duration::from_millis(2500)));
        assert_eq!(options.ops, Some(1000));
        assert_eq!(options.warmup, Duration::from_secs(1));
        assert_eq!(options.rate, Some(5000.0));
        assert_eq!((options.key_size, options.value_size), (12, 100));
        assert_eq!((options.keys, options.read_ratio), (1000, 0.9));
        assert_eq!(options.timeout, Duration::from_millis(250));
        assert_eq!(options.seed, 7);
        assert_eq!(options.json_path, Some(PathBuf::from("out.json")));
        assert_eq!(options.histogram_path, Some(PathBuf::from("out.svg")));
        assert!(options.fill);
    }

    #[test]
    fn ops_alone_has_no_time_limit() {
        let options = run("--ops 500").expect("valid");
        assert_eq!((options.ops, options.duration), (Some(500), None));
    }

    #[test]
    fn help_is_recognized_and_lists_every_flag_with_its_default() {
        assert_eq!(run("--help"), Err("help".to_string()));
        let text = usage();
        for flag in [
            "--cluster",
            "--protocol",
            "--clients",
            "--duration",
            "--ops",
            "--warmup",
            "--rate",
            "--key-size",
            "--value-size",
            "--keys",
            "--read-ratio",
            "--timeout",
            "--seed",
            "--json",
            "--hist",
            "--fill",
            "--help",
        ] {
            assert!(text.contains(flag), "{flag} missing from --help");
        }
        assert_eq!(text.matches("(default").count(), 16);
    }

    #[test]
    fn usage_errors_name_the_flag_in_one_line() {
        let cases = [
            ("--clients 0", "--clients"),
            ("--clients 4097", "--clients"),
            ("--duration 0", "--duration"),
            ("--duration -1", "--duration"),
            ("--warmup x", "--warmup"),
            ("--rate 0", "--rate"),
            ("--read-ratio 1.5", "--read-ratio"),
            ("--value-size 65537", "--value-size"),
            ("--keys 0", "--keys"),
            ("--keys 100000000 --key-size 8", "--key-size"),
            ("--timeout 0", "--timeout"),
            ("--cluster 127.0.0.1", "--cluster"),
            ("--cluster a:1,a:1", "twice"),
            ("--cluster ,", "--cluster"),
            ("--protocol http", "--protocol"),
            ("--frobnicate", "frobnicate"),
            ("stray", "stray"),
            ("--clients --duration 5", "--clients needs a value"),
            ("--duration 5 --json", "--json needs a value"),
        ];
        for (line, expected) in cases {
            let error = run(line).expect_err(line);
            assert!(error.contains(expected), "{line}: {error}");
            assert!(!error.contains('\n'), "{line}: {error}");
        }
    }

    #[test]
    fn key_size_must_hold_the_largest_key_index() {
        assert!(run("--keys 10000000 --key-size 8").is_ok()); // k9999999
        assert!(run("--keys 10000001 --key-size 8").is_err());
        assert!(run("--keys 1 --key-size 2").is_ok()); // k0
        assert!(run("--keys 1 --key-size 1").is_err());
        assert_eq!(decimal_digits(0), 1);
        assert_eq!(decimal_digits(9), 1);
        assert_eq!(decimal_digits(10), 2);
        assert_eq!(decimal_digits(u64::MAX), 20);
    }
}
