//! Maintenance and lease calls operators rely on, against real detcd processes: the NOSPACE
//! alarm under `--quota-backend-bytes` (raised through the log, caps writes, survives a
//! restart, disarmed by the operator), compaction in batches, defragmentation, snapshots with etcd's sha256
//! trailer, keepalive and time-to-live through a follower, and graceful shutdown.

#![cfg(not(madsim))]

mod common;

use std::time::Duration;

use common::cluster::{connect, poll, Cluster};
use common::maint::terminate;
use common::{grpc_message as message, ready_client, Member};
use etcd_client::{
    AlarmAction, AlarmOptions, AlarmType, Client, CompactionOptions, Compare, CompareOp,
    DeleteOptions, GetOptions, Txn, TxnOp, WatchOptions,
};
use prost::Message;
use sha2::{Digest, Sha256};

const NOSPACE: &str = "etcdserver: mvcc: database space exceeded";
/// redb's empty database file is 1 MiB and 8 KiB: a few 100 KB values take it past this.
const QUOTA: i64 = 1_200_000;

/// A client once the member on `port` sees a leader (its writes may be refused).
async fn status_client(port: u16) -> Client {
    poll("a leader", Duration::from_secs(20), || async {
        let mut c = connect(port).await?;
        (c.status().await.ok()?.leader() != 0).then_some(c)
    })
    .await
}

async fn alarms(c: &mut Client) -> Vec<(u64, AlarmType)> {
    let resp = c.alarm(AlarmAction::Get, AlarmType::None, None).await;
    let alarms = resp.unwrap().alarms().to_vec();
    alarms.iter().map(|a| (a.member_id(), a.alarm())).collect()
}

/// Defragments until the backend is under the quota: compaction frees pages in steps.
async fn defragment_below_quota(c: &Client) -> i64 {
    poll(
        "the backend to shrink below the quota",
        Duration::from_secs(10),
        || async {
            let mut c = c.clone();
            c.defragment().await.unwrap();
            let size = c.status().await.unwrap().db_size();
            (size < QUOTA).then_some(size)
        },
    )
    .await
}

