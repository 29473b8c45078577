//! Temp dirs for tests and tools: unique per process and call, removed on
//! drop.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh path under the system temp dir (not created).
pub fn temp_path(label: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let unique = format!(
        "raftlite-{label}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    std::env::temp_dir().join(unique)
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Panics if the directory cannot be made: for tests.
    pub fn new(label: &str) -> TempDir {
        let path = temp_path(label);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
