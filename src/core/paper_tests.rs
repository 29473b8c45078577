//! Paper tests: one `Raft` node driven by hand, one rule of the paper per
//! test, as etcd's `raft_paper_test.go` reads ("each test focuses on
//! several sentences written in the paper"). Each test puts a node in the
//! role under test, steps a message, takes `ready()` and checks the
//! outcome: role, term, vote, log, commit index, and what the node sends,
//! at once (`messages`) or only after its write (`messages_after_persist`).
//!
//! Quotes are from the Raft paper (Ongaro and Ousterhout, "In Search of an
//! Understandable Consensus Algorithm", 2014) unless they name the
//! dissertation (Ongaro, "Consensus: Bridging Theory and Practice", 2014).
//!
//! The node under test is always n0. The logs built here begin with a
//! plain command, not a Bootstrap entry, and messages carry
//! `ClusterTag::default()`: the cluster-identity rules (docs/DESIGN.md,
//! "Cluster identity") do not apply to them, which leaves the paper's
//! rules bare.

use super::tests::{config, ELECTION_MIN};
use super::*;

const US: NodeId = NodeId(0);

/// The heartbeat round every hand-built AppendEntries carries; a response
/// to a request of the current term echoes it.
const ROUND: u64 = 7;

// ---- building nodes ---------------------------------------------------------

/// Entries of `terms` from index `first` on.
fn entries(first: u64, terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .zip(first..)
        .map(|(&term, index)| Entry::command(index, term, &[term as u8]))
        .collect()
}

fn hard_state(term: u64, voted_for: Option<u32>) -> HardState {
    HardState {
        current_term: Term(term),
        voted_for: voted_for.map(NodeId),
        cluster_id: None,
    }
}

/// A node restarted from `hard_state` and a log of entries of `log_terms`.
fn restored(config: Config, hard_state: HardState, log_terms: &[u64]) -> Raft {
    Raft::new(config, hard_state, entries(1, log_terms), 0).expect("valid config")
}

/// A follower of a `size`-node cluster at `term`, no vote cast, no leader
/// known. PreVote and CheckQuorum are off.
fn follower(size: u32, term: u64, log_terms: &[u64]) -> Raft {
    restored(config(0, size), hard_state(term, None), log_terms)
}

fn time_out(raft: &mut Raft) {
    let deadline = raft.next_deadline_ms();
    raft.advance_time(deadline);
}

/// A pre-candidate (PreVote on) still at `term`, asking for `term + 1`.
fn pre_candidate(size: u32, term: u64, log_terms: &[u64]) -> Raft {
    let mut config = config(0, size);
    config.pre_vote = true;
    let mut raft = restored(config, hard_state(term, None), log_terms);
    time_out(&mut raft);
    raft.ready();
    assert_eq!(raft.role(), Role::PreCandidate);
    raft
}

/// A candidate at `term + 1`, having voted for itself.
fn candidate(size: u32, term: u64, log_terms: &[u64]) -> Raft {
    let mut raft = follower(size, term, log_terms);
    time_out(&mut raft);
    raft.ready();
    assert_eq!(raft.role(), Role::Candidate);
    raft
}

/// The leader of `term + 1`, elected by n1, n2, ... up to a majority. Its
/// no-op is handed to storage, not yet persisted.
fn leader(size: u32, term: u64, log_terms: &[u64]) -> Raft {
    elect(follower(size, term, log_terms))
}

fn elect(mut raft: Raft) -> Raft {
    time_out(&mut raft);
    let term = raft.current_term().0;
    for peer in 1..raft.config().quorum() as u32 {
        raft.step(to_us(peer, term, vote_answer(true, false)));
    }
    raft.ready();
    assert_eq!(raft.role(), Role::Leader);
    raft
}

