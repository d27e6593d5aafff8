//! The fast checker (per-key partitions, WGL search with memoization) must agree with the
//! brute-force one (every order of the whole history) on small random histories: random
//! operations, random results, random outcomes (ok, fail, info, no completion), values from a
//! small pool so that the same value is often written twice. And on small histories of the
//! generator's store, whose revisions fit, with one reported field changed at random: the
//! histories on which the etcd model's search along revisions (`order.rs`) runs.

use detcd_check::brute;
use detcd_check::budget::DEFAULT_MEMORY_BYTES;
use detcd_check::gen::{generate, GenConfig, Workload};
use detcd_check::history::{from_events, Event};
use detcd_check::{linearizable, order, Budget, Meter, Model, Options, Verdict};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PROCESSES: u64 = 3;
const POOL: [&str; 3] = ["a", "b", "c"];
/// Completion types drawn from ("none": no completion); info-heavy histories exercise the
/// rules that narrow `info` operations.
const MOSTLY_OK: [&str; 7] = ["ok", "ok", "ok", "ok", "fail", "info", "none"];
const INFO_HEAVY: [&str; 7] = ["ok", "ok", "info", "info", "fail", "info", "none"];

fn maybe_value(rng: &mut ChaCha8Rng) -> Option<String> {
    let i = rng.random_range(0..=POOL.len());
    POOL.get(i).map(|v| v.to_string())
}

fn small_number(rng: &mut ChaCha8Rng) -> Option<u64> {
    rng.random_bool(0.5).then(|| rng.random_range(0..5))
}

/// A random history of at most `brute::MAX_BRUTE_OPS` operations.
fn random_history(seed: u64, model: Model, info_heavy: bool) -> Vec<Event> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut remaining = rng.random_range(1..=brute::MAX_BRUTE_OPS);
    let mut slots: Vec<(u64, Option<Event>)> = (0..PROCESSES).map(|p| (p, None)).collect();
    let mut events = Vec::new();
    while remaining > 0 || slots.iter().any(|s| s.1.is_some()) {
        let (process, slot) = &mut slots[rng.random_range(0..PROCESSES as usize)];
        let Some(call) = slot.take() else {
            if remaining > 0 {
                remaining -= 1;
                let fs: &[&str] = if model == Model::Register {
                    &["get", "put", "cas"]
                } else {
                    &["get", "put", "cas", "delete"]
                };
                let f = fs[rng.random_range(0..fs.len())];
                let mut e = Event {
                    process: *process,
                    kind: "invoke".into(),
                    f: f.into(),
                    key: Some(format!("k{}", rng.random_range(0..2))),
                    ..Event::default()
                };
                if f == "put" || f == "cas" {
                    e.value = Some(POOL[rng.random_range(0..POOL.len())].into());
                }
                if f == "cas" {
                    e.expect = Some(maybe_value(&mut rng));
                }
                events.push(e.clone());
                *slot = Some(e);
            }
            continue;
        };
        let kinds = if info_heavy { INFO_HEAVY } else { MOSTLY_OK };
        let kind = kinds[rng.random_range(0..kinds.len())];
        if kind == "none" || kind == "info" {
            *process += PROCESSES;
        }
        if kind == "none" {
            continue;
        }
        let mut e = Event {
            kind: kind.into(),
            revision: small_number(&mut rng),
            ..call
        };
        if e.f == "get" {
            e.value = maybe_value(&mut rng);
            (e.mod_revision, e.version) = (small_number(&mut rng), small_number(&mut rng));
        }
        events.push(e);
    }
    for (i, e) in events.iter_mut().enumerate() {
        (e.index, e.time) = (i as u64, i as u64);
    }
    events
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn fast_and_brute_force_checkers_agree(seed in any::<u64>(), m in 0..3usize, info_heavy in any::<bool>()) {
        let model = Model::ALL[m];
        let events = random_history(seed, model, info_heavy);
        let h = from_events(&events).expect("well formed");
        let fast = linearizable(&h, model, Options::default()).expect("supported operations");
        prop_assert_eq!(fast == Verdict::Linearizable, brute::linearizable(&h, model), "seed {} model {:?} info-heavy {}: {:?}", seed, model, info_heavy, fast);
    }
}

