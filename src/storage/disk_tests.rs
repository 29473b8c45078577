//! Tests of the disk engine through its public face: open, append, set the
//! hard state, sync, reopen, and damage the files in between.

use super::disk::{
    DiskOptions, DiskStorage, RecoveryReport, LOG_DIRECTORY_NAME, PREALLOCATION_STEP,
};
use super::hard_state::{HARD_STATE_FILE_NAME, HARD_STATE_SLOT_STRIDE};
use super::segment::{
    self, TornReason, RECORD_HEADER_SIZE, RECORD_PAYLOAD_SIZE_MAX, SEGMENT_HEADER_SIZE,
};
use super::test_support::{copy_data_dir, entries, entry, files as snapshot, TempDir};
use super::{Recovered, Storage, StorageError, StorageStats};
use crate::core::rng::Rng;
use crate::core::{Entry, HardState, LogIndex, NodeId, Term};
use std::fs;
use std::path::{Path, PathBuf};

/// Two records of the test entries fit one segment of this size.
const SEGMENT_SIZE_SMALL: u64 = 128;

fn options(segment_size_max: u64) -> DiskOptions {
    DiskOptions {
        fsync: true,
        segment_size_max,
        ..DiskOptions::default()
    }
}

fn open(directory: &Path, segment_size_max: u64) -> (DiskStorage, Recovered, RecoveryReport) {
    DiskStorage::open(directory, options(segment_size_max)).expect("open")
}

fn open_error(directory: &Path) -> StorageError {
    DiskStorage::open(directory, options(SEGMENT_SIZE_SMALL)).expect_err("open must refuse")
}

fn hard_state(term: u64, vote: Option<u32>) -> HardState {
    HardState {
        current_term: Term(term),
        voted_for: vote.map(NodeId),
        cluster_id: None,
    }
}

/// What the runtime does with one Ready: append, set the hard state, sync.
fn persist(storage: &mut DiskStorage, batch: &[Entry], state: HardState) {
    storage.append(batch).unwrap();
    storage.set_hard_state(state).unwrap();
    storage.sync().unwrap();
}

fn log_files(directory: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(directory.join(LOG_DIRECTORY_NAME))
        .unwrap()
        .map(|item| item.unwrap().path())
        .collect();
    paths.sort();
    paths
}

/// A segment's bytes without its preallocated zero tail (the test payloads
/// never end in a zero byte).
fn written(path: &Path) -> Vec<u8> {
    let mut bytes = fs::read(path).unwrap();
    let end = bytes
        .iter()
        .rposition(|&byte| byte != 0)
        .map_or(0, |last| last + 1);
    bytes.truncate(end);
    bytes
}

fn written_size(path: &Path) -> u64 {
    written(path).len() as u64
}

