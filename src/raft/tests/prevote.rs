//! PreVote and CheckQuorum (thesis 6.2, 9.6): minorities cannot elect or commit, and
//! returning members cannot disrupt a healthy cluster.

use super::election::vote_msg;
use super::network::Network;
use crate::proto::raftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2, MessageType};
use crate::raft::{StateRole, CAMPAIGN_TRANSFER};

const ELECTION: usize = 10;

fn three_with_leader() -> Network {
    let mut n = Network::new(&[1, 2, 3]);
    n.campaign(1);
    assert_eq!(n.state(1), StateRole::Leader);
    // One CheckQuorum round with everyone reachable.
    n.tick_all(ELECTION);
    n
}

#[test]
fn isolated_leader_steps_down_within_an_election_timeout() {
    let mut n = three_with_leader();
    n.isolate(1);
    let mut stepped_down_after = None;
    for t in 1..=ELECTION {
        n.tick_all(1);
        if n.state(1) != StateRole::Leader {
            stepped_down_after = Some(t);
            break;
        }
    }
    assert!(
        stepped_down_after.is_some(),
        "a leader without quorum contact keeps leading"
    );
    assert_eq!(n.nodes[&1].raft.lead, 0);
}

#[test]
fn two_plus_two_split_commits_nothing_and_old_leader_steps_down() {
    let mut n = Network::new(&[1, 2, 3, 4]);
    n.campaign(1);
    n.propose(1, b"before").unwrap();
    n.tick_all(ELECTION);
    let committed = n.committed(1);
    let terms: Vec<u64> = (1..=4).map(|id| n.term(id)).collect();
    assert!((1..=4).all(|id| n.committed(id) == committed));

    n.partition(&[&[1, 2], &[3, 4]]);
    n.propose(1, b"during").unwrap();
    let mut leader_gone_at = None;
    for t in 0..20 * ELECTION {
        n.tick_all(1);
        for id in 1..=4 {
            assert_eq!(
                n.committed(id),
                committed,
                "member {id} committed in a minority"
            );
        }
        if leader_gone_at.is_none() && n.state(1) != StateRole::Leader {
            leader_gone_at = Some(t);
        }
        if leader_gone_at.is_some() {
            assert!(
                n.leaders().is_empty(),
                "a 2-member half elected {:?}",
                n.leaders()
            );
        }
    }
    assert!(
        leader_gone_at.unwrap() < ELECTION,
        "old leader did not step down in time"
    );
    let after: Vec<u64> = (1..=4).map(|id| n.term(id)).collect();
    assert_eq!(
        after, terms,
        "pre-votes fail in a minority, so no term rises"
    );

    n.recover();
    n.tick_all(4 * ELECTION);
    let leader = n.leaders()[0];
    n.propose(leader, b"after").unwrap();
    n.tick_all(1);
    assert!((1..=4).all(|id| n.committed(id) > committed));
}

#[test]
fn rejoining_partitioned_member_does_not_raise_the_term() {
    let mut n = three_with_leader();
    let term = n.term(1);
    n.isolate(3);
    n.propose(1, b"while away").unwrap();
    n.tick_all(10 * ELECTION);
    assert_eq!(n.state(3), StateRole::PreCandidate, "it keeps trying");
    assert_eq!(n.term(3), term, "pre-elections do not raise the term");
    n.recover();
    n.tick_all(5 * ELECTION);
    assert_eq!(n.leaders(), vec![1]);
    assert!((1..=3).all(|id| n.term(id) == term));
    assert_eq!(
        n.committed(3),
        n.committed(1),
        "it catches up as a follower"
    );
}

#[test]
fn removed_member_that_missed_its_removal_cannot_disrupt() {
    let mut n = three_with_leader();
    let term = n.term(1);
    n.isolate(3);
    let cc = ConfChangeV2 {
        changes: vec![ConfChangeSingle {
            r#type: ConfChangeType::ConfChangeRemoveNode as i32,
            node_id: 3,
        }],
        ..ConfChangeV2::default()
    };
    n.node(1).propose_conf_change(&cc).unwrap();
    n.flush(1);
    n.tick_all(1);
    assert!(!n.nodes[&1].raft.prs.progress.contains_key(&3));
    n.recover();
    n.tick_all(20 * ELECTION);
    assert_eq!(n.leaders(), vec![1]);
    assert_eq!((n.term(1), n.term(2)), (term, term));
}

#[test]
fn follower_in_lease_ignores_vote_requests_unless_transferring() {
    // Thesis 4.2.3: while a member hears from a leader it disregards vote requests.
    let mut n = three_with_leader();
    let term = n.term(2);
    let m = vote_msg(MessageType::MsgVote, 3, 2, term + 1, 100, term);
    n.node(2).step(m.clone()).unwrap();
    assert_eq!(n.term(2), term);
    assert!(
        n.nodes[&2].raft.msgs_after_persist.is_empty(),
        "no reply at all"
    );
    let mut forced = m;
    forced.context = CAMPAIGN_TRANSFER.to_vec();
    n.node(2).step(forced).unwrap();
    assert_eq!(n.term(2), term + 1);
    assert_eq!(n.nodes[&2].raft.vote, 3);
}

#[test]
fn pre_vote_touches_no_durable_state() {
    let mut n = Network::new(&[1, 2, 3]);
    n.isolate(1);
    n.campaign(1);
    n.node(2)
        .step(vote_msg(MessageType::MsgPreVote, 1, 2, 2, 1, 1))
        .unwrap();
    let r = &n.nodes[&2].raft;
    assert_eq!((r.term, r.vote), (1, 0));
    let resp = &r.msgs_after_persist[0];
    assert_eq!((resp.reject, resp.term), (false, 2));
}
