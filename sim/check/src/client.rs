//! The register client both fault runners drive, the simulator's workload (`detcd-sim`)
//! and the real-process runner (`detcd-check jepsen`): one call on one key through detcd's
//! gRPC KV service, and its invocation and completion as events of `shared/HISTORY.md`.
//! Sharing it means a history says the same thing whichever runner recorded it.
//!
//! A cas is a Txn comparing the key's value (an absent key: create revision 0), as
//! Jepsen's etcd register does. A completion carries everything the answer reported (the
//! header revision, and for a read the key's mod_revision, create_revision and version),
//! which the kv model checks and uses to order writes.
//!
//! After the faults are healed both runners ask whether the members [`converged`]: the
//! same HashKV at the same revision.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use detcd::proto::etcdserverpb::kv_client::KvClient;
use detcd::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use detcd::proto::etcdserverpb::request_op::Request;
use detcd::proto::etcdserverpb::response_op::Response;
use detcd::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, HashKvRequest, PutRequest, RangeRequest, RequestOp, StatusRequest,
    TxnRequest,
};
use detcd::proto::mvccpb::KeyValue;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::history::Event;

/// Errors that mean the request was never proposed: the connection could not be made, or
/// the member refused before proposing (as etcd's `ErrNoLeader` and `ErrTooManyRequests`).
/// A write that ends in one of them is `fail`; in any other error, `info`.
pub const DEFINITE: &[&str] = &[
    "tcp connect error",
    "etcdserver: no leader",
    "etcdserver: too many requests",
];

/// One call on one key.
#[derive(Clone, Debug)]
pub enum Call {
    Get,
    Put(String),
    Delete,
    /// Puts `value` if the key holds `expect` (`None`: the key is absent).
    Cas {
        expect: Option<String>,
        value: String,
    },
}

impl Call {
    pub fn f(&self) -> &'static str {
        match self {
            Call::Get => "get",
            Call::Put(_) => "put",
            Call::Delete => "delete",
            Call::Cas { .. } => "cas",
        }
    }

    fn writes(&self) -> bool {
        !matches!(self, Call::Get)
    }

    /// The invocation of this call on `key` by `process`.
    pub fn invoke(&self, process: u64, key: &str) -> Event {
        let (value, expect) = match self {
            Call::Get | Call::Delete => (None, None),
            Call::Put(v) => (Some(v.clone()), None),
            Call::Cas { expect, value } => (Some(value.clone()), Some(expect.clone())),
        };
        Event {
            process,
            kind: "invoke".into(),
            f: self.f().into(),
            key: Some(key.into()),
            value,
            expect,
            ..Event::default()
        }
    }
}

/// How a call is sent.
#[derive(Clone, Copy, Debug)]
pub struct Send {
    /// How long to wait for the answer; past it the outcome is unknown ("timeout").
    pub timeout: Duration,
    /// Gets are serializable (answered by the member from what it applied).
    pub serializable: bool,
    /// A cas also reads the key in both branches of its Txn.
    pub read_back: bool,
}

/// What the server answered to a call.
#[derive(Clone, Debug)]
pub struct Answer {
    /// False when a cas's compare failed.
    pub succeeded: bool,
    /// The response header's revision.
    pub revision: Option<u64>,
    /// The key as read: by a get, or by a cas sent with `read_back`.
    pub read: Option<KeyValue>,
}

impl Answer {
    /// The value read, as the history writes values.
    pub fn read_value(&self) -> Option<String> {
        self.read.as_ref().map(|kv| text(&kv.value))
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The status's message, or its code where the message is empty.
pub fn message(status: tonic::Status) -> String {
    if status.message().is_empty() {
        status.code().to_string()
    } else {
        status.message().to_string()
    }
}

/// Sends `call` on `key`; Err is the server's message, why the call failed, or "timeout".
pub async fn execute(
    kv: &mut KvClient<Channel>,
    key: &str,
    call: &Call,
    how: Send,
) -> Result<Answer, String> {
    match tokio::time::timeout(how.timeout, send(kv, key, call, how)).await {
        Ok(answer) => answer,
        Err(_) => Err("timeout".into()),
    }
}

async fn send(
    kv: &mut KvClient<Channel>,
    key: &str,
    call: &Call,
    how: Send,
) -> Result<Answer, String> {
    let key = key.as_bytes().to_vec();
    let put = |value: &str| PutRequest {
        key: key.clone(),
        value: value.as_bytes().to_vec(),
        ..PutRequest::default()
    };
    let range = || RangeRequest {
        key: key.clone(),
        serializable: how.serializable,
        ..RangeRequest::default()
    };
    let revision =
        |h: Option<detcd::proto::etcdserverpb::ResponseHeader>| h.map(|h| h.revision as u64);
    let answer = match call {
        Call::Get => {
            let resp = kv.range(range()).await.map_err(message)?.into_inner();
            Answer {
                succeeded: true,
                revision: revision(resp.header),
                read: resp.kvs.into_iter().next(),
            }
        }
        Call::Put(value) => Answer {
            succeeded: true,
            revision: revision(
                kv.put(put(value))
                    .await
                    .map_err(message)?
                    .into_inner()
                    .header,
            ),
            read: None,
        },
        Call::Delete => {
            let req = DeleteRangeRequest {
                key: key.clone(),
                ..DeleteRangeRequest::default()
            };
            let resp = kv.delete_range(req).await.map_err(message)?.into_inner();
            Answer {
                succeeded: true,
                revision: revision(resp.header),
                read: None,
            }
        }
        Call::Cas { expect, value } => {
            let (target, target_union) = match expect {
                Some(v) => (CompareTarget::Value, TargetUnion::Value(v.clone().into())),
                None => (CompareTarget::Create, TargetUnion::CreateRevision(0)),
            };
            let read = || RequestOp {
                request: Some(Request::RequestRange(range())),
            };
            let mut success = vec![RequestOp {
                request: Some(Request::RequestPut(put(value))),
            }];
            let mut failure = Vec::new();
            if how.read_back {
                success.push(read());
                failure.push(read());
            }
            let req = TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Equal as i32,
                    target: target as i32,
                    key: key.clone(),
                    target_union: Some(target_union),
                    range_end: Vec::new(),
                }],
                success,
                failure,
            };
            let resp = kv.txn(req).await.map_err(message)?.into_inner();
            let read = resp.responses.into_iter().find_map(|r| match r.response {
                Some(Response::ResponseRange(range)) => Some(range.kvs.into_iter().next()),
                _ => None,
            });
            Answer {
                succeeded: resp.succeeded,
                revision: revision(resp.header),
                read: read.flatten(),
            }
        }
    };
    Ok(answer)
}

