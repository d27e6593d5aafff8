//! All keys of an etcd store under one revision counter. The store starts empty at revision
//! 1; each put, each delete of an existing key and each successful cas makes one revision.
//! A response's `revision` is the store revision after the operation, so revisions order the
//! operations and prune the search at once.

use std::collections::BTreeMap;

use super::{check_expect, check_read, same_number, History, Mismatch, Op, SeqModel};
use crate::check::history::{Call, Id};

/// Revision of an empty store.
pub const INITIAL_REVISION: u64 = 1;

#[derive(Clone, Copy, Debug, Default)]
pub struct Etcd;

/// One live key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rec {
    pub value: Id,
    pub create_revision: u64,
    pub mod_revision: u64,
    pub version: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EtcdState {
    pub revision: u64,
    pub keys: BTreeMap<Id, Rec>,
}

impl EtcdState {
    fn put(&self, key: Id, value: Id) -> EtcdState {
        let revision = self.revision + 1;
        let mut keys = self.keys.clone();
        let rec = keys.entry(key).or_insert(Rec {
            value,
            create_revision: revision,
            mod_revision: 0,
            version: 0,
        });
        rec.value = value;
        rec.mod_revision = revision;
        rec.version += 1;
        EtcdState { revision, keys }
    }
}

impl SeqModel for Etcd {
    type State = EtcdState;

    fn init(&self) -> EtcdState {
        EtcdState {
            revision: INITIAL_REVISION,
            keys: BTreeMap::new(),
        }
    }

    fn step(&self, s: &EtcdState, op: &Op) -> Result<EtcdState, Mismatch> {
        let rec = s.keys.get(&op.key);
        let after = match op.call {
            Call::Get => {
                check_read(op, rec.map(|r| r.value))?;
                let (create, modr, version) = rec.map_or((0, 0, 0), |r| {
                    (r.create_revision, r.mod_revision, r.version)
                });
                same_number("create_revision", op.out.create_revision, create)?;
                same_number("mod_revision", op.out.mod_revision, modr)?;
                same_number("version", op.out.version, version)?;
                s.clone()
            }
            Call::Put { value } => s.put(op.key, value),
            Call::Delete if rec.is_none() => s.clone(),
            Call::Delete => {
                let mut keys = s.keys.clone();
                keys.remove(&op.key);
                EtcdState {
                    revision: s.revision + 1,
                    keys,
                }
            }
            Call::Cas { expect, value } => {
                check_expect(expect, rec.map(|r| r.value))?;
                s.put(op.key, value)
            }
        };
        same_number("revision", op.out.revision, after.revision)?;
        Ok(after)
    }

    fn show(&self, s: &EtcdState, h: &History) -> String {
        let keys: Vec<String> = s
            .keys
            .iter()
            .map(|(k, r)| {
                format!(
                    "{}={}@{}",
                    h.keys[*k as usize], h.values[r.value as usize], r.mod_revision
                )
            })
            .collect();
        format!("revision {} {{{}}}", s.revision, keys.join(", "))
    }
}
