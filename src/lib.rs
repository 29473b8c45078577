//! raftlite: a Raft consensus daemon with a replicated key-value store.
//!
//! `core` is the protocol (pure), `kv` the state machine (pure), `wire` the
//! frame codec, `runtime` the mio event loop (the only code that touches the OS).

pub mod constants;
pub mod core;
