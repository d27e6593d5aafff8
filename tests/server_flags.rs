//! etcd's operational flags, with real processes: each changes what etcd says it changes
//! (`--max-txn-ops`, `--listen-metrics-urls`, `--log-level` with etcd's JSON log lines,
//! `--experimental-watch-progress-notify-interval`, `--unsafe-no-fsync`,
//! `--max-concurrent-streams`, `--strict-reconfig-check=false`), and a flag that cannot be
//! used stops the member at start, naming it, before anything is written.

#![cfg(not(madsim))]

mod common;

use std::process::Command;
use std::time::Duration;

use common::cluster::{poll, Cluster};
use common::http::{get, request, sample};
use common::{free_port, grpc_message, ready_client, Member};
use etcd_client::{Compare, CompareOp, Txn, TxnOp, WatchOptions};

const DEADLINE: Duration = Duration::from_secs(10);

#[tokio::test]
async fn operational_flags_do_what_etcd_says() {
    let dir = tempfile::tempdir().unwrap();
    let m = Member::new("a", dir.path());
    let metrics_port = free_port();
    let metrics_url = format!("http://127.0.0.1:{metrics_port}");
    let log = dir.path().join("a.log");
    let _p = m.start_logged(
        &format!("a={}", m.peer_url()),
        &[
            "--max-txn-ops=2",
            "--listen-metrics-urls",
            &metrics_url,
            "--unsafe-no-fsync",
            "--experimental-watch-progress-notify-interval=500ms",
            "--log-level=warn",
        ],
        &log,
    );
    let mut client = ready_client(m.client_port).await;

    // --max-txn-ops: etcd's limit and message.
    let put = |k: &str| TxnOp::put(k, "v", None);
    let two = Txn::new().and_then([put("t1"), put("t2")]);
    client.txn(two).await.unwrap();
    let three = Txn::new()
        .when([Compare::version("t1", CompareOp::Greater, 0)])
        .and_then([put("t1"), put("t2"), put("t3")]);
    let e = client.txn(three).await.unwrap_err();
    assert_eq!(
        grpc_message(e),
        "etcdserver: too many operations in txn request"
    );

    // --listen-metrics-urls: metrics and health there, nothing else (Go's 404).
    let metrics = get(metrics_port, "/metrics").await.unwrap();
    assert_eq!(metrics.status, 200);
    assert_eq!(sample(&metrics.body, "etcd_server_has_leader"), Some(1.0));
    let health = get(metrics_port, "/health").await.unwrap();
    assert_eq!(health.body, r#"{"health":"true","reason":""}"#);
    let range = request(metrics_port, "POST", "/v3/kv/range", "{}")
        .await
        .unwrap();
    assert_eq!(
        (range.status, range.body.as_str()),
        (404, "404 page not found\n")
    );

    // --unsafe-no-fsync: writes are acknowledged without a WAL fsync.
    for i in 0..10 {
        client.put(format!("k{i}"), "v", None).await.unwrap();
    }
    let metrics = get(metrics_port, "/metrics").await.unwrap();
    let fsyncs = sample(&metrics.body, "etcd_disk_wal_fsync_duration_seconds_count");
    assert_eq!(fsyncs, Some(0.0));

    // --experimental-watch-progress-notify-interval: a watcher that asked for progress
    // hears from an idle member within the interval.
    let opts = WatchOptions::new().with_progress_notify();
    let mut stream = client.watch("idle", Some(opts)).await.unwrap();
    let progress = tokio::time::timeout(DEADLINE, async {
        loop {
            let resp = stream
                .message()
                .await
                .unwrap()
                .expect("the watch stays open");
            if !resp.created() && resp.events().is_empty() {
                return resp;
            }
        }
    });
    progress.await.expect("a progress notification");

    // --log-level=warn over RUST_LOG=info, in etcd's JSON lines.
    client.put("bad", "x", None).await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            matches!(v["level"].as_str(), Some("warn" | "error")),
            "{line}"
        );
        assert!(v["ts"].is_f64() && v["caller"].is_string() && v["msg"].is_string());
    }
}

