//! Scenario files (`scenarios/*.toml`): the cluster, the workload, the nemesis schedule and
//! what must hold, as data. One scenario and one seed decide a whole run.

use detcd::runtime::CrashPoint;
use detcd_check::fault::Fault;
use serde::Deserialize;

/// One scenario file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The file stem, filled in by [`Scenario::load`].
    #[serde(skip)]
    pub name: String,
    /// Waits on a feature not merged yet: the suite skips it and says so.
    #[serde(default)]
    pub pending: bool,
    /// Voting members at start.
    pub members: usize,
    /// Server flags every member gets beyond the cluster flags, e.g. a small
    /// `--snapshot-count` so that the log is compacted within the run.
    #[serde(default)]
    pub flags: Vec<String>,
    /// Simulated seconds of workload and faults (the safety phase).
    pub duration_s: f64,
    /// Seeds the regression suite runs on every test run.
    #[serde(default)]
    pub seeds: Vec<u64>,
    /// Seeds that once failed, each with what it found; run beside `seeds`.
    #[serde(default)]
    pub regression: Vec<Regression>,
    pub workload: Workload,
    /// The explicit nemesis schedule.
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
    /// Faults drawn from the seed, one at a time, during the safety phase.
    #[serde(default)]
    pub random: Option<RandomFaults>,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Regression {
    pub seed: u64,
    pub found: String,
}

/// Client processes and the relative weight of each operation.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub clients: u64,
    /// Keys of the checked key space (`k0`..): few, so operations contend.
    pub keys: usize,
    #[serde(default)]
    pub get: u32,
    #[serde(default)]
    pub put: u32,
    #[serde(default)]
    pub delete: u32,
    #[serde(default)]
    pub cas: u32,
    /// Compare-and-put with a get in both branches, checked as a cas and a get.
    #[serde(default)]
    pub txn: u32,
    /// Grant a lease, attach a key (outside the checked key space), keep alive or revoke.
    #[serde(default)]
    pub lease: u32,
    /// Take the lock `lock/l0` with a lease of a few seconds, read a counter, write it plus
    /// one fenced by the lock key's create revision, unlock: checked for mutual exclusion
    /// ([`detcd_check::lock`]).
    #[serde(default)]
    pub lock: u32,
    /// Lock holders stall between their read and their fenced write, as a process pause
    /// would: every other hold well within the lease, the others past the lease's TTL by
    /// 0.5 s up to this many simulated milliseconds, having lost the lock.
    #[serde(default)]
    pub lock_hold_ms: u64,
    /// Simulated milliseconds a client waits between operations.
    #[serde(default)]
    pub think_ms: u64,
}

/// A nemesis step at a simulated time. (Unknown fields are refused by [`Action`]: serde
/// cannot refuse them on a struct with a flattened field.)
#[derive(Clone, Debug, Deserialize)]
pub struct Step {
    /// Seconds after start.
    pub at: f64,
    #[serde(flatten)]
    pub action: Action,
}

/// A member a step acts on: an index (0-based), or a role resolved when the step runs.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum Target {
    Index(usize),
    /// `leader`, `follower` (the lowest-numbered non-leader), `all`, `last` (whatever the
    /// previous step acted on), `added` (the member the last member-add created).
    Role(String),
}

/// Which of a member's files a disk fault hits.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum DiskArea {
    /// The WAL directory.
    #[default]
    Wal,
    /// The backend database file.
    Backend,
}

