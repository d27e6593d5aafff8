//! A linearization of an `etcd` history searched for along its revisions.
//!
//! Each `ok` operation of an etcd history reports the store revision, and each revision is
//! made by exactly one write, so the order is given but for the revisions no `ok` put or
//! cas reports (the gaps): each was made by an `info` write, or by an `ok` delete reporting
//! it that found its key there. [`find`] walks the revisions upwards under the etcd model:
//! the write that made a revision, then the reads and the deletes that changed nothing at
//! it; at a gap it picks the write that made it, depth first, backtracking when the model
//! or a later read rejects the pick. Three things keep that search short:
//!
//! - `info` writes that no operation can tell apart (same key and kind, same expectation,
//!   a value nobody reads or expects) are one class, used in invocation order; a written
//!   value nobody reads is stored as one hidden value, so states that differ only there
//!   are one;
//! - a pick is checked at once against the next read of its key (a read reporting an older
//!   mod_revision forbids it, one reporting this revision fixes it, and the key's version
//!   there bounds how many writes it may take before), and the picks that read needs
//!   soonest are tried first;
//! - (revision, state, `info` writes used) already explored is not explored again.
//!
//! Under the `kv` model the operations are one key's, and a write to another key, unseen,
//! may make any gap too: that is one more pick, tried after the writes a read needs and
//! before those none does. A key among many leaves most revisions to the others, so the
//! walk runs only where gaps are no more than the key's operations.
//!
//! A linearization found is replayed under the model (`etcd` or `kv`) and checked against
//! real time ([`witness`]), so a success is a proof. Giving up proves nothing: the caller
//! then searches as before.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::budget::Meter;
use super::fingerprint;
use super::history::{Call, History, Id, Op, Status, Val};
use super::model::etcd::{Rec, INITIAL_REVISION};
use super::model::{Etcd, EtcdState, Kv, Model, SeqModel};
use super::witness;

/// The value a state holds for a write whose value no operation reads or expects.
const HIDDEN: Id = Id::MAX;

/// Steps [`find`] may take, per revision and operation, before it gives up on its own (the
/// meter may end it earlier): enough for the backtracking of linearizable histories, short
/// of the exponential walks that a history with an anomaly sends it on.
const STEPS_PER_OP: u64 = 8;

/// The urgency of a write that the next read of its key does not need (or that no read
/// follows): such picks are tried latest invoked first, as a write whose outcome is
/// unknown mostly took effect soon after it was sent, if at all.
const UNNEEDED: u64 = u64::MAX;

/// How [`find`] ended.
#[derive(Debug)]
pub enum Found {
    /// A linearization (history indices) that replays and respects real time.
    Order(Vec<usize>),
    /// None found within its own step bound, or none exists; the caller decides.
    GaveUp,
    /// The meter ran out; `window` holds the operations around the revision it was stuck
    /// at furthest (history indices).
    Spent { window: Vec<usize> },
}

/// A write that may make a gap.
#[derive(Clone, Copy, Debug)]
enum Pick {
    /// An `ok` delete reporting the gap (history index).
    Delete(usize),
    /// The next unused member of an `info` class.
    Info(usize),
    /// (One key alone) a write to some other key made the gap.
    Skip,
}

/// A gap and what is left to try there.
struct Choice {
    revision: u64,
    picks: Vec<Pick>,
    /// The keys the picks write.
    keys: Vec<Id>,
    next: usize,
    state: EtcdState,
    order: usize,
    trail: usize,
    used: u128,
}

/// What an `info` write must share with another to be interchangeable with it: key, kind,
/// expectation, and the value if some operation reads or expects it.
type Class = (Id, u8, Option<Val>, Id);

