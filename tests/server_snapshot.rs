//! Snapshots and log compaction with real processes: a member snapshots every
//! `--snapshot-count` entries and keeps only `--experimental-snapshot-catchup-entries` of
//! log before it, so a follower that was down longer catches up from a snapshot the leader
//! streams; a member restarted after kill -9 comes back from its newest snapshot and WAL.
//!
//! The flags go through their `ETCD_*` environment forms, which the member processes
//! inherit; every test here sets the same values.

#![cfg(not(madsim))] // real processes; sim/tests/snapshot.rs is the simulated counterpart.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::cluster::{connect, poll, Cluster};
use common::{ready_client, Member};
use detcd::runtime::RealDisk;
use detcd::snap::{SnapshotFile, Snapshotter};
use etcd_client::{GetOptions, PutOptions};

const SNAPSHOT_COUNT: u64 = 100;
const CATCHUP_ENTRIES: u64 = 10;

fn small_snapshots() {
    std::env::set_var("ETCD_SNAPSHOT_COUNT", SNAPSHOT_COUNT.to_string());
    std::env::set_var(
        "ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES",
        CATCHUP_ENTRIES.to_string(),
    );
    std::env::set_var(
        "ETCD_EXPERIMENTAL_WAL_SEGMENT_BYTES",
        (32 << 10).to_string(),
    );
}

/// Every intact snapshot metadata file of the member whose data is in `data_dir`.
fn snapshots(data_dir: &Path) -> Vec<SnapshotFile> {
    let snapper = Snapshotter::new(Arc::new(RealDisk), &data_dir.join("member/snap")).unwrap();
    let mut found = Vec::new();
    snapper
        .load_newest_where(|s| {
            found.push(s.clone());
            false
        })
        .unwrap();
    found
}

fn index_of(s: &SnapshotFile) -> u64 {
    s.metadata.as_ref().unwrap().index
}

/// Names of the WAL segments of the member at `data_dir`.
fn wal_segments(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir.join("member/wal"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".wal"))
        .collect();
    names.sort();
    names
}

async fn put_many(c: &mut etcd_client::Client, prefix: &str, n: usize) {
    for i in 0..n {
        c.put(format!("{prefix}{i:04}"), format!("v{i}"), None)
            .await
            .unwrap();
    }
}

/// kill -9 a follower, write until the leader's log is compacted far past it, restart it:
/// it must catch up through a snapshot (its snap directory records one received from the
/// leader) and agree with the others on HashKV, leases included.
#[tokio::test(flavor = "multi_thread")]
async fn lagging_follower_catches_up_through_a_snapshot() {
    small_snapshots();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), &["s1", "s2", "s3"]).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let ports = cluster.ports();
    let mut c = ready_client(ports[leader]).await;
    put_many(&mut c, "before/", 20).await;

    cluster.kill(follower);
    // Everything the follower can hold is at most what the leader had written.
    let follower_bound = c.status().await.unwrap().raft_index();
    let lease = c.lease_grant(600, None).await.unwrap().id();
    c.put("leased", "yes", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    put_many(&mut c, "after/", 3 * SNAPSHOT_COUNT as usize).await;
    c.delete("before/0000", None).await.unwrap();
    let leader_dir = &cluster.members[leader].data_dir;
    let newest = poll(
        "the leader's snapshot past the follower",
        Duration::from_secs(10),
        || async {
            snapshots(leader_dir)
                .first()
                .map(index_of)
                .filter(|&i| i - CATCHUP_ENTRIES > follower_bound + 1)
        },
    )
    .await;
    assert!(
        snapshots(leader_dir).len() <= 5,
        "old snapshot files are removed"
    );

    cluster.restart(follower);
    let rev = c.status().await.unwrap().header().unwrap().revision();
    let fport = ports[follower];
    poll(
        "the follower to reach the leader's revision",
        Duration::from_secs(20),
        || async {
            let mut f = connect(fport).await?;
            let r = f.status().await.ok()?.header()?.revision();
            (r >= rev).then_some(())
        },
    )
    .await;
    let mut hashes = Vec::new();
    for &p in &ports {
        let mut m = connect(p).await.unwrap();
        hashes.push(m.hash_kv(rev).await.unwrap().hash());
    }
    assert!(
        hashes.iter().all(|h| *h == hashes[0]),
        "members differ at revision {rev}: {hashes:?}"
    );
    let received: Vec<u64> = snapshots(&cluster.members[follower].data_dir)
        .iter()
        .filter(|s| s.backend != "db")
        .map(index_of)
        .collect();
    assert!(
        received.iter().any(|&i| i >= newest),
        "the follower installed no snapshot from the leader at or after {newest}: {received:?}"
    );
    let mut f = connect(fport).await.unwrap();
    let leased = f
        .get("leased", Some(GetOptions::new().with_serializable()))
        .await
        .unwrap();
    assert_eq!(leased.kvs()[0].lease(), lease);
    let leases = f.leases().await.unwrap();
    assert!(
        leases.leases().iter().any(|l| l.id() == lease),
        "the restored follower knows lease {lease:x}"
    );

    // The installed backend came from the leader, but the follower stays itself across a
    // restart and keeps serving writes with the others.
    cluster.kill(follower);
    cluster.restart(follower);
    let id = poll(
        "the restarted follower's ID",
        Duration::from_secs(20),
        || common::cluster::member_id(fport),
    )
    .await;
    assert_eq!(
        id, cluster.ids[follower],
        "the follower took another member's ID"
    );
    let mut f = poll(
        "a write through the restarted follower",
        Duration::from_secs(20),
        || async {
            let mut f = connect(fport).await?;
            f.put("after-restart", "v", None).await.ok()?;
            Some(f)
        },
    )
    .await;
    let got = f.get("after-restart", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"v");
}

/// A single member killed after several snapshots restarts from the newest one and the
/// WAL after it, with every key, and with the WAL segments before it gone.
#[tokio::test(flavor = "multi_thread")]
async fn restart_from_a_snapshot_keeps_all_data() {
    small_snapshots();
    let dir = tempfile::tempdir().unwrap();
    let m = Member::new("solo", dir.path());
    let proc = m.start(None);
    let mut c = ready_client(m.client_port).await;
    let n = 3 * SNAPSHOT_COUNT as usize + 50;
    put_many(&mut c, "k/", n).await;
    c.delete("k/0007", None).await.unwrap();
    let snaps = snapshots(&m.data_dir);
    assert!(
        snaps.len() >= 3,
        "a snapshot every {SNAPSHOT_COUNT} entries: {}",
        snaps.len()
    );
    let segments = wal_segments(&m.data_dir);
    assert!(
        !segments[0].starts_with("0000000000000000-"),
        "WAL segments before the snapshot are released: {segments:?}"
    );
    let before = c
        .get("k/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    drop(proc);

    let _proc = m.start(None);
    let mut c = ready_client(m.client_port).await;
    let after = c
        .get("k/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let entries = |r: &etcd_client::GetResponse| -> Vec<(Vec<u8>, Vec<u8>, i64)> {
        r.kvs()
            .iter()
            .map(|kv| (kv.key().to_vec(), kv.value().to_vec(), kv.mod_revision()))
            .collect()
    };
    assert_eq!(after.kvs().len(), n - 1);
    assert_eq!(entries(&after), entries(&before));
    let rev = before.header().unwrap().revision();
    assert!(
        after.header().unwrap().revision() > rev,
        "__ready wrote once more"
    );
    c.put("k/new", "x", None).await.unwrap();
}
