//! The KV service: each call goes to the server as it came, and its answer or error back.

use tonic::{Request, Response, Status};

use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};
use crate::server::auth::Access;
use crate::server::Server;

/// Serves etcd's KV service for one member.
#[derive(Clone)]
pub struct KvService(pub Server);

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let caller = super::auth::caller(&self.0, &request)?;
        let req = request.into_inner();
        self.0.authorize(caller.as_ref(), Access::Range(&req))?;
        Ok(Response::new(self.0.range(req).await?))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let caller = super::auth::caller(&self.0, &request)?;
        let req = request.into_inner();
        self.0.authorize(caller.as_ref(), Access::Put(&req))?;
        Ok(Response::new(self.0.put(caller.as_ref(), req).await?))
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let caller = super::auth::caller(&self.0, &request)?;
        let req = request.into_inner();
        self.0
            .authorize(caller.as_ref(), Access::DeleteRange(&req))?;
        Ok(Response::new(
            self.0.delete_range(caller.as_ref(), req).await?,
        ))
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let caller = super::auth::caller(&self.0, &request)?;
        let req = request.into_inner();
        self.0.authorize(caller.as_ref(), Access::Txn(&req))?;
        Ok(Response::new(self.0.txn(caller.as_ref(), req).await?))
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        Ok(Response::new(self.0.compact(request.into_inner()).await?))
    }
}
