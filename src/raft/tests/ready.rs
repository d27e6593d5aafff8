//! The Ready/advance contract of `RawNode`.

use super::network::{config, handle_ready};
use crate::raft::{Config, MemStorage, RawNode, StateRole};

fn single(tweak: impl Fn(&mut Config)) -> RawNode<MemStorage> {
    let mut c = config(1);
    tweak(&mut c);
    let mut node = RawNode::new(c, MemStorage::new_with_voters(&[1])).unwrap();
    node.campaign().unwrap();
    while node.has_ready() {
        let rd = node.ready();
        handle_ready(&mut node, rd);
    }
    node
}

#[test]
fn ready_reports_changes_once_and_advance_clears_them() {
    let mut node = RawNode::new(config(1), MemStorage::new_with_voters(&[1])).unwrap();
    assert!(
        !node.has_ready(),
        "a restarted idle member has nothing to do"
    );
    node.campaign().unwrap();
    let rd = node.ready();
    let ss = rd.soft_state.expect("became leader");
    assert_eq!((ss.leader_id, ss.raft_state), (1, StateRole::Leader));
    assert_eq!(rd.entries.len(), 1, "the leader's empty entry");
    assert!(rd.must_sync);
    assert!(
        rd.committed_entries.is_empty(),
        "not durable yet, so not committed"
    );
    handle_ready(&mut node, rd);
    // Advancing made the entry durable, which commits it in a one-member cluster.
    let rd = node.ready();
    assert!(rd.soft_state.is_none() && rd.entries.is_empty());
    assert_eq!(rd.hard_state.unwrap().commit, 2);
    assert!(!rd.must_sync, "only the commit index changed");
    assert_eq!(rd.committed_entries.len(), 1);
    handle_ready(&mut node, rd);
    assert!(!node.has_ready());
    assert_eq!(node.raft.raft_log.applied, 2);
}

#[test]
#[should_panic(expected = "ready() called again before advance()")]
fn only_one_ready_is_outstanding() {
    let mut node = single(|_| {});
    node.propose(b"x".to_vec()).unwrap();
    let _first = node.ready();
    let _second = node.ready();
}

#[test]
fn committed_entries_per_ready_are_bounded() {
    let mut node = single(|c| c.max_committed_size_per_ready = 64);
    for _ in 0..8 {
        node.propose(vec![0; 30]).unwrap();
    }
    let rd = node.ready();
    handle_ready(&mut node, rd);
    let mut batches = Vec::new();
    while node.has_ready() {
        let rd = node.ready();
        batches.push(rd.committed_entries.len());
        handle_ready(&mut node, rd);
    }
    assert!(batches.len() > 1, "8 entries of ~32 bytes exceed 64 bytes");
    assert!(batches.iter().all(|&n| (1..=2).contains(&n)), "{batches:?}");
    assert_eq!(batches.iter().sum::<usize>(), 8);
}
