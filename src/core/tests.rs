//! Tests of the protocol rules, each named for the sentence of the paper it
//! checks. A tiny harness delivers messages between cores by hand.

use super::config::CHECK_QUORUM_WINDOW_ELECTION_TIMEOUTS;
use super::*;
use std::collections::VecDeque;

pub(super) const ELECTION_MIN: u64 = 150;
pub(super) const ELECTION_MAX: u64 = 300;
pub(super) const HEARTBEAT: u64 = 50;

pub(super) struct Cluster {
    pub(super) nodes: Vec<Raft>,
    /// Each node's "disk": what it persisted.
    pub(super) stored: Vec<Vec<Entry>>,
    pub(super) queue: VecDeque<Message>,
    /// Messages for which this returns false are dropped.
    pub(super) filter: Box<dyn Fn(&Message) -> bool>,
    applied: Vec<Vec<Entry>>,
    reads: Vec<Vec<ReadState>>,
    /// Each node's events, oldest first.
    pub(super) events: Vec<Vec<Event>>,
}

/// Node `id` of a cluster of nodes 0..size: 150-300 ms election timeout,
/// 50 ms heartbeat, PreVote and CheckQuorum off.
pub(super) fn config(id: u32, size: u32) -> Config {
    Config {
        id: NodeId(id),
        start: StartConfiguration::Bootstrap(Configuration::numbered(size as usize)),
        election_timeout_ms_min: ELECTION_MIN,
        election_timeout_ms_max: ELECTION_MAX,
        heartbeat_interval_ms: HEARTBEAT,
        seed: 42,
        bootstrap_cluster_id: ClusterId(0xc1u64 << 32 | u64::from(id)),
        pre_vote: false,
        check_quorum: false,
        limits: Limits::default(),
    }
}

fn entries_with_terms(terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(offset, &term)| Entry::command(offset as u64 + 1, term, &[term as u8]))
        .collect()
}

impl Cluster {
    /// PreVote and CheckQuorum on, as the daemon runs.
    pub(super) fn with_extensions(size: u32) -> Cluster {
        let mut cluster = Cluster::new(size);
        cluster.nodes = (0..size)
            .map(|id| {
                let mut config = config(id, size);
                config.pre_vote = true;
                config.check_quorum = true;
                Raft::new(config, HardState::default(), Vec::new(), 0).expect("valid config")
            })
            .collect();
        cluster
    }

    pub(super) fn new(size: u32) -> Cluster {
        let logs = vec![Vec::new(); size as usize];
        Cluster::with_logs(&logs, Term(0))
    }

    fn with_logs(logs: &[Vec<u64>], term: Term) -> Cluster {
        let size = logs.len() as u32;
        let nodes = logs
            .iter()
            .enumerate()
            .map(|(id, terms)| {
                let hard_state = HardState {
                    current_term: term,
                    ..HardState::default()
                };
                Raft::new(
                    config(id as u32, size),
                    hard_state,
                    entries_with_terms(terms),
                    0,
                )
                .expect("valid config")
            })
            .collect();
        Cluster {
            nodes,
            stored: logs.iter().map(|terms| entries_with_terms(terms)).collect(),
            queue: VecDeque::new(),
            filter: Box::new(|_| true),
            applied: vec![Vec::new(); logs.len()],
            reads: vec![Vec::new(); logs.len()],
            events: vec![Vec::new(); logs.len()],
        }
    }

    /// One Ready of one node: persist, queue its messages, apply.
    pub(super) fn process(&mut self, id: usize) {
        let ready = self.nodes[id].ready();
        let stored = &mut self.stored[id];
        if let Some(first) = ready.entries.first() {
            stored.truncate(first.index.0 as usize - 1);
            stored.extend(ready.entries.iter().cloned());
        }
        self.queue.extend(ready.messages);
        self.queue.extend(ready.messages_after_persist);
        if let Some(last) = stored.last() {
            let (index, term) = (last.index, last.term);
            self.nodes[id].persisted(index, term);
        }
        if let Some(hard_state) = ready.hard_state {
            self.nodes[id].hard_state_persisted(hard_state);
        }
        self.applied[id].extend(ready.committed_entries);
        self.reads[id].extend(ready.read_states);
        self.events[id].extend(ready.events);
        self.nodes[id].check_invariants();
    }

    pub(super) fn process_all(&mut self) {
        for id in 0..self.nodes.len() {
            self.process(id);
            while self.nodes[id].has_ready() {
                self.process(id);
            }
        }
    }

    /// Delivers messages until none is left, processing each receiver.
    pub(super) fn deliver_all(&mut self) {
        for _ in 0..100_000 {
            self.process_all();
            let Some(message) = self.queue.pop_front() else {
                return;
            };
            if (self.filter)(&message) {
                let to = message.to.0 as usize;
                self.nodes[to].step(message);
            }
        }
        panic!("messages never settled");
    }

    /// Fires `id`'s election timer without moving anyone else's clock.
    pub(super) fn campaign(&mut self, id: usize) {
        let deadline = self.nodes[id].next_deadline_ms();
        self.nodes[id].advance_time(deadline);
        self.deliver_all();
    }

    pub(super) fn heartbeat(&mut self, leader: usize) {
        let deadline = self.nodes[leader].next_deadline_ms();
        self.nodes[leader].advance_time(deadline);
        self.deliver_all();
    }

    /// Moves every node's clock to `now_ms`, firing what is due.
    pub(super) fn advance_all(&mut self, now_ms: u64) {
        for node in &mut self.nodes {
            node.advance_time(now_ms);
        }
        self.deliver_all();
    }

