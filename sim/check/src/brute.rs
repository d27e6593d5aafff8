//! A deliberately naive checker to test the fast one against: it tries every order of every
//! operation that may have taken effect, over the whole history (no partitioning, no
//! memoization, no pruning beyond real time). Only for tiny histories.

use super::history::{History, Status};
use super::info::place_by_revision;
use super::model::{Etcd, Kv, Model, Register, SeqModel};

/// Most operations [`linearizable`] accepts: it takes time factorial in their number.
pub const MAX_BRUTE_OPS: usize = 9;

/// Whether some order of the operations is legal: it respects real time, includes every
/// `ok` operation and any subset of the `info` ones.
pub fn linearizable(h: &History, model: Model) -> bool {
    // Part of what the models mean, not a shortcut of the search: see info::place_by_revision.
    let placed = model
        .checks_revisions()
        .then(|| place_by_revision(h))
        .flatten();
    let h = placed.as_ref().unwrap_or(h);
    let ops: Vec<usize> = (0..h.ops.len())
        .filter(|&i| h.ops[i].status != Status::Fail)
        .collect();
    assert!(
        ops.len() <= MAX_BRUTE_OPS,
        "{} operations, brute force takes at most {MAX_BRUTE_OPS}",
        ops.len()
    );
    match model {
        Model::Register => Orders {
            h,
            ops,
            model: Register,
            per_key: true,
        }
        .run(),
        Model::Kv => Orders {
            h,
            ops,
            model: Kv::default(),
            per_key: true,
        }
        .run(),
        Model::Etcd => Orders {
            h,
            ops,
            model: Etcd,
            per_key: false,
        }
        .run(),
    }
}

struct Orders<'a, M> {
    h: &'a History,
    ops: Vec<usize>,
    model: M,
    /// Whether each key has its own state (else one state for all).
    per_key: bool,
}

impl<M: SeqModel> Orders<'_, M> {
    fn run(&self) -> bool {
        let slots = if self.per_key { self.h.keys.len() } else { 1 };
        let mut states = vec![self.model.init(); slots.max(1)];
        self.extend(&mut vec![false; self.ops.len()], &mut states)
    }

    /// Whether `x` may come next: no unplaced `ok` operation returned before it was invoked.
    fn may_come_next(&self, placed: &[bool], x: usize) -> bool {
        let invoke = self.h.ops[self.ops[x]].invoke;
        (0..self.ops.len()).all(|y| {
            let op = &self.h.ops[self.ops[y]];
            placed[y] || op.status != Status::Ok || op.complete.is_some_and(|c| c > invoke)
        })
    }

    fn extend(&self, placed: &mut [bool], states: &mut [M::State]) -> bool {
        let done =
            (0..self.ops.len()).all(|x| placed[x] || self.h.ops[self.ops[x]].status != Status::Ok);
        if done {
            return true;
        }
        for x in 0..self.ops.len() {
            if placed[x] || !self.may_come_next(placed, x) {
                continue;
            }
            let op = &self.h.ops[self.ops[x]];
            let slot = if self.per_key { op.key as usize } else { 0 };
            let Ok(next) = self.model.step(&states[slot], op) else {
                continue;
            };
            let before = std::mem::replace(&mut states[slot], next);
            placed[x] = true;
            let found = self.extend(placed, states);
            placed[x] = false;
            states[slot] = before;
            if found {
                return true;
            }
        }
        false
    }
}