/// The history rearranged by revision.
struct Plan<'a> {
    h: &'a History,
    /// Operations as the search steps them: written values nobody observes hidden.
    steps: HashMap<usize, Op>,
    /// Revision -> the put or cas that reports it.
    makers: BTreeMap<u64, usize>,
    /// Revision -> the other `ok` operations reporting it (reads, deletes), by invocation.
    at: BTreeMap<u64, Vec<usize>>,
    /// Per `info` class, its members by invocation, with the revision the store had passed
    /// when each was invoked (it cannot make that one or an earlier one).
    classes: Vec<Vec<(u64, usize)>>,
    /// Per `info` class, its key and whether it deletes.
    class_of: Vec<(Id, bool)>,
    passed: witness::Passed,
    /// Per key: its `ok` reads (header revision, history index) by revision.
    reads: BTreeMap<Id, Vec<(u64, usize)>>,
    /// Per key: the revisions its fixed puts and cas made, ascending.
    puts: BTreeMap<Id, Vec<u64>>,
    /// Per key: its fixed cas (revision, expectation), by revision.
    cas: BTreeMap<Id, Vec<(u64, Val)>>,
    /// Per (key, value): the revisions fixed writes of it made, ascending.
    writes: BTreeMap<(Id, Id), Vec<u64>>,
    /// Per key: the revisions its `ok` deletes report, ascending.
    deletes: BTreeMap<Id, Vec<u64>>,
    /// Per key: the revisions its `ok` deletes that found it missing report (a put or
    /// cas made that revision), ascending.
    noops: BTreeMap<Id, Vec<u64>>,
    /// (key, value) that some `info` put or cas without a revision may write -> the lowest
    /// revision such a write may make, less one.
    unplaced: BTreeMap<(Id, Id), u64>,
    /// Per key: the class of its `info` deletes.
    deletes_of: BTreeMap<Id, usize>,
    last: u64,
    /// Whether the operations are one key's alone (the `kv` model): other keys' writes,
    /// unseen, may make any gap.
    alone: bool,
}

