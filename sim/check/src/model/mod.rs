//! Sequential specifications the search checks histories against.
//!
//! `register` and `kv` describe one key and are checked per key (P-compositionality);
//! `etcd` spans all keys through the global revision and is checked as a whole.

pub mod etcd;
mod kv;
mod register;

use std::fmt::Debug;
use std::hash::Hash;

pub use etcd::{Etcd, EtcdState};
pub use kv::Kv;
pub use register::Register;

use super::history::{Call, History, Op, Status, Val};

/// Why an operation's recorded outcome is impossible in a state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// A value field disagrees: the history says `observed`, the state holds `actual`.
    Value {
        field: &'static str,
        observed: Val,
        actual: Val,
    },
    /// A number field (revision, version) disagrees.
    Number {
        field: &'static str,
        observed: u64,
        actual: u64,
    },
    /// A revision is not after the key's last change, made at revision `last` or later.
    NotAfter {
        field: &'static str,
        observed: u64,
        last: u64,
    },
}

impl Mismatch {
    /// Readable explanation, with values spelled out.
    pub fn explain(&self, h: &History) -> String {
        match *self {
            Mismatch::Value {
                field,
                observed,
                actual,
            } => {
                format!(
                    "{field} {} but the key holds {}",
                    h.show(observed),
                    h.show(actual)
                )
            }
            Mismatch::Number {
                field,
                observed,
                actual,
            } => {
                format!("{field} {observed} but the model has {actual}")
            }
            Mismatch::NotAfter {
                field,
                observed,
                last,
            } => {
                format!("{field} {observed} but the key changed at revision {last} or later")
            }
        }
    }
}

/// Checks that a reported value equals the model's.
pub fn same_value(field: &'static str, observed: Val, actual: Val) -> Result<(), Mismatch> {
    if observed == actual {
        Ok(())
    } else {
        Err(Mismatch::Value {
            field,
            observed,
            actual,
        })
    }
}

/// Checks a reported number, if the history has one, against the model's.
pub fn same_number(
    field: &'static str,
    observed: Option<u64>,
    actual: u64,
) -> Result<(), Mismatch> {
    match observed {
        Some(n) if n != actual => Err(Mismatch::Number {
            field,
            observed: n,
            actual,
        }),
        _ => Ok(()),
    }
}

/// Checks what a `get` returned, if it completed `ok`.
pub fn check_read(op: &Op, actual: Val) -> Result<(), Mismatch> {
    if op.status == Status::Ok {
        same_value("read", op.out.value, actual)
    } else {
        Ok(())
    }
}

/// Checks a `cas` precondition.
pub fn check_expect(expect: Val, actual: Val) -> Result<(), Mismatch> {
    same_value("expected", expect, actual)
}

/// A sequential object: a state and the effect of each operation on it.
pub trait SeqModel {
    /// Cloned at each step of the search.
    type State: Clone + Eq + Debug;
    /// What the search memoizes a state by: the state itself when small, else a
    /// fingerprint.
    type Key: Eq + Hash;

    fn init(&self) -> Self::State;

    fn key(&self, state: &Self::State) -> Self::Key;

    /// Whether writes that report a revision take effect in revision order, which the
    /// search then follows instead of trying every order.
    fn orders_by_revision(&self) -> bool {
        false
    }

    /// The state after `op`, or why `op`'s recorded outcome is impossible in `state`.
    fn step(&self, state: &Self::State, op: &Op) -> Result<Self::State, Mismatch>;

    /// Readable form of a state.
    fn show(&self, state: &Self::State, h: &History) -> String;
}

/// The models the checker offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Model {
    /// Read / write / cas per key: the Jepsen etcd register workload.
    Register,
    /// Get / put / delete / cas per key, checking returned values and versions.
    Kv,
    /// All keys under one revision counter: revisions, mod_revisions and versions must fit
    /// one total order.
    Etcd,
}

impl Model {
    pub const ALL: [Model; 3] = [Model::Register, Model::Kv, Model::Etcd];

    pub fn name(self) -> &'static str {
        match self {
            Model::Register => "register",
            Model::Kv => "kv",
            Model::Etcd => "etcd",
        }
    }

    /// Whether the history may be checked key by key.
    pub fn per_key(self) -> bool {
        self != Model::Etcd
    }

    /// Whether the model checks the revisions a history reports.
    pub fn checks_revisions(self) -> bool {
        self != Model::Register
    }

    /// Whether the model defines `call`.
    pub fn supports(self, call: Call) -> bool {
        self != Model::Register || call != Call::Delete
    }
}

