//! `--experimental-enable-lease-checkpoint`: the leader checkpoints remaining TTLs every
//! five minutes, so a new leader continues a lease's countdown; without the flag (etcd's
//! default) a new leader gives every lease its full TTL again. Minutes of simulated time
//! pass in a moment, which a real-process test cannot afford.

#![cfg(madsim)]

use std::time::Duration;

use detcd::proto::etcdserverpb::kv_client::KvClient;
use detcd::proto::etcdserverpb::lease_client::LeaseClient;
use detcd::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use detcd::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseTimeToLiveRequest, MoveLeaderRequest, PutRequest, StatusRequest,
};
use detcd::runtime::Clock;
use detcd_sim::kv_cluster::{client_url, retry, KvCluster};
use madsim::runtime::{Handle, Runtime};
use madsim::Config;

const MEMBERS: usize = 3;
const TTL: i64 = 900;

/// The positions of the leader and of every member's ID.
async fn leader() -> (usize, Vec<u64>) {
    retry("every member's view of the leader", || async {
        let (mut ids, mut leader) = (Vec::new(), 0);
        for i in 0..MEMBERS {
            let mut m = MaintenanceClient::connect(client_url(i))
                .await
                .map_err(|e| e.to_string())?;
            let s = m
                .status(StatusRequest {})
                .await
                .map_err(|e| e.to_string())?;
            let s = s.into_inner();
            ids.push(s.header.ok_or("no header")?.member_id);
            leader = s.leader;
        }
        let l = ids.iter().position(|&id| id == leader).ok_or("no leader")?;
        Ok((l, ids))
    })
    .await
}

/// The TTL left, as the new leader sees it, of a lease granted with [`TTL`] six minutes
/// before leadership moved.
async fn ttl_after_leader_change(seed: u64, checkpoint: bool) -> i64 {
    let flags: &[&str] = if checkpoint {
        &["--experimental-enable-lease-checkpoint"]
    } else {
        &[]
    };
    let _cluster = KvCluster::start_with_flags(MEMBERS, seed, flags);
    let client = Handle::current()
        .create_node()
        .ip("10.0.1.1".parse().unwrap())
        .build();
    let task = client.spawn(async move {
        retry("a write", || async {
            let mut kv = KvClient::connect(client_url(0))
                .await
                .map_err(|e| e.to_string())?;
            let put = PutRequest {
                key: b"k".to_vec(),
                ..Default::default()
            };
            kv.put(put).await.map_err(|e| e.to_string())
        })
        .await;
        let (l, ids) = leader().await;
        let mut lease = LeaseClient::connect(client_url(l)).await.unwrap();
        let grant = LeaseGrantRequest { ttl: TTL, id: 0 };
        let id = lease.lease_grant(grant).await.unwrap().into_inner().id;
        Clock.sleep(Duration::from_secs(360)).await;
        let (l, _) = leader().await;
        let next = (l + 1) % MEMBERS;
        let mut m = MaintenanceClient::connect(client_url(l)).await.unwrap();
        let target_id = ids[next];
        m.move_leader(MoveLeaderRequest { target_id })
            .await
            .unwrap();
        retry("the new leader's answer", || async {
            let mut lease = LeaseClient::connect(client_url(next))
                .await
                .map_err(|e| e.to_string())?;
            let ask = LeaseTimeToLiveRequest { id, keys: false };
            let resp = lease.lease_time_to_live(ask).await;
            Ok(resp.map_err(|e| e.to_string())?.into_inner().ttl)
        })
        .await
    });
    task.await.unwrap()
}

#[test]
fn a_new_leader_continues_checkpointed_ttls_only_with_the_flag() {
    for seed in 0..2 {
        let kept = Runtime::with_seed_and_config(seed, Config::default())
            .block_on(ttl_after_leader_change(seed, true));
        let reset = Runtime::with_seed_and_config(seed, Config::default())
            .block_on(ttl_after_leader_change(seed, false));
        eprintln!("seed {seed}: TTL left {kept} s with checkpoints, {reset} s without");
        // Checkpointed at about five minutes, then the countdown goes on: about 600 s left.
        assert!(
            kept <= TTL - 250,
            "seed {seed}: {kept} s left with checkpoints"
        );
        assert!(
            reset >= TTL - 10,
            "seed {seed}: {reset} s left without checkpoints"
        );
    }
}
