//! Snapshot tests in the style of `paper_tests.rs`: one node, n0, driven by
//! hand, one rule per test (§7 of the paper; chapter 5 of the
//! dissertation), checked on what it hands the runtime and what it sends.
//! The leader's snapshot file is 10 bytes unless a test says otherwise;
//! with `small_limits` a chunk holds 3 bytes and 2 may be in flight.

use super::tests::{config, ELECTION_MIN};
use super::*;

const US: NodeId = NodeId(0);
const CLUSTER: ClusterId = ClusterId(0xc1);
const OTHER_CLUSTER: ClusterId = ClusterId(0xd2);
const SNAPSHOT_SIZE: u64 = 10;

// ---- building nodes ---------------------------------------------------------

fn meta(index: u64, term: u64) -> SnapshotMeta {
    SnapshotMeta {
        index: LogIndex(index),
        term: Term(term),
        cluster_id: Some(CLUSTER),
        voters: vec![NodeId(0), NodeId(1), NodeId(2)],
    }
}

/// Entries `first..` of `terms`; index 1 is the cluster's Bootstrap.
fn entries(first: u64, terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .zip(first..)
        .map(|(&term, index)| match index {
            1 => Entry {
                kind: EntryKind::Bootstrap,
                ..Entry::command(1, term, &CLUSTER.to_bytes())
            },
            _ => Entry::command(index, term, &[term as u8]),
        })
        .collect()
}

/// Chunks of 3 bytes, two in flight.
fn small_limits() -> Limits {
    Limits {
        snapshot_chunk_size_max: 3,
        inflight_snapshot_chunks_max: 2,
        ..Limits::default()
    }
}

/// n0 of 3 at `term`, restored from a snapshot at (index, term) and the
/// entries of `tail_terms` from `tail_first` on.
fn restored(term: u64, snapshot: (u64, u64), tail_first: u64, tail_terms: &[u64]) -> Raft {
    let mut config = config(0, 3);
    config.limits = small_limits();
    let hard_state = HardState {
        current_term: Term(term),
        voted_for: None,
        cluster_id: Some(CLUSTER),
    };
    let snapshot = StoredSnapshot {
        meta: meta(snapshot.0, snapshot.1),
        size_bytes: SNAPSHOT_SIZE,
    };
    let tail = entries(tail_first, tail_terms);
    Raft::restore(config, hard_state, Some(snapshot), tail, 0).expect("valid")
}

/// n0 of 3 at `term` with the log of `terms` (from index 1), nothing
/// committed, not bound.
fn follower(term: u64, terms: &[u64]) -> Raft {
    let mut config = config(0, 3);
    config.limits = small_limits();
    let hard_state = HardState {
        current_term: Term(term),
        ..HardState::default()
    };
    Raft::new(config, hard_state, entries(1, terms), 0).expect("valid")
}

fn time_out(raft: &mut Raft) {
    let deadline = raft.next_deadline_ms();
    raft.advance_time(deadline);
}

/// Elected by n1 in the next term; its first Ready taken.
fn elect(mut raft: Raft) -> Raft {
    time_out(&mut raft);
    let term = raft.current_term().0;
    raft.step(to_us(1, term, vote_answer()));
    raft.ready();
    assert_eq!(raft.role(), Role::Leader);
    raft
}

/// The leader of term 2 with a snapshot at 10 and entries 11, 12 (and its
/// no-op, 13): it streams the snapshot to whoever needs index 10 or less.
fn leader() -> Raft {
    elect(restored(1, (10, 1), 11, &[1, 1]))
}

// ---- building messages ------------------------------------------------------

/// What n1 and n2 say of their cluster: bound to ours.
fn bound_tag() -> ClusterTag {
    ClusterTag {
        log_id: Some(CLUSTER),
        bound: true,
    }
}

fn to_us(from: u32, term: u64, body: MessageBody) -> Message {
    Message {
        from: NodeId(from),
        to: US,
        term: Term(term),
        cluster: bound_tag(),
        body,
    }
}

fn vote_answer() -> MessageBody {
    MessageBody::RequestVoteResponse(RequestVoteResponse {
        vote_granted: true,
        pre_vote: false,
    })
}

fn rejection(prev_index: u64, conflict_index: u64) -> MessageBody {
    MessageBody::AppendEntriesResponse(AppendEntriesResponse {
        success: false,
        index: LogIndex(prev_index),
        conflict_term: None,
        conflict_index: LogIndex(conflict_index),
        round: 0,
    })
}

fn success(index: u64) -> MessageBody {
    MessageBody::AppendEntriesResponse(AppendEntriesResponse {
        success: true,
        index: LogIndex(index),
        conflict_term: None,
        conflict_index: LogIndex(0),
        round: 0,
    })
}

fn snapshot_answer(index: u64, term: u64, status: SnapshotStatus) -> MessageBody {
    MessageBody::InstallSnapshotResponse(InstallSnapshotResponse {
        index: LogIndex(index),
        term: Term(term),
        status,
    })
}

/// A chunk of the snapshot at (index, term) of a `total`-byte file.
fn chunk(snapshot: (u64, u64), offset: u64, data: &[u8], total: u64) -> MessageBody {
    MessageBody::InstallSnapshot(InstallSnapshot {
        meta: meta(snapshot.0, snapshot.1),
        offset,
        total_size: total,
        data: data.into(),
    })
}

