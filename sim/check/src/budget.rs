//! How long and how large a check may grow, without reading a clock: the library runs
//! inside the simulator, so wall-clock deadlines come in as a closure the caller owns.
//! Memory is bounded by what the search's memo holds, the one part that grows with the
//! search rather than with the history.

/// Search steps between two calls of a deadline closure.
pub const DEADLINE_POLL_STEPS: u64 = 1024;
/// What the search's memo may hold unless told otherwise: 1 GiB.
pub const DEFAULT_MEMORY_BYTES: usize = 1 << 30;

/// The limit on one check's time; when it runs out the verdict is `unknown`.
pub enum Budget {
    Unlimited,
    /// At most this many search steps (each tries or undoes one operation).
    Steps(u64),
    /// Polled every [`DEADLINE_POLL_STEPS`] steps; returns true once time is up.
    Deadline(Box<dyn Fn() -> bool>),
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Budget::Unlimited => write!(f, "Unlimited"),
            Budget::Steps(n) => write!(f, "Steps({n})"),
            Budget::Deadline(_) => write!(f, "Deadline"),
        }
    }
}

/// Which limit ended a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    Steps,
    Time,
    /// The memo would have grown past the memory bound.
    Memory,
}

impl Limit {
    pub fn name(self) -> &'static str {
        match self {
            Limit::Steps => "step limit",
            Limit::Time => "time limit",
            Limit::Memory => "memory limit",
        }
    }
}

/// Counts steps against a [`Budget`] and memo bytes against a bound; shared by all
/// partitions of one check.
#[derive(Debug)]
pub struct Meter {
    budget: Budget,
    memory: usize,
    steps: u64,
    spent: Option<Limit>,
}

impl Meter {
    pub fn new(budget: Budget, memory: usize) -> Meter {
        Meter {
            budget,
            memory,
            steps: 0,
            spent: None,
        }
    }

    /// Counts one step of a search whose memo would hold `memo_bytes` after it; true once
    /// a limit is reached (and from then on).
    pub fn exhausted(&mut self, memo_bytes: usize) -> bool {
        self.steps += 1;
        if self.spent.is_none() {
            self.spent = match &self.budget {
                _ if memo_bytes > self.memory => Some(Limit::Memory),
                Budget::Steps(n) if self.steps > *n => Some(Limit::Steps),
                Budget::Deadline(up) if self.steps.is_multiple_of(DEADLINE_POLL_STEPS) && up() => {
                    Some(Limit::Time)
                }
                _ => None,
            };
        }
        self.spent.is_some()
    }

    /// The limit reached, if any.
    pub fn spent(&self) -> Option<Limit> {
        self.spent
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn a_step_budget_allows_exactly_that_many_steps() {
        let mut m = Meter::new(Budget::Steps(3), DEFAULT_MEMORY_BYTES);
        assert_eq!(
            (0..5).map(|_| m.exhausted(0)).collect::<Vec<_>>(),
            [false, false, false, true, true]
        );
        assert_eq!(m.spent(), Some(Limit::Steps));
    }

    #[test]
    fn a_deadline_is_polled_every_few_steps_and_stays_spent() {
        let polls = Rc::new(Cell::new(0u64));
        let counter = Rc::clone(&polls);
        let mut m = Meter::new(
            Budget::Deadline(Box::new(move || {
                counter.set(counter.get() + 1);
                counter.get() >= 2
            })),
            DEFAULT_MEMORY_BYTES,
        );
        let spent_at = (1..).find(|_| m.exhausted(0)).expect("the deadline comes");
        assert_eq!(spent_at, 2 * DEADLINE_POLL_STEPS);
        assert!(m.exhausted(0), "stays spent without polling again");
        assert_eq!((polls.get(), m.spent()), (2, Some(Limit::Time)));
    }

    #[test]
    fn a_memo_past_the_memory_bound_ends_the_check() {
        let mut m = Meter::new(Budget::Unlimited, 1000);
        assert!(!m.exhausted(1000));
        assert!(m.exhausted(1001));
        assert!(m.exhausted(0), "stays spent");
        assert_eq!(m.spent(), Some(Limit::Memory));
    }
}
