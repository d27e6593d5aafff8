//! Lease behaviour with a simulated clock: time is whatever `now` the test passes.

use std::path::Path;
use std::time::Duration;

use super::{Error, Lessor, LessorConfig};
use crate::mvcc::{Config, KvStore, WatchConfig, WatchableStore};
use crate::proto::etcdserverpb::{
    LeaseCheckpointRequest, LeaseGrantRequest, PutRequest, RangeRequest, WatchCreateRequest,
};
use crate::runtime::SimDisk;

const DB: &str = "/data/db";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn open(disk: &SimDisk) -> (WatchableStore, Lessor) {
    open_at(disk, DB)
}

/// A store and its lessor on the database at `path`, with default settings.
pub(crate) fn open_at(disk: &SimDisk, path: &str) -> (WatchableStore, Lessor) {
    let kv = KvStore::open(disk, Path::new(path), Config::default()).unwrap();
    let mut store = WatchableStore::new(kv, WatchConfig::default());
    let lessor = Lessor::open(&mut store, LessorConfig::default()).unwrap();
    (store, lessor)
}

/// Commits, drops everything and opens again from the disk, as a restarted member does.
fn restart(disk: &SimDisk, mut store: WatchableStore, lessor: Lessor) -> (WatchableStore, Lessor) {
    store.backend().commit().unwrap();
    drop((store, lessor));
    open(disk)
}

fn grant(store: &mut WatchableStore, lessor: &mut Lessor, id: i64, ttl: i64, now: Duration) -> i64 {
    lessor
        .grant(store, &LeaseGrantRequest { id, ttl }, now)
        .unwrap()
        .id
}

/// Puts `key` = "v" attached to `lease` (0: none) and lets the lessor see the events.
pub(crate) fn put(store: &mut WatchableStore, lessor: &mut Lessor, key: &str, lease: i64) {
    let req = PutRequest {
        key: key.into(),
        value: b"v".to_vec(),
        lease,
        ..Default::default()
    };
    let l: &Lessor = lessor;
    let (_, events) = store.write(|kv| kv.put(&req, l)).unwrap();
    lessor.observe(&events);
}

fn keys(store: &WatchableStore) -> Vec<Vec<u8>> {
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        keys_only: true,
        ..Default::default()
    };
    store
        .kv()
        .range(&all)
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect()
}

#[test]
fn grant_ids_minimum_ttl_and_errors() {
    let disk = SimDisk::new(1);
    let (mut store, mut lessor) = open(&disk);
    assert_eq!(
        grant(&mut store, &mut lessor, 0, 10, secs(0)),
        1,
        "server-chosen"
    );
    assert_eq!(
        grant(&mut store, &mut lessor, 2, 10, secs(0)),
        2,
        "client-chosen"
    );
    assert_eq!(
        grant(&mut store, &mut lessor, 0, 10, secs(0)),
        3,
        "server skips ids in use"
    );
    let again = lessor
        .grant(&mut store, &LeaseGrantRequest { id: 2, ttl: 5 }, secs(0))
        .unwrap_err();
    assert_eq!(again.to_string(), "etcdserver: lease already exists");
    let short = lessor
        .grant(&mut store, &LeaseGrantRequest { id: 9, ttl: 1 }, secs(0))
        .unwrap();
    assert_eq!(short.ttl, 2, "raised to the minimum TTL");
    let huge = lessor
        .grant(
            &mut store,
            &LeaseGrantRequest {
                id: 10,
                ttl: 9_000_000_001,
            },
            secs(0),
        )
        .unwrap_err();
    assert_eq!(huge.to_string(), "etcdserver: too large lease TTL");
    let ids: Vec<i64> = lessor.leases().leases.iter().map(|l| l.id).collect();
    assert_eq!(ids, vec![1, 2, 3, 9]);
}

#[test]
fn revoke_deletes_attached_keys_in_one_revision() {
    let disk = SimDisk::new(2);
    let (mut store, mut lessor) = open(&disk);
    let id = grant(&mut store, &mut lessor, 7, 60, secs(0));
    for k in ["a", "b", "c"] {
        put(&mut store, &mut lessor, k, id);
    }
    put(&mut store, &mut lessor, "free", 0);
    put(&mut store, &mut lessor, "c", 0); // re-put without the lease detaches it
    let (s, mut rx) = store.new_stream();
    store.watch(
        s,
        &WatchCreateRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        },
    );
    let before = store.kv().rev();
    lessor.revoke(&mut store, id).unwrap();
    assert_eq!(
        store.kv().rev(),
        before + 1,
        "one revision for the whole revoke"
    );
    assert_eq!(keys(&store), vec![b"c".to_vec(), b"free".to_vec()]);
    let resp = rx.try_recv().unwrap();
    assert_eq!(resp.events.len(), 2, "watchers see the revoke atomically");
    assert!(matches!(
        lessor.revoke(&mut store, id),
        Err(Error::NotFound)
    ));
    let req = PutRequest {
        key: b"d".to_vec(),
        lease: id,
        ..Default::default()
    };
    let err = store.write(|kv| kv.put(&req, &lessor)).unwrap_err();
    assert_eq!(err.to_string(), "etcdserver: requested lease not found");
}

