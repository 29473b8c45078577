//! Which snapshot a start uses, and what becomes of the log next to it.
//! Read-only: recovery decides here, and only repairs (in `disk.rs`) once
//! every check passed. The rules are in docs/STORAGE.md, "Recovery with
//! snapshots".

use super::snapshot::{self, LoadedSnapshot, SnapshotListing};
use super::StorageError;
use crate::core::{ClusterId, Entry, LogIndex, PlantedBug, SnapshotMeta, Term};
use std::fmt;
use std::path::{Path, PathBuf};

/// A snapshot file recovery did not use because it is damaged; it stays
/// where it is for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedSnapshot {
    pub path: PathBuf,
    pub offset: u64,
    pub problem: String,
}

impl fmt::Display for RejectedSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at byte {}: {}",
            self.path.display(),
            self.offset,
            self.problem
        )
    }
}

#[derive(Debug, Default)]
pub struct Chosen {
    pub snapshot: Option<LoadedSnapshot>,
    /// Newer files than the one used, each damaged (newest first).
    pub rejected: Vec<RejectedSnapshot>,
}

/// The newest valid snapshot. A damaged newer one is passed over only if
/// the older one (or, with none, the log from index 1) plus the log still
/// holds every entry the damaged one covered; otherwise the start is
/// refused with the newest file's damage. `entries` is the whole log as
/// scanned (consecutive).
pub fn choose(listing: &SnapshotListing, entries: &[Entry]) -> Result<Chosen, StorageError> {
    if let Some(path) = listing.misnamed.first() {
        let problem = "snapshot file name is not \"snapshot-\", a 20-digit index and .snap";
        return Err(StorageError::corrupt(path, 0, problem.to_string()));
    }
    let mut chosen = Chosen::default();
    let mut refusal = None;
    for (_, path) in listing.snapshots.iter().rev() {
        let damage = match snapshot::load(path) {
            Ok(loaded) => {
                if !chosen.rejected.is_empty() {
                    let newest = listing.snapshots[listing.snapshots.len() - 1].0;
                    if !log_covers(entries, Some(&loaded.file.meta), newest) {
                        return Err(refusal.expect("set with the first rejection"));
                    }
                }
                chosen.snapshot = Some(loaded);
                return Ok(chosen);
            }
            Err(StorageError::Corrupt {
                path,
                offset,
                problem,
            }) => RejectedSnapshot {
                path,
                offset,
                problem,
            },
            Err(other) => return Err(other),
        };
        chosen.rejected.push(damage.clone());
        refusal.get_or_insert(StorageError::Corrupt {
            path: damage.path,
            offset: damage.offset,
            problem: damage.problem,
        });
    }
    match (refusal, listing.snapshots.last()) {
        (Some(refusal), Some((newest, _))) if !log_covers(entries, None, *newest) => Err(refusal),
        _ => Ok(chosen),
    }
}

/// The log holds everything from just after `older` (index 1 without one)
/// up to `damaged_index`, and agrees with `older` at its index: falling
/// back forgets no entry the damaged snapshot covered.
fn log_covers(entries: &[Entry], older: Option<&SnapshotMeta>, damaged_index: LogIndex) -> bool {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return false;
    };
    let base = older.map_or(LogIndex(0), |meta| meta.index);
    let agrees = match older {
        Some(meta) if meta.index >= first.index => term_at(entries, meta.index) == Some(meta.term),
        _ => true,
    };
    first.index <= base.next() && last.index >= damaged_index && agrees
}

fn term_at(entries: &[Entry], index: LogIndex) -> Option<Term> {
    let first = entries.first()?.index;
    let position = index.0.checked_sub(first.0)?;
    entries.get(position as usize).map(|entry| entry.term)
}

/// What recovery does with the log next to the chosen snapshot.
#[derive(Debug, PartialEq, Eq)]
pub enum LogFate {
    /// Entries after the snapshot continue it (entries at or below its
    /// index stay on disk, as trailing log, until compacted).
    Keep,
    /// The log does not hold the snapshot's last entry (an install that a
    /// crash interrupted before the log was reset): all of it goes, as the
    /// install would have done. The reason, for the report.
    Discard(String),
}

