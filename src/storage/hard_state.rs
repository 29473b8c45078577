//! The hard-state file: current term, vote and cluster id (Figure 2,
//! "Persistent state on all servers", plus the cluster this node belongs
//! to), with the id of the node the data dir belongs to, in two fixed slots.
//! Each write goes to the slot that does not hold the newest state, so a
//! crash mid-write tears at most the slot being written and the other still
//! holds the previous state.
//!
//! Slot (format 2): magic u32 | version u8 | sequence u64 | current_term u64
//! | voted_for presence u8 | voted_for u32 | cluster_id u64 (0: not known
//! yet) | node id size u8 | node id, 64 bytes, zero-padded | crc32 u32 (over
//! all before it), big-endian. Slot 0 starts at byte 0, slot 1 at byte 4096:
//! separate 4 KiB blocks, so a torn sector write cannot touch both. Format 1
//! (no cluster id, no node id) was written before cluster ids existed and is
//! refused with a message saying so.

use super::StorageError;
use crate::constants::NODE_ID_SIZE_MAX;
use crate::core::{ClusterId, HardState, NodeId, Term};
use byteorder::{BigEndian, ByteOrder};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const HARD_STATE_FILE_NAME: &str = "hardstate";
/// Where a new hard-state file is built before its rename into place.
pub const HARD_STATE_TEMPORARY_FILE_NAME: &str = "hardstate.tmp";
/// "RLHS".
pub const HARD_STATE_MAGIC: u32 = 0x524C_4853;
pub const HARD_STATE_FORMAT_VERSION: u8 = 2;
/// The format before cluster ids: recognised only to refuse it clearly.
const HARD_STATE_FORMAT_VERSION_LEGACY: u8 = 1;
const LEGACY_SLOT_CRC_OFFSET: usize = 26;
pub const HARD_STATE_SLOT_SIZE: usize = 4 + 1 + 8 + 8 + 1 + 4 + 8 + 1 + NODE_ID_SIZE_MAX + 4;
/// Byte distance between the two slots.
pub const HARD_STATE_SLOT_STRIDE: u64 = 4096;
pub const HARD_STATE_FILE_SIZE: u64 = 2 * HARD_STATE_SLOT_STRIDE;

const SLOT_CRC_OFFSET: usize = HARD_STATE_SLOT_SIZE - 4;
const NODE_NAME_OFFSET: usize = 35;
const _: () = assert!(HARD_STATE_SLOT_SIZE as u64 <= HARD_STATE_SLOT_STRIDE);
const _: () = assert!(NODE_NAME_OFFSET + NODE_ID_SIZE_MAX == SLOT_CRC_OFFSET);
const _: () = assert!(NODE_ID_SIZE_MAX <= u8::MAX as usize);

/// The id of the node a data dir belongs to (`--id`), kept with its hard
/// state so that a data dir started under another id is refused. Empty for
/// storage opened without one (tests).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NodeName {
    bytes: [u8; NODE_ID_SIZE_MAX],
    size: u8,
}

impl NodeName {
    pub const NONE: NodeName = NodeName {
        bytes: [0; NODE_ID_SIZE_MAX],
        size: 0,
    };

    /// None if longer than NODE_ID_SIZE_MAX bytes.
    pub fn new(name: &str) -> Option<NodeName> {
        let mut node_name = NodeName::NONE;
        node_name
            .bytes
            .get_mut(..name.len())?
            .copy_from_slice(name.as_bytes());
        node_name.size = name.len() as u8;
        Some(node_name)
    }

    pub fn as_str(&self) -> &str {
        // Built from a &str or checked by decode_slot.
        std::str::from_utf8(&self.bytes[..self.size as usize]).unwrap_or("?")
    }

    pub fn is_none(&self) -> bool {
        self.size == 0
    }
}

impl Default for NodeName {
    fn default() -> NodeName {
        NodeName::NONE
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return write!(f, "(none)");
        }
        write!(f, "{}", self.as_str())
    }
}

