//! Leadership transfer (thesis 3.10): the transferee is caught up, then told to
//! campaign at once with MsgTimeoutNow.

use super::network::Network;
use crate::raft::{Error, StateRole};

fn three() -> Network {
    let mut n = Network::new(&[1, 2, 3]);
    n.campaign(1);
    n
}

#[test]
fn transfer_to_an_up_to_date_follower() {
    let mut n = three();
    let term = n.term(1);
    n.node(1).transfer_leader(2).unwrap();
    n.flush(1);
    assert_eq!(n.leaders(), vec![2]);
    assert_eq!(n.term(2), term + 1);
    assert_eq!(n.state(1), StateRole::Follower);
}

#[test]
fn transfer_catches_up_a_lagging_transferee_first() {
    let mut n = three();
    n.isolate(3);
    for i in 0..5u8 {
        n.propose(1, &[i]).unwrap();
    }
    n.recover();
    n.node(1).transfer_leader(3).unwrap();
    n.flush(1);
    assert_eq!(n.leaders(), vec![3]);
    assert_eq!(n.committed(3), n.committed(1));
}

#[test]
fn proposals_are_dropped_during_transfer_until_it_is_abandoned() {
    let mut n = three();
    n.isolate(3);
    n.node(1).transfer_leader(3).unwrap();
    n.flush(1);
    assert_eq!(n.propose(1, b"x"), Err(Error::ProposalDropped));
    // The transfer is abandoned after an election timeout (CheckQuorum keeps the
    // leader in place thanks to member 2).
    n.tick_all(10);
    assert_eq!(n.leaders(), vec![1]);
    n.propose(1, b"x").unwrap();
}

#[test]
fn transfer_requests_are_forwarded_and_ignore_learners_and_self() {
    let mut n = Network::with(&[1, 2, 3], &[4], |_| {});
    n.campaign(1);
    n.node(1).transfer_leader(4).unwrap();
    n.flush(1);
    n.node(1).transfer_leader(1).unwrap();
    n.flush(1);
    assert_eq!(n.nodes[&1].raft.lead_transferee, 0);
    assert_eq!(n.leaders(), vec![1]);
    // Asked at a follower, the request reaches the leader.
    n.node(3).transfer_leader(3).unwrap();
    n.flush(3);
    assert_eq!(n.leaders(), vec![3]);
}
