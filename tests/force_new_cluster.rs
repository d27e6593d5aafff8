//! `--force-new-cluster`, etcd's disaster recovery path, with real processes: three
//! members, two lost for good, the survivor restarted with the flag serves alone with every
//! key it had, keeps being a single-member cluster across a plain restart, and a new member
//! added to it catches up.

#![cfg(not(madsim))]

mod common;

use std::time::Duration;

use common::cluster::{connect, poll, Cluster};
use common::member::{once_healthy, start_joining};
use common::{ready_client, Member};
use etcd_client::GetOptions;

const DEADLINE: Duration = Duration::from_secs(30);
const KEYS: usize = 20;

/// The member on `port` serves `key` with `value` from its own store.
async fn serves(port: u16, key: String, value: String) {
    poll("a member to serve the key", DEADLINE, || {
        let (key, value) = (key.clone(), value.clone());
        async move {
            let mut c = connect(port).await?;
            let opts = GetOptions::new().with_serializable();
            let resp = c.get(key, Some(opts)).await.ok()?;
            (resp.kvs().first()?.value() == value.as_bytes()).then_some(())
        }
    })
    .await;
}

async fn member_ids(port: u16) -> Vec<u64> {
    let mut c = connect(port).await.unwrap();
    let list = c.member_list().await.unwrap();
    list.members().iter().map(|m| m.id()).collect()
}

#[tokio::test]
async fn the_survivor_of_a_lost_quorum_restarts_alone_and_grows_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), &["a", "b", "c"]).await;
    let leader = cluster.leader().await;
    let mut client = ready_client(cluster.members[leader].client_port).await;
    for i in 0..KEYS {
        client
            .put(format!("k{i}"), format!("v{i}"), None)
            .await
            .unwrap();
    }
    let survivor = (leader + 1) % 3;
    let port = cluster.members[survivor].client_port;
    serves(port, format!("k{}", KEYS - 1), format!("v{}", KEYS - 1)).await;
    for i in 0..3 {
        cluster.kill(i);
    }

    let s = &cluster.members[survivor];
    let force = ["--force-new-cluster"];
    let detcd = env!("CARGO_BIN_EXE_detcd");
    cluster.procs[survivor] = Some(s.spawn_with(detcd, Some(&cluster.initial_cluster), &force));
    let mut alone = ready_client(port).await;
    for i in 0..KEYS {
        let got = alone.get(format!("k{i}"), None).await.unwrap();
        assert_eq!(got.kvs()[0].value(), format!("v{i}").as_bytes());
    }
    assert_eq!(member_ids(port).await, [cluster.ids[survivor]]);
    alone.put("after", "force", None).await.unwrap();

    // The rewritten membership is durable: a plain restart stays alone.
    cluster.kill(survivor);
    cluster.restart(survivor);
    let mut alone = ready_client(port).await;
    assert_eq!(member_ids(port).await, [cluster.ids[survivor]]);

    let d = Member::new("d", dir.path());
    let url = d.peer_url();
    once_healthy(|| {
        let mut c = alone.clone();
        let url = url.clone();
        async move { c.member_add([url], None).await }
    })
    .await
    .unwrap();
    let s = &cluster.members[survivor];
    let with_d = format!("{}={},d={}", s.name, s.peer_url(), d.peer_url());
    let _d = start_joining(&d, &with_d);
    serves(d.client_port, "after".into(), "force".into()).await;
    serves(
        d.client_port,
        format!("k{}", KEYS - 1),
        format!("v{}", KEYS - 1),
    )
    .await;
    alone.put("grown", "yes", None).await.unwrap();
    serves(d.client_port, "grown".into(), "yes".into()).await;
    assert_eq!(member_ids(d.client_port).await.len(), 2);
}
