//! The Cluster calls: member list, add, remove, update and promote, as etcd serves them.
//! Changes are Raft configuration changes carrying the member; before proposing, the
//! checks of etcd's `--strict-reconfig-check` keep a change from costing the cluster its
//! quorum. Promotion needs the leader's view of the learner's progress, so a follower
//! forwards it to the leader's peer listener ([`super::peer`]).

use std::time::Duration;

use prost::Message as _;

use super::error::{Error, Result};
use super::member::ProposeError;
use super::membership::{learner_ready, new_member_id, MembershipError};
use super::store::lock;
use super::url::Url;
use super::v3::Server;
use crate::proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListResponse, MemberPromoteRequest,
    MemberPromoteResponse, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
    ResponseHeader,
};
use crate::proto::peerpb::membership_client::MembershipClient;
use crate::proto::raftpb::{ConfChange, ConfChangeType};
use crate::runtime::Clock;

/// How long a voter must have been connected to count as healthy (etcd's HealthInterval).
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// How long a forwarded promotion may take.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// etcd's peer URL checks: at least one, each a URL.
fn check_urls(urls: &[String]) -> Result<()> {
    if urls.is_empty() || urls.iter().any(|u| Url::parse(u).is_err()) {
        return Err(MembershipError::BadUrls.into());
    }
    Ok(())
}

impl Server {
    /// etcd's Cluster service answers with cluster, member and term, without a revision.
    fn cluster_header(&self) -> Option<ResponseHeader> {
        self.header(Some(0))
    }

    fn members(&self) -> Vec<Member> {
        lock(&self.cluster).members()
    }

    /// Whether this member's stream to `id` has been up for the health interval.
    fn connected(&self, id: u64) -> bool {
        self.transport
            .active_since(id)
            .is_some_and(|t| Clock.now().duration_since(t) >= HEALTH_INTERVAL)
    }

    /// Proposes `cc` for member `id` with `member` as its context; the apply's refusal
    /// becomes the answer.
    async fn configure(&self, ty: ConfChangeType, id: u64, member: Option<Member>) -> Result<()> {
        let mut cc = ConfChange {
            node_id: id,
            context: member.map(|m| m.encode_to_vec()).unwrap_or_default(),
            ..ConfChange::default()
        };
        cc.set_type(ty);
        Ok(self.member.propose_conf_change(cc).await??)
    }

    pub async fn member_add(&self, req: MemberAddRequest) -> Result<MemberAddResponse> {
        check_urls(&req.peer_ur_ls)?;
        let now = (Clock.unix_nanos() / 1_000_000_000) as u64;
        let id = new_member_id(&req.peer_ur_ls, &self.token, now);
        {
            let cluster = lock(&self.cluster);
            if !self.strict_reconfig_check {
                // etcd checks nothing more without --strict-reconfig-check.
            } else if !req.is_learner && !cluster.ready_to_add_voter() {
                return Err(MembershipError::NotEnoughStarted.into());
            } else if !cluster.fully_connected(self.member_id, |m| self.connected(m)) {
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
        Ok(MemberAddResponse {
            header: self.cluster_header(),
            member: Some(member),
            members: self.members(),
        })
    }

    pub async fn member_remove(&self, id: u64) -> Result<MemberRemoveResponse> {
        {
            let cluster = lock(&self.cluster);
            let learner = cluster.member(id).is_some_and(|m| m.is_learner);
            let learner = learner || !self.strict_reconfig_check;
            if !learner && !cluster.ready_to_remove_voter(id) {
                return Err(MembershipError::NotEnoughStarted.into());
            }
            let me = self.member_id;
            if !learner && !cluster.may_remove_connected(me, id, |m| self.connected(m)) {
                return Err(MembershipError::Unhealthy.into());
            }
        }
        self.configure(ConfChangeType::ConfChangeRemoveNode, id, None)
            .await?;
        Ok(MemberRemoveResponse {
            header: self.cluster_header(),
            members: self.members(),
        })
    }

    pub async fn member_update(&self, req: MemberUpdateRequest) -> Result<MemberUpdateResponse> {
        check_urls(&req.peer_ur_ls)?;
        let member = Member {
            id: req.id,
            peer_ur_ls: req.peer_ur_ls,
            ..Member::default()
        };
        self.configure(ConfChangeType::ConfChangeUpdateNode, req.id, Some(member))
            .await?;
        Ok(MemberUpdateResponse {
            header: self.cluster_header(),
            members: self.members(),
        })
    }

    /// The members as applied here; after a ReadIndex round if `linearizable`.
    pub async fn member_list(&self, linearizable: bool) -> Result<MemberListResponse> {
        if linearizable {
            self.read_index().await?;
        }
        Ok(MemberListResponse {
            header: self.cluster_header(),
            members: self.members(),
        })
    }

    /// Promotes a learner: here if this member leads, at the leader otherwise.
    pub async fn member_promote(&self, id: u64) -> Result<MemberPromoteResponse> {
        let members = match self.promote_here(id).await {
            Err(Error::Propose(ProposeError::NotLeader)) => self.promote_at_leader(id).await?,
            other => other?,
        };
        Ok(MemberPromoteResponse {
            header: self.cluster_header(),
            members,
        })
    }

    /// Promotion as the leader does it: only a learner in sync with the leader, and only
    /// if the started voters stay a quorum.
    pub async fn promote_here(&self, id: u64) -> Result<Vec<Member>> {
        let progress = self
            .member
            .progress()
            .await?
            .ok_or(ProposeError::NotLeader)?;
        if !learner_ready(&progress, self.member_id, id) {
            return Err(MembershipError::LearnerNotReady.into());
        }
        let member = {
            let cluster = lock(&self.cluster);
            if self.strict_reconfig_check && !cluster.ready_to_promote() {
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
    async fn promote_at_leader(&self, id: u64) -> Result<Vec<Member>> {
        let leader = self.member.status().leader;
        let url = lock(&self.cluster)
            .member(leader)
            .and_then(|m| m.peer_ur_ls.first().cloned())
            .ok_or(ProposeError::NoLeader)?;
        let forward = async {
            let channel = self.transport.dialer().connect(&url).await;
            let channel = channel.map_err(|e| Error::Forwarded(tonic::Status::unavailable(e)))?;
            let mut client = MembershipClient::new(channel);
            let resp = client.member_promote(MemberPromoteRequest { id }).await;
            resp.map_err(Error::Forwarded)
        };
        match tokio::time::timeout(FORWARD_TIMEOUT, forward).await {
            Ok(resp) => Ok(resp?.into_inner().members),
            Err(_) => Err(ProposeError::TimedOut.into()),
        }
    }

    /// The membership as this member knows it, for the peer service.
    pub fn peer_member_list(&self) -> MemberListResponse {
        MemberListResponse {
            header: self.cluster_header(),
            members: self.members(),
        }
    }
}
