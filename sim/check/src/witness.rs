//! A linearization of an `etcd` history built from the revisions it reports, checked by
//! replay instead of searched for.
//!
//! Each `ok` operation of an etcd history reports the store revision, and each revision is
//! made by exactly one write, so a linearization's order is all but given: writes in
//! revision order, each read after the write that made its header revision and before the
//! next. What is not given is which `info` writes made the revisions no `ok` operation
//! reports. Where a per-key `kv` linearization applied one, the revision range its key's
//! neighbours there leave (and its create_revision, for a write to a missing key) is a
//! *demand* for an `info` write of that kind; [`build`] fills the free revisions in
//! increasing order, each with an interchangeable `info` write (same key, kind,
//! expectation) that was invoked before the store passed it, for the open demand that
//! closes first. A revision no demand claims goes to an `info` write that nothing after it
//! on its key could tell from none (puts follow until a delete, or nothing does). It then
//! replays that order under the etcd model and checks it against real time: a success is
//! a linearization, so the history is linearizable; a failure says nothing, and the search
//! decides. (Known misses: a key's create_revision or version that only an `info` write
//! the per-key order did without explains, as on one key with many `info` writes.)

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use super::history::{Call, History, Id, Status, Val};
use super::model::{Etcd, SeqModel};

/// Whether operation `i` writes a value (a put or a cas), and so makes a revision whenever
/// it takes effect.
fn puts(h: &History, i: usize) -> bool {
    matches!(h.ops[i].call, Call::Put { .. } | Call::Cas { .. })
}

/// The store revision the `ok` operations of a history had reported by each event.
pub struct Passed {
    /// (completion, highest revision reported up to it), by completion.
    returned: Vec<(usize, u64)>,
}

impl Passed {
    pub fn new(h: &History, ops: &[usize]) -> Passed {
        let mut returned: Vec<(usize, u64)> = ops
            .iter()
            .filter(|&&i| h.ops[i].status == Status::Ok)
            .filter_map(|&i| Some((h.ops[i].complete?, h.ops[i].out.revision?)))
            .collect();
        returned.sort_unstable();
        let mut highest = 0;
        for (_, r) in &mut returned {
            highest = highest.max(*r);
            *r = highest;
        }
        Passed { returned }
    }

    /// The highest revision reported by an operation that returned before event `at`.
    pub fn at(&self, at: usize) -> u64 {
        let n = self.returned.partition_point(|&(c, _)| c < at);
        n.checked_sub(1).map_or(0, |k| self.returned[k].1)
    }
}

/// For each operation of one key's `part` (partition-local), the `ok` write of `part`
/// that an `info` write must follow: the last one at or below the store revision reported
/// before the `info` write was invoked. The etcd model orders them so; [`super::wgl`]
/// takes it as a gate, so that the per-key orders [`build`] starts from keep to it.
pub fn gates(h: &History, passed: &Passed, part: &[usize]) -> Vec<Option<usize>> {
    let mut writes: Vec<(u64, usize)> = part
        .iter()
        .enumerate()
        .filter(|&(_, &i)| h.ops[i].status == Status::Ok && puts(h, i))
        .filter_map(|(j, &i)| Some((h.ops[i].out.revision?, j)))
        .collect();
    writes.sort_unstable();
    part.iter()
        .map(|&i| {
            let op = &h.ops[i];
            if op.status != Status::Info || !op.is_write() {
                return None;
            }
            let n = writes.partition_point(|&(r, _)| r <= passed.at(op.invoke));
            n.checked_sub(1).map(|k| writes[k].1)
        })
        .collect()
}

/// What makes two `info` writes without a revision interchangeable here: key, kind,
/// expectation, and the value when some cas expects it.
type Class = (Id, u8, Option<Val>, Option<Id>);

/// A revision range, exclusive, where a per-key order applied an `info` write of `class`.
struct Demand {
    after: u64,
    before: u64,
    class: Class,
}

/// Per class, `info` writes without a revision: (the revision the store had passed when
/// it was invoked, which it cannot take; history index), the one available first last.
type Members = BTreeMap<Class, Vec<(u64, usize)>>;

