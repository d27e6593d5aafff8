//! The revisions of one key, as etcd's keyIndex keeps them.
//!
//! A key's life is a list of generations. A generation starts with a put after the key was
//! absent and ends with a tombstone (the delete's revision, the generation's last entry);
//! the last generation is the open one and is empty while the key is deleted. Example:
//! put@1, put@2, delete@3, put@4 gives `[{1,2,3(t)}, {4}]`; versions count puts within a
//! generation, so the put at 4 has version 1.

use std::collections::BTreeSet;

use super::revision::Revision;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Generation {
    /// Puts in this generation, counting compacted ones (the version of its last put).
    pub ver: i64,
    /// The generation's first revision, kept when compaction removes it from `revs`.
    pub created: Revision,
    /// Ascending; a closed generation's last entry is its tombstone.
    pub revs: Vec<Revision>,
}

impl Generation {
    fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }
}

/// Invariant: `generations` is never empty; every generation but the last is non-empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyIndex {
    pub modified: Revision,
    pub generations: Vec<Generation>,
}

/// What a key looked like at a revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyAt {
    pub modified: Revision,
    pub created: Revision,
    pub version: i64,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex {
            modified: Revision::default(),
            generations: vec![Generation::default()],
        }
    }
}

impl KeyIndex {
    /// Records a put at `rev`, which must be newer than every revision seen.
    pub fn put(&mut self, rev: Revision) {
        assert!(
            rev > self.modified,
            "put at {rev} not after the last modification {}",
            self.modified
        );
        let g = self.generations.last_mut().expect("never empty");
        if g.revs.is_empty() {
            g.created = rev;
            // Most keys are written once: room for one revision, not the default four.
            g.revs.reserve_exact(1);
        }
        g.revs.push(rev);
        g.ver += 1;
        self.modified = rev;
    }

    /// Rebuilds a key whose history in the backend starts with a tombstone, kept because
    /// it sits exactly at the compaction revision.
    pub fn restore_tombstone(rev: Revision) -> Self {
        let mut ki = KeyIndex::restore(rev, rev, 1);
        ki.generations.push(Generation::default());
        ki
    }

    /// Rebuilds a generation found in the backend after compaction dropped its start.
    pub fn restore(created: Revision, modified: Revision, ver: i64) -> Self {
        KeyIndex {
            modified,
            generations: vec![Generation {
                ver,
                created,
                revs: vec![modified],
            }],
        }
    }

    /// Records a delete at `rev`: the tombstone closes the open generation.
    pub fn tombstone(&mut self, rev: Revision) {
        assert!(!self.is_deleted(), "tombstone at {rev} of a deleted key");
        self.put(rev);
        self.generations.push(Generation::default());
    }

    /// Whether the key is absent at the current revision.
    pub fn is_deleted(&self) -> bool {
        self.generations.last().expect("never empty").is_empty()
    }

    /// Nothing left: the key has no live generation and no history.
    pub fn is_empty(&self) -> bool {
        self.generations.len() == 1 && self.generations[0].is_empty()
    }

    /// The key's state at main revision `at`, or `None` if it did not exist then.
    pub fn get(&self, at: i64) -> Option<KeyAt> {
        let g = self.find_generation(at)?;
        let n = g.revs.iter().rposition(|r| r.main <= at)?;
        Some(KeyAt {
            modified: g.revs[n],
            created: g.created,
            version: g.ver - (g.revs.len() - n - 1) as i64,
        })
    }

