//! The replicated key-value state machine: client command grammar and the
//! quoting of keys and values in it and in replies, the binary form of log
//! records, the store and the client-session table.
//! Pure: no IO, no clock, no randomness, so every replica and the simulator
//! compute the same results from the same log.

mod command;
mod key;
mod machine;
mod quote;
mod session;
mod snapshot;
#[cfg(test)]
mod snapshot_measure;
#[cfg(test)]
mod snapshot_tests;
mod store;

pub use command::{
    parse_request, Command, DecodeError, ParseError, Request, COMMAND_ENCODED_SIZE_MAX,
};
pub use machine::{Applied, LogRecord, StateMachine};
pub use quote::{
    parse_quoted, parse_rest, parse_token, quote, quote_if_needed, write_if_needed, Position,
    QuoteError, Token, ABSENT_EXPECTED,
};
pub use session::{CachedReply, SessionCheck, Sessions};
pub use snapshot::{
    Restorer, SnapshotCursor, SnapshotError, SNAPSHOT_RECORD_SIZE_MAX, SNAPSHOT_VERSION,
};
pub use store::{Outcome, Store, FOLD_ENTRIES_PER_APPLY_MAX};
