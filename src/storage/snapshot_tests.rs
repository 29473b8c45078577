//! Tests of snapshot files, compaction and reset on disk, and recovery
//! with snapshots: through the public face, with crashes simulated by
//! stopping between steps and by damaging files in between.

use super::disk::{DiskOptions, DiskStorage, RecoveryReport, LOG_DIRECTORY_NAME};
use super::hard_state::HARD_STATE_FILE_NAME;
use super::snapshot::{self, SnapshotFile, SNAPSHOT_TRAILER_SIZE};
use super::snapshot_writer::{ChunkReceiver, SnapshotWriter};
use super::test_support::{copy_data_dir, entries, files, TempDir};
use super::{MemoryStorage, Recovered, Storage, StorageError};
use crate::core::{ClusterId, Entry, HardState, LogIndex, NodeId, SnapshotMeta, Term};
use std::fs;
use std::path::{Path, PathBuf};

/// Two records of the test entries fit one segment: segments hold
/// [1, 2], [3, 4], ...
const SEGMENT_SIZE_SMALL: u64 = 128;

fn options() -> DiskOptions {
    DiskOptions {
        fsync: true,
        segment_size_max: SEGMENT_SIZE_SMALL,
        ..DiskOptions::default()
    }
}

fn open(directory: &Path) -> (DiskStorage, Recovered, RecoveryReport) {
    DiskStorage::open(directory, options()).expect("open")
}

fn open_error(directory: &Path) -> StorageError {
    DiskStorage::open(directory, options()).expect_err("open must refuse")
}

fn meta(index: u64, term: u64) -> SnapshotMeta {
    SnapshotMeta {
        index: LogIndex(index),
        term: Term(term),
        cluster_id: Some(ClusterId(77)),
        voters: vec![NodeId(1), NodeId(2), NodeId(3)],
    }
}

/// A body that differs per index and spans several appends.
fn body(index: u64) -> Vec<u8> {
    format!("state machine at {index};").repeat(40).into_bytes()
}

/// Writes, syncs and commits a snapshot the way the runtime does, body in
/// three appends.
fn write_snapshot(directory: &Path, meta: SnapshotMeta) -> SnapshotFile {
    let body = body(meta.index.0);
    let mut writer = SnapshotWriter::create(directory, meta, true).unwrap();
    for piece in body.chunks(body.len() / 3 + 1) {
        writer.append(piece).unwrap();
    }
    let (finished, job) = writer.finish().unwrap();
    job.as_ref().unwrap().run().unwrap();
    finished.commit(job).unwrap()
}

fn hard_state(term: u64) -> HardState {
    HardState {
        current_term: Term(term),
        voted_for: None,
        cluster_id: None,
    }
}

/// Entries 1..=count of `term`, in segments of two, hard state `term`.
fn build_log(directory: &Path, count: u64, term: u64) -> DiskStorage {
    let (mut storage, _, _) = open(directory);
    storage.append(&entries(1, count, term)).unwrap();
    storage.set_hard_state(hard_state(term)).unwrap();
    storage.sync().unwrap();
    storage
}

fn segment_paths(directory: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(directory.join(LOG_DIRECTORY_NAME))
        .unwrap()
        .map(|item| item.unwrap().path())
        .collect();
    paths.sort();
    paths
}

fn segment_path(directory: &Path, first: u64) -> PathBuf {
    let name = super::segment::file_name(LogIndex(first));
    directory.join(LOG_DIRECTORY_NAME).join(name)
}

fn snapshot_path(directory: &Path, index: u64) -> PathBuf {
    directory.join(snapshot::file_name(LogIndex(index)))
}

fn snapshot_indexes(directory: &Path) -> Vec<u64> {
    let listing = snapshot::list(directory).unwrap();
    listing.snapshots.iter().map(|(index, _)| index.0).collect()
}

fn indexes(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|entry| entry.index.0).collect()
}

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
    assert!(text.contains(problem), "{text}");
}

fn assert_corrupt_snapshot(error: &StorageError, path: &Path, offset: u64, problem: &str) {
    assert_corrupt(error, path, offset, problem);
    let location = format!("corrupt snapshot: {} at byte {offset}: ", path.display());
    assert!(error.to_string().starts_with(&location), "{error}");
}

