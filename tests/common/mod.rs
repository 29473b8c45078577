//! Harness for process-level tests: real `raftlite` processes on free
//! loopback ports, in a temp dir, killed and removed when the test ends
//! (their logs are printed if it failed). The cluster itself is
//! `raftlite_kit::fault::LocalCluster`, shared with the fault bench.

#![allow(dead_code, unused_imports)] // each test binary uses part of the harness

use raftlite_kit::fault::ClusterSpec;
pub use raftlite_kit::fault::{
    free_ports, poll_until, temp_path, LocalCluster as Cluster, TempDir,
};
use std::path::PathBuf;
use std::process::Command;

pub const RAFTLITE: &str = env!("CARGO_BIN_EXE_raftlite");
pub const SUBMIT: &str = env!("CARGO_BIN_EXE_submit");

fn start(size: usize, extra: &[&str], proxied: bool) -> Cluster {
    let spec = ClusterSpec {
        size,
        dir: temp_path("cluster"),
        binary: PathBuf::from(RAFTLITE),
        extra_arguments: extra.iter().map(|flag| flag.to_string()).collect(),
        proxied,
        remove_dir_on_drop: true,
    };
    Cluster::start(spec).expect("start the cluster")
}

/// `size` nodes with the default timeouts plus `extra` flags.
pub fn cluster(size: usize, extra: &[&str]) -> Cluster {
    start(size, extra, false)
}

/// Like `cluster`, but every peer link runs through its own proxy.
pub fn proxied_cluster(size: usize, extra: &[&str]) -> Cluster {
    start(size, extra, true)
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
