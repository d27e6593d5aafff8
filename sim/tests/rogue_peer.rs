//! A rogue that knows the cluster ID and the members' IDs lies to a three-member cluster
//! through the real peer transport for the whole run while clients work on it
//! ([`detcd_sim::rogue`] lists the lies): no member panics or stops, every bad snapshot is
//! refused, and the history checks linearizable and the members converge.

#![cfg(madsim)]

use detcd_sim::rogue::rogue;
use detcd_sim::run::run_with;
use detcd_sim::scenario::Scenario;

const SCENARIO: &str = r#"
members = 3
duration_s = 20

[workload]
clients = 3
keys = 3
get = 3
put = 3
delete = 1
cas = 2
txn = 1

[expect]
min_ok = 100
"#;

#[test]
fn lies_on_the_peer_port_change_nothing() {
    let scenario = Scenario::parse("rogue-peer", SCENARIO).expect("the scenario parses");
    for seed in [1, 2] {
        let members = scenario.members;
        let outcome = run_with(
            &scenario,
            seed,
            Some(Box::new(move |until| Box::pin(rogue(seed, members, until)))),
        );
        assert!(
            outcome.passed(),
            "seed {seed}: {:?}\n{}",
            outcome.failures,
            outcome.log.join("\n")
        );
    }
}
