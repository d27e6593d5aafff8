//! Symmetry among `info` operations: two `info` operations on the same key with the same
//! effect (both deletes; puts of the same value, or of values nobody reads or expects; cas
//! with the same expectation and such values) are interchangeable. Neither has a completion,
//! so each may be linearized at any point after its invocation: any linearization can be
//! rewritten to apply the members of such a class in invocation order. The search only
//! tries them in that order, so m pending members make m + 1 configurations, not 2^m.

use std::collections::{BTreeMap, BTreeSet};

use super::history::{Call, History, Id, Status, Val};

/// What makes two `info` operations interchangeable: key, kind, expectation, and written
/// value (`None` when no operation observes it, or for deletes).
type Class = (Id, u8, Option<Val>, Option<Id>);

/// For each operation of `ops` (history indices in invocation order), the partition-local
/// index of the previous member of its class, which must be linearized before it.
pub fn gates(h: &History, ops: &[usize]) -> Vec<Option<usize>> {
    let observed: BTreeSet<(Id, Val)> = ops
        .iter()
        .filter_map(|&i| {
            let op = &h.ops[i];
            match op.call {
                Call::Get => Some((op.key, op.out.value)),
                Call::Cas { expect, .. } => Some((op.key, expect)),
                _ => None,
            }
        })
        .collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testing::history;

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
}
