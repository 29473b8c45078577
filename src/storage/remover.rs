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
//!
//! A large file is not unlinked in one piece. On a file system mounted
//! with online discard (this machine's ext4 is), the journal commit after
//! an unlink trims every block the file held, and each fdatasync that
//! needs a commit meanwhile waits: unlinking 64-81 MB files made the
//! followers' log syncs take 15-25 ms instead of 2-9 (docs/BENCHMARKS.md).
//! So, as RocksDB's DeleteScheduler does, the file is first renamed to
//! `<name>.removing` (a name recovery never reads, so from then on the file
//! is as good as gone, and the directory sync makes that durable), then
//! truncated `REMOVE_CHUNK_BYTES` at a time with an fsync after each (one
//! small trim per commit), then unlinked. A crash leaves a `.removing`
//! file, which the next start hands back here (`finish_removals`).

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

/// A file larger than this is truncated in steps of this size before it
/// is unlinked, each step synced (with fsync on): one trim per journal
/// commit stays short.
pub const REMOVE_CHUNK_BYTES: u64 = 4 * 1024 * 1024;

/// What a file being removed in steps is called meanwhile.
pub const REMOVING_SUFFIX: &str = ".removing";

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
    let size = match fs::metadata(path) {
        Ok(metadata) => metadata.len(),
        // Gone already (an earlier run's removal that a crash cut short,
        // then repeated): what was asked for holds.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(StorageError::io(path, "stat")(error)),
    };
    if fsync && size > REMOVE_CHUNK_BYTES {
        return remove_in_steps(path, directory, size);
    }
    unlink(path)?;
    if fsync {
        sync_path(directory)?;
    }
    Ok(())
}

/// Renames `path` out of recovery's sight (durably), shrinks it a chunk
/// at a time, then unlinks it.
fn remove_in_steps(path: &Path, directory: &Path, size: u64) -> Result<(), StorageError> {
    let removing = removing_name(path);
    if !is_removing(path) {
        fs::rename(path, &removing).map_err(StorageError::io(path, "rename for removal"))?;
        sync_path(directory)?;
    }
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&removing)
        .map_err(StorageError::io(&removing, "open for removal"))?;
    let mut left = size;
    while left > REMOVE_CHUNK_BYTES {
        left -= REMOVE_CHUNK_BYTES;
        file.set_len(left)
            .and_then(|()| file.sync_all())
            .map_err(StorageError::io(&removing, "truncate for removal"))?;
    }
    drop(file);
    unlink(&removing)?;
    sync_path(directory)
}

fn unlink(path: &Path) -> Result<(), StorageError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(StorageError::io(path, "remove")(error)),
    }
}

/// `<path>.removing`, or `path` itself if it is that already.
fn removing_name(path: &Path) -> PathBuf {
    if is_removing(path) {
        return path.to_path_buf();
    }
    let mut name = path.as_os_str().to_os_string();
    name.push(REMOVING_SUFFIX);
    PathBuf::from(name)
}

fn is_removing(path: &Path) -> bool {
    path.to_string_lossy().ends_with(REMOVING_SUFFIX)
}

/// The `.removing` files a crash left in `directory`: a start hands them
/// to the remover to finish (recovery reads neither them nor their
/// former names).
pub fn leftover_removals(directory: &Path) -> Result<Vec<PathBuf>, StorageError> {
    let listing = fs::read_dir(directory).map_err(StorageError::io(directory, "list"))?;
    let mut paths = Vec::new();
    for item in listing {
        let item = item.map_err(StorageError::io(directory, "list"))?;
        if item
            .file_name()
            .to_string_lossy()
            .ends_with(REMOVING_SUFFIX)
        {
            paths.push(item.path());
        }
    }
    paths.sort();
    Ok(paths)
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

    /// A file past the chunk size is renamed, shrunk and unlinked: nothing
    /// is left under either name, and a `.removing` file a crash left is
    /// finished the same way.
    #[test]
    fn a_large_file_is_removed_in_steps_and_a_leftover_is_finished() {
        let directory = TempDir::new("remover-steps");
        let large = directory.path.join("snapshot-large.snap");
        let size = usize::try_from(REMOVE_CHUNK_BYTES * 2 + 5).unwrap();
        fs::write(&large, vec![7u8; size]).unwrap();
        let leftover = directory.path.join("00000000000000000001.seg.removing");
        fs::write(&leftover, vec![1u8; size]).unwrap();
        let remover = Remover::start(true).unwrap();
        assert_eq!(
            leftover_removals(&directory.path).unwrap(),
            std::slice::from_ref(&leftover)
        );
        remover
            .handle()
            .remove(large.clone(), &directory.path)
            .unwrap();
        remover.handle().remove(leftover, &directory.path).unwrap();
        remover.wait();
        assert_eq!(remover.failure(), None);
        let left: Vec<_> = fs::read_dir(&directory.path).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(
            removing_name(&large),
            directory.path.join("snapshot-large.snap.removing")
        );
    }
}
