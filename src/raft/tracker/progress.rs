//! The leader's view of one follower's log.

use super::inflights::Inflights;

/// How the leader replicates to a follower (etcd's `StateProbe`/`Replicate`/`Snapshot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressState {
    /// Where the logs diverge is unknown: send one append per heartbeat round.
    #[default]
    Probe,
    /// The follower is known to match: stream appends optimistically (pipelining).
    Replicate,
    /// The follower needs a snapshot; appends wait until it is installed.
    Snapshot,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// Highest index known to be replicated on the follower.
    pub matched: u64,
    /// Index of the next entry to send.
    pub next_idx: u64,
    pub state: ProgressState,
    /// In `Snapshot`, the index of the snapshot being sent.
    pub pending_snapshot: u64,
    /// The leader's tick at which this member was last heard from (or started being
    /// tracked); CheckQuorum and snapshot sending look at it.
    pub last_active: u64,
    /// In `Probe`, an append is outstanding and no more are sent until it is answered.
    pub msg_app_flow_paused: bool,
    pub ins: Inflights,
    pub is_learner: bool,
}

impl Progress {
    pub fn new(next_idx: u64, ins: Inflights) -> Self {
        Self {
            matched: 0,
            next_idx,
            state: ProgressState::Probe,
            pending_snapshot: 0,
            last_active: 0,
            msg_app_flow_paused: false,
            ins,
            is_learner: false,
        }
    }

    fn reset_state(&mut self, state: ProgressState) {
        self.msg_app_flow_paused = false;
        self.pending_snapshot = 0;
        self.state = state;
        self.ins.reset();
    }

    pub fn become_probe(&mut self) {
        // After a snapshot the follower holds at least the snapshot index.
        let floor = if self.state == ProgressState::Snapshot {
            self.pending_snapshot + 1
        } else {
            0
        };
        self.reset_state(ProgressState::Probe);
        self.next_idx = (self.matched + 1).max(floor);
    }

    pub fn become_replicate(&mut self) {
        self.reset_state(ProgressState::Replicate);
        self.next_idx = self.matched + 1;
    }

    pub fn become_snapshot(&mut self, snapshot_idx: u64) {
        self.reset_state(ProgressState::Snapshot);
        self.pending_snapshot = snapshot_idx;
    }

    /// Records an acknowledgement of `n`; false if it is stale.
    pub fn maybe_update(&mut self, n: u64) -> bool {
        let updated = self.matched < n;
        if updated {
            self.matched = n;
            self.msg_app_flow_paused = false;
        }
        self.next_idx = self.next_idx.max(n + 1);
        updated
    }

    /// Accounts for an append ending at `last` with `bytes` of payload just sent.
    pub fn sent_entries(&mut self, last: u64, bytes: u64) {
        match self.state {
            ProgressState::Replicate => {
                self.next_idx = last + 1;
                self.ins.add(last, bytes);
            }
            ProgressState::Probe => self.msg_app_flow_paused = true,
            ProgressState::Snapshot => {
                panic!("sending append in unhandled state {:?}", self.state)
            }
        }
    }

    /// Handles a rejection of the append at `rejected`; `match_hint` is the follower's
    /// hint of where the logs may agree. Returns false for stale rejections.
    pub fn maybe_decr_to(&mut self, rejected: u64, match_hint: u64) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.matched {
                return false;
            }
            self.next_idx = self.matched + 1;
            return true;
        }
        if self.next_idx == 0 || self.next_idx - 1 != rejected {
            return false;
        }
        self.next_idx = rejected.min(match_hint + 1).max(self.matched + 1);
        self.msg_app_flow_paused = false;
        true
    }

    /// Whether the leader must not send appends now.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.msg_app_flow_paused,
            ProgressState::Replicate => self.ins.full(),
            ProgressState::Snapshot => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pr(matched: u64, next: u64, state: ProgressState) -> Progress {
        let mut p = Progress::new(next, Inflights::new(4, 0));
        p.matched = matched;
        p.state = state;
        p
    }

    #[test]
    fn decr_in_replicate_goes_back_to_match() {
        let mut p = pr(5, 10, ProgressState::Replicate);
        assert!(!p.maybe_decr_to(4, 4), "stale: at or below match");
        assert!(p.maybe_decr_to(9, 9));
        assert_eq!(p.next_idx, 6);
    }

    #[test]
    fn decr_in_probe_uses_hint_and_ignores_stale() {
        let mut p = pr(0, 10, ProgressState::Probe);
        assert!(
            !p.maybe_decr_to(5, 5),
            "rejection of an append we did not send last"
        );
        assert!(p.maybe_decr_to(9, 3));
        assert_eq!(p.next_idx, 4);
        p.msg_app_flow_paused = true;
        assert!(p.maybe_decr_to(3, 0));
        assert_eq!(p.next_idx, 1);
        assert!(!p.msg_app_flow_paused);
    }

    #[test]
    fn probe_pauses_after_one_append_replicate_after_window() {
        let mut p = pr(0, 1, ProgressState::Probe);
        p.sent_entries(3, 1);
        assert!(p.is_paused());
        assert!(p.maybe_update(3));
        assert!(!p.is_paused());
        p.become_replicate();
        for i in 4..8 {
            assert!(!p.is_paused());
            p.sent_entries(i, 1);
        }
        assert!(p.is_paused(), "window of 4 full");
        assert_eq!(p.next_idx, 8);
    }

    #[test]
    fn probe_after_snapshot_starts_past_it() {
        let mut p = pr(1, 2, ProgressState::Probe);
        p.become_snapshot(10);
        assert!(p.is_paused());
        p.become_probe();
        assert_eq!(p.next_idx, 11);
    }
}
