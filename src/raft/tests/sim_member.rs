//! One simulated member: its RawNode (absent while crashed), durable storage, and a
//! state machine reduced to a digest of everything applied.

use super::sim::Global;
use crate::proto::raftpb::{ConfState, Entry, HardState, Message};
use crate::raft::{
    conf_change_of, enters_joint, leaves_joint, Config, MemStorage, RawNode, ReadState, StateRole,
    Storage,
};

pub struct SimConfig {
    pub seed: u64,
    /// Every member's configuration but its id, applied index and seed.
    pub raft: Config,
}

pub struct Member {
    id: u64,
    pub node: Option<RawNode<MemStorage>>,
    /// The durable storage while crashed.
    durable: Option<MemStorage>,
    /// Digest of the state machine and the index it reflects.
    pub sm: u64,
    pub sm_index: u64,
    conf: ConfState,
    durable_hs: HardState,
    restarts: u64,
}

fn mix(h: u64, x: u64) -> u64 {
    (h ^ x).wrapping_mul(0x0100_0000_01b3).rotate_left(23)
}

fn entry_digest(e: &Entry) -> u64 {
    e.data
        .iter()
        .fold(mix(0, e.r#type as u64), |h, &b| mix(h, b as u64))
}

fn snapshot_state(store: &MemStorage) -> (u64, u64, ConfState) {
    let snap = store.snapshot().unwrap();
    let meta = snap.metadata.unwrap_or_default();
    let sm = snap.data.try_into().map_or(0, u64::from_be_bytes);
    (sm, meta.index, meta.conf_state.unwrap_or_default())
}

impl Member {
    pub fn bootstrap(id: u64, voters: &[u64], cfg: &SimConfig) -> Self {
        Self::start(id, MemStorage::new_with_voters(voters), cfg)
    }

    /// A member added later: empty storage, it learns everything from a snapshot.
    pub fn join(id: u64, cfg: &SimConfig) -> Self {
        Self::start(id, MemStorage::new(), cfg)
    }

    fn start(id: u64, store: MemStorage, cfg: &SimConfig) -> Self {
        let mut m = Self {
            id,
            node: None,
            durable: Some(store),
            sm: 0,
            sm_index: 0,
            conf: ConfState::default(),
            durable_hs: HardState::default(),
            restarts: 0,
        };
        m.restart(cfg);
        m
    }

    pub fn crash(&mut self) {
        if let Some(node) = self.node.take() {
            self.durable = Some(node.store().clone());
        }
    }

    /// Restarts from durable state: the state machine comes back from the snapshot.
    pub fn restart(&mut self, cfg: &SimConfig) {
        let store = self.durable.take().expect("restart of a running member");
        let (sm, index, conf) = snapshot_state(&store);
        (self.sm, self.sm_index, self.conf) = (sm, index, conf);
        self.durable_hs = *store.hard_state();
        let mut c = cfg.raft.clone();
        c.id = self.id;
        c.applied = index;
        c.seed = mix(mix(cfg.seed, self.id), self.restarts);
        self.restarts += 1;
        self.node = Some(RawNode::new(c, store).expect("restart from durable state"));
    }

    /// Handles Readies until none is left; with `crash` the member dies right after
    /// sending the messages that need no persistence.
    pub fn process(&mut self, global: &mut Global, crash: bool) -> (Vec<Message>, Vec<ReadState>) {
        let (mut out, mut reads) = (Vec::new(), Vec::new());
        while self.node.as_ref().is_some_and(|n| n.has_ready()) {
            let node = self.node.as_mut().unwrap();
            let mut rd = node.ready();
            out.append(&mut rd.messages);
            if crash {
                global.count("crash mid-ready");
                if node.raft.state == StateRole::Leader && !rd.entries.is_empty() {
                    global.count("leader lost unsynced entries");
                }
                self.crash();
                break;
            }
            let store = node.store_mut();
            if let Some(s) = rd.snapshot.clone() {
                store.apply_snapshot(s).expect("newer snapshot");
            }
            check_log_matching(global, store, &rd.entries);
            store.append(&rd.entries);
            if let Some(hs) = &rd.hard_state {
                check_hard_state(&self.durable_hs, hs);
                store.set_hard_state(*hs);
                self.durable_hs = *hs;
            }
            out.append(&mut rd.persisted_messages);
            if rd.snapshot.is_some() {
                global.count("snapshot installed");
                let (sm, index, conf) = snapshot_state(node.store());
                if let Some(&(_, digest)) = global.applied.get(&index) {
                    assert_eq!(digest, sm, "snapshot at {index} differs from applied state");
                }
                (self.sm, self.sm_index, self.conf) = (sm, index, conf);
            }
            for e in &rd.committed_entries {
                self.apply(global, e);
            }
            reads.append(&mut rd.read_states);
            let node = self.node.as_mut().unwrap();
            node.advance(rd);
            self.maybe_compact();
        }
        (out, reads)
    }

    fn apply(&mut self, global: &mut Global, e: &Entry) {
        assert_eq!(
            e.index,
            self.sm_index + 1,
            "member {} applied {} after {}",
            self.id,
            e.index,
            self.sm_index
        );
        self.sm = mix(self.sm, entry_digest(e));
        self.sm_index = e.index;
        let seen = *global.applied.entry(e.index).or_insert((e.term, self.sm));
        assert_eq!(
            seen,
            (e.term, self.sm),
            "state machine safety: member {} applied a different entry at {}",
            self.id,
            e.index
        );
        let node = self.node.as_mut().unwrap();
        if let Some(cc) = conf_change_of(e) {
            global.count(if leaves_joint(&cc) {
                "joint left"
            } else if enters_joint(&cc).is_some() {
                "joint entered"
            } else {
                "simple change"
            });
            self.conf = node
                .apply_conf_change(&cc)
                .expect("committed conf change applies");
        } else if !e.data.is_empty() {
            global.data_index.entry(e.data.clone()).or_insert(e.index);
        }
    }

    /// Log compaction up to the applied index, keeping the log short enough that
    /// lagging members need snapshots.
    fn maybe_compact(&mut self) {
        let node = self.node.as_mut().unwrap();
        let store = node.store_mut();
        let first = store.first_index().unwrap();
        if self.sm_index < first + 16 {
            return;
        }
        let data = self.sm.to_be_bytes().to_vec();
        store
            .create_snapshot(self.sm_index, self.conf.clone(), data)
            .expect("applied index is past the snapshot");
        store
            .compact(self.sm_index)
            .expect("applied index is past the snapshot");
    }
}

/// Log matching (thesis 3.5): an `(index, term)` identifies the entry and its prefix,
/// checked by recording each entry's digest and its predecessor's term.
fn check_log_matching(global: &mut Global, store: &MemStorage, ents: &[Entry]) {
    let mut prev = ents.first().and_then(|e| store.term(e.index - 1).ok());
    for e in ents {
        let digest = entry_digest(e);
        let slot = global
            .entries
            .entry((e.index, e.term))
            .or_insert((prev, digest));
        assert_eq!(
            slot.1, digest,
            "two different entries at ({}, {})",
            e.index, e.term
        );
        match (slot.0, prev) {
            (Some(a), Some(b)) => assert_eq!(
                a, b,
                "entries at ({}, {}) follow different terms",
                e.index, e.term
            ),
            (None, Some(b)) => slot.0 = Some(b),
            _ => {}
        }
        prev = Some(e.term);
    }
}

/// Durable state never goes back: terms only rise, a vote is never changed within
/// its term, and the commit index only grows.
fn check_hard_state(old: &HardState, new: &HardState) {
    assert!(
        new.term >= old.term,
        "term went back from {} to {}",
        old.term,
        new.term
    );
    if new.term == old.term && old.vote != 0 {
        assert_eq!(new.vote, old.vote, "vote changed within term {}", new.term);
    }
    assert!(
        new.commit >= old.commit,
        "commit went back from {} to {}",
        old.commit,
        new.commit
    );
}
