//! `detcd-bench`: load for any etcd v3 endpoint, after etcd's `benchmark` tool.
//!
//! `--conns` gRPC connections are shared round-robin by `--clients` concurrent clients;
//! each client sends its next request as soon as the previous one is answered, until
//! `--total` requests are done. Latencies go into an HDR histogram, so the summary's
//! percentiles are exact to three significant digits without keeping every sample.
//! The same binary drives etcd and detcd, which is what makes their figures comparable.
//! On a terminal, a progress line on stderr shows requests done and the rate so far.
//! `--compare A B` alternates runs between two endpoint sets, because single runs on a
//! shared machine vary more than the differences worth measuring.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use detcd::mvcc::KeyRange;
use detcd::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use detcd::proto::etcdserverpb::kv_client::KvClient;
use detcd::proto::etcdserverpb::lease_client::LeaseClient;
use detcd::proto::etcdserverpb::response_op::Response;
use detcd::proto::etcdserverpb::watch_client::WatchClient;
use detcd::proto::etcdserverpb::watch_request::RequestUnion;
use detcd::proto::etcdserverpb::{
    request_op, Compare, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchRequest,
    WatchResponse,
};
use futures::channel::mpsc::{unbounded, UnboundedSender};
use hdrhistogram::Histogram;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};

/// Latencies are recorded in microseconds, up to a minute.
const MAX_LATENCY_US: u64 = 60_000_000;
/// How long to wait for the first connection.
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);
/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How long the watch workload waits, after the last put, for events still on their way.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(60);
/// Namespaces of the `pods` key layout (Kubernetes' `/registry/pods/<ns>/<name>`).
const POD_NAMESPACES: u64 = 100;
/// Key space of the `--with-puts` writers.
const BACKGROUND_KEY_SPACE: u64 = 100_000;

#[derive(Parser)]
#[command(
    version,
    about = "Load generator for etcd v3 endpoints (etcd's benchmark workloads)"
)]
struct Args {
    /// Client URL(s), comma separated; connections go round-robin over them.
    #[arg(long, default_value = "http://127.0.0.1:2379", value_delimiter = ',')]
    endpoints: Vec<String>,
    /// gRPC connections.
    #[arg(long, default_value_t = 1)]
    conns: usize,
    /// Concurrent clients sharing the connections.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Requests in all.
    #[arg(long, default_value_t = 10_000)]
    total: u64,
    /// Print one JSON object instead of the text summary.
    #[arg(long)]
    json: bool,
    /// Two endpoint sets, each comma separated: runs alternate between them (A, B, A, ...)
    /// `--rounds` times each; prints each side's medians with min-max and B / A.
    #[arg(long, num_args = 2, value_names = ["ENDPOINTS_A", "ENDPOINTS_B"])]
    compare: Option<Vec<String>>,
    /// Runs per side with --compare.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Put clients that run beside the measured workload, on connections of their own (one
    /// per ten clients), until it is done: reads measured while writes run.
    #[arg(long, default_value_t = 0)]
    with_puts: usize,
    /// Value size of the --with-puts writers.
    #[arg(long, default_value_t = 256)]
    with_puts_val_size: usize,
    /// Process IDs of the servers, when they run on this machine: the summary adds the CPU
    /// time they used per measured request (user + system, read from /proc), beside this
    /// client's own, so that efficiency is compared, not only rates on a shared CPU.
    #[arg(long, value_delimiter = ',')]
    server_pids: Vec<u32>,
    #[command(subcommand)]
    workload: Workload,
}

