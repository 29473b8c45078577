//! The snapshot file: its byte format, the loader that checks it, the names
//! it goes by in the data dir, and retention. The same bytes travel in
//! InstallSnapshot chunks, so a follower checks what it received with the
//! loader that checks a file at start: one format, one checker. Writing is
//! in `snapshot_writer.rs`; the byte table is in docs/STORAGE.md.
//!
//! ```text
//! header : magic "RLSNAP\0\x01" (8) | header_len u32 | index u64 | term u64
//!          | cluster_id u64 (0 = none) | voter_count u32 | voter u32 * count
//! body   : the state machine's bytes (opaque here)
//! trailer: body_len u64 | crc32 u32 (over header, body, body_len)
//!          | magic "RLSNEND\0" (8)
//! ```
//! Integers are big-endian.

use super::hard_state::sync_path;
use super::remover::RemoverHandle;
use super::StorageError;
use crate::constants::CLUSTER_SIZE_MAX;
use crate::core::{ClusterId, LogIndex, NodeId, SnapshotMeta, Term};
use byteorder::{BigEndian, ByteOrder};
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The last byte is the format version.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"RLSNAP\0\x01";
pub const SNAPSHOT_TRAILER_MAGIC: [u8; 8] = *b"RLSNEND\0";
/// magic | header_len | index | term | cluster_id | voter_count.
pub const SNAPSHOT_HEADER_FIXED_SIZE: usize = 8 + 4 + 8 + 8 + 8 + 4;
pub const SNAPSHOT_HEADER_SIZE_MAX: usize = SNAPSHOT_HEADER_FIXED_SIZE + 4 * CLUSTER_SIZE_MAX;
/// body_len | crc32 | magic.
pub const SNAPSHOT_TRAILER_SIZE: usize = 8 + 4 + 8;
/// Largest snapshot file written, received or loaded. Loading reads the
/// body into memory, where the state machine lives anyway.
pub const SNAPSHOT_FILE_SIZE_MAX: u64 = 16 * 1024 * 1024 * 1024;
/// Largest piece read for the leader or accepted from it in one call: one
/// InstallSnapshot chunk, well under the frame limit.
pub const SNAPSHOT_CHUNK_SIZE_MAX: usize = 1024 * 1024;
/// Snapshot files kept: the newest and the one before it, which recovery
/// falls back to if the newest is damaged and the log still covers the gap.
pub const SNAPSHOTS_KEPT: usize = 2;
/// Bytes read per call when a file is checked without keeping its body.
const VERIFY_READ_SIZE: usize = 1024 * 1024;

pub const SNAPSHOT_FILE_PREFIX: &str = "snapshot-";
pub const SNAPSHOT_FILE_SUFFIX: &str = ".snap";
/// Every file being written ends so; one left at start is never valid.
pub const TEMPORARY_FILE_SUFFIX: &str = ".tmp";
const INDEX_DIGITS: usize = 20;

const HEADER_LEN_OFFSET: usize = 8;
/// Where the header's index sits: the offset a wrong index is reported at.
pub const INDEX_OFFSET: usize = 12;
const TERM_OFFSET: usize = 20;
const CLUSTER_ID_OFFSET: usize = 28;
const VOTER_COUNT_OFFSET: usize = 36;

const _: () = assert!(VOTER_COUNT_OFFSET + 4 == SNAPSHOT_HEADER_FIXED_SIZE);
const _: () = assert!(SNAPSHOT_CHUNK_SIZE_MAX < crate::constants::FRAME_SIZE_MAX);
const _: () = assert!(VERIFY_READ_SIZE > 0 && SNAPSHOTS_KEPT >= 1);

/// A durable snapshot file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFile {
    pub meta: SnapshotMeta,
    pub path: PathBuf,
    pub size_bytes: u64,
}

/// A checked snapshot with its body, as recovery hands it to the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedSnapshot {
    pub file: SnapshotFile,
    pub body: Vec<u8>,
}

