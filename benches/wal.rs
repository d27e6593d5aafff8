//! WAL append + fsync throughput on the real disk, for 256-byte entries, one save (one
//! fsync) per batch of 1, 8, 64 and 512 entries. The baseline is the same bytes appended to
//! a plain file with one fdatasync per batch, measured in the same run, so the ratio shows
//! what the WAL's framing and bookkeeping cost.
//!
//! Run: `cargo bench --bench wal` (`DETCD_BENCH_SECONDS` sets the time per case, default 2).

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use detcd::proto::raftpb::{Entry, HardState};
use detcd::runtime::{Disk, RealDisk};
use detcd::wal::{Metadata, Wal, WalOptions};

const ENTRY_BYTES: usize = 256;
const BATCHES: &[usize] = &[1, 8, 64, 512];

struct Rate {
    records: u64,
    bytes: u64,
    elapsed: Duration,
}

impl Rate {
    fn per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / 1e6
    }
}

fn wal_case(batch: usize, budget: Duration) -> Rate {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let disk: Arc<dyn Disk> = Arc::new(RealDisk);
    let mut wal = Wal::create(
        disk,
        &dir.path().join("wal"),
        Metadata::default(),
        WalOptions::default(),
    )
    .unwrap();
    let mut index = 0;
    let mut entries: Vec<Entry> = Vec::with_capacity(batch);
    let start = Instant::now();
    while start.elapsed() < budget {
        entries.clear();
        for _ in 0..batch {
            index += 1;
            entries.push(Entry {
                index,
                term: 1,
                data: vec![(index % 251) as u8; ENTRY_BYTES],
                ..Default::default()
            });
        }
        let hs = HardState {
            term: 1,
            vote: 1,
            commit: index,
        };
        wal.save(Some(&hs), &entries).unwrap();
    }
    Rate {
        records: index,
        bytes: index * ENTRY_BYTES as u64,
        elapsed: start.elapsed(),
    }
}

fn baseline_case(batch: usize, budget: Duration) -> Rate {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("plain"))
        .unwrap();
    let chunk = vec![7u8; ENTRY_BYTES * batch];
    let mut records = 0;
    let start = Instant::now();
    while start.elapsed() < budget {
        file.write_all(&chunk).unwrap();
        file.sync_data().unwrap();
        records += batch as u64;
    }
    Rate {
        records,
        bytes: records * ENTRY_BYTES as u64,
        elapsed: start.elapsed(),
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this once, briefly.
    let seconds: f64 = std::env::var("DETCD_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if std::env::args().any(|a| a == "--bench") {
            2.0
        } else {
            0.05
        });
    let budget = Duration::from_secs_f64(seconds);
    println!("WAL append+fsync, {ENTRY_BYTES}-byte entries, {seconds}s per case");
    println!(
        "{:>6} {:>12} {:>8} {:>12} {:>8} {:>7}",
        "batch", "wal rec/s", "wal MB/s", "plain rec/s", "plain MB/s", "ratio"
    );
    for &batch in BATCHES {
        let wal = wal_case(batch, budget);
        let plain = baseline_case(batch, budget);
        println!(
            "{batch:>6} {:>12.0} {:>8.2} {:>12.0} {:>10.2} {:>7.2}",
            wal.per_sec(),
            wal.mb_per_sec(),
            plain.per_sec(),
            plain.mb_per_sec(),
            wal.per_sec() / plain.per_sec()
        );
    }
}
