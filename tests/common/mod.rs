//! Harness for process-level tests: real `raftlite` processes on free
//! loopback ports, in a temp dir, killed and removed when the test ends
//! (their logs are printed if it failed). The cluster itself is
//! `raftlite_kit::fault::LocalCluster`, shared with the fault bench.

#![allow(dead_code, unused_imports)] // each test binary uses part of the harness

use raftlite_kit::fault::ClusterSpec;
pub use raftlite_kit::fault::{
    free_ports, poll_until, temp_path, LocalCluster as Cluster, TempDir,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
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

/// Every file under `dir` with its bytes, by path relative to `dir`: what a
/// test compares to show a refusal changed nothing on disk.
pub fn files_in(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).expect("read dir") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                let relative = path.strip_prefix(root).expect("under root").to_path_buf();
                files.insert(relative, std::fs::read(&path).expect("read a file"));
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files);
    files
}
