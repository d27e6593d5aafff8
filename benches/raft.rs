//! Throughput of the pure Raft state machine: proposals committed per second in a
//! 3-member in-memory cluster (MemStorage, synchronous message delivery, no I/O), for
//! 128-byte proposals submitted in batches of 1, 16 and 256 between Ready rounds.
//!
//! Run: `cargo bench --bench raft` (`DETCD_BENCH_SECONDS` sets the time per case,
//! default 2).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use detcd::proto::raftpb::Message;
use detcd::raft::{Config, MemStorage, RawNode, Storage};

const PROPOSAL_BYTES: usize = 128;
const BATCHES: &[usize] = &[1, 16, 256];

struct Cluster {
    nodes: BTreeMap<u64, RawNode<MemStorage>>,
    /// Entries applied by the leader.
    applied: u64,
}

impl Cluster {
    fn new() -> Self {
        let ids = [1, 2, 3];
        let store = MemStorage::new_with_voters(&ids);
        let nodes = ids
            .iter()
            .map(|&id| (id, RawNode::new(Config::new(id), store.clone()).unwrap()))
            .collect();
        let mut c = Self { nodes, applied: 0 };
        c.nodes.get_mut(&1).unwrap().campaign().unwrap();
        c.run(1);
        c
    }

    /// Handles Readies and delivers messages until the cluster is quiet.
    fn run(&mut self, start: u64) {
        let mut queue: VecDeque<Message> = self.process(start).into();
        while let Some(m) = queue.pop_front() {
            let to = m.to;
            let _ = self.nodes.get_mut(&to).unwrap().step(m);
            queue.extend(self.process(to));
        }
    }

    fn process(&mut self, id: u64) -> Vec<Message> {
        let node = self.nodes.get_mut(&id).unwrap();
        let mut out = Vec::new();
        while node.has_ready() {
            let mut rd = node.ready();
            out.append(&mut rd.messages);
            let store = node.store_mut();
            store.append(&rd.entries);
            if let Some(hs) = rd.hard_state {
                store.set_hard_state(hs);
            }
            out.append(&mut rd.persisted_messages);
            let applied = rd.committed_entries.last().map(|e| e.index);
            if id == 1 {
                self.applied += rd.committed_entries.len() as u64;
            }
            node.advance(rd);
            // Keep memory bounded like a real deployment compacting its log.
            if let Some(idx) = applied.filter(|i| i % 4096 == 0) {
                let cs = node.raft.prs.conf_state();
                let store = node.store_mut();
                store.create_snapshot(idx, cs, Vec::new()).unwrap();
                store.compact(idx).unwrap();
            }
        }
        out
    }
}

fn case(batch: usize, budget: Duration) -> f64 {
    let mut c = Cluster::new();
    let data = vec![7u8; PROPOSAL_BYTES];
    let base = c.applied;
    let start = Instant::now();
    let mut proposed = 0u64;
    while start.elapsed() < budget {
        for _ in 0..batch {
            c.nodes.get_mut(&1).unwrap().propose(data.clone()).unwrap();
        }
        proposed += batch as u64;
        c.run(1);
    }
    let elapsed = start.elapsed();
    let committed = c.applied - base;
    assert!(
        committed >= proposed,
        "committed {committed} of {proposed} proposals"
    );
    let last = c.nodes[&3].store().last_index().unwrap();
    assert!(last >= proposed, "follower log is behind");
    committed as f64 / elapsed.as_secs_f64()
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs each case briefly.
    let full_run = std::env::args().any(|a| a == "--bench");
    let from_env = std::env::var("DETCD_BENCH_SECONDS").ok();
    let seconds = from_env.and_then(|s| s.parse::<f64>().ok());
    let budget = Duration::from_secs_f64(seconds.unwrap_or(if full_run { 2.0 } else { 0.05 }));
    println!("raft: 3 members, in-memory, {PROPOSAL_BYTES}-byte proposals");
    for &batch in BATCHES {
        let rate = case(batch, budget);
        println!("  batch {batch:>4}: {rate:>12.0} proposals committed/s");
    }
}
