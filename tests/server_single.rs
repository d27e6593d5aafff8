//! A real single-member detcd process driven by the `etcd-client` crate: the KV API with
//! etcd's semantics and errors, and acknowledged writes surviving kill -9.

#![cfg(not(madsim))]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};

/// Kills the member when the test ends, however it ends.
struct Member(Child);

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(data_dir: &Path, client: u16, peer: u16) -> Member {
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new(env!("CARGO_BIN_EXE_detcd"))
        .args(["--data-dir", data_dir.to_str().unwrap()])
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Member(child)
}

/// Connects and waits until a write succeeds (a leader exists), polling until a deadline.
async fn ready_client(port: u16) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut c) = Client::connect([format!("http://127.0.0.1:{port}")], None).await {
            if c.put("__ready", "", None).await.is_ok() {
                return c;
            }
        }
        assert!(
            Instant::now() < deadline,
            "detcd did not become ready on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn error_message(e: etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.message().to_string(),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn kv_api_and_kill_9_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let (client_port, peer_port) = (free_port(), free_port());
    let member = start(dir.path(), client_port, peer_port);
    let mut c = ready_client(client_port).await;

    let put = c.put("k", "v1", None).await.unwrap();
    let rev1 = put.header().unwrap().revision();
    let header = put.header().unwrap();
    assert!(
        header.member_id() != 0 && header.cluster_id() != 0,
        "{header:?}"
    );
    assert!(header.raft_term() >= 1);
    let put = c
        .put("k", "v2", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert_eq!(put.prev_key().unwrap().value(), b"v1");
    let rev2 = put.header().unwrap().revision();
    assert_eq!(rev2, rev1 + 1, "each write takes one revision");

    let got = c.get("k", None).await.unwrap();
    let kv = &got.kvs()[0];
    assert_eq!(
        (kv.value(), kv.version(), kv.mod_revision()),
        (&b"v2"[..], 2, rev2)
    );
    let old = c
        .get("k", Some(GetOptions::new().with_revision(rev1)))
        .await
        .unwrap();
    assert_eq!(old.kvs()[0].value(), b"v1", "historical read");
    let serializable = c
        .get("k", Some(GetOptions::new().with_serializable()))
        .await
        .unwrap();
    assert_eq!(serializable.kvs()[0].value(), b"v2");

    for i in 0..5 {
        c.put(format!("p/{i}"), "x", None).await.unwrap();
    }
    let page = c
        .get("p/", Some(GetOptions::new().with_prefix().with_limit(2)))
        .await
        .unwrap();
    assert_eq!((page.kvs().len(), page.more(), page.count()), (2, true, 5));

    let txn = Txn::new()
        .when([Compare::value("k", CompareOp::Equal, "v2")])
        .and_then([TxnOp::put("k", "v3", None)])
        .or_else([TxnOp::get("k", None)]);
    assert!(c.txn(txn).await.unwrap().succeeded());
    let txn = Txn::new()
        .when([Compare::value("k", CompareOp::Equal, "v2")])
        .and_then([TxnOp::put("k", "never", None)]);
    assert!(
        !c.txn(txn).await.unwrap().succeeded(),
        "stale compare succeeded"
    );

    let dup = Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]);
    let err = c.txn(dup).await.unwrap_err();
    assert_eq!(
        error_message(err),
        "etcdserver: duplicate key given in txn request"
    );
    let big = vec![b'x'; 1_600_000];
    let err = c.put("big", big, None).await.unwrap_err();
    assert_eq!(error_message(err), "etcdserver: request is too large");
    let many: Vec<TxnOp> = (0..129)
        .map(|i| TxnOp::put(format!("m{i}"), "v", None))
        .collect();
    let err = c.txn(Txn::new().and_then(many)).await.unwrap_err();
    assert_eq!(
        error_message(err),
        "etcdserver: too many operations in txn request"
    );
    let err = c.put("", "v", None).await.unwrap_err();
    assert_eq!(error_message(err), "etcdserver: key is not provided");
    let backwards = c
        .get("z", Some(GetOptions::new().with_range("a")))
        .await
        .unwrap();
    assert!(
        backwards.kvs().is_empty(),
        "a range whose end precedes its key is empty in etcd"
    );
    let err = c
        .put("leased", "v", Some(PutOptions::new().with_lease(42)))
        .await
        .unwrap_err();
    assert_eq!(error_message(err), "etcdserver: requested lease not found");

    let deleted = c
        .delete("p/", Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(deleted.deleted(), 5);
    let latest = c.get("k", None).await.unwrap().header().unwrap().revision();
    c.compact(latest, None).await.unwrap();
    let err = c
        .get("k", Some(GetOptions::new().with_revision(rev1)))
        .await
        .unwrap_err();
    assert_eq!(
        error_message(err),
        "etcdserver: mvcc: required revision has been compacted"
    );

    // Every acknowledged write must survive kill -9.
    drop(member);
    let _member = start(dir.path(), client_port, peer_port);
    let mut c = ready_client(client_port).await;
    let got = c.get("k", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"v3");
    assert!(c
        .get("p/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap()
        .kvs()
        .is_empty());
    let err = c
        .get("k", Some(GetOptions::new().with_revision(rev1)))
        .await
        .unwrap_err();
    assert_eq!(
        error_message(err),
        "etcdserver: mvcc: required revision has been compacted",
        "the compaction was lost"
    );
}

/// Bad flags end the process with etcd's message and a failure status, before it opens or
/// creates anything.
#[test]
fn malformed_flags_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("never");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--election-timeout", "300"],
            "--election-timeout[300ms] should be at least as 5 times as --heartbeat-interval[100ms]",
        ),
        (
            &["--listen-client-urls", "127.0.0.1:2379"],
            "URL scheme must be http, https, unix, or unixs: 127.0.0.1:2379",
        ),
        (&["--initial-cluster-state", "old"], "invalid value 'old'"),
        (&["--bogus"], "unexpected argument '--bogus'"),
    ];
    for (args, message) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_detcd"))
            .args(["--data-dir", data.to_str().unwrap()])
            .args(*args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!data.exists(), "{args:?} created the data directory");
    }
}