/// `--max-concurrent-streams`: with two streams open on a connection (two watches), a
/// third call on it waits until one closes.
#[tokio::test]
async fn max_concurrent_streams_holds_a_third_call() {
    let dir = tempfile::tempdir().unwrap();
    let m = Member::new("a", dir.path());
    let detcd = env!("CARGO_BIN_EXE_detcd");
    let _p = m.spawn_with(detcd, None, &["--max-concurrent-streams=2"]);
    let mut client = ready_client(m.client_port).await;
    let first = client.watch("w1", None).await.unwrap();
    let _second = client.watch("w2", None).await.unwrap();
    let held = tokio::time::timeout(Duration::from_secs(1), client.get("k", None)).await;
    assert!(held.is_err(), "a third stream was served beside two");
    drop(first);
    let served = tokio::time::timeout(DEADLINE, client.get("k", None)).await;
    served.expect("served once a stream closed").unwrap();
}

/// Without `--strict-reconfig-check` a change etcd would refuse for quorum's sake goes
/// through: removing a running voter while another is down.
#[tokio::test]
async fn strict_reconfig_check_off_lets_a_risky_change_through() {
    let dir = tempfile::tempdir().unwrap();
    let members: Vec<Member> = ["a", "b", "c"].map(|n| Member::new(n, dir.path())).into();
    let ic = common::initial_cluster(&members);
    let off = ["--strict-reconfig-check=false"];
    let detcd = env!("CARGO_BIN_EXE_detcd");
    let procs: Vec<_> = members
        .iter()
        .map(|m| Some(m.spawn_with(detcd, Some(&ic), &off)))
        .collect();
    let mut ids = Vec::new();
    for m in &members {
        let id = poll("a member's ID", Duration::from_secs(30), || {
            common::cluster::member_id(m.client_port)
        });
        ids.push(id.await);
    }
    let mut cluster = Cluster {
        members,
        initial_cluster: ic,
        procs,
        ids,
    };
    let leader = cluster.leader().await;
    let (down, removed) = ((leader + 1) % 3, (leader + 2) % 3);
    cluster.kill(down);
    let mut client = ready_client(cluster.members[leader].client_port).await;
    let resp = client.member_remove(cluster.ids[removed]).await.unwrap();
    assert_eq!(resp.members().len(), 2);
}

/// A flag etcd would not start with stops detcd before it writes anything, naming the
/// flag, with exit code 1 (issue 12), also where etcd 3.5's flag parser says 2 (an unknown
/// flag, a malformed value). A `NAME=value` setting is passed as an `ETCD_*` variable.
#[test]
fn flags_that_cannot_be_used_stop_the_member() {
    let dir = tempfile::tempdir().unwrap();
    for (setting, says) in [
        ("--no-such-flag", "unexpected argument '--no-such-flag'"),
        (
            "--experimental-corrupt-check-time=5x",
            "invalid value '5x' for '--experimental-corrupt-check-time",
        ),
        (
            "--grpc-keepalive-interval=soon",
            "invalid value 'soon' for '--grpc-keepalive-interval",
        ),
        (
            "ETCD_HEARTBEAT_INTERVAL=often",
            "invalid value 'often' for '--heartbeat-interval",
        ),
        ("--max-txn-ops=-1", "--max-txn-ops"),
        (
            "--log-level=verbose",
            "invalid --log-level: unrecognized level: \"verbose\"",
        ),
        ("--logger=capnslog", "unknown logger option \"capnslog\""),
        (
            "--experimental-compact-hash-check-time=0s",
            "--experimental-compact-hash-check-time must be >0",
        ),
    ] {
        let data = dir.path().join("data");
        let mut detcd = Command::new(env!("CARGO_BIN_EXE_detcd"));
        detcd.args(["--data-dir", data.to_str().unwrap()]);
        match setting.split_once('=') {
            Some((name, value)) if name.starts_with("ETCD_") => detcd.env(name, value),
            _ => detcd.arg(setting),
        };
        let out = detcd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{setting}: {stderr}");
        assert!(stderr.contains(says), "{setting}: {stderr}");
        assert!(!data.exists(), "{setting} wrote the data dir");
    }
}
