//! What a leader knows about each follower (Figure 2, "Volatile state on
//! leaders"), plus the flow control that makes pipelining safe.

use super::config::Limits;
use super::types::{LogIndex, Term};
use crate::constants::CLUSTER_SIZE_MAX;
use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// Where the follower's log matches is unknown: one AppendEntries at a
    /// time, retried on each heartbeat, until one succeeds.
    Probe,
    /// The follower matched: stream batches without waiting for replies, up
    /// to the in-flight window.
    Replicate,
    /// The follower needs an entry the leader no longer holds: stream it
    /// the snapshot instead, chunk by chunk (as etcd's StateSnapshot).
    /// No entries go meanwhile; heartbeats still do.
    Snapshot(SnapshotTransfer),
}

/// A snapshot on its way to one follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotTransfer {
    /// Which snapshot: its index and term, and its file's size.
    pub index: LogIndex,
    pub term: Term,
    pub total_size: u64,
    /// Bytes the follower said it stored: a resume starts here.
    /// Invariant: stored <= sent_to <= total_size.
    pub stored: u64,
    /// Where the next chunk starts.
    pub sent_to: u64,
    /// Where the last OutOfOrder answer rewound the stream to: the answers
    /// to the chunks sent before that rewind name the same offset and are
    /// no news.
    pub rewound_to: Option<u64>,
    /// When the follower last reported progress: a transfer silent for an
    /// election timeout has lost its chunks and resumes from `stored`.
    pub progress_ms: u64,
}

impl SnapshotTransfer {
    pub fn new(index: LogIndex, term: Term, total_size: u64, now_ms: u64) -> SnapshotTransfer {
        assert!(total_size > 0, "an empty snapshot file");
        SnapshotTransfer {
            index,
            term,
            total_size,
            stored: 0,
            sent_to: 0,
            rewound_to: None,
            progress_ms: now_ms,
        }
    }

    /// The next chunk to send as (offset, size), if the window has room:
    /// at most `chunks_max` chunks of `chunk_size_max` bytes past `stored`.
    pub fn next_chunk(&mut self, chunk_size_max: usize, chunks_max: usize) -> Option<(u64, usize)> {
        let window = (chunk_size_max as u64).saturating_mul(chunks_max as u64);
        if self.sent_to >= self.total_size || self.sent_to - self.stored >= window {
            return None;
        }
        let offset = self.sent_to;
        let size = (self.total_size - offset).min(chunk_size_max as u64);
        self.sent_to += size;
        Some((offset, size as usize))
    }

    /// The follower took chunks up to `stored`.
    pub fn accepted(&mut self, stored: u64, now_ms: u64) {
        if stored <= self.stored || stored > self.total_size {
            return; // stale, or nonsense
        }
        self.stored = stored;
        self.sent_to = self.sent_to.max(stored);
        self.progress_ms = now_ms;
    }

    /// The follower holds `stored` bytes and got a chunk that starts
    /// elsewhere: chunks were lost (or it restarted). Send again from
    /// there, once per gap.
    pub fn out_of_order(&mut self, stored: u64, now_ms: u64) {
        if stored > self.total_size || self.rewound_to == Some(stored) {
            return;
        }
        self.stored = stored;
        self.sent_to = stored;
        self.rewound_to = Some(stored);
        self.progress_ms = now_ms;
    }

    /// Start over from the follower's last report (lost connection, or
    /// silence).
    pub fn resume(&mut self, now_ms: u64) {
        self.sent_to = self.stored;
        self.rewound_to = None;
        self.progress_ms = now_ms;
    }

    /// Start over from the first byte (the follower's check failed).
    pub fn restart(&mut self, now_ms: u64) {
        self.stored = 0;
        self.resume(now_ms);
    }
}