    fn log_terms(&self, id: usize) -> Vec<u64> {
        self.stored[id].iter().map(|entry| entry.term.0).collect()
    }

    pub(super) fn leaders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&id| self.nodes[id].role() == Role::Leader)
            .collect()
    }
}

#[test]
fn single_node_elects_itself_and_commits() {
    let mut cluster = Cluster::new(1);
    cluster.campaign(0);
    assert_eq!(cluster.nodes[0].role(), Role::Leader);
    let (index, term) = cluster.nodes[0].propose(b"x").expect("leader");
    assert_eq!((index, term), (LogIndex(2), Term(1)));
    cluster.deliver_all();
    assert_eq!(cluster.nodes[0].status().commit_index, LogIndex(2));
    assert_eq!(
        cluster.applied[0].len(),
        2,
        "no-op and the command are applied"
    );
}

#[test]
fn candidate_with_majority_of_votes_becomes_leader() {
    let mut cluster = Cluster::new(3);
    cluster.campaign(1);
    assert_eq!(cluster.leaders(), vec![1]);
    assert_eq!(cluster.nodes[1].current_term(), Term(1));
    for id in [0, 2] {
        assert_eq!(cluster.nodes[id].role(), Role::Follower);
        assert_eq!(cluster.nodes[id].leader_id(), Some(NodeId(1)));
    }
}

#[test]
fn proposals_replicate_commit_and_apply_everywhere_in_order() {
    let mut cluster = Cluster::new(3);
    cluster.campaign(0);
    for value in 0..10u8 {
        cluster.nodes[0].propose(&[value]).expect("leader");
    }
    cluster.deliver_all();
    cluster.heartbeat(0); // tells followers the commit index
    for id in 0..3 {
        let data: Vec<Vec<u8>> = cluster.applied[id]
            .iter()
            .skip(1)
            .map(|entry| entry.data.to_vec())
            .collect();
        assert_eq!(
            data,
            (0..10u8).map(|value| vec![value]).collect::<Vec<_>>(),
            "node {id}"
        );
        let indexes: Vec<u64> = cluster.applied[id]
            .iter()
            .map(|entry| entry.index.0)
            .collect();
        assert_eq!(indexes, (1..=11).collect::<Vec<_>>());
    }
}

#[test]
fn follower_refuses_proposals_and_names_the_leader() {
    let mut cluster = Cluster::new(3);
    cluster.campaign(2);
    assert_eq!(
        cluster.nodes[0].propose(b"x"),
        Err(ProposeError::NotLeader {
            leader: Some(NodeId(2))
        })
    );
}

#[test]
fn split_vote_elects_nobody_then_a_later_timeout_does() {
    let mut cluster = Cluster::new(4);
    // 0 and 1 campaign at once; 2 hears 0 first, 3 hears 1 first.
    let deadline0 = cluster.nodes[0].next_deadline_ms();
    let deadline1 = cluster.nodes[1].next_deadline_ms();
    cluster.nodes[0].advance_time(deadline0);
    cluster.nodes[1].advance_time(deadline1);
    cluster.process_all();
    let mut requests: Vec<Message> = cluster.queue.drain(..).collect();
    requests.sort_by_key(|message| {
        let first = (message.to == NodeId(2) && message.from == NodeId(0))
            || (message.to == NodeId(3) && message.from == NodeId(1));
        !first
    });
    cluster.queue.extend(requests);
    cluster.deliver_all();
    assert!(cluster.leaders().is_empty(), "2 of 4 votes is no majority");
    cluster.campaign(2);
    assert_eq!(cluster.leaders(), vec![2]);
    assert_eq!(cluster.nodes[2].current_term(), Term(2));
}

#[test]
fn at_most_one_vote_per_term() {
    let mut cluster = Cluster::new(3);
    let request = |from: u32| Message {
        from: NodeId(from),
        to: NodeId(0),
        term: Term(5),
        cluster: ClusterTag::default(),
        body: MessageBody::RequestVote(RequestVote {
            last_log_index: LogIndex(0),
            last_log_term: Term(0),
            pre_vote: false,
            transfer: false,
        }),
    };
    cluster.nodes[0].step(request(1));
    let ready = cluster.nodes[0].ready();
    assert_eq!(
        ready.hard_state,
        Some(HardState {
            current_term: Term(5),
            voted_for: Some(NodeId(1)),
            cluster_id: None,
        }),
        "the vote must be persisted with this Ready"
    );
    assert!(
        ready.messages.is_empty(),
        "a vote grant waits for the write"
    );
    assert!(granted(&ready.messages_after_persist[0]));
    cluster.nodes[0].step(request(2));
    let ready = cluster.nodes[0].ready();
    assert!(
        !granted(&ready.messages_after_persist[0]),
        "second vote in term 5"
    );
    cluster.nodes[0].step(request(1));
    let ready = cluster.nodes[0].ready();
    assert!(
        granted(&ready.messages_after_persist[0]),
        "a repeated request gets the same vote"
    );
}

fn granted(message: &Message) -> bool {
    matches!(
        message.body,
        MessageBody::RequestVoteResponse(RequestVoteResponse {
            vote_granted: true,
            ..
        })
    )
}

