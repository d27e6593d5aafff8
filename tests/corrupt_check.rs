//! Corruption detection as etcd 3.5 runs it, against real processes. One member's backend
//! is altered while it is stopped (a value changed under its revision, as etcd's e2e test
//! corrupts bbolt); then the initial check stops it, the leader's periodic check or the
//! compaction hash check raises the CORRUPT alarm naming it within one interval, and
//! writes are refused with etcd's error. A healthy cluster under the same checks raises
//! nothing.

#![cfg(not(madsim))]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cluster::{connect, member_id, poll, Cluster};
use common::maint::{terminate, wait_exit};
use common::{grpc_message, initial_cluster, ready_client, Member};
use detcd::backend::{Backend, KEY};
use detcd::runtime::RealDisk;
use etcd_client::{AlarmAction, AlarmType, Client, CompactionOptions, GetOptions};
use redb::ReadableTable;

const PERIODIC: &[&str] = &["--experimental-corrupt-check-time", "1s"];
const COMPACT_HASH: &[&str] = &[
    "--experimental-compact-hash-check-enabled",
    "--experimental-compact-hash-check-time",
    "1s",
];
const INITIAL: &str = "--experimental-initial-corrupt-check";

fn log_of(m: &Member, run: u32) -> PathBuf {
    m.data_dir.with_extension(format!("{run}.log"))
}

/// Three members started with `flags`, their logs beside their data directories.
async fn start(dir: &Path, flags: &[&str]) -> Cluster {
    let members: Vec<Member> = ["a", "b", "c"].map(|n| Member::new(n, dir)).into();
    let ic = initial_cluster(&members);
    let procs = members
        .iter()
        .map(|m| Some(m.start_logged(&ic, flags, &log_of(m, 0))))
        .collect();
    let mut ids = Vec::new();
    for m in &members {
        let id = poll("a member's ID", Duration::from_secs(30), || {
            member_id(m.client_port)
        });
        ids.push(id.await);
    }
    let cluster = Cluster {
        members,
        initial_cluster: ic,
        procs,
        ids,
    };
    cluster.leader().await;
    cluster
}

/// Puts ten keys through the leader and returns the index of a follower.
async fn write_and_pick_follower(c: &Cluster) -> (Client, usize) {
    let leader = c.leader().await;
    let mut client = ready_client(c.members[leader].client_port).await;
    for i in 0..10 {
        client
            .put(format!("k{i}"), format!("v{i}"), None)
            .await
            .unwrap();
    }
    (client, (leader + 1) % 3)
}

