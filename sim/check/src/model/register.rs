//! One register: read, write, compare-and-set. The key starts absent (`nil`).

use super::{check_expect, check_read, History, Mismatch, Op, SeqModel, Val};
use crate::history::Call;

#[derive(Clone, Copy, Debug, Default)]
pub struct Register;

impl SeqModel for Register {
    type State = Val;
    type Key = Val;

    fn init(&self) -> Val {
        None
    }

    fn key(&self, state: &Val) -> Val {
        *state
    }

    fn step(&self, state: &Val, op: &Op) -> Result<Val, Mismatch> {
        match op.call {
            Call::Get => check_read(op, *state).map(|()| *state),
            Call::Put { value } => Ok(Some(value)),
            Call::Cas { expect, value } => check_expect(expect, *state).map(|()| Some(value)),
            Call::Delete => unreachable!("register has no delete: rejected before the search"),
        }
    }

    fn show(&self, state: &Val, h: &History) -> String {
        h.show(*state)
    }
}