impl<'a> Plan<'a> {
    /// `None` when the history is not of the shape the search needs: an `ok` operation
    /// without a revision, two writes reporting one revision, more gaps than writes that
    /// could fill them.
    fn new(h: &'a History, ops: &[usize], alone: bool) -> Option<Plan<'a>> {
        if alone && few_own_revisions(h, ops) {
            return None;
        }
        let mut observed: BTreeSet<(Id, Id)> = BTreeSet::new();
        for &i in ops {
            let op = &h.ops[i];
            match op.call {
                Call::Get => observed.extend(op.out.value.map(|v| (op.key, v))),
                Call::Cas { expect, .. } => observed.extend(expect.map(|v| (op.key, v))),
                _ => {}
            }
        }
        let mut plan = Plan {
            h,
            steps: HashMap::new(),
            makers: BTreeMap::new(),
            at: BTreeMap::new(),
            classes: Vec::new(),
            class_of: Vec::new(),
            passed: witness::Passed::new(h, ops),
            reads: BTreeMap::new(),
            puts: BTreeMap::new(),
            cas: BTreeMap::new(),
            writes: BTreeMap::new(),
            deletes: BTreeMap::new(),
            noops: BTreeMap::new(),
            unplaced: BTreeMap::new(),
            deletes_of: BTreeMap::new(),
            last: INITIAL_REVISION,
            alone,
        };
        let mut class_of: BTreeMap<Class, usize> = BTreeMap::new();
        let mut writers = 0u64;
        for &i in ops {
            let op = &h.ops[i];
            let mut step = op.clone();
            let shown = |v: Id| {
                if observed.contains(&(op.key, v)) {
                    v
                } else {
                    HIDDEN
                }
            };
            let kind = match &mut step.call {
                Call::Put { value } => {
                    *value = shown(*value);
                    0
                }
                Call::Cas { value, .. } => {
                    *value = shown(*value);
                    1
                }
                Call::Delete => 2,
                Call::Get => 3,
            };
            let revision = op.out.revision;
            match (op.status, revision) {
                (Status::Ok, None) => return None,
                // Read back with a mod_revision: placed (info rule 4).
                (Status::Info, Some(r)) if kind < 2 => {
                    plan.makers.insert(r, i).is_none().then_some(())?;
                }
                (Status::Info, _) if kind < 3 => {
                    let class = match step.call {
                        Call::Put { value } => (op.key, 0, None, value),
                        Call::Cas { expect, value } => (op.key, 1, Some(expect), value),
                        _ => (op.key, 2, None, 0),
                    };
                    let next = class_of.len();
                    let c = *class_of.entry(class).or_insert(next);
                    if c == plan.classes.len() {
                        plan.classes.push(Vec::new());
                        plan.class_of.push((op.key, kind == 2));
                    }
                    let passed = plan.passed.at(op.invoke);
                    plan.classes[c].push((passed, i));
                    match written(op.call).flatten() {
                        Some(v) => {
                            let earliest = plan.unplaced.entry((op.key, v)).or_insert(u64::MAX);
                            *earliest = (*earliest).min(passed);
                        }
                        None => {
                            plan.deletes_of.insert(op.key, c);
                        }
                    }
                    writers += 1;
                }
                (Status::Info, _) => {}
                (_, Some(r)) if kind < 2 => {
                    plan.makers.insert(r, i).is_none().then_some(())?;
                }
                (_, Some(r)) => {
                    plan.at.entry(r).or_default().push(i);
                    writers += u64::from(kind == 2);
                    if kind == 2 {
                        plan.deletes.entry(op.key).or_default().push(r);
                    }
                    if kind == 3 {
                        plan.reads.entry(op.key).or_default().push((r, i));
                    }
                }
                (_, None) => {}
            }
            if let Some(r) = revision {
                plan.last = plan.last.max(r);
            }
            plan.steps.insert(i, step);
        }
        for (&r, &i) in &plan.makers {
            let op = &h.ops[i];
            plan.puts.entry(op.key).or_default().push(r);
            if let Call::Cas { expect, .. } = op.call {
                plan.cas.entry(op.key).or_default().push((r, expect));
            }
            if let Some(Some(v)) = written(op.call) {
                plan.writes.entry((op.key, v)).or_default().push(r);
            }
        }
        for (&key, deletes) in &mut plan.deletes {
            deletes.sort_unstable();
            let noops = deletes.iter().filter(|r| plan.makers.contains_key(r));
            plan.noops.insert(key, noops.copied().collect());
        }
        let gaps = (plan.last - INITIAL_REVISION).checked_sub(plan.makers.len() as u64)?;
        if !alone && gaps > writers {
            return None;
        }
        for same in plan.at.values_mut() {
            same.sort_unstable_by_key(|&i| h.ops[i].invoke);
        }
        for reads in plan.reads.values_mut() {
            reads.sort_unstable_by_key(|&(r, i)| (r, h.ops[i].invoke));
        }
        Some(plan)
    }

    /// What the next read of `key` at or after revision `g` (and its next cas after `g`)
    /// say of a write leaving `rec` there at `g`: `None` when they rule the write out, else
    /// how soon that read needs it: the revision by which it must be made, or [`UNNEEDED`].
    fn urgency(&self, key: Id, g: u64, rec: Option<&Rec>, cursor: &[usize]) -> Option<u64> {
        let value = rec.map(|r| r.value);
        // The next cas of the key needs its expectation back by then.
        let cas = self.cas.get(&key).map_or(&[][..], Vec::as_slice);
        if let Some(&(r, expect)) = cas.get(cas.partition_point(|&(r, _)| r <= g)) {
            if expect != value && !self.may_write(key, expect, g, r, cursor) {
                return None;
            }
        }
        // A delete finding the key missing at `d`, or reporting `g` itself, needs it gone.
        let deletes = self.deletes.get(&key).map_or(&[][..], Vec::as_slice);
        let noops = self.noops.get(&key).map_or(&[][..], Vec::as_slice);
        let next_noop = noops.get(noops.partition_point(|&d| d < g)).copied();
        let noop = deletes.binary_search(&g).ok().map(|_| g).or(next_noop);
        if let Some(d) = noop {
            if rec.is_some() && !self.may_write(key, None, g, d, cursor) {
                return None;
            }
        }
        let reads = self.reads.get(&key).map_or(&[][..], Vec::as_slice);
        let Some(&(r, i)) = reads.get(reads.partition_point(|&(r, _)| r < g)) else {
            return Some(UNNEEDED);
        };
        let out = &self.h.ops[i].out;
        let Some(value) = out.value else {
            // The key missing by then: a delete is needed by `r`.
            let deleted =
                deletes.partition_point(|&d| d <= r) > deletes.partition_point(|&d| d <= g);
            return match rec {
                None if !deleted => Some(r),
                None => Some(UNNEEDED),
                Some(_) => self
                    .may_write(key, None, g, r + 1, cursor)
                    .then_some(UNNEEDED),
            };
        };
        let (Some(m), Some(c)) = (out.mod_revision, out.create_revision) else {
            return Some(UNNEEDED);
        };
        if m < g {
            return None;
        }
        if m == g {
            let fits = rec.is_some_and(|rec| {
                rec.value == value
                    && rec.create_revision == c
                    && out.version.is_none_or(|v| v == rec.version)
            });
            return fits.then_some(0);
        }
        if c > g {
            // Another life of the key: whatever this write did is gone by `c`.
            return match rec {
                None => Some(c),
                Some(_) => self.may_write(key, None, g, c, cursor).then_some(UNNEEDED),
            };
        }
        // The key lives from `c` through `m`: every write to it between is a put.
        let rec = rec.filter(|rec| rec.create_revision == c)?;
        let puts = self.puts.get(&key).map_or(&[][..], Vec::as_slice);
        let later = puts.partition_point(|&p| p <= m) - puts.partition_point(|&p| p <= g);
        let fits = out.version.is_none_or(|v| rec.version + later as u64 <= v);
        fits.then_some(m)
    }

    /// The operation (history index) `pick` applies, with `cursor` at each class's next
    /// member.
    fn op(&self, pick: Pick, cursor: &[usize]) -> Option<usize> {
        match pick {
            Pick::Delete(i) => Some(i),
            Pick::Info(c) => Some(self.classes[c][cursor[c]].1),
            Pick::Skip => None,
        }
    }

    /// Whether some write may leave `value` (`None`: delete) in `key` at a revision
    /// strictly between `after` and `before`; `cursor` says which `info` deletes are used.
    fn may_write(&self, key: Id, value: Val, after: u64, before: u64, cursor: &[usize]) -> bool {
        let within = |revisions: Option<&Vec<u64>>| {
            revisions.is_some_and(|rs| {
                let from = rs.partition_point(|&r| r <= after);
                rs.get(from).is_some_and(|&r| r < before)
            })
        };
        let fixed = match value {
            Some(v) => within(self.writes.get(&(key, v))),
            None => within(self.deletes.get(&key)),
        };
        let fits = |passed: u64| passed.max(after) + 1 < before;
        if fixed {
            return true;
        }
        match value {
            // The first unused one is the one available first.
            None => self.deletes_of.get(&key).is_some_and(|&c| {
                let members = &self.classes[c];
                members
                    .get(cursor[c])
                    .is_some_and(|&(passed, _)| fits(passed))
            }),
            Some(v) => self
                .unplaced
                .get(&(key, v))
                .is_some_and(|&passed| fits(passed)),
        }
    }

    /// The record `op` leaves for its key at revision `g` from `state`, if it writes there.
    fn effect(&self, state: &EtcdState, op: &Op, g: u64) -> Option<Option<Rec>> {
        let old = state.keys.get(&op.key);
        let put = |value: Id| {
            Some(Some(Rec {
                value,
                create_revision: old.map_or(g, |r| r.create_revision),
                mod_revision: g,
                version: old.map_or(0, |r| r.version) + 1,
            }))
        };
        match op.call {
            Call::Put { value } => put(value),
            Call::Cas { expect, value } if expect == old.map(|r| r.value) => put(value),
            Call::Delete if old.is_some() => Some(None),
            _ => None,
        }
    }

    /// The writes that may make gap `g` from `state`, most urgent first; `cursor` says
    /// which member of each class is next.
    fn picks(&self, g: u64, state: &EtcdState, cursor: &[usize]) -> Vec<Pick> {
        // A delete reporting `g` whose key is there made `g`, unless a delete of that key
        // whose outcome is unknown came first: nothing else may.
        let deletes = self.at.get(&g).map_or(&[][..], Vec::as_slice);
        let deleted = deletes.iter().find(|&&i| {
            self.h.ops[i].call == Call::Delete && state.keys.contains_key(&self.h.ops[i].key)
        });
        let mut picks: Vec<(u64, Reverse<u64>, usize, Pick)> = Vec::new();
        if let Some(&i) = deleted {
            if self.passed.at(self.h.ops[i].invoke) < g {
                picks.push((0, Reverse(0), 0, Pick::Delete(i)));
            }
        }
        let only = deleted.map(|&i| (self.h.ops[i].key, true));
        for (c, members) in self.classes.iter().enumerate() {
            let Some(&(passed, i)) = members.get(cursor[c]) else {
                continue;
            };
            if passed >= g || only.is_some_and(|o| o != self.class_of[c]) {
                continue;
            }
            let op = &self.steps[&i];
            let Some(rec) = self.effect(state, op, g) else {
                continue;
            };
            if let Some(u) = self.urgency(op.key, g, rec.as_ref(), cursor) {
                picks.push((u, Reverse(passed), c, Pick::Info(c)));
            }
        }
        if self.alone && deleted.is_none() {
            // After the picks a read needs, before those it does not.
            picks.push((UNNEEDED - 1, Reverse(0), 0, Pick::Skip));
        }
        picks.sort_unstable_by_key(|&(u, p, c, _)| (u, p, c));
        picks.into_iter().map(|(_, _, _, p)| p).collect()
    }
}

/// Whether most revisions up to the last one `ops` report were made by writes not among
/// them: more than one per operation (then a walk over them would cost more than the
/// search it spares).
fn few_own_revisions(h: &History, ops: &[usize]) -> bool {
    let (mut last, mut own) = (INITIAL_REVISION, 0u64);
    for &i in ops {
        let op = &h.ops[i];
        if let Some(r) = op.out.revision {
            last = last.max(r);
            own += u64::from(matches!(op.call, Call::Put { .. } | Call::Cas { .. }));
        }
    }
    last - INITIAL_REVISION > own + ops.len() as u64
}

/// The value a write leaves (`None` for a delete); `None` for a read.
fn written(call: Call) -> Option<Val> {
    match call {
        Call::Put { value } | Call::Cas { value, .. } => Some(Some(value)),
        Call::Delete => Some(None),
        Call::Get => None,
    }
}

/// 128 pseudo-random bits standing for `info` write `i` having been used.
fn member(i: usize) -> u128 {
    fingerprint::of(&[i as u64, 1])
}

/// The search's position: the current state and order, and the `info` writes used.
struct Walk<'p, 'h> {
    plan: &'p Plan<'h>,
    state: EtcdState,
    order: Vec<usize>,
    /// Per class, how many members are used.
    cursor: Vec<usize>,
    /// The classes whose next member was used, in turn.
    trail: Vec<usize>,
    /// XOR of [`member`] over the `info` writes used.
    used: u128,
    stack: Vec<Choice>,
    /// Heap bytes the stack's choices hold, about.
    held: usize,
}

/// Heap bytes a choice holds, about: its picks and keys, and a state of its own (states
/// share their key maps only until a write).
fn choice_bytes(c: &Choice) -> usize {
    c.picks.capacity() * std::mem::size_of::<Pick>()
        + c.keys.capacity() * std::mem::size_of::<Id>()
        + c.state.keys.len() * 2 * std::mem::size_of::<(Id, Rec)>()
        + std::mem::size_of::<Choice>()
}

impl Walk<'_, '_> {
    /// Steps the state by operation `i`, appending it to the order; false if the model
    /// rejects it.
    fn apply(&mut self, i: usize) -> bool {
        match Etcd.step(&self.state, &self.plan.steps[&i]) {
            Ok(next) => {
                self.state = next;
                self.order.push(i);
                true
            }
            Err(_) => false,
        }
    }