/// A node of a 3-node cluster in `role`, built from `term` and `log_terms`
/// (a candidate or leader is at `term + 1`).
fn in_role(role: Role, term: u64, log_terms: &[u64]) -> Raft {
    match role {
        Role::Follower => follower(3, term, log_terms),
        Role::PreCandidate => pre_candidate(3, term, log_terms),
        Role::Candidate => candidate(3, term, log_terms),
        Role::Leader => leader(3, term, log_terms),
    }
}

fn log_terms(raft: &Raft) -> Vec<u64> {
    let log = raft.log();
    (1..=log.last_index().0)
        .map(|index| log.term_at(LogIndex(index)).expect("in the log").0)
        .collect()
}

// ---- building messages ------------------------------------------------------

fn to_us(from: u32, term: u64, body: MessageBody) -> Message {
    Message {
        from: NodeId(from),
        to: US,
        term: Term(term),
        cluster: ClusterTag::default(),
        body,
    }
}

/// What n0 sends `to`, as the checks expect it.
fn from_us(to: u32, term: u64, body: MessageBody) -> Message {
    Message {
        from: US,
        to: NodeId(to),
        term: Term(term),
        cluster: ClusterTag::default(),
        body,
    }
}

fn vote_request(from: u32, term: u64, last_log_index: u64, last_log_term: u64) -> Message {
    let request = RequestVote {
        last_log_index: LogIndex(last_log_index),
        last_log_term: Term(last_log_term),
        pre_vote: false,
    };
    to_us(from, term, MessageBody::RequestVote(request))
}

fn pre_vote_request(from: u32, term: u64, last_log_index: u64, last_log_term: u64) -> Message {
    let mut message = vote_request(from, term, last_log_index, last_log_term);
    if let MessageBody::RequestVote(request) = &mut message.body {
        request.pre_vote = true;
    }
    message
}

fn vote_answer(vote_granted: bool, pre_vote: bool) -> MessageBody {
    MessageBody::RequestVoteResponse(RequestVoteResponse {
        vote_granted,
        pre_vote,
    })
}

/// An AppendEntries from `from`, leader of `term`: `entries` follow
/// (`prev_index`, `prev_term`).
fn append(
    from: u32,
    term: u64,
    (prev_index, prev_term): (u64, u64),
    entries: Vec<Entry>,
    leader_commit: u64,
) -> Message {
    let request = AppendEntries {
        prev_log_index: LogIndex(prev_index),
        prev_log_term: Term(prev_term),
        leader_commit: LogIndex(leader_commit),
        round: ROUND,
        entries,
    };
    to_us(from, term, MessageBody::AppendEntries(request))
}

fn heartbeat(from: u32, term: u64, prev: (u64, u64), leader_commit: u64) -> Message {
    append(from, term, prev, Vec::new(), leader_commit)
}

fn append_answer(
    success: bool,
    index: u64,
    conflict: (Option<u64>, u64),
    round: u64,
) -> MessageBody {
    MessageBody::AppendEntriesResponse(AppendEntriesResponse {
        success,
        index: LogIndex(index),
        conflict_term: conflict.0.map(Term),
        conflict_index: LogIndex(conflict.1),
        round,
    })
}

/// A follower's success for a request of the current term.
fn accepted(index: u64) -> MessageBody {
    append_answer(true, index, (None, 0), ROUND)
}

/// `answer_stale`'s reply to an AppendEntries of an earlier term: only its
/// term counts (conflict index 0, no round).
fn stale_append_answer(prev_index: u64) -> MessageBody {
    append_answer(false, prev_index, (None, 0), 0)
}

/// The one message `ready` sends, and whether it waits for the write.
fn only_message(ready: &Ready) -> (&Message, bool) {
    match (&ready.messages[..], &ready.messages_after_persist[..]) {
        ([message], []) => (message, false),
        ([], [message]) => (message, true),
        (at_once, after_persist) => {
            panic!("one message expected; sent {at_once:?}, after persist {after_persist:?}")
        }
    }
}

fn sends_nothing(ready: &Ready) -> bool {
    ready.messages.is_empty() && ready.messages_after_persist.is_empty()
}

