//! Linearizability checking of client histories (see `shared/HISTORY.md`).
//!
//! [`linearizable`] splits a history per key where the model allows it ([`partition`]),
//! narrows what `info` operations may do ([`info`]) and runs a Wing–Gong–Lowe search on
//! each part ([`wgl`]); a failure comes back as a [`Report`] naming the window of operations
//! no order gets past and why each candidate failed in each state reached. [`watch`] checks
//! recorded watch streams against the history; [`html`] draws a check. [`gen`] makes
//! histories of a simulated store, with injected anomalies, and [`brute`] is the naive
//! checker the fast one is tested against.
//!
//! With the `client` feature, [`client`] is the register client both fault runners drive
//! and [`fault`] names the faults they inject.
//!
//! The checking reads no clock and starts no thread, so the simulator can call it; time
//! limits come in as a [`Budget`]:
//!
//! ```text
//! let h = detcd_check::parse(reader)?;                 // Err(ParseError { line, msg })
//! let budget = Budget::Steps(10_000_000);              // or Budget::Deadline(Box::new(..))
//! let options = Options { budget, memory: 1 << 30 };   // memo bytes
//! match detcd_check::linearizable(&h, Model::Kv, options)? { .. }
//! ```
//!
//! What makes it fast on etcd histories: every `ok` operation reports a revision and each
//! revision is made by one write, so [`order`] walks the revisions upwards and only picks
//! which `info` write made each revision no `ok` write reports (under `etcd` over all keys;
//! under `kv` per key, where other keys' writes may make any revision), proving what it
//! finds by replay. Only when it gives up does the search run: revisions never go back, so
//! [`infer`] first finds stale reads without search; the kv model keeps versions and
//! revisions only when the history reports them ([`model::Kv::observing`]); writes that
//! report a revision are linearized in revision order; a read that fits the current state
//! is never delayed ([`wgl`]); the etcd model is checked key by key with the kv model,
//! whose orders usually yield a linearization of the whole history ([`witness`]), before
//! its own search over all keys. Known limit: those searches are exponential in the worst
//! case (many `info` writes, histories without revisions); such a check ends in "unknown"
//! at the time or memory bound, naming the window.

pub mod brute;
pub mod budget;
#[cfg(feature = "client")]
pub mod client;
pub mod fault;
pub mod fingerprint;
pub mod gen;
pub mod history;
pub mod html;
pub mod infer;
pub mod info;
pub mod jepsen;
pub mod lock;
pub mod memo;
pub mod model;
pub mod order;
pub mod partition;
pub mod report;
pub mod watch;
pub mod wgl;
pub mod witness;

pub use budget::{Budget, Limit, Meter};
pub use history::{parse, History, ParseError};
pub use model::Model;
pub use report::Report;

use model::{Etcd, Kv, Register, SeqModel};
use partition::Partition;
use wgl::Outcome;

/// Settings of one check.
#[derive(Debug)]
pub struct Options {
    pub budget: Budget,
    /// Bytes the search's memo (and its stack of open choices) may hold ([`budget`]).
    pub memory: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            budget: Budget::Unlimited,
            memory: budget::DEFAULT_MEMORY_BYTES,
        }
    }
}

/// The answer of a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable(Box<Report>),
    /// A limit was reached first; says nothing either way, but says where it was hard.
    Unknown {
        /// The partition being searched when it ran out.
        key: Option<String>,
        steps: u64,
        limit: Limit,
        /// Operations in that partition, and how many of them have an unknown outcome.
        ops: usize,
        info: usize,
        /// The operations (history indices) the search was stuck on ([`wgl::Outcome`]).
        window: Vec<usize>,
    },
}

impl Verdict {
    /// The word the binary prints.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Linearizable => "linearizable",
            Verdict::NotLinearizable(_) => "not linearizable",
            Verdict::Unknown { .. } => "unknown",
        }
    }

    /// For an unknown verdict, which limit ended it and which part of `h` made the search
    /// hard, in one line.
    pub fn why_unknown(&self, h: &History) -> Option<String> {
        let Verdict::Unknown {
            key,
            steps,
            limit,
            ops,
            info,
            window,
        } = self
        else {
            return None;
        };
        let part = key
            .as_ref()
            .map_or("the history".into(), |k| format!("key {k}"));
        let events = |i: usize| {
            let op = &h.ops[i];
            (op.invoke, op.complete.unwrap_or(op.invoke))
        };
        let first = window.iter().map(|&i| events(i).0).min().unwrap_or(0);
        let last = window.iter().map(|&i| events(i).1).max().unwrap_or(0);
        Some(format!(
            "{} reached after {steps} steps in {part} ({ops} operations, {info} with unknown \
             outcome); stuck on {} operations between events {first} and {last}",
            limit.name(),
            window.len()
        ))
    }
}

/// Rejects histories with operations the model does not define.
fn validate(h: &History, model: Model) -> Result<(), ParseError> {
    match h.ops.iter().find(|op| !model.supports(op.call)) {
        Some(op) => Err(ParseError::new(
            op.line,
            format!(
                "model {} has no {}",
                model.name(),
                history::call_name(op.call)
            ),
        )),
        None => Ok(()),
    }
}

/// Checks one partition with one model.
fn check_part<M: SeqModel>(
    h: &History,
    kind: Model,
    model: &M,
    p: &Partition,
    meter: &mut Meter,
) -> Option<Verdict> {
    let outcome = wgl::search(h, model, &p.ops, meter);
    verdict(h, kind, model, p, meter, outcome)
}

