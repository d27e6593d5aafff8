//! Wing–Gong–Lowe search for a linearization of one partition of a history.
//!
//! The invocations and completions of the partition's operations form a doubly linked list
//! in time order. The search walks it: at an invocation it tries to linearize that operation
//! next (apply it to the model, lift it out of the list); at a completion it has found an
//! operation that returned before it could be linearized and backtracks. Configurations
//! (linearized set, model state) already explored are memoized, so each is expanded once,
//! and one that an explored configuration subsumes is not expanded at all ([`super::memo`]).
//!
//! An `ok` operation's completion entry is its completion. An `info` (or missing) one has
//! none, so it may be linearized at any point after its invocation, or never: the search
//! succeeds once every operation with a completion entry is linearized. The exception is an
//! `info` write whose value an `ok` operation read: it gets that reader's completion as its
//! own, and interchangeable `info` operations are tried in invocation order only (both in
//! [`info`]).

use super::budget::Meter;
use super::history::{Call, History, Status};
use super::info;
use super::memo::Memo;
use super::model::SeqModel;

/// Most distinct states kept to explain a failure.
pub const MAX_FAILURE_STATES: usize = 8;
/// Most linearized operations shown before each failing state.
pub const MAX_CONTEXT_OPS: usize = 6;

/// One configuration the search could not extend past the blocking operation.
#[derive(Clone, Debug)]
pub struct Stuck<S> {
    pub state: S,
    /// The last operations linearized to reach `state`, oldest first (history indices).
    pub after: Vec<usize>,
    /// Operations invoked before the blocking completion and not linearized (history indices).
    pub candidates: Vec<usize>,
}

/// Where the search got furthest before running out of orders.
#[derive(Clone, Debug)]
pub struct Failure<S> {
    /// The operation (history index) whose completion no order got past.
    pub blocking: usize,
    /// The event position by which `blocking` had to take effect: its completion, or for an
    /// `info` write, the completion of the first operation that observed its value.
    pub at: usize,
    pub stuck: Vec<Stuck<S>>,
}

#[derive(Clone, Debug)]
pub enum Outcome<S> {
    /// `order`: the operations (history indices) in the order found; `info` operations
    /// left out never took effect (or did after the last operation in it).
    Linearizable {
        order: Vec<usize>,
    },
    NotLinearizable(Failure<S>),
    /// The budget ran out; `window` holds the operations (history indices) the search was
    /// stuck on furthest in, or those before the first completion it had not passed.
    Unknown {
        window: Vec<usize>,
    },
}

/// Whether the search must consider operation `i` at all: failed operations did not take
/// effect and reads with an unknown outcome observed nothing.
pub fn relevant(h: &History, i: usize) -> bool {
    let op = &h.ops[i];
    match op.status {
        Status::Ok => true,
        Status::Fail => false,
        Status::Info => op.call != Call::Get,
    }
}

/// Sentinel node before the first entry.
const HEAD: usize = 0;

/// The time-ordered entry list, with lift/unlift (dancing links).
struct Entries {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Node -> (partition-local operation, whether the node is the invocation).
    node: Vec<(usize, bool)>,
    call_node: Vec<usize>,
    /// `None` for operations without a completion.
    return_node: Vec<Option<usize>>,
    /// Event position by which each operation must have taken effect (its completion node).
    deadline: Vec<Option<usize>>,
}

