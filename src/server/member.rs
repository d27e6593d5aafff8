//! The member loop: drives a Raft node with ticks, peer messages and proposals, and
//! handles each Ready in the order the `raft` module documents: send, persist to the WAL,
//! send what waited for persistence, apply, advance.
//!
//! Proposals that arrive together are handed to Raft together, so one Ready carries them
//! all and one WAL fsync makes them durable. A proposal waits for its entry to be applied
//! here; each carries a request ID, unique per member, to find its waiter.
//!
//! Linearizable reads use ReadIndex: reads that arrive together share one confirmation
//! round, and each is answered once the member has applied up to the read index.
//!
//! Every `--snapshot-count` applied entries the member takes a snapshot: the backend is
//! committed, the metadata saved (file, then WAL mark, as etcd orders them), the in-memory
//! log compacted to the catch-up entries, and older WAL segments and snap files removed.
//! A follower that needs compacted entries gets the backend streamed instead
//! ([`super::snapshot`]).
//!
//! Configuration changes carry the member in their context: the state machine validates
//! and records the membership, Raft applies the change (as a no-op if the state machine
//! refused it), and the transport gains or drops the peer. A member that applies its own
//! removal stops, as etcd's does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::metrics::{PendingProposal, ServerMetrics};
use super::snapshot::{self as snapshots, Outgoing, SnapshotOptions, KEEP_SNAPSHOTS};
use super::transport::{PeerEvent, Transport};
use crate::backend::SnapshotSource;
use crate::proto::etcdserverpb::Member as MemberAttrs;
use crate::proto::raftpb::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, Message, MessageType, Snapshot,
    SnapshotMetadata,
};
use crate::raft::{self, MemStorage, RawNode, SnapshotStatus, StateRole, Storage};
use crate::runtime::{self, Bug, Clock, Disk};
use crate::snap::{SnapshotFile, Snapshotter};
use crate::wal::{Metadata, SnapshotMark, Wal, WalOptions};

/// Ticks (heartbeat intervals) before an unanswered ReadIndex request is sent again:
/// etcd retries after 500 ms.
const READ_INDEX_RETRY_TICKS: u32 = 5;

/// A ReadIndex request's context, unique in the cluster (the leader keeps one pending
/// read per context and drops a second with the same bytes): this member's ID, then its
/// counter.
fn read_ctx(member: u64, n: u64) -> Vec<u8> {
    let mut ctx = member.to_le_bytes().to_vec();
    ctx.extend_from_slice(&n.to_le_bytes());
    ctx
}

/// The counter of a context [`read_ctx`] made for `member`.
fn own_read_ctx(member: u64, ctx: &[u8]) -> Option<u64> {
    let (id, n) = ctx.split_at_checked(8)?;
    if id != member.to_le_bytes() {
        return None;
    }
    Some(u64::from_le_bytes(n.try_into().ok()?))
}

/// Reads sharing one ReadIndex request, and the ticks since it was last sent.
struct RequestedRead {
    waiters: Vec<ReadWaiter>,
    ticks: u32,
}

/// Proposals waiting to be applied; past this, new ones are refused.
pub const MAX_PENDING_PROPOSALS: usize = 16 * 1024;
/// Proposals queued between callers and the loop.
const PROPOSAL_QUEUE_LEN: usize = 4096;
/// Raft's bootstrap snapshot: the initial configuration at index 1, term 1.
const BOOTSTRAP: SnapshotMark = SnapshotMark {
    index: 1,
    term: 1,
    conf_state: None,
};

