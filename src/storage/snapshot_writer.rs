//! Writing snapshot files: `SnapshotWriter` for a snapshot this node takes
//! (its body arrives over many loop turns), `ChunkReceiver` for one a
//! leader streams in (InstallSnapshot). Both build a `.tmp` file in the
//! data dir, make it durable, rename it to its final name, sync the
//! directory and only then apply retention, so a crash at any step leaves
//! the previous snapshots intact and at most a `.tmp` file that recovery
//! removes (docs/STORAGE.md, "Snapshot files").

use super::hard_state::sync_path;
use super::remover::RemoverHandle;
use super::snapshot::{
    self, SnapshotFile, INDEX_OFFSET, SNAPSHOT_CHUNK_SIZE_MAX, SNAPSHOT_FILE_SIZE_MAX,
    SNAPSHOT_TRAILER_SIZE,
};
use super::{StorageError, SyncJob};
use crate::core::SnapshotMeta;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn create_temporary(path: &Path) -> Result<File, StorageError> {
    // A file of this name is an earlier attempt in this run, given up: it
    // was never valid, so it is overwritten.
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(StorageError::io(path, "create"))
}

/// Renames a durable temporary file into place, syncs the directory, then
/// removes what retention no longer keeps.
fn install(
    directory: &Path,
    temporary: &Path,
    file: SnapshotFile,
    fsync: bool,
    remover: Option<&RemoverHandle>,
) -> Result<SnapshotFile, StorageError> {
    fs::rename(temporary, &file.path).map_err(StorageError::io(temporary, "rename"))?;
    if fsync {
        sync_path(directory)?;
    }
    snapshot::apply_retention(directory, file.meta.index, fsync, remover)?;
    Ok(file)
}

/// A snapshot being written. Created with its header; `append` the body
/// over as many calls as the caller likes; `finish` writes the trailer.
#[derive(Debug)]
pub struct SnapshotWriter {
    directory: PathBuf,
    meta: SnapshotMeta,
    temporary_path: PathBuf,
    /// Shared with the flush jobs that sync it while it is written.
    file: Arc<File>,
    /// Has seen every byte written so far.
    hasher: crc32fast::Hasher,
    header_size: u64,
    /// Bytes in the file so far. Invariant: header_size <= size.
    size: u64,
    fsync: bool,
    /// Where retention's removals go (None: removed on the spot).
    remover: Option<RemoverHandle>,
}

impl SnapshotWriter {
    /// Retention's removals go to `remover`'s thread instead of running
    /// on the caller's.
    pub fn with_remover(self, remover: RemoverHandle) -> SnapshotWriter {
        SnapshotWriter {
            remover: Some(remover),
            ..self
        }
    }