// ---- §5.1: terms ------------------------------------------------------------

/// Each message of a higher term (5) than the node's, with what the node
/// must do after taking it: its vote and the leader it knows.
fn higher_term_messages() -> Vec<(Message, Option<NodeId>, Option<NodeId>)> {
    vec![
        (heartbeat(1, 5, (0, 0), 0), None, Some(NodeId(1))),
        (to_us(1, 5, stale_append_answer(0)), None, None),
        (vote_request(1, 5, 9, 4), Some(NodeId(1)), None),
        (to_us(1, 5, vote_answer(false, false)), None, None),
        (to_us(1, 5, vote_answer(false, true)), None, None),
    ]
}

fn takes_a_higher_term(role: Role) {
    for (message, voted_for, leader) in higher_term_messages() {
        let mut raft = in_role(role, 2, &[1, 1]);
        let case = format!("{role:?} given {:?}", message.body);
        raft.step(message);
        let ready = raft.ready();
        assert_eq!(raft.role(), Role::Follower, "{case}");
        assert_eq!(raft.current_term(), Term(5), "{case}");
        assert_eq!(raft.hard_state().voted_for, voted_for, "{case}");
        assert_eq!(raft.leader_id(), leader, "{case}");
        assert_eq!(ready.hard_state, Some(raft.hard_state()), "{case}");
    }
}

/// "Current terms are exchanged whenever servers communicate; if one
/// server's current term is smaller than the other's, then it updates its
/// current term to the larger value." (§5.1; Figure 2, Rules for Servers,
/// All Servers: "If RPC request or response contains term T >
/// currentTerm: set currentTerm = T, convert to follower"). Any request
/// or response does it; the vote of the old term is gone, and only an
/// AppendEntries names a leader of the new one.
#[test]
fn a_follower_takes_a_higher_term_from_any_message() {
    takes_a_higher_term(Role::Follower);
}

/// "If a candidate or leader discovers that its term is out of date, it
/// immediately reverts to follower state." (§5.1) A pre-candidate too: a
/// refused pre-vote carries the refuser's term, and a higher one is taken
/// (dissertation §9.6).
#[test]
fn a_pre_candidate_takes_a_higher_term_and_becomes_follower() {
    takes_a_higher_term(Role::PreCandidate);
}

/// §5.1, as above: a candidate reverts to follower.
#[test]
fn a_candidate_takes_a_higher_term_and_becomes_follower() {
    takes_a_higher_term(Role::Candidate);
}

/// §5.1, as above: a leader reverts to follower (without CheckQuorum; with
/// it, see `a_leader_with_check_quorum_ignores_vote_requests`).
#[test]
fn a_leader_takes_a_higher_term_and_becomes_follower() {
    takes_a_higher_term(Role::Leader);
}

/// PreVote (dissertation §9.6): before it campaigns, a node asks the
/// others whether they would vote for it, its log being up to date, in
/// the next term; asking disturbs nobody's term. In
/// every role, a pre-vote request for a higher term is answered at once
/// (it promises nothing durable), granted if the log is up to date (the
/// answer carries the term asked about, so the pre-candidate counts it),
/// and changes neither term, vote nor role.
#[test]
fn a_pre_vote_request_changes_no_term_vote_or_role() {
    for role in [
        Role::Follower,
        Role::PreCandidate,
        Role::Candidate,
        Role::Leader,
    ] {
        for up_to_date in [true, false] {
            let mut raft = in_role(role, 2, &[1, 1]);
            let before = raft.hard_state();
            let term = before.current_term.0;
            let (last_index, last_term) = if up_to_date { (9, term) } else { (1, 1) };
            raft.step(pre_vote_request(1, term + 1, last_index, last_term));
            let ready = raft.ready();
            let case = format!("{role:?}, candidate log up to date: {up_to_date}");
            let answer_term = if up_to_date { term + 1 } else { term };
            let answer = from_us(1, answer_term, vote_answer(up_to_date, true));
            assert_eq!(only_message(&ready), (&answer, false), "{case}");
            assert_eq!(raft.hard_state(), before, "{case}");
            assert_eq!(ready.hard_state, None, "{case}");
            assert_eq!(raft.role(), role, "{case}");
        }
    }
}

