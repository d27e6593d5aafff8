//! The leader's expiry queue: every lease by the time it next needs a look (its expiry, or
//! when a proposed revoke is due to be proposed again), so that finding what expired costs
//! what expired, not what exists (etcd's lease heap does the same job).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

#[derive(Debug, Default)]
pub(super) struct ExpiryQueue {
    /// Invariant: holds `(t, id)` iff `due[id] == t`.
    by_time: BTreeSet<(Duration, i64)>,
    due: BTreeMap<i64, Duration>,
}

impl ExpiryQueue {
    /// Lease `id` next needs a look at `at` (replacing any earlier time).
    pub(super) fn set(&mut self, id: i64, at: Duration) {
        if let Some(old) = self.due.insert(id, at) {
            self.by_time.remove(&(old, id));
        }
        self.by_time.insert((at, id));
    }

    pub(super) fn remove(&mut self, id: i64) {
        if let Some(old) = self.due.remove(&id) {
            self.by_time.remove(&(old, id));
        }
    }

    pub(super) fn clear(&mut self) {
        self.by_time.clear();
        self.due.clear();
    }

    /// Up to `max` leases due at `now`, earliest first; each is put back at `now + retry`,
    /// the next time to look at it if its revoke has not been applied by then.
    pub(super) fn take_due(&mut self, now: Duration, retry: Duration, max: usize) -> Vec<i64> {
        let due: Vec<i64> = self
            .by_time
            .iter()
            .take_while(|&&(at, _)| at <= now)
            .take(max)
            .map(|&(_, id)| id)
            .collect();
        for &id in &due {
            self.set(id, now + retry);
        }
        debug_assert_eq!(self.by_time.len(), self.due.len());
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Set(i64, u64),
        Remove(i64),
        Take(u64, usize),
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..20i64, 0..50u64).prop_map(|(id, t)| Op::Set(id, t)),
            2 => (0..20i64).prop_map(Op::Remove),
            3 => (0..60u64, 0..5usize).prop_map(|(t, n)| Op::Take(t, n)),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        /// The queue answers exactly as a scan over every lease would (the naive model),
        /// ties between equal times going to the smaller id.
        #[test]
        fn matches_a_full_scan(ops in proptest::collection::vec(op(), 0..200)) {
            let retry = Duration::from_secs(3);
            let mut q = ExpiryQueue::default();
            let mut model: BTreeMap<i64, Duration> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Set(id, t) => {
                        q.set(id, Duration::from_secs(t));
                        model.insert(id, Duration::from_secs(t));
                    }
                    Op::Remove(id) => {
                        q.remove(id);
                        model.remove(&id);
                    }
                    Op::Clear => {
                        q.clear();
                        model.clear();
                    }
                    Op::Take(t, max) => {
                        let now = Duration::from_secs(t);
                        let mut expected: Vec<(Duration, i64)> = model
                            .iter()
                            .filter(|&(_, &at)| at <= now)
                            .map(|(&id, &at)| (at, id))
                            .collect();
                        expected.sort();
                        expected.truncate(max);
                        let expected: Vec<i64> = expected.into_iter().map(|(_, id)| id).collect();
                        for &id in &expected {
                            model.insert(id, now + retry);
                        }
                        prop_assert_eq!(q.take_due(now, retry, max), expected);
                    }
                }
            }
        }
    }
}
