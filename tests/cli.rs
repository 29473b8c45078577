//! The daemon's and submit's command lines: usage errors exit 2 with one
//! line naming the problem; --help lists every flag with its default.

mod common;

use common::{free_ports, poll_until, run_submit, TempDir, RAFTLITE, SUBMIT};
use raftlite_kit::cli_checks;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

fn run_daemon(arguments: &[&str]) -> (i32, String, String) {
    let output = Command::new(RAFTLITE)
        .args(arguments)
        .stdin(Stdio::null())
        .output()
        .expect("run raftlite");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

#[test]
fn daemon_usage_errors_exit_2_naming_the_problem() {
    let cases: [(&[&str], &str); 8] = [
        (&["--port", "8000", "--peers", "B:8001"], "missing --id"),
        (
            &["--id", "A", "--port", "8000", "--peers", "A:8001"],
            "own id",
        ),
        (
            &["--id", "A", "--port", "8000", "--peers", "B:8001,B:8002"],
            "twice",
        ),
        (
            &["--id", "A", "--port", "8000", "--peers", "B:nope"],
            "port",
        ),
        (
            &[
                "--id",
                "A",
                "--port",
                "8000",
                "--peers",
                "B:no.such.host.invalid:8001",
            ],
            "cannot resolve",
        ),
        (
            &["--id", "A", "--port", "99999", "--peers", "B:8001"],
            "--port",
        ),
        (
            &[
                "--id",
                "A",
                "--port",
                "8000",
                "--peers",
                "B:8001",
                "--heartbeat",
                "0",
            ],
            "--heartbeat",
        ),
        (
            &[
                "--id",
                "A",
                "--port",
                "8000",
                "--peers",
                "B:8001",
                "--frobnicate",
            ],
            "frobnicate",
        ),
    ];
    for (arguments, expected) in cases {
        let (code, _, stderr) = run_daemon(arguments);
        assert_eq!(code, 2, "{arguments:?}: {stderr}");
        let first = stderr.lines().next().unwrap_or("");
        assert!(
            first.contains(expected),
            "{arguments:?}: first line {first:?} should mention {expected:?}"
        );
    }
}

#[test]
fn daemon_help_lists_every_flag_and_default() {
    let (code, stdout, _) = run_daemon(&["--help"]);
    assert_eq!(code, 0);
    for text in [
        "--id",
        "--port",
        "--peers",
        "--host",
        "--data-dir",
        "data/<ID>",
        "--election-timeout",
        "150-300",
        "--heartbeat",
        "default 50",
        "--log-level",
    ] {
        assert!(stdout.contains(text), "help lacks {text:?}:\n{stdout}");
    }
}

#[test]
fn submit_help_and_usage_errors() {
    let output = Command::new(SUBMIT)
        .arg("--help")
        .output()
        .expect("run submit");
    let help = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0));
    for text in [
        "--leader",
        "--cluster",
        "--cmd",
        "--timeout",
        "default 5000",
        "--no-redirect",
        "SET key=value",
        "SET key value",
        "TRANSFER ID",
        "OK leader=ID term=T",
        "GET key",
        "SGET key",
        "NOT_FOUND stale applied=I",
        "DEL key",
        "CAS key expected new",
        "as expected means: only if absent",
        "MISMATCH absent",
        "MISMATCH current=",
        "STATUS id=",
        "ERR NOT_LEADER",
        "ERR UNAVAILABLE",
        "ERR BAD_REQUEST",
        "ERR TIMEOUT",
        "Exit codes",
        "3 NOT_LEADER",
        "4 TIMEOUT",
        "From stdin",
        "4, 1, 3, 0",
    ] {
        assert!(help.contains(text), "help lacks {text:?}:\n{help}");
    }
    let output = Command::new(SUBMIT)
        .args(["--leader", "nonsense"])
        .output()
        .expect("run submit");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("HOST:PORT"));
}

