//! A local cluster of real `raftlite` processes on free loopback ports,
//! optionally with every peer link through its own proxy. Shared by the
//! process-level tests and the fault bench; the daemon never uses it.

use super::proxy::LinkProxy;
use raftlite::client::Client;
use raftlite::reply::{Answer, Reply};
use std::collections::HashMap;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const NODE_IDS: [&str; 7] = ["A", "B", "C", "D", "E", "F", "G"];

/// Ports the OS just handed out, held open together so they are distinct.
pub fn free_ports(count: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<TcpListener>>>()?;
    listeners
        .iter()
        .map(|listener| listener.local_addr().map(|address| address.port()))
        .collect()
}

pub struct ClusterSpec {
    pub size: usize,
    /// Data dirs and node logs go here.
    pub dir: PathBuf,
    pub binary: PathBuf,
    /// Flags added to every node's command line.
    pub extra_arguments: Vec<String>,
    pub proxied: bool,
    /// Remove `dir` when the cluster is dropped.
    pub remove_dir_on_drop: bool,
}

pub struct LocalNode {
    pub id: String,
    pub port: u16,
    /// The node's original command line, reused on every restart.
    pub arguments: Vec<String>,
    child: Option<Child>,
}

impl LocalNode {
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

pub struct LocalCluster {
    pub nodes: Vec<LocalNode>,
    /// `links[from][to]` carries from's messages to `to` (proxied clusters).
    pub links: Vec<Vec<Option<LinkProxy>>>,
    dir: PathBuf,
    binary: PathBuf,
    remove_dir_on_drop: bool,
    /// Nodes found exited by themselves when they were to be killed.
    exits: Vec<String>,
}

impl LocalCluster {
    pub fn start(spec: ClusterSpec) -> io::Result<LocalCluster> {
        assert!(
            (1..=NODE_IDS.len()).contains(&spec.size),
            "cluster size {}",
            spec.size
        );
        std::fs::create_dir_all(&spec.dir)?;
        let ports = free_ports(spec.size)?;
        let links = start_links(&ports, spec.proxied)?;
        let nodes = (0..spec.size)
            .map(|index| node(&spec, &ports, &links, index))
            .collect();
        let mut cluster = LocalCluster {
            nodes,
            links,
            dir: spec.dir,
            binary: spec.binary,
            remove_dir_on_drop: spec.remove_dir_on_drop,
            exits: Vec::new(),
        };
        for index in 0..spec.size {
            cluster.start_node(index)?;
        }
        Ok(cluster)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `raftlite` binary the nodes run.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    pub fn log_path(&self, index: usize) -> PathBuf {
        self.dir.join(format!("{}.log", self.nodes[index].id))
    }

    pub fn data_dir(&self, index: usize) -> PathBuf {
        self.dir.join("data").join(&self.nodes[index].id)
    }

    /// Starts (or restarts) node `index` with its original command line.
    pub fn start_node(&mut self, index: usize) -> io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(index))?;
        let node = &mut self.nodes[index];
        if node.child.is_some() {
            return Ok(());
        }
        let child = Command::new(&self.binary)
            .args(&node.arguments)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        node.child = Some(child);
        Ok(())
    }

    /// SIGKILL, and reap it. A node found already exited is remembered
    /// (`exits`): a restart must not hide that it stopped on its own.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            if let Ok(Some(status)) = child.try_wait() {
                let id = &self.nodes[index].id;
                self.exits.push(format!("{id} ({status})"));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Every node that exited by itself — a panic, an assertion, a failed
    /// start — rather than by a signal from here: those found by `kill`,
    /// and those still counted as running that have exited.
    pub fn exits(&mut self) -> Vec<String> {
        let mut exits = self.exits.clone();
        for node in &mut self.nodes {
            let exited = node.child.as_mut().map(Child::try_wait);
            if let Some(Ok(Some(status))) = exited {
                exits.push(format!("{} ({status})", node.id));
            }
        }
        exits
    }

    /// The process id of node `index`, if the harness runs it.
    pub fn pid(&self, index: usize) -> Option<u32> {
        self.nodes[index].child.as_ref().map(Child::id)
    }

    /// Waits up to `timeout` for node `index` to exit by itself (after a
    /// SIGTERM, or a refused start) and reaps it. None if it is still
    /// running then, or was not running.
    pub fn wait_exit(&mut self, index: usize, timeout: Duration) -> Option<ExitStatus> {
        let child = self.nodes[index].child.as_mut()?;
        let status = poll_until(timeout, || child.try_wait().ok().flatten())?;
        self.nodes[index].child = None;
        Some(status)
    }

