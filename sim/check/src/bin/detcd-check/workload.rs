//! Jepsen's etcd register workload: each client reads, writes and compare-and-sets a few
//! keys (cas is a Txn comparing the value) and records every operation as invoke then ok,
//! fail or info, in the format of `shared/HISTORY.md`.
//!
//! Written values are unique across the run, so a read names the write it saw. A read
//! that errs is `fail` (reads change nothing), and so is a write refused before it could
//! be proposed ([`DEFINITE`]); any other error or a timeout leaves a write `info`, and its
//! client goes on as a new process (HISTORY.md: a process has at most one operation in
//! flight). After an error a client waits [`ERROR_PAUSE`] and moves on to the next member.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use detcd::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use detcd::proto::etcdserverpb::kv_client::KvClient;
use detcd::proto::etcdserverpb::request_op::Request;
use detcd::proto::etcdserverpb::{
    Compare, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest,
};
use detcd::runtime::seeded_rng;
use detcd_check::history::Event;
use rand::Rng;
use tonic::transport::Channel;

/// Errors that mean the request was never proposed: the connection could not be made, or
/// the member refused before proposing (as etcd's `ErrNoLeader` and `ErrTooManyRequests`).
const DEFINITE: &[&str] = &[
    "tcp connect error",
    "etcdserver: no leader",
    "etcdserver: too many requests",
];
/// Keeps clients from spinning on a member that refuses at once.
const ERROR_PAUSE: Duration = Duration::from_millis(50);

/// What every client of a run shares.
pub struct Workload {
    /// Keys `k0` .. are the registers.
    pub keys: usize,
    /// Clients; process numbers are taken modulo this.
    pub concurrency: usize,
    /// How long a client waits for one answer.
    pub op_timeout: Duration,
    /// Planted bug: reads are serializable and go to a random member, so a member cut off
    /// from the leader answers with what it last applied.
    pub stale_reads: bool,
    /// No operation starts after this.
    pub until: Instant,
    /// The next value to write.
    next_value: AtomicU64,
    pub history: Recorder,
}

impl Workload {
    pub fn new(
        keys: usize,
        concurrency: usize,
        op_timeout: Duration,
        stale_reads: bool,
        until: Instant,
        history: Recorder,
    ) -> Workload {
        Workload {
            keys,
            concurrency,
            op_timeout,
            stale_reads,
            until,
            next_value: AtomicU64::new(1),
            history,
        }
    }

    fn value(&self) -> String {
        self.next_value.fetch_add(1, Ordering::Relaxed).to_string()
    }
}

/// The events of every client, in the order they happened, timed from the run's start.
pub struct Recorder {
    start: Instant,
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    pub fn new(start: Instant) -> Recorder {
        Recorder {
            start,
            events: Mutex::new(Vec::new()),
        }
    }

    fn record(&self, mut e: Event) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        e.index = events.len() as u64;
        e.time = self.start.elapsed().as_nanos() as u64;
        events.push(e);
    }

    pub fn into_events(self) -> Vec<Event> {
        self.events.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

/// One operation on one key.
enum Call {
    Get,
    Put(String),
    Cas {
        expect: Option<String>,
        value: String,
    },
}

impl Call {
    fn f(&self) -> &'static str {
        match self {
            Call::Get => "get",
            Call::Put(_) => "put",
            Call::Cas { .. } => "cas",
        }
    }
}

/// A completion the server answered.
struct Answer {
    /// The compare failed (cas only).
    failed: bool,
    header: Option<ResponseHeader>,
    /// The key as read (get only).
    read: Option<detcd::proto::mvccpb::KeyValue>,
}

