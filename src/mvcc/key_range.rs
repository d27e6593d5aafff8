//! The key intervals of etcd requests: a single key, `[key, range_end)`, or everything
//! from `key` on when `range_end` is `"\0"`.

use std::ops::Bound;

/// Inclusive-or-not bounds of a byte-string interval.
pub type Bounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyRange {
    Single(Vec<u8>),
    /// `[start, end)`; empty when `end <= start`.
    Between(Vec<u8>, Vec<u8>),
    /// `[start, ∞)`.
    From(Vec<u8>),
}

impl KeyRange {
    /// Reads etcd's encoding: an empty `range_end` is one key, `"\0"` is "to the end".
    pub fn new(key: &[u8], range_end: &[u8]) -> Self {
        match range_end {
            [] => KeyRange::Single(key.to_vec()),
            [0] => KeyRange::From(key.to_vec()),
            end => KeyRange::Between(key.to_vec(), end.to_vec()),
        }
    }

    /// The range of keys starting with `prefix` (etcd's `--prefix`).
    pub fn prefix(prefix: &[u8]) -> Self {
        let mut end = prefix.to_vec();
        while let Some(last) = end.pop() {
            if last < 0xff {
                end.push(last + 1);
                return KeyRange::Between(prefix.to_vec(), end);
            }
        }
        KeyRange::From(prefix.to_vec())
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match self {
            KeyRange::Single(key) => k == key.as_slice(),
            KeyRange::Between(start, end) => start.as_slice() <= k && k < end.as_slice(),
            KeyRange::From(start) => start.as_slice() <= k,
        }
    }

    /// Bounds for a `BTreeMap` range; `None` when the range is empty (a `BTreeMap` panics
    /// on an inverted range).
    pub fn bounds(&self) -> Option<Bounds<'_>> {
        match self {
            KeyRange::Single(k) => Some((Bound::Included(k), Bound::Included(k))),
            KeyRange::Between(s, e) if s < e => Some((Bound::Included(s), Bound::Excluded(e))),
            KeyRange::Between(..) => None,
            KeyRange::From(s) => Some((Bound::Included(s), Bound::Unbounded)),
        }
    }

    /// Whether any key lies in both ranges.
    pub fn overlaps(&self, other: &KeyRange) -> bool {
        let (Some((s1, e1)), Some((s2, e2))) = (self.bounds(), other.bounds()) else {
            return false;
        };
        let start_before_end = |s: Bound<&[u8]>, e: Bound<&[u8]>| match (s, e) {
            (_, Bound::Unbounded) => true,
            (Bound::Included(s), Bound::Included(e)) => s <= e,
            (Bound::Included(s), Bound::Excluded(e)) => s < e,
            _ => unreachable!("starts are inclusive"),
        };
        start_before_end(s1, e2) && start_before_end(s2, e1)
    }
}

/// Ranges over keys of up to two bytes from `alphabet`, for property tests.
#[cfg(test)]
pub(crate) fn arb_range(alphabet: Vec<u8>) -> impl proptest::strategy::Strategy<Value = KeyRange> {
    use proptest::prelude::*;
    let key = prop::collection::vec(prop::sample::select(alphabet), 0..3);
    (key.clone(), key, 0..3u8).prop_map(|(a, b, kind)| match kind {
        0 => KeyRange::Single(a),
        1 => KeyRange::Between(a, b),
        _ => KeyRange::From(a),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn small_key() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(prop::sample::select(vec![0u8, 1, 0xfe, 0xff]), 0..3)
    }

    fn range() -> impl Strategy<Value = KeyRange> {
        arb_range(vec![0, 1, 0xfe, 0xff])
    }

    proptest! {
        /// `overlaps` against brute force over every small key.
        #[test]
        fn overlaps_matches_brute_force(a in range(), b in range()) {
            let keys: Vec<Vec<u8>> = (0..3).flat_map(|n| {
                let alphabet = [0u8, 1, 0xfe, 0xff];
                (0..4usize.pow(n)).map(move |mut i| (0..n).map(|_| { let c = alphabet[i % 4]; i /= 4; c }).collect::<Vec<u8>>())
            }).collect();
            let brute = keys.iter().any(|k| a.contains(k) && b.contains(k));
            // Keys longer than two bytes can only add overlap to `From`/`Between` ranges
            // that already share one of these keys or an unbounded tail.
            if brute { prop_assert!(a.overlaps(&b)); }
        }

        #[test]
        fn prefix_holds_exactly_the_prefixed_keys(p in small_key(), k in small_key()) {
            prop_assert_eq!(KeyRange::prefix(&p).contains(&k), k.starts_with(&p));
        }
    }
}