#[test]
fn vote_denied_to_a_candidate_with_a_less_up_to_date_log() {
    // §5.4.1: node 0 has a later last term; node 1 a longer log of an older term.
    let mut cluster = Cluster::with_logs(&[vec![1, 3], vec![1, 2, 2, 2], vec![1, 3]], Term(3));
    cluster.campaign(1);
    assert_ne!(
        cluster.nodes[1].role(),
        Role::Leader,
        "both others have a later last term"
    );
    let mut cluster = Cluster::with_logs(&[vec![1, 3], vec![1, 2, 2, 2], vec![1, 2]], Term(3));
    cluster.campaign(1);
    assert_eq!(
        cluster.leaders(),
        vec![1],
        "node 2's log is behind node 1's: it votes yes"
    );
}

#[test]
fn figure_7_every_follower_converges_to_the_leader_log() {
    let leader = vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let logs = vec![
        leader.clone(),
        vec![1, 1, 1, 4, 4, 5, 5, 6, 6],
        vec![1, 1, 1, 4],
        vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
        vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
        vec![1, 1, 1, 4, 4, 4, 4],
        vec![1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
    ];
    let mut cluster = Cluster::with_logs(&logs, Term(7));
    cluster.campaign(0);
    assert_eq!(
        cluster.leaders(),
        vec![0],
        "(a), (b), (e), (f) vote for the leader"
    );
    cluster.heartbeat(0);
    let mut expected = leader;
    expected.push(8);
    for id in 0..logs.len() {
        assert_eq!(cluster.log_terms(id), expected, "follower {id}");
    }
    assert_eq!(cluster.nodes[0].status().commit_index, LogIndex(11));
}

#[test]
fn fast_backtracking_skips_a_term_per_round_trip() {
    // Follower (f) of Figure 7: terms 2 and 3 conflict with the leader's log.
    let logs = vec![
        vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6],
        vec![1, 1, 1, 4, 4, 5, 5, 6, 6, 6],
        vec![1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
    ];
    let mut cluster = Cluster::with_logs(&logs, Term(7));
    let rejections = std::rc::Rc::new(std::cell::Cell::new(0));
    let counter = rejections.clone();
    cluster.filter = Box::new(move |message| {
        if let MessageBody::AppendEntriesResponse(response) = &message.body {
            if !response.success && message.from == NodeId(2) {
                counter.set(counter.get() + 1);
            }
        }
        true
    });
    cluster.campaign(0);
    cluster.heartbeat(0);
    assert_eq!(cluster.log_terms(2), cluster.log_terms(0));
    assert!(
        rejections.get() <= 2,
        "{} rejections; one per conflicting term expected",
        rejections.get()
    );
}

#[test]
fn figure_8_an_old_term_entry_is_not_committed_by_counting_replicas() {
    // Leader 0 at term 4 holds (index 2, term 2) that now sits on a majority.
    let logs = vec![vec![1, 2], vec![1, 2], vec![1], vec![1], vec![1, 3]];
    let mut cluster = Cluster::with_logs(&logs, Term(3));
    cluster.filter = Box::new(|message| message.from == NodeId(0) || message.to == NodeId(0));
    let deadline = cluster.nodes[0].next_deadline_ms();
    cluster.nodes[0].advance_time(deadline);
    cluster.process(0);
    // Deliver only the vote requests; answer by hand afterwards.
    cluster
        .queue
        .retain(|message| matches!(message.body, MessageBody::RequestVote(_)));
    let grants = [1, 2, 3].map(|from| Message {
        from: NodeId(from),
        to: NodeId(0),
        term: Term(4),
        cluster: ClusterTag::default(),
        body: MessageBody::RequestVoteResponse(RequestVoteResponse {
            vote_granted: true,
            pre_vote: false,
        }),
    });
    cluster.queue.clear();
    for grant in grants {
        cluster.nodes[0].step(grant);
    }
    assert_eq!(cluster.nodes[0].role(), Role::Leader);
    cluster.process(0);
    cluster.queue.clear();
    let ack = |from: u32, index: u64| Message {
        from: NodeId(from),
        to: NodeId(0),
        term: Term(4),
        cluster: ClusterTag::default(),
        body: MessageBody::AppendEntriesResponse(AppendEntriesResponse {
            success: true,
            index: LogIndex(index),
            conflict_term: None,
            conflict_index: LogIndex(0),
            round: 0,
        }),
    };
    cluster.nodes[0].step(ack(1, 2));
    cluster.nodes[0].step(ack(2, 2));
    cluster.process(0);
    assert_eq!(
        cluster.nodes[0].status().commit_index,
        LogIndex(0),
        "index 2 is on 3 of 5 but from term 2: it must not commit"
    );
    cluster.nodes[0].step(ack(1, 3));
    cluster.nodes[0].step(ack(2, 3));
    cluster.process(0);
    assert_eq!(
        cluster.nodes[0].status().commit_index,
        LogIndex(3),
        "the no-op of term 4 commits both"
    );
}

#[test]
fn stale_leader_is_told_the_new_term_and_steps_down() {
    let mut cluster = Cluster::new(3);
    cluster.campaign(0);
    // Isolate 0; 1 wins term 2.
    cluster.filter = Box::new(|message| message.from != NodeId(0) && message.to != NodeId(0));
    cluster.campaign(1);
    assert_eq!(cluster.nodes[1].current_term(), Term(2));
    let log_before = cluster.log_terms(2);
    cluster.filter = Box::new(|_| true);
    cluster.nodes[0]
        .propose(b"stale")
        .expect("still thinks it leads");
    cluster.deliver_all();
    assert_eq!(
        cluster.log_terms(2),
        log_before,
        "a term-1 append must not touch a term-2 log"
    );
    assert_eq!(cluster.nodes[0].role(), Role::Follower);
    assert_eq!(cluster.nodes[0].current_term(), Term(2));
    cluster.heartbeat(1);
    assert_eq!(
        cluster.log_terms(0),
        cluster.log_terms(1),
        "the stale entry is replaced"
    );
}

#[test]
fn leader_pipelines_without_waiting_for_answers() {
    let mut cluster = Cluster::new(3);
    cluster.campaign(0);
    cluster.heartbeat(0);
    let mut appends_to_1 = 0;
    for round in 0..3u8 {
        cluster.nodes[0].propose(&[round]).expect("leader");
        let ready = cluster.nodes[0].ready();
        appends_to_1 += ready
            .messages
            .iter()
            .filter(|message| {
                message.to == NodeId(1) && matches!(message.body, MessageBody::AppendEntries(_))
            })
            .count();
    }
    assert_eq!(
        appends_to_1, 3,
        "one batch per Ready, none waiting for a reply"
    );
}

#[test]
fn proposals_in_one_turn_form_one_batch() {
    let mut cluster = Cluster::new(3);
    cluster.campaign(0);
    cluster.heartbeat(0);
    for value in 0..100u8 {
        cluster.nodes[0].propose(&[value]).expect("leader");
    }
    let ready = cluster.nodes[0].ready();
    assert_eq!(ready.entries.len(), 100, "one write for the whole turn");
    let batches: Vec<usize> = ready
        .messages
        .iter()
        .filter_map(|message| match &message.body {
            MessageBody::AppendEntries(request) if message.to == NodeId(1) => {
                Some(request.entries.len())
            }
            _ => None,
        })
        .collect();
    assert_eq!(batches, vec![100]);
}

#[test]
fn leader_counts_itself_only_once_its_write_is_durable() {
    let mut cluster = Cluster::new(3);
    cluster.campaign(0);
    cluster.heartbeat(0);
    let (index, term) = cluster.nodes[0].propose(b"x").expect("leader");
    let ready = cluster.nodes[0].ready();
    // One follower acknowledges; the leader's own write is not yet done.
    let follower_cluster = cluster.nodes[1].cluster_tag();
    assert!(
        follower_cluster.bound,
        "the heartbeat told it the Bootstrap committed"
    );
    cluster.nodes[0].step(Message {
        from: NodeId(1),
        to: NodeId(0),
        term,
        cluster: follower_cluster,
        body: MessageBody::AppendEntriesResponse(AppendEntriesResponse {
            success: true,
            index,
            conflict_term: None,
            conflict_index: LogIndex(0),
            round: 0,
        }),
    });
    assert!(
        cluster.nodes[0].status().commit_index < index,
        "1 of 3 durable copies"
    );
    drop(ready);
    cluster.nodes[0].persisted(index, term);
    assert_eq!(cluster.nodes[0].status().commit_index, index);
}

#[test]
fn election_timeout_is_randomized_within_the_range() {
    let mut deadlines = std::collections::BTreeSet::new();
    for id in 0..5 {
        let raft = Raft::new(config(id, 5), HardState::default(), Vec::new(), 1000).expect("valid");
        let deadline = raft.next_deadline_ms();
        assert!((1000 + ELECTION_MIN..=1000 + ELECTION_MAX).contains(&deadline));
        deadlines.insert(deadline);
    }
    assert!(deadlines.len() > 1, "all nodes drew the same timeout");
}

#[test]
fn invalid_configs_are_refused() {
    let mut bad = config(0, 3);
    bad.id = NodeId(9);
    assert_eq!(bad.validate(), Err(ConfigError::SelfNotMember));
    let mut bad = config(0, 3);
    let StartConfiguration::Bootstrap(start) = &mut bad.start;
    start.members[2].id = NodeId(1);
    assert_eq!(bad.validate(), Err(ConfigError::DuplicateMember(NodeId(1))));
    let mut bad = config(0, 3);
    bad.heartbeat_interval_ms = 200;
    assert!(bad.validate().is_err());
}

#[test]
fn malformed_append_entries_are_dropped() {
    let mut cluster = Cluster::new(3);
    let bad_entries = vec![Entry::command(1, 2, &[]), Entry::command(2, 1, &[])];
    let future_term = vec![Entry::command(1, 9, &[])];
    let gap = vec![Entry::command(3, 2, &[])];
    for entries in [bad_entries, future_term, gap] {
        cluster.nodes[0].step(Message {
            from: NodeId(1),
            to: NodeId(0),
            term: Term(2),
            cluster: ClusterTag::default(),
            body: MessageBody::AppendEntries(AppendEntries {
                prev_log_index: LogIndex(0),
                prev_log_term: Term(0),
                leader_commit: LogIndex(0),
                round: 0,
                entries,
            }),
        });
        assert_eq!(cluster.nodes[0].log().last_index(), LogIndex(0));
        assert_eq!(
            cluster.nodes[0].current_term(),
            Term(0),
            "a dropped message changes nothing"
        );
    }
}

// ---- PreVote, CheckQuorum, leader stickiness (dissertation §9.6) ----------

pub(super) fn isolate(node: u32) -> Box<dyn Fn(&Message) -> bool> {
    Box::new(move |message| message.from != NodeId(node) && message.to != NodeId(node))
}

#[test]
fn pre_vote_keeps_a_cut_off_node_from_raising_the_term() {
    let mut cluster = Cluster::with_extensions(3);
    cluster.campaign(0);
    assert_eq!(cluster.leaders(), vec![0]);
    let term = cluster.nodes[0].current_term();
    cluster.filter = isolate(2);
    for round in 1..=5 {
        cluster.campaign(2);
        assert_eq!(cluster.nodes[2].role(), Role::PreCandidate, "round {round}");
        assert_eq!(
            cluster.nodes[2].current_term(),
            term,
            "pre-votes never bump the term"
        );
    }
    cluster.filter = Box::new(|_| true);
    cluster.heartbeat(0);
    assert_eq!(
        cluster.leaders(),
        vec![0],
        "the healthy leader keeps leading"
    );
    assert_eq!(cluster.nodes[2].role(), Role::Follower);
    assert_eq!(cluster.nodes[2].current_term(), term);
}

#[test]
fn pre_vote_then_real_election_once_the_leader_is_gone() {
    let mut cluster = Cluster::with_extensions(3);
    cluster.campaign(0);
    cluster.filter = isolate(0);
    // Everyone's lease on leader 0 runs out.
    let later = ELECTION_MAX + 1;
    for id in [1, 2] {
        cluster.nodes[id].observe_time(later);
    }
    cluster.campaign(1);
    assert_eq!(cluster.nodes[1].role(), Role::Leader);
    assert_eq!(cluster.nodes[1].current_term(), Term(2));
}

#[test]
fn followers_hearing_a_leader_ignore_vote_requests() {
    let mut cluster = Cluster::with_extensions(3);
    cluster.campaign(0);
    cluster.heartbeat(0);
    let request = Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(9),
        cluster: ClusterTag::default(),
        body: MessageBody::RequestVote(RequestVote {
            last_log_index: LogIndex(99),
            last_log_term: Term(8),
            pre_vote: false,
            transfer: false,
        }),
    };
    cluster.nodes[1].step(request);
    let ready = cluster.nodes[1].ready();
    assert!(
        ready.messages_after_persist.is_empty(),
        "no answer while in lease"
    );
    assert_eq!(
        cluster.nodes[1].current_term(),
        Term(1),
        "the term is not raised"
    );
    assert_eq!(ready.hard_state, None);
}

