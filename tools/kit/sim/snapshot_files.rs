//! A node's simulated snapshot files, in the disk's own format
//! (`storage::snapshot::encode_file` / `decode_bytes`), with the crash
//! points docs/STORAGE.md lists for the real ones:
//!
//! - a file being written (`.snap.tmp`) or received (`.recv.tmp`) is lost
//!   by a crash: recovery removes every `.tmp`;
//! - a finished file is durable only once its own fdatasync (a SimJob of
//!   its own kind) has run *and* the commit's rename and directory sync
//!   have completed, at `durable_at_ms`; a crash before then loses it;
//! - retention keeps the two newest durable files and deletes older ones
//!   only once a newer one is durable, so a crash never leaves fewer.

use raftlite::core::{InstallSnapshot, LogIndex, SnapshotMeta};
use raftlite::kv::StateMachine;
use raftlite::storage::snapshot::{decode_bytes, encode_file, SNAPSHOTS_KEPT};
use std::collections::BTreeMap;
use std::rc::Rc;

/// One snapshot file that has its final name (or will, at `durable_at_ms`).
#[derive(Clone, Debug)]
pub struct SimSnapshotFile {
    pub meta: SnapshotMeta,
    /// The whole file, header, body and trailer.
    pub bytes: Rc<Vec<u8>>,
    /// When its rename and directory sync complete: a crash before loses it.
    pub durable_at_ms: u64,
    /// The digest of the state machine its body restores (for the checkers:
    /// it must be the applied state at `meta.index`).
    pub digest: u64,
}

impl SimSnapshotFile {
    pub fn size_bytes(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The state machine's bytes.
    pub fn body(&self) -> &[u8] {
        let (_, body) = decode_bytes(&self.bytes).expect("a sim snapshot file is whole");
        body
    }
}

/// The snapshot file a leader's chunks are building.
#[derive(Debug)]
struct Receiving {
    /// The first chunk's announcement (data emptied).
    announced: InstallSnapshot,
    bytes: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct SnapshotFiles {
    files: BTreeMap<LogIndex, SimSnapshotFile>,
    /// This node's snapshot being written: its meta and the body so far.
    writing: Option<(SnapshotMeta, Vec<u8>)>,
    /// Written whole, its fdatasync not yet run (or run: `synced`).
    finished: Option<(SnapshotMeta, Vec<u8>)>,
    receiving: Option<Receiving>,
}

/// Why a received file was refused, for the driver (as `Corrupt`).
#[derive(Debug)]
pub struct Refusal {
    pub offset: u64,
    pub problem: String,
}

impl SnapshotFiles {
    pub fn begin(&mut self, meta: &SnapshotMeta) {
        self.finished = None;
        self.writing = Some((meta.clone(), Vec::new()));
    }

    pub fn append(&mut self, bytes: &[u8]) {
        let (_, body) = self.writing.as_mut().expect("no snapshot begun");
        body.extend_from_slice(bytes);
    }

    /// The body is whole: the file waits for its fdatasync.
    pub fn finish(&mut self) -> LogIndex {
        let (meta, body) = self.writing.take().expect("no snapshot begun");
        let index = meta.index;
        self.finished = Some((meta, body));
        index
    }

    /// The file's sync ran (`job_index` is its job's): it takes its name,
    /// durable at `durable_at_ms`.
    pub fn commit(&mut self, job_index: LogIndex, durable_at_ms: u64) -> SimSnapshotFile {
        let (meta, body) = self.finished.take().expect("no snapshot finished");
        assert_eq!(
            meta.index, job_index,
            "committed snapshot {} with the sync of snapshot {job_index}",
            meta.index
        );
        let file = SimSnapshotFile {
            bytes: Rc::new(encode_file(&meta, &body)),
            digest: digest_of(&body),
            meta,
            durable_at_ms,
        };
        self.files.insert(file.meta.index, file.clone());
        file
    }

    /// Whether a finished file waits for the sync of snapshot `index`.
    pub fn is_finished(&self, index: LogIndex) -> bool {
        self.finished
            .as_ref()
            .is_some_and(|(meta, _)| meta.index == index)
    }

    pub fn abandon(&mut self) {
        self.writing = None;
        self.finished = None;
    }

    /// Stores a chunk in order; Err(stored bytes) if it is out of order.
    pub fn receive(&mut self, chunk: &InstallSnapshot) -> Result<(), u64> {
        if chunk.offset == 0 {
            let announced = InstallSnapshot {
                data: Vec::new().into(),
                ..chunk.clone()
            };
            self.receiving = Some(Receiving {
                announced,
                bytes: Vec::new(),
            });
        }
        let stored = self
            .receiving
            .as_ref()
            .map_or(0, |receiving| receiving.bytes.len() as u64);
        match self.receiving.as_mut() {
            Some(receiving) if chunk.offset == stored => {
                receiving.bytes.extend_from_slice(&chunk.data);
                Ok(())
            }
            _ => Err(stored),
        }
    }

    /// The last chunk is in: the file is checked whole against what its
    /// chunks announced and, if it passes, installed under its name,
    /// durable at `durable_at_ms`.
    pub fn receive_finish(&mut self, durable_at_ms: u64) -> Result<SimSnapshotFile, Refusal> {
        let receiving = self.receiving.take().expect("no snapshot received");
        let announced = &receiving.announced.meta;
        let (meta, body) = decode_bytes(&receiving.bytes)
            .map_err(|(offset, problem)| Refusal { offset, problem })?;
        if &meta != announced {
            let problem =
                format!("received snapshot holds {meta:?}, the leader announced {announced:?}");
            return Err(Refusal { offset: 0, problem });
        }
        let digest = digest_of(body);
        let file = SimSnapshotFile {
            meta,
            bytes: Rc::new(receiving.bytes),
            durable_at_ms,
            digest,
        };
        self.files.insert(file.meta.index, file.clone());
        Ok(file)
    }