#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known to be replicated on the follower.
    /// Invariant: match_index < next_index.
    pub match_index: LogIndex,
    /// Next index to send.
    pub next_index: LogIndex,
    pub state: ProgressState,
    /// Probe only: an AppendEntries is outstanding; wait for its answer or the
    /// next heartbeat before sending another.
    pub probe_sent: bool,
    /// Replicate only: last index and entry bytes of each AppendEntries in
    /// flight, oldest first. Bounded by `inflight_appends_max`.
    inflights: VecDeque<(LogIndex, usize)>,
    /// Sum of the bytes in `inflights`.
    inflight_bytes: usize,
    /// The window (`Limits`): full at either bound. It is checked before a
    /// batch goes, not against the batch's size, so an empty window always
    /// admits one batch, however large.
    inflight_appends_max: usize,
    inflight_bytes_max: usize,
    /// When the leader last heard from this follower (CheckQuorum).
    pub last_contact_ms: u64,
    /// Highest heartbeat round the follower has answered (ReadIndex).
    pub round_acknowledged: u64,
    /// Its last answer said it is bound to the cluster (`HardState::
    /// cluster_id`): only then do its acknowledgements count for commands.
    pub bound: bool,
}

impl Progress {
    /// `now_ms` counts as a contact: a new leader gives every follower one
    /// election timeout before CheckQuorum judges it.
    pub fn new(next_index: LogIndex, now_ms: u64, limits: &Limits) -> Progress {
        assert!(next_index.0 >= 1);
        assert!(limits.inflight_appends_max >= 1 && limits.inflight_bytes_max >= 1);
        Progress {
            match_index: LogIndex(0),
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflights: VecDeque::with_capacity(limits.inflight_appends_max),
            inflight_bytes: 0,
            inflight_appends_max: limits.inflight_appends_max,
            inflight_bytes_max: limits.inflight_bytes_max,
            last_contact_ms: now_ms,
            round_acknowledged: 0,
            bound: false,
        }
    }

    pub fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.next_index = self.match_index.next();
        self.probe_sent = false;
        self.clear_inflights();
    }

    /// Stream `transfer` to the follower; next_index stays where the
    /// follower's need was found.
    pub fn become_snapshot(&mut self, transfer: SnapshotTransfer) {
        self.state = ProgressState::Snapshot(transfer);
        self.probe_sent = false;
        self.clear_inflights();
    }

    /// The snapshot being streamed, if any.
    pub fn snapshot_transfer(&mut self) -> Option<&mut SnapshotTransfer> {
        match &mut self.state {
            ProgressState::Snapshot(transfer) => Some(transfer),
            _ => None,
        }
    }

    pub fn is_snapshot(&self) -> bool {
        matches!(self.state, ProgressState::Snapshot(_))
    }

    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index.next();
        self.probe_sent = false;
        self.clear_inflights();
    }

    fn clear_inflights(&mut self) {
        self.inflights.clear();
        self.inflight_bytes = 0;
    }

    /// A success for `index` arrived. Returns false if it told nothing new.
    pub fn acknowledge(&mut self, index: LogIndex) -> bool {
        self.probe_sent = false;
        if index <= self.match_index {
            return false;
        }
        self.match_index = index;
        if self.next_index <= index {
            self.next_index = index.next();
        }
        while let Some(&(last, bytes)) = self.inflights.front() {
            if last > index {
                break;
            }
            self.inflights.pop_front();
            self.inflight_bytes -= bytes;
        }
        true
    }

    pub fn inflights_full(&self) -> bool {
        self.inflights.len() >= self.inflight_appends_max
            || self.inflight_bytes >= self.inflight_bytes_max
    }

    /// Records a batch ending at `last_index`, holding `bytes` of entries
    /// (`Entry::size_bytes`), as sent.
    pub fn sent(&mut self, last_index: LogIndex, bytes: usize) {
        match self.state {
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Replicate => {
                assert!(!self.inflights_full(), "in-flight window overflow");
                self.inflights.push_back((last_index, bytes));
                self.inflight_bytes += bytes;
                self.next_index = last_index.next();
            }
            ProgressState::Snapshot(_) => panic!("entries sent to a follower in Snapshot state"),
        }
    }

    /// May a batch of entries go out now?
    pub fn can_send_entries(&self) -> bool {
        match self.state {
            ProgressState::Probe => !self.probe_sent,
            ProgressState::Replicate => !self.inflights_full(),
            ProgressState::Snapshot(_) => false,
        }
    }

    /// May a snapshot chunk go out now?
    pub fn has_chunk_to_send(&self, chunk_size_max: usize, chunks_max: usize) -> bool {
        match self.state {
            ProgressState::Snapshot(mut transfer) => {
                transfer.next_chunk(chunk_size_max, chunks_max).is_some()
            }
            _ => false,
        }
    }
}

