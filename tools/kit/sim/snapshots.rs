//! What the simulator does with the snapshot steps a driver call took
//! (`io::SnapshotWrite`): trace lines, counters, and the snapshot files
//! the checkers must see (each holds the applied state at its index).

use super::io::SnapshotWrite;
use super::simulator::Simulator;
use super::trace::{SnapshotTrace, TraceEvent};
use raftlite::core::{Message, MessageBody};

impl Simulator {
    pub(super) fn snapshot_writes(&mut self, node: usize, writes: Vec<SnapshotWrite>) {
        for write in writes {
            let counts = &mut self.stats.snapshots;
            let trace = match write {
                SnapshotWrite::Begun { index } => SnapshotTrace::Begun { index },
                SnapshotWrite::Committed { file } => {
                    counts.taken += 1;
                    let trace = SnapshotTrace::Committed {
                        index: file.meta.index,
                        term: file.meta.term,
                        size_bytes: file.size_bytes(),
                        durable_at_ms: file.durable_at_ms,
                    };
                    let how = "own snapshot";
                    self.observed.snapshot_files.push((node, file, how));
                    trace
                }
                SnapshotWrite::Received { file } => {
                    counts.installed += 1;
                    let trace = SnapshotTrace::Received {
                        index: file.meta.index,
                        term: file.meta.term,
                        size_bytes: file.size_bytes(),
                        durable_at_ms: file.durable_at_ms,
                    };
                    let how = "state after installing the leader's snapshot";
                    self.observed.snapshot_files.push((node, file, how));
                    trace
                }
                SnapshotWrite::Refused { index, problem } => {
                    counts.refused += 1;
                    SnapshotTrace::Refused { index, problem }
                }
                SnapshotWrite::Compacted { upto } => {
                    counts.compactions += 1;
                    SnapshotTrace::Compacted { upto }
                }
                SnapshotWrite::Reset { index } => {
                    counts.resets += 1;
                    SnapshotTrace::Reset { index }
                }
            };
            self.record(TraceEvent::Snapshot { node, trace });
        }
    }

    /// Counts the InstallSnapshot chunks that leave.
    pub(super) fn count_chunk(&mut self, message: &Message) {
        if matches!(message.body, MessageBody::InstallSnapshot(_)) {
            self.stats.snapshots.chunks_sent += 1;
        }
    }
}