fn heartbeat(from: u32, term: u64, prev: (u64, u64), leader_commit: u64) -> Message {
    let request = AppendEntries {
        prev_log_index: LogIndex(prev.0),
        prev_log_term: Term(prev.1),
        leader_commit: LogIndex(leader_commit),
        round: 0,
        entries: Vec::new(),
    };
    to_us(from, term, MessageBody::AppendEntries(request))
}

// ---- reading a Ready --------------------------------------------------------

/// (offset, size) of the chunks for `to`.
fn chunks_to(ready: &Ready, to: u32) -> Vec<(u64, usize)> {
    ready
        .snapshot_chunks_to_send
        .iter()
        .filter(|chunk| chunk.to == NodeId(to))
        .map(|chunk| (chunk.offset, chunk.size))
        .collect()
}

/// (prev_log_index, entry count) of the AppendEntries to `to`.
fn appends_to(ready: &Ready, to: u32) -> Vec<(u64, usize)> {
    ready
        .messages
        .iter()
        .filter(|message| message.to == NodeId(to))
        .filter_map(|message| match &message.body {
            MessageBody::AppendEntries(request) => {
                Some((request.prev_log_index.0, request.entries.len()))
            }
            _ => None,
        })
        .collect()
}

fn snapshot_statuses(messages: &[Message]) -> Vec<(u64, SnapshotStatus)> {
    messages
        .iter()
        .filter_map(|message| match &message.body {
            MessageBody::InstallSnapshotResponse(response) => {
                Some((response.index.0, response.status))
            }
            _ => None,
        })
        .collect()
}

fn started_sends(ready: &Ready) -> Vec<(NodeId, LogIndex)> {
    ready
        .events
        .iter()
        .filter_map(|event| match event {
            Event::SnapshotSendStarted {
                follower, index, ..
            } => Some((*follower, *index)),
            _ => None,
        })
        .collect()
}

/// The leader, having learned that n1's log ends at `last` (a rejection of
/// its probe at 12), in its next Ready.
fn leader_told_n1_ends_at(last: u64) -> (Raft, Ready) {
    let mut raft = leader();
    raft.step(to_us(1, 2, rejection(12, last + 1)));
    let ready = raft.ready();
    raft.check_invariants();
    (raft, ready)
}

// ---- the leader -------------------------------------------------------------

/// Dissertation §5.1: "the leader must occasionally send snapshots to
/// followers that lag behind": one that needs an entry below the first the
/// leader holds gets the snapshot, and no entries.
#[test]
fn leader_streams_its_snapshot_to_a_follower_behind_its_first_index() {
    let (raft, ready) = leader_told_n1_ends_at(0);
    assert_eq!(raft.log().first_index(), LogIndex(11));
    assert_eq!(started_sends(&ready), [(NodeId(1), LogIndex(10))]);
    assert_eq!(
        chunks_to(&ready, 1),
        [(0, 3), (3, 3)],
        "a window of two chunks"
    );
    assert!(appends_to(&ready, 1).is_empty(), "no entries meanwhile");
    let chunk = &ready.snapshot_chunks_to_send[0];
    assert_eq!(chunk.meta, meta(10, 1));
    assert_eq!((chunk.term, chunk.total_size), (Term(2), SNAPSHOT_SIZE));
    assert!(chunks_to(&ready, 2).is_empty());
}

#[test]
fn a_rejection_hint_below_the_first_index_starts_a_snapshot_too() {
    let mut raft = leader();
    // n1 holds a conflicting term at 12 that began, it says, at 5.
    let response = AppendEntriesResponse {
        success: false,
        index: LogIndex(12),
        conflict_term: Some(Term(1)),
        conflict_index: LogIndex(5),
        round: 0,
    };
    raft.step(to_us(1, 2, MessageBody::AppendEntriesResponse(response)));
    let ready = raft.ready();
    assert!(started_sends(&ready).is_empty());
    assert_eq!(
        appends_to(&ready, 1),
        [(11, 2)],
        "our term 1 ends at 12, held: a retry below the rejected 12, by entries"
    );
    let mut raft = leader();
    raft.step(to_us(1, 2, rejection(12, 5)));
    let ready = raft.ready();
    assert_eq!(started_sends(&ready), [(NodeId(1), LogIndex(10))]);
}

/// Chunks follow one another at the offsets the follower reports, within
/// the window, up to the end of the file and no further.
#[test]
fn chunks_go_in_order_from_the_offset_the_follower_stored() {
    let (mut raft, _) = leader_told_n1_ends_at(0);
    raft.step(to_us(
        1,
        2,
        snapshot_answer(10, 1, SnapshotStatus::Accepted { stored: 3 }),
    ));
    assert_eq!(chunks_to(&raft.ready(), 1), [(6, 3)]);
    raft.step(to_us(
        1,
        2,
        snapshot_answer(10, 1, SnapshotStatus::Accepted { stored: 9 }),
    ));
    assert_eq!(
        chunks_to(&raft.ready(), 1),
        [(9, 1)],
        "the last byte, alone"
    );
    raft.step(to_us(
        1,
        2,
        snapshot_answer(10, 1, SnapshotStatus::Accepted { stored: 6 }),
    ));
    assert!(chunks_to(&raft.ready(), 1).is_empty(), "stale answer");
    assert!(!raft.has_ready());
    raft.check_invariants();
}

