//! A randomized cluster simulation, deterministic per seed. Members run over a network
//! that drops, delays, duplicates and reorders messages, is partitioned (including
//! 2+2), crashes and restarts members from their durable state, and changes membership.
//! After every step it checks Raft's safety properties (thesis 3.6.3, figure 3.2):
//! election safety, log matching, leader completeness and state machine safety, plus
//! durable-state monotonicity and linearizable ReadIndex results; once the network
//! heals it checks liveness.
//!
//! `DETCD_RAFT_SEEDS=N` runs N seeds (default 2000); `DETCD_RAFT_SEED=S` replays one.

use super::sim_member::{Member, SimConfig};
use crate::proto::raftpb::{
    ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, Message, MessageType,
};
use crate::raft::{Config, SnapshotStatus, StateRole};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

const ELECTION: u64 = 10;
const CHAOS_STEPS: u64 = 300;
const LEADER_BOUND: u64 = 60 * ELECTION;
const COMMIT_BOUND: u64 = 60 * ELECTION;

/// What every member has observed, checked against as the run goes.
#[derive(Default)]
pub struct Global {
    /// Election safety: the leader of each term.
    pub leaders: BTreeMap<u64, u64>,
    /// Log matching: `(index, term)` -> (term of the previous entry, entry digest).
    pub entries: BTreeMap<(u64, u64), (Option<u64>, u64)>,
    /// State machine safety: index -> (term, digest of the state after applying it).
    pub applied: BTreeMap<u64, (u64, u64)>,
    /// Committed entries by index: (entry term, term of the member that first
    /// reported it committed, an upper bound of the term it was committed in).
    pub committed: BTreeMap<u64, (u64, u64)>,
    /// Per leader term, the committed index up to which completeness was checked.
    pub completeness_checked: BTreeMap<u64, u64>,
    /// Where each proposal was applied.
    pub data_index: BTreeMap<Vec<u8>, u64>,
    /// How often each fault and feature occurred, to show the run exercised them.
    pub stats: BTreeMap<&'static str, u64>,
}

impl Global {
    pub fn count(&mut self, what: &'static str) {
        *self.stats.entry(what).or_insert(0) += 1;
    }
}

