//! `detcd-bench`: load for any etcd v3 endpoint, after etcd's `benchmark` tool.
//!
//! `--conns` gRPC connections are shared round-robin by `--clients` concurrent clients;
//! each client sends its next request as soon as the previous one is answered, until
//! `--total` requests are done. Latencies go into an HDR histogram, so the summary's
//! percentiles are exact to three significant digits without keeping every sample.
//! The same binary drives etcd and detcd, which is what makes their figures comparable.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use detcd::proto::etcdserverpb::kv_client::KvClient;
use detcd::proto::etcdserverpb::{PutRequest, RangeRequest};
use hdrhistogram::Histogram;
use rand::Rng;
use tonic::transport::{Channel, Endpoint};

/// Latencies are recorded in microseconds, up to a minute.
const MAX_LATENCY_US: u64 = 60_000_000;
/// How long to wait for the first connection.
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);

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
    total: u64,
    workload: Workload,
    value: Vec<u8>,
}

impl Shared {
    /// etcd's key layout: the key number as a varint in a zeroed buffer of `key_size`.
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
        let mut key = vec![0u8; (*key_size).max(10)];
        let len = put_varint(&mut key, n as i64);
        key.truncate((*key_size).max(len));
        PutRequest {
            key,
            value: self.value.clone(),
            ..PutRequest::default()
        }
    }
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

async fn client(mut kv: KvClient<Channel>, shared: Arc<Shared>, seed: u64) -> Outcome {
    let mut rng = detcd::runtime::seeded_rng(seed);
    let mut out = Outcome {
        latencies: Histogram::new_with_max(MAX_LATENCY_US, 3).expect("histogram bounds"),
        errors: 0,
        first_error: None,
    };
    loop {
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        if i >= shared.total {
            return out;
        }
        let start = Instant::now();
        let result = match &shared.workload {
            Workload::Put { .. } => kv.put(shared.put(i, &mut rng)).await.map(drop),
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
        let micros = start.elapsed().as_micros() as u64;
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
    if let Workload::Put { key_space_size, .. } = args.workload {
        if key_space_size == 0 {
            return Err("--key-space-size must be at least 1".into());
        }
    }
    let mut channels = Vec::with_capacity(args.conns);
    for c in 0..args.conns {
        channels.push(connect(&args.endpoints[c % args.endpoints.len()]).await?);
    }
    let value = match &args.workload {
        Workload::Put { val_size, .. } => {
            let mut rng = detcd::runtime::seeded_rng(0);
            (0..*val_size)
                .map(|_| rng.random_range(b'a'..=b'z'))
                .collect()
        }
        Workload::Range { .. } => Vec::new(),
    };
    let shared = Arc::new(Shared {
        next: AtomicU64::new(0),
        total: args.total,
        workload: args.workload.clone(),
        value,
    });
    let start = Instant::now();
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
