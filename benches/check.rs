//! Checker times on generated histories: register and kv models, 1k / 10k / 100k
//! operations over 100 keys, correct and with each injected anomaly. Prints one line per
//! history; panics on a wrong verdict. Run with `cargo bench --bench check`.

use std::time::Instant;

use detcd::check::gen::{generate, Anomaly, GenConfig, Workload};
use detcd::check::history::parse_str;
use detcd::check::{linearizable, Model, Options, Verdict};

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
const KEYS: usize = 100;
const SEED: u64 = 1;

fn main() {
    println!(
        "{:<9} {:>7} {:<17} {:>10} {:>10}  verdict",
        "model", "ops", "history", "parse ms", "check ms"
    );
    for (model, workload) in [
        (Model::Register, Workload::Register),
        (Model::Kv, Workload::Kv),
    ] {
        for ops in SIZES {
            let anomalies = std::iter::once(None).chain(Anomaly::ALL.map(Some));
            for anomaly in anomalies {
                let cfg = GenConfig {
                    anomaly,
                    ..GenConfig::new(SEED, ops, KEYS, workload)
                };
                let text: String = generate(&cfg)
                    .iter()
                    .map(|e| serde_json::to_string(e).expect("events serialize") + "\n")
                    .collect();
                let started = Instant::now();
                let h = parse_str(&text).expect("generated histories parse");
                let parsed = started.elapsed();
                let started = Instant::now();
                let v =
                    linearizable(&h, model, Options::default()).expect("generated operations fit");
                let checked = started.elapsed();
                let name = anomaly.map_or("correct".to_string(), |a| format!("{a:?}"));
                println!(
                    "{:<9} {ops:>7} {name:<17} {:>10.1} {:>10.1}  {}",
                    model.name(),
                    parsed.as_secs_f64() * 1e3,
                    checked.as_secs_f64() * 1e3,
                    v.word()
                );
                assert_eq!(v == Verdict::Linearizable, anomaly.is_none(), "{cfg:?}");
            }
        }
    }
}
