//! Checker times on generated histories, correct and with each injected anomaly: register
//! and kv models at 1k / 10k / 100k operations over 100 keys (8 processes, rare crashes),
//! then harder shapes: many processes with frequent crashes, and everything on one key.
//! Prints one line per history; panics on a wrong verdict. Run with
//! `cargo bench --bench check [-- FILTER]` (e.g. `-- "kv 100 keys"`).

use std::time::{Duration, Instant};

use detcd_check::gen::{generate, Anomaly, GenConfig, Workload};
use detcd_check::history::parse_str;
use detcd_check::{linearizable, Budget, Model, Options, Verdict};

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
const KEYS: usize = 100;
const SEED: u64 = 1;
/// Longest a check may take before it answers "unknown" (which fails the benchmark).
const TIME_LIMIT: Duration = Duration::from_secs(60);

/// Generates, parses and checks one history per anomaly class (and one without), printing
/// a line each; skipped unless "model shape" contains the first command-line argument.
fn run(label: &str, model: Model, base: GenConfig) {
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    if !filter.is_none_or(|f| format!("{} {label}", model.name()).contains(&f)) {
        return;
    }
    for anomaly in Anomaly::OR_NONE {
        let cfg = GenConfig { anomaly, ..base };
        let text: String = generate(&cfg)
            .iter()
            .map(|e| serde_json::to_string(e).expect("events serialize") + "\n")
            .collect();
        let started = Instant::now();
        let h = parse_str(&text).expect("generated histories parse");
        let parsed = started.elapsed();
        let started = Instant::now();
        let budget = Budget::Deadline(Box::new(move || started.elapsed() > TIME_LIMIT));
        let v = linearizable(&h, model, Options { budget }).expect("generated operations fit");
        let checked = started.elapsed();
        let name = anomaly.map_or("correct".to_string(), |a| format!("{a:?}"));
        println!(
            "{:<9} {label:<22} {:>7} {name:<16} {:>9.1} {:>9.1}  {}",
            model.name(),
            cfg.ops,
            parsed.as_secs_f64() * 1e3,
            checked.as_secs_f64() * 1e3,
            v.word()
        );
        assert_eq!(v == Verdict::Linearizable, anomaly.is_none(), "{cfg:?}");
    }
}

fn main() {
    println!(
        "{:<9} {:<22} {:>7} {:<16} {:>9} {:>9}  verdict",
        "model", "shape", "ops", "history", "parse ms", "check ms"
    );
    let models = [
        (Model::Register, Workload::Register),
        (Model::Kv, Workload::Kv),
    ];
    // `cargo test` runs benchmarks without `--bench`: a smoke run of the smallest size.
    let full = std::env::args().any(|a| a == "--bench");
    let sizes = if full { &SIZES[..] } else { &SIZES[..1] };
    for (model, workload) in models {
        for &ops in sizes {
            run("100 keys", model, GenConfig::new(SEED, ops, KEYS, workload));
        }
    }
    if !full {
        return;
    }
    for (model, workload) in models {
        let stress = GenConfig {
            processes: 32,
            crash_per_mille: 20,
            ..GenConfig::new(SEED, 100_000, KEYS, workload)
        };
        run("100 keys, 32 p, crashy", model, stress);
        // One key: every info operation stays pending over the whole history, and a stale
        // read at its end makes the search exhaust every configuration before it.
        run("1 key", model, GenConfig::new(SEED, 5_000, 1, workload));
    }
    run(
        "100 keys",
        Model::Etcd,
        GenConfig::new(SEED, 10_000, KEYS, Workload::Kv),
    );
}
