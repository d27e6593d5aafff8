//! Log replication (thesis 3.5): log matching, conflict resolution with fast
//! backtracking, flow control, pipelining, and appends before the leader's fsync.

use super::ent;
use super::network::{config, Network};
use crate::proto::raftpb::{Entry, HardState, Message, MessageType};
use crate::raft::{Config, Error, MemStorage, ProgressState, Raft, RawNode, StateRole};

/// A storage holding the bootstrap entry plus entries 2.. with `terms`, at `term`.
fn store_with(terms: &[u64], term: u64) -> MemStorage {
    let mut s = MemStorage::new_with_voters(&[1, 2, 3]);
    let ents: Vec<Entry> = terms
        .iter()
        .enumerate()
        .map(|(i, &t)| ent(i as u64 + 2, t))
        .collect();
    s.append(&ents);
    s.set_hard_state(HardState {
        term,
        vote: 0,
        commit: 1,
    });
    s
}

pub fn msg(t: MessageType, from: u64, to: u64, term: u64) -> Message {
    let mut m = Message {
        from,
        to,
        term,
        ..Message::default()
    };
    m.set_type(t);
    m
}

/// A leader of a fresh 3-member cluster whose own log is durable.
fn leader(tweak: impl Fn(&mut Config)) -> Raft<MemStorage> {
    let mut c = config(1);
    tweak(&mut c);
    let mut r = Raft::new(c, MemStorage::new_with_voters(&[1, 2, 3])).unwrap();
    r.become_candidate();
    r.become_leader();
    r.on_persisted(2, r.term);
    r.msgs.clear();
    r
}

fn propose(r: &mut Raft<MemStorage>, data: &[u8]) -> Result<(), Error> {
    let mut m = msg(MessageType::MsgProp, 1, 1, 0);
    m.entries = vec![Entry {
        data: data.to_vec(),
        ..Entry::default()
    }];
    r.step(m)
}

