//! `--force-new-cluster`, etcd's disaster recovery (`restartAsStandaloneNode`): the one
//! survivor of a lost quorum restarts as a single-member cluster with its data. Its WAL
//! loses the entries past the commit index (no quorum can vouch for them), and gains
//! committed configuration changes removing every other member, which the member applies
//! like any others: the membership in the backend, Raft's configuration and the transport
//! all follow. New members can then be added as to any cluster.

use prost::Message as _;

use super::MemberError;
use crate::proto::raftpb::{ConfChange, ConfChangeType, ConfState, Entry, EntryType};
use crate::wal::{Replay, Wal};

/// Rewrites `replay` (and appends to `wal`) so that `me` is the only member: entries past
/// the commit are dropped, and removals of every other member of `base` (the configuration
/// the entries start from), as changed by the committed entries, are appended and
/// committed.
pub(super) fn standalone(
    me: u64,
    base: &ConfState,
    wal: &mut Wal,
    replay: &mut Replay,
) -> Result<(), MemberError> {
    let commit = replay.hard_state.commit;
    if let Some(i) = replay.entries.iter().position(|e| e.index > commit) {
        tracing::info!(
            entry_index = replay.entries[i].index,
            commit_index_from_wal = commit,
            number_of_discarded_entries = replay.entries.len() - i,
            "discarding uncommitted WAL entries"
        );
        replay.entries.truncate(i);
    }
    let ids = members(base, &replay.entries);
    if !ids.contains(&me) {
        return Err(MemberError::NotAMember);
    }
    let term = replay.hard_state.term;
    let removals: Vec<Entry> = ids
        .iter()
        .filter(|&&id| id != me)
        .zip(commit + 1..)
        .map(|(&id, index)| Entry {
            r#type: EntryType::EntryConfChange as i32,
            term,
            index,
            data: ConfChange {
                r#type: ConfChangeType::ConfChangeRemoveNode as i32,
                node_id: id,
                ..ConfChange::default()
            }
            .encode_to_vec(),
        })
        .collect();
    replay.hard_state.commit = commit + removals.len() as u64;
    wal.save(Some(&replay.hard_state), &removals)?;
    replay.entries.extend(removals);
    tracing::info!(
        local_member_id = %format_args!("{me:x}"),
        commit_index = replay.hard_state.commit,
        "forcing restart member"
    );
    Ok(())
}

/// The members of `base` (voters and learners) after the configuration changes among
/// `entries`, ascending (etcd's `getIDs`).
fn members(base: &ConfState, entries: &[Entry]) -> Vec<u64> {
    let mut ids: std::collections::BTreeSet<u64> =
        base.voters.iter().chain(&base.learners).copied().collect();
    for e in entries
        .iter()
        .filter(|e| e.r#type() == EntryType::EntryConfChange)
    {
        let Ok(cc) = ConfChange::decode(e.data.as_slice()) else {
            continue;
        };
        match cc.r#type() {
            ConfChangeType::ConfChangeAddNode | ConfChangeType::ConfChangeAddLearnerNode => {
                ids.insert(cc.node_id);
            }
            ConfChangeType::ConfChangeRemoveNode => {
                ids.remove(&cc.node_id);
            }
            ConfChangeType::ConfChangeUpdateNode => {}
        }
    }
    ids.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(r#type: ConfChangeType, node_id: u64, index: u64) -> Entry {
        Entry {
            r#type: EntryType::EntryConfChange as i32,
            index,
            data: ConfChange {
                r#type: r#type as i32,
                node_id,
                ..ConfChange::default()
            }
            .encode_to_vec(),
            ..Entry::default()
        }
    }

    /// etcd's getIDs: the base configuration, then each change in log order.
    #[test]
    fn members_follow_the_changes_in_order() {
        let base = ConfState {
            voters: vec![1, 2, 3],
            learners: vec![4],
            ..ConfState::default()
        };
        let entries = [
            cc(ConfChangeType::ConfChangeRemoveNode, 2, 5),
            Entry {
                index: 6,
                ..Entry::default()
            },
            cc(ConfChangeType::ConfChangeAddNode, 7, 7),
            cc(ConfChangeType::ConfChangeAddLearnerNode, 2, 8),
            cc(ConfChangeType::ConfChangeRemoveNode, 7, 9),
            cc(ConfChangeType::ConfChangeUpdateNode, 3, 10),
        ];
        assert_eq!(members(&base, &entries), [1, 2, 3, 4]);
        assert_eq!(members(&base, &entries[..3]), [1, 3, 4, 7]);
    }
}
