//! Message-level scenario tests in the style of etcd's raft_test, and the randomized
//! cluster simulation.

use crate::proto::raftpb::Entry;

/// An empty entry at `(index, term)`.
pub fn ent(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Entry::default()
    }
}

mod election;
mod hostile;
mod membership;
pub(crate) mod network;
mod prevote;
mod read_index;
mod ready;
mod replication;
mod sim;
mod sim_member;
mod snapshot;
mod transfer;
mod wal_restart;
