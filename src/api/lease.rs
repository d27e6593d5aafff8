//! The Lease service. Grants and revokes go through the log; keepalives and time-to-live
//! are the leader's (the primary lessor's) to answer, from its own clock.

use std::pin::Pin;

use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::context::{propose_rpc, Context};
use super::errors::status;
use crate::lease;
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::{
    LeaseCheckpointRequest, LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest,
    LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::proto::internalpb::internal_raft_request::Request as Internal;
use crate::server::kv_apply::lock;

/// Keepalive responses waiting for a slow client.
const KEEPALIVE_QUEUE_LEN: usize = 64;

#[derive(Clone)]
pub struct LeaseService(pub Context);

/// etcd answers lease calls that only the leader can serve with this on followers.
fn lease_error(e: lease::Error) -> Status {
    match e {
        lease::Error::NotPrimary => Status::unavailable("etcdserver: not leader"),
        other => status(other.to_string()),
    }
}

/// One keepalive: renews on the leader; an unknown or expired lease gets TTL 0, as etcd
/// answers.
fn keep_alive(ctx: &Context, id: i64) -> Result<LeaseKeepAliveResponse, Status> {
    let renewed = lock(&ctx.lessor).keep_alive(id, ctx.clock.now());
    let mut resp = match renewed {
        Ok((resp, checkpoint)) => {
            if let Some(cp) = checkpoint {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let request = LeaseCheckpointRequest {
                        checkpoints: vec![cp],
                    };
                    let _ = ctx.propose(Internal::LeaseCheckpoint(request)).await;
                });
            }
            resp
        }
        Err(lease::Error::NotFound) => LeaseKeepAliveResponse {
            header: None,
            id,
            ttl: 0,
        },
        Err(e) => return Err(lease_error(e)),
    };
    resp.header = ctx.header(None);
    Ok(resp)
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        propose_rpc!(self.0, LeaseGrant, request)
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        propose_rpc!(self.0, LeaseRevoke, request)
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut requests = request.into_inner();
        let (tx, rx) = mpsc::channel(KEEPALIVE_QUEUE_LEN);
        let ctx = self.0.clone();
        tokio::spawn(async move {
            while let Ok(Some(req)) = requests.message().await {
                let resp = keep_alive(&ctx, req.id);
                let stop = resp.is_err();
                if tx.send(resp).await.is_err() || stop {
                    break;
                }
            }
        });
        let out = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let req = request.into_inner();
        let mut resp = lock(&self.0.lessor)
            .time_to_live(req.id, req.keys, self.0.clock.now())
            .map_err(lease_error)?;
        resp.header = self.0.header(None);
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        _: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let mut resp = lock(&self.0.lessor).leases();
        resp.header = self.0.header(None);
        Ok(Response::new(resp))
    }
}
