//! The Election service as etcd's server runs it (its `v3election` over a concurrency
//! election): a campaign creates the contender key `<name>/<lease>` holding the value and
//! waits until every key created before it is gone; the leader is the contender created
//! first. Proclaim and Resign act only while the leader key still has the create revision
//! the campaign returned, so a deposed leader cannot overwrite or delete its successor.

use tokio::sync::mpsc;

use super::concurrency::{contenders, created_at, first_or_last_created, op, prefix_end, Abandon};
use super::error::{Error, Result};
use super::v3::Server;
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::watch_create_request::FilterType;
use crate::proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, ResponseHeader, TxnRequest, WatchCreateRequest,
};
use crate::proto::mvccpb::event::EventType;
use crate::proto::v3electionpb::{
    CampaignResponse, LeaderKey, LeaderResponse, ProclaimResponse, ResignResponse,
};

/// Leader changes waiting for a slow observer.
const OBSERVE_QUEUE_LEN: usize = 16;

impl Server {
    /// Campaigns for leadership of `name` with `value`; answers once this contender leads.
    pub async fn campaign(
        &self,
        name: &[u8],
        lease: i64,
        value: &[u8],
    ) -> Result<CampaignResponse> {
        let lease = self.session_lease(lease).await?;
        let mine = self.contend(name, lease, value).await?;
        let guard = Abandon::new(self, &mine.key);
        let leader = LeaderKey {
            name: name.to_vec(),
            key: mine.key.clone(),
            rev: mine.rev,
            lease,
        };
        // A contender that was already campaigning under this lease takes the new value.
        if !mine.created && mine.value != value {
            self.proclaim(&leader, value).await?;
        }
        self.wait_deletes(&contenders(name), mine.rev - 1).await?;
        guard.keep();
        Ok(CampaignResponse {
            header: mine.header,
            leader: Some(leader),
        })
    }

    /// Sets the leader's value, if `leader` still leads.
    pub async fn proclaim(&self, leader: &LeaderKey, value: &[u8]) -> Result<ProclaimResponse> {
        let put = PutRequest {
            key: leader.key.clone(),
            value: value.to_vec(),
            lease: leader.lease,
            ..PutRequest::default()
        };
        let resp = self
            .txn(
                None,
                TxnRequest {
                    compare: vec![created_at(&leader.key, leader.rev)],
                    success: vec![op(Op::RequestPut(put))],
                    failure: vec![],
                },
            )
            .await?;
        if !resp.succeeded {
            return Err(Error::ElectionNotLeader);
        }
        Ok(ProclaimResponse {
            header: resp.header,
        })
    }

    /// Gives up leadership (or a campaign): deletes the key if it is still this one.
    pub async fn resign(&self, leader: &LeaderKey) -> Result<ResignResponse> {
        let delete = DeleteRangeRequest {
            key: leader.key.clone(),
            ..DeleteRangeRequest::default()
        };
        let resp = self
            .txn(
                None,
                TxnRequest {
                    compare: vec![created_at(&leader.key, leader.rev)],
                    success: vec![op(Op::RequestDeleteRange(delete))],
                    failure: vec![],
                },
            )
            .await?;
        Ok(ResignResponse {
            header: resp.header,
        })
    }

    /// The current leader's key-value.
    pub async fn election_leader(&self, name: &[u8]) -> Result<LeaderResponse> {
        let resp = self
            .range(first_or_last_created(&contenders(name), None))
            .await?;
        let kv = resp.kvs.into_iter().next().ok_or(Error::ElectionNoLeader)?;
        Ok(LeaderResponse {
            header: resp.header,
            kv: Some(kv),
        })
    }

    /// Every leader of `name` from now on, and every value it proclaims, in order (etcd's
    /// Observe); ends when the receiver goes away or the member stops.
    pub fn observe(&self, name: &[u8]) -> mpsc::Receiver<Result<LeaderResponse>> {
        let (tx, rx) = mpsc::channel(OBSERVE_QUEUE_LEN);
        let (server, prefix) = (self.clone(), contenders(name));
        tokio::spawn(async move {
            if let Err(e) = server.observe_into(&prefix, &tx).await {
                let _ = tx.send(Err(e)).await;
            }
        });
        rx
    }

    async fn observe_into(
        &self,
        prefix: &[u8],
        out: &mpsc::Sender<Result<LeaderResponse>>,
    ) -> Result<()> {
        loop {
            let resp = self.range(first_or_last_created(prefix, None)).await?;
            let revision = resp.header.as_ref().map_or(0, |h| h.revision);
            let (header, kv) = match resp.kvs.into_iter().next() {
                Some(kv) => (resp.header, kv),
                None => {
                    // No leader yet: the first key put under the prefix leads.
                    let mut puts = self.watch_once(WatchCreateRequest {
                        key: prefix.to_vec(),
                        range_end: prefix_end(prefix),
                        start_revision: revision,
                        filters: vec![FilterType::Nodelete as i32],
                        ..WatchCreateRequest::default()
                    })?;
                    let mut first = None;
                    while first.is_none() {
                        let Some(w) = puts.recv().await else {
                            return Ok(());
                        };
                        first = w.events.into_iter().find_map(|e| e.kv);
                    }
                    let kv = first.expect("the loop ends with a key");
                    let header = self.header(Some(kv.mod_revision));
                    (header, kv)
                }
            };
            let key = kv.key.clone();
            let from = header.as_ref().map_or(0, |h| h.revision) + 1;
            let leader = LeaderResponse {
                header,
                kv: Some(kv),
            };
            if out.send(Ok(leader)).await.is_err() {
                return Ok(());
            }
            // This leader's proclamations, until its key goes.
            let mut changes = self.watch_once(WatchCreateRequest {
                key,
                start_revision: from,
                ..WatchCreateRequest::default()
            })?;
            'leader: while let Some(w) = changes.recv().await {
                if w.canceled {
                    break;
                }
                for e in w.events {
                    if e.r#type == EventType::Delete as i32 {
                        break 'leader;
                    }
                    let header: Option<ResponseHeader> = w.header;
                    let update = LeaderResponse { header, kv: e.kv };
                    if out.send(Ok(update)).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}
