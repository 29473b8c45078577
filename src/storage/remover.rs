//! Removes the files compaction and retention no longer keep, on a thread
//! of its own. Unlinking a large file frees its blocks: a 64 MiB segment
//! took 38-74 ms and an 81 MB snapshot up to 53 ms on this machine's disk
//! under load (docs/BENCHMARKS.md, "Snapshots"), and on the event loop that
//! was the leader's longest turn. The disk-sync thread is no place for it
//! either: the leader's own log syncs would wait behind it.
//!
//! Removals run one at a time, in the order they were asked for, each
//! followed by a sync of its directory: a crash leaves a prefix of them
//! done, and every such state is one recovery accepts (compaction removes
//! the oldest segment first; retention only files a newer durable snapshot
//! replaced). A name handed here is never used again (segments below the
//! compaction point and snapshots below the newest are never recreated),
//! so a removal that runs late removes nothing it should not.

use super::hard_state::sync_path;
use super::StorageError;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Removals waiting for the thread; past it, asking for one waits. A
/// snapshot commit asks for one or two, a compaction for a few segments.
pub const REMOVALS_QUEUED_MAX: usize = 64;

enum Request {
    Remove {
        path: PathBuf,
        directory: PathBuf,
    },
    /// Answered once every removal asked for before it is done.
    Barrier(SyncSender<()>),
}

/// The first removal that failed, as the storage reports it.
type Failure = Arc<Mutex<Option<String>>>;

/// A handle that asks for removals; cheap to clone.
#[derive(Clone, Debug)]
pub struct RemoverHandle {
    sender: SyncSender<Request>,
}

impl RemoverHandle {
    /// Removes `path`, then syncs `directory` (if `fsync`), later.
    pub fn remove(&self, path: PathBuf, directory: &Path) -> Result<(), StorageError> {
        let request = Request::Remove {
            path: path.clone(),
            directory: directory.to_path_buf(),
        };
        self.sender
            .send(request)
            .map_err(|_| StorageError::io(&path, "hand to the remover thread")(gone()))
    }
}

/// The thread and its handle. Dropping it waits for the removals asked
/// for so far.
#[derive(Debug)]
pub struct Remover {
    handle: Option<RemoverHandle>,
    thread: Option<JoinHandle<()>>,
    failure: Failure,
}

impl Remover {
    pub fn start(fsync: bool) -> io::Result<Remover> {
        let (sender, receiver) = mpsc::sync_channel(REMOVALS_QUEUED_MAX);
        let failure = Failure::default();
        let thread_failure = Arc::clone(&failure);
        let thread = std::thread::Builder::new()
            .name("remover".to_string())
            .spawn(move || run(&receiver, fsync, &thread_failure))?;
        Ok(Remover {
            handle: Some(RemoverHandle { sender }),
            thread: Some(thread),
            failure,
        })
    }

    pub fn handle(&self) -> RemoverHandle {
        self.handle.clone().expect("the remover runs until dropped")
    }

    /// The first removal that failed: the storage stops on it, as it
    /// would have had the removal run inline.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|failure| failure.clone())
    }

    /// Waits until every removal asked for so far is done.
    pub fn wait(&self) {
        let (done, finished) = mpsc::sync_channel(1);
        let sent = self.handle().sender.send(Request::Barrier(done));
        if sent.is_ok() {
            let _ = finished.recv();
        }
    }
}

impl Drop for Remover {
    fn drop(&mut self) {
        self.handle = None; // the thread ends once the queue is drained
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn gone() -> io::Error {
    io::Error::other("the remover thread has stopped")
}

fn run(receiver: &Receiver<Request>, fsync: bool, failure: &Failure) {
    for request in receiver {
        match request {
            Request::Remove { path, directory } => {
                if let Err(error) = remove(&path, &directory, fsync) {
                    if let Ok(mut first) = failure.lock() {
                        first.get_or_insert(error.to_string());
                    }
                }
            }
            Request::Barrier(done) => {
                let _ = done.send(());
            }
        }
    }
}

fn remove(path: &Path, directory: &Path, fsync: bool) -> Result<(), StorageError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        // Gone already (an earlier run's removal that a crash cut short,
        // then repeated): what was asked for holds.
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(StorageError::io(path, "remove")(error)),
    }
    if fsync {
        sync_path(directory)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_support::TempDir;

    #[test]
    fn removals_run_in_order_and_wait_returns_after_them() {
        let directory = TempDir::new("remover");
        let paths: Vec<PathBuf> = (0..5)
            .map(|number| directory.path.join(format!("file-{number}")))
            .collect();
        for path in &paths {
            fs::write(path, b"x").unwrap();
        }
        let remover = Remover::start(true).unwrap();
        for path in &paths {
            remover
                .handle()
                .remove(path.clone(), &directory.path)
                .unwrap();
        }
        remover.wait();
        assert!(paths.iter().all(|path| !path.exists()));
        assert_eq!(remover.failure(), None);
    }

    #[test]
    fn a_failed_removal_is_reported_and_a_missing_file_is_none() {
        let directory = TempDir::new("remover-failure");
        let remover = Remover::start(false).unwrap();
        let missing = directory.path.join("never-there");
        remover.handle().remove(missing, &directory.path).unwrap();
        remover.wait();
        assert_eq!(remover.failure(), None, "already gone is what was asked");
        let not_a_file = directory.path.join("a-dir");
        fs::create_dir(&not_a_file).unwrap();
        remover
            .handle()
            .remove(not_a_file.clone(), &directory.path)
            .unwrap();
        remover.wait();
        let failure = remover.failure().expect("a directory is not removed");
        assert!(failure.contains("a-dir"), "{failure}");
    }

    #[test]
    fn dropping_the_remover_finishes_what_was_asked() {
        let directory = TempDir::new("remover-drop");
        let path = directory.path.join("file");
        fs::write(&path, b"x").unwrap();
        let remover = Remover::start(false).unwrap();
        remover
            .handle()
            .remove(path.clone(), &directory.path)
            .unwrap();
        drop(remover);
        assert!(!path.exists());
    }
}
