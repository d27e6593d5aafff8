//! The member: the Raft driver loop ([`member`]), what it applies ([`apply`]), and the
//! server the API adapters call ([`v3::Server`]: proposals, reads, membership, leases,
//! alarms, quota, maintenance), with start-up ([`boot`], [`join`]) and the peer
//! transport ([`transport`], [`snapshot`]). Nothing here knows the API above it: errors
//! leave as [`error::Error`], which `api` maps to etcd's gRPC codes.

pub mod alarm;
pub mod apply;
pub mod auth;
pub mod boot;
pub mod cluster;
pub mod compaction;
pub mod concurrency;
pub mod config;
pub mod corrupt;
pub mod error;
pub mod join;
pub mod lease_forward;
pub mod log;
pub mod member;
pub mod membership;
pub mod metrics;
pub mod quota;
pub mod snapshot;
pub mod snapshot_rows;
pub mod snapshot_stream;
pub mod store;
pub mod transport;
pub mod url;
pub mod v3;
pub mod v3election;
pub mod v3lock;
pub mod watch;

pub use error::Error;
pub use v3::Server;

/// The etcd version detcd reports: in Maintenance Status, `/version` and
/// `etcd_server_version`.
pub const SERVER_VERSION: &str = "3.5.0";