/// When the follower has installed it, the leader replicates from the
/// entry after the snapshot.
#[test]
fn an_installed_snapshot_is_followed_by_the_entries_after_it() {
    let (mut raft, _) = leader_told_n1_ends_at(0);
    let installed = SnapshotStatus::Installed {
        match_index: LogIndex(10),
    };
    raft.step(to_us(1, 2, snapshot_answer(10, 1, installed)));
    let ready = raft.ready();
    assert_eq!(appends_to(&ready, 1), [(10, 3)], "entries 11..=13 after it");
    assert!(chunks_to(&ready, 1).is_empty());
    raft.check_invariants();
}

/// LogCabin's chunks carry their byte offset so that a lost connection
/// resumes the transfer instead of restarting it.
#[test]
fn a_lost_connection_resumes_from_the_stored_offset() {
    let (mut raft, _) = leader_told_n1_ends_at(0);
    raft.step(to_us(
        1,
        2,
        snapshot_answer(10, 1, SnapshotStatus::Accepted { stored: 3 }),
    ));
    assert_eq!(chunks_to(&raft.ready(), 1), [(6, 3)]);
    raft.report_unreachable(NodeId(1));
    assert_eq!(chunks_to(&raft.ready(), 1), [(3, 3), (6, 3)]);
}

#[test]
fn a_transfer_silent_for_an_election_timeout_resumes_on_a_heartbeat() {
    let (mut raft, _) = leader_told_n1_ends_at(0);
    raft.step(to_us(
        1,
        2,
        snapshot_answer(10, 1, SnapshotStatus::Accepted { stored: 3 }),
    ));
    raft.ready();
    let heartbeat_ms = raft.next_deadline_ms();
    raft.advance_time(heartbeat_ms);
    let ready = raft.ready();
    assert!(chunks_to(&ready, 1).is_empty(), "not silent for long yet");
    assert_eq!(
        appends_to(&ready, 1),
        [(10, 0)],
        "the heartbeat goes at the base"
    );
    raft.advance_time(heartbeat_ms + ELECTION_MIN);
    assert_eq!(chunks_to(&raft.ready(), 1), [(3, 3), (6, 3)]);
}

#[test]
fn an_out_of_order_answer_rewinds_once_per_gap() {
    let (mut raft, _) = leader_told_n1_ends_at(0);
    // The chunk at 0 was lost: the one at 3 is refused.
    let out_of_order = SnapshotStatus::OutOfOrder { stored: 0 };
    raft.step(to_us(1, 2, snapshot_answer(10, 1, out_of_order)));
    assert_eq!(chunks_to(&raft.ready(), 1), [(0, 3), (3, 3)]);
    raft.step(to_us(1, 2, snapshot_answer(10, 1, out_of_order)));
    assert!(
        chunks_to(&raft.ready(), 1).is_empty(),
        "the echo of a chunk sent before the rewind"
    );
}

#[test]
fn a_failed_check_restarts_the_transfer() {
    let (mut raft, _) = leader_told_n1_ends_at(0);
    for stored in [3, 6, 9] {
        raft.step(to_us(
            1,
            2,
            snapshot_answer(10, 1, SnapshotStatus::Accepted { stored }),
        ));
        raft.ready();
    }
    raft.step(to_us(1, 2, snapshot_answer(10, 1, SnapshotStatus::Failed)));
    assert_eq!(chunks_to(&raft.ready(), 1), [(0, 3), (3, 3)]);
}

/// hashicorp/raft#212: a follower that installed a snapshot and fell
/// behind again within the log the leader kept catches up by entries; a
/// new snapshot goes only to a follower that needs an entry the leader no
/// longer holds.
#[test]
fn no_snapshot_loop_a_follower_within_the_kept_log_gets_entries() {
    // A snapshot at 10, the log kept from 9 on (the base is 8).
    let mut raft = elect(restored(1, (10, 1), 8, &[1, 1, 1, 1, 1]));
    assert_eq!(raft.log().first_index(), LogIndex(9));
    raft.step(to_us(1, 2, rejection(12, 9)));
    let ready = raft.ready();
    assert!(started_sends(&ready).is_empty());
    assert_eq!(appends_to(&ready, 1), [(8, 5)], "entries 9..=13");
    // It installed a snapshot once; then it lost entries past it again.
    let installed = SnapshotStatus::Installed {
        match_index: LogIndex(10),
    };
    raft.step(to_us(1, 2, snapshot_answer(10, 1, installed)));
    assert_eq!(appends_to(&raft.ready(), 1), [(10, 3)]);
    raft.report_unreachable(NodeId(1));
    let ready = raft.ready();
    assert!(started_sends(&ready).is_empty(), "{:?}", ready.events);
    assert!(chunks_to(&ready, 1).is_empty());
    assert_eq!(
        appends_to(&ready, 1),
        [(10, 3)],
        "probing after it, by entries"
    );
    raft.check_invariants();
}

