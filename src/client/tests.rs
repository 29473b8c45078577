//! The client machine's rules, stepped by hand: no sockets, no clock.

use super::machine::*;
use crate::core::{LogIndex, PlantedBug, Term};
use crate::reply::{Answer, Asked, Reply};

fn progress(maybe_applied: bool) -> Progress {
    let mut progress = Progress::new(0);
    progress.maybe_applied = maybe_applied;
    progress
}

fn unavailable(reason: String) -> Reply {
    Reply::Unavailable(reason.into())
}

#[test]
fn backoff_pauses_are_bounded_grow_and_are_jittered() {
    let steps = 12;
    let mut pauses_by_step = vec![Vec::new(); steps];
    for seed in 0..64 {
        let mut backoff = Backoff::new(seed);
        for (step, pauses) in pauses_by_step.iter_mut().enumerate() {
            let pause = backoff.next_delay();
            let ceiling = (BACKOFF_INITIAL * 2u32.pow(step as u32)).min(BACKOFF_MAX);
            assert!(
                pause <= ceiling && pause >= ceiling / 2,
                "{pause:?} at {step}"
            );
            pauses.push(pause);
        }
        backoff.reset();
        assert!(backoff.next_delay() <= BACKOFF_INITIAL, "reset starts over");
    }
    for step in 1..steps {
        let shortest = pauses_by_step[step].iter().min();
        let longest_before = pauses_by_step[step - 1].iter().max();
        // The floor doubles until the cap: a pause is never shorter than
        // half the one before could have been.
        assert!(shortest >= longest_before.map(|pause| *pause / 2).as_ref());
    }
    assert!(pauses_by_step[0].iter().max() < pauses_by_step[6].iter().min());
    for pauses in &pauses_by_step {
        let mut distinct = pauses.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() > 16, "jittered: {} distinct", distinct.len());
        assert!(pauses.iter().all(|pause| *pause <= BACKOFF_MAX));
    }
}

#[test]
fn an_unavailable_reason_is_bounded() {
    let mut observations = Observations::default();
    let long = "x".repeat(1000);
    for port in 0..20 {
        observations.record(&format!("10.0.0.1:{port}"), Seen::NotSent, &long);
    }
    observations.record("10.0.0.1:0", Seen::NotSent, "connection refused");
    let Reply::Unavailable(reason) = observations.unavailable("no node reachable") else {
        panic!("unavailable");
    };
    assert!(
        reason.starts_with("no node reachable (10.0.0.1:0: connection refused; 10.0.0.1:1: xxx")
    );
    assert!(reason.ends_with("...; other nodes)"), "{reason}");
    assert!(reason.len() < REASON_NODES_MAX * (2 * REASON_PART_SIZE_MAX + 4) + 64);
}

#[test]
fn a_definite_failure_after_an_unknown_try_is_reported_unknown() {
    let timeout = Answer::Reply(Reply::Timeout);
    let refused = Answer::Reply(unavailable("no node reachable".into()));
    assert_eq!(settle(refused.clone(), &progress(false)), refused);
    assert_eq!(settle(refused, &progress(true)), timeout);
    let not_leader = Answer::Reply(Reply::NotLeader { leader: None });
    assert_eq!(settle(not_leader, &progress(true)), timeout);
    let unreadable = Answer::Unreadable("SOMETHING_NEW".into());
    assert_eq!(settle(unreadable, &progress(true)), timeout);
    let ok = Answer::Reply(Reply::Ok {
        index: LogIndex(4),
        term: Term(2),
    });
    assert_eq!(
        settle(ok.clone(), &progress(true)),
        ok,
        "success stays success"
    );
}

#[test]
fn the_deadline_ends_in_timeout_only_if_a_write_may_have_been_applied() {
    let mut never_sent = progress(false);
    let refused = (Seen::NotSent, "connection refused");
    never_sent
        .observations
        .record("127.0.0.1:1", refused.0, refused.1);
    assert_eq!(
        conclude(&never_sent, Kind::Write),
        unavailable("no node reachable (127.0.0.1:1: connection refused)".into())
    );
    let mut lost = progress(false);
    lost.observations
        .record("127.0.0.1:2", Seen::Unanswered, "no reply within 1000 ms");
    lost.observations
        .record("127.0.0.1:1", refused.0, refused.1);
    let details = "(127.0.0.1:2: no reply within 1000 ms; 127.0.0.1:1: connection refused)";
    assert_eq!(
        conclude(&lost, Kind::Register),
        unavailable(format!("no session opened {details}"))
    );
    assert_eq!(
        conclude(&lost, Kind::Read),
        unavailable(format!("no reply {details}"))
    );
    let not_leader = error_words(&Reply::NotLeader { leader: None });
    lost.observations
        .record("127.0.0.1:1", Seen::Answered, &not_leader);
    assert_eq!(
        conclude(&lost, Kind::StaleRead),
        unavailable(format!(
            "no leader (127.0.0.1:2: no reply within 1000 ms; 127.0.0.1:1: {not_leader})"
        ))
    );
    lost.maybe_applied = true;
    assert_eq!(conclude(&lost, Kind::Write), Reply::Timeout);
}