    /// Gives up the file being received (nothing else changes).
    pub fn abandon_receive(&mut self) {
        self.receiving = None;
    }

    /// The newest file with its name, durable yet or not.
    pub fn newest_index(&self) -> Option<LogIndex> {
        self.files.keys().next_back().copied()
    }

    /// The snapshot whose chunks are being received.
    pub fn receiving_index(&self) -> Option<LogIndex> {
        (self.receiving.as_ref()).map(|receiving| receiving.announced.meta.index)
    }

    pub fn get(&self, index: LogIndex) -> Option<&SimSnapshotFile> {
        self.files.get(&index)
    }

    /// The newest file durable by `now_ms`.
    pub fn newest_durable(&self, now_ms: u64) -> Option<&SimSnapshotFile> {
        self.files
            .values()
            .rev()
            .find(|file| file.durable_at_ms <= now_ms)
    }

    /// Retention, once files are durable by `now_ms`: the two newest
    /// durable files stay, older ones go (newer, not yet durable files
    /// stay too: they do not count until they are).
    pub fn settle(&mut self, now_ms: u64) {
        let durable: Vec<LogIndex> = (self.files.values())
            .filter(|file| file.durable_at_ms <= now_ms)
            .map(|file| file.meta.index)
            .collect();
        if durable.len() <= SNAPSHOTS_KEPT {
            return;
        }
        for index in &durable[..durable.len() - SNAPSHOTS_KEPT] {
            self.files.remove(index);
        }
    }

    /// A crash at `now_ms`: what was not durable by then is gone.
    pub fn crash(&mut self, now_ms: u64) -> CrashedFiles {
        self.settle(now_ms);
        let lost = CrashedFiles {
            writing: self.writing.take().is_some() || self.finished.take().is_some(),
            receiving: self.receiving.take().is_some(),
            committing: self.files.values().any(|file| file.durable_at_ms > now_ms),
        };
        self.files.retain(|_, file| file.durable_at_ms <= now_ms);
        lost
    }

    /// Whether anything is under way that a crash would cut short.
    pub fn in_progress(&self) -> bool {
        self.writing.is_some() || self.finished.is_some() || self.receiving.is_some()
    }

    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.files.len()
    }
}

/// What a crash cut short among the snapshot files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashedFiles {
    /// A snapshot of its own being written or waiting for its sync.
    pub writing: bool,
    /// A leader's snapshot being received.
    pub receiving: bool,
    /// A file whose rename or directory sync had not completed.
    pub committing: bool,
}

impl CrashedFiles {
    pub fn any(&self) -> bool {
        self.writing || self.receiving || self.committing
    }
}

/// The digest of the state machine a body restores.
pub fn digest_of(body: &[u8]) -> u64 {
    StateMachine::restore(body)
        .expect("a body the state machine wrote restores")
        .digest()
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftlite::core::{NodeId, Term};

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            index: LogIndex(index),
            term: Term(1),
            cluster_id: None,
            voters: vec![NodeId(0)],
        }
    }

    fn body() -> Vec<u8> {
        let mut machine = StateMachine::default();
        let mut cursor = machine.begin_snapshot();
        let mut out = Vec::new();
        while !cursor.next_chunk(&mut out, 64) {}
        out
    }

    fn take(files: &mut SnapshotFiles, index: u64, durable_at_ms: u64) {
        files.begin(&meta(index));
        files.append(&body());
        let index = files.finish();
        files.commit(index, durable_at_ms);
    }

    #[test]
    fn a_file_is_lost_by_a_crash_before_its_commit_completes() {
        let mut files = SnapshotFiles::default();
        take(&mut files, 5, 10);
        take(&mut files, 9, 20);
        let crashed = files.crash(15);
        assert!(crashed.committing);
        assert_eq!(
            files.newest_durable(u64::MAX).map(|f| f.meta.index),
            Some(LogIndex(5))
        );
    }

    #[test]
    fn retention_deletes_older_files_only_once_a_newer_one_is_durable() {
        let mut files = SnapshotFiles::default();
        take(&mut files, 1, 1);
        take(&mut files, 2, 2);
        take(&mut files, 3, 30);
        files.settle(10);
        assert_eq!(files.count(), 3, "the newest is not durable yet");
        files.settle(30);
        assert_eq!(files.count(), 2);
        assert!(files.get(LogIndex(1)).is_none());
    }

    #[test]
    fn a_received_file_that_fails_its_check_is_refused() {
        let mut files = SnapshotFiles::default();
        let bytes = encode_file(&meta(4), &body());
        let chunk = |offset: usize, end: usize| InstallSnapshot {
            meta: meta(4),
            offset: offset as u64,
            total_size: bytes.len() as u64,
            data: bytes[offset..end].to_vec().into(),
        };
        let middle = bytes.len() / 2;
        files.receive(&chunk(0, middle)).expect("in order");
        assert_eq!(
            files.receive(&chunk(middle + 1, bytes.len())),
            Err(middle as u64)
        );
        assert!(files.receive_finish(0).is_err(), "half a file");
        files.receive(&chunk(0, middle)).expect("a new start");
        files
            .receive(&chunk(middle, bytes.len()))
            .expect("in order");
        let file = files.receive_finish(7).expect("whole");
        assert_eq!(file.digest, StateMachine::default().digest());
    }
}