fn rewrite(path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = fs::read(path).unwrap();
    change(&mut bytes);
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_snapshot_round_trips_through_its_file() {
    let directory = TempDir::new("snap-round-trip");
    let file = write_snapshot(&directory.path, meta(42, 3));
    assert_eq!(file.path, snapshot_path(&directory.path, 42));
    assert_eq!(file.size_bytes, fs::metadata(&file.path).unwrap().len());
    assert!(!file.path.with_extension("snap.tmp").exists());
    let loaded = snapshot::load(&file.path).unwrap();
    assert_eq!(loaded.file, file);
    assert_eq!(loaded.file.meta, meta(42, 3));
    assert_eq!(loaded.body, body(42));
    assert_eq!(snapshot::verify(&file.path).unwrap(), file);
}

#[test]
fn an_empty_body_and_no_cluster_round_trip() {
    let directory = TempDir::new("snap-empty");
    let meta = SnapshotMeta {
        cluster_id: None,
        voters: Vec::new(),
        ..meta(1, 1)
    };
    let writer = SnapshotWriter::create(&directory.path, meta.clone(), false).unwrap();
    let (finished, job) = writer.finish().unwrap();
    assert!(job.is_none(), "no sync owed with fsync off");
    let file = finished.commit(None).unwrap();
    let loaded = snapshot::load(&file.path).unwrap();
    assert_eq!((loaded.file.meta, loaded.body), (meta, Vec::new()));
}

#[test]
fn retention_keeps_the_two_newest() {
    let directory = TempDir::new("snap-retention");
    for index in [10, 20, 30, 40] {
        write_snapshot(&directory.path, meta(index, 1));
    }
    assert_eq!(snapshot_indexes(&directory.path), vec![30, 40]);
    // A file above the newest can only be one recovery rejected: it stays
    // for the operator and does not count as one of the two.
    fs::write(snapshot_path(&directory.path, 90), b"damaged").unwrap();
    write_snapshot(&directory.path, meta(50, 1));
    assert_eq!(snapshot_indexes(&directory.path), vec![40, 50, 90]);
}

#[test]
fn an_unfinished_write_leaves_the_previous_snapshot_in_use() {
    let directory = TempDir::new("snap-unfinished");
    drop(build_log(&directory.path, 12, 1));
    write_snapshot(&directory.path, meta(6, 1));
    // Crash after the header, then after the trailer (not yet synced or
    // renamed): either leaves a .tmp that is never valid.
    for stop_after_finish in [false, true] {
        let mut writer = SnapshotWriter::create(&directory.path, meta(10, 1), true).unwrap();
        writer.append(&body(10)).unwrap();
        let temporary = directory
            .path
            .join(snapshot::writing_file_name(LogIndex(10)));
        if stop_after_finish {
            drop(writer.finish().unwrap());
        } else {
            drop(writer);
        }
        assert!(temporary.exists());
        let (_, recovered, report) = open(&directory.path);
        let loaded = recovered.snapshot.expect("the previous snapshot");
        assert_eq!(loaded.file.meta.index, LogIndex(6));
        assert_eq!(indexes(&recovered.entries), (7..=12).collect::<Vec<_>>());
        assert_eq!(report.temporaries_removed, vec![temporary.clone()]);
        assert!(report.needs_attention());
        assert!(report
            .to_string()
            .contains("unfinished snapshot file removed"));
        assert!(!temporary.exists());
    }
}

#[test]
fn a_crash_between_rename_and_retention_keeps_three_and_uses_the_newest() {
    let directory = TempDir::new("snap-before-retention");
    drop(build_log(&directory.path, 12, 1));
    for index in [4, 8] {
        write_snapshot(&directory.path, meta(index, 1));
    }
    // What `commit` leaves if it stops after the rename: a third file.
    let newest = snapshot_path(&directory.path, 12);
    fs::copy(snapshot_path(&directory.path, 8), &newest).unwrap();
    rewrite(&newest, |bytes| {
        let mut fixed = snapshot::encode_header(&meta(12, 1));
        let body = &bytes[fixed.len()..bytes.len() - SNAPSHOT_TRAILER_SIZE];
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&fixed);
        hasher.update(body);
        let trailer = snapshot::encode_trailer(body.len() as u64, hasher);
        fixed.extend_from_slice(body);
        fixed.extend_from_slice(&trailer);
        *bytes = fixed;
    });
    let (_, recovered, report) = open(&directory.path);
    assert_eq!(recovered.snapshot.unwrap().file.meta.index, LogIndex(12));
    assert!(recovered.entries.is_empty());
    assert_eq!(report.snapshot_index, LogIndex(12));
    assert_eq!(snapshot_indexes(&directory.path), vec![4, 8, 12]);
}

#[test]
fn recovery_skips_the_entries_a_snapshot_covers() {
    let directory = TempDir::new("snap-recover");
    drop(build_log(&directory.path, 12, 1));
    write_snapshot(&directory.path, meta(7, 1));
    let (mut storage, recovered, report) = open(&directory.path);
    assert_eq!(recovered.snapshot.unwrap().file.meta, meta(7, 1));
    assert_eq!(indexes(&recovered.entries), (8..=12).collect::<Vec<_>>());
    assert_eq!(report.entry_count, 5);
    assert_eq!(report.segment_count, 6, "nothing compacted yet");
    assert!(report
        .to_string()
        .starts_with("storage recovered: snapshot at index 7, then 6 segments"));
    assert!(!report.needs_attention());
    // The log goes on after it.
    storage.append(&entries(13, 2, 1)).unwrap();
    storage.sync().unwrap();
    drop(storage);
    let (_, recovered, _) = open(&directory.path);
    assert_eq!(indexes(&recovered.entries), (8..=14).collect::<Vec<_>>());
}