impl Entries {
    fn new(h: &History, ops: &[usize], deadline: &[Option<usize>]) -> Entries {
        let mut events: Vec<(usize, usize, bool)> = Vec::with_capacity(2 * ops.len());
        for (j, &i) in ops.iter().enumerate() {
            let op = &h.ops[i];
            events.push((op.invoke, j, true));
            if let Some(by) = deadline[j] {
                assert!(
                    by > op.invoke,
                    "op {i} must take effect by {by}, before its invoke {}",
                    op.invoke
                );
                events.push((by, j, false));
            }
        }
        events.sort_unstable();
        let n = events.len();
        let mut e = Entries {
            next: (1..=n + 1).collect(),
            prev: (0..=n).map(|k| k.wrapping_sub(1)).collect(),
            node: Vec::with_capacity(n + 1),
            call_node: vec![0; ops.len()],
            return_node: vec![None; ops.len()],
            deadline: deadline.to_vec(),
        };
        e.node.push((usize::MAX, false));
        for (k, &(_, j, is_call)) in events.iter().enumerate() {
            e.node.push((j, is_call));
            if is_call {
                e.call_node[j] = k + 1;
            } else {
                e.return_node[j] = Some(k + 1);
            }
        }
        e
    }

    fn unlink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = n;
        if n < self.prev.len() {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, x: usize) {
        let (p, n) = (self.prev[x], self.next[x]);
        self.next[p] = x;
        if n < self.prev.len() {
            self.prev[n] = x;
        }
    }

    fn lift(&mut self, j: usize) {
        self.unlink(self.call_node[j]);
        if let Some(r) = self.return_node[j] {
            self.unlink(r);
        }
    }

    fn unlift(&mut self, j: usize) {
        if let Some(r) = self.return_node[j] {
            self.relink(r);
        }
        self.relink(self.call_node[j]);
    }

    /// Whether `node` is past the last entry.
    fn end(&self, node: usize) -> bool {
        node >= self.prev.len()
    }

    /// Operations whose invocation is still listed before `stop`.
    fn calls_before(&self, stop: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut node = self.next[HEAD];
        while node != stop {
            let (j, is_call) = self.node[node];
            if is_call {
                out.push(j);
            }
            node = self.next[node];
        }
        out
    }
}

/// Searches for a linearization of `ops` (history indices in invocation order, all relevant).
pub fn search<M: SeqModel>(
    h: &History,
    model: &M,
    ops: &[usize],
    meter: &mut Meter,
) -> Outcome<M::State> {
    search_after(h, model, ops, &vec![None; ops.len()], meter)
}

/// [`search`] where operation `j` may be linearized only after `after[j]` (both
/// partition-local), for constraints the model alone does not know. Each chain of
/// interchangeable `info` operations ([`info::gates`]) must have its `after` operations in
/// revision order along it, or the search is no longer complete.
pub fn search_after<M: SeqModel>(
    h: &History,
    model: &M,
    ops: &[usize],
    after: &[Option<usize>],
    meter: &mut Meter,
) -> Outcome<M::State> {
    let deadline = info::deadlines(h, ops);
    let mut list = Entries::new(h, ops, &deadline);
    let required = |j: usize| deadline[j].is_some();
    let mut remaining = (0..ops.len()).filter(|&j| required(j)).count();
    let mut state = model.init();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut failure: Option<Failure<M::State>> = None;
    let mut gate = info::gates(h, ops);
    let mut memo = Memo::new(info::classes(&gate, &deadline));
    if model.orders_by_revision() {
        chain_by_revision(h, ops, &mut gate);
    }
    // Reads change no state: one that fits the current state can be linearized at once
    // (any order placing it later stays legal with it moved here), so the search never
    // backtracks to try the others instead of it.
    let read = |j: usize| h.ops[ops[j]].call == Call::Get;
    let mut applied = vec![false; ops.len()];
    // Each configuration is scanned twice up to the first completion: for required
    // operations, then for optional ones, so that configurations with fewer optional
    // operations applied come first and subsume the others.
    let mut optional_pass = false;
    let mut node = list.next[HEAD];
    while remaining > 0 {
        if meter.exhausted(memo.bytes_after_insert()) {
            return Outcome::Unknown {
                window: hard_window(failure.as_ref(), ops, &list),
            };
        }
        assert!(
            !list.end(node),
            "{remaining} ok operations left but the list is exhausted"
        );
        let (j, is_call) = list.node[node];
        let open = optional_pass != required(j)
            && gate[j].is_none_or(|g| applied[g])
            && after[j].is_none_or(|g| applied[g]);
        // Whether this configuration is known to lead nowhere.
        let mut dead = false;
        if is_call && open {
            if let Ok(next) = model.step(&state, &h.ops[ops[j]]) {
                if memo.enter(j, model.key(&next)) {
                    stack.push((j, std::mem::replace(&mut state, next)));
                    applied[j] = true;
                    list.lift(j);
                    remaining -= usize::from(required(j));
                    (node, optional_pass) = (list.next[HEAD], false);
                    continue;
                }
                // The configuration after a fitting read was explored and led nowhere.
                dead = read(j);
            }
        }
        if !dead {
            if is_call {
                node = list.next[node];
                continue;
            }
            if !optional_pass {
                (node, optional_pass) = (list.next[HEAD], true);
                continue;
            }
            note_stuck(&mut failure, ops, &list, node, &state, &stack);
        }
        // Back to the last configuration with an alternative left: reads have none.
        loop {
            let Some((k, before)) = stack.pop() else {
                return Outcome::NotLinearizable(failure.expect("noted before giving up"));
            };
            state = before;
            memo.leave(k);
            applied[k] = false;
            list.unlift(k);
            remaining += usize::from(required(k));
            if !read(k) {
                (node, optional_pass) = (list.next[list.call_node[k]], !required(k));
                break;
            }
        }
    }
    Outcome::Linearizable {
        order: stack.iter().map(|&(j, _)| ops[j]).collect(),
    }
}

