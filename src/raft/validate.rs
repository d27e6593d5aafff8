//! The shape checks a message from a peer passes before it reaches the state machine.
//!
//! Raft's asserts guard this member's own state. Bytes from the network must never reach
//! one: whatever an honest peer cannot send (an append whose entries do not follow its
//! index, a commit index beyond the receiver's log, a term of zero, numbers near
//! `u64::MAX` that would overflow the `+ 1`s of the algorithm) is refused with a
//! [`Rejection`], which the application logs and counts. The checks that need our state
//! (a heartbeat's commit against our log, an acknowledgement against the leader's log, a
//! snapshot's configuration) sit where that state is read, in the step functions. A peer
//! that sends well-formed messages under a member's ID is trusted, as in etcd: keeping
//! strangers out is the transport's job (peer TLS, the member check).

use prost::Message as _;

use crate::proto::raftpb::{ConfChange, ConfChangeV2, Entry, EntryType, Message, MessageType};

/// The largest index or term a peer may name. No log gets near it, and below it `index +
/// entries` and the candidate's `term + 1` cannot overflow.
pub const MAX_INDEX_OR_TERM: u64 = u64::MAX / 4;

/// Why a message from a peer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("addressed to member {0:x}")]
    WrongRecipient(u64),
    #[error("sender {0:x} is none or this member")]
    BadSender(u64),
    #[error("no term")]
    NoTerm,
    #[error("{field} {value} exceeds {MAX_INDEX_OR_TERM}")]
    OutOfRange { field: &'static str, value: u64 },
    #[error("a proposal without entries")]
    EmptyProposal,
    #[error("entry {index} of a proposal is an undecodable configuration change")]
    BadConfChange { index: usize },
    #[error("entry at index {got} where {want} follows")]
    NotContiguous { got: u64, want: u64 },
    #[error("entry {index} has term {term}, outside [{min}, {max}]")]
    EntryTerm {
        index: u64,
        term: u64,
        min: u64,
        max: u64,
    },
    #[error("log term {log_term} is newer than the message's term {term}")]
    LogTermAhead { log_term: u64, term: u64 },
    #[error("commit {commit} is beyond the last index {last}")]
    CommitBeyondLog { commit: u64, last: u64 },
    #[error("acknowledges index {index} beyond the last index {last}")]
    AckBeyondLog { index: u64, last: u64 },
    #[error("snapshot: {0}")]
    Snapshot(String),
}

fn in_range(field: &'static str, value: u64) -> Result<(), Rejection> {
    if value > MAX_INDEX_OR_TERM {
        return Err(Rejection::OutOfRange { field, value });
    }
    Ok(())
}

/// Checks what can be checked of `m` without this member's state; `id` is ours.
pub fn check(m: &Message, id: u64) -> Result<(), Rejection> {
    let t = m.r#type();
    if m.to != id {
        return Err(Rejection::WrongRecipient(m.to));
    }
    if m.from == 0 || m.from == id {
        return Err(Rejection::BadSender(m.from));
    }
    // Forwarded proposals and reads carry no term: the leader decides.
    if m.term == 0 && !matches!(t, MessageType::MsgProp | MessageType::MsgReadIndex) {
        return Err(Rejection::NoTerm);
    }
    for (field, value) in [
        ("term", m.term),
        ("index", m.index),
        ("log term", m.log_term),
        ("commit", m.commit),
        ("reject hint", m.reject_hint),
    ] {
        in_range(field, value)?;
    }
    // Every log term a message names (the entry before an append, a rejecting follower's
    // hint, a candidate's last entry, a voter's commit) is one its sender knew at `term`.
    if m.log_term > m.term {
        return Err(Rejection::LogTermAhead {
            log_term: m.log_term,
            term: m.term,
        });
    }
    match t {
        MessageType::MsgProp => check_proposal(&m.entries),
        MessageType::MsgApp => check_append(m),
        MessageType::MsgSnap => check_snapshot(m),
        _ => Ok(()),
    }
}

fn check_proposal(entries: &[Entry]) -> Result<(), Rejection> {
    if entries.is_empty() {
        return Err(Rejection::EmptyProposal);
    }
    for (i, e) in entries.iter().enumerate() {
        let decodes = match e.r#type() {
            EntryType::EntryNormal => true,
            EntryType::EntryConfChange => ConfChange::decode(e.data.as_slice()).is_ok(),
            EntryType::EntryConfChangeV2 => ConfChangeV2::decode(e.data.as_slice()).is_ok(),
        };
        if !decodes {
            return Err(Rejection::BadConfChange { index: i });
        }
    }
    Ok(())
}

/// An append's entries follow its `(index, log_term)` one by one, with terms that never go
/// back and none newer than the leader's.
fn check_append(m: &Message) -> Result<(), Rejection> {
    let (mut want, mut min) = (m.index + 1, m.log_term);
    for e in &m.entries {
        if e.index != want {
            return Err(Rejection::NotContiguous { got: e.index, want });
        }
        if e.term < min || e.term > m.term {
            return Err(Rejection::EntryTerm {
                index: e.index,
                term: e.term,
                min,
                max: m.term,
            });
        }
        want += 1;
        min = e.term;
        in_range("entry index", e.index)?;
    }
    Ok(())
}

fn check_snapshot(m: &Message) -> Result<(), Rejection> {
    let meta = m
        .snapshot
        .as_ref()
        .and_then(|s| s.metadata.as_ref())
        .ok_or_else(|| Rejection::Snapshot("no metadata".into()))?;
    in_range("snapshot index", meta.index)?;
    if meta.index == 0 || meta.term == 0 || meta.term > m.term {
        return Err(Rejection::Snapshot(format!(
            "index {} term {} in a message of term {}",
            meta.index, meta.term, m.term
        )));
    }
    let voters = meta.conf_state.as_ref().map_or(0, |cs| cs.voters.len());
    if voters == 0 {
        return Err(Rejection::Snapshot("a configuration without voters".into()));
    }
    Ok(())
}