/// What a committed entry does; the member applies entries to it in log order.
pub trait StateMachine: Send + 'static {
    /// Applies the payload of the entry at `index`; the result goes to the proposer.
    fn apply(&mut self, index: u64, payload: &[u8]) -> Vec<u8>;

    /// Called after the committed entries of one Ready are applied: a place to commit
    /// them to disk together.
    fn end_batch(&mut self) {}

    /// Called on every Raft tick: a place to make applied entries durable while no new
    /// ones arrive.
    fn on_tick(&mut self) {}

    /// The index of the last entry whose effects are durable in the state machine; after
    /// a restart Raft hands over only the entries after it.
    fn applied_index(&self) -> u64 {
        0
    }

    /// Makes every applied entry durable now: a snapshot at the applied index is about to
    /// be recorded or sent.
    fn sync(&mut self) {}

    /// The state as of the last [`StateMachine::sync`], to send to a follower; `None` if
    /// this state machine cannot be sent.
    fn snapshot_source(&mut self) -> Option<SnapshotSource> {
        None
    }

    /// Replaces the whole state with the database received at `db`.
    fn restore(&mut self, _disk: &dyn Disk, db: &Path) {
        panic!(
            "this state machine cannot restore the snapshot at {}",
            db.display()
        );
    }
    /// Records the configuration change at `index` in the membership. An error (etcd's
    /// message) goes to the proposer, and Raft applies the change as a no-op.
    fn apply_conf_change(&mut self, _index: u64, _cc: &ConfChange) -> Result<(), String> {
        Ok(())
    }

    /// Every member's first peer URL, by member ID: the transport follows it after a
    /// snapshot replaced the membership.
    fn peer_urls(&self) -> Vec<(u64, String)> {
        Vec::new()
    }

    /// Records Raft's configuration after a change, with the entry that made it.
    fn save_conf_state(&mut self, _cs: &ConfState) {}

    /// Raft's configuration as of [`StateMachine::applied_index`], if it keeps one; the
    /// initial voters otherwise.
    fn conf_state(&self) -> Option<ConfState> {
        None
    }
}

/// Why a proposal has no result. The messages are etcd's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: request timed out")]
    TimedOut,
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: not leader")]
    NotLeader,
}

/// Where the member stands, published after every Ready.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberStatus {
    pub leader: u64,
    pub is_leader: bool,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
}

#[derive(Clone, Debug)]
pub struct MemberConfig {
    pub id: u64,
    pub cluster_id: u64,
    /// Every voter of the initial cluster, this member included.
    pub voters: Vec<u64>,
    pub wal_dir: PathBuf,
    pub wal: WalOptions,
    /// Snapshot metadata files and received databases.
    pub snap_dir: PathBuf,
    pub snapshot: SnapshotOptions,
    pub tick: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// How long a proposal waits to be applied.
    pub request_timeout: Duration,
    /// Seeds Raft's randomized election timeouts.
    pub seed: u64,
    /// This member's metrics: proposals, leadership, WAL fsyncs.
    pub metrics: Arc<ServerMetrics>,
}

enum Payload {
    Entry(Vec<u8>),
    ConfChange(ConfChange),
}

struct Proposal {
    payload: Payload,
    done: oneshot::Sender<Result<Vec<u8>, ProposeError>>,
}

/// Requests for the loop that are neither proposals nor reads.
enum Admin {
    /// The leader's match index per member (None on a follower).
    Progress(oneshot::Sender<Result<Option<BTreeMap<u64, u64>>, ProposeError>>),
    /// Hands leadership to a member (etcd's MoveLeader); the caller watches the status.
    TransferLeader(u64),
}

/// Ticks a removed member keeps running so that the others learn the commit (etcd waits
/// ten ticks too).
const REMOVED_STOP_TICKS: u32 = 10;

type ReadWaiter = oneshot::Sender<Result<(), ProposeError>>;

/// The caller's side of a running member.
#[derive(Clone, Debug)]
pub struct MemberHandle {
    proposals: mpsc::Sender<Proposal>,
    reads: mpsc::Sender<ReadWaiter>,
    admin: mpsc::Sender<Admin>,
    status: watch::Receiver<MemberStatus>,
    request_timeout: Duration,
    metrics: Arc<ServerMetrics>,
    /// The planted stale-read bug (simulation only): reads skip ReadIndex.
    skip_read_index: bool,
}

impl MemberHandle {
    /// Proposes `payload` and waits until it is applied here.
    pub async fn propose(&self, payload: Vec<u8>) -> Result<Vec<u8>, ProposeError> {
        let (done, rx) = oneshot::channel();
        let payload = Payload::Entry(payload);
        queue(&self.proposals, Proposal { payload, done })?;
        let pending = PendingProposal::start(&self.metrics);
        let result = self.wait(rx).await;
        if result.is_ok() {
            pending.succeeded();
        }
        result
    }

