//! Leadership transfer (dissertation §3.10), one rule per test, on the
//! harness of `tests.rs`: PreVote and CheckQuorum on unless a test needs
//! them off, as the daemon runs.

use super::tests::{isolate, Cluster, ELECTION_MAX, HEARTBEAT};
use super::*;

fn is_timeout_now(message: &Message) -> bool {
    matches!(message.body, MessageBody::TimeoutNow)
}

fn transfer_outcomes(cluster: &Cluster, id: usize) -> Vec<(NodeId, TransferOutcome)> {
    cluster.events[id]
        .iter()
        .filter_map(|event| match event {
            Event::TransferEnded { to, outcome } => Some((*to, *outcome)),
            _ => None,
        })
        .collect()
}

/// A leader (node 0, term 1) of three whose followers hold its whole log.
fn settled() -> Cluster {
    let mut cluster = Cluster::with_extensions(3);
    cluster.campaign(0);
    cluster.heartbeat(0);
    cluster
}

#[test]
fn an_up_to_date_target_is_told_at_once_and_wins_the_next_term() {
    let mut cluster = settled();
    let started = cluster.nodes[0].transfer_leadership(NodeId(1));
    assert_eq!(started.map(|s| (s.to, s.term)), Ok((NodeId(1), Term(1))));
    let ready = cluster.nodes[0].ready();
    let timeout_now: Vec<_> = ready
        .messages
        .iter()
        .filter(|m| is_timeout_now(m))
        .collect();
    assert_eq!(timeout_now.len(), 1, "{:?}", ready.messages);
    assert_eq!(timeout_now[0].to, NodeId(1));
    assert!(ready.events.iter().any(|event| matches!(
        event,
        Event::TransferStarted {
            to: NodeId(1),
            term: Term(1),
            ..
        }
    )));
    cluster.queue.extend(ready.messages);
    cluster.deliver_all();
    assert_eq!(cluster.leaders(), vec![1]);
    assert_eq!(cluster.nodes[1].current_term(), Term(2));
    let succeeded = TransferOutcome::Succeeded { term: Term(2) };
    assert_eq!(transfer_outcomes(&cluster, 0), [(NodeId(1), succeeded)]);
    assert_eq!(cluster.nodes[0].transferring_to(), None);
    assert_eq!(cluster.nodes[0].leader_id(), Some(NodeId(1)));
}

