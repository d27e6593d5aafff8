//! Crash sweep: a WAL written, cut, snapshotted and released at random, with power cut at
//! a random disk operation, must reopen with exactly the acknowledged prefix: every entry
//! whose save returned is there, an unacknowledged batch is present only as a prefix, and
//! nothing else (no gap, no garbage) is ever returned.
//!
//! `DETCD_WAL_SEEDS=N` runs N seeds (default 1000, three crashes each);
//! `DETCD_WAL_SEED=S` replays one (add `DETCD_WAL_DEBUG=1` to print its operations).

use std::path::PathBuf;
use std::sync::Arc;

use detcd::proto::raftpb::{Entry, HardState};
use detcd::runtime::{seeded_rng, Disk, Fault, SimDisk};
use detcd::wal::{Metadata, SnapshotMark, Wal, WalOptions};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

const ROUNDS: usize = 3;
const OPS_PER_ROUND: usize = 40;

fn dir() -> PathBuf {
    PathBuf::from("/member/wal")
}

fn meta() -> Metadata {
    Metadata {
        member_id: 3,
        cluster_id: 9,
    }
}

/// What the WAL must hold: everything acknowledged.
struct Model {
    snapshot: SnapshotMark,
    /// Entries after `snapshot.index`, consecutive.
    entries: Vec<Entry>,
    hard_state: HardState,
    /// The highest index a snapshot was attempted at, acknowledged or not. Raft snapshots
    /// only committed entries, which are never overwritten, so neither are these.
    committed: u64,
}

impl Model {
    fn last(&self) -> u64 {
        self.snapshot.index + self.entries.len() as u64
    }

    fn term_at(&self, index: u64) -> u64 {
        if index == self.snapshot.index {
            self.snapshot.term
        } else {
            self.entries[(index - self.snapshot.index - 1) as usize].term
        }
    }

    fn apply(&mut self, entries: &[Entry], hard_state: Option<&HardState>) {
        if let Some(first) = entries.first() {
            self.entries
                .truncate((first.index - self.snapshot.index - 1) as usize);
            self.entries.extend_from_slice(entries);
        }
        if let Some(hs) = hard_state {
            self.hard_state = *hs;
        }
    }
}

/// A save that returned an error: it may have reached the disk in part.
struct InFlight {
    entries: Vec<Entry>,
    hard_state: Option<HardState>,
}

fn random_entries(rng: &mut ChaCha8Rng, model: &Model, term: u64) -> Vec<Entry> {
    let floor = model.snapshot.index.max(model.committed);
    let overwrite = model.last() > floor && rng.random_ratio(1, 6);
    let start = if overwrite {
        rng.random_range(floor + 1..=model.last())
    } else {
        model.last() + 1
    };
    let count = rng.random_range(1..=5u64);
    (start..start + count)
        .map(|index| {
            let size = rng.random_range(0..700);
            let data = if rng.random_ratio(1, 4) {
                vec![0; size]
            } else {
                (0..size).map(|_| rng.random()).collect()
            };
            Entry {
                index,
                term,
                data,
                ..Default::default()
            }
        })
        .collect()
}

fn ids(entries: &[Entry]) -> Vec<(u64, u64)> {
    entries.iter().map(|e| (e.index, e.term)).collect()
}

/// With `DETCD_WAL_DEBUG` set, prints each operation of a replayed seed.
fn debug(msg: impl FnOnce() -> String) {
    if std::env::var_os("DETCD_WAL_DEBUG").is_some() {
        eprintln!("{}", msg());
    }
}

fn check(
    model: &Model,
    inflight: Option<&InFlight>,
    got_entries: &[Entry],
    got_hs: &HardState,
) -> Result<(), String> {
    let mut allowed = vec![(model.entries.clone(), model.hard_state)];
    if let Some(f) = inflight {
        for j in 1..=f.entries.len() {
            let mut m = Model {
                snapshot: model.snapshot.clone(),
                entries: model.entries.clone(),
                hard_state: model.hard_state,
                committed: model.committed,
            };
            m.apply(&f.entries[..j], None);
            allowed.push((m.entries.clone(), model.hard_state));
            if j == f.entries.len() {
                if let Some(hs) = &f.hard_state {
                    allowed.push((m.entries, *hs));
                }
            }
        }
        if f.entries.is_empty() {
            if let Some(hs) = &f.hard_state {
                allowed.push((model.entries.clone(), *hs));
            }
        }
    }
    if allowed
        .iter()
        .any(|(e, hs)| e.as_slice() == got_entries && hs == got_hs)
    {
        return Ok(());
    }
    let idx = ids;
    Err(format!(
        "replay returned entries {:?} with {:?}; acknowledged {:?} with {:?}; in flight {:?}",
        idx(got_entries),
        got_hs,
        idx(&model.entries),
        model.hard_state,
        inflight.map(|f| (idx(&f.entries), f.hard_state)),
    ))
}