fn machine(seeds: &[&str], timeout_ms: u64) -> ClientMachine {
    machine_with(seeds, timeout_ms, None)
}

fn machine_with(seeds: &[&str], timeout_ms: u64, bug: Option<PlantedBug>) -> ClientMachine {
    ClientMachine::new(ClientConfig {
        seeds: seeds.iter().map(|seed| seed.to_string()).collect(),
        timeout_ms,
        redirect: true,
        sessions: true,
        seed: 7,
        planted_bug: bug,
    })
}

/// The try an action asks for; panics on anything else.
fn sent(action: Action) -> Try {
    match action {
        Action::Send(attempt) => attempt,
        other => panic!("expected a try, got {other:?}"),
    }
}

fn reply(reply: Reply) -> TryResult {
    TryResult::Reply(Answer::Reply(reply))
}

fn ok(index: u64) -> Reply {
    Reply::Ok {
        index: LogIndex(index),
        term: Term(1),
    }
}

/// A client whose session `id` is open; at time 0.
fn registered(seeds: &[&str], id: u64) -> ClientMachine {
    registered_with(seeds, id, None)
}

fn registered_with(seeds: &[&str], id: u64, bug: Option<PlantedBug>) -> ClientMachine {
    let mut client = machine_with(seeds, 5000, bug);
    let attempt = sent(client.open_session(0));
    assert_eq!(attempt.request.command, "REGISTER");
    let session = Reply::Session { id };
    let done = client.try_finished(reply(session.clone()), 0);
    assert_eq!(done, Action::Done(Answer::Reply(session)));
    client
}

#[test]
fn a_first_write_opens_a_session_then_goes_numbered() {
    let mut client = machine(&["a:1"], 5000);
    let register = sent(client.start("SET x 1", 0));
    assert_eq!(register.request.command, "REGISTER");
    assert_eq!(
        (register.request.session_id, register.request.sequence),
        (0, 0)
    );
    let write = sent(client.try_finished(reply(Reply::Session { id: 9 }), 1));
    assert_eq!(write.request.command, "SET x 1");
    assert_eq!((write.request.session_id, write.request.sequence), (9, 1));
    assert_eq!(write.asked, Asked::Other);
    let done = client.try_finished(reply(ok(3)), 2);
    assert_eq!(done, Action::Done(Answer::Reply(ok(3))));
    let next = sent(client.start("DEL x", 3));
    assert_eq!((next.request.session_id, next.request.sequence), (9, 2));
    assert!(next.request.request_id > write.request.request_id);
}

#[test]
fn a_write_retried_after_an_unknown_try_keeps_its_number() {
    let mut client = registered(&["a:1", "b:2"], 4);
    let first = sent(client.start("SET x 1", 0));
    let lost = TryResult::Unknown("no reply within 1000 ms".to_string());
    let retry = sent(client.try_finished(lost, 1000));
    assert_eq!(retry.to, "b:2", "another node");
    assert!(retry.reconnect);
    assert_eq!(retry.request.sequence, first.request.sequence);
    // The node's own ERR TIMEOUT is unknown too: the next node at once.
    let again = sent(client.try_finished(reply(Reply::Timeout), 1001));
    assert_eq!(again.to, "a:1");
    assert_eq!(again.request.sequence, first.request.sequence);
    // A definite failure after an unknown try is reported unknown.
    let refused = reply(Reply::Unavailable("busy".into()));
    let done = client.try_finished(refused, 1002);
    assert_eq!(done, Action::Done(Answer::Reply(Reply::Timeout)));
    let next = sent(client.start("SET y 2", 1003));
    assert_eq!(next.request.sequence, first.request.sequence + 1);
}

#[test]
fn a_leader_hint_is_followed_at_once_and_bounded() {
    let mut client = machine(&["a:1"], 5000);
    let _ = sent(client.start("GET x", 0));
    let hint = Reply::NotLeader {
        leader: Some(crate::reply::Leader {
            id: "B".to_string(),
            address: "b:2".to_string(),
        }),
    };
    for _ in 0..REDIRECTS_MAX {
        let attempt = sent(client.try_finished(reply(hint.clone()), 0));
        assert_eq!(attempt.to, "b:2");
    }
    // Hints that go round in circles: the seeds again, with a pause once
    // a round of them failed.
    let action = client.try_finished(reply(hint), 0);
    assert!(matches!(action, Action::Pause { .. }), "{action:?}");
}

#[test]
fn nodes_never_reached_pause_per_round_and_end_unavailable() {
    let mut client = machine(&["a:1", "b:2"], 300);
    let mut now_ms = 0;
    let mut action = client.start("SET x 1", now_ms);
    let (mut tries_in_round, mut pauses) = (0, 0);
    let answer = loop {
        action = match action {
            Action::Send(_) => {
                tries_in_round += 1;
                let refused = TryResult::NotSent("connection refused".to_string());
                client.try_finished(refused, now_ms)
            }
            Action::Pause { until_ms } => {
                assert_eq!(tries_in_round, 2, "a pause after each round of both");
                assert!(until_ms > now_ms && until_ms <= 300);
                (tries_in_round, pauses) = (0, pauses + 1);
                now_ms = until_ms;
                client.resume(now_ms)
            }
            Action::Done(answer) => break answer,
        };
    };
    assert!(pauses >= 3, "{pauses} pauses in 300 ms");
    let expected = "no node reachable (a:1: connection refused; b:2: connection refused)";
    assert_eq!(answer, Answer::Reply(unavailable(expected.to_string())));
}

