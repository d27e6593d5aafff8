//! Snapshots (thesis 5): a follower that needs compacted entries gets the leader's
//! snapshot; restarts recover from durable state.

use super::election::vote_msg;
use super::network::{config, Network};
use super::replication::msg;
use crate::proto::raftpb::{MessageType, Snapshot, SnapshotMetadata};
use crate::raft::{MemStorage, ProgressState, Raft, RawNode, SnapshotStatus, StateRole, Storage};

/// Compacts `id`'s log up to its applied index, as the application would.
fn compact(n: &mut Network, id: u64) -> u64 {
    let node = n.node(id);
    let applied = node.raft.raft_log.applied;
    let cs = node.raft.prs.conf_state();
    let store = node.store_mut();
    store
        .create_snapshot(applied, cs, b"state".to_vec())
        .unwrap();
    store.compact(applied).unwrap();
    applied
}

#[test]
fn lagging_follower_installs_the_leaders_snapshot() {
    let mut n = Network::new(&[1, 2, 3]);
    n.campaign(1);
    n.isolate(3);
    for i in 0..10u8 {
        n.propose(1, &[i]).unwrap();
    }
    let snap_index = compact(&mut n, 1);
    n.recover();
    n.delivered.clear();
    n.propose(1, b"after").unwrap();
    n.tick_all(2);
    assert!(
        n.delivered
            .iter()
            .any(|m| m.r#type() == MessageType::MsgSnap && m.to == 3),
        "entries before {snap_index} are gone, so a snapshot must be sent"
    );
    let f = &n.nodes[&3];
    assert_eq!(f.store().snapshot().unwrap().data, b"state");
    assert_eq!(f.raft.raft_log.first_index(), snap_index + 1);
    assert_eq!(n.committed(3), n.committed(1));
    let pr = &n.nodes[&1].raft.prs.progress[&3];
    assert_eq!(
        pr.state,
        ProgressState::Replicate,
        "back to streaming after the snapshot"
    );
    assert_eq!(pr.matched, n.committed(1));
}

fn snapshot(index: u64, term: u64, voters: &[u64]) -> Snapshot {
    Snapshot {
        data: vec![],
        metadata: Some(SnapshotMetadata {
            conf_state: Some(crate::proto::raftpb::ConfState {
                voters: voters.to_vec(),
                ..Default::default()
            }),
            index,
            term,
        }),
    }
}

#[test]
fn follower_ignores_stale_snapshots_and_fast_forwards_matching_ones() {
    let mut r = Raft::new(config(2), MemStorage::new_with_voters(&[1, 2])).unwrap();
    let mut m = msg(MessageType::MsgSnap, 1, 2, 2);
    m.snapshot = Some(snapshot(1, 1, &[1, 2]));
    r.step(m.clone()).unwrap();
    assert!(
        !r.raft_log.has_pending_snapshot(),
        "index 1 is already committed"
    );
    assert_eq!(r.msgs_after_persist.pop().unwrap().index, 1);

    m.snapshot = Some(snapshot(10, 2, &[1, 2, 3]));
    r.step(m).unwrap();
    assert_eq!(r.raft_log.pending_snapshot_id(), Some((10, 2)));
    assert_eq!(r.raft_log.committed, 10);
    assert_eq!(
        r.prs.conf_state().voters,
        vec![1, 2, 3],
        "config comes with it"
    );
    assert_eq!(r.msgs_after_persist.pop().unwrap().index, 10);
}

#[test]
fn failed_snapshot_sends_fall_back_to_probing() {
    let mut n = Network::new(&[1, 2, 3]);
    n.campaign(1);
    n.isolate(3);
    for i in 0..3u8 {
        n.propose(1, &[i]).unwrap();
    }
    compact(&mut n, 1);
    n.ignore(MessageType::MsgSnap);
    n.recover_links();
    n.tick_all(1);
    assert_eq!(
        n.nodes[&1].raft.prs.progress[&3].state,
        ProgressState::Snapshot
    );
    n.node(1).report_snapshot(3, SnapshotStatus::Failure);
    let pr = &n.nodes[&1].raft.prs.progress[&3];
    assert_eq!((pr.state, pr.is_paused()), (ProgressState::Probe, true));
}

#[test]
fn restarted_member_keeps_its_durable_state_and_rejoins() {
    let mut n = Network::new(&[1, 2, 3]);
    n.campaign(1);
    for i in 0..3u8 {
        n.propose(1, &[i]).unwrap();
    }
    let (term, commit) = (n.term(2), n.committed(2));
    let store = n.nodes[&2].store().clone();
    let applied = n.nodes[&2].raft.raft_log.applied;
    let mut c = config(2);
    c.applied = applied;
    n.nodes.insert(2, RawNode::new(c, store).unwrap());
    let r = &n.nodes[&2].raft;
    assert_eq!((r.term, r.vote, r.raft_log.committed), (term, 1, commit));
    assert_eq!(r.raft_log.last_index(), commit);
    n.propose(1, b"after restart").unwrap();
    assert_eq!(n.committed(2), n.committed(1));
    assert_eq!(n.applied[&2].last().unwrap().data, b"after restart");
}

#[test]
fn candidate_learns_commit_from_a_rejecting_voter() {
    // A voter rejecting our log still vouches for its commit index; if our log has the
    // same entry there, our prefix is committed and can be applied.
    let mut store = MemStorage::new_with_voters(&[1, 2, 3]);
    store.append(&[crate::proto::raftpb::Entry {
        index: 2,
        term: 1,
        ..Default::default()
    }]);
    let mut r = Raft::new(config(1), store).unwrap();
    r.campaign(crate::raft::raft::CampaignType::Election);
    assert_eq!(r.state, StateRole::Candidate);
    let mut resp = vote_msg(MessageType::MsgVoteResp, 2, 1, r.term, 0, 1);
    resp.reject = true;
    resp.commit = 2;
    r.step(resp.clone()).unwrap();
    assert_eq!(r.raft_log.committed, 2);
    resp.from = 3;
    resp.commit = 3;
    r.step(resp).unwrap();
    assert_eq!(r.raft_log.committed, 2, "index 3 is not in our log");
    assert_eq!(
        r.state,
        StateRole::Follower,
        "two rejections lose the election"
    );
}