    /// Creates `<dir>/snapshot-<index>.snap.tmp` holding the header.
    pub fn create(
        directory: &Path,
        meta: SnapshotMeta,
        fsync: bool,
    ) -> Result<SnapshotWriter, StorageError> {
        let temporary_path = directory.join(snapshot::writing_file_name(meta.index));
        let header = snapshot::encode_header(&meta);
        let file = Arc::new(create_temporary(&temporary_path)?);
        file.write_all_at(&header, 0)
            .map_err(StorageError::io(&temporary_path, "write"))?;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header);
        Ok(SnapshotWriter {
            directory: directory.to_path_buf(),
            meta,
            temporary_path,
            file,
            hasher,
            header_size: header.len() as u64,
            size: header.len() as u64,
            fsync,
            remover: None,
        })
    }

    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// Bytes written so far, header included.
    pub fn size_bytes(&self) -> u64 {
        self.size
    }

    /// Appends body bytes. Refuses (writing nothing) a body that would make
    /// the file larger than `SNAPSHOT_FILE_SIZE_MAX`.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        let size = self.size + bytes.len() as u64 + SNAPSHOT_TRAILER_SIZE as u64;
        if size > SNAPSHOT_FILE_SIZE_MAX {
            return Err(StorageError::SnapshotTooLarge {
                size,
                size_max: SNAPSHOT_FILE_SIZE_MAX,
            });
        }
        self.file
            .write_all_at(bytes, self.size)
            .map_err(StorageError::io(&self.temporary_path, "write"))?;
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Writes the trailer. Returns the file, ready to commit once the
    /// fdatasync owed (the job; None with fsync off) has run.
    pub fn finish(self) -> Result<(FinishedSnapshot, Option<SyncJob>), StorageError> {
        let body_size = self.size - self.header_size;
        let trailer = snapshot::encode_trailer(body_size, self.hasher);
        self.file
            .write_all_at(&trailer, self.size)
            .map_err(StorageError::io(&self.temporary_path, "write"))?;
        let file = self.file;
        let job = self.fsync.then(|| SyncJob {
            file: Arc::clone(&file),
            path: self.temporary_path.clone(),
            entries: 0,
        });
        let finished = FinishedSnapshot {
            directory: self.directory,
            meta: self.meta,
            temporary_path: self.temporary_path,
            size: self.size + trailer.len() as u64,
            fsync: self.fsync,
            remover: self.remover,
        };
        Ok((finished, job))
    }

    /// A job that syncs what is written so far (None with fsync off): run
    /// now and then while the body is written, so that the sync `finish`
    /// owes has little left to write when it runs, and the disk takes the
    /// snapshot in small pieces between the log's own syncs.
    pub fn flush_job(&self) -> Option<SyncJob> {
        self.fsync.then(|| SyncJob {
            file: Arc::clone(&self.file),
            path: self.temporary_path.clone(),
            entries: 0,
        })
    }

    /// Gives the snapshot up: removes its temporary file.
    pub fn abandon(self) -> Result<(), StorageError> {
        fs::remove_file(&self.temporary_path)
            .map_err(StorageError::io(&self.temporary_path, "remove"))
    }
}

/// A complete snapshot file under its temporary name.
#[derive(Debug)]
pub struct FinishedSnapshot {
    directory: PathBuf,
    meta: SnapshotMeta,
    temporary_path: PathBuf,
    size: u64,
    fsync: bool,
    remover: Option<RemoverHandle>,
}

impl FinishedSnapshot {
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    pub fn size_bytes(&self) -> u64 {
        self.size
    }

    /// Renames the file into place, syncs the directory and applies
    /// retention. `synced` is the job `finish` returned, back from a
    /// successful run: the rename must not become durable before the
    /// bytes, or a crash could leave a final name over a torn file.
    pub fn commit(self, synced: Option<SyncJob>) -> Result<SnapshotFile, StorageError> {
        assert_eq!(synced.is_some(), self.fsync, "commit without its sync");
        if let Some(job) = &synced {
            assert_eq!(job.path, self.temporary_path, "another file's sync");
        }
        let file = SnapshotFile {
            path: self.directory.join(snapshot::file_name(self.meta.index)),
            meta: self.meta,
            size_bytes: self.size,
        };
        let remover = self.remover.as_ref();
        install(
            &self.directory,
            &self.temporary_path,
            file,
            self.fsync,
            remover,
        )
    }

    /// Gives the snapshot up before its commit (a snapshot from the
    /// leader replaced the state it holds): removes its temporary file.
    pub fn abandon(self) -> Result<(), StorageError> {
        fs::remove_file(&self.temporary_path)
            .map_err(StorageError::io(&self.temporary_path, "remove"))
    }
}

/// A snapshot arriving from the leader in chunks, written as they come.
#[derive(Debug)]
pub struct ChunkReceiver {
    directory: PathBuf,
    /// What the leader announced; the file's header must say the same.
    meta: SnapshotMeta,
    temporary_path: PathBuf,
    /// Shared with the flush jobs (`flush_job`) that sync it meanwhile.
    file: Arc<File>,
    /// Bytes stored so far: the offset the next chunk must carry.
    stored: u64,
    fsync: bool,
    remover: Option<RemoverHandle>,
}

impl ChunkReceiver {
    /// Creates (or restarts) `<dir>/snapshot-<index>.recv.tmp` for the
    /// snapshot the leader announced (`meta`, from the network).
    pub fn create(
        directory: &Path,
        meta: SnapshotMeta,
        fsync: bool,
    ) -> Result<ChunkReceiver, StorageError> {
        let temporary_path = directory.join(snapshot::receiving_file_name(meta.index));
        let file = Arc::new(create_temporary(&temporary_path)?);
        Ok(ChunkReceiver {
            directory: directory.to_path_buf(),
            meta,
            temporary_path,
            file,
            stored: 0,
            fsync,
            remover: None,
        })
    }