/// A follower the leader streams to that turns out to match where the
/// leader's log begins (its answer to a heartbeat says so) needs no
/// snapshot after all.
#[test]
fn a_heartbeat_success_at_the_base_ends_the_transfer() {
    let (mut raft, _) = leader_told_n1_ends_at(0);
    raft.step(to_us(1, 2, rejection(10, 11)));
    assert!(
        appends_to(&raft.ready(), 1).is_empty(),
        "rejections change nothing"
    );
    raft.step(to_us(1, 2, success(10)));
    let ready = raft.ready();
    assert_eq!(appends_to(&ready, 1), [(10, 3)]);
    assert!(chunks_to(&ready, 1).is_empty());
}

#[test]
fn a_transfer_of_a_snapshot_storage_let_go_starts_over_with_the_newest() {
    let (mut raft, _) = leader_told_n1_ends_at(0);
    // The leader applies its entries and takes two newer snapshots.
    for index in 11..=13 {
        raft.step(to_us(2, 2, success(index)));
    }
    raft.persisted(LogIndex(13), Term(2));
    let ready = raft.ready();
    assert_eq!(ready.committed_entries.len(), 3);
    raft.snapshot_taken(meta(12, 1), 20);
    raft.step(to_us(
        1,
        2,
        snapshot_answer(10, 1, SnapshotStatus::Accepted { stored: 3 }),
    ));
    assert_eq!(chunks_to(&raft.ready(), 1), [(6, 3)], "10 is still kept");
    raft.snapshot_taken(meta(13, 2), 30);
    raft.step(to_us(
        1,
        2,
        snapshot_answer(10, 1, SnapshotStatus::Accepted { stored: 6 }),
    ));
    let ready = raft.ready();
    assert_eq!(started_sends(&ready), [(NodeId(1), LogIndex(13))]);
    assert_eq!(chunks_to(&ready, 1), [(0, 3), (3, 3)]);
    assert_eq!(ready.snapshot_chunks_to_send[0].meta.index, LogIndex(13));
}

#[test]
fn a_chunk_becomes_a_message_only_with_its_bytes() {
    let (_, ready) = leader_told_n1_ends_at(0);
    let chunk = ready.snapshot_chunks_to_send[0].clone();
    let message = chunk.into_message(vec![1, 2, 3].into());
    let MessageBody::InstallSnapshot(sent) = &message.body else {
        panic!("{message:?}");
    };
    assert_eq!((message.to, message.term), (NodeId(1), Term(2)));
    assert_eq!((sent.offset, sent.data.len(), sent.total_size), (0, 3, 10));
}

#[test]
#[should_panic(expected = "wrong size")]
fn a_chunk_filled_with_the_wrong_size_is_a_bug() {
    let (_, ready) = leader_told_n1_ends_at(0);
    let chunk = ready.snapshot_chunks_to_send[0].clone();
    chunk.into_message(vec![1, 2].into());
}

// ---- the follower -----------------------------------------------------------

/// (offset, size) of the chunks handed to the runtime to write.
fn received(ready: &Ready) -> Vec<(u64, usize)> {
    ready
        .snapshot_chunks_received
        .iter()
        .map(|chunk| (chunk.offset, chunk.data.len()))
        .collect()
}

/// Steps a chunk from n1, leader of term 2, and takes the Ready.
fn receive(raft: &mut Raft, body: MessageBody) -> Ready {
    raft.step(to_us(1, 2, body));
    let ready = raft.ready();
    raft.check_invariants();
    ready
}

/// Figure 13, InstallSnapshot receiver, step 1 ("reply immediately if term
/// < currentTerm") and the AppendEntries rules it shares: a chunk of the
/// current term makes its sender the leader and holds off the election.
#[test]
fn a_chunk_of_the_current_term_comes_from_the_leader() {
    let mut raft = follower(2, &[]);
    raft.advance_time(ELECTION_MIN - 1);
    let ready = receive(&mut raft, chunk((4, 1), 0, b"abc", 10));
    assert_eq!(raft.leader_id(), Some(NodeId(1)));
    assert!(raft.next_deadline_ms() >= 2 * ELECTION_MIN - 1);
    assert_eq!(received(&ready), [(0, 3)]);
    let answers = snapshot_statuses(&ready.messages_after_persist);
    assert_eq!(answers, [(4, SnapshotStatus::Accepted { stored: 3 })]);
    assert!(
        snapshot_statuses(&ready.messages).is_empty(),
        "only after the write"
    );
    let ready = receive(&mut raft, chunk((4, 1), 0, b"abc", 10));
    assert!(received(&ready).is_empty());
    raft.step(Message {
        term: Term(1),
        ..to_us(2, 1, chunk((4, 1), 3, b"def", 10))
    });
    let ready = raft.ready();
    assert!(
        received(&ready).is_empty(),
        "a stale term's chunk is refused"
    );
    assert_eq!(ready.messages[0].term, Term(2));
}

#[test]
fn a_candidate_steps_down_for_a_chunk_of_its_term() {
    let mut raft = follower(1, &[]);
    time_out(&mut raft);
    assert_eq!(raft.role(), Role::Candidate);
    receive(&mut raft, chunk((4, 1), 0, b"abc", 10));
    assert_eq!(raft.role(), Role::Follower);
    assert_eq!(raft.leader_id(), Some(NodeId(1)));
}

