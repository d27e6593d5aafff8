//! The member: configuration, and (to come) the Raft driver loop, proposals, reads and
//! membership.

pub mod alarm;
pub mod boot;
pub mod config;
pub mod kv_apply;
pub mod lease_forward;
pub mod member;
pub mod transport;
pub mod url;