/// The demands the per-key `orders` make, by `after`; and the members of each class
/// among `ops`.
fn candidates(h: &History, ops: &[usize], orders: &[Vec<usize>]) -> (Vec<Demand>, Members) {
    let expected: BTreeSet<(Id, Val)> = ops
        .iter()
        .filter_map(|&i| match h.ops[i].call {
            Call::Cas { expect, .. } => Some((h.ops[i].key, expect)),
            _ => None,
        })
        .collect();
    let class = |i: usize| -> Class {
        let op = &h.ops[i];
        let shown = |v: Id| expected.contains(&(op.key, Some(v))).then_some(v);
        match op.call {
            Call::Put { value } => (op.key, 0, None, shown(value)),
            Call::Cas { expect, value } => (op.key, 1, Some(expect), shown(value)),
            Call::Delete | Call::Get => (op.key, 2, None, None),
        }
    };
    let passed = Passed::new(h, ops);
    let mut members = Members::new();
    for &i in ops {
        let op = &h.ops[i];
        if op.status == Status::Info && op.is_write() && op.out.revision.is_none() {
            members
                .entry(class(i))
                .or_default()
                .push((passed.at(op.invoke), i));
        }
    }
    for m in members.values_mut() {
        // Taken from the end: the one available earliest first.
        m.sort_unstable_by(|a, b| b.cmp(a));
    }
    let mut demands = Vec::new();
    for order in orders {
        // An unobserved write may trade places with puts around it; what saw the value
        // before it or depends on its effect after it bounds it: (after, before) revision.
        let bound = |k: usize| {
            let op = &h.ops[order[k]];
            match (op.status, op.call, op.out.revision) {
                (Status::Ok, Call::Get, Some(r)) => Some((r, r + 1)),
                (Status::Ok, Call::Cas { .. } | Call::Delete, Some(r)) => Some((r, r)),
                _ => None,
            }
        };
        // A write to a missing key made the create_revision that reads report until the
        // next delete.
        let created = |k: usize| {
            let ends = |&i: &usize| h.ops[i].call == Call::Delete;
            order[k + 1..]
                .iter()
                .take_while(|i| !ends(i))
                .find_map(|&i| h.ops[i].out.create_revision)
        };
        let mut present = false;
        for (k, &i) in order.iter().enumerate() {
            let op = &h.ops[i];
            let was_present = present;
            present = match op.call {
                Call::Get => op.out.value.is_some(),
                Call::Put { .. } | Call::Cas { .. } => true,
                Call::Delete => false,
            };
            if op.status != Status::Info || op.out.revision.is_some() {
                continue;
            }
            let mut after = (0..k).rev().find_map(bound).map_or(0, |b| b.0);
            let mut before = (k + 1..order.len())
                .find_map(bound)
                .map_or(u64::MAX, |b| b.1);
            if let (false, Some(c)) = (was_present || !op.is_write(), created(k)) {
                (after, before) = (after.max(c.saturating_sub(1)), before.min(c + 1));
            }
            demands.push(Demand {
                after,
                before,
                class: class(i),
            });
        }
    }
    demands.sort_unstable_by_key(|d| d.after);
    (demands, members)
}

/// Whether nothing after revision `g` on the key of `info` write `i` could tell that `i`
/// made `g`: by `later`, the `ok` operations on that key (revision, history index) in
/// revision order; `real` holds the deletes that found the key there.
fn unseen(h: &History, i: usize, g: u64, later: &[(u64, usize)], real: &BTreeSet<usize>) -> bool {
    let (before, rest) = later.split_at(later.partition_point(|&(r, _)| r <= g));
    // The key's value before `g`, as the last `ok` operation before it left or saw it: a
    // delete makes a revision only if the key was there, a cas only if it expected that.
    let value = before.last().and_then(|&(_, j)| {
        let op = &h.ops[j];
        match op.call {
            Call::Get => op.out.value,
            Call::Put { value } | Call::Cas { value, .. } => Some(value),
            Call::Delete => None,
        }
    });
    let takes_effect = match h.ops[i].call {
        Call::Delete => value.is_some(),
        Call::Cas { expect, .. } => expect == value,
        Call::Put { .. } | Call::Get => true,
    };
    if !takes_effect {
        return false;
    }
    // Whether `i` left the key missing, as far as the operations after it go. Puts build
    // on the value and version it left, unseen, until a delete.
    let mut missing = h.ops[i].call == Call::Delete;
    for &(_, j) in rest {
        let op = &h.ops[j];
        match op.call {
            Call::Put { .. } => missing = false,
            Call::Get if missing && op.out.value.is_none() => {}
            Call::Get | Call::Cas { .. } => return false,
            // Whether a delete makes a revision must not change.
            Call::Delete => return missing != real.contains(&j),
        }
    }
    true
}

