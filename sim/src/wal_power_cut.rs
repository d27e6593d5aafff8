//! A WAL writer task saving batches every few simulated milliseconds, and a power cut at a
//! seeded moment while it runs. Afterwards every acknowledged entry must be recovered.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use detcd::proto::raftpb::Entry;
use detcd::runtime::{seeded_rng, Clock, Disk, SimDisk};
use detcd::wal::{Metadata, SnapshotMark, Wal, WalOptions};
use rand::Rng;

/// What one run observed; equal seeds must give equal outcomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Entries whose save returned before the power cut.
    pub acknowledged: u64,
    /// Entries the WAL replayed after it.
    pub recovered: u64,
    /// Simulated milliseconds from start to the power cut.
    pub cut_at_ms: u64,
    /// Hash of every disk operation, the crash included.
    pub disk_trace: u64,
}

/// Runs the scenario for `seed` inside the current madsim runtime.
pub async fn run(seed: u64) -> Outcome {
    let mut rng = seeded_rng(seed);
    let sim = SimDisk::new(seed);
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    let dir = Path::new("/member/wal");
    let options = WalOptions { segment_size: 8192 };
    let mut wal =
        Wal::create(disk.clone(), dir, Metadata::default(), options.clone()).expect("create WAL");
    let acknowledged = Arc::new(AtomicU64::new(0));
    let clock = Clock;
    let start = clock.now();

    let acked = acknowledged.clone();
    let writer_seed = rng.random();
    let writer = tokio::spawn(async move {
        let mut rng = seeded_rng(writer_seed);
        let mut index = 0;
        loop {
            let batch: Vec<Entry> = (0..rng.random_range(1..8))
                .map(|_| {
                    index += 1;
                    Entry {
                        index,
                        term: 1,
                        data: vec![(index % 256) as u8; rng.random_range(0..400)],
                        ..Default::default()
                    }
                })
                .collect();
            wal.save(None, &batch).expect("save before the power cut");
            acked.store(index, Ordering::SeqCst);
            Clock
                .sleep(Duration::from_millis(rng.random_range(1..5)))
                .await;
        }
    });

    clock
        .sleep(Duration::from_millis(rng.random_range(5..200)))
        .await;
    writer.abort();
    let acknowledged = acknowledged.load(Ordering::SeqCst);
    let cut_at_ms = (clock.now() - start).as_millis() as u64;
    sim.crash();

    let (_, replay) =
        Wal::open(disk, dir, &SnapshotMark::default(), options).expect("reopen after power cut");
    let recovered = replay.entries.len() as u64;
    for (i, e) in replay.entries.iter().enumerate() {
        assert_eq!(e.index, i as u64 + 1, "seed {seed}: replay has a gap");
    }
    Outcome {
        acknowledged,
        recovered,
        cut_at_ms,
        disk_trace: sim.trace_hash(),
    }
}
