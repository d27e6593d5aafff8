//! A cluster of real members (Raft, WAL on SimDisk, gRPC peer transport) on madsim nodes,
//! with the controls a fault schedule needs: partition, kill, power cut, restart.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::runtime::{Clock, Disk, SimDisk};
use detcd::server::member::{self, Fatal, MemberConfig, MemberHandle, StateMachine};
use detcd::server::metrics::ServerMetrics;
use detcd::server::snapshot::SnapshotOptions;
use detcd::server::transport::{PeerServer, Transport};
use detcd::wal::WalOptions;

use crate::nodes::{member_ip, Nodes};
use tokio::sync::mpsc;

const PEER_PORT: u16 = 2380;
const CLUSTER_ID: u64 = 0xd37cd;

/// Entries applied by one member, in order, as (index, payload).
pub type AppliedLog = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

/// Records what it applies; answers with the payload's length.
pub struct Recorder(AppliedLog);

impl StateMachine for Recorder {
    type Request = Vec<u8>;
    type Response = usize;
    type Refusal = std::convert::Infallible;

    fn apply(&mut self, index: u64, payload: Vec<u8>) -> Result<usize, Fatal> {
        let len = payload.len();
        self.0.lock().unwrap().push((index, payload));
        Ok(len)
    }
}

/// A running simulated cluster. Member `i` (0-based) has Raft ID `i + 1`.
pub struct SimCluster {
    nodes: Nodes,
    members: Arc<Mutex<BTreeMap<u64, MemberHandle<Recorder>>>>,
    applied: Vec<Arc<Mutex<AppliedLog>>>,
}

impl SimCluster {
    /// Starts `size` members; call inside a madsim runtime.
    pub fn start(size: usize, seed: u64) -> SimCluster {
        let voters: Vec<u64> = (1..=size as u64).collect();
        let members = Arc::new(Mutex::new(BTreeMap::new()));
        let applied: Vec<Arc<Mutex<AppliedLog>>> = (0..size)
            .map(|_| Arc::new(Mutex::new(AppliedLog::default())))
            .collect();
        let (logs, registry) = (applied.clone(), members.clone());
        let nodes = Nodes::start(size, seed, move |i, disk| {
            let (log, members, voters) = (logs[i].clone(), registry.clone(), voters.clone());
            run_member(i as u64 + 1, seed, voters, disk, log, members)
        });
        SimCluster {
            nodes,
            members,
            applied,
        }
    }

    pub fn size(&self) -> usize {
        self.nodes.len()
    }

    /// The handle of member `i`, once it has started.
    pub fn member(&self, i: usize) -> Option<MemberHandle<Recorder>> {
        self.members.lock().unwrap().get(&(i as u64 + 1)).cloned()
    }

    /// The leader's Raft ID once every member runs and agrees on it, polling virtual time.
    pub async fn wait_leader(&self, deadline: Duration) -> Option<u64> {
        let start = Clock.now();
        while start.elapsed() < deadline {
            let handles: Vec<MemberHandle<Recorder>> =
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

    pub fn isolate(&self, i: usize) {
        self.nodes.isolate(i);
    }

    pub fn heal(&self, i: usize) {
        self.nodes.heal(i);
    }

    /// Power failure of member `i`, then restart from its disk.
    pub fn power_cut(&self, i: usize) {
        self.members.lock().unwrap().remove(&(i as u64 + 1));
        self.nodes.power_cut(i);
    }

    pub fn disk_trace(&self) -> Vec<u64> {
        self.nodes.disk_trace()
    }
}

async fn run_member(
    id: u64,
    seed: u64,
    voters: Vec<u64>,
    disk: SimDisk,
    log: Arc<Mutex<AppliedLog>>,
    members: Arc<Mutex<BTreeMap<u64, MemberHandle<Recorder>>>>,
) {
    let fresh = AppliedLog::default();
    *log.lock().unwrap() = fresh.clone();
    let (transport, events) = Transport::new(id, CLUSTER_ID);
    for &peer in voters.iter().filter(|&&p| p != id) {
        transport.add_peer(
            peer,
            &format!("http://{}:{PEER_PORT}", member_ip(peer as usize - 1)),
        );
    }
    let (inbound, inbound_rx) = mpsc::channel(8192);
    let service = transport.service(inbound);
    let addr = SocketAddr::new(member_ip(id as usize - 1), PEER_PORT);
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
        snap_dir: PathBuf::from("/data/member/snap"),
        snapshot: SnapshotOptions::default(),
        tick: Duration::from_millis(100),
        election_ticks: 10,
        heartbeat_ticks: 1,
        request_timeout: Duration::from_secs(5),
        seed: seed ^ id,
        metrics: Arc::new(ServerMetrics::new(id)),
        force_new_cluster: false,
        unsafe_no_fsync: false,
    };
    let disk: Arc<dyn Disk> = Arc::new(disk);
    let (handle, task) = member::start(cfg, disk, transport, inbound_rx, events, Recorder(fresh))
        .expect("member starts");
    members.lock().unwrap().insert(id, handle);
    task.await
        .expect("member task")
        .expect("member loop ends cleanly");
}
