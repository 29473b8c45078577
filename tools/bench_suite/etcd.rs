//! A 3-member etcd on loopback for `make bench-compare`: default flags
//! (fsync on, heartbeat 100 ms, election 1000 ms), data in a directory that
//! is removed afterwards.

use raftlite::fault::free_ports;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct EtcdCluster {
    members: Vec<Child>,
    client_ports: Vec<u16>,
    dir: PathBuf,
}

impl EtcdCluster {
    pub fn start(dir: &Path) -> Result<EtcdCluster, String> {
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
            let member = spawn_member(
                dir,
                index,
                client_ports[index],
                peer_ports[index],
                &initial_cluster.join(","),
            )?;
            cluster.members.push(member);
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
        for member in &mut self.members {
            let _ = member.kill(); // SIGKILL: a member without quorum ignores SIGTERM for seconds
            let _ = member.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn_member(
    dir: &Path,
    index: usize,
    client_port: u16,
    peer_port: u16,
    initial_cluster: &str,
) -> Result<Child, String> {
    let log = std::fs::File::create(dir.join(format!("e{index}.log")))
        .map_err(|error| error.to_string())?;
    let client_url = format!("http://127.0.0.1:{client_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    Command::new("etcd")
        .args(["--name", &format!("e{index}")])
        .arg("--data-dir")
        .arg(dir.join(format!("e{index}")))
        .args([
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
        ])
        .args([
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
        ])
        .args([
            "--initial-cluster",
            initial_cluster,
            "--initial-cluster-state",
            "new",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|error| format!("cannot start etcd (make bench-compare installs it): {error}"))
}
