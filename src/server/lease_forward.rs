//! Lease calls only the leader can answer (keepalive, time to live: the primary lessor
//! keeps the expiry clock), served on any member: a member that is not the leader
//! forwards them to the leader's peer URL, as etcd does, retrying every 50 ms until the
//! request timeout while there is no leader or the leader is not reachable yet.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::Channel;
use tonic::{Code, Response, Status};

use super::apply::Applier;
use super::member::{MemberHandle, ProposeError};
use super::store::{lock, LeaseClock, SharedLessor};
use super::transport::Transport;
use crate::lease;
use crate::proto::etcdserverpb::{
    LeaseCheckpointRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
};
use crate::proto::internalpb::internal_raft_request::Request as Internal;
use crate::proto::peerpb::lease_forward_client::LeaseForwardClient;
use crate::runtime::Clock;

/// Pause between attempts while the leader is unknown or unreachable (etcd: 50 ms).
const FORWARD_RETRY: Duration = Duration::from_millis(50);

/// Why a forwarded lease call has no answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error(transparent)]
    Lease(#[from] lease::Error),
    #[error(transparent)]
    Member(#[from] ProposeError),
}

/// Answers lease calls here on the leader, or forwards them to it.
#[derive(Clone, Debug)]
pub struct LeaseForwarder {
    member: MemberHandle<Applier>,
    lessor: SharedLessor,
    clock: LeaseClock,
    transport: Transport,
    timeout: Duration,
    /// Connections to leaders, by peer URL.
    channels: Arc<Mutex<BTreeMap<String, Channel>>>,
}

impl LeaseForwarder {
    pub fn new(
        member: MemberHandle<Applier>,
        lessor: SharedLessor,
        clock: LeaseClock,
        transport: Transport,
        timeout: Duration,
    ) -> Self {
        LeaseForwarder {
            member,
            lessor,
            clock,
            transport,
            timeout,
            channels: Arc::default(),
        }
    }

    /// Renews lease `id` on the leader; `NotFound` for an unknown or expired lease.
    pub async fn keep_alive(&self, id: i64) -> Result<LeaseKeepAliveResponse, ForwardError> {
        let request = LeaseKeepAliveRequest { id };
        self.on_leader(
            || self.keep_alive_here(id),
            |mut c| async move { c.lease_keep_alive(request).await },
        )
        .await
    }

    /// The leader's view of lease `id` (TTL -1 if unknown).
    pub async fn time_to_live(
        &self,
        request: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, ForwardError> {
        self.on_leader(
            || self.time_to_live_here(&request),
            |mut c| async move { c.lease_time_to_live(request).await },
        )
        .await
    }

    /// Renews here, if this member is the primary lessor. A renewal that clears a
    /// checkpointed TTL proposes the cleared checkpoint, so a later leader does not count
    /// from the stale remainder.
    pub fn keep_alive_here(&self, id: i64) -> Result<LeaseKeepAliveResponse, lease::Error> {
        let (resp, checkpoint) = lock(&self.lessor).keep_alive(id, self.clock.now())?;
        if let Some(cp) = checkpoint {
            let request = Internal::LeaseCheckpoint(LeaseCheckpointRequest {
                checkpoints: vec![cp],
            });
            let member = self.member.clone();
            tokio::spawn(async move {
                let _ = member.propose(request.into()).await;
            });
        }
        Ok(resp)
    }

    pub fn time_to_live_here(
        &self,
        r: &LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, lease::Error> {
        lock(&self.lessor).time_to_live(r.id, r.keys, self.clock.now())
    }

    /// Runs `here` on the leader, or `remote` against the leader's peer service, until one
    /// answers or the request timeout passes.
    async fn on_leader<T, Fut>(
        &self,
        here: impl Fn() -> Result<T, lease::Error>,
        remote: impl Fn(LeaseForwardClient<Channel>) -> Fut,
    ) -> Result<T, ForwardError>
    where
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let deadline = Clock.now() + self.timeout;
        loop {
            let leader = self.member.status().leader;
            if self.member.status().is_leader {
                match here() {
                    // Leader, but not the primary lessor yet: it will be shortly.
                    Err(lease::Error::NotPrimary) => {}
                    answer => return Ok(answer?),
                }
            } else if let Some(url) = self.transport.peer_url(leader) {
                let call = async {
                    let channel = self.channel(&url).await?;
                    remote(LeaseForwardClient::new(channel)).await
                };
                let left = deadline.saturating_duration_since(Clock.now());
                match tokio::time::timeout(left, call).await {
                    Ok(Ok(resp)) => return Ok(resp.into_inner()),
                    Ok(Err(s)) if s.code() == Code::NotFound => {
                        return Err(lease::Error::NotFound.into())
                    }
                    Ok(Err(s)) => {
                        tracing::debug!(leader = format_args!("{leader:x}"), %s, "lease forward");
                        lock(&self.channels).remove(&url);
                    }
                    Err(_) => {}
                }
            }
            if Clock.now() + FORWARD_RETRY >= deadline {
                return Err(match leader {
                    0 => ProposeError::NoLeader,
                    _ => ProposeError::TimedOut,
                }
                .into());
            }
            Clock.sleep(FORWARD_RETRY).await;
        }
    }

    async fn channel(&self, url: &str) -> Result<Channel, Status> {
        if let Some(c) = lock(&self.channels).get(url) {
            return Ok(c.clone());
        }
        let channel = self
            .transport
            .dialer()
            .connect(url)
            .await
            .map_err(Status::unavailable)?;
        lock(&self.channels).insert(url.to_string(), channel.clone());
        Ok(channel)
    }
}
