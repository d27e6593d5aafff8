//! etcd's request limits and alarms on the MVCC store, each with etcd's exact message:
//! clients (etcdctl, clientv3) match on these strings.

use std::path::Path;
use std::sync::atomic::Ordering;

use detcd::mvcc::{no_leases, Config, KvStore};
use detcd::proto::etcdserverpb::request_op::Request;
use detcd::proto::etcdserverpb::*;
use detcd::runtime::SimDisk;

fn store(cfg: Config) -> KvStore {
    KvStore::open(&SimDisk::new(1), Path::new("/db"), cfg).unwrap()
}

fn put(key: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: b"v".to_vec(),
        ..Default::default()
    }
}

fn op(r: Request) -> RequestOp {
    RequestOp { request: Some(r) }
}

fn txn_err(s: &mut KvStore, t: TxnRequest) -> String {
    s.txn(&t, &no_leases).unwrap_err().to_string()
}

#[test]
fn txn_ops_are_limited() {
    let mut s = store(Config {
        max_txn_ops: 2,
        ..Config::default()
    });
    let ops = (0..3)
        .map(|i| op(Request::RequestPut(put(&format!("k{i}")))))
        .collect();
    let err = txn_err(
        &mut s,
        TxnRequest {
            success: ops,
            ..Default::default()
        },
    );
    assert_eq!(err, "etcdserver: too many operations in txn request");
}

#[test]
fn a_txn_may_not_write_a_key_twice() {
    let mut s = store(Config::default());
    let twice = TxnRequest {
        success: vec![
            op(Request::RequestPut(put("a"))),
            op(Request::RequestPut(put("a"))),
        ],
        ..Default::default()
    };
    assert_eq!(
        txn_err(&mut s, twice),
        "etcdserver: duplicate key given in txn request"
    );
    let put_and_delete = TxnRequest {
        failure: vec![
            op(Request::RequestPut(put("b"))),
            op(Request::RequestDeleteRange(DeleteRangeRequest {
                key: b"a".to_vec(),
                range_end: b"c".to_vec(),
                ..Default::default()
            })),
        ],
        ..Default::default()
    };
    assert_eq!(
        txn_err(&mut s, put_and_delete),
        "etcdserver: duplicate key given in txn request"
    );
    // The branches of a nested txn exclude each other: both may put the same key.
    let nested = TxnRequest {
        success: vec![op(Request::RequestPut(put("a")))],
        failure: vec![op(Request::RequestPut(put("a")))],
        ..Default::default()
    };
    let ok = TxnRequest {
        success: vec![op(Request::RequestTxn(nested))],
        ..Default::default()
    };
    assert!(s.txn(&ok, &no_leases).is_ok());
    // But the nested puts may not repeat one of the enclosing branch.
    let nested = TxnRequest {
        success: vec![op(Request::RequestPut(put("a")))],
        ..Default::default()
    };
    let bad = TxnRequest {
        success: vec![
            op(Request::RequestPut(put("a"))),
            op(Request::RequestTxn(nested)),
        ],
        ..Default::default()
    };
    assert_eq!(
        txn_err(&mut s, bad),
        "etcdserver: duplicate key given in txn request"
    );
}

#[test]
fn requests_are_limited_in_size() {
    let mut s = store(Config {
        max_request_bytes: 100,
        ..Config::default()
    });
    let big = PutRequest {
        key: b"k".to_vec(),
        value: vec![0; 200],
        ..Default::default()
    };
    assert_eq!(
        s.put(&big, &no_leases).unwrap_err().to_string(),
        "etcdserver: request is too large"
    );
    assert_eq!(s.rev(), 1, "a rejected request takes no revision");
}

