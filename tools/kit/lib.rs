//! The test kit: what the tests and the tools share, and the daemon never
//! links. `sim` drives the daemon's own replicas, driver and client machine
//! in a deterministic simulation (pure); `fault` starts local clusters and
//! puts fault proxies between their nodes; `linearizability` checks the
//! histories the fault bench records; `etcd_gateway` speaks etcd's JSON
//! gateway for the comparisons; `json` writes the tools' fixed-decimal
//! JSON numbers (serde does the rest); `cli_checks` is what every binary's
//! command line must do.

pub mod cli_checks;
pub mod etcd_gateway;
pub mod fault;
pub mod json;
pub mod linearizability;
pub mod sim;
