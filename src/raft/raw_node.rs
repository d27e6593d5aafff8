//! The application's handle on a Raft member: inputs, and the `Ready`/`advance` cycle.

use std::collections::BTreeMap;

use super::confchange::conf_change_to_v2;
use super::raft::{
    is_local_msg, is_response_msg, local_msg, payload_size, Raft, SoftState, StateRole,
};
use super::read_only::ReadState;
use super::storage::Storage;
use super::validate;
use super::{Config, Error};
use crate::proto::raftpb::{
    ConfChange, ConfChangeV2, ConfState, Entry, EntryType, HardState, Message, MessageType,
    Snapshot,
};
use prost::Message as _;

/// Outcome of sending a snapshot, reported by the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotStatus {
    Finish,
    Failure,
}

/// What `advance` needs to know about a `Ready`, kept even if its fields are moved out.
#[derive(Debug, Default)]
struct ReadyToken {
    last_entry: Option<(u64, u64)>,
    snapshot_index: Option<u64>,
    applied_to: Option<u64>,
    committed_payload: u64,
}

/// Work for the application; handle it in the order of the steps in the `raft` module
/// doc, then hand it back to [`RawNode::advance`].
#[derive(Debug, Default)]
#[must_use = "a Ready must be handled and passed to advance"]
pub struct Ready {
    /// Changed leader or role, if any.
    pub soft_state: Option<SoftState>,
    /// Changed term, vote or commit, to persist.
    pub hard_state: Option<HardState>,
    /// Linearizable reads that may be served once `index` is applied.
    pub read_states: Vec<ReadState>,
    /// Entries to append to the durable log (replacing any conflicting suffix).
    pub entries: Vec<Entry>,
    /// A snapshot to persist and install.
    pub snapshot: Option<Snapshot>,
    /// Committed entries to apply, in order.
    pub committed_entries: Vec<Entry>,
    /// Messages that may be sent at once, even before persisting (thesis 10.2.1).
    pub messages: Vec<Message>,
    /// Messages to send only after `hard_state`, `entries` and `snapshot` are durable.
    pub persisted_messages: Vec<Message>,
    /// Whether the write must be synced (the term, vote or log changed).
    pub must_sync: bool,
    token: ReadyToken,
}

/// A Raft member driven by the application.
#[derive(Debug)]
pub struct RawNode<S> {
    pub raft: Raft<S>,
    prev_soft_state: SoftState,
    prev_hard_state: HardState,
    ready_outstanding: bool,
}

impl<S: Storage> RawNode<S> {
    /// This member's ID.
    pub fn id(&self) -> u64 {
        self.raft.id
    }

    /// The leader this member knows of (0 if none) and its own role, as etcd-io/raft's
    /// `BasicStatus` reports them.
    pub fn soft_state(&self) -> SoftState {
        self.raft.soft_state()
    }

    /// The voters and learners as of the last applied configuration change.
    pub fn conf_state(&self) -> ConfState {
        self.raft.prs.conf_state()
    }

    /// The leader's match index per member; `None` on a member that is not the leader.
    pub fn progress(&self) -> Option<BTreeMap<u64, u64>> {
        (self.raft.state == StateRole::Leader).then(|| {
            let prs = &self.raft.prs.progress;
            prs.iter().map(|(&id, pr)| (id, pr.matched)).collect()
        })
    }

    /// Loads the member's durable state from `store`.
    pub fn new(cfg: Config, store: S) -> Result<Self, Error> {
        let raft = Raft::new(cfg, store)?;
        Ok(Self {
            prev_soft_state: raft.soft_state(),
            prev_hard_state: raft.hard_state(),
            raft,
            ready_outstanding: false,
        })
    }

    pub fn store(&self) -> &S {
        &self.raft.raft_log.store
    }

    /// The application writes the durable state through this.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.raft.raft_log.store
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Starts an election now.
    pub fn campaign(&mut self) -> Result<(), Error> {
        self.raft.step(local_msg(MessageType::MsgHup))
    }

