//! Jepsen's etcd register workload: each client reads, writes and compare-and-sets a few
//! keys through the register client the simulator drives too ([`detcd_check::client`]), and
//! records every operation as invoke then ok, fail or info, in the format of
//! `shared/HISTORY.md`.
//!
//! Written values are unique across the run, so a read names the write it saw. After an
//! `info` the client goes on as a new process (HISTORY.md: a process has at most one
//! operation in flight). After an error a client waits [`ERROR_PAUSE`] and moves on to the
//! next member.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use detcd::proto::etcdserverpb::kv_client::KvClient;
use detcd::runtime::seeded_rng;
use detcd_check::client::{complete, execute, Call, Recorder, Send};
use rand::Rng;
use tokio::time::Instant;
use tonic::transport::Channel;

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
        let invoke = call.invoke(process, &key);
        w.history.record(invoke.clone());
        let (target, serializable) = match call {
            Call::Get if w.stale_reads => (rng.random_range(0..members.len()), true),
            _ => (member, false),
        };
        let how = Send {
            timeout: w.op_timeout,
            serializable,
            read_back: false,
        };
        let result = execute(&mut members[target], &key, &call, how).await;
        let done = complete(invoke, &call, &result);
        if done.kind == "ok" {
            known[k] = done.value.clone();
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
