//! The Election and Lock services on a real detcd process, through the `etcd-client`
//! crate's election and lock clients and etcdctl's `lock`: mutual exclusion, waiting on
//! the previous holder's deletion (unlock, resign, lease expiry), a cancelled waiter
//! leaving no key behind, observe seeing every leader and proclamation in order, and
//! etcd's errors; on a 3-member cluster, a lock holder or election leader whose member is
//! killed loses out only once its lease has expired, and its fenced writes then fail.

#![cfg(not(madsim))]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use std::sync::{Arc, Mutex};

use common::cluster::Cluster;
use common::{grpc_message as message, on_path, ready_client, Member};
use etcd_client::{
    Client, Compare, CompareOp, GetOptions, LeaderKey, LockOptions, ObserveStream, ProclaimOptions,
    ResignOptions, Txn, TxnOp,
};

const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `ready` until it holds, failing with `what` at the deadline.
async fn eventually<F, Fut>(what: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !ready().await {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How many keys live under `prefix`.
async fn count(c: &mut Client, prefix: &str) -> i64 {
    let opts = GetOptions::new().with_prefix().with_count_only();
    c.get(prefix, Some(opts)).await.unwrap().count()
}

#[tokio::test]
async fn lock_excludes_until_unlock_expiry_or_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let node = Member::new("default", dir.path());
    let _member = node.start(None);
    let mut c = ready_client(node.client_port).await;

    let la = c.lease_grant(60, None).await.unwrap().id();
    let lb = c.lease_grant(60, None).await.unwrap().id();
    let held = c
        .lock("job", Some(LockOptions::new().with_lease(la)))
        .await
        .unwrap();
    assert_eq!(held.key(), format!("job/{la:x}").as_bytes());

    // A second contender waits: its key exists, its call has not returned.
    let mut cb = c.clone();
    let waiter = tokio::spawn(async move {
        cb.lock("job", Some(LockOptions::new().with_lease(lb)))
            .await
            .map(|r| r.key().to_vec())
    });
    eventually("the second contender's key", || {
        let mut c = c.clone();
        async move { count(&mut c, "job/").await == 2 }
    })
    .await;
    assert!(!waiter.is_finished(), "a lock was granted while held");

    c.unlock(held.key()).await.unwrap();
    let second = tokio::time::timeout(DEADLINE, waiter)
        .await
        .expect("the waiter got the lock after unlock")
        .unwrap()
        .unwrap();
    assert_eq!(second, format!("job/{lb:x}").as_bytes());

    // The holder's lease expires: the next contender gets the lock without an unlock.
    let short = c.lease_grant(2, None).await.unwrap().id();
    let lc = c.lease_grant(60, None).await.unwrap().id();
    c.unlock(second).await.unwrap();
    c.lock("exp", Some(LockOptions::new().with_lease(short)))
        .await
        .unwrap();
    let started = Instant::now();
    let got = tokio::time::timeout(
        DEADLINE,
        c.lock("exp", Some(LockOptions::new().with_lease(lc))),
    )
    .await
    .expect("the lock was freed by the holder's lease expiry")
    .unwrap();
    assert_eq!(got.key(), format!("exp/{lc:x}").as_bytes());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "granted before expiry"
    );

    // A waiter whose caller goes away leaves no key behind.
    let ld = c.lease_grant(60, None).await.unwrap().id();
    let mut cd = c.clone();
    let cancelled = tokio::spawn(async move {
        let _ = cd
            .lock("exp", Some(LockOptions::new().with_lease(ld)))
            .await;
    });
    eventually("the cancelled contender's key", || {
        let mut c = c.clone();
        async move { count(&mut c, "exp/").await == 2 }
    })
    .await;
    cancelled.abort();
    eventually("the cancelled contender's key removed", || {
        let mut c = c.clone();
        async move { count(&mut c, "exp/").await == 1 }
    })
    .await;

    let err = c
        .lock("bad", Some(LockOptions::new().with_lease(0x5eed)))
        .await
        .unwrap_err();
    assert_eq!(message(err), "etcdserver: requested lease not found");
}

