//! A foreign data dir for the fault bench's "stale member": the data dir of
//! a throwaway single-node cluster run under a member's id, holding the
//! bench's keys with values of its own and a term pushed high, as an old
//! data dir put back at a member's address would. Test infrastructure: the
//! daemon never uses it.

use super::cluster::{free_ports, poll_until, signal_pid, status_fields};
use raftlite::client::Client;
use raftlite::reply::{Answer, Reply};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long the throwaway node may take to elect itself after a start.
const ELECTED_WITHIN: Duration = Duration::from_secs(5);

pub struct ForeignDir {
    pub id: String,
    /// The throwaway node's `--data-dir`: what a member is started on.
    pub dir: PathBuf,
    binary: PathBuf,
    log: PathBuf,
    /// Its current term (0 before its first start).
    pub term: u64,
    /// Its cluster id, as its STATUS shows it.
    pub cluster: String,
    /// Values written into it so far; each is `stale-<id>-<n>`, a value no
    /// bench client ever writes.
    pub writes: u64,
}

impl ForeignDir {
    /// A dir under `parent` for node `id`; nothing runs until `prepare`.
    pub fn new(binary: &Path, id: &str, parent: &Path) -> ForeignDir {
        ForeignDir {
            id: id.to_string(),
            dir: parent.join("data").join(id),
            binary: binary.to_path_buf(),
            log: parent.join(format!("{id}.log")),
            term: 0,
            cluster: String::new(),
            writes: 0,
        }
    }

    /// Starts the throwaway node until its term is at least `term_min` (a
    /// lone node elects itself once per start, one term higher each time),
    /// then writes a fresh stale value into each of `keys` at that term,
    /// so that its last entries carry its highest term, and stops it
    /// cleanly (SIGTERM).
    pub fn prepare(&mut self, term_min: u64, keys: &[String]) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let port = free_ports(1)?[0];
        loop {
            let node = self.start(port)?;
            let term = self.wait_elected(port)?;
            if term <= self.term {
                return Err(self.error(&format!("its term stayed at {term} after a restart")));
            }
            self.term = term;
            if term >= term_min {
                self.write_keys(port, keys)?;
                return node.stop();
            }
            node.stop()?;
        }
    }

    fn start(&self, port: u16) -> io::Result<Throwaway> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        // Short timeouts make each start cheap; `--fsync never` is safe
        // here because every stop is clean and nothing outlives the page
        // cache but this copy's source.
        let child = Command::new(&self.binary)
            .args(["--id", &self.id, "--port", &port.to_string(), "--peers", ""])
            .arg("--data-dir")
            .arg(&self.dir)
            .args(["--election-timeout", "10-20", "--heartbeat", "5"])
            .args(["--fsync", "never", "--log-level", "info"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(Throwaway { child: Some(child) })
    }

    /// Its term once it leads (its STATUS says so).
    fn wait_elected(&mut self, port: u16) -> io::Result<u64> {
        let address = vec![format!("127.0.0.1:{port}")];
        let mut client = Client::new(address, Duration::from_millis(200), false);
        let elected = poll_until(ELECTED_WITHIN, || {
            let status = status_fields(client.ask("STATUS")).unwrap_or_default();
            let leads = status.get("role").is_some_and(|role| role == "leader");
            let term = status.get("term").and_then(|term| term.parse().ok());
            let cluster = status.get("cluster").cloned();
            leads.then_some(term.zip(cluster)).flatten()
        });
        let Some((term, cluster)) = elected else {
            return Err(self.error("it did not elect itself"));
        };
        self.cluster = cluster;
        Ok(term)
    }

    fn write_keys(&mut self, port: u16, keys: &[String]) -> io::Result<()> {
        let address = vec![format!("127.0.0.1:{port}")];
        let mut client = Client::new(address, Duration::from_secs(5), false);
        for key in keys {
            self.writes += 1;
            let answer = client.ask(&format!("SET {key} stale-{}-{}", self.id, self.writes));
            if !matches!(answer, Answer::Reply(Reply::Ok { .. })) {
                return Err(self.error(&format!("SET {key} answered {:?}", answer.to_string())));
            }
        }
        Ok(())
    }

    fn error(&self, what: &str) -> io::Error {
        let text = format!(
            "throwaway node {} ({}): {what}; see {}",
            self.id,
            self.dir.display(),
            self.log.display()
        );
        io::Error::other(text)
    }
}

/// A running throwaway node; killed if dropped before `stop`, so no error
/// path leaves a process behind.
struct Throwaway {
    child: Option<Child>,
}

impl Throwaway {
    /// SIGTERM, and wait for it to exit.
    fn stop(mut self) -> io::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if !signal_pid(child.id(), "TERM") {
            let _ = child.kill();
        }
        child.wait().map(|_| ())
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
