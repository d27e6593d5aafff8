//! What the election and lock services are built from, as etcd builds them (its
//! `clientv3/concurrency`, run inside the server): each contender owns the key
//! `<prefix>/<lease in hex>`, attached to its lease; the contender whose key has the lowest
//! create revision holds the lock or leads. A waiting contender watches the key created
//! just before its own until it is deleted (released, resigned, or expired with its lease),
//! then looks again: no polling, and no thundering herd.

use tokio::sync::mpsc;

use super::error::{Error, Result};
use super::v3::Server;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::response_op::Response as OpResponse;
use crate::proto::etcdserverpb::watch_create_request::FilterType;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest, RequestOp,
    ResponseHeader, TxnRequest, TxnResponse, WatchCreateRequest, WatchRequest,
};
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::KeyValue;

/// The TTL of the lease granted for a contender that brought none (etcd's session TTL).
const SESSION_TTL: i64 = 60;

/// The key range after every key that starts with `prefix` (etcd's `GetPrefixRangeEnd`).
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: to the end of the keyspace.
    vec![0]
}

/// The contender key of `lease` under `name` (etcd: `name/` then the lease ID in hex).
pub(super) fn contender_key(name: &[u8], lease: i64) -> Vec<u8> {
    let mut key = name.to_vec();
    key.push(b'/');
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

/// The prefix every contender key of `name` starts with.
pub(super) fn contenders(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

/// A range over the contenders under `prefix`: the earliest created (etcd's
/// `WithFirstCreate`), or with `max_create` the latest created at or before it
/// (`WithLastCreate` + `WithMaxCreateRev`).
pub(super) fn first_or_last_created(prefix: &[u8], max_create: Option<i64>) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_target: SortTarget::Create as i32,
        sort_order: match max_create {
            None => SortOrder::Ascend as i32,
            Some(_) => SortOrder::Descend as i32,
        },
        max_create_revision: max_create.unwrap_or(0),
        ..RangeRequest::default()
    }
}

/// A compare on the create revision of `key`.
pub(super) fn created_at(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::CreateRevision(revision)),
        ..Compare::default()
    }
}

pub(super) fn op(request: Op) -> RequestOp {
    RequestOp {
        request: Some(request),
    }
}

/// The key-values of the `i`-th response of a txn that ran ranges there.
pub(super) fn range_kvs(resp: &TxnResponse, i: usize) -> &[KeyValue] {
    match resp.responses.get(i).and_then(|r| r.response.as_ref()) {
        Some(OpResponse::ResponseRange(r)) => &r.kvs,
        _ => &[],
    }
}

/// A contender's place: its key, the revision that created it, and the txn's header.
pub(super) struct Contender {
    pub key: Vec<u8>,
    pub rev: i64,
    pub header: Option<ResponseHeader>,
    /// Whether the key was created now (false: it existed, under the same lease).
    pub created: bool,
    /// The value the key holds now.
    pub value: Vec<u8>,
}

impl Server {
    /// The lease a contender runs under: its own, or a new one of [`SESSION_TTL`] seconds
    /// (the lease a client session would have granted).
    pub(super) async fn session_lease(&self, lease: i64) -> Result<i64> {
        if lease != 0 {
            return Ok(lease);
        }
        let granted = self
            .lease_grant(LeaseGrantRequest {
                ttl: SESSION_TTL,
                id: 0,
            })
            .await?;
        Ok(granted.id)
    }

    /// Creates the contender key of `lease` under `name` holding `value`, unless it
    /// exists already (a contender retrying under the same lease keeps its place).
    pub(super) async fn contend(&self, name: &[u8], lease: i64, value: &[u8]) -> Result<Contender> {
        let key = contender_key(name, lease);
        let put = PutRequest {
            key: key.clone(),
            value: value.to_vec(),
            lease,
            ..PutRequest::default()
        };
        let get = RangeRequest {
            key: key.clone(),
            ..RangeRequest::default()
        };
        let resp = self
            .txn(
                None,
                TxnRequest {
                    compare: vec![created_at(&key, 0)],
                    success: vec![op(Op::RequestPut(put))],
                    failure: vec![op(Op::RequestRange(get))],
                },
            )
            .await?;
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        let (rev, current) = match range_kvs(&resp, 0).first() {
            Some(kv) if !resp.succeeded => (kv.create_revision, kv.value.clone()),
            _ => (revision, value.to_vec()),
        };
        Ok(Contender {
            key,
            rev,
            header: resp.header,
            created: resp.succeeded,
            value: current,
        })
    }

