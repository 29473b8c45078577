//! Harness for process-level tests: real `raftlite` processes on free
//! loopback ports, in a temp dir, killed and removed when the test ends
//! (their logs are printed if it failed).

#![allow(dead_code)] // each test binary uses part of the harness

pub mod proxy;

use raftlite::client::Client;
use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const RAFTLITE: &str = env!("CARGO_BIN_EXE_raftlite");
pub const SUBMIT: &str = env!("CARGO_BIN_EXE_submit");

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let unique = format!(
            "raftlite-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Ports the OS just handed out; held open together so they are distinct.
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind port 0"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("local addr").port())
        .collect()
}

pub struct Node {
    pub id: String,
    pub port: u16,
    pub arguments: Vec<String>,
    pub child: Option<Child>,
}

impl Node {
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

pub struct Cluster {
    pub dir: TempDir,
    pub nodes: Vec<Node>,
    /// With `start_proxied`: `links[from][to]` carries from's traffic to `to`.
    pub links: Vec<Vec<Option<proxy::LinkProxy>>>,
}

pub const IDS: [&str; 7] = ["A", "B", "C", "D", "E", "F", "G"];

impl Cluster {
    /// Starts `size` nodes with the default timeouts plus `extra` flags.
    pub fn start(size: usize, extra: &[&str]) -> Cluster {
        Cluster::start_with_links(size, extra, false)
    }

    /// Like `start`, but every peer link goes through its own proxy, so
    /// `partition` can cut real traffic.
    pub fn start_proxied(size: usize, extra: &[&str]) -> Cluster {
        Cluster::start_with_links(size, extra, true)
    }

    fn start_with_links(size: usize, extra: &[&str], proxied: bool) -> Cluster {
        let dir = TempDir::new("cluster");
        let ports = free_ports(size);
        let links: Vec<Vec<Option<proxy::LinkProxy>>> = (0..size)
            .map(|from| {
                (0..size)
                    .map(|to| (proxied && from != to).then(|| proxy::LinkProxy::start(ports[to])))
                    .collect()
            })
            .collect();
        let nodes = (0..size)
            .map(|index| {
                let peers: Vec<String> = (0..size)
                    .filter(|&other| other != index)
                    .map(|other| {
                        let port = links[index][other]
                            .as_ref()
                            .map_or(ports[other], |link| link.port);
                        format!("{}:{}", IDS[other], port)
                    })
                    .collect();
                let data_dir = dir.0.join("data").join(IDS[index]);
                let mut arguments = vec![
                    "--id".to_string(),
                    IDS[index].to_string(),
                    "--port".to_string(),
                    ports[index].to_string(),
                    "--peers".to_string(),
                    peers.join(","),
                    "--data-dir".to_string(),
                    data_dir.display().to_string(),
                ];
                arguments.extend(extra.iter().map(|flag| flag.to_string()));
                Node {
                    id: IDS[index].to_string(),
                    port: ports[index],
                    arguments,
                    child: None,
                }
            })
            .collect();
        let mut cluster = Cluster { dir, nodes, links };
        for index in 0..size {
            cluster.start_node(index);
        }
        cluster
    }

    pub fn log_path(&self, index: usize) -> PathBuf {
        self.dir.0.join(format!("{}.log", self.nodes[index].id))
    }

    /// Starts (or restarts) node `index` with its original command line.
    pub fn start_node(&mut self, index: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(index))
            .expect("open node log");
        let node = &mut self.nodes[index];
        assert!(node.child.is_none(), "node {} already running", node.id);
        let child = Command::new(RAFTLITE)
            .args(&node.arguments)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn raftlite");
        node.child = Some(child);
    }

