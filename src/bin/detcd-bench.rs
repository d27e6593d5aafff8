//! `detcd-bench`: load for any etcd v3 endpoint, after etcd's `benchmark` tool.
//!
//! `--conns` gRPC connections are shared round-robin by `--clients` concurrent clients;
//! each client sends its next request as soon as the previous one is answered, until
//! `--total` requests are done. Latencies go into an HDR histogram, so the summary's
//! percentiles are exact to three significant digits without keeping every sample.
//! The same binary drives etcd and detcd, which is what makes their figures comparable.
//! On a terminal, a progress line on stderr shows requests done and the rate so far.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use detcd::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use detcd::proto::etcdserverpb::kv_client::KvClient;
use detcd::proto::etcdserverpb::response_op::Response;
use detcd::proto::etcdserverpb::{
    request_op, Compare, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use hdrhistogram::Histogram;
use rand::Rng;
use tonic::transport::{Channel, Endpoint};

/// Latencies are recorded in microseconds, up to a minute.
const MAX_LATENCY_US: u64 = 60_000_000;
/// How long to wait for the first connection.
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);
/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

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
        /// Distinct keys written.
        #[arg(long, default_value_t = 1)]
        key_space_size: u64,
        /// Keys in order instead of at random from the key space.
        #[arg(long)]
        sequential_keys: bool,
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
}

#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
enum Consistency {
    L,
    S,
}

/// What every client needs: the next request number, and how to make request `i`.
struct Shared {
    next: AtomicU64,
    /// Requests answered (ok or error), for the progress line.
    done: AtomicU64,
    total: u64,
    clients: u64,
    workload: Workload,
    value: Vec<u8>,
}

