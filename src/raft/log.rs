//! The Raft log: durable entries in [`Storage`] followed by the [`Unstable`] tail.

use super::log_unstable::{snap_index, snap_term, Unstable};
use super::storage::{limit_size, Storage, StorageError, StorageResult};
use crate::proto::raftpb::{Entry, Snapshot};

/// The log of one member, with its commit and apply positions.
///
/// Invariant: `applied <= committed <= last_index()`, and entries up to `committed`
/// never change.
#[derive(Debug)]
pub struct RaftLog<S> {
    pub store: S,
    pub unstable: Unstable,
    /// Highest index known to be stored on a quorum.
    pub committed: u64,
    /// Highest index the application has applied.
    pub applied: u64,
    /// Bytes of committed entries handed out per `Ready`.
    pub max_apply_size: u64,
}

impl<S: Storage> RaftLog<S> {
    pub fn new(store: S, max_apply_size: u64) -> StorageResult<Self> {
        let first = store.first_index()?;
        let last = store.last_index()?;
        Ok(Self {
            store,
            unstable: Unstable::new(last + 1),
            committed: first - 1,
            applied: first - 1,
            max_apply_size,
        })
    }

    pub fn first_index(&self) -> u64 {
        self.unstable
            .maybe_first_index()
            .unwrap_or_else(|| self.store.first_index().expect("storage first_index"))
    }

    pub fn last_index(&self) -> u64 {
        self.unstable
            .maybe_last_index()
            .unwrap_or_else(|| self.store.last_index().expect("storage last_index"))
    }

    pub fn term(&self, idx: u64) -> StorageResult<u64> {
        let dummy = self.first_index() - 1;
        if idx < dummy {
            return Err(StorageError::Compacted);
        }
        if idx > self.last_index() {
            return Err(StorageError::Unavailable);
        }
        match self.unstable.maybe_term(idx) {
            Some(t) => Ok(t),
            None => self.store.term(idx),
        }
    }

    /// The term at `idx`, or 0 when it is compacted or beyond the log.
    pub fn term_or_zero(&self, idx: u64) -> u64 {
        self.term(idx).unwrap_or(0)
    }

    pub fn last_term(&self) -> u64 {
        self.term(self.last_index())
            .expect("the last index always has a known term")
    }

    pub fn match_term(&self, idx: u64, term: u64) -> bool {
        self.term(idx) == Ok(term)
    }

    /// Whether a log ending at `(last_idx, term)` is at least as up to date as this one
    /// (thesis 3.6.1).
    pub fn is_up_to_date(&self, last_idx: u64, term: u64) -> bool {
        term > self.last_term() || (term == self.last_term() && last_idx >= self.last_index())
    }

    /// Handles an append from the leader: if the log matches at `(idx, term)` it takes
    /// `ents`, truncating a conflicting suffix, advances the commit index and returns
    /// the index of the last entry it now shares with the leader.
    pub fn maybe_append(
        &mut self,
        idx: u64,
        term: u64,
        committed: u64,
        ents: &[Entry],
    ) -> Option<u64> {
        if !self.match_term(idx, term) {
            return None;
        }
        let last_new = idx + ents.len() as u64;
        let conflict = self.find_conflict(ents);
        if conflict != 0 {
            assert!(
                conflict > self.committed,
                "entry {} conflicts with committed entry [committed({})]",
                conflict,
                self.committed
            );
            self.append(&ents[(conflict - idx - 1) as usize..]);
        }
        self.commit_to(committed.min(last_new));
        Some(last_new)
    }

    /// Appends `ents` after a prefix of the log; returns the new last index.
    pub fn append(&mut self, ents: &[Entry]) -> u64 {
        if let Some(first) = ents.first() {
            assert!(
                first.index > self.committed,
                "after({}) is out of range [committed({})]",
                first.index - 1,
                self.committed
            );
            self.unstable.truncate_and_append(ents);
        }
        self.last_index()
    }

    /// The index of the first entry of `ents` that is missing or has a different term
    /// here, or 0 if the log already contains all of them.
    pub fn find_conflict(&self, ents: &[Entry]) -> u64 {
        ents.iter()
            .find(|e| !self.match_term(e.index, e.term))
            .map_or(0, |e| e.index)
    }

