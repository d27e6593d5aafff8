//! A cluster of real members (Raft, WAL on SimDisk, gRPC peer transport) on madsim nodes,
//! with the controls a fault schedule needs: partition, kill, power cut, restart.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::runtime::{Disk, SimDisk};
use detcd::server::member::{self, MemberConfig, MemberHandle, StateMachine};
use detcd::server::transport::{PeerServer, Transport};
use detcd::wal::WalOptions;
use madsim::net::NetSim;
use madsim::runtime::{Handle, NodeHandle};
use tokio::sync::mpsc;

const PEER_PORT: u16 = 2380;
const CLUSTER_ID: u64 = 0xd37cd;

/// Entries applied by one member, in order, as (index, payload).
pub type AppliedLog = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

/// Records what it applies; answers with the payload's length.
struct Recorder(AppliedLog);

impl StateMachine for Recorder {
    fn apply(&mut self, index: u64, payload: &[u8]) -> Vec<u8> {
        self.0.lock().unwrap().push((index, payload.to_vec()));
        (payload.len() as u64).to_le_bytes().to_vec()
    }
}

fn ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1))
}

/// A running simulated cluster. Member `i` (0-based) has Raft ID `i + 1`.
pub struct SimCluster {
    nodes: Vec<NodeHandle>,
    disks: Vec<SimDisk>,
    members: Arc<Mutex<BTreeMap<u64, MemberHandle>>>,
    applied: Vec<Arc<Mutex<AppliedLog>>>,
}

impl SimCluster {
    /// Starts `size` members; call inside a madsim runtime.
    pub fn start(size: usize, seed: u64) -> SimCluster {
        let handle = Handle::current();
        let voters: Vec<u64> = (1..=size as u64).collect();
        let members = Arc::new(Mutex::new(BTreeMap::new()));
        let mut nodes = Vec::new();
        let mut disks = Vec::new();
        let mut applied = Vec::new();
        for i in 0..size {
            let id = i as u64 + 1;
            let disk = SimDisk::new(seed.wrapping_mul(31).wrapping_add(id));
            let log: Arc<Mutex<AppliedLog>> = Arc::new(Mutex::new(AppliedLog::default()));
            let (disk2, log2, members2, voters2) =
                (disk.clone(), log.clone(), members.clone(), voters.clone());
            let node = handle
                .create_node()
                .name(format!("member-{id}"))
                .ip(ip(i))
                .init(move || {
                    let (disk, log, members, voters) = (
                        disk2.clone(),
                        log2.clone(),
                        members2.clone(),
                        voters2.clone(),
                    );
                    async move { run_member(id, seed, voters, disk, log, members).await }
                })
                .build();
            nodes.push(node);
            disks.push(disk);
            applied.push(log);
        }
        SimCluster {
            nodes,
            disks,
            members,
            applied,
        }
    }

    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// The handle of member `i`, once it has started.
    pub fn member(&self, i: usize) -> Option<MemberHandle> {
        self.members.lock().unwrap().get(&(i as u64 + 1)).cloned()
    }

    /// The leader's Raft ID once every member runs and agrees on it, polling virtual time.
    pub async fn wait_leader(&self, deadline: Duration) -> Option<u64> {
        let start = tokio::time::Instant::now();
        while start.elapsed() < deadline {
            let handles: Vec<MemberHandle> =
                self.members.lock().unwrap().values().cloned().collect();
            let leaders: Vec<u64> = handles.iter().map(|h| h.status().leader).collect();
            let leader = leaders.first().copied().unwrap_or(0);
            if leader != 0 && leaders.len() == self.size() && leaders.iter().all(|&l| l == leader) {
                return Some(leader);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// What member `i` has applied since it last started.
    pub fn applied(&self, i: usize) -> Vec<(u64, Vec<u8>)> {
        self.applied[i].lock().unwrap().lock().unwrap().clone()
    }

    /// Cuts member `i` off the network, both ways.
    pub fn isolate(&self, i: usize) {
        NetSim::current().clog_node(self.nodes[i].id());
    }

    pub fn heal(&self, i: usize) {
        NetSim::current().unclog_node(self.nodes[i].id());
    }

    /// Power failure of member `i`: its process dies, its disk loses what was not synced,
    /// and it boots again from what survived.
    pub fn power_cut(&self, i: usize) {
        self.members.lock().unwrap().remove(&(i as u64 + 1));
        Handle::current().kill(self.nodes[i].id());
        self.disks[i].crash();
        Handle::current().restart(self.nodes[i].id());
    }

    /// Hash of every disk operation of every member.
    pub fn disk_trace(&self) -> Vec<u64> {
        self.disks.iter().map(SimDisk::trace_hash).collect()
    }
}

async fn run_member(
    id: u64,
    seed: u64,
    voters: Vec<u64>,
    disk: SimDisk,
    log: Arc<Mutex<AppliedLog>>,
    members: Arc<Mutex<BTreeMap<u64, MemberHandle>>>,
) {
    let fresh = AppliedLog::default();
    *log.lock().unwrap() = fresh.clone();
    let (transport, events) = Transport::new(id, CLUSTER_ID);
    for &peer in voters.iter().filter(|&&p| p != id) {
        transport.add_peer(
            peer,
            &format!("http://{}:{PEER_PORT}", ip(peer as usize - 1)),
        );
    }
    let (inbound, inbound_rx) = mpsc::channel(8192);
    let service = transport.service(inbound);
    let addr = SocketAddr::new(ip(id as usize - 1), PEER_PORT);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(PeerServer::new(service))
            .serve(addr)
            .await
            .expect("peer server");
    });
    let cfg = MemberConfig {
        id,
        cluster_id: CLUSTER_ID,
        voters,
        wal_dir: PathBuf::from("/data/member/wal"),
        wal: WalOptions {
            segment_size: 64 << 10,
        },
        tick: Duration::from_millis(100),
        election_ticks: 10,
        heartbeat_ticks: 1,
        request_timeout: Duration::from_secs(5),
        seed: seed ^ id,
    };
    let disk: Arc<dyn Disk> = Arc::new(disk);
    let (handle, task) = member::start(cfg, disk, transport, inbound_rx, events, Recorder(fresh))
        .expect("member starts");
    members.lock().unwrap().insert(id, handle);
    task.await
        .expect("member task")
        .expect("member loop ends cleanly");
}
