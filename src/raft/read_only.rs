//! ReadIndex bookkeeping (thesis 6.4): reads wait until a heartbeat round confirms the
//! leader is still the leader at the index the read observed.

use crate::proto::raftpb::Message;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// How a leader serves linearizable reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadOnlyOption {
    /// Confirm leadership with a quorum of heartbeat acknowledgements per read.
    #[default]
    Safe,
    /// Trust the leader lease that CheckQuorum maintains (thesis 6.4.1); relies on
    /// bounded clock drift, so it requires `check_quorum`.
    LeaseBased,
}

/// A read that may be served once the state machine has applied `index`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadState {
    pub index: u64,
    pub request_ctx: Vec<u8>,
}

#[derive(Debug)]
pub struct ReadIndexStatus {
    pub req: Message,
    pub index: u64,
    pub acks: BTreeSet<u64>,
}

/// Pending reads by request context, in arrival order.
#[derive(Debug, Default)]
pub struct ReadOnly {
    pub option: ReadOnlyOption,
    pending: BTreeMap<Vec<u8>, ReadIndexStatus>,
    queue: VecDeque<Vec<u8>>,
}

impl ReadOnly {
    pub fn new(option: ReadOnlyOption) -> Self {
        Self {
            option,
            ..Self::default()
        }
    }

    /// Queues a read observed at commit `index`; a duplicate context is ignored.
    pub fn add_request(&mut self, index: u64, req: Message, self_id: u64) {
        let ctx = req.entries[0].data.clone();
        if self.pending.contains_key(&ctx) {
            return;
        }
        let acks = BTreeSet::from([self_id]);
        self.pending
            .insert(ctx.clone(), ReadIndexStatus { req, index, acks });
        self.queue.push_back(ctx);
    }

    /// Records a heartbeat acknowledgement carrying `ctx`; returns who acknowledged.
    pub fn recv_ack(&mut self, id: u64, ctx: &[u8]) -> Option<&BTreeSet<u64>> {
        let rs = self.pending.get_mut(ctx)?;
        rs.acks.insert(id);
        Some(&rs.acks)
    }

    /// Dequeues every read up to and including `ctx`: a quorum acknowledging a later
    /// heartbeat also confirms the earlier ones.
    pub fn advance(&mut self, ctx: &[u8]) -> Vec<ReadIndexStatus> {
        let Some(pos) = self.queue.iter().position(|c| c == ctx) else {
            return Vec::new();
        };
        self.queue
            .drain(..=pos)
            .map(|c| self.pending.remove(&c).expect("queued read is pending"))
            .collect()
    }

    /// The context of the newest read, sent along with heartbeats.
    pub fn last_pending_request_ctx(&self) -> Option<Vec<u8>> {
        self.queue.back().cloned()
    }

    pub fn pending_read_count(&self) -> usize {
        self.queue.len()
    }
}
