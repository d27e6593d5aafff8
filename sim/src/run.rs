//! One run of a scenario with one seed: the safety phase (workload and nemesis for the
//! scenario's duration), the liveness phase (every fault undone, the cluster must
//! converge), and the checks. The outcome carries a trace hash over every message a
//! member received, every disk operation and every client event: equal seeds give equal
//! traces.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::Duration;

use detcd::proto::etcdserverpb::kv_client::KvClient;
use detcd::proto::etcdserverpb::RangeRequest;
use detcd::runtime::{reached, trace, trace_reset, trace_value, Clock, Milestone};
use detcd_check::history::{from_events, Event};
use detcd_check::{self as check, Budget, Model, Options, Verdict};
use madsim::runtime::{Handle, Runtime};
use madsim::Config;

use crate::kv_cluster::{client_url, converged_hashes, KvCluster};
use crate::nemesis::{self, Nemesis, SPLIT_GRACE};
use crate::scenario::Scenario;
use crate::watcher::{self, Responses};
use crate::workload::{client, recorder, FencedLog};

/// How long the cluster has to converge once every fault is undone.
const CONVERGE: Duration = Duration::from_secs(60);
/// How long leased keys may outlive the run: the longest TTL, a leader change's extension
/// and an election.
const LEASES_GONE: Duration = Duration::from_secs(30);
/// Linearizability search steps before the checker gives up (a verdict of unknown fails
/// the run: a pass must be proven).
const CHECK_BUDGET: u64 = 50_000_000;

/// What one run found.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub seed: u64,
    pub trace: u64,
    /// Why the run failed; empty when it passed.
    pub failures: Vec<String>,
    /// The nemesis's log, for the failure report.
    pub log: Vec<String>,
    pub ok_ops: usize,
    pub simulated: Duration,
    pub history: Vec<Event>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// The one line `ci/sim` prints.
    pub fn line(&self) -> String {
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        format!(
            "seed={} trace={:016x} verdict={verdict}",
            self.seed, self.trace
        )
    }
}

/// A process run beside the workload on a node of its own (a rogue peer, say): given the
/// safety phase's duration when the workload starts, awaited with the clients.
pub type Sidecar = Box<dyn FnOnce(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// Runs `scenario` with `seed` in a fresh simulation on this thread. A panic anywhere in
/// the simulation (an assertion in detcd, say) fails the run instead of the caller.
pub fn run(scenario: &Scenario, seed: u64) -> Outcome {
    run_with(scenario, seed, None)
}

/// [`run`], with a `sidecar` process beside the workload.
pub fn run_with(scenario: &Scenario, seed: u64, sidecar: Option<Sidecar>) -> Outcome {
    let s = scenario.clone();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        Runtime::with_seed_and_config(seed, Config::default()).block_on(simulate(s, seed, sidecar))
    }));
    result.unwrap_or_else(|panic| {
        let msg = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into());
        Outcome {
            seed,
            trace: trace_value(),
            failures: vec![format!("the simulation panicked: {msg}")],
            log: Vec::new(),
            ok_ops: 0,
            simulated: Duration::ZERO,
            history: Vec::new(),
        }
    })
}

