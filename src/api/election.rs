//! The Election service (etcd's `v3electionpb.Election`): campaign, proclaim, leader,
//! observe and resign, served by the server's election.

use std::pin::Pin;

use super::auth::{contend, may};
use super::errors::through_own_client;
use crate::auth::PermType;
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::proto::v3electionpb::election_server::Election;
use crate::proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use crate::server::{Error, Server};

#[derive(Clone)]
pub struct ElectionService(pub Server);

fn leader_key(leader: Option<LeaderKey>) -> Result<LeaderKey, Status> {
    leader.ok_or_else(|| Error::MissingLeaderKey.into())
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        contend(&self.0, &request, &request.get_ref().name)?;
        let req = request.into_inner();
        let resp = self.0.campaign(&req.name, req.lease, &req.value).await;
        Ok(Response::new(resp.map_err(through_own_client)?))
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let name = request.get_ref().leader.as_ref().map(|l| l.name.clone());
        contend(&self.0, &request, &name.unwrap_or_default())?;
        let req = request.into_inner();
        let leader = leader_key(req.leader)?;
        let resp = self.0.proclaim(&leader, &req.value).await;
        Ok(Response::new(resp.map_err(through_own_client)?))
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        contend(&self.0, &request, &request.get_ref().name)?;
        let name = request.into_inner().name;
        let resp = self.0.election_leader(&name).await;
        Ok(Response::new(resp.map_err(through_own_client)?))
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        // etcd's Observe reads the election through its own client and ends the stream,
        // without an error, when that read is refused (a bad token, no read permission).
        if may(
            &self.0,
            &request,
            &request.get_ref().name,
            &[PermType::Read],
        )
        .is_err()
        {
            return Ok(Response::new(Box::pin(futures::stream::empty())));
        }
        let changes = self.0.observe(&request.into_inner().name);
        let out = futures::stream::unfold(changes, |mut changes| async move {
            let next = changes.recv().await?;
            Some((next.map_err(through_own_client), changes))
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let name = request.get_ref().leader.as_ref().map(|l| l.name.clone());
        contend(&self.0, &request, &name.unwrap_or_default())?;
        let leader = leader_key(request.into_inner().leader)?;
        let resp = self.0.resign(&leader).await;
        Ok(Response::new(resp.map_err(through_own_client)?))
    }
}
