//! Log replication (§5.3) and commitment (§5.4.2): the follower's
//! AppendEntries receiver and the leader's side, with pipelining per
//! follower and fast backtracking.

use super::config::Limits;
use super::message::*;
use super::planted::PlantedBug;
use super::progress::{quorum_value, Progress, ProgressState};
use super::raft::{Envelope, Raft};
use super::raft_log::RaftLog;
use super::ready::{Event, Ready};
use super::role::{LeaderState, RoleState};
use super::snapshot::{start_transfer, transfer_done, Snapshots};
use super::types::*;
use std::collections::BTreeMap;

// ---- the follower's side ---------------------------------------------

impl Raft {
    /// Figure 2, AppendEntries receiver: the consistency check
    /// (`RaftLog::matches`, §5.3), then conflicting entries out and new ones
    /// in (`RaftLog::append_from_leader`), then the commit index
    /// (`commit_from_leader`). Step 1 (a stale term) is `answer_stale`'s.
    pub(super) fn handle_append_entries(
        &mut self,
        leader: NodeId,
        cluster: ClusterTag,
        request: AppendEntries,
    ) {
        self.heard_from_leader(leader);
        self.reset_election_deadline();
        let prev_index = request.prev_log_index;
        if cluster.diverges_from(self.cluster_tag()) && !self.drop_diverged_log(prev_index) {
            let response = AppendEntriesResponse {
                success: false,
                index: prev_index,
                conflict_term: None,
                conflict_index: LogIndex(1),
                round: request.round,
            };
            self.send_after_persist(leader, MessageBody::AppendEntriesResponse(response));
            return;
        }
        if prev_index < self.log.base_index() {
            return self.answer_below_base(leader, request.round);
        }
        if !self.log.matches(prev_index, request.prev_log_term) {
            let response = self.rejection(prev_index, request.round);
            self.send_after_persist(leader, MessageBody::AppendEntriesResponse(response));
            return;
        }
        if self.is_foreign_bootstrap(&request.entries) {
            return; // another cluster's log: never let it replace ours
        }
        if self.planted(PlantedBug::TruncateOnMatchingAppend) {
            self.log.planted_cut_after(prev_index);
        }
        let last_before = self.log.last_index();
        let last_new = self.log.append_from_leader(prev_index, request.entries);
        if self.log.last_index() < last_before {
            let from = self.log.last_index().next();
            self.ready.events.push(Event::LogTruncated { from });
        }
        self.commit_from_leader(request.leader_commit, last_new);
        let response = AppendEntriesResponse {
            success: true,
            index: last_new,
            conflict_term: None,
            conflict_index: LogIndex(0),
            round: request.round,
        };
        self.send_after_persist(leader, MessageBody::AppendEntriesResponse(response));
    }

    /// A request from below our base, whose entries are gone into our
    /// snapshot: they are committed, so the leader holds them too (Leader
    /// Completeness, §5.4) and our log matches its up to our commit index.
    /// Answered as etcd does; the leader sends on from there.
    fn answer_below_base(&mut self, leader: NodeId, round: u64) {
        let response = AppendEntriesResponse {
            success: true,
            index: self.log.commit_index(),
            conflict_term: None,
            conflict_index: LogIndex(0),
            round,
        };
        self.send_after_persist(leader, MessageBody::AppendEntriesResponse(response));
    }

    /// Figure 2, AppendEntries receiver, step 5: "If leaderCommit >
    /// commitIndex, set commitIndex = min(leaderCommit, index of last new
    /// entry)". Past the last new entry our log may still differ from the
    /// leader's.
    fn commit_from_leader(&mut self, leader_commit: LogIndex, last_new: LogIndex) {
        let commit = leader_commit.min(last_new);
        if self.log.commit_to(commit) {
            self.ready.events.push(Event::CommitAdvanced {
                commit_index: commit,
            });
            self.bind_to_cluster();
        }
    }

