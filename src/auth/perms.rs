//! Permission checks: does a user's set of permitted key ranges cover a request?

use super::{Error, Result};
use crate::mvcc::KeyRange;
use crate::proto::authpb::permission::Type;
use crate::proto::authpb::Permission;
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest};

/// Who is asking: the user a token names and the auth revision when it was issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthInfo {
    pub user: String,
    pub revision: u64,
}

/// What an operation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PermType {
    Read,
    Write,
}

impl PermType {
    /// Whether a granted permission of type `granted` allows this.
    pub fn allowed_by(self, granted: i32) -> bool {
        granted == Type::Readwrite as i32
            || (self == PermType::Read && granted == Type::Read as i32)
            || (self == PermType::Write && granted == Type::Write as i32)
    }
}

/// The range a permission grants.
pub fn perm_range(p: &Permission) -> KeyRange {
    KeyRange::new(&p.key, &p.range_end)
}

/// Whether the union of `granted` holds every key of `want`. Sorts the granted intervals
/// and walks them from the start of `want`, as etcd's merged interval tree answers.
pub fn covers(granted: &[KeyRange], want: &KeyRange) -> bool {
    let (start, end): (&[u8], Option<&[u8]>) = match want {
        KeyRange::Single(k) => return granted.iter().any(|g| g.contains(k)),
        KeyRange::Between(s, e) if s >= e => return true,
        KeyRange::Between(s, e) => (s, Some(e)),
        KeyRange::From(s) => (s, None),
    };
    // Each granted range as [start, end) with `None` for "to the end"; a single key k is
    // [k, k + "\0").
    let mut spans: Vec<(Vec<u8>, Option<Vec<u8>>)> = granted
        .iter()
        .filter_map(|g| match g {
            KeyRange::Single(k) => Some((k.clone(), Some([k.as_slice(), &[0]].concat()))),
            KeyRange::Between(s, e) if s < e => Some((s.clone(), Some(e.clone()))),
            KeyRange::Between(..) => None,
            KeyRange::From(s) => Some((s.clone(), None)),
        })
        .collect();
    spans.sort();
    let mut reached: Vec<u8> = start.to_vec();
    for (s, e) in spans {
        if s.as_slice() > reached.as_slice() {
            break; // a gap before this span
        }
        match e {
            None => return true,
            Some(e) if e > reached => reached = e,
            Some(_) => {}
        }
        if end.is_some_and(|end| reached.as_slice() >= end) {
            return true;
        }
    }
    false
}

/// Checks every key range a request touches against `check`: reads for ranges, compares
/// and prev_kv, writes for puts and deletes, recursively through txns (both branches).
pub fn check_range(
    req: &RangeRequest,
    check: &dyn Fn(&KeyRange, PermType) -> Result<()>,
) -> Result<()> {
    check(&KeyRange::new(&req.key, &req.range_end), PermType::Read)
}

pub fn check_put(
    req: &PutRequest,
    check: &dyn Fn(&KeyRange, PermType) -> Result<()>,
) -> Result<()> {
    check_write(&KeyRange::Single(req.key.clone()), req.prev_kv, check)
}

pub fn check_delete(
    req: &DeleteRangeRequest,
    check: &dyn Fn(&KeyRange, PermType) -> Result<()>,
) -> Result<()> {
    check_write(&KeyRange::new(&req.key, &req.range_end), req.prev_kv, check)
}

/// A write needs write permission, and read permission too when it returns prev_kv.
fn check_write(
    range: &KeyRange,
    prev_kv: bool,
    check: &dyn Fn(&KeyRange, PermType) -> Result<()>,
) -> Result<()> {
    if prev_kv {
        check(range, PermType::Read)?;
    }
    check(range, PermType::Write)
}

pub fn check_txn(
    req: &TxnRequest,
    check: &dyn Fn(&KeyRange, PermType) -> Result<()>,
) -> Result<()> {
    for c in &req.compare {
        check(&KeyRange::new(&c.key, &c.range_end), PermType::Read)?;
    }
    for op in req.success.iter().chain(&req.failure) {
        match &op.request {
            Some(Request::RequestRange(r)) => check_range(r, check)?,
            Some(Request::RequestPut(p)) => check_put(p, check)?,
            Some(Request::RequestDeleteRange(d)) => check_delete(d, check)?,
            Some(Request::RequestTxn(t)) => check_txn(t, check)?,
            None => {}
        }
    }
    Ok(())
}

/// Denies unless `ok`.
pub(super) fn permitted(ok: bool) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::PermissionDenied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::mvcc::key_range::arb_range;

    fn range() -> impl Strategy<Value = KeyRange> {
        arb_range(vec![0, 1, 2])
    }

    proptest! {
        /// `covers` against brute force. Coverage only changes at range ends and just after
        /// single keys (`k + "\0"`), all keys of at most three bytes over the same
        /// alphabet, and each constant stretch starts at such a key, so checking every key
        /// of up to four bytes decides it exactly, unbounded ranges included.
        #[test]
        fn covers_matches_brute_force(granted in prop::collection::vec(range(), 0..4), want in range()) {
            let keys: Vec<Vec<u8>> = (0..5u32).flat_map(|n| {
                (0..3usize.pow(n)).map(move |mut i| (0..n).map(|_| { let c = (i % 3) as u8; i /= 3; c }).collect::<Vec<u8>>())
            }).collect();
            let brute = keys.iter().filter(|k| want.contains(k)).all(|k| granted.iter().any(|g| g.contains(k)));
            prop_assert_eq!(covers(&granted, &want), brute);
        }
    }
}
