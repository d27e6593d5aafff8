//! Generated histories for tests and benchmarks, deterministic from a seed.
//!
//! Processes run operations against one linearizable in-memory store (an etcd-like map under
//! one revision counter): each operation is invoked, takes effect at a random later moment
//! and completes later still, interleaved at random with the other processes. A crash ends
//! an operation with `info` or with no completion at all, either before or after it took
//! effect, and its process continues under a new number. Written values are unique.
//!
//! An anomaly is injected afterwards by rewriting reads where the real-time order makes it
//! certain no linearization exists, so a checker must find every injected one.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::history::Event;
use super::model::etcd::INITIAL_REVISION;

/// Most concurrent processes a generated history may have.
pub const MAX_PROCESSES: usize = 1024;

/// Operations the processes issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// get / put / cas.
    Register,
    /// get / put / delete / cas.
    Kv,
}

/// A fault injected into an otherwise linearizable history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anomaly {
    /// One read returns a value overwritten before it was invoked.
    StaleRead,
    /// A write completes ok, but later reads see the value before it.
    LostWrite,
    /// A write takes effect again some time after the next one: from then on reads see it.
    DuplicatedWrite,
    /// A cas succeeds although the value it expected was overwritten before it was invoked.
    WrongCas,
    /// One read returns a value nobody wrote.
    Phantom,
}

impl Anomaly {
    pub const ALL: [Anomaly; 5] = [
        Anomaly::StaleRead,
        Anomaly::LostWrite,
        Anomaly::DuplicatedWrite,
        Anomaly::WrongCas,
        Anomaly::Phantom,
    ];
    /// Each anomaly, and none (first): the cases a checker test runs.
    pub const OR_NONE: [Option<Anomaly>; 6] = [
        None,
        Some(Anomaly::StaleRead),
        Some(Anomaly::LostWrite),
        Some(Anomaly::DuplicatedWrite),
        Some(Anomaly::WrongCas),
        Some(Anomaly::Phantom),
    ];
}

/// Everything that decides a generated history.
#[derive(Clone, Copy, Debug)]
pub struct GenConfig {
    pub seed: u64,
    pub ops: usize,
    pub keys: usize,
    pub processes: usize,
    pub workload: Workload,
    /// Chance per step, in thousandths, that an operation in flight crashes.
    pub crash_per_mille: u32,
    pub anomaly: Option<Anomaly>,
}

impl GenConfig {
    /// A history of `ops` operations with defaults for the rest.
    pub fn new(seed: u64, ops: usize, keys: usize, workload: Workload) -> GenConfig {
        GenConfig {
            seed,
            ops,
            keys,
            processes: 8,
            workload,
            crash_per_mille: 2,
            anomaly: None,
        }
    }
}

/// A key's contents after one write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Snapshot {
    value: Option<String>,
    create_revision: u64,
    mod_revision: u64,
    version: u64,
}

/// What the generator knows about one operation.
#[derive(Clone, Debug)]
struct Track {
    key: usize,
    invoke: usize,
    /// Position of an `ok` completion.
    ok_at: Option<usize>,
    read: bool,
    cas: bool,
    /// For reads: the write (track index) whose value they saw; `None` before any write.
    observed: Option<usize>,
    /// For writes that took effect: the key afterwards.
    wrote: Option<Snapshot>,
}

/// An operation in flight.
struct Flight {
    track: usize,
    f: &'static str,
    expect: Option<Option<String>>,
    value: Option<String>,
    /// The completion, once the operation took effect.
    done: Option<Event>,
}

impl Flight {
    /// An event of this operation on key number `key`, with its arguments.
    fn event(&self, process: u64, kind: &str, key: usize) -> Event {
        Event {
            process,
            kind: kind.into(),
            f: self.f.into(),
            key: Some(format!("k{key}")),
            value: self.value.clone(),
            expect: self.expect.clone(),
            ..Event::default()
        }
    }
}

struct Sim {
    rng: ChaCha8Rng,
    cfg: GenConfig,
    events: Vec<Event>,
    tracks: Vec<Track>,
    /// Per key: the current contents and the writes that took effect, in order.
    store: Vec<(Snapshot, Vec<usize>)>,
    revision: u64,
    time: u64,
    next_value: u64,
}

impl Sim {
    fn emit(&mut self, mut e: Event) -> usize {
        e.index = self.events.len() as u64;
        e.time = self.time;
        self.events.push(e);
        self.events.len() - 1
    }

