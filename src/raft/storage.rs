//! The durable log as Raft sees it, and an in-memory implementation for tests.
//!
//! Raft only reads through [`Storage`]; the application writes to it while handling a
//! `Ready` (see the module doc of `raft`). Index 0 / the snapshot index is a "dummy"
//! position whose term is known but whose entry is not.

use crate::proto::raftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use prost::Message as _;

/// Why a storage read failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The requested index precedes the first available entry (it was compacted).
    #[error("requested index is unavailable due to compaction")]
    Compacted,
    /// The requested index is beyond the last entry.
    #[error("requested entry at index is unavailable")]
    Unavailable,
    /// A snapshot is being produced; the leader retries later.
    #[error("snapshot is temporarily unavailable")]
    SnapshotTemporarilyUnavailable,
    /// The snapshot to apply is older than the one already held.
    #[error("requested index is older than the existing snapshot")]
    SnapshotOutOfDate,
}

/// Result of a storage read.
pub type StorageResult<T> = Result<T, StorageError>;

/// Read access to the durable Raft state.
pub trait Storage {
    /// The durable hard state and the configuration at the last snapshot/conf entry.
    fn initial_state(&self) -> StorageResult<(HardState, ConfState)>;
    /// Entries in `[lo, hi)`, at least one if any is in range, and otherwise as many as
    /// fit in `max_size` bytes (`u64::MAX` for no limit).
    fn entries(&self, lo: u64, hi: u64, max_size: u64) -> StorageResult<Vec<Entry>>;
    /// The term of entry `idx`, which must be in `[first_index - 1, last_index]`.
    fn term(&self, idx: u64) -> StorageResult<u64>;
    /// The index of the first entry that may be read (the snapshot index + 1).
    fn first_index(&self) -> StorageResult<u64>;
    /// The index of the last entry in the log.
    fn last_index(&self) -> StorageResult<u64>;
    /// The most recent snapshot.
    fn snapshot(&self) -> StorageResult<Snapshot>;
}

/// Keeps at least the first entry of `ents` and then as many as fit within `max_size`.
pub(crate) fn limit_size(ents: &mut Vec<Entry>, max_size: u64) {
    if ents.len() <= 1 {
        return;
    }
    let mut size = 0u64;
    let keep = ents
        .iter()
        .take_while(|e| {
            size += e.encoded_len() as u64;
            size <= max_size
        })
        .count();
    ents.truncate(keep.max(1));
}

/// An in-memory [`Storage`] for tests, benchmarks and the simulator.
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    hard_state: HardState,
    snapshot: Snapshot,
    /// `ents[0]` is a dummy entry at the snapshot index, holding the snapshot term.
    ents: Vec<Entry>,
}

impl MemStorage {
    /// An empty storage: no configuration, log empty at index 0.
    pub fn new() -> Self {
        Self {
            ents: vec![Entry::default()],
            ..Self::default()
        }
    }

    /// A storage bootstrapped with `voters` as the configuration, at index 1 and term 1.
    pub fn new_with_voters(voters: &[u64]) -> Self {
        Self::new_with_conf_state(ConfState {
            voters: voters.to_vec(),
            ..ConfState::default()
        })
    }

    /// A storage bootstrapped with `cs` as the configuration, at index 1 and term 1.
    /// Members joining later start from [`MemStorage::new`] and receive a snapshot.
    pub fn new_with_conf_state(cs: ConfState) -> Self {
        let mut s = Self::new();
        let snap = Snapshot {
            data: Vec::new(),
            metadata: Some(SnapshotMetadata {
                conf_state: Some(cs),
                index: 1,
                term: 1,
            }),
        };
        s.apply_snapshot(snap)
            .expect("fresh storage accepts any snapshot");
        s
    }

    /// Rebuilds the log after a restart from its durable copies: the newest snapshot
    /// and what the WAL replayed after it (etcd's arrangement: the WAL is durable,
    /// this is what Raft reads).
    pub fn from_durable(
        snapshot: Option<Snapshot>,
        hard_state: HardState,
        entries: &[Entry],
    ) -> StorageResult<Self> {
        let mut s = Self::new();
        if let Some(snap) = snapshot {
            s.apply_snapshot(snap)?;
        }
        s.append(entries);
        s.hard_state = hard_state;
        Ok(s)
    }

    fn offset(&self) -> u64 {
        self.ents[0].index
    }

    fn last(&self) -> u64 {
        self.offset() + self.ents.len() as u64 - 1
    }

    /// The durable hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// Persists the hard state.
    pub fn set_hard_state(&mut self, hs: HardState) {
        self.hard_state = hs;
    }

    /// Replaces the log with `snap`, discarding every entry.
    pub fn apply_snapshot(&mut self, snap: Snapshot) -> StorageResult<()> {
        let meta = snap.metadata.clone().unwrap_or_default();
        if meta.index < self.snapshot_index() {
            return Err(StorageError::SnapshotOutOfDate);
        }
        self.ents = vec![Entry {
            term: meta.term,
            index: meta.index,
            ..Entry::default()
        }];
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.hard_state.commit = self.hard_state.commit.max(meta.index);
        self.snapshot = snap;
        Ok(())
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.metadata.as_ref().map_or(0, |m| m.index)
    }

