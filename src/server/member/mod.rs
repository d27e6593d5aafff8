//! The member loop: drives a Raft node with ticks, peer messages and proposals, and
//! handles each Ready in the order the `raft` module documents: send, persist to the WAL,
//! send what waited for persistence, apply, advance.
//!
//! Proposals that arrive together are handed to Raft together, so one Ready carries them
//! all and one WAL fsync makes them durable. A proposal waits for its entry to be applied
//! here; each carries a request ID, unique per member, to find its waiter, and gets the
//! state machine's typed response: only the log entry itself is bytes.
//!
//! The loop's jobs, one file each: the callers' side ([`handle`]), start-up and recovery
//! ([`recover`]), linearizable reads ([`reads`]), the snapshot lifecycle ([`snapshots`]),
//! configuration changes ([`conf`]). This file holds the loop and the apply step.

mod conf;
mod force;
mod handle;
mod reads;
mod recover;
mod snapshots;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

pub use handle::{MemberHandle, MemberStatus, ProposeError};
pub use recover::{start, MemberTask};

use handle::{Admin, Proposal, ReadWaiter, Waiter};
use reads::Reads;

use super::metrics::ServerMetrics;
use super::snapshot::SnapshotOptions;
use super::transport::{PeerEvent, Transport};
use crate::backend::SnapshotSource;
use crate::proto::raftpb::{ConfChange, ConfState, Entry, EntryType, Message, MessageType};
use crate::raft::{self, MemStorage, RawNode, StateRole};
use crate::runtime::{self, Clock, CrashPoint, Disk};
use crate::snap::Snapshotter;
use crate::wal::{Wal, WalOptions};

/// Proposals waiting to be applied; past this, new ones are refused.
pub const MAX_PENDING_PROPOSALS: usize = 16 * 1024;

/// A request as the log carries it: the proposer encodes it into an entry, and every
/// member decodes it again when the entry is committed.
pub trait LogRequest: Sized + Send + 'static {
    fn encode(&self) -> Vec<u8>;
    /// `None` for bytes that are not a request (the member skips such an entry).
    fn decode(payload: &[u8]) -> Option<Self>;
}

/// Opaque payloads, for state machines that keep bytes (tests, the simulator's recorder).
impl LogRequest for Vec<u8> {
    fn encode(&self) -> Vec<u8> {
        self.clone()
    }

    fn decode(payload: &[u8]) -> Option<Self> {
        Some(payload.to_vec())
    }
}

/// What a committed entry does; the member applies entries to it in log order.
pub trait StateMachine: Send + 'static {
    type Request: LogRequest;
    /// What the proposer gets back once its entry is applied here.
    type Response: Send + 'static;
    /// Why the state machine refused a configuration change.
    type Refusal: Send + 'static;

    /// Applies the request of the entry at `index`; the result goes to the proposer.
    fn apply(&mut self, index: u64, request: Self::Request) -> Result<Self::Response, Fatal>;

    /// Called after the committed entries of one Ready are applied: a place to commit
    /// them to disk together.
    fn end_batch(&mut self) -> Result<(), Fatal> {
        Ok(())
    }

    /// Called on every Raft tick: a place to make applied entries durable while no new
    /// ones arrive.
    fn on_tick(&mut self) -> Result<(), Fatal> {
        Ok(())
    }

    /// Whether applied entries left work that runs in bounded steps between Readies (a
    /// compaction's removals from the backend), so that Raft's messages and ticks are not
    /// held up while it lasts.
    fn has_background_work(&self) -> bool {
        false
    }

    /// One step of that work.
    fn background_step(&mut self) -> Result<(), Fatal> {
        Ok(())
    }

    /// The index of the last entry whose effects are durable in the state machine; after
    /// a restart Raft hands over only the entries after it.
    fn applied_index(&self) -> u64 {
        0
    }

    /// Makes every applied entry durable now: a snapshot at the applied index is about to
    /// be recorded or sent.
    fn sync(&mut self) -> Result<(), Fatal> {
        Ok(())
    }

    /// The state as of the last [`StateMachine::sync`], to send to a follower; `None` if
    /// this state machine cannot be sent.
    fn snapshot_source(&mut self) -> Result<Option<SnapshotSource>, Fatal> {
        Ok(None)
    }

    /// Replaces the whole state with the database received at `db`.
    fn restore(&mut self, _disk: &dyn Disk, db: &Path) -> Result<(), Fatal> {
        Err(Fatal::new(
            format!("restoring the snapshot at {}", db.display()),
            "this state machine cannot restore snapshots",
        ))
    }

    /// Records the configuration change at `index` in the membership. A refusal (the inner
    /// error) goes to the proposer, and Raft applies the change as a no-op.
    fn apply_conf_change(
        &mut self,
        _index: u64,
        _cc: &ConfChange,
    ) -> Result<Result<(), Self::Refusal>, Fatal> {
        Ok(Ok(()))
    }

    /// Every member's first peer URL, by member ID: the transport follows it after a
    /// snapshot replaced the membership.
    fn peer_urls(&self) -> Vec<(u64, String)> {
        Vec::new()
    }

    /// Records Raft's configuration after a change, with the entry that made it.
    fn save_conf_state(&mut self, _cs: &ConfState) -> Result<(), Fatal> {
        Ok(())
    }

    /// Raft's configuration as of [`StateMachine::applied_index`], if it keeps one; the
    /// initial voters otherwise.
    fn conf_state(&self) -> Result<Option<ConfState>, Fatal> {
        Ok(None)
    }
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
    /// `--force-new-cluster`: a member restarting from its WAL removes every other member.
    pub force_new_cluster: bool,
    /// `--unsafe-no-fsync`: the WAL is not fsynced.
    pub unsafe_no_fsync: bool,
}