#[derive(Subcommand, Clone)]
enum Workload {
    /// Puts, as `benchmark put`.
    Put {
        #[arg(long, default_value_t = 8)]
        key_size: usize,
        #[arg(long, default_value_t = 8)]
        val_size: usize,
        /// Values of random sizes from --val-size up to this one.
        #[arg(long)]
        val_size_max: Option<usize>,
        /// Distinct keys written.
        #[arg(long, default_value_t = 1)]
        key_space_size: u64,
        /// Keys in order instead of at random from the key space.
        #[arg(long)]
        sequential_keys: bool,
        /// etcd: benchmark's keys (key number as a varint, --key-size bytes); pods:
        /// Kubernetes' `/registry/pods/ns-<n % 100>/pod-<n>`.
        #[arg(long, value_enum, default_value_t = KeyLayout::Etcd)]
        keys: KeyLayout,
    },
    /// Updates as Kubernetes makes them: a txn that puts the key if its mod_revision is the
    /// one this client last wrote (0 when absent), else reads it. Each client owns its share
    /// of the key space, so a failed compare means a lost or reordered write (an error).
    /// The keys must be absent at the start: run it on a fresh store.
    TxnPut {
        #[arg(long, default_value_t = 8)]
        key_size: usize,
        #[arg(long, default_value_t = 8)]
        val_size: usize,
        /// Distinct keys written, shared out among the clients (at least one each).
        #[arg(long, default_value_t = 1000)]
        key_space_size: u64,
    },
    /// Ranges over one key or [key, end), as `benchmark range`.
    Range {
        key: String,
        end: Option<String>,
        /// l: linearizable, s: serializable.
        #[arg(long, value_enum, default_value_t = Consistency::L)]
        consistency: Consistency,
        #[arg(long, default_value_t = 0)]
        limit: i64,
    },
    /// Lists a prefix as Kubernetes does: pages of --limit keys, the first at the current
    /// revision, the next ones from the key after the last one at that same revision. A
    /// request is a page; the summary adds the latency of whole lists.
    List {
        #[arg(long, default_value = "/registry/pods/")]
        prefix: String,
        #[arg(long, default_value_t = 500)]
        limit: i64,
        /// Count-only ranges over the whole prefix instead of pages.
        #[arg(long)]
        count_only: bool,
        /// l: linearizable, s: serializable.
        #[arg(long, value_enum, default_value_t = Consistency::L)]
        consistency: Consistency,
    },
    /// Watch fan-out: --watchers watchers on --prefix, on --streams watch streams over
    /// --watch-conns connections of their own, while the clients put keys under the prefix.
    /// Requests are the puts; the summary adds the event latency from a put's
    /// acknowledgement to its arrival at the last watcher. Slow watchers read one response
    /// per --slow-read-ms on one connection of their own and are not waited for: compare
    /// the put rate with and without them.
    Watch {
        #[arg(long, default_value_t = 1000)]
        watchers: usize,
        #[arg(long, default_value_t = 100)]
        streams: usize,
        #[arg(long, default_value_t = 10)]
        watch_conns: usize,
        #[arg(long, default_value_t = 0)]
        slow_watchers: usize,
        #[arg(long, default_value_t = 100)]
        slow_read_ms: u64,
        #[arg(long, default_value_t = 256)]
        val_size: usize,
        #[arg(long, default_value = "/bench/watch/")]
        prefix: String,
    },
    /// Lease keepalives: --leases leases granted first (not timed), then every client keeps
    /// its share alive over its own keepalive stream, one keepalive in flight at a time.
    LeaseKeepalive {
        #[arg(long, default_value_t = 10_000)]
        leases: u64,
        /// Seconds; long enough that no lease expires during the run.
        #[arg(long, default_value_t = 600)]
        ttl: i64,
    },
}

#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
enum Consistency {
    L,
    S,
}

#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
enum KeyLayout {
    Etcd,
    Pods,
}

/// What every client needs: the next request number, and how to make request `i`.
struct Shared {
    next: AtomicU64,
    /// Requests answered (ok or error), for the progress line.
    done: AtomicU64,
    /// Set when the clients should stop before `total` (the --with-puts writers).
    stop: AtomicBool,
    total: u64,
    clients: u64,
    workload: Workload,
    /// Random letters, as long as the longest value.
    value: Vec<u8>,
    /// watch: when each put was acknowledged and when its event reached the last watcher.
    delivery: Option<Arc<Delivery>>,
}

impl Shared {
    fn new(
        workload: Workload,
        total: u64,
        clients: usize,
        delivery: Option<Arc<Delivery>>,
    ) -> Self {
        let longest = match &workload {
            Workload::Put {
                val_size,
                val_size_max,
                ..
            } => val_size_max.unwrap_or(0).max(*val_size),
            Workload::TxnPut { val_size, .. } | Workload::Watch { val_size, .. } => *val_size,
            _ => 0,
        };
        let mut rng = detcd::runtime::seeded_rng(0);
        Shared {
            next: AtomicU64::new(0),
            done: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            total,
            clients: clients as u64,
            workload,
            value: (0..longest)
                .map(|_| rng.random_range(b'a'..=b'z'))
                .collect(),
            delivery,
        }
    }

    fn put(&self, i: u64, rng: &mut impl Rng) -> PutRequest {
        let Workload::Put {
            key_size,
            val_size,
            val_size_max,
            key_space_size,
            sequential_keys,
            keys,
        } = &self.workload
        else {
            unreachable!("put requests only for the put workload")
        };
        let n = if *sequential_keys {
            i % key_space_size
        } else {
            rng.random_range(0..*key_space_size)
        };
        let key = match keys {
            KeyLayout::Etcd => bench_key(n, *key_size),
            KeyLayout::Pods => {
                format!("/registry/pods/ns-{}/pod-{n}", n % POD_NAMESPACES).into_bytes()
            }
        };
        let len = match val_size_max {
            Some(max) if max > val_size => rng.random_range(*val_size..=*max),
            _ => *val_size,
        };
        PutRequest {
            key,
            value: self.value[..len].to_vec(),
            ..PutRequest::default()
        }
    }

    /// Client `c`'s update of its key `n` (owned keys are `c, c + clients, ...`), expecting
    /// the key's mod_revision to be `rev`.
    fn txn_put(&self, n: u64, rev: i64) -> TxnRequest {
        let Workload::TxnPut { key_size, .. } = &self.workload else {
            unreachable!("txn requests only for the txn-put workload")
        };
        let key = bench_key(n, *key_size);
        TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Mod as i32,
                key: key.clone(),
                target_union: Some(TargetUnion::ModRevision(rev)),
                ..Compare::default()
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: key.clone(),
                    value: self.value.clone(),
                    ..PutRequest::default()
                })),
            }],
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key,
                    ..RangeRequest::default()
                })),
            }],
        }
    }
}

