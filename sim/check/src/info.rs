//! Narrowing what `info` operations may do, without changing the verdict. An `info`
//! operation may take effect at any point after its invocation or never, so each pending
//! one can double the configurations the search explores; three rules cut that down:
//!
//! 1. [`drop_unobserved`]: an `info` write nobody could have observed may as well never have
//!    happened.
//! 2. [`deadlines`]: an `info` write whose value an `ok` operation observed, and that alone
//!    writes that value, did happen, before the first such observer returned.
//! 3. [`gates`]: interchangeable `info` operations (same key and effect: both deletes; puts
//!    of the same value, or of values nobody reads or expects; cas with the same
//!    expectation and such values) are tried in invocation order only. Any linearization
//!    can be rewritten to apply the members of a class in that order, since each is
//!    available from its invocation on; m pending members then make m + 1
//!    configurations, not 2^m.
//! 4. [`place_by_revision`]: under models that check revisions, an `info` write whose value
//!    a read reports with a mod_revision, and that alone writes that value, made that
//!    revision, and is checked as if it had reported it (etcd's robustness tests patch
//!    histories the same way before checking them).

use std::collections::{BTreeMap, BTreeSet};

use super::history::{Call, History, Id, Status, Val};
use super::model::{Kv, Model};

/// What makes two `info` operations interchangeable: key, kind, expectation, and written
/// value (`None` when no operation observes it, or for deletes).
type Class = (Id, u8, Option<Val>, Option<Id>);

/// Rule 3: for each operation of `ops` (history indices in invocation order) without a
/// deadline, the partition-local index of the previous member of its class, which must be
/// linearized before it.
pub fn gates(h: &History, ops: &[usize]) -> Vec<Option<usize>> {
    let observed = observed(h, ops);
    let shown = |key: Id, value: Id| observed.contains(&(key, Some(value))).then_some(value);
    let mut last: BTreeMap<Class, usize> = BTreeMap::new();
    ops.iter()
        .enumerate()
        .map(|(j, &i)| {
            let op = &h.ops[i];
            let class: Class = match op.call {
                _ if op.status != Status::Info => return None,
                Call::Get => return None,
                Call::Put { value } => (op.key, 0, None, shown(op.key, value)),
                Call::Delete => (op.key, 1, None, None),
                Call::Cas { expect, value } => (op.key, 2, Some(expect), shown(op.key, value)),
            };
            last.insert(class, j)
        })
        .collect()
}

/// Numbers the classes of interchangeable optional operations (those without a deadline),
/// from the chains [`gates`] made: `Some(class)` per optional operation, `None` for required
/// ones.
pub fn classes(gate: &[Option<usize>], deadline: &[Option<usize>]) -> Vec<Option<usize>> {
    let mut class: Vec<Option<usize>> = Vec::with_capacity(gate.len());
    let mut next = 0;
    for (j, g) in gate.iter().enumerate() {
        class.push(match (deadline[j], g) {
            (Some(_), _) => None,
            (None, Some(g)) => class[*g],
            (None, None) => {
                next += 1;
                Some(next - 1)
            }
        });
    }
    class
}

/// (key, value) pairs that operations of `ops` read or expect.
fn observed(h: &History, ops: &[usize]) -> BTreeSet<(Id, Val)> {
    ops.iter()
        .map(|&i| &h.ops[i])
        .filter_map(|op| match op.call {
            Call::Get => Some((op.key, op.out.value)),
            Call::Cas { expect, .. } => Some((op.key, expect)),
            _ => None,
        })
        .collect()
}

/// What a write leaves in its key (`None` for a delete); `None` for reads.
fn written(call: Call) -> Option<Val> {
    match call {
        Call::Put { value } | Call::Cas { value, .. } => Some(Some(value)),
        Call::Delete => Some(None),
        Call::Get => None,
    }
}

/// Rule 1: removes `info` writes whose value no remaining operation reads or expects.
///
/// In a linearization that includes such a write, the operations between it and the next
/// write neither read nor expect its value, so there are none but writes, and dropping it
/// changes nothing anyone saw. This holds while only values are observed, so it is skipped
/// when versions or revisions are (a dropped put would shift them, and whether a delete
/// makes a revision tells whether the key existed).
pub fn drop_unobserved(h: &History, model: Model, ops: &mut Vec<usize>) {
    let kv = Kv::observing(h, ops);
    if model == Model::Etcd || (model == Model::Kv && (kv.versions || kv.revisions)) {
        return;
    }
    loop {
        let seen = observed(h, ops);
        let before = ops.len();
        ops.retain(|&i| {
            let op = &h.ops[i];
            let w = written(op.call);
            op.status != Status::Info || w.is_none_or(|v| seen.contains(&(op.key, v)))
        });
        if ops.len() == before {
            return;
        }
    }
}

