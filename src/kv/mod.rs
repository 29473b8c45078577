//! The replicated key-value state machine: client command grammar, the
//! binary form of log commands, and the store that applies them. Pure: no
//! IO, no clock, no randomness, so every replica and the simulator compute
//! the same results from the same log.

mod command;
mod store;

pub use command::{
    parse_request, Command, DecodeError, ParseError, Request, COMMAND_ENCODED_SIZE_MAX,
};
pub use store::{format_value, Outcome, Store};