#[test]
fn check_quorum_leader_cut_off_steps_down_within_its_window() {
    let mut cluster = Cluster::with_extensions(3);
    cluster.campaign(0);
    let start = cluster.nodes[0].next_deadline_ms();
    cluster.filter = isolate(0);
    let window = CHECK_QUORUM_WINDOW_ELECTION_TIMEOUTS * ELECTION_MAX;
    let mut now = start;
    while cluster.nodes[0].role() == Role::Leader {
        now += HEARTBEAT;
        cluster.nodes[0].advance_time(now);
        cluster.process(0);
        assert!(now <= start + window + HEARTBEAT, "still leader at {now}");
    }
    assert!(
        now > start + ELECTION_MAX,
        "stepped down at {now}, inside the window"
    );
    assert_eq!(cluster.nodes[0].role(), Role::Follower);
}

#[test]
fn check_quorum_leader_with_a_majority_keeps_leading() {
    let mut cluster = Cluster::with_extensions(3);
    cluster.campaign(0);
    cluster.filter = isolate(2);
    for step in 1..=20 {
        cluster.advance_all(step * HEARTBEAT);
    }
    assert_eq!(cluster.nodes[0].role(), Role::Leader);
}

// ---- ReadIndex (dissertation §6.4) --------------------------------------

