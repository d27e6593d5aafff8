//! Elections: terms, votes, randomized timeouts (thesis 3.4, 3.6).

use super::network::{config, handle_ready, Network};
use crate::proto::raftpb::{Entry, Message, MessageType};
use crate::raft::{MemStorage, Raft, RawNode, StateRole};

pub fn vote_msg(
    t: MessageType,
    from: u64,
    to: u64,
    term: u64,
    index: u64,
    log_term: u64,
) -> Message {
    let mut m = Message {
        from,
        to,
        term,
        index,
        log_term,
        ..Message::default()
    };
    m.set_type(t);
    m
}

#[test]
fn leader_election_needs_a_majority_of_the_full_cluster() {
    // Thesis 3.4: a candidate wins with votes from a majority of all voters, so an
    // even-sized cluster with half its members down elects nobody.
    let cases: [(&[u64], &[u64], StateRole); 5] = [
        (&[1, 2, 3], &[], StateRole::Leader),
        (&[1, 2, 3], &[3], StateRole::Leader),
        (&[1, 2, 3], &[2, 3], StateRole::PreCandidate),
        (&[1, 2, 3, 4], &[3, 4], StateRole::PreCandidate),
        (&[1, 2, 3, 4, 5], &[4, 5], StateRole::Leader),
    ];
    for (ids, down, want) in cases {
        let mut n = Network::new(ids);
        for &d in down {
            n.isolate(d);
        }
        n.campaign(1);
        assert_eq!(n.state(1), want, "ids {ids:?} down {down:?}");
        let want_term = if want == StateRole::Leader { 2 } else { 1 };
        assert_eq!(n.term(1), want_term, "a lost pre-election keeps the term");
    }
}

#[test]
fn candidate_without_prevote_raises_term() {
    let mut n = Network::with(&[1, 2, 3], &[], |c| c.pre_vote = false);
    n.isolate(2);
    n.isolate(3);
    n.campaign(1);
    assert_eq!((n.state(1), n.term(1)), (StateRole::Candidate, 2));
}

#[test]
fn single_member_cluster_elects_itself_and_commits() {
    let mut n = Network::new(&[1]);
    n.campaign(1);
    assert_eq!(n.state(1), StateRole::Leader);
    n.propose(1, b"x").unwrap();
    assert_eq!(
        n.committed(1),
        3,
        "bootstrap + empty leader entry + proposal"
    );
    assert_eq!(n.applied[&1].last().unwrap().data, b"x");
}

#[test]
fn vote_is_persisted_before_the_reply_is_sent() {
    // Thesis 3.8: a member must not forget its vote, or it could vote twice in a term.
    let mut node = RawNode::new(config(1), MemStorage::new_with_voters(&[1, 2, 3])).unwrap();
    node.step(vote_msg(MessageType::MsgVote, 2, 1, 5, 1, 1))
        .unwrap();
    let rd = node.ready();
    assert!(
        rd.messages.is_empty(),
        "a vote must not leave before it is durable"
    );
    assert_eq!(rd.persisted_messages.len(), 1);
    assert!(!rd.persisted_messages[0].reject);
    let hs = rd.hard_state.unwrap();
    assert_eq!((hs.term, hs.vote, rd.must_sync), (5, 2, true));
    handle_ready(&mut node, rd);

    // After a restart from the durable state the vote still binds.
    let mut restarted = RawNode::new(config(1), node.store().clone()).unwrap();
    restarted
        .step(vote_msg(MessageType::MsgVote, 3, 1, 5, 9, 5))
        .unwrap();
    let rd = restarted.ready();
    assert!(
        rd.persisted_messages[0].reject,
        "already voted for 2 in term 5"
    );
    restarted.advance(rd);
    restarted
        .step(vote_msg(MessageType::MsgVote, 2, 1, 5, 1, 1))
        .unwrap();
    let rd = restarted.ready();
    assert!(
        !rd.persisted_messages[0].reject,
        "re-granting the same candidate is fine"
    );
}

