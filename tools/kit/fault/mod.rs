//! Fault injection for the test bench and process-level tests (never used
//! by the daemon): local clusters of real processes, link proxies that
//! cut real TCP traffic, and foreign data dirs for stale members.

pub mod cluster;
pub mod proxy;
pub mod stale;
pub mod temp;

pub use cluster::{free_ports, poll_until, status_fields, ClusterSpec, LocalCluster, LocalNode};
pub use proxy::LinkProxy;
pub use stale::ForeignDir;
pub use temp::{temp_path, TempDir};

/// The binary `name` next to the running one (target/release/ for the
/// tools): the daemon, submit and bench that a tool drives.
pub fn sibling(name: &str) -> Result<std::path::PathBuf, String> {
    let exe = std::env::current_exe().map_err(|error| format!("cannot find myself: {error}"))?;
    let path = exe
        .parent()
        .map(|dir| dir.join(name))
        .ok_or("no parent dir")?;
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found; build with cargo build --release --bins",
            path.display()
        ))
    }
}
