//! detcd: an etcd-compatible, strongly consistent key-value store built simulation-first.
//!
//! Layers, top to bottom (each may use only the ones below it): `server`, the state
//! machine (`mvcc`, `lease`, `auth`), `raft`, durable storage (`wal`, `snap`), and
//! `runtime`, the seam through which every disk, clock and randomness access passes so
//! that the same code runs on tokio or under the madsim simulator.

pub mod api;
pub mod auth;
pub mod backend;
pub mod lease;
pub mod migrate;
pub mod mvcc;
pub mod proto;
pub mod raft;
pub mod runtime;
pub mod server;
pub mod snap;
pub mod wal;
