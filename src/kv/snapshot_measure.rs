//! The figures in docs/DESIGN.md, "Snapshots that do not stall the loop":
//!
//! ```text
//! cargo test --release --lib kv::snapshot_measure -- --ignored --nocapture
//! ```
//!
//! A measurement, not part of the state machine: it reads the clock, so the
//! purity test (src/kv/store.rs) leaves this file out.

use std::time::{Duration, Instant};

use super::command::Command;
use super::machine::{LogRecord, StateMachine};
use super::snapshot::{Restorer, SNAPSHOT_RECORD_SIZE_MAX};

const KEY_COUNT: u64 = 1_000_000;
const CHUNK_SIZE: usize = 1024 * 1024;

fn set_record(key_number: u64, value_byte: u8) -> Vec<u8> {
    let mut out = Vec::new();
    LogRecord::Command {
        session: None,
        command: Command::Set {
            key: format!("{key_number:08}").into_bytes(),
            value: vec![value_byte; 64],
        },
    }
    .encode(&mut out);
    out
}

/// Applies one SET to every key, each to a key chosen by a fixed stride so
/// consecutive writes do not land side by side; returns ns per apply.
fn apply_all(machine: &mut StateMachine, index_first: u64, value_byte: u8) -> f64 {
    let records: Vec<Vec<u8>> = (0..KEY_COUNT)
        .map(|number| set_record(number * 7_919 % KEY_COUNT, value_byte))
        .collect();
    let started = Instant::now();
    for (offset, record) in records.iter().enumerate() {
        machine.apply(index_first + offset as u64, 1, record);
    }
    started.elapsed().as_nanos() as f64 / KEY_COUNT as f64
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[test]
#[ignore = "a measurement: run with --release --ignored --nocapture"]
fn measure_a_snapshot_of_a_million_keys() {
    let mut machine = StateMachine::default();
    let insert_ns = apply_all(&mut machine, 1, b'a');
    let overwrite_ns = apply_all(&mut machine, 1 + KEY_COUNT, b'b');
    assert_eq!(machine.store().len(), KEY_COUNT as usize);
    let digest = machine.digest();

    let started = Instant::now();
    let mut cursor = machine.begin_snapshot();
    let begin = started.elapsed();
    // One reused chunk buffer, as the runtime would keep; the copy into
    // `body` stands for the file write and is not timed.
    let mut body = Vec::new();
    let mut chunk = Vec::with_capacity(CHUNK_SIZE + SNAPSHOT_RECORD_SIZE_MAX);
    let mut chunk_max = Duration::ZERO;
    let mut chunk_count = 0u32;
    let mut walk = Duration::ZERO;
    loop {
        chunk.clear();
        let chunk_started = Instant::now();
        let done = cursor.next_chunk(&mut chunk, CHUNK_SIZE);
        let elapsed = chunk_started.elapsed();
        walk += elapsed;
        chunk_max = chunk_max.max(elapsed);
        chunk_count += 1;
        body.extend_from_slice(&chunk);
        if done {
            break;
        }
    }

    // Restored while the original lives, as on a follower: a large free
    // just before would make the allocator pay for it in the first feed.
    let started = Instant::now();
    let restored = StateMachine::restore(&body).expect("the body restores");
    let restore = started.elapsed();
    assert_eq!(restored.digest(), digest);
    let mut restorer = Restorer::new();
    let mut feed_max = Duration::ZERO;
    let started = Instant::now();
    for chunk in body.chunks(CHUNK_SIZE) {
        let feed_started = Instant::now();
        restorer.feed(chunk).expect("the body restores");
        feed_max = feed_max.max(feed_started.elapsed());
    }
    let finish_started = Instant::now();
    let restored = restorer.finish().expect("the body restores");
    let finish = finish_started.elapsed();
    let restore_chunked = started.elapsed();
    assert_eq!(restored.digest(), digest);
    let started = Instant::now();
    drop(restored);
    let drop_time = started.elapsed();

    // Every key overwritten while the cursor holds the base: the worst
    // case for the delta, which ends up holding all of them.
    let held_ns = apply_all(&mut machine, 1 + 2 * KEY_COUNT, b'c');
    let delta_len = machine.store().delta_len();
    drop(cursor);
    let drain_started = Instant::now();
    let mut drain_applies = 0u64;
    while machine.store().delta_len() > 0 {
        let record = set_record(drain_applies % KEY_COUNT, b'c');
        machine.apply(1 + 3 * KEY_COUNT + drain_applies, 1, &record);
        drain_applies += 1;
    }
    let drain = drain_started.elapsed();
    let fold_ns =
        (drain.as_nanos() as f64 - drain_applies as f64 * overwrite_ns) / delta_len as f64;

    // A snapshot begun with a full delta still there folds it first.
    let mut second = machine.clone();
    let cursor = second.begin_snapshot();
    apply_all(&mut second, 1 + 4 * KEY_COUNT, b'd');
    drop(cursor);
    let left = second.store().delta_len();
    let started = Instant::now();
    let cursor = second.begin_snapshot();
    let begin_with_delta = started.elapsed();
    drop(cursor);

    println!("keys {KEY_COUNT}, 8-byte keys, 64-byte values");
    println!("apply SET: insert {insert_ns:.0} ns, overwrite {overwrite_ns:.0} ns, overwrite with a cursor held {held_ns:.0} ns (delta {delta_len})");
    println!(
        "drain after the cursor: {drain_applies} applies in {:.0} ms ({:.0} ns each)",
        ms(drain),
        drain.as_nanos() as f64 / drain_applies.max(1) as f64
    );
    println!("fold: about {fold_ns:.0} ns per delta entry");
    println!("begin_snapshot {:.3} ms", ms(begin));
    println!(
        "body {} bytes in {chunk_count} chunks of 1 MiB: {:.0} ms, chunk mean {:.2} ms, max {:.2} ms",
        body.len(),
        ms(walk),
        ms(walk) / f64::from(chunk_count),
        ms(chunk_max)
    );
    println!(
        "restore whole {:.0} ms; in 1 MiB feeds {:.0} ms, feed max {:.2} ms, finish {:.3} ms",
        ms(restore),
        ms(restore_chunked),
        ms(feed_max),
        ms(finish)
    );
    println!("drop of a restored machine: {:.0} ms", ms(drop_time));
    println!(
        "begin_snapshot with {left} delta entries left: {:.1} ms",
        ms(begin_with_delta)
    );
}