/// etcd's key layout: the key number as a varint in a zeroed buffer of `key_size`.
fn bench_key(n: u64, key_size: usize) -> Vec<u8> {
    let mut key = vec![0u8; key_size.max(10)];
    let len = put_varint(&mut key, n as i64);
    key.truncate(key_size.max(len));
    key
}

/// Go's `binary.PutVarint`: zig-zag, then 7 bits per byte.
fn put_varint(buf: &mut [u8], v: i64) -> usize {
    let mut u = ((v << 1) ^ (v >> 63)) as u64;
    let mut i = 0;
    while u >= 0x80 {
        buf[i] = (u as u8) | 0x80;
        u >>= 7;
        i += 1;
    }
    buf[i] = u as u8;
    i + 1
}

/// The `range_end` of the keys starting with `prefix` (etcd's `GetPrefixRangeEnd`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    match KeyRange::prefix(prefix) {
        KeyRange::Between(_, end) => end,
        _ => vec![0],
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_max(MAX_LATENCY_US, 3).expect("histogram bounds")
}

fn record(h: &mut Histogram<u64>, elapsed: Duration) {
    h.saturating_record((elapsed.as_micros() as u64).clamp(1, MAX_LATENCY_US));
}

/// The watch workload's clocks, indexed by put: put `k` is the `k`-th revision after
/// `base` as long as only this benchmark writes. Times are nanoseconds since `start`, plus
/// one so that zero means "not yet".
struct Delivery {
    start: Instant,
    base: i64,
    acked: Vec<AtomicU64>,
    /// The latest arrival of the event among the watchers.
    seen: Vec<AtomicU64>,
    /// Events received by all the (prompt) watchers.
    events: AtomicU64,
}

impl Delivery {
    fn new(base: i64, puts: u64) -> Self {
        let clocks = || (0..puts).map(|_| AtomicU64::new(0)).collect();
        Delivery {
            start: Instant::now(),
            base,
            acked: clocks(),
            seen: clocks(),
            events: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64 + 1
    }

    fn index(&self, revision: i64) -> Option<usize> {
        usize::try_from(revision - self.base - 1)
            .ok()
            .filter(|&i| i < self.acked.len())
    }

    fn acked(&self, revision: i64) {
        if let Some(i) = self.index(revision) {
            self.acked[i].store(self.now(), Ordering::Relaxed);
        }
    }

    fn seen(&self, revision: i64) {
        if let Some(i) = self.index(revision) {
            self.seen[i].fetch_max(self.now(), Ordering::Relaxed);
        }
    }

    /// From acknowledgement to the last watcher, per put; an event that arrived before its
    /// put's answer counts as the shortest latency.
    fn latencies(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        for (acked, seen) in self.acked.iter().zip(&self.seen) {
            let (acked, seen) = (acked.load(Ordering::Relaxed), seen.load(Ordering::Relaxed));
            if acked > 0 && seen > 0 {
                record(&mut h, Duration::from_nanos(seen.saturating_sub(acked)));
            }
        }
        h
    }
}

struct Outcome {
    latencies: Histogram<u64>,
    /// list: whole lists, first page to last.
    lists: Option<Histogram<u64>>,
    errors: u64,
    first_error: Option<String>,
}

impl Outcome {
    fn new() -> Self {
        Outcome {
            latencies: new_histogram(),
            lists: None,
            errors: 0,
            first_error: None,
        }
    }

    fn merge(&mut self, other: Outcome) -> Result<(), String> {
        self.latencies
            .add(&other.latencies)
            .map_err(|e| e.to_string())?;
        if let Some(lists) = other.lists {
            self.lists
                .get_or_insert_with(new_histogram)
                .add(&lists)
                .map_err(|e| e.to_string())?;
        }
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        Ok(())
    }
}

/// What one client carries from request to request.
enum State {
    Stateless,
    /// txn-put: the mod_revision this client last saw for each key it owns.
    Txn(Vec<i64>),
    /// list: where the list under way continues (the key after the last one, at the
    /// revision of its first page), and when it began.
    List(Option<(Vec<u8>, i64)>, Instant),
    /// lease-keepalive: this client's stream and its leases.
    KeepAlive {
        requests: UnboundedSender<LeaseKeepAliveRequest>,
        responses: Box<Streaming<LeaseKeepAliveResponse>>,
        leases: Vec<i64>,
    },
}

struct Client {
    shared: Arc<Shared>,
    id: u64,
    rng: ChaCha8Rng,
    kv: KvClient<Channel>,
    state: State,
    /// Requests this client has sent.
    sent: usize,
}

impl Client {
    async fn new(
        shared: Arc<Shared>,
        id: u64,
        channel: Channel,
        leases: Vec<i64>,
    ) -> Result<Self, String> {
        let state = match &shared.workload {
            Workload::TxnPut { key_space_size, .. } => {
                State::Txn(vec![0; (key_space_size / shared.clients) as usize])
            }
            Workload::List { .. } => State::List(None, Instant::now()),
            Workload::LeaseKeepalive { .. } => {
                // The server answers the stream's headers with its first keepalive: send it
                // before waiting for the call.
                let (requests, rx) = unbounded();
                let first = LeaseKeepAliveRequest { id: leases[0] };
                requests.unbounded_send(first).map_err(|e| e.to_string())?;
                let mut responses = LeaseClient::new(channel.clone())
                    .lease_keep_alive(rx)
                    .await
                    .map_err(|s| format!("lease keepalive stream: {}", s.message()))?
                    .into_inner();
                responses
                    .message()
                    .await
                    .map_err(|s| format!("lease keepalive: {}", s.message()))?;
                State::KeepAlive {
                    requests,
                    responses: Box::new(responses),
                    leases,
                }
            }
            _ => State::Stateless,
        };
        Ok(Client {
            shared,
            id,
            rng: detcd::runtime::seeded_rng(id),
            kv: KvClient::new(channel),
            state,
            sent: 0,
        })
    }

