//! The Raft state machine: terms, roles, elections and message dispatch. Replication
//! and the per-role step functions live in `leader.rs` and `follower.rs`.

use super::confchange;
use super::config::Config;
use super::log::RaftLog;
use super::quorum::VoteResult;
use super::read_only::{ReadOnly, ReadState};
use super::storage::Storage;
use super::tracker::ProgressTracker;
use super::Error;
use crate::proto::raftpb::{Entry, EntryType, HardState, Message, MessageType};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Context of the vote request sent after a leadership transfer: it bypasses the
/// followers' leader lease because the old leader asked for the election.
pub const CAMPAIGN_TRANSFER: &[u8] = b"CampaignTransfer";

/// The role of a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateRole {
    #[default]
    Follower,
    Candidate,
    Leader,
    PreCandidate,
}

/// Volatile state worth reporting to the application: who leads and our role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SoftState {
    pub leader_id: u64,
    pub raft_state: StateRole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CampaignType {
    PreElection,
    Election,
    Transfer,
}

/// One Raft member. Drive it with `step`/`tick`; outputs accumulate in `msgs`,
/// `msgs_after_persist`, `read_states` and the log's unstable part.
#[derive(Debug)]
pub struct Raft<S> {
    pub id: u64,
    pub term: u64,
    pub vote: u64,
    pub lead: u64,
    pub state: StateRole,
    pub is_learner: bool,
    pub raft_log: RaftLog<S>,
    pub prs: ProgressTracker,
    /// Messages that may be sent right away.
    pub msgs: Vec<Message>,
    /// Messages that reflect durable state (votes, append acknowledgements) and may
    /// only be sent once the pending hard state and entries are persisted.
    pub msgs_after_persist: Vec<Message>,
    pub read_states: Vec<ReadState>,
    pub read_only: ReadOnly,
    /// Reads received before the leader committed an entry of its term.
    pub(crate) pending_read_index_messages: Vec<Message>,
    pub lead_transferee: u64,
    /// The index of the latest proposed conf change; another is refused until the
    /// applied index passes it.
    pub pending_conf_index: u64,
    pub(crate) uncommitted_size: u64,
    pub(crate) election_elapsed: usize,
    /// Ticks since this member started: the clock of CheckQuorum.
    pub(crate) ticks: u64,
    pub(crate) heartbeat_elapsed: usize,
    pub(crate) randomized_election_timeout: usize,
    pub(crate) cfg: Config,
    rng: ChaCha8Rng,
}

pub(crate) fn is_local_msg(t: MessageType) -> bool {
    use MessageType::*;
    matches!(
        t,
        MsgHup | MsgBeat | MsgUnreachable | MsgSnapStatus | MsgCheckQuorum
    )
}

pub(crate) fn is_response_msg(t: MessageType) -> bool {
    use MessageType::*;
    matches!(
        t,
        MsgAppResp
            | MsgVoteResp
            | MsgHeartbeatResp
            | MsgUnreachable
            | MsgReadIndexResp
            | MsgPreVoteResp
    )
}

fn vote_resp_type(t: MessageType) -> MessageType {
    match t {
        MessageType::MsgVote => MessageType::MsgVoteResp,
        MessageType::MsgPreVote => MessageType::MsgPreVoteResp,
        _ => panic!("not a vote message: {t:?}"),
    }
}

pub(crate) fn payload_size(ents: &[Entry]) -> u64 {
    ents.iter().map(|e| e.data.len() as u64).sum()
}