#[test]
fn read_index_is_released_after_a_majority_answers_a_heartbeat_round() {
    let mut cluster = Cluster::with_extensions(3);
    cluster.campaign(0);
    cluster.heartbeat(0);
    let commit = cluster.nodes[0].status().commit_index;
    cluster.nodes[0].read_index(7).expect("leader");
    let ready = cluster.nodes[0].ready();
    assert!(
        ready.read_states.is_empty(),
        "not before a round is answered"
    );
    let heartbeats = ready
        .messages
        .iter()
        .filter(|message| matches!(message.body, MessageBody::AppendEntries(_)))
        .count();
    assert_eq!(heartbeats, 2, "the read starts a round to both followers");
    cluster.queue.extend(ready.messages);
    cluster.deliver_all();
    assert_eq!(
        cluster.reads[0],
        vec![ReadState {
            context: 7,
            index: commit
        }]
    );
}

#[test]
fn reads_arriving_together_share_one_round() {
    let mut cluster = Cluster::with_extensions(3);
    cluster.campaign(0);
    cluster.heartbeat(0);
    for context in 1..=10 {
        cluster.nodes[0].read_index(context).expect("leader");
    }
    let ready = cluster.nodes[0].ready();
    let heartbeats = ready.messages.len();
    assert_eq!(heartbeats, 2, "one heartbeat per follower for ten reads");
    cluster.queue.extend(ready.messages);
    cluster.deliver_all();
    assert_eq!(cluster.reads[0].len(), 10);
}

#[test]
fn a_new_leader_serves_reads_only_after_committing_in_its_term() {
    let mut cluster = Cluster::with_extensions(3);
    cluster.filter = Box::new(|message| !matches!(message.body, MessageBody::AppendEntries(_)));
    cluster.campaign(0);
    assert_eq!(cluster.nodes[0].role(), Role::Leader);
    cluster.nodes[0].read_index(1).expect("leader");
    cluster.process(0);
    cluster.deliver_all();
    assert!(
        cluster.reads[0].is_empty(),
        "the no-op is not committed yet"
    );
    cluster.filter = Box::new(|_| true);
    cluster.heartbeat(0);
    cluster.heartbeat(0);
    assert_eq!(cluster.reads[0].len(), 1);
    assert_eq!(
        cluster.reads[0][0].index,
        LogIndex(1),
        "at the no-op's index"
    );
}