pub fn file_name(index: LogIndex) -> String {
    assert!(index.0 >= 1, "a snapshot covers at least one entry");
    format!(
        "{SNAPSHOT_FILE_PREFIX}{:0INDEX_DIGITS$}{SNAPSHOT_FILE_SUFFIX}",
        index.0
    )
}

/// Where `SnapshotWriter` builds a snapshot before the rename.
pub fn writing_file_name(index: LogIndex) -> String {
    format!("{}{TEMPORARY_FILE_SUFFIX}", file_name(index))
}

/// Where `ChunkReceiver` stores a snapshot arriving from the leader: a name
/// of its own, so a snapshot this node writes at the same index meanwhile
/// never shares its file.
pub fn receiving_file_name(index: LogIndex) -> String {
    format!(
        "{SNAPSHOT_FILE_PREFIX}{:0INDEX_DIGITS$}.recv{TEMPORARY_FILE_SUFFIX}",
        index.0
    )
}

/// The index a final snapshot name announces; None unless it is exactly
/// "snapshot-", 20 digits (not all zero) and ".snap".
pub fn parse_file_name(name: &str) -> Option<LogIndex> {
    let digits = name
        .strip_prefix(SNAPSHOT_FILE_PREFIX)?
        .strip_suffix(SNAPSHOT_FILE_SUFFIX)?;
    if digits.len() != INDEX_DIGITS || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let index: u64 = digits.parse().ok()?;
    (index >= 1).then_some(LogIndex(index))
}

/// Whether a file's name makes it one of ours (for `StorageError`'s text).
pub fn is_snapshot_file(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with(SNAPSHOT_FILE_PREFIX))
}

pub fn encode_header(meta: &SnapshotMeta) -> Vec<u8> {
    assert!(
        meta.index.0 >= 1 && meta.term.0 >= 1,
        "snapshot of no entry"
    );
    assert!(meta.voters.len() <= CLUSTER_SIZE_MAX, "too many voters");
    let size = SNAPSHOT_HEADER_FIXED_SIZE + 4 * meta.voters.len();
    let mut header = vec![0; size];
    header[..8].copy_from_slice(&SNAPSHOT_MAGIC);
    BigEndian::write_u32(&mut header[HEADER_LEN_OFFSET..], size as u32);
    BigEndian::write_u64(&mut header[INDEX_OFFSET..], meta.index.0);
    BigEndian::write_u64(&mut header[TERM_OFFSET..], meta.term.0);
    let cluster_id = meta.cluster_id.map_or(0, |id| id.0);
    BigEndian::write_u64(&mut header[CLUSTER_ID_OFFSET..], cluster_id);
    BigEndian::write_u32(&mut header[VOTER_COUNT_OFFSET..], meta.voters.len() as u32);
    for (position, voter) in meta.voters.iter().enumerate() {
        let offset = SNAPSHOT_HEADER_FIXED_SIZE + 4 * position;
        BigEndian::write_u32(&mut header[offset..], voter.0);
    }
    header
}

/// The trailer for a body of `body_size` bytes; `hasher` has seen the
/// header and the body.
pub fn encode_trailer(
    body_size: u64,
    mut hasher: crc32fast::Hasher,
) -> [u8; SNAPSHOT_TRAILER_SIZE] {
    let mut trailer = [0; SNAPSHOT_TRAILER_SIZE];
    BigEndian::write_u64(&mut trailer[..8], body_size);
    hasher.update(&trailer[..8]);
    BigEndian::write_u32(&mut trailer[8..12], hasher.finalize());
    trailer[12..].copy_from_slice(&SNAPSHOT_TRAILER_MAGIC);
    trailer
}

/// A refusal before it is given a file name.
type Damage = (u64, String);

