//! Client processes: each drives etcd's KV and Lease APIs through the real gRPC client
//! with the scenario's operation mix and records a history in the format of HISTORY.md.
//! Leases live under `lease/`, outside the checked key space `k0`..; their keys must be
//! gone once their TTLs ran out, which the end-of-run check looks at.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use detcd::proto::etcdserverpb::kv_client::KvClient;
use detcd::proto::etcdserverpb::lease_client::LeaseClient;
use detcd::proto::etcdserverpb::request_op::Request as Req;
use detcd::proto::etcdserverpb::response_op::Response as Resp;
use detcd::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest,
    PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use detcd::runtime::{seeded_rng, trace, Clock};
use detcd_check::history::Event;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::kv_cluster::client_url;
use crate::scenario::Workload;

/// How long a client waits for one answer before it records the outcome as unknown.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Lease TTLs the workload grants, in seconds.
const LEASE_TTL_S: std::ops::RangeInclusive<i64> = 2..=5;
/// Marks the second process of a txn: it records the txn's get beside its cas.
const TXN_READ_PROCESS: u64 = 1 << 15;

/// The history of every client, in the order events happened; each event also goes into
/// the run's trace.
#[derive(Clone)]
pub struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
    start: Instant,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            events: Arc::default(),
            start: Clock.now(),
        }
    }
}

impl Recorder {
    fn record(&self, mut e: Event) {
        let mut events = self.events.lock().unwrap();
        e.index = events.len() as u64;
        e.time = self.start.elapsed().as_nanos() as u64;
        let line = serde_json::to_string(&e).expect("an event serializes");
        trace(b'C', &[fnv(line.as_bytes())]);
        events.push(e);
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What one operation returned: for `Ok`, the value read or written and the revision a
/// write created.
enum Outcome {
    Ok(Option<String>, Option<u64>),
    Fail,
    Unknown(String),
}

async fn with_timeout<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(CLIENT_TIMEOUT, call).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(status)) => Err(status.message().to_string()),
        Err(_) => Err("timeout".to_string()),
    }
}

/// The operations a client picks from, by weight.
#[derive(Clone, Copy)]
enum OpKind {
    Get,
    Put,
    Delete,
    Cas,
    Txn,
    Lease,
}

fn pick(w: &Workload, rng: &mut ChaCha8Rng) -> OpKind {
    let weights = [
        (OpKind::Get, w.get),
        (OpKind::Put, w.put),
        (OpKind::Delete, w.delete),
        (OpKind::Cas, w.cas),
        (OpKind::Txn, w.txn),
        (OpKind::Lease, w.lease),
    ];
    let total: u32 = weights.iter().map(|(_, n)| n).sum();
    let mut x = rng.random_range(0..total);
    for (kind, n) in weights {
        if x < n {
            return kind;
        }
        x -= n;
    }
    unreachable!("x < total")
}

/// One client process and its connection.
struct Client {
    id: u64,
    members: usize,
    member: usize,
    process: u64,
    written: u64,
    kv: Option<KvClient<Channel>>,
    rng: ChaCha8Rng,
    history: Recorder,
    /// The last value this client saw per key: what its cas expects.
    seen: Vec<Option<String>>,
}

/// Runs client `id` against members `0..members` until `until` has passed. After an
/// unknown outcome it continues as a new process on the next member, as HISTORY.md asks.
pub async fn client(
    id: u64,
    members: usize,
    seed: u64,
    until: Duration,
    workload: Workload,
    history: Recorder,
) {
    let start = Clock.now();
    let mut c = Client {
        id,
        members,
        member: id as usize % members,
        process: id << 16,
        written: 0,
        kv: None,
        rng: seeded_rng(seed ^ (id << 32) ^ 0x636c_6965_6e74),
        history,
        seen: vec![None; workload.keys],
    };
    while start.elapsed() < until {
        if c.kv.is_none() {
            match KvClient::connect(client_url(c.member)).await {
                Ok(kv) => c.kv = Some(kv),
                Err(_) => {
                    c.next_member();
                    Clock.sleep(Duration::from_millis(100)).await;
                }
            }
            continue;
        }
        match pick(&workload, &mut c.rng) {
            OpKind::Lease => c.lease().await,
            kind => {
                let k = c.rng.random_range(0..workload.keys);
                c.kv_op(kind, k).await;
            }
        }
        if workload.think_ms > 0 {
            Clock
                .sleep(Duration::from_millis(
                    c.rng.random_range(0..=workload.think_ms),
                ))
                .await;
        }
    }
}

impl Client {
    fn next_member(&mut self) {
        self.member = (self.member + 1) % self.members;
        self.kv = None;
    }

