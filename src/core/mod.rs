//! The Raft protocol as a deterministic state machine: no IO, no clock, no
//! sockets. Inputs are messages, time and proposals; outputs are a `Ready`.

pub mod config;
pub mod message;
pub mod planted;
pub mod progress;
pub mod raft;
pub mod raft_log;
pub mod ready;
pub mod rng;
pub mod types;

#[cfg(test)]
mod tests;

pub use config::{Config, ConfigError};
pub use message::*;
pub use planted::PlantedBug;
pub use raft::{ProposeError, Raft, Role, Status};
pub use ready::{Event, Ready, StepDownReason};
pub use types::*;