    fn invoke(&mut self, process: u64) -> Flight {
        let key = self.rng.random_range(0..self.cfg.keys);
        let roll = self.rng.random_range(0..100);
        let delete_share = if self.cfg.workload == Workload::Kv {
            10
        } else {
            0
        };
        let mut flight = Flight {
            track: self.tracks.len(),
            f: "get",
            expect: None,
            value: None,
            done: None,
        };
        if roll >= 45 {
            self.next_value += 1;
            flight.value = Some(self.next_value.to_string());
            flight.f = "put";
        }
        if roll >= 75 {
            flight.f = "cas";
            let (current, writes) = &self.store[key];
            let pick = self.rng.random_range(0..=writes.len());
            let expect = match writes.get(pick) {
                Some(&w) if self.rng.random_bool(0.5) => {
                    self.tracks[w].wrote.as_ref().and_then(|s| s.value.clone())
                }
                _ => current.value.clone(),
            };
            flight.expect = Some(expect);
        }
        if roll >= 100 - delete_share {
            (flight.f, flight.value, flight.expect) = ("delete", None, None);
        }
        let invoke = self.emit(flight.event(process, "invoke", key));
        self.tracks.push(Track {
            key,
            invoke,
            read: flight.f == "get",
            cas: flight.f == "cas",
            ok_at: None,
            observed: None,
            wrote: None,
        });
        flight
    }

    /// Applies the operation to the store and prepares its completion.
    fn apply(&mut self, process: u64, flight: &mut Flight) {
        let key = self.tracks[flight.track].key;
        let (current, writes) = &mut self.store[key];
        let mut done = flight.event(process, "ok", key);
        let writes_now = match flight.f {
            "get" => {
                self.tracks[flight.track].observed = writes.last().copied();
                done.value.clone_from(&current.value);
                if current.value.is_some() {
                    done.mod_revision = Some(current.mod_revision);
                    done.create_revision = Some(current.create_revision);
                    done.version = Some(current.version);
                }
                false
            }
            "delete" => current.value.is_some(),
            "cas" if flight.expect.as_ref() != Some(&current.value) => {
                done.kind = "fail".into();
                false
            }
            _ => true,
        };
        if writes_now {
            self.revision += 1;
            *current = match &flight.value {
                Some(v) => Snapshot {
                    value: Some(v.clone()),
                    create_revision: if current.value.is_some() {
                        current.create_revision
                    } else {
                        self.revision
                    },
                    mod_revision: self.revision,
                    version: current.version + 1,
                },
                None => Snapshot::default(),
            };
            writes.push(flight.track);
            self.tracks[flight.track].wrote = Some(current.clone());
        }
        done.revision = Some(self.revision);
        flight.done = Some(done);
    }

    /// Advances one random process by one step.
    fn step(&mut self, slots: &mut [(u64, Option<Flight>)], invoked: &mut usize) {
        self.time += self.rng.random_range(1..=100);
        let stride = slots.len() as u64;
        let p = self.rng.random_range(0..slots.len());
        let (process, slot) = &mut slots[p];
        let Some(mut flight) = slot.take() else {
            if *invoked < self.cfg.ops {
                *invoked += 1;
                *slot = Some(self.invoke(*process));
            }
            return;
        };
        if self.rng.random_range(0..1000) < self.cfg.crash_per_mille {
            if self.rng.random_bool(0.5) && flight.done.is_none() {
                self.apply(*process, &mut flight);
            }
            if self.rng.random_bool(0.5) {
                let f = flight.f.into();
                self.emit(Event {
                    process: *process,
                    kind: "info".into(),
                    f,
                    error: Some("crashed".into()),
                    ..Event::default()
                });
            }
            *process += stride;
            return;
        }
        match flight.done.take() {
            None => {
                self.apply(*process, &mut flight);
                *slot = Some(flight);
            }
            Some(done) => {
                let ok = done.kind == "ok";
                let at = self.emit(done);
                if ok {
                    self.tracks[flight.track].ok_at = Some(at);
                }
            }
        }
    }
}

/// Generates a history as events in order; panics when the anomaly has no place.
pub fn generate(cfg: &GenConfig) -> Vec<Event> {
    try_generate(cfg).unwrap_or_else(|| {
        panic!(
            "no place to inject {:?} in {cfg:?}: use more operations",
            cfg.anomaly
        )
    })
}

/// Generates a history as events in order; `None` when no place in it makes the anomaly
/// certain (e.g. a lost write needs a read that began after the write returned and saw it).
pub fn try_generate(cfg: &GenConfig) -> Option<Vec<Event>> {
    assert!(
        (1..=MAX_PROCESSES).contains(&cfg.processes) && cfg.keys > 0,
        "processes {} must be in 1..={MAX_PROCESSES}, keys {} positive",
        cfg.processes,
        cfg.keys
    );
    let mut sim = Sim {
        rng: ChaCha8Rng::seed_from_u64(cfg.seed),
        cfg: *cfg,
        events: Vec::with_capacity(2 * cfg.ops),
        tracks: Vec::with_capacity(cfg.ops),
        store: vec![(Snapshot::default(), Vec::new()); cfg.keys],
        revision: INITIAL_REVISION,
        time: 0,
        next_value: 0,
    };
    let mut slots: Vec<(u64, Option<Flight>)> =
        (0..cfg.processes as u64).map(|p| (p, None)).collect();
    let mut invoked = 0;
    while invoked < cfg.ops || slots.iter().any(|(_, f)| f.is_some()) {
        sim.step(&mut slots, &mut invoked);
    }
    if let Some(anomaly) = cfg.anomaly {
        inject(&mut sim, anomaly).then_some(())?;
    }
    Some(sim.events)
}