    /// The leader's first entry is not ours, so our logs differ from index
    /// 1 on, even where their terms agree. Ours was never committed (or we
    /// would know our cluster and not listen), so it can go. Returns whether
    /// the request can proceed: only one that starts at index 1 can.
    fn drop_diverged_log(&mut self, prev_index: LogIndex) -> bool {
        if prev_index != LogIndex(0) {
            return false;
        }
        assert!(!self.knows_cluster(), "dropping a known cluster's log");
        if self.log.last_index() > LogIndex(0) {
            self.log.truncate_all_uncommitted();
            self.ready
                .events
                .push(Event::LogTruncated { from: LogIndex(1) });
        }
        true
    }

    /// A request that would make another cluster's Bootstrap entry ours.
    fn is_foreign_bootstrap(&self, entries: &[Entry]) -> bool {
        let Some(ours) = self.hard_state.cluster_id else {
            return false;
        };
        entries
            .first()
            .filter(|entry| entry.index == LogIndex(1))
            .is_some_and(|entry| ClusterId::of_bootstrap(entry) != Some(ours))
    }

    /// Fast backtracking: name our term at `prev_index` and where it starts,
    /// so the leader can skip a whole term per round trip.
    fn rejection(&self, prev_index: LogIndex, round: u64) -> AppendEntriesResponse {
        let (conflict_term, conflict_index) = match self.log.term_at(prev_index) {
            None => (None, self.log.last_index().next()),
            Some(term) => {
                let first = self.log.first_index_of_term(term, prev_index);
                (Some(term), first.max(self.log.commit_index().next()))
            }
        };
        AppendEntriesResponse {
            success: false,
            index: prev_index,
            conflict_term,
            conflict_index,
            round,
        }
    }
}

// ---- the leader's side -----------------------------------------------

impl Raft {
    /// An answer to our AppendEntries. Figure 2, Leaders: a success updates
    /// the follower's match and next index (`Progress::acknowledge`), a
    /// rejection moves next_index back for a retry (`handle_rejection`).
    pub(super) fn handle_append_response(
        &mut self,
        follower: NodeId,
        bound: bool,
        response: &AppendEntriesResponse,
    ) {
        if is_stale_term_answer(response) {
            return; // its term was all it had to say, and `step` heard it
        }
        let now_ms = self.now_ms;
        let Raft {
            role: RoleState::Leader(leader),
            log,
            ready,
            ..
        } = self
        else {
            return;
        };
        let Some(progress) = leader.progress.get_mut(&follower) else {
            return;
        };
        // Any answer at our term shows the follower still takes us as leader.
        progress.last_contact_ms = now_ms;
        let newly_bound = bound && !progress.bound;
        progress.bound = bound;
        progress.round_acknowledged = progress.round_acknowledged.max(response.round);
        let commit_wanted = if progress.is_snapshot() {
            answer_during_transfer(log, progress, response) || newly_bound
        } else if response.success {
            handle_success(progress, response.index) || newly_bound
        } else {
            ready
                .events
                .extend(handle_rejection(log, follower, progress, response));
            false
        };
        self.confirm_reads();
        if commit_wanted {
            self.commit_by_majority();
        }
    }

    /// Figure 2, Leaders: "If there exists an N such that N > commitIndex,
    /// a majority of matchIndex[i] >= N, and log[N].term == currentTerm:
    /// set commitIndex = N" (§5.4.2; Figure 8 shows why the term matters).
    pub(super) fn commit_by_majority(&mut self) {
        let RoleState::Leader(leader) = &self.role else {
            return;
        };
        let stored = self.majority_index(leader, |_, match_index| match_index);
        let old_term = self.log.term_at(stored) != Some(self.hard_state.current_term);
        if old_term && !self.planted(PlantedBug::CommitOldTermByCount) {
            return;
        }
        // Everything up to `stored` is committed; of it, commands only as
        // far as a majority bound to the cluster holds them. The rest of
        // the prefix (the Bootstrap, no-ops) commits anyway, which is what
        // binds everyone.
        let candidate = self.majority_index(leader, |bound, match_index| {
            self.countable(bound, match_index)
        });
        if candidate <= self.log.commit_index() {
            return;
        }
        self.log.commit_to(candidate);
        self.ready.events.push(Event::CommitAdvanced {
            commit_index: candidate,
        });
        self.bind_to_cluster();
        self.release_reads_waiting_for_commit();
    }

