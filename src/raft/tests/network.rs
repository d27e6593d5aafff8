//! An in-test cluster that delivers messages synchronously (etcd's `network`), used by
//! the message-level scenario tests.

use crate::proto::raftpb::{ConfState, Entry, Message, MessageType};
use crate::raft::{conf_change_of, Config, MemStorage, RawNode, ReadState, Ready, StateRole};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub fn config(id: u64) -> Config {
    Config::new(id)
}

/// Handles one Ready the way the module doc prescribes; returns the messages to send
/// (immediate ones first) and the applied normal entries.
pub fn handle_ready(node: &mut RawNode<MemStorage>, mut rd: Ready) -> (Vec<Message>, Vec<Entry>) {
    let mut out = std::mem::take(&mut rd.messages);
    let store = node.store_mut();
    if let Some(s) = rd.snapshot.clone() {
        store.apply_snapshot(s).expect("snapshot is newer");
    }
    store.append(&rd.entries);
    if let Some(hs) = &rd.hard_state {
        store.set_hard_state(*hs);
    }
    out.append(&mut rd.persisted_messages);
    let mut applied = Vec::new();
    for e in &rd.committed_entries {
        match conf_change_of(e) {
            Some(cc) => {
                node.apply_conf_change(&cc).expect("valid conf change");
            }
            None if !e.data.is_empty() => applied.push(e.clone()),
            None => {}
        }
    }
    node.advance(rd);
    (out, applied)
}

pub struct Network {
    pub nodes: BTreeMap<u64, RawNode<MemStorage>>,
    /// Directed links that drop everything.
    cut: BTreeSet<(u64, u64)>,
    ignored: BTreeSet<i32>,
    pub applied: BTreeMap<u64, Vec<Entry>>,
    pub read_states: BTreeMap<u64, Vec<ReadState>>,
    /// Every message delivered, for tests that count round trips.
    pub delivered: Vec<Message>,
}

impl Network {
    pub fn new(ids: &[u64]) -> Self {
        Self::with(ids, &[], |_| {})
    }

    /// Voters `ids` and learners `learners`, with `tweak` applied to each config.
    pub fn with(ids: &[u64], learners: &[u64], tweak: impl Fn(&mut Config)) -> Self {
        let store = MemStorage::new_with_conf_state(ConfState {
            voters: ids.to_vec(),
            learners: learners.to_vec(),
            ..ConfState::default()
        });
        let mut nodes = BTreeMap::new();
        for &id in ids.iter().chain(learners) {
            let mut c = config(id);
            tweak(&mut c);
            nodes.insert(id, RawNode::new(c, store.clone()).unwrap());
        }
        Self {
            nodes,
            cut: BTreeSet::new(),
            ignored: BTreeSet::new(),
            applied: BTreeMap::new(),
            read_states: BTreeMap::new(),
            delivered: Vec::new(),
        }
    }

    pub fn node(&mut self, id: u64) -> &mut RawNode<MemStorage> {
        self.nodes.get_mut(&id).unwrap()
    }

    pub fn state(&self, id: u64) -> StateRole {
        self.nodes[&id].raft.state
    }

    pub fn term(&self, id: u64) -> u64 {
        self.nodes[&id].raft.term
    }

    pub fn committed(&self, id: u64) -> u64 {
        self.nodes[&id].raft.raft_log.committed
    }

    /// Drains `id`'s Ready until there is none.
    pub fn process(&mut self, id: u64) -> Vec<Message> {
        let mut out = Vec::new();
        let node = self.nodes.get_mut(&id).unwrap();
        while node.has_ready() {
            let mut rd = node.ready();
            let reads = std::mem::take(&mut rd.read_states);
            self.read_states.entry(id).or_default().extend(reads);
            let (msgs, applied) = handle_ready(node, rd);
            out.extend(msgs);
            self.applied.entry(id).or_default().extend(applied);
        }
        out
    }

    /// Delivers `msgs` and everything they cause until the network is quiet.
    pub fn send(&mut self, msgs: Vec<Message>) {
        let mut queue: VecDeque<Message> = msgs.into();
        while let Some(m) = queue.pop_front() {
            if self.cut.contains(&(m.from, m.to))
                || self.ignored.contains(&m.r#type)
                || !self.nodes.contains_key(&m.to)
            {
                continue;
            }
            let (to, from) = (m.to, m.from);
            let is_snap = m.r#type() == MessageType::MsgSnap;
            self.delivered.push(m.clone());
            if let Err(crate::raft::Error::Rejected(r)) = self.node(to).step(m.clone()) {
                panic!("an honest message was rejected ({r}): {m:?}");
            }
            queue.extend(self.process(to));
            if is_snap {
                self.node(from)
                    .report_snapshot(to, crate::raft::SnapshotStatus::Finish);
                queue.extend(self.process(from));
            }
        }
    }

    pub fn flush(&mut self, id: u64) {
        let msgs = self.process(id);
        self.send(msgs);
    }

    pub fn campaign(&mut self, id: u64) {
        let _ = self.node(id).campaign();
        self.flush(id);
    }

    pub fn propose(&mut self, id: u64, data: &[u8]) -> Result<(), crate::raft::Error> {
        let r = self.node(id).propose(data.to_vec());
        self.flush(id);
        r
    }

    /// Ticks every node `n` times, delivering messages after each round.
    pub fn tick_all(&mut self, n: usize) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for _ in 0..n {
            for &id in &ids {
                self.node(id).tick();
            }
            for &id in &ids {
                self.flush(id);
            }
        }
    }

    pub fn cut(&mut self, a: u64, b: u64) {
        self.cut.insert((a, b));
        self.cut.insert((b, a));
    }

    pub fn isolate(&mut self, id: u64) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for other in ids.into_iter().filter(|&o| o != id) {
            self.cut(id, other);
        }
    }

    /// Splits the members into groups that cannot talk to each other.
    pub fn partition(&mut self, groups: &[&[u64]]) {
        for (i, g) in groups.iter().enumerate() {
            for h in &groups[i + 1..] {
                for &a in g.iter() {
                    for &b in h.iter() {
                        self.cut(a, b);
                    }
                }
            }
        }
    }

    pub fn ignore(&mut self, t: MessageType) {
        self.ignored.insert(t as i32);
    }

    pub fn recover(&mut self) {
        self.recover_links();
        self.ignored.clear();
    }

    /// Heals partitions but keeps ignoring message types.
    pub fn recover_links(&mut self) {
        self.cut.clear();
    }

    pub fn leaders(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.raft.state == StateRole::Leader)
            .map(|(&id, _)| id)
            .collect()
    }
}
