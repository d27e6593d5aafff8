//! The member: configuration, and (to come) the Raft driver loop, proposals, reads and
//! membership.

pub mod alarm;
pub mod boot;
pub mod config;
pub mod join;
pub mod kv_apply;
pub mod lease_forward;
pub mod member;
pub mod membership;
pub mod metrics;
pub mod snapshot;
pub mod transport;
pub mod url;

/// The etcd version detcd reports: in Maintenance Status, `/version` and
/// `etcd_server_version`.
pub const SERVER_VERSION: &str = "3.5.0";
