//! Deterministic simulation of detcd under madsim. Build with `--cfg madsim` into its own
//! target directory (`ci/test` does): every run is a pure function of its seed.
//!
//! [`cluster`] runs members of the real server code (Raft, WAL on a [`SimDisk`], the gRPC
//! peer transport) on madsim nodes; [`wal_power_cut`] drives the WAL alone through power
//! failures. [`run`] runs a [`scenario`] (a file under `scenarios/`) with one seed: full
//! detcd members ([`kv_cluster`]), clients recording a history ([`workload`]), the
//! [`nemesis`], and the end-of-run checks.
//!
//! [`SimDisk`]: detcd::runtime::SimDisk

#![cfg(madsim)]

pub mod cluster;
pub mod harness;
pub mod kv_cluster;
pub mod nemesis;
pub mod nodes;
pub mod rogue;
pub mod run;
pub mod scenario;
pub mod wal_power_cut;
pub mod watcher;
pub mod workload;