/// A chunk is taken only where the stored bytes of its snapshot end;
/// anything else is answered with that offset and changes nothing.
#[test]
fn an_out_of_order_chunk_is_answered_with_the_stored_offset_and_changes_nothing() {
    let mut raft = follower(2, &[]);
    let ready = receive(&mut raft, chunk((4, 1), 3, b"def", 10));
    assert!(received(&ready).is_empty());
    let answers = snapshot_statuses(&ready.messages_after_persist);
    assert_eq!(answers, [(4, SnapshotStatus::OutOfOrder { stored: 0 })]);
    receive(&mut raft, chunk((4, 1), 0, b"abc", 10));
    for offset in [0, 6] {
        let ready = receive(&mut raft, chunk((4, 1), offset, b"xyz", 10));
        assert!(received(&ready).is_empty(), "offset {offset}");
        let answers = snapshot_statuses(&ready.messages_after_persist);
        assert_eq!(answers, [(4, SnapshotStatus::OutOfOrder { stored: 3 })]);
        // The runtime closes the connection the chunk came on.
        let closing = Event::SnapshotChunkOutOfOrder {
            from: NodeId(1),
            index: LogIndex(4),
            offset,
            stored: 3,
        };
        assert!(ready.events.contains(&closing), "{:?}", ready.events);
    }
    let ready = receive(&mut raft, chunk((4, 1), 3, b"def", 10));
    assert_eq!(received(&ready), [(3, 3)], "the receive went on unharmed");
    let out_of_order = |event: &Event| matches!(event, Event::SnapshotChunkOutOfOrder { .. });
    assert!(!ready.events.iter().any(out_of_order), "an in-order chunk");
}

#[test]
fn a_chunk_of_another_snapshot_at_offset_zero_starts_over() {
    let mut raft = follower(2, &[]);
    receive(&mut raft, chunk((4, 1), 0, b"abc", 10));
    let ready = receive(&mut raft, chunk((6, 2), 3, b"def", 10));
    assert!(received(&ready).is_empty(), "not at 0: changes nothing");
    let ready = receive(&mut raft, chunk((4, 1), 3, b"def", 10));
    assert_eq!(received(&ready), [(3, 3)]);
    let ready = receive(&mut raft, chunk((6, 2), 0, b"new", 10));
    assert_eq!(received(&ready), [(0, 3)]);
    let ready = receive(&mut raft, chunk((4, 1), 6, b"ghi", 10));
    let answers = snapshot_statuses(&ready.messages_after_persist);
    assert_eq!(answers, [(4, SnapshotStatus::OutOfOrder { stored: 0 })]);
}

/// Never install a snapshot at or below the applied index: the state
/// machine would go back while the log goes on. The answer says how far
/// the follower's log matches instead.
#[test]
fn a_snapshot_the_state_machine_already_covers_is_refused() {
    let mut raft = restored(2, (10, 1), 11, &[1]);
    for index in [8, 10] {
        let ready = receive(&mut raft, chunk((index, 1), 0, b"abc", 3));
        assert!(received(&ready).is_empty(), "snapshot {index}");
        let installed = SnapshotStatus::Installed {
            match_index: LogIndex(10),
        };
        let answers = snapshot_statuses(&ready.messages_after_persist);
        assert_eq!(answers, [(index, installed)]);
    }
    assert_eq!(raft.log().last_applied(), LogIndex(10));
}

/// Dissertation §5.1 (Figure 5.3, InstallSnapshot receiver, steps 6 and
/// 7): "If existing log entry has same index and term as snapshot's last
/// included entry, retain log entries following it"; else "discard the
/// entire log".
#[test]
fn an_installed_snapshot_keeps_a_matching_suffix() {
    let mut raft = follower(2, &[1, 1, 1, 2, 2, 2]);
    let ready = receive(&mut raft, chunk((4, 2), 0, b"abc", 3));
    assert_eq!(received(&ready), [(0, 3)]);
    assert!(ready.snapshot_chunks_received[0].is_last());
    assert!(
        snapshot_statuses(&ready.messages_after_persist).is_empty(),
        "the answer waits for the install"
    );
    assert!(raft.is_installing_snapshot());
    assert!(raft.snapshot_installed(meta(4, 2)), "suffix kept");
    raft.check_invariants();
    let log = raft.log();
    assert_eq!(
        (log.first_index(), log.last_index()),
        (LogIndex(5), LogIndex(6))
    );
    assert_eq!(
        (log.commit_index(), log.last_applied()),
        (LogIndex(4), LogIndex(4))
    );
    assert_eq!(log.persisted_index(), LogIndex(6));
    let ready = raft.ready();
    let installed = SnapshotStatus::Installed {
        match_index: LogIndex(4),
    };
    assert_eq!(
        snapshot_statuses(&ready.messages_after_persist),
        [(4, installed)]
    );
    let expected = Event::SnapshotInstalled {
        from: NodeId(1),
        index: LogIndex(4),
    };
    assert!(ready.events.contains(&expected));
    assert!(
        ready.committed_entries.is_empty(),
        "nothing past the snapshot is committed"
    );
    assert_eq!(raft.snapshot().map(|s| s.size_bytes), Some(3));
}

