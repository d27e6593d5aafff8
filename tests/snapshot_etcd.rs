//! Snapshots move between etcd and detcd with each side's own tools. etcd 3.5.1 (official
//! binaries, ci/install-etcd) is the oracle; a test that needs it says it is skipped when
//! it is absent.
//! - etcd → detcd: a history of puts, deletes, a txn, a lease with keys, a compaction and
//!   a user with a role, written to etcd; `etcdctl snapshot save`; `detcdutl snapshot
//!   status` prints what `etcdutl snapshot status` prints; `detcdutl snapshot restore`;
//!   `detcdutl hashkv` of the restored data directory, offline, is etcd's; detcd answers
//!   every range at every uncompacted revision as etcd did, and the same HashKV.
//! - detcd → etcd: the same history written to detcd; `etcdctl snapshot save` against
//!   detcd; `etcdutl snapshot status` reads it as `detcdutl` does; `etcdutl snapshot
//!   restore`; etcd 3.5.1 serves every range at every uncompacted revision as detcd did,
//!   the lease, and the same HashKV.
//! - etcd 3.4 (Debian's) → detcd likewise, its etcdctl reading the snapshot's status.
//! - detcd → detcd: three restores of one snapshot form a 3-member cluster that survives
//!   the kill of its leader with every key.
//! - Refusals: a truncated file, a bad sha256 trailer, a bolt file that is not an etcd
//!   database, a non-empty data directory: exit 1, a message naming the file, nothing
//!   written.

#![cfg(not(madsim))]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::cluster::Cluster;
use common::{etcd35, on_path, ready_client, Member};
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

/// What a member serves of a history: every range from the compaction to the current
/// revision, and HashKV (hash, compact revision) at the current one.
async fn served(
    c: &mut Client,
    compacted: i64,
    cur: i64,
) -> (BTreeMap<i64, Vec<String>>, u32, i64) {
    let hash = c.hash_kv(cur).await.unwrap();
    (
        ranges(c, compacted, cur).await,
        hash.hash(),
        hash.compact_version(),
    )
}