    /// Makes a snapshot of the state at `idx` (which must be applied) with `cs` and `data`.
    pub fn create_snapshot(
        &mut self,
        idx: u64,
        cs: ConfState,
        data: Vec<u8>,
    ) -> StorageResult<&Snapshot> {
        if idx <= self.snapshot_index() {
            return Err(StorageError::SnapshotOutOfDate);
        }
        assert!(
            idx <= self.last(),
            "snapshot index({}) is out of bound last index({})",
            idx,
            self.last()
        );
        let term = self.ents[(idx - self.offset()) as usize].term;
        self.snapshot = Snapshot {
            data,
            metadata: Some(SnapshotMetadata {
                conf_state: Some(cs),
                index: idx,
                term,
            }),
        };
        Ok(&self.snapshot)
    }

    /// Discards entries before `compact_index`, which becomes the new dummy entry.
    pub fn compact(&mut self, compact_index: u64) -> StorageResult<()> {
        if compact_index <= self.offset() {
            return Err(StorageError::Compacted);
        }
        assert!(
            compact_index <= self.last(),
            "compact index({}) is out of bound last index({})",
            compact_index,
            self.last()
        );
        let i = (compact_index - self.offset()) as usize;
        self.ents.drain(..i);
        self.ents[0].data.clear();
        Ok(())
    }

    /// Appends `entries`, replacing any conflicting suffix of the log.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        assert!(
            first.index <= self.last() + 1,
            "missing log entries [last({}), append at({})]",
            self.last(),
            first.index
        );
        let offset = self.offset();
        // Entries at or before the snapshot are already covered by it.
        let skip = (offset + 1).saturating_sub(first.index) as usize;
        let entries = &entries[skip.min(entries.len())..];
        let Some(first) = entries.first() else {
            return;
        };
        self.ents.truncate((first.index - offset) as usize);
        self.ents.extend_from_slice(entries);
    }
}

impl Storage for MemStorage {
    fn initial_state(&self) -> StorageResult<(HardState, ConfState)> {
        let cs = self
            .snapshot
            .metadata
            .as_ref()
            .and_then(|m| m.conf_state.clone())
            .unwrap_or_default();
        Ok((self.hard_state, cs))
    }

    fn entries(&self, lo: u64, hi: u64, max_size: u64) -> StorageResult<Vec<Entry>> {
        if lo <= self.offset() {
            return Err(StorageError::Compacted);
        }
        assert!(
            hi <= self.last() + 1,
            "entries' hi({}) is out of bound last index({})",
            hi,
            self.last()
        );
        let off = self.offset();
        let mut ents = self.ents[(lo - off) as usize..(hi - off) as usize].to_vec();
        limit_size(&mut ents, max_size);
        Ok(ents)
    }

    fn term(&self, idx: u64) -> StorageResult<u64> {
        if idx < self.offset() {
            return Err(StorageError::Compacted);
        }
        if idx > self.last() {
            return Err(StorageError::Unavailable);
        }
        Ok(self.ents[(idx - self.offset()) as usize].term)
    }

    fn first_index(&self) -> StorageResult<u64> {
        Ok(self.offset() + 1)
    }

    fn last_index(&self) -> StorageResult<u64> {
        Ok(self.last())
    }

    fn snapshot(&self) -> StorageResult<Snapshot> {
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::tests::ent;

    fn storage(ents: &[(u64, u64)]) -> MemStorage {
        let mut s = MemStorage::new();
        s.ents = ents.iter().map(|&(i, t)| ent(i, t)).collect();
        s
    }

    #[test]
    fn term_reports_compacted_and_unavailable() {
        let s = storage(&[(3, 3), (4, 4), (5, 5)]);
        assert_eq!(s.term(2), Err(StorageError::Compacted));
        assert_eq!(s.term(3), Ok(3));
        assert_eq!(s.term(5), Ok(5));
        assert_eq!(s.term(6), Err(StorageError::Unavailable));
    }

    #[test]
    fn entries_respect_bounds_and_size_limit() {
        let s = storage(&[(3, 3), (4, 4), (5, 5), (6, 6)]);
        assert_eq!(s.entries(3, 5, u64::MAX), Err(StorageError::Compacted));
        assert_eq!(s.entries(4, 7, u64::MAX).unwrap().len(), 3);
        // A limit smaller than one entry still yields that entry.
        assert_eq!(s.entries(4, 7, 0).unwrap(), vec![ent(4, 4)]);
        let one = ent(4, 4).encoded_len() as u64;
        assert_eq!(s.entries(4, 7, one * 2).unwrap().len(), 2);
    }

    #[test]
    fn append_truncates_conflicts_and_ignores_compacted_prefix() {
        let mut s = storage(&[(3, 3), (4, 4), (5, 5)]);
        s.append(&[ent(4, 6), ent(5, 6)]);
        assert_eq!(s.ents, vec![ent(3, 3), ent(4, 6), ent(5, 6)]);
        s.append(&[ent(2, 3), ent(3, 3), ent(4, 7)]);
        assert_eq!(s.ents, vec![ent(3, 3), ent(4, 7)]);
        s.append(&[ent(5, 7)]);
        assert_eq!(s.last(), 5);
    }

    #[test]
    fn compact_and_snapshot() {
        let mut s = storage(&[(3, 3), (4, 4), (5, 5)]);
        assert_eq!(s.compact(3), Err(StorageError::Compacted));
        s.compact(4).unwrap();
        assert_eq!((s.first_index(), s.term(4)), (Ok(5), Ok(4)));
        let snap = s
            .create_snapshot(5, ConfState::default(), b"d".to_vec())
            .unwrap();
        assert_eq!(snap.metadata.as_ref().unwrap().term, 5);
        assert_eq!(
            s.create_snapshot(4, ConfState::default(), vec![]).err(),
            Some(StorageError::SnapshotOutOfDate)
        );
    }
}
