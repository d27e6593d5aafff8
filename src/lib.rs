//! detcd: an etcd-compatible, strongly consistent key-value store built simulation-first.
//!
//! Layers, top to bottom (each may use only the ones below it): `start` (the composition
//! root), `api` (gRPC and HTTP adapters), `server` (the member), the state machine
//! (`mvcc`, `lease`, `auth`, over `backend`), `raft`, durable storage (`wal`, `snap`), and
//! `runtime`, the seam through which every disk, clock and randomness access passes so
//! that the same code runs on tokio or under the madsim simulator. `tests/seams.rs`
//! enforces the direction.

pub mod api;
pub mod auth;
pub mod backend;
pub mod lease;
pub mod migrate;
pub mod mvcc;
pub mod net;
pub mod proto;
pub mod raft;
pub mod runtime;
pub mod server;
pub mod snap;
pub mod start;
pub mod wal;

#[cfg(all(test, not(madsim)))]
mod fuzz;