#[test]
fn the_target_campaigns_at_once_without_pre_vote_and_says_it_is_a_transfer() {
    let mut cluster = settled();
    cluster.nodes[0].transfer_leadership(NodeId(2)).unwrap();
    let ready = cluster.nodes[0].ready();
    let timeout_now = ready.messages.into_iter().find(is_timeout_now).unwrap();
    cluster.nodes[2].step(timeout_now);
    assert_eq!(cluster.nodes[2].role(), Role::Candidate, "no PreVote round");
    assert_eq!(cluster.nodes[2].current_term(), Term(2));
    let ready = cluster.nodes[2].ready();
    let requests: Vec<_> = ready
        .messages_after_persist
        .iter()
        .filter_map(|message| match &message.body {
            MessageBody::RequestVote(request) => Some(request.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.transfer && !r.pre_vote));
}

#[test]
fn a_lagging_target_is_told_on_the_ack_that_catches_it_up() {
    let mut cluster = settled();
    cluster.filter = Box::new(|message| message.to != NodeId(2));
    for _ in 0..3 {
        cluster.nodes[0].propose(b"x").unwrap();
    }
    cluster.deliver_all();
    let last_index = cluster.nodes[0].log().last_index();
    assert!(cluster.stored[2].len() < last_index.0 as usize);
    cluster.filter = Box::new(|_| true);
    cluster.nodes[0].transfer_leadership(NodeId(2)).unwrap();
    let ready = cluster.nodes[0].ready();
    assert!(
        !ready.messages.iter().any(is_timeout_now),
        "not caught up yet"
    );
    cluster.queue.extend(ready.messages);
    let mut told = false;
    // The lost appends are found out at a heartbeat.
    for _ in 0..5 {
        while let Some(message) = cluster.queue.pop_front() {
            if is_timeout_now(&message) {
                let held = cluster.stored[2].last().map(|entry| entry.index);
                assert_eq!(held, Some(last_index), "told before it was caught up");
                told = true;
            }
            let to = message.to.0 as usize;
            cluster.nodes[to].step(message);
            cluster.process_all();
        }
        let deadline = cluster.nodes[0].next_deadline_ms();
        cluster.nodes[0].advance_time(deadline);
        cluster.process_all();
    }
    assert!(told);
    assert_eq!(cluster.leaders(), vec![2]);
}

#[test]
fn proposals_are_refused_meanwhile_and_resume_when_the_transfer_times_out() {
    let mut cluster = settled();
    cluster.filter = isolate(2);
    let started = cluster.nodes[0].transfer_leadership(NodeId(2)).unwrap();
    assert_eq!(
        cluster.nodes[0].propose(b"x"),
        Err(ProposeError::Transferring { to: NodeId(2) })
    );
    assert_eq!(cluster.nodes[0].read_index(7), Ok(()), "reads still served");
    assert!(cluster.nodes[0].next_deadline_ms() <= started.deadline_ms);
    let mut now = cluster.nodes[0].now_ms();
    while now < started.deadline_ms {
        now += HEARTBEAT / 2;
        assert!(cluster.nodes[0].propose(b"x").is_err() || now >= started.deadline_ms);
        cluster.advance_all(now);
    }
    assert_eq!(cluster.leaders(), vec![0], "the leader kept leading");
    let timed_out = TransferOutcome::TimedOut {
        timeout_ms: ELECTION_MAX,
    };
    assert_eq!(transfer_outcomes(&cluster, 0), [(NodeId(2), timed_out)]);
    assert_eq!(started.deadline_ms, started.deadline_ms.min(now));
    assert!(cluster.nodes[0].propose(b"x").is_ok(), "proposals resume");
}

#[test]
fn a_voter_in_the_lease_grants_a_transfer_vote_but_not_a_plain_one() {
    let vote_request = |transfer: bool, last_log_term: u64| Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(2),
        cluster: ClusterTag::default(),
        body: MessageBody::RequestVote(RequestVote {
            last_log_index: LogIndex(99),
            last_log_term: Term(last_log_term),
            pre_vote: false,
            transfer,
        }),
    };
    let answer = |cluster: &mut Cluster| {
        let ready = cluster.nodes[1].ready();
        ready
            .messages_after_persist
            .iter()
            .find_map(|m| match &m.body {
                MessageBody::RequestVoteResponse(r) => Some(r.vote_granted),
                _ => None,
            })
    };
    let mut cluster = settled();
    cluster.nodes[1].step(vote_request(false, 1));
    assert_eq!(answer(&mut cluster), None, "a plain request is ignored");
    assert_eq!(cluster.nodes[1].current_term(), Term(1));
    cluster.nodes[1].step(vote_request(true, 1));
    assert_eq!(answer(&mut cluster), Some(true), "a transfer's is answered");
    assert_eq!(cluster.nodes[1].current_term(), Term(2));

    // §5.4.1 still holds: a transfer's candidate with a stale log loses.
    let mut cluster = settled();
    let stale = Message {
        body: MessageBody::RequestVote(RequestVote {
            last_log_index: LogIndex(1),
            last_log_term: Term(0),
            pre_vote: false,
            transfer: true,
        }),
        ..vote_request(true, 0)
    };
    cluster.nodes[1].step(stale);
    assert_eq!(answer(&mut cluster), Some(false));
}

#[test]
fn the_old_leader_steps_down_for_the_transfer_vote_within_its_own_lease() {
    let mut cluster = settled();
    let last = cluster.nodes[0].log().last_index();
    let request = Message {
        from: NodeId(1),
        to: NodeId(0),
        term: Term(2),
        cluster: cluster.nodes[1].cluster_tag(),
        body: MessageBody::RequestVote(RequestVote {
            last_log_index: last,
            last_log_term: Term(1),
            pre_vote: false,
            transfer: true,
        }),
    };
    cluster.nodes[0].step(request);
    assert_eq!(cluster.nodes[0].role(), Role::Follower);
    assert_eq!(cluster.nodes[0].hard_state().voted_for, Some(NodeId(1)));
}