/// Rewrites the completion of read `r` to show `snapshot`.
fn show(sim: &mut Sim, r: usize, snapshot: &Snapshot) {
    let at = sim.tracks[r].ok_at.expect("only ok reads are rewritten");
    let e = &mut sim.events[at];
    e.value.clone_from(&snapshot.value);
    let live = snapshot.value.is_some();
    e.mod_revision = live.then_some(snapshot.mod_revision);
    e.create_revision = live.then_some(snapshot.create_revision);
    e.version = live.then_some(snapshot.version);
}

/// Whether `a` completed ok before `b` was invoked (so every linearization orders them).
fn before(sim: &Sim, a: usize, b: usize) -> bool {
    sim.tracks[a]
        .ok_at
        .is_some_and(|at| at < sim.tracks[b].invoke)
}

/// Injects `anomaly` at the first place that makes it certain; false when there is none.
fn inject(sim: &mut Sim, anomaly: Anomaly) -> bool {
    if anomaly == Anomaly::Phantom {
        let Some(r) =
            (0..sim.tracks.len()).find(|&r| sim.tracks[r].read && sim.tracks[r].ok_at.is_some())
        else {
            return false;
        };
        let unwritten = (sim.next_value + 1).to_string();
        let at = sim.tracks[r].ok_at.expect("found an ok read");
        sim.events[at].value = Some(unwritten);
        return true;
    }
    for key in 0..sim.store.len() {
        let writes = sim.store[key].1.clone();
        for pair in writes.windows(2) {
            let (w0, w1) = (pair[0], pair[1]);
            let first = sim.tracks[w0]
                .wrote
                .clone()
                .expect("applied writes have a snapshot");
            if first.value.is_none() || !before(sim, w0, w1) {
                continue;
            }
            let is_read = |r: usize| {
                sim.tracks[r].key == key && sim.tracks[r].read && sim.tracks[r].ok_at.is_some()
            };
            let saw_w1 = |r: &usize| sim.tracks[*r].observed == Some(w1);
            let after_w1: Vec<usize> = (0..sim.tracks.len())
                .filter(|&r| is_read(r) && before(sim, w1, r))
                .collect();
            let saw_after: Vec<usize> = after_w1.iter().copied().filter(saw_w1).collect();
            if anomaly == Anomaly::WrongCas {
                // An ok cas invoked after w1 returned, now expecting w0's value.
                let late_cas = (0..sim.tracks.len()).find(|&c| {
                    let t = &sim.tracks[c];
                    t.key == key
                        && t.cas
                        && t.wrote.is_some()
                        && t.ok_at.is_some()
                        && before(sim, w1, c)
                });
                let Some(c) = late_cas else { continue };
                let ends = [Some(sim.tracks[c].invoke), sim.tracks[c].ok_at];
                for at in ends.into_iter().flatten() {
                    sim.events[at].expect = Some(first.value.clone());
                }
                return true;
            }
            let victims: Vec<usize> = match anomaly {
                Anomaly::StaleRead => after_w1.last().copied().into_iter().collect(),
                Anomaly::LostWrite if saw_after.is_empty() => Vec::new(),
                Anomaly::LostWrite => (0..sim.tracks.len())
                    .filter(|&r| is_read(r) && saw_w1(&r))
                    .collect(),
                Anomaly::DuplicatedWrite => saw_after[saw_after.len() / 2..].to_vec(),
                Anomaly::WrongCas | Anomaly::Phantom => unreachable!("handled above"),
            };
            if victims.is_empty() {
                continue;
            }
            for r in victims {
                show(sim, r, &first);
            }
            return true;
        }
    }
    false
}

/// Writes a single-key register history as a Jepsen `jepsen.util` log (values must be
/// integers, as generated).
pub fn jepsen_log(events: &[Event]) -> String {
    let nil = |v: &Option<String>| v.clone().unwrap_or_else(|| "nil".into());
    let mut out = String::new();
    let mut invoked: std::collections::BTreeMap<u64, &Event> = std::collections::BTreeMap::new();
    for e in events {
        let call = *invoked.entry(e.process).or_insert(e);
        let (f, value) = match e.f.as_str() {
            "get" => (
                "read",
                if e.kind == "ok" {
                    nil(&e.value)
                } else {
                    "nil".into()
                },
            ),
            "put" => ("write", nil(&call.value)),
            "cas" => (
                "cas",
                format!(
                    "[{} {}]",
                    nil(call.expect.as_ref().expect("cas has expect")),
                    nil(&call.value)
                ),
            ),
            other => panic!("a Jepsen register log has no {other}"),
        };
        if e.kind != "invoke" {
            invoked.remove(&e.process);
        }
        out.push_str(&format!(
            "INFO  jepsen.util - {}\t:{}\t:{f}\t{value}\n",
            e.process, e.kind
        ));
    }
    out
}
