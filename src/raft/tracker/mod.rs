//! The configuration and every member's replication progress, as the leader tracks them.

mod inflights;
mod progress;

pub use inflights::Inflights;
pub use progress::{Progress, ProgressState};

use super::quorum::{JointConfig, VoteResult};
use crate::proto::raftpb::ConfState;
use std::collections::{BTreeMap, BTreeSet};

/// A membership configuration (etcd's `tracker.Config`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackerConfig {
    pub voters: JointConfig,
    /// Non-voting members that receive the log. Never overlaps the voters.
    pub learners: BTreeSet<u64>,
    /// Outgoing voters that become learners when the joint configuration is left.
    pub learners_next: BTreeSet<u64>,
    /// Leave the joint configuration automatically once it is applied.
    pub auto_leave: bool,
}

impl TrackerConfig {
    pub fn to_conf_state(&self) -> ConfState {
        ConfState {
            voters: self.voters.incoming.iter().copied().collect(),
            learners: self.learners.iter().copied().collect(),
            voters_outgoing: self.voters.outgoing.iter().copied().collect(),
            learners_next: self.learners_next.iter().copied().collect(),
            auto_leave: self.auto_leave,
        }
    }
}

pub type ProgressMap = BTreeMap<u64, Progress>;

#[derive(Debug, Clone)]
pub struct ProgressTracker {
    pub config: TrackerConfig,
    pub progress: ProgressMap,
    votes: BTreeMap<u64, bool>,
    pub max_inflight_msgs: usize,
    pub max_inflight_bytes: u64,
}

impl ProgressTracker {
    pub fn new(max_inflight_msgs: usize, max_inflight_bytes: u64) -> Self {
        Self {
            config: TrackerConfig::default(),
            progress: ProgressMap::new(),
            votes: BTreeMap::new(),
            max_inflight_msgs,
            max_inflight_bytes,
        }
    }

    pub fn new_inflights(&self) -> Inflights {
        Inflights::new(self.max_inflight_msgs, self.max_inflight_bytes)
    }

    /// The highest index replicated on a quorum of voters.
    pub fn committed(&self) -> u64 {
        self.config
            .voters
            .committed(|id| self.progress.get(&id).map(|p| p.matched))
    }

    /// Whether a quorum of voters was heard from within the last `window` ticks
    /// (CheckQuorum), judged at tick `now`.
    pub fn quorum_active(&self, self_id: u64, now: u64, window: u64) -> bool {
        let votes = self
            .progress
            .iter()
            .filter(|(_, p)| !p.is_learner)
            .map(|(&id, p)| (id, id == self_id || now - p.last_active < window))
            .collect();
        self.config.voters.vote_result(&votes) == VoteResult::Won
    }

    pub fn is_singleton(&self) -> bool {
        self.config.voters.incoming.len() == 1 && !self.config.voters.is_joint()
    }

    pub fn reset_votes(&mut self) {
        self.votes.clear();
    }

    /// Records `id`'s vote; a member's first vote in an election is the one that counts.
    pub fn record_vote(&mut self, id: u64, granted: bool) {
        self.votes.entry(id).or_insert(granted);
    }

    /// The outcome of the election so far.
    pub fn vote_result(&self) -> VoteResult {
        self.config.voters.vote_result(&self.votes)
    }

    pub fn conf_state(&self) -> ConfState {
        self.config.to_conf_state()
    }
}
