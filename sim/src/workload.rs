//! Client processes: each drives etcd's KV and Lease APIs through the real gRPC client
//! with the scenario's operation mix and records a history in the format of HISTORY.md.
//! Leases live under `lease/`, outside the checked key space `k0`..; their keys must be
//! gone once their TTLs ran out, which the end-of-run check looks at. Lock holders write a
//! counter under `lock-counter/`, fenced by their lock, and record those writes apart
//! ([`FencedLog`]) for the mutual-exclusion check.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use detcd::proto::etcdserverpb::kv_client::KvClient;
use detcd::proto::etcdserverpb::lease_client::LeaseClient;
use detcd::proto::etcdserverpb::request_op::Request;
use detcd::proto::etcdserverpb::{
    Compare, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, PutRequest, RequestOp,
    TxnRequest,
};
use detcd::proto::v3lockpb::lock_client::LockClient;
use detcd::proto::v3lockpb::{LockRequest, UnlockRequest};
use detcd::runtime::{seeded_rng, trace, Clock};
use detcd_check::client::{complete, execute, Answer, Call, Recorder, Send};
use detcd_check::history::Event;
use detcd_check::lock::{Fenced, FencedWrite};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tonic::transport::Channel;

use crate::kv_cluster::client_url;
use crate::scenario::Workload;

/// How long a client waits for one answer before it records the outcome as unknown.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Lease TTLs the workload grants, in seconds.
const LEASE_TTL_S: std::ops::RangeInclusive<i64> = 2..=5;
/// The lock the workload's holders take, and the counter they write under it.
const LOCK_NAME: &str = "lock/l0";
const COUNTER_KEY: &str = "lock-counter/l0";
/// How long a client waits to acquire the lock: behind other holders, up to their leases.
const LOCK_TIMEOUT: Duration = Duration::from_secs(8);
/// Marks the second process of a txn: it records the txn's get beside its cas.
const TXN_READ_PROCESS: u64 = 1 << 15;

/// Every fenced write of the run's lock holders.
pub type FencedLog = Arc<Mutex<Vec<FencedWrite>>>;