#[test]
fn compaction_removes_only_whole_segments_at_or_below_the_point() {
    let directory = TempDir::new("snap-compact");
    let mut storage = build_log(&directory.path, 12, 1);
    write_snapshot(&directory.path, meta(7, 1));
    // Segments [1,2] [3,4] [5,6] hold only entries <= 7; [7,8] does not.
    assert_eq!(storage.compact(LogIndex(7)).unwrap(), 3);
    storage.wait_removals();
    assert_eq!(
        segment_paths(&directory.path)[0],
        segment_path(&directory.path, 7)
    );
    assert_eq!(storage.first_index(), LogIndex(7));
    assert_eq!(
        storage.compact(LogIndex(7)).unwrap(),
        0,
        "nothing more to remove"
    );
    drop(storage);
    let (mut storage, recovered, report) = open(&directory.path);
    assert_eq!(indexes(&recovered.entries), (8..=12).collect::<Vec<_>>());
    assert_eq!(report.segment_count, 3);
    // Never the newest, even when all of it is covered.
    write_snapshot(&directory.path, meta(12, 1));
    assert_eq!(storage.compact(LogIndex(12)).unwrap(), 2);
    storage.wait_removals();
    assert_eq!(
        segment_paths(&directory.path),
        vec![segment_path(&directory.path, 11)]
    );
    storage.append(&entries(13, 1, 1)).unwrap();
    storage.sync().unwrap();
    drop(storage);
    let (_, recovered, _) = open(&directory.path);
    assert_eq!(indexes(&recovered.entries), vec![13]);
}

#[test]
#[should_panic(expected = "but the newest snapshot file is at 4")]
fn compaction_past_the_newest_snapshot_is_a_bug() {
    let directory = TempDir::new("snap-compact-past");
    let mut storage = build_log(&directory.path, 12, 1);
    write_snapshot(&directory.path, meta(4, 1));
    let _ = storage.compact(LogIndex(8));
}

/// Compaction removes oldest first, each removal durable before the next:
/// every prefix of its removals recovers; a removal out of order (which
/// that rule prevents) would leave a gap, which is refused.
#[test]
fn every_intermediate_state_of_a_compaction_recovers() {
    let directory = TempDir::new("snap-compact-crash");
    drop(build_log(&directory.path, 12, 1));
    write_snapshot(&directory.path, meta(9, 1));
    let before = files(&directory.path);
    for removed in 0..=4 {
        let copy = TempDir::new("snap-compact-crash-copy");
        copy_data_dir(&directory.path, &copy.path);
        for first in (1..).step_by(2).take(removed) {
            fs::remove_file(segment_path(&copy.path, first)).unwrap();
        }
        let (_, recovered, _) = open(&copy.path);
        assert_eq!(indexes(&recovered.entries), (10..=12).collect::<Vec<_>>());
    }
    let copy = TempDir::new("snap-compact-crash-order");
    copy_data_dir(&directory.path, &copy.path);
    fs::remove_file(segment_path(&copy.path, 3)).unwrap();
    let error = open_error(&copy.path);
    let message = "segment starts at index 5 but the previous one ends at 2 (gap)";
    assert_corrupt(&error, &segment_path(&copy.path, 5), 0, message);
    assert_eq!(files(&directory.path), before);
}

#[test]
fn a_log_that_starts_after_the_snapshot_is_a_gap() {
    let directory = TempDir::new("snap-gap");
    let mut storage = build_log(&directory.path, 12, 1);
    write_snapshot(&directory.path, meta(8, 1));
    assert_eq!(storage.compact(LogIndex(8)).unwrap(), 4);
    drop(storage);
    // Only an older snapshot: entries 5..=8 are nowhere.
    fs::remove_file(snapshot_path(&directory.path, 8)).unwrap();
    write_snapshot(&directory.path, meta(4, 1));
    let before = files(&directory.path);
    let error = open_error(&directory.path);
    let message = "log starts at index 9 but the snapshot ends at 4 (gap)";
    assert_corrupt(&error, &segment_path(&directory.path, 9), 0, message);
    assert!(error.to_string().starts_with("corrupt log: "), "{error}");
    // And with no snapshot at all, the log must start at 1.
    fs::remove_file(snapshot_path(&directory.path, 4)).unwrap();
    let error = open_error(&directory.path);
    let message = "log starts at index 9, expected 1 (no snapshot)";
    assert_corrupt(&error, &segment_path(&directory.path, 9), 0, message);
    let mut after = files(&directory.path);
    after.insert(
        snapshot_path(&directory.path, 4),
        before[&snapshot_path(&directory.path, 4)].clone(),
    );
    assert_eq!(after, before, "a refusal changes nothing");
}

