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
//! Not yet here: snapshots and log compaction, membership changes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::transport::{PeerEvent, Transport};
use crate::proto::raftpb::{ConfState, Entry, EntryType, Message};
use crate::raft::{self, MemStorage, RawNode, StateRole};
use crate::runtime::{self, Bug, Clock, Disk};
use crate::wal::{Metadata, SnapshotMark, Wal, WalOptions};

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
    pub tick: Duration,
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// How long a proposal waits to be applied.
    pub request_timeout: Duration,
    /// Seeds Raft's randomized election timeouts.
    pub seed: u64,
}

struct Proposal {
    payload: Vec<u8>,
    done: oneshot::Sender<Result<Vec<u8>, ProposeError>>,
}

type ReadWaiter = oneshot::Sender<Result<(), ProposeError>>;

/// The caller's side of a running member.
#[derive(Clone, Debug)]
pub struct MemberHandle {
    proposals: mpsc::Sender<Proposal>,
    reads: mpsc::Sender<ReadWaiter>,
    status: watch::Receiver<MemberStatus>,
    request_timeout: Duration,
    /// The planted stale-read bug (simulation only): reads skip ReadIndex.
    skip_read_index: bool,
}

impl MemberHandle {
    /// Proposes `payload` and waits until it is applied here.
    pub async fn propose(&self, payload: Vec<u8>) -> Result<Vec<u8>, ProposeError> {
        let (done, rx) = oneshot::channel();
        queue(&self.proposals, Proposal { payload, done })?;
        self.wait(rx).await
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
    applied: u64,
    /// Reads that arrived since the last ReadIndex request.
    pending_reads: Vec<ReadWaiter>,
    /// Reads whose ReadIndex request is out, by request context.
    requested_reads: BTreeMap<u64, Vec<ReadWaiter>>,
    /// Reads with a known read index, waiting for it to be applied.
    confirmed_reads: Vec<(u64, Vec<ReadWaiter>)>,
    next_read_ctx: u64,
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
    let mut storage = MemStorage::new_with_conf_state(ConfState {
        voters: cfg.voters.clone(),
        ..ConfState::default()
    });
    let wal = if Wal::exists(disk.as_ref(), &cfg.wal_dir) {
        let (wal, replay) = Wal::open(disk, &cfg.wal_dir, &BOOTSTRAP, cfg.wal.clone())?;
        storage.append(&replay.entries);
        storage.set_hard_state(replay.hard_state);
        wal
    } else {
        let metadata = Metadata {
            member_id: cfg.id,
            cluster_id: cfg.cluster_id,
        };
        let mut wal = Wal::create(disk, &cfg.wal_dir, metadata, cfg.wal.clone())?;
        wal.save_snapshot(&BOOTSTRAP)?;
        wal
    };
    let applied = sm.applied_index().max(BOOTSTRAP.index);
    let mut raft_cfg = raft::Config::new(cfg.id);
    raft_cfg.applied = applied;
    raft_cfg.election_tick = cfg.election_ticks;
    raft_cfg.heartbeat_tick = cfg.heartbeat_ticks;
    raft_cfg.seed = cfg.seed;
    let node = RawNode::new(raft_cfg, storage)?;
    let (status_tx, status_rx) = watch::channel(MemberStatus::default());
    let (proposals_tx, proposals) = mpsc::channel(PROPOSAL_QUEUE_LEN);
    let (reads_tx, reads) = mpsc::channel(PROPOSAL_QUEUE_LEN);
    let member = Member {
        node,
        wal,
        transport,
        sm,
        ids: RequestIds::new(cfg.id),
        waiters: BTreeMap::new(),
        status: status_tx,
        applied,
        pending_reads: Vec::new(),
        requested_reads: BTreeMap::new(),
        confirmed_reads: Vec::new(),
        next_read_ctx: 0,
    };
    let task = tokio::spawn(member.run(cfg.tick, proposals, reads, inbound, events));
    let handle = MemberHandle {
        proposals: proposals_tx,
        reads: reads_tx,
        status: status_rx,
        request_timeout: cfg.request_timeout,
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
        mut inbound: mpsc::Receiver<Message>,
        mut events: mpsc::Receiver<PeerEvent>,
    ) -> Result<(), MemberError> {
        let mut ticker = tokio::time::interval(tick);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    self.node.tick();
                    self.sm.on_tick();
                    // Callers that gave up no longer need their waiter.
                    self.waiters.retain(|_, w| !w.is_closed());
                    self.requested_reads
                        .retain(|_, ws| ws.iter().any(|w| !w.is_closed()));
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
                Some(PeerEvent::Unreachable(id)) = events.recv() => {
                    self.node.report_unreachable(id);
                }
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

    fn propose(&mut self, p: Proposal) {
        if self.waiters.len() >= MAX_PENDING_PROPOSALS {
            let _ = p.done.send(Err(ProposeError::TooManyRequests));
            return;
        }
        let id = self.ids.next();
        let mut data = Vec::with_capacity(8 + p.payload.len());
        data.extend_from_slice(&id.to_le_bytes());
        data.extend_from_slice(&p.payload);
        match self.node.propose(data) {
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
        match self.node.read_index(ctx.to_le_bytes().to_vec()) {
            Ok(()) => {
                self.requested_reads.insert(ctx, waiters);
            }
            Err(_) => {
                for w in waiters {
                    let _ = w.send(Err(ProposeError::NoLeader));
                }
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
            self.transport.send(m.clone());
        }
        assert!(
            rd.snapshot.is_none(),
            "member {:x}: received a snapshot, which this member cannot install yet",
            self.node.raft.id
        );
        self.wal.save(rd.hard_state.as_ref(), &rd.entries)?;
        self.node.store_mut().append(&rd.entries);
        if let Some(hs) = rd.hard_state {
            self.node.store_mut().set_hard_state(hs);
        }
        for m in &rd.persisted_messages {
            self.transport.send(m.clone());
        }
        for e in &rd.committed_entries {
            self.apply(e)?;
        }
        if !rd.committed_entries.is_empty() {
            self.sm.end_batch();
        }
        for rs in &rd.read_states {
            let ctx = rs.request_ctx.as_slice().try_into().map(u64::from_le_bytes);
            if let Some(waiters) = ctx.ok().and_then(|c| self.requested_reads.remove(&c)) {
                self.confirmed_reads.push((rs.index, waiters));
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
        self.status.send_if_modified(|s| {
            let changed = *s != status;
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
            EntryType::EntryConfChange | EntryType::EntryConfChangeV2 => {
                if let Some(cc) = raft::conf_change_of(e) {
                    self.node.apply_conf_change(&cc)?;
                }
            }
        }
        self.applied = e.index;
        Ok(())
    }
}
