//! The Lock service (etcd's `v3lockpb.Lock`), served by the server's lock.

use tonic::{Request, Response, Status};

use crate::proto::v3lockpb::lock_server::Lock;
use crate::proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use crate::server::Server;

#[derive(Clone)]
pub struct LockService(pub Server);

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let req = request.into_inner();
        Ok(Response::new(self.0.lock(&req.name, req.lease).await?))
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        Ok(Response::new(
            self.0.unlock(request.into_inner().key).await?,
        ))
    }
}
