//! The reply lines are a contract: each variant writes exactly the bytes
//! docs/PROTOCOL.md lists, and every line written reads back as the same
//! reply.

use super::*;
use crate::core::rng::Rng;

fn leader(id: &str, address: &str) -> Option<Leader> {
    Some(Leader {
        id: id.to_string(),
        address: address.to_string(),
    })
}

fn value(bytes: &[u8]) -> Reply {
    Reply::Value(bytes.to_vec())
}

fn stale(bytes: &[u8], applied: u64) -> Reply {
    Reply::StaleValue {
        value: bytes.to_vec(),
        applied: LogIndex(applied),
    }
}

fn mismatch(current: Option<&[u8]>) -> Reply {
    Reply::Mismatch {
        current: current.map(<[u8]>::to_vec),
    }
}

/// A STATUS with every field a node writes today, in its order.
fn full_status() -> Reply {
    let fields = [
        ("id", "A"),
        ("role", "follower"),
        ("term", "0"),
        ("leader", "unknown"),
        ("last_index", "0"),
        ("commit", "0"),
        ("applied", "0"),
        ("digest", "0000000000000000"),
        ("entries_appended", "10"),
        ("fsyncs", "4"),
        ("synced_entries", "9"),
        ("entries_per_fsync", "2.2"),
        ("appends_sent", "7"),
        ("appends_received", "2"),
        ("batch_average", "2.7"),
        ("bytes_in", "1000"),
        ("bytes_out", "2000"),
        ("cluster", "none"),
        ("refused", "none"),
        ("refused_by", "B:cluster_id"),
        ("clients", "3"),
    ];
    let mut status = Status::default();
    for (name, field) in fields {
        status.push(name, field);
    }
    Reply::Status(status)
}

