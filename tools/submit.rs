//! submit: send commands to a raftlite cluster, like `nc` with a leader
//! finder. One command with --cmd, or one command per stdin line with one
//! reply line each.

use raftlite::cli;
use raftlite::client::Client;
use raftlite::reply::{Answer, ReplyKind};
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT_DEFAULT_MS: u64 = 5000;
const CLUSTER_DEFAULT: &str = "127.0.0.1:8000,127.0.0.1:8001,127.0.0.1:8002";

const EXIT_SUCCESS: u8 = 0;
const EXIT_DEFINITE_ERROR: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_NOT_LEADER: u8 = 3;
const EXIT_TIMEOUT: u8 = 4;

/// Exit codes of a reply, least severe first. Reading stdin, submit exits
/// with the most severe code of its lines: an unknown outcome (4) needs a
/// person to look, a definite failure (1) means something was not done,
/// NOT_LEADER with --no-redirect (3) only that this node would not do it.
const EXIT_SEVERITY: [u8; 4] = [
    EXIT_SUCCESS,
    EXIT_NOT_LEADER,
    EXIT_DEFINITE_ERROR,
    EXIT_TIMEOUT,
];

fn option_table() -> getopts::Options {
    let mut table = getopts::Options::new();
    table.optopt(
        "",
        "leader",
        "node to try first; when it is down, the --cluster nodes follow (or, without --no-redirect, the default list)",
        "HOST:PORT",
    );
    table.optopt(
        "",
        "cluster",
        &format!("nodes to try, comma-separated (default {CLUSTER_DEFAULT})"),
        "HOST:PORT,...",
    );
    table.optopt(
        "",
        "cmd",
        "run this one command and exit (default: read commands from stdin)",
        "CMD",
    );
    table.optopt(
        "",
        "timeout",
        &format!("give up on a command after this many ms (default {TIMEOUT_DEFAULT_MS})"),
        "MS",
    );
    table.optflag(
        "",
        "no-redirect",
        "do not follow NOT_LEADER hints (exit 3 on one)",
    );
    table.optflag("h", "help", "print this help");
    table
}

const USAGE: &str = "\
Usage: submit [--leader HOST:PORT] [--cluster HOST:PORT,...] [--cmd \"CMD\"] [--timeout MS] [--no-redirect]

Runs one command (--cmd), or one per stdin line with one reply line for
every line, blank ones included. Commands and their replies:
  SET key=value         OK index=I term=T
  SET key value         OK index=I term=T  (the value is the rest of the line)
  GET key               VALUE v | NOT_FOUND  (linearizable, from the leader)
  SGET key              VALUE v stale applied=I | NOT_FOUND stale applied=I
  DEL key               OK index=I term=T  (also when the key was absent)
  CAS key expected new  OK index=I term=T | MISMATCH current=v | MISMATCH absent
                        (a bare - as expected means: only if absent; \"-\" is
                        the value -)
  STATUS                STATUS id=.. role=.. term=.. leader=.. ...  (node asked)
  SNAPSHOT              OK snapshot index=I bytes=B  (node asked snapshots its
                        state machine; ERR UNAVAILABLE if one is being written)
  TRANSFER ID           OK leader=ID term=T  (the leader hands leadership to
                        member ID; ERR UNAVAILABLE why if it did not happen
                        within an election timeout: the old leader resumes)
Keys and values may be double-quoted with backslash escapes (\\\" \\\\ \\n \\t
\\xHH), redis-cli style: SET \"a b\" \"c d\"; GET \"a b\". A bare value loses the
spaces around it: quote it to keep them.
Errors, and whether the command was applied:
  ERR NOT_LEADER ...    no; shown only with --no-redirect (else followed)
  ERR UNAVAILABLE why   no: e.g. no leader (...), no node reachable (...)
  ERR BAD_REQUEST why   no
  ERR TIMEOUT           unknown: it may still be applied (retries apply once)
Exit codes: 0 success, 1 definite error or MISMATCH, 2 usage, 3 NOT_LEADER
  with --no-redirect, 4 TIMEOUT. From stdin: the most severe of the lines,
  in the order 4, 1, 3, 0.";

fn usage() -> String {
    option_table().usage(USAGE)
}

struct Arguments {
    seeds: Vec<String>,
    command: Option<String>,
    timeout: Duration,
    redirect: bool,
}

fn parse_arguments(arguments: &[String]) -> Result<Option<Arguments>, String> {
    let matches = raftlite::cli::parse(&option_table(), arguments)?;
    if matches.opt_present("help") {
        return Ok(None);
    }
    if let Some(extra) = matches.free.first() {
        return Err(format!(
            "unexpected argument {extra:?} (quote the command: --cmd \"SET x=5\")"
        ));
    }
    let redirect = !matches.opt_present("no-redirect");
    let seeds = seeds(
        matches.opt_str("leader").as_deref(),
        matches.opt_str("cluster").as_deref(),
        redirect,
    )?;
    let timeout_ms = match matches.opt_str("timeout") {
        None => TIMEOUT_DEFAULT_MS,
        Some(text) => match text.parse::<u64>() {
            Ok(value) if value > 0 => value,
            _ => return Err(format!("--timeout {text:?}: expected milliseconds above 0")),
        },
    };
    Ok(Some(Arguments {
        seeds,
        command: matches.opt_str("cmd"),
        timeout: Duration::from_millis(timeout_ms),
        redirect,
    }))
}