#[tokio::test]
async fn election_leads_in_creation_order_and_observe_sees_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let node = Member::new("default", dir.path());
    let _member = node.start(None);
    let mut c = ready_client(node.client_port).await;

    let err = c.leader("svc").await.unwrap_err();
    assert_eq!(message(err), "election: no leader");
    let mut observed = c.observe("svc").await.unwrap();

    let la = c.lease_grant(60, None).await.unwrap().id();
    let lb = c.lease_grant(60, None).await.unwrap().id();
    let a = c.campaign("svc", "a1", la).await.unwrap();
    let a_key: LeaderKey = a.leader().unwrap().clone();
    assert_eq!(a_key.key(), format!("svc/{la:x}").as_bytes());
    let leader = c.leader("svc").await.unwrap();
    assert_eq!(leader.kv().unwrap().value(), b"a1");

    let mut cb = c.clone();
    let b = tokio::spawn(async move { cb.campaign("svc", "b1", lb).await });
    eventually("the second candidate's key", || {
        let mut c = c.clone();
        async move { count(&mut c, "svc/").await == 2 }
    })
    .await;
    assert!(!b.is_finished(), "two leaders at once");

    c.proclaim(
        "a2",
        Some(ProclaimOptions::new().with_leader(a_key.clone())),
    )
    .await
    .unwrap();
    c.resign(Some(ResignOptions::new().with_leader(a_key.clone())))
        .await
        .unwrap();
    let b = tokio::time::timeout(DEADLINE, b)
        .await
        .expect("the second candidate leads after the resignation")
        .unwrap()
        .unwrap();
    assert_eq!(c.leader("svc").await.unwrap().kv().unwrap().value(), b"b1");

    // The deposed leader can neither proclaim nor resign its successor away.
    let err = c
        .proclaim(
            "a3",
            Some(ProclaimOptions::new().with_leader(a_key.clone())),
        )
        .await
        .unwrap_err();
    assert_eq!(message(err), "election: not leader");
    c.resign(Some(ResignOptions::new().with_leader(a_key)))
        .await
        .unwrap();
    assert_eq!(c.leader("svc").await.unwrap().kv().unwrap().value(), b"b1");
    assert_eq!(b.leader().unwrap().key(), format!("svc/{lb:x}").as_bytes());

    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(next_observed(&mut observed).await);
    }
    assert_eq!(seen, [b"a1".to_vec(), b"a2".to_vec(), b"b1".to_vec()]);
}

/// The value of the next leader `observed` reports, waiting up to [`DEADLINE`].
async fn next_observed(observed: &mut ObserveStream) -> Vec<u8> {
    let next = tokio::time::timeout(DEADLINE, observed.message())
        .await
        .expect("observe delivers each change");
    next.unwrap().unwrap().kv().unwrap().value().to_vec()
}

/// etcdctl's `lock` runs a command while it holds the lock (etcdctl 3.4 takes it with the
/// client-side recipe over KV, Watch and Lease, not through the Lock service).
#[tokio::test]
async fn etcdctl_lock_runs_a_command_under_the_lock() {
    if !on_path("etcdctl") {
        eprintln!(
            "SKIPPED etcdctl_lock_runs_a_command_under_the_lock: no etcdctl (ci/install-etcd)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = Member::new("default", dir.path());
    let _member = node.start(None);
    ready_client(node.client_port).await;
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            &node.client_url(),
            "lock",
            "tool",
            "echo",
            "under-lock",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("under-lock"), "{stdout}");
}

/// The short lease of a holder whose member is killed.
const TTL: i64 = 3;

/// Keeps lease `id` alive through `c` every half second (as a client library does) and
/// returns when the last keep-alive was acknowledged.
async fn keep_alive(c: &mut Client, id: i64) -> Arc<Mutex<Instant>> {
    let (mut keeper, mut acks) = c.lease_keep_alive(id).await.unwrap();
    let last = Arc::new(Mutex::new(Instant::now()));
    let acked = last.clone();
    tokio::spawn(async move {
        while keeper.keep_alive().await.is_ok() {
            match tokio::time::timeout(Duration::from_secs(1), acks.message()).await {
                Ok(Ok(Some(ack))) if ack.ttl() > 0 => *acked.lock().unwrap() = Instant::now(),
                _ => return,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    last
}

/// kill -9 member `i` while `last_ack` shows its client's lease being kept alive.
fn kill_kept_alive(cluster: &mut Cluster, i: usize, last_ack: &Mutex<Instant>) {
    let since = last_ack.lock().unwrap().elapsed();
    assert!(
        since < Duration::from_millis(1500),
        "no keep-alive for {since:?}"
    );
    cluster.kill(i);
}

/// A client of member `i` alone, and a lease of `ttl` seconds granted through it.
async fn client_of(cluster: &Cluster, i: usize, ttl: i64) -> (Client, i64) {
    let mut c = ready_client(cluster.members[i].client_port).await;
    let lease = c.lease_grant(ttl, None).await.unwrap().id();
    (c, lease)
}

/// Asserts that what waited on the holder, done at `granted`, came no earlier than the
/// holder's lease TTL after its last acknowledged keep-alive (less 250 ms for the
/// acknowledgement's trip back).
fn after_expiry(what: &str, last_ack: &Mutex<Instant>, granted: Instant) {
    let waited = granted - *last_ack.lock().unwrap();
    let ttl = Duration::from_secs(TTL as u64);
    assert!(
        waited + Duration::from_millis(250) >= ttl,
        "{what} {waited:?} after the holder's last keep-alive, its TTL is {ttl:?}"
    );
}

/// A write fenced by `key`'s creation revision (the lock's or leadership's token):
/// whether it was applied.
async fn fenced_put(c: &mut Client, key: &[u8], rev: i64, value: &str) -> bool {
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, rev)])
        .and_then([TxnOp::put("fenced", value, None)]);
    c.txn(txn).await.unwrap().succeeded()
}

/// The lock holder, connected to the Raft leader only, loses its member: a waiter on a
/// follower gets the lock once the holder's lease has expired, not before, and the stale
/// holder's fenced write fails wherever it reconnects.
#[tokio::test]
async fn lock_passes_on_when_the_holders_member_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), &["a", "b", "c"]).await;
    let a = cluster.leader().await;
    let (b, c) = ((a + 1) % 3, (a + 2) % 3);
    let (mut holder, short) = client_of(&cluster, a, TTL).await;
    let last_ack = keep_alive(&mut holder, short).await;
    let held = holder
        .lock("job", Some(LockOptions::new().with_lease(short)))
        .await
        .unwrap();
    let key = held.key().to_vec();
    let rev = holder.get(key.clone(), None).await.unwrap().kvs()[0].create_revision();
    assert!(fenced_put(&mut holder, &key, rev, "holder").await);

    let (waiter, long) = client_of(&cluster, b, 60).await;
    let mut w = waiter.clone();
    let waiting = tokio::spawn(async move {
        let got = w
            .lock("job", Some(LockOptions::new().with_lease(long)))
            .await;
        (got.map(|r| r.key().to_vec()), Instant::now())
    });
    eventually("the waiter's key", || {
        let mut c = waiter.clone();
        async move { count(&mut c, "job/").await == 2 }
    })
    .await;
    assert!(!waiting.is_finished(), "a lock was granted while held");

    kill_kept_alive(&mut cluster, a, &last_ack);
    let (got, granted) = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the waiter got the lock once the holder's lease expired")
        .unwrap();
    let got = got.unwrap();
    after_expiry("the lock was granted", &last_ack, granted);
    let mut waiter = waiter;
    let rev_w = waiter.get(got.clone(), None).await.unwrap().kvs()[0].create_revision();

    let (mut stale, _) = client_of(&cluster, c, 60).await;
    assert!(!fenced_put(&mut stale, &key, rev, "stale holder").await);
    assert!(fenced_put(&mut waiter, &got, rev_w, "waiter").await);
    let fenced = stale.get("fenced", None).await.unwrap();
    assert_eq!(fenced.kvs()[0].value(), b"waiter");
}

