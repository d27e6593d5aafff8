//! Explaining a "not linearizable" verdict: the window of operations no order could get
//! past, the states the search reached before it, and why each candidate failed there.

use std::collections::BTreeMap;
use std::fmt;

use super::history::{History, Status};
use super::infer::Proof;
use super::model::{Model, SeqModel};
use super::wgl::Failure;

/// One state the search was stuck in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub state: String,
    /// The operations linearized last before `state`, oldest first.
    pub after: Vec<usize>,
    /// Each candidate operation and why it could not come next.
    pub outcomes: Vec<(usize, String)>,
}

/// The smallest failing window found, self-contained (operations already described).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub model: Model,
    /// The partition's key, for per-key models.
    pub key: Option<String>,
    /// The operation whose completion no order could get past.
    pub blocking: usize,
    /// The operations in the window (history indices, invocation order): the blocking one,
    /// those invoked before it returned that were left to linearize, and the last ones
    /// linearized before each stuck state.
    pub window: Vec<usize>,
    /// For an `info` blocking operation: the operation that read its value, before whose
    /// completion it had to take effect.
    pub observer: Option<usize>,
    pub tried: Vec<Attempt>,
    /// Description of every operation named above.
    pub ops: BTreeMap<usize, String>,
}

/// What a candidate that the model accepts ran into.
const EXPLORED: &str = "possible here, but every order continuing from it fails";

impl Report {
    pub fn new<M: SeqModel>(
        h: &History,
        kind: Model,
        model: &M,
        key: Option<String>,
        f: &Failure<M::State>,
    ) -> Report {
        let mut window: Vec<usize> = f
            .stuck
            .iter()
            .flat_map(|s| s.after.iter().chain(&s.candidates).copied())
            .collect();
        window.push(f.blocking);
        // An `info` write blocks when the first operation that read its value returned.
        let observer = (h.ops[f.blocking].status == Status::Info)
            .then(|| h.ops.iter().position(|op| op.complete == Some(f.at)))
            .flatten();
        window.extend(observer);
        window.sort_unstable_by_key(|&i| h.ops[i].invoke);
        window.dedup();
        let tried: Vec<Attempt> = f
            .stuck
            .iter()
            .map(|s| Attempt {
                state: model.show(&s.state, h),
                after: s.after.clone(),
                outcomes: s
                    .candidates
                    .iter()
                    .map(|&i| {
                        let why = model
                            .step(&s.state, &h.ops[i])
                            .map_or_else(|m| m.explain(h), |_| EXPLORED.into());
                        (i, why)
                    })
                    .collect(),
            })
            .collect();
        let ops = window.iter().map(|&i| (i, h.describe(i))).collect();
        Report {
            model: kind,
            key,
            blocking: f.blocking,
            observer,
            window,
            tried,
            ops,
        }
    }
}

impl Report {
    /// The report of a refutation without search ([`super::infer`]): the two operations
    /// and the counter between them.
    pub fn proof(h: &History, kind: Model, key: Option<String>, p: &Proof) -> Report {
        let window = vec![p.first, p.second];
        Report {
            model: kind,
            key,
            blocking: p.second,
            observer: None,
            tried: vec![Attempt {
                state: p.state.clone(),
                after: vec![p.first],
                outcomes: vec![(p.second, p.why.clone())],
            }],
            ops: window.iter().map(|&i| (i, h.describe(i))).collect(),
            window,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self
            .key
            .as_ref()
            .map_or(String::new(), |k| format!(", key {k}"));
        writeln!(
            f,
            "model {}{key}: window of {} operations:",
            self.model.name(),
            self.window.len()
        )?;
        for i in &self.window {
            writeln!(f, "  {}", self.ops[i])?;
        }
        let why = match self.observer {
            Some(o) => format!("had to take effect before #{o} returned, as that read its value"),
            None => "returned before it could take effect".to_string(),
        };
        writeln!(
            f,
            "{} {why}; in every state reached before it:",
            self.ops[&self.blocking]
        )?;
        for (n, a) in self.tried.iter().enumerate() {
            let after: Vec<String> = a.after.iter().map(|i| format!("#{i}")).collect();
            let after = if after.is_empty() {
                "initial".to_string()
            } else {
                format!("after {}", after.join(", "))
            };
            writeln!(f, "state {}: {} ({after})", n + 1, a.state,)?;
            for (i, why) in &a.outcomes {
                writeln!(f, "  #{i} next: {why}")?;
            }
        }
        Ok(())
    }
}