#[test]
fn daemon_writes_its_pid_file_and_a_single_node_serves() {
    let dir = TempDir::new("single");
    let port = free_ports(1).expect("port")[0];
    let data_dir = dir.0.join("node");
    let mut child = Command::new(RAFTLITE)
        .args(["--id", "solo", "--port", &port.to_string(), "--peers", ""])
        .arg("--data-dir")
        .arg(&data_dir)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let pid_file = data_dir.join("raftlite.pid");
    let pid = poll_until(Duration::from_secs(2), || {
        std::fs::read_to_string(&pid_file).ok()
    });
    assert_eq!(
        pid.map(|text| text.trim().to_string()),
        Some(child.id().to_string())
    );
    let address = format!("127.0.0.1:{port}");
    let mut client = raftlite::client::Client::new(vec![address], Duration::from_secs(2), true);
    let reply = client.execute("SET solo=1");
    let _ = child.kill();
    let _ = child.wait();
    assert!(reply.starts_with("OK index="), "{reply}");
}

#[test]
fn daemon_refuses_a_port_in_use_with_exit_1() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("addr").port().to_string();
    let dir = TempDir::new("busy");
    let data_dir = dir.0.join("A").display().to_string();
    let (code, _, stderr) = run_daemon(&[
        "--id",
        "A",
        "--port",
        &port,
        "--peers",
        "B:1",
        "--data-dir",
        &data_dir,
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot listen"), "{stderr}");
}

/// Runs `submit` with `input` on its stdin; returns (stdout, exit code).
/// Every call passes --timeout, which bounds how long it can take.
fn run_submit_lines(arguments: &[&str], input: &str) -> (String, i32) {
    let mut child = Command::new(SUBMIT)
        .args(arguments)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn submit");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write commands");
    drop(stdin);
    let output = child.wait_with_output().expect("submit finishes");
    (
        String::from_utf8_lossy(&output.stdout).to_string(),
        output.status.code().unwrap_or(-1),
    )
}

/// `... | submit || fail` must fire: stdin mode exits with the most severe
/// code of its lines (4 over 1 over 3 over 0), as --cmd would for each.
#[test]
fn submit_from_stdin_exits_with_the_worst_line() {
    let cluster = common::cluster(3, &[]);
    let leader = cluster.require_leader(Duration::from_secs(5));
    let addresses = cluster.addresses().join(",");
    let live = ["--cluster", &addresses, "--timeout", "3000"];
    let (output, code) = run_submit_lines(&live, "SET a=1\nGET a\nSTATUS\n");
    assert_eq!(code, 0, "all succeed: {output}");
    let (output, code) = run_submit_lines(&live, "SET a=1\nCAS a 9 10\nGET a\n");
    assert_eq!(code, 1, "a MISMATCH is a definite failure: {output}");
    assert_eq!(
        output.lines().nth(1),
        Some("MISMATCH current=1"),
        "{output}"
    );
    // A follower that will not redirect says NOT_LEADER (3); a bad request
    // after it (1) is more severe.
    let follower = cluster.nodes[(leader + 1) % 3].address();
    let pinned = ["--leader", &follower, "--no-redirect", "--timeout", "3000"];
    let (output, code) = run_submit_lines(&pinned, "SGET a\nSET b=1\n");
    assert_eq!(code, 3, "{output}");
    let (output, code) = run_submit_lines(&pinned, "SET b=1\nFROB b\nSGET a\n");
    assert!(output.starts_with("ERR NOT_LEADER"), "{output}");
    assert_eq!(code, 1, "{output}");
}

#[test]
fn submit_with_every_node_down_says_unavailable_and_exits_1() {
    let ports = free_ports(3).expect("ports");
    let addresses: Vec<String> = ports
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect();
    let cluster = addresses.join(",");
    let (output, code) =
        run_submit_lines(&["--cluster", &cluster, "--timeout", "500"], "SET a=1\n");
    assert_eq!(code, 1, "{output}");
    let expected: Vec<String> = addresses
        .iter()
        .map(|address| format!("{address}: connection refused"))
        .collect();
    assert_eq!(
        output.trim(),
        format!(
            "ERR UNAVAILABLE no node reachable ({})",
            expected.join("; ")
        )
    );
}

