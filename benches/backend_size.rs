//! Where the database's bytes go while pods are loaded: puts of Kubernetes-shaped keys
//! (`/registry/pods/ns-<n % 100>/pod-<n>`, values of 1-4 KiB, as `ci/bench --scale` loads)
//! into the MVCC store alone on the real disk, one applied entry per put, committed every
//! `DETCD_BENCH_BATCH` entries (default 500: what the member's 100 ms batch interval
//! commits at about 5,000 puts/s). Prints the file's length, the blocks it occupies,
//! redb's page statistics and the bytes of keys and values put, after the load and after a
//! compaction at the last revision and a defragment (as `ci/bench --scale`), with their
//! times, and the size of a snapshot copy (what a follower is sent); then the time to open
//! the store again (which verifies the file and rebuilds the index) and that of the
//! integrity check alone.
//!
//! Run: `cargo bench --bench backend_size` (`DETCD_BENCH_KEYS` sets the pod count, default
//! 100000).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use detcd::mvcc::{no_leases, Config, KvStore};
use detcd::proto::etcdserverpb::{CompactionRequest, PutRequest};
use detcd::runtime::{seeded_rng, RealDisk};
use rand::Rng;

const MIB: f64 = (1 << 20) as f64;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One line of figures for the database at `path`.
fn report(when: &str, store: &mut KvStore, path: &Path, put_bytes: u64) {
    let meta = std::fs::metadata(path).unwrap();
    let stats = store.backend().tx().stats().unwrap();
    let page = stats.page_size() as f64;
    println!(
        "{when:<16} size {:>8.1} MiB  on disk {:>8.1} MiB  dbSize {:>8.1} MiB  allocated {:>8.1} MiB \
         (leaf {:>8.1}, branch {:>6.1})  stored {:>8.1} MiB  fragmented {:>8.1} MiB  put {:>8.1} MiB",
        meta.len() as f64 / MIB,
        (meta.blocks() * 512) as f64 / MIB,
        store.backend().size() as f64 / MIB,
        stats.allocated_pages() as f64 * page / MIB,
        stats.leaf_pages() as f64 * page / MIB,
        stats.branch_pages() as f64 * page / MIB,
        stats.stored_bytes() as f64 / MIB,
        stats.fragmented_bytes() as f64 / MIB,
        put_bytes as f64 / MIB,
    );
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this once, small.
    let default_keys = if std::env::args().any(|a| a == "--bench") {
        100_000
    } else {
        1_000
    };
    let keys = env_or("DETCD_BENCH_KEYS", default_keys);
    let batch = env_or("DETCD_BENCH_BATCH", 500);
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("db");
    let mut store = KvStore::open(&RealDisk, &path, Config::default()).unwrap();
    let mut rng = seeded_rng(1);
    let mut put_bytes = 0u64;
    let start = Instant::now();
    for n in 0..keys {
        let index = n as u64 + 1;
        store.begin_entry(index).unwrap();
        let req = PutRequest {
            key: format!("/registry/pods/ns-{}/pod-{n}", n % 100).into_bytes(),
            value: vec![b'x'; rng.random_range(1024..=4096)],
            ..Default::default()
        };
        put_bytes += (req.key.len() + req.value.len()) as u64;
        store.put(&req, &no_leases).unwrap();
        if index.is_multiple_of(batch as u64) {
            store.commit().unwrap();
        }
    }
    store.commit().unwrap();
    println!(
        "{keys} pods in batches of {batch}: {:.1} s",
        start.elapsed().as_secs_f64()
    );
    report("loaded", &mut store, &path, put_bytes);
    let start = Instant::now();
    let req = CompactionRequest {
        revision: store.rev(),
        physical: true,
    };
    store.compact(&req).unwrap();
    println!(
        "compaction at the last revision: {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    store.backend().defragment(&RealDisk).unwrap();
    let secs = start.elapsed().as_secs_f64();
    report("defragmented", &mut store, &path, put_bytes);
    println!("defragment: {secs:.2} s");
    let copy = dir.path().join("copy");
    let start = Instant::now();
    let source = store.backend().snapshot_source().unwrap();
    source.write_to(&RealDisk, &copy).unwrap();
    println!(
        "snapshot copy: {:.2} s, on disk {:.1} MiB",
        start.elapsed().as_secs_f64(),
        (std::fs::metadata(&copy).unwrap().blocks() * 512) as f64 / MIB
    );
    drop(source);
    drop(store);
    let start = Instant::now();
    let mut store = KvStore::open(&RealDisk, &path, Config::default()).unwrap();
    let open = start.elapsed().as_secs_f64();
    let start = Instant::now();
    assert!(store.backend().check_integrity().unwrap());
    println!(
        "open (verify, rebuild the index): {open:.2} s, of which the integrity check about {:.2} s",
        start.elapsed().as_secs_f64()
    );
}