/// The quota check reads the backend's size without the store's lock, through a gauge: it
/// must follow commits and defragmentation, and survive the store's replacement by a
/// restored snapshot, or NOSPACE would be raised too late or never.
#[test]
fn the_size_gauge_follows_commits_defragments_and_restores() {
    let disk = SimDisk::new(1);
    let mut s = KvStore::open(&disk, Path::new("/db"), Config::default()).unwrap();
    let gauge = s.backend().size_gauge();
    let empty = gauge.load(Ordering::Relaxed);
    assert_eq!(empty, s.backend().size());
    for i in 0..200 {
        let req = PutRequest {
            key: format!("k{i}").into_bytes(),
            value: vec![7; 4096],
            ..Default::default()
        };
        s.put(&req, &no_leases).unwrap();
    }
    assert_eq!(gauge.load(Ordering::Relaxed), empty, "not committed yet");
    s.commit().unwrap();
    let full = gauge.load(Ordering::Relaxed);
    assert!(
        full > empty + 200 * 4096,
        "{full} bytes after 800 KiB of values"
    );

    let rev = s.rev();
    s.delete_range(&DeleteRangeRequest {
        key: b"k".to_vec(),
        range_end: b"l".to_vec(),
        ..Default::default()
    })
    .unwrap();
    s.compact(&CompactionRequest {
        revision: rev + 1,
        ..Default::default()
    })
    .unwrap();
    while s.compaction_step().unwrap() {}
    s.backend().defragment(&disk).unwrap();
    let defragged = gauge.load(Ordering::Relaxed);
    assert!(
        defragged < full,
        "{defragged} bytes after a defragment, {full} before"
    );

    let mut other = KvStore::open(&disk, Path::new("/db2"), Config::default()).unwrap();
    other.backend().adopt_size_gauge(gauge.clone());
    assert_eq!(gauge.load(Ordering::Relaxed), other.backend().size());
    other.put(&put("a"), &no_leases).unwrap();
    other.commit().unwrap();
    assert_eq!(gauge.load(Ordering::Relaxed), other.backend().size());
}

#[test]
fn nospace_rejects_puts_but_not_deletes_until_cleared() {
    let mut s = store(Config {
        quota_bytes: 1,
        ..Config::default()
    });
    s.put(&put("a"), &no_leases).unwrap();
    assert!(
        s.backend().size() > 1,
        "a 1-byte quota is exceeded by any database"
    );
    s.set_nospace(true).unwrap();
    assert_eq!(
        s.put(&put("b"), &no_leases).unwrap_err().to_string(),
        "etcdserver: mvcc: database space exceeded"
    );
    let txn = TxnRequest {
        success: vec![op(Request::RequestPut(put("b")))],
        ..Default::default()
    };
    assert_eq!(
        txn_err(&mut s, txn),
        "etcdserver: mvcc: database space exceeded"
    );
    // A put on a branch that would not run still counts, as in etcd: "a" exists, so the
    // compare (version 0) fails and only the read would run.
    let unrun = TxnRequest {
        compare: vec![Compare {
            key: b"a".to_vec(),
            ..Default::default()
        }],
        success: vec![op(Request::RequestPut(put("b")))],
        failure: vec![op(Request::RequestRange(RangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        }))],
    };
    assert_eq!(
        txn_err(&mut s, unrun),
        "etcdserver: mvcc: database space exceeded"
    );
    let del = DeleteRangeRequest {
        key: b"a".to_vec(),
        ..Default::default()
    };
    assert_eq!(s.delete_range(&del).unwrap().0.deleted, 1);
    s.set_nospace(false).unwrap();
    s.put(&put("b"), &no_leases).unwrap();
}