    /// The largest `(index, term)` with `index <= idx` and `term <= term`: the fast
    /// backtracking hint a follower sends when it rejects an append.
    pub fn find_conflict_by_term(&self, idx: u64, term: u64) -> (u64, u64) {
        let mut idx = idx.min(self.last_index());
        loop {
            match self.term(idx) {
                Ok(t) if t > term => idx -= 1,
                Ok(t) => return (idx, t),
                Err(_) => return (idx, 0),
            }
        }
    }

    /// Commits up to `max_index` if it holds an entry of `term`: a leader only commits
    /// entries of its own term by counting replicas (thesis 3.6.2).
    pub fn maybe_commit(&mut self, max_index: u64, term: u64) -> bool {
        if max_index > self.committed
            && max_index <= self.last_index()
            && self.term_or_zero(max_index) == term
        {
            self.commit_to(max_index);
            return true;
        }
        false
    }

    pub fn commit_to(&mut self, to: u64) {
        if to > self.committed {
            assert!(
                to <= self.last_index(),
                "to_commit({}) is out of range [last_index({})]",
                to,
                self.last_index()
            );
            self.committed = to;
        }
    }

    pub fn applied_to(&mut self, idx: u64) {
        assert!(
            idx >= self.applied && idx <= self.committed,
            "applied({}) is out of range [prev_applied({}), committed({})]",
            idx,
            self.applied,
            self.committed
        );
        self.applied = idx;
    }

    pub fn stable_to(&mut self, idx: u64, term: u64) {
        self.unstable.stable_to(idx, term);
    }

    pub fn stable_snap_to(&mut self, idx: u64) {
        self.unstable.stable_snap_to(idx);
    }

    pub fn has_pending_snapshot(&self) -> bool {
        self.unstable.snapshot.is_some()
    }

    pub fn unstable_entries(&self) -> &[Entry] {
        &self.unstable.entries
    }

    /// Committed entries not yet applied, bounded by `max_apply_size`; none while an
    /// unstable snapshot must be applied first.
    pub fn next_committed_entries(&self) -> Vec<Entry> {
        if self.has_pending_snapshot() {
            return Vec::new();
        }
        let lo = self.applied.max(self.first_index() - 1) + 1;
        if lo > self.committed {
            return Vec::new();
        }
        self.slice(lo, self.committed + 1, self.max_apply_size)
            .expect("unapplied committed entries are never compacted")
    }

    pub fn has_next_committed_entries(&self) -> bool {
        !self.has_pending_snapshot() && self.committed > self.applied.max(self.first_index() - 1)
    }

    /// The snapshot a lagging follower needs.
    pub fn snapshot(&self) -> StorageResult<Snapshot> {
        match &self.unstable.snapshot {
            Some(s) => Ok(s.clone()),
            None => self.store.snapshot(),
        }
    }

    /// Entries from `idx` to the end, bounded by `max_size`.
    pub fn entries(&self, idx: u64, max_size: u64) -> StorageResult<Vec<Entry>> {
        let last = self.last_index();
        if idx > last {
            return Ok(Vec::new());
        }
        self.slice(idx, last + 1, max_size)
    }

    /// Entries in `[lo, hi)` from storage and the unstable tail, bounded by `max_size`.
    pub fn slice(&self, lo: u64, hi: u64, max_size: u64) -> StorageResult<Vec<Entry>> {
        let first = self.first_index();
        if lo < first {
            return Err(StorageError::Compacted);
        }
        assert!(
            lo <= hi && hi <= self.last_index() + 1,
            "slice[{},{}) out of bound [{},{}]",
            lo,
            hi,
            first,
            self.last_index()
        );
        let mut ents = Vec::new();
        if lo < self.unstable.offset {
            let stored_hi = hi.min(self.unstable.offset);
            ents = self.store.entries(lo, stored_hi, max_size)?;
            if (ents.len() as u64) < stored_hi - lo {
                return Ok(ents);
            }
        }
        if hi > self.unstable.offset {
            let from = lo.max(self.unstable.offset);
            ents.extend_from_slice(self.unstable.slice(from, hi));
        }
        limit_size(&mut ents, max_size);
        Ok(ents)
    }

    /// Replaces the log with `snap` (the caller checked it is newer than `committed`).
    pub fn restore(&mut self, snap: Snapshot) {
        self.committed = snap_index(&snap);
        self.unstable.restore(snap);
    }

