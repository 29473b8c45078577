//! Storage that keeps nothing of the log: the core already holds it in
//! memory. A node on it forgets everything when its process dies. Its
//! snapshot files live in memory, in the disk's format, so that a node on
//! it can take, send and install snapshots like any other.

use super::snapshot::{self, SnapshotFile, SNAPSHOTS_KEPT, SNAPSHOT_CHUNK_SIZE_MAX};
use super::{Storage, StorageError};
use crate::core::{Entry, HardState, InstallSnapshot, LogIndex, SnapshotMeta};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Default)]
pub struct MemoryStorage {
    /// Durable snapshot files by index, at most `SNAPSHOTS_KEPT`.
    files: BTreeMap<LogIndex, Vec<u8>>,
    /// This node's snapshot being written: its meta and body so far.
    writing: Option<(SnapshotMeta, Vec<u8>)>,
    /// A finished one waiting for `snapshot_commit`.
    finished: Option<(LogIndex, Vec<u8>)>,
    /// The leader's file being received.
    receiving: Option<(InstallSnapshot, Vec<u8>)>,
}

impl MemoryStorage {
    fn keep(&mut self, index: LogIndex, bytes: Vec<u8>) -> u64 {
        let size = bytes.len() as u64;
        self.files.insert(index, bytes);
        while self.files.len() > SNAPSHOTS_KEPT {
            self.files.pop_first();
        }
        size
    }

    /// Where a file would be, for error messages: memory has no paths.
    fn name(index: LogIndex) -> PathBuf {
        PathBuf::from(format!("memory:{}", snapshot::file_name(index)))
    }
}

impl Storage for MemoryStorage {
    type Job = ();

    fn merge_jobs(_older: (), _newer: ()) {}

    fn append(&mut self, _entries: &[Entry]) -> Result<(), StorageError> {
        Ok(())
    }

    fn set_hard_state(&mut self, _hard_state: HardState) -> Result<(), StorageError> {
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        Ok(())
    }

    fn snapshot_begin(&mut self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        self.finished = None;
        self.writing = Some((meta.clone(), Vec::new()));
        Ok(())
    }

    fn snapshot_append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let (_, body) = self.writing.as_mut().expect("no snapshot begun");
        body.extend_from_slice(bytes);
        Ok(())
    }

    fn snapshot_finish(&mut self) -> Result<Option<()>, StorageError> {
        let (meta, body) = self.writing.take().expect("no snapshot begun");
        self.finished = Some((meta.index, snapshot::encode_file(&meta, &body)));
        Ok(None)
    }

    fn snapshot_commit(&mut self, _synced: Option<()>) -> Result<u64, StorageError> {
        let (index, bytes) = self.finished.take().expect("no snapshot finished");
        Ok(self.keep(index, bytes))
    }

    fn snapshot_abandon(&mut self) -> Result<(), StorageError> {
        self.writing = None;
        self.finished = None;
        Ok(())
    }

    fn receive_chunk(&mut self, chunk: &InstallSnapshot) -> Result<(), StorageError> {
        if chunk.offset == 0 {
            let first = InstallSnapshot {
                data: Vec::new().into(),
                ..chunk.clone()
            };
            self.receiving = Some((first, Vec::new()));
        }
        let index = chunk.meta.index;
        let stored = self.receiving.as_ref().map_or(0, |(_, bytes)| bytes.len());
        let Some((_, bytes)) = self
            .receiving
            .as_mut()
            .filter(|_| chunk.offset == stored as u64)
        else {
            return Err(StorageError::BadChunk {
                path: Self::name(index),
                problem: format!("chunk at byte {}, {stored} bytes stored", chunk.offset),
            });
        };
        bytes.extend_from_slice(&chunk.data);
        Ok(())
    }

    fn receive_finish(&mut self) -> Result<SnapshotFile, StorageError> {
        let (announced, bytes) = self.receiving.take().expect("no snapshot received");
        let path = Self::name(announced.meta.index);
        let (meta, _) = snapshot::decode_bytes(&bytes)
            .map_err(|(offset, problem)| StorageError::corrupt(&path, offset, problem))?;
        if meta != announced.meta {
            let problem = format!(
                "received snapshot holds {meta:?}, the leader announced {:?}",
                announced.meta
            );
            return Err(StorageError::corrupt(&path, 0, problem));
        }
        let size_bytes = self.keep(meta.index, bytes);
        Ok(SnapshotFile {
            meta,
            path,
            size_bytes,
        })
    }

    fn receive_abandon(&mut self) -> Result<(), StorageError> {
        self.receiving = None;
        Ok(())
    }

    fn snapshot_chunk(
        &mut self,
        index: LogIndex,
        offset: u64,
        size: usize,
    ) -> Result<Vec<u8>, StorageError> {
        assert!(size <= SNAPSHOT_CHUNK_SIZE_MAX, "chunk of {size} bytes");
        let bytes = self
            .files
            .get(&index)
            .ok_or(StorageError::NoSnapshot { index })?;
        let start = usize::try_from(offset).map_or(bytes.len(), |start| start.min(bytes.len()));
        let end = start.saturating_add(size).min(bytes.len());
        Ok(bytes[start..end].to_vec())
    }
}
