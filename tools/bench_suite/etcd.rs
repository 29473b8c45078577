//! A 3-member etcd on loopback for `make bench-compare`, data in a directory
//! that is removed afterwards. The throughput rows run it with default flags
//! (fsync on, heartbeat 100 ms, election 1000 ms); the failover trials with
//! `FAILOVER_FLAGS`, killing and restarting members as raftlite's trials do.

use crate::etcd_client::{self, MemberStatus};
use raftlite_kit::fault::{free_ports, poll_until};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The etcd for the failover row: heartbeat 50 ms, election 300 ms.
pub const FAILOVER_FLAGS: [&str; 4] = ["--heartbeat-interval", "50", "--election-timeout", "300"];

pub struct EtcdCluster {
    members: Vec<Member>,
    client_ports: Vec<u16>,
    dir: PathBuf,
}

struct Member {
    /// The original command line, reused on every restart.
    arguments: Vec<String>,
    child: Option<Child>,
}

impl EtcdCluster {
    /// Starts three members with etcd's default flags plus `extra_flags`.
    pub fn start(dir: &Path, extra_flags: &[&str]) -> Result<EtcdCluster, String> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|error| error.to_string())?;
        let ports = free_ports(6).map_err(|error| error.to_string())?;
        let (client_ports, peer_ports) = ports.split_at(3);
        let initial_cluster: Vec<String> = peer_ports
            .iter()
            .enumerate()
            .map(|(index, port)| format!("e{index}=http://127.0.0.1:{port}"))
            .collect();
        let mut cluster = EtcdCluster {
            members: Vec::new(),
            client_ports: client_ports.to_vec(),
            dir: dir.to_path_buf(),
        };
        for index in 0..3 {
            let mut arguments = member_arguments(
                dir,
                index,
                client_ports[index],
                peer_ports[index],
                &initial_cluster.join(","),
            );
            arguments.extend(extra_flags.iter().map(|flag| flag.to_string()));
            cluster.members.push(Member {
                arguments,
                child: None,
            });
            cluster.start_member(index)?;
        }
        cluster.wait_for_ports()?;
        Ok(cluster)
    }

    pub fn addresses(&self) -> Vec<String> {
        self.client_ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect()
    }

    pub fn socket_addresses(&self) -> Vec<SocketAddr> {
        self.client_ports
            .iter()
            .map(|&port| SocketAddr::from(([127, 0, 0, 1], port)))
            .collect()
    }

    /// Starts (or restarts) member `index` with its original command line
    /// and data dir; with data there, etcd ignores the initial-cluster flags
    /// and rejoins.
    pub fn start_member(&mut self, index: usize) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("e{index}.log")))
            .map_err(|error| error.to_string())?;
        let member = &mut self.members[index];
        if member.child.is_some() {
            return Ok(());
        }
        let child = Command::new("etcd")
            .args(&member.arguments)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|error| {
                format!("cannot start etcd (make bench-compare installs it): {error}")
            })?;
        member.child = Some(child);
        Ok(())
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until every member answers, all name the same leader and have
    /// applied the same commit index (raftlite's trials wait for the same:
    /// one leader, logs converged); returns the leader's index.
    pub fn wait_healthy(&self, timeout: Duration) -> Option<usize> {
        poll_until(timeout, || self.healthy_leader())
    }

    fn healthy_leader(&self) -> Option<usize> {
        let statuses: Vec<MemberStatus> = self
            .socket_addresses()
            .into_iter()
            .map(etcd_client::status)
            .collect::<Option<_>>()?;
        let first = statuses.first()?;
        let leader = first.leader.as_deref()?;
        let agreed = statuses.iter().all(|status| {
            status.leader.as_deref() == Some(leader)
                && status.raft_index == first.raft_index
                && status.raft_applied_index == status.raft_index
        });
        if !agreed {
            return None;
        }
        statuses
            .iter()
            .position(|status| status.member_id == leader)
    }

    /// The members listen; `bench`'s warmup covers their first election.
    fn wait_for_ports(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        for port in &self.client_ports {
            while TcpStream::connect(("127.0.0.1", *port)).is_err() {
                if Instant::now() > deadline {
                    return Err(format!(
                        "etcd did not listen on {port}; see {}",
                        self.dir.display()
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for index in 0..self.members.len() {
            // SIGKILL: a member without quorum ignores SIGTERM for seconds.
            self.kill(index);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn member_arguments(
    dir: &Path,
    index: usize,
    client_port: u16,
    peer_port: u16,
    initial_cluster: &str,
) -> Vec<String> {
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    let data_dir = dir.join(format!("e{index}")).display().to_string();
    [
        "--name",
        &format!("e{index}"),
        "--data-dir",
        &data_dir,
        "--listen-client-urls",
        &client_url,
        "--advertise-client-urls",
        &client_url,
        "--listen-peer-urls",
        &peer_url,
        "--initial-advertise-peer-urls",
        &peer_url,
        "--initial-cluster",
        initial_cluster,
        "--initial-cluster-state",
        "new",
    ]
    .iter()
    .map(|argument| argument.to_string())
    .collect()
}