#[test]
fn an_isolated_leader_never_confirms_a_read() {
    let mut cluster = Cluster::with_extensions(3);
    cluster.campaign(0);
    cluster.heartbeat(0);
    cluster.filter = isolate(0);
    cluster.nodes[0].read_index(1).expect("still leader");
    let window = CHECK_QUORUM_WINDOW_ELECTION_TIMEOUTS * ELECTION_MAX;
    for step in 1..=(window + 1000) / HEARTBEAT {
        cluster.advance_all(1000 + step * HEARTBEAT);
    }
    assert!(
        cluster.reads[0].is_empty(),
        "a stale value must never be served"
    );
    assert_ne!(cluster.nodes[0].role(), Role::Leader, "it stepped down");
    assert_eq!(
        cluster.nodes[0].read_index(2),
        Err(ProposeError::NotLeader { leader: None })
    );
}

#[test]
fn single_node_reads_are_confirmed_at_once() {
    let mut cluster = Cluster::with_extensions(1);
    cluster.campaign(0);
    cluster.nodes[0].read_index(3).expect("leader");
    cluster.process(0);
    assert_eq!(cluster.reads[0].len(), 1);
}

#[test]
fn a_follower_that_lost_its_log_is_caught_up_again() {
    let mut cluster = Cluster::new(3);
    cluster.campaign(0);
    for value in 0..5u8 {
        cluster.nodes[0].propose(&[value]).expect("leader");
    }
    cluster.deliver_all();
    // Node 2 comes back with an empty disk (a wiped data dir).
    let term = cluster.nodes[2].current_term();
    let hard_state = HardState {
        current_term: term,
        voted_for: None,
        cluster_id: None,
    };
    cluster.nodes[2] = Raft::new(config(2, 3), hard_state, Vec::new(), 0).expect("valid");
    cluster.stored[2].clear();
    cluster.heartbeat(0);
    cluster.heartbeat(0);
    assert_eq!(
        cluster.log_terms(2),
        cluster.log_terms(0),
        "it is sent everything again"
    );
}

#[test]
fn an_answer_to_an_earlier_terms_request_confirms_nothing() {
    // A leader restarted into a later term must not count late answers to
    // its previous incarnation's heartbeats as read confirmations (found by
    // the simulator: seed 502619, size 7) nor as rejections.
    let mut cluster = Cluster::with_extensions(3);
    cluster.campaign(0);
    cluster.heartbeat(0);
    cluster.filter = isolate(0);
    cluster.nodes[0].read_index(1).expect("leader");
    cluster.process(0);
    cluster.queue.clear();
    let stale_answer = |from: u32| Message {
        from: NodeId(from),
        to: NodeId(0),
        term: cluster.nodes[0].current_term(),
        cluster: ClusterTag::default(),
        body: MessageBody::AppendEntriesResponse(AppendEntriesResponse {
            success: false,
            index: LogIndex(1),
            conflict_term: None,
            conflict_index: LogIndex(0),
            round: 99,
        }),
    };
    let answers = [stale_answer(1), stale_answer(2)];
    for answer in answers {
        cluster.nodes[0].step(answer);
    }
    let ready = cluster.nodes[0].ready();
    assert!(
        ready.read_states.is_empty(),
        "a read confirmed by stale answers"
    );
    let lost = ready
        .events
        .iter()
        .any(|event| matches!(event, Event::FollowerLostEntries { .. }));
    assert!(!lost, "a stale answer is not a follower that lost its log");
}

/// Every node that acknowledges a client's write is bound to the cluster
/// first (`HardState::cluster_id`), so a stale member of another cluster
/// can never win over a majority that holds it: a leader does not count a
/// command held by followers that do not know the Bootstrap committed.
fn unbound_followers_hold_a_command(prepare: impl Fn(&mut Cluster)) -> Cluster {
    let mut cluster = Cluster::new(3);
    prepare(&mut cluster);
    cluster.filter = Box::new(|message| {
        !(message.to == NodeId(0) && matches!(message.body, MessageBody::AppendEntriesResponse(_)))
    });
    cluster.campaign(0);
    cluster.nodes[0].propose(b"x").expect("leader");
    cluster.heartbeat(0); // re-sends the unanswered probe, with the command
    assert_eq!(
        cluster.log_terms(1),
        vec![1, 1],
        "followers hold the command"
    );
    assert!(!cluster.nodes[1].cluster_tag().bound);
    cluster.filter = Box::new(|_| true);
    cluster.heartbeat(0); // answered by followers still unbound
    cluster
}

#[test]
fn a_command_held_only_by_unbound_followers_does_not_commit() {
    let mut cluster = unbound_followers_hold_a_command(|_| {});
    assert_eq!(
        cluster.nodes[0].status().commit_index,
        LogIndex(1),
        "the Bootstrap commits, the command does not"
    );
    assert!(
        cluster.nodes[0].cluster_id().is_some(),
        "the leader is bound"
    );
    cluster.heartbeat(0); // tells the followers: they bind, and answer so
    assert!(cluster.nodes[1].cluster_tag().bound);
    assert_eq!(cluster.nodes[0].status().commit_index, LogIndex(2));
}

/// The planted bug `count-unbound-acks` makes that test fail.
#[cfg(feature = "planted-bugs")]
#[test]
fn planted_count_unbound_acks_commits_a_command_no_bound_majority_holds() {
    let cluster = unbound_followers_hold_a_command(|cluster| {
        for node in &mut cluster.nodes {
            node.plant_bug(Some(PlantedBug::CountUnboundAcks));
        }
    });
    assert_eq!(cluster.nodes[0].status().commit_index, LogIndex(2));
    assert!(!cluster.nodes[1].cluster_tag().bound);
}

