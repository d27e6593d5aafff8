//! `detcd-check jepsen`: a Jepsen-style test against real detcd processes.
//!
//! Starts a cluster on loopback with a proxy on every peer link, runs the register
//! workload while the nemesis injects faults, heals everything, waits until every member
//! has the same HashKV at the same revision, and checks the history. The run directory
//! keeps `history.jsonl`, `nemesis.jsonl`, `summary.json` and each member's data and log.
//!
//! Exit status: 0 linearizable and converged, 1 not linearizable or not converged, 2 the
//! runner could not run (e.g. the cluster never became ready), 3 the check ran out of time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use detcd::proto::etcdserverpb::kv_client::KvClient;
use detcd::runtime::{entropy_seed, seeded_rng};
use detcd_check::budget::DEFAULT_MEMORY_BYTES;
use detcd_check::client::{channel, Recorder};
use detcd_check::fault::Fault;
use detcd_check::history::{from_events, Event};
use detcd_check::{Model, Verdict};

use crate::Limits;
use futures::future::join_all;
use serde_json::json;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::nemesis::{parse_fault, Nemesis};
use crate::workload::{client, Workload};

/// How long a new cluster may take to elect a leader and accept a write.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// How long a healed cluster may take to agree on one revision and hash.
const CONVERGE_DEADLINE: Duration = Duration::from_secs(60);

#[derive(clap::Args)]
pub struct JepsenArgs {
    /// Members in the cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=9))]
    members: u8,
    /// Seconds of workload and faults.
    #[arg(long, default_value_t = 60.0)]
    time_limit: f64,
    /// Faults to inject, comma separated: kill, pause, partition, isolate.
    #[arg(
        long,
        value_parser = parse_fault,
        value_delimiter = ',',
        default_value = "kill,pause,partition,isolate"
    )]
    nemesis: Vec<Fault>,
    /// Also change membership while the faults run: remove a member, add it back as a
    /// learner, promote it, one step every interval (see the nemesis).
    #[arg(long)]
    membership: bool,
    /// Seconds between faults, and how long each is held.
    #[arg(long, default_value_t = 5.0)]
    nemesis_interval: f64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 5)]
    concurrency: usize,
    /// Registers (keys) the clients share.
    #[arg(long, default_value_t = 3)]
    keys: usize,
    /// Seconds a client waits for an answer before recording the outcome as unknown.
    #[arg(long, default_value_t = 1.0)]
    op_timeout: f64,
    /// Seed of the workload and the fault schedule [default: random].
    #[arg(long)]
    seed: Option<u64>,
    /// Run directory [default: a new directory under ./jepsen-runs].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The detcd binary [default: next to this one].
    #[arg(long)]
    detcd: Option<PathBuf>,
    /// register, kv (also checks each read's version) or etcd (also checks revisions
    /// across keys).
    #[arg(long, default_value = "register")]
    model: Model,
    /// Seconds the check may search before answering "unknown".
    #[arg(long, default_value_t = 60.0)]
    check_time_limit: f64,
    /// Planted bug, to show a run can fail: serve reads as serializable from random members.
    #[arg(long, hide = true)]
    stale_reads: bool,
}

fn seconds(flag: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|_| format!("--{flag} {value}: not a duration"))
}

pub fn main(args: &JepsenArgs) -> Result<ExitCode, String> {
    // One thread: members are spawned from it, and die with it (PR_SET_PDEATHSIG).
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?
        .block_on(run(args))
}

/// Counts of operations and injections for the summary.
#[derive(Default)]
struct Counts {
    by_type: BTreeMap<String, u64>,
    by_f: BTreeMap<String, u64>,
    faults: BTreeMap<&'static str, u64>,
}

impl Counts {
    fn of(events: &[Event], nemesis: &Nemesis) -> Counts {
        let mut c = Counts::default();
        for e in events {
            *c.by_type.entry(e.kind.clone()).or_default() += 1;
            if e.kind == "invoke" {
                *c.by_f.entry(e.f.clone()).or_default() += 1;
            }
        }
        for i in nemesis.log.iter().filter(|i| i.action == "start") {
            *c.faults.entry(i.fault).or_default() += 1;
        }
        c
    }

    fn count(&self, kind: &str) -> u64 {
        self.by_type.get(kind).copied().unwrap_or(0)
    }
}

