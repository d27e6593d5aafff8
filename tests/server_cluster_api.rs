//! The etcd-client crate against a 3-member cluster, through followers as well as the
//! leader: every request a follower takes must behave as on the leader (writes go through
//! Raft, linearizable reads through ReadIndex), and watchers on one member see writes
//! made on another, in order.

#![cfg(not(madsim))]

mod common;

use std::time::Duration;

use common::cluster::{connect, poll, Cluster};
use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_serve_the_whole_kv_watch_and_lease_api() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), &["a", "b", "c"]).await;
    let ports = cluster.ports();
    let leader = cluster.leader().await;
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let mut on_leader = connect(ports[leader]).await.unwrap();
    let mut f1 = connect(ports[followers[0]]).await.unwrap();
    let mut f2 = connect(ports[followers[1]]).await.unwrap();

    // A watcher on one follower for writes made anywhere.
    let mut events = f2
        .watch(
            "k/",
            Some(WatchOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();

    // A write through a follower is at once visible to a linearizable read on the other.
    let put = f1.put("k/1", "one", None).await.unwrap();
    let rev1 = put.header().unwrap().revision();
    let got = f2.get("k/1", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"one");
    assert_eq!(got.kvs()[0].mod_revision(), rev1);
    // Serializable reads are local: they catch up, maybe not at once.
    poll(
        "a serializable read to catch up",
        Duration::from_secs(10),
        || {
            let mut c = f2.clone();
            async move {
                let r = c
                    .get("k/1", Some(GetOptions::new().with_serializable()))
                    .await
                    .ok()?;
                (r.kvs().first()?.value() == b"one").then_some(())
            }
        },
    )
    .await;

    on_leader.put("k/2", "two", None).await.unwrap();
    f2.put("k/1", "uno", None).await.unwrap();
    let range = f1
        .get("k/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let pairs: Vec<(&str, &str)> = range
        .kvs()
        .iter()
        .map(|kv| (kv.key_str().unwrap(), kv.value_str().unwrap()))
        .collect();
    assert_eq!(pairs, [("k/1", "uno"), ("k/2", "two")]);

    // A txn on a follower: the compare sees the latest value.
    let txn = Txn::new()
        .when([Compare::value("k/1", CompareOp::Equal, "uno")])
        .and_then([TxnOp::put("k/3", "three", None)])
        .or_else([TxnOp::get("k/1", None)]);
    let resp = f1.txn(txn).await.unwrap();
    assert!(resp.succeeded(), "the compare saw a stale value");
    let stale = Txn::new()
        .when([Compare::value("k/1", CompareOp::Equal, "one")])
        .and_then([TxnOp::put("k/3", "wrong", None)])
        .or_else([TxnOp::get("k/1", None)]);
    let resp = f2.txn(stale).await.unwrap();
    assert!(!resp.succeeded());
    match &resp.op_responses()[0] {
        TxnOpResponse::Get(g) => assert_eq!(g.kvs()[0].value(), b"uno"),
        other => panic!("expected the else branch's get, got {other:?}"),
    }

    let deleted = f2.delete("k/2", None).await.unwrap();
    assert_eq!(deleted.deleted(), 1);

    // Leases granted and revoked through followers take their keys with them.
    let lease = f1.lease_grant(60, None).await.unwrap().id();
    f2.put("k/leased", "x", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    let ttl = on_leader.lease_time_to_live(lease, None).await.unwrap();
    assert!(ttl.ttl() > 0 && ttl.ttl() <= 60, "ttl {}", ttl.ttl());
    f2.lease_revoke(lease).await.unwrap();
    let gone = on_leader.get("k/leased", None).await.unwrap();
    assert!(gone.kvs().is_empty(), "revoking the lease kept its key");

    // The watcher saw every write, in revision order, with previous values.
    let expected = [
        ("k/1", EventType::Put, "one", None),
        ("k/2", EventType::Put, "two", None),
        ("k/1", EventType::Put, "uno", Some("one")),
        ("k/3", EventType::Put, "three", None),
        ("k/2", EventType::Delete, "", Some("two")),
        ("k/leased", EventType::Put, "x", None),
        ("k/leased", EventType::Delete, "", Some("x")),
    ];
    let mut seen = Vec::new();
    let mut last_rev = 0;
    while seen.len() < expected.len() {
        let resp = tokio::time::timeout(Duration::from_secs(10), events.message())
            .await
            .expect("watch events within 10 s")
            .unwrap()
            .expect("the watch stream stays open");
        for e in resp.events() {
            let kv = e.kv().unwrap();
            assert!(kv.mod_revision() > last_rev || e.event_type() == EventType::Delete);
            last_rev = last_rev.max(kv.mod_revision());
            seen.push((
                kv.key_str().unwrap().to_string(),
                e.event_type(),
                kv.value_str().unwrap().to_string(),
                e.prev_kv().map(|p| p.value_str().unwrap().to_string()),
            ));
        }
    }
    let seen: Vec<_> = seen
        .iter()
        .map(|(k, t, v, p)| (k.as_str(), *t, v.as_str(), p.as_deref()))
        .collect();
    assert_eq!(seen, expected);
}

/// Linearizable reads at both followers at once: each follower numbers its ReadIndex
/// requests, and the leader keeps one pending read per request context, so contexts must
/// not repeat across members or the leader drops one and its reads time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_at_two_followers_are_all_answered() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), &["a", "b", "c"]).await;
    let ports = cluster.ports();
    let leader = cluster.leader().await;
    connect(ports[leader])
        .await
        .unwrap()
        .put("r", "v", None)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for (n, f) in (0..3).filter(|&i| i != leader).enumerate() {
        for t in 0..16 {
            let mut c = connect(ports[f]).await.unwrap();
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    let got = tokio::time::timeout(Duration::from_secs(3), c.get("r", None))
                        .await
                        .unwrap_or_else(|_| panic!("read {i} of task {t} at follower {n} hung"))
                        .unwrap();
                    assert_eq!(got.kvs()[0].value(), b"v");
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
}
