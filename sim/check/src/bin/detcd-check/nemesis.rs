//! The nemesis: faults on a schedule drawn from the run's seed. It alternates a quiet
//! interval with a fault held for one interval and then undone; each round of faults uses
//! every enabled kind once, in a shuffled order, so short runs see each kind. The faults
//! are named as the simulator names them ([`Fault`]); this runner injects four of them:
//!
//! - kill: kill -9 one member, the leader, a minority, a majority or all; restarted from
//!   their data directories when the fault ends.
//! - pause: SIGSTOP the same kinds of targets; SIGCONT when it ends.
//! - partition: random halves, or (five members or more) a ring in which each member sees
//!   a majority but no two the same one.
//! - isolate: one random member, or the leader, cut off from all others.
//!
//! With `--membership`, the membership nemesis also takes a step before each fault and
//! another while it is in force: remove a random running member (its data wiped),
//! add it back as a learner under a new ID and start it empty, promote it once it has
//! caught up, then the next member. A refused step (no leader, no quorum, a learner not
//! yet in sync) is retried the next interval; the run ends with every member a voter.

use std::time::Duration;

use detcd_check::fault::Fault;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio::time::Instant;

use crate::cluster::Cluster;

/// What this runner can inject.
pub const FAULTS: [Fault; 4] = [Fault::Kill, Fault::Pause, Fault::Partition, Fault::Isolate];

/// `--nemesis` values: a fault's name, if this runner injects it.
pub fn parse_fault(s: &str) -> Result<Fault, String> {
    let fault: Fault = s.parse()?;
    if FAULTS.contains(&fault) {
        return Ok(fault);
    }
    let names: Vec<&str> = FAULTS.iter().map(|f| f.name()).collect();
    Err(format!(
        "{fault} is injected by the simulator only (detcd-sim); this runner injects {}",
        names.join(", ")
    ))
}

/// One line of `nemesis.jsonl`: a fault starting or ending, timed as the history is.
#[derive(Clone, Debug, Serialize)]
pub struct Injection {
    pub time: u64,
    pub fault: &'static str,
    /// `start` or `stop`.
    pub action: &'static str,
    pub what: String,
}

/// Where the membership nemesis is in its cycle.
#[derive(Clone, Copy)]
enum Membership {
    /// Every member a voter: next, remove one.
    Voters,
    /// Member `i` was removed: next, add it back as a learner.
    Removed(usize),
    /// Member `i` is a learner: next, promote it.
    Learner(usize),
}

/// How long the run's end waits for the membership cycle to leave every member a voter.
const MEMBERSHIP_DEADLINE: Duration = Duration::from_secs(60);

pub struct Nemesis {
    faults: Vec<Fault>,
    /// None without `--membership`.
    membership: Option<Membership>,
    interval: Duration,
    rng: ChaCha8Rng,
    start: Instant,
    pub log: Vec<Injection>,
}

/// What is in force, to be undone.
enum Active {
    Killed(Vec<usize>),
    Paused(Vec<usize>),
    Partitioned,
}

fn names(members: &[usize]) -> String {
    let names: Vec<String> = members.iter().map(|i| format!("m{i}")).collect();
    names.join(",")
}

impl Nemesis {
    pub fn new(
        faults: Vec<Fault>,
        membership: bool,
        interval: Duration,
        rng: ChaCha8Rng,
        start: Instant,
    ) -> Self {
        Nemesis {
            faults,
            membership: membership.then_some(Membership::Voters),
            interval,
            rng,
            start,
            log: Vec::new(),
        }
    }

    fn record(&mut self, fault: Fault, action: &'static str, what: String) {
        self.record_named(fault.name(), action, what);
    }

    fn record_named(&mut self, fault: &'static str, action: &'static str, what: String) {
        println!("nemesis: {action} {fault} {what}");
        self.log.push(Injection {
            time: self.start.elapsed().as_nanos() as u64,
            fault,
            action,
            what,
        });
    }

    /// Injects faults until `until`, leaving none in force.
    pub async fn run(&mut self, cluster: &mut Cluster, until: Instant) -> Result<(), String> {
        let mut round: Vec<Fault> = Vec::new();
        while pause_until(self.interval, until).await {
            if round.is_empty() {
                round = self.faults.clone();
                round.shuffle(&mut self.rng);
            }
            let Some(fault) = round.pop() else {
                return self.finish_membership(cluster).await;
            };
            self.membership_step(cluster).await?;
            let active = self.inject(fault, cluster).await;
            self.membership_step(cluster).await?;
            pause_until(self.interval, until).await;
            let what = match active {
                Active::Killed(members) => {
                    for &i in &members {
                        cluster.restart(i)?;
                    }
                    names(&members)
                }
                Active::Paused(members) => {
                    for &i in &members {
                        cluster.pause(i, false);
                    }
                    names(&members)
                }
                Active::Partitioned => {
                    cluster.heal_links();
                    "all links".into()
                }
            };
            self.record(fault, "stop", what);
        }
        self.finish_membership(cluster).await
    }

