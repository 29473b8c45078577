//! tools/kill_node.sh and tools/cluster.sh act on the local cluster only.
//! Each test lays out a run/ dir in a temp dir (RAFTLITE_RUN_DIR points the
//! scripts at it), starts real single-node raftlite processes on free
//! loopback ports, and next to them a node with the same id in another dir:
//! "another cluster on the same machine", which must never be touched.

mod common;

use common::{free_ports, poll_until, TempDir, RAFTLITE};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const SECOND: Duration = Duration::from_secs(1);

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tools")
        .join(name)
}

/// A script that runs longer than this is stuck (or stopped itself, as the
/// old kill_node.sh did with "A|B" STOP): it is killed and the test fails.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs a tools/ script against the run dir `run`, bounded in time.
fn run_script(name: &str, run: &Path, arguments: &[&str]) -> Output {
    let binaries = Path::new(RAFTLITE).parent().expect("binary dir");
    let mut child = Command::new(script(name))
        .args(arguments)
        .env("RAFTLITE_RUN_DIR", run)
        .env("RAFTLITE_BIN_DIR", binaries)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the script");
    // The outputs are a few lines: they fit the pipes while it runs.
    let finished = poll_until(SCRIPT_TIMEOUT, || child.try_wait().ok().flatten());
    if finished.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{name} {arguments:?} took over {SCRIPT_TIMEOUT:?}");
    }
    child.wait_with_output().expect("script output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

/// A single-node raftlite with id `id` on `port`, data in `data_dir`;
/// killed and reaped on drop.
struct Node {
    child: Child,
    data_dir: PathBuf,
}

impl Node {
    fn start(id: &str, port: u16, data_dir: PathBuf) -> Node {
        let child = Command::new(RAFTLITE)
            .args(["--id", id, "--port", &port.to_string(), "--peers", ""])
            .arg("--data-dir")
            .arg(&data_dir)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn raftlite");
        let node = Node { child, data_dir };
        let written = poll_until(2 * SECOND, || {
            let pid = std::fs::read_to_string(node.data_dir.join("raftlite.pid")).ok()?;
            (pid.trim() == node.child.id().to_string()).then_some(())
        });
        assert!(written.is_some(), "raftlite wrote no pid file");
        node
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Has it exited (and been reaped)? Waits up to `timeout` for that.
    fn exited_within(&mut self, timeout: Duration) -> bool {
        poll_until(timeout, || self.child.try_wait().ok().flatten()).is_some()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process this test started through cluster.sh (not our child, so only
/// its pid is known): SIGKILLed by that pid on drop.
struct Launched(Vec<u32>);

impl Drop for Launched {
    fn drop(&mut self) {
        for pid in &self.0 {
            let command_line = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if running(*pid) && command_line.starts_with(RAFTLITE.as_bytes()) {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// The process state letter from /proc/PID/stat (R, S, T, Z...), if it exists.
fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.trim_start().chars().next()
}

fn running(pid: u32) -> bool {
    !matches!(state(pid), None | Some('Z'))
}

/// The pid in "... (pid N)" of a script's output line.
fn pid_in(line: &str) -> u32 {
    let start = line.find("(pid ").expect("a pid") + 5;
    let digits: String = line[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().expect("a pid number")
}

/// A local run/ with node A, and another cluster's A beside it.
struct Setup {
    dir: TempDir,
    local: Node,
    other: Node,
}

impl Setup {
    fn new(label: &str) -> Setup {
        let dir = TempDir::new(label);
        let ports = free_ports(2).expect("ports");
        let local = Node::start("A", ports[0], dir.0.join("run/data/A"));
        let other = Node::start("A", ports[1], dir.0.join("other/data/A"));
        Setup { dir, local, other }
    }

    fn run(&self) -> PathBuf {
        self.dir.0.join("run")
    }
}

#[test]
fn kill_node_signals_the_local_node_and_never_another_clusters_node_with_its_id() {
    let mut setup = Setup::new("kill-node");
    let output = run_script("kill_node.sh", &setup.run(), &["A", "KILL"]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        stdout.trim(),
        format!("sent SIGKILL to node A (pid {})", setup.local.pid())
    );
    assert!(setup.local.exited_within(2 * SECOND), "local A still runs");
    assert!(running(setup.other.pid()), "the other cluster's A was hit");

    // Its pid file is left behind by SIGKILL: the node is not running.
    let output = run_script("kill_node.sh", &setup.run(), &["A"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("kill_node: node A is not running (")
            && stderr.contains("which has exited"),
        "{stderr}"
    );

    // A pid file naming a live process that is not this node (pid reuse):
    // here the other cluster's A, same id, another data dir.
    let pid_file = setup.run().join("data/A/raftlite.pid");
    std::fs::write(&pid_file, format!("{}\n", setup.other.pid())).expect("write pid file");
    let output = run_script("kill_node.sh", &setup.run(), &["A", "KILL"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("which is not A's raftlite"), "{stderr}");
    assert!(running(setup.other.pid()), "the other cluster's A was hit");

    // No pid file, and no such node at all.
    std::fs::remove_file(&pid_file).expect("remove pid file");
    let output = run_script("kill_node.sh", &setup.run(), &["A"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("node A is not running (no "));
    let output = run_script("kill_node.sh", &setup.run(), &["C"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no such node"), "{stderr}");
}

#[test]
fn kill_node_refuses_bad_ids_and_signals_without_signalling_anything() {
    let setup = Setup::new("kill-node-usage");
    let cases: [&[&str]; 6] = [
        &["A|B", "STOP"],
        &["A", "BOGUS"],
        &["A", "9"],
        &[".*", "KILL"],
        &[],
        &["A", "STOP", "extra"],
    ];
    for arguments in cases {
        let output = run_script("kill_node.sh", &setup.run(), arguments);
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{arguments:?}: {stderr}");
        assert!(stderr.contains("usage: tools/kill_node.sh ID"), "{stderr}");
    }
    for node in [&setup.local, &setup.other] {
        assert_eq!(state(node.pid()).map(|state| state != 'T'), Some(true));
    }
    // Names are case-insensitive, with or without SIG.
    for signal in ["sigstop", "Cont"] {
        let output = run_script("kill_node.sh", &setup.run(), &["A", signal]);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    }
    assert!(running(setup.local.pid()) && running(setup.other.pid()));
}

#[test]
fn cluster_sh_restarts_stops_and_reports_one_node_of_the_local_cluster() {
    let mut setup = Setup::new("cluster-sh");
    let port = free_ports(1).expect("port")[0];
    let run = setup.run();
    // The test's own A gives way to one that cluster.sh starts from run/cmd.
    std::fs::create_dir_all(run.join("cmd")).expect("cmd dir");
    let command = format!(
        "{RAFTLITE} --id A --port {port} --peers= --data-dir {}\n",
        run.join("data/A").display()
    );
    std::fs::write(run.join("cmd/A"), command).expect("write cmd");
    let mut launched = Launched(Vec::new());

    // Running (the test's A): restart stops it, then starts the saved line.
    let output = run_script("cluster.sh", &run, &["restart", "A"]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], format!("stopped A (pid {})", setup.local.pid()));
    assert!(lines[1].starts_with("started A (pid "), "{stdout}");
    let first = pid_in(lines[1]);
    launched.0.push(first);
    assert!(setup.local.exited_within(SECOND));

    // A single node elects itself within an election timeout.
    let leader_line = format!("A 127.0.0.1:{port} STATUS id=A role=leader ");
    let status = poll_until(2 * SECOND, || {
        let stdout = text(&run_script("cluster.sh", &run, &["status"]).stdout);
        stdout.starts_with(&leader_line).then_some(stdout)
    });
    assert!(status.is_some(), "no {leader_line:?} line");

    // Paused: status names the node and says it did not answer.
    let output = run_script("kill_node.sh", &run, &["A", "STOP"]);
    assert_eq!(output.status.code(), Some(0));
    let status = run_script("cluster.sh", &run, &["status"]);
    assert_eq!(
        text(&status.stdout).trim(),
        format!(
            "A 127.0.0.1:{port} no answer within 1 s (paused? see {}/logs/A.log)",
            run.display()
        )
    );

    // Restart of a paused node: SIGTERM then SIGCONT, so it exits at once.
    let output = run_script("cluster.sh", &run, &["restart", "A"]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(stdout.starts_with(&format!("stopped A (pid {first})\nstarted A (pid ")));
    let second = pid_in(stdout.lines().nth(1).expect("started line"));
    launched.0.push(second);
    assert!(!running(first), "the old process still runs");

    // Stop one node; stopping it again is not an error.
    let output = run_script("cluster.sh", &run, &["stop", "A"]);
    assert_eq!(
        text(&output.stdout).trim(),
        format!("stopped A (pid {second})")
    );
    assert!(!running(second), "stop returned before A exited");
    let output = run_script("cluster.sh", &run, &["stop", "A"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(text(&output.stdout).trim(), "A was not running");
    let status = run_script("cluster.sh", &run, &["status"]);
    assert_eq!(
        text(&status.stdout).trim(),
        format!("A 127.0.0.1:{port} down")
    );

    // Not running: restart just starts it. Then stop every node.
    let output = run_script("cluster.sh", &run, &["restart", "A"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let third = pid_in(&text(&output.stdout));
    launched.0.push(third);
    let output = run_script("cluster.sh", &run, &["stop"]);
    assert_eq!(
        text(&output.stdout).trim(),
        format!("stopped A (pid {third})")
    );
    assert!(!running(third));

    // A start that fails (the port is taken) exits non-zero.
    let holder = std::net::TcpListener::bind(("127.0.0.1", port)).expect("hold the port");
    let output = run_script("cluster.sh", &run, &["restart", "A"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("A failed to start"), "{stderr}");
    drop(holder);

    // Unknown and malformed ids.
    let output = run_script("cluster.sh", &run, &["stop", "B"]);
    assert_eq!(output.status.code(), Some(1));
    let output = run_script("cluster.sh", &run, &["restart", "A|B"]);
    assert_eq!(output.status.code(), Some(2));

    assert!(running(setup.other.pid()), "the other cluster's A was hit");
}

/// Writes run/cmd for a local cluster of `ids` on `ports` (started by
/// cluster.sh's restart, which starts a node that is not running).
fn write_cluster_commands(run: &Path, ids: &[&str], ports: &[u16]) {
    std::fs::create_dir_all(run.join("cmd")).expect("cmd dir");
    for (index, id) in ids.iter().enumerate() {
        let peers: Vec<String> = (0..ids.len())
            .filter(|&other| other != index)
            .map(|other| format!("{}:{}", ids[other], ports[other]))
            .collect();
        let command = format!(
            "{RAFTLITE} --id {id} --port {} --peers {} --data-dir {}\n",
            ports[index],
            peers.join(","),
            run.join("data").join(id).display()
        );
        std::fs::write(run.join("cmd").join(id), command).expect("write cmd");
    }
}

/// The field `name` of node `id`'s line in `cluster.sh status`.
fn status_field(run: &Path, id: &str, name: &str) -> Option<String> {
    let status = text(&run_script("cluster.sh", run, &["status"]).stdout);
    let line = status
        .lines()
        .find(|line| line.starts_with(&format!("{id} ")))?;
    let prefix = format!("{name}=");
    let field = line.split(' ').find(|word| word.starts_with(&prefix))?;
    Some(field[prefix.len()..].to_string())
}

#[test]
fn cluster_sh_transfers_leadership_and_a_leader_restart_hands_it_over_first() {
    let dir = TempDir::new("cluster-transfer");
    let run = dir.0.join("run");
    let ports = free_ports(3).expect("ports");
    let ids = ["A", "B", "C"];
    write_cluster_commands(&run, &ids, &ports);
    let mut launched = Launched(Vec::new());
    for id in ids {
        let output = run_script("cluster.sh", &run, &["restart", id]);
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        launched.0.push(pid_in(&text(&output.stdout)));
    }
    let leader = poll_until(5 * SECOND, || {
        ids.into_iter()
            .find(|id| status_field(&run, id, "role").as_deref() == Some("leader"))
    })
    .expect("a leader");
    let target = ids
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");

    // make transfer NODE=target: the reply, exit 0, and target leads.
    let output = run_script("cluster.sh", &run, &["transfer", target]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stdout));
    let term = status_field(&run, target, "term").expect("a term");
    assert_eq!(
        text(&output.stdout).trim(),
        format!("OK leader={target} term={term}")
    );
    assert_eq!(
        status_field(&run, target, "role").as_deref(),
        Some("leader")
    );

    // make restart NODE=target (the leader): it hands over first.
    let output = run_script("cluster.sh", &run, &["restart", target]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("transferred leadership to ") && lines[0].ends_with(')'),
        "{stdout}"
    );
    let new_leader = lines[0]["transferred leadership to ".len()..]
        .split(' ')
        .next()
        .expect("a name")
        .to_string();
    assert_ne!(new_leader, target);
    assert!(
        lines[1].starts_with(&format!("stopped {target} (pid ")),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with(&format!("started {target} (pid ")),
        "{stdout}"
    );
    launched.0.push(pid_in(lines[2]));
    let log = std::fs::read_to_string(run.join("logs").join(format!("{target}.log")))
        .expect("the restarted node's log");
    assert!(log.contains("Transferring leadership to "), "{log}");

    // A transfer that cannot happen: the reply, exit 1.
    let paused = ids
        .into_iter()
        .find(|id| *id != new_leader)
        .expect("a follower");
    let output = run_script("kill_node.sh", &run, &[paused, "STOP"]);
    assert_eq!(output.status.code(), Some(0));
    let output = run_script("cluster.sh", &run, &["transfer", paused]);
    let _ = run_script("kill_node.sh", &run, &[paused, "CONT"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stdout).starts_with("ERR UNAVAILABLE "),
        "{}",
        text(&output.stdout)
    );
    let _ = run_script("cluster.sh", &run, &["stop"]);
}
