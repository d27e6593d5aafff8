//! The services on the peer listener besides Raft's own stream (`server::transport`):
//! what a joining member asks (the membership), and what followers forward to the leader
//! (promotions, lease keepalives and time to live).

use tonic::{Request, Response, Status};

use crate::lease;
use crate::proto::etcdserverpb::{
    HashKvRequest, HashKvResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse,
};
use crate::proto::peerpb::lease_forward_server::LeaseForward;
pub use crate::proto::peerpb::lease_forward_server::LeaseForwardServer;
use crate::proto::peerpb::membership_server::Membership;
pub use crate::proto::peerpb::membership_server::MembershipServer;
use crate::server::Server;

/// The peer side of the Cluster service.
pub struct MembershipPeer(pub Server);

#[tonic::async_trait]
impl Membership for MembershipPeer {
    async fn member_list(
        &self,
        _: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        Ok(Response::new(self.0.peer_member_list()))
    }

    /// Promotes here only: a member forwards to the one it believes leads.
    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let members = self.0.promote_here(request.into_inner().id).await?;
        Ok(Response::new(MemberPromoteResponse {
            header: self.0.header(Some(0)),
            members,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let resp = self.0.peer_hash_kv(request.into_inner().revision)?;
        Ok(Response::new(resp))
    }
}

/// The leader's side of lease forwarding: answers from its own lessor only.
pub struct LeaseForwardPeer(pub Server);

/// A lease error as sent back to the forwarding member: only `NotFound` is an answer.
fn peer_status(e: lease::Error) -> Status {
    match e {
        lease::Error::NotFound => Status::not_found(e.to_string()),
        other => Status::unavailable(other.to_string()),
    }
}

#[tonic::async_trait]
impl LeaseForward for LeaseForwardPeer {
    async fn lease_keep_alive(
        &self,
        request: Request<LeaseKeepAliveRequest>,
    ) -> Result<Response<LeaseKeepAliveResponse>, Status> {
        let id = request.into_inner().id;
        let answer = self.0.leases().keep_alive_here(id);
        answer.map(Response::new).map_err(peer_status)
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let answer = self.0.leases().time_to_live_here(&request.into_inner());
        answer.map(Response::new).map_err(peer_status)
    }
}