/// A follower's install: the snapshot is durable first, then the log goes
/// and the next append is index + 1.
#[test]
fn reset_to_snapshot_starts_the_log_after_it() {
    let directory = TempDir::new("snap-reset");
    let mut storage = build_log(&directory.path, 12, 1);
    let installed = meta(20, 3);
    write_snapshot(&directory.path, installed.clone());
    storage.reset_to_snapshot(&installed).unwrap();
    assert!(segment_paths(&directory.path).is_empty());
    assert_eq!(storage.last_index(), LogIndex(20));
    storage.set_hard_state(hard_state(3)).unwrap();
    storage.append(&entries(21, 3, 3)).unwrap();
    storage.sync().unwrap();
    assert_eq!(
        segment_paths(&directory.path)[0],
        segment_path(&directory.path, 21)
    );
    drop(storage);
    let (_, recovered, report) = open(&directory.path);
    assert_eq!(recovered.snapshot.unwrap().file.meta, installed);
    assert_eq!(indexes(&recovered.entries), vec![21, 22, 23]);
    assert_eq!(report.log_discarded, None);
}

/// A data dir whose log began with cluster 99's Bootstrap (entries 1..=10
/// at term 1), next to a snapshot of cluster 77 at 6 (term 1): what an
/// install a crash interrupted leaves.
fn foreign_log_then_snapshot(directory: &Path) {
    let (mut storage, _, _) = open(directory);
    let bootstrap = Entry {
        term: Term(1),
        index: LogIndex(1),
        kind: crate::core::EntryKind::Bootstrap,
        data: ClusterId(99).to_bytes().to_vec().into(),
    };
    storage.append(&[bootstrap]).unwrap();
    storage.append(&entries(2, 9, 1)).unwrap();
    storage.set_hard_state(hard_state(1)).unwrap();
    storage.sync().unwrap();
    drop(storage);
    write_snapshot(directory, meta(6, 1));
}

/// A node not yet bound held another cluster's young log when it was sent
/// a snapshot of the cluster it joined, and crashed before the install
/// reset its log. Terms agree by chance; recovery drops the old log anyway,
/// as the install would have: it began with another cluster's Bootstrap.
#[test]
fn a_log_of_another_cluster_is_dropped_after_an_interrupted_install() {
    let directory = TempDir::new("snap-foreign-log");
    foreign_log_then_snapshot(&directory.path);
    let (_, recovered, report) = open(&directory.path);
    assert_eq!(recovered.snapshot.unwrap().file.meta, meta(6, 1));
    assert!(
        recovered.entries.is_empty(),
        "{:?}",
        indexes(&recovered.entries)
    );
    let reason = report.log_discarded.expect("the old log is dropped");
    assert!(reason.contains("another cluster's Bootstrap"), "{reason}");
}

/// The same with `RecoveryKeepsForeignLog` planted: the old log stays
/// after the snapshot, another cluster's entries in this one's place.
#[cfg(feature = "planted-bugs")]
#[test]
fn planted_recovery_keeps_a_log_of_another_cluster_after_an_interrupted_install() {
    let directory = TempDir::new("snap-foreign-log-planted");
    foreign_log_then_snapshot(&directory.path);
    let planted = DiskOptions {
        planted_bug: Some(crate::core::PlantedBug::RecoveryKeepsForeignLog),
        ..options()
    };
    let (_, recovered, report) = DiskStorage::open(&directory.path, planted).expect("open");
    assert_eq!(indexes(&recovered.entries), [7, 8, 9, 10]);
    assert!(report.log_discarded.is_none());
}

#[test]
#[should_panic(expected = "at or below the snapshot at 20")]
fn an_append_below_the_snapshot_is_a_bug() {
    let directory = TempDir::new("snap-append-below");
    let mut storage = build_log(&directory.path, 4, 1);
    write_snapshot(&directory.path, meta(20, 1));
    storage.reset_to_snapshot(&meta(20, 1)).unwrap();
    let _ = storage.append(&entries(20, 1, 1));
}

