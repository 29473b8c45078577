//! The foreign-log fault: a member's data dir is replaced, for good, by
//! the one of a node of another cluster that never formed. Its log begins
//! with that cluster's Bootstrap, never committed (the node is not bound),
//! and its terms are ours: two clusters started the same way (first
//! leaders at term 1, ...) agree in terms by chance, and then only the
//! Bootstrap tells the logs apart. The member must come back into the
//! cluster with none of that log: the leader's AppendEntries from index 1
//! replaces it (`drop_diverged_log`), and so does an install of the
//! leader's snapshot (`RaftLog::install_snapshot`, and recovery after an
//! install a crash cut short), however well its terms agree. An install
//! that kept the suffix would leave our snapshot followed by the other
//! cluster's entries, which the leader's next AppendEntries takes for its
//! own.
//!
//! What the member's own data dir held is lost, so the fault comes only
//! when nothing on it is needed: every entry on it is committed, every
//! committed entry is durable on a majority of the other disks, and a
//! majority of the others is bound (so the member cannot be elected while
//! its log is foreign). Its hard state keeps the member's term (raised to
//! the image's last term) and vote: a node that forgot a vote could cast
//! it again, which no data dir rule prevents and is not what this fault
//! tests. While a log begins with the foreign Bootstrap the Log Matching
//! checks leave it out (its entries are another cluster's); every other
//! check holds the node as a member throughout.

use super::disk::Disk;
use super::simulator::Simulator;
use super::trace::TraceEvent;
use raftlite::core::{ClusterId, Entry, EntryKind, HardState, LogIndex, Term};
use raftlite::kv::{Command, LogRecord};

/// Entries the foreign log holds past our committed history, at our last
/// committed term: its first leader kept writing.
const FOREIGN_ENTRIES_AHEAD_MAX: u64 = 20;

impl Simulator {
    pub(super) fn foreign_log(&mut self) {
        let quorum = self.options.size / 2 + 1;
        let committed = self.checker.history.last_index();
        if committed == LogIndex(0) {
            return;
        }
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|&node| self.nodes[node].is_up() && !self.nodes[node].is_stale())
            .filter(|&node| self.others_bound(node) >= quorum)
            .filter(|&node| self.nodes[node].disk.last_index() <= committed)
            .filter(|&node| !self.nodes[node].disk.has_pending())
            .filter(|&node| self.checker.others_holding_history(&self.nodes, node) >= quorum)
            .collect();
        let Some(node) = self.pick_from(&candidates) else {
            return;
        };
        self.power_off(node);
        let (cluster_id, image) = self.foreign_image(node);
        let (term, entries) = (image.hard_state().current_term, image.last_index().0);
        self.nodes[node].disk = image;
        self.checker.node_took_foreign_log(node, cluster_id);
        self.stats.faults.foreign_logs += 1;
        self.record(TraceEvent::ForeignLog {
            node,
            term,
            entries,
        });
        self.restart_soon(node);
    }

    /// The data dir of another cluster's node that never bound: its own
    /// Bootstrap, then writes to the workload's keys with values no client
    /// writes, at our history's terms and a few past it at its last term.
    fn foreign_image(&mut self, node: usize) -> (ClusterId, Disk) {
        let ours = self.checker.history.cluster_id();
        let mut cluster_id = ClusterId(self.rng.faults.next_u64() | 1);
        if Some(cluster_id) == ours {
            cluster_id = ClusterId(cluster_id.0 ^ 2);
        }
        let history = &self.checker.history;
        let committed = history.last_index();
        let last_term = history.get(committed).map_or(Term(1), |entry| entry.term);
        let ahead = self
            .rng
            .faults
            .range_inclusive(0, FOREIGN_ENTRIES_AHEAD_MAX);
        let term_at = |index: u64| history.get(LogIndex(index)).map_or(last_term, |e| e.term);
        let mut entries = vec![Entry {
            term: term_at(1),
            index: LogIndex(1),
            kind: EntryKind::Bootstrap,
            data: cluster_id.to_bytes().as_slice().into(),
        }];
        for index in 2..=committed.0 + ahead {
            entries.push(Entry {
                term: term_at(index),
                index: LogIndex(index),
                kind: EntryKind::Command,
                data: foreign_command(node, index).as_slice().into(),
            });
        }
        let own = self.nodes[node].disk.hard_state();
        let hard_state = match own.current_term < last_term {
            true => HardState {
                current_term: last_term,
                voted_for: None,
                cluster_id: None,
            },
            false => HardState {
                cluster_id: None,
                ..own
            },
        };
        (cluster_id, Disk::with_image(hard_state, &entries))
    }
}

fn foreign_command(node: usize, index: u64) -> Vec<u8> {
    let key = format!("k{}", index % super::options::KEYS_COUNT);
    let command = Command::Set {
        key: key.into_bytes(),
        value: format!("foreign-n{node}-{index}").into_bytes(),
    };
    let mut data = Vec::new();
    LogRecord::Command {
        session: None,
        command,
    }
    .encode(&mut data);
    data
}