/// Checks the header against the file's size. `bytes` holds the first
/// `min(size, SNAPSHOT_HEADER_SIZE_MAX)` bytes of the file.
fn parse_header(bytes: &[u8], file_size: u64) -> Result<(SnapshotMeta, usize), Damage> {
    let smallest = (SNAPSHOT_HEADER_FIXED_SIZE + SNAPSHOT_TRAILER_SIZE) as u64;
    if bytes.len() >= 8 && bytes[..7] != SNAPSHOT_MAGIC[..7] {
        return Err((0, "not a snapshot file (magic is not RLSNAP)".to_string()));
    }
    if bytes.len() >= 8 && bytes[7] != SNAPSHOT_MAGIC[7] {
        let problem = format!("snapshot format version {}, this program reads 1", bytes[7]);
        return Err((7, problem));
    }
    if file_size < smallest {
        let problem = format!(
            "file has {file_size} bytes, less than the smallest snapshot ({smallest}): truncated"
        );
        return Err((file_size, problem));
    }
    let voter_count = BigEndian::read_u32(&bytes[VOTER_COUNT_OFFSET..]) as usize;
    if voter_count > CLUSTER_SIZE_MAX {
        let problem = format!("header names {voter_count} voters, more than {CLUSTER_SIZE_MAX}");
        return Err((VOTER_COUNT_OFFSET as u64, problem));
    }
    let header_len = BigEndian::read_u32(&bytes[HEADER_LEN_OFFSET..]) as usize;
    let expected = SNAPSHOT_HEADER_FIXED_SIZE + 4 * voter_count;
    if header_len != expected {
        let problem =
            format!("header length {header_len}, but {voter_count} voters make {expected}");
        return Err((HEADER_LEN_OFFSET as u64, problem));
    }
    if (header_len + SNAPSHOT_TRAILER_SIZE) as u64 > file_size || bytes.len() < header_len {
        let problem = format!(
            "header of {header_len} bytes and trailer do not fit the file's {file_size}: truncated"
        );
        return Err((file_size, problem));
    }
    let index = LogIndex(BigEndian::read_u64(&bytes[INDEX_OFFSET..]));
    let term = Term(BigEndian::read_u64(&bytes[TERM_OFFSET..]));
    if index.0 == 0 || term.0 == 0 {
        let problem =
            format!("header says index {index} term {term}: a snapshot covers at least one entry");
        return Err((INDEX_OFFSET as u64, problem));
    }
    let cluster_id = BigEndian::read_u64(&bytes[CLUSTER_ID_OFFSET..]);
    let voters = parse_voters(&bytes[SNAPSHOT_HEADER_FIXED_SIZE..header_len])?;
    let meta = SnapshotMeta {
        index,
        term,
        cluster_id: (cluster_id != 0).then_some(ClusterId(cluster_id)),
        voters,
    };
    Ok((meta, header_len))
}

fn parse_voters(bytes: &[u8]) -> Result<Vec<NodeId>, Damage> {
    let voters: Vec<NodeId> = bytes
        .chunks_exact(4)
        .map(|id| NodeId(BigEndian::read_u32(id)))
        .collect();
    for (position, voter) in voters.iter().enumerate() {
        if voters[..position].contains(voter) {
            let offset = (SNAPSHOT_HEADER_FIXED_SIZE + 4 * position) as u64;
            return Err((offset, format!("voter {voter} named twice")));
        }
    }
    Ok(voters)
}

/// The body's size and the stored CRC, once the trailer agrees with the
/// header about where the body ends.
fn parse_trailer(trailer: &[u8], file_size: u64, header_len: usize) -> Result<(u64, u32), Damage> {
    let start = file_size - SNAPSHOT_TRAILER_SIZE as u64;
    if trailer[12..] != SNAPSHOT_TRAILER_MAGIC {
        let problem =
            "no end marker (RLSNEND): the file is truncated or was never finished".to_string();
        return Err((start + 12, problem));
    }
    let body_size = BigEndian::read_u64(&trailer[..8]);
    let held = start - header_len as u64;
    if body_size != held {
        let problem = format!("trailer says the body has {body_size} bytes, the file holds {held}");
        return Err((start, problem));
    }
    Ok((body_size, BigEndian::read_u32(&trailer[8..12])))
}

