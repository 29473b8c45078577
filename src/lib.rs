//! raftlite: a Raft consensus daemon with a replicated key-value store.
//! Production code only: the simulator, the fault harness and the
//! linearizability checker are the test kit's (tools/kit/).
//!
//! `core` is the protocol and `kv` the state machine (both pure); `replica`
//! joins them with the client-request table (pure); `driver` runs a replica
//! over storage, transport and a sync executor by the Ready contract (pure:
//! the IO is the caller's); `reply` writes and reads every reply line;
//! `wire` is the frame codec; `storage` keeps the log; `runtime` is the mio
//! event loop, the only code the daemon runs that touches sockets and the
//! clock. `client` is the client machine (pure) and the blocking client
//! over it, `cli` the command-line parsing every binary shares.

pub mod cli;
pub mod client;
pub mod constants;
pub mod core;
pub mod driver;
pub mod kv;
pub mod replica;
pub mod reply;
pub mod runtime;
pub mod storage;
pub mod wire;