    fn next_value(&mut self) -> String {
        self.written += 1;
        format!("{}-{}", self.process, self.written)
    }

    fn event(
        &self,
        process: u64,
        kind: &str,
        f: &str,
        key: &str,
        value: Option<String>,
        expect: Option<Option<String>>,
    ) -> Event {
        Event {
            process,
            kind: kind.into(),
            f: f.into(),
            key: Some(key.into()),
            value,
            expect,
            ..Default::default()
        }
    }

    async fn kv_op(&mut self, kind: OpKind, k: usize) {
        let key = format!("k{k}");
        let kv = self.kv.clone().expect("connected");
        let (f, value, expect, outcome) = match kind {
            OpKind::Get => {
                let p = self.process;
                self.history
                    .record(self.event(p, "invoke", "get", &key, None, None));
                let outcome = get(kv, &key).await;
                if let Outcome::Ok(v, _) = &outcome {
                    self.seen[k] = v.clone();
                }
                ("get", None, None, outcome)
            }
            OpKind::Put => {
                let v = self.next_value();
                let p = self.process;
                let e = self.event(p, "invoke", "put", &key, Some(v.clone()), None);
                self.history.record(e);
                let outcome = put(kv, &key, &v).await;
                ("put", Some(v), None, outcome)
            }
            OpKind::Delete => {
                let p = self.process;
                self.history
                    .record(self.event(p, "invoke", "delete", &key, None, None));
                ("delete", None, None, delete(kv, &key).await)
            }
            OpKind::Cas => {
                let (v, expect) = self.invoke_cas(k, &key);
                let outcome = match cas(kv, &key, &expect, &v, false).await {
                    Ok((true, _, revision)) => Outcome::Ok(Some(v.clone()), revision),
                    Ok((false, _, _)) => Outcome::Fail,
                    Err(e) => Outcome::Unknown(e),
                };
                ("cas", Some(v), Some(expect), outcome)
            }
            OpKind::Txn => return self.txn(kv, k, key).await,
            OpKind::Lease => unreachable!("leases are not key operations"),
        };
        let p = self.process;
        match outcome {
            Outcome::Ok(v, revision) => {
                let shown = if f == "get" { v } else { value };
                let mut done = self.event(p, "ok", f, &key, shown, expect);
                done.revision = revision;
                self.history.record(done);
            }
            Outcome::Fail => self
                .history
                .record(self.event(p, "fail", f, &key, value, expect)),
            Outcome::Unknown(e) => {
                let mut done = self.event(p, "info", f, &key, value, expect);
                done.error = Some(e);
                self.history.record(done);
                self.unknown_outcome();
            }
        }
    }

    /// Records the invocation of a cas of key `k` from the value last seen to a new one,
    /// and returns both.
    fn invoke_cas(&mut self, k: usize, key: &str) -> (String, Option<String>) {
        let v = self.next_value();
        let expect = self.seen[k].clone();
        let e = self.event(
            self.process,
            "invoke",
            "cas",
            key,
            Some(v.clone()),
            Some(expect.clone()),
        );
        self.history.record(e);
        (v, expect)
    }

    /// After an unknown outcome: a new process number, on the next member.
    fn unknown_outcome(&mut self) {
        self.process += 1;
        self.next_member();
    }

    /// A txn comparing the key's value with the last one seen, putting a new value and
    /// reading the key back on success, reading it on failure. Recorded as a cas and a get
    /// by two processes over the same interval, so both results are checked.
    async fn txn(&mut self, kv: KvClient<Channel>, k: usize, key: String) {
        let (v, expect) = self.invoke_cas(k, &key);
        let (p, reader) = (self.process, self.process | TXN_READ_PROCESS);
        self.history
            .record(self.event(reader, "invoke", "get", &key, None, None));
        match cas(kv, &key, &expect, &v, true).await {
            Ok((succeeded, read, revision)) => {
                let kind = if succeeded { "ok" } else { "fail" };
                let mut e = self.event(p, kind, "cas", &key, Some(v), Some(expect));
                e.revision = revision.filter(|_| succeeded);
                self.history.record(e);
                self.seen[k] = read.clone();
                self.history
                    .record(self.event(reader, "ok", "get", &key, read, None));
            }
            Err(err) => {
                let mut done = self.event(p, "info", "cas", &key, Some(v), Some(expect));
                done.error = Some(err.clone());
                self.history.record(done);
                let mut done = self.event(reader, "info", "get", &key, None, None);
                done.error = Some(err);
                self.history.record(done);
                self.unknown_outcome();
            }
        }
    }

