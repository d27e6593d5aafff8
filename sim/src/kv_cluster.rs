//! The whole detcd server (`server::boot::run`: Raft, WAL, MVCC, the gRPC services) on
//! simulated machines, client processes that drive etcd's KV API and record a history in
//! the format the checker reads, and the end-of-run checks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::check::history::Event;
use detcd::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use detcd::proto::etcdserverpb::kv_client::KvClient;
use detcd::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use detcd::proto::etcdserverpb::request_op::Request as Op;
use detcd::proto::etcdserverpb::{
    Compare, HashKvRequest, PutRequest, RangeRequest, RequestOp, StatusRequest, TxnRequest,
};
use detcd::runtime::{seeded_rng, Clock, Disk, SimDisk};
use detcd::server::boot;
use detcd::server::config::{Flags, ServerConfig};
use rand::Rng;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::nodes::{member_ip, Nodes};

/// Keys the workload touches; few, so operations contend.
const KEYS: usize = 3;
/// How long a client waits for one answer before it records the outcome as unknown.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

fn client_url(i: usize) -> String {
    format!("http://{}:2379", member_ip(i))
}

fn peer_url(i: usize) -> String {
    format!("http://{}:2380", member_ip(i))
}

/// A cluster of full detcd members.
pub struct KvCluster {
    pub nodes: Nodes,
}

impl KvCluster {
    /// Starts `size` members; call inside a madsim runtime.
    pub fn start(size: usize, seed: u64) -> KvCluster {
        Self::start_with_flags(size, seed, &[])
    }

    /// Starts `size` members with `extra` flags added to each one's command line.
    pub fn start_with_flags(size: usize, seed: u64, extra: &[&str]) -> KvCluster {
        let extra: Vec<String> = extra.iter().map(|f| f.to_string()).collect();
        let cluster: Vec<String> = (0..size).map(|i| format!("m{i}={}", peer_url(i))).collect();
        let cluster = cluster.join(",");
        let nodes = Nodes::start(size, seed, move |i, disk: SimDisk| {
            let mut args = vec![
                "detcd".to_string(),
                format!("--name=m{i}"),
                "--data-dir=/data".to_string(),
                format!("--listen-client-urls={}", client_url(i)),
                format!("--advertise-client-urls={}", client_url(i)),
                format!("--listen-peer-urls={}", peer_url(i)),
                format!("--initial-advertise-peer-urls={}", peer_url(i)),
                format!("--initial-cluster={cluster}"),
                "--initial-cluster-token=sim".to_string(),
            ];
            args.extend(extra.iter().cloned());
            async move {
                let flags = Flags::parse_from(args).expect("simulation flags parse");
                let cfg = ServerConfig::from_flags(&flags).expect("simulation flags are valid");
                let disk: Arc<dyn Disk> = Arc::new(disk);
                if let Err(e) = boot::run(cfg, disk, std::future::pending()).await {
                    panic!("member m{i} stopped: {e}");
                }
            }
        });
        KvCluster { nodes }
    }
}

/// Polls until all `members` report the same revision, then returns each one's HashKV at
/// it. Run it on a client node: the simulation's main task has no network address.
pub async fn converged_hashes(members: usize, deadline: Duration) -> Result<Vec<u32>, String> {
    {
        let start = Clock.now();
        let mut last = Vec::new();
        while start.elapsed() < deadline {
            let mut revisions = Vec::new();
            for i in 0..members {
                revisions.push(member_revision(i).await);
            }
            if let Some(Some(rev)) = revisions.first().copied() {
                if revisions.iter().all(|r| *r == Some(rev)) {
                    let mut hashes = Vec::new();
                    for i in 0..members {
                        let mut m = MaintenanceClient::connect(client_url(i))
                            .await
                            .map_err(|e| e.to_string())?;
                        let req = HashKvRequest { revision: rev };
                        hashes.push(
                            m.hash_kv(req)
                                .await
                                .map_err(|e| e.to_string())?
                                .into_inner()
                                .hash,
                        );
                    }
                    return Ok(hashes);
                }
            }
            last = revisions;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("members never reached one revision: {last:?}"))
    }
}

async fn member_revision(i: usize) -> Option<i64> {
    let mut m = MaintenanceClient::connect(client_url(i)).await.ok()?;
    let status = m.status(StatusRequest {}).await.ok()?.into_inner();
    Some(status.header?.revision)
}

/// The history of every client, in the order events happened.
#[derive(Clone, Default)]
pub struct Recorder {
    events: Arc<Mutex<Vec<Event>>>,
}

impl Recorder {
    fn record(&self, start: Instant, mut e: Event) {
        let mut events = self.events.lock().unwrap();
        e.index = events.len() as u64;
        e.time = start.elapsed().as_nanos() as u64;
        events.push(e);
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }
}