// ---- cluster identity: interleavings found in review ------------------------

fn bootstrap(index: u64, term: u64, id: u64) -> Entry {
    Entry {
        term: Term(term),
        index: LogIndex(index),
        kind: EntryKind::Bootstrap,
        data: ClusterId(id).to_bytes().as_slice().into(),
    }
}

fn append_from(from: u32, term: u64, tag: ClusterTag, entries: Vec<Entry>, commit: u64) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(1),
        term: Term(term),
        cluster: tag,
        body: MessageBody::AppendEntries(AppendEntries {
            prev_log_index: LogIndex(0),
            prev_log_term: Term(0),
            leader_commit: LogIndex(commit),
            round: 0,
            entries,
        }),
    }
}

/// A follower that knows its Bootstrap committed, but whose copy is not
/// durable yet (so it is not bound), ignores a stale member leading a
/// higher term with another cluster's log: it neither takes the term nor
/// drops its committed first entry (which used to stop it on an assertion).
#[test]
fn a_node_that_knows_its_bootstrap_committed_ignores_another_clusters_leader() {
    let mut follower = Raft::new(config(1, 3), HardState::default(), Vec::new(), 0).unwrap();
    let ours = ClusterTag {
        log_id: Some(ClusterId(0xC)),
        bound: true,
    };
    follower.step(append_from(0, 1, ours, vec![bootstrap(1, 1, 0xC)], 1));
    let _write_in_flight = follower.ready();
    assert_eq!(follower.status().commit_index, LogIndex(1));
    assert!(
        follower.cluster_id().is_none(),
        "not durable: not bound yet"
    );
    let theirs = ClusterTag {
        log_id: Some(ClusterId(0xD)),
        bound: true,
    };
    follower.step(append_from(2, 9, theirs, vec![bootstrap(1, 9, 0xD)], 0));
    assert_eq!(
        follower.current_term(),
        Term(1),
        "the stale term is not taken"
    );
    assert_eq!(follower.log().term_at(LogIndex(1)), Some(Term(1)));
    let ready = follower.ready();
    assert!(ready
        .events
        .iter()
        .any(|event| matches!(event, Event::ForeignMessageIgnored { .. })));
}

/// A node whose log begins with a Bootstrap grants no vote to a candidate
/// bound to another cluster, even before it knows its own Bootstrap is
/// committed: a stale member cannot win, in a new cluster's first
/// heartbeat, the nodes that hold its committed Bootstrap (it used to,
/// leaving the first leader bound to a cluster of one).
#[test]
fn a_stale_member_cannot_win_the_votes_of_nodes_holding_a_bootstrap() {
    let mut cluster = Cluster::new(3);
    let stale_log = vec![bootstrap(1, 3, 0xD), Entry::command(2, 10, b"old")];
    let stale_hard_state = HardState {
        current_term: Term(10),
        voted_for: None,
        cluster_id: Some(ClusterId(0xD)),
    };
    cluster.nodes[2] = Raft::new(config(2, 3), stale_hard_state, stale_log.clone(), 0).unwrap();
    cluster.stored[2] = stale_log;
    cluster.filter = Box::new(|message| message.from != NodeId(2) && message.to != NodeId(2));
    cluster.campaign(0);
    assert!(
        cluster.nodes[0].cluster_id().is_some(),
        "the first leader is bound"
    );
    assert!(
        cluster.nodes[1].cluster_id().is_none(),
        "its follower not yet"
    );
    cluster.filter = Box::new(|message| message.from != NodeId(0) && message.to != NodeId(0));
    cluster.campaign(2);
    assert_ne!(
        cluster.nodes[2].role(),
        Role::Leader,
        "no vote for the stale member"
    );
    assert_eq!(cluster.nodes[1].current_term(), Term(1), "nor its term");
    cluster.filter = Box::new(|_| true);
    cluster.heartbeat(0);
    assert_eq!(cluster.nodes[1].cluster_id(), cluster.nodes[0].cluster_id());
    let (index, _) = cluster.nodes[0].propose(b"w").expect("leader");
    cluster.heartbeat(0);
    assert!(cluster.nodes[0].status().commit_index >= index);
}

/// The smallest limits Config allows: every AppendEntries carries one
/// entry, one is in flight per follower, one entry applies per Ready, and
/// one read may wait. Everything still replicates, commits and applies.
#[test]
fn smallest_limits_still_replicate_everything() {
    let mut cluster = Cluster::new(3);
    for node in &mut cluster.nodes {
        node.config.limits = Limits {
            append_batch_entries_max: 1,
            append_batch_size_max: 1,
            inflight_appends_max: 1,
            inflight_bytes_max: 1,
            apply_batch_entries_max: 1,
            reads_pending_max: 1,
            snapshot_chunk_size_max: 1,
            inflight_snapshot_chunks_max: 1,
        };
    }
    cluster.campaign(0);
    for data in [b"a", b"b", b"c"] {
        cluster.nodes[0].propose(data).expect("leader");
    }
    cluster.process(0);
    let appends = cluster
        .queue
        .iter()
        .filter_map(|message| match &message.body {
            MessageBody::AppendEntries(request) => Some(request.entries.len()),
            _ => None,
        });
    assert!(appends.eq([1, 1]), "one one-entry batch per follower");
    cluster.deliver_all();
    cluster.heartbeat(0); // followers learn the last commit
    for id in 0..3 {
        assert_eq!(cluster.nodes[id].status().commit_index, LogIndex(4));
        assert_eq!(cluster.applied[id].len(), 4, "node {id}");
    }
    cluster.nodes[0].read_index(1).expect("a read may wait");
    let refused = cluster.nodes[0].read_index(2);
    assert_eq!(refused, Err(ProposeError::Busy), "a second one may not");
}