/// Rule 4: `h` with the revision of each `info` put or cas filled in that an `ok` read
/// reports as the mod_revision of the value that only this operation writes to its key
/// (the first such read's, if reads disagree: then no order satisfies them all anyway);
/// `None` when there is none.
pub fn place_by_revision(h: &History) -> Option<History> {
    let mut writers: BTreeMap<(Id, Id), Vec<usize>> = BTreeMap::new();
    for (i, op) in h.ops.iter().enumerate() {
        if let (Call::Put { value } | Call::Cas { value, .. }, false) =
            (op.call, op.status == Status::Fail)
        {
            writers.entry((op.key, value)).or_default().push(i);
        }
    }
    let mut placed: BTreeMap<usize, u64> = BTreeMap::new();
    for op in h.ops.iter().filter(|op| op.status == Status::Ok) {
        if let (Call::Get, Some(value), Some(m)) = (op.call, op.out.value, op.out.mod_revision) {
            if let Some(&[w]) = writers.get(&(op.key, value)).map(Vec::as_slice) {
                if h.ops[w].status == Status::Info {
                    placed.entry(w).or_insert(m);
                }
            }
        }
    }
    if placed.is_empty() {
        return None;
    }
    let mut patched = h.clone();
    for (w, m) in placed {
        patched.ops[w].out.revision = Some(m);
    }
    Some(patched)
}

/// Rule 2, with `ok` operations' own completions: for each operation of `ops`, the event
/// position by which it must have taken effect; `None` when it may never take effect.
pub fn deadlines(h: &History, ops: &[usize]) -> Vec<Option<usize>> {
    let mut writers: BTreeMap<(Id, Val), usize> = BTreeMap::new();
    for &i in ops {
        if let Some(v) = written(h.ops[i].call) {
            *writers.entry((h.ops[i].key, v)).or_default() += 1;
        }
    }
    let mut first_seen: BTreeMap<(Id, Val), usize> = BTreeMap::new();
    for &i in ops {
        let op = &h.ops[i];
        let seen = match op.call {
            Call::Get => op.out.value,
            Call::Cas { expect, .. } => expect,
            _ => continue,
        };
        if let (Status::Ok, Some(at), Some(_)) = (op.status, op.complete, seen) {
            let first = first_seen.entry((op.key, seen)).or_insert(at);
            *first = (*first).min(at);
        }
    }
    ops.iter()
        .map(|&i| {
            let op = &h.ops[i];
            if op.status == Status::Ok {
                return op.complete;
            }
            let v = written(op.call)?;
            let by = *first_seen.get(&(op.key, v))?;
            (writers[&(op.key, v)] == 1 && by > op.invoke).then_some(by)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::history;

    #[test]
    fn interchangeable_info_operations_are_chained_in_invocation_order() {
        let h = history(
            "1 invoke put k a\n1 info put k\n2 invoke put k b\n2 info put k\n\
             3 invoke delete k\n3 info delete k\n4 invoke put k c\n4 info put k\n\
             5 invoke delete k\n5 info delete k\n6 invoke get k\n6 ok get k c\n\
             7 invoke put k d\n7 ok put k",
        );
        let all: Vec<usize> = (0..h.ops.len()).collect();
        // a and b are never read: one class; c is read: its own; deletes: one class.
        assert_eq!(
            gates(&h, &all),
            [None, Some(0), None, None, Some(2), None, None]
        );
    }

    #[test]
    fn an_observed_info_write_must_precede_its_first_observer() {
        let h = history(
            "1 invoke put k a\n1 info put k\n2 invoke get k\n3 invoke get k\n\
             3 ok get k a\n2 ok get k a\n4 invoke put k b\n4 info put k",
        );
        let all: Vec<usize> = (0..h.ops.len()).collect();
        // Events: 0 invoke a, 1 info, 2 and 3 invoke gets, 4 first read of a returns.
        assert_eq!(deadlines(&h, &all), [Some(4), Some(5), Some(4), None]);
        let twice = history("1 invoke put k a\n1 info put k\n2 invoke put k a\n2 info put k\n3 invoke get k\n3 ok get k a");
        assert_eq!(
            deadlines(&twice, &[0, 1, 2]),
            [None, None, Some(5)],
            "two writers of a: neither is certain"
        );
    }

    #[test]
    fn an_info_write_read_back_with_a_mod_revision_made_that_revision() {
        let h = history(
            "1 invoke put k a\n1 info put k\n2 invoke put k b\n2 info put k\n\
             3 invoke put k b\n3 info put k\n4 invoke get k\n4 ok get k a rev=9 mod=7\n\
             4 invoke get k\n4 ok get k b rev=9 mod=8",
        );
        let placed = place_by_revision(&h).expect("a was read back");
        let revisions: Vec<Option<u64>> = placed.ops.iter().map(|op| op.out.revision).collect();
        // b has two writers: which one made revision 8 is not known.
        assert_eq!(revisions, [Some(7), None, None, Some(9), Some(9)]);
        assert!(placed
            .describe(0)
            .ends_with("info rev=7 (from its readers) (line 1)"));
    }

    #[test]
    fn unobserved_info_writes_are_dropped_unless_versions_are_checked() {
        let spec = "1 invoke put k a\n1 info put k\n2 invoke put k b\n2 info put k\n3 invoke get k\n3 ok get k b";
        let mut ops = vec![0, 1, 2];
        drop_unobserved(&history(spec), Model::Register, &mut ops);
        assert_eq!(ops, [1, 2], "nobody read a");
        let mut ops = vec![0, 1, 2];
        drop_unobserved(&history(&format!("{spec} ver=2")), Model::Kv, &mut ops);
        assert_eq!(ops, [0, 1, 2], "a's put counts towards the version read");
    }
}
