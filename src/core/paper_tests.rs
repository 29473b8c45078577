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
    for peer in 1..raft.configuration().quorum() as u32 {
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
        transfer: false,
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
        transfer: false,
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

// ---- §5.2: leader election --------------------------------------------------

/// "When servers start up, they begin as followers." (§5.2), whatever
/// their durable state says they did before.
#[test]
fn a_server_starts_as_a_follower() {
    let raft = restored(config(0, 3), hard_state(7, Some(0)), &[1, 7]);
    assert_eq!(raft.role(), Role::Follower);
    assert_eq!(raft.leader_id(), None);
    assert_eq!(raft.hard_state(), hard_state(7, Some(0)));
}

/// "To begin an election, a follower increments its current term and
/// transitions to candidate state. It then votes for itself and issues
/// RequestVote RPCs in parallel to each of the other servers" (§5.2);
/// "the candidate will time out and start a new election by incrementing
/// its term" (§5.2). The request carries "the candidate's last log index
/// and term" (Figure 2, §5.4.1). The requests wait for the new term and
/// vote to be durable: the grants they bring count that vote (§3.8 of the
/// dissertation on persisting before answering).
#[test]
fn a_follower_or_candidate_that_times_out_starts_an_election() {
    // A follower at term 3, a candidate at term 3.
    for mut raft in [follower(3, 3, &[1, 2]), candidate(3, 2, &[1, 2])] {
        let case = format!("{:?}", raft.role());
        time_out(&mut raft);
        let ready = raft.ready();
        assert_eq!(raft.role(), Role::Candidate, "{case}");
        assert_eq!(ready.hard_state, Some(hard_state(4, Some(0))), "{case}");
        let request = MessageBody::RequestVote(RequestVote {
            last_log_index: LogIndex(2),
            last_log_term: Term(2),
            pre_vote: false,
            transfer: false,
        });
        let requests = vec![from_us(1, 4, request.clone()), from_us(2, 4, request)];
        assert!(ready.messages.is_empty(), "{case}");
        assert_eq!(ready.messages_after_persist, requests, "{case}");
    }
}

/// PreVote (dissertation §9.6): on a timeout, a node with PreVote on asks
/// for pre-votes for the next term without taking it; nothing is written,
/// so the requests go at once.
#[test]
fn with_pre_vote_a_timeout_asks_for_pre_votes_in_the_same_term() {
    let mut config = config(0, 3);
    config.pre_vote = true;
    let mut raft = restored(config, hard_state(2, None), &[1, 2]);
    time_out(&mut raft);
    let ready = raft.ready();
    assert_eq!(raft.role(), Role::PreCandidate);
    assert_eq!(raft.hard_state(), hard_state(2, None));
    assert_eq!(ready.hard_state, None);
    let request = MessageBody::RequestVote(RequestVote {
        last_log_index: LogIndex(2),
        last_log_term: Term(2),
        pre_vote: true,
        transfer: false,
    });
    let requests = vec![from_us(1, 3, request.clone()), from_us(2, 3, request)];
    assert_eq!(ready.messages, requests);
    assert!(ready.messages_after_persist.is_empty());
}

/// "A candidate wins an election if it receives votes from a majority of
/// the servers in the full cluster for the same term." (§5.2) Refusals do
/// not count, nor does a second grant from the same server; a candidate
/// without a majority stays a candidate until its timer fires ("a period
/// of time goes by with no winner", §5.2).
#[test]
fn a_candidate_becomes_leader_with_votes_from_a_majority() {
    let rows: [(u32, &[u32], &[u32], Role); 8] = [
        // (size, granted by, refused by, role after)
        (1, &[], &[], Role::Leader),
        (3, &[1], &[], Role::Leader),
        (3, &[], &[1, 2], Role::Candidate),
        (5, &[1], &[], Role::Candidate),
        (5, &[1, 1], &[], Role::Candidate),
        (5, &[1, 2], &[], Role::Leader),
        (5, &[1], &[2, 3, 4], Role::Candidate),
        (5, &[1, 2, 3, 4], &[], Role::Leader),
    ];
    for (size, granted_by, refused_by, role) in rows {
        let mut raft = follower(size, 0, &[]);
        time_out(&mut raft);
        for &peer in refused_by {
            raft.step(to_us(peer, 1, vote_answer(false, false)));
        }
        for &peer in granted_by {
            raft.step(to_us(peer, 1, vote_answer(true, false)));
        }
        let case = format!("{size} nodes, granted by {granted_by:?}, refused by {refused_by:?}");
        assert_eq!(raft.role(), role, "{case}");
        assert_eq!(raft.current_term(), Term(1), "{case}");
    }
}

/// "While waiting for votes, a candidate may receive an AppendEntries RPC
/// from another server claiming to be leader. If the leader's term
/// (included in its RPC) is at least as large as the candidate's current
/// term, then the candidate recognizes the leader as legitimate and
/// returns to follower state." (§5.2) A pre-candidate too. The term stays,
/// and so does the candidate's vote for itself in it; the request is then
/// handled as a follower's.
#[test]
fn a_candidate_or_pre_candidate_yields_to_a_leader_of_its_term() {
    for mut raft in [pre_candidate(3, 2, &[1, 1]), candidate(3, 2, &[1, 1])] {
        let before = raft.hard_state();
        let case = format!("{:?}", raft.role());
        let term = before.current_term.0;
        raft.step(heartbeat(1, term, (2, 1), 0));
        let ready = raft.ready();
        assert_eq!(raft.role(), Role::Follower, "{case}");
        assert_eq!(raft.hard_state(), before, "{case}");
        assert_eq!(raft.leader_id(), Some(NodeId(1)), "{case}");
        let answer = from_us(1, term, accepted(2));
        assert_eq!(only_message(&ready), (&answer, true), "{case}");
    }
}

/// Figure 3, Election Safety: "at most one leader can be elected in a given
/// term" (§5.2). A leader that hears an AppendEntries of its own term from
/// another node holds proof that this broke, and stops on an assertion.
#[test]
#[should_panic(expected = "two leaders in term 3")]
fn a_leader_stops_on_an_append_entries_of_its_own_term() {
    let mut raft = leader(3, 2, &[1]);
    raft.step(heartbeat(1, 3, (0, 0), 0));
}

/// The vote table, Figure 2, RequestVote receiver: "1. Reply false if term
/// < currentTerm (§5.1) 2. If votedFor is null or candidateId, and
/// candidate's log is at least as up-to-date as receiver's log, grant vote
/// (§5.2, §5.4)"; "each server will vote for at most one candidate in a
/// given term, on a first-come-first-served basis" (§5.2); "If the logs
/// have last entries with different terms, then the log with the later
/// term is more up-to-date. If the logs end with the same term, then
/// whichever log is longer is more up-to-date." (§5.4.1) Every (request
/// term, vote already cast, candidate's log) combination: the voter is at
/// term 3 with log terms [1, 2, 2]; n1 asks. A grant goes out only after
/// the write that records it (dissertation §3.8); a refusal may go either
/// way. Whatever changed of the term and vote is in the Ready to persist.
#[test]
fn the_vote_table() {
    struct TermAndVote {
        request_term: u64,
        voted_for: Option<u32>,
        /// Whether it grants to a candidate whose log is up to date.
        grants: bool,
        term_after: u64,
        /// The vote after a refusal (after a grant it is n1).
        vote_after_refusal: Option<u32>,
    }
    let row = |request_term, voted_for, grants, term_after, vote_after_refusal| TermAndVote {
        request_term,
        voted_for,
        grants,
        term_after,
        vote_after_refusal,
    };
    let terms_and_votes = [
        // A stale term: refused, whatever the vote.
        row(2, None, false, 3, None),
        row(2, Some(1), false, 3, Some(1)),
        row(2, Some(2), false, 3, Some(2)),
        // Our term: first come, first served; a repeated request is granted again.
        row(3, None, true, 3, None),
        row(3, Some(1), true, 3, Some(1)),
        row(3, Some(2), false, 3, Some(2)),
        // A higher term: taken, with no vote cast in it yet.
        row(4, None, true, 4, None),
        row(4, Some(1), true, 4, None),
        row(4, Some(2), true, 4, None),
    ];
    let candidate_logs = [
        // (last log index, last log term, at least as up to date as [1, 2, 2])
        (1, 3, true),  // a later last term, however short
        (4, 2, true),  // the same last term, longer
        (3, 2, true),  // the same log end
        (2, 2, false), // the same last term, shorter
        (5, 1, false), // an earlier last term, however long
        (0, 0, false), // empty
    ];
    for row in &terms_and_votes {
        for (last_index, last_term, up_to_date) in candidate_logs {
            let before = hard_state(3, row.voted_for);
            let mut raft = restored(config(0, 3), before, &[1, 2, 2]);
            raft.step(vote_request(1, row.request_term, last_index, last_term));
            let ready = raft.ready();
            let case = format!(
                "term {} voted {:?}, candidate log ends at ({last_index}, term {last_term})",
                row.request_term, row.voted_for
            );
            let granted = row.grants && up_to_date;
            let vote_after = if granted {
                Some(1)
            } else {
                row.vote_after_refusal
            };
            assert_eq!(
                raft.hard_state(),
                hard_state(row.term_after, vote_after),
                "{case}"
            );
            let (answer, after_persist) = only_message(&ready);
            let expected = from_us(1, row.term_after, vote_answer(granted, false));
            assert_eq!(answer, &expected, "{case}");
            assert!(
                after_persist || !granted,
                "{case}: a grant sent before the write"
            );
            if raft.hard_state() != before {
                assert_eq!(ready.hard_state, Some(raft.hard_state()), "{case}");
            }
            assert_eq!(raft.role(), Role::Follower, "{case}");
        }
    }
}

/// Beyond Figure 2: a follower that knows the leader of its term grants no
/// vote in that term, though it cast none (etcd's rule too). It is safe, and
/// costs nothing: that leader holds a majority of the term's votes, so no
/// other candidate can win the term anyway. A vote request of a higher
/// term is granted as usual.
#[test]
fn a_follower_that_knows_the_leader_of_its_term_votes_for_no_one_else() {
    let mut raft = follower(3, 3, &[1, 1]);
    raft.step(heartbeat(1, 3, (2, 1), 0));
    raft.ready();
    raft.step(vote_request(2, 3, 9, 3));
    let ready = raft.ready();
    let refusal = from_us(2, 3, vote_answer(false, false));
    assert_eq!(only_message(&ready).0, &refusal);
    assert_eq!(raft.hard_state(), hard_state(3, None));
    raft.step(vote_request(2, 4, 9, 3));
    let ready = raft.ready();
    assert_eq!(
        only_message(&ready).0,
        &from_us(2, 4, vote_answer(true, false))
    );
}

/// Figure 2, Rules for Servers, Followers: "If election timeout elapses
/// without receiving AppendEntries RPC from current leader or granting
/// vote to candidate: convert to candidate." An AppendEntries of the
/// current term resets the timer even when its consistency check fails
/// (its sender is the leader all the same); a refused vote or a stale
/// leader's request does not.
#[test]
fn only_the_leader_or_a_granted_vote_resets_the_election_timer() {
    let rows = [
        (vote_request(1, 3, 9, 3), true),
        (vote_request(1, 3, 1, 1), false),
        (heartbeat(1, 3, (2, 1), 0), true),
        (heartbeat(1, 3, (5, 3), 0), true),
        (heartbeat(1, 2, (2, 1), 0), false),
    ];
    for (message, resets) in rows {
        let mut raft = follower(3, 3, &[1, 1]);
        let deadline = raft.next_deadline_ms();
        raft.observe_time(deadline - 1);
        let case = format!("{:?} at term {}", message.body, message.term);
        raft.step(message);
        raft.ready();
        assert_eq!(raft.next_deadline_ms() > deadline, resets, "{case}");
        raft.advance_time(deadline);
        let role = if resets {
            Role::Follower
        } else {
            Role::Candidate
        };
        assert_eq!(raft.role(), role, "{case}");
    }
}

// ---- §5.3: log replication --------------------------------------------------

/// A run of entries: the index of the first, the terms of all.
type Run = (u64, &'static [u64]);

/// Figure 2, AppendEntries receiver: "2. Reply false if log doesn't
/// contain an entry at prevLogIndex whose term matches prevLogTerm"; "If
/// the follower does not find an entry in its log with the same index and
/// term, then it refuses the new entries." (§5.3) A success names the
/// last index the request made the follower match (here prevLogIndex: the
/// requests are heartbeats). A rejection names the prevLogIndex it refuses
/// and the fast-backtracking hint (§5.3, "the follower can include the
/// term of the conflicting entry and the first index it stores for that
/// term"): our term at prevLogIndex and where it starts (never at or below
/// our commit index), or none and the index after our log. Either answer
/// echoes the round and waits for the write (the request may have named a
/// new leader). The follower's log is [1, 1, 2, 2, 2] at term 4.
#[test]
fn the_append_entries_consistency_check() {
    let rows = [
        // (prev index, prev term, our commit, Ok(index) or Err((conflict term, conflict index)))
        (0, 0, 0, Ok(0)),
        (2, 1, 0, Ok(2)),
        (5, 2, 0, Ok(5)),
        (5, 3, 0, Err((Some(2), 3))), // the term at 5 differs: skip term 2
        (4, 1, 0, Err((Some(2), 3))),
        (2, 2, 0, Err((Some(1), 1))),
        (6, 2, 0, Err((None, 6))), // too short: start after our log
        (9, 4, 0, Err((None, 6))),
        (5, 3, 3, Err((Some(2), 4))), // term 2 starts at 3, but 3 is committed
    ];
    for (prev_index, prev_term, commit, expected) in rows {
        let mut raft = follower(3, 4, &[1, 1, 2, 2, 2]);
        if commit > 0 {
            let commit_term = raft.log().term_at(LogIndex(commit)).expect("in the log").0;
            raft.step(heartbeat(1, 4, (commit, commit_term), commit));
            raft.ready();
        }
        raft.step(heartbeat(1, 4, (prev_index, prev_term), 0));
        let ready = raft.ready();
        let case = format!("prev ({prev_index}, term {prev_term}), commit {commit}");
        let body = match expected {
            Ok(index) => accepted(index),
            Err(conflict) => append_answer(false, prev_index, conflict, ROUND),
        };
        assert_eq!(only_message(&ready), (&from_us(1, 4, body), true), "{case}");
        assert_eq!(log_terms(&raft), [1, 1, 2, 2, 2], "{case}");
        assert_eq!(raft.status().commit_index, LogIndex(commit), "{case}");
    }
}

/// Figure 2, AppendEntries receiver: "3. If an existing entry conflicts
/// with a new one (same index but different terms), delete the existing
/// entry and all that follow it (§5.3) 4. Append any new entries not
/// already in the log." Entries already present are kept and not written
/// again, so a stale or duplicated request, or a heartbeat, never shortens
/// the log (it could drop entries this node acknowledged). The follower's
/// log is [1, 1, 2, 2] at term 3.
#[test]
fn conflicting_entries_are_replaced_and_present_ones_kept() {
    // (prev, sent, log after, written to storage)
    type Row = ((u64, u64), Run, &'static [u64], Run);
    let rows: [Row; 9] = [
        ((2, 1), (3, &[3]), &[1, 1, 3], (3, &[3])),
        ((1, 1), (2, &[3, 3]), &[1, 3, 3], (2, &[3, 3])),
        ((0, 0), (1, &[3]), &[3], (1, &[3])),
        ((4, 2), (5, &[3]), &[1, 1, 2, 2, 3], (5, &[3])),
        ((2, 1), (3, &[2, 2, 3]), &[1, 1, 2, 2, 3], (5, &[3])),
        ((3, 2), (4, &[3, 3]), &[1, 1, 2, 3, 3], (4, &[3, 3])),
        // Already present: nothing to cut, nothing to write.
        ((0, 0), (1, &[1]), &[1, 1, 2, 2], (0, &[])),
        ((1, 1), (2, &[1, 2]), &[1, 1, 2, 2], (0, &[])),
        ((2, 1), (3, &[]), &[1, 1, 2, 2], (0, &[])),
    ];
    for (prev, (first, sent), log_after, (first_written, written)) in rows {
        let mut raft = follower(3, 3, &[1, 1, 2, 2]);
        raft.step(append(1, 3, prev, entries(first, sent), 0));
        let ready = raft.ready();
        let case = format!("prev {prev:?}, sent {sent:?} from {first}");
        assert_eq!(log_terms(&raft), log_after, "{case}");
        assert_eq!(ready.entries, entries(first_written, written), "{case}");
        let last_new = prev.0 + sent.len() as u64;
        let answer = from_us(1, 3, accepted(last_new));
        assert_eq!(only_message(&ready), (&answer, true), "{case}");
    }
}

/// Figure 2, AppendEntries receiver: "5. If leaderCommit > commitIndex,
/// set commitIndex = min(leaderCommit, index of last new entry)". The last
/// new entry is the last the request vouches for (prevLogIndex plus the
/// entries sent), not the end of our log: entries past it may be a
/// deposed leader's. "Once a follower learns that a log entry is
/// committed, it applies the entry to its local state machine (in log
/// order)." (§5.3) The commit index never goes back, though the literal
/// rule would lower it for a request that vouches for less than is
/// committed. The follower's log is [1, 1, 2] at term 2.
#[test]
fn a_follower_commits_up_to_leader_commit_within_what_the_request_vouches_for() {
    // (our commit, prev, sent, leader commit, commit after)
    type Row = (u64, (u64, u64), Run, u64, u64);
    let rows: [Row; 11] = [
        (0, (3, 2), (4, &[]), 2, 2),
        (0, (3, 2), (4, &[]), 9, 3), // a heartbeat beyond our log: up to prev
        (0, (1, 1), (2, &[]), 9, 1), // 2 and 3 are not vouched for
        (0, (0, 0), (1, &[1]), 3, 1),
        (0, (3, 2), (4, &[2, 2]), 4, 4),
        (0, (3, 2), (4, &[2, 2]), 9, 5),
        (0, (2, 1), (3, &[2]), 0, 0),
        (0, (1, 1), (2, &[2]), 9, 2), // after cutting the conflicting 2 and 3
        (3, (3, 2), (4, &[]), 1, 3),  // an older commit index
        (3, (1, 1), (2, &[]), 9, 3),  // vouches for less than is committed
        (2, (3, 2), (4, &[2]), 9, 4),
    ];
    for (commit_before, prev, (first, sent), leader_commit, commit_after) in rows {
        let mut raft = follower(3, 2, &[1, 1, 2]);
        if commit_before > 0 {
            raft.step(heartbeat(1, 2, (3, 2), commit_before));
            raft.ready();
        }
        raft.step(append(1, 2, prev, entries(first, sent), leader_commit));
        let ready = raft.ready();
        let case = format!(
            "commit {commit_before}, prev {prev:?}, sent {sent:?}, leader commit {leader_commit}"
        );
        assert_eq!(raft.status().commit_index, LogIndex(commit_after), "{case}");
        let applied: Vec<LogIndex> = ready
            .committed_entries
            .iter()
            .map(|entry| entry.index)
            .collect();
        let newly_committed: Vec<LogIndex> =
            (commit_before + 1..=commit_after).map(LogIndex).collect();
        assert_eq!(applied, newly_committed, "{case}");
    }
}

// ---- §5.3, §5.4: the leader -------------------------------------------------

/// "Once a candidate wins an election, it becomes leader. It then sends
/// heartbeat messages to all of the other servers to establish its
/// authority" (§5.2); "each leader commit[s] a blank no-op entry into the
/// log at the start of its term" (§8), so that entries of earlier terms
/// can commit (§5.4.2). The no-op goes to every follower at once, in
/// parallel with the leader's own write (dissertation §10.2.1), after the
/// entry "that immediately precedes the new entries" (§5.3). The first
/// leader of a new cluster (an empty log) makes it the Bootstrap entry,
/// with the cluster id its configuration names, and its messages say so.
#[test]
fn a_new_leader_appends_a_no_op_of_its_term_and_sends_it_at_once() {
    let rows: [(&[u64], EntryKind); 2] = [(&[1, 2], EntryKind::Noop), (&[], EntryKind::Bootstrap)];
    for (log, kind) in rows {
        let mut raft = candidate(3, 2, log);
        raft.step(to_us(1, 3, vote_answer(true, false)));
        let ready = raft.ready();
        assert_eq!(raft.role(), Role::Leader, "{kind:?}");
        let prev = raft.log().last_index().prev();
        let prev_log_term = raft.log().term_at(prev).expect("in the log");
        let no_op = raft.log().entry(prev.next()).expect("appended").clone();
        assert_eq!((no_op.term, no_op.kind), (Term(3), kind));
        assert_eq!(ready.entries, std::slice::from_ref(&no_op), "{kind:?}");
        assert_eq!(
            ready.hard_state, None,
            "term and vote were written by the campaign"
        );
        let cluster = raft.cluster_tag();
        if kind == EntryKind::Bootstrap {
            let cluster_id = raft.config().bootstrap_cluster_id;
            assert_eq!(ClusterId::of_bootstrap(&no_op), Some(cluster_id));
            assert_eq!(cluster.log_id, Some(cluster_id));
        } else {
            assert_eq!(cluster, ClusterTag::default(), "a log without a Bootstrap");
        }
        let request = MessageBody::AppendEntries(AppendEntries {
            prev_log_index: prev,
            prev_log_term,
            leader_commit: LogIndex(0),
            round: 0,
            entries: vec![no_op],
        });
        let appends: Vec<Message> = [1, 2]
            .map(|to| Message {
                cluster,
                ..from_us(to, 3, request.clone())
            })
            .into();
        assert_eq!(ready.messages, appends, "{kind:?}");
        assert!(ready.messages_after_persist.is_empty(), "{kind:?}");
    }
}

/// "A log entry is committed once the leader that created the entry has
/// replicated it on a majority of the servers" (§5.3), the leader's own
/// copy counting once it is durable; "the leader keeps track of the
/// highest index it knows to be committed, and it includes that index in
/// future AppendEntries RPCs (including heartbeats) so that the other
/// servers eventually find out." (§5.3) The leader of term 2 over [1]
/// proposes a command at index 3; followers in the row acknowledge it.
#[test]
fn a_leader_commits_an_entry_of_its_term_once_a_majority_stores_it() {
    let rows: [(u32, &[u32], bool); 7] = [
        // (size, acknowledged by, committed)
        (1, &[], true),
        (3, &[], false),
        (3, &[1], true),
        (3, &[1, 2], true),
        (5, &[1], false),
        (5, &[1, 2], true),
        (5, &[1, 2, 3, 4], true),
    ];
    for (size, acknowledged_by, committed) in rows {
        let mut raft = leader(size, 1, &[1]);
        let (index, term) = raft.propose(b"x").expect("leader");
        assert_eq!((index, term), (LogIndex(3), Term(2)));
        raft.ready();
        raft.persisted(index, term);
        for &peer in acknowledged_by {
            raft.step(to_us(peer, 2, accepted(3)));
        }
        let ready = raft.ready();
        let case = format!("{size} nodes, acknowledged by {acknowledged_by:?}");
        let commit = if committed { LogIndex(3) } else { LogIndex(0) };
        assert_eq!(raft.status().commit_index, commit, "{case}");
        let applied: Vec<LogIndex> = ready
            .committed_entries
            .iter()
            .map(|entry| entry.index)
            .collect();
        let expected: Vec<LogIndex> = (1..=commit.0).map(LogIndex).collect();
        assert_eq!(
            applied, expected,
            "{case}: preceding entries commit with it"
        );
        time_out(&mut raft); // the heartbeat timer
        let ready = raft.ready();
        assert_eq!(ready.messages.len(), size as usize - 1, "{case}");
        for message in &ready.messages {
            let MessageBody::AppendEntries(request) = &message.body else {
                panic!("{case}: {message:?}");
            };
            assert_eq!(request.leader_commit, commit, "{case}");
        }
    }
}

/// Figure 8 and §5.4.2: "Raft never commits log entries from previous
/// terms by counting replicas. Only log entries from the leader's current
/// term are committed by counting replicas; once an entry from the current
/// term has been committed in this way, then all prior entries are
/// committed indirectly". The leader of term 3 over [1, 2] (its no-op at
/// 3, durable) hears n1 acknowledge up to the index in the row: with its
/// own copy that is a majority of 3, yet only the entry of term 3 commits.
#[test]
fn a_leader_commits_no_entry_of_an_earlier_term_by_counting_replicas() {
    let rows = [
        // (acknowledged up to, commit index after)
        (1, 0),
        (2, 0),
        (3, 3),
    ];
    for (acknowledged, commit) in rows {
        let mut raft = leader(3, 2, &[1, 2]);
        raft.persisted(LogIndex(3), Term(3));
        raft.step(to_us(1, 3, accepted(acknowledged)));
        let ready = raft.ready();
        let case = format!("acknowledged up to {acknowledged}");
        assert_eq!(raft.status().commit_index, LogIndex(commit), "{case}");
        assert_eq!(ready.committed_entries.len(), commit as usize, "{case}");
    }
}

/// Figure 3, Leader Append-Only: "a leader never overwrites or deletes
/// entries in its log; it only appends new entries." (§5.3) Neither a
/// rejection naming a conflict, nor a stale leader's AppendEntries whose
/// entries conflict with ours, nor a candidate of our term touches the
/// leader's log; a proposal goes after its last entry, and only it is
/// written.
#[test]
fn a_leader_never_overwrites_or_deletes_its_entries() {
    let mut raft = leader(3, 2, &[1, 1, 2]);
    let rejection = append_answer(false, 3, (Some(1), 2), ROUND);
    let messages = [
        to_us(1, 3, rejection),
        append(2, 2, (1, 1), entries(2, &[2, 2]), 0),
        vote_request(2, 3, 9, 3),
    ];
    for message in messages {
        raft.step(message);
        let ready = raft.ready();
        assert!(ready.entries.is_empty());
        assert_eq!(log_terms(&raft), [1, 1, 2, 3]);
        assert_eq!(raft.role(), Role::Leader);
    }
    let (index, _) = raft.propose(b"x").expect("leader");
    assert_eq!(index, LogIndex(5));
    let ready = raft.ready();
    let written: Vec<LogIndex> = ready.entries.iter().map(|entry| entry.index).collect();
    assert_eq!(written, [LogIndex(5)]);
    assert_eq!(log_terms(&raft), [1, 1, 2, 3, 3]);
}

// ---- dissertation §4.2.1: learners count toward no majority -----------------

/// n0 of voters n0, n1, n2 and the learner n3 (a node catching up before
/// it votes): a majority is 2 of the 3 voters.
fn config_with_learner() -> Config {
    let mut config = config(0, 3);
    let StartConfiguration::Bootstrap(start) = &mut config.start;
    *start = start
        .apply(
            &membership::Change::AddLearner {
                name: "n03".to_string(),
                address: "127.0.0.1:9003".parse().expect("an address"),
            },
            LogIndex(0),
            Term(0),
        )
        .expect("adds");
    config
}

/// The dissertation adds servers as non-voting members first (§4.2.1, "the
/// new servers join the cluster as non-voting members"): a learner answers
/// a vote request like any node, but a candidate neither asks it nor counts
/// its grant, whether for a vote or a pre-vote.
#[test]
fn a_learners_vote_grant_counts_toward_no_majority() {
    for pre_vote in [false, true] {
        let mut config = config_with_learner();
        config.pre_vote = pre_vote;
        let mut raft = restored(config, hard_state(1, None), &[1]);
        time_out(&mut raft);
        let ready = raft.ready();
        let asked: Vec<NodeId> = [ready.messages, ready.messages_after_persist]
            .concat()
            .iter()
            .map(|message| message.to)
            .collect();
        assert_eq!(asked, [NodeId(1), NodeId(2)], "voters only");
        let role = raft.role();
        raft.step(to_us(3, 2, vote_answer(true, pre_vote)));
        raft.ready();
        assert_eq!(raft.role(), role, "pre-vote {pre_vote}: a learner's grant");
        raft.step(to_us(1, 2, vote_answer(true, pre_vote)));
        raft.ready();
        let after = if pre_vote {
            Role::Candidate
        } else {
            Role::Leader
        };
        assert_eq!(raft.role(), after, "pre-vote {pre_vote}: a voter's grant");
    }
}

/// A learner gets every entry and heartbeat, but "Leader: if there exists
/// an N such that N > commitIndex, a majority of matchIndex[i] ≥ N ...
/// set commitIndex = N" (Figure 2) counts voters only.
#[test]
fn a_learners_acknowledgement_counts_toward_no_commit() {
    let mut raft = elect(restored(config_with_learner(), hard_state(1, None), &[1]));
    let (index, term) = raft.propose(b"x").expect("leader");
    assert_eq!((index, term), (LogIndex(3), Term(2)));
    raft.ready();
    time_out(&mut raft); // the heartbeat timer
    let ready = raft.ready();
    let sent_to: Vec<NodeId> = ready.messages.iter().map(|message| message.to).collect();
    assert_eq!(
        sent_to,
        [NodeId(1), NodeId(2), NodeId(3)],
        "the learner too"
    );
    raft.persisted(index, term);
    raft.step(to_us(3, 2, accepted(3)));
    raft.ready();
    assert_eq!(raft.status().commit_index, LogIndex(0), "a learner's ack");
    raft.step(to_us(1, 2, accepted(3)));
    raft.ready();
    assert_eq!(raft.status().commit_index, LogIndex(3), "a voter's ack");
}

/// ReadIndex (§6.4: "exchange heartbeat messages with a majority of the
/// cluster") confirms a read with voters' answers only.
#[test]
fn a_learners_heartbeat_answer_confirms_no_read() {
    let mut raft = elect(restored(config_with_learner(), hard_state(1, None), &[1]));
    raft.persisted(LogIndex(2), Term(2));
    raft.step(to_us(1, 2, append_answer(true, 2, (None, 0), 0))); // no round yet
    raft.ready();
    assert_eq!(raft.status().commit_index, LogIndex(2));
    raft.read_index(5).expect("leader");
    let ready = raft.ready();
    assert!(ready.read_states.is_empty(), "no round answered yet");
    let round = ready
        .messages
        .iter()
        .find_map(|message| match &message.body {
            MessageBody::AppendEntries(request) => Some(request.round),
            _ => None,
        })
        .expect("a heartbeat round");
    raft.step(to_us(3, 2, append_answer(true, 2, (None, 0), round)));
    assert!(raft.ready().read_states.is_empty(), "a learner's answer");
    raft.step(to_us(2, 2, append_answer(true, 2, (None, 0), round)));
    let confirmed = raft.ready().read_states;
    let read = ReadState {
        context: 5,
        index: LogIndex(2),
    };
    assert_eq!(confirmed, [read], "a voter's answer");
}

/// CheckQuorum (dissertation §6.2): "if an election timeout elapses
/// without a successful round of heartbeats to a majority of its cluster,
/// the leader steps down". Hearing from the learner alone is no majority.
#[test]
fn check_quorum_hears_no_majority_in_a_learner() {
    for (answering, role) in [(3, Role::Follower), (1, Role::Leader)] {
        let mut config = config_with_learner();
        config.check_quorum = true;
        let window_ms = config.check_quorum_window_ms();
        let mut raft = elect(restored(config, hard_state(1, None), &[1]));
        let elected_ms = raft.now_ms();
        raft.ready();
        raft.observe_time(elected_ms + window_ms - 1);
        raft.step(to_us(answering, 2, accepted(1)));
        raft.advance_time(elected_ms + window_ms + 60);
        raft.ready();
        assert_eq!(raft.role(), role, "only n{answering} answered");
    }
}
