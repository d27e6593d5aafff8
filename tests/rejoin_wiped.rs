//! A member whose data directory was wiped cannot start again under its old ID as part of a
//! new cluster: with an empty log it would vote as if it had never promised anything. As
//! etcd 3.5.1 does (checked by running it: `member 80af5d65a6e2f603 has already been
//! bootstrapped`, exit 1), the start stops, and the other two go on serving.

#![cfg(not(madsim))]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cluster::{connect, Cluster};

#[tokio::test]
async fn a_wiped_member_is_refused_under_its_old_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), &["a", "b", "c"]).await;
    let leader = cluster.leader().await;
    let wiped = (leader + 1) % 3;
    // Every member has published its client URLs once each lists them all.
    common::cluster::poll(
        "every member published",
        Duration::from_secs(30),
        || async {
            let mut c = connect(cluster.members[leader].client_port).await?;
            let list = c.member_list().await.ok()?;
            list.members()
                .iter()
                .all(|m| !m.client_urls().is_empty())
                .then_some(())
        },
    )
    .await;
    cluster.kill(wiped);
    let m = &cluster.members[wiped];
    std::fs::remove_dir_all(&m.data_dir).unwrap();

    let log = dir.path().join("wiped.log");
    let mut child = m
        .command(
            env!("CARGO_BIN_EXE_detcd"),
            Some(&cluster.initial_cluster),
            &[],
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the wiped member kept running");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let says = format!(
        "member {:x} has already been bootstrapped",
        cluster.ids[wiped]
    );
    assert!(stderr.contains(&says), "wanted {says:?} in {stderr}");

    let mut c = connect(cluster.members[leader].client_port).await.unwrap();
    c.put("still", "serving", None).await.unwrap();
}