    /// Retention's removals go to `remover`'s thread.
    pub fn with_remover(self, remover: RemoverHandle) -> ChunkReceiver {
        ChunkReceiver {
            remover: Some(remover),
            ..self
        }
    }

    /// The snapshot the leader announced.
    pub fn announced(&self) -> &SnapshotMeta {
        &self.meta
    }

    pub fn stored_bytes(&self) -> u64 {
        self.stored
    }

    /// A sync of what is stored so far (None without fsync), as
    /// `SnapshotWriter::flush_job`: the install's own sync on the loop then
    /// has little left (a 73 MB install was a 397 ms turn with it all).
    pub fn flush_job(&self) -> Option<SyncJob> {
        self.fsync.then(|| SyncJob {
            file: Arc::clone(&self.file),
            path: self.temporary_path.clone(),
            entries: 0,
        })
    }

    /// Stores the chunk at `offset`, which must be `stored_bytes()`: a
    /// chunk out of order, too large, or past the size bound is refused
    /// with `BadChunk` and changes nothing.
    pub fn write_chunk(&mut self, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        let problem = if offset != self.stored {
            format!(
                "chunk at byte {offset}, but {} bytes are stored: chunks arrive in order",
                self.stored
            )
        } else if bytes.len() > SNAPSHOT_CHUNK_SIZE_MAX {
            format!(
                "chunk of {} bytes, more than {SNAPSHOT_CHUNK_SIZE_MAX}",
                bytes.len()
            )
        } else if self.stored + bytes.len() as u64 > SNAPSHOT_FILE_SIZE_MAX {
            format!("snapshot would pass {SNAPSHOT_FILE_SIZE_MAX} bytes")
        } else {
            // A failed write may leave bytes past `stored`; the next chunk
            // at `stored` overwrites them and `finish` cuts the rest.
            self.file
                .write_all_at(bytes, offset)
                .map_err(StorageError::io(&self.temporary_path, "write"))?;
            self.stored += bytes.len() as u64;
            return Ok(());
        };
        Err(StorageError::BadChunk {
            path: self.temporary_path.clone(),
            problem,
        })
    }

    /// The last chunk is in: syncs the file, checks it whole with the
    /// loader (structure, CRC, and the announced index and term), then
    /// installs it. A file that fails the check is removed (only that
    /// temporary file) and the error says why.
    pub fn finish(self) -> Result<SnapshotFile, StorageError> {
        let path = &self.temporary_path;
        self.file
            .set_len(self.stored)
            .map_err(StorageError::io(path, "truncate"))?;
        if self.fsync {
            self.file
                .sync_data()
                .map_err(StorageError::io(path, "fdatasync"))?;
        }
        let checked = snapshot::verify(path).and_then(|file| self.check_meta(file));
        let received = match checked {
            Ok(received) => received,
            Err(error @ StorageError::Corrupt { .. }) => {
                fs::remove_file(path).map_err(StorageError::io(path, "remove"))?;
                return Err(error);
            }
            Err(error) => return Err(error),
        };
        let file = SnapshotFile {
            path: self.directory.join(snapshot::file_name(self.meta.index)),
            ..received
        };
        install(
            &self.directory,
            path,
            file,
            self.fsync,
            self.remover.as_ref(),
        )
    }

    fn check_meta(&self, received: SnapshotFile) -> Result<SnapshotFile, StorageError> {
        let got = &received.meta;
        if got != &self.meta {
            let problem = format!(
                "received snapshot holds {got:?}, the leader announced {:?}",
                self.meta
            );
            return Err(StorageError::corrupt(
                &self.temporary_path,
                INDEX_OFFSET as u64,
                problem,
            ));
        }
        Ok(received)
    }

    /// Gives the transfer up (a newer snapshot is coming): removes its file.
    pub fn abandon(self) -> Result<(), StorageError> {
        fs::remove_file(&self.temporary_path)
            .map_err(StorageError::io(&self.temporary_path, "remove"))
    }
}
