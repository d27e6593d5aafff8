//! Snapshots move between etcd and detcd with each side's own tools. etcd 3.5.1 (official
//! binaries, ci/install-etcd) is the oracle; a test that needs it says it is skipped when
//! it is absent.
//! - etcd → detcd: a history of puts, deletes, a txn, a lease with keys, a compaction and
//!   a user with a role, written to etcd; `etcdctl snapshot save`; `detcdutl snapshot
//!   status` prints what `etcdutl snapshot status` prints; `detcdutl snapshot restore`;
//!   detcd answers every range at every uncompacted revision as etcd did, and the same
//!   HashKV.
//! - Refusals: a truncated file, a bad sha256 trailer, a bolt file that is not an etcd
//!   database, a non-empty data directory: exit 1, a message naming the file, nothing
//!   written.

#![cfg(not(madsim))]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use common::{etcd35, ready_client, Member};
use detcd::backend::bolt;
use detcd::migrate;
use etcd_client::{Client, Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp};

fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("ETCDCTL_API", "3")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn detcdutl(args: &[&str]) -> Output {
    run(Path::new(env!("CARGO_BIN_EXE_detcdutl")), args)
}

/// `detcdutl snapshot restore FILE --data-dir DIR` with the default member flags.
fn restore(file: &Path, data_dir: &Path) -> Output {
    detcdutl(&[
        "snapshot",
        "restore",
        file.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
    ])
}

/// Puts, deletes, a txn, a lease with keys, a compaction; returns (current, compacted).
async fn history(c: &mut Client) -> (i64, i64) {
    for i in 0..20 {
        c.put(format!("k/{:02}", i % 7), format!("v{i}"), None)
            .await
            .unwrap();
    }
    c.delete("k/03", None).await.unwrap();
    let lease = c.lease_grant(600, None).await.unwrap().id();
    c.put("leased/a", "x", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    c.put("leased/b", "y", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    c.txn(
        Txn::new()
            .when([Compare::value("k/01", CompareOp::Equal, "v15")])
            .and_then([TxnOp::put("k/01", "txn", None), TxnOp::delete("k/02", None)]),
    )
    .await
    .unwrap();
    let compacted = 12;
    c.compact(compacted, None).await.unwrap();
    c.put("after", "compaction", None).await.unwrap();
    let cur = c
        .get("after", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    (cur, compacted)
}

/// Every key-value at every revision from `from` to `to`, with all its fields.
async fn ranges(c: &mut Client, from: i64, to: i64) -> BTreeMap<i64, Vec<String>> {
    let mut out = BTreeMap::new();
    for rev in from..=to {
        let r = c
            .get(
                "",
                Some(GetOptions::new().with_all_keys().with_revision(rev)),
            )
            .await
            .unwrap();
        let kvs = r
            .kvs()
            .iter()
            .map(|kv| {
                format!(
                    "{:?}={:?} c{} m{} v{} l{}",
                    kv.key_str(),
                    kv.value_str(),
                    kv.create_revision(),
                    kv.mod_revision(),
                    kv.version(),
                    kv.lease()
                )
            })
            .collect();
        out.insert(rev, kvs);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_snapshot_restores_into_detcd() {
    let (Some(etcd), Some(etcdctl), Some(etcdutl)) = (
        etcd35("etcd", "etcd_snapshot_restores_into_detcd"),
        etcd35("etcdctl", "etcd_snapshot_restores_into_detcd"),
        etcd35("etcdutl", "etcd_snapshot_restores_into_detcd"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let source = Member::new("etcd", dir.path());
    let _etcd = source.spawn(etcd.to_str().unwrap(), None);
    let mut c = ready_client(source.client_port).await;
    let (cur, compacted) = history(&mut c).await;
    let user = run(
        &etcdctl,
        &[
            "--endpoints",
            &source.client_url(),
            "user",
            "add",
            "alice:pw",
        ],
    );
    stdout(&user);
    stdout(&run(
        &etcdctl,
        &["--endpoints", &source.client_url(), "role", "add", "reader"],
    ));
    stdout(&run(
        &etcdctl,
        &[
            "--endpoints",
            &source.client_url(),
            "user",
            "grant-role",
            "alice",
            "reader",
        ],
    ));
    let want = ranges(&mut c, compacted, cur).await;
    let want_hash = c.hash_kv(cur).await.unwrap();
    let file = dir.path().join("etcd.snap");
    let file = file.to_str().unwrap();
    stdout(&run(
        &etcdctl,
        &[
            "--endpoints",
            &source.client_url(),
            "snapshot",
            "save",
            file,
        ],
    ));

    for format in ["simple", "json", "table"] {
        assert_eq!(
            stdout(&detcdutl(&["snapshot", "status", file, "-w", format])),
            stdout(&run(&etcdutl, &["snapshot", "status", file, "-w", format])),
            "snapshot status -w {format}"
        );
    }

    let target = Member::new("detcd", dir.path());
    let own = format!("detcd={}", target.peer_url());
    stdout(&detcdutl(&[
        "snapshot",
        "restore",
        file,
        "--name",
        "detcd",
        "--initial-cluster",
        &own,
        "--initial-advertise-peer-urls",
        &target.peer_url(),
        "--data-dir",
        target.data_dir.to_str().unwrap(),
    ]));
    let _detcd = target.start(None);
    let mut d = ready_client(target.client_port).await;
    // ready_client's write to detcd lands after `cur`.
    assert_eq!(ranges(&mut d, compacted, cur).await, want);
    let got_hash = d.hash_kv(cur).await.unwrap();
    assert_eq!(
        (got_hash.hash(), got_hash.compact_version()),
        (want_hash.hash(), want_hash.compact_version()),
        "HashKV at {cur}"
    );
    let leases = d.leases().await.unwrap();
    assert_eq!(leases.leases().len(), 1, "the lease is restored");
}

#[test]
fn restore_refusals_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd_like = bolt::Buckets::new();
    etcd_like.insert(b"key".to_vec(), BTreeMap::new());
    etcd_like.insert(b"meta".to_vec(), BTreeMap::new());
    let good = migrate::with_trailer(bolt::write(&etcd_like).unwrap());
    let mut not_etcd = bolt::Buckets::new();
    not_etcd.insert(b"other".to_vec(), BTreeMap::new());
    let mut bad_sum = good.clone();
    *bad_sum.last_mut().unwrap() ^= 1;
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "truncated",
            good[..good.len() - 100].to_vec(),
            "missing hash",
        ),
        ("bad-sum", bad_sum, "expected sha256"),
        (
            "not-etcd",
            migrate::with_trailer(bolt::write(&not_etcd).unwrap()),
            "not an etcd database",
        ),
        ("no-file", Vec::new(), "No such file"),
    ];
    for (name, bytes, message) in cases {
        let file = dir.path().join(format!("{name}.snap"));
        if name != "no-file" {
            std::fs::write(&file, bytes).unwrap();
        }
        let data_dir = dir.path().join(format!("{name}.detcd"));
        let out = restore(&file, &data_dir);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(message) && stderr.contains(file.to_str().unwrap()),
            "{name}: {stderr}"
        );
        assert!(!data_dir.exists(), "{name}: {} written", data_dir.display());
    }
    let busy = dir.path().join("busy.detcd");
    std::fs::create_dir_all(busy.join("x")).unwrap();
    let file = dir.path().join("good.snap");
    std::fs::write(&file, &good).unwrap();
    let out = restore(&file, &busy);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".restoring"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The same file restores into a fresh directory.
    let fresh = dir.path().join("fresh.detcd");
    let out = restore(&file, &fresh);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(fresh.join("member/snap/db").is_file());
}