    /// The `(index, term)` of an unstable snapshot, if any.
    pub fn pending_snapshot_id(&self) -> Option<(u64, u64)> {
        self.unstable
            .snapshot
            .as_ref()
            .map(|s| (snap_index(s), snap_term(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::storage::MemStorage;
    use crate::raft::tests::ent;

    fn ents(terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, &t)| ent(i as u64 + 1, t))
            .collect()
    }

    fn log_with(terms: &[u64]) -> RaftLog<MemStorage> {
        let mut l = RaftLog::new(MemStorage::new(), u64::MAX).unwrap();
        l.append(&ents(terms));
        l
    }

    #[test]
    fn find_conflict_reports_first_mismatch() {
        let l = log_with(&[1, 2, 3]);
        assert_eq!(l.find_conflict(&[ent(1, 1), ent(2, 2)]), 0);
        assert_eq!(l.find_conflict(&[ent(3, 3), ent(4, 4)]), 4);
        assert_eq!(l.find_conflict(&[ent(2, 1), ent(3, 4)]), 2);
    }

    #[test]
    fn find_conflict_by_term_skips_a_whole_term() {
        // Fast backtracking (thesis 5.3 optimisation): the follower's log holds terms
        // [1,1,4,4,4]; the leader probes index 5 with term 2, so everything with a term
        // above 2 can be skipped at once.
        let l = log_with(&[1, 1, 4, 4, 4]);
        assert_eq!(l.find_conflict_by_term(5, 2), (2, 1));
        assert_eq!(l.find_conflict_by_term(5, 4), (5, 4));
        assert_eq!(l.find_conflict_by_term(9, 0), (0, 0));
    }

    #[test]
    fn maybe_append_matches_truncates_and_commits() {
        let mut l = log_with(&[1, 2, 3]);
        assert_eq!(l.maybe_append(3, 2, 3, &[]), None, "term mismatch at 3");
        assert_eq!(l.maybe_append(2, 2, 3, &[ent(3, 4)]), Some(3));
        assert_eq!(l.term(3), Ok(4));
        assert_eq!(l.committed, 3);
        // Commit is bounded by what the leader vouched for.
        assert_eq!(l.maybe_append(3, 4, 9, &[ent(4, 4)]), Some(4));
        assert_eq!(l.committed, 4);
    }

    #[test]
    #[should_panic(expected = "conflicts with committed entry")]
    fn maybe_append_refuses_to_rewrite_committed() {
        let mut l = log_with(&[1, 2, 3]);
        l.commit_to(3);
        l.maybe_append(1, 1, 3, &[ent(2, 5)]);
    }

    #[test]
    fn maybe_commit_only_current_term() {
        let mut l = log_with(&[1, 2]);
        assert!(!l.maybe_commit(2, 1));
        assert!(!l.maybe_commit(3, 2), "beyond the log");
        assert!(l.maybe_commit(2, 2));
        assert_eq!(l.committed, 2);
    }

    #[test]
    fn slice_spans_storage_and_unstable() {
        let mut store = MemStorage::new();
        store.append(&ents(&[1, 1, 2]));
        let mut l = RaftLog::new(store, u64::MAX).unwrap();
        l.append(&[ent(4, 3), ent(5, 3)]);
        assert_eq!(l.slice(2, 6, u64::MAX).unwrap().len(), 4);
        assert_eq!(l.slice(2, 6, 0).unwrap().len(), 1);
        assert_eq!(l.entries(5, u64::MAX).unwrap(), vec![ent(5, 3)]);
        l.stable_to(4, 3);
        assert_eq!(l.unstable.offset, 5);
    }

    #[test]
    fn up_to_date_compares_term_then_index() {
        let l = log_with(&[1, 2, 3]);
        assert!(l.is_up_to_date(1, 4));
        assert!(l.is_up_to_date(3, 3));
        assert!(!l.is_up_to_date(2, 3));
        assert!(!l.is_up_to_date(9, 2));
    }

    #[test]
    #[should_panic(expected = "applied(3) is out of range")]
    fn applied_beyond_commit_panics() {
        let mut l = log_with(&[1, 2, 3]);
        l.commit_to(2);
        l.applied_to(3);
    }
}
