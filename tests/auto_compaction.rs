//! `--auto-compaction-mode` and `--auto-compaction-retention`, with real processes: a
//! member told to keep one second of history compacts it away over time, as a client's
//! and `etcdctl get --rev`'s reads of an old revision show (etcdctl printing what it
//! prints against etcd 3.4 under the same flags); retentions etcd would refuse stop the
//! member at start with exit code 1, naming the flag, before it writes anything.
//! (Revision mode checks every five minutes: sim/tests/auto_compaction.rs runs it.)

#![cfg(not(madsim))]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::poll;
use common::{grpc_message, on_path, ready_client, Member};
use etcd_client::GetOptions;

const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_compaction_drops_old_revisions_over_time() {
    let dir = tempfile::tempdir().unwrap();
    let member = Member::new("ac", dir.path());
    let _proc = member.spawn_with(
        env!("CARGO_BIN_EXE_detcd"),
        None,
        &[
            "--auto-compaction-mode=periodic",
            "--auto-compaction-retention=1s",
        ],
    );
    let mut client = ready_client(member.client_port).await;
    let first = client.put("k", "v1", None).await.unwrap();
    let first = first.header().unwrap().revision();
    client.put("k", "v2", None).await.unwrap();
    let at_first = GetOptions::new().with_revision(first);
    let got = client.get("k", Some(at_first.clone())).await.unwrap();
    assert_eq!(
        got.kvs()[0].value(),
        b"v1",
        "still there right after the write"
    );

    // Each write moves the revision on; within a few periods the first is compacted.
    let mut c = client.clone();
    poll(
        &format!("revision {first} compacted"),
        Duration::from_secs(20),
        || {
            let mut c = c.clone();
            let at_first = at_first.clone();
            async move {
                c.put("tick", "", None).await.ok()?;
                match c.get("k", Some(at_first)).await {
                    Err(e) => (grpc_message(e) == COMPACTED).then_some(()),
                    Ok(_) => None,
                }
            }
        },
    )
    .await;
    // The current value stays readable, and compaction keeps following the revision.
    let got = c.get("k", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"v2");
    let later = c
        .put("k", "v3", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    poll(
        &format!("revision {} compacted", later - 1),
        Duration::from_secs(20),
        || {
            let mut c = c.clone();
            async move {
                c.put("tick", "", None).await.ok()?;
                let at = GetOptions::new().with_revision(later - 1);
                match c.get("k", Some(at)).await {
                    Err(e) => (grpc_message(e) == COMPACTED).then_some(()),
                    Ok(_) => None,
                }
            }
        },
    )
    .await;
}

/// `etcdctl <args>` against `endpoint`: its exit code, stdout and `Error:` line (not the
/// client's retry logs).
fn etcdctl(endpoint: &str, args: &[&str]) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint])
        .args(args)
        .output()
        .expect("etcdctl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("Error:")).collect();
    let stdout = String::from_utf8_lossy(&out.stdout);
    format!(
        "exit {:?}\n{stdout}{}",
        out.status.code(),
        errors.join("\n")
    )
}

/// What `etcdctl get --rev=2` shows on a member keeping one second of history: right
/// after revision 3 replaced it, then once it is gone (polled, writing, for up to 20 s).
fn old_revision_over_time(program: &str, dir: &std::path::Path) -> Vec<String> {
    let member = Member::new("ac", dir);
    let _proc = member.spawn_with(
        program,
        None,
        &[
            "--auto-compaction-mode=periodic",
            "--auto-compaction-retention=1s",
        ],
    );
    let url = member.client_url();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !etcdctl(&url, &["get", "k"]).starts_with("exit Some(0)") {
        assert!(Instant::now() < deadline, "{program} never served");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut seen = vec![
        etcdctl(&url, &["put", "k", "v1"]),
        etcdctl(&url, &["put", "k", "v2"]),
        etcdctl(&url, &["get", "k", "--rev=2"]),
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        etcdctl(&url, &["put", "tick", ""]);
        let old = etcdctl(&url, &["get", "k", "--rev=2"]);
        if !old.starts_with("exit Some(0)") {
            seen.push(old);
            seen.push(etcdctl(&url, &["get", "k"]));
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{program} kept revision 2: {old}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn etcdctl_sees_old_revisions_compacted_as_with_etcd() {
    for program in ["etcd", "etcdctl"] {
        assert!(
            on_path(program),
            "{program} is not installed: run ci/install-etcd"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let theirs = old_revision_over_time("etcd", &dir.path().join("etcd"));
    let ours = old_revision_over_time(env!("CARGO_BIN_EXE_detcd"), &dir.path().join("detcd"));
    assert_eq!(ours, theirs, "detcd, then etcd 3.4");
    assert_eq!(theirs[2], "exit Some(0)\nk\nv1\n");
    assert_eq!(
        theirs[3],
        "exit Some(1)\nError: etcdserver: mvcc: required revision has been compacted"
    );
}

#[test]
fn unparsable_retention_stops_the_member_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (flags, says) in [
        (
            &["--auto-compaction-retention=1d"][..],
            r#"invalid --auto-compaction-retention: error parsing CompactionRetention: time: unknown unit "d" in duration "1d""#,
        ),
        (
            &["--auto-compaction-retention=soon"][..],
            r#"invalid --auto-compaction-retention: error parsing CompactionRetention: time: invalid duration "soon""#,
        ),
        (
            &[
                "--auto-compaction-mode=daily",
                "--auto-compaction-retention=1",
            ][..],
            r#"unknown auto-compaction-mode "daily""#,
        ),
    ] {
        let data = dir.path().join("data");
        let out = Command::new(env!("CARGO_BIN_EXE_detcd"))
            .args(["--data-dir", data.to_str().unwrap()])
            .args(flags)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{flags:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{flags:?}: {stderr}");
        assert!(!data.exists(), "{flags:?} wrote the data dir");
    }
}