fn apps_to(r: &mut Raft<MemStorage>, to: u64) -> Vec<Message> {
    let (apps, rest) = std::mem::take(&mut r.msgs)
        .into_iter()
        .partition(|m| m.to == to && m.r#type() == MessageType::MsgApp);
    r.msgs = rest;
    apps
}

#[test]
fn proposals_replicate_and_apply_everywhere_in_order() {
    let mut n = Network::new(&[1, 2, 3]);
    n.campaign(1);
    n.propose(1, b"a").unwrap();
    n.propose(2, b"b").unwrap();
    n.propose(3, b"c").unwrap();
    for id in 1..=3 {
        let data: Vec<&[u8]> = n.applied[&id].iter().map(|e| e.data.as_slice()).collect();
        assert_eq!(data, vec![&b"a"[..], b"b", b"c"], "member {id}");
        assert_eq!(n.committed(id), 5);
    }
}

#[test]
fn leader_overwrites_divergent_follower_logs() {
    // Thesis 3.5 (figure 3.6): whatever a follower holds beyond the point where it
    // matches the leader is replaced by the leader's entries.
    let leader_terms = [1, 1, 4, 4, 5, 5, 6, 6, 6];
    let followers: [&[u64]; 6] = [
        &[1, 1, 4, 4, 5, 5, 6, 6],
        &[1, 1, 4],
        &[1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
        &[1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
        &[1, 1, 4, 4, 4, 4],
        &[1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
    ];
    for f in followers {
        let mut n = Network::new(&[1, 2, 3]);
        n.nodes.insert(
            1,
            RawNode::new(config(1), store_with(&leader_terms, 7)).unwrap(),
        );
        n.nodes.insert(
            2,
            RawNode::new(config(2), store_with(&leader_terms, 7)).unwrap(),
        );
        n.nodes
            .insert(3, RawNode::new(config(3), store_with(f, 7)).unwrap());
        n.campaign(1);
        assert_eq!(n.state(1), StateRole::Leader, "follower {f:?}");
        n.propose(1, b"x").unwrap();
        let log = |n: &Network, id: u64| {
            let r = &n.nodes[&id].raft;
            r.raft_log
                .slice(2, r.raft_log.last_index() + 1, u64::MAX)
                .unwrap()
        };
        assert_eq!(log(&n, 3), log(&n, 1), "follower {f:?}");
        assert_eq!(n.committed(3), n.committed(1));
    }
}

#[test]
fn fast_backtracking_skips_whole_terms() {
    // The reject hint lets the leader skip a term's worth of entries per round trip
    // instead of one entry (thesis 5.4.1's optimisation in etcd's form).
    let long_divergent = vec![3; 100];
    let leader_terms = vec![2; 50];
    let mut n = Network::new(&[1, 2, 3]);
    n.nodes.insert(
        1,
        RawNode::new(config(1), store_with(&leader_terms, 4)).unwrap(),
    );
    n.nodes.insert(
        2,
        RawNode::new(config(2), store_with(&leader_terms, 4)).unwrap(),
    );
    n.nodes.insert(
        3,
        RawNode::new(config(3), store_with(&long_divergent, 4)).unwrap(),
    );
    n.campaign(1);
    assert_eq!(n.state(1), StateRole::Leader);
    let rejections = n
        .delivered
        .iter()
        .filter(|m| m.r#type() == MessageType::MsgAppResp && m.reject && m.from == 3)
        .count();
    assert!(
        rejections <= 2,
        "{rejections} rejections for a 100-entry divergence"
    );
    assert_eq!(
        n.nodes[&3].raft.raft_log.last_index(),
        n.nodes[&1].raft.raft_log.last_index()
    );
}

#[test]
fn probe_sends_one_append_per_round_replicate_pipelines_up_to_the_window() {
    let mut r = leader(|c| c.max_inflight_msgs = 3);
    for i in 0..5 {
        propose(&mut r, &[i]).unwrap();
    }
    assert_eq!(
        apps_to(&mut r, 2).len(),
        1,
        "in probe state only one append is outstanding"
    );
    let mut ack = msg(MessageType::MsgAppResp, 2, 1, r.term);
    ack.index = r.raft_log.last_index();
    r.step(ack).unwrap();
    assert_eq!(r.prs.progress[&2].state, ProgressState::Replicate);
    r.msgs.clear();
    for i in 0..10 {
        propose(&mut r, &[i]).unwrap();
    }
    let apps = apps_to(&mut r, 2);
    assert_eq!(
        apps.len(),
        3,
        "pipelined up to max_inflight_msgs without acks"
    );
    assert!(r.prs.progress[&2].is_paused());
    // A heartbeat response shows the follower alive: one slot is freed to resend.
    r.step(msg(MessageType::MsgHeartbeatResp, 2, 1, r.term))
        .unwrap();
    assert_eq!(apps_to(&mut r, 2).len(), 1);
}

#[test]
fn inflight_bytes_and_message_size_are_bounded() {
    let mut r = leader(|c| {
        c.max_inflight_bytes = 20;
        c.max_size_per_msg = 1;
    });
    let pr = r.prs.progress.get_mut(&2).unwrap();
    pr.maybe_update(2);
    pr.become_replicate();
    for _ in 0..5 {
        propose(&mut r, &[0; 10]).unwrap();
    }
    let apps = apps_to(&mut r, 2);
    assert_eq!(apps.len(), 2, "20 bytes in flight at most");
    assert!(
        apps.iter().all(|m| m.entries.len() == 1),
        "one entry per message"
    );
}

#[test]
fn leader_sends_appends_before_its_own_fsync_and_commits_only_durable_quorums() {
    // Thesis 10.2.1: the leader writes its log in parallel with replication; it counts
    // itself only once its write is durable, but a majority of followers suffices.
    let mut n = Network::new(&[1, 2, 3]);
    n.campaign(1);
    let node = n.node(1);
    node.propose(b"x".to_vec()).unwrap();
    let rd = node.ready();
    assert_eq!(rd.entries.len(), 1);
    let app: Vec<_> = rd
        .messages
        .iter()
        .filter(|m| m.r#type() == MessageType::MsgApp)
        .collect();
    assert_eq!(app.len(), 2, "appends leave before the local write");
    let idx = rd.entries[0].index;
    let term = node.raft.term;
    let mut ack = msg(MessageType::MsgAppResp, 2, 1, term);
    ack.index = idx;
    node.step(ack.clone()).unwrap();
    assert!(
        node.raft.raft_log.committed < idx,
        "one durable copy of three"
    );
    ack.from = 3;
    node.step(ack).unwrap();
    assert_eq!(
        node.raft.raft_log.committed, idx,
        "two followers are a majority"
    );
    node.advance(rd);
}

#[test]
fn uncommitted_size_limit_drops_proposals_until_commit() {
    let mut n = Network::with(&[1], &[], |c| c.max_uncommitted_entries_size = 10);
    n.campaign(1);
    let node = n.node(1);
    node.propose(vec![0; 6]).unwrap();
    assert_eq!(node.propose(vec![0; 6]), Err(Error::ProposalDropped));
    assert_eq!(node.raft.uncommitted_size, 6);
    n.flush(1);
    assert_eq!(
        n.nodes[&1].raft.uncommitted_size, 0,
        "applied entries free the budget"
    );
    n.node(1).propose(vec![0; 6]).unwrap();
}

#[test]
fn proposals_are_forwarded_or_dropped() {
    let mut n = Network::new(&[1, 2, 3]);
    assert_eq!(
        n.propose(2, b"x"),
        Err(Error::ProposalDropped),
        "no leader yet"
    );
    n.campaign(1);
    n.propose(2, b"x").unwrap();
    assert_eq!(
        n.applied[&1].last().unwrap().data,
        b"x",
        "forwarded to the leader"
    );

    let mut n = Network::with(&[1, 2, 3], &[], |c| c.disable_proposal_forwarding = true);
    n.campaign(1);
    assert_eq!(n.propose(2, b"x"), Err(Error::ProposalDropped));
}

#[test]
fn follower_answers_stale_appends_with_its_commit_index() {
    let mut r = Raft::new(config(2), store_with(&[1, 1, 1], 2)).unwrap();
    r.raft_log.commit_to(3);
    let mut app = msg(MessageType::MsgApp, 1, 2, 2);
    app.index = 2;
    app.log_term = 1;
    r.step(app).unwrap();
    let resp = &r.msgs_after_persist[0];
    assert_eq!((resp.reject, resp.index), (false, 3));
}

#[test]
fn heartbeats_never_advertise_a_commit_beyond_the_followers_match() {
    // A follower must not commit an index it may not hold (etcd's TestBcastBeat).
    let mut r = leader(|_| {});
    for i in 0..3 {
        propose(&mut r, &[i]).unwrap();
    }
    r.on_persisted(5, r.term);
    let mut ack = msg(MessageType::MsgAppResp, 2, 1, r.term);
    ack.index = r.raft_log.last_index();
    r.step(ack).unwrap();
    let committed = r.raft_log.committed;
    assert_eq!(committed, 5);
    r.msgs.clear();
    r.step(msg(MessageType::MsgBeat, 1, 1, 0)).unwrap();
    let commits: Vec<(u64, u64)> = r
        .msgs
        .iter()
        .filter(|m| m.r#type() == MessageType::MsgHeartbeat)
        .map(|m| (m.to, m.commit))
        .collect();
    assert_eq!(commits, vec![(2, 5), (3, 0)]);
}

#[test]
fn leader_steps_down_on_a_response_from_a_higher_term() {
    let mut r = leader(|_| {});
    let term = r.term;
    r.step(msg(MessageType::MsgAppResp, 2, 1, term + 3))
        .unwrap();
    assert_eq!(
        (r.state, r.term, r.lead),
        (StateRole::Follower, term + 3, 0)
    );
}

#[test]
fn unreachable_follower_falls_back_to_probing() {
    let mut r = leader(|_| {});
    let mut ack = msg(MessageType::MsgAppResp, 2, 1, r.term);
    ack.index = 2;
    r.step(ack).unwrap();
    assert_eq!(r.prs.progress[&2].state, ProgressState::Replicate);
    r.step(msg(MessageType::MsgUnreachable, 2, 1, 0)).unwrap();
    assert_eq!(r.prs.progress[&2].state, ProgressState::Probe);
}

#[test]
fn stale_leader_is_told_the_current_term() {
    // With CheckQuorum or PreVote a partitioned old leader may never see a higher-term
    // vote request, so appends from it are answered to make it step down.
    let mut r = Raft::new(config(2), store_with(&[], 5)).unwrap();
    let mut app = msg(MessageType::MsgApp, 1, 2, 3);
    app.index = 1;
    app.log_term = 1;
    r.step(app).unwrap();
    let resp = &r.msgs_after_persist[0];
    assert_eq!(
        (resp.r#type(), resp.term, resp.to),
        (MessageType::MsgAppResp, 5, 1)
    );
    assert_eq!(r.term, 5);
}
