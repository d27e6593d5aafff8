//! The Lock service (etcd's `v3lockpb.Lock`), served by the server's lock.

use tonic::{Request, Response, Status};

use super::auth::contend;
use super::errors::through_own_client;
use crate::proto::v3lockpb::lock_server::Lock;
use crate::proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use crate::server::Server;

#[derive(Clone)]
pub struct LockService(pub Server);

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        contend(&self.0, &request, &request.get_ref().name)?;
        let req = request.into_inner();
        let resp = self.0.lock(&req.name, req.lease).await;
        Ok(Response::new(resp.map_err(through_own_client)?))
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        // The key is `<name>/<lease hex>`: its name is all before the last slash.
        let key = &request.get_ref().key;
        let slash = key.iter().rposition(|&b| b == b'/').unwrap_or(key.len());
        let name = key[..slash].to_vec();
        contend(&self.0, &request, &name)?;
        let resp = self.0.unlock(request.into_inner().key).await;
        Ok(Response::new(resp.map_err(through_own_client)?))
    }
}