#[test]
fn an_installed_snapshot_drops_a_conflicting_log() {
    let mut raft = follower(2, &[1, 1, 1, 1, 1, 1]);
    receive(&mut raft, chunk((4, 2), 0, b"abc", 3));
    assert!(!raft.snapshot_installed(meta(4, 2)), "term 1 at 4, not 2");
    raft.check_invariants();
    let log = raft.log();
    assert_eq!(log.last_index(), LogIndex(4));
    assert_eq!(log.last_term(), Term(2));
    assert_eq!(
        (log.commit_index(), log.last_applied()),
        (LogIndex(4), LogIndex(4))
    );
    assert_eq!(log.persisted_index(), LogIndex(4));
    assert!(
        raft.ready().entries.is_empty(),
        "nothing dropped is written"
    );
}

/// A snapshot being installed replaces the state machine: no entries are
/// applied meanwhile, and those after it are once it is in.
#[test]
fn no_entries_are_applied_while_a_snapshot_is_installed() {
    let mut raft = restored(2, (2, 1), 3, &[1, 1, 1, 1]);
    receive(&mut raft, chunk((4, 1), 0, b"abc", 3));
    raft.step(heartbeat(1, 2, (6, 1), 6));
    let ready = raft.ready();
    assert_eq!(raft.log().commit_index(), LogIndex(6));
    assert!(ready.committed_entries.is_empty());
    assert!(!raft.has_ready());
    raft.snapshot_installed(meta(4, 1));
    let ready = raft.ready();
    let applied: Vec<u64> = ready.committed_entries.iter().map(|e| e.index.0).collect();
    assert_eq!(applied, [5, 6]);
}

#[test]
fn a_chunk_while_the_last_is_being_installed_is_left_unanswered() {
    let mut raft = follower(2, &[]);
    receive(&mut raft, chunk((4, 1), 0, b"abc", 3));
    let ready = receive(&mut raft, chunk((6, 1), 0, b"abc", 3));
    assert!(received(&ready).is_empty());
    assert!(snapshot_statuses(&ready.messages_after_persist).is_empty());
}

#[test]
fn a_failed_install_is_reported_and_forgotten() {
    let mut raft = follower(2, &[]);
    receive(&mut raft, chunk((4, 1), 0, b"abc", 3));
    raft.snapshot_install_failed(LogIndex(4));
    assert!(!raft.is_installing_snapshot());
    let ready = raft.ready();
    assert_eq!(
        snapshot_statuses(&ready.messages),
        [(4, SnapshotStatus::Failed)]
    );
    assert_eq!(raft.log().last_index(), LogIndex(0));
    let ready = receive(&mut raft, chunk((4, 1), 0, b"abc", 3));
    assert_eq!(received(&ready), [(0, 3)], "the leader's retry is taken");
}

#[test]
fn an_append_from_below_the_base_matches_up_to_the_commit_index() {
    let mut raft = restored(2, (10, 1), 11, &[1, 1]);
    let entries = entries(5, &[1, 1]);
    let request = AppendEntries {
        prev_log_index: LogIndex(4),
        prev_log_term: Term(1),
        leader_commit: LogIndex(6),
        round: 5,
        entries,
    };
    raft.step(to_us(1, 2, MessageBody::AppendEntries(request)));
    let ready = raft.ready();
    let MessageBody::AppendEntriesResponse(response) = &ready.messages_after_persist[0].body else {
        panic!("{ready:?}");
    };
    assert!(response.success);
    assert_eq!((response.index, response.round), (LogIndex(10), 5));
    assert_eq!(raft.log().last_index(), LogIndex(12), "nothing changed");
}

// ---- cluster identity with the Bootstrap entry compacted --------------------

/// A node whose Bootstrap entry is gone into a snapshot still knows its
/// cluster, names it in its messages, and refuses nodes of another.
#[test]
fn a_node_with_its_bootstrap_compacted_still_refuses_another_cluster() {
    let mut config = config(0, 3);
    config.limits = small_limits();
    let hard_state = HardState {
        current_term: Term(2),
        ..HardState::default()
    };
    let snapshot = StoredSnapshot {
        meta: meta(10, 1),
        size_bytes: SNAPSHOT_SIZE,
    };
    let mut raft = Raft::restore(config, hard_state, Some(snapshot), Vec::new(), 0).unwrap();
    assert_eq!(raft.cluster_id(), Some(CLUSTER), "a snapshot binds");
    assert_eq!(
        raft.ready().hard_state.map(|h| h.cluster_id),
        Some(Some(CLUSTER))
    );
    assert_eq!(
        raft.cluster_tag(),
        ClusterTag {
            log_id: Some(CLUSTER),
            bound: true
        }
    );
    for bound in [true, false] {
        let mut request = heartbeat(1, 3, (10, 1), 10);
        request.cluster = ClusterTag {
            log_id: Some(OTHER_CLUSTER),
            bound,
        };
        raft.step(request);
        let ready = raft.ready();
        assert!(ready.messages_after_persist.is_empty(), "bound {bound}");
        assert!(matches!(
            ready.events[..],
            [Event::ForeignMessageIgnored { .. }]
        ));
        assert_eq!(raft.current_term(), Term(2), "not even the term");
    }
}