async fn simulate(scenario: Scenario, seed: u64, sidecar: Option<Sidecar>) -> Outcome {
    trace_reset();
    let begin = Clock.now();
    let flags: Vec<&str> = scenario.flags.iter().map(String::as_str).collect();
    let mut cluster = KvCluster::start_with_flags(scenario.members, seed, &flags);
    let history = recorder();
    let fenced = FencedLog::default();
    let duration = Duration::from_secs_f64(scenario.duration_s);
    let mut clients = Vec::new();
    for id in 0..scenario.workload.clients {
        let node = Handle::current()
            .create_node()
            .name(format!("client-{id}"))
            .ip(format!("10.0.1.{}", id + 1).parse().unwrap())
            .build();
        let (history, workload) = (history.clone(), scenario.workload.clone());
        clients.push(node.spawn(client(
            id,
            scenario.members,
            seed,
            duration,
            workload,
            history,
            fenced.clone(),
        )));
    }
    if let Some(sidecar) = sidecar {
        let node = Handle::current()
            .create_node()
            .name("sidecar")
            .ip("10.0.4.1".parse().unwrap())
            .build();
        clients.push(node.spawn(sidecar(duration)));
    }
    let responses = Responses::default();
    let watcher = Handle::current()
        .create_node()
        .name("watcher")
        .ip("10.0.1.200".parse().unwrap())
        .build()
        .spawn(watcher::watch(
            scenario.members,
            duration,
            responses.clone(),
        ));
    let ctl = Handle::current()
        .create_node()
        .name("nemesis")
        .ip("10.0.2.1".parse().unwrap())
        .build();
    let steps = nemesis::timeline(&scenario, seed);
    let mut nemesis = Nemesis::new(&mut cluster, ctl.clone(), scenario.expect.clone());
    nemesis.run(&steps).await;
    for c in clients {
        c.await.expect("client task");
    }
    watcher.await.expect("watcher task");
    nemesis.heal_everything().await;
    let running = nemesis.running();
    let mut failures = std::mem::take(&mut nemesis.violations);
    let splits = std::mem::take(&mut nemesis.splits);
    let mut log = std::mem::take(&mut nemesis.log);
    drop(nemesis);

    let converged = ctl
        .spawn(async move {
            converged_hashes(&running, CONVERGE)
                .await?
                .agree()
                .map_err(|e| format!("{e} (members {running:?})"))?;
            leases_gone(running[0]).await
        })
        .await
        .expect("checker task");
    if let Err(e) = converged {
        failures.push(e);
    }
    let events = history.events();
    let responses = responses.lock().unwrap().clone();
    failures.extend(check_history(&events, &responses));
    failures.extend(check_expectations(&scenario, &events, &splits));
    if scenario.workload.lock > 0 {
        let fenced = fenced.lock().unwrap().clone();
        match detcd_check::lock::check(&fenced) {
            Ok(s) if s.written == 0 => failures.push("no fenced write succeeded".into()),
            Ok(s) if s.refused == 0 && scenario.expect.fence_refused => {
                failures.push("no fenced write was refused: no holder lost its lock".into())
            }
            Ok(_) => {}
            Err(e) => failures.push(format!("lock: {e}")),
        }
    }
    for e in cluster.exits.lock().unwrap().iter() {
        if scenario.expect.members_may_exit {
            log.push(format!("member stopped: {e}"));
        } else {
            failures.push(format!("member stopped: {e}"));
        }
        failures.extend(scenario.expect.unexplained_exit(e));
    }
    for disk in cluster.nodes.disk_trace() {
        trace(b'D', &[disk]);
    }
    Outcome {
        seed,
        trace: trace_value(),
        failures,
        log,
        ok_ops: events.iter().filter(|e| e.kind == "ok").count(),
        simulated: begin.elapsed(),
        history: events,
    }
}

/// The history must be linearizable (an unknown verdict fails too), and the watch
/// streams must keep etcd's guarantees and agree with it.
fn check_history(events: &[Event], responses: &[detcd_check::watch::Response]) -> Vec<String> {
    let h = match from_events(events) {
        Ok(h) => h,
        Err(e) => return vec![format!("malformed history: {e}")],
    };
    let options = Options {
        budget: Budget::Steps(CHECK_BUDGET),
        ..Options::default()
    };
    let mut failures: Vec<String> = check::watch::check(&h, responses)
        .iter()
        .map(|v| format!("watch: {v}"))
        .collect();
    if responses.is_empty() {
        failures.push("the watcher received no events".into());
    }
    failures.extend(match check::linearizable(&h, Model::Kv, options) {
        Ok(Verdict::Linearizable) => Vec::new(),
        Ok(Verdict::NotLinearizable(report)) => {
            vec![format!("history not linearizable:\n{report}")]
        }
        Ok(v @ Verdict::Unknown { .. }) => vec![format!(
            "linearizability unknown: {}",
            v.why_unknown(&h).unwrap_or_default()
        )],
        Err(e) => vec![format!("history rejected: {e}")],
    });
    failures
}