    async fn run(mut self) -> Outcome {
        let mut out = Outcome::new();
        let shared = self.shared.clone();
        loop {
            let i = shared.next.fetch_add(1, Ordering::Relaxed);
            if i >= shared.total || shared.stop.load(Ordering::Relaxed) {
                return out;
            }
            let start = Instant::now();
            let result = self.request(i, &mut out).await;
            self.sent += 1;
            shared.done.fetch_add(1, Ordering::Relaxed);
            match result {
                Ok(()) => record(&mut out.latencies, start.elapsed()),
                Err(status) => {
                    out.errors += 1;
                    out.first_error
                        .get_or_insert_with(|| status.message().to_string());
                }
            }
        }
    }

    async fn request(&mut self, i: u64, out: &mut Outcome) -> Result<(), Status> {
        let shared = self.shared.clone();
        match (&shared.workload, &mut self.state) {
            (Workload::Put { .. }, _) => self.kv.put(shared.put(i, &mut self.rng)).await.map(drop),
            (Workload::TxnPut { .. }, State::Txn(revs)) => {
                let slot = self.sent % revs.len();
                let n = self.id + shared.clients * slot as u64;
                let resp = self
                    .kv
                    .txn(shared.txn_put(n, revs[slot]))
                    .await?
                    .into_inner();
                if resp.succeeded {
                    revs[slot] = resp.header.map_or(0, |h| h.revision);
                    return Ok(());
                }
                // Catch up with what the store holds, as Kubernetes retries would.
                revs[slot] = match resp.responses.into_iter().next().and_then(|r| r.response) {
                    Some(Response::ResponseRange(r)) => {
                        r.kvs.first().map_or(0, |kv| kv.mod_revision)
                    }
                    _ => 0,
                };
                Err(Status::aborted(format!(
                    "txn compare failed: key {n} was not at the mod_revision this client wrote"
                )))
            }
            (
                Workload::Range {
                    key,
                    end,
                    consistency,
                    limit,
                },
                _,
            ) => self
                .kv
                .range(RangeRequest {
                    key: key.clone().into_bytes(),
                    range_end: end.clone().map(String::into_bytes).unwrap_or_default(),
                    serializable: *consistency == Consistency::S,
                    limit: *limit,
                    ..RangeRequest::default()
                })
                .await
                .map(drop),
            (
                Workload::List {
                    prefix,
                    limit,
                    count_only,
                    consistency,
                },
                State::List(cursor, began),
            ) => {
                let prefix = prefix.as_bytes();
                let (key, revision) = match cursor.take() {
                    Some(at) => at,
                    None => {
                        *began = Instant::now();
                        (prefix.to_vec(), 0)
                    }
                };
                let resp = self
                    .kv
                    .range(RangeRequest {
                        key,
                        range_end: prefix_end(prefix),
                        limit: if *count_only { 0 } else { *limit },
                        revision,
                        count_only: *count_only,
                        serializable: *consistency == Consistency::S,
                        ..RangeRequest::default()
                    })
                    .await?
                    .into_inner();
                match resp.kvs.last() {
                    Some(last) if resp.more => {
                        // The header has the store's revision, which moves on: only the
                        // first page's is the list's.
                        let revision = match revision {
                            0 => resp.header.map_or(0, |h| h.revision),
                            fixed => fixed,
                        };
                        let mut next = last.key.clone();
                        next.push(0);
                        *cursor = Some((next, revision));
                    }
                    _ if !*count_only => {
                        record(out.lists.get_or_insert_with(new_histogram), began.elapsed())
                    }
                    _ => {}
                }
                Ok(())
            }
            (
                Workload::Watch {
                    prefix, val_size, ..
                },
                _,
            ) => {
                let resp = self
                    .kv
                    .put(PutRequest {
                        key: format!("{prefix}{i}").into_bytes(),
                        value: shared.value[..*val_size].to_vec(),
                        ..PutRequest::default()
                    })
                    .await?
                    .into_inner();
                if let (Some(delivery), Some(header)) = (&shared.delivery, resp.header) {
                    delivery.acked(header.revision);
                }
                Ok(())
            }
            (
                Workload::LeaseKeepalive { .. },
                State::KeepAlive {
                    requests,
                    responses,
                    leases,
                },
            ) => {
                let id = leases[self.sent % leases.len()];
                requests
                    .unbounded_send(LeaseKeepAliveRequest { id })
                    .map_err(|_| Status::unavailable("keepalive stream closed"))?;
                match responses.message().await? {
                    Some(resp) if resp.ttl > 0 => Ok(()),
                    Some(_) => Err(Status::not_found(format!("lease {id:x} expired"))),
                    None => Err(Status::unavailable("keepalive stream ended")),
                }
            }
            _ => unreachable!("each workload's clients carry that workload's state"),
        }
    }
}

/// How a watch stream's reader treats what arrives.
enum Reader {
    /// Stamps each event's arrival.
    Prompt(Arc<Delivery>),
    /// Pauses this long after every response.
    Slow(Duration),
}

/// Opens a watch stream with `watchers` watchers on `prefix`; returns once all are created.
async fn open_watch_stream(
    channel: Channel,
    prefix: &str,
    watchers: usize,
) -> Result<(UnboundedSender<WatchRequest>, Streaming<WatchResponse>), String> {
    let (requests, rx) = unbounded();
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(prefix.as_bytes()),
            ..WatchCreateRequest::default()
        })),
    };
    // Sent before the call: a server may hold the stream's headers until it has an answer.
    for _ in 0..watchers {
        requests
            .unbounded_send(create.clone())
            .map_err(|e| e.to_string())?;
    }
    let mut responses = WatchClient::new(channel)
        .watch(rx)
        .await
        .map_err(|s| format!("watch: {}", s.message()))?
        .into_inner();
    let mut created = 0;
    while created < watchers {
        match responses.message().await {
            Ok(Some(r)) if r.canceled => {
                return Err(format!("watch canceled: {}", r.cancel_reason))
            }
            Ok(Some(r)) => created += usize::from(r.created),
            Ok(None) => return Err("watch stream ended before its watchers were created".into()),
            Err(s) => return Err(format!("watch: {}", s.message())),
        }
    }
    Ok((requests, responses))
}