    /// The highest index a majority holds, each node's match (ours: our
    /// durable log; bound: durably, if the Ready with our binding is
    /// persisted) seen through `count`.
    fn majority_index(
        &self,
        leader: &LeaderState,
        count: impl Fn(bool, LogIndex) -> LogIndex,
    ) -> LogIndex {
        let configuration = self.configuration();
        let own = configuration.is_voter(self.config.id).then(|| {
            count(
                self.durable_cluster_id.is_some(),
                self.log.persisted_index(),
            )
        });
        // A learner's acknowledgement never counts (its log may be far
        // behind, and no majority includes it).
        let voters = leader.progress.iter();
        let voters = voters.filter(|(&id, _)| configuration.is_voter(id));
        let matched = voters.map(|(_, progress)| count(progress.bound, progress.match_index));
        quorum_value(matched.chain(own), configuration.quorum())
    }

    /// How much of a node's match counts toward committing commands: all of
    /// it once the node is bound to the cluster, else what precedes the
    /// first command (every node that holds an acknowledged write is bound,
    /// so a stale member of another cluster cannot win a majority of them).
    fn countable(&self, bound: bool, match_index: LogIndex) -> LogIndex {
        if bound || !self.log.first_is_bootstrap() || self.planted(PlantedBug::CountUnboundAcks) {
            return match_index;
        }
        match_index.min(self.log.first_command_index().prev())
    }

    /// Figure 2, Leaders: heartbeats "during idle periods to prevent
    /// election timeouts"; they also carry the read round (§6.4).
    pub(super) fn broadcast_heartbeat(&mut self) {
        let Some((mut appender, peers)) = self.appender() else {
            return;
        };
        for (&peer, progress) in peers {
            appender.start_snapshot_if_needed(peer, progress);
            appender.send_heartbeat(peer, progress);
        }
    }

    /// Figure 2, Leaders: "If last log index >= nextIndex for a follower:
    /// send AppendEntries RPC with log entries starting at nextIndex": every
    /// batch the window allows, to every peer.
    pub(super) fn send_pending_appends(&mut self) {
        let Some((mut appender, peers)) = self.appender() else {
            return;
        };
        for (&peer, progress) in peers {
            appender.start_snapshot_if_needed(peer, progress);
            while appender.send_append(peer, progress) {}
            while appender.send_chunk(peer, progress) {}
        }
    }

    /// The leader's progress per peer, borrowed apart from what its
    /// AppendEntries are made of, so that it can update each peer's as it
    /// sends. None unless leader.
    fn appender(&mut self) -> Option<(Appender<'_>, &mut BTreeMap<NodeId, Progress>)> {
        let envelope = self.envelope();
        let Raft {
            role: RoleState::Leader(leader),
            log,
            config,
            ready,
            snapshots,
            now_ms,
            ..
        } = self
        else {
            return None;
        };
        let Ready {
            messages,
            snapshot_chunks_to_send,
            events,
            ..
        } = ready;
        let appender = Appender {
            log,
            limits: &config.limits,
            envelope,
            round: leader.reads.round(),
            messages,
            snapshots,
            chunks: snapshot_chunks_to_send,
            events,
            now_ms: *now_ms,
            transfer_silence_ms_max: config.election_timeout_ms_min,
        };
        Some((appender, &mut leader.progress))
    }
}