/// Finds the body in a snapshot file arriving in order, chunk by chunk,
/// so that the state machine can be restored while it arrives (the file is
/// checked whole, CRC and all, once it is in: until then what this yields
/// is unchecked, and a restore from it is kept only if that check passes).
#[derive(Clone, Debug, Default)]
pub struct BodyFinder {
    /// The file's first bytes, until they hold the header's length.
    start: Vec<u8>,
    /// Where the body begins and ends in the file, once known.
    body: Option<(u64, u64)>,
}

impl BodyFinder {
    /// The part of `data` (at `offset` in a file of `total_size` bytes)
    /// that is body. Chunks come in order from offset 0; a header that
    /// makes no sense yields nothing (the whole-file check refuses it).
    pub fn body_of<'a>(&mut self, offset: u64, data: &'a [u8], total_size: u64) -> &'a [u8] {
        if self.body.is_none() {
            let wanted = HEADER_LEN_OFFSET + 4;
            let skip = (self.start.len() as u64).saturating_sub(offset) as usize;
            let have = data.len().saturating_sub(skip);
            let take = have.min(wanted.saturating_sub(self.start.len()));
            self.start
                .extend_from_slice(&data[skip.min(data.len())..][..take]);
            if self.start.len() == wanted {
                let header_len = u64::from(BigEndian::read_u32(&self.start[HEADER_LEN_OFFSET..]));
                let end = total_size.saturating_sub(SNAPSHOT_TRAILER_SIZE as u64);
                self.body = Some((header_len.min(end), end));
            }
        }
        let Some((start, end)) = self.body else {
            return &[];
        };
        let chunk_end = offset.saturating_add(data.len() as u64);
        let from = start.max(offset).min(chunk_end);
        let to = end.min(chunk_end).max(from);
        &data[(from - offset) as usize..(to - offset) as usize]
    }
}

/// A whole snapshot file's bytes, for storage that keeps its files in
/// memory (the simulator's, `MemoryStorage`): the same bytes the disk
/// holds and InstallSnapshot carries.
pub fn encode_file(meta: &SnapshotMeta, body: &[u8]) -> Vec<u8> {
    let mut bytes = encode_header(meta);
    bytes.extend_from_slice(body);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes);
    let trailer = encode_trailer(body.len() as u64, hasher);
    bytes.extend_from_slice(&trailer);
    bytes
}

/// `load` of a file held in memory: its meta and body, or the byte offset
/// and problem of the first damage found (the caller names the file).
pub fn decode_bytes(bytes: &[u8]) -> Result<(SnapshotMeta, &[u8]), (u64, String)> {
    let size = bytes.len() as u64;
    if size > SNAPSHOT_FILE_SIZE_MAX {
        return Err((
            0,
            format!("file has {size} bytes, more than {SNAPSHOT_FILE_SIZE_MAX}"),
        ));
    }
    let header = &bytes[..bytes.len().min(SNAPSHOT_HEADER_SIZE_MAX)];
    let (meta, header_len) = parse_header(header, size)?;
    let trailer_start = bytes.len() - SNAPSHOT_TRAILER_SIZE;
    let trailer = &bytes[trailer_start..];
    let (_, crc_stored) = parse_trailer(trailer, size, header_len)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[..trailer_start + 8]);
    let crc_computed = hasher.finalize();
    if crc_stored != crc_computed {
        let problem = format!(
            "snapshot CRC mismatch (stored {crc_stored:#010x}, computed {crc_computed:#010x})"
        );
        return Err((size - 12, problem));
    }
    Ok((meta, &bytes[header_len..trailer_start]))
}

/// Parses and CRC-checks a snapshot file, returning its meta and body.
/// Damage is `StorageError::Corrupt` with the byte offset; nothing changes.
pub fn load(path: &Path) -> Result<LoadedSnapshot, StorageError> {
    let (file, body) = inspect(path, true)?;
    Ok(LoadedSnapshot {
        file,
        body: body.unwrap_or_default(),
    })
}

