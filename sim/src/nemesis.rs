//! The nemesis: executes a scenario's timeline of fault steps (explicit ones and those the
//! seed draws) against the cluster, and observes what the expectations need at the moments
//! that matter (just before and after a heal). Leader moves and membership changes go
//! through the real gRPC Maintenance and Cluster services.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use detcd::proto::etcdserverpb::cluster_client::ClusterClient;
use detcd::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use detcd::proto::etcdserverpb::{
    DefragmentRequest, MemberAddRequest, MemberPromoteRequest, MemberRemoveRequest,
    MoveLeaderRequest, StatusRequest,
};
use detcd::runtime::{seeded_rng, Clock, CrashPoint, Fault as DiskFault, IoOp, PointFault};
use detcd_check::fault::Fault;
use madsim::runtime::NodeHandle;
use rand::seq::SliceRandom;
use rand::Rng;
use tokio::time::Instant;

use crate::kv_cluster::{client_url, peer_url, KvCluster};
use crate::scenario::{
    Action, CrashAtMode, DiskArea, Expect, RandomFaults, Scenario, Step, Target, DEFAULT_PAUSE_MS,
};

/// The WAL directory of every member: where injected EIO lands.
const WAL_DIR: &str = "/data/member/wal";
const BACKEND_DB: &str = "/data/member/snap/db";
/// Crash points a busy member passes many times a second.
const PER_READY: [CrashPoint; 7] = [
    CrashPoint::RaftBeforeSave,
    CrashPoint::RaftAfterSave,
    CrashPoint::BackendBeforeCommit,
    CrashPoint::BackendAfterCommit,
    CrashPoint::BeforeLeaderSend,
    CrashPoint::BeforeFollowerSend,
    CrashPoint::BeforeSendWatchResponse,
];
/// How long a drawn crash point cuts a follower off before it may catch up: long enough
/// for a log compacted every 100 entries (crash-points-snapshot's 1.9 s once was not).
const SNAPSHOT_ISOLATION_S: f64 = 4.5;
/// How long after the heal a drawn snapshot crash point stays armed.
const SNAPSHOT_CATCH_UP_S: f64 = 2.0;
/// The shortest pause a drawn crash point makes; the longest is the fault's hold.
const PAUSE_MIN_MS: u64 = 100;
/// How long one status call may take before the member counts as unresponsive.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);
/// After a partition, operations already in flight may still complete for this long.
pub const SPLIT_GRACE: Duration = Duration::from_secs(1);

/// How long a nemesis call to a member's gRPC service may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A call's answer within [`CALL_TIMEOUT`], its error as the status message.
async fn answer<T>(call: impl Future<Output = Result<T, tonic::Status>>) -> Result<T, String> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|s| s.message().to_string())
}

/// What one member reports about itself.
#[derive(Clone, Copy, Debug)]
pub struct Status {
    pub member_id: u64,
    pub leader: u64,
    pub term: u64,
}

/// The explicit steps and the seed's random faults, in time order.
pub fn timeline(scenario: &Scenario, seed: u64) -> Vec<Step> {
    let mut steps = scenario.steps.clone();
    if let Some(r) = &scenario.random {
        steps.extend(random_steps(r, scenario.members, scenario.duration_s, seed));
    }
    steps.sort_by(|a, b| a.at.total_cmp(&b.at));
    steps
}