#[test]
fn compacting_a_live_log_past_its_bootstrap_keeps_the_cluster() {
    let mut raft = follower(1, &[1, 1, 1]);
    raft.step(heartbeat(1, 1, (3, 1), 3));
    raft.ready();
    raft.persisted(LogIndex(3), Term(1));
    assert_eq!(raft.cluster_id(), Some(CLUSTER));
    raft.snapshot_taken(meta(3, 1), 5);
    raft.compact(LogIndex(2));
    raft.check_invariants();
    assert_eq!(raft.log().first_index(), LogIndex(3));
    assert!(raft.log().first_is_bootstrap());
    assert_eq!(raft.cluster_tag().log_id, Some(CLUSTER));
    let mut request = heartbeat(2, 1, (3, 1), 3);
    request.cluster.log_id = Some(OTHER_CLUSTER);
    raft.step(request);
    assert!(raft.ready().messages_after_persist.is_empty());
}

/// An unbound node installing its cluster's snapshot is bound by it: the
/// snapshot holds the committed Bootstrap.
#[test]
fn installing_a_snapshot_binds_the_node_to_its_cluster() {
    let mut raft = follower(2, &[]);
    assert_eq!(raft.cluster_id(), None);
    receive(&mut raft, chunk((4, 1), 0, b"abc", 3));
    raft.snapshot_installed(meta(4, 1));
    assert_eq!(raft.cluster_id(), Some(CLUSTER));
    let ready = raft.ready();
    assert_eq!(ready.hard_state.and_then(|h| h.cluster_id), Some(CLUSTER));
    let learned = Event::ClusterIdLearned {
        cluster_id: CLUSTER,
    };
    assert!(ready.events.contains(&learned));
    assert!(raft.log().first_is_bootstrap());
}

#[test]
fn a_snapshot_of_another_cluster_than_the_hard_states_is_refused_at_start() {
    let hard_state = HardState {
        current_term: Term(2),
        voted_for: None,
        cluster_id: Some(OTHER_CLUSTER),
    };
    let snapshot = StoredSnapshot {
        meta: meta(10, 1),
        size_bytes: SNAPSHOT_SIZE,
    };
    let refused = Raft::restore(config(0, 3), hard_state, Some(snapshot), Vec::new(), 0);
    let expected = ConfigError::SnapshotOfAnotherCluster {
        bound: OTHER_CLUSTER,
        snapshot: CLUSTER,
    };
    assert_eq!(refused.err(), Some(expected));
}

// ---- what the runtime may ask ---------------------------------------------------

#[test]
#[should_panic(expected = "past the newest durable snapshot")]
fn compacting_past_the_newest_snapshot_stops_the_node() {
    let mut raft = restored(2, (10, 1), 11, &[1, 1]);
    raft.step(heartbeat(1, 2, (12, 1), 12));
    raft.ready();
    raft.compact(LogIndex(11));
}

#[test]
#[should_panic(expected = "not applied")]
fn a_snapshot_of_unapplied_state_stops_the_node() {
    let mut raft = restored(2, (10, 1), 11, &[1, 1]);
    raft.snapshot_taken(meta(12, 1), 5);
}

#[test]
fn compaction_keeps_what_the_runtime_asks_to_keep() {
    let mut raft = restored(2, (2, 1), 3, &[1, 1, 1, 1]);
    raft.step(heartbeat(1, 2, (6, 1), 6));
    raft.ready();
    raft.snapshot_taken(meta(6, 1), 5);
    raft.compact(LogIndex(4));
    raft.check_invariants();
    assert_eq!(raft.log().first_index(), LogIndex(5));
    assert_eq!(raft.snapshot().map(|s| s.meta.index), Some(LogIndex(6)));
}

// ---- planted bugs -----------------------------------------------------------

#[cfg(feature = "planted-bugs")]
#[test]
fn planted_install_older_snapshot_takes_a_snapshot_below_applied() {
    let mut raft = restored(2, (10, 1), 11, &[1]);
    raft.plant_bug(Some(PlantedBug::InstallOlderSnapshot));
    let ready = receive(&mut raft, chunk((8, 1), 0, b"abc", 3));
    assert_eq!(received(&ready), [(0, 3)], "taken");
    raft.snapshot_installed(meta(8, 1));
    raft.check_invariants();
    assert_eq!(
        raft.log().last_applied(),
        LogIndex(10),
        "the log moves on as if the state machine had not gone back"
    );
}

#[cfg(feature = "planted-bugs")]
#[test]
fn planted_compact_unapplied_drops_committed_entries_never_applied() {
    let mut raft = restored(2, (2, 1), 3, &[1, 1, 1, 1]);
    raft.plant_bug(Some(PlantedBug::CompactUnapplied));
    raft.step(heartbeat(1, 2, (6, 1), 6));
    raft.compact(LogIndex(2));
    raft.check_invariants();
    assert!(raft.ready().committed_entries.is_empty(), "3..=6 are lost");
    assert_eq!(raft.log().last_applied(), LogIndex(6));
}