/// One seed: returns the number of crashes survived, or what went wrong.
fn run(seed: u64) -> Result<usize, String> {
    let mut rng = seeded_rng(seed);
    let sim = SimDisk::new(seed);
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    let options = WalOptions {
        segment_size: rng.random_range(1024..8192),
    };
    let mut wal = Wal::create(disk.clone(), &dir(), meta(), options.clone())
        .map_err(|e| format!("create: {e}"))?;
    let mut model = Model {
        snapshot: SnapshotMark::default(),
        entries: Vec::new(),
        hard_state: HardState::default(),
        committed: 0,
    };
    let mut term = 1;
    for round in 0..ROUNDS {
        sim.inject(Fault::DieAfter {
            ops: rng.random_range(0..80),
        });
        let mut inflight = None;
        for _ in 0..OPS_PER_ROUND {
            let roll = rng.random_range(0..20);
            if roll < 15 {
                if rng.random_ratio(1, 6) {
                    term += 1;
                }
                let entries = random_entries(&mut rng, &model, term);
                let hs = rng.random_ratio(1, 2).then(|| HardState {
                    term,
                    vote: 1,
                    commit: rng.random_range(0..=entries[0].index - 1),
                });
                debug(|| format!("save {:?} {hs:?}", ids(&entries)));
                match wal.save(hs.as_ref(), &entries) {
                    Ok(()) => model.apply(&entries, hs.as_ref()),
                    Err(_) => {
                        inflight = Some(InFlight {
                            entries,
                            hard_state: hs,
                        });
                        break;
                    }
                }
            } else if roll < 18 && model.last() > model.snapshot.index {
                let index = rng.random_range(model.snapshot.index + 1..=model.last());
                let mark = SnapshotMark {
                    index,
                    term: model.term_at(index),
                    conf_state: None,
                };
                debug(|| format!("snapshot {mark:?}"));
                model.committed = model.committed.max(index);
                if wal.save_snapshot(&mark).is_err() {
                    break;
                }
                model
                    .entries
                    .drain(..(index - model.snapshot.index) as usize);
                model.snapshot = mark;
                if wal.release_to(index).is_err() {
                    break;
                }
            } else if wal.cut().is_err() {
                break;
            }
        }
        drop(wal);
        let mode = sim.crash();
        let (reopened, replay) = Wal::open(disk.clone(), &dir(), &model.snapshot, options.clone())
            .map_err(|e| format!("round {round}: reopen after {mode:?} crash: {e}"))?;
        if replay.metadata != meta() {
            return Err(format!("round {round}: metadata {:?}", replay.metadata));
        }
        check(
            &model,
            inflight.as_ref(),
            &replay.entries,
            &replay.hard_state,
        )
        .map_err(|e| format!("round {round}, {mode:?} crash: {e}"))?;
        model.entries = replay.entries;
        model.hard_state = replay.hard_state;
        wal = reopened;
    }
    Ok(ROUNDS)
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
    })
}

/// Seeds that once failed, from `scenarios/wal_crash.toml`.
fn regression_seeds() -> Vec<u64> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/wal_crash.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let doc: toml::Table = text.parse().unwrap();
    let entries = doc["regression"]
        .as_array()
        .expect("[[regression]] entries");
    entries
        .iter()
        .map(|e| {
            assert!(
                e.get("found").is_some_and(|f| f.is_str()),
                "{e}: say what it found"
            );
            e["seed"].as_integer().expect("integer seed") as u64
        })
        .collect()
}

#[test]
fn wal_recovers_exactly_the_acknowledged_prefix() {
    let seeds: Vec<u64> = match env_u64("DETCD_WAL_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_u64("DETCD_WAL_SEEDS").unwrap_or(1000))
            .chain(regression_seeds())
            .collect(),
    };
    let mut crashes = 0;
    for &seed in &seeds {
        match run(seed) {
            Ok(n) => crashes += n,
            Err(e) => panic!(
                "seed {seed}: {e}\nreproduce: DETCD_WAL_SEED={seed} cargo test --test wal_crash"
            ),
        }
    }
    assert!(crashes >= seeds.len() * ROUNDS);
    println!("{} seeds, {crashes} crash points recovered", seeds.len());
}
