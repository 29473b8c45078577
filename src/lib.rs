//! raftlite: a Raft consensus daemon with a replicated key-value store.
//!
//! `core` is the protocol and `kv` the state machine (both pure); `replica`
//! joins them with the client-request table (pure); `wire` is the frame codec;
//! `storage` keeps the log; `runtime` is the mio event loop, the only code that
//! touches sockets and the clock.

pub mod client;
pub mod constants;
pub mod core;
pub mod fault;
pub mod kv;
pub mod linearizability;
pub mod replica;
pub mod runtime;
pub mod storage;
pub mod wire;
