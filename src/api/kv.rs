//! The KV service: writes and linearizable reads go through the Raft log; serializable
//! reads are served from the local store.

use prost::Message;
use tonic::{Request, Response, Status};

use super::errors::status;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use crate::proto::internalpb::internal_raft_request::Request as Internal;
use crate::proto::internalpb::internal_raft_response::Response as Applied;
use crate::proto::internalpb::{InternalRaftRequest, InternalRaftResponse};
use crate::server::kv_apply::{lock, SharedStore};
use crate::server::member::MemberHandle;

/// Serves etcd's KV service for one member.
#[derive(Clone)]
pub struct KvService {
    pub member: MemberHandle,
    pub store: SharedStore,
    pub cluster_id: u64,
    pub member_id: u64,
}

impl KvService {
    /// Completes a header the store filled with its revision.
    fn header(&self, header: Option<ResponseHeader>) -> Option<ResponseHeader> {
        let revision = header.map_or_else(|| lock(&self.store).kv().rev(), |h| h.revision);
        Some(ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.member.status().term,
        })
    }

    async fn propose(&self, request: Internal) -> Result<Applied, Status> {
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
            Applied::$variant(r) => r,
            _ => {
                return Err(Status::internal(
                    "etcdserver: apply result of the wrong kind",
                ))
            }
        }
    };
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let req = request.into_inner();
        let mut resp = if req.serializable {
            lock(&self.store)
                .kv()
                .range(&req)
                .map_err(|e| status(e.to_string()))?
        } else {
            expect_applied!(self.propose(Internal::Range(req)).await?, Range)
        };
        resp.header = self.header(resp.header);
        Ok(Response::new(resp))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let applied = self.propose(Internal::Put(request.into_inner())).await?;
        let mut resp = expect_applied!(applied, Put);
        resp.header = self.header(resp.header);
        Ok(Response::new(resp))
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let applied = self
            .propose(Internal::DeleteRange(request.into_inner()))
            .await?;
        let mut resp = expect_applied!(applied, DeleteRange);
        resp.header = self.header(resp.header);
        Ok(Response::new(resp))
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let applied = self.propose(Internal::Txn(request.into_inner())).await?;
        let mut resp = expect_applied!(applied, Txn);
        resp.header = self.header(resp.header);
        Ok(Response::new(resp))
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let applied = self
            .propose(Internal::Compaction(request.into_inner()))
            .await?;
        let mut resp = expect_applied!(applied, Compaction);
        resp.header = self.header(resp.header);
        Ok(Response::new(resp))
    }
}
