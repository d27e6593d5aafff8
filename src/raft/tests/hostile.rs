//! No panic is reachable from peer input: a member of a three-member cluster is fed
//! arbitrary messages (every type, local ones and unknown ones included, with fields near
//! the edges: zero, `u64::MAX`, the index cap) and honest messages with one field mutated
//! (an append with a gap, a heartbeat committing past the log, an acknowledgement of an
//! entry the leader never had, a snapshot of index 0 or without voters, a proposal
//! without entries), between honest traffic and ticks. After every step each member's
//! log invariants hold (`applied <= committed <= last index`, commit and term never go
//! back, committed entries never change), and a rejected message left the log as it was.

use proptest::prelude::*;
use prost::Message as _;

use super::network::Network;
use super::replication::msg;
use crate::proto::raftpb::{
    ConfChange, ConfState, Entry, Message, MessageType, Snapshot, SnapshotMetadata,
};
use crate::raft::{Error, MemStorage, RawNode, CAMPAIGN_TRANSFER, MAX_INDEX_OR_TERM};

const IDS: [u64; 3] = [1, 2, 3];

fn arb_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0..16u64,
        1 => Just(u64::MAX),
        1 => Just(MAX_INDEX_OR_TERM),
        1 => Just(MAX_INDEX_OR_TERM + 1),
        1 => any::<u64>(),
    ]
}

fn arb_id() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 0..6u64, 1 => Just(u64::MAX)]
}

fn arb_entry() -> impl Strategy<Value = Entry> {
    let conf_change = (0..5i32, arb_id()).prop_map(|(t, node_id)| {
        ConfChange {
            r#type: t,
            node_id,
            ..ConfChange::default()
        }
        .encode_to_vec()
    });
    let data = prop_oneof![proptest::collection::vec(any::<u8>(), 0..12), conf_change];
    (arb_u64(), arb_u64(), 0..4i32, data).prop_map(|(index, term, t, data)| Entry {
        index,
        term,
        r#type: t,
        data,
    })
}

fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
    let ids = || proptest::collection::vec(arb_id(), 0..4);
    let cs = (ids(), ids(), ids(), ids(), any::<bool>()).prop_map(
        |(voters, learners, voters_outgoing, learners_next, auto_leave)| ConfState {
            voters,
            learners,
            voters_outgoing,
            learners_next,
            auto_leave,
        },
    );
    let meta =
        (arb_u64(), arb_u64(), proptest::option::of(cs)).prop_map(|(index, term, conf_state)| {
            SnapshotMetadata {
                conf_state,
                index,
                term,
            }
        });
    proptest::option::of(meta).prop_map(|metadata| Snapshot {
        data: Vec::new(),
        metadata,
    })
}

/// Any message at all; `to` is the target's ID most of the time, and with `chain` the
/// entries follow `index` so that an append gets past the shape checks.
fn arb_message() -> impl Strategy<Value = Message> {
    let header = (
        -1..21i32,
        arb_id(),
        arb_u64(),
        arb_u64(),
        arb_u64(),
        arb_u64(),
    );
    let body = (
        proptest::collection::vec(arb_entry(), 0..5),
        any::<bool>(),
        arb_u64(),
        proptest::option::of(arb_snapshot()),
        prop_oneof![
            Just(Vec::new()),
            Just(CAMPAIGN_TRANSFER.to_vec()),
            Just(vec![1; 16])
        ],
        any::<bool>(),
    );
    (header, body).prop_map(
        |(
            (t, from, term, log_term, index, commit),
            (entries, reject, hint, snapshot, ctx, chain),
        )| {
            let mut m = Message {
                r#type: t,
                from,
                term,
                log_term,
                index,
                commit,
                entries,
                reject,
                reject_hint: hint,
                snapshot,
                context: ctx,
                ..Message::default()
            };
            if chain {
                let mut term = m.log_term;
                for (i, e) in m.entries.iter_mut().enumerate() {
                    e.index = m.index.wrapping_add(1 + i as u64);
                    term = term.max(e.term.min(m.term));
                    e.term = term;
                }
            }
            m
        },
    )
}

