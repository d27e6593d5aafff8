//! The checks etcd makes on a write before proposing it (its gRPC layer's
//! `checkPutRequest`, `checkDeleteRequest`, `checkTxnRequest` and `checkIntervals`, then
//! the server's request size limit): its shape (keys present, flags consistent, operation
//! counts), for txns that no branch writes a key twice, and its encoded size. The server
//! runs them before proposing, so a bad request never reaches the log; the apply runs them
//! again on what the log holds. None needs the store's state, and each costs
//! O(n log n) in the request's operations.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use prost::Message;

use super::error::{Error, Result};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RequestOp, TxnRequest};

/// `--max-request-bytes` and `--max-txn-ops`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLimits {
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
}

impl RequestLimits {
    fn check_size(&self, req: &impl Message) -> Result<()> {
        if req.encoded_len() > self.max_request_bytes {
            return Err(Error::RequestTooLarge);
        }
        Ok(())
    }
}

pub fn check_put_request(req: &PutRequest, limits: &RequestLimits) -> Result<()> {
    check_put(req)?;
    limits.check_size(req)
}

pub fn check_delete_request(req: &DeleteRangeRequest, limits: &RequestLimits) -> Result<()> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    limits.check_size(req)
}

pub fn check_txn_request(req: &TxnRequest, limits: &RequestLimits) -> Result<()> {
    check_txn_ops(req, limits.max_txn_ops)?;
    check_intervals(&req.success)?;
    check_intervals(&req.failure)?;
    limits.check_size(req)
}