/// One fault at a time: a gap, the fault, its hold, its undoing.
fn random_steps(r: &RandomFaults, members: usize, duration: f64, seed: u64) -> Vec<Step> {
    let mut rng = seeded_rng(seed ^ 0x006e_656d_6573_6973);
    let mut steps = Vec::new();
    let mut t = 0.0;
    loop {
        t += rng.random_range(r.every[0]..=r.every[1]);
        let hold = rng.random_range(r.hold[0]..=r.hold[1]);
        if t + hold >= duration {
            return steps;
        }
        let m = Target::Index(rng.random_range(0..members));
        let fault = r.faults[rng.random_range(0..r.faults.len())];
        let held = |apply, undo| vec![(0.0, apply), (hold, undo)];
        let drawn = match fault {
            Fault::Partition => {
                let mut order: Vec<usize> = (0..members).collect();
                order.shuffle(&mut rng);
                let cut = rng.random_range(1..members.max(2));
                let groups = [&order[..cut], &order[cut..]]
                    .map(|g| g.iter().map(|&i| Target::Index(i)).collect())
                    .to_vec();
                held(Action::Partition { groups }, Action::Heal)
            }
            Fault::Isolate => held(Action::Isolate { member: m }, Action::Heal),
            Fault::OneWay => {
                let to = Target::Index(rng.random_range(0..members));
                held(Action::OneWay { from: m, to }, Action::Heal)
            }
            Fault::Loss => held(
                Action::Loss {
                    rate: rng.random_range(0.05..0.3),
                },
                Action::Heal,
            ),
            Fault::Delay => held(
                Action::Delay {
                    min_ms: 1,
                    max_ms: rng.random_range(50..500),
                },
                Action::Heal,
            ),
            Fault::Kill => held(
                Action::Kill { member: m.clone() },
                Action::Restart { member: m },
            ),
            Fault::PowerLoss => held(
                Action::PowerLoss { member: m.clone() },
                Action::Restart { member: m },
            ),
            Fault::Pause => held(
                Action::Pause { member: m.clone() },
                Action::Resume { member: m },
            ),
            Fault::DiskEio => held(
                Action::DiskEio {
                    member: m.clone(),
                    op: ["write", "sync"][rng.random_range(0..2)].to_string(),
                    count: rng.random_range(1..4),
                    file: DiskArea::Wal,
                },
                // The member stopped on the error, as etcd exits: heal and boot it.
                Action::DiskHeal { member: m },
            ),
            Fault::CrashPoint => crash_point_steps(r, m, hold, &mut rng),
            Fault::SlowFsync => held(
                Action::SlowFsync {
                    member: m.clone(),
                    probability: rng.random_range(0.1..0.5),
                    delay_ms: rng.random_range(100..1500),
                },
                Action::DiskHeal { member: m },
            ),
        };
        let end = t + drawn.last().map_or(0.0, |(after, _)| *after);
        if end >= duration {
            return steps;
        }
        steps.extend(drawn.into_iter().map(|(after, action)| Step {
            at: t + after,
            action,
        }));
        t = end;
    }
}

/// A drawn crash point, as steps after the fault's start: the point (and the pass, and
/// what happens there) drawn from the seed, armed on a member that passes it, with what
/// makes it pass the rarer points (the targets and triggers of etcd's robustness
/// failpoints), and the recovery after `hold`. `m` is the member drawn for points that
/// every member passes.
fn crash_point_steps(
    r: &RandomFaults,
    m: Target,
    hold: f64,
    rng: &mut impl Rng,
) -> Vec<(f64, Action)> {
    let points = if r.crash_points.is_empty() {
        CrashPoint::ALL
    } else {
        r.crash_points.as_slice()
    };
    let point = points[rng.random_range(0..points.len())];
    // Points passed on every Ready or commit fire on a later pass too; the others
    // (snapshots, compactions) may come once in a hold.
    let nth = if PER_READY.contains(&point) {
        rng.random_range(1..=3)
    } else {
        1
    };
    let modes = if r.crash_modes.is_empty() {
        &CrashAtMode::ALL[..]
    } else {
        r.crash_modes.as_slice()
    };
    let mode = modes[rng.random_range(0..modes.len())];
    let pause_ms = (mode == CrashAtMode::Pause)
        .then(|| rng.random_range(PAUSE_MIN_MS..=((hold * 1000.0) as u64).max(PAUSE_MIN_MS)));
    let crash_at = |member| Action::CrashAt {
        member,
        point,
        nth,
        mode,
        pause_ms,
    };
    let role = |name: &str| Target::Role(name.into());
    let recover = Action::CrashRecover {
        member: role("all"),
    };
    match point {
        // A leader sends its appends before saving them; its acknowledgements and votes a
        // follower sends after.
        CrashPoint::BeforeLeaderSend => vec![(0.0, crash_at(role("leader"))), (hold, recover)],
        CrashPoint::BeforeFollowerSend => {
            vec![(0.0, crash_at(role("follower"))), (hold, recover)]
        }
        // A follower cut off while the log is compacted past it catches up through the
        // leader's snapshot once healed.
        CrashPoint::RaftAfterSaveSnap
        | CrashPoint::RaftBeforeApplySnap
        | CrashPoint::RaftAfterApplySnap
        | CrashPoint::ApplyBeforeOpenSnapshot => {
            let cut_off = hold.max(SNAPSHOT_ISOLATION_S);
            vec![
                (
                    0.0,
                    Action::Isolate {
                        member: role("follower"),
                    },
                ),
                (0.0, crash_at(role("last"))),
                (cut_off, Action::Heal),
                (cut_off + SNAPSHOT_CATCH_UP_S, recover),
            ]
        }
        CrashPoint::DefragBeforeCopy | CrashPoint::DefragBeforeRename => vec![
            (0.0, crash_at(m.clone())),
            (0.0, Action::Defragment { member: m }),
            (hold, recover),
        ],
        // A configuration change has no trigger here: adding members while others crash
        // is refused as unhealthy (crash-points-snapshot adds one).
        _ => vec![(0.0, crash_at(m)), (hold, recover)],
    }
}

