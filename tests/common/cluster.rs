//! A cluster of real detcd processes on loopback, and polling with a deadline.

use std::path::Path;
use std::time::{Duration, Instant};

use etcd_client::Client;

use super::{initial_cluster, Member, Process};

/// Polls `check` until it returns Some; panics naming `what` after `deadline`.
pub async fn poll<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn connect(port: u16) -> Option<Client> {
    Client::connect([format!("http://127.0.0.1:{port}")], None)
        .await
        .ok()
}

/// The leader's member ID as `port`'s member sees it, if it sees one.
pub async fn leader_seen_by(port: u16) -> Option<u64> {
    let mut c = connect(port).await?;
    let leader = c.status().await.ok()?.leader();
    (leader != 0).then_some(leader)
}

pub async fn member_id(port: u16) -> Option<u64> {
    let mut c = connect(port).await?;
    Some(c.status().await.ok()?.header()?.member_id())
}

/// Members started together from one `--initial-cluster`; processes die with it.
pub struct Cluster {
    pub members: Vec<Member>,
    pub initial_cluster: String,
    pub procs: Vec<Option<Process>>,
    /// Member IDs, in the order of `members`.
    pub ids: Vec<u64>,
}

impl Cluster {
    /// Starts members named `names` under `dir` and waits until they agree on a leader.
    pub async fn start(dir: &Path, names: &[&str]) -> Cluster {
        Cluster::start_members(names.iter().map(|n| Member::new(n, dir)).collect()).await
    }

    /// Starts `members` (whose data directories may hold restored snapshots) as one
    /// cluster and waits until they agree on a leader.
    pub async fn start_members(members: Vec<Member>) -> Cluster {
        let initial_cluster = initial_cluster(&members);
        let procs = members
            .iter()
            .map(|m| Some(m.start(Some(&initial_cluster))))
            .collect();
        let mut ids = Vec::new();
        for m in &members {
            ids.push(
                poll("a member's ID", Duration::from_secs(30), || {
                    member_id(m.client_port)
                })
                .await,
            );
        }
        let cluster = Cluster {
            members,
            initial_cluster,
            procs,
            ids,
        };
        cluster.leader().await;
        cluster
    }

    pub fn ports(&self) -> Vec<u16> {
        self.members.iter().map(|m| m.client_port).collect()
    }

    /// The index of the leader every running member agrees on, polled for up to 30 s.
    pub async fn leader(&self) -> usize {
        let ports: Vec<u16> = (0..self.members.len())
            .filter(|&i| self.procs[i].is_some())
            .map(|i| self.members[i].client_port)
            .collect();
        let id = poll(
            "a leader all members agree on",
            Duration::from_secs(30),
            || async {
                let mut seen = Vec::new();
                for &p in &ports {
                    seen.push(leader_seen_by(p).await?);
                }
                seen.iter().all(|&l| l == seen[0]).then_some(seen[0])
            },
        )
        .await;
        self.ids
            .iter()
            .position(|&m| m == id)
            .expect("the leader is a member")
    }

    /// kill -9 member `i`.
    pub fn kill(&mut self, i: usize) {
        self.procs[i] = None;
    }

    /// Restarts member `i` from its data directory.
    pub fn restart(&mut self, i: usize) {
        self.procs[i] = Some(self.members[i].start(Some(&self.initial_cluster)));
    }
}
