//! The only code that touches the OS: sockets, the clock, stderr.

pub mod clock;
pub mod connection;
pub mod describe;
mod disk_sync;
pub mod logging;
mod network;
pub mod options;
pub mod server;
pub mod timer_wheel;