    /// Grants a lease, attaches a key to it, then keeps it alive once, revokes it, or
    /// leaves it to expire. Outcomes go into the trace, not the checked history.
    async fn lease(&mut self) {
        let Ok(mut lease) = LeaseClient::connect(client_url(self.member)).await else {
            return self.next_member();
        };
        let ttl = self.rng.random_range(LEASE_TTL_S);
        let grant = LeaseGrantRequest { ttl, id: 0 };
        let id = match with_timeout(lease.lease_grant(grant)).await {
            Ok(resp) => resp.id,
            Err(_) => return self.next_member(),
        };
        trace(b'L', &[id as u64, ttl as u64]);
        self.written += 1;
        let put = PutRequest {
            key: format!("lease/{}-{}", self.id, self.written).into_bytes(),
            value: b"leased".to_vec(),
            lease: id,
            ..Default::default()
        };
        let kv = self.kv.clone().expect("connected");
        let attached = with_timeout(kv.clone().put(put)).await.is_ok();
        trace(b'l', &[id as u64, attached as u64]);
        match self.rng.random_range(0..3) {
            0 => {
                let req = futures::stream::iter([LeaseKeepAliveRequest { id }]);
                let ttl = match with_timeout(lease.lease_keep_alive(req)).await {
                    Ok(mut stream) => {
                        match tokio::time::timeout(CLIENT_TIMEOUT, stream.message()).await {
                            Ok(Ok(Some(resp))) => resp.ttl,
                            _ => -1,
                        }
                    }
                    Err(_) => -1,
                };
                trace(b'K', &[id as u64, ttl as u64]);
            }
            1 => {
                let revoked = with_timeout(lease.lease_revoke(LeaseRevokeRequest { id }))
                    .await
                    .is_ok();
                trace(b'R', &[id as u64, revoked as u64]);
            }
            _ => {}
        }
    }
}

async fn get(mut kv: KvClient<Channel>, key: &str) -> Outcome {
    let req = RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    };
    match with_timeout(kv.range(req)).await {
        Ok(resp) => Outcome::Ok(
            resp.kvs
                .first()
                .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()),
            None,
        ),
        Err(e) => Outcome::Unknown(e),
    }
}

async fn put(mut kv: KvClient<Channel>, key: &str, value: &str) -> Outcome {
    let req = PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..Default::default()
    };
    match with_timeout(kv.put(req)).await {
        Ok(resp) => Outcome::Ok(
            Some(value.to_string()),
            resp.header.map(|h| h.revision as u64),
        ),
        Err(e) => Outcome::Unknown(e),
    }
}

async fn delete(mut kv: KvClient<Channel>, key: &str) -> Outcome {
    let req = DeleteRangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    };
    match with_timeout(kv.delete_range(req)).await {
        Ok(_) => Outcome::Ok(None, None),
        Err(e) => Outcome::Unknown(e),
    }
}

/// If the key holds `expect` (absent: `None`), puts `value`. With `read`, both branches
/// also read the key. Returns whether the put happened, what was read, and the revision.
async fn cas(
    mut kv: KvClient<Channel>,
    key: &str,
    expect: &Option<String>,
    value: &str,
    read: bool,
) -> Result<(bool, Option<String>, Option<u64>), String> {
    let key_bytes = key.as_bytes().to_vec();
    let compare = match expect {
        Some(e) => Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Value as i32,
            key: key_bytes.clone(),
            target_union: Some(TargetUnion::Value(e.clone().into_bytes())),
            range_end: Vec::new(),
        },
        None => Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Create as i32,
            key: key_bytes.clone(),
            target_union: Some(TargetUnion::CreateRevision(0)),
            range_end: Vec::new(),
        },
    };
    let range = || RequestOp {
        request: Some(Req::RequestRange(RangeRequest {
            key: key_bytes.clone(),
            ..Default::default()
        })),
    };
    let mut success = vec![RequestOp {
        request: Some(Req::RequestPut(PutRequest {
            key: key_bytes.clone(),
            value: value.as_bytes().to_vec(),
            ..Default::default()
        })),
    }];
    let mut failure = Vec::new();
    if read {
        success.push(range());
        failure.push(range());
    }
    let req = TxnRequest {
        compare: vec![compare],
        success,
        failure,
    };
    let resp = with_timeout(kv.txn(req)).await?;
    let read = resp
        .responses
        .iter()
        .filter_map(|r| match &r.response {
            Some(Resp::ResponseRange(range)) => Some(
                range
                    .kvs
                    .first()
                    .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()),
            ),
            _ => None,
        })
        .next_back()
        .flatten();
    let revision = resp.header.map(|h| h.revision as u64);
    Ok((resp.succeeded, read, revision))
}
