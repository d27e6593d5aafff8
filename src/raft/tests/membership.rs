//! Membership changes (thesis 4): learners, promotion, simple changes, joint
//! consensus with automatic and explicit leave, one change at a time.

use super::network::Network;
use crate::proto::raftpb::{
    ConfChange, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, EntryType,
    MessageType,
};
use crate::raft::StateRole;

fn single(t: ConfChangeType, id: u64) -> ConfChangeSingle {
    ConfChangeSingle {
        r#type: t as i32,
        node_id: id,
    }
}

fn v2(changes: Vec<ConfChangeSingle>, transition: ConfChangeTransition) -> ConfChangeV2 {
    let mut cc = ConfChangeV2 {
        changes,
        ..ConfChangeV2::default()
    };
    cc.set_transition(transition);
    cc
}

fn change(n: &mut Network, leader: u64, cc: &ConfChangeV2) {
    n.node(leader).propose_conf_change(cc).unwrap();
    n.flush(leader);
}

fn voters(n: &Network, id: u64) -> Vec<u64> {
    n.nodes[&id].raft.prs.conf_state().voters
}

#[test]
fn learner_receives_the_log_but_neither_votes_on_commit_nor_campaigns() {
    let mut n = Network::with(&[1, 2, 3], &[4], |_| {});
    n.campaign(1);
    n.propose(1, b"x").unwrap();
    assert_eq!(n.committed(4), n.committed(1), "learners replicate the log");
    n.partition(&[&[1, 4], &[2, 3]]);
    let before = n.committed(1);
    n.propose(1, b"y").unwrap();
    assert_eq!(
        n.committed(1),
        before,
        "leader + learner is no quorum of 3 voters"
    );
    n.recover();
    n.isolate(4);
    n.tick_all(100);
    assert_eq!(n.state(4), StateRole::Follower, "learners never campaign");
    assert_eq!(n.term(4), 2);
}

#[test]
fn learner_promotion_makes_it_a_voter() {
    let mut n = Network::with(&[1, 2, 3], &[4], |_| {});
    n.campaign(1);
    let cc = v2(
        vec![single(ConfChangeType::ConfChangeAddNode, 4)],
        ConfChangeTransition::Auto,
    );
    change(&mut n, 1, &cc);
    for id in 1..=4 {
        assert_eq!(voters(&n, id), vec![1, 2, 3, 4], "member {id}");
    }
    assert!(!n.nodes[&4].raft.is_learner);
    // Transfers to learners are ignored; to the promoted member it succeeds.
    n.node(1).transfer_leader(4).unwrap();
    n.flush(1);
    assert_eq!(n.leaders(), vec![4]);
}

#[test]
fn joint_change_with_auto_leave() {
    // Replace voter 3 with learner 4 in one step through C_old,new (thesis 4.3).
    let mut n = Network::with(&[1, 2, 3], &[4], |_| {});
    n.campaign(1);
    let cc = v2(
        vec![
            single(ConfChangeType::ConfChangeAddNode, 4),
            single(ConfChangeType::ConfChangeRemoveNode, 3),
        ],
        ConfChangeTransition::Auto,
    );
    change(&mut n, 1, &cc);
    let cs = n.nodes[&1].raft.prs.conf_state();
    assert_eq!((cs.voters, cs.voters_outgoing), (vec![1, 2, 4], vec![]));
    assert!(!cs.auto_leave, "the leader left the joint config by itself");
}

#[test]
fn explicit_joint_change_stays_joint_until_asked_to_leave() {
    let mut n = Network::new(&[1, 2, 3]);
    n.campaign(1);
    let cc = v2(
        vec![single(ConfChangeType::ConfChangeAddLearnerNode, 3)],
        ConfChangeTransition::JointExplicit,
    );
    change(&mut n, 1, &cc);
    n.tick_all(3);
    let cs = n.nodes[&1].raft.prs.conf_state();
    assert_eq!(cs.voters_outgoing, vec![1, 2, 3]);
    assert_eq!(
        cs.learners_next,
        vec![3],
        "demoted only when the joint config ends"
    );
    change(&mut n, 1, &ConfChangeV2::default());
    let cs = n.nodes[&1].raft.prs.conf_state();
    assert_eq!((cs.voters, cs.learners), (vec![1, 2], vec![3]));
    assert!(cs.voters_outgoing.is_empty());
}

#[test]
fn a_conf_change_is_refused_while_another_is_pending() {
    let mut n = Network::with(&[1, 2, 3], &[4, 5], |_| {});
    n.campaign(1);
    // Without acknowledgements nothing commits, so the first change stays pending.
    n.ignore(MessageType::MsgAppResp);
    for id in [4, 5] {
        let cc = v2(
            vec![single(ConfChangeType::ConfChangeAddNode, id)],
            ConfChangeTransition::Auto,
        );
        change(&mut n, 1, &cc);
    }
    // Leaving a joint config that was never entered is refused too.
    change(&mut n, 1, &ConfChangeV2::default());
    let log = &n.nodes[&1].raft.raft_log;
    let ents = log.slice(3, log.last_index() + 1, u64::MAX).unwrap();
    let types: Vec<EntryType> = ents.iter().map(|e| e.r#type()).collect();
    assert_eq!(
        types,
        vec![
            EntryType::EntryConfChangeV2,
            EntryType::EntryNormal,
            EntryType::EntryNormal
        ]
    );
    n.recover();
    n.propose(1, b"commit everything").unwrap();
    assert_eq!(voters(&n, 1), vec![1, 2, 3, 4]);
}

#[test]
fn legacy_single_changes_work_one_at_a_time() {
    let mut n = Network::new(&[1, 2, 3]);
    n.campaign(1);
    let cc = ConfChange {
        r#type: ConfChangeType::ConfChangeRemoveNode as i32,
        node_id: 3,
        ..ConfChange::default()
    };
    n.node(1).propose_conf_change_v1(&cc).unwrap();
    n.flush(1);
    assert_eq!(voters(&n, 1), vec![1, 2]);
    // Two voters left: both are needed to commit.
    n.isolate(2);
    let before = n.committed(1);
    n.propose(1, b"x").unwrap();
    assert_eq!(n.committed(1), before);
}

#[test]
fn removed_leader_steps_down_and_the_rest_elect_a_new_one() {
    let mut n = Network::new(&[1, 2, 3]);
    n.campaign(1);
    let cc = v2(
        vec![single(ConfChangeType::ConfChangeRemoveNode, 1)],
        ConfChangeTransition::Auto,
    );
    change(&mut n, 1, &cc);
    assert_eq!(n.state(1), StateRole::Follower);
    n.tick_all(50);
    let leaders = n.leaders();
    assert_eq!(leaders.len(), 1);
    assert_ne!(leaders[0], 1);
}

#[test]
fn candidate_removed_by_an_applied_change_cannot_win() {
    let mut n = Network::with(&[1, 2, 3], &[], |c| c.pre_vote = false);
    n.isolate(1);
    n.campaign(1);
    assert_eq!(n.state(1), StateRole::Candidate);
    let cc = v2(
        vec![single(ConfChangeType::ConfChangeRemoveNode, 1)],
        ConfChangeTransition::Auto,
    );
    n.node(1).raft.apply_conf_change(&cc).unwrap();
    assert_eq!(n.state(1), StateRole::Follower);
}