// ---- leader and follower together -------------------------------------------

/// What n1's runtime does with one Ready: writes entries, chunks and the
/// hard state, installs a snapshot whose last chunk came (checking it is
/// the leader's file), applies, and returns what it sends.
fn run_follower(follower: &mut Raft, file: &mut Vec<u8>, applied: &mut Vec<u64>) -> Vec<Message> {
    let ready = follower.ready();
    let mut installed = None;
    for chunk in &ready.snapshot_chunks_received {
        if chunk.offset == 0 {
            file.clear();
        }
        assert_eq!(file.len() as u64, chunk.offset, "chunks arrive in order");
        file.extend_from_slice(&chunk.data);
        if chunk.is_last() {
            installed = Some(chunk.meta.clone());
        }
    }
    if let Some(last) = ready.entries.last() {
        follower.persisted(last.index, last.term);
    }
    if let Some(hard_state) = ready.hard_state {
        follower.hard_state_persisted(hard_state);
    }
    applied.extend(ready.committed_entries.iter().map(|entry| entry.index.0));
    if let Some(meta) = installed {
        follower.snapshot_installed(meta);
    }
    follower.check_invariants();
    let mut sent = ready.messages;
    sent.extend(ready.messages_after_persist);
    sent
}

/// What n0's runtime does with one Ready: writes its entries, and sends
/// its messages and chunks (read from `file`) to n1 only.
fn run_leader(leader: &mut Raft, file: &[u8]) -> Vec<Message> {
    let ready = leader.ready();
    if let Some(last) = ready.entries.last() {
        leader.persisted(last.index, last.term);
    }
    leader.check_invariants();
    let chunks = ready.snapshot_chunks_to_send.into_iter().map(|chunk| {
        let range = chunk.offset as usize..chunk.offset as usize + chunk.size;
        chunk.into_message(file[range].into())
    });
    let mut sent: Vec<Message> = ready.messages;
    sent.extend(ready.messages_after_persist);
    sent.extend(chunks);
    sent.retain(|message| message.to == NodeId(1));
    sent
}

/// Runs n0 (the leader) and n1 (new, empty) until n1 has caught up, the
/// `n`th message to n1 lost when `lost(n)`. Returns n1, its copy of the
/// snapshot file and the indexes it applied.
fn catch_up(lost: impl Fn(usize) -> bool) -> (Raft, Raft, Vec<u8>, Vec<u64>) {
    let mut leader = leader();
    let mut follower = Raft::new(config(1, 3), HardState::default(), Vec::new(), 0).unwrap();
    let leader_file = b"0123456789".to_vec();
    assert_eq!(leader_file.len() as u64, SNAPSHOT_SIZE);
    let (mut follower_file, mut applied) = (Vec::new(), Vec::new());
    leader.propose(b"SET a 1").unwrap();
    let mut sent_count = 0;
    for _ in 0..1000 {
        if follower.log().commit_index() == LogIndex(14) && !leader.has_ready() {
            break;
        }
        for message in run_leader(&mut leader, &leader_file) {
            sent_count += 1;
            if !lost(sent_count) {
                follower.step(message);
            }
        }
        let to_leader = run_follower(&mut follower, &mut follower_file, &mut applied);
        let idle = to_leader.is_empty() && !leader.has_ready() && !follower.has_ready();
        for message in to_leader {
            leader.step(message);
        }
        if idle {
            // Heartbeat time: the follower's clock stays put, so it never
            // campaigns.
            let heartbeat_ms = leader.next_deadline_ms();
            leader.advance_time(heartbeat_ms);
        }
    }
    assert_eq!(follower_file, leader_file);
    (leader, follower, follower_file, applied)
}

/// Dissertation §5.1 end to end: a new, empty follower is brought up to
/// date by the leader's snapshot, chunk by chunk, then by the entries after
/// it; its log, commit index and state machine end where the leader's are.
#[test]
fn an_empty_follower_catches_up_by_snapshot_then_entries() {
    let (leader, follower, _, applied) = catch_up(|_| false);
    assert_eq!(follower.log().first_index(), LogIndex(11));
    assert_eq!(follower.log().last_index(), LogIndex(14));
    assert_eq!(leader.log().commit_index(), LogIndex(14));
    assert_eq!(follower.log().commit_index(), LogIndex(14));
    assert_eq!(applied, [11, 12, 13, 14], "everything after the snapshot");
    assert_eq!(follower.cluster_id(), Some(CLUSTER));
    assert_eq!(
        follower.snapshot().map(|s| s.meta.index),
        Some(LogIndex(10))
    );
}

/// Lost chunks (and lost appends) only delay it: the transfer rewinds to
/// the follower's offset or resumes after a silence, never skips a byte.
/// About one message in three is lost, in a pattern drawn from the seed.
#[test]
fn a_follower_catches_up_through_lost_chunks() {
    for seed in 0..8u64 {
        let lost = |n: usize| (n as u64 ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61 < 3;
        let (_, follower, _, applied) = catch_up(lost);
        assert_eq!(follower.log().commit_index(), LogIndex(14), "seed {seed}");
        assert_eq!(applied, [11, 12, 13, 14], "seed {seed}");
    }
}
