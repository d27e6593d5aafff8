//! A real single-member detcd process driven by the `etcd-client` crate: the KV API with
//! etcd's semantics and errors, and acknowledged writes surviving kill -9.

#![cfg(not(madsim))]

mod common;

use std::process::Command;

use common::{grpc_message as error_message, ready_client, Member};
use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};

#[tokio::test]
async fn kv_api_and_kill_9_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let node = Member::new("default", dir.path());
    let member = node.start(None);
    let mut c = ready_client(node.client_port).await;

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

    // Requests refused by their shape or size are refused before they are proposed, as
    // etcd's gRPC layer refuses them: the log does not grow.
    let index_before = c.status().await.unwrap().raft_index();
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
    assert_eq!(
        c.status().await.unwrap().raft_index(),
        index_before,
        "a refused request reached the log"
    );
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
    let _member = node.start(None);
    let mut c = ready_client(node.client_port).await;
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