/// What one operation returned.
enum Outcome {
    Ok(Option<String>),
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

/// Runs one client process against the members until `until`: gets, puts of unique
/// values, and compare-and-sets, each recorded as invoke then ok / fail / info. After an
/// unknown outcome it continues as a new process on the next member, as HISTORY.md asks.
pub async fn client(id: u64, members: usize, seed: u64, until: Duration, history: Recorder) {
    let start = Clock.now();
    let mut rng = seeded_rng(seed ^ (id << 32));
    let mut process = id << 16;
    let mut member = id as usize % members;
    let mut conn: Option<KvClient<Channel>> = None;
    let mut seen: Vec<Option<String>> = vec![None; KEYS];
    let mut written = 0u64;
    while start.elapsed() < until {
        let kv = match &mut conn {
            Some(kv) => kv,
            None => {
                match KvClient::connect(client_url(member)).await {
                    Ok(c) => conn = Some(c),
                    Err(_) => {
                        member = (member + 1) % members;
                        Clock.sleep(Duration::from_millis(100)).await;
                    }
                }
                continue;
            }
        };
        let k = rng.random_range(0..KEYS);
        let key = format!("k{k}");
        let invoke = |f: &str, value: Option<String>, expect: Option<Option<String>>| Event {
            process,
            kind: "invoke".into(),
            f: f.into(),
            key: Some(key.clone()),
            value,
            expect,
            ..Default::default()
        };
        let (f, value, expect, outcome) = match rng.random_range(0..3) {
            0 => {
                history.record(start, invoke("get", None, None));
                let req = RangeRequest {
                    key: key.clone().into_bytes(),
                    ..Default::default()
                };
                let outcome = match with_timeout(kv.range(req)).await {
                    Ok(resp) => {
                        let v = resp
                            .kvs
                            .first()
                            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
                        seen[k] = v.clone();
                        Outcome::Ok(v)
                    }
                    Err(e) => Outcome::Unknown(e),
                };
                ("get", None, None, outcome)
            }
            1 => {
                written += 1;
                let v = format!("{process}-{written}");
                history.record(start, invoke("put", Some(v.clone()), None));
                let req = PutRequest {
                    key: key.clone().into_bytes(),
                    value: v.clone().into_bytes(),
                    ..Default::default()
                };
                let outcome = match with_timeout(kv.put(req)).await {
                    Ok(_) => Outcome::Ok(Some(v.clone())),
                    Err(e) => Outcome::Unknown(e),
                };
                ("put", Some(v), None, outcome)
            }
            _ => {
                written += 1;
                let v = format!("{process}-{written}");
                let expect = seen[k].clone();
                history.record(start, invoke("cas", Some(v.clone()), Some(expect.clone())));
                let compare = match &expect {
                    Some(e) => Compare {
                        result: CompareResult::Equal as i32,
                        target: CompareTarget::Value as i32,
                        key: key.clone().into_bytes(),
                        target_union: Some(TargetUnion::Value(e.clone().into_bytes())),
                        range_end: Vec::new(),
                    },
                    None => Compare {
                        result: CompareResult::Equal as i32,
                        target: CompareTarget::Create as i32,
                        key: key.clone().into_bytes(),
                        target_union: Some(TargetUnion::CreateRevision(0)),
                        range_end: Vec::new(),
                    },
                };
                let put = RequestOp {
                    request: Some(Op::RequestPut(PutRequest {
                        key: key.clone().into_bytes(),
                        value: v.clone().into_bytes(),
                        ..Default::default()
                    })),
                };
                let req = TxnRequest {
                    compare: vec![compare],
                    success: vec![put],
                    failure: Vec::new(),
                };
                let outcome = match with_timeout(kv.txn(req)).await {
                    Ok(resp) if resp.succeeded => Outcome::Ok(Some(v.clone())),
                    Ok(_) => Outcome::Fail,
                    Err(e) => Outcome::Unknown(e),
                };
                ("cas", Some(v), Some(expect), outcome)
            }
        };
        let done = |kind: &str, value: Option<String>, error: Option<String>| Event {
            process,
            kind: kind.into(),
            f: f.into(),
            key: Some(key.clone()),
            value,
            expect: expect.clone(),
            error,
            ..Default::default()
        };
        match outcome {
            Outcome::Ok(v) => {
                history.record(start, done("ok", if f == "get" { v } else { value }, None))
            }
            Outcome::Fail => history.record(start, done("fail", value, None)),
            Outcome::Unknown(e) => {
                history.record(start, done("info", value, Some(e)));
                process += 1;
                member = (member + 1) % members;
                conn = None;
            }
        }
    }
}
