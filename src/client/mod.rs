//! The client: its rules as a sans-IO machine (`machine.rs`) that every
//! client runs, and the blocking TCP client over it (`blocking.rs`) that
//! `submit` and the tests use.

mod blocking;
pub mod machine;
#[cfg(test)]
mod tests;

pub use blocking::{clock_seed, still_open, Client, Connection, ATTEMPT_TIMEOUT};
pub use machine::{
    Action, Backoff, ClientConfig, ClientMachine, Try, TryResult, BACKOFF_INITIAL, BACKOFF_MAX,
};
