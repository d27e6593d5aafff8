//! The in-memory index, etcd's treeIndex: an ordered map from key to its [`KeyIndex`].
//! It answers which revision holds each key at a read revision; values live in the backend.

use std::collections::{BTreeMap, BTreeSet};

use super::key_index::{KeyAt, KeyIndex};
use super::key_range::KeyRange;
use super::revision::Revision;

#[derive(Clone, Debug, Default)]
pub struct TreeIndex {
    keys: BTreeMap<Vec<u8>, KeyIndex>,
}

impl TreeIndex {
    pub fn get(&self, key: &[u8], at: i64) -> Option<KeyAt> {
        self.keys.get(key)?.get(at)
    }

    /// Keys live at `at` within `range`, ascending: up to `limit` (0: no limit) of them,
    /// and the count of all.
    pub fn range(&self, range: &KeyRange, at: i64, limit: usize) -> (Vec<(&[u8], KeyAt)>, usize) {
        let mut out = Vec::new();
        let mut total = 0;
        for (k, ki) in self.iter(range) {
            if let Some(state) = ki.get(at) {
                total += 1;
                if limit == 0 || out.len() < limit {
                    out.push((k, state));
                }
            }
        }
        (out, total)
    }

    fn iter<'a>(&'a self, range: &KeyRange) -> impl Iterator<Item = (&'a [u8], &'a KeyIndex)> + 'a {
        range
            .bounds()
            .map(|b| self.keys.range::<[u8], _>(b))
            .into_iter()
            .flatten()
            .map(|(k, ki)| (k.as_slice(), ki))
    }

    pub fn put(&mut self, key: &[u8], rev: Revision) {
        self.keys.entry(key.to_vec()).or_default().put(rev);
    }

    /// Deletes `key` at `rev`; the caller has checked that the key is live.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) {
        let ki = self.keys.get_mut(key).unwrap_or_else(|| {
            panic!(
                "tombstone at {rev} of unknown key {:?}",
                String::from_utf8_lossy(key)
            )
        });
        ki.tombstone(rev);
    }

    /// Adds a key found in the backend at open: `created`/`version` come from its value,
    /// since compaction may have removed its earlier revisions.
    pub fn restore(&mut self, key: &[u8], rev: Revision, created: Revision, version: i64) {
        match self.keys.get_mut(key) {
            Some(ki) => ki.put(rev),
            None => {
                self.keys
                    .insert(key.to_vec(), KeyIndex::restore(created, rev, version));
            }
        }
    }

    /// Restores a tombstone found in the backend. One with no put before it is a delete
    /// that compaction kept because it sits exactly at the compaction revision.
    pub fn restore_tombstone(&mut self, key: &[u8], rev: Revision) {
        match self.keys.get_mut(key) {
            Some(ki) => ki.tombstone(rev),
            None => {
                self.keys
                    .insert(key.to_vec(), KeyIndex::restore_tombstone(rev));
            }
        }
    }

    /// Compacts every key at `at`; returns the revisions at or below `at` that stay.
    pub fn compact(&mut self, at: i64) -> BTreeSet<Revision> {
        let mut keep = BTreeSet::new();
        self.keys.retain(|_, ki| {
            ki.compact(at, &mut keep);
            !ki.is_empty()
        });
        keep
    }

    /// etcd's `treeIndex.Keep`: per key, the revision that shows its value at `at`.
    pub fn keep(&self, at: i64) -> BTreeSet<Revision> {
        let mut keep = BTreeSet::new();
        for ki in self.keys.values() {
            ki.keep(at, &mut keep);
        }
        keep
    }

    /// Number of keys with any history, for memory accounting.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