/// The log as recovery found it, for `reconcile`.
pub struct LogShape<'a> {
    /// The first segment file (also one whose header was torn) and the
    /// index its name announces.
    pub first_segment: Option<(LogIndex, &'a Path)>,
    /// The index after the last record kept; None without segments.
    pub index_next: Option<LogIndex>,
    pub entries: &'a [Entry],
}

/// Checks where the log starts against the snapshot (a gap is refused,
/// naming the first segment) and decides the log's fate. `planted_bug`:
/// test builds only (`RecoveryKeepsForeignLog`).
pub fn reconcile(
    snapshot: Option<&SnapshotMeta>,
    log: &LogShape,
    planted_bug: Option<PlantedBug>,
) -> Result<LogFate, StorageError> {
    let Some((first_index, first_path)) = log.first_segment else {
        return Ok(LogFate::Keep);
    };
    let Some(meta) = snapshot else {
        if first_index != LogIndex(1) {
            let problem = format!("log starts at index {first_index}, expected 1 (no snapshot)");
            return Err(StorageError::corrupt(first_path, 0, problem));
        }
        return Ok(LogFate::Keep);
    };
    if first_index > meta.index.next() {
        let problem = format!(
            "log starts at index {first_index} but the snapshot ends at {} (gap)",
            meta.index
        );
        return Err(StorageError::corrupt(first_path, 0, problem));
    }
    let Some(index_next) = log.index_next else {
        return Ok(LogFate::Keep); // only a torn header, removed as a torn tail
    };
    let last = LogIndex(index_next.0 - 1);
    if last < meta.index {
        let reason = format!("log ends at {last}, below the snapshot at {}", meta.index);
        return Ok(LogFate::Discard(reason));
    }
    match term_at(log.entries, meta.index) {
        Some(term) if term != meta.term => {
            let reason = format!(
                "log holds index {} at term {term}, the snapshot at term {}",
                meta.index, meta.term
            );
            Ok(LogFate::Discard(reason))
        }
        _ if began_with_another_cluster(meta, log.entries, planted_bug) => {
            let reason = format!(
                "log begins with another cluster's Bootstrap than the snapshot's ({})",
                meta.cluster_id
                    .map_or("none".to_string(), |id| id.to_string())
            );
            Ok(LogFate::Discard(reason))
        }
        _ => check_first_term_after(meta, log.entries, first_path),
    }
}

/// The log's first entry is another cluster's Bootstrap: a node not yet
/// bound was installing a snapshot of the cluster it joined when it
/// crashed. Its old log agrees in terms by chance only, and the install
/// drops it (`RaftLog::install_snapshot`); recovery must too. The
/// simulator's disk asks this too, so it recovers as the daemon does.
pub fn began_with_another_cluster(
    meta: &SnapshotMeta,
    entries: &[Entry],
    planted_bug: Option<PlantedBug>,
) -> bool {
    if planted_recovery_keeps_foreign_log(planted_bug) {
        return false;
    }
    let named = entries
        .first()
        .filter(|entry| entry.index == LogIndex(1))
        .and_then(ClusterId::of_bootstrap);
    matches!((named, meta.cluster_id), (Some(log), Some(snapshot)) if log != snapshot)
}

/// A log that starts right after the snapshot continues its term (§5.3:
/// terms never decrease along a log).
fn check_first_term_after(
    meta: &SnapshotMeta,
    entries: &[Entry],
    path: &Path,
) -> Result<LogFate, StorageError> {
    match entries.first() {
        Some(first) if first.index == meta.index.next() && first.term < meta.term => {
            let problem = format!(
                "entry {} has term {}, below the snapshot's term {} at {}",
                first.index, first.term, meta.term, meta.index
            );
            Err(StorageError::corrupt(path, 0, problem))
        }
        _ => Ok(LogFate::Keep),
    }
}

#[cfg(feature = "planted-bugs")]
fn planted_recovery_keeps_foreign_log(planted_bug: Option<PlantedBug>) -> bool {
    planted_bug == Some(PlantedBug::RecoveryKeepsForeignLog)
}

#[cfg(not(feature = "planted-bugs"))]
fn planted_recovery_keeps_foreign_log(_planted_bug: Option<PlantedBug>) -> bool {
    false
}