/// The highest value at least `quorum` of `values` reach (one value per
/// member). On the stack: a leader asks on every acknowledgement.
pub fn quorum_value<T: Copy + Ord + Default>(
    values: impl IntoIterator<Item = T>,
    quorum: usize,
) -> T {
    let mut slots = [T::default(); CLUSTER_SIZE_MAX];
    let mut count = 0;
    for value in values {
        assert!(count < CLUSTER_SIZE_MAX, "more values than members");
        slots[count] = value;
        count += 1;
    }
    assert!(quorum >= 1 && quorum <= count, "quorum {quorum} of {count}");
    let slots = &mut slots[..count];
    slots.sort_unstable_by(|a, b| b.cmp(a));
    slots[quorum - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::{INFLIGHT_APPENDS_MAX, INFLIGHT_BYTES_MAX};

    fn progress_at(next_index: u64) -> Progress {
        Progress::new(LogIndex(next_index), 0, &Limits::default())
    }

    #[test]
    fn acknowledge_frees_inflights_up_to_index() {
        let mut progress = progress_at(1);
        progress.become_replicate();
        progress.sent(LogIndex(3), 30);
        progress.sent(LogIndex(6), 30);
        progress.sent(LogIndex(9), 30);
        assert_eq!(progress.next_index, LogIndex(10));
        assert!(progress.acknowledge(LogIndex(6)));
        assert_eq!(progress.inflights.len(), 1);
        assert_eq!(progress.inflight_bytes, 30);
        assert!(!progress.acknowledge(LogIndex(4)), "stale ack is no news");
        assert_eq!(progress.match_index, LogIndex(6));
    }

    #[test]
    fn window_fills_at_its_bound() {
        let mut progress = progress_at(1);
        progress.become_replicate();
        for index in 1..=INFLIGHT_APPENDS_MAX as u64 {
            assert!(progress.can_send_entries());
            progress.sent(LogIndex(index), 10);
        }
        assert!(!progress.can_send_entries());
    }

    #[test]
    fn window_fills_at_its_byte_bound_and_admits_one_large_batch() {
        let mut progress = progress_at(1);
        progress.become_replicate();
        progress.sent(LogIndex(1), INFLIGHT_BYTES_MAX + 1);
        assert!(!progress.can_send_entries(), "bytes, not count, fill it");
        assert!(progress.acknowledge(LogIndex(1)));
        assert!(progress.can_send_entries());
        progress.sent(LogIndex(2), INFLIGHT_BYTES_MAX / 2);
        assert!(progress.can_send_entries());
        progress.sent(LogIndex(3), INFLIGHT_BYTES_MAX / 2);
        assert!(!progress.can_send_entries());
        progress.become_probe();
        progress.become_replicate();
        assert!(progress.can_send_entries(), "a reset empties the window");
    }

    #[test]
    fn smallest_window_holds_one_batch_at_a_time() {
        let limits = Limits {
            inflight_appends_max: 1,
            inflight_bytes_max: 1,
            ..Limits::default()
        };
        let mut progress = Progress::new(LogIndex(1), 0, &limits);
        progress.become_replicate();
        assert!(
            progress.can_send_entries(),
            "an empty window admits a batch"
        );
        progress.sent(LogIndex(4), 1000);
        assert!(!progress.can_send_entries());
        assert!(progress.acknowledge(LogIndex(4)));
        assert!(progress.can_send_entries());
    }

    #[test]
    fn quorum_value_is_what_a_majority_reaches() {
        assert_eq!(quorum_value([7], 1), 7);
        assert_eq!(quorum_value([3, 9, 5], 2), 5);
        assert_eq!(quorum_value([1, 1, 4, 2, 8], 3), 2);
        assert_eq!(quorum_value([1, 1, 4, 2, 8], 5), 1);
    }

    #[test]
    fn probe_sends_one_at_a_time() {
        let mut progress = progress_at(5);
        assert!(progress.can_send_entries());
        progress.sent(LogIndex(7), 10);
        assert!(!progress.can_send_entries());
        assert_eq!(
            progress.next_index,
            LogIndex(5),
            "probe does not advance next"
        );
    }
}