impl<S: Storage> Raft<S> {
    /// Builds a member from its durable state in `store`.
    pub fn new(cfg: Config, store: S) -> Result<Self, Error> {
        cfg.validate().map_err(Error::ConfigInvalid)?;
        let (hs, cs) = store.initial_state()?;
        let raft_log = RaftLog::new(store, cfg.max_committed_size_per_ready)?;
        let mut r = Self {
            id: cfg.id,
            term: 0,
            vote: 0,
            lead: 0,
            state: StateRole::Follower,
            is_learner: false,
            raft_log,
            prs: ProgressTracker::new(cfg.max_inflight_msgs, cfg.max_inflight_bytes),
            msgs: Vec::new(),
            msgs_after_persist: Vec::new(),
            read_states: Vec::new(),
            read_only: ReadOnly::new(cfg.read_only_option),
            pending_read_index_messages: Vec::new(),
            lead_transferee: 0,
            pending_conf_index: 0,
            uncommitted_size: 0,
            election_elapsed: 0,
            ticks: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: cfg.election_tick,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg,
        };
        let last = r.raft_log.last_index();
        confchange::restore(&mut r.prs, last, 0, &cs)?;
        r.is_learner = r.prs.progress.get(&r.id).is_some_and(|p| p.is_learner);
        if hs != HardState::default() {
            r.load_state(&hs);
        }
        if r.cfg.applied > 0 {
            r.raft_log.applied_to(r.cfg.applied);
        }
        r.become_follower(r.term, 0);
        Ok(r)
    }

    fn load_state(&mut self, hs: &HardState) {
        let (committed, last) = (self.raft_log.committed, self.raft_log.last_index());
        assert!(
            hs.commit >= committed && hs.commit <= last,
            "hard state commit({}) is out of range [{}, {}]",
            hs.commit,
            committed,
            last
        );
        self.raft_log.committed = hs.commit;
        self.term = hs.term;
        self.vote = hs.vote;
    }