    /// Proposes a configuration change (its ID is set here) and waits until it is
    /// applied here; the inner error is the state machine's refusal.
    pub async fn propose_conf_change(
        &self,
        cc: ConfChange,
    ) -> Result<Result<(), String>, ProposeError> {
        let (done, rx) = oneshot::channel();
        let payload = Payload::ConfChange(cc);
        queue(&self.proposals, Proposal { payload, done })?;
        let refusal = self.wait(rx).await?;
        Ok(match refusal.is_empty() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&refusal).into_owned()),
        })
    }

    /// The leader's match index per member, or None if this member is not the leader.
    pub async fn progress(&self) -> Result<Option<BTreeMap<u64, u64>>, ProposeError> {
        let (done, rx) = oneshot::channel();
        queue(&self.admin, Admin::Progress(done))?;
        self.wait(rx).await
    }

    /// Asks Raft to hand leadership to `transferee`; see [`MemberHandle::status`].
    pub fn transfer_leader(&self, transferee: u64) -> Result<(), ProposeError> {
        queue(&self.admin, Admin::TransferLeader(transferee))
    }

    /// Waits until this member has applied everything committed when the call was made:
    /// after it, a local read is linearizable.
    pub async fn read_index(&self) -> Result<(), ProposeError> {
        if self.skip_read_index {
            return Ok(());
        }
        let (done, rx) = oneshot::channel();
        queue(&self.reads, done)?;
        self.wait(rx).await
    }

    /// The loop's answer, or why there is none within the request timeout.
    async fn wait<T>(
        &self,
        rx: oneshot::Receiver<Result<T, ProposeError>>,
    ) -> Result<T, ProposeError> {
        match tokio::time::timeout(self.request_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ProposeError::Stopped),
            Err(_) => Err(ProposeError::TimedOut),
        }
    }

    pub fn status(&self) -> MemberStatus {
        *self.status.borrow()
    }

    /// This member's metrics.
    pub fn metrics(&self) -> &ServerMetrics {
        &self.metrics
    }

    /// A receiver that wakes whenever the status changes.
    pub fn status_changes(&self) -> watch::Receiver<MemberStatus> {
        self.status.clone()
    }
}

/// Hands `item` to the member loop without waiting: a full queue is back-pressure.
fn queue<T>(tx: &mpsc::Sender<T>, item: T) -> Result<(), ProposeError> {
    tx.try_send(item).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => ProposeError::TooManyRequests,
        mpsc::error::TrySendError::Closed(_) => ProposeError::Stopped,
    })
}

