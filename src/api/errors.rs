//! etcd's gRPC codes for the server's errors (etcd's api/v3rpc/rpctypes), chosen by the
//! error's kind, with etcd's message, so clients that match on either keep working. This
//! is the one place where a server error becomes a gRPC status.

use tonic::{Code, Status};

use crate::auth;
use crate::lease;
use crate::mvcc;
use crate::server::member::ProposeError;
use crate::server::membership::MembershipError;
use crate::server::Error;

fn code_of(e: &Error) -> Code {
    match e {
        Error::Propose(p) => match p {
            ProposeError::NoLeader | ProposeError::TimedOut | ProposeError::Stopped => {
                Code::Unavailable
            }
            ProposeError::TooManyRequests => Code::ResourceExhausted,
            ProposeError::NotLeader => Code::FailedPrecondition,
        },
        Error::Mvcc(m) | Error::Lease(lease::Error::Mvcc(m)) => mvcc_code(m),
        Error::Lease(l) => match l {
            lease::Error::NotFound => Code::NotFound,
            lease::Error::Exists => Code::FailedPrecondition,
            lease::Error::TtlTooLarge => Code::OutOfRange,
            lease::Error::NotPrimary => Code::Unavailable,
            lease::Error::Backend(_) | lease::Error::Mvcc(_) => Code::Internal,
        },
        Error::Auth(a) => auth_code(a),
        Error::Membership(m) => match m {
            MembershipError::NotFound => Code::NotFound,
            MembershipError::BadUrls => Code::InvalidArgument,
            MembershipError::Unhealthy => Code::Unavailable,
            MembershipError::Exists
            | MembershipError::PeerUrlExists
            | MembershipError::NotEnoughStarted
            | MembershipError::TooManyLearners
            | MembershipError::NotLearner
            | MembershipError::LearnerNotReady => Code::FailedPrecondition,
        },
        Error::Corrupt => Code::DataLoss,
        Error::BadLeaderTransferee => Code::FailedPrecondition,
        Error::LeaderTransferTimeout => Code::Unavailable,
        Error::Defragment(_) | Error::Snapshot(_) | Error::WatchRefused(_) => Code::Internal,
        // etcd's election and lock servers return these as plain errors: gRPC's Unknown.
        Error::ElectionNotLeader
        | Error::ElectionNoLeader
        | Error::MissingLeaderKey
        | Error::SessionExpired => Code::Unknown,
        Error::Forwarded(s) => s.code(),
    }
}

/// etcd's rpctypes codes for the auth store's errors.
fn auth_code(e: &auth::Error) -> Code {
    match e {
        auth::Error::UserEmpty
        | auth::Error::RoleEmpty
        | auth::Error::AuthFailed
        | auth::Error::InvalidAuthMgmt
        | auth::Error::AuthOldRevision => Code::InvalidArgument,
        auth::Error::RootUserNotExist
        | auth::Error::RootRoleNotExist
        | auth::Error::UserAlreadyExist
        | auth::Error::UserNotFound
        | auth::Error::RoleAlreadyExist
        | auth::Error::RoleNotFound
        | auth::Error::RoleNotGranted
        | auth::Error::PermissionNotGranted
        | auth::Error::AuthNotEnabled => Code::FailedPrecondition,
        auth::Error::PermissionDenied => Code::PermissionDenied,
        auth::Error::InvalidAuthToken => Code::Unauthenticated,
        auth::Error::Backend(_) => Code::Internal,
    }
}

fn mvcc_code(e: &mvcc::Error) -> Code {
    match e {
        mvcc::Error::Compacted | mvcc::Error::FutureRev => Code::OutOfRange,
        mvcc::Error::LeaseNotFound | mvcc::Error::KeyNotFound => Code::NotFound,
        mvcc::Error::NoSpace => Code::ResourceExhausted,
        mvcc::Error::TooManyOps
        | mvcc::Error::DuplicateKey
        | mvcc::Error::RequestTooLarge
        | mvcc::Error::EmptyKey
        | mvcc::Error::ValueProvided
        | mvcc::Error::LeaseProvided => Code::InvalidArgument,
        mvcc::Error::Backend(_) => Code::Internal,
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match e {
            Error::Forwarded(s) => s,
            e => Status::new(code_of(&e), e.to_string()),
        }
    }
}

/// An error of the election and lock services. etcd's servers for them call KV and Lease
/// through etcd's own client, which hands errors back as plain Go errors: gRPC's Unknown,
/// with the message kept (a lock on a missing lease: Unknown, "etcdserver: requested
/// lease not found").
pub fn through_own_client(e: Error) -> Status {
    Status::unknown(Status::from(e).message())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: impl Into<Error>) -> Code {
        Status::from(e.into()).code()
    }

    #[test]
    fn codes_follow_etcd() {
        assert_eq!(code(mvcc::Error::Compacted), Code::OutOfRange);
        assert_eq!(code(lease::Error::NotFound), Code::NotFound);
        assert_eq!(code(mvcc::Error::LeaseNotFound), Code::NotFound);
        assert_eq!(code(mvcc::Error::DuplicateKey), Code::InvalidArgument);
        assert_eq!(code(mvcc::Error::NoSpace), Code::ResourceExhausted);
        assert_eq!(code(ProposeError::TimedOut), Code::Unavailable);
        assert_eq!(code(ProposeError::TooManyRequests), Code::ResourceExhausted);
        assert_eq!(
            code(MembershipError::LearnerNotReady),
            Code::FailedPrecondition
        );
        assert_eq!(code(MembershipError::NotFound), Code::NotFound);
        assert_eq!(code(auth::Error::PermissionDenied), Code::PermissionDenied);
        assert_eq!(code(auth::Error::InvalidAuthToken), Code::Unauthenticated);
        assert_eq!(code(auth::Error::AuthFailed), Code::InvalidArgument);
        assert_eq!(code(auth::Error::RoleNotFound), Code::FailedPrecondition);
        assert_eq!(
            Status::from(Error::from(ProposeError::NoLeader)).message(),
            "etcdserver: no leader"
        );
    }
}