/// The verdict on partition `p` from the search's `outcome`; `None` when linearizable.
fn verdict<M: SeqModel>(
    h: &History,
    kind: Model,
    model: &M,
    p: &Partition,
    meter: &Meter,
    outcome: Outcome<M::State>,
) -> Option<Verdict> {
    let key = p.key.map(|k| h.keys[k as usize].clone());
    match outcome {
        Outcome::Linearizable { .. } => None,
        Outcome::NotLinearizable(f) => Some(Verdict::NotLinearizable(Box::new(Report::new(
            h, kind, model, key, &f,
        )))),
        Outcome::Unknown { window } => Some(stuck(h, p, meter, window)),
    }
}

/// The verdict on partition `p` when the meter ran out with the search stuck on `window`.
fn stuck(h: &History, p: &Partition, meter: &Meter, window: Vec<usize>) -> Verdict {
    Verdict::Unknown {
        key: p.key.map(|k| h.keys[k as usize].clone()),
        steps: meter.steps(),
        limit: meter.spent().expect("a search stops early only at a limit"),
        ops: p.ops.len(),
        info: p
            .ops
            .iter()
            .filter(|&&i| h.ops[i].status == history::Status::Info)
            .count(),
        window,
    }
}

/// For the etcd model on `ops` (all relevant operations), what the kv model decides key by
/// key: not linearizable (the kv model checks a key as the etcd model does, but without
/// the other keys or create revisions, so no etcd order passes where no kv order does),
/// unknown, or linearizable when its orders yield a linearization of the whole history
/// ([`witness`]); `None` when they do not.
fn per_key(h: &History, ops: &[usize], meter: &mut Meter) -> Option<Verdict> {
    let mut orders = Vec::new();
    let passed = witness::Passed::new(h, ops);
    for p in partition::partitions(h, Model::Kv) {
        let kv = Kv::observing(h, &p.ops);
        let after = witness::gates(h, &passed, &p.ops);
        match wgl::search_after(h, &kv, &p.ops, &after, meter) {
            Outcome::Linearizable { order } => orders.push(order),
            outcome => return verdict(h, Model::Kv, &kv, &p, meter, outcome),
        }
    }
    witness::build(h, ops, &orders).then_some(Verdict::Linearizable)
}

/// Checks `h` against `model`; an error names an operation the model does not define.
///
/// A failing partition decides "not linearizable" even when another ran out of budget.
pub fn linearizable(h: &History, model: Model, options: Options) -> Result<Verdict, ParseError> {
    validate(h, model)?;
    let placed = model
        .checks_revisions()
        .then(|| info::place_by_revision(h))
        .flatten();
    let h = placed.as_ref().unwrap_or(h);
    let parts = partition::partitions(h, model);
    // Refutations without search first, so that no search of another part comes first.
    for p in &parts {
        if let Some(proof) = infer::refute(h, model, &p.ops) {
            let key = p.key.map(|k| h.keys[k as usize].clone());
            let report = Report::proof(h, model, key, &proof);
            return Ok(Verdict::NotLinearizable(Box::new(report)));
        }
    }
    let mut meter = Meter::new(options.budget, options.memory);
    let mut unknown = None;
    for p in parts {
        let verdict = match model {
            Model::Register => check_part(h, model, &Register, &p, &mut meter),
            Model::Kv => match order::find(h, &p.ops, model, &mut meter) {
                order::Found::Order(_) => None,
                order::Found::Spent { window } => Some(stuck(h, &p, &meter, window)),
                order::Found::GaveUp => {
                    check_part(h, model, &Kv::observing(h, &p.ops), &p, &mut meter)
                }
            },
            Model::Etcd => match order::find(h, &p.ops, model, &mut meter) {
                order::Found::Order(_) => None,
                order::Found::Spent { window } => Some(stuck(h, &p, &meter, window)),
                order::Found::GaveUp => match per_key(h, &p.ops, &mut meter) {
                    Some(Verdict::Linearizable) => None,
                    Some(v) => Some(v),
                    None => check_part(h, model, &Etcd, &p, &mut meter),
                },
            },
        };
        match verdict {
            Some(v @ Verdict::NotLinearizable(_)) => return Ok(v),
            Some(v) => unknown = unknown.or(Some(v)),
            None => {}
        }
    }
    Ok(unknown.unwrap_or(Verdict::Linearizable))
}

/// Compact histories for unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::history::{from_events, Event, History};

    /// One event per line: `process type f key [value|nil] [expect=V|nil] [rev=N] [mod=N]
    /// [ver=N]`, e.g. `2 ok get k1 v1 ver=3` or `1 invoke cas k1 v2 expect=nil`.
    pub fn history(spec: &str) -> History {
        let events: Vec<Event> = spec
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(event)
            .collect();
        from_events(&events).expect("test history is well formed")
    }

    fn event(line: &str) -> Event {
        let t: Vec<&str> = line.split_whitespace().collect();
        let value = |s: &str| (s != "nil").then(|| s.to_string());
        let mut e = Event {
            process: t[0].parse().expect("process number"),
            kind: t[1].into(),
            f: t[2].into(),
            key: Some(t[3].into()),
            ..Event::default()
        };
        for word in &t[4..] {
            let number = |s: &str| Some(s.parse::<u64>().expect("a number"));
            match word.split_once('=') {
                Some(("expect", v)) => e.expect = Some(value(v)),
                Some(("rev", n)) => e.revision = number(n),
                Some(("mod", n)) => e.mod_revision = number(n),
                Some(("ver", n)) => e.version = number(n),
                Some((other, _)) => panic!("unknown field {other}"),
                None => e.value = value(word),
            }
        }
        e
    }
}
