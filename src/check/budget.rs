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