fn list<K: std::fmt::Display>(m: &BTreeMap<K, u64>) -> String {
    let parts: Vec<String> = m.iter().map(|(k, n)| format!("{k} {n}")).collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

async fn run(args: &JepsenArgs) -> Result<ExitCode, String> {
    let time_limit = seconds("time-limit", args.time_limit)?;
    let interval = seconds("nemesis-interval", args.nemesis_interval)?;
    let op_timeout = seconds("op-timeout", args.op_timeout)?;
    if args.concurrency == 0 || args.keys == 0 {
        return Err("--concurrency and --keys must be at least 1".into());
    }
    let seed = args.seed.unwrap_or_else(entropy_seed);
    let dir = args.dir.clone().unwrap_or_else(|| default_dir(seed));
    make_run_dir(&dir)?;
    let detcd = match &args.detcd {
        Some(path) => path.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find this executable: {e}"))?
            .with_file_name("detcd"),
    };
    let faults: Vec<&str> = args.nemesis.iter().map(|f| f.name()).collect();
    println!(
        "detcd-check jepsen: {} members, {}s, nemesis {}{} every {}s, {} clients on {} keys, \
         seed {seed}{}",
        args.members,
        args.time_limit,
        faults.join(","),
        if args.membership {
            " and membership"
        } else {
            ""
        },
        args.nemesis_interval,
        args.concurrency,
        args.keys,
        if args.stale_reads {
            ", stale reads"
        } else {
            ""
        }
    );
    println!("run directory: {}", dir.display());

    let mut cluster = Cluster::start(&detcd, args.members.into(), &dir).await?;
    cluster.wait_ready(READY_DEADLINE).await?;
    let start = Instant::now();
    let until = start + time_limit;
    let workload = Workload::new(
        args.keys,
        args.concurrency,
        op_timeout,
        args.stale_reads,
        until,
        Recorder::new(start, None),
    );
    let mut clients = Vec::new();
    for id in 0..args.concurrency {
        let members = cluster
            .client_urls()
            .iter()
            .map(|url| channel(url).map(KvClient::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("client channel: {e}"))?;
        clients.push(client(id, members, &workload, seed));
    }
    let mut nemesis = Nemesis::new(
        args.nemesis.clone(),
        args.membership,
        interval,
        seeded_rng(seed),
        start,
    );
    let (_, injected) = tokio::join!(join_all(clients), nemesis.run(&mut cluster, until));
    injected?;
    println!("healing: restarting, resuming and reconnecting every member");
    cluster.heal()?;
    let converged = cluster.converge(CONVERGE_DEADLINE).await;
    drop(cluster);

    let events = workload.history.events();
    write_lines(&dir.join("history.jsonl"), &events)?;
    write_lines(&dir.join("nemesis.jsonl"), &nemesis.log)?;
    let counts = Counts::of(&events, &nemesis);
    println!(
        "operations: {} ({}); ok {}, fail {}, info {}",
        counts.by_f.values().sum::<u64>(),
        list(&counts.by_f),
        counts.count("ok"),
        counts.count("fail"),
        counts.count("info")
    );
    println!("faults: {}", list(&counts.faults));
    match &converged {
        Ok((rev, hash)) => println!(
            "converged: HashKV {hash} at revision {rev} on all {} members",
            args.members
        ),
        Err(e) => println!("not converged after {}s: {e}", CONVERGE_DEADLINE.as_secs()),
    }
    let history = from_events(&events).map_err(|e| format!("recorded history: {e}"))?;
    let limits = Limits::new(
        std::time::Instant::now(),
        args.check_time_limit,
        DEFAULT_MEMORY_BYTES >> 20,
    );
    let (verdict, took) =
        crate::check(&history, args.model, limits).map_err(|e| format!("recorded history: {e}"))?;
    let summary = json!({
        "seed": seed,
        "members": args.members,
        "time_limit": args.time_limit,
        "nemesis": faults,
        "membership": args.membership,
        "nemesis_interval": args.nemesis_interval,
        "concurrency": args.concurrency,
        "keys": args.keys,
        "stale_reads": args.stale_reads,
        "operations": counts.by_f,
        "completions": counts.by_type,
        "faults": counts.faults,
        "converged": converged.as_ref().ok().map(|(rev, hash)| json!({"revision": rev, "hash": hash})),
        "convergence_error": converged.as_ref().err(),
        "model": args.model.name(),
        "verdict": verdict.word(),
        "check_seconds": took.as_secs_f64(),
    });
    std::fs::write(dir.join("summary.json"), format!("{summary:#}\n"))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    println!("run directory: {}", dir.display());
    Ok(ExitCode::from(match verdict {
        Verdict::Linearizable if converged.is_ok() => 0,
        Verdict::Unknown { .. } if converged.is_ok() => 3,
        _ => 1,
    }))
}

/// `./jepsen-runs/<unix time>-<seed>`.
fn default_dir(seed: u64) -> PathBuf {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    PathBuf::from("jepsen-runs").join(format!("{now}-{seed}"))
}

/// Makes `dir` for a run; it must not hold an earlier one.
fn make_run_dir(dir: &Path) -> Result<(), String> {
    if dir.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        return Err(format!("run directory {} is not empty", dir.display()));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))
}

/// Writes `items` as JSON Lines.
fn write_lines<T: serde::Serialize>(path: &Path, items: &[T]) -> Result<(), String> {
    let mut text = String::new();
    for item in items {
        text.push_str(&serde_json::to_string(item).map_err(|e| e.to_string())?);
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}
