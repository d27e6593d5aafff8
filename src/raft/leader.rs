//! The leader: replication with flow control, commitment, reads, leadership transfer
//! and configuration switches.

use super::confchange::{enters_joint, leaves_joint, ChangeResult, Changer, ConfChangeError};
use super::raft::{payload_size, Raft, StateRole};
use super::read_only::{ReadOnlyOption, ReadState};
use super::storage::{Storage, StorageError};
use super::tracker::{ProgressMap, ProgressState, TrackerConfig};
use super::{conf_change_of, Error, Rejection};
use crate::proto::raftpb::{ConfChangeV2, ConfState, Entry, Message, MessageType};

fn msg(t: MessageType, to: u64) -> Message {
    let mut m = Message {
        to,
        ..Message::default()
    };
    m.set_type(t);
    m
}

impl<S: Storage> Raft<S> {
    fn peers(&self) -> Vec<u64> {
        self.prs
            .progress
            .keys()
            .copied()
            .filter(|&id| id != self.id)
            .collect()
    }

    /// Sends an append (or a snapshot) to `to` if flow control allows; with
    /// `send_if_empty` an append without entries still probes the follower's log.
    pub(crate) fn maybe_send_append(&mut self, to: u64, send_if_empty: bool) -> bool {
        let Some(pr) = self.prs.progress.get(&to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        let prev = pr.next_idx - 1;
        let term = self.raft_log.term(prev);
        let ents = self
            .raft_log
            .entries(pr.next_idx, self.cfg.max_size_per_msg);
        let (Ok(log_term), Ok(entries)) = (term, ents) else {
            return self.send_snapshot(to);
        };
        if entries.is_empty() && !send_if_empty {
            return false;
        }
        let last = prev + entries.len() as u64;
        let bytes = payload_size(&entries);
        let pr = self.prs.progress.get_mut(&to).expect("checked above");
        if !entries.is_empty() || pr.state == ProgressState::Probe {
            pr.sent_entries(last, bytes);
        }
        let mut m = msg(MessageType::MsgApp, to);
        m.index = prev;
        m.log_term = log_term;
        m.entries = entries;
        m.commit = self.raft_log.committed;
        self.send(m);
        true
    }

    /// The follower needs entries that were compacted: send the snapshot instead.
    fn send_snapshot(&mut self, to: u64) -> bool {
        let pr = &self.prs.progress[&to];
        if self.ticks - pr.last_active >= self.cfg.election_tick as u64 {
            // Don't ship a snapshot to a member that may be down.
            return false;
        }
        let snapshot = match self.raft_log.snapshot() {
            Ok(s) => s,
            Err(StorageError::SnapshotTemporarilyUnavailable) => return false,
            Err(e) => panic!("failed to get snapshot for {to}: {e}"),
        };
        let idx = snapshot.metadata.as_ref().map_or(0, |m| m.index);
        assert!(idx != 0, "need non-empty snapshot to send to {to}");
        self.prs
            .progress
            .get_mut(&to)
            .expect("checked above")
            .become_snapshot(idx);
        let mut m = msg(MessageType::MsgSnap, to);
        m.snapshot = Some(snapshot);
        self.send(m);
        true
    }

    pub(crate) fn bcast_append(&mut self) {
        for id in self.peers() {
            self.maybe_send_append(id, true);
        }
    }

    fn bcast_heartbeat(&mut self) {
        let ctx = self
            .read_only
            .last_pending_request_ctx()
            .unwrap_or_default();
        self.bcast_heartbeat_with_ctx(&ctx);
    }

    fn bcast_heartbeat_with_ctx(&mut self, ctx: &[u8]) {
        for id in self.peers() {
            // A follower must not learn a commit index beyond what it is known to hold.
            let commit = self.prs.progress[&id].matched.min(self.raft_log.committed);
            let mut m = msg(MessageType::MsgHeartbeat, id);
            m.commit = commit;
            m.context = ctx.to_vec();
            self.send(m);
        }
    }

    pub(crate) fn maybe_commit(&mut self) -> bool {
        let mci = self.prs.committed();
        self.raft_log.maybe_commit(mci, self.term)
    }

    fn committed_entry_in_current_term(&self) -> bool {
        self.raft_log.term_or_zero(self.raft_log.committed) == self.term
    }

    /// Called after commit advanced: propagate it and release reads that waited for
    /// the first commit of this term.
    fn on_commit_advanced(&mut self) {
        self.bcast_append();
        if self.committed_entry_in_current_term() {
            for m in std::mem::take(&mut self.pending_read_index_messages) {
                // These were already counted against the limit.
                let _ = self.handle_read_index(m);
            }
        }
    }

    /// The application persisted the log up to `(index, term)`. The leader counts
    /// itself toward a quorum only for durable entries, although it sent them to
    /// followers before its own write finished (thesis 10.2.1).
    pub(crate) fn on_persisted(&mut self, index: u64, term: u64) {
        if self.state != StateRole::Leader || !self.raft_log.match_term(index, term) {
            return;
        }
        let Some(pr) = self.prs.progress.get_mut(&self.id) else {
            return;
        };
        if pr.maybe_update(index) && self.maybe_commit() {
            self.on_commit_advanced();
        }
    }

    fn respond_read_index(&mut self, m: Message) {
        let index = self.raft_log.committed;
        if m.from == 0 || m.from == self.id {
            let request_ctx = m.entries.into_iter().next().unwrap_or_default().data;
            self.read_states.push(ReadState { index, request_ctx });
        } else {
            let mut r = msg(MessageType::MsgReadIndexResp, m.from);
            r.index = index;
            r.entries = m.entries;
            self.send(r);
        }
    }

    fn handle_read_index(&mut self, m: Message) -> Result<(), Error> {
        if m.entries.len() != 1 {
            return Ok(());
        }
        if self.prs.is_singleton() {
            self.respond_read_index(m);
            return Ok(());
        }
        let pending = self.pending_read_index_messages.len() + self.read_only.pending_read_count();
        if pending >= self.cfg.max_pending_reads {
            return Err(Error::ReadIndexDropped);
        }
        // Until it commits an entry of its term the leader may not know the latest
        // commit index (thesis 6.4 step 1).
        if !self.committed_entry_in_current_term() {
            self.pending_read_index_messages.push(m);
            return Ok(());
        }
        match self.read_only.option {
            ReadOnlyOption::Safe => {
                let ctx = m.entries[0].data.clone();
                self.read_only
                    .add_request(self.raft_log.committed, m, self.id);
                self.bcast_heartbeat_with_ctx(&ctx);
            }
            ReadOnlyOption::LeaseBased => self.respond_read_index(m),
        }
        Ok(())
    }

    /// Refuses a conf change while another is unapplied, and one that does not fit the
    /// current configuration (which is the one it will meet at apply, as none other is
    /// pending), by turning it into an empty entry (so that a batch of proposals keeps
    /// its shape). A change that cannot be applied would otherwise stop every member
    /// when it commits.
    fn filter_conf_changes(&mut self, entries: &mut [Entry]) {
        for (i, e) in entries.iter_mut().enumerate() {
            let Some(cc) = conf_change_of(e) else {
                continue;
            };
            let already_pending = self.pending_conf_index > self.raft_log.applied;
            if already_pending || self.change(&cc).is_err() {
                *e = Entry::default();
            } else {
                self.pending_conf_index = self.raft_log.last_index() + i as u64 + 1;
            }
        }
    }

    pub(crate) fn step_leader(&mut self, mut m: Message) -> Result<(), Error> {
        match m.r#type() {
            MessageType::MsgBeat => {
                self.bcast_heartbeat();
                return Ok(());
            }
            MessageType::MsgCheckQuorum => {
                let window = self.cfg.election_tick as u64;
                if !self.prs.quorum_active(self.id, self.ticks, window) {
                    // No quorum was heard from for an election timeout: this leader
                    // cannot commit, and a new one may exist elsewhere (thesis 6.2).
                    self.become_follower(self.term, 0);
                }
                return Ok(());
            }
            MessageType::MsgProp => {
                assert!(!m.entries.is_empty(), "stepped empty MsgProp");
                if !self.prs.progress.contains_key(&self.id) || self.lead_transferee != 0 {
                    return Err(Error::ProposalDropped);
                }
                self.filter_conf_changes(&mut m.entries);
                if !self.append_entry(&mut m.entries) {
                    return Err(Error::ProposalDropped);
                }
                self.bcast_append();
                return Ok(());
            }
            MessageType::MsgReadIndex => return self.handle_read_index(m),
            _ => {}
        }
        let (from, now) = (m.from, self.ticks);
        let Some(pr) = self.prs.progress.get_mut(&from) else {
            return Ok(());
        };
        match m.r#type() {
            MessageType::MsgAppResp if !m.reject && m.index > self.raft_log.last_index() => {
                // Only our own entries can be acknowledged.
                return Err(Rejection::AckBeyondLog {
                    index: m.index,
                    last: self.raft_log.last_index(),
                }
                .into());
            }
            MessageType::MsgAppResp => {
                pr.last_active = now;
                self.handle_append_response(&m);
            }
            MessageType::MsgHeartbeatResp => {
                pr.last_active = now;
                pr.msg_app_flow_paused = false;
                // Acknowledgements may have been lost: make room to resend.
                if pr.state == ProgressState::Replicate && pr.ins.full() {
                    pr.ins.free_first_one();
                }
                if pr.matched < self.raft_log.last_index() || pr.state == ProgressState::Probe {
                    self.maybe_send_append(from, true);
                }
                self.handle_heartbeat_ack(from, &m.context);
            }
            MessageType::MsgSnapStatus => {
                if pr.state != ProgressState::Snapshot {
                    return Ok(());
                }
                if m.reject {
                    pr.pending_snapshot = 0;
                }
                // Either way wait for a heartbeat response before probing again.
                pr.become_probe();
                pr.msg_app_flow_paused = true;
            }
            MessageType::MsgUnreachable if pr.state == ProgressState::Replicate => {
                pr.become_probe();
            }
            MessageType::MsgTransferLeader => {
                let is_learner = pr.is_learner;
                self.handle_transfer_leader(from, is_learner);
            }
            _ => {}
        }
        Ok(())
    }

    fn handle_append_response(&mut self, m: &Message) {
        let from = m.from;
        let last_index = self.raft_log.last_index();
        if m.reject {
            // Fast backtracking: jump to the follower's hint, or further back to the
            // last index where our log has a term no newer than the follower's.
            let mut next_probe = m.reject_hint;
            if m.log_term > 0 {
                next_probe = self
                    .raft_log
                    .find_conflict_by_term(m.reject_hint, m.log_term)
                    .0;
            }
            let pr = self.prs.progress.get_mut(&from).expect("caller checked");
            if pr.maybe_decr_to(m.index, next_probe) {
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.maybe_send_append(from, true);
            }
            return;
        }
        let first_index = self.raft_log.first_index();
        let pr = self.prs.progress.get_mut(&from).expect("caller checked");
        let old_paused = pr.is_paused();
        if !(pr.maybe_update(m.index)
            || (pr.matched == m.index && pr.state == ProgressState::Probe))
        {
            return;
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot if pr.matched + 1 >= first_index => {
                pr.become_probe();
                pr.become_replicate();
            }
            ProgressState::Snapshot => {}
            ProgressState::Replicate => pr.ins.free_le(m.index),
        }
        if self.maybe_commit() {
            self.on_commit_advanced();
        } else if old_paused {
            self.maybe_send_append(from, true);
        }
        // Pipelining: keep sending while the window has room.
        while self.maybe_send_append(from, false) {}
        if from == self.lead_transferee && self.prs.progress[&from].matched == last_index {
            self.send_timeout_now(from);
        }
    }

    fn handle_heartbeat_ack(&mut self, from: u64, ctx: &[u8]) {
        if self.read_only.option != ReadOnlyOption::Safe || ctx.is_empty() {
            return;
        }
        let Some(acks) = self.read_only.recv_ack(from, ctx) else {
            return;
        };
        let votes = acks.iter().map(|&id| (id, true)).collect();
        if self.prs.config.voters.vote_result(&votes) != super::quorum::VoteResult::Won {
            return;
        }
        for rs in self.read_only.advance(ctx) {
            let mut req = rs.req;
            if req.from == 0 || req.from == self.id {
                let request_ctx = std::mem::take(&mut req.entries[0].data);
                self.read_states.push(ReadState {
                    index: rs.index,
                    request_ctx,
                });
            } else {
                let mut r = msg(MessageType::MsgReadIndexResp, req.from);
                r.index = rs.index;
                r.entries = req.entries;
                self.send(r);
            }
        }
    }

    fn handle_transfer_leader(&mut self, transferee: u64, is_learner: bool) {
        if is_learner {
            return;
        }
        if self.lead_transferee != 0 {
            if self.lead_transferee == transferee {
                return;
            }
            self.abort_leader_transfer();
        }
        if transferee == self.id {
            return;
        }
        // The transfer must finish within an election timeout (thesis 3.10).
        self.election_elapsed = 0;
        self.lead_transferee = transferee;
        if self.prs.progress[&transferee].matched == self.raft_log.last_index() {
            self.send_timeout_now(transferee);
        } else {
            // Catch the transferee up first; the MsgAppResp path sends MsgTimeoutNow.
            self.maybe_send_append(transferee, true);
        }
    }

    fn send_timeout_now(&mut self, to: u64) {
        self.send(msg(MessageType::MsgTimeoutNow, to));
    }

    /// The configuration `cc` makes of the current one.
    fn change(&self, cc: &ConfChangeV2) -> ChangeResult {
        let changer = Changer {
            tracker: &self.prs,
            last_index: self.raft_log.last_index(),
            now: self.ticks,
        };
        if leaves_joint(cc) {
            changer.leave_joint()
        } else if let Some(auto_leave) = enters_joint(cc) {
            changer.enter_joint(auto_leave, &cc.changes)
        } else {
            changer.simple(&cc.changes)
        }
    }

    /// Applies a committed configuration change and returns the new configuration.
    pub fn apply_conf_change(&mut self, cc: &ConfChangeV2) -> Result<ConfState, ConfChangeError> {
        let (cfg, prs) = self.change(cc)?;
        Ok(self.switch_to_config(cfg, prs))
    }

    pub(crate) fn switch_to_config(&mut self, cfg: TrackerConfig, prs: ProgressMap) -> ConfState {
        self.prs.config = cfg;
        self.prs.progress = prs;
        let cs = self.prs.conf_state();
        let pr = self.prs.progress.get(&self.id);
        self.is_learner = pr.is_some_and(|p| p.is_learner);
        if pr.is_none() || self.is_learner {
            // A removed or demoted leader steps down (etcd's StepDownOnRemoval), and a
            // removed candidate could otherwise still collect a quorum of the new
            // configuration and lead a cluster it is not part of.
            if self.state != StateRole::Follower {
                self.become_follower(self.term, 0);
            }
            return cs;
        }
        if self.state != StateRole::Leader || cs.voters.is_empty() {
            return cs;
        }
        // The quorum changed: something may now be committed, and new members need
        // the log.
        if self.maybe_commit() {
            self.on_commit_advanced();
        } else {
            for id in self.peers() {
                self.maybe_send_append(id, false);
            }
        }
        if self.lead_transferee != 0 && !self.prs.config.voters.contains(self.lead_transferee) {
            self.abort_leader_transfer();
        }
        cs
    }
}