fn check_put(req: &PutRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

fn check_txn_ops(req: &TxnRequest, max_ops: usize) -> Result<()> {
    if req.compare.len() > max_ops || req.success.len() > max_ops || req.failure.len() > max_ops {
        return Err(Error::TooManyOps);
    }
    for op in req.success.iter().chain(&req.failure) {
        match &op.request {
            Some(Request::RequestRange(r)) if r.key.is_empty() => return Err(Error::EmptyKey),
            Some(Request::RequestDeleteRange(d)) if d.key.is_empty() => {
                return Err(Error::EmptyKey)
            }
            Some(Request::RequestPut(p)) => check_put(p)?,
            Some(Request::RequestTxn(t)) => check_txn_ops(t, max_ops)?,
            _ => {}
        }
    }
    Ok(())
}

/// A union of half-open key intervals, kept as disjoint spans by start, so that whether a
/// key is covered costs O(log n) (etcd uses an interval tree).
#[derive(Debug, Default)]
struct Spans {
    /// start -> end (`None`: unbounded). Invariant: spans are disjoint and not touching.
    by_start: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Spans {
    /// Adds `[start, end)`; an empty interval adds nothing.
    fn insert(&mut self, mut start: Vec<u8>, mut end: Option<Vec<u8>>) {
        if end.as_ref().is_some_and(|e| *e <= start) {
            return;
        }
        let reaches = |span_end: &Option<Vec<u8>>, at: &[u8]| {
            span_end.as_ref().is_none_or(|e| e.as_slice() >= at)
        };
        if let Some((s, e)) = self.by_start.range(..=start.clone()).next_back() {
            if reaches(e, &start) {
                start = s.clone();
            }
        }
        let overlapped: Vec<Vec<u8>> = self
            .by_start
            .range(start.clone()..)
            .take_while(|(s, _)| end.as_ref().is_none_or(|e| s.as_slice() <= e.as_slice()))
            .map(|(s, _)| s.clone())
            .collect();
        for s in overlapped {
            let e = self.by_start.remove(&s).expect("listed above");
            end = match (end, e) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        self.by_start.insert(start, end);
    }

    /// A deleted range as etcd records it: an empty `range_end` is the key alone, any
    /// other is `[key, range_end)` taken literally (etcd builds its delete intervals from
    /// the raw range end, so `"\0"`, "to the end", makes an empty interval here).
    fn insert_delete(&mut self, key: &[u8], range_end: &[u8]) {
        let end = if range_end.is_empty() {
            [key, &[0]].concat()
        } else {
            range_end.to_vec()
        };
        self.insert(key.to_vec(), Some(end));
    }

    fn contains(&self, k: &[u8]) -> bool {
        self.by_start
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(k)))
            .next_back()
            .is_some_and(|(_, e)| e.as_ref().is_none_or(|e| k < e.as_slice()))
    }

    fn union(&mut self, other: Spans) {
        for (s, e) in other.by_start {
            self.insert(s, e);
        }
    }
}

/// etcd's checkIntervals: within one branch (nested txns included), no key may be put
/// twice, nor put and deleted. The two branches of a nested txn exclude each other, so a
/// key both of them put is fine. Returns the keys put and the ranges deleted.
fn check_intervals(ops: &[RequestOp]) -> Result<(BTreeSet<Vec<u8>>, Spans)> {
    let mut dels = Spans::default();
    for op in ops {
        if let Some(Request::RequestDeleteRange(d)) = &op.request {
            dels.insert_delete(&d.key, &d.range_end);
        }
    }
    let mut puts: BTreeSet<Vec<u8>> = BTreeSet::new();
    for op in ops {
        let Some(Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || dels.contains(k) {
                return Err(Error::DuplicateKey);
            }
        }
        for k in &puts_else {
            if (puts.contains(k) && !puts_then.contains(k)) || dels.contains(k) {
                return Err(Error::DuplicateKey);
            }
        }
        puts.extend(puts_then);
        puts.extend(puts_else);
        dels.union(dels_then);
        dels.union(dels_else);
    }
    for op in ops {
        let Some(Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if dels.contains(&p.key) || !puts.insert(p.key.clone()) {
            return Err(Error::DuplicateKey);
        }
    }
    Ok((puts, dels))
}

/// Whether a put appears anywhere in the txn, either branch, nested txns included.
pub(super) fn has_put(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(&req.failure)
        .any(|op| match &op.request {
            Some(Request::RequestPut(_)) => true,
            Some(Request::RequestTxn(t)) => has_put(t),
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::KeyRange;
    use crate::proto::etcdserverpb::RangeRequest;
    use proptest::prelude::*;

    /// The quadratic check etcd's semantics were first written down as: lists scanned for
    /// every key. The model the fast check must agree with.
    fn naive(ops: &[RequestOp]) -> Result<(Vec<Vec<u8>>, Vec<KeyRange>)> {
        let mut dels: Vec<KeyRange> = ops
            .iter()
            .filter_map(|op| match &op.request {
                Some(Request::RequestDeleteRange(d)) if d.range_end.is_empty() => {
                    Some(KeyRange::Single(d.key.clone()))
                }
                Some(Request::RequestDeleteRange(d)) => {
                    Some(KeyRange::Between(d.key.clone(), d.range_end.clone()))
                }
                _ => None,
            })
            .collect();
        let deleted = |dels: &[KeyRange], k: &[u8]| dels.iter().any(|d| d.contains(k));
        let mut puts: Vec<Vec<u8>> = Vec::new();
        for op in ops {
            let Some(Request::RequestTxn(t)) = &op.request else {
                continue;
            };
            let (puts_then, dels_then) = naive(&t.success)?;
            let (puts_else, dels_else) = naive(&t.failure)?;
            for k in &puts_then {
                if puts.contains(k) || deleted(&dels, k) {
                    return Err(Error::DuplicateKey);
                }
            }
            for k in &puts_else {
                if (puts.contains(k) && !puts_then.contains(k)) || deleted(&dels, k) {
                    return Err(Error::DuplicateKey);
                }
            }
            puts.extend(puts_then);
            puts.extend(puts_else);
            dels.extend(dels_then);
            dels.extend(dels_else);
        }
        for op in ops {
            let Some(Request::RequestPut(p)) = &op.request else {
                continue;
            };
            if puts.contains(&p.key) || deleted(&dels, &p.key) {
                return Err(Error::DuplicateKey);
            }
            puts.push(p.key.clone());
        }
        Ok((puts, dels))
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(vec![0u8, b'a', b'b', b'c']), 0..3)
    }

    fn op() -> impl Strategy<Value = RequestOp> {
        let leaf = prop_oneof![
            key().prop_map(|key| Request::RequestPut(PutRequest {
                key,
                ..Default::default()
            })),
            (key(), key()).prop_map(|(key, range_end)| Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key,
                    range_end,
                    ..Default::default()
                }
            )),
            key().prop_map(|key| Request::RequestRange(RangeRequest {
                key,
                ..Default::default()
            })),
        ]
        .prop_map(|r| RequestOp { request: Some(r) });
        leaf.prop_recursive(3, 24, 4, |inner| {
            (
                prop::collection::vec(inner.clone(), 0..4),
                prop::collection::vec(inner, 0..4),
            )
                .prop_map(|(success, failure)| RequestOp {
                    request: Some(Request::RequestTxn(TxnRequest {
                        success,
                        failure,
                        ..Default::default()
                    })),
                })
        })
    }

    fn ok(r: &Result<impl Sized>) -> bool {
        r.is_ok()
    }

    proptest! {
        /// The spans answer exactly as a scan of every interval would.
        #[test]
        fn spans_cover_what_the_intervals_cover(
            ivs in prop::collection::vec((key(), key()), 0..12),
            probes in prop::collection::vec(key(), 0..12),
        ) {
            let mut spans = Spans::default();
            for (s, e) in &ivs {
                spans.insert_delete(s, e);
            }
            let model = |k: &[u8]| ivs.iter().any(|(s, e)| match e.is_empty() {
                true => KeyRange::Single(s.clone()).contains(k),
                false => KeyRange::Between(s.clone(), e.clone()).contains(k),
            });
            for k in probes.iter().chain(ivs.iter().map(|(s, _)| s)) {
                prop_assert_eq!(spans.contains(k), model(k), "key {:?}", k);
            }
        }

        /// The O(n log n) check accepts and refuses exactly what the quadratic one does.
        #[test]
        fn intervals_agree_with_the_quadratic_check(ops in prop::collection::vec(op(), 0..6)) {
            prop_assert_eq!(ok(&check_intervals(&ops)), ok(&naive(&ops)));
        }
    }
}