/// The addresses to try, in order, each once: --leader, then --cluster.
/// Without --cluster the default list stands in, after --leader too so that
/// a dead --leader is not the end; with --no-redirect it does not, since
/// that flag asks for the node named and no other (a client pinned to one
/// node must not end up talking to whatever listens on the default ports).
fn seeds(
    leader: Option<&str>,
    cluster: Option<&str>,
    redirect: bool,
) -> Result<Vec<String>, String> {
    let mut seeds = Vec::new();
    if let Some(leader) = leader {
        seeds.push(normalize_address(leader)?);
    }
    let others = match cluster {
        Some(cluster) => cluster,
        None if leader.is_some() && !redirect => "",
        None => CLUSTER_DEFAULT,
    };
    for address in others.split(',').filter(|item| !item.trim().is_empty()) {
        let address = normalize_address(address)?;
        if !seeds.contains(&address) {
            seeds.push(address);
        }
    }
    Ok(seeds)
}

/// Accepts `HOST:PORT`, and the seed lab's `http://HOST:PORT` too.
fn normalize_address(text: &str) -> Result<String, String> {
    let trimmed = text
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/');
    match trimmed.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port > 0) =>
        {
            Ok(trimmed.to_string())
        }
        _ => Err(format!("address {text:?}: expected HOST:PORT")),
    }
}

fn exit_code(answer: &Answer, redirect: bool) -> u8 {
    match answer.kind() {
        ReplyKind::Success => EXIT_SUCCESS,
        ReplyKind::NotLeader if !redirect => EXIT_NOT_LEADER,
        ReplyKind::Timeout => EXIT_TIMEOUT,
        ReplyKind::NotLeader | ReplyKind::Mismatch | ReplyKind::Error => EXIT_DEFINITE_ERROR,
    }
}

/// The more severe of two exit codes (`EXIT_SEVERITY`).
fn worse(first: u8, second: u8) -> u8 {
    let rank = |code| EXIT_SEVERITY.iter().position(|known| *known == code);
    if rank(second) > rank(first) {
        second
    } else {
        first
    }
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let parsed = parse_arguments(&arguments);
    let arguments = match cli::options_or_exit("submit", parsed, usage, EXIT_USAGE) {
        Ok(arguments) => arguments,
        Err(code) => return code,
    };
    let mut client = Client::new(arguments.seeds, arguments.timeout, arguments.redirect);
    if let Some(command) = arguments.command {
        let answer = client.ask(&command);
        println!("{answer}");
        return ExitCode::from(exit_code(&answer, arguments.redirect));
    }
    ExitCode::from(run_lines(&mut client, arguments.redirect))
}

/// One reply line per input line, in order, flushed each time so another
/// program can drive this through a pipe. A blank line is sent like any
/// other (the node answers `ERR BAD_REQUEST empty command`): a driver that
/// writes a line and reads a line must never wait for a reply that does not
/// come. Returns the most severe exit code of the lines.
fn run_lines(client: &mut Client, redirect: bool) -> u8 {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    let mut code = EXIT_SUCCESS;
    for line in stdin.lock().lines() {
        let line = match line {
            Ok(line) => line,
            Err(error) => {
                eprintln!("submit: cannot read stdin: {error}");
                return worse(code, EXIT_DEFINITE_ERROR);
            }
        };
        let answer = client.ask(&line);
        code = worse(code, exit_code(&answer, redirect));
        if writeln!(stdout, "{answer}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return worse(code, EXIT_DEFINITE_ERROR); // the reader went away
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_severe_exit_code_wins() {
        let order = [
            EXIT_SUCCESS,
            EXIT_NOT_LEADER,
            EXIT_DEFINITE_ERROR,
            EXIT_TIMEOUT,
        ];
        for (low, &lower) in order.iter().enumerate() {
            for &higher in &order[low..] {
                assert_eq!(worse(lower, higher), higher);
                assert_eq!(worse(higher, lower), higher);
            }
        }
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|item| item.to_string()).collect()
    }

    #[test]
    fn a_dead_leader_is_followed_by_the_other_nodes_once_each() {
        let default = strings(&["127.0.0.1:8000", "127.0.0.1:8001", "127.0.0.1:8002"]);
        assert_eq!(seeds(None, None, true), Ok(default.clone()));
        let with_leader = seeds(Some("10.0.0.1:9"), None, true).expect("valid");
        assert_eq!(with_leader[0], "10.0.0.1:9");
        assert_eq!(with_leader[1..], default[..]);
        assert_eq!(
            seeds(Some("127.0.0.1:8001"), None, true),
            Ok(strings(&[
                "127.0.0.1:8001",
                "127.0.0.1:8000",
                "127.0.0.1:8002"
            ]))
        );
        assert_eq!(
            seeds(Some("a:1"), Some("b:2,a:1,,b:2"), true),
            Ok(strings(&["a:1", "b:2"]))
        );
        // --no-redirect: the nodes named, no others.
        assert_eq!(seeds(Some("a:1"), None, false), Ok(strings(&["a:1"])));
        assert_eq!(
            seeds(Some("a:1"), Some("b:2"), false),
            Ok(strings(&["a:1", "b:2"]))
        );
        assert!(seeds(Some("nonsense"), None, true).is_err());
    }
}