/// PreVote (dissertation §9.6): only a node that learns a majority would
/// vote for it increments its term and starts a normal election. A
/// pre-vote grant does not change the
/// pre-candidate's term (it carries the term asked about, one above); a
/// grant for another round does not count; a majority of grants starts
/// the real election.
#[test]
fn a_majority_of_pre_votes_starts_a_real_election() {
    let mut raft = pre_candidate(5, 2, &[1, 1]);
    raft.step(to_us(1, 3, vote_answer(true, true)));
    raft.step(to_us(2, 4, vote_answer(true, true)));
    let ready = raft.ready();
    assert_eq!(raft.role(), Role::PreCandidate, "2 of 5, counting itself");
    assert_eq!(raft.current_term(), Term(2));
    assert_eq!(ready.hard_state, None);
    assert!(sends_nothing(&ready));
    raft.step(to_us(3, 3, vote_answer(true, true)));
    let ready = raft.ready();
    assert_eq!(raft.role(), Role::Candidate, "3 of 5");
    assert_eq!(ready.hard_state, Some(hard_state(3, Some(0))));
    let request = MessageBody::RequestVote(RequestVote {
        last_log_index: LogIndex(2),
        last_log_term: Term(1),
        pre_vote: false,
    });
    let requests: Vec<Message> = (1..5).map(|to| from_us(to, 3, request.clone())).collect();
    assert_eq!(ready.messages_after_persist, requests);
}

/// Disruptive servers (§6; dissertation §4.2.3): "if a server receives a
/// RequestVote RPC within the minimum election timeout of hearing from a
/// current leader, it does not update its term or grant its vote." With
/// CheckQuorum on, a follower that heard from its leader drops vote and
/// pre-vote requests of a higher term unanswered; once the minimum
/// election timeout has passed since, it takes them as usual.
#[test]
fn a_follower_in_lease_ignores_vote_requests() {
    let mut config = config(0, 3);
    config.check_quorum = true;
    let mut raft = restored(config, hard_state(2, None), &[1, 1]);
    raft.step(heartbeat(1, 2, (2, 1), 0));
    raft.ready();
    for request in [vote_request(2, 3, 9, 2), pre_vote_request(2, 3, 9, 2)] {
        raft.step(request);
        let ready = raft.ready();
        assert!(sends_nothing(&ready), "no answer in lease");
        assert_eq!(ready.hard_state, None);
        assert_eq!(raft.hard_state(), hard_state(2, None));
        assert_eq!(raft.leader_id(), Some(NodeId(1)));
    }
    raft.observe_time(ELECTION_MIN);
    raft.step(vote_request(2, 3, 9, 2));
    let ready = raft.ready();
    let grant = from_us(2, 3, vote_answer(true, false));
    assert_eq!(only_message(&ready), (&grant, true), "the lease ran out");
    assert_eq!(raft.hard_state(), hard_state(3, Some(2)));
}

/// Disruptive servers (§6; dissertation §4.2.3), with CheckQuorum
/// (dissertation §6.2): a leader knows a current leader (itself), so it
/// drops vote and pre-vote requests of a higher term; CheckQuorum, not a
/// candidate, deposes it once it has lost its majority.
#[test]
fn a_leader_with_check_quorum_ignores_vote_requests() {
    let mut config = config(0, 3);
    config.check_quorum = true;
    let mut raft = elect(restored(config, hard_state(2, None), &[1, 1]));
    for request in [vote_request(1, 5, 9, 4), pre_vote_request(1, 5, 9, 4)] {
        raft.step(request);
        let ready = raft.ready();
        assert!(sends_nothing(&ready));
        assert_eq!(ready.hard_state, None);
        assert_eq!(raft.role(), Role::Leader);
        assert_eq!(raft.hard_state(), hard_state(3, Some(0)));
    }
}