/// The election leader, connected to a Raft follower only, loses its member: the next
/// candidate (on the other follower) leads once the leader's lease has expired, not
/// before; observe on the surviving Raft leader reports it, and the deposed leader can no
/// longer proclaim.
#[tokio::test]
async fn election_passes_on_when_the_leaders_member_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), &["a", "b", "c"]).await;
    let c = cluster.leader().await;
    let (a, b) = ((c + 1) % 3, (c + 2) % 3);
    let (mut first, short) = client_of(&cluster, a, TTL).await;
    let last_ack = keep_alive(&mut first, short).await;
    let leader = first.campaign("svc", "a", short).await.unwrap();
    let leader: LeaderKey = leader.leader().unwrap().clone();

    let (mut watcher, _) = client_of(&cluster, c, 60).await;
    let mut observed = watcher.observe("svc").await.unwrap();
    assert_eq!(next_observed(&mut observed).await, b"a");

    let (second, long) = client_of(&cluster, b, 60).await;
    let mut s = second.clone();
    let campaigning = tokio::spawn(async move {
        let won = s.campaign("svc", "b", long).await;
        (won.map(|r| r.leader().unwrap().clone()), Instant::now())
    });
    eventually("the second candidate's key", || {
        let mut c = second.clone();
        async move { count(&mut c, "svc/").await == 2 }
    })
    .await;
    assert!(!campaigning.is_finished(), "two leaders at once");
    let now = watcher.leader("svc").await.unwrap();
    assert_eq!(now.kv().unwrap().value(), b"a");

    kill_kept_alive(&mut cluster, a, &last_ack);
    let (won, elected) = tokio::time::timeout(Duration::from_secs(30), campaigning)
        .await
        .expect("the candidate leads once the leader's lease expired")
        .unwrap();
    let won = won.unwrap();
    after_expiry("the candidate was elected", &last_ack, elected);
    assert_eq!(next_observed(&mut observed).await, b"b");
    let now = watcher.leader("svc").await.unwrap();
    assert_eq!(now.kv().unwrap().key(), won.key());

    let (mut stale, _) = client_of(&cluster, c, 60).await;
    let deposed = ProclaimOptions::new().with_leader(leader.clone());
    let err = stale.proclaim("a2", Some(deposed)).await.unwrap_err();
    assert_eq!(message(err), "election: not leader");
    assert!(!fenced_put(&mut stale, leader.key(), leader.rev(), "a").await);
}