/// `etcdctl snapshot save` from `endpoint` into `file`; `detcdutl snapshot status` must
/// print what `snapshot status` of `etcdutl` (etcdctl for 3.4) prints, in every format.
fn save_and_compare_status(etcdctl: &Path, etcdutl: &Path, endpoint: &str, file: &str) {
    stdout(&run(
        etcdctl,
        &["--endpoints", endpoint, "snapshot", "save", file],
    ));
    for format in ["simple", "json", "table"] {
        assert_eq!(
            stdout(&detcdutl(&["snapshot", "status", file, "-w", format])),
            stdout(&run(etcdutl, &["snapshot", "status", file, "-w", format])),
            "snapshot status -w {format}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_3_5_snapshot_restores_into_detcd() {
    let (Some(etcd), Some(etcdctl), Some(etcdutl)) = (
        etcd35("etcd", "etcd_3_5_snapshot_restores_into_detcd"),
        etcd35("etcdctl", "etcd_3_5_snapshot_restores_into_detcd"),
        etcd35("etcdutl", "etcd_3_5_snapshot_restores_into_detcd"),
    ) else {
        return;
    };
    etcd_to_detcd(&etcd, &etcdctl, &etcdutl).await;
}

/// etcd 3.4 (Debian's) has no etcdutl: its etcdctl reads snapshots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_3_4_snapshot_restores_into_detcd() {
    if !on_path("etcd") || !on_path("etcdctl") {
        eprintln!("SKIPPED etcd_3_4_snapshot_restores_into_detcd: no etcd 3.4 on PATH (run ci/install-etcd)");
        return;
    }
    let (etcd, etcdctl) = (Path::new("etcd"), Path::new("etcdctl"));
    etcd_to_detcd(etcd, etcdctl, etcdctl).await;
}

async fn etcd_to_detcd(etcd: &Path, etcdctl: &Path, etcdutl: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let source = Member::new("etcd", dir.path());
    let _etcd = source.spawn(etcd.to_str().unwrap(), None);
    let mut c = ready_client(source.client_port).await;
    let (cur, compacted) = history(&mut c).await;
    let user = run(
        etcdctl,
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
        etcdctl,
        &["--endpoints", &source.client_url(), "role", "add", "reader"],
    ));
    stdout(&run(
        etcdctl,
        &[
            "--endpoints",
            &source.client_url(),
            "user",
            "grant-role",
            "alice",
            "reader",
        ],
    ));
    let want = served(&mut c, compacted, cur).await;
    let file = dir.path().join("etcd.snap");
    let file = file.to_str().unwrap();
    save_and_compare_status(etcdctl, etcdutl, &source.client_url(), file);

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
    // Offline, before the member starts: defrag keeps the data, hashkv is etcd's.
    let data_dir = target.data_dir.to_str().unwrap();
    stdout(&detcdutl(&["defrag", "--data-dir", data_dir]));
    let offline = stdout(&detcdutl(&[
        "hashkv",
        "--data-dir",
        data_dir,
        "--rev",
        &cur.to_string(),
        "-w",
        "json",
    ]));
    assert_eq!(
        offline,
        format!(
            "{{\"hash\":{},\"hashRevision\":{cur},\"compactRevision\":{}}}\n",
            want.1, want.2
        )
    );
    {
        // The user, its role and its etcd-made bcrypt hash came over.
        let db = target.data_dir.join("member/snap/db");
        let backend = detcd::backend::Backend::open(&detcd::runtime::RealDisk, &db).unwrap();
        let auth = detcd::auth::AuthStore::open(&backend, Duration::from_secs(300)).unwrap();
        let alice = auth.user_get("alice").unwrap();
        assert_eq!(alice.roles, ["reader"]);
        let hash = String::from_utf8_lossy(&alice.password);
        assert!(bcrypt::verify("pw", &hash).unwrap(), "{hash}");
    }
    let _detcd = target.start(None);
    let mut d = ready_client(target.client_port).await;
    // ready_client's write to detcd lands after `cur`.
    assert_eq!(served(&mut d, compacted, cur).await, want);
    let leases = d.leases().await.unwrap();
    assert_eq!(leases.leases().len(), 1, "the lease is restored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detcd_snapshot_restores_into_etcd() {
    let (Some(etcd), Some(etcdctl), Some(etcdutl)) = (
        etcd35("etcd", "detcd_snapshot_restores_into_etcd"),
        etcd35("etcdctl", "detcd_snapshot_restores_into_etcd"),
        etcd35("etcdutl", "detcd_snapshot_restores_into_etcd"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let source = Member::new("detcd", dir.path());
    let _detcd = source.start(None);
    let mut d = ready_client(source.client_port).await;
    let (cur, compacted) = history(&mut d).await;
    let want = served(&mut d, compacted, cur).await;
    let file = dir.path().join("detcd.snap");
    let file = file.to_str().unwrap();
    save_and_compare_status(&etcdctl, &etcdutl, &source.client_url(), file);

    let target = Member::new("etcd", dir.path());
    stdout(&run(
        &etcdutl,
        &[
            "snapshot",
            "restore",
            file,
            "--name",
            "etcd",
            "--initial-cluster",
            &format!("etcd={}", target.peer_url()),
            "--initial-cluster-token",
            "detcd-test",
            "--initial-advertise-peer-urls",
            &target.peer_url(),
            "--data-dir",
            target.data_dir.to_str().unwrap(),
        ],
    ));
    let _etcd = target.spawn(etcd.to_str().unwrap(), None);
    let mut c = ready_client(target.client_port).await;
    assert_eq!(served(&mut c, compacted, cur).await, want);
    assert_eq!(c.leases().await.unwrap().leases().len(), 1, "the lease");
}

/// bbolt itself (etcdutl's status runs its `Tx.Check`: every page reachable once, none
/// beyond the high-water mark) reads what the writer makes of many keys, several tree
/// levels, inline and paged buckets and values larger than a page, and hashes it as
/// `migrate::status` does.
#[test]
fn bbolt_reads_large_written_files() {
    let Some(etcdutl) = etcd35("etcdutl", "bbolt_reads_large_written_files") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut buckets = bolt::Buckets::new();
    let key: BTreeMap<Vec<u8>, Vec<u8>> = (0u32..20_000)
        .map(|i| {
            let size = if i % 997 == 0 {
                20_000
            } else {
                (i % 300) as usize
            };
            let rev = detcd::mvcc::Revision::new(i as i64 + 1, 0);
            (rev.to_key(false), vec![i as u8; size])
        })
        .collect();
    buckets.insert(b"key".to_vec(), key);
    buckets.insert(
        b"meta".to_vec(),
        BTreeMap::from([(b"x".to_vec(), b"1".to_vec())]),
    );
    buckets.insert(b"lease".to_vec(), BTreeMap::new());
    let db = bolt::write(&buckets).unwrap();
    let want = migrate::status(&db[..]).unwrap();
    let file = dir.path().join("large.db");
    std::fs::write(&file, migrate::with_trailer(db)).unwrap();
    let got = stdout(&run(
        &etcdutl,
        &["snapshot", "status", file.to_str().unwrap(), "-w", "json"],
    ));
    assert_eq!(got, format!("{}\n", serde_json::to_string(&want).unwrap()));
}

/// Three restores of one detcd snapshot form a 3-member cluster that serves the
/// snapshot's data, and loses no key when its leader is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detcd_snapshot_restores_into_three_members() {
    let dir = tempfile::tempdir().unwrap();
    let source = Member::new("source", dir.path());
    let source_proc = source.start(None);
    let mut d = ready_client(source.client_port).await;
    let (cur, compacted) = history(&mut d).await;
    let want = served(&mut d, compacted, cur).await;
    let mut stream = d.snapshot().await.unwrap();
    let mut bytes = Vec::new();
    while let Some(m) = stream.message().await.unwrap() {
        bytes.extend_from_slice(m.blob());
    }
    drop(source_proc);
    let file = dir.path().join("detcd.snap");
    std::fs::write(&file, bytes).unwrap();

    let members: Vec<Member> = ["m1", "m2", "m3"]
        .iter()
        .map(|n| Member::new(n, dir.path()))
        .collect();
    let initial_cluster = common::initial_cluster(&members);
    for m in &members {
        stdout(&detcdutl(&[
            "snapshot",
            "restore",
            file.to_str().unwrap(),
            "--name",
            &m.name,
            "--initial-cluster",
            &initial_cluster,
            "--initial-cluster-token",
            "detcd-test",
            "--initial-advertise-peer-urls",
            &m.peer_url(),
            "--data-dir",
            m.data_dir.to_str().unwrap(),
        ]));
    }
    let mut cluster = Cluster::start_members(members).await;
    for port in cluster.ports() {
        let mut c = ready_client(port).await;
        assert_eq!(
            served(&mut c, compacted, cur).await,
            want,
            "member on {port}"
        );
    }
    let victim = cluster.leader().await;
    cluster.kill(victim);
    let survivor = cluster.ports()[(victim + 1) % 3];
    let mut c = ready_client(survivor).await;
    c.put("after-kill", "x", None).await.unwrap();
    assert_eq!(
        served(&mut c, compacted, cur).await,
        want,
        "after the leader kill"
    );
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