/// Whether a linearization of `ops` (the history's relevant operations) follows from the
/// per-key `kv` linearizations `orders` (history indices) as described above.
pub fn build(h: &History, ops: &[usize], orders: &[Vec<usize>]) -> bool {
    // Every `ok` operation must report the revision it is placed by.
    if ops
        .iter()
        .any(|&i| h.ops[i].status == Status::Ok && h.ops[i].out.revision.is_none())
    {
        return false;
    }
    let revision_of = |i: usize| h.ops[i].out.revision;
    let made: BTreeSet<u64> = ops
        .iter()
        .filter(|&&i| puts(h, i))
        .filter_map(|&i| revision_of(i))
        .collect();
    // (revision, 0 for a put that made it, 1 for a delete that did, 2 for the rest; invoke)
    // -> op.
    let mut order: BTreeMap<(u64, u8, usize), usize> = BTreeMap::new();
    // Deletes of a key that was there, by what the operations before them in revision
    // order saw or did (a put at the same revision means it was not the delete that made
    // it).
    let mut by_revision: Vec<(Id, u64, u8, usize)> = ops
        .iter()
        .filter_map(|&i| {
            let rank = match h.ops[i].call {
                Call::Put { .. } | Call::Cas { .. } => 0,
                Call::Delete => 1,
                Call::Get => 2,
            };
            Some((h.ops[i].key, revision_of(i)?, rank, i))
        })
        .collect();
    by_revision.sort_unstable();
    let mut real_deletes = BTreeSet::new();
    let mut present = BTreeMap::new();
    for &(key, r, _, i) in &by_revision {
        let op = &h.ops[i];
        let was = present.insert(
            key,
            match op.call {
                Call::Put { .. } | Call::Cas { .. } => true,
                Call::Get => op.out.value.is_some(),
                Call::Delete => false,
            },
        );
        if op.call == Call::Delete && was == Some(true) && !made.contains(&r) {
            real_deletes.insert(i);
        }
    }
    let deleted: BTreeSet<u64> = real_deletes
        .iter()
        .filter_map(|&i| revision_of(i))
        .collect();
    for &i in ops {
        let Some(r) = revision_of(i) else { continue };
        let sub = match h.ops[i].call {
            Call::Put { .. } | Call::Cas { .. } => 0,
            Call::Delete if real_deletes.contains(&i) => 1,
            // Reads and deletes that change nothing, by invocation: that respects real time.
            Call::Delete | Call::Get => 2,
        };
        order.insert((r, sub, h.ops[i].invoke), i);
    }
    let last = order.keys().next_back().map_or(0, |k| k.0);
    let (demands, mut members) = candidates(h, ops, orders);
    let mut pending = demands.into_iter().peekable();
    let mut by_key: BTreeMap<Id, Vec<(u64, usize)>> = BTreeMap::new();
    for (&(r, _, _), &i) in &order {
        if h.ops[i].status == Status::Ok {
            by_key.entry(h.ops[i].key).or_default().push((r, i));
        }
    }
    // Demands whose range has opened, by the revision that closes it.
    let mut open: BinaryHeap<Reverse<(u64, Class)>> = BinaryHeap::new();
    let initial = Etcd.init().revision;
    for g in initial + 1..=last {
        if made.contains(&g) || deleted.contains(&g) {
            continue;
        }
        while let Some(d) = pending.next_if(|d| d.after < g) {
            open.push(Reverse((d.before, d.class)));
        }
        while open.peek().is_some_and(|Reverse((before, _))| *before <= g) {
            open.pop();
        }
        // The demand closing first that a member of its class can meet at `g`.
        let mut waiting = Vec::new();
        let mut met = None;
        while let Some(Reverse((before, class))) = open.pop() {
            let ready = members
                .get_mut(&class)
                .filter(|m| m.last().is_some_and(|&(a, _)| a < g));
            match ready.and_then(Vec::pop) {
                Some((_, i)) => {
                    met = Some(i);
                    break;
                }
                None => waiting.push(Reverse((before, class))),
            }
        }
        open.extend(waiting);
        // Else a write nothing after it on its key would tell from none.
        let later = |i: usize| by_key.get(&h.ops[i].key).map_or(&[][..], Vec::as_slice);
        let spare = || {
            members.iter().find_map(|(&class, m)| {
                let &(_, i) = m
                    .iter()
                    .rev()
                    .take_while(|&&(a, _)| a < g)
                    .find(|&&(_, i)| unseen(h, i, g, later(i), &real_deletes))?;
                Some((class, i))
            })
        };
        let i = match met {
            Some(i) => i,
            None => {
                let Some((class, i)) = spare() else {
                    return false;
                };
                members
                    .get_mut(&class)
                    .expect("found there")
                    .retain(|&(_, j)| j != i);
                i
            }
        };
        order.insert((g, 0, h.ops[i].invoke), i);
    }
    let mut order: Vec<usize> = order.into_values().collect();
    replays(h, &mut order) && respects_real_time(h, &order)
}