/// Errors that stop the member: its durable state can no longer be trusted to advance.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error(transparent)]
    Wal(#[from] crate::wal::WalError),
    #[error(transparent)]
    Raft(#[from] raft::Error),
    #[error(transparent)]
    Snap(#[from] crate::snap::SnapError),
    #[error("the member has been permanently removed from the cluster")]
    Removed,
}

/// Request IDs as etcd makes them: the low 16 bits of the member ID, then a counter that
/// starts from the clock, so IDs do not repeat across restarts.
struct RequestIds {
    next: u64,
}

impl RequestIds {
    fn new(member_id: u64) -> Self {
        let millis = (Clock.unix_nanos() / 1_000_000) as u64;
        RequestIds {
            next: ((member_id & 0xffff) << 48) | ((millis & 0xff_ffff_ffff) << 8),
        }
    }

    fn next(&mut self) -> u64 {
        self.next = self.next.wrapping_add(1);
        self.next
    }
}

struct Member<S> {
    node: RawNode<MemStorage>,
    wal: Wal,
    transport: Transport,
    sm: S,
    ids: RequestIds,
    waiters: BTreeMap<u64, oneshot::Sender<Result<Vec<u8>, ProposeError>>>,
    status: watch::Sender<MemberStatus>,
    metrics: Arc<ServerMetrics>,
    applied: u64,
    /// Reads that arrived since the last ReadIndex request.
    pending_reads: Vec<ReadWaiter>,
    /// Reads whose ReadIndex request is out, by request context.
    requested_reads: BTreeMap<u64, RequestedRead>,
    /// Reads with a known read index, waiting for it to be applied.
    confirmed_reads: Vec<(u64, Vec<ReadWaiter>)>,
    next_read_ctx: u64,
    disk: Arc<dyn Disk>,
    snapshotter: Snapshotter,
    snap_dir: PathBuf,
    snapshot_opts: SnapshotOptions,
    /// Index of the newest snapshot. Invariant: `snapshot_index <= applied`.
    snapshot_index: u64,
    /// Ticks left before stopping, once this member applied its own removal.
    stop_in: Option<u32>,
}

/// Opens (or creates) the WAL, restores Raft's state from it, and starts the loop.
/// `inbound` carries messages from the peer service, `events` the transport's reports.
pub fn start<S: StateMachine>(
    cfg: MemberConfig,
    disk: Arc<dyn Disk>,
    transport: Transport,
    inbound: mpsc::Receiver<Message>,
    events: mpsc::Receiver<PeerEvent>,
    sm: S,
) -> Result<
    (
        MemberHandle,
        tokio::task::JoinHandle<Result<(), MemberError>>,
    ),
    MemberError,
> {
    let snapshotter = Snapshotter::new(disk.clone(), &cfg.snap_dir)?;
    let mut storage = MemStorage::new_with_conf_state(sm.conf_state().unwrap_or(ConfState {
        voters: cfg.voters.clone(),
        ..ConfState::default()
    }));
    let mut snapshot_index = BOOTSTRAP.index;
    let mut wal = if Wal::exists(disk.as_ref(), &cfg.wal_dir) {
        let marks = Wal::snapshot_marks(disk.as_ref(), &cfg.wal_dir)?;
        let newest = snapshotter.load_newest_marked(&marks)?;
        let meta = newest.and_then(|s| s.metadata);
        let from = meta.as_ref().map_or(BOOTSTRAP, |m| SnapshotMark {
            index: m.index,
            term: m.term,
            conf_state: m.conf_state.clone(),
        });
        let (wal, mut replay) = Wal::open(disk.clone(), &cfg.wal_dir, &from, cfg.wal.clone())?;
        // The WAL does not fsync a hard state that only moves the commit index, so a crash
        // may leave it behind what the backend applied; applied entries were committed.
        let applied = sm.applied_index();
        assert!(
            applied <= replay.entries.last().map_or(from.index, |e| e.index),
            "the backend applied entry {applied}, past the end of the WAL"
        );
        replay.hard_state.commit = replay.hard_state.commit.max(applied);
        if let Some(mut meta) = meta {
            snapshot_index = meta.index;
            // Raft resumes at the backend's applied index, which may be past the snapshot:
            // its configuration is the one saved with that state.
            if let Some(cs) = sm.conf_state() {
                meta.conf_state = Some(cs);
            }
            // The mark is written before the hard state that commits it; a crash between
            // leaves an older commit, but a snapshot only holds committed entries.
            replay.hard_state.commit = replay.hard_state.commit.max(meta.index);
            let snap = Snapshot {
                data: Vec::new(),
                metadata: Some(meta),
            };
            storage = MemStorage::from_durable(Some(snap), replay.hard_state, &replay.entries)
                .expect("a fresh storage accepts any snapshot");
        } else {
            storage.append(&replay.entries);
            storage.set_hard_state(replay.hard_state);
        }
        wal
    } else {
        let metadata = Metadata {
            member_id: cfg.id,
            cluster_id: cfg.cluster_id,
        };
        let mut wal = Wal::create(disk.clone(), &cfg.wal_dir, metadata, cfg.wal.clone())?;
        wal.save_snapshot(&BOOTSTRAP)?;
        wal
    };
    wal.observe_fsyncs(cfg.metrics.wal_fsync.clone());
    // Entries up to the snapshot that changed nothing in the state machine (a new
    // leader's empty entries) may lie past its consistent index.
    let applied = sm.applied_index().max(snapshot_index);
    let mut raft_cfg = raft::Config::new(cfg.id);
    raft_cfg.applied = applied;
    raft_cfg.election_tick = cfg.election_ticks;
    raft_cfg.heartbeat_tick = cfg.heartbeat_ticks;
    raft_cfg.seed = cfg.seed;
    let node = RawNode::new(raft_cfg, storage)?;
    let (status_tx, status_rx) = watch::channel(MemberStatus::default());
    let (proposals_tx, proposals) = mpsc::channel(PROPOSAL_QUEUE_LEN);
    let (reads_tx, reads) = mpsc::channel(PROPOSAL_QUEUE_LEN);
    let (admin_tx, admin) = mpsc::channel(PROPOSAL_QUEUE_LEN);
    let member = Member {
        node,
        wal,
        transport,
        sm,
        ids: RequestIds::new(cfg.id),
        waiters: BTreeMap::new(),
        status: status_tx,
        metrics: cfg.metrics.clone(),
        applied,
        pending_reads: Vec::new(),
        requested_reads: BTreeMap::new(),
        confirmed_reads: Vec::new(),
        next_read_ctx: 0,
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

impl<S: StateMachine> Member<S> {
    async fn run(
        mut self,
        tick: Duration,
        mut proposals: mpsc::Receiver<Proposal>,
        mut reads: mpsc::Receiver<ReadWaiter>,
        mut admin: mpsc::Receiver<Admin>,
        mut inbound: mpsc::Receiver<Message>,
        mut events: mpsc::Receiver<PeerEvent>,
    ) -> Result<(), MemberError> {
        let mut ticker = tokio::time::interval(tick);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    if let Some(left) = self.stop_in.as_mut() {
                        if *left == 0 {
                            return Err(MemberError::Removed);
                        }
                        *left -= 1;
                    }
                    self.node.tick();
                    self.sm.on_tick();
                    // Callers that gave up no longer need their waiter.
                    self.waiters.retain(|_, w| !w.is_closed());
                    self.requested_reads
                        .retain(|_, r| r.waiters.iter().any(|w| !w.is_closed()));
                    self.retry_read_index();
                }
                Some(m) = inbound.recv() => {
                    self.step(m);
                    while let Ok(m) = inbound.try_recv() {
                        self.step(m);
                    }
                }
                Some(p) = proposals.recv() => {
                    self.propose(p);
                    while let Ok(p) = proposals.try_recv() {
                        self.propose(p);
                    }
                }
                Some(r) = reads.recv() => {
                    self.pending_reads.push(r);
                    while let Ok(r) = reads.try_recv() {
                        self.pending_reads.push(r);
                    }
                    self.request_read_index();
                }
                Some(a) = admin.recv() => self.admin(a),
                Some(event) = events.recv() => match event {
                    PeerEvent::Unreachable(id) => self.node.report_unreachable(id),
                    PeerEvent::Snapshot { to, status } => self.node.report_snapshot(to, status),
                    PeerEvent::Removed => return Err(MemberError::Removed),
                },
                else => return Ok(()),
            }
            while self.node.has_ready() {
                self.handle_ready()?;
            }
        }
    }

    fn step(&mut self, m: Message) {
        runtime::trace(
            b'M',
            &[m.from, m.to, m.r#type as u64, m.term, m.index, m.commit],
        );
        // Messages from unknown or removed members are refused by Raft; nothing to do.
        let _ = self.node.step(m);
    }

    fn admin(&mut self, a: Admin) {
        match a {
            Admin::Progress(done) => {
                let progress = (self.node.raft.state == StateRole::Leader).then(|| {
                    let prs = &self.node.raft.prs.progress;
                    prs.iter().map(|(&id, pr)| (id, pr.matched)).collect()
                });
                let _ = done.send(Ok(progress));
            }
            Admin::TransferLeader(to) => {
                let _ = self.node.transfer_leader(to);
            }
        }
    }

    fn propose(&mut self, p: Proposal) {
        if self.waiters.len() >= MAX_PENDING_PROPOSALS {
            let _ = p.done.send(Err(ProposeError::TooManyRequests));
            return;
        }
        let id = self.ids.next();
        let proposed = match p.payload {
            Payload::Entry(payload) => {
                let mut data = Vec::with_capacity(8 + payload.len());
                data.extend_from_slice(&id.to_le_bytes());
                data.extend_from_slice(&payload);
                self.node.propose(data)
            }
            Payload::ConfChange(cc) => self.node.propose_conf_change_v1(&ConfChange { id, ..cc }),
        };
        match proposed {
            Ok(()) => {
                self.waiters.insert(id, p.done);
            }
            Err(_) => {
                let _ = p.done.send(Err(ProposeError::NoLeader));
            }
        }
    }

    /// One ReadIndex request for every read that arrived since the last one.
    fn request_read_index(&mut self) {
        if self.pending_reads.is_empty() {
            return;
        }
        let waiters = std::mem::take(&mut self.pending_reads);
        self.next_read_ctx += 1;
        let ctx = self.next_read_ctx;
        match self.node.read_index(read_ctx(self.node.raft.id, ctx)) {
            Ok(()) => {
                let read = RequestedRead { waiters, ticks: 0 };
                self.requested_reads.insert(ctx, read);
            }
            Err(_) => {
                for w in waiters {
                    let _ = w.send(Err(ProposeError::NoLeader));
                }
            }
        }
    }

    /// Sends again the ReadIndex requests unanswered for [`READ_INDEX_RETRY_TICKS`], as
    /// etcd does: a leader drops them while it has not committed in its term, and a
    /// message may be lost with its stream.
    fn retry_read_index(&mut self) {
        let me = self.node.raft.id;
        for (&ctx, read) in self.requested_reads.iter_mut() {
            read.ticks += 1;
            if read.ticks >= READ_INDEX_RETRY_TICKS {
                read.ticks = 0;
                let _ = self.node.read_index(read_ctx(me, ctx));
            }
        }
    }

    /// Answers the reads whose read index has been applied.
    fn release_reads(&mut self) {
        let applied = self.applied;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.confirmed_reads)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.confirmed_reads = waiting;
        for w in ready.into_iter().flat_map(|(_, ws)| ws) {
            let _ = w.send(Ok(()));
        }
    }

    fn handle_ready(&mut self) -> Result<(), MemberError> {
        let rd = self.node.ready();
        for m in &rd.messages {
            self.send(m.clone());
        }
        if let Some(snap) = &rd.snapshot {
            self.persist_received_snapshot(snap)?;
        }
        self.wal.save(rd.hard_state.as_ref(), &rd.entries)?;
        if let Some(snap) = &rd.snapshot {
            self.install_snapshot(snap.clone())?;
        }
        self.node.store_mut().append(&rd.entries);
        if let Some(hs) = rd.hard_state {
            self.node.store_mut().set_hard_state(hs);
        }
        for m in &rd.persisted_messages {
            self.send(m.clone());
        }
        for e in &rd.committed_entries {
            self.apply(e)?;
        }
        if !rd.committed_entries.is_empty() {
            self.sm.end_batch();
            self.maybe_snapshot()?;
        }
        for rs in &rd.read_states {
            let ctx = own_read_ctx(self.node.raft.id, &rs.request_ctx);
            if let Some(read) = ctx.and_then(|c| self.requested_reads.remove(&c)) {
                self.confirmed_reads.push((rs.index, read.waiters));
            }
        }
        self.release_reads();
        let hs = self.node.store().hard_state();
        let leader = self.node.raft.lead;
        let status = MemberStatus {
            leader,
            is_leader: self.node.raft.state == StateRole::Leader,
            term: hs.term,
            commit: hs.commit,
            applied: self.applied,
        };
        let metrics = &self.metrics;
        self.status.send_if_modified(|s| {
            let changed = *s != status;
            if changed {
                metrics.observe_status(s, &status);
            }
            *s = status;
            changed
        });
        self.node.advance(rd);
        Ok(())
    }

    fn apply(&mut self, e: &Entry) -> Result<(), MemberError> {
        assert!(
            e.index == self.applied + 1,
            "applied({}) then entry {}: entries must apply in order",
            self.applied,
            e.index
        );
        match e.r#type() {
            EntryType::EntryNormal if e.data.len() >= 8 => {
                let id = u64::from_le_bytes(e.data[..8].try_into().expect("8 bytes"));
                let result = self.sm.apply(e.index, &e.data[8..]);
                if let Some(waiter) = self.waiters.remove(&id) {
                    let _ = waiter.send(Ok(result));
                }
            }
            // A new leader's empty entry.
            EntryType::EntryNormal => {}
            EntryType::EntryConfChange => self.apply_conf_change(e)?,
            EntryType::EntryConfChangeV2 => {
                if let Some(cc) = raft::conf_change_of(e) {
                    self.node.apply_conf_change(&cc)?;
                }
            }
        }
        self.applied = e.index;
        Ok(())
    }

    /// Sends `m` to its peer; a MsgSnap goes with the backend over its own stream.
    fn send(&mut self, m: Message) {
        if m.r#type() == MessageType::MsgSnap {
            self.send_snapshot(m);
        } else {
            self.transport.send(m);
        }
    }

    /// Sends the backend as it is now, as etcd's merged snapshot does: its metadata names
    /// the applied index, which the backend, committed here, holds exactly.
    fn send_snapshot(&mut self, mut m: Message) {
        self.sm.sync();
        let Some(source) = self.sm.snapshot_source() else {
            self.node.report_snapshot(m.to, SnapshotStatus::Failure);
            return;
        };
        let term = self
            .node
            .store()
            .term(self.applied)
            .unwrap_or_else(|e| panic!("term of applied index {}: {e}", self.applied));
        m.snapshot = Some(Snapshot {
            data: Vec::new(),
            metadata: Some(SnapshotMetadata {
                conf_state: Some(self.node.raft.prs.conf_state()),
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
    }

    /// Takes a snapshot once `--snapshot-count` entries were applied since the last one.
    fn maybe_snapshot(&mut self) -> Result<(), MemberError> {
        if self.applied - self.snapshot_index <= self.snapshot_opts.count {
            return Ok(());
        }
        // The backend must hold every entry the snapshot claims before it is recorded.
        self.sm.sync();
        let index = self.applied;
        let cs = self.node.raft.prs.conf_state();
        let meta = self
            .node
            .store_mut()
            .create_snapshot(index, cs, Vec::new())
            .unwrap_or_else(|e| panic!("snapshot at applied index {index}: {e}"))
            .metadata
            .clone()
            .expect("a created snapshot has metadata");
        self.record_snapshot(&meta, snapshots::DB)?;
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
        self.snapshotter.gc(KEEP_SNAPSHOTS)?;
        Ok(())
    }

    /// Records a snapshot received from the leader, whose database the transport wrote.
    fn persist_received_snapshot(&mut self, snap: &Snapshot) -> Result<(), MemberError> {
        let meta = snap.metadata.clone().unwrap_or_default();
        let name = snapshots::received_db_name(meta.index);
        assert!(
            self.disk.exists(&self.snap_dir.join(&name)),
            "member {:x}: snapshot at index {} came without its database {name}",
            self.node.raft.id,
            meta.index
        );
        self.record_snapshot(&meta, &name)
    }

    /// Replaces the log and the state with a received snapshot.
    fn install_snapshot(&mut self, snap: Snapshot) -> Result<(), MemberError> {
        let index = snap.metadata.as_ref().map_or(0, |m| m.index);
        self.node
            .store_mut()
            .apply_snapshot(snap)
            .unwrap_or_else(|e| panic!("installing snapshot at {index}: {e}"));
        let db = self.snap_dir.join(snapshots::received_db_name(index));
        self.sm.restore(self.disk.as_ref(), &db);
        self.follow_membership();
        self.applied = index;
        self.release(index)?;
        if let Err(e) = snapshots::remove_stale_received(self.disk.as_ref(), &self.snap_dir, index)
        {
            tracing::warn!(error = %e, "removing stale received snapshots failed");
        }
        runtime::reach(runtime::Milestone::SnapshotInstalled);
        tracing::info!(index, "installed snapshot from the leader");
        Ok(())
    }

    /// Links the transport to the members a restored snapshot names, and only to them;
    /// links already up keep their address (it may be a dial override).
    fn follow_membership(&mut self) {
        let me = self.node.raft.id;
        let urls = self.sm.peer_urls();
        for id in self.transport.peers() {
            if !urls.iter().any(|(m, _)| *m == id) {
                self.transport.remove_member(id);
            }
        }
        for (id, url) in urls.iter().filter(|(id, _)| *id != me) {
            if self.transport.peer_url(*id).is_none() {
                self.transport.add_peer(*id, url);
            }
        }
    }

    /// Applies a membership change: to the state machine, to Raft (as a no-op if the
    /// state machine refused it), to the transport; answers its proposer.
    fn apply_conf_change(&mut self, e: &Entry) -> Result<(), MemberError> {
        use prost::Message as _;
        let Ok(mut cc) = ConfChange::decode(e.data.as_slice()) else {
            return Ok(());
        };
        let outcome = self.sm.apply_conf_change(e.index, &cc);
        if outcome.is_err() {
            cc.node_id = 0;
        }
        let cs = self.node.apply_conf_change_v1(&cc)?;
        self.sm.save_conf_state(&cs);
        let me = self.node.raft.id;
        match cc.r#type() {
            _ if cc.node_id == 0 => {}
            ConfChangeType::ConfChangeRemoveNode if cc.node_id == me => {
                tracing::warn!("this member was removed from the cluster; stopping");
                self.stop_in = Some(REMOVED_STOP_TICKS);
            }
            ConfChangeType::ConfChangeRemoveNode => self.transport.remove_member(cc.node_id),
            _ if cc.node_id == me => {}
            _ => {
                let urls = MemberAttrs::decode(cc.context.as_slice()).map(|m| m.peer_ur_ls);
                if let Some(url) = urls.ok().and_then(|u| u.into_iter().next()) {
                    self.transport.add_peer(cc.node_id, &url);
                }
            }
        }
        if let Some(waiter) = self.waiters.remove(&cc.id) {
            let _ = waiter.send(Ok(outcome.err().unwrap_or_default().into_bytes()));
        }
        Ok(())
    }
}
