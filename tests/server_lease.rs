//! Leases on a real detcd process through the `etcd-client` crate: grant, attach, time to
//! live, keepalive, revoke, expiry without keepalives, and leases surviving kill -9.

#![cfg(not(madsim))]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions};

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(dir: &Path, client_port: u16, peer_port: u16) -> (Process, Client) {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let child = Command::new(env!("CARGO_BIN_EXE_detcd"))
        .args(["--data-dir", dir.to_str().unwrap()])
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
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let process = Process(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut c) = Client::connect([client.clone()], None).await {
            if c.put("ready", "", None).await.is_ok() {
                return (process, c);
            }
        }
        assert!(Instant::now() < deadline, "detcd did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn message(e: etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.message().to_string(),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn lease_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let (client_port, peer_port) = (free_port(), free_port());
    let (member, mut c) = start(dir.path(), client_port, peer_port).await;

    let long = c.lease_grant(100, None).await.unwrap();
    assert_eq!(long.ttl(), 100);
    let chosen = c
        .lease_grant(100, Some(LeaseGrantOptions::new().with_id(0x77)))
        .await
        .unwrap();
    assert_eq!(chosen.id(), 0x77);
    let err = c
        .lease_grant(100, Some(LeaseGrantOptions::new().with_id(0x77)))
        .await
        .unwrap_err();
    assert_eq!(message(err), "etcdserver: lease already exists");
    c.put("a", "1", Some(PutOptions::new().with_lease(long.id())))
        .await
        .unwrap();
    c.put("b", "2", Some(PutOptions::new().with_lease(long.id())))
        .await
        .unwrap();
    let ttl = c
        .lease_time_to_live(long.id(), Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(ttl.granted_ttl(), 100);
    assert!(ttl.ttl() > 90 && ttl.ttl() <= 100, "{}", ttl.ttl());
    let mut keys: Vec<&[u8]> = ttl.keys().iter().map(|k| k.as_slice()).collect();
    keys.sort();
    assert_eq!(keys, vec![&b"a"[..], &b"b"[..]]);
    let listed: Vec<i64> = c
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    assert!(listed.contains(&long.id()) && listed.contains(&0x77));

    let (mut keeper, mut acks) = c.lease_keep_alive(long.id()).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let ack = acks.message().await.unwrap().unwrap();
    assert_eq!((ack.id(), ack.ttl()), (long.id(), 100));

    // Revoke removes every attached key in one revision.
    let before = c.get("a", None).await.unwrap().header().unwrap().revision();
    let revoked = c.lease_revoke(long.id()).await.unwrap();
    assert_eq!(revoked.header().unwrap().revision(), before + 1);
    assert!(c.get("a", None).await.unwrap().kvs().is_empty());
    assert!(c.get("b", None).await.unwrap().kvs().is_empty());
    let err = c.lease_revoke(long.id()).await.unwrap_err();
    assert_eq!(message(err), "etcdserver: requested lease not found");
    let gone = c.lease_time_to_live(long.id(), None).await.unwrap();
    assert_eq!(gone.ttl(), -1);

    // Without keepalives a short lease expires and takes its key with it.
    let short = c.lease_grant(2, None).await.unwrap();
    c.put("short", "x", Some(PutOptions::new().with_lease(short.id())))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !c.get("short", None).await.unwrap().kvs().is_empty() {
        assert!(Instant::now() < deadline, "the lease never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Leases are durable: after kill -9 the remaining one is still there.
    drop(member);
    let (_member, mut c) = start(dir.path(), client_port, peer_port).await;
    let listed: Vec<i64> = c
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    assert_eq!(listed, vec![0x77]);
    c.put("after", "1", Some(PutOptions::new().with_lease(0x77)))
        .await
        .unwrap();
}
