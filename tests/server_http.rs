//! The client URL serves plain HTTP/1.1 beside gRPC, as etcd's does: `/health` (200 with a
//! leader, 503 once the member has lost its peers), `/version`, `/metrics` in Prometheus
//! text format with etcd's metric names and values that follow the member's work.

#![cfg(not(madsim))]

mod common;

use std::time::Duration;

use common::cluster::{poll, Cluster};
use common::http::{get, request, sample};
use common::{ready_client, Member};
use etcd_client::GetOptions;

const HEALTHY: &str = r#"{"health":"true","reason":""}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_version_and_metrics_beside_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let member = Member::new("http", dir.path());
    let _proc = member.start(None);
    let port = member.client_port;
    let mut client = ready_client(port).await;

    let health = get(port, "/health").await.unwrap();
    assert_eq!((health.status, health.body.as_str()), (200, HEALTHY));
    let local = get(port, "/health?serializable=true").await.unwrap();
    assert_eq!((local.status, local.body.as_str()), (200, HEALTHY));
    let posted = request(port, "POST", "/health", "").await.unwrap();
    assert_eq!(posted.status, 405);

    let version = get(port, "/version").await.unwrap();
    assert_eq!(version.status, 200);
    assert_eq!(version.content_type, "application/json");
    assert_eq!(
        version.body,
        r#"{"etcdserver":"3.5.0","etcdcluster":"3.5.0"}"#
    );
    let status = client.status().await.unwrap();
    assert_eq!(status.version(), "3.5.0", "Maintenance Status agrees");

    let before = get(port, "/metrics").await.unwrap();
    assert_eq!(before.status, 200);
    assert_eq!(
        before.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    for family in [
        "# TYPE etcd_server_proposals_committed_total gauge",
        "# TYPE etcd_server_proposals_applied_total gauge",
        "# TYPE etcd_server_proposals_pending gauge",
        "# TYPE etcd_server_proposals_failed_total counter",
        "# TYPE etcd_server_leader_changes_seen_total counter",
        "# TYPE etcd_server_has_leader gauge",
        "# TYPE etcd_server_is_leader gauge",
        "# TYPE etcd_disk_wal_fsync_duration_seconds histogram",
        "# TYPE etcd_disk_backend_commit_duration_seconds histogram",
        "# TYPE etcd_mvcc_db_total_size_in_bytes gauge",
        "# TYPE etcd_debugging_mvcc_watcher_total gauge",
    ] {
        assert!(
            before.body.lines().any(|l| l == family),
            "no {family:?} in\n{}",
            before.body
        );
    }
    let m = &before.body;
    assert_eq!(sample(m, "etcd_server_has_leader"), Some(1.0));
    assert_eq!(sample(m, "etcd_server_is_leader"), Some(1.0));
    assert!(sample(m, "etcd_server_leader_changes_seen_total").unwrap() >= 1.0);
    assert_eq!(sample(m, "etcd_server_proposals_pending"), Some(0.0));
    assert_eq!(
        sample(m, r#"etcd_server_version{server_version="3.5.0"}"#),
        Some(1.0)
    );
    let id = format!(
        r#"etcd_server_id{{server_id="{:x}"}}"#,
        status.header().unwrap().member_id()
    );
    assert_eq!(sample(m, &id), Some(1.0));
    assert!(sample(m, "etcd_disk_wal_fsync_duration_seconds_count").unwrap() > 0.0);
    assert!(
        sample(
            m,
            r#"etcd_disk_wal_fsync_duration_seconds_bucket{le="8.192"}"#
        )
        .is_some(),
        "etcd's fsync buckets end at 8.192 s"
    );
    assert!(sample(m, "etcd_mvcc_db_total_size_in_bytes").unwrap() > 0.0);
    let committed = sample(m, "etcd_server_proposals_committed_total").unwrap();
    let fsyncs = sample(m, "etcd_disk_wal_fsync_duration_seconds_count").unwrap();

    for i in 0..10 {
        client.put(format!("k{i}"), "v", None).await.unwrap();
    }
    let _watch = client.watch("k", None).await.unwrap();
    poll(
        "metrics that follow the puts",
        Duration::from_secs(10),
        || async {
            let m = get(port, "/metrics").await.ok()?.body;
            let moved = sample(&m, "etcd_server_proposals_committed_total")? >= committed + 10.0
                && sample(&m, "etcd_server_proposals_applied_total")? >= committed + 10.0
                && sample(&m, "etcd_disk_wal_fsync_duration_seconds_count")? >= fsyncs + 10.0
                && sample(&m, "etcd_disk_backend_commit_duration_seconds_count")? > 0.0
                && sample(&m, "etcd_debugging_mvcc_watcher_total")? == 1.0;
            moved.then_some(())
        },
    )
    .await;

    // gRPC still works on the same port after the HTTP requests.
    let got = client.get("k3", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_fails_once_peers_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), &["h1", "h2", "h3"]).await;
    let ports = cluster.ports();
    for &p in &ports {
        let h = get(p, "/health").await.unwrap();
        assert_eq!((h.status, h.body.as_str()), (200, HEALTHY), "port {p}");
    }
    cluster.kill(1);
    cluster.kill(2);
    let survivor = ports[0];
    let body = poll(
        "/health 503 on the survivor",
        Duration::from_secs(30),
        || async {
            let h = get(survivor, "/health").await.ok()?;
            (h.status == 503).then_some(h.body)
        },
    )
    .await;
    let no_leader = "{\"health\":\"false\",\"reason\":\"RAFT NO LEADER\"}\n";
    let timed_out =
        "{\"health\":\"false\",\"reason\":\"RANGE ERROR:etcdserver: request timed out\"}\n";
    assert!(
        body == no_leader || body == timed_out,
        "unexpected /health body {body:?}"
    );
    // A serializable check asks about this member alone, which still serves reads.
    let local = get(survivor, "/health?serializable=true").await.unwrap();
    assert_eq!((local.status, local.body.as_str()), (200, HEALTHY));
    poll(
        "no leader in the survivor's metrics",
        Duration::from_secs(30),
        || async {
            let m = get(survivor, "/metrics").await.ok()?.body;
            let alone = sample(&m, "etcd_server_has_leader")? == 0.0
                && sample(&m, "etcd_server_is_leader")? == 0.0;
            alone.then_some(())
        },
    )
    .await;
    // A write without a leader fails, and is counted as a failed proposal.
    let mut client = common::cluster::connect(survivor).await.unwrap();
    assert!(client.put("k", "v", None).await.is_err());
    let m = get(survivor, "/metrics").await.unwrap().body;
    assert!(sample(&m, "etcd_server_proposals_failed_total").unwrap() >= 1.0);
    assert_eq!(sample(&m, "etcd_server_proposals_pending"), Some(0.0));
}