/// One slot's content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Grows by one with each write; the valid slot with the higher one wins.
    pub sequence: u64,
    pub hard_state: HardState,
    pub node_name: NodeName,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SlotRead {
    Valid(Slot),
    /// CRC mismatch: normal for the slot a crash interrupted.
    Torn,
    /// CRC-valid but impossible: a bug or a foreign file, never a crash.
    Impossible(String),
}

pub fn encode_slot(slot: &Slot) -> [u8; HARD_STATE_SLOT_SIZE] {
    let mut bytes = [0u8; HARD_STATE_SLOT_SIZE];
    BigEndian::write_u32(&mut bytes[0..4], HARD_STATE_MAGIC);
    bytes[4] = HARD_STATE_FORMAT_VERSION;
    BigEndian::write_u64(&mut bytes[5..13], slot.sequence);
    BigEndian::write_u64(&mut bytes[13..21], slot.hard_state.current_term.0);
    if let Some(node) = slot.hard_state.voted_for {
        bytes[21] = 1;
        BigEndian::write_u32(&mut bytes[22..26], node.0);
    }
    let cluster_id = slot.hard_state.cluster_id.map_or(0, |id| id.0);
    BigEndian::write_u64(&mut bytes[26..34], cluster_id);
    bytes[34] = slot.node_name.size;
    bytes[NODE_NAME_OFFSET..SLOT_CRC_OFFSET].copy_from_slice(&slot.node_name.bytes);
    let crc = crc32fast::hash(&bytes[..SLOT_CRC_OFFSET]);
    BigEndian::write_u32(&mut bytes[SLOT_CRC_OFFSET..], crc);
    bytes
}

pub fn decode_slot(bytes: &[u8]) -> SlotRead {
    assert_eq!(bytes.len(), HARD_STATE_SLOT_SIZE);
    if is_legacy_slot(bytes) {
        return SlotRead::Impossible(
            "hard-state format 1, written by a raftlite from before cluster ids: this version \
             cannot tell which cluster the data belongs to; re-create this member"
                .to_string(),
        );
    }
    let crc_stored = BigEndian::read_u32(&bytes[SLOT_CRC_OFFSET..]);
    if crc_stored != crc32fast::hash(&bytes[..SLOT_CRC_OFFSET]) {
        return SlotRead::Torn;
    }
    let magic = BigEndian::read_u32(&bytes[0..4]);
    let version = bytes[4];
    if magic != HARD_STATE_MAGIC {
        return SlotRead::Impossible(format!(
            "slot magic {magic:#010x}, expected {HARD_STATE_MAGIC:#010x}"
        ));
    }
    if version != HARD_STATE_FORMAT_VERSION {
        return SlotRead::Impossible(format!(
            "hard-state format version {version}, this program reads {HARD_STATE_FORMAT_VERSION}"
        ));
    }
    match decode_fields(bytes) {
        Ok(slot) => SlotRead::Valid(slot),
        Err(problem) => SlotRead::Impossible(problem),
    }
}

/// A format-1 slot passes its own CRC, which sat right after the vote.
fn is_legacy_slot(bytes: &[u8]) -> bool {
    let crc_end = LEGACY_SLOT_CRC_OFFSET + 4;
    BigEndian::read_u32(&bytes[0..4]) == HARD_STATE_MAGIC
        && bytes[4] == HARD_STATE_FORMAT_VERSION_LEGACY
        && BigEndian::read_u32(&bytes[LEGACY_SLOT_CRC_OFFSET..crc_end])
            == crc32fast::hash(&bytes[..LEGACY_SLOT_CRC_OFFSET])
}