/// Each state a crash can leave during an install: the snapshot renamed
/// but the old log whole (its entry at the index has another term, or it
/// ends below), some of its newest segments removed, all removed, or the
/// first new segment's header torn. Each recovers to the snapshot and an
/// empty log that continues at index + 1.
#[test]
fn every_intermediate_state_of_a_reset_recovers() {
    for (label, old_log_count, installed) in [
        ("other-term", 12, meta(10, 3)),
        ("ends-below", 12, meta(20, 3)),
    ] {
        let directory = TempDir::new(&format!("snap-reset-crash-{label}"));
        let mut storage = build_log(&directory.path, old_log_count, 1);
        // The leader's term reached this node before its snapshot did.
        storage.set_hard_state(hard_state(3)).unwrap();
        storage.sync().unwrap();
        drop(storage);
        write_snapshot(&directory.path, installed.clone());
        for removed in 0..=6 {
            let copy = TempDir::new("snap-reset-crash-copy");
            copy_data_dir(&directory.path, &copy.path);
            let mut segments = segment_paths(&copy.path);
            for _ in 0..removed {
                fs::remove_file(segments.pop().unwrap()).unwrap();
            }
            let (mut storage, recovered, report) = open(&copy.path);
            assert_eq!(recovered.snapshot.unwrap().file.meta, installed, "{label}");
            assert!(recovered.entries.is_empty(), "{label} {removed}");
            assert_eq!(
                report.log_discarded.is_some(),
                removed < 6,
                "{label} {removed}"
            );
            assert!(segment_paths(&copy.path).is_empty());
            let next = installed.index.next();
            storage.set_hard_state(hard_state(3)).unwrap();
            storage.append(&entries(next.0, 1, 3)).unwrap();
            storage.sync().unwrap();
            drop(storage);
            let (_, recovered, _) = open(&copy.path);
            assert_eq!(indexes(&recovered.entries), vec![next.0]);
        }
    }
}

#[test]
fn a_torn_first_segment_after_a_reset_is_a_torn_tail() {
    let directory = TempDir::new("snap-reset-torn");
    let mut storage = build_log(&directory.path, 4, 1);
    write_snapshot(&directory.path, meta(20, 1));
    storage.reset_to_snapshot(&meta(20, 1)).unwrap();
    drop(storage);
    let torn = segment_path(&directory.path, 21);
    fs::write(&torn, [0x52, 0x4c]).unwrap();
    let (_, recovered, report) = open(&directory.path);
    assert!(recovered.entries.is_empty());
    assert!(report.torn_tail.unwrap().file_removed);
    assert!(!torn.exists());
}

#[test]
fn a_log_that_holds_the_snapshot_index_at_its_term_is_kept() {
    let directory = TempDir::new("snap-keep-suffix");
    drop(build_log(&directory.path, 12, 2));
    write_snapshot(&directory.path, meta(10, 2));
    let (_, recovered, report) = open(&directory.path);
    assert_eq!(indexes(&recovered.entries), vec![11, 12]);
    assert_eq!(report.log_discarded, None);
}

/// Changes a file's bytes in one way.
type Damage = Box<dyn Fn(&mut Vec<u8>)>;

/// Damage to the only snapshot, with a log that does not reach back to
/// index 1: refused, naming the file and the byte, and nothing changes.
#[test]
fn each_kind_of_damage_is_refused_with_file_and_offset() {
    let directory = TempDir::new("snap-damage");
    let mut storage = build_log(&directory.path, 12, 1);
    let file = write_snapshot(&directory.path, meta(8, 1));
    storage.compact(LogIndex(8)).unwrap();
    drop(storage);
    let size = file.size_bytes;
    let cases: [(&str, Damage, u64, &str); 7] = [
        (
            "bad-crc",
            Box::new(|bytes| bytes[100] ^= 1),
            size - 12,
            "snapshot CRC mismatch",
        ),
        (
            "crc-of-header",
            Box::new(|bytes| bytes[30] ^= 1),
            size - 12,
            "snapshot CRC mismatch",
        ),
        (
            "truncated",
            Box::new(|bytes| bytes.truncate(bytes.len() - 5)),
            size - 5 - 8,
            "no end marker",
        ),
        (
            "cut-to-nothing",
            Box::new(|bytes| bytes.truncate(3)),
            3,
            "less than the smallest snapshot",
        ),
        (
            "bad-magic",
            Box::new(|bytes| bytes[0] = b'X'),
            0,
            "not a snapshot file",
        ),
        (
            "header-length",
            Box::new(|bytes| bytes[11] = 99),
            8,
            "header length 99, but 3 voters make 52",
        ),
        (
            "voter-count",
            Box::new(|bytes| bytes[39] = 200),
            36,
            "header names 200 voters, more than 15",
        ),
    ];
    for (label, damage, offset, problem) in cases {
        let copy = TempDir::new(&format!("snap-damage-{label}"));
        copy_data_dir(&directory.path, &copy.path);
        let path = snapshot_path(&copy.path, 8);
        rewrite(&path, damage);
        let before = files(&copy.path);
        assert_corrupt_snapshot(&open_error(&copy.path), &path, offset, problem);
        assert_eq!(
            files(&copy.path),
            before,
            "{label}: a refusal changes nothing"
        );
    }
}

