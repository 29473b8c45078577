//! Fault injection for the test bench and process-level tests (never used
//! by the daemon): local clusters of real processes, link proxies that
//! cut real TCP traffic, and foreign data dirs for stale members.

pub mod cluster;
pub mod proxy;
pub mod stale;
pub mod temp;

pub use cluster::{free_ports, poll_until, status_fields, ClusterSpec, LocalCluster, LocalNode};
pub use proxy::LinkProxy;
pub use stale::ForeignDir;
pub use temp::{temp_path, TempDir};
