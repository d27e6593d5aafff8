//! The Lease service. Grants and revokes go through the log; keepalives and time-to-live
//! are the leader's to answer, which the server forwards to it.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::server::auth::Access;
use crate::server::Server;

/// Keepalive responses waiting for a slow client.
const KEEPALIVE_QUEUE_LEN: usize = 64;

#[derive(Clone)]
pub struct LeaseService(pub Server);

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

impl LeaseService {
    /// Answers each keep-alive in `requests` in turn; the answers end with the requests
    /// or at the first error.
    pub fn keep_alive(
        &self,
        requests: impl Stream<Item = LeaseKeepAliveRequest> + Send + 'static,
    ) -> KeepAliveStream {
        let (tx, rx) = mpsc::channel(KEEPALIVE_QUEUE_LEN);
        let server = self.0.clone();
        tokio::spawn(async move {
            let mut requests = std::pin::pin!(requests);
            while let Some(req) = requests.next().await {
                let resp = server.lease_keep_alive(req.id).await.map_err(Status::from);
                let stop = resp.is_err();
                if tx.send(resp).await.is_err() || stop {
                    break;
                }
            }
        });
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        Ok(Response::new(
            self.0.lease_grant(request.into_inner()).await?,
        ))
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let caller = super::auth::caller(&self.0, &request)?;
        let req = request.into_inner();
        self.0
            .authorize(caller.as_ref(), Access::LeaseRevoke(req.id))?;
        Ok(Response::new(
            self.0.lease_revoke(caller.as_ref(), req).await?,
        ))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let requests = super::messages(request.into_inner());
        Ok(Response::new(self.keep_alive(requests)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let caller = super::auth::caller(&self.0, &request)?;
        let req = request.into_inner();
        self.0
            .authorize(caller.as_ref(), Access::LeaseTimeToLive(req.id))?;
        Ok(Response::new(self.0.lease_time_to_live(req).await?))
    }

    async fn lease_leases(
        &self,
        _: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        Ok(Response::new(self.0.lease_leases()))
    }
}