/// What a step does.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "do", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Action {
    /// Cuts every link between members of different groups; an empty group takes every
    /// member named in no other. Clients still reach every member.
    Partition {
        groups: Vec<Vec<Target>>,
    },
    /// Cuts one member off every other member.
    Isolate {
        member: Target,
    },
    /// Drops everything `from` sends to `to`; the other direction still works.
    OneWay {
        from: Target,
        to: Target,
    },
    /// Restores every link, no loss, default latency.
    Heal,
    /// Drops each packet with this probability.
    Loss {
        rate: f64,
    },
    /// Delivers each packet after a latency drawn from `[min_ms, max_ms)`.
    Delay {
        min_ms: u64,
        max_ms: u64,
    },
    /// The process dies; what it wrote stays in the page cache and survives.
    Kill {
        member: Target,
    },
    /// Power loss: the process dies and the disk loses (or tears) what was not synced.
    PowerLoss {
        member: Target,
    },
    /// Boots a killed or powered-off member from its disk.
    Restart {
        member: Target,
    },
    /// Stops scheduling the member's tasks; its clock keeps running.
    Pause {
        member: Target,
    },
    Resume {
        member: Target,
    },
    /// The next `count` operations of kind `op` (`read`, `write`, `sync`) on the member's
    /// `file` (`wal`, the default, or `backend`) fail with EIO.
    DiskEio {
        member: Target,
        op: String,
        count: u32,
        #[serde(default)]
        file: DiskArea,
    },
    /// The disk fills: writes past `headroom` more bytes fail with ENOSPC.
    DiskFull {
        member: Target,
        headroom: u64,
    },
    /// Each fsync stalls the member for `delay_ms` with this probability.
    SlowFsync {
        member: Target,
        probability: f64,
        delay_ms: u64,
    },
    /// Removes injected disk faults.
    DiskHeal {
        member: Target,
    },
    /// The `nth` time (from 1) the member passes the named crash point of its write path
    /// (`detcd::runtime::CrashPoint`, e.g. `raft-before-save`), `mode` happens: its power
    /// fails (the default), its process is killed, or it stalls for `pause_ms`.
    CrashAt {
        member: Target,
        #[serde(deserialize_with = "crash_point")]
        point: CrashPoint,
        #[serde(default = "first")]
        nth: u32,
        #[serde(default)]
        mode: CrashAtMode,
        /// How long a `pause` stalls the member (default 1000).
        #[serde(default)]
        pause_ms: Option<u64>,
    },
    /// Ends a crash-at: a member whose power failed restarts from what its disk kept
    /// (torn as a power cut tears it), a killed one from everything it wrote; one that
    /// never reached its point is disarmed.
    CrashRecover {
        member: Target,
    },
    /// Maintenance Defragment of the member's backend; its answer is only noted (a crash
    /// point may cut it short).
    Defragment {
        member: Target,
    },
    /// Maintenance MoveLeader, asked of the current leader.
    MoveLeader {
        to: Target,
    },
    /// Cluster MemberAdd. `start`: whether a member then boots at the new peer URL; without
    /// it the URL is dead, the misconfigured member of etcd's outages.
    MemberAdd {
        #[serde(default)]
        learner: bool,
        #[serde(default = "yes")]
        start: bool,
        /// The error etcd answers with, when the add must be refused.
        #[serde(default)]
        refused: Option<String>,
    },
    /// Cluster MemberPromote of a learner; `refused` as for member-add.
    MemberPromote {
        member: Target,
        #[serde(default)]
        refused: Option<String>,
    },
    /// Cluster MemberRemove; `refused` as for member-add.
    MemberRemove {
        member: Target,
        #[serde(default)]
        refused: Option<String>,
    },
}

/// What an armed crash point does to its member (`detcd::runtime::PointFault`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CrashAtMode {
    /// The machine loses power: what was not synced may be lost or torn.
    #[default]
    PowerCut,
    /// The process dies: what it wrote survives in the page cache, synced or not.
    Kill,
    /// The process stalls at the point, then goes on.
    Pause,
}

impl CrashAtMode {
    pub const ALL: [CrashAtMode; 3] =
        [CrashAtMode::PowerCut, CrashAtMode::Kill, CrashAtMode::Pause];
}

/// How long a `pause` crash-at without `pause_ms` stalls its member.
pub const DEFAULT_PAUSE_MS: u64 = 1000;

fn yes() -> bool {
    true
}

fn first() -> u32 {
    1
}

fn crash_point<'de, D: serde::Deserializer<'de>>(d: D) -> Result<CrashPoint, D::Error> {
    let name = String::deserialize(d)?;
    name.parse().map_err(serde::de::Error::custom)
}

fn crash_points<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<CrashPoint>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    names
        .iter()
        .map(|n| n.parse().map_err(serde::de::Error::custom))
        .collect()
}

/// Faults drawn from the seed: after a gap in `every`, one fault from `faults` holds for a
/// time in `hold`, then is undone.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomFaults {
    pub every: [f64; 2],
    pub hold: [f64; 2],
    /// Any of the simulator's faults, by name: partition, isolate, one-way, loss, delay,
    /// kill, power-loss, pause, disk-eio, slow-fsync, crash-point.
    pub faults: Vec<Fault>,
    /// The points a `crash-point` fault draws from; every point when empty.
    #[serde(default, deserialize_with = "crash_points")]
    pub crash_points: Vec<CrashPoint>,
    /// What a drawn crash point does (`power-cut`, `kill`, `pause`); every mode when empty.
    /// A pause lasts up to the fault's hold.
    #[serde(default)]
    pub crash_modes: Vec<CrashAtMode>,
}