/// The JSON gateway: etcd's paths, base64 bytes, 64-bit integers as strings, proto field
/// names, enums by name; writes through it are the same writes gRPC sees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_gateway_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let member = Member::new("gw", dir.path());
    let _proc = member.start(None);
    let port = member.client_port;
    let mut client = ready_client(port).await;

    // foo=bar, in base64.
    let put = request(
        port,
        "POST",
        "/v3/kv/put",
        r#"{"key":"Zm9v","value":"YmFy"}"#,
    )
    .await
    .unwrap();
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.content_type, "application/json");
    let put: serde_json::Value = serde_json::from_str(&put.body).unwrap();
    let revision = put["header"]["revision"]
        .as_str()
        .expect("int64 as a string");
    let got = client.get("foo", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"bar");
    assert_eq!(got.header().unwrap().revision().to_string(), revision);

    let range = request(port, "POST", "/v3/kv/range", r#"{"key":"Zm9v"}"#)
        .await
        .unwrap();
    let range: serde_json::Value = serde_json::from_str(&range.body).unwrap();
    assert_eq!(range["count"], "1");
    let kv = &range["kvs"][0];
    assert_eq!((&kv["key"], &kv["value"]), (&"Zm9v".into(), &"YmFy".into()));
    assert_eq!(kv["mod_revision"].as_str(), Some(revision));
    assert_eq!(kv["version"], "1");

    // A txn with a compare by enum name: foo is bar, so set it to baz.
    let txn = r#"{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmFy"}],
                  "success":[{"request_put":{"key":"Zm9v","value":"YmF6"}}]}"#;
    let txn = request(port, "POST", "/v3/kv/txn", txn).await.unwrap();
    let txn: serde_json::Value = serde_json::from_str(&txn.body).unwrap();
    assert_eq!(txn["succeeded"], true, "{txn}");
    let got = client.get("foo", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"baz");

    let grant = request(port, "POST", "/v3/lease/grant", r#"{"TTL":"60"}"#)
        .await
        .unwrap();
    let grant: serde_json::Value = serde_json::from_str(&grant.body).unwrap();
    assert_eq!(grant["TTL"], "60", "{grant}");
    let id: i64 = grant["ID"].as_str().unwrap().parse().unwrap();
    let leases = client.leases().await.unwrap();
    assert!(leases.leases().iter().any(|l| l.id() == id));

    let status = request(port, "POST", "/v3/maintenance/status", "{}")
        .await
        .unwrap();
    let status: serde_json::Value = serde_json::from_str(&status.body).unwrap();
    assert_eq!(status["version"], "3.5.0");

    // etcd's errors through grpc-gateway: the gRPC code and an HTTP status for it.
    let future = request(
        port,
        "POST",
        "/v3/kv/range",
        r#"{"key":"Zm9v","revision":"1000"}"#,
    )
    .await
    .unwrap();
    assert_eq!(future.status, 400);
    assert_eq!(
        future.body,
        r#"{"error":"etcdserver: mvcc: required revision is a future revision","code":11,"message":"etcdserver: mvcc: required revision is a future revision"}"#
    );
    let malformed = request(port, "POST", "/v3/kv/put", r#"{"key":"#)
        .await
        .unwrap();
    assert_eq!(malformed.status, 400);

    // What curl sends, byte for byte.
    let body = r#"{"key":"Zm9v"}"#;
    let reply = common::http::raw(
        port,
        &format!(
            "POST /v3/kv/range HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
    .unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(reply.contains(r#""value":"YmF6""#), "{reply}");
}

/// The gateway's Cluster, Election and Lock paths, as etcd 3.5's grpc-gateway names them.
#[tokio::test]
async fn json_gateway_cluster_election_and_lock() {
    let dir = tempfile::tempdir().unwrap();
    let member = Member::new("gw2", dir.path());
    let _proc = member.start(None);
    let port = member.client_port;
    let mut client = ready_client(port).await;
    let json = |body: &str| serde_json::from_str::<serde_json::Value>(body).unwrap();

    let list = request(port, "POST", "/v3/cluster/member/list", "{}")
        .await
        .unwrap();
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(
        json(&list.body)["members"][0]["name"],
        "gw2",
        "{}",
        list.body
    );

    let lease = client.lease_grant(60, None).await.unwrap().id();
    // name "svc", value "v1", in base64.
    let campaign = format!(r#"{{"name":"c3Zj","value":"djE=","lease":"{lease}"}}"#);
    let campaign = request(port, "POST", "/v3/election/campaign", &campaign)
        .await
        .unwrap();
    assert_eq!(campaign.status, 200, "{}", campaign.body);
    let leader_key = json(&campaign.body)["leader"].clone();
    assert_eq!(leader_key["lease"], lease.to_string());
    let leader = request(port, "POST", "/v3/election/leader", r#"{"name":"c3Zj"}"#)
        .await
        .unwrap();
    assert_eq!(json(&leader.body)["kv"]["value"], "djE=", "{}", leader.body);
    let resign = format!(r#"{{"leader":{leader_key}}}"#);
    let resign = request(port, "POST", "/v3/election/resign", &resign)
        .await
        .unwrap();
    assert_eq!(resign.status, 200, "{}", resign.body);
    let none = request(port, "POST", "/v3/election/leader", r#"{"name":"c3Zj"}"#)
        .await
        .unwrap();
    assert_eq!(none.status, 500);
    assert_eq!(json(&none.body)["error"], "election: no leader");

    // name "job"; the lock key comes back in base64 and unlocks.
    let lock = format!(r#"{{"name":"am9i","lease":"{lease}"}}"#);
    let lock = request(port, "POST", "/v3/lock/lock", &lock).await.unwrap();
    assert_eq!(lock.status, 200, "{}", lock.body);
    let key = json(&lock.body)["key"].as_str().unwrap().to_string();
    let held = client
        .get("job/", Some(GetOptions::new().with_prefix()))
        .await;
    assert_eq!(held.unwrap().count(), 1);
    let unlock = format!(r#"{{"key":"{key}"}}"#);
    let unlock = request(port, "POST", "/v3/lock/unlock", &unlock)
        .await
        .unwrap();
    assert_eq!(unlock.status, 200, "{}", unlock.body);
    let held = client
        .get("job/", Some(GetOptions::new().with_prefix()))
        .await;
    assert_eq!(held.unwrap().count(), 0);
}

/// A gateway watch lives on after its request body ends, and goes when its client does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_watch_ends_with_its_client() {
    let dir = tempfile::tempdir().unwrap();
    let member = Member::new("gw3", dir.path());
    let _proc = member.start(None);
    let port = member.client_port;
    let mut client = ready_client(port).await;
    let watchers = || async move {
        sample(
            &get(port, "/metrics").await.ok()?.body,
            "etcd_debugging_mvcc_watcher_total",
        )
    };

    let body = r#"{"create_request":{"key":"YQ==","range_end":"Yg=="}}"#;
    let mut watch = common::http::post_stream(port, "/v3/watch", None, body)
        .await
        .unwrap();
    assert_eq!(watch.status, 200);
    let created: serde_json::Value = serde_json::from_str(&watch.next().await.unwrap()).unwrap();
    assert_eq!(created["result"]["created"], true, "{created}");
    for i in 0..3 {
        client.put(format!("a{i}"), "v", None).await.unwrap();
    }
    // a0, a1, a2 in base64.
    for key in ["YTA=", "YTE=", "YTI="] {
        let line = watch.next().await.unwrap();
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(event["result"]["events"][0]["kv"]["key"], key, "{line}");
    }
    assert_eq!(watchers().await, Some(1.0));
    drop(watch);
    poll(
        "the watcher gone with its client",
        Duration::from_secs(10),
        || async { (watchers().await? == 0.0).then_some(()) },
    )
    .await;
}

/// A gateway watch reads its request body as it comes: a cancel request sent after the
/// watch's events, on the same HTTP request, cancels it (a chunked body, as grpc-gateway
/// streams it to the Watch call).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_watch_takes_requests_as_they_come() {
    let dir = tempfile::tempdir().unwrap();
    let member = Member::new("gw4", dir.path());
    let _proc = member.start(None);
    let port = member.client_port;
    let mut client = ready_client(port).await;
    async fn next(watch: &mut common::http::Lines) -> serde_json::Value {
        let line = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .expect("a line within 10 s")
            .expect("a line before the end");
        serde_json::from_str(&line).unwrap()
    }

    // Key "k", split across chunks mid-value.
    let first = [r#"{"create_request":{"ke"#, r#"y":"aw=="}}"#];
    let (requests, mut watch) = common::http::post_chunked(port, "/v3/watch", &first)
        .await
        .unwrap();
    assert_eq!(watch.status, 200);
    let created = next(&mut watch).await;
    assert_eq!(created["result"]["created"], true, "{created}");
    client.put("k", "v", None).await.unwrap();
    let event = next(&mut watch).await;
    assert_eq!(
        event["result"]["events"][0]["kv"]["value"], "dg==",
        "{event}"
    );

    requests
        .send(r#"{"progress_request":{}} {"cancel_request":{"watch_id":"0"}}"#.into())
        .unwrap();
    // detcd's store answers the progress request, the stream's control path the cancel:
    // they may come in either order.
    let mut answers = vec![next(&mut watch).await, next(&mut watch).await];
    answers.sort_by_key(|a| a["result"]["canceled"] == true);
    assert_eq!(answers[0]["result"]["watch_id"], "-1", "{answers:?}");
    assert_eq!(answers[1]["result"]["canceled"], true, "{answers:?}");
    client.put("k", "w", None).await.unwrap();
    // Ending the body ends no watch, and the canceled one sends nothing more: the next
    // thing on the stream is a second watch's creation.
    requests
        .send(r#"{"create_request":{"key":"aw=="}}"#.into())
        .unwrap();
    drop(requests);
    let second = next(&mut watch).await;
    assert_eq!(second["result"]["created"], true, "{second}");
    assert_eq!(second["result"]["watch_id"], "1", "{second}");
}