    /// One step of the membership cycle; a step the cluster refuses stays to be retried.
    /// Each step done is logged as the start of `member-remove`, `member-add-learner` or
    /// `member-promote` (they have no end).
    async fn membership_step(&mut self, cluster: &mut Cluster) -> Result<(), String> {
        let Some(state) = self.membership else {
            return Ok(());
        };
        let (next, fault, what) = match state {
            Membership::Voters => {
                let candidates: Vec<usize> = (0..cluster.size())
                    .filter(|&i| cluster.running(i))
                    .collect();
                let Some(&i) = candidates.choose(&mut self.rng) else {
                    return Ok(());
                };
                if let Err(e) = cluster.remove(i).await {
                    println!("nemesis: membership: removing m{i} refused: {e}");
                    return Ok(());
                }
                (Membership::Removed(i), "member-remove", format!("m{i}"))
            }
            Membership::Removed(i) => {
                if let Err(e) = cluster.add_learner(i).await {
                    println!("nemesis: membership: adding m{i} back refused: {e}");
                    return Ok(());
                }
                (
                    Membership::Learner(i),
                    "member-add-learner",
                    format!("m{i}"),
                )
            }
            Membership::Learner(i) => {
                let listed = cluster.listed(i).await;
                let step = match listed {
                    Ok(Some(l)) if !l.is_learner => Ok(()),
                    Ok(Some(l)) => cluster.promote(l.id).await,
                    Ok(None) => Err(format!("m{i} is not listed")),
                    Err(e) => Err(e),
                };
                if let Err(e) = step {
                    println!("nemesis: membership: promoting m{i} refused: {e}");
                    return Ok(());
                }
                (Membership::Voters, "member-promote", format!("m{i}"))
            }
        };
        self.membership = Some(next);
        self.record_named(fault, "start", what);
        Ok(())
    }

    /// Takes membership steps, the other faults undone, until every member is a voter.
    async fn finish_membership(&mut self, cluster: &mut Cluster) -> Result<(), String> {
        let deadline = Instant::now() + MEMBERSHIP_DEADLINE;
        loop {
            match self.membership {
                None | Some(Membership::Voters) => return Ok(()),
                Some(_) if Instant::now() > deadline => {
                    return Err(format!(
                        "the membership nemesis did not leave every member a voter within {}s",
                        MEMBERSHIP_DEADLINE.as_secs()
                    ))
                }
                Some(_) => {
                    self.membership_step(cluster).await?;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    async fn inject(&mut self, fault: Fault, cluster: &mut Cluster) -> Active {
        match fault {
            Fault::Kill => {
                let members = self.targets(cluster).await;
                for &i in &members {
                    cluster.kill(i);
                }
                self.record(fault, "start", names(&members));
                Active::Killed(members)
            }
            Fault::Pause => {
                let members = self.targets(cluster).await;
                for &i in &members {
                    cluster.pause(i, true);
                }
                self.record(fault, "start", names(&members));
                Active::Paused(members)
            }
            Fault::Partition | Fault::Isolate => {
                let (what, links) = self.partition(fault, cluster).await;
                for (a, b) in links {
                    cluster.cut(a, b);
                }
                self.record(fault, "start", what);
                Active::Partitioned
            }
            other => unreachable!("--nemesis admits only {FAULTS:?}, not {other}"),
        }
    }

    /// Members shuffled; the first ones are the targets.
    fn shuffled(&mut self, n: usize) -> Vec<usize> {
        let mut all: Vec<usize> = (0..n).collect();
        all.shuffle(&mut self.rng);
        all
    }

    /// One member, the leader, a minority, a majority or all, as Jepsen's db nemesis picks.
    async fn targets(&mut self, cluster: &Cluster) -> Vec<usize> {
        let n = cluster.size();
        let mut all = self.shuffled(n);
        let count = match self.rng.random_range(0..5) {
            0 => 1,
            1 => match cluster.leader().await {
                Some(leader) => return vec![leader],
                None => 1,
            },
            2 => ((n - 1) / 2).max(1),
            3 => n / 2 + 1,
            _ => n,
        };
        all.truncate(count);
        all.sort_unstable();
        all
    }

    /// A partition or an isolation: its description and the member pairs it separates.
    async fn partition(
        &mut self,
        fault: Fault,
        cluster: &Cluster,
    ) -> (String, Vec<(usize, usize)>) {
        let n = cluster.size();
        let all = self.shuffled(n);
        let (what, side): (String, Vec<usize>) = match fault {
            Fault::Isolate if self.rng.random_bool(0.5) => match cluster.leader().await {
                Some(l) => (format!("isolate the leader m{l}"), vec![l]),
                None => (
                    format!("isolate m{} (no leader seen)", all[0]),
                    vec![all[0]],
                ),
            },
            Fault::Isolate => (format!("isolate m{}", all[0]), vec![all[0]]),
            _ if n < 5 || self.rng.random_bool(0.5) => {
                let mut half = all[..n / 2].to_vec();
                half.sort_unstable();
                (format!("halves, {} apart", names(&half)), half)
            }
            _ => {
                // Each member keeps its two neighbours on a ring in shuffled order.
                let pos = |m: usize| all.iter().position(|&x| x == m).unwrap_or(0);
                let mut links = Vec::new();
                for a in 0..n {
                    for b in a + 1..n {
                        let d = pos(a).abs_diff(pos(b));
                        if d.min(n - d) > 1 {
                            links.push((a, b));
                        }
                    }
                }
                return (format!("majorities ring {}", names(&all)), links);
            }
        };
        let mut links = Vec::new();
        for &a in &side {
            for b in (0..n).filter(|b| !side.contains(b)) {
                links.push((a, b));
            }
        }
        (what, links)
    }
}

/// Sleeps for `interval` or until `until`, whichever is first; false once `until` passed.
async fn pause_until(interval: Duration, until: Instant) -> bool {
    let now = Instant::now();
    if now >= until {
        return false;
    }
    tokio::time::sleep((until - now).min(interval)).await;
    Instant::now() < until
}