/// `load` without keeping the body: reads the file in bounded pieces.
pub fn verify(path: &Path) -> Result<SnapshotFile, StorageError> {
    inspect(path, false).map(|(file, _)| file)
}

fn inspect(path: &Path, keep_body: bool) -> Result<(SnapshotFile, Option<Vec<u8>>), StorageError> {
    let corrupt = |(offset, problem): Damage| StorageError::corrupt(path, offset, problem);
    let file = File::open(path).map_err(StorageError::io(path, "open"))?;
    let metadata = file.metadata().map_err(StorageError::io(path, "stat"))?;
    if !metadata.is_file() {
        return Err(corrupt((0, "not a regular file".to_string())));
    }
    let size = metadata.len();
    if size > SNAPSHOT_FILE_SIZE_MAX {
        return Err(corrupt((
            0,
            format!("file has {size} bytes, more than {SNAPSHOT_FILE_SIZE_MAX}"),
        )));
    }
    let mut header = vec![0; (size as usize).min(SNAPSHOT_HEADER_SIZE_MAX)];
    read_at(&file, path, &mut header, 0)?;
    let (meta, header_len) = parse_header(&header, size).map_err(corrupt)?;
    check_name(path, meta.index).map_err(corrupt)?;
    let mut trailer = [0; SNAPSHOT_TRAILER_SIZE];
    read_at(
        &file,
        path,
        &mut trailer,
        size - SNAPSHOT_TRAILER_SIZE as u64,
    )?;
    let (body_size, crc_stored) = parse_trailer(&trailer, size, header_len).map_err(corrupt)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[..header_len]);
    let body = read_body(
        &file,
        path,
        header_len as u64,
        body_size,
        keep_body,
        &mut hasher,
    )?;
    hasher.update(&trailer[..8]);
    let crc_computed = hasher.finalize();
    if crc_stored != crc_computed {
        let problem = format!(
            "snapshot CRC mismatch (stored {crc_stored:#010x}, computed {crc_computed:#010x})"
        );
        return Err(corrupt((size - 12, problem)));
    }
    let snapshot_file = SnapshotFile {
        meta,
        path: path.to_path_buf(),
        size_bytes: size,
    };
    Ok((snapshot_file, body))
}

/// A final name must agree with the header (a renamed file is refused); a
/// temporary name says nothing.
fn check_name(path: &Path, index: LogIndex) -> Result<(), Damage> {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("");
    match parse_file_name(name) {
        Some(named) if named != index => Err((
            INDEX_OFFSET as u64,
            format!("file name says index {named}, header says {index}"),
        )),
        _ => Ok(()),
    }
}

fn read_body(
    file: &File,
    path: &Path,
    start: u64,
    size: u64,
    keep: bool,
    hasher: &mut crc32fast::Hasher,
) -> Result<Option<Vec<u8>>, StorageError> {
    if keep {
        let mut body = vec![0; size as usize];
        read_at(file, path, &mut body, start)?;
        hasher.update(&body);
        return Ok(Some(body));
    }
    let mut buffer = vec![0; VERIFY_READ_SIZE.min(size as usize)];
    let mut done = 0;
    while done < size {
        let piece = (size - done).min(VERIFY_READ_SIZE as u64) as usize;
        read_at(file, path, &mut buffer[..piece], start + done)?;
        hasher.update(&buffer[..piece]);
        done += piece as u64;
    }
    Ok(None)
}

fn read_at(file: &File, path: &Path, buffer: &mut [u8], offset: u64) -> Result<(), StorageError> {
    file.read_exact_at(buffer, offset)
        .map_err(StorageError::io(path, "read"))
}

/// `size` bytes of the file from `offset`, for the leader to send as one
/// InstallSnapshot chunk (the file verbatim: offset in the file is offset
/// in the stream). Fewer bytes only at the end of the file.
pub fn read_chunk(path: &Path, offset: u64, size: usize) -> Result<Vec<u8>, StorageError> {
    let file = File::open(path).map_err(StorageError::io(path, "open"))?;
    read_chunk_from(&file, path, offset, size)
}

