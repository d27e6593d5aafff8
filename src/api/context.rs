//! What every service needs: the member, the shared state machine, and the identity that
//! goes into response headers.

use prost::Message;
use tonic::Status;

use super::errors::status;
use crate::proto::etcdserverpb::ResponseHeader;
use crate::proto::internalpb::internal_raft_request::Request as Internal;
use crate::proto::internalpb::internal_raft_response::Response as Applied;
use crate::proto::internalpb::{InternalRaftRequest, InternalRaftResponse};
use crate::server::kv_apply::{lock, LeaseClock, SharedLessor, SharedStore};
use crate::server::member::MemberHandle;
use crate::server::membership::SharedCluster;

#[derive(Clone)]
pub struct Context {
    pub member: MemberHandle,
    pub store: SharedStore,
    pub lessor: SharedLessor,
    pub cluster: SharedCluster,
    pub clock: LeaseClock,
    pub cluster_id: u64,
    pub member_id: u64,
}

impl Context {
    /// A response header at `revision`, or at the store's current revision if `None`.
    pub fn header(&self, revision: Option<i64>) -> Option<ResponseHeader> {
        let revision = revision.unwrap_or_else(|| lock(&self.store).kv().rev());
        Some(ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.member.status().term,
        })
    }

    /// Completes a header the state machine filled with its revision.
    pub fn complete(&self, header: Option<ResponseHeader>) -> Option<ResponseHeader> {
        self.header(header.map(|h| h.revision))
    }

    /// Proposes `request` and returns what applying it produced.
    pub async fn propose(&self, request: Internal) -> Result<Applied, Status> {
        super::quota::check(self, &request).await?;
        let payload = InternalRaftRequest {
            request: Some(request),
        }
        .encode_to_vec();
        let bytes = self.member.propose(payload).await?;
        match InternalRaftResponse::decode(bytes.as_slice()) {
            Ok(InternalRaftResponse {
                response: Some(Applied::Error(message)),
            }) => Err(status(message)),
            Ok(InternalRaftResponse {
                response: Some(applied),
            }) => Ok(applied),
            _ => Err(Status::internal("etcdserver: malformed apply result")),
        }
    }
}

/// Unwraps the applied response of the expected kind.
macro_rules! expect_applied {
    ($applied:expr, $variant:ident) => {
        match $applied {
            $crate::proto::internalpb::internal_raft_response::Response::$variant(r) => r,
            _ => {
                return Err(tonic::Status::internal(
                    "etcdserver: apply result of the wrong kind",
                ))
            }
        }
    };
}
pub(crate) use expect_applied;

/// Proposes `$request` as `Internal::$variant`, and answers with the applied response of
/// the same variant, its header completed: the whole body of a write RPC.
macro_rules! propose_rpc {
    ($ctx:expr, $variant:ident, $request:expr) => {{
        let request = $crate::proto::internalpb::internal_raft_request::Request::$variant(
            $request.into_inner(),
        );
        let applied = $ctx.propose(request).await?;
        let mut resp = $crate::api::context::expect_applied!(applied, $variant);
        resp.header = $ctx.complete(resp.header);
        Ok(tonic::Response::new(resp))
    }};
}
pub(crate) use propose_rpc;