/// Only the leader's clock expires leases; a keepalive pushes expiry out by the TTL, and
/// a proposed revoke is not proposed again until the retry interval passes.
#[test]
fn expiry_follows_the_leaders_clock() {
    let disk = SimDisk::new(3);
    let (mut store, mut lessor) = open(&disk);
    let id = grant(&mut store, &mut lessor, 1, 10, secs(0));
    assert!(
        lessor.expired(secs(100)).is_empty(),
        "followers never expire leases"
    );
    assert!(matches!(
        lessor.keep_alive(id, secs(0)),
        Err(Error::NotPrimary)
    ));
    lessor.promote(secs(100), Duration::ZERO);
    assert!(lessor.expired(secs(109)).is_empty());
    assert_eq!(lessor.time_to_live(id, false, secs(104)).unwrap().ttl, 6);
    lessor.keep_alive(id, secs(109)).unwrap();
    assert!(
        lessor.expired(secs(118)).is_empty(),
        "renewed at 109 for 10s"
    );
    assert_eq!(lessor.expired(secs(119)), vec![id]);
    assert!(
        lessor.expired(secs(120)).is_empty(),
        "revoke already proposed"
    );
    assert_eq!(
        lessor.expired(secs(122)),
        vec![id],
        "proposed again after the retry interval"
    );
    assert!(
        matches!(lessor.keep_alive(id, secs(122)), Err(Error::NotFound)),
        "expired leases cannot be renewed"
    );
    lessor.revoke(&mut store, id).unwrap();
    assert!(lessor.expired(secs(200)).is_empty());
    assert_eq!(lessor.time_to_live(id, false, secs(200)).unwrap().ttl, -1);
}

/// A leader change must not give leases a fresh TTL each time, or leases that nobody
/// renews would live forever under repeated elections: checkpoints carry the remainder.
#[test]
fn checkpoints_stop_leader_changes_from_extending_leases() {
    let disk = SimDisk::new(4);
    let (mut store, mut lessor) = open(&disk);
    let id = grant(&mut store, &mut lessor, 1, 100, secs(0));
    put(&mut store, &mut lessor, "k", id);
    lessor.promote(secs(0), Duration::ZERO);
    let cps = lessor.checkpoints(secs(60));
    assert_eq!(cps.len(), 1);
    assert_eq!(cps[0].remaining_ttl, 40);
    lessor
        .apply_checkpoint(&mut store, &LeaseCheckpointRequest { checkpoints: cps })
        .unwrap();
    // The new leader restarts from the backend and takes over at 61.
    let (mut store, mut lessor) = restart(&disk, store, lessor);
    lessor.promote(secs(61), Duration::ZERO);
    assert!(lessor.expired(secs(100)).is_empty());
    assert_eq!(
        lessor.expired(secs(101)),
        vec![id],
        "expires at 61 + 40, not 61 + 100"
    );
    lessor.revoke(&mut store, id).unwrap();
    assert!(keys(&store).is_empty());
}

#[test]
fn leases_and_attachments_survive_restart() {
    let disk = SimDisk::new(5);
    let (mut store, mut lessor) = open(&disk);
    let id = grant(&mut store, &mut lessor, 5, 30, secs(0));
    put(&mut store, &mut lessor, "x", id);
    put(&mut store, &mut lessor, "y", id);
    let (store, lessor) = restart(&disk, store, lessor);
    drop((store, lessor));
    disk.crash();
    let (store, mut lessor) = open(&disk);
    lessor.promote(secs(0), Duration::ZERO);
    let ttl = lessor.time_to_live(id, true, secs(10)).unwrap();
    assert_eq!((ttl.granted_ttl, ttl.ttl), (30, 20));
    assert_eq!(ttl.keys, vec![b"x".to_vec(), b"y".to_vec()]);
    assert_eq!(keys(&store).len(), 2);
}
