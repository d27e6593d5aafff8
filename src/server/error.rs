//! Why a request failed, as one enum for the whole server: each variant keeps the lower
//! layer's error as it was, so that the API maps it to etcd's gRPC code and message in one
//! place (`api::errors`) without matching on strings.

use super::member::ProposeError;
use super::membership::MembershipError;
use crate::backend::BackendError;
use crate::{auth, lease, mvcc};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request never reached the state machine, or its result was lost.
    #[error(transparent)]
    Propose(#[from] ProposeError),
    #[error(transparent)]
    Mvcc(#[from] mvcc::Error),
    #[error(transparent)]
    Lease(#[from] lease::Error),
    #[error(transparent)]
    Auth(#[from] auth::Error),
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// A write while the CORRUPT alarm is raised.
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    #[error("etcdserver: defragment: {0}")]
    Defragment(BackendError),
    #[error("etcdserver: snapshot: {0}")]
    Snapshot(String),
    /// A server-side watch (election, lock) that the store would not create.
    #[error("etcdserver: watch refused: {0}")]
    WatchRefused(String),
    #[error("election: not leader")]
    ElectionNotLeader,
    #[error("election: no leader")]
    ElectionNoLeader,
    #[error("\"leader\" field must be provided")]
    MissingLeaderKey,
    /// The lock key went (its lease expired) while the lock was awaited.
    #[error("mutex: session is expired")]
    SessionExpired,
    /// The leader answered a forwarded request with this status, passed on as it is.
    #[error("{}", .0.message())]
    Forwarded(tonic::Status),
}

impl From<BackendError> for Error {
    fn from(e: BackendError) -> Self {
        Error::Mvcc(mvcc::Error::Backend(e))
    }
}

pub type Result<T> = std::result::Result<T, Error>;
