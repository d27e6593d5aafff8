//! Checker time and peak memory on generated histories, one line per class: the shapes of
//! issue 14's table (one key or many, 5 or 20 processes, a share of `info` operations) each
//! correct and with every injected anomaly (stale read, lost write, duplicated write, cas on
//! the wrong value, phantom read), then the register and etcd models on many keys. Seed 1
//! throughout. Panics on a wrong verdict; exits 1 if any check answered "unknown".
//!
//! Run with `cargo bench -p detcd-check --bench check [-- FILTER]` (e.g. `-- "1 key"`);
//! `DETCD_CHECK_TIME_LIMIT` (seconds, default 60) and `DETCD_CHECK_MEMORY_LIMIT` (MB, default
//! 1024) bound each check. Columns: wall and CPU time of the check; peak memory, the most
//! heap the process held during parse and check (counted by the allocator below).
//! `DETCD_CHECK_WRITE_DIR=DIR` also writes each history to `DIR/<line>.jsonl` (e.g.
//! `kv-1-key-20-p-10000-StaleRead.jsonl`), for other checkers (`sim/check/porcupine`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use detcd_check::gen::{try_generate, Anomaly, GenConfig, Workload};
use detcd_check::history::{parse_str, Status};
use detcd_check::{linearizable, Budget, Model, Options, Verdict};

const SEED: u64 = 1;

/// Heap bytes held now and at most since the last [`reset_peak`].
static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting.
struct Counting;

// SAFETY: every call is passed to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            HELD.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

fn grew(bytes: usize) {
    let now = HELD.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn reset_peak() {
    PEAK.store(HELD.load(Ordering::Relaxed), Ordering::Relaxed);
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// CPU time this thread has run, from Linux's schedstat (zero where there is none): the
/// machines that run this are shared, and wall time alone says little on a loaded one.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = stat.split_whitespace().next().and_then(|n| n.parse().ok());
    Duration::from_nanos(ns.unwrap_or(0))
}

/// Reads a limit from the environment, or the default.
fn limit(var: &str, default: u64) -> u64 {
    std::env::var(var).map_or(default, |v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{var}={v} is not a number"))
    })
}

/// Generates, parses and checks one history per anomaly class (and one without), printing
/// a line each; skipped unless the label contains the first command-line argument. Returns
/// how many checks answered "unknown".
fn run(label: &str, model: Model, base: GenConfig, anomalies: &[Option<Anomaly>]) -> usize {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let label = format!("{} {label}", model.name());
    if !filter.is_none_or(|f| label.contains(&f)) {
        return 0;
    }
    let time_limit = Duration::from_secs(limit("DETCD_CHECK_TIME_LIMIT", 60));
    let mut unknown = 0;
    for &anomaly in anomalies {
        let cfg = GenConfig { anomaly, ..base };
        let name = anomaly.map_or("correct".to_string(), |a| format!("{a:?}"));
        let Some(events) = try_generate(&cfg) else {
            println!(
                "{label:<30} {:>7} {:>5} {name:<16} no place to inject",
                cfg.ops, ""
            );
            continue;
        };
        let text: String = events
            .iter()
            .map(|e| serde_json::to_string(e).expect("events serialize") + "\n")
            .collect();
        if let Ok(dir) = std::env::var("DETCD_CHECK_WRITE_DIR") {
            let name = format!("{label} {} {name}", cfg.ops).replace([' ', ','], "-");
            let path = std::path::Path::new(&dir).join(name.replace("--", "-") + ".jsonl");
            std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        reset_peak();
        let started = Instant::now();
        let h = parse_str(&text).expect("generated histories parse");
        drop(text);
        let parsed = started.elapsed();
        let info = h.ops.iter().filter(|op| op.status == Status::Info).count();
        let (started, cpu) = (Instant::now(), cpu_time());
        let budget = Budget::Deadline(Box::new(move || started.elapsed() >= time_limit));
        let memory = limit("DETCD_CHECK_MEMORY_LIMIT", 1024) as usize * (1 << 20);
        let v =
            linearizable(&h, model, Options { budget, memory }).expect("generated operations fit");
        let (checked, cpu) = (started.elapsed(), cpu_time() - cpu);
        println!(
            "{label:<30} {:>7} {:>5.1} {name:<16} {:>8.0} {:>9.0} {:>9.0} {:>8.1}  {}",
            cfg.ops,
            100.0 * info as f64 / h.ops.len() as f64,
            parsed.as_secs_f64() * 1e3,
            checked.as_secs_f64() * 1e3,
            cpu.as_secs_f64() * 1e3,
            PEAK.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
            v.word()
        );
        if let Some(why) = v.why_unknown(&h) {
            println!("  {why}");
        }
        match v {
            Verdict::Unknown { .. } => unknown += 1,
            v => assert_eq!(v == Verdict::Linearizable, anomaly.is_none(), "{cfg:?}"),
        }
    }
    unknown
}

/// A history shape: `ops` operations on `keys` keys by `processes` processes, with crashes
/// (and so `info` operations) at `crash_per_mille` per step.
fn shape(ops: usize, keys: usize, processes: usize, crash_per_mille: u32) -> GenConfig {
    GenConfig {
        processes,
        crash_per_mille,
        ..GenConfig::new(SEED, ops, keys, Workload::Kv)
    }
}

fn main() -> ExitCode {
    println!(
        "{:<30} {:>7} {:>5} {:<16} {:>8} {:>9} {:>9} {:>8}  verdict",
        "model shape", "ops", "info%", "history", "parse ms", "check ms", "cpu ms", "peak MB"
    );
    // `cargo test` runs benchmarks without `--bench`: a smoke run of the small classes.
    let full = std::env::args().any(|a| a == "--bench");
    let all = &Anomaly::OR_NONE[..];
    let mut unknown = 0;
    let mut classes = vec![
        ("1 key, 20 p", shape(1_000, 1, 20, 10)),
        ("100 keys, 20 p", shape(1_000, 100, 20, 10)),
    ];
    if full {
        classes.extend([
            ("1 key, 20 p", shape(10_000, 1, 20, 10)),
            ("1 key, 5 p", shape(100_000, 1, 5, 10)),
            ("1 key, 20 p, 5% crashes", shape(1_000, 1, 20, 50)),
            ("100 keys, 20 p", shape(100_000, 100, 20, 10)),
            ("100 keys, 5 p", shape(1_000_000, 100, 5, 10)),
        ]);
    }
    for (label, cfg) in classes {
        unknown += run(label, Model::Kv, cfg, all);
    }
    if full {
        let register = GenConfig {
            workload: Workload::Register,
            ..shape(100_000, 100, 20, 10)
        };
        unknown += run("100 keys, 20 p", Model::Register, register, all);
        unknown += run(
            "1 key, 20 p",
            Model::Register,
            GenConfig {
                ops: 1_000,
                keys: 1,
                ..register
            },
            all,
        );
        for (label, cfg) in [
            ("100 keys, 20 p", shape(10_000, 100, 20, 10)),
            ("1 key, 20 p", shape(10_000, 1, 20, 10)),
            ("1 key, 20 p, 5% crashes", shape(1_000, 1, 20, 50)),
            ("100 keys, 5 p", shape(100_000, 100, 5, 10)),
        ] {
            unknown += run(label, Model::Etcd, cfg, all);
        }
    }
    if unknown > 0 {
        println!("{unknown} checks answered \"unknown\"");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
