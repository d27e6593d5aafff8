//! Starting a member: Raft's state comes back from the newest snapshot the WAL marks and
//! the entries after it, the commit index from whichever of the WAL and the backend is
//! further (the WAL does not fsync a hard state that only moves the commit); a new member
//! starts a WAL at Raft's bootstrap snapshot. Under `--force-new-cluster` the log is
//! rewritten first ([`force`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::force;
use super::handle::{MemberHandle, MemberStatus};
use super::reads::Reads;
use super::{Fatal, Member, MemberConfig, MemberError, RequestIds, StateMachine};
use crate::proto::raftpb::{ConfState, Message, Snapshot};
use crate::raft::{self, MemStorage, RawNode};
use crate::runtime::{self, Bug, Disk};
use crate::server::transport::{PeerEvent, Transport};
use crate::snap::Snapshotter;
use crate::wal::{Metadata, SnapshotMark, Wal};

/// Proposals, reads and admin requests queued between callers and the loop.
const QUEUE_LEN: usize = 4096;
/// Raft's bootstrap snapshot: the initial configuration at index 1, term 1.
const BOOTSTRAP: SnapshotMark = SnapshotMark {
    index: 1,
    term: 1,
    conf_state: None,
};

/// The running member loop; it ends when the member stops.
pub type MemberTask = tokio::task::JoinHandle<Result<(), MemberError>>;

/// Opens (or creates) the WAL, restores Raft's state from it, and starts the loop.
/// `inbound` carries messages from the peer service, `events` the transport's reports.
pub fn start<S: StateMachine>(
    cfg: MemberConfig,
    disk: Arc<dyn Disk>,
    transport: Transport,
    inbound: mpsc::Receiver<Message>,
    events: mpsc::Receiver<PeerEvent>,
    sm: S,
) -> Result<(MemberHandle<S>, MemberTask), MemberError> {
    let snapshotter = Snapshotter::new(disk.clone(), &cfg.snap_dir)?;
    let (mut wal, storage, snapshot_index) = if Wal::exists(disk.as_ref(), &cfg.wal_dir) {
        reopen(&cfg, &disk, &snapshotter, &sm)?
    } else {
        let metadata = Metadata {
            member_id: cfg.id,
            cluster_id: cfg.cluster_id,
        };
        let mut wal = Wal::create(disk.clone(), &cfg.wal_dir, metadata, cfg.wal.clone())?;
        wal.save_snapshot(&BOOTSTRAP)?;
        let storage = MemStorage::new_with_conf_state(initial_conf_state(&cfg, &sm)?);
        (wal, storage, BOOTSTRAP.index)
    };
    wal.observe_fsyncs(cfg.metrics.wal_fsync.clone());
    if cfg.unsafe_no_fsync {
        wal.skip_fsyncs();
    }
    // Entries up to the snapshot that changed nothing in the state machine (a new
    // leader's empty entries) may lie past its consistent index.
    let applied = sm.applied_index().max(snapshot_index);
    let mut raft_cfg = raft::Config::new(cfg.id);
    raft_cfg.applied = applied;
    raft_cfg.election_tick = cfg.election_ticks;
    raft_cfg.heartbeat_tick = cfg.heartbeat_ticks;
    raft_cfg.seed = cfg.seed;
    raft_cfg.vote_ignores_log = runtime::planted(Bug::VoteIgnoresLog);
    let node = RawNode::new(raft_cfg, storage)?;
    let (status_tx, status_rx) = watch::channel(MemberStatus::default());
    let (proposals_tx, proposals) = mpsc::channel(QUEUE_LEN);
    let (reads_tx, reads) = mpsc::channel(QUEUE_LEN);
    let (admin_tx, admin) = mpsc::channel(QUEUE_LEN);
    let member = Member {
        node,
        wal,
        transport,
        sm,
        ids: RequestIds::new(cfg.id),
        waiters: BTreeMap::new(),
        conf_waiters: BTreeMap::new(),
        status: status_tx,
        metrics: cfg.metrics.clone(),
        applied,
        reads: Reads::default(),
        disk,
        snapshotter,
        snap_dir: cfg.snap_dir.clone(),
        snapshot_opts: cfg.snapshot.clone(),
        snapshot_index,
        stop_in: None,
    };
    let task = tokio::spawn(member.run(cfg.tick, proposals, reads, admin, inbound, events));
    let handle = MemberHandle {
        proposals: proposals_tx,
        reads: reads_tx,
        admin: admin_tx,
        status: status_rx,
        request_timeout: cfg.request_timeout,
        metrics: cfg.metrics,
        skip_read_index: runtime::planted(Bug::StaleRead),
    };
    Ok((handle, task))
}