/// The nemesis of one run.
pub struct Nemesis<'a> {
    cluster: &'a mut KvCluster,
    /// A machine with a network address, for the gRPC calls the nemesis makes.
    ctl: NodeHandle,
    start: Instant,
    expect: Expect,
    /// Members the previous step acted on.
    last: Vec<usize>,
    added: Option<usize>,
    /// Member IDs learned from MemberAdd responses and status calls, by position.
    ids: BTreeMap<usize, u64>,
    down: BTreeSet<usize>,
    paused: BTreeSet<usize>,
    /// When the current split began, if one is in force.
    split_since: Option<Duration>,
    /// Closed splits as `[from, to)` in simulated time since start.
    pub splits: Vec<(Duration, Duration)>,
    /// What happened, for the failure report.
    pub log: Vec<String>,
    /// Expectations that did not hold, and steps that went wrong.
    pub violations: Vec<String>,
}

impl<'a> Nemesis<'a> {
    pub fn new(cluster: &'a mut KvCluster, ctl: NodeHandle, expect: Expect) -> Self {
        Nemesis {
            cluster,
            ctl,
            start: Clock.now(),
            expect,
            last: Vec::new(),
            added: None,
            ids: BTreeMap::new(),
            down: BTreeSet::new(),
            paused: BTreeSet::new(),
            split_since: None,
            splits: Vec::new(),
            log: Vec::new(),
            violations: Vec::new(),
        }
    }

    /// Runs `steps`, each at its time.
    pub async fn run(&mut self, steps: &[Step]) {
        for step in steps {
            let at = Duration::from_secs_f64(step.at);
            Clock.sleep_until(self.start + at).await;
            self.note(format!("{:?}", step.action));
            self.apply(&step.action).await;
        }
    }

    fn note(&mut self, what: String) {
        let t = self.start.elapsed().as_secs_f64();
        self.log.push(format!("{t:8.3}s {what}"));
    }

    fn violation(&mut self, what: String) {
        let t = self.start.elapsed().as_secs_f64();
        self.violations.push(format!("at {t:.3}s: {what}"));
    }

    /// Every member running now: not killed and not stopped.
    pub fn running(&self) -> Vec<usize> {
        let exited = self.exited();
        (0..self.cluster.nodes.len())
            .filter(|i| !self.down.contains(i) && !exited.contains(i))
            .collect()
    }