/// Runs client `id` against `members` (one KV client per member) until the workload's end.
pub async fn client(id: usize, mut members: Vec<KvClient<Channel>>, w: &Workload, seed: u64) {
    let mut rng = seeded_rng(seed ^ ((id as u64) << 32));
    let mut process = id as u64;
    let mut member = id % members.len();
    // The last value this client knows each key held: what its cas expects.
    let mut known: Vec<Option<String>> = vec![None; w.keys];
    while Instant::now() < w.until {
        let k = rng.random_range(0..w.keys);
        let key = format!("k{k}");
        let call = match rng.random_range(0..3) {
            0 => Call::Get,
            1 => Call::Put(w.value()),
            _ => Call::Cas {
                expect: known[k].clone(),
                value: w.value(),
            },
        };
        let invoke = Event {
            process,
            kind: "invoke".into(),
            f: call.f().into(),
            key: Some(key.clone()),
            value: match &call {
                Call::Get => None,
                Call::Put(v) | Call::Cas { value: v, .. } => Some(v.clone()),
            },
            expect: match &call {
                Call::Cas { expect, .. } => Some(expect.clone()),
                _ => None,
            },
            ..Event::default()
        };
        w.history.record(invoke.clone());
        let (target, serializable) = match call {
            Call::Get if w.stale_reads => (rng.random_range(0..members.len()), true),
            _ => (member, false),
        };
        let kv = &mut members[target];
        let answer = tokio::time::timeout(w.op_timeout, execute(kv, &key, &call, serializable));
        let mut done = invoke;
        match answer.await.unwrap_or_else(|_| Err("timeout".into())) {
            Ok(a) if a.failed => done.kind = "fail".into(),
            Ok(a) => {
                done.kind = "ok".into();
                done.revision = a.header.map(|h| h.revision as u64);
                if let Some(kv) = &a.read {
                    done.value = Some(String::from_utf8_lossy(&kv.value).into_owned());
                    done.mod_revision = Some(kv.mod_revision as u64);
                    done.create_revision = Some(kv.create_revision as u64);
                    done.version = Some(kv.version as u64);
                }
                known[k] = done.value.clone();
            }
            Err(error) => {
                let definite = matches!(call, Call::Get) || DEFINITE.contains(&error.as_str());
                done.kind = if definite { "fail" } else { "info" }.into();
                done.error = Some(error);
            }
        }
        let (unknown, erred) = (done.kind == "info", done.error.is_some());
        w.history.record(done);
        if unknown {
            process += w.concurrency as u64;
        }
        if erred {
            member = (member + 1) % members.len();
            tokio::time::sleep(ERROR_PAUSE).await;
        }
    }
}

/// Sends `call` on `key`; Err is the server's message or why the call failed.
async fn execute(
    kv: &mut KvClient<Channel>,
    key: &str,
    call: &Call,
    serializable: bool,
) -> Result<Answer, String> {
    let put = |value: &str| PutRequest {
        key: key.into(),
        value: value.into(),
        ..PutRequest::default()
    };
    let answer = match call {
        Call::Get => {
            let req = RangeRequest {
                key: key.into(),
                serializable,
                ..RangeRequest::default()
            };
            let resp = kv.range(req).await.map_err(message)?.into_inner();
            Answer {
                failed: false,
                header: resp.header,
                read: resp.kvs.into_iter().next(),
            }
        }
        Call::Put(value) => Answer {
            failed: false,
            header: kv
                .put(put(value))
                .await
                .map_err(message)?
                .into_inner()
                .header,
            read: None,
        },
        Call::Cas { expect, value } => {
            // An absent key has create revision 0; a present one, its value.
            let (target, target_union) = match expect {
                Some(v) => (CompareTarget::Value, TargetUnion::Value(v.clone().into())),
                None => (CompareTarget::Create, TargetUnion::CreateRevision(0)),
            };
            let req = TxnRequest {
                compare: vec![Compare {
                    result: CompareResult::Equal as i32,
                    target: target as i32,
                    key: key.into(),
                    target_union: Some(target_union),
                    range_end: Vec::new(),
                }],
                success: vec![RequestOp {
                    request: Some(Request::RequestPut(put(value))),
                }],
                failure: Vec::new(),
            };
            let resp = kv.txn(req).await.map_err(message)?.into_inner();
            Answer {
                failed: !resp.succeeded,
                header: resp.header,
                read: None,
            }
        }
    };
    Ok(answer)
}

fn message(status: tonic::Status) -> String {
    if status.message().is_empty() {
        status.code().to_string()
    } else {
        status.message().to_string()
    }
}