    pub fn soft_state(&self) -> SoftState {
        SoftState {
            leader_id: self.lead,
            raft_state: self.state,
        }
    }

    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.raft_log.committed,
        }
    }

    /// Queues `m` for sending, in the bucket its meaning requires.
    pub(crate) fn send(&mut self, mut m: Message) {
        m.from = self.id;
        let t = m.r#type();
        let is_vote = matches!(
            t,
            MessageType::MsgVote
                | MessageType::MsgPreVote
                | MessageType::MsgVoteResp
                | MessageType::MsgPreVoteResp
        );
        // Vote traffic carries the term of the election; proposals and forwarded reads
        // carry none (the leader decides); everything else carries our term.
        if !is_vote && t != MessageType::MsgProp && t != MessageType::MsgReadIndex {
            m.term = self.term;
        }
        if is_vote || t == MessageType::MsgAppResp {
            self.msgs_after_persist.push(m);
        } else {
            self.msgs.push(m);
        }
    }

    pub(crate) fn promotable(&self) -> bool {
        self.prs
            .progress
            .get(&self.id)
            .is_some_and(|p| !p.is_learner)
            && !self.raft_log.has_pending_snapshot()
    }

    fn reset_randomized_election_timeout(&mut self) {
        let t = self.cfg.election_tick;
        self.randomized_election_timeout = self.rng.random_range(t..2 * t);
    }

    fn reset(&mut self, term: u64) {
        if self.term != term {
            self.term = term;
            self.vote = 0;
        }
        self.lead = 0;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.reset_randomized_election_timeout();
        self.abort_leader_transfer();
        self.prs.reset_votes();
        let last = self.raft_log.last_index();
        let ins = self.prs.new_inflights();
        for (&id, pr) in self.prs.progress.iter_mut() {
            let is_learner = pr.is_learner;
            *pr = super::tracker::Progress::new(last + 1, ins.clone());
            pr.is_learner = is_learner;
            // Everyone gets a full election timeout to be heard from.
            pr.last_active = self.ticks;
            if id == self.id {
                pr.matched = last;
            }
        }
        self.pending_conf_index = 0;
        self.uncommitted_size = 0;
        self.read_only = ReadOnly::new(self.cfg.read_only_option);
        self.pending_read_index_messages.clear();
    }

    pub fn become_follower(&mut self, term: u64, lead: u64) {
        self.reset(term);
        self.lead = lead;
        self.state = StateRole::Follower;
    }

    pub(crate) fn become_pre_candidate(&mut self) {
        assert!(
            self.state != StateRole::Leader,
            "invalid transition [leader -> pre-candidate]"
        );
        // Neither the term nor the vote changes: a pre-election touches no durable state.
        self.prs.reset_votes();
        self.lead = 0;
        self.state = StateRole::PreCandidate;
    }

    pub(crate) fn become_candidate(&mut self) {
        assert!(
            self.state != StateRole::Leader,
            "invalid transition [leader -> candidate]"
        );
        self.reset(self.term + 1);
        self.vote = self.id;
        self.state = StateRole::Candidate;
    }

    pub(crate) fn become_leader(&mut self) {
        assert!(
            self.state != StateRole::Follower,
            "invalid transition [follower -> leader]"
        );
        self.reset(self.term);
        self.lead = self.id;
        self.state = StateRole::Leader;
        if let Some(pr) = self.prs.progress.get_mut(&self.id) {
            pr.become_replicate();
        }
        // Conservatively assume the tail may hold an unapplied conf change.
        self.pending_conf_index = self.raft_log.last_index();
        // An entry of the new term lets the leader commit everything before it
        // (thesis 3.6.2) and tells it when reads are safe (thesis 6.4).
        assert!(
            self.append_entry(&mut [Entry::default()]),
            "empty entry was dropped"
        );
    }

    pub fn tick(&mut self) {
        self.ticks += 1;
        if self.state == StateRole::Leader {
            self.tick_heartbeat();
        } else {
            self.tick_election();
        }
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.promotable() && self.election_elapsed >= self.randomized_election_timeout {
            self.election_elapsed = 0;
            let _ = self.step(local_msg(MessageType::MsgHup));
        }
    }

    fn tick_heartbeat(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.cfg.check_quorum {
            let _ = self.step(local_msg(MessageType::MsgCheckQuorum));
            if self.state != StateRole::Leader {
                return;
            }
        }
        if self.election_elapsed >= self.cfg.election_tick {
            self.election_elapsed = 0;
            // A transfer that did not finish within an election timeout is abandoned.
            self.abort_leader_transfer();
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick {
            self.heartbeat_elapsed = 0;
            let _ = self.step(local_msg(MessageType::MsgBeat));
        }
    }

    pub(crate) fn abort_leader_transfer(&mut self) {
        self.lead_transferee = 0;
    }

    fn has_unapplied_conf_changes(&self) -> bool {
        let mut lo = self.raft_log.applied + 1;
        let hi = self.raft_log.committed + 1;
        while lo < hi {
            let Ok(page) = self.raft_log.slice(lo, hi, self.raft_log.max_apply_size) else {
                return false;
            };
            if page.iter().any(|e| e.r#type() != EntryType::EntryNormal) {
                return true;
            }
            lo += page.len() as u64;
        }
        false
    }

    pub(crate) fn hup(&mut self, t: CampaignType) {
        if self.state == StateRole::Leader || !self.promotable() {
            return;
        }
        // A conf change this member has not applied could remove it from the voters.
        if self.has_unapplied_conf_changes() {
            return;
        }
        self.campaign(t);
    }

    pub(crate) fn campaign(&mut self, t: CampaignType) {
        let (vote_msg, term) = if t == CampaignType::PreElection {
            self.become_pre_candidate();
            // A pre-election asks for the next term without entering it.
            (MessageType::MsgPreVote, self.term + 1)
        } else {
            self.become_candidate();
            (MessageType::MsgVote, self.term)
        };
        let ids = self.prs.config.voters.ids();
        if ids.contains(&self.id) && self.poll(self.id, true) == VoteResult::Won {
            // A single-voter cluster wins at once.
            if t == CampaignType::PreElection {
                self.campaign(CampaignType::Election);
            } else {
                self.become_leader();
            }
            return;
        }
        let (index, log_term) = (self.raft_log.last_index(), self.raft_log.last_term());
        let me = self.id;
        for id in ids.into_iter().filter(|&id| id != me) {
            let mut m = Message {
                to: id,
                term,
                index,
                log_term,
                ..Message::default()
            };
            m.set_type(vote_msg);
            if t == CampaignType::Transfer {
                m.context = CAMPAIGN_TRANSFER.to_vec();
            }
            self.send(m);
        }
    }

    pub(crate) fn poll(&mut self, id: u64, granted: bool) -> VoteResult {
        self.prs.record_vote(id, granted);
        self.prs.vote_result()
    }

    /// The entry point for every message, local or from a peer.
    pub fn step(&mut self, m: Message) -> Result<(), Error> {
        let t = m.r#type();
        if m.term > self.term {
            if matches!(t, MessageType::MsgVote | MessageType::MsgPreVote) {
                let force = m.context == CAMPAIGN_TRANSFER;
                let in_lease = self.cfg.check_quorum
                    && self.lead != 0
                    && self.election_elapsed < self.cfg.election_tick;
                if !force && in_lease {
                    // We heard from a leader within the minimum election timeout, so a
                    // vote request is from a disruptive member (thesis 4.2.3).
                    return Ok(());
                }
            }
            let keeps_term =
                t == MessageType::MsgPreVote || (t == MessageType::MsgPreVoteResp && !m.reject);
            if !keeps_term {
                let lead = match t {
                    MessageType::MsgApp | MessageType::MsgHeartbeat | MessageType::MsgSnap => {
                        m.from
                    }
                    _ => 0,
                };
                self.become_follower(m.term, lead);
            }
        } else if m.term != 0 && m.term < self.term {
            self.step_stale(&m);
            return Ok(());
        }
        match t {
            MessageType::MsgHup => {
                let ct = if self.cfg.pre_vote {
                    CampaignType::PreElection
                } else {
                    CampaignType::Election
                };
                self.hup(ct);
            }
            MessageType::MsgVote | MessageType::MsgPreVote => self.handle_vote(&m),
            _ => match self.state {
                StateRole::Leader => self.step_leader(m)?,
                StateRole::Candidate | StateRole::PreCandidate => self.step_candidate(m)?,
                StateRole::Follower => self.step_follower(m)?,
            },
        }
        Ok(())
    }

    /// Answers a message from an older term.
    fn step_stale(&mut self, m: &Message) {
        let t = m.r#type();
        if (self.cfg.check_quorum || self.cfg.pre_vote)
            && matches!(t, MessageType::MsgHeartbeat | MessageType::MsgApp)
        {
            // A leader from an old term that cannot hear us would otherwise keep
            // sending; with CheckQuorum or PreVote our term may not rise past it, so
            // tell it the current term so that it steps down.
            let mut r = Message {
                to: m.from,
                ..Message::default()
            };
            r.set_type(MessageType::MsgAppResp);
            self.send(r);
        } else if t == MessageType::MsgPreVote {
            let mut r = Message {
                to: m.from,
                term: self.term,
                reject: true,
                ..Message::default()
            };
            r.set_type(MessageType::MsgPreVoteResp);
            self.send(r);
        }
    }

    fn handle_vote(&mut self, m: &Message) {
        let t = m.r#type();
        let can_vote = self.vote == m.from
            || (self.vote == 0 && self.lead == 0)
            || (t == MessageType::MsgPreVote && m.term > self.term);
        let grant = can_vote
            && (self.cfg.vote_ignores_log || self.raft_log.is_up_to_date(m.index, m.log_term));
        let committed = self.raft_log.committed;
        let mut r = Message {
            to: m.from,
            // A granted pre-vote answers for the future term the candidate asked about.
            term: if grant { m.term } else { self.term },
            reject: !grant,
            // Our commit index lets a candidate holding those entries learn that they
            // are committed (see `step_candidate`).
            commit: committed,
            log_term: self.raft_log.term_or_zero(committed),
            ..Message::default()
        };
        r.set_type(vote_resp_type(t));
        self.send(r);
        if grant && t == MessageType::MsgVote {
            self.election_elapsed = 0;
            self.vote = m.from;
        }
    }

    /// Appends entries proposed by this leader; false if the uncommitted-size limit
    /// drops them.
    pub(crate) fn append_entry(&mut self, es: &mut [Entry]) -> bool {
        let li = self.raft_log.last_index();
        for (i, e) in es.iter_mut().enumerate() {
            e.term = self.term;
            e.index = li + 1 + i as u64;
        }
        let size = payload_size(es);
        // A single proposal is accepted even when larger than the limit.
        if self.uncommitted_size > 0
            && size > 0
            && self.uncommitted_size + size > self.cfg.max_uncommitted_entries_size
        {
            return false;
        }
        self.uncommitted_size += size;
        self.raft_log.append(es);
        true
    }
}

pub(crate) fn local_msg(t: MessageType) -> Message {
    let mut m = Message::default();
    m.set_type(t);
    m
}