#[test]
fn vote_requires_an_up_to_date_log() {
    // Thesis 3.6.1: compare the last term first, then the last index.
    let mut store = MemStorage::new_with_voters(&[1, 2, 3]);
    store.append(&[Entry {
        index: 2,
        term: 2,
        ..Entry::default()
    }]);
    for (index, log_term, granted) in [(5, 1, false), (1, 2, false), (2, 2, true), (1, 3, true)] {
        let mut r = Raft::new(config(1), store.clone()).unwrap();
        r.step(vote_msg(MessageType::MsgVote, 2, 1, 5, index, log_term))
            .unwrap();
        let resp = &r.msgs_after_persist[0];
        assert_eq!(!resp.reject, granted, "candidate log ({index}, {log_term})");
        assert_eq!(r.vote, if granted { 2 } else { 0 });
    }
}

#[test]
fn randomized_election_timeout_is_seeded_and_in_range() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..50 {
        let mut c = config(1);
        c.seed = seed;
        let a = Raft::new(c.clone(), MemStorage::new_with_voters(&[1, 2, 3])).unwrap();
        let b = Raft::new(c, MemStorage::new_with_voters(&[1, 2, 3])).unwrap();
        let t = a.randomized_election_timeout;
        assert!((10..20).contains(&t), "timeout {t} outside [10, 20)");
        assert_eq!(t, b.randomized_election_timeout, "same seed, same timeout");
        seen.insert(t);
    }
    assert!(
        seen.len() > 5,
        "timeouts should vary with the seed: {seen:?}"
    );
}

#[test]
fn follower_campaigns_after_its_randomized_timeout() {
    let mut r = Raft::new(config(1), MemStorage::new_with_voters(&[1, 2, 3])).unwrap();
    let timeout = r.randomized_election_timeout;
    for _ in 1..timeout {
        r.tick();
    }
    assert_eq!(r.state, StateRole::Follower);
    r.tick();
    assert_eq!(r.state, StateRole::PreCandidate);
    let votes: Vec<_> = r
        .msgs_after_persist
        .iter()
        .map(|m| (m.to, m.term))
        .collect();
    assert_eq!(
        votes,
        vec![(2, 2), (3, 2)],
        "pre-votes ask about the next term"
    );
}

#[test]
fn candidate_yields_to_a_leader_of_its_term() {
    let mut n = Network::with(&[1, 2, 3], &[], |c| c.pre_vote = false);
    n.isolate(1);
    n.campaign(1);
    assert_eq!((n.state(1), n.term(1)), (StateRole::Candidate, 2));
    let mut app = vote_msg(MessageType::MsgApp, 3, 1, 2, 1, 1);
    app.set_type(MessageType::MsgApp);
    n.node(1).step(app).unwrap();
    let r = &n.nodes[&1].raft;
    assert_eq!((r.state, r.lead, r.term), (StateRole::Follower, 3, 2));
}

#[test]
fn leader_commits_only_entries_of_its_term_by_counting() {
    // Thesis 3.6.2 (figure 3.7): an entry of an older term replicated on a majority
    // may still be overwritten, so it is committed only through a current-term entry.
    let mut store = MemStorage::new_with_voters(&[1, 2, 3]);
    store.append(&[Entry {
        index: 2,
        term: 2,
        ..Entry::default()
    }]);
    let mut hs = *store.hard_state();
    hs.term = 2;
    store.set_hard_state(hs);
    let mut r = Raft::new(config(1), store).unwrap();
    r.become_candidate();
    r.become_leader();
    assert_eq!((r.term, r.raft_log.last_index()), (3, 3));
    let mut resp = vote_msg(MessageType::MsgAppResp, 2, 1, 3, 2, 0);
    resp.set_type(MessageType::MsgAppResp);
    r.step(resp.clone()).unwrap();
    assert_eq!(r.raft_log.committed, 1, "index 2 is from term 2");
    resp.index = 3;
    r.step(resp).unwrap();
    assert_eq!(
        r.raft_log.committed, 1,
        "the leader's own entry 3 is not durable yet, so only one replica counts"
    );
    r.on_persisted(3, 3);
    assert_eq!(
        r.raft_log.committed, 3,
        "index 3 commits, and index 2 with it"
    );
}
