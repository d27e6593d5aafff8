//! The Cluster service: member list, add, remove, update and promote, as etcd serves them.
//! Changes are Raft configuration changes carrying the member; before proposing, the
//! checks of etcd's `--strict-reconfig-check` keep a change from costing the cluster its
//! quorum. Promotion needs the leader's view of the learner's progress, so followers
//! forward it to the leader over the peer listener (the `Membership` peer service, which
//! also tells a joining member the cluster it joins).

use std::time::Duration;

use prost::Message as _;
use tonic::{Request, Response, Status};

use super::context::Context;
use super::errors::status;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use crate::proto::peerpb::membership_client::MembershipClient;
use crate::proto::peerpb::membership_server::Membership;
use crate::proto::raftpb::{ConfChange, ConfChangeType};
use crate::runtime::Clock;
use crate::server::kv_apply::lock;
use crate::server::member::ProposeError;
use crate::server::membership::{learner_ready, new_member_id, MembershipError};
use crate::server::transport::Transport;
use crate::server::url::Url;

/// How long a voter must have been connected to count as healthy (etcd's HealthInterval).
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// How long a forwarded promotion may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

impl From<MembershipError> for Status {
    fn from(e: MembershipError) -> Status {
        status(e.to_string())
    }
}

#[derive(Clone)]
pub struct ClusterService {
    pub ctx: Context,
    pub transport: Transport,
    /// The initial cluster token: new member IDs derive from it, as etcd's do.
    pub token: String,
}

impl ClusterService {
    /// etcd's Cluster service answers with cluster, member and term, without a revision.
    fn header(&self) -> Option<crate::proto::etcdserverpb::ResponseHeader> {
        self.ctx.header(Some(0))
    }

    fn members(&self) -> Vec<Member> {
        lock(&self.ctx.cluster).members()
    }

    /// Whether this member's stream to `id` has been up for the health interval.
    fn connected(&self, id: u64) -> bool {
        self.transport
            .active_since(id)
            .is_some_and(|t| Clock.now().duration_since(t) >= HEALTH_INTERVAL)
    }

    /// Proposes `cc` for member `id` with `member` as its context; the apply's refusal
    /// becomes the answer.
    async fn configure(
        &self,
        ty: ConfChangeType,
        id: u64,
        member: Option<Member>,
    ) -> Result<(), Status> {
        let mut cc = ConfChange {
            node_id: id,
            context: member.map(|m| m.encode_to_vec()).unwrap_or_default(),
            ..ConfChange::default()
        };
        cc.set_type(ty);
        self.ctx
            .member
            .propose_conf_change(cc)
            .await?
            .map_err(status)
    }

    /// Promotion as the leader does it: only a learner in sync with the leader, and only
    /// if the started voters stay a quorum.
    async fn promote_here(&self, id: u64) -> Result<Vec<Member>, Status> {
        let progress = self
            .ctx
            .member
            .progress()
            .await?
            .ok_or(ProposeError::NotLeader)?;
        if !learner_ready(&progress, self.ctx.member_id, id) {
            return Err(MembershipError::LearnerNotReady.into());
        }
        let member = {
            let cluster = lock(&self.ctx.cluster);
            if !cluster.ready_to_promote() {
                return Err(MembershipError::NotEnoughStarted.into());
            }
            match cluster.member(id) {
                None => return Err(MembershipError::NotFound.into()),
                Some(m) if !m.is_learner => return Err(MembershipError::NotLearner.into()),
                Some(m) => Member {
                    is_learner: false,
                    ..m.clone()
                },
            }
        };
        self.configure(ConfChangeType::ConfChangeAddNode, id, Some(member))
            .await?;
        Ok(self.members())
    }