#[test]
fn a_renamed_snapshot_is_refused() {
    let directory = TempDir::new("snap-renamed");
    drop(build_log(&directory.path, 4, 1));
    let file = write_snapshot(&directory.path, meta(3, 1));
    let renamed = snapshot_path(&directory.path, 9);
    fs::rename(&file.path, &renamed).unwrap();
    let message = "file name says index 9, header says 3";
    assert_corrupt_snapshot(&open_error(&directory.path), &renamed, 12, message);
}

/// A damaged newest snapshot with an older valid one: used when the log
/// still holds everything from after the older one up to the damaged
/// one's index; refused (naming the damaged file) when it does not.
#[test]
fn a_damaged_newest_snapshot_falls_back_only_when_the_log_covers_it() {
    let directory = TempDir::new("snap-fallback");
    drop(build_log(&directory.path, 14, 1));
    write_snapshot(&directory.path, meta(6, 1));
    let newest = write_snapshot(&directory.path, meta(10, 1));
    rewrite(&newest.path, |bytes| bytes[60] ^= 0x10);
    let (mut storage, recovered, report) = open(&directory.path);
    assert_eq!(recovered.snapshot.unwrap().file.meta.index, LogIndex(6));
    assert_eq!(indexes(&recovered.entries), (7..=14).collect::<Vec<_>>());
    assert_eq!(report.snapshots_rejected.len(), 1);
    assert_eq!(report.snapshots_rejected[0].path, newest.path);
    assert_eq!(report.snapshots_rejected[0].offset, newest.size_bytes - 12);
    assert!(report.needs_attention());
    let text = report.to_string();
    assert!(
        text.contains("snapshot rejected, an older one used"),
        "{text}"
    );
    assert!(newest.path.exists(), "a rejected file stays");
    // Compacted past the older snapshot, the log no longer covers the gap.
    let damaged = fs::read(&newest.path).unwrap();
    fs::remove_file(&newest.path).unwrap();
    write_snapshot(&directory.path, meta(10, 1));
    assert_eq!(storage.compact(LogIndex(10)).unwrap(), 5);
    drop(storage);
    fs::write(&newest.path, damaged).unwrap();
    let before = files(&directory.path);
    let error = open_error(&directory.path);
    assert_corrupt_snapshot(&error, &newest.path, newest.size_bytes - 12, "CRC mismatch");
    assert_eq!(files(&directory.path), before);
}

/// With no older snapshot, a log from index 1 that reaches the damaged
/// one's index covers it too.
#[test]
fn a_damaged_only_snapshot_falls_back_to_a_whole_log() {
    let directory = TempDir::new("snap-fallback-log");
    drop(build_log(&directory.path, 12, 1));
    let file = write_snapshot(&directory.path, meta(10, 1));
    rewrite(&file.path, |bytes| bytes[50] ^= 1);
    let (_, recovered, report) = open(&directory.path);
    assert!(recovered.snapshot.is_none());
    assert_eq!(indexes(&recovered.entries), (1..=12).collect::<Vec<_>>());
    assert_eq!(report.snapshots_rejected[0].path, file.path);
    // A damaged snapshot past the log's end covered entries the log lacks.
    let beyond = write_snapshot(&directory.path, meta(30, 1));
    rewrite(&beyond.path, |bytes| bytes[50] ^= 1);
    let error = open_error(&directory.path);
    assert_corrupt_snapshot(&error, &beyond.path, beyond.size_bytes - 12, "CRC mismatch");
}

#[test]
fn a_snapshot_without_a_hard_state_is_refused() {
    let directory = TempDir::new("snap-no-hard-state");
    write_snapshot(&directory.path, meta(5, 1));
    let path = directory.path.join(HARD_STATE_FILE_NAME);
    let message = "hard-state file missing but a snapshot holds entries up to 5";
    assert_corrupt(&open_error(&directory.path), &path, 0, message);
}

/// Sends `file` from the leader's data dir in chunks of `chunk_size`.
fn receive(file: &SnapshotFile, receiver: &mut ChunkReceiver, chunk_size: usize) {
    while receiver.stored_bytes() < file.size_bytes {
        let offset = receiver.stored_bytes();
        let chunk = snapshot::read_chunk(&file.path, offset, chunk_size).unwrap();
        receiver.write_chunk(offset, &chunk).unwrap();
    }
}

