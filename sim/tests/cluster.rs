//! Three real members under madsim: they elect a leader, replicate and apply proposals in
//! one order, converge after a partition and after a power cut, and a seed replays exactly.

#![cfg(madsim)]

use std::time::Duration;

use detcd_sim::cluster::SimCluster;
use madsim::runtime::Runtime;
use madsim::Config;

/// Proposes `count` payloads through members in turn; returns the acknowledged ones.
async fn propose_round(c: &SimCluster, tag: &str, count: usize) -> Vec<Vec<u8>> {
    let mut acked = Vec::new();
    for i in 0..count {
        let payload = format!("{tag}-{i}").into_bytes();
        let Some(m) = c.member(i % c.size()) else {
            continue;
        };
        match m.propose(payload.clone()).await {
            Ok(_) => acked.push(payload),
            Err(e) => eprintln!("{tag}-{i} via member {}: {e}", i % c.size() + 1),
        }
    }
    acked
}

/// Waits until every member has applied every payload in `acked`, in one order.
async fn converged(c: &SimCluster, acked: &[Vec<u8>], deadline: Duration) -> Result<(), String> {
    let start = tokio::time::Instant::now();
    loop {
        let logs: Vec<Vec<(u64, Vec<u8>)>> = (0..c.size()).map(|i| c.applied(i)).collect();
        let complete = logs
            .iter()
            .all(|log| acked.iter().all(|p| log.iter().any(|(_, q)| q == p)));
        if complete {
            let shortest = logs.iter().map(Vec::len).min().unwrap_or(0);
            for log in &logs[1..] {
                if log[..shortest] != logs[0][..shortest] {
                    return Err("members applied different entries at the same index".into());
                }
            }
            return Ok(());
        }
        if start.elapsed() > deadline {
            let lens: Vec<usize> = logs.iter().map(Vec::len).collect();
            return Err(format!(
                "not converged: applied counts {lens:?}, {} acked",
                acked.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What each member applied, and each member's disk trace.
type Observed = (Vec<Vec<(u64, Vec<u8>)>>, Vec<u64>);

async fn scenario(seed: u64) -> Observed {
    let c = SimCluster::start(3, seed);
    c.wait_leader(Duration::from_secs(10))
        .await
        .expect("a leader is elected");
    let mut acked = propose_round(&c, "a", 30).await;
    assert_eq!(
        acked.len(),
        30,
        "seed {seed}: proposals failed in a healthy cluster"
    );
    converged(&c, &acked, Duration::from_secs(10))
        .await
        .unwrap();

    c.isolate(2);
    acked.extend(propose_round(&c, "b", 30).await);
    c.heal(2);
    converged(&c, &acked, Duration::from_secs(20))
        .await
        .unwrap();

    c.power_cut(1);
    acked.extend(propose_round(&c, "c", 30).await);
    converged(&c, &acked, Duration::from_secs(30))
        .await
        .unwrap();
    ((0..3).map(|i| c.applied(i)).collect(), c.disk_trace())
}

fn run(seed: u64) -> Observed {
    Runtime::with_seed_and_config(seed, Config::default()).block_on(scenario(seed))
}

/// `DETCD_SIM_SEEDS=N` runs N seeds (default 20).
#[test]
fn members_agree_through_partition_and_power_cut() {
    let seeds: u64 = std::env::var("DETCD_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    for seed in 0..seeds {
        eprintln!("seed {seed}");
        run(seed);
    }
}

#[test]
fn a_seed_replays_exactly() {
    assert_eq!(run(11), run(11));
}
