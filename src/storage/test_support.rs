//! Helpers shared by the storage tests.

use crate::core::{Entry, EntryKind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A directory under the system temp dir, removed on drop (also when the
/// test fails). Names carry the process id and a counter, so parallel tests
/// and parallel runs never share one.
pub struct TempDir {
    pub path: PathBuf,
}

static TEMP_DIR_COUNT: AtomicU64 = AtomicU64::new(0);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let count = TEMP_DIR_COUNT.fetch_add(1, Ordering::Relaxed);
        let name = format!("raftlite-{label}-{}-{count}", std::process::id());
        let path = std::env::temp_dir().join(name);
        // A leftover from a killed earlier run with the same pid.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// An empty payload makes a no-op, so tests that draw payload sizes from
/// zero put both entry kinds through the record format.
pub fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
    let kind = if data.is_empty() {
        EntryKind::Noop
    } else {
        EntryKind::Command
    };
    Entry {
        kind,
        ..Entry::command(index, term, data)
    }
}

/// `count` entries from `first`, all of `term`, with payloads that differ.
pub fn entries(first: u64, count: u64, term: u64) -> Vec<Entry> {
    (first..first + count)
        .map(|index| {
            entry(
                index,
                term,
                format!("set key{index} value-{term}").as_bytes(),
            )
        })
        .collect()
}

/// Every file under `directory` with its bytes.
pub fn files(directory: &std::path::Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut found = std::collections::BTreeMap::new();
    let mut stack = vec![directory.to_path_buf()];
    while let Some(path) = stack.pop() {
        for item in std::fs::read_dir(&path).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    found
}

/// A copy of the data dir `from` at `to`, file by file.
pub fn copy_data_dir(from: &std::path::Path, to: &std::path::Path) {
    for (path, bytes) in files(from) {
        let target = to.join(path.strip_prefix(from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, bytes).unwrap();
    }
}
