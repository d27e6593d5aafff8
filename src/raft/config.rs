//! Configuration of one Raft member, with its named limits.

use super::read_only::ReadOnlyOption;

/// Settings of a member. Ticks are logical: the application decides how long one is.
#[derive(Debug, Clone)]
pub struct Config {
    /// This member's id; never 0.
    pub id: u64,
    /// A follower campaigns after a randomized timeout in
    /// `[election_tick, 2 * election_tick)` ticks without hearing from a leader.
    pub election_tick: usize,
    /// A leader sends heartbeats every `heartbeat_tick` ticks.
    pub heartbeat_tick: usize,
    /// The index up to which the application has already applied (on restart).
    pub applied: u64,
    /// Bytes of entries per append message (at least one entry is always sent).
    pub max_size_per_msg: u64,
    /// Bytes of committed entries handed to the application per `Ready`.
    pub max_committed_size_per_ready: u64,
    /// Bytes of uncommitted proposals a leader accepts before dropping new ones.
    pub max_uncommitted_entries_size: u64,
    /// Appends in flight per follower in the replicate state.
    pub max_inflight_msgs: usize,
    /// Payload bytes in flight per follower (0 = unlimited).
    pub max_inflight_bytes: u64,
    /// Reads a leader holds while waiting for a commit or a heartbeat round; more are
    /// refused.
    pub max_pending_reads: usize,
    /// A leader steps down when it has not heard from a quorum within an election
    /// timeout, and followers ignore votes while they have a live leader.
    pub check_quorum: bool,
    /// Campaign in a pre-election first so a partitioned member cannot raise the term
    /// of a healthy cluster (thesis 9.6).
    pub pre_vote: bool,
    pub read_only_option: ReadOnlyOption,
    /// Followers drop proposals instead of forwarding them to the leader.
    pub disable_proposal_forwarding: bool,
    /// Seed of the randomized election timeout.
    pub seed: u64,
    /// A planted bug, for the simulator to show it is caught: votes are granted without
    /// checking that the candidate's log is at least as up to date (Raft's election
    /// restriction), so a leader may lack committed entries and overwrite them.
    pub vote_ignores_log: bool,
}

impl Config {
    /// Defaults that suit tests: 10/1 ticks, PreVote and CheckQuorum on.
    pub fn new(id: u64) -> Self {
        Self {
            id,
            election_tick: 10,
            heartbeat_tick: 1,
            applied: 0,
            max_size_per_msg: 1024 * 1024,
            max_committed_size_per_ready: 16 * 1024 * 1024,
            max_uncommitted_entries_size: 64 * 1024 * 1024,
            max_inflight_msgs: 256,
            max_inflight_bytes: 0,
            max_pending_reads: 4096,
            check_quorum: true,
            pre_vote: true,
            read_only_option: ReadOnlyOption::Safe,
            disable_proposal_forwarding: false,
            seed: id,
            vote_ignores_log: false,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("cannot use none as id".into());
        }
        if self.heartbeat_tick == 0 {
            return Err("heartbeat tick must be greater than 0".into());
        }
        if self.election_tick <= self.heartbeat_tick {
            return Err("election tick must be greater than heartbeat tick".into());
        }
        if self.max_inflight_msgs == 0 || self.max_pending_reads == 0 {
            return Err("max inflight messages and pending reads must be greater than 0".into());
        }
        if self.max_uncommitted_entries_size == 0 || self.max_committed_size_per_ready == 0 {
            return Err("size limits must be greater than 0".into());
        }
        if self.read_only_option == ReadOnlyOption::LeaseBased && !self.check_quorum {
            return Err("check_quorum must be enabled when read_only_option is LeaseBased".into());
        }
        Ok(())
    }
}
