//! Entries and a snapshot that Raft holds but the application has not persisted yet.

use crate::proto::raftpb::{Entry, Snapshot};

/// The not-yet-durable tail of the log. `entries[i]` has index `offset + i`; an
/// incoming snapshot, if any, precedes every entry.
#[derive(Debug, Default)]
pub struct Unstable {
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    pub offset: u64,
}

pub(crate) fn snap_index(s: &Snapshot) -> u64 {
    s.metadata.as_ref().map_or(0, |m| m.index)
}

pub(crate) fn snap_term(s: &Snapshot) -> u64 {
    s.metadata.as_ref().map_or(0, |m| m.term)
}

impl Unstable {
    pub fn new(offset: u64) -> Self {
        Self {
            offset,
            ..Self::default()
        }
    }

    /// The first index if an unstable snapshot determines it.
    pub fn maybe_first_index(&self) -> Option<u64> {
        self.snapshot.as_ref().map(|s| snap_index(s) + 1)
    }

    /// The last index if unstable entries or snapshot determine it.
    pub fn maybe_last_index(&self) -> Option<u64> {
        match (self.entries.last(), &self.snapshot) {
            (Some(e), _) => Some(e.index),
            (None, Some(s)) => Some(snap_index(s)),
            (None, None) => None,
        }
    }

    /// The term of `idx` if it is known to the unstable part.
    pub fn maybe_term(&self, idx: u64) -> Option<u64> {
        if idx < self.offset {
            let s = self.snapshot.as_ref()?;
            return (snap_index(s) == idx).then(|| snap_term(s));
        }
        let last = self.maybe_last_index()?;
        if idx > last {
            return None;
        }
        Some(self.entries[(idx - self.offset) as usize].term)
    }

    /// Marks entries up to `(idx, term)` durable. A term mismatch means the entry was
    /// replaced by a newer leader after the application started persisting it.
    pub fn stable_to(&mut self, idx: u64, term: u64) {
        if idx < self.offset {
            return;
        }
        if self.maybe_term(idx) == Some(term) {
            self.entries.drain(..=(idx - self.offset) as usize);
            self.offset = idx + 1;
        }
    }

    /// Marks the unstable snapshot at `idx` durable.
    pub fn stable_snap_to(&mut self, idx: u64) {
        if self.snapshot.as_ref().is_some_and(|s| snap_index(s) == idx) {
            self.snapshot = None;
        }
    }

    /// Replaces everything with `snap`.
    pub fn restore(&mut self, snap: Snapshot) {
        self.offset = snap_index(&snap) + 1;
        self.entries.clear();
        self.snapshot = Some(snap);
    }

    /// Appends `ents`, truncating any unstable entries they overwrite.
    pub fn truncate_and_append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else {
            return;
        };
        let after = first.index;
        if after == self.offset + self.entries.len() as u64 {
            self.entries.extend_from_slice(ents);
        } else if after <= self.offset {
            // Everything unstable is replaced; the caller checked `after` against the
            // committed index so nothing durable-and-committed is lost.
            self.offset = after;
            self.entries = ents.to_vec();
        } else {
            self.entries.truncate((after - self.offset) as usize);
            self.entries.extend_from_slice(ents);
        }
    }

    /// Unstable entries in `[lo, hi)`, which must lie within the unstable part.
    pub fn slice(&self, lo: u64, hi: u64) -> &[Entry] {
        let upper = self.offset + self.entries.len() as u64;
        assert!(
            lo <= hi && self.offset <= lo && hi <= upper,
            "unstable.slice[{},{}) out of bound [{},{}]",
            lo,
            hi,
            self.offset,
            upper
        );
        &self.entries[(lo - self.offset) as usize..(hi - self.offset) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::raftpb::SnapshotMetadata;
    use crate::raft::tests::ent;

    fn snap(index: u64, term: u64) -> Snapshot {
        Snapshot {
            metadata: Some(SnapshotMetadata {
                index,
                term,
                conf_state: None,
            }),
            data: vec![],
        }
    }

    #[test]
    fn term_lookup_covers_snapshot_and_entries() {
        let mut u = Unstable::new(5);
        u.snapshot = Some(snap(4, 1));
        u.entries = vec![ent(5, 2), ent(6, 3)];
        assert_eq!(u.maybe_term(3), None);
        assert_eq!(u.maybe_term(4), Some(1));
        assert_eq!(u.maybe_term(6), Some(3));
        assert_eq!(u.maybe_term(7), None);
        assert_eq!(u.maybe_first_index(), Some(5));
        assert_eq!(u.maybe_last_index(), Some(6));
    }

    #[test]
    fn stable_to_ignores_replaced_entries() {
        let mut u = Unstable::new(5);
        u.entries = vec![ent(5, 1), ent(6, 1)];
        // The application persisted (5, term 0) but the log now holds term 1 there.
        u.stable_to(5, 0);
        assert_eq!(u.offset, 5);
        u.stable_to(5, 1);
        assert_eq!((u.offset, u.entries.len()), (6, 1));
    }

    #[test]
    fn truncate_and_append_cases() {
        let mut u = Unstable::new(5);
        u.entries = vec![ent(5, 1)];
        u.truncate_and_append(&[ent(6, 1), ent(7, 1)]);
        assert_eq!(u.entries.len(), 3);
        u.truncate_and_append(&[ent(6, 2)]);
        assert_eq!(u.entries, vec![ent(5, 1), ent(6, 2)]);
        u.truncate_and_append(&[ent(4, 3)]);
        assert_eq!((u.offset, u.entries.clone()), (4, vec![ent(4, 3)]));
    }
}
