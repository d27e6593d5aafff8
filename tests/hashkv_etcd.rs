//! etcd and detcd fed the same random history (puts with and without a lease, deletes of
//! one key and of all keys, txns, lease revokes, physical compactions) answer the same
//! HashKV at every uncompacted revision, and refuse the same compacted ones. Oracles:
//! Debian's etcd 3.4 on PATH and the official etcd 3.5.1 (ci/install-etcd); a test whose
//! etcd is absent says it is skipped.

#![cfg(not(madsim))]

mod common;

use std::path::Path;

use common::{etcd35, grpc_message, on_path, ready_client, Member};
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, LeaseGrantOptions, PutOptions,
    Txn, TxnOp,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const LEASE: i64 = 0x1234;
const OPS: usize = 150;

/// The same operation on both; returns the header revisions, which must agree.
async fn apply(c: &mut Client, op: u32, key: usize, value: &str, rng_rev: i64) -> i64 {
    let (other, key) = (format!("k/{}", (key + 1) % 6), format!("k/{key}"));
    let key = key.as_str();
    let header = match op {
        0..=3 => c.put(key, value, None).await.unwrap().take_header(),
        4 => c
            .put(key, value, Some(PutOptions::new().with_lease(LEASE)))
            .await
            .unwrap()
            .take_header(),
        5 => c.delete(key, None).await.unwrap().take_header(),
        6 => c
            .delete("", Some(DeleteOptions::new().with_all_keys()))
            .await
            .unwrap()
            .take_header(),
        7 => c
            .txn(
                Txn::new()
                    .when([Compare::value(key, CompareOp::Greater, value)])
                    .and_then([TxnOp::put(key, value, None), TxnOp::delete(other, None)])
                    .or_else([TxnOp::put("k/9", value, None)]),
            )
            .await
            .unwrap()
            .take_header(),
        8 => c
            .compact(rng_rev, Some(CompactionOptions::new().with_physical()))
            .await
            .unwrap()
            .take_header(),
        // A revoke deletes the lease's keys in one revision, in key order.
        _ => {
            c.lease_revoke(LEASE).await.unwrap();
            c.lease_grant(3600, Some(LeaseGrantOptions::new().with_id(LEASE)))
                .await
                .unwrap()
                .take_header()
        }
    };
    header.expect("response header").revision()
}

/// HashKV at `rev` as (hash, compact revision), or the server's error message.
async fn hash_kv(c: &mut Client, rev: i64) -> Result<(u32, i64), String> {
    c.hash_kv(rev)
        .await
        .map(|r| (r.hash(), r.compact_version()))
        .map_err(grpc_message)
}

async fn compare_with(etcd_program: &Path, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Member::new("etcd", dir.path());
    let detcd = Member::new("detcd", dir.path());
    let _etcd = etcd.spawn(etcd_program.to_str().unwrap(), None);
    let _detcd = detcd.start(None);
    let mut clients = [
        ready_client(etcd.client_port).await,
        ready_client(detcd.client_port).await,
    ];
    for c in &mut clients {
        c.lease_grant(3600, Some(LeaseGrantOptions::new().with_id(LEASE)))
            .await
            .unwrap();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut rev, mut compacted) = (1, 0);
    for step in 0..OPS {
        let op = rng.random_range(0..10u32);
        let key = rng.random_range(0..6);
        let value = format!("v{}", rng.random_range(0..4));
        let op = if op == 8 && rev <= compacted { 0 } else { op };
        let at = rng.random_range(compacted + 1..=rev.max(compacted + 1));
        let mut revs = Vec::new();
        for c in &mut clients {
            revs.push(apply(c, op, key, &value, at).await);
        }
        assert_eq!(revs[0], revs[1], "revision after step {step} (op {op})");
        rev = revs[0];
        if op == 8 {
            compacted = at;
        }
        // After a compaction, and after deleting every key: then etcd hashes whatever its
        // compaction left.
        if op == 8 || op == 6 || step + 1 == OPS {
            // From the compaction revision (refused) to the current one, and 0.
            for at in (compacted.max(1)..=rev).chain([0]) {
                let etcd_says = hash_kv(&mut clients[0], at).await;
                let detcd_says = hash_kv(&mut clients[1], at).await;
                assert_eq!(
                    detcd_says, etcd_says,
                    "HashKV at {at} (current {rev}, compacted at {compacted}) after step {step}, seed {seed}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashkv_matches_etcd_3_5() {
    let Some(etcd) = etcd35("etcd", "hashkv_matches_etcd_3_5") else {
        return;
    };
    for seed in 0..5 {
        compare_with(&etcd, seed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashkv_matches_etcd_3_4() {
    if !on_path("etcd") {
        eprintln!("SKIPPED hashkv_matches_etcd_3_4: no etcd on PATH (run ci/install-etcd)");
        return;
    }
    compare_with(Path::new("etcd"), 3).await;
}
