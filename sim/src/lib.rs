//! Deterministic simulation of detcd under madsim. Build with `--cfg madsim` into its own
//! target directory (`ci/test` does): every run is a pure function of its seed.
//!
//! For now the simulation drives the durable layer: a WAL writer on a [`SimDisk`] in
//! virtual time, cut by a power failure at a seeded moment, then recovered. The cluster
//! simulation will build on the same pattern.
//!
//! [`SimDisk`]: detcd::runtime::SimDisk

#![cfg(madsim)]

pub mod wal_power_cut;
