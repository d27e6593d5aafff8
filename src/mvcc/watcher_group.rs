//! The synced watchers, indexed by what they watch: single keys in a map, ranges in a
//! list (etcd uses an interval tree; ranges are few next to single keys in practice).

use std::collections::{BTreeMap, BTreeSet};

use super::key_range::KeyRange;
use super::watcher::WatcherKey;

#[derive(Debug, Default)]
pub(super) struct WatcherGroup {
    keys: BTreeMap<Vec<u8>, BTreeSet<WatcherKey>>,
    ranges: BTreeMap<WatcherKey, KeyRange>,
}

impl WatcherGroup {
    pub fn add(&mut self, w: WatcherKey, range: &KeyRange) {
        match range {
            KeyRange::Single(k) => {
                self.keys.entry(k.clone()).or_default().insert(w);
            }
            r => {
                self.ranges.insert(w, r.clone());
            }
        }
    }

    pub fn remove(&mut self, w: WatcherKey, range: &KeyRange) {
        match range {
            KeyRange::Single(k) => {
                if let Some(set) = self.keys.get_mut(k) {
                    set.remove(&w);
                    if set.is_empty() {
                        self.keys.remove(k);
                    }
                }
            }
            _ => {
                self.ranges.remove(&w);
            }
        }
    }

    /// Adds to `out` every watcher whose range holds `key`.
    pub fn matching(&self, key: &[u8], out: &mut BTreeSet<WatcherKey>) {
        if let Some(set) = self.keys.get(key) {
            out.extend(set);
        }
        out.extend(
            self.ranges
                .iter()
                .filter(|(_, r)| r.contains(key))
                .map(|(w, _)| *w),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The group against the naive answer: every watcher whose range contains the key.
    #[test]
    fn matching_agrees_with_brute_force() {
        let ranges = [
            KeyRange::Single(b"a".to_vec()),
            KeyRange::Single(b"b".to_vec()),
            KeyRange::prefix(b"a"),
            KeyRange::Between(b"b".to_vec(), b"d".to_vec()),
            KeyRange::From(b"c".to_vec()),
        ];
        let mut g = WatcherGroup::default();
        for (i, r) in ranges.iter().enumerate() {
            g.add((0, i as i64), r);
        }
        g.remove((0, 1), &ranges[1]);
        for key in [&b"a"[..], b"ab", b"b", b"c", b"d", b"z", b""] {
            let mut got = BTreeSet::new();
            g.matching(key, &mut got);
            let want: BTreeSet<WatcherKey> = ranges
                .iter()
                .enumerate()
                .filter(|(i, r)| *i != 1 && r.contains(key))
                .map(|(i, _)| (0, i as i64))
                .collect();
            assert_eq!(got, want, "key {key:?}");
        }
    }
}
