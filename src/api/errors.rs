//! etcd's error strings and the gRPC codes etcd sends with them (etcd's
//! api/v3rpc/rpctypes), so clients that match on either keep working.

use tonic::{Code, Status};

use crate::server::member::ProposeError;

/// The gRPC code etcd uses for one of its error messages.
pub fn code_of(message: &str) -> Code {
    match message {
        "etcdserver: mvcc: required revision has been compacted"
        | "etcdserver: mvcc: required revision is a future revision" => Code::OutOfRange,
        "etcdserver: requested lease not found"
        | "etcdserver: key not found"
        | "etcdserver: member not found" => Code::NotFound,
        "etcdserver: member ID already exist"
        | "etcdserver: Peer URLs already exists"
        | "etcdserver: re-configuration failed due to not enough started members"
        | "etcdserver: can only promote a learner member"
        | "etcdserver: can only promote a learner member which is in sync with leader"
        | "etcdserver: too many learner members in cluster"
        | "etcdserver: not leader"
        | "etcdserver: bad leader transferee" => Code::FailedPrecondition,
        "etcdserver: mvcc: database space exceeded" | "etcdserver: too many requests" => {
            Code::ResourceExhausted
        }
        "etcdserver: no leader"
        | "etcdserver: request timed out"
        | "etcdserver: server stopped"
        | "etcdserver: unhealthy cluster"
        | "etcdserver: request timed out, leader transfer took too long" => Code::Unavailable,
        _ => Code::InvalidArgument,
    }
}

pub fn status(message: String) -> Status {
    Status::new(code_of(&message), message)
}

impl From<ProposeError> for Status {
    fn from(e: ProposeError) -> Status {
        status(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_etcd() {
        assert_eq!(
            code_of("etcdserver: mvcc: required revision has been compacted"),
            Code::OutOfRange
        );
        assert_eq!(
            code_of("etcdserver: requested lease not found"),
            Code::NotFound
        );
        assert_eq!(
            code_of("etcdserver: duplicate key given in txn request"),
            Code::InvalidArgument
        );
        assert_eq!(
            code_of("etcdserver: mvcc: database space exceeded"),
            Code::ResourceExhausted
        );
        assert_eq!(
            Status::from(ProposeError::TimedOut).code(),
            Code::Unavailable
        );
        assert_eq!(
            Status::from(ProposeError::NoLeader).message(),
            "etcdserver: no leader"
        );
    }
}