fn file_size(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

/// What the engine does to the newest segment before it creates the next:
/// cut it to its records. Tests that plant a newer segment by hand do it too.
fn seal(path: &Path) {
    let size = written_size(path);
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(size)
        .unwrap();
}

fn flip_bit(path: &Path, bit: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[bit / 8] ^= 1 << (bit % 8);
    fs::write(path, bytes).unwrap();
}

/// A corruption error names `path` and `offset` on one line that ends with
/// the pointer to the operations guide.
fn assert_corrupt(error: &StorageError, path: &Path, offset: u64, problem: &str) {
    let text = error.to_string();
    match error {
        StorageError::Corrupt {
            path: error_path,
            offset: error_offset,
            ..
        } => {
            assert_eq!(error_path, path, "{text}");
            assert_eq!(*error_offset, offset, "{text}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(!text.contains('\n'), "{text}");
    let what = if path.ends_with(HARD_STATE_FILE_NAME) {
        "hard state"
    } else {
        "log"
    };
    let location = format!("corrupt {what}: {} at byte {offset}: ", path.display());
    assert!(text.starts_with(&location), "{text}");
    assert!(text.contains(problem), "{text}");
    assert!(text.ends_with("; see docs/OPERATIONS.md"), "{text}");
}

/// Entries 1..=count of term 1, in small segments, hard state term 1.
fn build_log(directory: &Path, count: u64) -> Vec<Entry> {
    let (mut storage, _, _) = open(directory, SEGMENT_SIZE_SMALL);
    let log = entries(1, count, 1);
    persist(&mut storage, &log, hard_state(1, Some(0)));
    log
}

#[test]
fn fresh_directory_starts_empty() {
    let directory = TempDir::new("disk-fresh");
    let data = directory.path.join("node");
    let (_storage, recovered, report) = open(&data, SEGMENT_SIZE_SMALL);
    assert_eq!(recovered.hard_state, HardState::default());
    assert!(recovered.entries.is_empty());
    assert!(report.fresh);
    assert_eq!(report.segment_count, 0);
    assert!(data.join(HARD_STATE_FILE_NAME).is_file());
    drop(_storage);
    let (_, _, report) = open(&data, SEGMENT_SIZE_SMALL);
    assert!(!report.fresh);
    assert_eq!(
        report.to_string(),
        "storage recovered: 0 segments, 0 entries, 0 bytes of log"
    );
}

#[test]
fn append_and_recover_across_segments() {
    let directory = TempDir::new("disk-segments");
    let (mut storage, _, _) = open(&directory.path, SEGMENT_SIZE_SMALL);
    let mut expected = Vec::new();
    for (first, count, term) in [(1, 1, 1), (2, 4, 1), (6, 7, 2), (13, 3, 3)] {
        let batch = entries(first, count, term);
        persist(
            &mut storage,
            &batch,
            hard_state(term, Some(term as u32 % 3)),
        );
        expected.extend(batch);
    }
    drop(storage);
    let (mut storage, recovered, report) = open(&directory.path, SEGMENT_SIZE_SMALL);
    assert_eq!(recovered.entries, expected);
    assert_eq!(recovered.hard_state, hard_state(3, Some(0)));
    assert_eq!(report.entry_count, 15);
    assert_eq!(report.segment_count, 8);
    assert_eq!(report.torn_tail, None);
    // Sealed segments are cut to their records; only the newest is
    // preallocated to the bound.
    let files = log_files(&directory.path);
    let (newest, sealed) = files.split_last().unwrap();
    for path in sealed {
        let size = file_size(path);
        assert!(size <= SEGMENT_SIZE_SMALL, "{}", path.display());
        assert_eq!(size, written_size(path), "{}", path.display());
    }
    assert_eq!(file_size(newest), SEGMENT_SIZE_SMALL);
    // A new leader's entries replace the suffix from 4, across boundaries.
    let replacement = entries(4, 5, 4);
    persist(&mut storage, &replacement, hard_state(4, None));
    drop(storage);
    let (_, recovered, _) = open(&directory.path, SEGMENT_SIZE_SMALL);
    expected.truncate(3);
    expected.extend(replacement);
    assert_eq!(recovered.entries, expected);
    assert_eq!(recovered.hard_state, hard_state(4, None));
}

#[test]
fn truncation_in_an_older_segment_removes_the_newer_ones() {
    let directory = TempDir::new("disk-truncate");
    let mut log = build_log(&directory.path, 10);
    let before = log_files(&directory.path);
    assert_eq!(before.len(), 5);
    let holding = directory
        .path
        .join(LOG_DIRECTORY_NAME)
        .join(segment::file_name(LogIndex(5)));
    assert!(before.contains(&holding));
    let (mut storage, _, _) = open(&directory.path, SEGMENT_SIZE_SMALL);
    // Index 6 is the second record of the segment starting at 5.
    storage.append(&entries(6, 1, 2)).unwrap();
    assert_eq!(
        log_files(&directory.path),
        before[..3].to_vec(),
        "truncation happens at append"
    );
    let record_size = (RECORD_HEADER_SIZE + log[4].data.len()) as u64;
    assert_eq!(
        written_size(&holding),
        SEGMENT_HEADER_SIZE as u64 + record_size
    );
    assert_eq!(
        file_size(&holding),
        written_size(&holding),
        "the cut frees the old bytes"
    );
    storage.set_hard_state(hard_state(2, None)).unwrap();
    storage.sync().unwrap();
    assert_eq!(
        file_size(&holding),
        SEGMENT_SIZE_SMALL,
        "preallocated again by the next write"
    );
    drop(storage);
    let (_, recovered, report) = open(&directory.path, SEGMENT_SIZE_SMALL);
    log.truncate(5);
    log.extend(entries(6, 1, 2));
    assert_eq!(recovered.entries, log);
    assert_eq!(
        report.segment_count, 3,
        "entry 6 went back into the cut segment"
    );
}

/// A crash at each step of a truncation (segments removed newest first,
/// then the cut inside the holding segment) leaves a prefix of the old log
/// no shorter than the cut point, which recovery accepts as it is.
#[test]
fn every_intermediate_state_of_a_truncation_recovers() {
    let original = TempDir::new("disk-truncate-steps-original");
    let log = build_log(&original.path, 10);
    let files = log_files(&original.path);
    let cut = 6; // the second record of the segment holding 5 and 6
    let cut_offset = (SEGMENT_HEADER_SIZE + RECORD_HEADER_SIZE + log[4].data.len()) as u64;
    // Two newer segments removed one by one, then the holding one cut.
    let steps = [(0, false), (1, false), (2, false), (2, true)];
    for (removed, cut_done) in steps {
        let directory = TempDir::new("disk-truncate-steps");
        copy_data_dir(&original.path, &directory.path);
        let copy_of = |path: &Path| {
            directory
                .path
                .join(path.strip_prefix(&original.path).unwrap())
        };
        for path in &files[files.len() - removed..] {
            fs::remove_file(copy_of(path)).unwrap();
        }
        if cut_done {
            let file = fs::OpenOptions::new()
                .write(true)
                .open(copy_of(&files[2]))
                .unwrap();
            file.set_len(cut_offset).unwrap();
        }
        let (_, recovered, report) = open(&directory.path, SEGMENT_SIZE_SMALL);
        let kept = recovered.entries.len();
        assert!(kept >= cut - 1, "step {removed} {cut_done}: kept {kept}");
        assert_eq!(recovered.entries, log[..kept].to_vec());
        assert_eq!(report.torn_tail, None);
    }
}

#[test]
fn truncation_of_pending_and_of_written_entries() {
    let directory = TempDir::new("disk-truncate-pending");
    let (mut storage, _, _) = open(&directory.path, SEGMENT_SIZE_SMALL);
    persist(&mut storage, &entries(1, 5, 1), hard_state(1, None));
    storage.append(&entries(6, 3, 1)).unwrap();
    storage.set_hard_state(hard_state(2, None)).unwrap();
    storage.append(&entries(7, 3, 2)).unwrap(); // cuts pending only
    storage.sync().unwrap();
    storage.append(&entries(10, 2, 2)).unwrap();
    storage.append(&entries(3, 1, 2)).unwrap(); // cuts written and drops pending
    storage.sync().unwrap();
    assert_eq!(storage.last_index(), LogIndex(3));
    drop(storage);
    let (_, recovered, _) = open(&directory.path, SEGMENT_SIZE_SMALL);
    let mut expected = entries(1, 2, 1);
    expected.extend(entries(3, 1, 2));
    assert_eq!(recovered.entries, expected);
}

#[test]
fn truncation_to_the_first_index_empties_the_log() {
    let directory = TempDir::new("disk-truncate-all");
    build_log(&directory.path, 6);
    let (mut storage, _, _) = open(&directory.path, SEGMENT_SIZE_SMALL);
    persist(&mut storage, &entries(1, 3, 2), hard_state(2, None));
    drop(storage);
    let (_, recovered, _) = open(&directory.path, SEGMENT_SIZE_SMALL);
    assert_eq!(recovered.entries, entries(1, 3, 2));
}

/// Cuts the newest segment at every byte offset (header and both records)
/// in a copy of the data dir: recovery keeps exactly the records before the
/// cut and reports the bytes dropped.
#[test]
fn torn_tail_at_every_offset_of_the_newest_segment() {
    let original = TempDir::new("disk-torn-original");
    let log = build_log(&original.path, 6);
    let newest = log_files(&original.path).pop().unwrap();
    let full = written(&newest);
    let record_size = RECORD_HEADER_SIZE + log[5].data.len();
    let last_start = full.len() - record_size;
    assert_eq!(last_start, SEGMENT_HEADER_SIZE + record_size);
    for cut in 0..full.len() {
        let directory = TempDir::new("disk-torn");
        copy_data_dir(&original.path, &directory.path);
        let copy = directory
            .path
            .join(newest.strip_prefix(&original.path).unwrap());
        fs::write(&copy, &full[..cut]).unwrap();
        let (_, recovered, report) = open(&directory.path, SEGMENT_SIZE_SMALL);
        // The bytes that survive, and the entries in them.
        let (good_size, kept) = if cut < SEGMENT_HEADER_SIZE {
            (0, 4)
        } else if cut < last_start {
            (SEGMENT_HEADER_SIZE, 4)
        } else {
            (last_start, 5)
        };
        assert_eq!(recovered.entries, log[..kept].to_vec(), "cut at {cut}");
        // A cut early in a record keeps only the zero high bytes of its
        // big-endian length: they read as preallocated space.
        let only_zeros_after = full[good_size..cut].iter().all(|&byte| byte == 0);
        if cut >= SEGMENT_HEADER_SIZE && only_zeros_after {
            assert_eq!(report.torn_tail, None, "cut at {cut} is a clean end");
            continue;
        }
        let torn_tail = report.torn_tail.expect("torn tail reported");
        // What was written of the torn record: zero bytes at its end are
        // counted with the free space after it.
        let written = full[good_size..cut]
            .iter()
            .rposition(|&byte| byte != 0)
            .map_or(0, |last| last + 1);
        assert_eq!(torn_tail.size_dropped, written as u64, "cut at {cut}");
        assert_eq!(torn_tail.offset, good_size as u64);
        if cut < SEGMENT_HEADER_SIZE {
            assert!(torn_tail.file_removed);
            assert_eq!(torn_tail.reason, TornReason::SegmentHeaderCut);
            assert!(!copy.exists());
        } else {
            assert_eq!(file_size(&copy), good_size as u64, "cut, zeros and all");
            let reason = if cut - good_size < RECORD_HEADER_SIZE {
                TornReason::RecordHeaderCut
            } else {
                TornReason::PayloadCut
            };
            assert_eq!(torn_tail.reason, reason, "cut at {cut}");
        }
    }
}

#[test]
fn recovery_after_a_torn_tail_continues_the_log() {
    let directory = TempDir::new("disk-torn-continue");
    let log = build_log(&directory.path, 5);
    let newest = log_files(&directory.path).pop().unwrap();
    let size = written_size(&newest);
    fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_len(size - 3)
        .unwrap();
    let (mut storage, recovered, report) = open(&directory.path, SEGMENT_SIZE_SMALL);
    assert_eq!(recovered.entries, log[..4].to_vec());
    let line = report.to_string();
    assert!(
        line.contains("torn tail cut") && line.contains("file ends inside a record payload"),
        "{line}"
    );
    persist(&mut storage, &entries(5, 3, 1), hard_state(1, Some(0)));
    drop(storage);
    let (_, recovered, report) = open(&directory.path, SEGMENT_SIZE_SMALL);
    assert_eq!(recovered.entries, entries(1, 7, 1));
    assert_eq!(report.torn_tail, None);
}

#[test]
fn a_failed_crc_on_the_last_record_is_torn() {
    let directory = TempDir::new("disk-torn-crc");
    let log = build_log(&directory.path, 5);
    let newest = log_files(&directory.path).pop().unwrap();
    let size = written_size(&newest) as usize;
    flip_bit(&newest, (size - 1) * 8);
    let (_, recovered, report) = open(&directory.path, SEGMENT_SIZE_SMALL);
    assert_eq!(recovered.entries, log[..4].to_vec());
    assert_eq!(
        report.torn_tail.unwrap().reason,
        TornReason::CrcMismatchAtEnd
    );
}

#[test]
fn zeros_after_the_newest_records_are_preallocated_space() {
    let directory = TempDir::new("disk-zero-tail");
    let log = build_log(&directory.path, 5);
    let newest = log_files(&directory.path).pop().unwrap();
    let records = written(&newest);
    let mut bytes = records.clone();
    bytes.extend_from_slice(&[0; 4096]);
    fs::write(&newest, &bytes).unwrap();
    let (mut storage, recovered, report) = open(&directory.path, SEGMENT_SIZE_SMALL);
    assert_eq!(recovered.entries, log);
    assert_eq!(report.torn_tail, None);
    assert_eq!(report.log_size, {
        let sealed: u64 = log_files(&directory.path)
            .iter()
            .map(|path| written_size(path))
            .sum();
        sealed
    });
    // The next record goes right after the last one, over the zeros.
    persist(&mut storage, &entries(6, 1, 1), hard_state(1, Some(0)));
    drop(storage);
    let (_, recovered, _) = open(&directory.path, SEGMENT_SIZE_SMALL);
    assert_eq!(recovered.entries, entries(1, 6, 1));
    assert_eq!(written(&newest)[..records.len()], records[..]);
}

/// The last record's write reached the disk only in part and the rest of
/// the file is preallocated zeros: cut like a record at end of file.
/// The newest segment grows a step at a time ahead of its records, never
/// past the segment bound, and recovery finds the records' end in it.
#[test]
fn the_newest_segment_grows_by_preallocation_steps() {
    let directory = TempDir::new("disk-prealloc-step");
    let bound = PREALLOCATION_STEP * 3 / 2;
    let (mut storage, _, _) = open(&directory.path, bound);
    persist(&mut storage, &entries(1, 2, 1), hard_state(1, None));
    let newest = log_files(&directory.path).pop().unwrap();
    let records = written_size(&newest);
    assert_eq!(file_size(&newest), records + PREALLOCATION_STEP);
    // A batch that passes the preallocated end grows the file to the bound.
    let payload = vec![7; 512 * 1024];
    let large: Vec<Entry> = (3..12).map(|index| entry(index, 1, &payload)).collect();
    persist(&mut storage, &large, hard_state(1, None));
    assert_eq!(log_files(&directory.path).len(), 1);
    assert_eq!(file_size(&newest), bound);
    drop(storage);
    let (_, recovered, report) = open(&directory.path, bound);
    assert_eq!(recovered.entries.len(), 11);
    assert_eq!(report.torn_tail, None);
}

#[test]
fn a_half_written_last_record_before_zeros_is_torn() {
    let directory = TempDir::new("disk-torn-half");
    let log = build_log(&directory.path, 6);
    let newest = log_files(&directory.path).pop().unwrap();
    let mut bytes = fs::read(&newest).unwrap();
    let size = written_size(&newest) as usize;
    let record_size = RECORD_HEADER_SIZE + log[5].data.len();
    bytes[size - record_size / 2..size].fill(0);
    fs::write(&newest, &bytes).unwrap();
    let (_, recovered, report) = open(&directory.path, SEGMENT_SIZE_SMALL);
    assert_eq!(recovered.entries, log[..5].to_vec());
    let torn_tail = report.torn_tail.unwrap();
    assert_eq!(torn_tail.reason, TornReason::CrcMismatchAtEnd);
    assert_eq!(torn_tail.offset, (size - record_size) as u64);
    assert!(
        torn_tail.size_dropped <= record_size as u64,
        "only the record's written bytes count, not the preallocated zeros: {torn_tail}"
    );
    assert!(bytes.len() > size, "it was preallocated");
    assert_eq!(file_size(&newest), (size - record_size) as u64);
}

/// A sync that was cut off can leave a later sector written and an earlier
/// one not. In the newest segment the record holding the zero sector and
/// everything after it are cut; in an older segment it is refused.
#[test]
fn a_zero_sector_inside_the_newest_segment_cuts_the_log_there() {
    const SEGMENT_SIZE_LARGE: u64 = 64 * 1024;
    let directory = TempDir::new("disk-zero-sector");
    let (mut storage, _, _) = open(&directory.path, SEGMENT_SIZE_LARGE);
    let log = entries(1, 100, 1);
    persist(&mut storage, &log, hard_state(1, Some(0)));
    drop(storage);
    let newest = log_files(&directory.path).pop().unwrap();
    let original = fs::read(&newest).unwrap();
    let sector = segment::SECTOR_SIZE;
    let mut bytes = original.clone();
    bytes[sector..2 * sector].fill(0);
    fs::write(&newest, &bytes).unwrap();
    // The record that reaches into the zeroed sector is the first damaged.
    let mut damaged_offset = SEGMENT_HEADER_SIZE;
    let mut damaged = 0;
    while damaged_offset + RECORD_HEADER_SIZE + log[damaged].data.len() <= sector {
        damaged_offset += RECORD_HEADER_SIZE + log[damaged].data.len();
        damaged += 1;
    }
    let before = snapshot(&directory.path);
    // Not the newest any more: the same damage is refused.
    let later = newest.with_file_name(segment::file_name(LogIndex(101)));
    fs::write(&later, {
        let mut header = Vec::new();
        segment::encode_header(LogIndex(101), &mut header);
        header
    })
    .unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&newest)
        .unwrap()
        .set_len(written_size(&newest).max(2 * sector as u64 + 1))
        .unwrap();
    let error = DiskStorage::open(&directory.path, options(SEGMENT_SIZE_LARGE))
        .expect_err("refused in an older segment");
    assert_corrupt(
        &error,
        &newest,
        damaged_offset as u64,
        "record CRC mismatch",
    );
    fs::remove_file(&later).unwrap();
    fs::write(&newest, &before[&newest]).unwrap();
    let (_, recovered, report) = open(&directory.path, SEGMENT_SIZE_LARGE);
    assert_eq!(recovered.entries, log[..damaged].to_vec());
    let torn_tail = report.torn_tail.unwrap();
    assert_eq!(torn_tail.reason, TornReason::ZeroSector);
    assert_eq!(torn_tail.offset, damaged_offset as u64);
    let kept = fs::read(&newest).unwrap();
    assert_eq!(kept[..damaged_offset], original[..damaged_offset]);
    assert!(
        kept[damaged_offset..].iter().all(|&byte| byte == 0),
        "no old record can reappear behind new ones"
    );
}

#[test]
fn zero_tail_in_an_older_segment_is_refused() {
    let directory = TempDir::new("disk-zero-older");
    build_log(&directory.path, 6);
    let older = log_files(&directory.path)[1].clone();
    let mut bytes = fs::read(&older).unwrap();
    let offset = bytes.len() as u64;
    bytes.extend_from_slice(&[0; 100]);
    fs::write(&older, &bytes).unwrap();
    let before = snapshot(&directory.path);
    assert_corrupt(
        &open_error(&directory.path),
        &older,
        offset,
        "record CRC mismatch",
    );
    assert_eq!(snapshot(&directory.path), before);
}

/// Every bit of a record that is not the last (here the first record of an
/// older segment): refused at that record's offset, nothing changed.
#[test]
fn flipped_bits_in_an_older_record_are_refused() {
    let directory = TempDir::new("disk-bit-flips");
    let log = build_log(&directory.path, 10);
    let older = log_files(&directory.path)[1].clone();
    let record_size = RECORD_HEADER_SIZE + log[2].data.len();
    let (_storage, _, _) = open(&directory.path, SEGMENT_SIZE_SMALL);
    drop(_storage);
    for bit in SEGMENT_HEADER_SIZE * 8..(SEGMENT_HEADER_SIZE + record_size) * 8 {
        flip_bit(&older, bit);
        let before = snapshot(&directory.path);
        let error = open_error(&directory.path);
        assert_corrupt(&error, &older, SEGMENT_HEADER_SIZE as u64, "record");
        assert_eq!(snapshot(&directory.path), before, "bit {bit}");
        flip_bit(&older, bit);
    }
    let (_, recovered, _) = open(&directory.path, SEGMENT_SIZE_SMALL);
    assert_eq!(recovered.entries, log);
}

/// The same for a middle record of the newest segment, for every bit of
/// every field except the low bits of the length (see docs/STORAGE.md: a
/// length that grows past end of file reads as a torn record).
#[test]
fn flipped_bits_in_a_middle_record_of_the_newest_segment_are_refused() {
    let directory = TempDir::new("disk-bit-flips-newest");
    let (mut storage, _, _) = open(&directory.path, 1024 * 1024);
    let log = entries(1, 5, 1);
    persist(&mut storage, &log, hard_state(1, None));
    drop(storage);
    let newest = log_files(&directory.path).pop().unwrap();
    let record_size = RECORD_HEADER_SIZE + log[2].data.len();
    let offset = SEGMENT_HEADER_SIZE + 2 * record_size; // entry 3
                                                        // The length's most significant byte: any flip there exceeds the bound.
    let length_bits_refused = 0..8;
    for bit in offset * 8..(offset + record_size) * 8 {
        let in_length = bit < (offset + 4) * 8;
        if in_length && !length_bits_refused.contains(&(bit - offset * 8)) {
            continue;
        }
        flip_bit(&newest, bit);
        let before = snapshot(&directory.path);
        assert_corrupt(
            &open_error(&directory.path),
            &newest,
            offset as u64,
            "record",
        );
        assert_eq!(snapshot(&directory.path), before);
        flip_bit(&newest, bit);
    }
}

#[test]
fn a_gap_between_segments_is_refused() {
    let directory = TempDir::new("disk-gap");
    build_log(&directory.path, 8);
    let files = log_files(&directory.path);
    fs::remove_file(&files[1]).unwrap();
    let before = snapshot(&directory.path);
    assert_corrupt(
        &open_error(&directory.path),
        &files[2],
        0,
        "previous one ends at 2 (gap)",
    );
    assert_eq!(snapshot(&directory.path), before);
    fs::remove_file(&files[0]).unwrap();
    assert_corrupt(
        &open_error(&directory.path),
        &files[2],
        0,
        "log starts at index 5, expected 1",
    );
}

#[test]
fn a_torn_segment_header_must_continue_the_log() {
    let directory = TempDir::new("disk-torn-header-gap");
    build_log(&directory.path, 4);
    let stray = directory
        .path
        .join(LOG_DIRECTORY_NAME)
        .join(segment::file_name(LogIndex(7)));
    seal(log_files(&directory.path).last().unwrap());
    fs::write(&stray, [1, 2, 3]).unwrap();
    let before = snapshot(&directory.path);
    assert_corrupt(
        &open_error(&directory.path),
        &stray,
        0,
        "previous one ends at 4 (gap)",
    );
    assert_eq!(snapshot(&directory.path), before);
    let next = stray.with_file_name(segment::file_name(LogIndex(5)));
    fs::rename(&stray, &next).unwrap();
    let (_, recovered, report) = open(&directory.path, SEGMENT_SIZE_SMALL);
    assert_eq!(recovered.entries.len(), 4);
    assert!(report.torn_tail.unwrap().file_removed);
    assert!(!next.exists());
}

/// Replaces a segment with hand-made records (valid CRCs) and checks the
/// refusal.
fn refuse_crafted_segment(label: &str, records: &[Entry], offset: u64, problem: &str) {
    let directory = TempDir::new(label);
    build_log(&directory.path, 6);
    let target = log_files(&directory.path)[1].clone();
    let mut bytes = Vec::new();
    segment::encode_header(LogIndex(3), &mut bytes);
    for record in records {
        segment::encode_record(record, &mut bytes);
    }
    fs::write(&target, &bytes).unwrap();
    let before = snapshot(&directory.path);
    assert_corrupt(&open_error(&directory.path), &target, offset, problem);
    assert_eq!(snapshot(&directory.path), before);
}

#[test]
fn impossible_records_are_refused() {
    let header_end = SEGMENT_HEADER_SIZE as u64;
    let second = header_end + (RECORD_HEADER_SIZE + 1) as u64;
    let gap = [entry(3, 1, b"x"), entry(5, 1, b"y")];
    refuse_crafted_segment(
        "disk-index-gap",
        &gap,
        second,
        "record has index 5, expected 4",
    );
    let first = [entry(4, 1, b"x")];
    refuse_crafted_segment(
        "disk-index-first",
        &first,
        header_end,
        "record has index 4, expected 3",
    );
}

#[test]
fn a_length_over_the_bound_is_refused() {
    let directory = TempDir::new("disk-length-bound");
    build_log(&directory.path, 6);
    let older = log_files(&directory.path)[1].clone();
    let mut bytes = fs::read(&older).unwrap();
    let length = (RECORD_PAYLOAD_SIZE_MAX as u32 + 1).to_be_bytes();
    bytes[SEGMENT_HEADER_SIZE..SEGMENT_HEADER_SIZE + 4].copy_from_slice(&length);
    fs::write(&older, &bytes).unwrap();
    let problem = format!(
        "record length {} exceeds the maximum",
        RECORD_PAYLOAD_SIZE_MAX + 1
    );
    assert_corrupt(
        &open_error(&directory.path),
        &older,
        SEGMENT_HEADER_SIZE as u64,
        &problem,
    );
}

#[test]
fn a_term_going_backwards_is_refused() {
    let directory = TempDir::new("disk-term-backwards");
    let (mut storage, _, _) = open(&directory.path, SEGMENT_SIZE_SMALL);
    persist(&mut storage, &entries(1, 2, 1), hard_state(3, None));
    persist(&mut storage, &entries(3, 4, 3), hard_state(3, None));
    drop(storage);
    let files = log_files(&directory.path);
    // Across segments: segment 3 holds term 2 after segment 2's term 3.
    let mut bytes = Vec::new();
    segment::encode_header(LogIndex(5), &mut bytes);
    segment::encode_record(&entry(5, 2, b"x"), &mut bytes);
    fs::write(&files[2], &bytes).unwrap();
    let before = snapshot(&directory.path);
    let message = "entry 5 has term 2, below the previous entry's term 3";
    assert_corrupt(
        &open_error(&directory.path),
        &files[2],
        SEGMENT_HEADER_SIZE as u64,
        message,
    );
    assert_eq!(snapshot(&directory.path), before);
    // Within a segment.
    let mut bytes = Vec::new();
    segment::encode_header(LogIndex(5), &mut bytes);
    segment::encode_record(&entry(5, 3, b"x"), &mut bytes);
    let second = bytes.len() as u64;
    segment::encode_record(&entry(6, 2, b"y"), &mut bytes);
    fs::write(&files[2], &bytes).unwrap();
    let message = "entry 6 has term 2, below the previous entry's term 3";
    assert_corrupt(&open_error(&directory.path), &files[2], second, message);
}

#[test]
fn renamed_segments_are_refused() {
    let directory = TempDir::new("disk-renamed");
    build_log(&directory.path, 6);
    let files = log_files(&directory.path);
    let renamed = files[2].with_file_name(segment::file_name(LogIndex(7)));
    fs::rename(&files[2], &renamed).unwrap();
    let before = snapshot(&directory.path);
    assert_corrupt(
        &open_error(&directory.path),
        &renamed,
        0,
        "file name says first index 7, header says 5",
    );
    assert_eq!(snapshot(&directory.path), before);
    let badly_named = files[2].with_file_name("5.seg");
    fs::rename(&renamed, &badly_named).unwrap();
    assert_corrupt(
        &open_error(&directory.path),
        &badly_named,
        0,
        "segment file name is not",
    );
}

#[test]
fn an_empty_newest_segment_is_reused() {
    let directory = TempDir::new("disk-empty-newest");
    build_log(&directory.path, 4);
    // A crash right after a new segment was created.
    let mut header = Vec::new();
    segment::encode_header(LogIndex(5), &mut header);
    let path = directory
        .path
        .join(LOG_DIRECTORY_NAME)
        .join(segment::file_name(LogIndex(5)));
    seal(log_files(&directory.path).last().unwrap());
    fs::write(&path, &header).unwrap();
    let (mut storage, recovered, report) = open(&directory.path, SEGMENT_SIZE_SMALL);
    assert_eq!(recovered.entries.len(), 4);
    assert_eq!(report.segment_count, 3);
    persist(&mut storage, &entries(5, 1, 1), hard_state(1, Some(0)));
    assert_eq!(storage.segment_paths_for_test().last(), Some(&path));
    drop(storage);
    // An empty segment that is not the newest is impossible.
    let later = directory
        .path
        .join(LOG_DIRECTORY_NAME)
        .join(segment::file_name(LogIndex(6)));
    seal(&path);
    fs::write(&later, {
        let mut bytes = Vec::new();
        segment::encode_header(LogIndex(6), &mut bytes);
        bytes
    })
    .unwrap();
    let (_, recovered, _) = open(&directory.path, SEGMENT_SIZE_SMALL);
    assert_eq!(recovered.entries, entries(1, 5, 1));
    fs::write(&path, &header).unwrap();
    assert_corrupt(
        &open_error(&directory.path),
        &path,
        SEGMENT_HEADER_SIZE as u64,
        "holds no records",
    );
}

#[test]
fn hard_state_latest_slot_wins_and_a_torn_one_falls_back() {
    let directory = TempDir::new("disk-hard-state");
    let (mut storage, _, _) = open(&directory.path, SEGMENT_SIZE_SMALL);
    persist(&mut storage, &entries(1, 2, 1), hard_state(1, Some(1)));
    for term in 2..=6 {
        storage
            .set_hard_state(hard_state(term, Some(term as u32)))
            .unwrap();
        storage.sync().unwrap();
    }
    drop(storage);
    let (storage, recovered, report) = open(&directory.path, SEGMENT_SIZE_SMALL);
    assert_eq!(recovered.hard_state, hard_state(6, Some(6)));
    assert_eq!(report.hard_state_slot_torn, None);
    drop(storage);
    // A new file holds sequence 0 in slot 0 and 1 in slot 1; writes then
    // alternate from slot 0, so terms 1, 3, 5 sit in slot 0 and 2, 4, 6 in
    // slot 1.
    let path = directory.path.join(HARD_STATE_FILE_NAME);
    flip_bit(&path, 8 * (HARD_STATE_SLOT_STRIDE as usize + 10));
    let (storage, recovered, report) = open(&directory.path, SEGMENT_SIZE_SMALL);
    assert_eq!(recovered.hard_state, hard_state(5, Some(5)));
    assert_eq!(report.hard_state_slot_torn, Some(1));
    drop(storage);
    flip_bit(&path, 8 * 10);
    let before = snapshot(&directory.path);
    assert_corrupt(
        &open_error(&directory.path),
        &path,
        0,
        "both hard-state slots fail their CRC",
    );
    assert_eq!(snapshot(&directory.path), before);
}

#[test]
fn hard_state_must_cover_the_log() {
    let directory = TempDir::new("disk-hard-state-log");
    let (mut storage, _, _) = open(&directory.path, SEGMENT_SIZE_SMALL);
    persist(&mut storage, &[], hard_state(1, None));
    persist(&mut storage, &entries(1, 2, 2), hard_state(2, None));
    drop(storage);
    // Tear the newest slot (term 2): the fallback's term 1 is below the log.
    let path = directory.path.join(HARD_STATE_FILE_NAME);
    flip_bit(&path, 8 * (HARD_STATE_SLOT_STRIDE as usize + 10));
    let message = "current term 1 is below the term 2 of log entry 2";
    assert_corrupt(&open_error(&directory.path), &path, 0, message);
    fs::remove_file(&path).unwrap();
    let message = "hard-state file missing but the log holds entries up to 2";
    assert_corrupt(&open_error(&directory.path), &path, 0, message);
}

#[test]
fn a_second_open_is_refused_while_the_first_lives() {
    let directory = TempDir::new("disk-lock");
    let (first, _, _) = open(&directory.path, SEGMENT_SIZE_SMALL);
    let error = open_error(&directory.path);
    assert!(matches!(error, StorageError::Locked { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.starts_with("data dir is locked by another process: "),
        "{text}"
    );
    assert!(
        text.contains(&directory.path.join("LOCK").display().to_string()),
        "{text}"
    );
    drop(first);
    open(&directory.path, SEGMENT_SIZE_SMALL);
}

/// The leader's path: records written now, their fdatasync run by the
/// caller later. A pending hard state is never deferred (records of a new
/// term must not reach the disk before it), and what was written survives a
/// process crash whether or not the job ran.
#[test]
fn a_deferred_sync_writes_now_and_syncs_when_the_job_runs() {
    let directory = TempDir::new("disk-deferred");
    let (mut storage, _, _) = open(&directory.path, SEGMENT_SIZE_SMALL);
    storage.append(&entries(1, 1, 1)).unwrap();
    storage.set_hard_state(hard_state(1, Some(0))).unwrap();
    assert!(
        storage.write_deferring_sync().unwrap().is_none(),
        "a new hard state syncs at once"
    );
    assert_eq!(storage.stats().fsyncs, 1);
    assert!(
        storage.write_deferring_sync().unwrap().is_none(),
        "nothing pending"
    );
    // Entries 2..=5 cross into new segments: the full ones are sealed (and
    // synced) on the way, the job covers the newest.
    storage.append(&entries(2, 4, 1)).unwrap();
    let job = storage.write_deferring_sync().unwrap().expect("a job");
    assert_eq!(job.entries, 4);
    assert_eq!(Some(&job.path), storage.segment_paths_for_test().last());
    assert_eq!(storage.stats().fsyncs, 1, "not counted before it runs");
    job.run().unwrap();
    storage.deferred_sync_done(&job);
    assert_eq!(
        storage.stats(),
        StorageStats {
            fsyncs: 2,
            synced_entries: 5
        }
    );
    storage.append(&entries(6, 1, 1)).unwrap();
    let unrun = storage.write_deferring_sync().unwrap().expect("a job");
    drop(unrun);
    drop(storage);
    let (_, recovered, report) = open(&directory.path, SEGMENT_SIZE_SMALL);
    assert_eq!(recovered.entries, entries(1, 6, 1));
    assert_eq!(report.torn_tail, None);
}

/// With syncing off there is nothing to defer.
#[test]
fn no_deferred_sync_without_fsync() {
    let directory = TempDir::new("disk-deferred-off");
    let options = DiskOptions {
        fsync: false,
        segment_size_max: SEGMENT_SIZE_SMALL,
        ..DiskOptions::default()
    };
    let (mut storage, _, _) = DiskStorage::open(&directory.path, options).unwrap();
    storage.set_hard_state(hard_state(1, None)).unwrap();
    storage.sync().unwrap();
    storage.append(&entries(1, 3, 1)).unwrap();
    assert!(storage.write_deferring_sync().unwrap().is_none());
    drop(storage);
    let (_, recovered, _) = DiskStorage::open(&directory.path, options).unwrap();
    assert_eq!(recovered.entries, entries(1, 3, 1));
}

#[test]
fn sync_counters_count_group_commits() {
    let directory = TempDir::new("disk-counters");
    let (mut storage, _, _) = open(&directory.path, SEGMENT_SIZE_SMALL);
    assert_eq!(storage.stats(), StorageStats::default());
    persist(&mut storage, &entries(1, 3, 1), hard_state(1, None));
    storage.append(&entries(4, 5, 1)).unwrap();
    storage.sync().unwrap();
    storage.sync().unwrap(); // nothing pending: no fdatasync
    storage.set_hard_state(hard_state(2, Some(1))).unwrap();
    storage.sync().unwrap();
    let expected = StorageStats {
        fsyncs: 3,
        synced_entries: 8,
    };
    assert_eq!(storage.stats(), expected);
}

#[test]
fn fsync_never_issues_no_syncs_and_still_survives_a_process_restart() {
    let directory = TempDir::new("disk-never");
    let never = DiskOptions {
        fsync: false,
        segment_size_max: SEGMENT_SIZE_SMALL,
        ..DiskOptions::default()
    };
    let (mut storage, _, _) = DiskStorage::open(&directory.path, never).unwrap();
    persist(&mut storage, &entries(1, 9, 1), hard_state(1, None));
    assert_eq!(storage.stats(), StorageStats::default());
    drop(storage);
    let (_, recovered, _) = DiskStorage::open(&directory.path, never).unwrap();
    assert_eq!(recovered.entries, entries(1, 9, 1));
}

#[test]
fn write_errors_surface_and_halt_the_storage() {
    let directory = TempDir::new("disk-write-error");
    let (mut storage, _, _) = open(&directory.path, 1024 * 1024);
    persist(&mut storage, &entries(1, 2, 1), hard_state(1, None));
    // A file opened read-only fails every write, even for root; /dev/full
    // fails them with ENOSPC, like a full disk.
    let newest = log_files(&directory.path).pop().unwrap();
    let broken = fs::File::open("/dev/full")
        .or_else(|_| fs::File::open(&newest))
        .unwrap();
    storage.replace_newest_file_for_test(broken);
    storage.append(&entries(3, 1, 1)).unwrap();
    let error = storage.sync().unwrap_err();
    assert!(
        matches!(
            error,
            StorageError::Io {
                operation: "write",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(matches!(storage.sync(), Err(StorageError::Halted)));
    assert!(matches!(
        storage.append(&entries(3, 1, 1)),
        Err(StorageError::Halted)
    ));
    drop(storage);
    let (mut storage, recovered, _) = open(&directory.path, 1024 * 1024);
    assert_eq!(recovered.entries, entries(1, 2, 1));
    let read_only = fs::File::open(directory.path.join(HARD_STATE_FILE_NAME)).unwrap();
    storage.replace_hard_state_file_for_test(read_only);
    storage.set_hard_state(hard_state(2, None)).unwrap();
    let error = storage.sync().unwrap_err();
    assert!(error.to_string().starts_with("cannot write "), "{error}");
}

#[test]
fn an_entry_too_large_for_a_record_is_refused() {
    let directory = TempDir::new("disk-too-large");
    let (mut storage, _, _) = open(&directory.path, SEGMENT_SIZE_SMALL);
    let large = entry(1, 1, &vec![1; RECORD_PAYLOAD_SIZE_MAX + 1]);
    let error = storage.append(&[large]).unwrap_err();
    assert!(
        matches!(error, StorageError::EntryTooLarge { .. }),
        "{error:?}"
    );
    // Nothing was taken; the storage keeps working. The largest entry
    // allowed gets a segment of its own.
    let largest = entry(1, 1, &vec![2; RECORD_PAYLOAD_SIZE_MAX]);
    persist(
        &mut storage,
        &[largest.clone(), entry(2, 1, b"x")],
        hard_state(1, None),
    );
    drop(storage);
    let (_, recovered, report) = open(&directory.path, SEGMENT_SIZE_SMALL);
    assert_eq!(recovered.entries, vec![largest, entry(2, 1, b"x")]);
    assert_eq!(report.segment_count, 2);
}

#[test]
fn invalid_options_are_refused() {
    let directory = TempDir::new("disk-options");
    for segment_size_max in [0, 44, 2 * 1024 * 1024 * 1024] {
        let options = DiskOptions {
            fsync: true,
            segment_size_max,
            ..DiskOptions::default()
        };
        let error = DiskStorage::open(&directory.path, options).unwrap_err();
        assert!(
            matches!(error, StorageError::InvalidOptions { .. }),
            "{error:?}"
        );
    }
}

/// Random appends (with conflicting suffixes), hard-state changes, syncs
/// and reopens against a model: after each reopen the log and hard state
/// are exactly what was synced.
#[test]
fn random_operations_match_a_model() {
    for seed in 1..=4 {
        let directory = TempDir::new("disk-model");
        let mut rng = Rng::new(seed);
        let segment_size_max = rng.range_inclusive(64, 400);
        let (mut storage, _, _) = open(&directory.path, segment_size_max);
        let mut model: Vec<Entry> = Vec::new();
        let mut state = HardState::default();
        for _ in 0..300 {
            if rng.chance(1, 3) {
                state.current_term = Term(state.current_term.0 + 1);
                state.voted_for = rng.chance(1, 2).then_some(NodeId(1));
                storage.set_hard_state(state).unwrap();
            }
            if state.current_term.0 > 0 && rng.chance(2, 3) {
                let last = model.len() as u64;
                let first = rng.range_inclusive(last.saturating_sub(6).max(1), last + 1);
                let count = rng.range_inclusive(1, 5);
                let size = rng.range_inclusive(0, 40) as usize;
                let batch: Vec<Entry> = (first..first + count)
                    .map(|index| entry(index, state.current_term.0, &vec![index as u8; size]))
                    .collect();
                storage.append(&batch).unwrap();
                model.truncate(first as usize - 1);
                model.extend(batch);
            }
            storage.sync().unwrap();
            if rng.chance(1, 10) {
                drop(storage);
                let reopened = open(&directory.path, segment_size_max);
                assert_eq!(reopened.1.entries, model, "seed {seed}");
                assert_eq!(reopened.1.hard_state, state, "seed {seed}");
                storage = reopened.0;
            }
        }
    }
}

/// A removal a crash cut short left `.removing` files: the next open
/// finishes them, in the data dir and in the log dir, and recovery reads
/// neither.
#[test]
fn an_open_finishes_the_removals_a_crash_left() {
    let directory = TempDir::new("disk-removing");
    let data = directory.path.join("node");
    let (storage, _, _) = open(&data, SEGMENT_SIZE_SMALL);
    drop(storage);
    let in_data = data.join("snapshot-00000000000000000007.snap.removing");
    let in_log = data
        .join(LOG_DIRECTORY_NAME)
        .join("00000000000000000001.seg.removing");
    fs::write(&in_data, b"half a snapshot").unwrap();
    fs::write(&in_log, b"half a segment").unwrap();
    let (storage, recovered, _) = open(&data, SEGMENT_SIZE_SMALL);
    storage.wait_removals();
    assert!(recovered.entries.is_empty());
    assert!(!in_data.exists() && !in_log.exists());
}