/// A generated history of at most `brute::MAX_BRUTE_OPS` operations that have not failed,
/// with at most one field of one completion changed: a revision, mod_revision,
/// create_revision or version moved by one, or a read value swapped for another.
fn revised_history(seed: u64) -> Vec<Event> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cfg = GenConfig::new(
        seed,
        brute::MAX_BRUTE_OPS,
        rng.random_range(1..=2),
        Workload::Kv,
    );
    cfg.processes = 3;
    cfg.crash_per_mille = rng.random_range(0..=400);
    let mut events = generate(&cfg);
    let done: Vec<usize> = (0..events.len())
        .filter(|&i| events[i].kind == "ok")
        .collect();
    if done.is_empty() || rng.random_bool(0.3) {
        return events;
    }
    let e = &mut events[done[rng.random_range(0..done.len())]];
    let nudge = |n: &mut Option<u64>, up: bool| {
        *n = n.map(|n| if up { n + 1 } else { n.saturating_sub(1) });
    };
    let up = rng.random_bool(0.5);
    match rng.random_range(0..5) {
        0 => nudge(&mut e.revision, up),
        1 => nudge(&mut e.mod_revision, up),
        2 => nudge(&mut e.create_revision, up),
        3 => nudge(&mut e.version, up),
        _ if e.f == "get" => e.value = maybe_value(&mut rng).map(|_| "1".into()),
        _ => {}
    }
    events
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn fast_and_brute_force_checkers_agree_on_revised_histories(seed in any::<u64>()) {
        let h = from_events(&revised_history(seed)).expect("well formed");
        for model in [Model::Kv, Model::Etcd] {
            let fast = linearizable(&h, model, Options::default()).expect("supported operations");
            prop_assert_eq!(fast == Verdict::Linearizable, brute::linearizable(&h, model), "seed {} model {:?}: {:?}", seed, model, fast);
        }
    }
}

/// The comparison above only means something if the random histories go both ways.
#[test]
fn random_histories_exercise_both_verdicts() {
    for (model, info_heavy) in Model::ALL.into_iter().flat_map(|m| [(m, false), (m, true)]) {
        let good = (0..400u64)
            .filter(|&s| {
                let h = from_events(&random_history(s, model, info_heavy)).expect("well formed");
                brute::linearizable(&h, model)
            })
            .count();
        assert!(
            (40..=360).contains(&good),
            "{model:?} info-heavy {info_heavy}: {good} of 400 linearizable"
        );
    }
}

/// And the revised histories go both ways, with most linearizable ones decided by the
/// search along revisions alone (under `kv`, for a history of one key; `kv` does not check
/// create revisions, which the search along revisions does, so a changed one is left to the
/// search over all orders).
#[test]
fn revised_histories_exercise_both_verdicts_and_the_search_along_revisions() {
    for model in [Model::Kv, Model::Etcd] {
        let (mut good, mut found) = (0, 0);
        for seed in 0..400u64 {
            let h = from_events(&revised_history(seed)).expect("well formed");
            if h.keys.len() > 1 && model == Model::Kv || !brute::linearizable(&h, model) {
                continue;
            }
            good += 1;
            let ops: Vec<usize> = (0..h.ops.len())
                .filter(|&i| detcd_check::wgl::relevant(&h, i))
                .collect();
            let placed = detcd_check::info::place_by_revision(&h);
            let h = placed.as_ref().unwrap_or(&h);
            let mut meter = Meter::new(Budget::Unlimited, DEFAULT_MEMORY_BYTES);
            let outcome = order::find(h, &ops, model, &mut meter);
            found += usize::from(matches!(outcome, order::Found::Order(_)));
        }
        println!("{model:?}: {good} linearizable, {found} found along revisions");
        assert!(good >= 100, "{model:?}: {good} of 400 linearizable");
        let share = if model == Model::Kv { 8 } else { 9 };
        assert!(
            found * 10 >= good * share,
            "{model:?}: {found} of {good} found along revisions"
        );
    }
}