/// What a leader's AppendEntries are made of, and where they go.
struct Appender<'a> {
    log: &'a RaftLog,
    limits: &'a Limits,
    envelope: Envelope,
    /// The read round every AppendEntries carries (§6.4).
    round: u64,
    messages: &'a mut Vec<Message>,
    snapshots: &'a Snapshots,
    chunks: &'a mut Vec<ChunkToSend>,
    events: &'a mut Vec<Event>,
    now_ms: u64,
    /// A snapshot transfer the follower has not answered for this long
    /// lost its chunks: it resumes from what the follower last stored.
    transfer_silence_ms_max: u64,
}

impl Appender<'_> {
    /// A follower that needs an entry we no longer hold (below our first
    /// index, where its rejections or its log's end led next_index) gets
    /// the newest snapshot instead; only such a follower does.
    fn start_snapshot_if_needed(&mut self, peer: NodeId, progress: &mut Progress) {
        if progress.is_snapshot() || progress.next_index >= self.log.first_index() {
            return;
        }
        let snapshot = self
            .snapshots
            .newest()
            .expect("log compacted without a snapshot");
        start_transfer(peer, progress, snapshot, self.now_ms, self.events);
    }

    /// The next chunk of the snapshot `peer` is in, if the window has room.
    /// A transfer of a snapshot storage has since let go (two newer ones
    /// are durable) starts over with the newest. Returns whether it sent.
    fn send_chunk(&mut self, peer: NodeId, progress: &mut Progress) -> bool {
        let Some(transfer) = progress.snapshot_transfer() else {
            return false;
        };
        let Some(snapshot) = self.snapshots.find(transfer.index, transfer.term) else {
            let newest = self.snapshots.newest().expect("a snapshot was streamed");
            start_transfer(peer, progress, newest, self.now_ms, self.events);
            return true;
        };
        let chunk_size_max = self.limits.snapshot_chunk_size_max;
        let chunks_max = self.limits.inflight_snapshot_chunks_max;
        let Some((offset, size)) = transfer.next_chunk(chunk_size_max, chunks_max) else {
            return false;
        };
        self.chunks.push(ChunkToSend {
            from: self.envelope.from,
            to: peer,
            term: self.envelope.term,
            cluster: self.envelope.cluster,
            meta: snapshot.meta.clone(),
            offset,
            size,
            total_size: transfer.total_size,
        });
        true
    }

    /// An empty AppendEntries at next_index - 1. In Probe it re-sends the
    /// probe (the last one may be lost); in Replicate a rejection reveals
    /// lost batches. In Snapshot it goes at our base: it holds off the
    /// follower's election, carries the read round, and a success says the
    /// follower no longer needs the snapshot; a transfer gone silent
    /// resumes.
    fn send_heartbeat(&mut self, peer: NodeId, progress: &mut Progress) {
        if let Some(transfer) = progress.snapshot_transfer() {
            if self.now_ms >= transfer.progress_ms + self.transfer_silence_ms_max {
                transfer.resume(self.now_ms);
            }
            return self.send_request(peer, self.log.base_index(), Vec::new());
        }
        if progress.state == ProgressState::Probe {
            progress.probe_sent = false;
            if self.send_append(peer, progress) {
                return;
            }
        }
        self.send_request(peer, progress.next_index.prev(), Vec::new());
    }

    /// Sends one batch to `peer` if flow control allows and it has entries to
    /// receive. Returns whether it sent.
    fn send_append(&mut self, peer: NodeId, progress: &mut Progress) -> bool {
        if !progress.can_send_entries() || progress.next_index > self.log.last_index() {
            return false;
        }
        let next_index = progress.next_index;
        let entries = self.log.entries_from(
            next_index,
            self.limits.append_batch_entries_max,
            self.limits.append_batch_size_max,
        );
        let Some(last) = entries.last().map(|entry| entry.index) else {
            return false;
        };
        let bytes = entries.iter().map(Entry::size_bytes).sum();
        self.send_request(peer, next_index.prev(), entries);
        progress.sent(last, bytes);
        true
    }

    fn send_request(&mut self, peer: NodeId, prev_log_index: LogIndex, entries: Vec<Entry>) {
        let Some(prev_log_term) = self.log.term_at(prev_log_index) else {
            panic!("prev index {prev_log_index} beyond the leader's log");
        };
        let request = AppendEntries {
            prev_log_index,
            prev_log_term,
            leader_commit: self.log.commit_index(),
            round: self.round,
            entries,
        };
        let message = self.envelope.to(peer, MessageBody::AppendEntries(request));
        self.messages.push(message);
    }
}