    /// Proposes `data` for the log.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(), Error> {
        self.propose_typed(EntryType::EntryNormal, data)
    }

    /// Proposes a configuration change. An empty V2 change leaves a joint configuration.
    pub fn propose_conf_change(&mut self, cc: &ConfChangeV2) -> Result<(), Error> {
        self.propose_typed(EntryType::EntryConfChangeV2, cc.encode_to_vec())
    }

    /// Proposes a legacy single-member change.
    pub fn propose_conf_change_v1(&mut self, cc: &ConfChange) -> Result<(), Error> {
        self.propose_typed(EntryType::EntryConfChange, cc.encode_to_vec())
    }

    fn propose_typed(&mut self, t: EntryType, data: Vec<u8>) -> Result<(), Error> {
        let mut e = Entry {
            data,
            ..Entry::default()
        };
        e.set_type(t);
        let mut m = local_msg(MessageType::MsgProp);
        m.from = self.raft.id;
        m.entries = vec![e];
        self.raft.step(m)
    }

    /// Applies a committed configuration change (call this while applying its entry).
    pub fn apply_conf_change(&mut self, cc: &ConfChangeV2) -> Result<ConfState, Error> {
        Ok(self.raft.apply_conf_change(cc)?)
    }

    /// Applies a committed legacy configuration change.
    pub fn apply_conf_change_v1(&mut self, cc: &ConfChange) -> Result<ConfState, Error> {
        self.apply_conf_change(&conf_change_to_v2(cc))
    }

    /// Delivers a message from a peer. One that no honest member sends is refused with
    /// [`Error::Rejected`] before it changes anything (or, where the check needs our
    /// state, before it changes more than the term).
    pub fn step(&mut self, m: Message) -> Result<(), Error> {
        let t = m.r#type();
        if is_local_msg(t) {
            return Err(Error::StepLocalMsg);
        }
        validate::check(&m, self.raft.id)?;
        if is_response_msg(t) && !self.raft.prs.progress.contains_key(&m.from) {
            return Err(Error::StepPeerNotFound);
        }
        self.raft.step(m)
    }

    /// Requests a linearizable read; a `ReadState` with `ctx` appears in a later Ready.
    pub fn read_index(&mut self, ctx: Vec<u8>) -> Result<(), Error> {
        let mut m = local_msg(MessageType::MsgReadIndex);
        m.entries = vec![Entry {
            data: ctx,
            ..Entry::default()
        }];
        self.raft.step(m)
    }

    /// Asks the leader to hand leadership to `transferee`.
    pub fn transfer_leader(&mut self, transferee: u64) -> Result<(), Error> {
        let mut m = local_msg(MessageType::MsgTransferLeader);
        m.from = transferee;
        self.raft.step(m)
    }

    /// The transport could not reach `id`.
    pub fn report_unreachable(&mut self, id: u64) {
        let mut m = local_msg(MessageType::MsgUnreachable);
        m.from = id;
        let _ = self.raft.step(m);
    }

    /// The transport finished (or failed) sending a snapshot to `id`.
    pub fn report_snapshot(&mut self, id: u64, status: SnapshotStatus) {
        let mut m = local_msg(MessageType::MsgSnapStatus);
        m.from = id;
        m.reject = status == SnapshotStatus::Failure;
        let _ = self.raft.step(m);
    }

    pub fn has_ready(&self) -> bool {
        let r = &self.raft;
        r.soft_state() != self.prev_soft_state
            || r.hard_state() != self.prev_hard_state
            || r.raft_log.has_pending_snapshot()
            || !r.raft_log.unstable_entries().is_empty()
            || !r.msgs.is_empty()
            || !r.msgs_after_persist.is_empty()
            || !r.read_states.is_empty()
            || r.raft_log.has_next_committed_entries()
    }

    /// Collects the pending work. At most one Ready is outstanding at a time.
    pub fn ready(&mut self) -> Ready {
        assert!(
            !self.ready_outstanding,
            "ready() called again before advance()"
        );
        self.ready_outstanding = true;
        let r = &mut self.raft;
        let entries = r.raft_log.unstable_entries().to_vec();
        let snapshot = r.raft_log.unstable.snapshot.clone();
        let committed_entries = r.raft_log.next_committed_entries();
        let soft = r.soft_state();
        let hs = r.hard_state();
        let must_sync = !entries.is_empty()
            || hs.term != self.prev_hard_state.term
            || hs.vote != self.prev_hard_state.vote;
        let token = ReadyToken {
            last_entry: entries.last().map(|e| (e.index, e.term)),
            snapshot_index: r.raft_log.pending_snapshot_id().map(|(i, _)| i),
            applied_to: committed_entries.last().map(|e| e.index),
            committed_payload: payload_size(&committed_entries),
        };
        let rd = Ready {
            soft_state: (soft != self.prev_soft_state).then_some(soft),
            hard_state: (hs != self.prev_hard_state).then_some(hs),
            read_states: std::mem::take(&mut r.read_states),
            entries,
            snapshot,
            committed_entries,
            messages: std::mem::take(&mut r.msgs),
            persisted_messages: std::mem::take(&mut r.msgs_after_persist),
            must_sync,
            token,
        };
        self.prev_soft_state = soft;
        self.prev_hard_state = hs;
        rd
    }

    /// Acknowledges that `rd` was handled: its state is durable and its committed
    /// entries are applied.
    pub fn advance(&mut self, rd: Ready) {
        assert!(
            self.ready_outstanding,
            "advance() without an outstanding Ready"
        );
        self.ready_outstanding = false;
        let t = rd.token;
        let r = &mut self.raft;
        if let Some(idx) = t.snapshot_index {
            r.raft_log.stable_snap_to(idx);
            r.raft_log.applied_to(idx.max(r.raft_log.applied));
        }
        if let Some((idx, term)) = t.last_entry {
            r.raft_log.stable_to(idx, term);
            r.on_persisted(idx, term);
        }
        if let Some(idx) = t.applied_to {
            r.raft_log.applied_to(idx);
            r.uncommitted_size = r.uncommitted_size.saturating_sub(t.committed_payload);
        }
        self.maybe_auto_leave();
    }

    /// With `auto_leave`, the leader proposes leaving the joint configuration as soon
    /// as entering it is applied.
    fn maybe_auto_leave(&mut self) {
        let r = &self.raft;
        if r.prs.config.auto_leave
            && r.state == super::StateRole::Leader
            && r.raft_log.applied >= r.pending_conf_index
        {
            // A refusal (e.g. a transfer in progress) is retried at the next advance.
            let _ = self.propose_conf_change(&ConfChangeV2::default());
        }
    }
}
