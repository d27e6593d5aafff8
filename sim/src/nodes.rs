//! Simulated machines: one madsim node and one SimDisk per member, and the faults a
//! schedule applies to them (partition, power cut with restart).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};

use detcd::runtime::SimDisk;
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use madsim::task::NodeId;

/// The address of member `i` (0-based).
pub fn member_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1))
}

/// The members' machines. A node's `run` starts again on the same disk after a power cut.
pub struct Nodes {
    nodes: Vec<NodeHandle>,
    disks: Vec<SimDisk>,
}

impl Nodes {
    /// Starts `size` nodes running `run(i, disk)`; call inside a madsim runtime. Each
    /// disk's faults are seeded from `seed` and the member's position.
    pub fn start<F, Fut>(size: usize, seed: u64, run: F) -> Nodes
    where
        F: Fn(usize, SimDisk) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handle = Handle::current();
        let mut nodes = Vec::new();
        let mut disks = Vec::new();
        for i in 0..size {
            let disk = SimDisk::new(seed.wrapping_mul(31).wrapping_add(i as u64 + 1));
            let (run, node_disk) = (run.clone(), disk.clone());
            let node = handle
                .create_node()
                .name(format!("member-{}", i + 1))
                .ip(member_ip(i))
                .init(move || run(i, node_disk.clone()))
                .build();
            nodes.push(node);
            disks.push(disk);
        }
        Nodes { nodes, disks }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Cuts member `i` off the other members, both ways; clients still reach it, so a
    /// member that wrongly serves alone is seen doing so.
    pub fn isolate(&self, i: usize) {
        self.links_of(i, |net, a, b| net.clog_link(a, b));
    }

    pub fn heal(&self, i: usize) {
        self.links_of(i, |net, a, b| net.unclog_link(a, b));
    }

    /// Applies `f` to each link, in both directions, between member `i` and the others.
    fn links_of(&self, i: usize, f: impl Fn(&NetSim, NodeId, NodeId)) {
        let net = NetSim::current();
        let me = self.nodes[i].id();
        for (_, other) in self.nodes.iter().enumerate().filter(|(j, _)| *j != i) {
            f(&net, me, other.id());
            f(&net, other.id(), me);
        }
    }

    /// Power failure of member `i`: its process dies, its disk loses what was not synced,
    /// and it boots again from what survived.
    pub fn power_cut(&self, i: usize) {
        Handle::current().kill(self.nodes[i].id());
        self.disks[i].crash();
        Handle::current().restart(self.nodes[i].id());
    }

    /// The disk of member `i`, to look at what it holds.
    pub fn disk(&self, i: usize) -> &SimDisk {
        &self.disks[i]
    }

    /// Hash of every disk operation of every member.
    pub fn disk_trace(&self) -> Vec<u64> {
        self.disks.iter().map(SimDisk::trace_hash).collect()
    }
}