    /// Opens a choice at gap `g`: false if it was explored before.
    fn choose(&mut self, g: u64, seen: &mut HashSet<u128>) -> bool {
        let (s, u) = (self.state.fingerprint, self.used);
        let key = fingerprint::of(&[g, s as u64, (s >> 64) as u64, u as u64, (u >> 64) as u64]);
        if !seen.insert(key) {
            return false;
        }
        let picks = self.plan.picks(g, &self.state, &self.cursor);
        let mut keys: Vec<Id> = picks
            .iter()
            .filter_map(|&p| Some(self.plan.h.ops[self.plan.op(p, &self.cursor)?].key))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        let choice = Choice {
            revision: g,
            picks,
            keys,
            next: 0,
            state: self.state.clone(),
            order: self.order.len(),
            trail: self.trail.len(),
            used: self.used,
        };
        self.held += choice_bytes(&choice);
        self.stack.push(choice);
        self.next_pick()
    }

    /// Restores the configuration of the last choice and applies its next pick; false
    /// when it has none left.
    fn next_pick(&mut self) -> bool {
        let top = self.stack.last_mut().expect("a choice to take");
        for c in self.trail.drain(top.trail..) {
            self.cursor[c] -= 1;
        }
        self.order.truncate(top.order);
        self.used = top.used;
        while let Some(&pick) = top.picks.get(top.next) {
            top.next += 1;
            let Some(i) = self.plan.op(pick, &self.cursor) else {
                self.state = EtcdState {
                    revision: top.state.revision + 1,
                    ..top.state.clone()
                };
                return true;
            };
            if let Ok(next) = Etcd.step(&top.state, &self.plan.steps[&i]) {
                self.state = next;
                self.order.push(i);
                if let Pick::Info(c) = pick {
                    self.cursor[c] += 1;
                    self.trail.push(c);
                    self.used ^= member(i);
                }
                return true;
            }
        }
        false
    }

