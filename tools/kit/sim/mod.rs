//! The deterministic simulator: N copies of the daemon's own `Replica`
//! (Raft core, state machine with sessions, pending writes and reads),
//! driven by a simulated clock, network and disk that all draw from one
//! seed, with a checker for each property of Raft after every step. In the style of FoundationDB's
//! simulation and TigerBeetle's VOPR: a safety phase under faults, then a
//! liveness phase that must converge within a stated bound. docs/TESTING.md
//! explains the fault model and the properties.
//!
//! Same seed, same run, event for event: randomness comes only from seeded
//! `Rng`s, only ordered containers are iterated, and nothing here reads a
//! clock, spawns a thread or does IO.

mod checker;
mod clients;
mod disk;
mod divergence;
mod drive;
mod event;
mod faults;
mod foreign_log;
mod hash;
mod history;
mod io;
mod model;
mod network;
mod node;
pub mod options;
mod outcomes;
mod property;
mod queue;
mod simulator;
mod snapshot_files;
mod snapshots;
mod stale_member;
mod stats;
mod sweep;
mod trace;
mod transfers;
mod workload;

pub use options::{size_for_seed, Options, CLUSTER_SIZES, LIVENESS_BOUND_MS, STEPS_DEFAULT};
pub use property::{Property, Violation};
pub use simulator::Simulator;
pub use stats::{FaultCounts, SnapshotCounts, Stats};
pub use sweep::{run_seed, Failure, SeedReport};
pub use trace::Echo;
