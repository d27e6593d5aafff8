//! A partitioned member rejoins through a snapshot: three full detcd members snapshot every
//! 50 entries and keep 5 entries of log before each snapshot; while one member is cut off
//! from the others, 400 writes go through the rest, so the log it needs is gone and the
//! leader must stream it the backend. (The simulated network holds back what it cannot
//! deliver until the link heals, so the writes must outnumber Raft's 256 appends in
//! flight, or they all arrive afterwards and the member needs no snapshot.) After healing, all members agree on HashKV, and the
//! member's snap directory records the snapshot it received.

#![cfg(madsim)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use detcd::proto::etcdserverpb::kv_client::KvClient;
use detcd::proto::etcdserverpb::PutRequest;
use detcd::runtime::Clock;
use detcd::snap::Snapshotter;
use detcd_sim::kv_cluster::{converged_hashes, KvCluster};
use detcd_sim::nodes::member_ip;
use madsim::runtime::{Handle, Runtime};
use madsim::Config;

const MEMBERS: usize = 3;
const CUT_OFF: usize = 2;
const WRITES: usize = 400;

/// Puts `key` through the first member of `via` that acknowledges it within the deadline.
async fn put(via: &[usize], key: String) -> Result<(), String> {
    let start = Clock.now();
    for attempt in 0.. {
        if start.elapsed() > Duration::from_secs(30) {
            return Err(format!("{key} not acknowledged"));
        }
        let member = via[attempt % via.len()];
        let Ok(mut kv) = KvClient::connect(format!("http://{}:2379", member_ip(member))).await
        else {
            Clock.sleep(Duration::from_millis(100)).await;
            continue;
        };
        let req = PutRequest {
            key: key.clone().into_bytes(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        match tokio::time::timeout(Duration::from_secs(2), kv.put(req)).await {
            Ok(Ok(_)) => return Ok(()),
            _ => Clock.sleep(Duration::from_millis(100)).await,
        }
    }
    unreachable!("the loop returns")
}

/// Index of the snapshots member `i` received from a leader (those not taken locally).
fn received_snapshots(cluster: &KvCluster, i: usize) -> Vec<u64> {
    let disk = Arc::new(cluster.nodes.disk(i).clone());
    let snapper = Snapshotter::new(disk, Path::new("/data/member/snap")).unwrap();
    let mut received = Vec::new();
    snapper
        .load_newest_where(|s| {
            if s.backend != "db" {
                received.push(s.metadata.as_ref().unwrap().index);
            }
            false
        })
        .unwrap();
    received
}

/// Runs the scenario; returns every member's disk trace.
async fn scenario(seed: u64) -> Vec<u64> {
    let cluster = KvCluster::start_with_flags(
        MEMBERS,
        seed,
        &[
            "--snapshot-count=50",
            "--experimental-snapshot-catchup-entries=5",
        ],
    );
    let client = Handle::current()
        .create_node()
        .name("client")
        .ip("10.0.1.1".parse().unwrap())
        .build();
    client
        .spawn(put(&[0, 1, 2], "first".into()))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    cluster.nodes.isolate(CUT_OFF);
    client
        .spawn(async move {
            for i in 0..WRITES {
                put(&[0, 1], format!("k{i:03}")).await?;
            }
            Ok::<(), String>(())
        })
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    assert!(
        received_snapshots(&cluster, CUT_OFF).is_empty(),
        "seed {seed}: a snapshot reached the member while it was cut off"
    );
    cluster.nodes.heal(CUT_OFF);
    let checker = Handle::current()
        .create_node()
        .name("checker")
        .ip("10.0.2.1".parse().unwrap())
        .build();
    let members: Vec<usize> = (0..MEMBERS).collect();
    checker
        .spawn(async move { converged_hashes(&members, Duration::from_secs(30)).await })
        .await
        .unwrap()
        .and_then(|c| c.agree())
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    assert!(
        !received_snapshots(&cluster, CUT_OFF).is_empty(),
        "seed {seed}: the member caught up without a snapshot, so the log was not compacted"
    );
    cluster.nodes.disk_trace()
}

fn run(seed: u64) -> Vec<u64> {
    Runtime::with_seed_and_config(seed, Config::default()).block_on(scenario(seed))
}

/// `DETCD_SIM_SEEDS=N` runs N seeds (default 2).
#[test]
fn partitioned_member_rejoins_through_a_snapshot() {
    let seeds: u64 = std::env::var("DETCD_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    for seed in 0..seeds {
        eprintln!("seed {seed}");
        run(seed);
    }
}

/// Set in the child processes of [`a_seed_replays_exactly`]: the seed to run alone.
const REPLAY_SEED_ENV: &str = "DETCD_SNAPSHOT_REPLAY_SEED";

/// Snapshot sends and installs do the same disk operations for the same seed. Each run is
/// a process of its own (this test binary, filtered to this test): simulations run one
/// after another in one process disturb each other's traces through process-wide state,
/// such as madsim's task-ID counter.
#[test]
fn a_seed_replays_exactly() {
    if let Some(seed) = std::env::var(REPLAY_SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
    {
        println!("disk-trace={:?}", run(seed));
        return;
    }
    let fresh = |seed: u64| {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "a_seed_replays_exactly", "--nocapture"])
            .env(REPLAY_SEED_ENV, seed.to_string())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "seed {seed} failed:\n{stdout}");
        stdout
            .lines()
            .find(|l| l.starts_with("disk-trace="))
            .unwrap_or_else(|| panic!("no trace for seed {seed}:\n{stdout}"))
            .to_string()
    };
    assert_eq!(fresh(7), fresh(7));
}