    /// Drops the last choice.
    fn pop(&mut self) {
        if let Some(c) = self.stack.pop() {
            self.held -= choice_bytes(&c);
        }
    }

    /// Backs up to the last gap with a pick left and applies it; its revision, or `None`
    /// when every pick everywhere is spent.
    ///
    /// A failure that one key's operation ran into (`culprit`) skips the gaps where no pick
    /// wrote that key: another pick there would not have changed it. This may skip an
    /// order that exists, which only makes the search give up sooner, never unsound.
    fn backtrack(&mut self, mut culprit: Option<Id>) -> Option<u64> {
        loop {
            let top = self.stack.last()?;
            if culprit.is_some_and(|k| !top.keys.contains(&k)) {
                self.pop();
                continue;
            }
            let g = top.revision;
            if self.next_pick() {
                return Some(g);
            }
            self.pop();
            culprit = None;
        }
    }
}

/// Searches for a linearization of `ops` under `model` as described above: under `etcd`,
/// `ops` are all relevant operations of the history; under `kv`, those of one key.
pub fn find(h: &History, ops: &[usize], model: Model, meter: &mut Meter) -> Found {
    let alone = match model {
        Model::Etcd => false,
        Model::Kv => true,
        Model::Register => return Found::GaveUp,
    };
    let Some(plan) = Plan::new(h, ops, alone) else {
        return Found::GaveUp;
    };
    let bound = STEPS_PER_OP * (plan.last + ops.len() as u64) + 10_000;
    let mut walk = Walk {
        plan: &plan,
        state: Etcd.init(),
        order: Vec::new(),
        cursor: vec![0; plan.classes.len()],
        trail: Vec::new(),
        used: 0,
        stack: Vec::new(),
        held: 0,
    };
    let mut seen: HashSet<u128> = HashSet::new();
    // Furthest revision reached, for the window of a search that runs out.
    let mut furthest = INITIAL_REVISION;
    let mut g = INITIAL_REVISION;
    // Whether the write making `g` is in place (`g` is done but for its reads).
    let mut made = true;
    for taken in 0.. {
        // The memo's table: a fingerprint and a control byte per slot, 7 of 8 slots used.
        if meter.exhausted(seen.capacity() * 17 * 8 / 7 + walk.held) {
            return Found::Spent {
                window: window(&plan, furthest),
            };
        }
        if taken > bound {
            return Found::GaveUp;
        }
        furthest = furthest.max(g);
        // The key of the operation the model rejected, if one was.
        let mut culprit = None;
        let mut ok = made
            || match plan.makers.get(&g) {
                Some(&w) => {
                    walk.apply(w) || {
                        culprit = Some(h.ops[w].key);
                        false
                    }
                }
                None => walk.choose(g, &mut seen),
            };
        if ok {
            let maker = walk.order.last().copied();
            for &i in plan.at.get(&g).map_or(&[][..], Vec::as_slice) {
                if Some(i) != maker && !walk.apply(i) {
                    (ok, culprit) = (false, Some(h.ops[i].key));
                    break;
                }
            }
        }
        if ok && g == plan.last {
            break;
        }
        (g, made) = if ok {
            (g + 1, false)
        } else {
            match walk.backtrack(culprit) {
                Some(at) => (at, true),
                None => return Found::GaveUp,
            }
        };
    }
    let mut order = walk.order;
    let all_ok = ops
        .iter()
        .filter(|&&i| h.ops[i].status == Status::Ok)
        .count();
    let placed_ok = order
        .iter()
        .filter(|&&i| h.ops[i].status == Status::Ok)
        .count();
    let replays = if alone {
        let kv = Kv::observing(h, ops);
        let mut state = Some(kv.init());
        for &i in &order {
            state = state.and_then(|s| kv.step(&s, &h.ops[i]).ok());
        }
        state.is_some()
    } else {
        witness::replays(h, &mut order)
    };
    if placed_ok == all_ok && replays && witness::respects_real_time(h, &order) {
        Found::Order(order)
    } else {
        Found::GaveUp
    }
}

/// The operations reporting revisions near `g`: where a search that ran out was stuck.
fn window(plan: &Plan, g: u64) -> Vec<usize> {
    let near = g.saturating_sub(2)..=g.saturating_add(2);
    let mut window: Vec<usize> = plan
        .makers
        .range(near.clone())
        .map(|(_, &i)| i)
        .chain(
            plan.at
                .range(near)
                .flat_map(|(_, same)| same.iter().copied()),
        )
        .collect();
    window.sort_unstable();
    window
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{Budget, DEFAULT_MEMORY_BYTES};
    use crate::testing::history;

    fn run(spec: &str) -> Found {
        let h = history(spec);
        let ops: Vec<usize> = (0..h.ops.len())
            .filter(|&i| crate::wgl::relevant(&h, i))
            .collect();
        let mut meter = Meter::new(Budget::Unlimited, DEFAULT_MEMORY_BYTES);
        find(&h, &ops, Model::Etcd, &mut meter)
    }

    #[test]
    fn info_writes_fill_the_revisions_nobody_reports() {
        // Revision 3 is b's put on k (the read sees version 3), revision 5 the delete of j
        // (the read finds j missing), and the put of x never happened.
        let found = run(
            "1 invoke put k a\n1 ok put k rev=2\n2 invoke put k b\n2 info put k\n\
             5 invoke put j y\n5 ok put j rev=4\n6 invoke delete j\n6 info delete j\n\
             7 invoke put j x\n7 info put j\n\
             3 invoke put k c\n3 ok put k rev=6\n4 invoke get k\n4 ok get k c rev=6 mod=6 ver=3\n\
             8 invoke get j\n8 ok get j nil rev=6",
        );
        let Found::Order(order) = found else {
            panic!("{found:?}")
        };
        assert_eq!(order, [0, 1, 2, 3, 5, 6, 7]);
    }

    #[test]
    fn a_gap_that_no_write_can_fill_gives_up() {
        let found = run(
            "1 invoke put k a\n1 ok put k rev=3\n2 invoke get k\n2 ok get k a rev=3 mod=3 ver=1",
        );
        assert!(matches!(found, Found::GaveUp), "{found:?}");
    }
}