    /// Sends a promotion to the leader's peer listener.
    async fn promote_at_leader(&self, id: u64) -> Result<Vec<Member>, Status> {
        let leader = self.ctx.member.status().leader;
        let url = lock(&self.ctx.cluster)
            .member(leader)
            .and_then(|m| m.peer_ur_ls.first().cloned())
            .ok_or(ProposeError::NoLeader)?;
        let forward = async {
            let mut client = MembershipClient::connect(url)
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
            client.member_promote(MemberPromoteRequest { id }).await
        };
        match tokio::time::timeout(FORWARD_TIMEOUT, forward).await {
            Ok(resp) => Ok(resp?.into_inner().members),
            Err(_) => Err(ProposeError::TimedOut.into()),
        }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let req = request.into_inner();
        if req.peer_ur_ls.is_empty() || req.peer_ur_ls.iter().any(|u| Url::parse(u).is_err()) {
            return Err(MembershipError::BadUrls.into());
        }
        let now = (Clock.unix_nanos() / 1_000_000_000) as u64;
        let id = new_member_id(&req.peer_ur_ls, &self.token, now);
        {
            let cluster = lock(&self.ctx.cluster);
            if !req.is_learner && !cluster.ready_to_add_voter() {
                return Err(MembershipError::NotEnoughStarted.into());
            }
            if !cluster.fully_connected(self.ctx.member_id, |m| self.connected(m)) {
                return Err(MembershipError::Unhealthy.into());
            }
        }
        let member = Member {
            id,
            peer_ur_ls: req.peer_ur_ls,
            is_learner: req.is_learner,
            ..Member::default()
        };
        let ty = match req.is_learner {
            true => ConfChangeType::ConfChangeAddLearnerNode,
            false => ConfChangeType::ConfChangeAddNode,
        };
        self.configure(ty, id, Some(member.clone())).await?;
        Ok(Response::new(MemberAddResponse {
            header: self.header(),
            member: Some(member),
            members: self.members(),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let id = request.into_inner().id;
        {
            let cluster = lock(&self.ctx.cluster);
            let learner = cluster.member(id).is_some_and(|m| m.is_learner);
            if !learner && !cluster.ready_to_remove_voter(id) {
                return Err(MembershipError::NotEnoughStarted.into());
            }
            let me = self.ctx.member_id;
            if !learner && !cluster.may_remove_connected(me, id, |m| self.connected(m)) {
                return Err(MembershipError::Unhealthy.into());
            }
        }
        self.configure(ConfChangeType::ConfChangeRemoveNode, id, None)
            .await?;
        Ok(Response::new(MemberRemoveResponse {
            header: self.header(),
            members: self.members(),
        }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let req = request.into_inner();
        if req.peer_ur_ls.is_empty() || req.peer_ur_ls.iter().any(|u| Url::parse(u).is_err()) {
            return Err(MembershipError::BadUrls.into());
        }
        let member = Member {
            id: req.id,
            peer_ur_ls: req.peer_ur_ls,
            ..Member::default()
        };
        self.configure(ConfChangeType::ConfChangeUpdateNode, req.id, Some(member))
            .await?;
        Ok(Response::new(MemberUpdateResponse {
            header: self.header(),
            members: self.members(),
        }))
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.ctx.member.read_index().await?;
        }
        Ok(Response::new(MemberListResponse {
            header: self.header(),
            members: self.members(),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let id = request.into_inner().id;
        let members = match self.promote_here(id).await {
            Err(e) if e.message() == ProposeError::NotLeader.to_string() => {
                self.promote_at_leader(id).await?
            }
            other => other?,
        };
        Ok(Response::new(MemberPromoteResponse {
            header: self.header(),
            members,
        }))
    }
}

/// The peer listener's side: what a joining member and a forwarding follower ask.
pub struct MembershipPeer(pub ClusterService);

#[tonic::async_trait]
impl Membership for MembershipPeer {
    async fn member_list(
        &self,
        _: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        Ok(Response::new(MemberListResponse {
            header: self.0.header(),
            members: self.0.members(),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let members = self.0.promote_here(request.into_inner().id).await?;
        Ok(Response::new(MemberPromoteResponse {
            header: self.0.header(),
            members,
        }))
    }
}