/// A dead --leader is not the end: the --cluster nodes follow. STATUS is
/// the exception, as it describes the node asked.
#[test]
fn submit_goes_on_from_a_dead_leader_to_the_cluster() {
    let cluster = common::cluster(3, &[]);
    cluster.require_leader(Duration::from_secs(5));
    let dead = format!("127.0.0.1:{}", free_ports(1).expect("port")[0]);
    let addresses = cluster.addresses().join(",");
    let arguments = [
        "--leader",
        &dead,
        "--cluster",
        &addresses,
        "--timeout",
        "3000",
    ];
    let (reply, code) = run_submit(&[&arguments[..], &["--cmd", "SET fallback=1"]].concat());
    assert!(reply.starts_with("OK index="), "{reply}");
    assert_eq!(code, 0);
    let (output, code) = run_submit_lines(&arguments, "GET fallback\n");
    assert_eq!((output.trim(), code), ("VALUE 1", 0));
    let (reply, code) = run_submit(&[&arguments[..], &["--cmd", "STATUS"]].concat());
    assert_eq!(
        reply.trim(),
        format!("ERR UNAVAILABLE {dead}: connection refused")
    );
    assert_eq!(code, 1);
}

/// A stand-in node on a loopback port that opens sessions, answers CAS
/// with MISMATCH and never answers anything else; ends when the test does.
fn node_that_never_answers_sets() -> String {
    use raftlite::wire::{encode_frame, ClientResponse, Frame, FrameDecoder};
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut decoder = FrameDecoder::new();
            while let Ok(count @ 1..) = stream.read(decoder.spare(4096)) {
                decoder.commit(count);
                while let Ok(Some(Frame::ClientRequest(request))) = decoder.next_frame() {
                    let reply = match request.command.split(' ').next() {
                        Some("REGISTER") => "SESSION id=5",
                        Some("CAS") => "MISMATCH current=NOT_FOUND",
                        _ => continue,
                    };
                    let response = ClientResponse {
                        request_id: request.request_id,
                        reply: reply.to_string(),
                    };
                    let mut out = Vec::new();
                    encode_frame(&Frame::ClientResponse(response), &mut out);
                    let _ = stream.write_all(&out);
                }
            }
        }
    });
    address
}

#[test]
fn submit_from_stdin_ranks_an_unknown_outcome_above_a_failure() {
    let node = node_that_never_answers_sets();
    let arguments = ["--cluster", &node, "--timeout", "300"];
    let (output, code) = run_submit_lines(&arguments, "CAS a 9 10\nSET a=1\nCAS a 9 10\n");
    let lines: Vec<&str> = output.lines().collect();
    assert_eq!(
        lines,
        [
            "MISMATCH current=NOT_FOUND",
            "ERR TIMEOUT",
            "MISMATCH current=NOT_FOUND"
        ]
    );
    assert_eq!(code, 4);
}

/// The binaries this package builds (the tools' are checked in
/// tools/tests/cli.rs), for the checks every one must pass.
const BINARIES: [(&str, &str, &str); 2] = [
    ("raftlite", RAFTLITE, "--id"),
    ("submit", SUBMIT, "--leader"),
];

#[test]
fn every_binary_answers_help_with_its_flags_and_exit_codes() {
    for (name, binary, _) in BINARIES {
        cli_checks::assert_help_lists_flags_and_exit_codes(name, binary);
    }
}

#[test]
fn a_flag_where_a_value_belongs_is_reported_as_the_missing_value() {
    let (code, _, stderr) = run_daemon(&["--id", "A", "--port", "--peers", "B:8001"]);
    assert_eq!(code, 2, "{stderr}");
    assert_eq!(
        stderr.lines().next(),
        Some("raftlite: --port needs a value"),
        "{stderr}"
    );
    let output = Command::new(SUBMIT)
        .args(["--leader", "--cmd", "STATUS"])
        .stdin(Stdio::null())
        .output()
        .expect("run submit");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.lines().next(),
        Some("submit: --leader needs a value"),
        "{stderr}"
    );
    // Either binary: --help after a value flag is the missing value.
    for (name, binary, flag) in BINARIES {
        cli_checks::assert_missing_value_is_reported(name, binary, flag);
    }
}
