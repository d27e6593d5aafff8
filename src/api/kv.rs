//! The KV service: writes and linearizable reads go through the Raft log; serializable
//! reads are served from the local store.

use tonic::{Request, Response, Status};

use super::context::{expect_applied, propose_rpc, Context};
use super::errors::status;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use crate::proto::internalpb::internal_raft_request::Request as Internal;
use crate::server::kv_apply::lock;

/// Serves etcd's KV service for one member.
#[derive(Clone)]
pub struct KvService(pub Context);

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let req = request.into_inner();
        let mut resp = if req.serializable {
            lock(&self.0.store)
                .kv()
                .range(&req)
                .map_err(|e| status(e.to_string()))?
        } else {
            expect_applied!(self.0.propose(Internal::Range(req)).await?, Range)
        };
        resp.header = self.0.complete(resp.header);
        Ok(Response::new(resp))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        propose_rpc!(self.0, Put, request)
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        propose_rpc!(self.0, DeleteRange, request)
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        propose_rpc!(self.0, Txn, request)
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        propose_rpc!(self.0, Compaction, request)
    }
}
