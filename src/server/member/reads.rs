//! Linearizable reads by ReadIndex: reads that arrive together share one confirmation
//! round, and each is answered once the member has applied up to the read index. A read
//! moves through three stages: pending (arrived since the last request), requested (its
//! request is out, by context), confirmed (its read index is known).

use std::collections::BTreeMap;

use super::handle::{ProposeError, ReadWaiter};
use super::{Member, StateMachine};
use crate::raft::ReadState;

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

/// The reads of one member, by stage.
#[derive(Default)]
pub(super) struct Reads {
    /// Arrived since the last ReadIndex request.
    pending: Vec<ReadWaiter>,
    /// Whose ReadIndex request is out, by request context.
    requested: BTreeMap<u64, RequestedRead>,
    /// With a known read index, waiting for it to be applied.
    confirmed: Vec<(u64, Vec<ReadWaiter>)>,
    next_ctx: u64,
}

impl Reads {
    pub(super) fn arrive(&mut self, read: ReadWaiter) {
        self.pending.push(read);
    }

    /// Forgets requests whose every reader gave up.
    pub(super) fn drop_abandoned(&mut self) {
        self.requested
            .retain(|_, r| r.waiters.iter().any(|w| !w.is_closed()));
    }
}

impl<S: StateMachine> Member<S> {
    /// One ReadIndex request for every read that arrived since the last one.
    pub(super) fn request_read_index(&mut self) {
        if self.reads.pending.is_empty() {
            return;
        }
        let waiters = std::mem::take(&mut self.reads.pending);
        self.reads.next_ctx += 1;
        let ctx = self.reads.next_ctx;
        match self.node.read_index(read_ctx(self.node.id(), ctx)) {
            Ok(()) => {
                let read = RequestedRead { waiters, ticks: 0 };
                self.reads.requested.insert(ctx, read);
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
    pub(super) fn retry_read_index(&mut self) {
        let me = self.node.id();
        for (&ctx, read) in self.reads.requested.iter_mut() {
            read.ticks += 1;
            if read.ticks >= READ_INDEX_RETRY_TICKS {
                read.ticks = 0;
                let _ = self.node.read_index(read_ctx(me, ctx));
            }
        }
    }

    /// Records the read indexes a Ready confirmed for this member's requests.
    pub(super) fn confirm_reads(&mut self, states: &[ReadState]) {
        let me = self.node.id();
        for rs in states {
            let ctx = own_read_ctx(me, &rs.request_ctx);
            if let Some(read) = ctx.and_then(|c| self.reads.requested.remove(&c)) {
                self.reads.confirmed.push((rs.index, read.waiters));
            }
        }
    }

    /// Answers the reads whose read index has been applied.
    pub(super) fn release_reads(&mut self) {
        let applied = self.applied;
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads.confirmed)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.reads.confirmed = waiting;
        for w in ready.into_iter().flat_map(|(_, ws)| ws) {
            let _ = w.send(Ok(()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A context names its member: another member's equal counter is not ours.
    #[test]
    fn read_contexts_are_per_member() {
        let ctx = read_ctx(7, 42);
        assert_eq!(own_read_ctx(7, &ctx), Some(42));
        assert_eq!(own_read_ctx(8, &ctx), None);
        assert_eq!(own_read_ctx(7, &ctx[..12]), None);
    }
}