#[test]
fn an_expired_session_is_reopened_unless_a_try_may_have_applied() {
    let mut client = registered(&["a:1"], 4);
    let _ = sent(client.start("SET x 1", 0));
    let register = sent(client.try_finished(reply(Reply::SessionExpired), 1));
    assert_eq!(register.request.command, "REGISTER");
    let write = sent(client.try_finished(reply(Reply::Session { id: 5 }), 2));
    assert_eq!((write.request.session_id, write.request.sequence), (5, 1));
    let lost = TryResult::Unknown("connection reset after the request was sent".to_string());
    let Action::Pause { until_ms } = client.try_finished(lost, 3) else {
        panic!("one seed: a pause after the round");
    };
    let retry = sent(client.resume(until_ms));
    let done = client.try_finished(reply(Reply::SessionExpired), until_ms);
    assert_eq!(retry.request.sequence, 1);
    assert_eq!(done, Action::Done(Answer::Reply(Reply::Timeout)));
    assert_eq!(client.session_id(), None);
}

#[test]
fn transfer_follows_the_leader_hint_without_a_session_and_ends_on_its_reply() {
    let mut client = machine(&["a:1", "b:2"], 5000);
    let first = sent(client.start("TRANSFER C", 0));
    assert_eq!(first.request.command, "TRANSFER C");
    assert_eq!((first.request.session_id, first.request.sequence), (0, 0));
    let hint = Reply::NotLeader {
        leader: Some(crate::reply::Leader {
            id: "B".to_string(),
            address: "b:2".to_string(),
        }),
    };
    let at_leader = sent(client.try_finished(reply(hint), 1));
    assert_eq!(at_leader.to, "b:2");
    assert_eq!(at_leader.request.command, "TRANSFER C");
    let transferred = Reply::Transferred {
        leader: "C".to_string(),
        term: Term(4),
    };
    let done = client.try_finished(reply(transferred.clone()), 2);
    assert_eq!(done, Action::Done(Answer::Reply(transferred)));
    // A failed transfer is the node's definite answer, passed on as is.
    let _ = sent(client.start("TRANSFER C", 3));
    let failed = Reply::Unavailable("leadership transfer in progress".into());
    let done = client.try_finished(reply(failed.clone()), 4);
    assert_eq!(done, Action::Done(Answer::Reply(failed)));
}

#[test]
fn status_is_asked_once_of_the_node_named() {
    let mut client = machine(&["a:1", "b:2"], 5000);
    let attempt = sent(client.start("STATUS", 0));
    assert_eq!(attempt.to, "a:1");
    let refused = TryResult::NotSent("connection refused".to_string());
    let done = client.try_finished(refused, 1);
    let expected = unavailable("a:1: connection refused".to_string());
    assert_eq!(done, Action::Done(Answer::Reply(expected)));
}

#[test]
fn a_command_too_long_is_refused_without_a_try() {
    let mut client = machine(&["a:1"], 5000);
    let line = format!("SET x {}", "v".repeat(crate::constants::COMMAND_SIZE_MAX));
    let Action::Done(Answer::Reply(Reply::BadRequest(reason))) = client.start(&line, 0) else {
        panic!("refused on the spot");
    };
    assert!(reason.contains("longer than"), "{reason}");
    assert!(!client.busy());
}

#[test]
fn a_try_gets_at_most_the_attempt_timeout_and_never_past_the_deadline() {
    let mut client = machine(&["a:1"], 2500);
    let attempt = sent(client.start("GET x", 0));
    assert_eq!(attempt.limit_ms, ATTEMPT_TIMEOUT_MS);
    let lost = TryResult::Unknown("no reply".to_string());
    let action = client.try_finished(lost, 2200);
    let Action::Pause { until_ms } = action else {
        panic!("one seed: a round ended, so a pause: {action:?}");
    };
    let attempt = sent(client.resume(until_ms));
    assert_eq!(attempt.limit_ms, 2500 - until_ms);
}

#[cfg(feature = "planted-bugs")]
#[test]
fn planted_retry_new_sequence_renumbers_a_retry() {
    let mut client = registered_with(&["a:1"], 4, Some(PlantedBug::RetryNewSequence));
    let first = sent(client.start("SET x 1", 0));
    let lost = TryResult::Unknown("no reply".to_string());
    let retry = match client.try_finished(lost, 1) {
        Action::Pause { until_ms } => sent(client.resume(until_ms)),
        action => sent(action),
    };
    assert_eq!(retry.request.sequence, first.request.sequence + 1);
}
