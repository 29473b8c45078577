//! What a run counts: operations, errors by kind, and the latency histogram.

use crate::histogram::Histogram;
use raftlite::reply::{Answer, Reply, ReplyKind};
use std::time::Duration;

/// Every error event the clients see. Reply errors are named after the
/// daemon's `ERR` word; the rest are the client's own observations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// `ERR NOT_LEADER`: followed (redirect or pause), then retried.
    NotLeader,
    /// `ERR TIMEOUT` from the daemon, or no final answer within --timeout.
    Timeout,
    /// `ERR UNAVAILABLE`: certainly not applied; the operation fails.
    Unavailable,
    /// `ERR BAD_REQUEST`: the operation fails.
    BadRequest,
    /// `ERR SESSION_EXPIRED`: the client opens a new session.
    SessionExpired,
    /// Any other reply the client cannot use.
    OtherReply,
    /// A connection could not be opened (refused, unreachable, too slow).
    ConnectFailed,
    /// An open connection was closed or reset by the other side.
    ConnectionLost,
    /// The daemon sent bytes that are not a valid reply frame.
    ProtocolError,
}

pub const ERROR_KIND_COUNT: usize = 9;

impl ErrorKind {
    pub const ALL: [ErrorKind; ERROR_KIND_COUNT] = [
        ErrorKind::NotLeader,
        ErrorKind::Timeout,
        ErrorKind::Unavailable,
        ErrorKind::BadRequest,
        ErrorKind::SessionExpired,
        ErrorKind::OtherReply,
        ErrorKind::ConnectFailed,
        ErrorKind::ConnectionLost,
        ErrorKind::ProtocolError,
    ];

    /// The key in the summary and in the JSON `errors_by_kind` object.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::NotLeader => "NOT_LEADER",
            ErrorKind::Timeout => "TIMEOUT",
            ErrorKind::Unavailable => "UNAVAILABLE",
            ErrorKind::BadRequest => "BAD_REQUEST",
            ErrorKind::SessionExpired => "SESSION_EXPIRED",
            ErrorKind::OtherReply => "OTHER_REPLY",
            ErrorKind::ConnectFailed => "CONNECT_FAILED",
            ErrorKind::ConnectionLost => "CONNECTION_LOST",
            ErrorKind::ProtocolError => "PROTOCOL_ERROR",
        }
    }

    fn position(self) -> usize {
        ErrorKind::ALL
            .iter()
            .position(|kind| *kind == self)
            .expect("ALL lists every kind")
    }
}

/// What a reply means to a benchmark client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyClass {
    /// OK, VALUE, NOT_FOUND: the operation is done.
    Success,
    Error(ErrorKind),
}

/// Sorts a reply with the blocking client's classification, then names
/// the error it lumps together as a definite one.
pub fn classify_reply(answer: &Answer) -> ReplyClass {
    match answer.kind() {
        ReplyKind::Success => ReplyClass::Success,
        ReplyKind::NotLeader => ReplyClass::Error(ErrorKind::NotLeader),
        ReplyKind::Timeout => ReplyClass::Error(ErrorKind::Timeout),
        ReplyKind::Mismatch => ReplyClass::Error(ErrorKind::OtherReply),
        ReplyKind::Error => ReplyClass::Error(match answer.reply() {
            Some(Reply::Unavailable(_)) => ErrorKind::Unavailable,
            Some(Reply::BadRequest(_)) => ErrorKind::BadRequest,
            Some(Reply::SessionExpired) => ErrorKind::SessionExpired,
            _ => ErrorKind::OtherReply,
        }),
    }
}

/// Counters for one part of a run (the unmeasured start or the measurement).
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Latency of successful operations, retries included.
    pub histogram: Histogram,
    pub operations_succeeded: u64,
    /// Operations that ended without success (timeout or a definite error).
    pub operations_failed: u64,
    errors: [u64; ERROR_KIND_COUNT],
}

impl Stats {
    pub fn record_success(&mut self, latency: Duration) {
        self.operations_succeeded += 1;
        self.histogram.record(latency);
    }

    pub fn record_failure(&mut self) {
        self.operations_failed += 1;
    }

    pub fn record_error(&mut self, kind: ErrorKind) {
        self.errors[kind.position()] += 1;
    }

    pub fn error_count(&self, kind: ErrorKind) -> u64 {
        self.errors[kind.position()]
    }

    /// "NOT_LEADER 3", ... for each kind seen, in a fixed order.
    pub fn error_counts(&self) -> Vec<String> {
        ErrorKind::ALL
            .iter()
            .filter(|kind| self.error_count(**kind) > 0)
            .map(|kind| format!("{} {}", kind.name(), self.error_count(*kind)))
            .collect()
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn operations_finished(&self) -> u64 {
        self.operations_succeeded + self.operations_failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_map_to_error_kinds() {
        let ok = Reply::Ok {
            index: raftlite::core::LogIndex(3),
            term: raftlite::core::Term(1),
        };
        let not_leader = |leader| Reply::NotLeader { leader };
        let hinted = raftlite::reply::Leader {
            id: "B".to_string(),
            address: "127.0.0.1:8001".to_string(),
        };
        let error = ReplyClass::Error;
        let cases = [
            (ok, ReplyClass::Success),
            (Reply::Value(b"c1-vvv".to_vec()), ReplyClass::Success),
            (Reply::NotFound, ReplyClass::Success),
            (not_leader(Some(hinted)), error(ErrorKind::NotLeader)),
            (not_leader(None), error(ErrorKind::NotLeader)),
            (Reply::Timeout, error(ErrorKind::Timeout)),
            (
                Reply::Unavailable("busy".into()),
                error(ErrorKind::Unavailable),
            ),
            (
                Reply::BadRequest("empty command".into()),
                error(ErrorKind::BadRequest),
            ),
            (Reply::SessionExpired, error(ErrorKind::SessionExpired)),
            (
                Reply::Mismatch {
                    current: Some(b"4".to_vec()),
                },
                error(ErrorKind::OtherReply),
            ),
        ];
        for (reply, expected) in cases {
            let answer = Answer::Reply(reply);
            assert_eq!(classify_reply(&answer), expected, "{answer}");
        }
        for line in ["SOMETHING_NEW from a newer node", ""] {
            let answer = Answer::Unreadable(line.to_string());
            assert_eq!(classify_reply(&answer), error(ErrorKind::OtherReply));
        }
    }

    #[test]
    fn every_kind_has_its_own_counter() {
        let mut stats = Stats::default();
        for (count, kind) in ErrorKind::ALL.iter().enumerate() {
            for _ in 0..=count {
                stats.record_error(*kind);
            }
        }
        for (count, kind) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(
                stats.error_count(*kind),
                count as u64 + 1,
                "{}",
                kind.name()
            );
        }
        assert_eq!(stats.errors_total(), 45);
    }
}
