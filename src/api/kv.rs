//! The KV service: writes go through the Raft log; reads are served from the local store,
//! linearizable ones after a ReadIndex round confirms it is up to date.

use tonic::{Request, Response, Status};

use super::context::{propose_rpc, Context};
use super::errors::status;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
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
        if !req.serializable {
            self.0.member.read_index().await?;
        }
        let mut resp = lock(&self.0.store)
            .kv()
            .range(&req)
            .map_err(|e| status(e.to_string()))?;
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