    /// Waits until no key under `prefix` created at or before `max_create` is left
    /// (etcd's `waitDeletes`): each time, the latest such key, until its deletion.
    pub(super) async fn wait_deletes(&self, prefix: &[u8], max_create: i64) -> Result<()> {
        loop {
            let resp = self
                .range(first_or_last_created(prefix, Some(max_create)))
                .await?;
            let Some(kv) = resp.kvs.first() else {
                return Ok(());
            };
            let revision = resp.header.map_or(0, |h| h.revision);
            self.wait_delete(&kv.key, revision + 1).await?;
        }
    }

    /// Waits for the deletion of `key` at `from` or later. A watch the store cancels (its
    /// start was compacted away) ends the wait too: the caller looks again.
    async fn wait_delete(&self, key: &[u8], from: i64) -> Result<()> {
        let create = WatchCreateRequest {
            key: key.to_vec(),
            start_revision: from,
            filters: vec![FilterType::Noput as i32],
            ..WatchCreateRequest::default()
        };
        let mut events = self.watch_once(create)?;
        while let Some(resp) = events.recv().await {
            let deleted = resp
                .events
                .iter()
                .any(|e| e.r#type == EventType::Delete as i32);
            if deleted || resp.canceled {
                return Ok(());
            }
        }
        Err(super::member::ProposeError::Stopped.into())
    }

    /// A watcher of its own for one server-side wait; it goes when the receiver does.
    pub(super) fn watch_once(
        &self,
        create: WatchCreateRequest,
    ) -> Result<mpsc::Receiver<crate::proto::etcdserverpb::WatchResponse>> {
        let (stream, mut events) = self.open_watch_stream();
        let (control, mut replies) = mpsc::channel(1);
        let request = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(create)),
        };
        if !stream.serve(request, &control) {
            return Err(Error::WatchRefused("no room for the created reply".into()));
        }
        let created = replies.try_recv().ok();
        if let Some(reply) = created.filter(|r| r.canceled) {
            return Err(Error::WatchRefused(reply.cancel_reason));
        }
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            // The stream lives as long as someone listens.
            let _stream = stream;
            while let Some(resp) = events.recv().await {
                if tx.send(resp).await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }

    /// Deletes `key` on a task of its own: a contender whose caller went away gives up
    /// its place, as etcd's does when its context is cancelled.
    pub(super) fn abandon(&self, key: Vec<u8>) {
        let server = self.clone();
        tokio::spawn(async move {
            let delete = DeleteRangeRequest {
                key,
                ..DeleteRangeRequest::default()
            };
            if let Err(e) = server.delete_range(None, delete).await {
                tracing::warn!(error = %e, "removing an abandoned contender key");
            }
        });
    }
}

/// Deletes a contender key when dropped before [`Abandon::keep`]: the caller of a waiting
/// Lock or Campaign went away.
pub(super) struct Abandon<'a> {
    server: &'a Server,
    key: Option<Vec<u8>>,
}

impl<'a> Abandon<'a> {
    pub(super) fn new(server: &'a Server, key: &[u8]) -> Self {
        Abandon {
            server,
            key: Some(key.to_vec()),
        }
    }

    pub(super) fn keep(mut self) {
        self.key = None;
    }
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.server.abandon(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_as_etcd_computes_them() {
        assert_eq!(prefix_end(b"lock/"), b"lock0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn contender_keys_carry_the_lease_in_hex() {
        assert_eq!(
            contender_key(b"my-lock", 0x694d7c0a1b),
            b"my-lock/694d7c0a1b"
        );
        assert_eq!(contenders(b"e"), b"e/");
    }
}
