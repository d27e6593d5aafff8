//! Crash tests of the MVCC store on SimDisk: a log of writes is applied in batches while
//! the disk dies after a random number of operations (mid-commit included); after the
//! crash the store must hold exactly the entries up to its consistent index, no fewer than
//! the last acknowledged commit, and replaying the rest must give the state (and HashKV)
//! of a store that never crashed. Compactions commit in the middle of their entry; the
//! store finishes them on open.

use std::path::Path;

use detcd::mvcc::{Config, KvStore};
use detcd::proto::etcdserverpb::request_op::Request;
use detcd::proto::etcdserverpb::*;
use detcd::runtime::{seeded_rng, Fault, SimDisk};
use prost::Message;
use rand::Rng;

const DB: &str = "/data/db";
const ENTRIES: usize = 60;

#[derive(Clone, Debug)]
enum Entry {
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Txn(TxnRequest),
    Compact(i64),
}

fn key(rng: &mut impl Rng) -> Vec<u8> {
    format!("k{}", rng.random_range(0..8)).into_bytes()
}

/// The log: mostly puts (with values big enough to span pages), some deletes, txns and
/// compactions a few revisions back.
fn log(seed: u64) -> Vec<Entry> {
    let mut rng = seeded_rng(seed);
    (0..ENTRIES)
        .map(|i| match rng.random_range(0..10) {
            0..=5 => Entry::Put(PutRequest {
                key: key(&mut rng),
                value: vec![i as u8; rng.random_range(0..3000)],
                ..Default::default()
            }),
            6 => Entry::Delete(DeleteRangeRequest {
                key: key(&mut rng),
                range_end: key(&mut rng),
                ..Default::default()
            }),
            7 | 8 => {
                let put = |rng: &mut _| RequestOp {
                    request: Some(Request::RequestPut(PutRequest {
                        key: key(rng),
                        value: vec![1; 100],
                        ..Default::default()
                    })),
                };
                Entry::Txn(TxnRequest {
                    compare: vec![Compare {
                        key: key(&mut rng),
                        ..Default::default()
                    }],
                    success: vec![put(&mut rng)],
                    failure: vec![RequestOp {
                        request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                            key: key(&mut rng),
                            ..Default::default()
                        })),
                    }],
                })
            }
            _ => Entry::Compact(rng.random_range(1..4)),
        })
        .collect()
}

/// Applies one entry; request errors (duplicate keys, compacted) are part of the log's
/// outcome, backend errors are the disk dying.
fn apply(store: &mut KvStore, entry: &Entry, index: u64) -> Result<(), detcd::mvcc::Error> {
    store.begin_entry(index)?;
    let no_leases = |_: i64| false;
    let result = match entry {
        Entry::Put(p) => store.put(p, &no_leases).map(drop),
        Entry::Delete(d) => store.delete_range(d).map(drop),
        Entry::Txn(t) => store.txn(t, &no_leases).map(drop),
        Entry::Compact(back) => store
            .compact(&CompactionRequest {
                revision: store.rev() - back,
                physical: index.is_multiple_of(2),
            })
            .map(drop),
    };
    match result {
        Err(e @ detcd::mvcc::Error::Backend(_)) => Err(e),
        _ => Ok(()),
    }
}

/// What must match: revision, every key (as a checksum), and HashKV.
fn state(store: &KvStore) -> (i64, i64, u32, u32) {
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    let range = store.range(&all).unwrap();
    (
        store.rev(),
        range.count,
        crc32fast::hash(&range.encode_to_vec()),
        store.hash_kv(0).unwrap().hash,
    )
}

fn config() -> Config {
    Config {
        batch_limit: 4,
        compaction_batch_limit: 3,
        ..Config::default()
    }
}

/// Returns the consistent index found after the crash.
fn crash_and_replay(seed: u64) -> u64 {
    let entries = log(seed);
    let reference_disk = SimDisk::new(seed);
    let mut reference = KvStore::open(&reference_disk, Path::new(DB), config()).unwrap();
    let mut states = vec![state(&reference)];
    for (i, e) in entries.iter().enumerate() {
        apply(&mut reference, e, i as u64 + 1).unwrap();
        states.push(state(&reference));
    }

    let disk = SimDisk::new(seed);
    let mut rng = seeded_rng(seed ^ 0x5eed);
    let mut store = KvStore::open(&disk, Path::new(DB), config()).unwrap();
    disk.inject(Fault::DieAfter {
        ops: rng.random_range(0..300),
    });
    let mut acknowledged = 0;
    for (i, e) in entries.iter().enumerate() {
        let index = i as u64 + 1;
        if apply(&mut store, e, index).is_err() {
            break;
        }
        acknowledged = store.committed_index();
    }
    drop(store);
    let mode = disk.crash();
    disk.heal();
    let mut store = KvStore::open(&disk, Path::new(DB), config()).unwrap();
    let ci = store.consistent_index();
    let ctx =
        format!("seed {seed}, crash {mode:?}, consistent index {ci}, acknowledged {acknowledged}");
    assert!(ci >= acknowledged, "{ctx}: lost an acknowledged commit");
    assert_eq!(
        state(&store),
        states[ci as usize],
        "{ctx}: state after reopen"
    );
    for (i, e) in entries.iter().enumerate().skip(ci as usize) {
        apply(&mut store, e, i as u64 + 1).unwrap();
    }
    assert_eq!(state(&store), states[ENTRIES], "{ctx}: state after replay");
    assert!(
        store.backend().check_integrity().unwrap(),
        "{ctx}: redb integrity"
    );
    ci
}

#[test]
fn crash_at_random_points_then_replay() {
    let seeds = 150;
    let mid_log = (0..seeds)
        .filter(|&seed| (1..ENTRIES as u64).contains(&crash_and_replay(seed)))
        .count();
    // The test is only as good as its crash points: most must land inside the log.
    assert!(
        mid_log * 2 > seeds as usize,
        "only {mid_log} of {seeds} crashes inside the log"
    );
}

/// Members apply the same log but commit at different moments; Hash and HashKV must not
/// see the difference, or corruption checks would cry wolf.
#[test]
fn members_with_different_batching_agree_on_hashes() {
    for seed in 0..8 {
        let entries = log(seed);
        let hashes: Vec<(u32, u32)> = [1, 7, 1000]
            .into_iter()
            .map(|batch_limit| {
                let cfg = Config {
                    batch_limit,
                    ..config()
                };
                let mut store = KvStore::open(&SimDisk::new(seed), Path::new(DB), cfg).unwrap();
                for (i, e) in entries.iter().enumerate() {
                    apply(&mut store, e, i as u64 + 1).unwrap();
                }
                store.finish_compaction().unwrap();
                (store.hash().unwrap(), store.hash_kv(0).unwrap().hash)
            })
            .collect();
        assert!(
            hashes.windows(2).all(|w| w[0] == w[1]),
            "seed {seed}: {hashes:?}"
        );
    }
}