fn check_expectations(
    scenario: &Scenario,
    events: &[Event],
    splits: &[(Duration, Duration)],
) -> Vec<String> {
    let mut failures = Vec::new();
    let ok_ops = events.iter().filter(|e| e.kind == "ok").count() as u64;
    if ok_ops < scenario.expect.min_ok {
        failures.push(format!(
            "only {ok_ops} operations succeeded (expected at least {})",
            scenario.expect.min_ok
        ));
    }
    if scenario.expect.snapshot_installed && reached(Milestone::SnapshotInstalled) == 0 {
        failures.push("no member installed a snapshot from the leader".into());
    }
    let fired = [
        Milestone::CrashPointPowerCut,
        Milestone::CrashPointKill,
        Milestone::CrashPointPause,
    ]
    .map(reached);
    failures.extend(scenario.expect.too_few_crash_points(fired));
    if let Some(max) = scenario.expect.write_latency_max_s {
        let (slowest, at) = slowest_write(events);
        if slowest.as_secs_f64() > max {
            failures.push(format!(
                "a write took {slowest:?}, completing at {at:.3}s (expected at most {max}s)"
            ));
        }
    }
    let mut quiet: Vec<(Duration, Duration, &str)> = Vec::new();
    if scenario.expect.no_commit_during_split {
        quiet.extend(
            splits
                .iter()
                .map(|&(from, to)| (from + SPLIT_GRACE, to, "the split")),
        );
    }
    for &[from, to] in &scenario.expect.no_commit_s {
        quiet.push((secs(from), secs(to), "a window without quorum"));
    }
    for (from, to, what) in quiet {
        for e in events
            .iter()
            .filter(|e| e.kind == "ok" && within(e, from, to))
        {
            failures.push(format!(
                "{} {:?} completed ok at {:.3}s, during {what} {from:?}..{to:?}",
                e.f,
                e.key,
                e.time as f64 / 1e9
            ));
        }
    }
    for &[from, to] in &scenario.expect.commit_s {
        let (from, to) = (secs(from), secs(to));
        let committed = events.iter().any(|e| {
            e.kind == "ok"
                && matches!(e.f.as_str(), "put" | "delete" | "cas")
                && within(e, from, to)
        });
        if !committed {
            failures.push(format!("no write completed ok during {from:?}..{to:?}"));
        }
    }
    failures
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Whether event `e` happened in `[from, to)`.
fn within(e: &Event, from: Duration, to: Duration) -> bool {
    (from.as_nanos() as u64..to.as_nanos() as u64).contains(&e.time)
}

/// The longest time from invocation to `ok` of a put, delete or cas, and when it completed
/// (seconds). A process has one operation outstanding, so its last invocation is the one
/// that completed.
fn slowest_write(events: &[Event]) -> (Duration, f64) {
    let mut invoked = std::collections::BTreeMap::new();
    let mut slowest = (Duration::ZERO, 0.0);
    for e in events {
        match e.kind.as_str() {
            "invoke" => {
                invoked.insert(e.process, e.time);
            }
            "ok" if matches!(e.f.as_str(), "put" | "delete" | "cas") => {
                let took = Duration::from_nanos(e.time - invoked[&e.process]);
                if took > slowest.0 {
                    slowest = (took, e.time as f64 / 1e9);
                }
            }
            _ => {}
        }
    }
    slowest
}

/// Every leased key is gone once the leases ran out: nobody keeps them alive any more.
async fn leases_gone(member: usize) -> Result<(), String> {
    let start = Clock.now();
    let mut left = 0;
    while start.elapsed() < LEASES_GONE {
        if let Ok(mut kv) = KvClient::connect(client_url(member)).await {
            let req = RangeRequest {
                key: b"lease/".to_vec(),
                range_end: b"lease0".to_vec(),
                count_only: true,
                ..Default::default()
            };
            if let Ok(resp) = kv.range(req).await {
                left = resp.into_inner().count;
                if left == 0 {
                    return Ok(());
                }
            }
        }
        Clock.sleep(Duration::from_millis(500)).await;
    }
    Err(format!(
        "{left} leased keys outlived their leases by {LEASES_GONE:?}"
    ))
}