    /// Sends a signal by name (STOP, CONT, TERM, ...); false if not running.
    pub fn signal(&self, index: usize, signal: &str) -> bool {
        let Some(child) = self.nodes[index].child.as_ref() else {
            return false;
        };
        signal_pid(child.id(), signal)
    }

    /// Where node `index`'s own data dir waits while it runs on another.
    pub fn data_dir_aside(&self, index: usize) -> PathBuf {
        self.dir
            .join("data")
            .join(format!("{}.aside", self.nodes[index].id))
    }

    /// Kills node `index` (SIGKILL), moves its data dir aside, and restarts
    /// it with its original command line on a copy of `foreign` (a stale
    /// data dir at its address). `restore_data` undoes it. If the copy
    /// fails, the node restarts on its own data dir and the error is
    /// returned.
    pub fn start_on_foreign_data(&mut self, index: usize, foreign: &Path) -> io::Result<()> {
        let (data, aside) = (self.data_dir(index), self.data_dir_aside(index));
        if aside.exists() {
            let text = format!("{} is in use: restore_data first", aside.display());
            return Err(io::Error::other(text));
        }
        self.kill(index);
        let swapped = swap_in(foreign, &data, &aside);
        self.start_node(index)?;
        swapped
    }

    /// Kills node `index` and restarts it on its own data dir again, if
    /// `start_on_foreign_data` had put it aside; the foreign copy is
    /// deleted. The node is restarted even if that fails.
    pub fn restore_data(&mut self, index: usize) -> io::Result<()> {
        let (data, aside) = (self.data_dir(index), self.data_dir_aside(index));
        if !aside.exists() {
            return Ok(());
        }
        self.kill(index);
        let restored = std::fs::remove_dir_all(&data).and_then(|()| std::fs::rename(&aside, &data));
        self.start_node(index)?;
        restored
    }

