//! Leases on a real detcd process through the `etcd-client` crate: grant, attach, time to
//! live, keepalive, revoke, expiry without keepalives, and leases surviving kill -9.

#![cfg(not(madsim))]

mod common;

use std::time::{Duration, Instant};

use common::{grpc_message as message, ready_client, Member};
use etcd_client::{LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions};

#[tokio::test]
async fn lease_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let node = Member::new("default", dir.path());
    let member = node.start(None);
    let mut c = ready_client(node.client_port).await;

    let long = c.lease_grant(100, None).await.unwrap();
    assert_eq!(long.ttl(), 100);
    let chosen = c
        .lease_grant(100, Some(LeaseGrantOptions::new().with_id(0x77)))
        .await
        .unwrap();
    assert_eq!(chosen.id(), 0x77);
    let err = c
        .lease_grant(100, Some(LeaseGrantOptions::new().with_id(0x77)))
        .await
        .unwrap_err();
    assert_eq!(message(err), "etcdserver: lease already exists");
    c.put("a", "1", Some(PutOptions::new().with_lease(long.id())))
        .await
        .unwrap();
    c.put("b", "2", Some(PutOptions::new().with_lease(long.id())))
        .await
        .unwrap();
    let ttl = c
        .lease_time_to_live(long.id(), Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(ttl.granted_ttl(), 100);
    assert!(ttl.ttl() > 90 && ttl.ttl() <= 100, "{}", ttl.ttl());
    let mut keys: Vec<&[u8]> = ttl.keys().iter().map(|k| k.as_slice()).collect();
    keys.sort();
    assert_eq!(keys, vec![&b"a"[..], &b"b"[..]]);
    let listed: Vec<i64> = c
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    assert!(listed.contains(&long.id()) && listed.contains(&0x77));

    let (mut keeper, mut acks) = c.lease_keep_alive(long.id()).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let ack = acks.message().await.unwrap().unwrap();
    assert_eq!((ack.id(), ack.ttl()), (long.id(), 100));

    // Revoke removes every attached key in one revision.
    let before = c.get("a", None).await.unwrap().header().unwrap().revision();
    let revoked = c.lease_revoke(long.id()).await.unwrap();
    assert_eq!(revoked.header().unwrap().revision(), before + 1);
    assert!(c.get("a", None).await.unwrap().kvs().is_empty());
    assert!(c.get("b", None).await.unwrap().kvs().is_empty());
    let err = c.lease_revoke(long.id()).await.unwrap_err();
    assert_eq!(message(err), "etcdserver: requested lease not found");
    let gone = c.lease_time_to_live(long.id(), None).await.unwrap();
    assert_eq!(gone.ttl(), -1);

    // Without keepalives a short lease expires and takes its key with it.
    let short = c.lease_grant(2, None).await.unwrap();
    c.put("short", "x", Some(PutOptions::new().with_lease(short.id())))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !c.get("short", None).await.unwrap().kvs().is_empty() {
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Leases are durable: after kill -9 the remaining one is still there.
    drop(member);
    let _member = node.start(None);
    let mut c = ready_client(node.client_port).await;
    let listed: Vec<i64> = c
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    assert_eq!(listed, vec![0x77]);
    c.put("after", "1", Some(PutOptions::new().with_lease(0x77)))
        .await
        .unwrap();
}
