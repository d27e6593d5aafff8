//! Followers and candidates: accepting the leader's log, heartbeats and snapshots,
//! forwarding proposals and reads, and counting votes.

use super::confchange;
use super::log_unstable::{snap_index, snap_term};
use super::quorum::VoteResult;
use super::raft::{CampaignType, Raft, StateRole};
use super::read_only::ReadState;
use super::storage::Storage;
use super::tracker::ProgressTracker;
use super::{Error, Rejection};
use crate::proto::raftpb::{Message, MessageType, Snapshot};

fn append_resp(to: u64, index: u64) -> Message {
    let mut r = Message {
        to,
        index,
        ..Message::default()
    };
    r.set_type(MessageType::MsgAppResp);
    r
}

impl<S: Storage> Raft<S> {
    pub(crate) fn step_candidate(&mut self, m: Message) -> Result<(), Error> {
        let my_vote_resp = if self.state == StateRole::PreCandidate {
            MessageType::MsgPreVoteResp
        } else {
            MessageType::MsgVoteResp
        };
        match m.r#type() {
            MessageType::MsgProp => return Err(Error::ProposalDropped),
            // A message of our term from a leader means it won this term.
            MessageType::MsgApp => {
                self.become_follower(m.term, m.from);
                self.handle_append_entries(&m);
            }
            MessageType::MsgHeartbeat => {
                self.become_follower(m.term, m.from);
                self.handle_heartbeat(&m)?;
            }
            MessageType::MsgSnap => {
                self.become_follower(m.term, m.from);
                self.handle_snapshot(m)?;
            }
            t if t == my_vote_resp => {
                self.learn_commit(&m);
                self.poll_and_act(m.from, !m.reject);
            }
            _ => {}
        }
        Ok(())
    }

    /// A voter's commit index is committed; if our log holds the same entry there,
    /// log matching makes our whole prefix committed too. This frees a candidate whose
    /// voters reject its log only because of uncommitted entries while it waits to
    /// apply a configuration change that would let it win (e.g. a leader that lost its
    /// unsynced tail in a crash, facing a member it demoted to learner).
    fn learn_commit(&mut self, m: &Message) {
        if m.commit > self.raft_log.committed && self.raft_log.match_term(m.commit, m.log_term) {
            self.raft_log.commit_to(m.commit);
        }
    }

    fn poll_and_act(&mut self, from: u64, granted: bool) {
        match self.poll(from, granted) {
            VoteResult::Won if self.state == StateRole::PreCandidate => {
                self.campaign(CampaignType::Election)
            }
            VoteResult::Won => {
                self.become_leader();
                self.bcast_append();
            }
            VoteResult::Lost => self.become_follower(self.term, 0),
            VoteResult::Pending => {}
        }
    }

    pub(crate) fn step_follower(&mut self, mut m: Message) -> Result<(), Error> {
        match m.r#type() {
            MessageType::MsgProp => {
                if self.lead == 0 || self.cfg.disable_proposal_forwarding {
                    return Err(Error::ProposalDropped);
                }
                m.to = self.lead;
                self.send(m);
            }
            MessageType::MsgApp => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_append_entries(&m);
            }
            MessageType::MsgHeartbeat => {
                self.check_heartbeat(&m)?;
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_heartbeat(&m)?;
            }
            MessageType::MsgSnap => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_snapshot(m)?;
            }
            MessageType::MsgTransferLeader | MessageType::MsgReadIndex => {
                if self.lead == 0 {
                    return Err(Error::ProposalDropped);
                }
                m.to = self.lead;
                self.send(m);
            }
            MessageType::MsgTimeoutNow => {
                // The leader asked us to take over: campaign at once, skipping the
                // pre-vote and the lease check (thesis 3.10).
                self.hup(CampaignType::Transfer);
            }
            MessageType::MsgReadIndexResp if m.entries.len() == 1 => {
                let request_ctx = std::mem::take(&mut m.entries[0].data);
                self.read_states.push(ReadState {
                    index: m.index,
                    request_ctx,
                });
            }
            _ => {}
        }
        Ok(())
    }

    pub(crate) fn handle_append_entries(&mut self, m: &Message) {
        if m.index < self.raft_log.committed {
            let r = append_resp(m.from, self.raft_log.committed);
            self.send(r);
            return;
        }
        if let Some(last) = self
            .raft_log
            .maybe_append(m.index, m.log_term, m.commit, &m.entries)
        {
            let r = append_resp(m.from, last);
            self.send(r);
            return;
        }
        // Reject with a hint so the leader can skip a whole term of mismatching entries
        // instead of one index per round trip.
        let hint = m.index.min(self.raft_log.last_index());
        let (hint_index, hint_term) = self.raft_log.find_conflict_by_term(hint, m.log_term);
        let mut r = append_resp(m.from, m.index);
        r.reject = true;
        r.reject_hint = hint_index;
        r.log_term = hint_term;
        self.send(r);
    }

    /// The leader sends a commit index no further than what it knows we hold.
    fn check_heartbeat(&self, m: &Message) -> Result<(), Rejection> {
        let last = self.raft_log.last_index();
        if m.commit > last {
            return Err(Rejection::CommitBeyondLog {
                commit: m.commit,
                last,
            });
        }
        Ok(())
    }

    fn handle_heartbeat(&mut self, m: &Message) -> Result<(), Error> {
        self.check_heartbeat(m)?;
        self.raft_log.commit_to(m.commit);
        let mut r = Message {
            to: m.from,
            context: m.context.clone(),
            ..Message::default()
        };
        r.set_type(MessageType::MsgHeartbeatResp);
        self.send(r);
        Ok(())
    }

    fn handle_snapshot(&mut self, mut m: Message) -> Result<(), Error> {
        let snap = m.snapshot.take().unwrap_or_default();
        let index = if self.restore(snap)? {
            self.raft_log.last_index()
        } else {
            self.raft_log.committed
        };
        let r = append_resp(m.from, index);
        self.send(r);
        Ok(())
    }

    /// Installs `snap` unless it is stale or the log already holds it (then only the
    /// commit index moves). The snapshot's configuration may predate this member's
    /// addition: the leader sends its latest snapshot to any member of its current
    /// configuration, and the entries after the snapshot add this member again. A
    /// configuration that cannot be restored refuses the snapshot.
    pub(crate) fn restore(&mut self, snap: Snapshot) -> Result<bool, Rejection> {
        let (index, term) = (snap_index(&snap), snap_term(&snap));
        if index <= self.raft_log.committed {
            return Ok(false);
        }
        if self.state != StateRole::Follower {
            // Only a follower receives snapshots; step down defensively.
            self.become_follower(self.term + 1, 0);
            return Ok(false);
        }
        let cs = snap
            .metadata
            .as_ref()
            .and_then(|m| m.conf_state.clone())
            .unwrap_or_default();
        if self.raft_log.match_term(index, term) {
            self.raft_log.commit_to(index);
            return Ok(false);
        }
        let mut prs = ProgressTracker::new(self.cfg.max_inflight_msgs, self.cfg.max_inflight_bytes);
        confchange::restore(&mut prs, index, self.ticks, &cs)
            .map_err(|e| Rejection::Snapshot(format!("configuration {cs:?}: {e}")))?;
        self.raft_log.restore(snap);
        self.switch_to_config(prs.config, prs.progress);
        Ok(true)
    }
}
