//! The caller's side of a running member: proposals, reads and admin requests go to the
//! loop over bounded queues (a full queue is back-pressure, answered at once), and each
//! caller waits for its answer at most the request timeout.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::StateMachine;
use crate::proto::raftpb::ConfChange;
use crate::server::metrics::{PendingProposal, ServerMetrics};

/// Why a proposal or read has no result. The messages are etcd's.
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
/// Invariant: `applied <= commit`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemberStatus {
    pub leader: u64,
    pub is_leader: bool,
    pub term: u64,
    pub commit: u64,
    pub applied: u64,
}

/// What the loop owes a proposer: the state machine's response, or why there is none.
pub(super) type Waiter<T> = oneshot::Sender<Result<T, ProposeError>>;
/// A linearizable read waiting for its read index to be applied.
pub(super) type ReadWaiter = Waiter<()>;

pub(super) enum Proposal<S: StateMachine> {
    Entry(S::Request, Waiter<S::Response>),
    /// The inner result is the state machine's refusal, if it refused the change.
    ConfChange(ConfChange, Waiter<Result<(), S::Refusal>>),
}

/// Requests for the loop that are neither proposals nor reads.
pub(super) enum Admin {
    /// The leader's match index per member (None on a follower).
    Progress(Waiter<Option<BTreeMap<u64, u64>>>),
    /// Hands leadership to a member (etcd's MoveLeader); the caller watches the status.
    TransferLeader(u64),
}

/// The caller's side of a running member.
pub struct MemberHandle<S: StateMachine> {
    pub(super) proposals: mpsc::Sender<Proposal<S>>,
    pub(super) reads: mpsc::Sender<ReadWaiter>,
    pub(super) admin: mpsc::Sender<Admin>,
    pub(super) status: watch::Receiver<MemberStatus>,
    pub(super) request_timeout: Duration,
    pub(super) metrics: Arc<ServerMetrics>,
    /// The planted stale-read bug (simulation only): reads skip ReadIndex.
    pub(super) skip_read_index: bool,
}

impl<S: StateMachine> Clone for MemberHandle<S> {
    fn clone(&self) -> Self {
        MemberHandle {
            proposals: self.proposals.clone(),
            reads: self.reads.clone(),
            admin: self.admin.clone(),
            status: self.status.clone(),
            request_timeout: self.request_timeout,
            metrics: self.metrics.clone(),
            skip_read_index: self.skip_read_index,
        }
    }
}

impl<S: StateMachine> std::fmt::Debug for MemberHandle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberHandle")
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl<S: StateMachine> MemberHandle<S> {
    /// Proposes `request` and waits until it is applied here.
    pub async fn propose(&self, request: S::Request) -> Result<S::Response, ProposeError> {
        let (done, rx) = oneshot::channel();
        queue(&self.proposals, Proposal::Entry(request, done))?;
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
    ) -> Result<Result<(), S::Refusal>, ProposeError> {
        let (done, rx) = oneshot::channel();
        queue(&self.proposals, Proposal::ConfChange(cc, done))?;
        self.wait(rx).await
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
