//! The periodic corruption check in the simulator (`--experimental-corrupt-check-time=1s`):
//! a follower's backend altered while it is down (a value changed under its revision, the
//! member's own data and nothing else) makes the leader raise the CORRUPT alarm naming
//! that follower within one interval of it serving again, and writes are refused; the same
//! restart without the alteration raises nothing.

#![cfg(madsim)]

use std::path::Path;
use std::time::Duration;

use detcd::backend::{Backend, KEY};
use detcd::proto::etcdserverpb::alarm_request::AlarmAction;
use detcd::proto::etcdserverpb::kv_client::KvClient;
use detcd::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use detcd::proto::etcdserverpb::{AlarmMember, AlarmRequest, AlarmType, PutRequest, StatusRequest};
use detcd::runtime::Clock;
use detcd_sim::kv_cluster::{client_url, retry, KvCluster};
use madsim::runtime::{Handle, Runtime};
use madsim::Config;
use redb::ReadableTable;

const MEMBERS: usize = 3;
const INTERVAL: Duration = Duration::from_secs(1);

fn put(key: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: b"v".to_vec(),
        ..Default::default()
    }
}

/// Member `i`'s ID and the leader it sees.
async fn status(i: usize) -> Result<(u64, u64), String> {
    let mut m = MaintenanceClient::connect(client_url(i))
        .await
        .map_err(|e| e.to_string())?;
    let s = m
        .status(StatusRequest {})
        .await
        .map_err(|e| e.to_string())?;
    let s = s.into_inner();
    Ok((s.header.ok_or("no header")?.member_id, s.leader))
}

/// Ten writes, then every member's ID and the position of the leader.
async fn write_and_find_leader() -> (Vec<u64>, usize) {
    retry("ten writes", || async {
        let mut kv = KvClient::connect(client_url(0))
            .await
            .map_err(|e| e.to_string())?;
        for i in 0..10 {
            kv.put(put(&format!("k{i}")))
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
    .await;
    retry("every member's view of the leader", || async {
        let mut ids = Vec::new();
        let mut leader = 0;
        for i in 0..MEMBERS {
            let (id, l) = status(i).await?;
            ids.push(id);
            leader = l;
        }
        let l = ids.iter().position(|&id| id == leader).ok_or("no leader")?;
        Ok((ids, l))
    })
    .await
}

/// The active alarms as member `i` reports them.
async fn alarms(i: usize) -> Result<Vec<AlarmMember>, String> {
    let mut m = MaintenanceClient::connect(client_url(i))
        .await
        .map_err(|e| e.to_string())?;
    let get = AlarmRequest {
        action: AlarmAction::Get as i32,
        member_id: 0,
        alarm: AlarmType::None as i32,
    };
    let resp = m.alarm(get).await.map_err(|e| e.to_string())?;
    Ok(resp.into_inner().alarms)
}

/// Flips a bit in the value of the oldest key revision in the backend on `disk`.
fn alter(disk: &detcd::runtime::SimDisk) {
    let mut backend = Backend::open(disk, Path::new("/data/member/snap/db")).unwrap();
    {
        let mut table = backend.tx().open_table(KEY).unwrap();
        let (key, mut value) = {
            let (k, v) = table.first().unwrap().expect("a key revision");
            (k.value().to_vec(), v.value().to_vec())
        };
        *value.last_mut().unwrap() ^= 1;
        table.insert(key.as_slice(), value.as_slice()).unwrap();
    }
    backend.commit().unwrap();
}

async fn scenario(seed: u64, altered: bool) {
    let flags = ["--experimental-corrupt-check-time=1s"];
    let cluster = KvCluster::start_with_flags(MEMBERS, seed, &flags);
    // Network calls go from a client node: the main task has no network address.
    let client = Handle::current()
        .create_node()
        .ip("10.0.1.1".parse().unwrap())
        .build();
    let (ids, leader) = client.spawn(write_and_find_leader()).await.unwrap();
    let victim = (leader + 1) % MEMBERS;
    // The writes are in the backend once a batch interval has passed.
    Clock.sleep(Duration::from_secs(1)).await;
    cluster.nodes.kill(victim);
    if altered {
        alter(cluster.nodes.disk(victim));
    }
    cluster.nodes.restart(victim);
    let raised = client.spawn(async move {
        retry("the restarted member serving", || status(victim)).await;
        let served = Clock.now();
        // Three intervals: an alarm, if any, within the first.
        while served.elapsed() < 3 * INTERVAL {
            let raised = alarms(leader).await.unwrap_or_default();
            if !raised.is_empty() {
                let mut kv = KvClient::connect(client_url(leader)).await.unwrap();
                let refused = kv.put(put("after")).await.unwrap_err();
                assert_eq!(refused.message(), "etcdserver: corrupt cluster");
                return Some((raised, served.elapsed()));
            }
            Clock.sleep(Duration::from_millis(50)).await;
        }
        None
    });
    let raised = raised.await.unwrap();
    match (altered, raised) {
        (true, Some((raised, took))) => {
            let named = AlarmMember {
                member_id: ids[victim],
                alarm: AlarmType::Corrupt as i32,
            };
            assert_eq!(raised, [named], "seed {seed}");
            eprintln!("seed {seed}: CORRUPT raised {took:?} after the member served");
            assert!(
                took <= INTERVAL + Duration::from_millis(500),
                "seed {seed}: {took:?}"
            );
        }
        (true, None) => panic!("seed {seed}: no alarm for the altered member"),
        (false, Some((raised, _))) => panic!("seed {seed}: a healthy cluster raised {raised:?}"),
        (false, None) => {}
    }
}

#[test]
fn the_leader_names_an_altered_member_within_one_interval() {
    for seed in 0..3 {
        Runtime::with_seed_and_config(seed, Config::default()).block_on(scenario(seed, true));
    }
}

#[test]
fn a_healthy_restart_raises_nothing() {
    for seed in 0..3 {
        Runtime::with_seed_and_config(seed, Config::default()).block_on(scenario(seed, false));
    }
}
