//! Raft consensus as a pure library, in the style of etcd-io/raft: no I/O, no clock,
//! no async, and no randomness but a seeded RNG. The same code runs on tokio and under
//! the madsim simulator.
//!
//! Inputs go through [`RawNode`]: `tick`, `step` (messages from peers), `propose`,
//! `propose_conf_change`, `read_index`, `transfer_leader`, `campaign`. Outputs come
//! out as a [`Ready`], which the application handles in this order:
//!
//! 1. Send `messages` (these may leave before the local write, so a leader's appends
//!    overlap with its own fsync: thesis 10.2.1).
//! 2. Persist `snapshot`, then `entries`, then `hard_state` (fsync if `must_sync`).
//! 3. Send `persisted_messages`: votes and append acknowledgements, which promise
//!    durable state.
//! 4. Install `snapshot` in the state machine, apply `committed_entries` in order
//!    (calling [`RawNode::apply_conf_change`] for configuration entries), and serve
//!    `read_states` once their index is applied.
//! 5. Call [`RawNode::advance`] with the Ready. Only then may `ready` be called again.
//!
//! A leader counts its own log toward a quorum only after `advance` reports it durable.
//! The durable log is read through [`Storage`]; [`MemStorage`] serves tests. The
//! transport reports failures with [`RawNode::report_unreachable`] and the outcome of
//! each snapshot it streams with [`RawNode::report_snapshot`].
//!
//! Where this differs from etcd-io/raft, and why:
//! - CheckQuorum looks at a sliding window: a leader steps down once a quorum has been
//!   silent for an election timeout, not at the end of the following fixed window.
//! - A rejecting voter's commit index travels in its vote response; a candidate whose
//!   log holds that entry learns it is committed (otherwise a leader that lost its
//!   unsynced tail could wait forever to apply a change it needs in order to win).
//! - A candidate removed or demoted by an applied change steps down, so it cannot win
//!   with the votes of the new configuration.
//! - A follower installs a snapshot whose configuration predates its own addition; the
//!   entries after the snapshot add it again.

mod confchange;
mod config;
mod follower;
mod leader;
mod log;
mod log_unstable;
mod quorum;
#[allow(clippy::module_inception)]
mod raft;
mod raw_node;
mod read_only;
mod storage;
mod tracker;
mod validate;

#[cfg(test)]
mod tests;

pub use confchange::{conf_change_to_v2, enters_joint, leaves_joint, ConfChangeError};
pub use config::Config;
pub use raft::{Raft, SoftState, StateRole, CAMPAIGN_TRANSFER};
pub use raw_node::{RawNode, Ready, SnapshotStatus};
pub use read_only::{ReadOnlyOption, ReadState};
pub use storage::{MemStorage, Storage, StorageError, StorageResult};
pub use tracker::{Progress, ProgressState};
pub use validate::{Rejection, MAX_INDEX_OR_TERM};

use crate::proto::raftpb::{ConfChange, ConfChangeV2, Entry, EntryType};
use prost::Message as _;

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No leader is known, forwarding is disabled, a transfer is in progress, or the
    /// uncommitted-size limit was reached.
    #[error("raft proposal dropped")]
    ProposalDropped,
    /// The leader holds `max_pending_reads` unanswered reads already.
    #[error("raft read index dropped")]
    ReadIndexDropped,
    #[error("raft: cannot step raft local message")]
    StepLocalMsg,
    #[error("raft: cannot step as peer not found")]
    StepPeerNotFound,
    #[error("invalid raft config: {0}")]
    ConfigInvalid(String),
    #[error("raft storage: {0}")]
    Storage(#[from] StorageError),
    #[error(transparent)]
    ConfChange(#[from] ConfChangeError),
    /// A message from a peer that no honest member sends; nothing of it was applied
    /// (beyond a newer term it carried).
    #[error("raft: rejected a message: {0}")]
    Rejected(#[from] Rejection),
}

/// The configuration change carried by `e`, in V2 form, if it is one.
pub fn conf_change_of(e: &Entry) -> Option<ConfChangeV2> {
    match e.r#type() {
        EntryType::EntryNormal => None,
        EntryType::EntryConfChange => ConfChange::decode(e.data.as_slice())
            .ok()
            .map(|cc| conf_change_to_v2(&cc)),
        EntryType::EntryConfChangeV2 => ConfChangeV2::decode(e.data.as_slice()).ok(),
    }
}
