//! submit: send commands to a raftlite cluster, like `nc` with a leader
//! finder. One command with --cmd, or one command per stdin line with one
//! reply line each.

use raftlite::client::{classify, Client, ReplyKind};
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT_DEFAULT_MS: u64 = 5000;
const CLUSTER_DEFAULT: &str = "127.0.0.1:8000,127.0.0.1:8001,127.0.0.1:8002";

const EXIT_DEFINITE_ERROR: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_NOT_LEADER: u8 = 3;
const EXIT_TIMEOUT: u8 = 4;

fn option_table() -> getopts::Options {
    let mut table = getopts::Options::new();
    table.optopt(
        "",
        "leader",
        "node to contact first (default: the --cluster list)",
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

fn usage() -> String {
    let brief = "Usage: submit [--leader HOST:PORT | --cluster HOST:PORT,...] [--cmd \"CMD\"] [--timeout MS] [--no-redirect]\n\n\
                 Commands: SET key=value | SET key value | GET key | DEL key | CAS key expected new | STATUS\n\
                 Exit codes with --cmd: 0 OK/VALUE/NOT_FOUND/STATUS, 1 definite error (or MISMATCH),\n\
                 2 usage, 3 NOT_LEADER with --no-redirect, 4 TIMEOUT (outcome unknown).";
    option_table().usage(brief)
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
    let mut seeds = Vec::new();
    if let Some(leader) = matches.opt_str("leader") {
        seeds.push(normalize_address(&leader)?);
    }
    if let Some(cluster) = matches.opt_str("cluster") {
        for address in cluster.split(',').filter(|item| !item.trim().is_empty()) {
            seeds.push(normalize_address(address)?);
        }
    }
    if seeds.is_empty() {
        seeds = CLUSTER_DEFAULT.split(',').map(String::from).collect();
    }
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
        redirect: !matches.opt_present("no-redirect"),
    }))
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

fn exit_code(reply: &str, redirect: bool) -> u8 {
    match classify(reply) {
        ReplyKind::Success => 0,
        ReplyKind::NotLeader if !redirect => EXIT_NOT_LEADER,
        ReplyKind::Timeout => EXIT_TIMEOUT,
        ReplyKind::NotLeader | ReplyKind::Mismatch | ReplyKind::Error => EXIT_DEFINITE_ERROR,
    }
}

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let arguments = match parse_arguments(&arguments) {
        Ok(Some(arguments)) => arguments,
        Ok(None) => {
            print!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("submit: {error}");
            eprintln!("Try 'submit --help'.");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut client = Client::new(arguments.seeds, arguments.timeout, arguments.redirect);
    if let Some(command) = arguments.command {
        let reply = client.execute(&command);
        println!("{reply}");
        return ExitCode::from(exit_code(&reply, arguments.redirect));
    }
    run_lines(&mut client)
}

/// One reply line per input line, in order, flushed each time so another
/// program can drive this through a pipe.
fn run_lines(client: &mut Client) -> ExitCode {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let line = match line {
            Ok(line) => line,
            Err(error) => {
                eprintln!("submit: cannot read stdin: {error}");
                return ExitCode::from(EXIT_DEFINITE_ERROR);
            }
        };
        let reply = client.execute(&line);
        if writeln!(stdout, "{reply}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return ExitCode::from(EXIT_DEFINITE_ERROR); // the reader went away
        }
    }
    ExitCode::SUCCESS
}
