//! Deterministic simulation of detcd under madsim. Build with `--cfg madsim` into its own
//! target directory (`ci/test` does): every run is a pure function of its seed.
//!
//! [`cluster`] runs members of the real server code (Raft, WAL on a [`SimDisk`], the gRPC
//! peer transport) on madsim nodes; [`wal_power_cut`] drives the WAL alone through power
//! failures.
//!
//! [`SimDisk`]: detcd::runtime::SimDisk

#![cfg(madsim)]

pub mod cluster;
pub mod wal_power_cut;
