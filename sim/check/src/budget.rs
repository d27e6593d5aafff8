//! How long a check may run, without reading a clock: the library runs inside the
//! simulator, so wall-clock deadlines come in as a closure the caller owns.

/// Search steps between two calls of a deadline closure.
pub const DEADLINE_POLL_STEPS: u64 = 1024;

/// The limit on one check; when it runs out the verdict is `unknown`.
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

/// Counts steps against a [`Budget`]; shared by all partitions of one check.
#[derive(Debug)]
pub struct Meter {
    budget: Budget,
    steps: u64,
    out: bool,
}

impl Meter {
    pub fn new(budget: Budget) -> Meter {
        Meter {
            budget,
            steps: 0,
            out: false,
        }
    }

    /// Counts one step; true once the budget is spent (and from then on).
    pub fn exhausted(&mut self) -> bool {
        self.steps += 1;
        self.out = self.out
            || match &self.budget {
                Budget::Unlimited => false,
                Budget::Steps(n) => self.steps > *n,
                Budget::Deadline(up) => self.steps.is_multiple_of(DEADLINE_POLL_STEPS) && up(),
            };
        self.out
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
        let mut m = Meter::new(Budget::Steps(3));
        assert_eq!(
            (0..5).map(|_| m.exhausted()).collect::<Vec<_>>(),
            [false, false, false, true, true]
        );
    }

    #[test]
    fn a_deadline_is_polled_every_few_steps_and_stays_spent() {
        let polls = Rc::new(Cell::new(0u64));
        let counter = Rc::clone(&polls);
        let mut m = Meter::new(Budget::Deadline(Box::new(move || {
            counter.set(counter.get() + 1);
            counter.get() >= 2
        })));
        let spent_at = (1..).find(|_| m.exhausted()).expect("the deadline comes");
        assert_eq!(spent_at, 2 * DEADLINE_POLL_STEPS);
        assert!(m.exhausted(), "stays spent without polling again");
        assert_eq!(polls.get(), 2);
    }
}
