//! Crash tests of the state machine on SimDisk: a log of key writes, compactions, lease
//! grants and revokes and auth changes is applied in batches while the disk dies after a
//! random number of operations (mid-commit included). After the crash the member must
//! hold exactly the entries up to its consistent index, no fewer than the last
//! acknowledged commit, and replaying the rest must give the state of a member that never
//! crashed: same keys, HashKV, whole-backend Hash, leases with their keys, auth revision.
//! Compactions commit in the middle of their entry; the store finishes them on open.

use std::path::Path;
use std::time::Duration;

use detcd::auth::{AuthStore, DEFAULT_TOKEN_TTL};
use detcd::lease::{Lessor, LessorConfig};
use detcd::mvcc::{Config, KvStore, WatchConfig, WatchableStore};
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
    Grant(i64),
    Revoke(i64),
    RoleAdd(String),
}

/// A member's state machine.
struct Member {
    store: WatchableStore,
    lessor: Lessor,
    auth: AuthStore,
}

fn key(rng: &mut impl Rng) -> Vec<u8> {
    format!("k{}", rng.random_range(0..8)).into_bytes()
}

/// The log: mostly puts (values big enough to span pages, some on leases 1 to 3), some
/// deletes, txns, compactions a few revisions back, lease grants and revokes, and roles.
fn log(seed: u64) -> Vec<Entry> {
    let mut rng = seeded_rng(seed);
    (0..ENTRIES)
        .map(|i| match rng.random_range(0..14) {
            0..=5 => Entry::Put(PutRequest {
                key: key(&mut rng),
                value: vec![i as u8; rng.random_range(0..3000)],
                lease: [0, 0, 1, 2, 3][rng.random_range(0..5)],
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
            9 => Entry::Compact(rng.random_range(1..4)),
            10 | 11 => Entry::Grant(rng.random_range(1..4)),
            12 => Entry::Revoke(rng.random_range(1..4)),
            _ => Entry::RoleAdd(format!("role{}", rng.random_range(0..4))),
        })
        .collect()
}

fn open(disk: &SimDisk, cfg: Config) -> Member {
    let kv = KvStore::open(disk, Path::new(DB), cfg).unwrap();
    let mut store = WatchableStore::new(kv, WatchConfig::default());
    let lessor = Lessor::open(&mut store, LessorConfig::default()).unwrap();
    let auth = AuthStore::open(store.backend(), DEFAULT_TOKEN_TTL).unwrap();
    Member {
        store,
        lessor,
        auth,
    }
}

/// Whether an error is the disk dying, as opposed to a request's outcome (duplicate key,
/// compacted revision, unknown lease, existing role), which is part of the log.
fn fatal(message: &str) -> bool {
    message.contains("backend")
}

/// Applies one entry; `Err` when the disk died.
fn apply(m: &mut Member, entry: &Entry, index: u64) -> Result<(), String> {
    m.store
        .kv_mut()
        .begin_entry(index)
        .map_err(|e| e.to_string())?;
    let lessor = &m.lessor;
    let result = match entry {
        Entry::Put(p) => m
            .store
            .write(|kv| kv.put(p, lessor))
            .map(|(_, evs)| evs)
            .map_err(|e| e.to_string()),
        Entry::Delete(d) => m
            .store
            .write(|kv| kv.delete_range(d))
            .map(|(_, evs)| evs)
            .map_err(|e| e.to_string()),
        Entry::Txn(t) => m
            .store
            .write(|kv| kv.txn(t, lessor))
            .map(|(_, evs)| evs)
            .map_err(|e| e.to_string()),
        Entry::Compact(back) => {
            let kv = m.store.kv_mut();
            let req = CompactionRequest {
                revision: kv.rev() - back,
                physical: index.is_multiple_of(2),
            };
            kv.compact(&req)
                .map(|_| Vec::new())
                .map_err(|e| e.to_string())
        }
        Entry::Grant(id) => {
            let req = LeaseGrantRequest { id: *id, ttl: 60 };
            m.lessor
                .grant(&mut m.store, &req, Duration::ZERO)
                .map(|_| Vec::new())
                .map_err(|e| e.to_string())
        }
        Entry::Revoke(id) => m
            .lessor
            .revoke(&mut m.store, *id)
            .map(|_| Vec::new())
            .map_err(|e| e.to_string()),
        Entry::RoleAdd(name) => m
            .auth
            .role_add(m.store.backend(), name)
            .map(|_| Vec::new())
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(events) => {
            m.lessor.observe(&events);
            Ok(())
        }
        Err(e) if fatal(&e) => Err(e),
        Err(_) => Ok(()),
    }
}

/// What must match: revision, every key (as a checksum), HashKV, the whole backend's Hash
/// (with compaction run to its end, which members do at their own pace), leases with their
/// keys, and the auth revision with the roles.
type State = (
    i64,
    u32,
    u32,
    u32,
    Vec<(i64, Vec<Vec<u8>>)>,
    u64,
    Vec<String>,
);

fn state(m: &mut Member) -> State {
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    let kv = m.store.kv_mut();
    kv.finish_compaction().unwrap();
    let range = kv.range(&all).unwrap();
    let leases = m
        .lessor
        .leases()
        .leases
        .iter()
        .map(|l| {
            (
                l.id,
                m.lessor.get(l.id).unwrap().keys.iter().cloned().collect(),
            )
        })
        .collect();
    (
        kv.rev(),
        crc32fast::hash(&range.encode_to_vec()),
        kv.hash_kv(0).unwrap().hash,
        kv.committed_view().unwrap().hash().unwrap(),
        leases,
        m.auth.revision(),
        m.auth.role_list(),
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
    let mut reference = open(&SimDisk::new(seed), config());
    let mut states = vec![state(&mut reference)];
    for (i, e) in entries.iter().enumerate() {
        apply(&mut reference, e, i as u64 + 1).unwrap();
        states.push(state(&mut reference));
    }

    let disk = SimDisk::new(seed);
    let mut rng = seeded_rng(seed ^ 0x5eed);
    let mut m = open(&disk, config());
    disk.inject(Fault::DieAfter {
        ops: rng.random_range(0..300),
    });
    let mut acknowledged = 0;
    for (i, e) in entries.iter().enumerate() {
        if apply(&mut m, e, i as u64 + 1).is_err() {
            break;
        }
        acknowledged = m.store.kv().committed_index();
    }
    drop(m);
    let mode = disk.crash();
    disk.heal();
    let mut m = open(&disk, config());
    let ci = m.store.kv().consistent_index();
    let ctx =
        format!("seed {seed}, crash {mode:?}, consistent index {ci}, acknowledged {acknowledged}");
    assert!(ci >= acknowledged, "{ctx}: lost an acknowledged commit");
    assert_eq!(
        state(&mut m),
        states[ci as usize],
        "{ctx}: state after reopen"
    );
    for (i, e) in entries.iter().enumerate().skip(ci as usize) {
        apply(&mut m, e, i as u64 + 1).unwrap();
    }
    assert_eq!(state(&mut m), states[ENTRIES], "{ctx}: state after replay");
    assert!(
        m.store.backend().check_integrity().unwrap(),
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
        let states: Vec<State> = [1, 7, 1000]
            .into_iter()
            .map(|batch_limit| {
                let mut m = open(
                    &SimDisk::new(seed),
                    Config {
                        batch_limit,
                        ..config()
                    },
                );
                for (i, e) in entries.iter().enumerate() {
                    apply(&mut m, e, i as u64 + 1).unwrap();
                }
                state(&mut m)
            })
            .collect();
        assert!(
            states.windows(2).all(|w| w[0] == w[1]),
            "seed {seed}: {states:?}"
        );
    }
}