/// "If a server receives a request with a stale term number, it rejects
/// the request." (§5.1; Figure 2, both receivers: "Reply false if term <
/// currentTerm"). In every role the answer carries our term, so its stale
/// sender steps down; it goes at once (it promises nothing durable) and
/// changes nothing here: not the term, vote, log or leader, nor the
/// election timer. A rejected AppendEntries says conflict index 0 and no
/// round, so that its sender, should it lead a later term by the time it
/// arrives, counts it neither as a rejection nor as a read confirmation.
#[test]
fn a_request_of_a_stale_term_is_rejected_with_our_term() {
    let stale_requests = [
        (vote_request(1, 3, 9, 3), vote_answer(false, false)),
        (pre_vote_request(1, 3, 9, 3), vote_answer(false, true)),
        (
            append(1, 3, (2, 1), entries(3, &[3]), 3),
            stale_append_answer(2),
        ),
    ];
    for role in [
        Role::Follower,
        Role::PreCandidate,
        Role::Candidate,
        Role::Leader,
    ] {
        for (request, answer) in stale_requests.clone() {
            let mut raft = in_role(role, 4, &[1, 1]);
            let (before, log_before) = (raft.hard_state(), log_terms(&raft));
            let (leader_before, deadline_before) = (raft.leader_id(), raft.next_deadline_ms());
            let case = format!("{role:?} given {:?}", request.body);
            raft.step(request);
            let ready = raft.ready();
            let term = before.current_term.0;
            assert_eq!(
                only_message(&ready),
                (&from_us(1, term, answer), false),
                "{case}"
            );
            assert_eq!(raft.hard_state(), before, "{case}");
            assert_eq!(ready.hard_state, None, "{case}");
            assert!(ready.entries.is_empty(), "{case}");
            assert_eq!(log_terms(&raft), log_before, "{case}");
            assert_eq!(raft.role(), role, "{case}");
            assert_eq!(raft.leader_id(), leader_before, "{case}");
            assert_eq!(raft.next_deadline_ms(), deadline_before, "{case}");
        }
    }
}

/// §5.1: a response of an earlier term answers a request this node no
/// longer stands behind, and is dropped: a vote granted in term 2 does not
/// elect a candidate of term 3, a pre-vote granted for an earlier round
/// does not count, and an acknowledgement of term 2 commits nothing for
/// the leader of term 3. The same response at the node's term would, as
/// each case then shows.
#[test]
fn a_response_of_a_stale_term_is_ignored() {
    let mut raft = candidate(3, 2, &[1, 1]);
    raft.step(to_us(1, 2, vote_answer(true, false)));
    assert!(raft.ready().is_empty());
    assert_eq!(raft.role(), Role::Candidate);
    raft.step(to_us(1, 3, vote_answer(true, false)));
    assert_eq!(raft.role(), Role::Leader, "the same vote of term 3 elects");

    let mut raft = pre_candidate(3, 2, &[1, 1]);
    raft.step(to_us(1, 1, vote_answer(true, true)));
    assert!(raft.ready().is_empty());
    assert_eq!(raft.role(), Role::PreCandidate);
    raft.step(to_us(1, 3, vote_answer(true, true)));
    assert_eq!(raft.role(), Role::Candidate, "a grant for term 3 counts");

    let mut raft = leader(3, 2, &[1, 1]);
    raft.persisted(LogIndex(3), Term(3));
    raft.step(to_us(1, 2, accepted(3)));
    assert!(raft.ready().is_empty());
    assert_eq!(raft.status().commit_index, LogIndex(0));
    raft.step(to_us(1, 3, accepted(3)));
    assert_eq!(
        raft.status().commit_index,
        LogIndex(3),
        "at term 3 it counts"
    );
}