fn decode_fields(bytes: &[u8]) -> Result<Slot, String> {
    let presence = bytes[21];
    let voted_for = BigEndian::read_u32(&bytes[22..26]);
    let voted_for = match (presence, voted_for) {
        (0, 0) => None,
        (1, node) => Some(NodeId(node)),
        _ => {
            return Err(format!(
                "voted_for presence byte {presence} with value {voted_for}"
            ))
        }
    };
    let cluster_id = match BigEndian::read_u64(&bytes[26..34]) {
        0 => None,
        id => Some(ClusterId(id)),
    };
    let size = bytes[34] as usize;
    let name = &bytes[NODE_NAME_OFFSET..SLOT_CRC_OFFSET];
    let node_name = match name.get(..size).map(std::str::from_utf8) {
        Some(Ok(text)) if name[size..].iter().all(|&byte| byte == 0) => NodeName::new(text),
        _ => None,
    };
    let Some(node_name) = node_name else {
        return Err(format!("node id of {size} bytes is not zero-padded UTF-8"));
    };
    Ok(Slot {
        sequence: BigEndian::read_u64(&bytes[5..13]),
        hard_state: HardState {
            current_term: Term(BigEndian::read_u64(&bytes[13..21])),
            voted_for,
            cluster_id,
        },
        node_name,
    })
}

fn slot_offset(slot_index: usize) -> u64 {
    assert!(slot_index < 2);
    slot_index as u64 * HARD_STATE_SLOT_STRIDE
}

/// Picks the state to start from. One torn slot is normal (the crash hit
/// its write); both unreadable, or two valid slots that could not have been
/// written in turn, is damage. Returns the winning slot's position too.
pub fn choose_slot(path: &Path, reads: [SlotRead; 2]) -> Result<(usize, Slot), StorageError> {
    let refuse = |slot_index: usize, problem: String| {
        Err(StorageError::corrupt(
            path,
            slot_offset(slot_index),
            problem,
        ))
    };
    match reads {
        [SlotRead::Impossible(problem), _] => refuse(0, problem),
        [_, SlotRead::Impossible(problem)] => refuse(1, problem),
        [SlotRead::Torn, SlotRead::Torn] => {
            refuse(0, "both hard-state slots fail their CRC".to_string())
        }
        [SlotRead::Valid(slot), SlotRead::Torn] => Ok((0, slot)),
        [SlotRead::Torn, SlotRead::Valid(slot)] => Ok((1, slot)),
        [SlotRead::Valid(first), SlotRead::Valid(second)] => {
            let (newer_index, newer, older) = if first.sequence > second.sequence {
                (0, first, second)
            } else {
                (1, second, first)
            };
            match check_slot_pair(&newer, &older) {
                Ok(()) => Ok((newer_index, newer)),
                Err(problem) => refuse(newer_index, problem),
            }
        }
    }
}

/// Two valid slots were written one after the other: sequences differ by
/// one, the term never drops, and a vote within a term never changes.
fn check_slot_pair(newer: &Slot, older: &Slot) -> Result<(), String> {
    if older.sequence.checked_add(1) != Some(newer.sequence) {
        return Err(format!(
            "slot sequences {} and {} are not consecutive",
            older.sequence, newer.sequence
        ));
    }
    let (new, old) = (newer.hard_state, older.hard_state);
    if new.current_term < old.current_term {
        return Err(format!(
            "newer slot has term {}, below the older slot's term {}",
            new.current_term, old.current_term
        ));
    }
    if new.current_term == old.current_term
        && old.voted_for.is_some()
        && new.voted_for != old.voted_for
    {
        return Err(format!("vote changed within term {}", new.current_term));
    }
    if old.cluster_id.is_some() && new.cluster_id != old.cluster_id {
        return Err("cluster id changed between the slots".to_string());
    }
    if newer.node_name != older.node_name {
        return Err(format!(
            "node id changed between the slots ({} and {})",
            older.node_name, newer.node_name
        ));
    }
    Ok(())
}

/// The open hard-state file and which slot the next write goes to.
#[derive(Debug)]
pub struct HardStateFile {
    path: PathBuf,
    file: File,
    /// Written into every slot; never changes.
    node_name: NodeName,
    /// Sequence of the newest slot written.
    sequence: u64,
    /// The slot not holding the newest state.
    slot_next: usize,
}

