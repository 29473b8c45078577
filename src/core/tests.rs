//! Tests of the protocol rules, each named for the sentence of the paper it
//! checks. A tiny harness delivers messages between cores by hand.

use super::*;
use std::collections::VecDeque;

const ELECTION_MIN: u64 = 150;
const ELECTION_MAX: u64 = 300;
const HEARTBEAT: u64 = 50;

struct Cluster {
    nodes: Vec<Raft>,
    /// Each node's "disk": what it persisted.
    stored: Vec<Vec<Entry>>,
    queue: VecDeque<Message>,
    /// Messages for which this returns false are dropped.
    filter: Box<dyn Fn(&Message) -> bool>,
    applied: Vec<Vec<Entry>>,
}

fn config(id: u32, size: u32) -> Config {
    Config {
        id: NodeId(id),
        members: (0..size).map(NodeId).collect(),
        election_timeout_ms_min: ELECTION_MIN,
        election_timeout_ms_max: ELECTION_MAX,
        heartbeat_interval_ms: HEARTBEAT,
        seed: 42,
    }
}

fn entries_with_terms(terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(offset, &term)| Entry {
            term: Term(term),
            index: LogIndex(offset as u64 + 1),
            kind: EntryKind::Command,
            data: vec![term as u8],
        })
        .collect()
}

impl Cluster {
    fn new(size: u32) -> Cluster {
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
                    voted_for: None,
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
        }
    }

    /// One Ready of one node: persist, queue its messages, apply.
    fn process(&mut self, id: usize) {
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
        self.applied[id].extend(ready.committed_entries);
        self.nodes[id].check_invariants();
    }

    fn process_all(&mut self) {
        for id in 0..self.nodes.len() {
            self.process(id);
            while self.nodes[id].has_ready() {
                self.process(id);
            }
        }
    }

    /// Delivers messages until none is left, processing each receiver.
    fn deliver_all(&mut self) {
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
    fn campaign(&mut self, id: usize) {
        let deadline = self.nodes[id].next_deadline_ms();
        self.nodes[id].advance_time(deadline);
        self.deliver_all();
    }

    fn heartbeat(&mut self, leader: usize) {
        let deadline = self.nodes[leader].next_deadline_ms();
        self.nodes[leader].advance_time(deadline);
        self.deliver_all();
    }

    fn log_terms(&self, id: usize) -> Vec<u64> {
        self.stored[id].iter().map(|entry| entry.term.0).collect()
    }

    fn leaders(&self) -> Vec<usize> {
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
    let (index, term) = cluster.nodes[0].propose(b"x".to_vec()).expect("leader");
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
        cluster.nodes[0].propose(vec![value]).expect("leader");
    }
    cluster.deliver_all();
    cluster.heartbeat(0); // tells followers the commit index
    for id in 0..3 {
        let data: Vec<Vec<u8>> = cluster.applied[id]
            .iter()
            .skip(1)
            .map(|entry| entry.data.clone())
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
        cluster.nodes[0].propose(b"x".to_vec()),
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
        body: MessageBody::RequestVote(RequestVote {
            last_log_index: LogIndex(0),
            last_log_term: Term(0),
        }),
    };
    cluster.nodes[0].step(request(1));
    let ready = cluster.nodes[0].ready();
    assert_eq!(
        ready.hard_state,
        Some(HardState {
            current_term: Term(5),
            voted_for: Some(NodeId(1))
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
        MessageBody::RequestVoteResponse(RequestVoteResponse { vote_granted: true })
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
        body: MessageBody::RequestVoteResponse(RequestVoteResponse { vote_granted: true }),
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
        body: MessageBody::AppendEntriesResponse(AppendEntriesResponse {
            success: true,
            index: LogIndex(index),
            conflict_term: None,
            conflict_index: LogIndex(0),
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
        .propose(b"stale".to_vec())
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
        cluster.nodes[0].propose(vec![round]).expect("leader");
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
        cluster.nodes[0].propose(vec![value]).expect("leader");
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
    let (index, term) = cluster.nodes[0].propose(b"x".to_vec()).expect("leader");
    let ready = cluster.nodes[0].ready();
    // One follower acknowledges; the leader's own write is not yet done.
    cluster.nodes[0].step(Message {
        from: NodeId(1),
        to: NodeId(0),
        term,
        body: MessageBody::AppendEntriesResponse(AppendEntriesResponse {
            success: true,
            index,
            conflict_term: None,
            conflict_index: LogIndex(0),
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
    bad.members.push(NodeId(1));
    assert_eq!(bad.validate(), Err(ConfigError::DuplicateMember(NodeId(1))));
    let mut bad = config(0, 3);
    bad.heartbeat_interval_ms = 200;
    assert!(bad.validate().is_err());
}

#[test]
fn malformed_append_entries_are_dropped() {
    let mut cluster = Cluster::new(3);
    let bad_entries = vec![
        Entry {
            term: Term(2),
            index: LogIndex(1),
            kind: EntryKind::Command,
            data: vec![],
        },
        Entry {
            term: Term(1),
            index: LogIndex(2),
            kind: EntryKind::Command,
            data: vec![],
        },
    ];
    let future_term = vec![Entry {
        term: Term(9),
        index: LogIndex(1),
        kind: EntryKind::Command,
        data: vec![],
    }];
    let gap = vec![Entry {
        term: Term(2),
        index: LogIndex(3),
        kind: EntryKind::Command,
        data: vec![],
    }];
    for entries in [bad_entries, future_term, gap] {
        cluster.nodes[0].step(Message {
            from: NodeId(1),
            to: NodeId(0),
            term: Term(2),
            body: MessageBody::AppendEntries(AppendEntries {
                prev_log_index: LogIndex(0),
                prev_log_term: Term(0),
                leader_commit: LogIndex(0),
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
