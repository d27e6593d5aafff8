//! Message-level scenario tests in the style of etcd's raft_test, and the randomized
//! cluster simulation.

mod election;
mod membership;
mod network;
mod prevote;
mod read_index;
mod replication;
mod sim;
mod sim_member;
mod snapshot;
mod transfer;
