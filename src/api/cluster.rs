//! The Cluster service: member list, add, remove, update and promote; the server checks
//! and proposes them.

use tonic::{Request, Response, Status};

use super::auth::admin;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use crate::server::Server;

#[derive(Clone)]
pub struct ClusterService(pub Server);

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        admin(&self.0, &request)?;
        Ok(Response::new(
            self.0.member_add(request.into_inner()).await?,
        ))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        admin(&self.0, &request)?;
        let id = request.into_inner().id;
        Ok(Response::new(self.0.member_remove(id).await?))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        admin(&self.0, &request)?;
        Ok(Response::new(
            self.0.member_update(request.into_inner()).await?,
        ))
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let linearizable = request.into_inner().linearizable;
        Ok(Response::new(self.0.member_list(linearizable).await?))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        admin(&self.0, &request)?;
        let id = request.into_inner().id;
        Ok(Response::new(self.0.member_promote(id).await?))
    }
}
