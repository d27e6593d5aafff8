//! The whole detcd server (`start::run`: Raft, WAL, MVCC, the gRPC services) on
//! simulated machines, and the cluster-wide convergence check.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use detcd::runtime::{Disk, SimDisk};
use detcd::server::config::{Flags, ServerConfig};
use detcd::start;
use detcd_check::client::{converged, Converged};

use crate::nodes::{member_ip, Nodes};

pub fn client_url(i: usize) -> String {
    format!("http://{}:2379", member_ip(i))
}

pub fn peer_url(i: usize) -> String {
    format!("http://{}:2380", member_ip(i))
}

/// Why members stopped, in order: `m{i}: {error}`.
pub type Exits = Arc<Mutex<Vec<String>>>;

/// A cluster of full detcd members.
pub struct KvCluster {
    pub nodes: Nodes,
    /// Members that stopped with an error (a failed WAL write, say) and did not restart.
    pub exits: Exits,
    /// `--initial-cluster` of the members started so far.
    initial_cluster: String,
    /// Flags every member gets beyond etcd's cluster flags.
    extra: Vec<String>,
}

impl KvCluster {
    /// Starts `size` members; call inside a madsim runtime.
    pub fn start(size: usize, seed: u64) -> KvCluster {
        Self::start_with_flags(size, seed, &[])
    }

    /// Starts `size` members with `extra` flags added to each one's command line (and to
    /// members that join later).
    pub fn start_with_flags(size: usize, seed: u64, extra: &[&str]) -> KvCluster {
        let extra: Vec<String> = extra.iter().map(|f| f.to_string()).collect();
        let cluster: Vec<String> = (0..size).map(member_entry).collect();
        let initial_cluster = cluster.join(",");
        let exits = Exits::default();
        let run = boot(&initial_cluster, "new", exits.clone(), extra.clone());
        let nodes = Nodes::start(size, seed, run);
        KvCluster {
            nodes,
            exits,
            initial_cluster,
            extra,
        }
    }

    /// Starts a member at the next position that joins the running cluster
    /// (`--initial-cluster-state=existing`), after a MemberAdd for its peer URL.
    pub fn join(&mut self) -> usize {
        let i = self.nodes.len();
        self.initial_cluster = format!("{},{}", self.initial_cluster, member_entry(i));
        let run = boot(
            &self.initial_cluster,
            "existing",
            self.exits.clone(),
            self.extra.clone(),
        );
        self.nodes.add(Arc::new(run))
    }
}

fn member_entry(i: usize) -> String {
    format!("m{i}={}", peer_url(i))
}

/// What member `i`'s machine runs: detcd with etcd's flags and `extra`, on its SimDisk. An
/// error that stops the member is recorded in `exits`; the machine then stays idle until
/// restarted.
fn boot(
    initial_cluster: &str,
    state: &'static str,
    exits: Exits,
    extra: Vec<String>,
) -> impl Fn(usize, SimDisk) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
       + Send
       + Sync
       + 'static {
    let cluster = initial_cluster.to_string();
    move |i, disk: SimDisk| {
        let mut args = vec![
            "detcd".to_string(),
            format!("--name=m{i}"),
            "--data-dir=/data".to_string(),
            format!("--listen-client-urls={}", client_url(i)),
            format!("--advertise-client-urls={}", client_url(i)),
            format!("--listen-peer-urls={}", peer_url(i)),
            format!("--initial-advertise-peer-urls={}", peer_url(i)),
            format!("--initial-cluster={cluster}"),
            format!("--initial-cluster-state={state}"),
            "--initial-cluster-token=sim".to_string(),
        ];
        args.extend(extra.iter().cloned());
        let exits = exits.clone();
        Box::pin(async move {
            let flags = Flags::parse_from(args).expect("simulation flags parse");
            let cfg = ServerConfig::from_flags(&flags).expect("simulation flags are valid");
            let disk: Arc<dyn Disk> = Arc::new(disk);
            if let Err(e) = start::run(cfg, disk, std::future::pending()).await {
                exits.lock().unwrap().push(format!("m{i}: {e}"));
            }
        })
    }
}

/// Runs `call` until it answers, every 100 ms for up to 30 simulated seconds; panics
/// naming `what` with the last error after that.
pub async fn retry<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = detcd::runtime::Clock.now();
    loop {
        match call().await {
            Ok(v) => return v,
            Err(e) => assert!(
                start.elapsed() < Duration::from_secs(30),
                "{what} kept failing: {e}"
            ),
        }
        detcd::runtime::Clock
            .sleep(Duration::from_millis(100))
            .await;
    }
}

/// Every member's HashKV at the one revision all of `members` report, once they do. Run it
/// on a client node: the simulation's main task has no network address.
pub async fn converged_hashes(members: &[usize], deadline: Duration) -> Result<Converged, String> {
    let urls: Vec<String> = members.iter().map(|&i| client_url(i)).collect();
    converged(&urls, deadline).await
}
