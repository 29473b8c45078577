//! The Raft protocol as a deterministic state machine: no IO, no clock, no
//! sockets. Inputs are messages, time and proposals; outputs are a `Ready`.

pub mod config;
mod election;
pub mod membership;
pub mod message;
pub mod planted;
pub mod progress;
pub mod raft;
pub mod raft_log;
mod read_index;
pub mod ready;
mod replication;
pub mod rng;
mod role;
mod snapshot;
mod transfer;
pub mod types;

#[cfg(test)]
mod paper_tests;
#[cfg(test)]
mod snapshot_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod transfer_tests;

pub use config::{Config, ConfigError, Limits, StartConfiguration};
pub use membership::{Configuration, MemberKind};
pub use message::*;
pub use planted::PlantedBug;
pub use raft::{ProposeError, Raft, Role, Status};
pub use ready::{Event, ReadState, Ready, StepDownReason};
pub use transfer::{TransferError, TransferOutcome, TransferStarted};
pub use types::*;