    pub fn is_running(&self, index: usize) -> bool {
        self.nodes[index].child.is_some()
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&index| self.is_running(index))
            .collect()
    }

    pub fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(LocalNode::address).collect()
    }

    pub fn client(&self, timeout: Duration) -> Client {
        Client::new(self.addresses(), timeout, true)
    }

    /// Cuts (or restores) the one-way link `from` → `to`.
    pub fn block_link(&self, from: usize, to: usize, blocked: bool) {
        if let Some(link) = &self.links[from][to] {
            link.set_blocked(blocked);
        }
    }

    /// Cuts (or restores) every link into and out of `index`.
    pub fn isolate(&self, index: usize, blocked: bool) {
        for other in 0..self.nodes.len() {
            self.block_link(index, other, blocked);
            self.block_link(other, index, blocked);
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        for index in 0..self.nodes.len() {
            self.isolate(index, false);
        }
    }

    /// Node `index`'s STATUS fields, or None if it does not answer.
    pub fn status(&self, index: usize) -> Option<HashMap<String, String>> {
        let address = vec![self.nodes[index].address()];
        let mut client = Client::new(address, Duration::from_millis(500), false);
        status_fields(client.ask("STATUS"))
    }

    /// Every node's STATUS line (None for those that do not answer).
    pub fn statuses(&self) -> Vec<Option<String>> {
        (0..self.nodes.len())
            .map(|index| {
                let address = vec![self.nodes[index].address()];
                let mut client = Client::new(address, Duration::from_millis(300), false);
                let answer = client.ask("STATUS");
                let is_status = matches!(answer, Answer::Reply(Reply::Status(_)));
                is_status.then(|| answer.to_string())
            })
            .collect()
    }

    /// The leader a majority of running nodes follows, if any.
    pub fn agreed_leader(&self) -> Option<usize> {
        let statuses: Vec<(usize, HashMap<String, String>)> = self
            .running()
            .into_iter()
            .filter_map(|index| self.status(index).map(|status| (index, status)))
            .collect();
        let leaders: Vec<usize> = statuses
            .iter()
            .filter(|(_, status)| field(status, "role") == "leader")
            .map(|(index, _)| *index)
            .collect();
        let [leader] = leaders[..] else { return None };
        let followers = statuses
            .iter()
            .filter(|(_, status)| field(status, "leader") == self.nodes[leader].id)
            .count();
        (followers > self.nodes.len() / 2).then_some(leader)
    }

    pub fn wait_for_leader(&self, timeout: Duration) -> Option<usize> {
        poll_until(timeout, || self.agreed_leader())
    }

    /// Waits until every running node has applied its whole log, with the
    /// same index and digest everywhere; returns (applied, digest).
    pub fn wait_converged(&self, timeout: Duration) -> Option<(u64, String)> {
        poll_until(timeout, || self.converged())
    }

    fn converged(&self) -> Option<(u64, String)> {
        let statuses: Vec<HashMap<String, String>> = self
            .running()
            .into_iter()
            .map(|index| self.status(index))
            .collect::<Option<_>>()?;
        let first = statuses.first()?;
        let same = statuses.iter().all(|status| {
            ["applied", "digest", "last_index"]
                .iter()
                .all(|name| field(status, name) == field(first, name))
        });
        let done = same && field(first, "applied") == field(first, "last_index");
        let applied = field(first, "applied").parse().ok()?;
        done.then(|| (applied, field(first, "digest").to_string()))
    }

    /// For tests: the agreed leader, or a panic showing every STATUS.
    pub fn require_leader(&self, timeout: Duration) -> usize {
        let leader = self.wait_for_leader(timeout);
        leader
            .unwrap_or_else(|| panic!("no agreed leader within {timeout:?}: {:?}", self.statuses()))
    }

    /// For tests: convergence, or a panic showing every STATUS.
    pub fn require_converged(&self, timeout: Duration) -> (u64, String) {
        let converged = self.wait_converged(timeout);
        converged.unwrap_or_else(|| {
            panic!(
                "nodes did not converge within {timeout:?}: {:?}",
                self.statuses()
            )
        })
    }

    /// The last `lines` lines of every node's log, for failure reports.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut text = String::new();
        for index in 0..self.nodes.len() {
            let log = std::fs::read_to_string(self.log_path(index)).unwrap_or_default();
            let all: Vec<&str> = log.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            text.push_str(&format!(
                "---- log of {} ----\n{}\n",
                self.nodes[index].id,
                tail.join("\n")
            ));
        }
        text
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.signal(index, "CONT");
            self.kill(index);
        }
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails(40));
        }
        if self.remove_dir_on_drop {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn start_links(ports: &[u16], proxied: bool) -> io::Result<Vec<Vec<Option<LinkProxy>>>> {
    let mut links = Vec::new();
    for from in 0..ports.len() {
        let mut row = Vec::new();
        for (to, &port) in ports.iter().enumerate() {
            row.push(if proxied && from != to {
                Some(LinkProxy::start(port)?)
            } else {
                None
            });
        }
        links.push(row);
    }
    Ok(links)
}

fn node(
    spec: &ClusterSpec,
    ports: &[u16],
    links: &[Vec<Option<LinkProxy>>],
    index: usize,
) -> LocalNode {
    let peers: Vec<String> = (0..spec.size)
        .filter(|&other| other != index)
        .map(|other| {
            let port = links[index][other]
                .as_ref()
                .map_or(ports[other], |link| link.port);
            format!("{}:{port}", NODE_IDS[other])
        })
        .collect();
    let data_dir = spec.dir.join("data").join(NODE_IDS[index]);
    let mut arguments = vec![
        "--id".to_string(),
        NODE_IDS[index].to_string(),
        "--port".to_string(),
        ports[index].to_string(),
        "--peers".to_string(),
        peers.join(","),
        "--data-dir".to_string(),
        data_dir.display().to_string(),
    ];
    arguments.extend(spec.extra_arguments.iter().cloned());
    LocalNode {
        id: NODE_IDS[index].to_string(),
        port: ports[index],
        arguments,
        child: None,
    }
}

/// Sends a signal by name to a process this code started. Quiet: a
/// process that already exited is reported by `exits`, not by `kill`.
pub(crate) fn signal_pid(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Moves `data` to `aside` and puts a copy of `foreign` in its place; if
/// that fails, `data` is put back as it was.
fn swap_in(foreign: &Path, data: &Path, aside: &Path) -> io::Result<()> {
    std::fs::rename(data, aside)?;
    let copied = copy_dir(foreign, data);
    if copied.is_err() {
        let _ = std::fs::remove_dir_all(data);
        std::fs::rename(aside, data)?;
    }
    copied
}

/// Copies a data dir (files and the `log/` subdir), with fresh files.
fn copy_dir(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// A STATUS answer's fields by name; None for any other answer.
pub fn status_fields(answer: Answer) -> Option<HashMap<String, String>> {
    match answer {
        Answer::Reply(Reply::Status(status)) => Some(status.fields().iter().cloned().collect()),
        _ => None,
    }
}

fn field<'a>(status: &'a HashMap<String, String>, name: &str) -> &'a str {
    status.get(name).map_or("", String::as_str)
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
