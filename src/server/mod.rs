//! The member: configuration, and (to come) the Raft driver loop, proposals, reads and
//! membership.

pub mod boot;
pub mod config;
pub mod join;
pub mod kv_apply;
pub mod member;
pub mod membership;
pub mod transport;
pub mod url;
