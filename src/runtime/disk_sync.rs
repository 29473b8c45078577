//! The one thread besides the event loop: it runs the leader's fdatasyncs.
//!
//! A leader needs its own copy durable only to count itself in a quorum;
//! two followers make a majority of three without it (dissertation §10.2.1).
//! Syncing on the loop would stall everything behind the disk: acks that
//! could commit, replies, new proposals, and heartbeats, so a disk stall of
//! half a second (common on virtual disks) looked like a dead leader and
//! started elections. The loop still does every write itself, in order, and
//! everything that promises durable state to another node (votes, acks, a
//! new term) still syncs on the loop; only a `SyncJob` (fdatasync of records
//! already written) comes here. At most one job runs; the next waits in the
//! server until it finishes, and covers everything written meanwhile.

use crate::driver::{DriveError, SyncExecutor};
use crate::storage::{StorageError, SyncJob};
use mio::{Registry, Token, Waker};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

/// The poll token the syncer wakes the loop with.
pub const SYNC_DONE: Token = Token(usize::MAX);

/// One job in flight and one finished result waiting: the server never
/// hands over a second job before it has collected the first.
const QUEUE_CAPACITY: usize = 1;

pub struct DiskSyncer {
    jobs: Option<SyncSender<SyncJob>>,
    results: Receiver<(SyncJob, Result<(), StorageError>)>,
    thread: Option<JoinHandle<()>>,
}

impl DiskSyncer {
    pub fn start(registry: &Registry) -> std::io::Result<DiskSyncer> {
        let waker = Arc::new(Waker::new(registry, SYNC_DONE)?);
        let (jobs, job_queue) = mpsc::sync_channel::<SyncJob>(QUEUE_CAPACITY);
        let (result_queue, results) = mpsc::sync_channel(QUEUE_CAPACITY);
        let thread = thread::Builder::new()
            .name("disk-sync".to_string())
            .spawn(move || {
                for job in job_queue {
                    let result = job.run();
                    if result_queue.send((job, result)).is_err() {
                        return; // the loop is gone
                    }
                    // A failed wake leaves the result for the loop's next
                    // turn (it polls at least once a second).
                    let _ = waker.wake();
                }
            })?;
        Ok(DiskSyncer {
            jobs: Some(jobs),
            results,
            thread: Some(thread),
        })
    }
}

impl SyncExecutor<SyncJob> for DiskSyncer {
    fn submit(&mut self, job: SyncJob) -> Result<(), DriveError> {
        let sent = self.jobs.as_ref().map(|jobs| jobs.send(job));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(thread_gone()),
        }
    }

    fn try_finished(&mut self) -> Option<Result<SyncJob, DriveError>> {
        match self.results.try_recv() {
            Ok((job, result)) => Some(finished(job, result)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err(thread_gone())),
        }
    }

    /// Blocks until the job in flight finishes.
    fn wait_finished(&mut self) -> Result<SyncJob, DriveError> {
        match self.results.recv() {
            Ok((job, result)) => finished(job, result),
            Err(_) => Err(thread_gone()),
        }
    }
}

fn finished(job: SyncJob, result: Result<(), StorageError>) -> Result<SyncJob, DriveError> {
    result.map(|()| job).map_err(DriveError::Storage)
}

fn thread_gone() -> DriveError {
    DriveError::SyncExecutor("the disk-sync thread ended".to_string())
}

impl Drop for DiskSyncer {
    fn drop(&mut self) {
        self.jobs = None; // ends the thread's loop
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::fs::File;
    use std::os::fd::OwnedFd;
    use std::path::PathBuf;
    use std::time::Duration;

    fn job(file: File, path: PathBuf) -> SyncJob {
        SyncJob {
            file: Arc::new(file),
            path,
            entries: 3,
        }
    }

    /// The finished job comes back whole, and the loop is woken for it.
    #[test]
    fn a_job_runs_and_wakes_the_loop() {
        let mut poll = Poll::new().unwrap();
        let mut syncer = DiskSyncer::start(poll.registry()).unwrap();
        let path = std::env::temp_dir().join(format!("raftlite-syncer-{}", std::process::id()));
        let file = File::create(&path).unwrap();
        syncer.submit(job(file, path.clone())).unwrap();
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_secs(10)))
            .unwrap();
        assert!(events.iter().any(|event| event.token() == SYNC_DONE));
        let finished = syncer.try_finished().expect("finished").unwrap();
        assert_eq!((finished.entries, &finished.path), (3, &path));
        assert!(syncer.try_finished().is_none());
        let _ = std::fs::remove_file(&path);
    }

    /// A failed fdatasync (here on a pipe, which cannot sync) reaches the
    /// loop as a storage error naming the file: the node stops.
    #[test]
    fn a_failed_sync_is_an_error() {
        let poll = Poll::new().unwrap();
        let mut syncer = DiskSyncer::start(poll.registry()).unwrap();
        let (reader, _writer) = std::io::pipe().unwrap();
        let file = File::from(OwnedFd::from(reader));
        syncer.submit(job(file, PathBuf::from("pipe"))).unwrap();
        match syncer.wait_finished() {
            Err(DriveError::Storage(error)) => {
                let text = error.to_string();
                assert!(
                    text.contains("pipe") && text.contains("fdatasync"),
                    "{text}"
                );
            }
            other => panic!("expected a storage error, got {other:?}"),
        }
    }
}
