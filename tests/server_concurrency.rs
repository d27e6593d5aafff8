//! The Election and Lock services on a real detcd process, through the `etcd-client`
//! crate's election and lock clients and etcdctl's `lock`: mutual exclusion, waiting on
//! the previous holder's deletion (unlock, resign, lease expiry), a cancelled waiter
//! leaving no key behind, observe seeing every leader and proclamation in order, and
//! etcd's errors.

#![cfg(not(madsim))]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{grpc_message as message, on_path, ready_client, Member};
use etcd_client::{Client, GetOptions, LeaderKey, LockOptions, ProclaimOptions, ResignOptions};

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
        let next = tokio::time::timeout(DEADLINE, observed.message())
            .await
            .expect("observe delivers each change")
            .unwrap()
            .unwrap();
        seen.push(next.kv().unwrap().value().to_vec());
    }
    assert_eq!(seen, [b"a1".to_vec(), b"a2".to_vec(), b"b1".to_vec()]);
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
