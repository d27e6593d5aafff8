//! The backend quota at the door, as etcd's quota servers do it: a put, txn or lease grant
//! that would take this member's backend past `--quota-backend-bytes` is refused, and the
//! member raises its NOSPACE alarm through the log so that every member stops such writes.

use std::sync::atomic::Ordering;

use super::alarm::quota_cost;
use super::error::Result;
use super::v3::Server;
use crate::mvcc;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::{AlarmRequest, AlarmType};
use crate::proto::internalpb::internal_raft_request::Request;

/// Refuses `request` if its cost does not fit the quota, after proposing the alarm. The
/// size is the backend's at its last commit, as etcd's backend reports it.
pub async fn check(server: &Server, request: &Request) -> Result<()> {
    let Some(cost) = quota_cost(request) else {
        return Ok(());
    };
    if server.backend_size.load(Ordering::Relaxed) + cost <= server.quota_bytes {
        return Ok(());
    }
    let raise = Request::Alarm(AlarmRequest {
        action: AlarmAction::Activate as i32,
        member_id: server.member_id,
        alarm: AlarmType::Nospace as i32,
    });
    // As in etcd, the write fails whether or not raising the alarm worked.
    let _ = server.member.propose(raise.into()).await;
    Err(mvcc::Error::NoSpace.into())
}