/// What recovery found in the hard-state file.
#[derive(Debug)]
pub struct RecoveredHardState {
    pub file: HardStateFile,
    pub hard_state: HardState,
    /// The node this data dir belongs to.
    pub node_name: NodeName,
    /// The slot `hard_state` came from.
    pub slot_index: usize,
    /// A slot that failed its CRC (reported: normal after a crash mid-write).
    pub slot_torn: Option<usize>,
}

impl HardStateFile {
    /// Reads and checks the file without changing it.
    pub fn recover(path: &Path) -> Result<RecoveredHardState, StorageError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(StorageError::io(path, "open"))?;
        let size = file
            .metadata()
            .map_err(StorageError::io(path, "stat"))?
            .len();
        if size != HARD_STATE_FILE_SIZE {
            let problem =
                format!("hard-state file has {size} bytes, expected {HARD_STATE_FILE_SIZE}");
            return Err(StorageError::corrupt(path, 0, problem));
        }
        let reads = [read_slot(&file, path, 0)?, read_slot(&file, path, 1)?];
        let slot_torn = reads.iter().position(|read| *read == SlotRead::Torn);
        let (slot_index, slot) = choose_slot(path, reads)?;
        let file = HardStateFile {
            path: path.to_path_buf(),
            file,
            node_name: slot.node_name,
            sequence: slot.sequence,
            slot_next: 1 - slot_index,
        };
        Ok(RecoveredHardState {
            file,
            hard_state: slot.hard_state,
            node_name: slot.node_name,
            slot_index,
            slot_torn,
        })
    }

    /// A fresh file holding the default hard state in both slots, built
    /// under a temporary name and renamed into place, so that a crash leaves
    /// either no hard-state file or a complete one.
    pub fn create(
        directory: &Path,
        node_name: NodeName,
        fsync: bool,
    ) -> Result<HardStateFile, StorageError> {
        let temporary = directory.join(HARD_STATE_TEMPORARY_FILE_NAME);
        let path = directory.join(HARD_STATE_FILE_NAME);
        let mut bytes = vec![0u8; HARD_STATE_FILE_SIZE as usize];
        for slot_index in 0..2 {
            let slot = Slot {
                sequence: slot_index as u64,
                hard_state: HardState::default(),
                node_name,
            };
            let offset = slot_offset(slot_index) as usize;
            bytes[offset..offset + HARD_STATE_SLOT_SIZE].copy_from_slice(&encode_slot(&slot));
        }
        fs::write(&temporary, &bytes).map_err(StorageError::io(&temporary, "write"))?;
        if fsync {
            sync_path(&temporary)?;
        }
        fs::rename(&temporary, &path).map_err(StorageError::io(&path, "rename into place"))?;
        if fsync {
            sync_path(directory)?;
        }
        let recovered = HardStateFile::recover(&path)?;
        assert_eq!(recovered.hard_state, HardState::default());
        Ok(recovered.file)
    }

    /// Writes `hard_state` into the older slot. Durable after `sync`.
    pub fn write(&mut self, hard_state: HardState) -> Result<(), StorageError> {
        let sequence = self.sequence + 1;
        let slot = Slot {
            sequence,
            hard_state,
            node_name: self.node_name,
        };
        let bytes = encode_slot(&slot);
        assert_eq!(decode_slot(&bytes), SlotRead::Valid(slot));
        self.file
            .write_all_at(&bytes, slot_offset(self.slot_next))
            .map_err(StorageError::io(&self.path, "write"))?;
        self.sequence = sequence;
        self.slot_next = 1 - self.slot_next;
        Ok(())
    }

    pub fn sync(&self) -> Result<(), StorageError> {
        self.file
            .sync_data()
            .map_err(StorageError::io(&self.path, "fdatasync"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    #[cfg(test)]
    pub(super) fn replace_file_for_test(&mut self, file: File) {
        self.file = file;
    }
}

fn read_slot(file: &File, path: &Path, slot_index: usize) -> Result<SlotRead, StorageError> {
    let mut bytes = [0u8; HARD_STATE_SLOT_SIZE];
    file.read_exact_at(&mut bytes, slot_offset(slot_index))
        .map_err(StorageError::io(path, "read"))?;
    Ok(decode_slot(&bytes))
}

/// fsync of a file or directory by path (a directory's entries become
/// durable only through an fsync of the directory itself).
pub fn sync_path(path: &Path) -> Result<(), StorageError> {
    File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(StorageError::io(path, "fsync"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_support::TempDir;

    fn state(term: u64, vote: Option<u32>) -> HardState {
        HardState {
            current_term: Term(term),
            voted_for: vote.map(NodeId),
            cluster_id: None,
        }
    }

    fn name(text: &str) -> NodeName {
        NodeName::new(text).unwrap()
    }

    fn reopen(path: &Path) -> Result<RecoveredHardState, StorageError> {
        HardStateFile::recover(path)
    }

    fn flip_byte(path: &Path, offset: u64) {
        let mut bytes = fs::read(path).unwrap();
        bytes[offset as usize] ^= 0x40;
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn slot_round_trip() {
        let with_cluster = HardState {
            cluster_id: Some(ClusterId(u64::MAX)),
            ..state(3, None)
        };
        for (hard_state, node_name) in [
            (state(0, None), NodeName::NONE),
            (state(7, Some(2)), name("A")),
            (state(u64::MAX, Some(u32::MAX)), name(&"é".repeat(32))),
            (with_cluster, name("node-7.east")),
        ] {
            let slot = Slot {
                sequence: 99,
                hard_state,
                node_name,
            };
            assert_eq!(decode_slot(&encode_slot(&slot)), SlotRead::Valid(slot));
        }
        assert_eq!(decode_slot(&[0; HARD_STATE_SLOT_SIZE]), SlotRead::Torn);
    }

    #[test]
    fn latest_slot_wins() {
        let directory = TempDir::new("hard-state-latest");
        let mut file = HardStateFile::create(&directory.path, name("A"), true).unwrap();
        for term in 1..=5 {
            file.write(state(term, Some(term as u32 % 3))).unwrap();
            file.sync().unwrap();
            let recovered = reopen(file.path()).unwrap();
            assert_eq!(recovered.hard_state, state(term, Some(term as u32 % 3)));
            assert_eq!(recovered.slot_torn, None);
        }
    }

    #[test]
    fn torn_newest_slot_falls_back_to_the_older() {
        let directory = TempDir::new("hard-state-torn");
        let mut file = HardStateFile::create(&directory.path, name("A"), true).unwrap();
        file.write(state(3, Some(1))).unwrap();
        file.write(state(4, None)).unwrap();
        file.sync().unwrap();
        let newest_slot = 1 - file.slot_next;
        flip_byte(file.path(), slot_offset(newest_slot) + 15);
        let mut recovered = reopen(file.path()).unwrap();
        assert_eq!(recovered.hard_state, state(3, Some(1)));
        assert_eq!(recovered.slot_torn, Some(newest_slot));
        // The next write reuses the torn slot and wins from then on.
        recovered.file.write(state(5, Some(0))).unwrap();
        recovered.file.sync().unwrap();
        let again = reopen(file.path()).unwrap();
        assert_eq!(again.hard_state, state(5, Some(0)));
        assert_eq!(again.slot_torn, None);
    }

    #[test]
    fn both_slots_damaged_is_refused() {
        let directory = TempDir::new("hard-state-both");
        let file = HardStateFile::create(&directory.path, name("A"), true).unwrap();
        flip_byte(file.path(), 20);
        flip_byte(file.path(), HARD_STATE_SLOT_STRIDE + 20);
        let before = fs::read(file.path()).unwrap();
        let error = reopen(file.path()).unwrap_err().to_string();
        assert!(
            error.contains("both hard-state slots fail their CRC"),
            "{error}"
        );
        assert!(error.ends_with("; see docs/OPERATIONS.md"), "{error}");
        assert_eq!(fs::read(file.path()).unwrap(), before);
    }

    #[test]
    fn impossible_slot_pairs_are_refused() {
        let directory = TempDir::new("hard-state-impossible");
        let path = directory.path.join(HARD_STATE_FILE_NAME);
        let write_pair = |first: Slot, second: Slot| {
            let mut bytes = vec![0u8; HARD_STATE_FILE_SIZE as usize];
            bytes[..HARD_STATE_SLOT_SIZE].copy_from_slice(&encode_slot(&first));
            let offset = HARD_STATE_SLOT_STRIDE as usize;
            bytes[offset..offset + HARD_STATE_SLOT_SIZE].copy_from_slice(&encode_slot(&second));
            fs::write(&path, bytes).unwrap();
        };
        let slot = |sequence, term, vote| Slot {
            sequence,
            hard_state: state(term, vote),
            node_name: name("A"),
        };
        write_pair(slot(4, 3, None), slot(5, 2, None));
        assert!(reopen(&path)
            .unwrap_err()
            .to_string()
            .contains("below the older slot's term"));
        write_pair(slot(4, 3, Some(1)), slot(5, 3, Some(2)));
        assert!(reopen(&path)
            .unwrap_err()
            .to_string()
            .contains("vote changed"));
        write_pair(slot(4, 3, None), slot(9, 3, None));
        assert!(reopen(&path)
            .unwrap_err()
            .to_string()
            .contains("not consecutive"));
        let other_node = Slot {
            node_name: name("B"),
            ..slot(5, 3, None)
        };
        write_pair(slot(4, 3, None), other_node);
        assert!(reopen(&path)
            .unwrap_err()
            .to_string()
            .contains("node id changed"));
        let clustered = |sequence, id| Slot {
            hard_state: HardState {
                cluster_id: Some(ClusterId(id)),
                ..state(3, None)
            },
            ..slot(sequence, 3, None)
        };
        write_pair(clustered(4, 7), clustered(5, 8));
        assert!(reopen(&path)
            .unwrap_err()
            .to_string()
            .contains("cluster id changed"));
        write_pair(slot(4, 3, None), clustered(5, 8));
        assert_eq!(
            reopen(&path).unwrap().hard_state.cluster_id,
            Some(ClusterId(8))
        );
        write_pair(slot(4, 3, None), slot(5, 3, Some(2)));
        assert_eq!(reopen(&path).unwrap().hard_state, state(3, Some(2)));
        fs::write(&path, legacy_file()).unwrap();
        let error = reopen(&path).unwrap_err().to_string();
        assert!(error.contains("format 1"), "{error}");
        assert!(error.contains("before cluster ids"), "{error}");
    }

    /// Both slots as the format-1 code wrote them (term 3, no vote).
    fn legacy_file() -> Vec<u8> {
        let mut bytes = vec![0u8; HARD_STATE_FILE_SIZE as usize];
        for slot_index in 0..2 {
            let mut slot = [0u8; 30];
            BigEndian::write_u32(&mut slot[0..4], HARD_STATE_MAGIC);
            slot[4] = 1;
            BigEndian::write_u64(&mut slot[5..13], slot_index as u64);
            BigEndian::write_u64(&mut slot[13..21], 3);
            let crc = crc32fast::hash(&slot[..26]);
            BigEndian::write_u32(&mut slot[26..30], crc);
            let offset = slot_offset(slot_index) as usize;
            bytes[offset..offset + 30].copy_from_slice(&slot);
        }
        bytes
    }

    #[test]
    fn a_file_of_the_wrong_size_is_refused() {
        let directory = TempDir::new("hard-state-size");
        let path = directory.path.join(HARD_STATE_FILE_NAME);
        fs::write(&path, [0u8; 100]).unwrap();
        assert!(reopen(&path)
            .unwrap_err()
            .to_string()
            .contains("expected 8192"));
    }
}