    /// Cuts (or restores) every link into and out of `index`.
    pub fn isolate(&self, index: usize, blocked: bool) {
        for other in 0..self.nodes.len() {
            for (from, to) in [(index, other), (other, index)] {
                if let Some(link) = &self.links[from][to] {
                    link.set_blocked(blocked);
                }
            }
        }
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn signal(&self, index: usize, signal: &str) {
        let child = self.nodes[index].child.as_ref().expect("node running");
        let status = Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    pub fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(Node::address).collect()
    }

    pub fn client(&self, timeout: Duration) -> Client {
        Client::new(self.addresses(), timeout, true)
    }

    /// Node `index`'s STATUS fields, or None if it does not answer.
    pub fn status(&self, index: usize) -> Option<HashMap<String, String>> {
        let mut client = Client::new(
            vec![self.nodes[index].address()],
            Duration::from_millis(500),
            false,
        );
        let reply = client.execute("STATUS");
        reply.starts_with("STATUS ").then(|| parse_fields(&reply))
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&index| self.nodes[index].child.is_some())
            .collect()
    }

    /// Waits until the running nodes agree on one leader; returns its index.
    pub fn wait_for_leader(&self, timeout: Duration) -> usize {
        let leader = poll_until(timeout, || self.agreed_leader());
        leader
            .unwrap_or_else(|| panic!("no agreed leader within {timeout:?}: {:?}", self.statuses()))
    }

    fn agreed_leader(&self) -> Option<usize> {
        let statuses: Vec<(usize, HashMap<String, String>)> = self
            .running()
            .into_iter()
            .filter_map(|index| self.status(index).map(|status| (index, status)))
            .collect();
        let leaders: Vec<usize> = statuses
            .iter()
            .filter(|(_, status)| status["role"] == "leader")
            .map(|(index, _)| *index)
            .collect();
        let [leader] = leaders[..] else { return None };
        let quorum = self.nodes.len() / 2 + 1;
        let followers = statuses
            .iter()
            .filter(|(_, status)| status["leader"] == self.nodes[leader].id)
            .count();
        (followers >= quorum).then_some(leader)
    }

    pub fn statuses(&self) -> Vec<Option<String>> {
        (0..self.nodes.len())
            .map(|index| {
                let mut client = Client::new(
                    vec![self.nodes[index].address()],
                    Duration::from_millis(300),
                    false,
                );
                let reply = client.execute("STATUS");
                reply.starts_with("STATUS").then_some(reply)
            })
            .collect()
    }

    /// Waits until every running node has applied the same index with the
    /// same digest as the leader; returns that (applied, digest).
    pub fn wait_converged(&self, timeout: Duration) -> (u64, String) {
        let converged = poll_until(timeout, || {
            let statuses: Option<Vec<HashMap<String, String>>> = self
                .running()
                .into_iter()
                .map(|index| self.status(index))
                .collect();
            let statuses = statuses?;
            let first = statuses.first()?;
            let same = statuses.iter().all(|status| {
                ["applied", "digest", "last_index"]
                    .iter()
                    .all(|field| status[*field] == first[*field])
            });
            let same = same && first["applied"] == first["last_index"];
            same.then(|| {
                (
                    first["applied"].parse().unwrap_or(0),
                    first["digest"].clone(),
                )
            })
        });
        converged.unwrap_or_else(|| {
            panic!(
                "nodes did not converge within {timeout:?}: {:?}",
                self.statuses()
            )
        })
    }

    fn print_logs(&self) {
        for index in 0..self.nodes.len() {
            let text = std::fs::read_to_string(self.log_path(index)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "---- log of {} (last {} lines) ----\n{}",
                self.nodes[index].id,
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            if let Some(child) = &self.nodes[index].child {
                let _ = Command::new("kill")
                    .args(["-CONT", &child.id().to_string()])
                    .status();
            }
            self.kill(index);
        }
        if std::thread::panicking() {
            self.print_logs();
        }
    }
}

pub fn parse_fields(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|field| field.split_once('='))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// Calls `check` every 20 ms until it returns Some or `timeout` passes.
pub fn poll_until<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `submit` with arguments; returns (stdout, exit code).
pub fn run_submit(arguments: &[&str]) -> (String, i32) {
    let output = Command::new(SUBMIT)
        .args(arguments)
        .output()
        .expect("run submit");
    (
        String::from_utf8_lossy(&output.stdout).to_string(),
        output.status.code().unwrap_or(-1),
    )
}
