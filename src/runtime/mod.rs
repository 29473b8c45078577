//! The only code that touches the OS: sockets, the clock, stderr.

pub mod clock;
pub mod connection;
pub mod describe;
mod disk_sync;
pub mod handshake;
pub mod logging;
mod network;
pub mod options;
pub mod os;
pub mod peer_auth;
mod peers;
pub mod server;
pub mod timer_wheel;
mod transport;