/// Whether `order` is legal under the etcd model, once deletes that report the same
/// revision are put in the order that works (the one that made it first; the others found
/// the key missing).
pub(crate) fn replays(h: &History, order: &mut [usize]) -> bool {
    let mut state = Etcd.init();
    for p in 0..order.len() {
        let same_delete = |i: usize| {
            h.ops[i].call == Call::Delete && h.ops[i].out.revision == h.ops[order[p]].out.revision
        };
        let fits = |i: usize| Etcd.step(&state, &h.ops[i]).ok();
        let found = (p..order.len())
            .take_while(|&q| q == p || same_delete(order[q]))
            .find_map(|q| Some((q, fits(order[q])?)));
        let Some((q, next)) = found else {
            return false;
        };
        order.swap(p, q);
        state = next;
    }
    true
}

/// Whether every operation of `order` comes after each `ok` one that returned before it
/// was invoked.
pub(crate) fn respects_real_time(h: &History, order: &[usize]) -> bool {
    let mut at: Vec<(usize, usize)> = order
        .iter()
        .enumerate()
        .map(|(pos, &i)| (h.ops[i].invoke, pos))
        .collect();
    at.sort_unstable();
    let mut returned: Vec<(usize, usize)> = order
        .iter()
        .enumerate()
        .filter(|&(_, &i)| h.ops[i].status == Status::Ok)
        .filter_map(|(pos, &i)| Some((h.ops[i].complete?, pos)))
        .collect();
    returned.sort_unstable();
    let mut returned = returned.into_iter().peekable();
    let mut latest = None;
    for (invoke, pos) in at {
        while let Some((_, p)) = returned.next_if(|&(c, _)| c < invoke) {
            latest = latest.max(Some(p));
        }
        if latest.is_some_and(|p| p >= pos) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::history;

    #[test]
    fn an_info_write_fills_the_revision_nobody_reports() {
        // The info put of b made revision 3: the read at 4 sees version 3.
        let h = history(
            "1 invoke put k a\n1 ok put k rev=2\n2 invoke put k b\n2 info put k\n\
             3 invoke put k c\n3 ok put k rev=4\n4 invoke get k\n4 ok get k c rev=4 mod=4 ver=3",
        );
        let all: Vec<usize> = (0..h.ops.len()).collect();
        assert!(build(&h, &all, &[vec![0, 1, 2, 3]]));
        assert!(
            !build(&h, &all, &[vec![0, 2, 3]]),
            "without the info put, revision 3 has no maker"
        );
    }

    #[test]
    fn an_order_against_real_time_is_no_witness() {
        // Legal in revision order, but the put returned before the read was invoked.
        let h = history("1 invoke put k a\n1 ok put k rev=2\n2 invoke get k\n2 ok get k nil rev=1");
        assert!(replays(&h, &mut [1, 0]));
        assert!(!build(&h, &[0, 1], &[vec![1, 0]]));
    }
}