/// Chains the puts and cas of `ops` that report a revision in revision order: each
/// may be linearized only after the one before it (`gate`). Every such write made a revision
/// of its own, so under a model that checks revisions no other order succeeds.
fn chain_by_revision(h: &History, ops: &[usize], gate: &mut [Option<usize>]) {
    let mut writes: Vec<(u64, usize)> = ops
        .iter()
        .enumerate()
        .filter_map(|(j, &i)| {
            let op = &h.ops[i];
            let makes_revision = matches!(op.call, Call::Put { .. } | Call::Cas { .. });
            // `info` writes have a revision from rule 4 of `info` only.
            let placed = op.status == Status::Ok || gate[j].is_none();
            (makes_revision && placed)
                .then_some(op.out.revision)
                .flatten()
                .map(|r| (r, j))
        })
        .collect();
    writes.sort_unstable();
    for pair in writes.windows(2) {
        let (before, after) = (pair[0].1, pair[1].1);
        assert!(
            gate[after].is_none(),
            "op {after} is already gated on {:?}",
            gate[after]
        );
        gate[after] = Some(before);
    }
}

/// Where a search that ran out of budget was: the blocking operation it got furthest to and
/// the candidates it tried there, else the operations before the first completion still in
/// the list.
fn hard_window<S>(failure: Option<&Failure<S>>, ops: &[usize], list: &Entries) -> Vec<usize> {
    let mut window: Vec<usize> = match failure {
        Some(f) => f
            .stuck
            .iter()
            .flat_map(|s| s.candidates.iter().copied())
            .chain([f.blocking])
            .collect(),
        None => {
            let mut node = list.next[HEAD];
            while !list.end(node) && list.node[node].1 {
                node = list.next[node];
            }
            let blocking = (!list.end(node)).then(|| ops[list.node[node].0]);
            let calls = list.calls_before(node).into_iter().map(|j| ops[j]);
            calls.chain(blocking).collect()
        }
    };
    window.sort_unstable();
    window.dedup();
    window
}

