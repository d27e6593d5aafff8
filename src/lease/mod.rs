//! Leases, etcd's lessor: time-to-live grants that keys attach to, revoked (with their
//! keys, in one revision) when they expire.
//!
//! Everything that changes state is applied from the log (grant, revoke, checkpoint) and
//! stored in the backend's `lease` table in the same commit as the entry. Time is only the
//! leader's business: the leader (the *primary* lessor) tracks expiry from the `now` it is
//! given, proposes revokes for expired leases, and checkpoints remaining TTLs through the
//! log so that a new leader does not hand every lease a fresh TTL. Followers keep leases
//! forever until a revoke arrives.

mod expiry;
mod lessor;
mod record;

pub use lessor::{Lessor, LessorConfig};
pub use record::{Lease, RECORD_BYTES};

/// Errors of the lease layer, etcd's messages.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("etcdserver: requested lease not found")]
    NotFound,
    #[error("etcdserver: lease already exists")]
    Exists,
    #[error("etcdserver: too large lease TTL")]
    TtlTooLarge,
    /// Keepalives and expiry belong to the leader.
    #[error("not a primary lessor")]
    NotPrimary,
    #[error(transparent)]
    Mvcc(#[from] crate::mvcc::Error),
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
pub(crate) mod tests;