/// `read_chunk` on a file already open (it stays readable after retention
/// unlinks it, so a send in progress finishes).
pub fn read_chunk_from(
    file: &File,
    path: &Path,
    offset: u64,
    size: usize,
) -> Result<Vec<u8>, StorageError> {
    assert!(size <= SNAPSHOT_CHUNK_SIZE_MAX, "chunk of {size} bytes");
    let file_size = file
        .metadata()
        .map_err(StorageError::io(path, "stat"))?
        .len();
    assert!(
        offset <= file_size,
        "chunk at {offset} past the end ({file_size})"
    );
    let size = (file_size - offset).min(size as u64) as usize;
    let mut chunk = vec![0; size];
    read_at(file, path, &mut chunk, offset)?;
    Ok(chunk)
}

/// The snapshot files in the data dir, as recovery and retention see them.
#[derive(Debug, Default)]
pub struct SnapshotListing {
    /// Final names, oldest (lowest index) first.
    pub snapshots: Vec<(LogIndex, PathBuf)>,
    /// Unfinished writes and receives.
    pub temporaries: Vec<PathBuf>,
    /// "snapshot-*.snap" files whose name is not 20 digits.
    pub misnamed: Vec<PathBuf>,
}

pub fn list(directory: &Path) -> Result<SnapshotListing, StorageError> {
    let items = fs::read_dir(directory).map_err(StorageError::io(directory, "list"))?;
    let mut listing = SnapshotListing::default();
    for item in items {
        let item = item.map_err(StorageError::io(directory, "list"))?;
        let name = item.file_name().to_string_lossy().into_owned();
        if !name.starts_with(SNAPSHOT_FILE_PREFIX) {
            continue;
        }
        if name.ends_with(TEMPORARY_FILE_SUFFIX) {
            listing.temporaries.push(item.path());
        } else if let Some(index) = parse_file_name(&name) {
            listing.snapshots.push((index, item.path()));
        } else if name.ends_with(SNAPSHOT_FILE_SUFFIX) {
            listing.misnamed.push(item.path());
        }
    }
    listing.snapshots.sort();
    listing.temporaries.sort();
    Ok(listing)
}

/// The highest index among the final snapshot names (not checked: for the
/// assertions that compaction and reset run only behind a snapshot).
pub fn newest_index(directory: &Path) -> Result<Option<LogIndex>, StorageError> {
    Ok(list(directory)?.snapshots.last().map(|(index, _)| *index))
}

/// Called once the snapshot at `newest` is durable (renamed, directory
/// synced): keeps it and the newest one below it, removes older ones.
/// Files above `newest` can only be ones recovery rejected; they stay for
/// the operator and do not count. Returns the files removed.
pub fn apply_retention(
    directory: &Path,
    newest: LogIndex,
    fsync: bool,
    remover: Option<&RemoverHandle>,
) -> Result<Vec<PathBuf>, StorageError> {
    let listing = list(directory)?;
    let older: Vec<&PathBuf> = listing
        .snapshots
        .iter()
        .filter(|(index, _)| *index < newest)
        .map(|(_, path)| path)
        .collect();
    let remove_count = older.len().saturating_sub(SNAPSHOTS_KEPT - 1);
    let mut removed = Vec::with_capacity(remove_count);
    if let Some(remover) = remover {
        // Later, off the loop, each with its own directory sync.
        for path in &older[..remove_count] {
            remover.remove(path.to_path_buf(), directory)?;
            removed.push(path.to_path_buf());
        }
        return Ok(removed);
    }
    for path in &older[..remove_count] {
        fs::remove_file(path).map_err(StorageError::io(path, "remove"))?;
        removed.push(path.to_path_buf());
    }
    // Any subset of these removals is a state recovery accepts, so one
    // directory sync covers them all.
    if fsync && !removed.is_empty() {
        sync_path(directory)?;
    }
    Ok(removed)
}