/// Every variant, with the values that need quoting, next to the exact
/// line it must write.
fn written_lines() -> Vec<(Reply, &'static str)> {
    vec![
        (
            Reply::Ok {
                index: LogIndex(3),
                term: Term(1),
            },
            "OK index=3 term=1",
        ),
        (value(b"5"), "VALUE 5"),
        (value(b"hello world"), "VALUE hello world"),
        (value(b""), r#"VALUE """#),
        (value(b"-"), "VALUE -"),
        (value(b"NOT_FOUND"), "VALUE NOT_FOUND"),
        (value(b" padded "), r#"VALUE " padded ""#),
        (value(b"say \"hi\""), r#"VALUE "say \"hi\"""#),
        (value(b"a\nb\xff"), r#"VALUE "a\nb\xff""#),
        (value(b"tab\there\xff"), r#"VALUE "tab\there\xff""#),
        (value(b"\x00\x07\x08\x1b"), r#"VALUE "\x00\a\b\x1b""#),
        (Reply::NotFound, "NOT_FOUND"),
        (stale(b"1", 7), "VALUE 1 stale applied=7"),
        (stale(b"a b", 3), r#"VALUE "a b" stale applied=3"#),
        (stale(b"", 0), r#"VALUE "" stale applied=0"#),
        (stale(b"-", 9), "VALUE - stale applied=9"),
        (
            Reply::StaleNotFound {
                applied: LogIndex(7),
            },
            "NOT_FOUND stale applied=7",
        ),
        (mismatch(Some(b"first")), "MISMATCH current=first"),
        (mismatch(Some(b"x y")), "MISMATCH current=x y"),
        (mismatch(Some(b"NOT_FOUND")), "MISMATCH current=NOT_FOUND"),
        (mismatch(Some(b"-")), "MISMATCH current=-"),
        (mismatch(Some(b"")), r#"MISMATCH current="""#),
        (mismatch(None), "MISMATCH absent"),
        (Reply::Session { id: 12 }, "SESSION id=12"),
        (
            Reply::SnapshotTaken {
                index: LogIndex(100_000),
                bytes: 4_321_000,
            },
            "OK snapshot index=100000 bytes=4321000",
        ),
        (
            Reply::Transferred {
                leader: "B".into(),
                term: Term(7),
            },
            "OK leader=B term=7",
        ),
        (Reply::Status(Status::default()), "STATUS"),
        (
            full_status(),
            "STATUS id=A role=follower term=0 leader=unknown last_index=0 commit=0 applied=0 digest=0000000000000000 entries_appended=10 fsyncs=4 synced_entries=9 entries_per_fsync=2.2 appends_sent=7 appends_received=2 batch_average=2.7 bytes_in=1000 bytes_out=2000 cluster=none refused=none refused_by=B:cluster_id clients=3",
        ),
        (
            Reply::NotLeader {
                leader: leader("B", "127.0.0.1:8001"),
            },
            "ERR NOT_LEADER leader=B addr=127.0.0.1:8001",
        ),
        (
            Reply::NotLeader { leader: None },
            "ERR NOT_LEADER leader=unknown",
        ),
        (Reply::Timeout, "ERR TIMEOUT"),
        (Reply::Unavailable("busy".into()), "ERR UNAVAILABLE busy"),
        (
            Reply::Unavailable("no node reachable (127.0.0.1:1: connection refused)".into()),
            "ERR UNAVAILABLE no node reachable (127.0.0.1:1: connection refused)",
        ),
        (
            Reply::BadRequest("stale sequence number".into()),
            "ERR BAD_REQUEST stale sequence number",
        ),
        (Reply::SessionExpired, "ERR SESSION_EXPIRED"),
    ]
}

fn asked_for(reply: &Reply) -> Asked {
    match reply {
        Reply::StaleValue { .. } | Reply::StaleNotFound { .. } => Asked::StaleRead,
        _ => Asked::Other,
    }
}

#[test]
fn every_variant_writes_todays_bytes_and_reads_back() {
    for (reply, line) in written_lines() {
        assert_eq!(reply.to_string(), line, "{reply:?}");
        assert_eq!(Reply::parse(line), Ok(reply.clone()), "{line}");
        assert_eq!(Reply::parse_answer(line, asked_for(&reply)), Ok(reply));
    }
}

/// GET's value can read like SGET's line; what was asked decides.
#[test]
fn a_value_that_reads_like_a_stale_reply_follows_the_request() {
    let line = "VALUE x stale applied=3";
    assert_eq!(value(b"x stale applied=3").to_string(), line);
    assert_eq!(stale(b"x", 3).to_string(), line);
    assert_eq!(Reply::parse(line), Ok(stale(b"x", 3)));
    assert_eq!(
        Reply::parse_answer(line, Asked::Other),
        Ok(value(b"x stale applied=3"))
    );
    // A value quoted as one word can only be SGET's.
    let quoted = r#"VALUE "a b" stale applied=3"#;
    assert_eq!(
        Reply::parse_answer(quoted, Asked::Other),
        Ok(stale(b"a b", 3))
    );
    let inside = stale(b"y stale applied=4", 5);
    let written = inside.to_string();
    assert_eq!(written, r#"VALUE "y stale applied=4" stale applied=5"#);
    assert_eq!(Reply::parse(&written), Ok(inside));
}

/// Each reply line docs/PROTOCOL.md lists (as it is written there), with
/// its placeholders filled in, and the reply it must read as.
fn documented_lines() -> Vec<(&'static str, &'static str, Reply)> {
    let ok = Reply::Ok {
        index: LogIndex(7),
        term: Term(2),
    };
    vec![
        ("`OK index=I term=T`", "OK index=7 term=2", ok),
        ("`VALUE v` or `NOT_FOUND`", "VALUE v", value(b"v")),
        ("`VALUE v` or `NOT_FOUND`", "NOT_FOUND", Reply::NotFound),
        ("`VALUE v stale applied=I`", "VALUE v stale applied=7", stale(b"v", 7)),
        (
            "`NOT_FOUND stale applied=I`",
            "NOT_FOUND stale applied=7",
            Reply::StaleNotFound {
                applied: LogIndex(7),
            },
        ),
        ("`MISMATCH current=v`", "MISMATCH current=v", mismatch(Some(b"v"))),
        ("`MISMATCH absent`", "MISMATCH absent", mismatch(None)),
        (
            "`STATUS id=A role=leader term=3 leader=A last_index=.. commit=.. applied=.. digest=..`",
            "STATUS id=A role=leader term=3 leader=A last_index=9 commit=9 applied=9 digest=00000000000000ff",
            status(&[("id", "A"), ("role", "leader"), ("term", "3"), ("leader", "A"), ("last_index", "9"), ("commit", "9"), ("applied", "9"), ("digest", "00000000000000ff")]),
        ),
        ("`SESSION id=N`", "SESSION id=5", Reply::Session { id: 5 }),
        (
            "`OK snapshot index=I bytes=B`",
            "OK snapshot index=7 bytes=5120",
            Reply::SnapshotTaken {
                index: LogIndex(7),
                bytes: 5120,
            },
        ),
        (
            "`OK leader=ID term=T`",
            "OK leader=node-2 term=12",
            Reply::Transferred {
                leader: "node-2".into(),
                term: Term(12),
            },
        ),
        (
            "`ERR NOT_LEADER leader=ID addr=HOST:PORT`",
            "ERR NOT_LEADER leader=B addr=10.0.0.2:8001",
            Reply::NotLeader {
                leader: leader("B", "10.0.0.2:8001"),
            },
        ),
        (
            "`ERR NOT_LEADER leader=unknown`",
            "ERR NOT_LEADER leader=unknown",
            Reply::NotLeader { leader: None },
        ),
        ("`ERR TIMEOUT`", "ERR TIMEOUT", Reply::Timeout),
        (
            "`ERR UNAVAILABLE reason`",
            "ERR UNAVAILABLE busy",
            Reply::Unavailable("busy".into()),
        ),
        (
            "`ERR BAD_REQUEST reason`",
            "ERR BAD_REQUEST empty command",
            Reply::BadRequest("empty command".into()),
        ),
        ("`ERR SESSION_EXPIRED`", "ERR SESSION_EXPIRED", Reply::SessionExpired),
        (
            "`ERR UNAVAILABLE no node reachable (ADDR: what; ...)`",
            "ERR UNAVAILABLE no node reachable (10.0.0.1:8000: connection refused)",
            Reply::Unavailable("no node reachable (10.0.0.1:8000: connection refused)".into()),
        ),
        (
            "`ERR UNAVAILABLE no leader (ADDR: NOT_LEADER leader=unknown; ADDR:\n  connection refused; ...)`",
            "ERR UNAVAILABLE no leader (10.0.0.1:8000: NOT_LEADER leader=unknown; 10.0.0.2:8001: connection refused)",
            Reply::Unavailable("no leader (10.0.0.1:8000: NOT_LEADER leader=unknown; 10.0.0.2:8001: connection refused)".into()),
        ),
        (
            "`ERR UNAVAILABLE no session opened (ADDR: what; ...)`",
            "ERR UNAVAILABLE no session opened (10.0.0.1:8000: connection reset after the request was sent)",
            Reply::Unavailable("no session opened (10.0.0.1:8000: connection reset after the request was sent)".into()),
        ),
        (
            "`ERR UNAVAILABLE no reply (ADDR: no reply within N ms; ...)`",
            "ERR UNAVAILABLE no reply (10.0.0.1:8000: no reply within 1000 ms)",
            Reply::Unavailable("no reply (10.0.0.1:8000: no reply within 1000 ms)".into()),
        ),
        (
            "`ERR UNAVAILABLE ADDR: what`",
            "ERR UNAVAILABLE 10.0.0.1:8000: connection refused",
            Reply::Unavailable("10.0.0.1:8000: connection refused".into()),
        ),
        (
            "`ERR BAD_REQUEST command longer than 66624 bytes`",
            "ERR BAD_REQUEST command longer than 66624 bytes",
            Reply::BadRequest("command longer than 66624 bytes".into()),
        ),
        // The quoting table.
        ("| `VALUE c d` |", "VALUE c d", value(b"c d")),
        ("| `VALUE \"c d\" stale applied=I` |", "VALUE \"c d\" stale applied=7", stale(b"c d", 7)),
        ("| `VALUE -` |", "VALUE -", value(b"-")),
        ("| `VALUE \"\"` |", "VALUE \"\"", value(b"")),
        (
            r#"| `VALUE "tab\there\xff"` |"#,
            r#"VALUE "tab\there\xff""#,
            value(b"tab\there\xff"),
        ),
        ("| `MISMATCH current=y z` |", "MISMATCH current=y z", mismatch(Some(b"y z"))),
        ("| `MISMATCH absent` |", "MISMATCH absent", mismatch(None)),
        (
            "| `ERR BAD_REQUEST text after the closing quote at byte 3 in key` |",
            "ERR BAD_REQUEST text after the closing quote at byte 3 in key",
            Reply::BadRequest("text after the closing quote at byte 3 in key".into()),
        ),
    ]
}

fn status(fields: &[(&str, &str)]) -> Reply {
    let mut status = Status::default();
    for (name, field) in fields {
        status.push(name, field);
    }
    Reply::Status(status)
}

#[test]
fn every_line_the_protocol_lists_parses() {
    let protocol = include_str!("../../docs/PROTOCOL.md");
    for (documented, line, reply) in documented_lines() {
        assert!(
            protocol.contains(documented),
            "PROTOCOL.md lists {documented}"
        );
        let asked = asked_for(&reply);
        assert_eq!(
            Reply::parse_answer(line, asked),
            Ok(reply.clone()),
            "{line}"
        );
        assert_eq!(reply.to_string(), line);
    }
}

#[test]
fn lines_a_node_does_not_write_are_refused() {
    let malformed = |form| Err(ParseError::Malformed { form });
    let cases = [
        ("", Err(ParseError::Unknown)),
        ("garbage", Err(ParseError::Unknown)),
        ("ok index=1 term=1", Err(ParseError::Unknown)),
        ("OK", malformed("OK")),
        ("OK index=01 term=1", malformed("OK")),
        ("OK index=1 term=+1", malformed("OK")),
        ("OK index=1  term=1", malformed("OK")),
        ("OK index=1 term=18446744073709551616", malformed("OK")),
        ("OK leader= term=3", malformed("OK")),
        ("OK leader=B", malformed("OK")),
        ("OK leader=B term=03", malformed("OK")),
        ("OK leader=B C term=3", malformed("OK")),
        ("VALUE", malformed("VALUE")),
        ("VALUE ", malformed("VALUE")),
        (r#"VALUE "x""#, malformed("VALUE")),
        (r#"VALUE "unterminated"#, malformed("VALUE")),
        (r#"VALUE "a" b"#, malformed("VALUE")),
        ("VALUE a ", malformed("VALUE")),
        // Bare `a b` is no word, so only GET can have written this.
        (
            "VALUE a b stale applied=1",
            Ok(value(b"a b stale applied=1")),
        ),
        ("VALUE a\tb", malformed("VALUE")),
        ("NOT_FOUND stale", malformed("NOT_FOUND")),
        ("MISMATCH current=", malformed("MISMATCH")),
        ("MISMATCH absent ", malformed("MISMATCH")),
        ("SESSION id=", malformed("SESSION")),
        ("STATUS ", malformed("STATUS")),
        ("STATUS a=1  b=2", malformed("STATUS")),
        ("STATUS a", malformed("STATUS")),
        ("STATUS =1", malformed("STATUS")),
        ("ERR", malformed("ERR")),
        ("ERR TIMEOUT now", malformed("ERR")),
        ("ERR UNAVAILABLE", malformed("ERR")),
        ("ERR SOMETHING_NEW", malformed("ERR")),
        ("ERR NOT_LEADER leader=", malformed("ERR")),
        ("ERR NOT_LEADER leader=B", malformed("ERR")),
        ("ERR NOT_LEADER leader=B addr=", malformed("ERR")),
        ("VALUE a\nb", Err(ParseError::LineBreak)),
        ("ERR TIMEOUT\r", Err(ParseError::LineBreak)),
    ];
    for (line, expected) in cases {
        assert_eq!(Reply::parse(line), expected, "{line:?}");
    }
}

#[test]
fn replies_are_classified_and_name_their_leader() {
    let cases = [
        ("OK index=3 term=1", ReplyKind::Success),
        ("VALUE 5", ReplyKind::Success),
        ("NOT_FOUND", ReplyKind::Success),
        (r#"VALUE "a b" stale applied=3"#, ReplyKind::Success),
        ("NOT_FOUND stale applied=3", ReplyKind::Success),
        ("STATUS id=A role=leader", ReplyKind::Success),
        ("SESSION id=12", ReplyKind::Success),
        ("OK snapshot index=9 bytes=100", ReplyKind::Success),
        ("MISMATCH current=4", ReplyKind::Mismatch),
        ("MISMATCH absent", ReplyKind::Mismatch),
        ("ERR NOT_LEADER leader=unknown", ReplyKind::NotLeader),
        ("ERR TIMEOUT", ReplyKind::Timeout),
        ("ERR UNAVAILABLE busy", ReplyKind::Error),
        ("ERR BAD_REQUEST empty command", ReplyKind::Error),
        ("ERR SESSION_EXPIRED", ReplyKind::Error),
        ("ERR SOMETHING_NEW", ReplyKind::Error),
        ("garbage", ReplyKind::Error),
    ];
    for (line, kind) in cases {
        assert_eq!(classify(line), kind, "{line}");
        let answer = Answer::from_line(line.to_string(), Asked::Other);
        assert_eq!(answer.kind(), kind, "{line}");
        assert_eq!(answer.to_string(), line, "passed on unchanged");
    }
    let redirect = Reply::NotLeader {
        leader: leader("B", "127.0.0.1:8001"),
    };
    assert_eq!(redirect.leader_hint(), Some("127.0.0.1:8001"));
    assert_eq!(Reply::NotLeader { leader: None }.leader_hint(), None);
    let words = |reply: &Reply| reply.error_words().map(|words| words.to_string());
    assert_eq!(
        words(&Reply::NotLeader { leader: None }).as_deref(),
        Some("NOT_LEADER leader=unknown")
    );
    assert_eq!(words(&Reply::Timeout).as_deref(), Some("TIMEOUT"));
    assert_eq!(words(&Reply::NotFound), None);
}

#[test]
fn status_fields_are_found_by_name() {
    let Reply::Status(status) = full_status() else {
        panic!("a STATUS");
    };
    assert_eq!(status.get("role"), Some("follower"));
    assert_eq!(status.get("clients"), Some("3"));
    assert_eq!(status.get("missing"), None);
    assert_eq!(status.fields().len(), 21);
}

#[test]
#[should_panic(expected = "STATUS field")]
fn a_status_field_with_a_space_is_a_bug() {
    Status::default().push("refused", "a b");
}

/// Bytes with the cases that matter: quotes, backslashes, whitespace,
/// `-`, `=`, control characters, stray bytes and reply words.
fn random_bytes(random: &mut Rng) -> Vec<u8> {
    let pieces: [&[u8]; 16] = [
        b"\"",
        b"\\",
        b" ",
        b"-",
        b"=",
        b"a",
        b"7",
        b"\n",
        b"\t",
        b"\x00",
        b"\xff",
        "é".as_bytes(),
        b"NOT_FOUND",
        b"absent",
        b" stale applied=",
        b"VALUE",
    ];
    let mut bytes = Vec::new();
    for _ in 0..random.index(6) {
        match random.index(5) {
            0 => bytes.push(random.next_u64() as u8),
            _ => bytes.extend_from_slice(pieces[random.index(pieces.len())]),
        }
    }
    bytes
}

/// Text for a reason or a field: any characters but line breaks (and, for
/// a word, whitespace).
fn random_text(random: &mut Rng, word: bool) -> String {
    let pieces = [
        "a", "B", "7", "=", ":", "(", ";", "é", "\"", "\\", "-", " ", "\t",
    ];
    let (count, choices) = match word {
        true => (random.index(5) + 1, pieces.len() - 2),
        false => (random.index(5), pieces.len()),
    };
    (0..count).map(|_| pieces[random.index(choices)]).collect()
}

fn random_number(random: &mut Rng) -> u64 {
    match random.index(3) {
        0 => random.index(10) as u64,
        1 => u64::MAX - random.index(2) as u64,
        _ => random.next_u64(),
    }
}

fn random_reply(random: &mut Rng) -> Reply {
    let number = |random: &mut Rng| random_number(random);
    match random.index(15) {
        0 => Reply::Ok {
            index: LogIndex(number(random)),
            term: Term(number(random)),
        },
        1 => Reply::Value(random_bytes(random)),
        2 => Reply::NotFound,
        3 => stale(&random_bytes(random), number(random)),
        4 => Reply::StaleNotFound {
            applied: LogIndex(number(random)),
        },
        5 => Reply::Mismatch {
            current: random.chance(3, 4).then(|| random_bytes(random)),
        },
        6 => Reply::Session { id: number(random) },
        7 => random_status(random),
        8 => Reply::NotLeader {
            leader: random.chance(1, 2).then(|| Leader {
                id: random_text(random, true),
                address: random_text(random, true),
            }),
        },
        9 => Reply::Timeout,
        10 => Reply::Unavailable(random_text(random, false).into()),
        11 => Reply::BadRequest(random_text(random, false).into()),
        12 => Reply::SnapshotTaken {
            index: LogIndex(number(random)),
            bytes: number(random),
        },
        13 => Reply::Transferred {
            leader: random_text(random, true),
            term: Term(number(random)),
        },
        _ => Reply::SessionExpired,
    }
}

fn random_status(random: &mut Rng) -> Reply {
    let mut status = Status::default();
    for _ in 0..random.index(5) {
        let name = random_text(random, true).replace('=', "_");
        let field = random_text(random, true);
        status.push(&name, field);
    }
    Reply::Status(status)
}

/// Random replies read back as themselves, and random lines that read as
/// a reply are written back byte for byte (the parser takes only what
/// `Display` writes).
#[test]
fn random_replies_and_lines_round_trip() {
    let mut random = Rng::new(0x7e91_01e5_0000_0012);
    for _ in 0..50_000 {
        let reply = random_reply(&mut random);
        let line = reply.to_string();
        let asked = asked_for(&reply);
        assert_eq!(
            Reply::parse_answer(&line, asked),
            Ok(reply.clone()),
            "{line}"
        );
        let mut framed = Vec::new();
        std::io::Write::write_fmt(&mut framed, format_args!("{reply}")).expect("into a Vec");
        assert_eq!(framed, line.as_bytes());
    }
    let pieces = [
        "OK ",
        "VALUE ",
        "NOT_FOUND",
        "MISMATCH ",
        "SESSION ",
        "STATUS",
        "ERR ",
        "NOT_LEADER ",
        "TIMEOUT",
        "UNAVAILABLE ",
        "BAD_REQUEST ",
        "SESSION_EXPIRED",
        " ",
        "index=",
        " term=",
        "id=",
        "leader=",
        " addr=",
        "current=",
        "absent",
        " stale applied=",
        "unknown",
        "0",
        "1",
        "01",
        "\"",
        "\\",
        "x",
        "=",
        "\t",
    ];
    let mut kinds_read = std::collections::HashSet::new();
    for _ in 0..200_000 {
        let line: String = (0..random.index(7))
            .map(|_| pieces[random.index(pieces.len())])
            .collect();
        for asked in [Asked::StaleRead, Asked::Other] {
            if let Ok(reply) = Reply::parse_answer(&line, asked) {
                assert_eq!(reply.to_string(), line, "{reply:?}");
                kinds_read.insert(std::mem::discriminant(&reply));
            }
        }
    }
    assert!(
        kinds_read.len() >= 10,
        "random lines read as {kinds_read:?}"
    );
}