// ---- configurations in the log ----------------------------------------------

/// The first leader writes the configuration the cluster starts with into
/// its Bootstrap entry, after the cluster id; every follower has it in
/// effect once appended, and binds to the id as before.
#[test]
fn the_first_leader_writes_its_configuration_into_the_bootstrap() {
    let mut cluster = Cluster::new(3);
    cluster.campaign(0);
    cluster.heartbeat(0);
    let start = Configuration::numbered(3);
    let cluster_id = ClusterId(0xc1u64 << 32);
    for (node, stored) in cluster.nodes.iter().zip(&cluster.stored) {
        let first = &stored[0];
        assert_eq!(first.kind, EntryKind::Bootstrap);
        assert_eq!(first.data[..8], cluster_id.to_bytes());
        assert_eq!(Configuration::of_entry(first), Some(Ok(start.clone())));
        assert_eq!(node.log().configs().current().index, LogIndex(1));
        assert_eq!(node.configuration(), &start);
        assert_eq!(node.cluster_id(), Some(cluster_id), "bound as before");
    }
}

/// A cluster bootstrapped before configurations has an 8-byte Bootstrap:
/// it restores under the start configuration, still elects, commits and
/// binds to the id the entry names.
#[test]
fn a_legacy_eight_byte_bootstrap_log_restores_and_binds_as_before() {
    let legacy = vec![bootstrap(1, 1, 0x77), Entry::command(2, 1, b"x")];
    let hard_state = HardState {
        current_term: Term(1),
        ..HardState::default()
    };
    let mut cluster = Cluster::new(3);
    for id in 0..3 {
        let node = Raft::new(config(id as u32, 3), hard_state, legacy.clone(), 0);
        cluster.nodes[id] = node.expect("a legacy log restores");
        cluster.stored[id] = legacy.clone();
        assert_eq!(
            cluster.nodes[id].log().configs().current().index,
            LogIndex(0)
        );
    }
    cluster.campaign(0);
    cluster.heartbeat(0);
    cluster.heartbeat(0); // followers learn the commit
    for node in &cluster.nodes {
        assert_eq!(node.cluster_id(), Some(ClusterId(0x77)));
        assert_eq!(node.status().commit_index, LogIndex(3), "the new no-op");
        assert_eq!(node.configuration(), &Configuration::numbered(3));
    }
    let noop = &cluster.stored[0][2];
    assert_eq!(
        noop.kind,
        EntryKind::Noop,
        "only the first leader writes one"
    );
}

/// A stored entry whose configuration does not decode stops the node with
/// the entry's index; from a peer, such an AppendEntries is dropped whole.
#[test]
fn a_configuration_that_does_not_decode_is_refused() {
    let mut bad = Configuration::numbered(3).to_bytes();
    bad[0] = 9;
    let entry = Entry {
        kind: EntryKind::Configuration,
        ..Entry::command(2, 1, &bad)
    };
    let log = vec![bootstrap(1, 1, 0x77), entry.clone()];
    let hard_state = HardState {
        current_term: Term(1),
        ..HardState::default()
    };
    let refused = Raft::new(config(0, 3), hard_state, log, 0).err();
    let problem = membership::ConfigurationError {
        field: "format",
        offset: 0,
        problem: "unknown format",
    };
    let index = LogIndex(2);
    let expected = ConfigError::StoredConfiguration { index, problem };
    assert_eq!(refused, Some(expected.clone()));
    assert_eq!(
        expected.to_string(),
        "the log entry at index 2 holds a bad configuration format at offset 0: unknown format"
    );
    let mut cluster = Cluster::new(3);
    let first = Entry {
        index: LogIndex(1),
        ..entry
    };
    cluster.nodes[1].step(append_from(0, 1, ClusterTag::default(), vec![first], 0));
    let ready = cluster.nodes[1].ready();
    assert!(
        ready.entries.is_empty() && ready.messages.is_empty(),
        "dropped"
    );
}

/// The fault bench's stale member: a single node's data dir (its Bootstrap
/// holds a one-voter configuration) started at a member's address with the
/// cluster's --peers. It must not elect itself on its own log's say-so:
/// until issue 14's start-up plan, --peers decides the voters, as before.
#[test]
fn a_stored_configuration_with_other_voters_than_the_start_is_ignored() {
    let alone = Configuration::numbered(1);
    let log = vec![
        Entry {
            kind: EntryKind::Bootstrap,
            ..Entry::command(1, 1, &alone.bootstrap_payload(ClusterId(0x55)))
        },
        Entry::command(2, 1, b"stale"),
    ];
    let hard_state = HardState {
        current_term: Term(1),
        ..HardState::default()
    };
    let mut raft = Raft::new(config(0, 3), hard_state, log.clone(), 0).expect("restores");
    assert_eq!(raft.configuration(), &Configuration::numbered(3));
    assert!(!raft.log().configs().follows_log());
    let ready = raft.ready();
    let event = Event::StoredConfigurationIgnored { index: LogIndex(1) };
    assert!(ready.events.contains(&event), "{:?}", ready.events);
    let deadline = raft.next_deadline_ms();
    raft.advance_time(deadline);
    raft.ready();
    assert_eq!(raft.role(), Role::Candidate, "one vote of three");
    let same = Raft::new(config(0, 1), hard_state, log, 0).expect("restores");
    assert!(
        same.log().configs().follows_log(),
        "the same voters: followed"
    );
}
