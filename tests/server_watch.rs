//! Watch on a real detcd process through the `etcd-client` crate: live and historical
//! events in revision order, cancel, and the compacted-start answer.

#![cfg(not(madsim))]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, WatchOptions};

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

async fn single_member(dir: &std::path::Path) -> (Process, Client) {
    let client = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
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

#[tokio::test]
async fn watch_live_history_cancel_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let (_member, mut c) = single_member(dir.path()).await;
    let first = c
        .put("w/a", "1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();

    let mut stream = c
        .watch(
            "w/",
            Some(WatchOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    let created = stream.message().await.unwrap().unwrap();
    assert!(created.created());
    for v in ["2", "3"] {
        c.put("w/a", v, None).await.unwrap();
    }
    c.delete("w/a", None).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let resp = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("events stopped")
            .unwrap()
            .unwrap();
        for e in resp.events() {
            let kv = e.kv().unwrap();
            seen.push((
                e.event_type(),
                kv.mod_revision(),
                e.prev_kv().map(|p| p.value().to_vec()),
            ));
        }
    }
    assert_eq!(seen[0], (EventType::Put, first + 1, Some(b"1".to_vec())));
    assert_eq!(seen[1], (EventType::Put, first + 2, Some(b"2".to_vec())));
    assert_eq!(seen[2], (EventType::Delete, first + 3, Some(b"3".to_vec())));
    stream.cancel(created.watch_id()).await.unwrap();
    let canceled = stream.message().await.unwrap().unwrap();
    assert!(canceled.canceled());

    // From an old revision: the whole history of the key, in order.
    let mut history = c
        .watch("w/a", Some(WatchOptions::new().with_start_revision(first)))
        .await
        .unwrap();
    let mut revisions = Vec::new();
    while revisions.len() < 4 {
        let resp = tokio::time::timeout(Duration::from_secs(10), history.message())
            .await
            .expect("history stopped")
            .unwrap()
            .unwrap();
        revisions.extend(resp.events().iter().map(|e| e.kv().unwrap().mod_revision()));
    }
    assert_eq!(revisions, vec![first, first + 1, first + 2, first + 3]);

    // A start revision compacted away: canceled with the compact revision.
    c.compact(first + 2, None).await.unwrap();
    let mut compacted = c
        .watch("w/a", Some(WatchOptions::new().with_start_revision(first)))
        .await
        .unwrap();
    let resp = loop {
        let resp = tokio::time::timeout(Duration::from_secs(10), compacted.message())
            .await
            .expect("no answer for a compacted start")
            .unwrap()
            .unwrap();
        if resp.canceled() {
            break resp;
        }
    };
    assert_eq!(resp.compact_revision(), first + 2);
}