    /// The generation that holds the key's state at `at`, if the key was live then.
    fn find_generation(&self, at: i64) -> Option<&Generation> {
        let last = self.generations.len() - 1;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let Some(first) = g.revs.first() else {
                continue;
            };
            if i != last && g.revs.last().expect("non-empty").main <= at {
                return None; // deleted at or before `at`
            }
            if first.main <= at {
                return Some(g);
            }
        }
        None
    }

    /// Revisions with main revision `> since`, ascending, for watchers catching up.
    pub fn since(&self, since: i64) -> Vec<Revision> {
        let mut out: Vec<Revision> = self
            .generations
            .iter()
            .flat_map(|g| g.revs.iter().copied())
            .filter(|r| r.main > since)
            .collect();
        out.dedup_by_key(|r| r.main);
        out
    }

    /// The revisions that compaction at `at` keeps, added to `keep`; returns where the
    /// kept history starts: (generation, index in it or `None` when all of it stays).
    fn keep_at(&self, at: i64, keep: &mut BTreeSet<Revision>) -> (usize, Option<usize>) {
        let mut gi = 0;
        while gi < self.generations.len() - 1 {
            let g = &self.generations[gi];
            if g.revs.last().expect("closed generation non-empty").main >= at {
                break;
            }
            gi += 1;
        }
        // A closed generation is only reached if its tombstone is at or above `at`; a
        // tombstone exactly at `at` is kept, so that a watcher starting at the compaction
        // revision still sees that delete (etcd drops it, and with it the event).
        let idx = self.generations[gi].revs.iter().rposition(|r| r.main <= at);
        if let Some(i) = idx {
            keep.insert(self.generations[gi].revs[i]);
        }
        (gi, idx)
    }

    /// etcd's `keyIndex.keep`, which HashKV uses: the revision that shows the key's value
    /// at `at`, none if the key was absent then. Unlike [`KeyIndex::compact`], a delete
    /// exactly at `at` keeps nothing (etcd compacts that tombstone away).
    pub fn keep(&self, at: i64, keep: &mut BTreeSet<Revision>) {
        let (gi, idx) = self.keep_at(at, keep);
        let g = &self.generations[gi];
        if gi + 1 < self.generations.len() && idx == Some(g.revs.len() - 1) {
            keep.remove(&g.revs[g.revs.len() - 1]);
        }
    }

    /// Drops every revision at or below `at` except the one that shows the key's state at
    /// `at` (none if it was deleted before: generations closed by then go whole; the
    /// tombstone if it was deleted exactly at `at`), adding the kept one to `keep`.
    pub fn compact(&mut self, at: i64, keep: &mut BTreeSet<Revision>) {
        let (gi, idx) = self.keep_at(at, keep);
        if let Some(i) = idx {
            let latest = gi + 1 == self.generations.len()
                && crate::runtime::planted(crate::runtime::Bug::CompactDropsLatest);
            if latest {
                keep.remove(&self.generations[gi].revs[i]);
            }
            self.generations[gi].revs.drain(..i + latest as usize);
        }
        self.generations.drain(..gi);
        self.check();
    }

    fn check(&self) {
        assert!(
            !self.generations.is_empty(),
            "key index without generations"
        );
        let last = self.generations.len() - 1;
        for (i, g) in self.generations.iter().enumerate() {
            assert!(
                i == last || !g.is_empty(),
                "closed generation {i} of {} is empty",
                self.generations.len()
            );
            assert!(
                g.revs.windows(2).all(|w| w[0] < w[1]),
                "generation {i} revisions not ascending: {:?}",
                g.revs
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// put@2 put@4 del@6 put@8 put@10 del@12 put@14 put@16: etcd's key_index_test history.
    fn history() -> KeyIndex {
        let mut ki = KeyIndex::default();
        for (m, tomb) in [
            (2, false),
            (4, false),
            (6, true),
            (8, false),
            (10, false),
            (12, true),
            (14, false),
            (16, false),
        ] {
            if tomb {
                ki.tombstone(r(m));
            } else {
                ki.put(r(m));
            }
        }
        ki
    }

    #[test]
    fn get_sees_generations_and_versions() {
        let ki = history();
        assert_eq!(ki.get(1), None);
        assert_eq!(
            ki.get(3),
            Some(KeyAt {
                modified: r(2),
                created: r(2),
                version: 1
            })
        );
        assert_eq!(ki.get(5).map(|k| k.version), Some(2));
        assert_eq!(ki.get(6), None, "deleted at 6");
        assert_eq!(ki.get(7), None);
        assert_eq!(
            ki.get(11),
            Some(KeyAt {
                modified: r(10),
                created: r(8),
                version: 2
            })
        );
        assert_eq!(
            ki.get(17),
            Some(KeyAt {
                modified: r(16),
                created: r(14),
                version: 2
            })
        );
    }

    /// Compaction at every revision must not change any answer above it, and must keep
    /// exactly the revision that shows the key at the compaction point (or its delete
    /// there); etcd's keep is the former alone.
    #[test]
    fn compact_preserves_later_reads() {
        let full = history();
        for at in 0..18 {
            let mut ki = full.clone();
            let mut keep = BTreeSet::new();
            ki.compact(at, &mut keep);
            let mut kept = BTreeSet::new();
            full.keep(at, &mut kept);
            let shown: BTreeSet<Revision> = full.get(at).map(|k| k.modified).into_iter().collect();
            assert_eq!(kept, shown, "etcd's keep at {at}");
            let tombstone_at = |r: &Revision| r.main == at;
            let deleted_at: Option<Revision> = full
                .generations
                .iter()
                .flat_map(|g| g.revs.last())
                .copied()
                .find(tombstone_at);
            let expect: BTreeSet<Revision> = full
                .get(at)
                .map(|k| k.modified)
                .into_iter()
                .chain(deleted_at)
                .collect();
            assert_eq!(keep, expect, "kept at {at}");
            for read in at..18 {
                assert_eq!(
                    ki.get(read),
                    full.get(read),
                    "read at {read} after compacting at {at}"
                );
            }
        }
    }

    #[test]
    fn compacting_a_deleted_key_empties_it() {
        let mut ki = KeyIndex::default();
        ki.put(r(1));
        ki.tombstone(r(2));
        let mut keep = BTreeSet::new();
        ki.compact(2, &mut keep);
        assert_eq!(
            keep,
            BTreeSet::from([r(2)]),
            "the delete at the compaction point stays"
        );
        assert!(
            ki.is_deleted() && ki.generations[0].revs == vec![r(2)],
            "{ki:?}"
        );
        keep.clear();
        ki.compact(3, &mut keep);
        assert!(ki.is_empty() && keep.is_empty(), "{ki:?} {keep:?}");
    }
}