/// Reads a watch stream until it ends or the task is aborted. `_requests` keeps the
/// stream's sending half open: closing it would end the watchers.
async fn read_watch_stream(
    _requests: UnboundedSender<WatchRequest>,
    mut responses: Streaming<WatchResponse>,
    reader: Reader,
) {
    while let Ok(Some(resp)) = responses.message().await {
        match &reader {
            Reader::Prompt(delivery) => {
                for kv in resp.events.iter().filter_map(|e| e.kv.as_ref()) {
                    delivery.seen(kv.mod_revision);
                }
                delivery
                    .events
                    .fetch_add(resp.events.len() as u64, Ordering::Relaxed);
            }
            Reader::Slow(pause) => tokio::time::sleep(*pause).await,
        }
    }
}

/// Starts the watch workload's watchers, on connections of their own; returns their reader
/// tasks once every watcher is created.
async fn start_watchers(
    endpoints: &[String],
    workload: &Workload,
    delivery: &Arc<Delivery>,
) -> Result<Vec<JoinHandle<()>>, String> {
    let Workload::Watch {
        watchers,
        streams,
        watch_conns,
        slow_watchers,
        slow_read_ms,
        prefix,
        ..
    } = workload
    else {
        return Ok(Vec::new());
    };
    let conns = connect_all(endpoints, *watch_conns).await?;
    let mut plan: Vec<(Channel, usize, Reader)> = (0..*streams)
        .map(|s| {
            let n = watchers / streams + usize::from(s < watchers % streams);
            (
                conns[s % conns.len()].clone(),
                n,
                Reader::Prompt(delivery.clone()),
            )
        })
        .filter(|(_, n, _)| *n > 0)
        .collect();
    if *slow_watchers > 0 {
        let slow = connect_all(endpoints, 1).await?.remove(0);
        let pause = Duration::from_millis(*slow_read_ms);
        plan.extend((0..*slow_watchers).map(|_| (slow.clone(), 1, Reader::Slow(pause))));
    }
    futures::future::try_join_all(plan.into_iter().map(|(channel, n, reader)| async move {
        let (requests, responses) = open_watch_stream(channel, prefix, n).await?;
        Ok(tokio::spawn(read_watch_stream(requests, responses, reader)))
    }))
    .await
}