#[tokio::test]
async fn nospace_alarm_caps_writes_until_disarmed() {
    let dir = tempfile::tempdir().unwrap();
    let node = Member::new("default", dir.path());
    let quota = QUOTA.to_string();
    let flags = ["--quota-backend-bytes", &quota];
    let detcd = env!("CARGO_BIN_EXE_detcd");
    let process = node.spawn_with(detcd, None, &flags);
    let mut c = ready_client(node.client_port).await;
    let me = c.status().await.unwrap().header().unwrap().member_id();
    assert!(alarms(&mut c).await.is_empty());

    let big = vec![b'x'; 100_000];
    let mut written = 0;
    let refused = loop {
        match c.put(format!("k{written}"), big.clone(), None).await {
            Ok(_) => written += 1,
            Err(e) => break message(e),
        }
        assert!(written < 40, "no NOSPACE after {written} puts of 100 KB");
    };
    assert_eq!(refused, NOSPACE);
    assert_eq!(alarms(&mut c).await, [(me, AlarmType::Nospace)]);
    let status = c.status().await.unwrap();
    assert_eq!(status.errors(), [format!("memberID:{me} alarm:NOSPACE ")]);
    assert_eq!(status.db_size_quota(), QUOTA);
    // etcd's /health names the alarm until an operator disarms it.
    let health = common::http::get(node.client_port, "/health")
        .await
        .unwrap();
    assert_eq!(health.status, 503);
    assert!(health.body.contains("ALARM NOSPACE"), "{}", health.body);

    // Capped: writes that add data fail; reads, deletes and compaction make room.
    let err = c.put("small", "v", None).await.unwrap_err();
    assert_eq!(message(err), NOSPACE);
    assert_eq!(message(c.lease_grant(60, None).await.unwrap_err()), NOSPACE);
    let txn = Txn::new()
        .when([Compare::version("small", CompareOp::Equal, 0)])
        .and_then([TxnOp::put("small", "v", None)]);
    assert_eq!(message(c.txn(txn).await.unwrap_err()), NOSPACE);
    assert_eq!(c.get("k0", None).await.unwrap().kvs()[0].value(), big);
    let deleted = c
        .delete("k", Some(DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(deleted.deleted(), written);
    let rev = deleted.header().unwrap().revision();
    c.compact(rev, None).await.unwrap();
    let before = c.status().await.unwrap().db_size();
    let after = defragment_below_quota(&c).await;
    assert!(after < before, "defragment left {after} of {before} bytes");

    // Under the quota again, the alarm still caps writes, across a restart.
    assert_eq!(
        message(c.put("small", "v", None).await.unwrap_err()),
        NOSPACE
    );
    drop(process);
    let _process = node.spawn_with(detcd, None, &flags);
    let mut c = status_client(node.client_port).await;
    assert_eq!(alarms(&mut c).await, [(me, AlarmType::Nospace)]);
    assert_eq!(
        message(c.put("small", "v", None).await.unwrap_err()),
        NOSPACE
    );

    let mut disarm = AlarmOptions::new();
    disarm.with_member(me);
    let resp = c.alarm(AlarmAction::Deactivate, AlarmType::Nospace, Some(disarm));
    let disarmed = resp.await.unwrap().alarms().to_vec();
    assert_eq!(disarmed.len(), 1);
    assert_eq!(disarmed[0].member_id(), me);
    assert!(alarms(&mut c).await.is_empty());
    assert!(c.status().await.unwrap().errors().is_empty());
    let health = common::http::get(node.client_port, "/health")
        .await
        .unwrap();
    assert_eq!(health.status, 200, "{}", health.body);
    c.put("small", "v", None).await.unwrap();
    c.lease_grant(60, None).await.unwrap();
}

/// A compaction removes revisions from the backend in batches between applies, as etcd's
/// does: a put made while a long physical compaction runs is answered before it. When every
/// batch ran inside the compaction's apply, the member loop stopped for all of them (seconds
/// at a million keys; long enough for followers to call an election).
#[tokio::test]
async fn writes_go_on_while_a_physical_compaction_runs() {
    let dir = tempfile::tempdir().unwrap();
    let node = Member::new("default", dir.path());
    // One revision per batch, and each batch is a backend commit: 3,000 superseded
    // revisions take thousands of commits.
    let flags = ["--experimental-compaction-batch-limit", "1"];
    let _process = node.spawn_with(env!("CARGO_BIN_EXE_detcd"), None, &flags);
    let mut c = ready_client(node.client_port).await;
    let mut rev = 0;
    for i in 0..3000 {
        let put = c.put("k", i.to_string(), None).await.unwrap();
        rev = put.header().unwrap().revision();
    }
    let compaction = tokio::spawn({
        let mut c = c.clone();
        let physical = CompactionOptions::new().with_physical();
        async move { c.compact(rev, Some(physical)).await }
    });
    poll(
        "the compaction to be applied",
        Duration::from_secs(20),
        || {
            let mut c = c.clone();
            async move {
                let old = GetOptions::new().with_revision(2).with_serializable();
                c.get("k", Some(old)).await.is_err().then_some(())
            }
        },
    )
    .await;
    c.put("other", "v", None).await.unwrap();
    assert!(
        !compaction.is_finished(),
        "the put waited for the whole compaction"
    );
    compaction.await.unwrap().unwrap();
    let kvs = c.get("k", None).await.unwrap();
    assert_eq!(kvs.kvs()[0].value(), b"2999");
}

#[tokio::test]
async fn snapshot_is_an_etcd_database_with_sha256_trailer() {
    let dir = tempfile::tempdir().unwrap();
    let node = Member::new("default", dir.path());
    let _process = node.start(None);
    let mut c = ready_client(node.client_port).await;
    for i in 0..100 {
        c.put(format!("k{i:03}"), format!("v{i}"), None)
            .await
            .unwrap();
    }
    // Acknowledged just now: still in the backend's open batch, unless the snapshot
    // forces a commit first.
    let last = c.put("last", "written", None).await.unwrap();
    let revision = last.header().unwrap().revision();

    let mut stream = c.snapshot().await.unwrap();
    let mut bytes = Vec::new();
    let mut remaining = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        bytes.extend_from_slice(m.blob());
        remaining.push(m.remaining_bytes());
    }
    assert!(bytes.len() > 32, "a snapshot of {} bytes", bytes.len());
    let (db, sha) = bytes.split_at(bytes.len() - 32);
    assert_eq!(Sha256::digest(db).as_slice(), sha, "etcd's sha256 trailer");
    assert_eq!(remaining.last(), Some(&0));
    assert!(remaining.windows(2).all(|w| w[0] >= w[1]), "{remaining:?}");

    let snap_dir = node.data_dir.join("member/snap");
    let copies = || {
        let names = std::fs::read_dir(&snap_dir).unwrap();
        names
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("snapshot-"))
            .count()
    };
    poll("the copy to be removed", Duration::from_secs(5), || async {
        (copies() == 0).then_some(())
    })
    .await;

    // An etcd database: the revision etcdutl would report, and the values.
    assert_eq!(detcd::migrate::status(db).unwrap().revision, revision);
    let etcd = detcd::backend::bolt::read(db).unwrap();
    let latest = |key: &str| {
        etcd[&b"key"[..]]
            .values()
            .map(|v| detcd::proto::mvccpb::KeyValue::decode(v.as_slice()).unwrap())
            .rfind(|kv| kv.key == key.as_bytes())
            .map(|kv| kv.value)
    };
    assert_eq!(latest("last").as_deref(), Some(&b"written"[..]));
    assert_eq!(latest("k042").as_deref(), Some(&b"v42"[..]));
}

