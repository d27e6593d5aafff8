//! The regression suite: every scenario under `scenarios/` that is not pending, over its
//! pinned seeds (one test per scenario, so the harness runs them in parallel), and the
//! determinism of a run: the same seed gives the same trace, another seed another.

#![cfg(madsim)]

use std::path::{Path, PathBuf};

use detcd_sim::harness::{load, load_dir, run_fresh};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

/// Runs scenario `name` over its pinned seeds; fails with every failing seed's report.
fn pinned(name: &str) {
    let s = load(&dir().join(format!("{name}.toml"))).unwrap();
    assert!(
        !s.pending,
        "{name} is pending: remove its test or its pending flag"
    );
    let seeds = s.pinned_seeds();
    assert!(!seeds.is_empty(), "{name} pins no seeds");
    let mut failed = Vec::new();
    for seed in seeds {
        let o = run_fresh(&s, seed);
        eprintln!(
            "{name}: {} ({} ok, {:?} simulated)",
            o.line(),
            o.ok_ops,
            o.simulated
        );
        if !o.passed() {
            failed.push(format!(
                "{}\n  {}\n  nemesis:\n    {}",
                o.line(),
                o.failures.join("\n  "),
                o.log.join("\n    ")
            ));
        }
    }
    assert!(failed.is_empty(), "{name}:\n{}", failed.join("\n"));
}

macro_rules! scenarios {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $test() {
                pinned($name);
            }
        )*

        /// A scenario file without a test here would never run in the suite.
        #[test]
        fn every_scenario_has_a_test_or_is_pending() {
            let tested = [$($name),*];
            for s in load_dir(&dir()).unwrap() {
                assert!(
                    s.pending || tested.contains(&s.name.as_str()),
                    "scenario {} is neither pending nor tested",
                    s.name
                );
            }
        }
    };
}

scenarios! {
    partition_minority => "partition-minority",
    partition_majority => "partition-majority",
    isolate_leader => "isolate-leader",
    follower_rejoin => "follower-rejoin",
    split_2_2 => "split-2-2",
    split_2_2_1 => "split-2-2-1",
    rolling_restart => "rolling-restart",
    power_loss_all => "power-loss-all",
    disk_faults => "disk-faults",
    pause_leader => "pause-leader",
    pause_leases => "pause-leases",
    slow_fsync => "slow-fsync",
    random_faults => "random-faults",
}

#[test]
fn same_seed_same_trace_other_seed_other_trace() {
    let s = load(&dir().join("partition-minority.toml")).unwrap();
    let (a, b, c) = (run_fresh(&s, 7), run_fresh(&s, 7), run_fresh(&s, 8));
    assert!(
        a.passed() && c.passed(),
        "{:?}\n{:?}",
        a.failures,
        c.failures
    );
    assert_eq!(a.line(), b.line(), "one seed, two traces");
    assert_eq!(a.history, b.history, "one seed, two histories");
    assert_ne!(a.trace, c.trace, "two seeds, one trace");
}