/// Waits, polling, until the prompt watchers have received `expected` events or the
/// deadline passes; returns how many are missing.
async fn await_delivery(delivery: &Delivery, expected: u64) -> u64 {
    let deadline = Instant::now() + DELIVERY_DEADLINE;
    loop {
        let got = delivery.events.load(Ordering::Relaxed);
        if got >= expected || Instant::now() >= deadline {
            return expected.saturating_sub(got);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Grants `leases` leases, client `c` getting every `clients`-th from `c` on: each client's
/// lease IDs.
async fn grant_leases(
    channels: &[Channel],
    clients: usize,
    leases: u64,
    ttl: i64,
) -> Result<Vec<Vec<i64>>, String> {
    futures::future::try_join_all((0..clients).map(|c| {
        let mut lease = LeaseClient::new(channels[c % channels.len()].clone());
        async move {
            let mut ids = Vec::new();
            for _ in (c as u64..leases).step_by(clients) {
                let resp = lease
                    .lease_grant(LeaseGrantRequest { ttl, id: 0 })
                    .await
                    .map_err(|s| format!("lease grant: {}", s.message()))?
                    .into_inner();
                if !resp.error.is_empty() {
                    return Err(format!("lease grant: {}", resp.error));
                }
                ids.push(resp.id);
            }
            Ok(ids)
        }
    }))
    .await
}

async fn current_revision(channel: &Channel) -> Result<i64, String> {
    let resp = KvClient::new(channel.clone())
        .range(RangeRequest {
            key: vec![0],
            count_only: true,
            ..RangeRequest::default()
        })
        .await
        .map_err(|s| format!("range: {}", s.message()))?
        .into_inner();
    Ok(resp.header.map_or(0, |h| h.revision))
}

/// Redraws `done/total, rate` on stderr until aborted.
async fn progress(shared: Arc<Shared>, start: Instant) {
    let mut stderr = std::io::stderr();
    loop {
        tokio::time::sleep(PROGRESS_EVERY).await;
        let done = shared.done.load(Ordering::Relaxed);
        let rate = done as f64 / start.elapsed().as_secs_f64();
        let _ = write!(stderr, "\r{done}/{} requests, {rate:.0}/s   ", shared.total);
        let _ = stderr.flush();
    }
}

async fn connect(url: &str) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| format!("{url}: {e}"))?;
    let deadline = Instant::now() + CONNECT_DEADLINE;
    loop {
        match endpoint.connect().await {
            Ok(channel) => return Ok(channel),
            Err(e) if Instant::now() >= deadline => return Err(format!("{url}: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// `conns` connections, round-robin over the endpoints.
async fn connect_all(endpoints: &[String], conns: usize) -> Result<Vec<Channel>, String> {
    let mut channels = Vec::with_capacity(conns);
    for c in 0..conns {
        channels.push(connect(&endpoints[c % endpoints.len()]).await?);
    }
    Ok(channels)
}

/// Clients `0..leases.len()` of `shared`'s workload, round-robin over `channels`, the
/// `c`-th with the leases `leases[c]`.
async fn new_clients(
    shared: &Arc<Shared>,
    channels: &[Channel],
    leases: Vec<Vec<i64>>,
) -> Result<Vec<JoinHandle<Outcome>>, String> {
    let clients = futures::future::try_join_all(leases.into_iter().enumerate().map(|(c, l)| {
        Client::new(
            shared.clone(),
            c as u64,
            channels[c % channels.len()].clone(),
            l,
        )
    }))
    .await?;
    Ok(clients.into_iter().map(|c| tokio::spawn(c.run())).collect())
}

async fn join_clients(tasks: Vec<JoinHandle<Outcome>>) -> Result<Outcome, String> {
    let mut all = Outcome::new();
    for t in tasks {
        all.merge(t.await.map_err(|e| e.to_string())?)?;
    }
    Ok(all)
}

/// CPU seconds (user + system) used so far by this process and by the servers together.
struct CpuTimes {
    client: f64,
    servers: Option<f64>,
}

impl CpuTimes {
    fn read(server_pids: &[u32]) -> Result<CpuTimes, String> {
        let servers = match server_pids {
            [] => None,
            pids => Some(
                pids.iter()
                    .map(|pid| cpu_seconds(&pid.to_string()))
                    .sum::<Result<f64, String>>()?,
            ),
        };
        Ok(CpuTimes {
            client: cpu_seconds("self")?,
            servers,
        })
    }

    /// `client_cpu_us_per_req` and `server_cpu_us_per_req` since `before`, over `ok`
    /// requests, into `map`.
    fn since(&self, before: &CpuTimes, ok: u64, map: &mut Map<String, Value>) {
        let per_req = |secs: f64| secs * 1e6 / ok.max(1) as f64;
        map.insert(
            "client_cpu_us_per_req".into(),
            json!(per_req(self.client - before.client)),
        );
        if let (Some(now), Some(then)) = (self.servers, before.servers) {
            map.insert("server_cpu_us_per_req".into(), json!(per_req(now - then)));
        }
    }
}

/// User + system CPU seconds of process `pid` ("self" for this one), from /proc/PID/stat.
fn cpu_seconds(pid: &str) -> Result<f64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // Fields after the command name, which is in parentheses and may hold spaces: the
    // state is field 3, utime and stime fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| -> Result<u64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("{path}: no CPU time in field {}", i + 3))
    };
    // SAFETY: sysconf only reads a configuration value.
    let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((ticks(11)? + ticks(12)?) as f64 / per_sec)
}

/// One run's figures: the requests' and the workload's own (event latency, whole lists,
/// the --with-puts writers), by name.
struct Summary {
    outcome: Outcome,
    elapsed: f64,
    extra: Map<String, Value>,
}

/// `{name}p50_ms`, p90, p99 and max of `h` into `map`.
fn percentiles(map: &mut Map<String, Value>, name: &str, h: &Histogram<u64>) {
    let ms = |us: u64| us as f64 / 1000.0;
    for (q, label) in [(0.5, "p50"), (0.9, "p90"), (0.99, "p99")] {
        map.insert(
            format!("{name}{label}_ms"),
            json!(ms(h.value_at_quantile(q))),
        );
    }
    map.insert(format!("{name}max_ms"), json!(ms(h.max())));
}

impl Summary {
    fn json(&self, args: &Args) -> Map<String, Value> {
        let ok = self.outcome.latencies.len();
        let mut map = Map::new();
        map.insert("clients".into(), json!(args.clients));
        map.insert("conns".into(), json!(args.conns));
        map.insert("ok".into(), json!(ok));
        map.insert("errors".into(), json!(self.outcome.errors));
        map.insert("seconds".into(), json!(self.elapsed));
        map.insert("requests_per_sec".into(), json!(ok as f64 / self.elapsed));
        percentiles(&mut map, "", &self.outcome.latencies);
        map.insert("first_error".into(), json!(self.outcome.first_error));
        map.extend(self.extra.clone());
        map
    }
}

async fn run_once(args: &Args, endpoints: &[String]) -> Result<Summary, String> {
    let channels = connect_all(endpoints, args.conns).await?;
    let mut extra = Map::new();
    let setup = Instant::now();
    let delivery = match &args.workload {
        Workload::Watch { .. } => {
            let base = current_revision(&channels[0]).await?;
            Some(Arc::new(Delivery::new(base, args.total)))
        }
        _ => None,
    };
    let watchers = match &delivery {
        Some(delivery) => start_watchers(endpoints, &args.workload, delivery).await?,
        None => Vec::new(),
    };
    let leases = match &args.workload {
        Workload::LeaseKeepalive { leases, ttl } => {
            grant_leases(&channels, args.clients, *leases, *ttl).await?
        }
        _ => vec![Vec::new(); args.clients],
    };
    if delivery.is_some() || !leases[0].is_empty() {
        extra.insert("setup_seconds".into(), json!(setup.elapsed().as_secs_f64()));
    }
    let background = match args.with_puts {
        0 => None,
        n => {
            let workload = Workload::Put {
                key_size: 8,
                val_size: args.with_puts_val_size,
                val_size_max: None,
                key_space_size: BACKGROUND_KEY_SPACE,
                sequential_keys: true,
                keys: KeyLayout::Etcd,
            };
            let shared = Arc::new(Shared::new(workload, u64::MAX, n, None));
            let channels = connect_all(endpoints, n.div_ceil(10)).await?;
            let tasks = new_clients(&shared, &channels, vec![Vec::new(); n]).await?;
            Some((shared, tasks, Instant::now()))
        }
    };

    let shared = Arc::new(Shared::new(
        args.workload.clone(),
        args.total,
        args.clients,
        delivery.clone(),
    ));
    let tasks = new_clients(&shared, &channels, leases).await?;
    let cpu_before = CpuTimes::read(&args.server_pids)?;
    let start = Instant::now();
    let progress = std::io::stderr()
        .is_terminal()
        .then(|| tokio::spawn(progress(shared.clone(), start)));
    let outcome = join_clients(tasks).await?;
    let elapsed = start.elapsed().as_secs_f64();
    CpuTimes::read(&args.server_pids)?.since(&cpu_before, outcome.latencies.len(), &mut extra);
    if let Some(p) = progress {
        p.abort();
        eprint!("\r\x1b[K");
    }

    if let Some((shared, tasks, started)) = background {
        shared.stop.store(true, Ordering::Relaxed);
        let writes = join_clients(tasks).await?;
        let rate = writes.latencies.len() as f64 / started.elapsed().as_secs_f64();
        extra.insert("with_puts_per_sec".into(), json!(rate));
        extra.insert("with_puts_errors".into(), json!(writes.errors));
        percentiles(&mut extra, "with_puts_", &writes.latencies);
    }
    if let (Some(delivery), Workload::Watch { watchers: n, .. }) = (&delivery, &args.workload) {
        let expected = outcome.latencies.len() * *n as u64;
        let missing = await_delivery(delivery, expected).await;
        watchers.iter().for_each(JoinHandle::abort);
        extra.insert("events_missing".into(), json!(missing));
        percentiles(&mut extra, "event_", &delivery.latencies());
    }
    if let Some(lists) = &outcome.lists {
        extra.insert("lists".into(), json!(lists.len()));
        percentiles(&mut extra, "list_", lists);
    }
    Ok(Summary {
        outcome,
        elapsed,
        extra,
    })
}

fn validate(args: &Args) -> Result<(), String> {
    if args.conns == 0 || args.clients == 0 || args.endpoints.is_empty() {
        return Err("--conns, --clients and --endpoints must not be empty or zero".into());
    }
    let clients = args.clients as u64;
    match &args.workload {
        Workload::Put {
            key_space_size: 0, ..
        } => Err("--key-space-size must be at least 1".into()),
        Workload::TxnPut { key_space_size, .. } if *key_space_size < clients => {
            Err("txn-put: --key-space-size must be at least --clients".into())
        }
        Workload::List {
            limit, count_only, ..
        } if *limit <= 0 && !count_only => Err("list: --limit must be at least 1".into()),
        Workload::Watch {
            streams,
            watch_conns,
            ..
        } if *streams == 0 || *watch_conns == 0 => {
            Err("watch: --streams and --watch-conns must be at least 1".into())
        }
        Workload::LeaseKeepalive { leases, .. } if *leases < clients => {
            Err("lease-keepalive: --leases must be at least --clients".into())
        }
        _ if args.compare.is_some() && args.rounds == 0 => {
            Err("--rounds must be at least 1".into())
        }
        _ if args.compare.is_some() && !args.server_pids.is_empty() => {
            Err("--server-pids cannot be used with --compare: the sides are other servers".into())
        }
        _ => Ok(()),
    }
}

async fn run(args: Args) -> Result<(), String> {
    validate(&args)?;
    if let Some(sides) = &args.compare {
        return compare(&args, sides).await;
    }
    let summary = run_once(&args, &args.endpoints).await?;
    if args.json {
        println!("{}", Value::Object(summary.json(&args)));
    } else {
        report(&summary);
    }
    Ok(())
}

/// Median, min and max of `values` (not empty).
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
}

/// Alternates runs between the two endpoint sets and prints, for every figure of the
/// summary, each side's median with min-max and B / A.
async fn compare(args: &Args, sides: &[String]) -> Result<(), String> {
    let endpoints: Vec<Vec<String>> = sides
        .iter()
        .map(|s| s.split(',').map(str::to_string).collect())
        .collect();
    let mut runs: [Vec<Map<String, Value>>; 2] = Default::default();
    for round in 1..=args.rounds {
        for (side, name) in ["A", "B"].into_iter().enumerate() {
            let summary = run_once(args, &endpoints[side]).await?.json(args);
            eprintln!(
                "round {round}/{} {name}: {:.0} requests/s, p99 {} ms, {} errors",
                args.rounds,
                summary["requests_per_sec"].as_f64().unwrap_or(0.0),
                summary["p99_ms"],
                summary["errors"],
            );
            runs[side].push(summary);
        }
    }
    let figures: Vec<&String> = runs[0][0]
        .iter()
        .filter(|(k, v)| v.is_number() && !matches!(k.as_str(), "clients" | "conns"))
        .map(|(k, _)| k)
        .collect();
    let mut table = BTreeMap::new();
    for key in figures {
        let [a, b] = [0, 1].map(|side| {
            spread(
                runs[side]
                    .iter()
                    .filter_map(|r| r.get(key).and_then(Value::as_f64))
                    .collect(),
            )
        });
        table.insert(key.clone(), (a, b));
    }
    if args.json {
        let side = |s: usize| {
            let medians: Map<String, Value> = table
                .iter()
                .map(|(k, (a, b))| (k.clone(), json!([a, b][s].0)))
                .collect();
            json!({ "endpoints": sides[s], "median": medians, "runs": runs[s] })
        };
        let ratio: Map<String, Value> = table
            .iter()
            .filter(|(_, (a, _))| a.0 != 0.0)
            .map(|(k, (a, b))| (k.clone(), json!(b.0 / a.0)))
            .collect();
        println!(
            "{}",
            json!({ "a": side(0), "b": side(1), "ratio_b_a": ratio })
        );
        return Ok(());
    }
    println!("A: {}\nB: {}", sides[0], sides[1]);
    println!("medians of {} rounds [min-max]", args.rounds);
    println!("{:<24}{:>30}{:>30}{:>9}", "figure", "A", "B", "B / A");
    for (key, (a, b)) in &table {
        let cell = |(m, lo, hi): (f64, f64, f64)| format!("{m:.2} [{lo:.2}-{hi:.2}]");
        let ratio = match a.0 {
            0.0 => "-".to_string(),
            a => format!("{:.2}x", b.0 / a),
        };
        println!("{key:<24}{:>30}{:>30}{ratio:>9}", cell(*a), cell(*b));
    }
    Ok(())
}

fn report(summary: &Summary) {
    let latencies = &summary.outcome.latencies;
    let elapsed = summary.elapsed;
    let ms = |us: u64| us as f64 / 1000.0;
    println!("Summary:");
    println!("  Total:\t{elapsed:.4} secs.");
    println!("  Slowest:\t{:.4} ms.", ms(latencies.max()));
    println!("  Fastest:\t{:.4} ms.", ms(latencies.min()));
    println!("  Average:\t{:.4} ms.", latencies.mean() / 1000.0);
    println!("  Stddev:\t{:.4} ms.", latencies.stdev() / 1000.0);
    println!("  Requests/sec:\t{:.2}", latencies.len() as f64 / elapsed);
    println!("  Errors:\t{}", summary.outcome.errors);
    if let Some(e) = &summary.outcome.first_error {
        println!("  First error:\t{e}");
    }
    println!("\nLatency distribution:");
    for q in [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9] {
        let v = latencies.value_at_percentile(q);
        println!("  {q}% in {:.4} ms.", ms(v));
    }
    if !summary.extra.is_empty() {
        println!("\nWorkload:");
        for (k, v) in &summary.extra {
            match v.as_f64() {
                Some(x) if v.is_f64() => println!("  {k}:\t{x:.4}"),
                _ => println!("  {k}:\t{v}"),
            }
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("detcd-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{put_varint, spread};

    /// Keys must match etcd's benchmark byte for byte, so both stores see the same keys.
    #[test]
    fn varint_matches_go() {
        let mut buf = [0u8; 10];
        assert_eq!(put_varint(&mut buf, 0), 1);
        assert_eq!(buf[0], 0);
        assert_eq!(put_varint(&mut buf, 1), 1);
        assert_eq!(buf[0], 2);
        assert_eq!(put_varint(&mut buf, 64), 2);
        assert_eq!(&buf[..2], &[0x80, 0x01]);
        assert_eq!(put_varint(&mut buf, -1), 1);
        assert_eq!(buf[0], 1);
    }

    #[test]
    fn spread_takes_the_middle() {
        assert_eq!(spread(vec![3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(spread(vec![4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
    }
}