#[test]
fn timeout_now_from_anyone_but_our_leader_is_ignored() {
    let mut cluster = settled();
    let from_follower = Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(1),
        cluster: cluster.nodes[2].cluster_tag(),
        body: MessageBody::TimeoutNow,
    };
    cluster.nodes[1].step(from_follower.clone());
    assert_eq!(cluster.nodes[1].role(), Role::Follower);
    let stale = Message {
        from: NodeId(0),
        term: Term(0),
        ..from_follower
    };
    cluster.nodes[1].step(stale);
    assert_eq!(cluster.nodes[1].role(), Role::Follower);
    assert_eq!(cluster.nodes[1].current_term(), Term(1));
}

#[test]
fn another_winner_ends_the_transfer_as_failed() {
    // Without PreVote and CheckQuorum, node 1 can win while 0 still leads.
    let mut cluster = Cluster::new(3);
    cluster.campaign(0);
    cluster.heartbeat(0);
    cluster.filter = isolate(2);
    cluster.nodes[0].transfer_leadership(NodeId(2)).unwrap();
    cluster.campaign(1);
    assert_eq!(cluster.leaders(), vec![1]);
    let other = TransferOutcome::OtherLeader {
        leader: NodeId(1),
        term: Term(2),
    };
    assert_eq!(transfer_outcomes(&cluster, 0), [(NodeId(2), other)]);
}

#[test]
fn a_deadline_without_any_leader_ends_the_transfer_as_failed() {
    let mut cluster = Cluster::new(3);
    cluster.campaign(0);
    cluster.heartbeat(0);
    cluster.filter = Box::new(|_| false);
    let started = cluster.nodes[0].transfer_leadership(NodeId(2)).unwrap();
    // A higher term unseats the leader; nobody can win meanwhile.
    let higher = Message {
        from: NodeId(1),
        to: NodeId(0),
        term: Term(5),
        cluster: cluster.nodes[1].cluster_tag(),
        body: MessageBody::RequestVoteResponse(RequestVoteResponse {
            vote_granted: false,
            pre_vote: false,
        }),
    };
    cluster.nodes[0].step(higher);
    assert_eq!(cluster.nodes[0].role(), Role::Follower);
    assert!(cluster.nodes[0].next_deadline_ms() <= started.deadline_ms);
    cluster.nodes[0].advance_time(started.deadline_ms);
    cluster.process(0);
    let none = TransferOutcome::NoLeader {
        timeout_ms: ELECTION_MAX,
    };
    assert_eq!(transfer_outcomes(&cluster, 0), [(NodeId(2), none)]);
}

#[test]
fn transfers_are_refused_where_they_cannot_start() {
    let mut cluster = settled();
    assert_eq!(
        cluster.nodes[1].transfer_leadership(NodeId(2)),
        Err(TransferError::NotLeader {
            leader: Some(NodeId(0))
        })
    );
    assert_eq!(
        cluster.nodes[0].transfer_leadership(NodeId(0)),
        Err(TransferError::AlreadyLeader { term: Term(1) })
    );
    assert_eq!(
        cluster.nodes[0].transfer_leadership(NodeId(9)),
        Err(TransferError::NotAVoter)
    );
    cluster.filter = isolate(2);
    cluster.nodes[0].transfer_leadership(NodeId(2)).unwrap();
    assert_eq!(
        cluster.nodes[0].transfer_leadership(NodeId(1)),
        Err(TransferError::InProgress { to: NodeId(2) })
    );
}

/// The planted bug grants exactly the vote the rule refuses: a transfer's
/// candidate whose log lacks committed entries.
#[cfg(feature = "planted-bugs")]
#[test]
fn planted_transfer_vote_ignores_log_grants_a_stale_transfer_candidate() {
    for (bug, granted) in [
        (None, false),
        (Some(PlantedBug::TransferVoteIgnoresLog), true),
    ] {
        let mut cluster = settled();
        cluster.nodes[1].plant_bug(bug);
        let stale = Message {
            from: NodeId(2),
            to: NodeId(1),
            term: Term(2),
            cluster: ClusterTag::default(),
            body: MessageBody::RequestVote(RequestVote {
                last_log_index: LogIndex(1),
                last_log_term: Term(0),
                pre_vote: false,
                transfer: true,
            }),
        };
        cluster.nodes[1].step(stale);
        let ready = cluster.nodes[1].ready();
        let answer = ready
            .messages_after_persist
            .iter()
            .find_map(|m| match &m.body {
                MessageBody::RequestVoteResponse(r) => Some(r.vote_granted),
                _ => None,
            });
        assert_eq!(answer, Some(granted), "{bug:?}");
    }
}
