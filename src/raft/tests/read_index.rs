//! Linearizable reads (thesis 6.4): ReadIndex with a heartbeat round, reads through
//! followers, and the lease-based variant (thesis 6.4.1).

use super::network::{config, Network};
use super::replication::msg;
use crate::proto::raftpb::{Entry, MessageType};
use crate::raft::{MemStorage, Raft, ReadOnlyOption};

fn leader_network(tweak: impl Fn(&mut crate::raft::Config)) -> Network {
    let mut n = Network::with(&[1, 2, 3], &[], tweak);
    n.campaign(1);
    n.propose(1, b"x").unwrap();
    n
}

#[test]
fn leader_answers_a_read_only_after_a_quorum_confirms_it() {
    let mut n = leader_network(|_| {});
    n.ignore(MessageType::MsgHeartbeatResp);
    n.node(1).read_index(b"r1".to_vec()).unwrap();
    n.flush(1);
    assert!(n.read_states[&1].is_empty(), "no heartbeat acks, no read");
    n.recover();
    n.node(1).read_index(b"r2".to_vec()).unwrap();
    n.flush(1);
    let rs = &n.read_states[&1];
    // The second round also confirms the first read, which was queued before it.
    let ctxs: Vec<&[u8]> = rs.iter().map(|r| r.request_ctx.as_slice()).collect();
    assert_eq!(ctxs, vec![&b"r1"[..], b"r2"]);
    assert!(rs.iter().all(|r| r.index == n.committed(1)));
}

#[test]
fn follower_reads_through_the_leader() {
    let mut n = leader_network(|_| {});
    n.node(2).read_index(b"f".to_vec()).unwrap();
    n.flush(2);
    let rs = &n.read_states[&2];
    assert_eq!(rs.len(), 1);
    assert_eq!(
        (rs[0].index, rs[0].request_ctx.as_slice()),
        (n.committed(1), &b"f"[..])
    );
}

#[test]
fn isolated_leader_cannot_serve_reads() {
    let mut n = leader_network(|_| {});
    n.isolate(1);
    n.node(1).read_index(b"stale".to_vec()).unwrap();
    n.flush(1);
    n.tick_all(20);
    assert!(n.read_states[&1].is_empty());
}

#[test]
fn reads_wait_for_the_first_commit_of_the_leaders_term() {
    // Thesis 6.4 step 1: a new leader may not know the commit index until it commits
    // an entry of its own term.
    let mut r = Raft::new(config(1), MemStorage::new_with_voters(&[1, 2, 3])).unwrap();
    r.become_candidate();
    r.become_leader();
    let mut read = msg(MessageType::MsgReadIndex, 0, 1, 0);
    read.entries = vec![Entry {
        data: b"early".to_vec(),
        ..Entry::default()
    }];
    r.step(read).unwrap();
    assert!(r.read_states.is_empty());
    assert!(
        r.msgs
            .iter()
            .all(|m| m.r#type() != MessageType::MsgHeartbeat),
        "no read round before the first commit"
    );
    r.on_persisted(2, r.term);
    let mut ack = msg(MessageType::MsgAppResp, 2, 1, r.term);
    ack.index = 2;
    r.step(ack).unwrap();
    assert_eq!(r.raft_log.committed, 2);
    let hb = r
        .msgs
        .iter()
        .find(|m| m.r#type() == MessageType::MsgHeartbeat && m.to == 2)
        .expect("the read round starts once committed");
    let mut resp = msg(MessageType::MsgHeartbeatResp, 2, 1, r.term);
    resp.context = hb.context.clone();
    r.step(resp).unwrap();
    assert_eq!(r.read_states.len(), 1);
    assert_eq!(r.read_states[0].index, 2);
}

#[test]
fn pending_reads_are_bounded() {
    let mut n = leader_network(|c| c.max_pending_reads = 2);
    n.isolate(1);
    n.node(1).read_index(b"a".to_vec()).unwrap();
    n.node(1).read_index(b"b".to_vec()).unwrap();
    assert_eq!(
        n.node(1).read_index(b"c".to_vec()),
        Err(crate::raft::Error::ReadIndexDropped)
    );
}

#[test]
fn lease_based_reads_skip_the_heartbeat_round_and_need_check_quorum() {
    let mut n = leader_network(|c| c.read_only_option = ReadOnlyOption::LeaseBased);
    n.ignore(MessageType::MsgHeartbeatResp);
    n.node(1).read_index(b"lease".to_vec()).unwrap();
    n.flush(1);
    assert_eq!(n.read_states[&1].len(), 1);

    let mut c = config(1);
    c.read_only_option = ReadOnlyOption::LeaseBased;
    c.check_quorum = false;
    assert!(
        c.validate().is_err(),
        "a lease is only as good as CheckQuorum"
    );
}
