//! One key of a key-value store: get, put, delete, compare-and-set, with etcd's per-key
//! version (1 on creation, +1 per put, 0 once deleted).

use super::{check_expect, check_read, same_number, History, Mismatch, Op, SeqModel, Val};
use crate::history::{Call, Status};

#[derive(Clone, Copy, Debug, Default)]
pub struct Kv;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct KvState {
    pub value: Val,
    /// Invariant: 0 exactly when `value` is `None`.
    pub version: u64,
}

impl KvState {
    fn put(self, value: u32) -> KvState {
        KvState {
            value: Some(value),
            version: self.version + 1,
        }
    }
}

impl SeqModel for Kv {
    type State = KvState;
    type Key = KvState;

    fn init(&self) -> KvState {
        KvState::default()
    }

    fn key(&self, state: &KvState) -> KvState {
        *state
    }

    fn step(&self, s: &KvState, op: &Op) -> Result<KvState, Mismatch> {
        debug_assert_eq!(
            s.value.is_none(),
            s.version == 0,
            "value {:?} at version {}",
            s.value,
            s.version
        );
        match op.call {
            Call::Get => {
                check_read(op, s.value)?;
                if op.status == Status::Ok {
                    same_number("version", op.out.version, s.version)?;
                }
                Ok(*s)
            }
            Call::Put { value } => Ok(s.put(value)),
            Call::Delete => Ok(KvState::default()),
            Call::Cas { expect, value } => check_expect(expect, s.value).map(|()| s.put(value)),
        }
    }

    fn show(&self, s: &KvState, h: &History) -> String {
        format!("{} (version {})", h.show(s.value), s.version)
    }
}
