//! Throughput of the MVCC store alone on the real disk: puts of 256-byte values over 100k
//! keys (each put one applied entry, committed in the default batches of 10,000 entries),
//! updates of those keys, and single-key and 100-key ranges; then heap bytes per key, of
//! the in-memory index alone and of the whole store (index plus redb's page cache), from a
//! counting allocator.
//!
//! Run: `cargo bench --bench mvcc` (`DETCD_BENCH_KEYS` sets the key count, default 100000).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use detcd::mvcc::tree_index::TreeIndex;
use detcd::mvcc::{no_leases, Config, KvStore, Revision};
use detcd::proto::etcdserverpb::{PutRequest, RangeRequest};
use detcd::runtime::{seeded_rng, RealDisk};
use rand::Rng;

const VALUE_BYTES: usize = 256;

/// The system allocator, counting live heap bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn key(i: usize) -> Vec<u8> {
    format!("/registry/key-{i:08}").into_bytes()
}

/// Runs `n` operations and prints their rate.
fn measure(name: &str, n: usize, mut op: impl FnMut(usize)) {
    let start = Instant::now();
    for i in 0..n {
        op(i);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name:<40} {n:>8} ops {secs:>8.2} s {:>12.0} ops/s",
        n as f64 / secs
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this once, small.
    let default_keys = if std::env::args().any(|a| a == "--bench") {
        100_000
    } else {
        1_000
    };
    let keys: usize = std::env::var("DETCD_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_keys);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let heap_before = LIVE.load(Ordering::Relaxed);
    let mut store = KvStore::open(&RealDisk, &dir.path().join("db"), Config::default()).unwrap();
    let mut index = 0u64;
    let mut put = |store: &mut KvStore, k: Vec<u8>| {
        index += 1;
        store.begin_entry(index).unwrap();
        let req = PutRequest {
            key: k,
            value: vec![index as u8; VALUE_BYTES],
            ..Default::default()
        };
        store.put(&req, &no_leases).unwrap();
    };
    measure("put, new keys", keys, |i| put(&mut store, key(i)));
    store.commit().unwrap();
    let mut rng = seeded_rng(1);
    measure("put, random existing keys", keys, |_| {
        put(&mut store, key(rng.random_range(0..keys)))
    });
    store.commit().unwrap();
    measure("range, one random key", keys, |_| {
        let req = RangeRequest {
            key: key(rng.random_range(0..keys)),
            ..Default::default()
        };
        assert_eq!(store.range(&req).unwrap().kvs.len(), 1);
    });
    measure("range, 100 consecutive keys", keys / 10, |_| {
        let first = rng.random_range(0..keys - 100);
        let req = RangeRequest {
            key: key(first),
            range_end: key(first + 100),
            ..Default::default()
        };
        assert_eq!(store.range(&req).unwrap().kvs.len(), 100);
    });
    let store_heap = LIVE.load(Ordering::Relaxed) - heap_before;
    println!(
        "store heap per key (index + redb cache)  {:>8.0} bytes",
        store_heap as f64 / keys as f64
    );
    drop(store);

    let before = LIVE.load(Ordering::Relaxed);
    let mut tree = TreeIndex::default();
    for i in 0..keys {
        tree.put(&key(i), Revision::new(i as i64 + 2, 0));
    }
    let index_heap = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "index heap per key (one revision, {}-byte keys) {:>5.0} bytes",
        key(0).len(),
        index_heap as f64 / tree.len() as f64
    );
}