/// The configuration the state machine saved, or the initial voters.
fn initial_conf_state<S: StateMachine>(cfg: &MemberConfig, sm: &S) -> Result<ConfState, Fatal> {
    Ok(sm.conf_state()?.unwrap_or(ConfState {
        voters: cfg.voters.clone(),
        ..ConfState::default()
    }))
}

/// Opens the WAL at the newest snapshot it marks that has its file, and rebuilds Raft's
/// storage from it: the WAL, the storage and the snapshot index.
fn reopen<S: StateMachine>(
    cfg: &MemberConfig,
    disk: &Arc<dyn Disk>,
    snapshotter: &Snapshotter,
    sm: &S,
) -> Result<(Wal, MemStorage, u64), MemberError> {
    let marks = Wal::snapshot_marks(disk.as_ref(), &cfg.wal_dir)?;
    let meta = snapshotter
        .load_newest_marked(&marks)?
        .and_then(|s| s.metadata);
    let from = meta.as_ref().map_or(BOOTSTRAP, |m| SnapshotMark {
        index: m.index,
        term: m.term,
        conf_state: m.conf_state.clone(),
    });
    let (mut wal, mut replay) = Wal::open(disk.clone(), &cfg.wal_dir, &from, cfg.wal.clone())?;
    // The WAL does not fsync a hard state that only moves the commit index, so a crash
    // may leave it behind what the backend applied; applied entries were committed.
    let applied = sm.applied_index();
    let last = replay.entries.last().map_or(from.index, |e| e.index);
    if replay.hard_state.commit > last {
        // Raft would refuse the hard state with a panic; say which directory is wrong.
        return Err(MemberError::CommitBeyondLog {
            wal: cfg.wal_dir.clone(),
            commit: replay.hard_state.commit,
            last,
        });
    }
    if applied > last {
        return Err(MemberError::BackendAhead {
            applied,
            wal: cfg.wal_dir.clone(),
            last,
        });
    }
    replay.hard_state.commit = replay.hard_state.commit.max(applied);
    let Some(mut meta) = meta else {
        // The bootstrap entry is committed by construction, but a member stopped before it
        // first heard from a leader has only a hard state with commit 0 in its WAL.
        replay.hard_state.commit = replay.hard_state.commit.max(BOOTSTRAP.index);
        let conf_state = initial_conf_state(cfg, sm)?;
        if cfg.force_new_cluster {
            force::standalone(cfg.id, &conf_state, &mut wal, &mut replay)?;
        }
        let mut storage = MemStorage::new_with_conf_state(conf_state);
        storage.append(&replay.entries);
        storage.set_hard_state(replay.hard_state);
        return Ok((wal, storage, BOOTSTRAP.index));
    };
    let snapshot_index = meta.index;
    // Raft resumes at the backend's applied index, which may be past the snapshot: its
    // configuration is the one saved with that state.
    if let Some(cs) = sm.conf_state()? {
        meta.conf_state = Some(cs);
    }
    // The mark is written before the hard state that commits it; a crash between leaves
    // an older commit, but a snapshot only holds committed entries.
    replay.hard_state.commit = replay.hard_state.commit.max(meta.index);
    if cfg.force_new_cluster {
        let base = meta.conf_state.clone().unwrap_or_default();
        force::standalone(cfg.id, &base, &mut wal, &mut replay)?;
    }
    let snap = Snapshot {
        data: Vec::new(),
        metadata: Some(meta),
    };
    let storage = MemStorage::from_durable(Some(snap), replay.hard_state, &replay.entries)
        .expect("a fresh storage accepts any snapshot");
    Ok((wal, storage, snapshot_index))
}
