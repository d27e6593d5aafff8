//! The synced watchers, indexed by what they watch: single keys in a map, ranges grouped
//! by range (etcd uses an interval tree). Distinct ranges are few in practice, while one
//! range may have thousands of watchers (every client of a prefix): a write tests each
//! distinct range once.

use std::collections::{BTreeMap, BTreeSet};

use super::key_range::KeyRange;
use super::watcher::WatcherKey;

#[derive(Debug, Default)]
pub(super) struct WatcherGroup {
    keys: BTreeMap<Vec<u8>, BTreeSet<WatcherKey>>,
    ranges: BTreeMap<KeyRange, BTreeSet<WatcherKey>>,
}

impl WatcherGroup {
    pub fn add(&mut self, w: WatcherKey, range: &KeyRange) {
        match range {
            KeyRange::Single(k) => add_to(&mut self.keys, k, w),
            r => add_to(&mut self.ranges, r, w),
        }
    }

    pub fn remove(&mut self, w: WatcherKey, range: &KeyRange) {
        match range {
            KeyRange::Single(k) => remove_from(&mut self.keys, k, w),
            r => remove_from(&mut self.ranges, r, w),
        }
    }

    /// Appends to `out` every watcher whose range holds `key`, in no particular order.
    pub fn matching(&self, key: &[u8], out: &mut Vec<WatcherKey>) {
        if let Some(set) = self.keys.get(key) {
            out.extend(set);
        }
        for (_, set) in self.ranges.iter().filter(|(r, _)| r.contains(key)) {
            out.extend(set);
        }
    }
}

/// Adds `w` under `k`, cloning `k` only for a new entry (watchers join and leave the
/// synced group at every burst that makes victims).
fn add_to<K: Ord + Clone>(map: &mut BTreeMap<K, BTreeSet<WatcherKey>>, k: &K, w: WatcherKey) {
    match map.get_mut(k) {
        Some(set) => {
            set.insert(w);
        }
        None => {
            map.insert(k.clone(), BTreeSet::from([w]));
        }
    }
}

/// Removes `w` from under `k`, and `k` with its last watcher.
fn remove_from<K: Ord>(map: &mut BTreeMap<K, BTreeSet<WatcherKey>>, k: &K, w: WatcherKey) {
    if let Some(set) = map.get_mut(k) {
        set.remove(&w);
        if set.is_empty() {
            map.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The group against the naive answer: every watcher whose range contains the key,
    /// once, with several watchers sharing a range and some of them removed.
    #[test]
    fn matching_agrees_with_brute_force() {
        let ranges = [
            KeyRange::Single(b"a".to_vec()),
            KeyRange::Single(b"b".to_vec()),
            KeyRange::prefix(b"a"),
            KeyRange::Between(b"b".to_vec(), b"d".to_vec()),
            KeyRange::From(b"c".to_vec()),
            KeyRange::prefix(b"a"),
            KeyRange::Single(b"a".to_vec()),
            KeyRange::Between(b"b".to_vec(), b"d".to_vec()),
        ];
        let removed = [1, 3, 6];
        let mut g = WatcherGroup::default();
        for (i, r) in ranges.iter().enumerate() {
            g.add((i as u64 % 3, i as i64), r);
        }
        for i in removed {
            g.remove((i as u64 % 3, i as i64), &ranges[i]);
        }
        for key in [&b"a"[..], b"ab", b"b", b"c", b"d", b"z", b""] {
            let mut got = Vec::new();
            g.matching(key, &mut got);
            got.sort_unstable();
            let want: Vec<WatcherKey> = ranges
                .iter()
                .enumerate()
                .filter(|(i, r)| !removed.contains(i) && r.contains(key))
                .map(|(i, _)| (i as u64 % 3, i as i64))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            assert_eq!(got, want, "key {key:?}");
        }
        // Removing the last watcher of a range drops the range: it is not tested again.
        g.remove((2, 2), &ranges[2]);
        g.remove((2, 5), &ranges[5]);
        assert!(!g.ranges.contains_key(&ranges[2]));
    }
}
