//! The suite finds real bugs: with a bug planted (`DETCD_PLANT_BUG`, simulation build
//! only), some seed under 100 of the scenario that exercises it fails. The bugs run one
//! after the other in one test, since the environment variable is the process's.

#![cfg(madsim)]

use std::path::Path;

use detcd::runtime::{Bug, PLANT_BUG_ENV};
use detcd_sim::harness::{load, run_fresh};

/// The first seed below 100 on which `scenario` fails with `bug` planted, and why.
fn first_failure(bug: Bug, scenario: &str) -> Option<(u64, Vec<String>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../scenarios/{scenario}.toml"));
    let s = load(&path).unwrap();
    std::env::set_var(PLANT_BUG_ENV, bug.name());
    let found = (0..100).find_map(|seed| {
        let o = run_fresh(&s, seed);
        eprintln!("{}: {scenario}: {}", bug.name(), o.line());
        (!o.passed()).then_some((seed, o.failures))
    });
    std::env::remove_var(PLANT_BUG_ENV);
    found
}

#[test]
fn planted_bugs_are_caught_within_100_seeds() {
    for (bug, scenario, symptom) in [
        // Members answer reads from their own state while no side of a 2+2 split has a
        // quorum to confirm them.
        (Bug::StaleRead, "split-2-2", "during the split"),
        // Acknowledged entries vanish when every member loses power at once.
        (Bug::AckBeforeFsync, "power-loss-all", ""),
        // Two clients hold the lock at once: their fenced writes interleave (an older lock's
        // write after a newer one's) or both write the same counter value.
        (Bug::LockNoWait, "lock-safety", "lock: "),
        // A watch resumed on another member misses the first event of its catch-up.
        (Bug::WatchCatchUpSkip, "random-faults", "watch: "),
        // A candidate missing committed entries wins an election and overwrites them on
        // the others: members' logs and stores part ways.
        (Bug::VoteIgnoresLog, "random-faults", ""),
        // A key last written before an auto-compaction vanishes from the index while its
        // lease still holds it: the lessor's invariant trips when the lease is revoked.
        (
            Bug::CompactDropsLatest,
            "crash-points",
            "kept 1 keys after revoke",
        ),
    ] {
        let (seed, failures) = first_failure(bug, scenario)
            .unwrap_or_else(|| panic!("{} survived 100 seeds of {scenario}", bug.name()));
        eprintln!("{} caught at seed {seed}: {failures:?}", bug.name());
        assert!(
            failures.iter().any(|f| f.contains(symptom)),
            "{} caught for another reason: {failures:?}",
            bug.name()
        );
    }
}