/// One field of an honest message replaced.
#[derive(Debug, Clone)]
enum Mutation {
    Term(u64),
    Index(u64),
    LogTerm(u64),
    Commit(u64),
    From(u64),
    Reject(bool),
    DropEntries,
    EntryIndex(usize, u64),
    EntryTerm(usize, u64),
    SnapshotIndex(u64),
    Type(i32),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        arb_u64().prop_map(Mutation::Term),
        arb_u64().prop_map(Mutation::Index),
        arb_u64().prop_map(Mutation::LogTerm),
        arb_u64().prop_map(Mutation::Commit),
        arb_id().prop_map(Mutation::From),
        any::<bool>().prop_map(Mutation::Reject),
        Just(Mutation::DropEntries),
        (0..4usize, arb_u64()).prop_map(|(i, v)| Mutation::EntryIndex(i, v)),
        (0..4usize, arb_u64()).prop_map(|(i, v)| Mutation::EntryTerm(i, v)),
        arb_u64().prop_map(Mutation::SnapshotIndex),
        (-1..21i32).prop_map(Mutation::Type),
    ]
}

fn mutate(m: &mut Message, mutation: Mutation) {
    match mutation {
        Mutation::Term(v) => m.term = v,
        Mutation::Index(v) => m.index = v,
        Mutation::LogTerm(v) => m.log_term = v,
        Mutation::Commit(v) => m.commit = v,
        Mutation::From(v) => m.from = v,
        Mutation::Reject(v) => m.reject = v,
        Mutation::DropEntries => m.entries.clear(),
        Mutation::EntryIndex(i, v) => {
            if let Some(e) = m.entries.get_mut(i) {
                e.index = v;
            }
        }
        Mutation::EntryTerm(i, v) => {
            if let Some(e) = m.entries.get_mut(i) {
                e.term = v;
            }
        }
        Mutation::SnapshotIndex(v) => {
            let s = m.snapshot.get_or_insert_with(Snapshot::default);
            s.metadata
                .get_or_insert_with(SnapshotMetadata::default)
                .index = v;
        }
        Mutation::Type(t) => m.r#type = t,
    }
}

#[derive(Debug, Clone)]
enum Action {
    /// An arbitrary message to a member (index into [`IDS`]).
    Arbitrary(usize, Box<Message>),
    /// An honest message seen earlier, mutated and delivered again.
    Mutated(usize, Mutation),
    Tick(u8),
    Propose(u8),
}

fn arb_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0..3usize, arb_message()).prop_map(|(i, m)| Action::Arbitrary(i, Box::new(m))),
        4 => (any::<usize>(), arb_mutation()).prop_map(|(i, m)| Action::Mutated(i, m)),
        1 => (1..12u8).prop_map(Action::Tick),
        1 => any::<u8>().prop_map(Action::Propose),
    ]
}

/// What a member's log looked like, to compare after a step.
#[derive(Debug, PartialEq)]
struct LogView {
    term: u64,
    committed: u64,
    applied: u64,
    last: u64,
    /// Terms of the committed entries still in the log.
    committed_terms: Vec<u64>,
}

fn view(node: &RawNode<MemStorage>) -> LogView {
    let r = &node.raft;
    let log = &r.raft_log;
    let first = log.first_index();
    let committed_terms = (first..=log.committed)
        .map(|i| {
            log.term(i)
                .expect("committed entries after the first index are held")
        })
        .collect();
    LogView {
        term: r.term,
        committed: log.committed,
        applied: log.applied,
        last: log.last_index(),
        committed_terms,
    }
}

/// The invariants that hold from `before` to `after` whatever the member was sent.
fn check_progress(id: u64, before: &LogView, after: &LogView) {
    assert!(
        after.applied <= after.committed && after.committed <= after.last,
        "member {id}: applied {} committed {} last {}",
        after.applied,
        after.committed,
        after.last
    );
    assert!(after.term >= before.term, "member {id}: the term went back");
    assert!(
        after.committed >= before.committed,
        "member {id}: the commit went back"
    );
    // A snapshot may compact the entries away, but a held committed entry never changes.
    let shift = (after.committed - after.committed_terms.len() as u64)
        .saturating_sub(before.committed - before.committed_terms.len() as u64);
    for (i, t) in before
        .committed_terms
        .iter()
        .enumerate()
        .skip(shift as usize)
    {
        if let Some(now) = after.committed_terms.get(i - shift as usize) {
            assert_eq!(now, t, "member {id}: a committed entry changed");
        }
    }
}

/// Delivers `msgs` and what they cause, ignoring every refusal: once a member has been
/// fed lies, honest members may see messages that do not fit their logs.
fn deliver(n: &mut Network, msgs: Vec<Message>) {
    let mut queue: std::collections::VecDeque<Message> = msgs.into();
    let mut budget = 2_000;
    while let Some(m) = queue.pop_front() {
        budget -= 1;
        if budget == 0 || !n.nodes.contains_key(&m.to) {
            continue;
        }
        let to = m.to;
        let before = view(&n.nodes[&to]);
        let _ = n.node(to).step(m);
        queue.extend(n.process(to));
        check_progress(to, &before, &view(&n.nodes[&to]));
    }
}

