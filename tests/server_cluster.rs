//! Three real detcd processes on loopback: kill -9 the leader under write load, a new
//! leader takes over, no acknowledged write is lost, and the killed member restarts from
//! its data directory and catches up to the same HashKV as the others.

#![cfg(not(madsim))]

mod common;

use std::time::Duration;

use common::cluster::{connect, leader_seen_by, poll, Cluster};
use etcd_client::GetOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), &["infra1", "infra2", "infra3"]).await;
    let ports = cluster.ports();
    let victim = cluster.leader().await;
    let leader = cluster.ids[victim];
    let survivors: Vec<usize> = (0..3).filter(|&i| i != victim).collect();

    // Sequential writes through the members in turn; record what was acknowledged.
    let mut acked = Vec::new();
    let mut clients = Vec::new();
    for &p in &ports {
        clients.push(connect(p).await.unwrap());
    }
    for i in 0..300u32 {
        if i == 100 {
            cluster.kill(victim); // kill -9 the leader mid-load
        }
        let target = if i >= 100 {
            survivors[i as usize % 2]
        } else {
            i as usize % 3
        };
        let key = format!("w/{i:04}");
        let write = tokio::time::timeout(
            Duration::from_secs(10),
            clients[target].put(key.clone(), i.to_string(), None),
        )
        .await;
        if let Ok(Ok(_)) = write {
            acked.push(key);
        }
    }
    assert!(
        acked.len() >= 250,
        "only {} of 300 writes acknowledged",
        acked.len()
    );
    let new_leader = poll("a new leader", Duration::from_secs(30), || async {
        leader_seen_by(ports[survivors[0]]).await
    })
    .await;
    assert_ne!(new_leader, leader, "the killed member is still the leader");

    let mut c = connect(ports[survivors[1]]).await.unwrap();
    let all = c
        .get("w/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let stored: Vec<String> = all
        .kvs()
        .iter()
        .map(|kv| kv.key_str().unwrap().to_string())
        .collect();
    for key in &acked {
        assert!(stored.contains(key), "acknowledged write {key} was lost");
    }

    // The killed member comes back from its data directory and converges.
    cluster.restart(victim);
    let revision = all.header().unwrap().revision();
    let expected = c.hash_kv(revision).await.unwrap().hash();
    poll(
        "the restarted member to reach the same HashKV",
        Duration::from_secs(30),
        || async {
            let mut r = connect(ports[victim]).await?;
            let h = r.hash_kv(revision).await.ok()?;
            (h.hash() == expected).then_some(())
        },
    )
    .await;
    let mut other = connect(ports[survivors[0]]).await.unwrap();
    assert_eq!(other.hash_kv(revision).await.unwrap().hash(), expected);
}
