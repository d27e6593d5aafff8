//! Simulated machines: one madsim node and one SimDisk per member, and the faults a
//! schedule applies to them: partitions of any shape, one-way loss, kill, power loss,
//! restart, pause, and slow fsync or a pause at a crash point (a stall of the whole
//! machine).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use detcd::runtime::SimDisk;
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use madsim::task::NodeId;

/// Panics that restart a member after a delay, as a supervisor restarts etcd: the backend
/// gives up on a disk error by panicking, as etcd's does.
const RESTART_ON_PANIC: &[&str] = &["backend failed", "backend commit failed"];

/// The address of member `i` (0-based).
pub fn member_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1))
}

/// What a member's machine runs: `(position, disk)` to the member's whole life.
pub type Boot<Fut> = Arc<dyn Fn(usize, SimDisk) -> Fut + Send + Sync>;

/// The members' machines. A node's `run` starts again on the same disk after a restart.
pub struct Nodes {
    nodes: Vec<NodeHandle>,
    disks: Vec<SimDisk>,
    /// Runs the timers that end disk stalls; never paused.
    stall_timer: NodeHandle,
    seed: u64,
}

impl Nodes {
    /// Starts `size` nodes running `run(i, disk)`; call inside a madsim runtime. Each
    /// disk's faults are seeded from `seed` and the member's position.
    pub fn start<F, Fut>(size: usize, seed: u64, run: F) -> Nodes
    where
        F: Fn(usize, SimDisk) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stall_timer = Handle::current()
            .create_node()
            .name("disk-stalls")
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 3, 1)))
            .build();
        let mut nodes = Nodes {
            nodes: Vec::new(),
            disks: Vec::new(),
            stall_timer,
            seed,
        };
        let run: Boot<Fut> = Arc::new(run);
        for _ in 0..size {
            nodes.add(run.clone());
        }
        nodes
    }

    /// Starts one more machine at the next position, running `run`.
    pub fn add<Fut>(&mut self, run: Boot<Fut>) -> usize
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let i = self.nodes.len();
        let disk = SimDisk::new(self.seed.wrapping_mul(31).wrapping_add(i as u64 + 1));
        let node_disk = disk.clone();
        let handle = Handle::current();
        let mut builder = handle
            .create_node()
            .name(format!("member-{}", i + 1))
            .ip(member_ip(i))
            .init(move || run(i, node_disk.clone()));
        for m in RESTART_ON_PANIC {
            builder = builder.restart_on_panic_matching(*m);
        }
        let node = builder.build();
        let (id, timer) = (node.id(), self.stall_timer.clone());
        disk.on_stall(move |delay| {
            Handle::current().pause(id);
            timer.spawn(async move {
                tokio::time::sleep(delay).await;
                Handle::current().resume(id);
            });
        });
        self.nodes.push(node);
        self.disks.push(disk);
        i
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The disk of member `i`, to look at what it holds.
    pub fn disk(&self, i: usize) -> &SimDisk {
        &self.disks[i]
    }

    /// Cuts member `i` off the other members, both ways; clients still reach it, so a
    /// member that wrongly serves alone is seen doing so.
    pub fn isolate(&self, i: usize) {
        self.links_of(i, |net, a, b| net.clog_link(a, b));
    }

    pub fn heal(&self, i: usize) {
        self.links_of(i, |net, a, b| net.unclog_link(a, b));
    }

    /// Cuts every link between members of different groups; members in no group are
    /// alone.
    pub fn partition(&self, groups: &[Vec<usize>]) {
        let group_of = |i: usize| groups.iter().position(|g| g.contains(&i));
        let net = NetSim::current();
        for a in 0..self.len() {
            for b in 0..self.len() {
                let apart = a != b && (group_of(a).is_none() || group_of(a) != group_of(b));
                if apart {
                    net.clog_link(self.nodes[a].id(), self.nodes[b].id());
                }
            }
        }
    }

    /// Drops everything member `from` sends to member `to`.
    pub fn one_way(&self, from: usize, to: usize) {
        NetSim::current().clog_link(self.nodes[from].id(), self.nodes[to].id());
    }

    /// Restores every link between members, with no loss and the default latency.
    pub fn heal_all(&self) {
        let net = NetSim::current();
        for a in &self.nodes {
            for b in &self.nodes {
                net.unclog_link(a.id(), b.id());
            }
        }
        net.update_config(|c| *c = madsim::net::Config::default());
    }

    /// Drops each packet, anywhere, with probability `rate`.
    pub fn loss(&self, rate: f64) {
        NetSim::current().update_config(|c| c.packet_loss_rate = rate);
    }

    /// Delivers each packet after a latency drawn from `range`.
    pub fn delay(&self, range: std::ops::Range<Duration>) {
        NetSim::current().update_config(|c| c.send_latency = range);
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

    /// The process dies; its writes stay in the page cache.
    pub fn kill(&self, i: usize) {
        Handle::current().kill(self.nodes[i].id());
        self.disks[i].process_died();
    }

    /// The machine loses power: the process dies and the disk loses what was not synced.
    pub fn power_loss(&self, i: usize) {
        Handle::current().kill(self.nodes[i].id());
        self.disks[i].crash();
    }

    /// Boots member `i` again from its disk. A kill first: madsim's restart alone keeps
    /// the old incarnation's sockets bound, so a member that stopped by itself (its
    /// listeners still open) could not listen again.
    pub fn restart(&self, i: usize) {
        Handle::current().kill(self.nodes[i].id());
        Handle::current().restart(self.nodes[i].id());
    }

    /// Power failure of member `i`, then restart from its disk.
    pub fn power_cut(&self, i: usize) {
        self.power_loss(i);
        self.restart(i);
    }

    pub fn pause(&self, i: usize) {
        Handle::current().pause(self.nodes[i].id());
    }

    pub fn resume(&self, i: usize) {
        Handle::current().resume(self.nodes[i].id());
    }

    /// Hash of every disk operation of every member.
    pub fn disk_trace(&self) -> Vec<u64> {
        self.disks.iter().map(SimDisk::trace_hash).collect()
    }
}