impl Shared {
    fn put(&self, i: u64, rng: &mut impl Rng) -> PutRequest {
        let Workload::Put {
            key_size,
            key_space_size,
            sequential_keys,
            ..
        } = &self.workload
        else {
            unreachable!("put requests only for the put workload")
        };
        let n = if *sequential_keys {
            i % key_space_size
        } else {
            rng.random_range(0..*key_space_size)
        };
        PutRequest {
            key: bench_key(n, *key_size),
            value: self.value.clone(),
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

struct Outcome {
    latencies: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

async fn client(mut kv: KvClient<Channel>, shared: Arc<Shared>, id: u64) -> Outcome {
    let mut rng = detcd::runtime::seeded_rng(id);
    let mut out = Outcome {
        latencies: Histogram::new_with_max(MAX_LATENCY_US, 3).expect("histogram bounds"),
        errors: 0,
        first_error: None,
    };
    // txn-put: the mod_revision this client last saw for each key it owns.
    let mut revs = match &shared.workload {
        Workload::TxnPut { key_space_size, .. } => {
            vec![0i64; (key_space_size / shared.clients) as usize]
        }
        _ => Vec::new(),
    };
    let mut sent = 0usize;
    loop {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if i >= shared.total {
            return out;
        }
        let start = Instant::now();
        let result = match &shared.workload {
            Workload::Put { .. } => kv.put(shared.put(i, &mut rng)).await.map(drop),
            Workload::TxnPut { .. } => {
                let slot = sent % revs.len();
                let n = id + shared.clients * slot as u64;
                match kv.txn(shared.txn_put(n, revs[slot])).await {
                    Ok(resp) => {
                        let resp = resp.into_inner();
                        if resp.succeeded {
                            revs[slot] = resp.header.map_or(0, |h| h.revision);
                            Ok(())
                        } else {
                            // Catch up with what the store holds, as Kubernetes retries would.
                            revs[slot] =
                                match resp.responses.into_iter().next().and_then(|r| r.response) {
                                    Some(Response::ResponseRange(r)) => {
                                        r.kvs.first().map_or(0, |kv| kv.mod_revision)
                                    }
                                    _ => 0,
                                };
                            Err(tonic::Status::aborted(format!(
                                "txn compare failed: key {n} was not at the mod_revision this client wrote"
                            )))
                        }
                    }
                    Err(status) => Err(status),
                }
            }
            Workload::Range {
                key,
                end,
                consistency,
                limit,
            } => kv
                .range(RangeRequest {
                    key: key.clone().into_bytes(),
                    range_end: end.clone().map(String::into_bytes).unwrap_or_default(),
                    serializable: *consistency == Consistency::S,
                    limit: *limit,
                    ..RangeRequest::default()
                })
                .await
                .map(drop),
        };
        sent += 1;
        let micros = start.elapsed().as_micros() as u64;
        shared.done.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => out
                .latencies
                .saturating_record(micros.clamp(1, MAX_LATENCY_US)),
            Err(status) => {
                out.errors += 1;
                out.first_error
                    .get_or_insert_with(|| status.message().to_string());
            }
        }
    }
}

/// Redraws `done/total, rate` on stderr until every request is answered.
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

async fn run(args: Args) -> Result<(), String> {
    if args.conns == 0 || args.clients == 0 || args.endpoints.is_empty() {
        return Err("--conns, --clients and --endpoints must not be empty or zero".into());
    }
    match args.workload {
        Workload::Put {
            key_space_size: 0, ..
        } => {
            return Err("--key-space-size must be at least 1".into());
        }
        Workload::TxnPut { key_space_size, .. } if key_space_size < args.clients as u64 => {
            return Err("txn-put: --key-space-size must be at least --clients".into());
        }
        _ => {}
    }
    let mut channels = Vec::with_capacity(args.conns);
    for c in 0..args.conns {
        channels.push(connect(&args.endpoints[c % args.endpoints.len()]).await?);
    }
    let value = match &args.workload {
        Workload::Put { val_size, .. } | Workload::TxnPut { val_size, .. } => {
            let mut rng = detcd::runtime::seeded_rng(0);
            (0..*val_size)
                .map(|_| rng.random_range(b'a'..=b'z'))
                .collect()
        }
        Workload::Range { .. } => Vec::new(),
    };
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        done: AtomicU64::new(0),
        total: args.total,
        clients: args.clients as u64,
        workload: args.workload.clone(),
        value,
    });
    let start = Instant::now();
    let progress = std::io::stderr()
        .is_terminal()
        .then(|| tokio::spawn(progress(shared.clone(), start)));
    let tasks: Vec<_> = (0..args.clients)
        .map(|c| {
            let kv = KvClient::new(channels[c % channels.len()].clone());
            tokio::spawn(client(kv, shared.clone(), c as u64))
        })
        .collect();
    let mut latencies = Histogram::<u64>::new_with_max(MAX_LATENCY_US, 3).expect("bounds");
    let mut errors = 0;
    let mut first_error = None;
    for t in tasks {
        let out = t.await.map_err(|e| e.to_string())?;
        latencies.add(&out.latencies).map_err(|e| e.to_string())?;
        errors += out.errors;
        first_error = first_error.or(out.first_error);
    }
    let elapsed = start.elapsed().as_secs_f64();
    if let Some(p) = progress {
        p.abort();
        eprint!("\r\x1b[K");
    }
    report(&args, &latencies, errors, first_error, elapsed);
    Ok(())
}

fn report(
    args: &Args,
    latencies: &Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
    elapsed: f64,
) {
    let ms = |us: u64| us as f64 / 1000.0;
    let rate = latencies.len() as f64 / elapsed;
    if args.json {
        let summary = serde_json::json!({
            "clients": args.clients,
            "conns": args.conns,
            "ok": latencies.len(),
            "errors": errors,
            "seconds": elapsed,
            "requests_per_sec": rate,
            "p50_ms": ms(latencies.value_at_quantile(0.50)),
            "p90_ms": ms(latencies.value_at_quantile(0.90)),
            "p99_ms": ms(latencies.value_at_quantile(0.99)),
            "max_ms": ms(latencies.max()),
            "first_error": first_error,
        });
        println!("{summary}");
        return;
    }
    println!("Summary:");
    println!("  Total:\t{elapsed:.4} secs.");
    println!("  Slowest:\t{:.4} ms.", ms(latencies.max()));
    println!("  Fastest:\t{:.4} ms.", ms(latencies.min()));
    println!("  Average:\t{:.4} ms.", latencies.mean() / 1000.0);
    println!("  Stddev:\t{:.4} ms.", latencies.stdev() / 1000.0);
    println!("  Requests/sec:\t{rate:.2}");
    println!("  Errors:\t{errors}");
    if let Some(e) = first_error {
        println!("  First error:\t{e}");
    }
    println!("\nLatency distribution:");
    for q in [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9] {
        let v = latencies.value_at_percentile(q);
        println!("  {q}% in {:.4} ms.", ms(v));
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
    use super::put_varint;

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
}
