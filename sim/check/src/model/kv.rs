//! One key of a key-value store: get, put, delete, compare-and-set, with etcd's per-key
//! version (1 on creation, +1 per put, 0 once deleted) and the revision of the key's last
//! change. A history's revisions come from one counter over all keys, so one key's writes
//! take strictly increasing revisions, and a read at header revision R that reports
//! mod_revision m saw the write made at m, with no write to the key in (m, R].
//!
//! State that no operation of the checked part reports is not kept ([`Kv::observing`]):
//! states that differ only there cannot be told apart by any observation, and keeping them
//! apart multiplies what the search explores.

use super::{check_expect, check_read, same_number, History, Mismatch, Op, SeqModel, Val};
use crate::history::{Call, Status};

/// Which parts of a key's state the model keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kv {
    pub versions: bool,
    pub revisions: bool,
}

impl Default for Kv {
    /// Everything kept: the naive model the brute-force checker uses.
    fn default() -> Kv {
        Kv {
            versions: true,
            revisions: true,
        }
    }
}

impl Kv {
    /// The model for operations `ops` of `h`: versions kept only if one of them reports a
    /// version, revisions only if one reports a revision or mod_revision.
    pub fn observing(h: &History, ops: &[usize]) -> Kv {
        let outs = || ops.iter().map(|&i| &h.ops[i].out);
        Kv {
            versions: outs().any(|o| o.version.is_some()),
            revisions: outs().any(|o| o.revision.is_some() || o.mod_revision.is_some()),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct KvState {
    pub value: Val,
    /// Invariant (when versions are kept): 0 exactly when `value` is `None`.
    pub version: u64,
    /// The revision of the key's last change if `exact`; else a revision that change is
    /// known to be later than (a write without a reported revision made it).
    pub revision: u64,
    pub exact: bool,
}

impl KvState {
    fn initial() -> KvState {
        KvState {
            exact: true,
            ..KvState::default()
        }
    }

    /// Checks that `field`, a revision `observed` by an operation, is after this state's
    /// last change (or, with `or_at`, no earlier than it).
    fn after(&self, field: &'static str, observed: u64, or_at: bool) -> Result<(), Mismatch> {
        let ok = observed > self.revision || (or_at && self.exact && observed == self.revision);
        if ok {
            Ok(())
        } else {
            Err(Mismatch::NotAfter {
                field,
                observed,
                last: self.revision,
            })
        }
    }

    /// Checks a read's header revision: the store was at least at the key's last change.
    fn read_at(&self, revision: Option<u64>) -> Result<(), Mismatch> {
        revision.map_or(Ok(()), |r| self.after("revision", r, true))
    }

    /// Checks a read's mod_revision against the key's last change.
    fn modified_at(&self, mod_revision: Option<u64>) -> Result<(), Mismatch> {
        match mod_revision {
            Some(m) if self.exact => same_number("mod_revision", Some(m), self.revision),
            Some(m) => self.after("mod_revision", m, false),
            None => Ok(()),
        }
    }
}

impl Kv {
    /// The state after a change of `s` that an operation reported at `revision`.
    fn changed(&self, s: &KvState, revision: Option<u64>, value: Val) -> KvState {
        let version = match value {
            Some(_) if self.versions => s.version + 1,
            _ => 0,
        };
        let (revision, exact) = match revision {
            _ if !self.revisions => (0, true),
            Some(r) => (r, true),
            None => (s.revision, false),
        };
        KvState {
            value,
            version,
            revision,
            exact,
        }
    }
}

impl SeqModel for Kv {
    type State = KvState;
    type Key = KvState;

    fn init(&self) -> KvState {
        KvState::initial()
    }

    fn key(&self, state: &KvState) -> KvState {
        *state
    }

    fn orders_by_revision(&self) -> bool {
        self.revisions
    }

    fn step(&self, s: &KvState, op: &Op) -> Result<KvState, Mismatch> {
        debug_assert!(
            !self.versions || s.value.is_none() == (s.version == 0),
            "value {:?} at version {}",
            s.value,
            s.version
        );
        // Only `ok` completions report anything.
        let revision = op.out.revision.filter(|_| self.revisions);
        let change = |value: Val| {
            if let Some(r) = revision {
                s.after("revision", r, false)?;
            }
            Ok(self.changed(s, revision, value))
        };
        match op.call {
            Call::Get => {
                check_read(op, s.value)?;
                if op.status == Status::Ok {
                    if self.versions {
                        same_number("version", op.out.version, s.version)?;
                    }
                    if self.revisions {
                        s.read_at(revision)?;
                        if s.value.is_some() {
                            s.modified_at(op.out.mod_revision)?;
                        }
                    }
                }
                Ok(*s)
            }
            Call::Put { value } => change(Some(value)),
            // Deleting a missing key changes nothing and makes no revision.
            Call::Delete if s.value.is_none() => s.read_at(revision).map(|()| *s),
            Call::Delete => change(None),
            Call::Cas { expect, value } => {
                check_expect(expect, s.value)?;
                change(Some(value))
            }
        }
    }

    fn show(&self, s: &KvState, h: &History) -> String {
        let mut out = h.show(s.value);
        if self.versions {
            out += &format!(" (version {})", s.version);
        }
        if self.revisions {
            let at = if s.exact { "at" } else { "after" };
            out += &format!(" changed {at} revision {}", s.revision);
        }
        out
    }
}