/// Records the configuration stuck at completion node `stop` if it got at least as far as
/// any before.
fn note_stuck<S: Clone + Eq>(
    failure: &mut Option<Failure<S>>,
    ops: &[usize],
    list: &Entries,
    stop: usize,
    state: &S,
    stack: &[(usize, S)],
) {
    let (j, _) = list.node[stop];
    let (blocking, at) = (
        ops[j],
        list.deadline[j].expect("completion nodes have a deadline"),
    );
    match failure {
        Some(f) if f.at > at => return,
        Some(f) if f.blocking == blocking => {
            if f.stuck.len() >= MAX_FAILURE_STATES || f.stuck.iter().any(|s| s.state == *state) {
                return;
            }
        }
        _ => {
            *failure = Some(Failure {
                blocking,
                at,
                stuck: Vec::new(),
            })
        }
    }
    let f = failure.as_mut().expect("set above");
    let context = stack.len().saturating_sub(MAX_CONTEXT_OPS);
    f.stuck.push(Stuck {
        state: state.clone(),
        after: stack[context..].iter().map(|&(j, _)| ops[j]).collect(),
        candidates: list
            .calls_before(stop)
            .into_iter()
            .map(|j| ops[j])
            .collect(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::{Budget, DEFAULT_MEMORY_BYTES};
    use crate::model::Register;
    use crate::testing::history;

    fn run(spec: &str) -> Outcome<crate::history::Val> {
        let h = history(spec);
        let ops: Vec<usize> = (0..h.ops.len()).filter(|&i| relevant(&h, i)).collect();
        search(
            &h,
            &Register,
            &ops,
            &mut Meter::new(Budget::Unlimited, DEFAULT_MEMORY_BYTES),
        )
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        let out = run("1 invoke put k v1\n2 invoke put k v2\n3 invoke get k\n1 ok put k\n2 ok put k\n3 ok get k v1");
        assert!(matches!(out, Outcome::Linearizable { .. }), "{out:?}");
    }

    #[test]
    fn an_operation_that_returned_first_must_take_effect_first() {
        let out = run("1 invoke put k v1\n1 ok put k\n2 invoke put k v2\n2 ok put k\n3 invoke get k\n3 ok get k v1");
        let Outcome::NotLinearizable(f) = out else {
            panic!("{out:?}")
        };
        assert_eq!(f.blocking, 2, "the read is what no order gets past");
        assert_eq!(
            f.stuck.len(),
            1,
            "only one state is reachable before the read: {f:?}"
        );
        assert_eq!(f.stuck[0].after, vec![0, 1]);
        assert_eq!(f.stuck[0].candidates, vec![2]);
    }

    #[test]
    fn an_info_write_may_happen_late_or_never() {
        let late = "1 invoke put k v1\n1 info put k\n2 invoke get k\n2 ok get k nil\n2 invoke get k\n2 ok get k v1";
        assert!(matches!(run(late), Outcome::Linearizable { .. }));
        let never = "1 invoke put k v1\n1 info put k\n2 invoke get k\n2 ok get k nil";
        assert!(matches!(run(never), Outcome::Linearizable { .. }));
        let missing = "1 invoke put k v1\n2 invoke get k\n2 ok get k v1";
        assert!(
            matches!(run(missing), Outcome::Linearizable { .. }),
            "a missing completion is info"
        );
    }

    #[test]
    fn failed_operations_and_info_reads_are_left_out() {
        let h = history("1 invoke put k v1\n1 fail put k\n2 invoke get k\n2 info get k\n3 invoke get k\n3 ok get k nil");
        assert_eq!(
            (0..3).filter(|&i| relevant(&h, i)).collect::<Vec<_>>(),
            vec![2]
        );
    }

    #[test]
    fn the_search_stops_when_the_budget_is_spent() {
        let h = history("1 invoke put k v1\n1 ok put k\n2 invoke get k\n2 ok get k v1");
        let mut meter = Meter::new(Budget::Steps(1), DEFAULT_MEMORY_BYTES);
        assert!(matches!(
            search(&h, &Register, &[0, 1], &mut meter),
            Outcome::Unknown { .. }
        ));
    }
}
