//! The member: configuration, and (to come) the Raft driver loop, proposals, reads and
//! membership.

pub mod config;
pub mod transport;
pub mod url;