impl std::str::FromStr for Model {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Model::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown model {s:?} (register, kv or etcd)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::history;

    /// Applies every operation of `spec` in order, returning the first mismatch.
    fn replay<M: SeqModel>(model: &M, spec: &str) -> Result<M::State, String> {
        let h = history(spec);
        h.ops.iter().try_fold(model.init(), |s, op| {
            model.step(&s, op).map_err(|m| m.explain(&h))
        })
    }

    #[test]
    fn etcd_counts_one_revision_per_change() {
        let ok = "1 invoke put a x\n1 ok put a rev=2\n1 invoke delete b\n1 ok delete b rev=2\n\
                  1 invoke put a y\n1 ok put a rev=3\n1 invoke get a\n1 ok get a y rev=3 mod=3 ver=2\n\
                  1 invoke delete a\n1 ok delete a rev=4\n1 invoke get a\n1 ok get a nil rev=4";
        let s = replay(&Etcd, ok).expect("a legal sequence");
        assert_eq!((s.revision, s.keys.len()), (4, 0));
        let stale =
            "1 invoke put a x\n1 ok put a rev=2\n1 invoke get a\n1 ok get a x rev=2 mod=2 ver=2";
        assert_eq!(
            replay(&Etcd, stale).expect_err("version"),
            "version 2 but the model has 1"
        );
    }

    #[test]
    fn kv_versions_restart_after_delete() {
        let spec = "1 invoke put a x\n1 ok put a\n1 invoke delete a\n1 ok delete a\n1 invoke put a y\n1 ok put a\n\
                    1 invoke get a\n1 ok get a y ver=1";
        let s = replay(&Kv::default(), spec).expect("legal");
        assert_eq!((s.value, s.version), (Some(1), 1));
    }

    #[test]
    fn kv_keeps_only_what_the_history_reports() {
        let bare = history("1 invoke put a x\n1 ok put a\n1 invoke get a\n1 ok get a x");
        let all: Vec<usize> = (0..bare.ops.len()).collect();
        let kv = Kv::observing(&bare, &all);
        assert_eq!((kv.versions, kv.revisions), (false, false));
        let s = kv.step(&kv.init(), &bare.ops[0]).expect("a put");
        let again = kv.step(&s, &bare.ops[0]).expect("a put");
        assert_eq!(kv.key(&s), kv.key(&again), "no version told apart");
        let full =
            history("1 invoke put a x\n1 ok put a rev=2\n1 invoke get a\n1 ok get a x ver=1");
        let kv = Kv::observing(&full, &all);
        assert_eq!((kv.versions, kv.revisions), (true, true));
    }

    #[test]
    fn kv_writes_take_increasing_revisions_and_reads_see_the_last() {
        let ok = "1 invoke put a x\n1 ok put a rev=3\n1 invoke delete a\n1 ok delete a rev=5\n\
                  1 invoke delete a\n1 ok delete a rev=6\n1 invoke put a y\n1 ok put a rev=7\n\
                  1 invoke get a\n1 ok get a y rev=7 mod=7";
        replay(&Kv::default(), ok).expect("legal");
        let back = "1 invoke put a x\n1 ok put a rev=3\n1 invoke put a y\n1 ok put a rev=2";
        assert_eq!(
            replay(&Kv::default(), back).expect_err("revision 2 after 3"),
            "revision 2 but the key changed at revision 3 or later"
        );
        let old = "1 invoke put a x\n1 ok put a rev=3\n1 invoke get a\n1 ok get a x rev=2 mod=3";
        assert!(
            replay(&Kv::default(), old).is_err(),
            "a read before the change"
        );
    }

    #[test]
    fn register_cas_needs_the_expected_value() {
        let spec = "1 invoke cas a y expect=nil\n1 ok cas a\n1 invoke cas a z expect=x\n1 ok cas a";
        assert_eq!(
            replay(&Register, spec).expect_err("x is not there"),
            "expected x but the key holds y"
        );
    }

    #[test]
    fn model_names_parse_back() {
        for m in Model::ALL {
            assert_eq!(m.name().parse::<Model>(), Ok(m));
        }
        assert!("nope".parse::<Model>().is_err());
    }
}