/// What must hold besides linearizability and convergence, which every run checks.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// From one second after a partition step until the next heal, no write and no
    /// linearizable read completes: no side of the split has a quorum.
    #[serde(default)]
    pub no_commit_during_split: bool,
    /// Just before the heal, no member considers itself leader (CheckQuorum stepped it down).
    #[serde(default)]
    pub no_leader_during_split: bool,
    /// After every heal, all running members agree on one leader within this many seconds.
    #[serde(default)]
    pub leader_within_s_after_heal: Option<f64>,
    /// The term does not change across a heal (PreVote: a rejoining member disrupts no one).
    #[serde(default)]
    pub term_unchanged_after_heal: bool,
    /// Members may stop on disk errors (etcd exits on a failed WAL write or backend commit);
    /// otherwise a member that stops fails the run.
    #[serde(default)]
    pub members_may_exit: bool,
    /// At least this many operations complete `ok`: the cluster made progress.
    #[serde(default)]
    pub min_ok: u64,
    /// Some member installed a snapshot from the leader: it caught up past the leader's
    /// compacted log.
    #[serde(default)]
    pub snapshot_installed: bool,
    /// At least this many armed crash points fired (a power cut, a kill or a pause): the
    /// run exercised them.
    #[serde(default)]
    pub crash_points_fired: u64,
    /// Windows of simulated seconds `[from, to]` in which no operation completes `ok`:
    /// the cluster has no quorum (e.g. after a misconfigured voter was added).
    #[serde(default)]
    pub no_commit_s: Vec<[f64; 2]>,
    /// Windows of simulated seconds `[from, to]` in each of which some write (put,
    /// delete, cas) completes `ok`: the cluster commits.
    #[serde(default)]
    pub commit_s: Vec<[f64; 2]>,
    /// Some fenced write of a lock holder was refused by its fence: a holder lost its lock
    /// (its lease expired) before it wrote, and the scenario showed the fence at work.
    #[serde(default)]
    pub fence_refused: bool,
    /// Every write (put, delete, cas) that completed `ok` did so within this many
    /// seconds of its invocation: the voters' commit latency was not disturbed.
    #[serde(default)]
    pub write_latency_max_s: Option<f64>,
    /// Every member that stops says why with the file under its data directory and the
    /// OS error (`… /data/member/snap/db: Input/output error (os error 5)`).
    #[serde(default)]
    pub exits_name_the_file: bool,
}

impl Expect {
    /// The failure `crash_points_fired` makes, given how many points fired as power cuts,
    /// kills and pauses.
    pub fn too_few_crash_points(&self, [cuts, kills, pauses]: [u64; 3]) -> Option<String> {
        let fired = cuts + kills + pauses;
        (fired < self.crash_points_fired).then(|| {
            format!(
                "{fired} crash points fired (power cut {cuts}, kill {kills}, pause {pauses}; \
                 expected at least {})",
                self.crash_points_fired
            )
        })
    }

    /// The failure a member's exit message makes under `exits_name_the_file`, if any.
    pub fn unexplained_exit(&self, exit: &str) -> Option<String> {
        let named = exit.contains("/data/") && exit.contains("(os error ");
        (self.exits_name_the_file && !named)
            .then(|| format!("member stopped without naming the file and the OS error: {exit}"))
    }
}

impl Scenario {
    /// Parses and checks the text of scenario `name`.
    pub fn parse(name: &str, text: &str) -> Result<Scenario, String> {
        let mut s: Scenario = toml::from_str(text).map_err(|e| format!("{name}: {e}"))?;
        s.name = name.to_string();
        s.validate().map_err(|e| format!("{name}: {e}"))?;
        Ok(s)
    }

    fn validate(&self) -> Result<(), String> {
        if self.members == 0 || self.members > 9 {
            return Err(format!("members({}) out of [1, 9]", self.members));
        }
        let w = &self.workload;
        if w.get + w.put + w.delete + w.cas + w.txn + w.lease + w.lock == 0 {
            return Err("the workload has no operations".into());
        }
        if w.keys == 0 {
            return Err("the workload has no keys".into());
        }
        if let Some(r) = &self.random {
            if r.every[0] > r.every[1] || r.hold[0] > r.hold[1] || r.faults.is_empty() {
                return Err("random: empty ranges or no faults".into());
            }
        }
        let windows = self.expect.no_commit_s.iter().chain(&self.expect.commit_s);
        for &[from, to] in windows {
            if !(0.0 <= from && from <= to && to <= self.duration_s) {
                return Err(format!(
                    "expect: window [{from}, {to}] outside [0, {}]",
                    self.duration_s
                ));
            }
        }
        let mut last = 0.0;
        for s in &self.steps {
            if s.at < last {
                return Err(format!("step at {} comes before one at {last}", s.at));
            }
            if let Action::CrashAt {
                point,
                nth,
                mode,
                pause_ms,
                ..
            } = &s.action
            {
                if *nth == 0 {
                    return Err(format!(
                        "step at {}: crash-at {point} with nth = 0; passes count from 1",
                        s.at
                    ));
                }
                if pause_ms.is_some() && *mode != CrashAtMode::Pause {
                    return Err(format!(
                        "step at {}: crash-at {point} has pause_ms but is not a pause",
                        s.at
                    ));
                }
            }
            last = s.at;
        }
        Ok(())
    }

