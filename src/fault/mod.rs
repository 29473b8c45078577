//! Fault injection for the test bench and process-level tests (never used
//! by the daemon): local clusters of real processes and link proxies that
//! cut real TCP traffic.

pub mod cluster;
pub mod proxy;

pub use cluster::{free_ports, parse_fields, poll_until, ClusterSpec, LocalCluster, LocalNode};
pub use proxy::LinkProxy;