#[test]
fn chunks_received_in_order_install_the_leaders_file() {
    let leader = TempDir::new("snap-chunks-leader");
    let follower = TempDir::new("snap-chunks-follower");
    let file = write_snapshot(&leader.path, meta(30, 2));
    let mut receiver = ChunkReceiver::create(&follower.path, meta(30, 2), true).unwrap();
    receive(&file, &mut receiver, 97);
    let installed = receiver.finish().unwrap();
    assert_eq!(installed.path, snapshot_path(&follower.path, 30));
    assert_eq!(installed.meta, file.meta);
    assert_eq!(
        fs::read(&installed.path).unwrap(),
        fs::read(&file.path).unwrap()
    );
    assert_eq!(snapshot_indexes(&follower.path), vec![30]);
    let leftovers = snapshot::list(&follower.path).unwrap().temporaries;
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn an_out_of_order_chunk_is_refused_and_changes_nothing() {
    let leader = TempDir::new("snap-order-leader");
    let follower = TempDir::new("snap-order-follower");
    let file = write_snapshot(&leader.path, meta(30, 2));
    let mut receiver = ChunkReceiver::create(&follower.path, meta(30, 2), true).unwrap();
    let first = snapshot::read_chunk(&file.path, 0, 100).unwrap();
    receiver.write_chunk(0, &first).unwrap();
    let stored = files(&follower.path);
    for offset in [0, 50, 200] {
        let chunk = snapshot::read_chunk(&file.path, offset, 100).unwrap();
        let error = receiver.write_chunk(offset, &chunk).unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, StorageError::BadChunk { .. }), "{text}");
        assert!(
            text.contains(&format!("chunk at byte {offset}, but 100 bytes are stored")),
            "{text}"
        );
        assert_eq!(receiver.stored_bytes(), 100);
        assert_eq!(files(&follower.path), stored);
    }
    receive(&file, &mut receiver, 100);
    assert_eq!(receiver.finish().unwrap().meta, file.meta);
}

#[test]
fn a_corrupt_received_file_is_rejected_and_only_its_temporary_removed() {
    let leader = TempDir::new("snap-bad-leader");
    let follower = TempDir::new("snap-bad-follower");
    let older = write_snapshot(&follower.path, meta(10, 1));
    let file = write_snapshot(&leader.path, meta(30, 2));
    let other_voters = SnapshotMeta {
        voters: vec![NodeId(1), NodeId(2)],
        ..meta(30, 2)
    };
    let cases = [
        ("flipped", meta(30, 2), true, "snapshot CRC mismatch"),
        ("term", meta(30, 3), false, "term: Term(3)"),
        (
            "voters",
            other_voters,
            false,
            "voters: [NodeId(1), NodeId(2)]",
        ),
    ];
    for (label, announced, flip, problem) in cases {
        let index = announced.index;
        let mut receiver = ChunkReceiver::create(&follower.path, announced, true).unwrap();
        let mut bytes = fs::read(&file.path).unwrap();
        if flip {
            bytes[70] ^= 4;
        }
        for (position, chunk) in bytes.chunks(64).enumerate() {
            receiver.write_chunk(64 * position as u64, chunk).unwrap();
        }
        let temporary = follower.path.join(snapshot::receiving_file_name(index));
        let error = receiver.finish().unwrap_err();
        let offset = if flip { file.size_bytes - 12 } else { 12 };
        assert_corrupt_snapshot(&error, &temporary, offset, problem);
        assert!(!temporary.exists(), "{label}");
        assert!(!snapshot_path(&follower.path, 30).exists(), "{label}");
        assert_eq!(
            snapshot::load(&older.path).unwrap().body,
            body(10),
            "{label}"
        );
    }
}

#[test]
fn the_leader_reads_chunks_through_its_storage_even_after_retention() {
    let directory = TempDir::new("snap-leader-chunks");
    let (mut storage, _, _) = open(&directory.path);
    let file = write_snapshot(&directory.path, meta(5, 1));
    let whole = fs::read(&file.path).unwrap();
    assert_eq!(
        storage.snapshot_chunk(LogIndex(5), 0, 10).unwrap(),
        whole[..10]
    );
    // Two newer snapshots unlink it; the open file still serves the send.
    write_snapshot(&directory.path, meta(6, 1));
    write_snapshot(&directory.path, meta(7, 1));
    assert!(!file.path.exists());
    let tail = storage.snapshot_chunk(LogIndex(5), 10, 1 << 20).unwrap();
    assert_eq!(tail, whole[10..], "fewer bytes only at the end");
    let missing = storage.snapshot_chunk(LogIndex(4), 0, 10).unwrap_err();
    assert!(matches!(
        missing,
        StorageError::NoSnapshot { index: LogIndex(4) }
    ));
    let memory = MemoryStorage::default()
        .snapshot_chunk(LogIndex(5), 0, 10)
        .unwrap_err();
    assert_eq!(
        memory.to_string(),
        "no snapshot file at index 5 in this storage"
    );
}

