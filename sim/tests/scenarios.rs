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
    backend_disk_faults => "backend-disk-faults",
    pause_leader => "pause-leader",
    pause_leases => "pause-leases",
    slow_fsync => "slow-fsync",
    random_faults => "random-faults",
    leader_transfer => "leader-transfer",
    learner_add => "learner-add",
    member_misconfigured => "member-misconfigured",
    member_misconfigured_voter => "member-misconfigured-voter",
    lock_safety => "lock-safety",
    split_2_1_while_adding => "split-2-1-while-adding",
    crash_points => "crash-points",
    crash_points_snapshot => "crash-points-snapshot",
    random_failpoints => "random-failpoints",
}

/// Runs `detcd-sim --scenario scenarios/rolling-restart.toml --seed N` and returns its one line. A
/// process per run: simulations running beside each other in one process (as the tests
/// above do) disturb each other's traces through process-wide state such as madsim's
/// task-ID counter, though not their verdicts.
fn replay(seed: u64) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_detcd-sim"))
        .arg("--scenario")
        .arg(dir().join("rolling-restart.toml"))
        .arg("--seed")
        .arg(seed.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "seed {seed} failed:\n{stdout}");
    stdout.lines().next().unwrap_or_default().to_string()
}

#[test]
fn same_seed_same_trace_other_seed_other_trace() {
    let (a, b, c) = (replay(7), replay(7), replay(8));
    assert!(
        a.starts_with("seed=7 trace=") && a.ends_with(" verdict=PASS"),
        "{a}"
    );
    assert_eq!(a, b, "one seed, two traces");
    assert_ne!(
        a.replace("seed=7", ""),
        c.replace("seed=8", ""),
        "two seeds, one trace"
    );
}
