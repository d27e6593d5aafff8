//! The snapshot lifecycle of a member. Every `--snapshot-count` applied entries it takes a
//! snapshot: the backend is committed, the metadata saved (file, then WAL mark, as etcd
//! orders them), the in-memory log compacted to the catch-up entries, and older WAL
//! segments and snap files removed. A follower that needs compacted entries gets the
//! backend streamed instead ([`crate::server::snapshot`]); a follower receiving one records
//! it before the hard state that follows it, then replaces its state with it.

use crate::proto::raftpb::{Message, Snapshot, SnapshotMetadata};
use crate::raft::{SnapshotStatus, Storage};
use crate::runtime::{self, CrashPoint};
use crate::server::snapshot::{self as transfer, Outgoing, KEEP_SNAPSHOTS};
use crate::snap::SnapshotFile;
use crate::wal::SnapshotMark;

use super::{Member, MemberError, StateMachine};

impl<S: StateMachine> Member<S> {
    /// Sends the backend as it is now, as etcd's merged snapshot does: its metadata names
    /// the applied index, which the backend, committed here, holds exactly.
    pub(super) fn send_snapshot(&mut self, mut m: Message) -> Result<(), MemberError> {
        self.sm.sync()?;
        let Some(source) = self.sm.snapshot_source()? else {
            self.node.report_snapshot(m.to, SnapshotStatus::Failure);
            return Ok(());
        };
        let term = self
            .node
            .store()
            .term(self.applied)
            .unwrap_or_else(|e| panic!("term of applied index {}: {e}", self.applied));
        m.snapshot = Some(Snapshot {
            data: Vec::new(),
            metadata: Some(SnapshotMetadata {
                conf_state: Some(self.node.conf_state()),
                index: self.applied,
                term,
            }),
        });
        self.transport.send_snapshot(Outgoing {
            message: m,
            source,
            disk: self.disk.clone(),
            dir: self.snap_dir.clone(),
        });
        Ok(())
    }

    /// Takes a snapshot once `--snapshot-count` entries were applied since the last one.
    pub(super) fn maybe_snapshot(&mut self) -> Result<(), MemberError> {
        if self.applied - self.snapshot_index <= self.snapshot_opts.count {
            return Ok(());
        }
        // The backend must hold every entry the snapshot claims before it is recorded.
        self.sm.sync()?;
        let index = self.applied;
        let cs = self.node.conf_state();
        let meta = self
            .node
            .store_mut()
            .create_snapshot(index, cs, Vec::new())
            .unwrap_or_else(|e| panic!("snapshot at applied index {index}: {e}"))
            .metadata
            .clone()
            .expect("a created snapshot has metadata");
        self.record_snapshot(&meta, transfer::DB)?;
        if index > self.snapshot_opts.catchup_entries {
            // Already compacted further is fine.
            let _ = self
                .node
                .store_mut()
                .compact(index - self.snapshot_opts.catchup_entries);
        }
        self.release(index)?;
        tracing::info!(index, term = meta.term, "saved snapshot");
        Ok(())
    }

    /// Saves the metadata file, then the WAL mark: a mark always has its file.
    fn record_snapshot(
        &mut self,
        meta: &SnapshotMetadata,
        backend: &str,
    ) -> Result<(), MemberError> {
        assert!(
            meta.index >= self.snapshot_index,
            "snapshot at {} would replace the newer one at {}",
            meta.index,
            self.snapshot_index
        );
        self.snapshotter.save(&SnapshotFile {
            metadata: Some(meta.clone()),
            backend: backend.to_string(),
        })?;
        self.wal.save_snapshot(&SnapshotMark {
            index: meta.index,
            term: meta.term,
            conf_state: meta.conf_state.clone(),
        })?;
        self.snapshot_index = meta.index;
        Ok(())
    }

    /// Removes WAL segments and snapshot files that a restart no longer needs.
    fn release(&mut self, index: u64) -> Result<(), MemberError> {
        self.wal.release_to(index)?;
        self.crash_point(CrashPoint::RaftAfterWalRelease)?;
        self.snapshotter.gc(KEEP_SNAPSHOTS)?;
        Ok(())
    }

    /// Records a snapshot received from the leader, whose database the transport wrote.
    pub(super) fn persist_received_snapshot(&mut self, snap: &Snapshot) -> Result<(), MemberError> {
        let meta = snap.metadata.clone().unwrap_or_default();
        let name = transfer::received_db_name(meta.index);
        assert!(
            self.disk.exists(&self.snap_dir.join(&name)),
            "member {:x}: snapshot at index {} came without its database {name}",
            self.node.id(),
            meta.index
        );
        self.record_snapshot(&meta, &name)
    }

    /// Replaces the log and the state with a received snapshot.
    pub(super) fn install_snapshot(&mut self, snap: Snapshot) -> Result<(), MemberError> {
        let index = snap.metadata.as_ref().map_or(0, |m| m.index);
        self.node
            .store_mut()
            .apply_snapshot(snap)
            .unwrap_or_else(|e| panic!("installing snapshot at {index}: {e}"));
        let db = self.snap_dir.join(transfer::received_db_name(index));
        self.sm.restore(self.disk.as_ref(), &db)?;
        self.follow_membership();
        self.applied = index;
        self.release(index)?;
        if let Err(e) = transfer::remove_stale_received(self.disk.as_ref(), &self.snap_dir, index) {
            tracing::warn!(error = %e, "removing stale received snapshots failed");
        }
        runtime::reach(runtime::Milestone::SnapshotInstalled);
        tracing::info!(index, "installed snapshot from the leader");
        Ok(())
    }
}
