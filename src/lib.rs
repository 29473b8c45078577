//! raftlite: a Raft consensus daemon with a replicated key-value store.
//!
//! `core` is the protocol and `kv` the state machine (both pure); `replica`
//! joins them with the client-request table (pure); `reply` writes and
//! reads every reply line; `sim` drives replicas in a deterministic
//! simulation (pure); `wire` is the frame codec; `storage` keeps the log;
//! `runtime` is the mio event loop, the only code the daemon runs that
//! touches sockets and the clock. `client` is the blocking client, `cli`
//! the command-line parsing every binary shares, `fault` and
//! `linearizability` serve the test bench.

pub mod cli;
pub mod client;
pub mod constants;
pub mod core;
pub mod driver;
pub mod fault;
pub mod kv;
pub mod linearizability;
pub mod replica;
pub mod reply;
pub mod runtime;
pub mod sim;
pub mod storage;
pub mod wire;
