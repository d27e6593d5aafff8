//! Mutual exclusion of a lock, as fenced writes show it. A client that holds a lock (etcd's
//! Lock service, or a concurrency mutex) reads a counter, then writes the counter plus one
//! in a Txn that compares its lock key's create revision, the fencing token. A holder whose
//! lease expired (partitioned, paused) may still believe it holds the lock; the fence makes
//! its late write fail. Wherever the fence is used, the writes that succeeded, in revision
//! order, must then:
//!
//! 1. carry non-decreasing tokens: a write under an older lock never lands after one under
//!    a newer lock;
//! 2. write strictly increasing counter values: no two holders wrote from the same read,
//!    which would be a lost update, the symptom of two holders at once.
//!
//! Writes whose outcome is unknown are left out: each rule is about writes that did
//! happen, and an unknown one that happened only moves the counter the next holder reads.

use serde::{Deserialize, Serialize};

/// One fenced write, as the client saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FencedWrite {
    pub process: u64,
    /// The lock key's create revision.
    pub token: u64,
    /// The counter as read under the lock (0: absent); the write puts `read + 1`.
    pub read: u64,
    pub outcome: Fenced,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fenced {
    /// The compare held and the write made this revision.
    Written { revision: u64 },
    /// The compare failed: the lock key was gone (or another's).
    Refused,
    /// No answer.
    Unknown,
}

/// What the check found over a run's fenced writes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub written: usize,
    pub refused: usize,
    pub unknown: usize,
}

/// Checks the rules above; Err names the two writes that break one.
pub fn check(writes: &[FencedWrite]) -> Result<Summary, String> {
    let mut summary = Summary::default();
    let mut done: Vec<(u64, &FencedWrite)> = Vec::new();
    for w in writes {
        match w.outcome {
            Fenced::Written { revision } => done.push((revision, w)),
            Fenced::Refused => summary.refused += 1,
            Fenced::Unknown => summary.unknown += 1,
        }
    }
    summary.written = done.len();
    done.sort_by_key(|&(revision, _)| revision);
    for pair in done.windows(2) {
        let [(r1, a), (r2, b)] = pair else {
            unreachable!("windows(2)")
        };
        if r1 == r2 {
            return Err(format!(
                "two writes at revision {r1}: process {} and {}",
                a.process, b.process
            ));
        }
        if b.token < a.token {
            return Err(format!(
                "a write fenced by lock revision {} (process {}) landed at revision {r2}, after \
                 one fenced by the newer lock revision {} (process {}) at revision {r1}",
                b.token, b.process, a.token, a.process
            ));
        }
        if b.read < a.read + 1 {
            return Err(format!(
                "lost update: process {} (lock revision {}) wrote {} at revision {r2} from a \
                 read of {}, but process {} (lock revision {}) had written {} at revision {r1}",
                b.process,
                b.token,
                b.read + 1,
                b.read,
                a.process,
                a.token,
                a.read + 1
            ));
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(process: u64, token: u64, read: u64, outcome: Fenced) -> FencedWrite {
        FencedWrite {
            process,
            token,
            read,
            outcome,
        }
    }

    fn at(revision: u64) -> Fenced {
        Fenced::Written { revision }
    }

    #[test]
    fn holders_in_turn_pass() {
        let writes = [
            w(1, 10, 0, at(11)),
            w(2, 12, 1, at(14)),
            // Its lease expired before it wrote: refused, as the fence is for.
            w(3, 15, 2, Fenced::Refused),
            // Took effect or not; the next holder read 3 either way.
            w(4, 16, 2, Fenced::Unknown),
            w(5, 18, 3, at(20)),
        ];
        let s = check(&writes).unwrap();
        assert_eq!((s.written, s.refused, s.unknown), (3, 1, 1));
    }

    /// Two holders at once both read 1 and both wrote 2: the lock failed.
    #[test]
    fn a_lost_update_is_caught() {
        let writes = [
            w(1, 10, 0, at(11)),
            w(2, 12, 1, at(14)),
            w(3, 13, 1, at(15)),
        ];
        let err = check(&writes).unwrap_err();
        assert!(err.contains("lost update"), "{err}");
    }

    /// An old holder's write landing after a newer holder's: the fence was not checked.
    #[test]
    fn a_stale_token_after_a_newer_one_is_caught() {
        let writes = [w(1, 20, 0, at(21)), w(2, 10, 1, at(22))];
        let err = check(&writes).unwrap_err();
        assert!(err.contains("newer lock revision 20"), "{err}");
    }
}