struct Sim {
    rng: ChaCha8Rng,
    cfg: SimConfig,
    now: u64,
    members: BTreeMap<u64, Member>,
    /// In-flight messages with their delivery time.
    net: Vec<(u64, Message)>,
    /// Partition group of each member; members in different groups cannot talk.
    group: BTreeMap<u64, u8>,
    drop_rate: f64,
    dup_rate: f64,
    max_delay: u64,
    global: Global,
    next_id: u64,
    next_data: u64,
    /// Read context -> highest commit index known anywhere when the read was issued.
    reads: BTreeMap<Vec<u8>, u64>,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = rng.random_range(3..=7u64);
        // Small limits so that flow control and size bounds are exercised.
        let mut raft = Config::new(1);
        raft.pre_vote = rng.random_bool(0.8);
        raft.check_quorum = rng.random_bool(0.8);
        raft.heartbeat_tick = rng.random_range(1..=3);
        raft.max_inflight_msgs = rng.random_range(1..=8);
        raft.max_inflight_bytes = if rng.random_bool(0.5) {
            0
        } else {
            rng.random_range(8..=256)
        };
        raft.max_size_per_msg = rng.random_range(1..=64);
        raft.max_committed_size_per_ready = rng.random_range(1..=256);
        raft.max_uncommitted_entries_size = rng.random_range(16..=1024);
        let cfg = SimConfig { seed, raft };
        let voters: Vec<u64> = (1..=n).collect();
        let members = voters
            .iter()
            .map(|&id| (id, Member::bootstrap(id, &voters, &cfg)))
            .collect();
        Self {
            drop_rate: rng.random_range(0.0..0.2),
            dup_rate: rng.random_range(0.0..0.1),
            max_delay: rng.random_range(0..=3),
            rng,
            cfg,
            now: 0,
            members,
            net: Vec::new(),
            group: BTreeMap::new(),
            global: Global::default(),
            next_id: n + 1,
            next_data: 0,
            reads: BTreeMap::new(),
        }
    }

    fn connected(&self, a: u64, b: u64) -> bool {
        self.group.get(&a).copied().unwrap_or(0) == self.group.get(&b).copied().unwrap_or(0)
    }

    fn send(&mut self, msgs: Vec<Message>) {
        for m in msgs {
            let (from, to, is_snap) = (m.from, m.to, m.r#type() == MessageType::MsgSnap);
            let lost = !self.connected(from, to) || self.rng.random_bool(self.drop_rate);
            if lost {
                self.global.count("message lost");
                if is_snap {
                    self.report_snapshot(from, to, SnapshotStatus::Failure);
                }
                continue;
            }
            let copies = if self.rng.random_bool(self.dup_rate) {
                self.global.count("message duplicated");
                2
            } else {
                1
            };
            for _ in 0..copies {
                let at = self.now + self.rng.random_range(0..=self.max_delay);
                self.net.push((at, m.clone()));
            }
        }
    }

    fn report_snapshot(&mut self, from: u64, to: u64, status: SnapshotStatus) {
        if let Some(node) = self.members.get_mut(&from).and_then(|m| m.node.as_mut()) {
            node.report_snapshot(to, status);
        }
    }

    fn deliver(&mut self) {
        let (mut due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.net)
            .into_iter()
            .partition(|(at, _)| *at <= self.now);
        self.net = rest;
        due.shuffle(&mut self.rng);
        for (_, m) in due {
            let (from, to, is_snap) = (m.from, m.to, m.r#type() == MessageType::MsgSnap);
            if m.r#type() == MessageType::MsgTimeoutNow {
                self.global.count("leadership transfer");
            }
            let connected = self.connected(from, to);
            let node = self.members.get_mut(&to).and_then(|m| m.node.as_mut());
            let status = match node {
                Some(node) if connected => {
                    let (t, term) = (m.r#type(), m.term);
                    if let Err(crate::raft::Error::Rejected(r)) = node.step(m) {
                        panic!(
                            "an honest {t:?} of term {term} from {from} to {to} was rejected: {r}"
                        );
                    }
                    SnapshotStatus::Finish
                }
                _ => SnapshotStatus::Failure,
            };
            if is_snap {
                // The transport knows how a snapshot stream ended.
                self.report_snapshot(from, to, status);
            }
        }
    }

    /// Handles every member's Ready; a member may crash in the middle of one.
    fn process(&mut self, crash_rate: f64) {
        let ids: Vec<u64> = self.members.keys().copied().collect();
        for id in ids {
            let crash = self.rng.random_bool(crash_rate);
            let member = self.members.get_mut(&id).unwrap();
            let (msgs, reads) = member.process(&mut self.global, crash);
            self.send(msgs);
            for rs in reads {
                self.global.count("read served");
                let want = self.reads[&rs.request_ctx];
                assert!(
                    rs.index >= want,
                    "read index({}) is below commit({}) known when the read was issued",
                    rs.index,
                    want
                );
            }
        }
    }

    fn live(&self) -> Vec<u64> {
        self.members_where(true)
    }

    fn down(&self) -> Vec<u64> {
        self.members_where(false)
    }

    fn members_where(&self, running: bool) -> Vec<u64> {
        self.members
            .iter()
            .filter(|(_, m)| m.node.is_some() == running)
            .map(|(&id, _)| id)
            .collect()
    }

    fn leader(&self) -> Option<u64> {
        self.members
            .iter()
            .filter_map(|(&id, m)| Some((id, m.node.as_ref()?)))
            .filter(|(_, n)| n.raft.state == StateRole::Leader)
            .max_by_key(|(_, n)| n.raft.term)
            .map(|(id, _)| id)
    }

    fn check_leaders(&mut self) {
        for m in self.members.values() {
            let Some(n) = m.node.as_ref() else { continue };
            let log = &n.raft.raft_log;
            let from = self
                .global
                .committed
                .keys()
                .next_back()
                .map_or(1, |i| i + 1);
            for idx in from.max(log.first_index())..=log.committed {
                let term = log.term(idx).expect("committed entry in log");
                self.global.committed.insert(idx, (term, n.raft.term));
            }
        }
        for (&id, m) in &self.members {
            let Some(n) = m.node.as_ref() else { continue };
            if n.raft.state != StateRole::Leader {
                continue;
            }
            let term = n.raft.term;
            if !self.global.leaders.contains_key(&term) {
                self.global.count("leader elected");
            }
            let prev = *self.global.leaders.entry(term).or_insert(id);
            assert_eq!(prev, id, "two leaders in term {term}");
            // Leader completeness: entries committed in earlier terms are in its log.
            let log = &n.raft.raft_log;
            let checked = self.global.completeness_checked.entry(term).or_insert(0);
            let from = (*checked + 1).max(log.first_index());
            for (&idx, &(entry_term, commit_term)) in self.global.committed.range(from..) {
                if commit_term < term {
                    assert_eq!(
                        log.term(idx),
                        Ok(entry_term),
                        "leader {id} of term {term} lacks entry {idx} committed by term {commit_term}"
                    );
                }
                *checked = idx;
            }
        }
    }

    /// Every member's state, for failure reports.
    fn describe(&self) -> String {
        let mut out = String::new();
        for (id, m) in &self.members {
            let Some(n) = m.node.as_ref() else {
                out += &format!("{id}: down\n");
                continue;
            };
            let r = &n.raft;
            out += &format!(
                "{id}: {:?} term {} lead {} commit {} applied {} last {} conf {:?} prs {:?}\n",
                r.state,
                r.term,
                r.lead,
                r.raft_log.committed,
                m.sm_index,
                r.raft_log.last_index(),
                r.prs.conf_state(),
                r.prs
                    .progress
                    .iter()
                    .map(|(id, p)| (id, p.matched, p.next_idx, p.state))
                    .collect::<Vec<_>>()
            );
        }
        out
    }

    fn pick(&mut self, from: &[u64]) -> Option<u64> {
        from.choose(&mut self.rng).copied()
    }

    fn random_event(&mut self) {
        let live = self.live();
        let r: f64 = self.rng.random();
        if r < 0.25 {
            if let Some(id) = self.pick(&live) {
                self.next_data += 1;
                let data = self.next_data.to_be_bytes().to_vec();
                let _ = self.node(id).propose(data);
            }
        } else if r < 0.30 {
            if let Some(id) = self.pick(&live) {
                self.next_data += 1;
                let ctx = self.next_data.to_be_bytes().to_vec();
                let known = self.max_commit();
                self.reads.insert(ctx.clone(), known);
                let _ = self.node(id).read_index(ctx);
            }
        } else if r < 0.32 {
            self.conf_change();
        } else if r < 0.325 {
            if let (Some(l), Some(to)) = (self.leader(), self.pick(&live)) {
                let _ = self.node(l).transfer_leader(to);
            }
        } else if r < 0.335 {
            self.partition();
        } else if r < 0.35 {
            self.group.clear();
        } else if r < 0.355 {
            if let Some(id) = self.pick(&live) {
                self.members.get_mut(&id).unwrap().crash();
                self.global.count("crash");
            }
        } else if r < 0.37 {
            let down = self.down();
            if let Some(id) = self.pick(&down) {
                self.members.get_mut(&id).unwrap().restart(&self.cfg);
                self.global.count("restart");
            }
        }
    }

    fn max_commit(&self) -> u64 {
        self.members
            .values()
            .filter_map(|m| m.node.as_ref())
            .map(|n| n.raft.raft_log.committed)
            .max()
            .unwrap_or(0)
    }

    fn node(&mut self, id: u64) -> &mut crate::raft::RawNode<crate::raft::MemStorage> {
        self.members.get_mut(&id).unwrap().node.as_mut().unwrap()
    }

    fn partition(&mut self) {
        let mut ids: Vec<u64> = self.members.keys().copied().collect();
        ids.shuffle(&mut self.rng);
        // A random split into two sides; with four voters some are 2+2 splits.
        let cut = self.rng.random_range(1..ids.len());
        self.group = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, u8::from(i >= cut)))
            .collect();
        self.global.count("partition");
        if let Some(l) = self.leader() {
            let voters = self.node(l).raft.prs.config.voters.incoming.clone();
            let side = voters.iter().filter(|id| self.group[id] == 0).count();
            if voters.len() == 4 && side == 2 {
                self.global.count("2+2 split");
            }
        }
    }

    fn conf_change(&mut self) {
        let Some(l) = self.leader() else { return };
        let cfg = self.node(l).raft.prs.config.clone();
        let voters: Vec<u64> = cfg.voters.incoming.iter().copied().collect();
        let learners: Vec<u64> = cfg.learners.iter().copied().collect();
        let single = |t: ConfChangeType, node_id: u64| ConfChangeSingle {
            r#type: t as i32,
            node_id,
        };
        let mut cc = ConfChangeV2::default();
        if cfg.voters.is_joint() {
            // Explicit leave (an empty change).
        } else {
            let choice = self.rng.random_range(0..4);
            let member_count = voters.len() + learners.len();
            if choice == 0 && member_count < 7 {
                let id = self.next_id;
                self.next_id += 1;
                self.members.insert(id, Member::join(id, &self.cfg));
                cc.changes
                    .push(single(ConfChangeType::ConfChangeAddLearnerNode, id));
            } else if choice == 1 && !learners.is_empty() {
                let id = self.pick(&learners).unwrap();
                cc.changes
                    .push(single(ConfChangeType::ConfChangeAddNode, id));
            } else if choice == 2 && voters.len() > 1 {
                let id = self.pick(&voters).unwrap();
                cc.changes
                    .push(single(ConfChangeType::ConfChangeRemoveNode, id));
            } else if voters.len() > 1 {
                // A joint change: demote or remove a voter and promote a learner.
                let id = self.pick(&voters).unwrap();
                let t = if self.rng.random_bool(0.5) {
                    ConfChangeType::ConfChangeAddLearnerNode
                } else {
                    ConfChangeType::ConfChangeRemoveNode
                };
                cc.changes.push(single(t, id));
                if let Some(p) = self.pick(&learners) {
                    cc.changes
                        .push(single(ConfChangeType::ConfChangeAddNode, p));
                }
                let explicit = self.rng.random_bool(0.5);
                cc.set_transition(if explicit {
                    ConfChangeTransition::JointExplicit
                } else {
                    ConfChangeTransition::JointImplicit
                });
            } else {
                return;
            }
        }
        let _ = self.node(l).propose_conf_change(&cc);
    }

    fn step(&mut self, chaos: bool) {
        self.now += 1;
        for id in self.live() {
            self.node(id).tick();
        }
        self.deliver();
        if chaos {
            self.random_event();
        }
        self.process(if chaos { 0.002 } else { 0.0 });
        self.check_leaders();
    }

    fn heal(&mut self) {
        self.group.clear();
        self.drop_rate = 0.0;
        self.dup_rate = 0.0;
        for id in self.down() {
            self.members.get_mut(&id).unwrap().restart(&self.cfg);
        }
    }

    /// After healing: a leader appears within a bound, and proposals made then are
    /// applied by every member of the configuration.
    fn check_liveness(&mut self) {
        let start = self.now;
        loop {
            assert!(
                self.now - start < LEADER_BOUND,
                "no leader {LEADER_BOUND} ticks after healing:\n{}",
                self.describe()
            );
            self.step(false);
            if self.leader().is_some() {
                break;
            }
        }
        let mut pending: BTreeSet<Vec<u8>> = BTreeSet::new();
        for _ in 0..3 {
            self.next_data += 1;
            pending.insert(self.next_data.to_be_bytes().to_vec());
        }
        let start = self.now;
        // Proposals the current leader accepted; a new leader gets the rest again.
        let mut accepted_by = None;
        let mut accepted: BTreeSet<Vec<u8>> = BTreeSet::new();
        loop {
            assert!(
                self.now - start < COMMIT_BOUND,
                "proposals not applied {COMMIT_BOUND} ticks after healing:\n{}",
                self.describe()
            );
            let Some(l) = self.leader() else {
                self.step(false);
                continue;
            };
            let term = self.node(l).raft.term;
            if accepted_by != Some((l, term)) {
                // A proposal may die with the old leader.
                accepted_by = Some((l, term));
                accepted.clear();
            }
            for d in pending.difference(&accepted.clone()) {
                // A leader refuses proposals while transferring leadership or over its
                // uncommitted-size budget; retry those.
                if self.node(l).propose(d.clone()).is_ok() {
                    accepted.insert(d.clone());
                }
            }
            self.step(false);
            let cs = self.node(l).raft.prs.conf_state();
            let Some(target) = pending
                .iter()
                .map(|d| self.global.data_index.get(d).copied())
                .collect::<Option<Vec<u64>>>()
                .and_then(|v| v.into_iter().max())
            else {
                continue;
            };
            let mut members = cs
                .voters
                .iter()
                .chain(&cs.learners)
                .chain(&cs.voters_outgoing);
            if members.all(|id| self.members[id].sm_index >= target) {
                return;
            }
        }
    }
}

