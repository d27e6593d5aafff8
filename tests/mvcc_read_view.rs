//! Reads that finish outside the store's lock: a range looks up the index under the lock
//! and reads committed values from a view of the last commit afterwards. Whatever applies,
//! commits, compactions and defragmentations happen in between, the answer is the store as
//! it was when the range began.

use std::path::Path;
use std::sync::{Arc, Mutex};

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
/// start, although the keys were overwritten, committed, compacted and the file replaced
/// by a defragment before it finished (the view holds the old file open until it ends).
#[test]
fn a_range_finishes_as_it_began() {
    let disk = SimDisk::new(1);
    let mut s = KvStore::open(&disk, Path::new("/db"), Config::default()).unwrap();
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
    s.backend().defragment(&disk).unwrap();
    put(&mut s, "k/d", "d1");
    s.commit().unwrap();
    let resp = begun.finish().unwrap();
    assert_eq!(values(&resp), expected);
    assert_eq!(resp.count, 2);
    assert_eq!(resp.header.unwrap().revision, r2);
    let now = values(&s.range(&prefix("k/")).unwrap());
    assert_eq!(now.len(), 4);
    assert_eq!(now[0].1, "a2");
}

/// A defragment does not wait for a range still finishing on another thread, nor break
/// it: the range's view reads the replaced file, which stays open until the view ends,
/// while the store goes on with the copy. (redb's in-place compaction could not run under
/// an open view, and a defragment once had to wait for every view to end.)
#[test]
fn defragment_runs_beside_open_views() {
    let disk = SimDisk::new(2);
    let store = Arc::new(Mutex::new(
        KvStore::open(&disk, Path::new("/db"), Config::default()).unwrap(),
    ));
    {
        let mut s = store.lock().unwrap();
        for i in 0..100 {
            put(&mut s, &format!("k/{i:03}"), "v");
        }
        s.commit().unwrap();
    }
    let begun = store.lock().unwrap().begin_range(&prefix("k/")).unwrap();
    let defrag = {
        let (store, disk) = (store.clone(), disk.clone());
        std::thread::spawn(move || {
            let mut s = store.lock().unwrap();
            s.backend().defragment(&disk).map_err(|e| e.to_string())?;
            put(&mut s, "k/100", "v");
            s.commit().map_err(|e| e.to_string())
        })
    };
    assert_eq!(defrag.join().unwrap(), Ok(()));
    let resp = begun.finish().unwrap();
    assert_eq!(resp.kvs.len(), 100, "the view reads the file it began on");
    assert_eq!(
        store
            .lock()
            .unwrap()
            .range(&prefix("k/"))
            .unwrap()
            .kvs
            .len(),
        101
    );
}
