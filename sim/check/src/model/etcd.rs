//! All keys of an etcd store under one revision counter. The store starts empty at revision
//! 1; each put, each delete of an existing key and each successful cas makes one revision.
//! A response's `revision` is the store revision after the operation, so revisions order the
//! operations and prune the search at once.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::{check_expect, check_read, same_number, History, Mismatch, Op, SeqModel};
use crate::fingerprint;
use crate::history::{Call, Id};

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

/// Invariant: `fingerprint` is the XOR of `Rec::fingerprint` over `keys`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdState {
    pub revision: u64,
    /// Shared between states until a write changes it.
    pub keys: Rc<BTreeMap<Id, Rec>>,
    pub fingerprint: u128,
}

impl Rec {
    fn fingerprint(&self, key: Id) -> u128 {
        let r = self;
        fingerprint::of(&[
            u64::from(key),
            u64::from(r.value),
            r.create_revision,
            r.mod_revision,
            r.version,
        ])
    }
}

impl EtcdState {
    /// The state with `key` set to `rec` (or removed), one revision later.
    fn write(&self, key: Id, rec: Option<Rec>) -> EtcdState {
        let mut keys = (*self.keys).clone();
        let old = match rec {
            Some(r) => keys.insert(key, r),
            None => keys.remove(&key),
        };
        let fingerprint = [old, rec]
            .iter()
            .flatten()
            .fold(self.fingerprint, |f, r| f ^ r.fingerprint(key));
        EtcdState {
            revision: self.revision + 1,
            keys: Rc::new(keys),
            fingerprint,
        }
    }

    fn put(&self, key: Id, value: Id) -> EtcdState {
        let revision = self.revision + 1;
        let old = self.keys.get(&key);
        let rec = Rec {
            value,
            create_revision: old.map_or(revision, |r| r.create_revision),
            mod_revision: revision,
            version: old.map_or(0, |r| r.version) + 1,
        };
        self.write(key, Some(rec))
    }
}

impl SeqModel for Etcd {
    type State = EtcdState;
    type Key = (u64, u128);

    fn init(&self) -> EtcdState {
        EtcdState {
            revision: INITIAL_REVISION,
            keys: Rc::new(BTreeMap::new()),
            fingerprint: 0,
        }
    }

    fn key(&self, s: &EtcdState) -> (u64, u128) {
        debug_assert_eq!(
            s.fingerprint,
            s.keys.iter().fold(0, |f, (k, r)| f ^ r.fingerprint(*k)),
            "fingerprint out of date at revision {}",
            s.revision
        );
        (s.revision, s.fingerprint)
    }

    fn orders_by_revision(&self) -> bool {
        true
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
            Call::Delete => s.write(op.key, None),
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