/// Runs one seed and returns how often each fault and feature occurred.
pub fn run_seed(seed: u64) -> BTreeMap<&'static str, u64> {
    let mut sim = Sim::new(seed);
    for _ in 0..CHAOS_STEPS {
        sim.step(true);
    }
    sim.heal();
    sim.check_liveness();
    sim.global.stats
}

fn run_range(seeds: std::ops::Range<u64>) {
    for seed in seeds {
        let r = std::panic::catch_unwind(|| run_seed(seed));
        if let Err(e) = r {
            eprintln!(
                "raft simulation failed for seed {seed}; replay with \
                 DETCD_RAFT_SEED={seed} cargo test --lib raft::tests::sim::replay -- --nocapture"
            );
            std::panic::resume_unwind(e);
        }
    }
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Seeds split into shards so that the test harness runs them in parallel.
fn shard(i: u64, of: u64) {
    if env("DETCD_RAFT_SEED").is_some() {
        return;
    }
    let total = env("DETCD_RAFT_SEEDS").unwrap_or(2000);
    let per = total.div_ceil(of);
    run_range(i * per..((i + 1) * per).min(total));
}

#[test]
fn seeds_shard_0() {
    shard(0, 4);
}

#[test]
fn seeds_shard_1() {
    shard(1, 4);
}

#[test]
fn seeds_shard_2() {
    shard(2, 4);
}

#[test]
fn seeds_shard_3() {
    shard(3, 4);
}

#[test]
fn seeds_exercise_every_fault_and_feature() {
    if env("DETCD_RAFT_SEED").is_some() {
        return;
    }
    let mut total: BTreeMap<&str, u64> = BTreeMap::new();
    for seed in 0..100 {
        for (k, v) in run_seed(seed) {
            *total.entry(k).or_insert(0) += v;
        }
    }
    let wanted = [
        "message lost",
        "message duplicated",
        "partition",
        "2+2 split",
        "crash",
        "crash mid-ready",
        "leader lost unsynced entries",
        "restart",
        "leader elected",
        "snapshot installed",
        "simple change",
        "joint entered",
        "joint left",
        "read served",
        "leadership transfer",
    ];
    eprintln!("faults and features over 100 seeds: {total:?}");
    for w in wanted {
        assert!(
            total.get(w).copied().unwrap_or(0) > 0,
            "no {w:?} in 100 seeds: {total:?}"
        );
    }
}

#[test]
fn replay() {
    if let Some(seed) = env("DETCD_RAFT_SEED") {
        run_range(seed..seed + 1);
    }
}