#[test]
fn reads_name_compacted_and_future_revisions() {
    let mut s = store(Config::default());
    for k in ["a", "b", "c"] {
        s.put(&put(k), &no_leases).unwrap();
    }
    s.compact(&CompactionRequest {
        revision: 3,
        physical: true,
    })
    .unwrap();
    let at = |rev| RangeRequest {
        key: b"a".to_vec(),
        revision: rev,
        ..Default::default()
    };
    assert_eq!(
        s.range(&at(2)).unwrap_err().to_string(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(
        s.range(&at(5)).unwrap_err().to_string(),
        "etcdserver: mvcc: required revision is a future revision"
    );
    assert_eq!(
        s.range(&at(3)).unwrap().kvs.len(),
        1,
        "the compaction revision itself stays readable"
    );
    let again = s
        .compact(&CompactionRequest {
            revision: 3,
            physical: false,
        })
        .unwrap_err();
    assert_eq!(
        again.to_string(),
        "etcdserver: mvcc: required revision has been compacted"
    );
}

#[test]
fn leases_must_exist_and_ignore_flags_need_the_key() {
    let mut s = store(Config::default());
    let with_lease = PutRequest {
        lease: 7,
        ..put("a")
    };
    assert_eq!(
        s.put(&with_lease, &no_leases).unwrap_err().to_string(),
        "etcdserver: requested lease not found"
    );
    assert_eq!(
        s.put(&with_lease, &|id| id == 7)
            .unwrap()
            .0
            .header
            .unwrap()
            .revision,
        2
    );
    let keep_value = PutRequest {
        key: b"b".to_vec(),
        ignore_value: true,
        ..Default::default()
    };
    assert_eq!(
        s.put(&keep_value, &no_leases).unwrap_err().to_string(),
        "etcdserver: key not found"
    );
    let keep_lease = PutRequest {
        ignore_lease: true,
        ..put("a")
    };
    let (_, events) = s.put(&keep_lease, &no_leases).unwrap();
    assert_eq!(
        events[0].kv.as_ref().unwrap().lease,
        7,
        "ignore_lease keeps the attached lease"
    );
}

/// etcd sorts by a target given without an order only within what the limit fetched
/// (limit + 1 keys, in key order): a client sees that, so it is reproduced.
#[test]
fn sort_target_without_order_sorts_the_limited_keys() {
    let mut s = store(Config::default());
    for (k, versions) in [("a", 3), ("b", 2), ("c", 1)] {
        for _ in 0..versions {
            s.put(&put(k), &no_leases).unwrap();
        }
    }
    let req = |order| RangeRequest {
        key: vec![0],
        range_end: vec![0],
        limit: 1,
        sort_target: range_request::SortTarget::Version as i32,
        sort_order: order as i32,
        ..Default::default()
    };
    let first = |r: RangeResponse| (String::from_utf8(r.kvs[0].key.clone()).unwrap(), r.more);
    assert_eq!(
        first(s.range(&req(range_request::SortOrder::None)).unwrap()),
        ("b".into(), true)
    );
    assert_eq!(
        first(s.range(&req(range_request::SortOrder::Ascend)).unwrap()),
        ("c".into(), true)
    );
}

/// A compaction batch scans at most `compaction_batch_limit` revisions, as etcd's does,
/// whether it removes them or keeps them: a compaction that supersedes nothing (every key
/// written once) still walks the whole key table, and a batch that did all of it at once
/// held the store, and the member loop that steps it, for seconds at a million keys.
#[test]
fn a_compaction_batch_scans_at_most_the_batch_limit() {
    let mut s = store(Config {
        compaction_batch_limit: 10,
        ..Config::default()
    });
    for i in 0..95 {
        s.put(&put(&format!("k{i:03}")), &no_leases).unwrap();
    }
    s.put(&put("k000"), &no_leases).unwrap();
    s.compact(&CompactionRequest {
        revision: s.rev(),
        ..Default::default()
    })
    .unwrap();
    // 96 revisions, 95 of them kept: ten batches, the last one short.
    let mut batches = 1;
    while s.compaction_step().unwrap() {
        batches += 1;
    }
    assert_eq!(batches, 10);
    assert!(!s.compaction_pending());
    // The superseded revision is gone, the kept ones read as before.
    let all = s
        .range(&RangeRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.count, 95);
}