/// A state machine failure that stops the member: after a failed backend write its
/// memory and its disk may disagree, and applying on would diverge from the other members.
#[derive(Debug, thiserror::Error)]
#[error("the backend failed {what}: {source}")]
pub struct Fatal {
    what: String,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl Fatal {
    /// `what` says what the member was doing ("committing", "applying entry 7").
    pub fn new(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Fatal {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// Errors that stop the member: its durable state can no longer be trusted to advance.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error(transparent)]
    StateMachine(#[from] Fatal),
    #[error(transparent)]
    Wal(#[from] crate::wal::WalError),
    #[error(transparent)]
    Raft(#[from] raft::Error),
    #[error(transparent)]
    Snap(#[from] crate::snap::SnapError),
    #[error("the member has been permanently removed from the cluster")]
    Removed,
    #[error("disk: {0}")]
    Disk(std::io::Error),
    #[error("cannot force a new cluster: this member is not in its own configuration")]
    NotAMember,
    #[error(
        "the backend has applied entry {applied}, but the WAL in {} ends at entry {last}: \
         the WAL directory does not belong to this backend, or lost synced data",
         wal.display()
    )]
    BackendAhead {
        applied: u64,
        wal: std::path::PathBuf,
        last: u64,
    },
    #[error(
        "the WAL in {} commits entry {commit} but ends at entry {last}: its hard state does \
         not belong to its entries",
        wal.display()
    )]
    CommitBeyondLog {
        wal: std::path::PathBuf,
        commit: u64,
        last: u64,
    },
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

struct Member<S: StateMachine> {
    node: RawNode<MemStorage>,
    wal: Wal,
    transport: Transport,
    sm: S,
    ids: RequestIds,
    /// Proposers of normal entries, by request ID.
    waiters: BTreeMap<u64, Waiter<S::Response>>,
    /// Proposers of configuration changes, by change ID.
    conf_waiters: BTreeMap<u64, Waiter<Result<(), S::Refusal>>>,
    status: watch::Sender<MemberStatus>,
    metrics: Arc<ServerMetrics>,
    /// Index of the last applied entry. Invariant: `snapshot_index <= applied <= commit`.
    applied: u64,
    reads: Reads,
    disk: Arc<dyn Disk>,
    snapshotter: Snapshotter,
    snap_dir: PathBuf,
    snapshot_opts: SnapshotOptions,
    /// Index of the newest snapshot. Invariant: `snapshot_index <= applied`.
    snapshot_index: u64,
    /// Ticks left before stopping, once this member applied its own removal.
    stop_in: Option<u32>,
}

impl<S: StateMachine> Member<S> {
    async fn run(
        mut self,
        tick: Duration,
        mut proposals: mpsc::Receiver<Proposal<S>>,
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
                    self.sm.on_tick()?;
                    // Callers that gave up no longer need their waiter.
                    self.waiters.retain(|_, w| !w.is_closed());
                    self.conf_waiters.retain(|_, w| !w.is_closed());
                    self.reads.drop_abandoned();
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
                    self.reads.arrive(r);
                    while let Ok(r) = reads.try_recv() {
                        self.reads.arrive(r);
                    }
                    self.request_read_index();
                }
                Some(a) = admin.recv() => self.admin(a),
                () = std::future::ready(()), if self.sm.has_background_work() => {
                    self.sm.background_step()?;
                    // The branch is always ready while work is left: let the worker's
                    // other tasks run between steps.
                    tokio::task::yield_now().await;
                }
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
        let (from, t) = (m.from, m.r#type());
        // Besides rejections, Raft refuses responses from members it does not know (a
        // removed one, say) and proposals without a leader: nothing to do for those.
        if let Err(raft::Error::Rejected(why)) = self.node.step(m) {
            self.metrics.peer_rejected_messages.inc();
            tracing::warn!(
                from = format_args!("{from:x}"),
                r#type = ?t,
                %why,
                "rejected a malformed Raft message"
            );
        }
    }

    fn admin(&mut self, a: Admin) {
        match a {
            Admin::Progress(done) => {
                let _ = done.send(Ok(self.node.progress()));
            }
            Admin::TransferLeader(to) => {
                let _ = self.node.transfer_leader(to);
            }
        }
    }

    fn propose(&mut self, p: Proposal<S>) {
        if self.waiters.len() + self.conf_waiters.len() >= MAX_PENDING_PROPOSALS {
            match p {
                Proposal::Entry(_, done) => {
                    let _ = done.send(Err(ProposeError::TooManyRequests));
                }
                Proposal::ConfChange(_, done) => {
                    let _ = done.send(Err(ProposeError::TooManyRequests));
                }
            }
            return;
        }
        let id = self.ids.next();
        match p {
            Proposal::Entry(request, done) => {
                let payload = request.encode();
                let mut data = Vec::with_capacity(8 + payload.len());
                data.extend_from_slice(&id.to_le_bytes());
                data.extend_from_slice(&payload);
                match self.node.propose(data) {
                    Ok(()) => {
                        self.waiters.insert(id, done);
                    }
                    Err(_) => {
                        let _ = done.send(Err(ProposeError::NoLeader));
                    }
                }
            }
            Proposal::ConfChange(cc, done) => {
                match self.node.propose_conf_change_v1(&ConfChange { id, ..cc }) {
                    Ok(()) => {
                        self.conf_waiters.insert(id, done);
                    }
                    Err(_) => {
                        let _ = done.send(Err(ProposeError::NoLeader));
                    }
                }
            }
        }
    }

    fn handle_ready(&mut self) -> Result<(), MemberError> {
        let rd = self.node.ready();
        if !rd.messages.is_empty() {
            self.crash_point(CrashPoint::BeforeLeaderSend)?;
        }
        for m in &rd.messages {
            self.send(m.clone())?;
        }
        if let Some(snap) = &rd.snapshot {
            self.persist_received_snapshot(snap)?;
            self.crash_point(CrashPoint::RaftAfterSaveSnap)?;
        }
        self.crash_point(CrashPoint::RaftBeforeSave)?;
        self.wal.save(rd.hard_state.as_ref(), &rd.entries)?;
        self.crash_point(CrashPoint::RaftAfterSave)?;
        if let Some(snap) = &rd.snapshot {
            self.crash_point(CrashPoint::RaftBeforeApplySnap)?;
            self.install_snapshot(snap.clone())?;
            self.crash_point(CrashPoint::RaftAfterApplySnap)?;
        }
        self.node.store_mut().append(&rd.entries);
        if let Some(hs) = rd.hard_state {
            self.node.store_mut().set_hard_state(hs);
        }
        if !rd.persisted_messages.is_empty() {
            self.crash_point(CrashPoint::BeforeFollowerSend)?;
        }
        for m in &rd.persisted_messages {
            self.send(m.clone())?;
        }
        for e in &rd.committed_entries {
            self.apply(e)?;
        }
        if !rd.committed_entries.is_empty() {
            self.sm.end_batch()?;
            self.maybe_snapshot()?;
        }
        self.confirm_reads(&rd.read_states);
        self.release_reads();
        self.publish_status();
        self.node.advance(rd);
        Ok(())
    }

    /// Marks that the write path reached `point`; a simulated power cut there stops the
    /// member.
    fn crash_point(&self, point: CrashPoint) -> Result<(), MemberError> {
        self.disk.crash_point(point).map_err(MemberError::Disk)
    }

    /// Publishes where the member stands, after checking that it is consistent.
    fn publish_status(&mut self) {
        let hs = self.node.store().hard_state();
        let soft = self.node.soft_state();
        let status = MemberStatus {
            leader: soft.leader_id,
            is_leader: soft.raft_state == StateRole::Leader,
            term: hs.term,
            commit: hs.commit,
            applied: self.applied,
        };
        assert!(
            self.snapshot_index <= self.applied && self.applied <= hs.commit,
            "member {:x}: snapshot({}) <= applied({}) <= committed({}) does not hold",
            self.node.id(),
            self.snapshot_index,
            self.applied,
            hs.commit
        );
        let metrics = &self.metrics;
        self.status.send_if_modified(|s| {
            let changed = *s != status;
            if changed {
                metrics.observe_status(s, &status);
            }
            *s = status;
            changed
        });
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
                let (id, payload) = e.data.split_at(8);
                let id = u64::from_le_bytes(id.try_into().expect("8 bytes"));
                match S::Request::decode(payload) {
                    Some(request) => {
                        let response = self.sm.apply(e.index, request)?;
                        if let Some(waiter) = self.waiters.remove(&id) {
                            let _ = waiter.send(Ok(response));
                        }
                    }
                    None => tracing::warn!(index = e.index, "skipping an undecodable entry"),
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
    fn send(&mut self, m: Message) -> Result<(), MemberError> {
        if m.r#type() == MessageType::MsgSnap {
            return self.send_snapshot(m);
        }
        self.transport.send(m);
        Ok(())
    }
}