fn run(actions: Vec<Action>) {
    let mut n = Network::new(&IDS);
    n.campaign(1);
    for i in 0..3u8 {
        n.propose(1, &[i]).unwrap();
    }
    let mut seen: Vec<Message> = n.delivered.clone();
    for action in actions {
        match action {
            Action::Arbitrary(i, mut m) => {
                m.to = IDS[i];
                if m.r#type() == MessageType::MsgApp {
                    // A configuration change a leader appends is trusted like any entry
                    // (the leader filtered it when it was proposed); one that cannot be
                    // applied stops the member, as in etcd.
                    m.entries.iter_mut().for_each(|e| e.r#type = 0);
                }
                step_hostile(&mut n, *m);
            }
            Action::Mutated(i, mutation) => {
                let mut m = seen[i % seen.len()].clone();
                mutate(&mut m, mutation);
                step_hostile(&mut n, m);
            }
            Action::Tick(k) => {
                for _ in 0..k {
                    for id in IDS {
                        n.node(id).tick();
                        let out = n.process(id);
                        deliver(&mut n, out);
                    }
                }
            }
            Action::Propose(b) => {
                if let Some(&leader) = n.leaders().first() {
                    let _ = n.node(leader).propose(vec![b]);
                    let out = n.process(leader);
                    deliver(&mut n, out);
                }
            }
        }
        seen.extend(n.delivered.drain(..).take(64));
    }
}

fn step_hostile(n: &mut Network, m: Message) {
    let to = m.to;
    let Some(node) = n.nodes.get_mut(&to) else {
        return;
    };
    let before = view(node);
    let result = node.step(m);
    let after = view(node);
    if let Err(Error::Rejected(why)) = &result {
        assert_eq!(
            (before.last, before.committed, &before.committed_terms),
            (after.last, after.committed, &after.committed_terms),
            "member {to}: a rejected message ({why}) changed the log"
        );
    }
    check_progress(to, &before, &after);
    let out = n.process(to);
    check_progress(to, &after, &view(&n.nodes[&to]));
    deliver(n, out);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn hostile_messages_never_panic(actions in proptest::collection::vec(arb_action(), 1..24)) {
        run(actions);
    }
}

/// The cases the issue names, each refused rather than panicking.
#[test]
fn named_malformed_messages_are_rejected() {
    let leader = |n: &mut Network| {
        n.campaign(1);
        n.propose(1, b"x").unwrap();
    };
    let mut n = Network::new(&IDS);
    leader(&mut n);
    let term = n.term(1);
    let rejected = |r: Result<(), Error>| matches!(r, Err(Error::Rejected(_)));

    // A proposal without entries to the leader.
    assert!(rejected(n.node(1).step(msg(MessageType::MsgProp, 2, 1, 0))));
    // A heartbeat committing u64::MAX, and one committing just past the log.
    let mut hb = msg(MessageType::MsgHeartbeat, 1, 2, term);
    hb.commit = u64::MAX;
    assert!(rejected(n.node(2).step(hb.clone())));
    hb.commit = n.nodes[&2].raft.raft_log.last_index() + 1;
    assert!(rejected(n.node(2).step(hb)));
    // An append whose entries skip an index, and one whose entry is older than its log term.
    let mut app = msg(MessageType::MsgApp, 1, 2, term);
    app.index = 1;
    app.log_term = 1;
    app.entries = vec![super::ent(3, term)];
    assert!(rejected(n.node(2).step(app.clone())));
    app.log_term = term;
    app.entries = vec![super::ent(2, term - 1)];
    assert!(rejected(n.node(2).step(app)));
    // A snapshot of index 0.
    let mut snap = msg(MessageType::MsgSnap, 1, 2, term);
    snap.snapshot = Some(Snapshot::default());
    assert!(rejected(n.node(2).step(snap)));
    // An acknowledgement of an entry the leader does not have.
    let mut ack = msg(MessageType::MsgAppResp, 2, 1, term);
    ack.index = 1000;
    assert!(rejected(n.node(1).step(ack)));
    // A vote answer from a member nobody knows.
    assert_eq!(
        n.node(1).step(msg(MessageType::MsgVoteResp, 9, 1, term)),
        Err(Error::StepPeerNotFound)
    );
    // Nothing of it stopped the cluster.
    n.propose(1, b"y").unwrap();
    assert_eq!(n.committed(2), n.committed(1));
}