    /// Every seed the regression suite runs: the pinned ones and the regressions.
    pub fn pinned_seeds(&self) -> Vec<u64> {
        let mut seeds = self.seeds.clone();
        seeds.extend(self.regression.iter().map(|r| r.seed));
        seeds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "members = 3\nduration_s = 5\n[workload]\nclients = 1\nkeys = 1\nput = 1\n";

    #[test]
    fn a_crash_point_armed_for_its_zeroth_pass_is_refused() {
        let step = |nth| {
            format!("{HEAD}[[step]]\nat = 1\ndo = \"crash-at\"\nmember = 0\npoint = \"raft-before-save\"\nnth = {nth}\n")
        };
        Scenario::parse("first", &step(1)).unwrap();
        let err = Scenario::parse("zeroth", &step(0)).unwrap_err();
        assert_eq!(
            err,
            "zeroth: step at 1: crash-at raft-before-save with nth = 0; passes count from 1"
        );
    }

    fn crash_at(extra: &str) -> Result<Scenario, String> {
        let text = format!(
            "{HEAD}[[step]]\nat = 1\ndo = \"crash-at\"\nmember = 0\npoint = \"raft-after-save\"\n{extra}"
        );
        Scenario::parse("modes", &text)
    }

    #[test]
    fn a_crash_at_mode_is_power_cut_kill_or_pause() {
        let mode = |s: Scenario| match &s.steps[0].action {
            Action::CrashAt { mode, pause_ms, .. } => (*mode, *pause_ms),
            other => panic!("parsed as {other:?}"),
        };
        assert_eq!(mode(crash_at("").unwrap()), (CrashAtMode::PowerCut, None));
        assert_eq!(
            mode(crash_at("mode = \"kill\"\n").unwrap()),
            (CrashAtMode::Kill, None)
        );
        assert_eq!(
            mode(crash_at("mode = \"pause\"\npause_ms = 300\n").unwrap()),
            (CrashAtMode::Pause, Some(300))
        );
        let err = crash_at("mode = \"nap\"\n").unwrap_err();
        assert!(
            err.contains("unknown variant `nap`") && err.contains("`power-cut`, `kill`, `pause`"),
            "{err}"
        );
        let err = crash_at("mode = \"kill\"\npause_ms = 300\n").unwrap_err();
        assert_eq!(
            err,
            "modes: step at 1: crash-at raft-after-save has pause_ms but is not a pause"
        );
        let random = format!(
            "{HEAD}[random]\nevery = [1, 2]\nhold = [1, 2]\nfaults = [\"crash-point\"]\ncrash_modes = [\"kill\", \"freeze\"]\n"
        );
        let err = Scenario::parse("random", &random).unwrap_err();
        assert!(err.contains("unknown variant `freeze`"), "{err}");
    }

    #[test]
    fn fired_crash_points_count_every_mode() {
        let expect = Expect {
            crash_points_fired: 3,
            ..Expect::default()
        };
        assert_eq!(expect.too_few_crash_points([1, 1, 1]), None);
        assert_eq!(expect.too_few_crash_points([0, 0, 3]), None);
        assert_eq!(
            expect.too_few_crash_points([1, 0, 1]),
            Some("2 crash points fired (power cut 1, kill 0, pause 1; expected at least 3)".into())
        );
        assert_eq!(Expect::default().too_few_crash_points([0; 3]), None);
    }

    #[test]
    fn an_exit_must_name_the_file_and_the_os_error_when_expected() {
        let expect = Expect {
            exits_name_the_file: true,
            ..Expect::default()
        };
        let named = "m0: detcd: the backend failed committing: backend: I/O error: \
                     write /data/member/snap/db: Input/output error (os error 5)";
        assert_eq!(expect.unexplained_exit(named), None);
        assert!(expect
            .unexplained_exit("m1: detcd: member loop ended")
            .is_some());
        assert_eq!(Expect::default().unexplained_exit("m1: anything"), None);
    }
}