    fn exited(&self) -> BTreeSet<usize> {
        self.cluster
            .exits
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| e.strip_prefix('m')?.split(':').next()?.parse().ok())
            .collect()
    }

    /// Runs `f` on the control machine, which has a network address.
    async fn on_ctl<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> T {
        self.ctl.spawn(f).await.expect("control task")
    }

    /// Each running member's status, by position; unresponsive ones are left out.
    pub async fn statuses(&mut self) -> BTreeMap<usize, Status> {
        let running = self.running();
        let paused = self.paused.clone();
        let statuses = self
            .on_ctl(async move {
                let mut out = BTreeMap::new();
                for i in running.into_iter().filter(|i| !paused.contains(i)) {
                    if let Some(s) = status(i).await {
                        out.insert(i, s);
                    }
                }
                out
            })
            .await;
        for (&i, s) in &statuses {
            self.ids.insert(i, s.member_id);
        }
        statuses
    }

    /// The leader's position, once some member reports itself leader (within 10 s).
    async fn leader(&mut self) -> Option<usize> {
        let deadline = Clock.now() + Duration::from_secs(10);
        while Clock.now() < deadline {
            let statuses = self.statuses().await;
            if let Some((&i, _)) = statuses
                .iter()
                .find(|(_, s)| s.leader != 0 && s.leader == s.member_id)
            {
                return Some(i);
            }
            Clock.sleep(Duration::from_millis(100)).await;
        }
        None
    }

    async fn resolve(&mut self, t: &Target) -> Vec<usize> {
        let found = match t {
            Target::Index(i) => vec![*i],
            Target::Role(r) => match r.as_str() {
                "leader" => self.leader().await.into_iter().collect(),
                "follower" => {
                    let leader = self.leader().await;
                    let running = self.running();
                    running
                        .into_iter()
                        .find(|&i| Some(i) != leader)
                        .into_iter()
                        .collect()
                }
                "all" => (0..self.cluster.nodes.len()).collect(),
                "last" => self.last.clone(),
                "added" => self.added.into_iter().collect(),
                other => {
                    self.violation(format!("unknown target {other:?}"));
                    Vec::new()
                }
            },
        };
        if found.is_empty() {
            self.violation(format!("no member is {t:?}"));
        }
        self.last = found.clone();
        found
    }

    /// The member IDs of the members `t` names; one whose ID is unknown is a violation.
    async fn resolve_ids(&mut self, t: &Target) -> Vec<u64> {
        let mut ids = Vec::new();
        for i in self.resolve(t).await {
            match self.ids.get(&i) {
                Some(&id) => ids.push(id),
                None => self.violation(format!("m{i} has no known member ID")),
            }
        }
        ids
    }

    async fn apply(&mut self, action: &Action) {
        match action {
            Action::Partition { groups } => {
                let mut resolved = Vec::new();
                for g in groups {
                    let mut members = Vec::new();
                    for t in g {
                        members.extend(self.resolve(t).await);
                    }
                    resolved.push(members);
                }
                let named: BTreeSet<usize> = resolved.iter().flatten().copied().collect();
                let rest: Vec<usize> = (0..self.cluster.nodes.len())
                    .filter(|i| !named.contains(i))
                    .collect();
                for g in resolved.iter_mut().filter(|g| g.is_empty()) {
                    g.clone_from(&rest);
                }
                self.note(format!("partition {resolved:?}"));
                self.cluster.nodes.partition(&resolved);
                self.split_began();
            }
            Action::Isolate { member } => {
                for i in self.resolve(member).await {
                    self.note(format!("isolate m{i}"));
                    self.cluster.nodes.isolate(i);
                }
                self.split_began();
            }
            Action::OneWay { from, to } => {
                let (from, to) = (self.resolve(from).await, self.resolve(to).await);
                for &a in &from {
                    for &b in to.iter().filter(|&&b| b != a) {
                        self.cluster.nodes.one_way(a, b);
                    }
                }
            }
            Action::Heal => self.heal().await,
            Action::Loss { rate } => self.cluster.nodes.loss(*rate),
            Action::Delay { min_ms, max_ms } => self
                .cluster
                .nodes
                .delay(Duration::from_millis(*min_ms)..Duration::from_millis(*max_ms)),
            Action::Kill { member } => {
                for i in self.resolve(member).await {
                    self.note(format!("kill m{i}"));
                    self.cluster.nodes.kill(i);
                    self.down.insert(i);
                    self.paused.remove(&i);
                }
            }
            Action::PowerLoss { member } => {
                for i in self.resolve(member).await {
                    self.note(format!("power loss m{i}"));
                    self.cluster.nodes.power_loss(i);
                    self.down.insert(i);
                    self.paused.remove(&i);
                }
            }
            Action::Restart { member } => {
                for i in self.resolve(member).await {
                    self.restart(i);
                }
            }
            Action::Pause { member } => {
                for i in self.resolve(member).await {
                    self.note(format!("pause m{i}"));
                    self.cluster.nodes.pause(i);
                    self.paused.insert(i);
                }
            }
            Action::Resume { member } => {
                for i in self.resolve(member).await {
                    self.cluster.nodes.resume(i);
                    self.paused.remove(&i);
                }
            }
            Action::DiskEio {
                member,
                op,
                count,
                file,
            } => {
                let op = match op.as_str() {
                    "read" => IoOp::Read,
                    "write" => IoOp::Write,
                    _ => IoOp::Sync,
                };
                let path = match file {
                    DiskArea::Wal => WAL_DIR,
                    DiskArea::Backend => BACKEND_DB,
                };
                for i in self.resolve(member).await {
                    self.cluster.nodes.disk(i).inject(DiskFault::Eio {
                        op,
                        path: path.into(),
                        count: *count,
                    });
                }
            }
            Action::DiskFull { member, headroom } => {
                for i in self.resolve(member).await {
                    let disk = self.cluster.nodes.disk(i);
                    let capacity = Some(disk.used_bytes() + headroom);
                    disk.inject(DiskFault::NoSpace { capacity });
                }
            }
            Action::SlowFsync {
                member,
                probability,
                delay_ms,
            } => {
                for i in self.resolve(member).await {
                    self.cluster.nodes.disk(i).inject(DiskFault::SlowSync {
                        probability: *probability,
                        delay: Duration::from_millis(*delay_ms),
                    });
                }
            }
            Action::DiskHeal { member } => {
                for i in self.resolve(member).await {
                    self.cluster.nodes.disk(i).heal();
                    // A member that stopped on the fault boots again, as a supervisor
                    // restarts etcd.
                    if self.exited().contains(&i) {
                        self.restart(i);
                    }
                }
            }
            Action::CrashAt {
                member,
                point,
                nth,
                mode,
                pause_ms,
            } => {
                let then = match mode {
                    CrashAtMode::PowerCut => PointFault::PowerCut,
                    CrashAtMode::Kill => PointFault::Kill,
                    CrashAtMode::Pause => PointFault::Pause(Duration::from_millis(
                        pause_ms.unwrap_or(DEFAULT_PAUSE_MS),
                    )),
                };
                for i in self.resolve(member).await {
                    self.cluster.nodes.disk(i).inject(DiskFault::CrashAt {
                        point: *point,
                        nth: *nth,
                        then,
                    });
                }
            }
            Action::CrashRecover { member } => {
                for i in self.resolve(member).await {
                    let disk = self.cluster.nodes.disk(i);
                    disk.heal();
                    match disk.stopped_at() {
                        Some((point, PointFault::Kill)) => {
                            self.note(format!("m{i} was killed at {point}"));
                            self.cluster.nodes.kill(i);
                        }
                        Some((point, _)) => {
                            self.note(format!("m{i} lost power at {point}"));
                            self.cluster.nodes.power_loss(i);
                        }
                        None => continue,
                    }
                    self.restart(i);
                }
            }
            Action::MoveLeader { to } => self.move_leader(to).await,
            Action::Defragment { member } => {
                for i in self.resolve(member).await {
                    let r = self
                        .maintenance_call(i, |mut m| async move {
                            m.defragment(DefragmentRequest {}).await.map(|_| ())
                        })
                        .await;
                    self.note(format!("defragment m{i}: {r:?}"));
                }
            }
            Action::MemberAdd {
                learner,
                start,
                refused,
            } => self.member_add(*learner, *start, refused.clone()).await,
            Action::MemberPromote { member, refused } => {
                for id in self.resolve_ids(member).await {
                    let r = self
                        .cluster_call(move |mut c| async move {
                            c.member_promote(MemberPromoteRequest { id })
                                .await
                                .map(|_| ())
                        })
                        .await;
                    self.answered("member promote", r, refused.as_deref());
                }
            }
            Action::MemberRemove { member, refused } => {
                for id in self.resolve_ids(member).await {
                    let r = self
                        .cluster_call(move |mut c| async move {
                            c.member_remove(MemberRemoveRequest { id })
                                .await
                                .map(|_| ())
                        })
                        .await;
                    self.answered("member remove", r, refused.as_deref());
                }
            }
        }
    }

    fn restart(&mut self, i: usize) {
        self.note(format!("restart m{i}"));
        let stopped: Vec<String> = {
            let mut exits = self.cluster.exits.lock().unwrap();
            let (mine, others) = exits
                .drain(..)
                .partition(|e| e.starts_with(&format!("m{i}:")));
            *exits = others;
            mine
        };
        for e in stopped {
            self.violations.extend(self.expect.unexplained_exit(&e));
            self.note(format!("had stopped: {e}"));
        }
        self.cluster.nodes.restart(i);
        self.down.remove(&i);
        self.paused.remove(&i);
    }

    fn split_began(&mut self) {
        if self.split_since.is_none() {
            self.split_since = Some(self.start.elapsed());
        }
    }

    /// Restores the network, checking the expectations about a split around it.
    async fn heal(&mut self) {
        let before = if self.split_since.is_some() {
            self.statuses().await
        } else {
            BTreeMap::new()
        };
        if self.expect.no_leader_during_split {
            for (i, s) in &before {
                if s.leader == s.member_id {
                    self.violation(format!("m{i} still leads (term {}) in a split", s.term));
                }
            }
        }
        self.cluster.nodes.heal_all();
        if let Some(since) = self.split_since.take() {
            self.splits.push((since, self.start.elapsed()));
        } else {
            return;
        }
        let term_before = before.values().map(|s| s.term).max().unwrap_or(0);
        if let Some(within) = self.expect.leader_within_s_after_heal {
            let within = Duration::from_secs_f64(within);
            if let Err(seen) = self.agreed_leader(within).await {
                self.violation(format!(
                    "no agreed leader within {within:?} after the heal: {seen}"
                ));
            }
        }
        if self.expect.term_unchanged_after_heal {
            Clock.sleep(Duration::from_secs(2)).await;
            let after = self.statuses().await;
            let term_after = after.values().map(|s| s.term).max().unwrap_or(0);
            if term_after != term_before {
                self.violation(format!(
                    "term went from {term_before} to {term_after} across the heal"
                ));
            }
        }
    }

    /// Waits until every running member reports the same leader; on timeout, the last
    /// statuses seen.
    async fn agreed_leader(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Clock.now() + within;
        let mut seen = BTreeMap::new();
        while Clock.now() < deadline {
            seen = self.statuses().await;
            let leaders: BTreeSet<u64> = seen.values().map(|s| s.leader).collect();
            if seen.len() == self.running().len() && leaders.len() == 1 && !leaders.contains(&0) {
                let took = within - deadline.saturating_duration_since(Clock.now());
                self.note(format!("one leader after {took:?}"));
                return Ok(());
            }
            Clock.sleep(Duration::from_millis(100)).await;
        }
        Err(format!("{seen:?}"))
    }

    /// The liveness phase begins: every fault is undone and every member runs again.
    pub async fn heal_everything(&mut self) {
        self.note("heal everything".into());
        for i in 0..self.cluster.nodes.len() {
            self.cluster.nodes.disk(i).heal();
            if self.paused.remove(&i) {
                self.cluster.nodes.resume(i);
            }
        }
        let stopped: Vec<usize> = self.down.iter().copied().chain(self.exited()).collect();
        for i in stopped {
            self.restart(i);
        }
        self.heal().await;
    }

    async fn move_leader(&mut self, to: &Target) {
        let Some(leader) = self.leader().await else {
            return self.violation("move-leader: no leader".into());
        };
        self.statuses().await;
        for target_id in self.resolve_ids(to).await {
            let r = self
                .maintenance_call(leader, move |mut m| async move {
                    m.move_leader(MoveLeaderRequest { target_id })
                        .await
                        .map(|_| ())
                })
                .await;
            self.answered("move leader", r, None);
        }
    }

    async fn member_add(&mut self, learner: bool, start: bool, refused: Option<String>) {
        let position = self.cluster.nodes.len();
        let url = peer_url(position);
        let r = self
            .cluster_call(move |mut c| async move {
                let req = MemberAddRequest {
                    peer_ur_ls: vec![url],
                    is_learner: learner,
                };
                c.member_add(req)
                    .await
                    .map(|r| r.into_inner().member.map(|m| m.id))
            })
            .await;
        let id = match &r {
            Ok(Some(id)) => Some(*id),
            _ => None,
        };
        let answered = self.answered("member add", r.map(|_| ()), refused.as_deref());
        if let (true, Some(id)) = (answered, id) {
            self.ids.insert(position, id);
            self.added = Some(position);
            if start {
                let i = self.cluster.join();
                self.note(format!("m{i} joins as {id:x}"));
            }
        }
    }

    /// Calls the Cluster service on a running member, the leader if there is one.
    async fn cluster_call<F, Fut, T>(&mut self, call: F) -> Result<T, String>
    where
        F: FnOnce(ClusterClient<tonic::transport::Channel>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, tonic::Status>> + Send,
        T: Send + 'static,
    {
        let member = match self.leader().await {
            Some(l) => l,
            None => *self.running().first().ok_or("no member runs")?,
        };
        self.on_ctl(async move {
            let c = ClusterClient::connect(client_url(member))
                .await
                .map_err(|e| e.to_string())?;
            answer(call(c)).await
        })
        .await
    }

    /// Calls the Maintenance service on member `member`.
    async fn maintenance_call<F, Fut, T>(&mut self, member: usize, call: F) -> Result<T, String>
    where
        F: FnOnce(MaintenanceClient<tonic::transport::Channel>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, tonic::Status>> + Send,
        T: Send + 'static,
    {
        self.on_ctl(async move {
            let m = MaintenanceClient::connect(client_url(member))
                .await
                .map_err(|e| e.to_string())?;
            answer(call(m)).await
        })
        .await
    }

    /// Checks a call's answer against the refusal the step expects; true when it succeeded.
    fn answered(&mut self, what: &str, r: Result<(), String>, refused: Option<&str>) -> bool {
        self.note(format!("{what}: {r:?}"));
        match (r, refused) {
            (Ok(()), None) => true,
            (Ok(()), Some(want)) => {
                self.violation(format!("{what} succeeded; expected refusal {want:?}"));
                true
            }
            (Err(e), Some(want)) if e.contains(want) => false,
            (Err(e), want) => {
                self.violation(format!("{what} failed with {e:?} (expected {want:?})"));
                false
            }
        }
    }
}

/// Member `i`'s status, or `None` when it does not answer in time.
pub async fn status(i: usize) -> Option<Status> {
    let call = async {
        let mut m = MaintenanceClient::connect(client_url(i)).await.ok()?;
        let s = m.status(StatusRequest {}).await.ok()?.into_inner();
        Some(Status {
            member_id: s.header?.member_id,
            leader: s.leader,
            term: s.raft_term,
        })
    };
    tokio::time::timeout(STATUS_TIMEOUT, call)
        .await
        .ok()
        .flatten()
}