/// The history of every client, in the order events happened; each event also goes into
/// the run's trace.
pub fn recorder() -> Recorder {
    Recorder::new(
        Clock.now(),
        Some(|e| {
            let line = serde_json::to_string(e).expect("an event serializes");
            trace(b'C', &[fnv(line.as_bytes())]);
        }),
    )
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How every KV call is sent: linearizable gets; a txn reads the key back.
fn how(read_back: bool) -> Send {
    Send {
        timeout: CLIENT_TIMEOUT,
        serializable: false,
        read_back,
    }
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
    Lock,
}

fn pick(w: &Workload, rng: &mut ChaCha8Rng) -> OpKind {
    let weights = [
        (OpKind::Get, w.get),
        (OpKind::Put, w.put),
        (OpKind::Delete, w.delete),
        (OpKind::Cas, w.cas),
        (OpKind::Txn, w.txn),
        (OpKind::Lease, w.lease),
        (OpKind::Lock, w.lock),
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
    fenced: FencedLog,
    /// The last value this client saw per key: what its cas expects.
    seen: Vec<Option<String>>,
    /// Whether the last lock hold stalled past its lease; holds alternate.
    overstay: bool,
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
    fenced: FencedLog,
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
        fenced,
        seen: vec![None; workload.keys],
        overstay: id.is_multiple_of(2),
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
            OpKind::Lock => c.lock(workload.lock_hold_ms).await,
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

    async fn kv_op(&mut self, kind: OpKind, k: usize) {
        let key = format!("k{k}");
        let mut kv = self.kv.clone().expect("connected");
        let call = match kind {
            OpKind::Get => Call::Get,
            OpKind::Put => Call::Put(self.next_value()),
            OpKind::Delete => Call::Delete,
            OpKind::Cas => self.cas(k),
            OpKind::Txn => return self.txn(kv, k, key).await,
            OpKind::Lease | OpKind::Lock => unreachable!("not an operation on a checked key"),
        };
        let invoke = call.invoke(self.process, &key);
        self.history.record(invoke.clone());
        let result = execute(&mut kv, &key, &call, how(false)).await;
        if let (Call::Get, Ok(a)) = (&call, &result) {
            self.seen[k] = a.read_value();
        }
        let done = complete(invoke, &call, &result);
        self.after(&done);
        self.history.record(done);
    }

    /// A cas of key `k` from the value last seen to a new one.
    fn cas(&mut self, k: usize) -> Call {
        Call::Cas {
            expect: self.seen[k].clone(),
            value: self.next_value(),
        }
    }

    /// After an error, the next member; after an unknown outcome, also a new process
    /// (HISTORY.md: a process has at most one operation in flight).
    fn after(&mut self, done: &Event) {
        if done.kind == "info" {
            self.process += 1;
        }
        if done.error.is_some() {
            self.next_member();
        }
    }

    /// A txn comparing the key's value with the last one seen, putting a new value and
    /// reading the key back on success, reading it on failure. Recorded as a cas and a get
    /// by two processes over the same interval, so both results are checked.
    async fn txn(&mut self, mut kv: KvClient<Channel>, k: usize, key: String) {
        let call = self.cas(k);
        let invoke = call.invoke(self.process, &key);
        let read = Call::Get.invoke(self.process | TXN_READ_PROCESS, &key);
        self.history.record(invoke.clone());
        self.history.record(read.clone());
        let result = execute(&mut kv, &key, &call, how(true)).await;
        // Whichever branch ran, its range read the key at the txn's revision.
        let read_result = result.clone().map(|a| Answer {
            succeeded: true,
            ..a
        });
        if let Ok(a) = &read_result {
            self.seen[k] = a.read_value();
        }
        let done = complete(invoke, &call, &result);
        let mut read_done = complete(read, &Call::Get, &read_result);
        if done.kind == "info" {
            // The read is part of a txn whose outcome is unknown.
            read_done.kind = "info".into();
        }
        self.after(&done);
        self.history.record(done);
        self.history.record(read_done);
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
                let ttl = keep_alive_once(&mut lease, id).await;
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

    /// Takes the lock with a new lease, reads the counter, writes it plus one fenced by
    /// the lock key's create revision, and unlocks. Any failure before the write gives up;
    /// the lease is revoked either way, so the lock is not left held until it expires.
    /// While it waits for the lock the client keeps its lease alive, as a session of
    /// etcd's concurrency package does; once it holds the lock it stalls without
    /// keepalives (a process pause). Its holds alternate between a stall well within the
    /// lease, whose write should succeed, and one past it (see [`Client::stall`]), so each
    /// run shows both a fenced write and the fence at work unless the faults prevent it.
    async fn lock(&mut self, hold_ms: u64) {
        let url = client_url(self.member);
        let (Ok(mut lease), Ok(mut locks)) = (
            LeaseClient::connect(url.clone()).await,
            LockClient::connect(url).await,
        ) else {
            return self.next_member();
        };
        let ttl = self.rng.random_range(LEASE_TTL_S);
        let Ok(granted) = with_timeout(lease.lease_grant(LeaseGrantRequest { ttl, id: 0 })).await
        else {
            return self.next_member();
        };
        let id = granted.id;
        let req = LockRequest {
            name: LOCK_NAME.into(),
            lease: id,
        };
        let waited = tokio::select! {
            biased;
            acquired = tokio::time::timeout(LOCK_TIMEOUT, locks.lock(req)) => acquired,
            never = keep_alive(lease.clone(), id, ttl) => match never {},
        };
        let held = match waited {
            Ok(Ok(resp)) => {
                let key = resp.into_inner().key;
                let stall = self.stall(ttl, hold_ms);
                let wrote = self.fenced_write(&key, stall).await;
                if wrote {
                    let _ = with_timeout(locks.unlock(UnlockRequest { key })).await;
                }
                wrote
            }
            _ => false,
        };
        trace(b'U', &[id as u64, held as u64]);
        let _ = with_timeout(lease.lease_revoke(LeaseRevokeRequest { id })).await;
        if !held {
            self.next_member();
        }
    }

    /// How long the next hold stalls on a lease of `ttl` seconds: at most a quarter of the
    /// TTL (keepalives while waiting left at least two thirds of it), or past the whole
    /// TTL by 0.5 s (the leader's expiry check and the revoke's commit) to `hold_ms` more.
    fn stall(&mut self, ttl: i64, hold_ms: u64) -> Duration {
        self.overstay = !self.overstay;
        let ttl_ms = ttl as u64 * 1000;
        Duration::from_millis(if self.overstay {
            ttl_ms + self.rng.random_range(500..=hold_ms.max(500))
        } else {
            self.rng.random_range(0..=ttl_ms / 4)
        })
    }

    /// Under the lock `key`: reads its create revision and the counter, stalls for
    /// `stall`, writes the counter plus one if the lock key still has that create
    /// revision. False if it could not get as far as the write.
    async fn fenced_write(&mut self, key: &[u8], stall: Duration) -> bool {
        let mut kv = self.kv.clone().expect("connected");
        let lock_key = String::from_utf8_lossy(key).into_owned();
        let Ok(Some(mine)) = execute(&mut kv, &lock_key, &Call::Get, how(false))
            .await
            .map(|a| a.read)
        else {
            return false;
        };
        let Ok(counter) = execute(&mut kv, COUNTER_KEY, &Call::Get, how(false)).await else {
            return false;
        };
        let read = counter.read_value().map_or(0, |v| {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("{COUNTER_KEY} holds {v:?}, which no holder wrote"))
        });
        Clock.sleep(stall).await;
        let token = mine.create_revision;
        let txn = TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Create as i32,
                key: key.to_vec(),
                target_union: Some(TargetUnion::CreateRevision(token)),
                range_end: Vec::new(),
            }],
            success: vec![RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: COUNTER_KEY.into(),
                    value: (read + 1).to_string().into_bytes(),
                    ..PutRequest::default()
                })),
            }],
            failure: Vec::new(),
        };
        let outcome = match with_timeout(kv.txn(txn)).await {
            Ok(r) if r.succeeded => Fenced::Written {
                revision: r.header.map_or(0, |h| h.revision as u64),
            },
            Ok(_) => Fenced::Refused,
            Err(_) => Fenced::Unknown,
        };
        let revision = match outcome {
            Fenced::Written { revision } => revision,
            _ => 0,
        };
        trace(b'F', &[token as u64, read, revision]);
        self.fenced.lock().unwrap().push(FencedWrite {
            process: self.process,
            token: token as u64,
            read,
            outcome,
        });
        true
    }
}

/// Sends one keepalive for lease `id`: its new TTL, or -1 if none came back in time.
async fn keep_alive_once(lease: &mut LeaseClient<Channel>, id: i64) -> i64 {
    let req = futures::stream::iter([LeaseKeepAliveRequest { id }]);
    match with_timeout(lease.lease_keep_alive(req)).await {
        Ok(mut stream) => match tokio::time::timeout(CLIENT_TIMEOUT, stream.message()).await {
            Ok(Ok(Some(resp))) => resp.ttl,
            _ => -1,
        },
        Err(_) => -1,
    }
}

/// Keeps lease `id` alive every third of its TTL until the caller drops this future.
async fn keep_alive(
    mut lease: LeaseClient<Channel>,
    id: i64,
    ttl: i64,
) -> std::convert::Infallible {
    let every = Duration::from_millis(ttl as u64 * 1000 / 3);
    loop {
        Clock.sleep(every).await;
        keep_alive_once(&mut lease, id).await;
    }
}