#[tokio::test]
async fn lease_keepalive_and_time_to_live_through_a_follower() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), &["m0", "m1", "m2"]).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let mut c = connect(cluster.members[follower].client_port)
        .await
        .unwrap();
    let lease = c.lease_grant(30, None).await.unwrap().id();

    let (mut keeper, mut responses) = c.lease_keep_alive(lease).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let renewed = responses.message().await.unwrap().unwrap();
    assert_eq!((renewed.id(), renewed.ttl()), (lease, 30));
    assert_eq!(
        renewed.header().unwrap().member_id(),
        cluster.ids[follower],
        "the follower answers with its own header"
    );
    let ttl = c.lease_time_to_live(lease, None).await.unwrap();
    assert_eq!(ttl.granted_ttl(), 30);
    assert!((28..=30).contains(&ttl.ttl()), "TTL {}", ttl.ttl());

    // Unknown leases answer as etcd's leader does: TTL 0 to a keepalive, -1 to a query.
    // (etcd-client reports the TTL 0 as not found.)
    let unknown = c.lease_keep_alive(0x5eed).await.err();
    assert!(
        matches!(&unknown, Some(etcd_client::Error::LeaseKeepAliveError(m)) if m == "lease not found"),
        "{unknown:?}"
    );
    assert_eq!(c.lease_time_to_live(0x5eed, None).await.unwrap().ttl(), -1);

    // Alone, the follower loses its leader: the forwarded calls fail as etcd's do.
    for i in 0..3 {
        if i != follower {
            cluster.kill(i);
        }
    }
    let err = c.lease_time_to_live(lease, None).await.unwrap_err();
    assert_eq!(message(err), "etcdserver: no leader");
}

#[tokio::test]
async fn sigterm_drains_syncs_the_backend_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let node = Member::new("default", dir.path());
    let mut process = node.start(None);
    let mut c = ready_client(node.client_port).await;
    for i in 0..50 {
        c.put(format!("k{i:02}"), format!("v{i}"), None)
            .await
            .unwrap();
    }
    let last = c.put("last", "acknowledged", None).await.unwrap();
    let revision = last.header().unwrap().revision();
    // A watch stream never ends by itself; shutdown must not wait for it.
    let _events = c
        .watch("k", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();

    let exit = terminate(&mut process, Duration::from_secs(10));
    assert!(
        exit.is_some_and(|s| s.success()),
        "SIGTERM: exit {exit:?} within 10 s"
    );

    // The backend alone, without the WAL replay a restart would do, holds every
    // acknowledged write.
    let db = node.data_dir.join("member/snap/db");
    let kv = detcd::mvcc::KvStore::open(
        &detcd::runtime::RealDisk,
        &db,
        detcd::mvcc::Config::default(),
    )
    .unwrap();
    assert_eq!(kv.rev(), revision);
    drop(kv);

    let _process = node.start(None);
    let mut c = ready_client(node.client_port).await;
    let got = c.get("last", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"acknowledged");
    let keys = c
        .get("k", Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(keys.count(), 50);
}