/// An answer to an AppendEntries (a heartbeat, mostly) while a snapshot
/// streams to the follower: a success at or past our base says its log
/// matches where ours begins, so entries can reach it after all.
/// Rejections say nothing the transfer does not know. Returns whether the
/// answer told anything new.
fn answer_during_transfer(
    log: &RaftLog,
    progress: &mut Progress,
    response: &AppendEntriesResponse,
) -> bool {
    if !response.success || response.index < log.base_index() {
        return false;
    }
    transfer_done(progress, response.index)
}

/// `answer_stale` marks its replies with conflict index 0, which a real
/// rejection never carries (its hint is at least 1).
fn is_stale_term_answer(response: &AppendEntriesResponse) -> bool {
    !response.success && response.conflict_index == LogIndex(0)
}

/// The follower matches up to `index`: a first match ends probing. Returns
/// whether it told anything new.
fn handle_success(progress: &mut Progress, index: LogIndex) -> bool {
    let news = progress.acknowledge(index);
    if news && progress.state == ProgressState::Probe {
        progress.become_replicate();
    }
    news
}

/// Figure 2, Leaders: "If AppendEntries fails because of log inconsistency:
/// decrement nextIndex and retry", a whole term at a time
/// (`next_after_rejection`). The retry waits for the next Ready or
/// heartbeat. Returns an event worth logging, if any.
fn handle_rejection(
    log: &RaftLog,
    follower: NodeId,
    progress: &mut Progress,
    response: &AppendEntriesResponse,
) -> Option<Event> {
    if response.index <= progress.match_index {
        return check_lost_entries(follower, progress, response);
    }
    if progress.state == ProgressState::Probe && response.index.next() != progress.next_index {
        return None; // answer to an older probe
    }
    let next = next_after_rejection(log, progress, response);
    progress.become_probe();
    progress.next_index = next;
    None
}

/// A rejection below what the follower acknowledged is usually stale
/// (reordered). But if it says the follower's log now ends below its
/// match index, the follower lost acknowledged entries (its data dir was
/// wiped): start over from where its log ends, or it would never catch
/// up. Lowering match_index is always safe; it only delays commits.
fn check_lost_entries(
    follower: NodeId,
    progress: &mut Progress,
    response: &AppendEntriesResponse,
) -> Option<Event> {
    if response.conflict_term.is_some() || response.conflict_index > progress.match_index {
        return None;
    }
    let acknowledged = progress.match_index;
    progress.match_index = response.conflict_index.prev();
    progress.become_probe();
    Some(Event::FollowerLostEntries {
        follower,
        acknowledged,
        last_index: response.conflict_index.prev(),
    })
}

/// Fast backtracking: past the follower's conflicting term, or where its
/// log ends.
fn next_after_rejection(
    log: &RaftLog,
    progress: &Progress,
    response: &AppendEntriesResponse,
) -> LogIndex {
    let hinted = match response.conflict_term {
        Some(term) => log
            .last_index_of_term(term)
            .map_or(response.conflict_index, |last| last.next()),
        None => response.conflict_index,
    };
    // Move strictly below the rejected prev index, never below the match.
    hinted.min(response.index).max(progress.match_index.next())
}
