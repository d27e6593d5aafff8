//! The Lease service. Grants and revokes go through the log; keepalives and time-to-live
//! are the leader's (the primary lessor's) to answer, from its own clock: other members
//! forward them to it.

use std::pin::Pin;

use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::context::{propose_rpc, Context};
use super::errors::status;
use crate::lease;
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::server::kv_apply::lock;
use crate::server::lease_forward::{ForwardError, LeaseForwarder};

/// Keepalive responses waiting for a slow client.
const KEEPALIVE_QUEUE_LEN: usize = 64;

#[derive(Clone)]
pub struct LeaseService(pub Context, pub LeaseForwarder);

fn lease_error(e: ForwardError) -> Status {
    match e {
        ForwardError::Lease(e) => status(e.to_string()),
        ForwardError::Member(e) => e.into(),
    }
}

/// One keepalive, renewed by the leader; an unknown or expired lease gets TTL 0, as etcd
/// answers.
async fn keep_alive(
    ctx: &Context,
    forwarder: &LeaseForwarder,
    id: i64,
) -> Result<LeaseKeepAliveResponse, Status> {
    let mut resp = match forwarder.keep_alive(id).await {
        Ok(resp) => resp,
        Err(ForwardError::Lease(lease::Error::NotFound)) => LeaseKeepAliveResponse {
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
        let (ctx, forwarder) = (self.0.clone(), self.1.clone());
        tokio::spawn(async move {
            while let Ok(Some(req)) = requests.message().await {
                let resp = keep_alive(&ctx, &forwarder, req.id).await;
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
        let mut resp = self
            .1
            .time_to_live(request.into_inner())
            .await
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