/// The in-memory form of a file is the disk's, byte for byte, and reads
/// back only whole.
#[test]
fn a_file_in_memory_is_the_disk_file_and_damage_is_refused() {
    let directory = TempDir::new("snapshot-bytes");
    let file = write_snapshot(&directory.path, meta(9, 2));
    let on_disk = fs::read(&file.path).unwrap();
    let in_memory = snapshot::encode_file(&meta(9, 2), &body(9));
    assert_eq!(in_memory, on_disk);
    let (decoded, decoded_body) = snapshot::decode_bytes(&in_memory).unwrap();
    assert_eq!((decoded, decoded_body), (meta(9, 2), &body(9)[..]));
    for position in 0..in_memory.len() {
        let mut damaged = in_memory.clone();
        damaged[position] ^= 0x40;
        assert!(snapshot::decode_bytes(&damaged).is_err(), "byte {position}");
    }
    for cut in 0..in_memory.len() {
        assert!(
            snapshot::decode_bytes(&in_memory[..cut]).is_err(),
            "cut {cut}"
        );
    }
}

/// The trait's snapshot steps on disk: take one, stream it, receive it
/// elsewhere in chunks, and read the same body back.
#[test]
fn the_storage_trait_takes_streams_and_receives_a_snapshot() {
    let leader_dir = TempDir::new("snapshot-trait-leader");
    let follower_dir = TempDir::new("snapshot-trait-follower");
    let (mut leader, _, _) = open(&leader_dir.path);
    let (mut follower, _, _) = open(&follower_dir.path);
    let body = body(12);
    leader.snapshot_begin(&meta(12, 3)).unwrap();
    for piece in body.chunks(100) {
        leader.snapshot_append(piece).unwrap();
    }
    let job = leader.snapshot_finish().unwrap();
    job.as_ref().unwrap().run().unwrap();
    let size = leader.snapshot_commit(job).unwrap();
    let mut offset = 0;
    let mut finder = snapshot::BodyFinder::default();
    let mut found = Vec::new();
    while offset < size {
        let data = leader.snapshot_chunk(LogIndex(12), offset, 256).unwrap();
        found.extend_from_slice(finder.body_of(offset, &data, size));
        let chunk = crate::core::InstallSnapshot {
            meta: meta(12, 3),
            offset,
            total_size: size,
            data: data.clone().into(),
        };
        follower.receive_chunk(&chunk).unwrap();
        offset += data.len() as u64;
    }
    let file = follower.receive_finish().unwrap();
    assert_eq!((file.meta, file.size_bytes), (meta(12, 3), size));
    assert!(file.path.exists());
    assert_eq!(found, body, "the body, found as the chunks came");
}

/// The body is found whatever the chunk size, down to one byte, and a
/// header whose length makes no sense yields no more than the file holds.
#[test]
fn the_body_is_found_in_chunks_of_any_size() {
    let bytes = snapshot::encode_file(&meta(6, 2), &body(6));
    let total = bytes.len() as u64;
    for size in [1, 2, 7, 11, 12, 13, 40, 4096] {
        let mut finder = snapshot::BodyFinder::default();
        let mut found = Vec::new();
        for (number, piece) in bytes.chunks(size).enumerate() {
            found.extend_from_slice(finder.body_of((number * size) as u64, piece, total));
        }
        assert_eq!(found, body(6), "chunks of {size}");
    }
    let mut garbage = bytes.clone();
    garbage[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut finder = snapshot::BodyFinder::default();
    assert!(finder.body_of(0, &garbage, total).is_empty());
}

/// A chunk that does not follow what is stored changes nothing.
#[test]
fn a_received_chunk_out_of_order_is_refused_in_memory_too() {
    let mut memory = MemoryStorage::default();
    let bytes = snapshot::encode_file(&meta(4, 1), &body(4));
    let chunk = |offset: usize, size: usize| crate::core::InstallSnapshot {
        meta: meta(4, 1),
        offset: offset as u64,
        total_size: bytes.len() as u64,
        data: bytes[offset..offset + size].to_vec().into(),
    };
    memory.receive_chunk(&chunk(0, 100)).unwrap();
    let refused = memory.receive_chunk(&chunk(150, 10)).unwrap_err();
    assert!(
        matches!(refused, StorageError::BadChunk { .. }),
        "{refused}"
    );
    memory
        .receive_chunk(&chunk(100, bytes.len() - 100))
        .unwrap();
    let file = memory.receive_finish().unwrap();
    assert_eq!(file.meta, meta(4, 1));
    let sent = memory.snapshot_chunk(LogIndex(4), 0, 1 << 20).unwrap();
    assert_eq!(sent, bytes);
}
