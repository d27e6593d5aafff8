//! Three real detcd processes on loopback: kill -9 the leader under write load, a new
//! leader takes over, no acknowledged write is lost, and the killed member restarts from
//! its data directory and catches up to the same HashKV as the others.

#![cfg(not(madsim))]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions};

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Node {
    name: String,
    data_dir: PathBuf,
    client_port: u16,
    peer_port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(node: &Node, initial_cluster: &str) -> Process {
    let client = format!("http://127.0.0.1:{}", node.client_port);
    let peer = format!("http://127.0.0.1:{}", node.peer_port);
    let child = Command::new(env!("CARGO_BIN_EXE_detcd"))
        .args(["--name", &node.name])
        .args(["--data-dir", node.data_dir.to_str().unwrap()])
        .args([
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
        ])
        .args([
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
        ])
        .args(["--initial-cluster", initial_cluster])
        .args(["--initial-cluster-token", "cluster-test"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    Process(child)
}

async fn connect(port: u16) -> Option<Client> {
    Client::connect([format!("http://127.0.0.1:{port}")], None)
        .await
        .ok()
}

/// Polls `check` until it returns Some or the deadline passes.
async fn poll<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
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

/// The leader's member ID as `port`'s member sees it, if it sees one.
async fn leader_seen_by(port: u16) -> Option<u64> {
    let mut c = connect(port).await?;
    let leader = c.status().await.ok()?.leader();
    (leader != 0).then_some(leader)
}

async fn member_id(port: u16) -> Option<u64> {
    let mut c = connect(port).await?;
    Some(c.status().await.ok()?.header()?.member_id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_kill_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|name| Node {
            name: name.to_string(),
            data_dir: dir.path().join(name),
            client_port: free_port(),
            peer_port: free_port(),
        })
        .collect();
    let initial_cluster = nodes
        .iter()
        .map(|n| format!("{}=http://127.0.0.1:{}", n.name, n.peer_port))
        .collect::<Vec<_>>()
        .join(",");
    let mut procs: Vec<Option<Process>> = nodes
        .iter()
        .map(|n| Some(start(n, &initial_cluster)))
        .collect();

    let ports: Vec<u16> = nodes.iter().map(|n| n.client_port).collect();
    let leader = poll(
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
    let mut ids = Vec::new();
    for &p in &ports {
        ids.push(member_id(p).await.unwrap());
    }
    let victim = ids
        .iter()
        .position(|&id| id == leader)
        .expect("leader is a member");
    let survivors: Vec<usize> = (0..3).filter(|&i| i != victim).collect();

    // Sequential writes through the members in turn; record what was acknowledged.
    let mut acked = Vec::new();
    let mut clients = Vec::new();
    for &p in &ports {
        clients.push(connect(p).await.unwrap());
    }
    for i in 0..300u32 {
        if i == 100 {
            procs[victim] = None; // kill -9 the leader mid-load
        }
        let target = if i >= 100 {
            survivors[i as usize % 2]
        } else {
            i as usize % 3
        };
        let key = format!("w/{i:04}");
        let write = tokio::time::timeout(
            Duration::from_secs(10),
            clients[target].put(key.clone(), i.to_string(), None),
        )
        .await;
        if let Ok(Ok(_)) = write {
            acked.push(key);
        }
    }
    assert!(
        acked.len() >= 250,
        "only {} of 300 writes acknowledged",
        acked.len()
    );
    let new_leader = poll("a new leader", Duration::from_secs(30), || async {
        leader_seen_by(ports[survivors[0]]).await
    })
    .await;
    assert_ne!(new_leader, leader, "the killed member is still the leader");

    let mut c = connect(ports[survivors[1]]).await.unwrap();
    let all = c
        .get("w/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let stored: Vec<String> = all
        .kvs()
        .iter()
        .map(|kv| kv.key_str().unwrap().to_string())
        .collect();
    for key in &acked {
        assert!(stored.contains(key), "acknowledged write {key} was lost");
    }

    // The killed member comes back from its data directory and converges.
    procs[victim] = Some(start(&nodes[victim], &initial_cluster));
    let revision = all.header().unwrap().revision();
    let expected = c.hash_kv(revision).await.unwrap().hash();
    poll(
        "the restarted member to reach the same HashKV",
        Duration::from_secs(30),
        || async {
            let mut r = connect(ports[victim]).await?;
            let h = r.hash_kv(revision).await.ok()?;
            (h.hash() == expected).then_some(())
        },
    )
    .await;
    let mut other = connect(ports[survivors[0]]).await.unwrap();
    assert_eq!(other.hash_kv(revision).await.unwrap().hash(), expected);
    drop(procs);
}
