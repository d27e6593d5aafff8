//! Generated histories: the generator simulates a linearizable store, so every history it
//! makes without an anomaly must check linearizable, and every injected anomaly must be found
//! (the generator only injects where real-time order makes it certain).

use detcd_check::gen::{generate, jepsen_log, Anomaly, GenConfig, Workload};
use detcd_check::history::{from_events, parse_str, History};
use detcd_check::{linearizable, Budget, Model, Options, Verdict};

fn verdict(cfg: &GenConfig, model: Model) -> Verdict {
    let h = from_events(&generate(cfg)).expect("generated histories are well formed");
    linearizable(&h, model, Options::default()).expect("generated operations fit the model")
}

fn workload(model: Model) -> Workload {
    if model == Model::Register {
        Workload::Register
    } else {
        Workload::Kv
    }
}

#[test]
fn correct_histories_are_linearizable_under_every_model() {
    for model in Model::ALL {
        for seed in 0..20 {
            let mut cfg = GenConfig::new(seed, 400, 4, workload(model));
            cfg.crash_per_mille = 20;
            assert_eq!(
                verdict(&cfg, model),
                Verdict::Linearizable,
                "seed {seed} model {model:?}"
            );
        }
    }
}

#[test]
fn every_injected_anomaly_is_found_under_every_model() {
    for model in Model::ALL {
        for anomaly in Anomaly::ALL {
            for seed in 0..10 {
                let mut cfg = GenConfig::new(seed, 400, 4, workload(model));
                cfg.anomaly = Some(anomaly);
                let v = verdict(&cfg, model);
                assert!(
                    matches!(v, Verdict::NotLinearizable(_)),
                    "seed {seed} {model:?} {anomaly:?}: {v:?}"
                );
            }
        }
    }
}

#[test]
fn jepsen_logs_of_generated_registers_get_the_right_verdict() {
    for anomaly in Anomaly::OR_NONE {
        let mut cfg = GenConfig::new(7, 300, 1, Workload::Register);
        cfg.anomaly = anomaly;
        let h = parse_str(&jepsen_log(&generate(&cfg))).expect("the log parses");
        let v = linearizable(&h, Model::Register, Options::default()).expect("register operations");
        assert_eq!(
            v == Verdict::Linearizable,
            anomaly.is_none(),
            "{anomaly:?}: {v:?}"
        );
    }
}

fn kv_with(h: &History, budget: Budget) -> Verdict {
    let options = Options {
        budget,
        ..Options::default()
    };
    linearizable(h, Model::Kv, options).expect("kv operations")
}

#[test]
fn a_spent_budget_gives_unknown_never_a_wrong_verdict() {
    let cfg = GenConfig::new(3, 2000, 2, Workload::Kv);
    let h = from_events(&generate(&cfg)).expect("well formed");
    for steps in [0, 1, 10, 100, 1000] {
        let v = kv_with(&h, Budget::Steps(steps));
        assert!(matches!(v, Verdict::Unknown { .. }), "{steps} steps: {v:?}");
    }
    let v = kv_with(&h, Budget::Deadline(Box::new(|| true)));
    assert!(
        matches!(v, Verdict::Unknown { .. }),
        "expired deadline: {v:?}"
    );
}

#[test]
fn any_budget_gives_the_right_verdict_or_unknown() {
    for anomaly in Anomaly::OR_NONE {
        let cfg = GenConfig {
            anomaly,
            crash_per_mille: 20,
            ..GenConfig::new(11, 600, 3, Workload::Kv)
        };
        let h = from_events(&generate(&cfg)).expect("well formed");
        for steps in (0..14).map(|e| 1u64 << e) {
            let v = kv_with(&h, Budget::Steps(steps));
            let right = match v {
                Verdict::Linearizable => anomaly.is_none(),
                Verdict::NotLinearizable(_) => anomaly.is_some(),
                Verdict::Unknown { .. } => true,
            };
            assert!(right, "{anomaly:?} with {steps} steps: {v:?}");
        }
    }
}
