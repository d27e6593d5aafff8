//! The backend quota at the door, as etcd's quota servers do it: a put, txn or lease grant
//! that would take this member's backend past `--quota-backend-bytes` is refused, and the
//! member raises its NOSPACE alarm through the log so that every member stops such writes.

use prost::Message;
use tonic::Status;

use super::context::Context;
use super::errors::status;
use crate::mvcc;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::{AlarmRequest, AlarmType};
use crate::proto::internalpb::internal_raft_request::Request as Internal;
use crate::proto::internalpb::InternalRaftRequest;
use crate::server::alarm::quota_cost;
use crate::server::kv_apply::lock;

/// Refuses `request` if its cost does not fit the quota, after proposing the alarm.
pub async fn check(ctx: &Context, request: &Internal) -> Result<(), Status> {
    let Some(cost) = quota_cost(request) else {
        return Ok(());
    };
    let fits = lock(&ctx.store)
        .kv()
        .quota_available(cost)
        .map_err(|e| status(e.to_string()))?;
    if fits {
        return Ok(());
    }
    let raise = InternalRaftRequest {
        request: Some(Internal::Alarm(AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: ctx.member_id,
            alarm: AlarmType::Nospace as i32,
        })),
    };
    // As in etcd, the write fails whether or not raising the alarm worked.
    let _ = ctx.member.propose(raise.encode_to_vec()).await;
    Err(status(mvcc::Error::NoSpace.to_string()))
}
