//! Reads that finish outside the store's lock: a range looks up the index under the lock
//! and reads committed values from a view of the last commit afterwards. Whatever applies,
//! commits, compactions and defragmentations happen in between, the answer is the store as
//! it was when the range began.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::mvcc::{no_leases, Config, KvStore};
use detcd::proto::etcdserverpb::*;
use detcd::runtime::SimDisk;

fn put(s: &mut KvStore, key: &str, value: &str) -> i64 {
    let req = PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    };
    s.put(&req, &no_leases).unwrap().0.header.unwrap().revision
}

fn prefix(p: &str) -> RangeRequest {
    RangeRequest {
        key: p.into(),
        range_end: format!("{p}\u{7f}").into(),
        ..Default::default()
    }
}

fn values(r: &RangeResponse) -> Vec<(String, String, i64)> {
    r.kvs
        .iter()
        .map(|kv| {
            let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            (s(&kv.key), s(&kv.value), kv.mod_revision)
        })
        .collect()
}

/// A range begun over committed and uncommitted values finishes with the values of its
/// start, although the keys were overwritten, committed, compacted and the file
/// defragmented before it finished (the view pins the old pages; defragmentation is the
/// only step that must wait for it, and here it runs after the view is gone).
#[test]
fn a_range_finishes_as_it_began() {
    let mut s = KvStore::open(&SimDisk::new(1), Path::new("/db"), Config::default()).unwrap();
    let r1 = put(&mut s, "k/a", "a1");
    s.commit().unwrap();
    let r2 = put(&mut s, "k/b", "b1");
    let begun = s.begin_range(&prefix("k/")).unwrap();
    let expected = vec![
        ("k/a".to_string(), "a1".to_string(), r1),
        ("k/b".to_string(), "b1".to_string(), r2),
    ];
    put(&mut s, "k/a", "a2");
    put(&mut s, "k/b", "b2");
    s.commit().unwrap();
    let latest = put(&mut s, "k/c", "c1");
    s.compact(&CompactionRequest {
        revision: latest,
        physical: true,
    })
    .unwrap();
    s.finish_compaction().unwrap();
    s.commit().unwrap();
    let resp = begun.finish().unwrap();
    assert_eq!(values(&resp), expected);
    assert_eq!(resp.count, 2);
    assert_eq!(resp.header.unwrap().revision, r2);
    s.backend().defragment().unwrap();
    let now = values(&s.range(&prefix("k/")).unwrap());
    assert_eq!(now.len(), 3);
    assert_eq!(now[0].1, "a2");
}

/// Defragmentation (redb cannot compact under an open read transaction) waits for a
/// range still finishing on another thread instead of failing: while the range's view is
/// open, the defragmenting thread holds the store and has no answer; once the range
/// finishes (which needs neither), defragmentation succeeds.
#[test]
fn defragment_waits_for_open_views() {
    let store = Arc::new(Mutex::new(
        KvStore::open(&SimDisk::new(2), Path::new("/db"), Config::default()).unwrap(),
    ));
    {
        let mut s = store.lock().unwrap();
        for i in 0..100 {
            put(&mut s, &format!("k/{i:03}"), "v");
        }
        s.commit().unwrap();
    }
    let begun = store.lock().unwrap().begin_range(&prefix("k/")).unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let defrag = {
        let store = store.clone();
        std::thread::spawn(move || {
            let result = store.lock().unwrap().backend().defragment();
            done_tx.send(result.map_err(|e| e.to_string())).unwrap();
        })
    };
    // An observation window, not synchronisation: a defragmentation that does not wait
    // answers (with redb's "transaction in progress") well within it.
    assert!(
        done_rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "defragmentation answered while a view was open"
    );
    let resp = begun.finish().unwrap();
    assert_eq!(resp.kvs.len(), 100);
    assert_eq!(done_rx.recv().unwrap(), Ok(()));
    defrag.join().unwrap();
    assert_eq!(
        store
            .lock()
            .unwrap()
            .range(&prefix("k/"))
            .unwrap()
            .kvs
            .len(),
        100
    );
}