/// Stops member `i` with SIGTERM (its backend committed) and flips a bit in the value of
/// the oldest revision in its backend; every revision stays where it was.
fn stop_and_alter(c: &mut Cluster, i: usize) {
    let mut p = c.procs[i].take().unwrap();
    terminate(&mut p, Duration::from_secs(10)).expect("the member stops on SIGTERM");
    let path = c.members[i].data_dir.join("member/snap/db");
    let mut backend = Backend::open(&RealDisk, &path).unwrap();
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

/// The alarms the member on `port` reports.
async fn alarms(port: u16) -> Option<Vec<(u64, AlarmType)>> {
    let mut c = connect(port).await?;
    let resp = c
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .ok()?;
    let alarms = resp.alarms().iter();
    Some(alarms.map(|a| (a.member_id(), a.alarm())).collect())
}

/// Waits until the member on `port` reports some alarm; returns them and how long it took.
async fn first_alarm(port: u16) -> (Vec<(u64, AlarmType)>, Duration) {
    let start = Instant::now();
    let raised = poll("the CORRUPT alarm", Duration::from_secs(30), || async {
        alarms(port).await.filter(|a| !a.is_empty())
    })
    .await;
    (raised, start.elapsed())
}

/// Waits until member `i` serves a serializable read of the newest write.
async fn caught_up(c: &Cluster, i: usize, key: &str) {
    let port = c.members[i].client_port;
    poll(
        "the restarted member to catch up",
        Duration::from_secs(30),
        || async {
            let mut client = connect(port).await?;
            let opts = GetOptions::new().with_serializable();
            let resp = client.get(key, Some(opts)).await.ok()?;
            (!resp.kvs().is_empty()).then_some(())
        },
    )
    .await;
}

/// After an alarm, writes fail with etcd's error on every member while reads still work.
async fn writes_refused(c: &Cluster) {
    for m in &c.members {
        let mut client = connect(m.client_port).await.unwrap();
        let e = client.put("after", "x", None).await.unwrap_err();
        assert_eq!(grpc_message(e), "etcdserver: corrupt cluster");
        let got = client.get("k1", None).await.unwrap();
        assert_eq!(got.kvs()[0].value(), b"v1");
    }
}

#[tokio::test]
async fn initial_and_periodic_checks_catch_an_altered_member() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(dir.path(), PERIODIC).await;
    let (_client, victim) = write_and_pick_follower(&c).await;
    stop_and_alter(&mut c, victim);

    // etcd's initial check: the member stops before serving, exit code 1.
    let m = &c.members[victim];
    let out = m
        .command(
            env!("CARGO_BIN_EXE_detcd"),
            Some(&c.initial_cluster),
            &[INITIAL],
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let says = format!("{:x} found data inconsistency with peers", c.ids[victim]);
    assert!(stderr.contains(&says), "wanted {says:?} in {stderr}");

    // Without it the member serves; the leader's next check raises the alarm for it.
    c.procs[victim] = Some(m.start_logged(&c.initial_cluster, PERIODIC, &log_of(m, 1)));
    caught_up(&c, victim, "k9").await;
    let (raised, took) = first_alarm(c.members[victim].client_port).await;
    eprintln!("periodic check: CORRUPT raised {took:?} after the altered member served");
    assert_eq!(raised, [(c.ids[victim], AlarmType::Corrupt)]);
    assert!(
        took < Duration::from_secs(3),
        "one 1 s interval, took {took:?}"
    );
    writes_refused(&c).await;
}

#[tokio::test]
async fn compaction_hash_check_catches_an_altered_member() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = start(dir.path(), COMPACT_HASH).await;
    let (mut client, victim) = write_and_pick_follower(&c).await;
    stop_and_alter(&mut c, victim);
    let m = &c.members[victim];
    c.procs[victim] = Some(m.start_logged(&c.initial_cluster, COMPACT_HASH, &log_of(m, 1)));
    let rev = client.put("k10", "v10", None).await.unwrap();
    let rev = rev.header().unwrap().revision();
    caught_up(&c, victim, "k10").await;
    assert_eq!(alarms(c.members[0].client_port).await.unwrap(), []);

    let compacted = Instant::now();
    let physical = CompactionOptions::new().with_physical();
    client.compact(rev, Some(physical)).await.unwrap();
    let (raised, _) = first_alarm(c.members[victim].client_port).await;
    let took = compacted.elapsed();
    eprintln!("compaction hash check: CORRUPT raised {took:?} after the compaction");
    assert_eq!(raised, [(c.ids[victim], AlarmType::Corrupt)]);
    assert!(
        took < Duration::from_secs(3),
        "one 1 s interval, took {took:?}"
    );
    writes_refused(&c).await;
}

/// How many times `line` appears in member `m`'s log of run `run`.
fn count_in_log(m: &Member, run: u32, line: &str) -> usize {
    let log = std::fs::read_to_string(log_of(m, run)).unwrap_or_default();
    log.matches(line).count()
}

#[tokio::test]
async fn a_healthy_cluster_raises_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let flags = [PERIODIC, COMPACT_HASH].concat();
    let mut c = start(dir.path(), &flags).await;
    let (mut client, follower) = write_and_pick_follower(&c).await;

    // A restart with the initial check passes and serves.
    let mut p = c.procs[follower].take().unwrap();
    terminate(&mut p, Duration::from_secs(10)).expect("the member stops on SIGTERM");
    let m = &c.members[follower];
    let restart = [flags.as_slice(), &[INITIAL]].concat();
    c.procs[follower] = Some(m.start_logged(&c.initial_cluster, &restart, &log_of(m, 1)));
    let rev = client.put("k11", "v11", None).await.unwrap();
    caught_up(&c, follower, "k11").await;
    // Compaction hashes live in memory: compacting after the restart gives every member one.
    client
        .compact(rev.header().unwrap().revision(), None)
        .await
        .unwrap();
    let passed = "initial corruption checking passed; no corruption";
    assert_eq!(count_in_log(m, 1, passed), 1);
    let p = c.procs[follower].as_mut().unwrap();
    assert!(wait_exit(p, Duration::ZERO).is_none(), "the member runs");

    // Three more periodic passes over both peers, and a whole compaction hash check.
    let leader = &c.members[c.leader().await];
    let checked = r#""msg":"finished peer corruption check","number-of-peers-checked":2"#;
    let whole = "successfully checked hash on whole cluster";
    let before = count_in_log(leader, 0, checked);
    poll(
        "three checks of both peers",
        Duration::from_secs(30),
        || async {
            let seen = count_in_log(leader, 0, checked);
            (seen >= before + 3 && count_in_log(leader, 0, whole) >= 1).then_some(())
        },
    )
    .await;
    for m in &c.members {
        assert_eq!(alarms(m.client_port).await.unwrap(), []);
    }
    client.put("k12", "v12", None).await.unwrap();
}
