//! What revisions prove without a search.
//!
//! Under the models that check revisions, each key's last-change revision (and, for `etcd`,
//! the store revision) never goes back along any legal order. So an `ok` operation that
//! reports a revision puts a *floor* under that counter for everything linearized after it,
//! and one that reports what it saw puts a *ceiling* on the counter when it takes effect:
//!
//! | operation (`ok`) | floor after it | ceiling when it takes effect |
//! |---|---|---|
//! | put / cas at revision r | key: r; store: r | key and store: r - 1 |
//! | delete at revision r | store: r | key and store: r |
//! | get at header revision h, value with mod_revision m | store: h | key: min(h, m) in `kv`, m in `etcd`; store: h |
//!
//! (`kv` has no store counter; its key counter is what a header revision is checked
//! against.) An operation that completed before another was invoked comes first in every
//! linearization, so if a floor of the first exceeds a ceiling of the second, no order is
//! legal, whatever the `info` operations did: the classic stale read of an etcd history, a
//! read invoked after a write returned and reporting a mod_revision before it. [`refute`]
//! finds the earliest such pair in one sweep over time, and the search never runs; when it
//! finds none, the search decides as before (this only ever says "not linearizable").

use std::collections::BTreeMap;

use super::history::{Call, History, Id, Status};
use super::model::Model;

/// A revision counter that never goes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Counter {
    /// The revision of a key's last change.
    Key(Id),
    /// The store revision (`etcd` only).
    Store,
}

/// Two operations no legal order can place: `first` returned before `second` was invoked,
/// but `second` reports a revision that `first` had already passed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    /// History indices.
    pub first: usize,
    pub second: usize,
    /// The counter as `first` left it, in words.
    pub state: String,
    /// Why `second` cannot come after that, in words, with the numbers.
    pub why: String,
}

/// Revisions per counter.
type Bounds = Vec<(Counter, u64)>;

/// Floors an `ok` operation leaves and ceilings it needs, per counter (empty for other
/// operations and models).
fn bounds(h: &History, model: Model, i: usize) -> (Bounds, Bounds) {
    let op = &h.ops[i];
    let (mut floors, mut ceilings) = (Vec::new(), Vec::new());
    if op.status != Status::Ok || model == Model::Register {
        return (floors, ceilings);
    }
    let key = Counter::Key(op.key);
    let etcd = model == Model::Etcd;
    let r = op.out.revision;
    match op.call {
        Call::Put { .. } | Call::Cas { .. } => {
            if let Some(r) = r {
                floors.push((key, r));
                // A write at revision 0 fits no state; the search says so.
                ceilings.extend(r.checked_sub(1).map(|c| (key, c)));
                if etcd {
                    floors.push((Counter::Store, r));
                    ceilings.extend(r.checked_sub(1).map(|c| (Counter::Store, c)));
                }
            }
        }
        Call::Delete => {
            if let Some(r) = r {
                ceilings.push((key, r));
                if etcd {
                    floors.push((Counter::Store, r));
                    ceilings.push((Counter::Store, r));
                }
            }
        }
        Call::Get => {
            let m = op.out.mod_revision.filter(|_| op.out.value.is_some());
            if etcd {
                if let Some(r) = r {
                    floors.push((Counter::Store, r));
                    ceilings.push((Counter::Store, r));
                }
                ceilings.extend(m.map(|m| (key, m)));
            } else if let Some(c) = [r, m].into_iter().flatten().min() {
                ceilings.push((key, c));
            }
        }
    }
    (floors, ceilings)
}

/// The earliest (by invocation) operation of `ops` (history indices in invocation order)
/// that needs a counter below a floor some operation left before it was invoked, if any.
pub fn refute(h: &History, model: Model, ops: &[usize]) -> Option<Proof> {
    if !model.checks_revisions() {
        return None;
    }
    let mut completed: Vec<(usize, usize)> = ops
        .iter()
        .filter_map(|&i| Some((h.ops[i].complete?, i)))
        .filter(|&(_, i)| h.ops[i].status == Status::Ok)
        .collect();
    completed.sort_unstable();
    let mut completed = completed.into_iter().peekable();
    // Counter -> the highest floor so far and the operation that left it.
    let mut highest: BTreeMap<Counter, (u64, usize)> = BTreeMap::new();
    for &i in ops {
        let invoke = h.ops[i].invoke;
        while let Some((_, w)) = completed.next_if(|&(at, _)| at < invoke) {
            for (c, floor) in bounds(h, model, w).0 {
                let top = highest.entry(c).or_insert((floor, w));
                if floor > top.0 {
                    *top = (floor, w);
                }
            }
        }
        for (c, ceiling) in bounds(h, model, i).1 {
            if let Some(&(floor, w)) = highest.get(&c).filter(|(floor, _)| *floor > ceiling) {
                let counter = match c {
                    Counter::Key(k) => format!("key {}'s last change", h.keys[k as usize]),
                    Counter::Store => "the store revision".into(),
                };
                return Some(Proof {
                    first: w,
                    second: i,
                    state: format!("{counter} at revision {floor} or later"),
                    why: format!(
                        "needs {counter} at revision {ceiling} or earlier, but #{w} returned \
                         before #{i} was invoked"
                    ),
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::history;

    #[test]
    fn a_read_reporting_a_change_older_than_a_returned_write_is_refuted() {
        let spec = "1 invoke put k a\n1 ok put k rev=2\n1 invoke put k b\n1 ok put k rev=3\n\
                    3 invoke put k c\n3 info put k\n2 invoke get k\n2 ok get k a rev=4 mod=2";
        let h = history(spec);
        let all: Vec<usize> = (0..h.ops.len()).collect();
        for model in [Model::Kv, Model::Etcd] {
            let p = refute(&h, model, &all).expect("stale whatever the info put did");
            assert_eq!((p.first, p.second), (1, 3), "{model:?}: {}", p.why);
        }
        assert!(refute(&h, Model::Register, &all).is_none(), "no revisions");
        let concurrent = history(
            "1 invoke put k a\n1 ok put k rev=2\n1 invoke put k b\n2 invoke get k\n\
             1 ok put k rev=3\n2 ok get k a rev=3 mod=2",
        );
        assert!(refute(&concurrent, Model::Kv, &[0, 1, 2]).is_none());
    }

    #[test]
    fn under_etcd_a_write_elsewhere_raises_the_store_revision() {
        let h = history("1 invoke put x a\n1 ok put x rev=5\n2 invoke get y\n2 ok get y nil rev=4");
        let p = refute(&h, Model::Etcd, &[0, 1]).expect("the store went back");
        assert_eq!(p.state, "the store revision at revision 5 or later");
        assert!(
            refute(&h, Model::Kv, &[1]).is_none(),
            "kv checks keys alone"
        );
    }
}