/// The completion of `invoke` (an invocation of `call`) given its result: `ok` with what
/// the answer reported, `fail` when a cas's compare failed or the call certainly had no
/// effect (any failed read; a write refused before it was proposed), `info` otherwise.
pub fn complete(mut invoke: Event, call: &Call, result: &Result<Answer, String>) -> Event {
    match result {
        Ok(a) if !a.succeeded => invoke.kind = "fail".into(),
        Ok(a) => {
            invoke.kind = "ok".into();
            invoke.revision = a.revision;
            if let (Call::Get, Some(kv)) = (call, &a.read) {
                invoke.value = Some(text(&kv.value));
                invoke.mod_revision = Some(kv.mod_revision as u64);
                invoke.create_revision = Some(kv.create_revision as u64);
                invoke.version = Some(kv.version as u64);
            }
        }
        Err(error) => {
            let definite = !call.writes() || DEFINITE.contains(&error.as_str());
            invoke.kind = if definite { "fail" } else { "info" }.into();
            invoke.error = Some(error.clone());
        }
    }
    invoke
}

/// The events of every client, in the order they happened, timed from `start`. Clones
/// share one history.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    events: Arc<Mutex<Vec<Event>>>,
    /// Sees each event once it has its index and time (the simulator hashes it into the
    /// run's trace).
    observer: Option<fn(&Event)>,
}

impl Recorder {
    pub fn new(start: Instant, observer: Option<fn(&Event)>) -> Recorder {
        Recorder {
            start,
            events: Arc::default(),
            observer,
        }
    }

    pub fn record(&self, mut e: Event) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        e.index = events.len() as u64;
        e.time = self.start.elapsed().as_nanos() as u64;
        if let Some(observe) = self.observer {
            observe(&e);
        }
        events.push(e);
    }

    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// How long one Status or HashKV call may take while convergence is polled.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
/// How often convergence is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A channel to `url` that connects on first use and reconnects after failures.
pub fn channel(url: &str) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| format!("{url}: {e}"))?;
    Ok(endpoint.connect_timeout(QUERY_TIMEOUT).connect_lazy())
}

/// Every member's HashKV at the one revision all of them report.
#[derive(Debug)]
pub struct Converged {
    pub revision: i64,
    /// In the order of the member URLs.
    pub hashes: Vec<u32>,
}

impl Converged {
    /// The hash all members share, or which differ.
    pub fn agree(&self) -> Result<u32, String> {
        match self.hashes.iter().all(|h| *h == self.hashes[0]) {
            true => Ok(self.hashes[0]),
            false => Err(format!(
                "members diverged: HashKV at revision {} is {:?}",
                self.revision, self.hashes
            )),
        }
    }
}

/// Polls the members at `urls` (with nothing writing) until all report one revision, then
/// takes each one's HashKV at it; Err says what stood in the way at `deadline`.
pub async fn converged(urls: &[String], deadline: Duration) -> Result<Converged, String> {
    let start = Instant::now();
    loop {
        let last = match hashes(urls).await {
            Ok(c) => return Ok(c),
            Err(e) => e,
        };
        if start.elapsed() > deadline {
            return Err(last);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn hashes(urls: &[String]) -> Result<Converged, String> {
    if urls.is_empty() {
        return Err("no member to compare".into());
    }
    let mut members = Vec::new();
    for url in urls {
        members.push(MaintenanceClient::new(channel(url)?));
    }
    let mut revisions = Vec::new();
    for (m, url) in members.iter_mut().zip(urls) {
        let status = tokio::time::timeout(QUERY_TIMEOUT, m.status(StatusRequest {})).await;
        let revision = match status {
            Ok(Ok(s)) => s.into_inner().header.map(|h| h.revision),
            _ => None,
        };
        revisions.push(revision.ok_or_else(|| format!("{url} does not answer Status"))?);
    }
    let revision = revisions[0];
    if revisions.iter().any(|r| *r != revision) {
        return Err(format!("members are at revisions {revisions:?}"));
    }
    let mut hashes = Vec::new();
    let mut compacted = Vec::new();
    for (m, url) in members.iter_mut().zip(urls) {
        let call = m.hash_kv(HashKvRequest { revision });
        match tokio::time::timeout(QUERY_TIMEOUT, call).await {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                hashes.push(r.hash);
                compacted.push(r.compact_revision);
            }
            Ok(Err(e)) => return Err(format!("{url}: HashKV: {}", message(e))),
            Err(_) => return Err(format!("{url}: HashKV timed out")),
        }
    }
    // A compaction moves no revision, and the hash covers only what it kept: members
    // compare once they applied the same compactions, as etcd's corruption check does.
    if compacted.iter().any(|c| *c != compacted[0]) {
        return Err(format!("members are compacted to revisions {compacted:?}"));
    }
    Ok(Converged { revision, hashes })
}
