//! `--auto-compaction-mode=revision`: every five minutes the leader compacts away all but
//! the last `retention` revisions. Five simulated minutes pass in a moment, which a real
//! process test cannot afford.

#![cfg(madsim)]

use std::time::Duration;

use detcd::proto::etcdserverpb::kv_client::KvClient;
use detcd::proto::etcdserverpb::{PutRequest, RangeRequest};
use detcd::runtime::Clock;
use detcd::server::compaction::REVISION_CHECK_INTERVAL;
use detcd_sim::kv_cluster::{client_url, KvCluster};
use madsim::runtime::{Handle, Runtime};
use madsim::Config;
use tonic::transport::Channel;

const RETENTION: i64 = 10;
const WRITES: usize = 30;

/// A client of the only member, once it takes writes; the revision after `WRITES` puts.
async fn write() -> (KvClient<Channel>, i64) {
    let put = || PutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    let start = Clock.now();
    let mut kv = loop {
        assert!(start.elapsed() < Duration::from_secs(30), "no leader");
        if let Ok(mut kv) = KvClient::connect(client_url(0)).await {
            if kv.put(put()).await.is_ok() {
                break kv;
            }
        }
        Clock.sleep(Duration::from_millis(100)).await;
    };
    let mut revision = 0;
    for _ in 1..WRITES {
        revision = kv
            .put(put())
            .await
            .unwrap()
            .into_inner()
            .header
            .unwrap()
            .revision;
    }
    (kv, revision)
}

/// Whether `k` can still be read at `revision`.
async fn readable(kv: &mut KvClient<Channel>, revision: i64) -> bool {
    let req = RangeRequest {
        key: b"k".to_vec(),
        revision,
        ..Default::default()
    };
    match kv.range(req).await {
        Ok(_) => true,
        Err(e) => {
            assert!(e.message().contains("has been compacted"), "{e}");
            false
        }
    }
}

async fn scenario(seed: u64) {
    let flags = [
        "--auto-compaction-mode=revision",
        &format!("--auto-compaction-retention={RETENTION}"),
    ];
    let _cluster = KvCluster::start_with_flags(1, seed, &flags);
    let client = Handle::current()
        .create_node()
        .name("client")
        .ip("10.0.1.1".parse().unwrap())
        .build();
    client
        .spawn(async move {
            let start = Clock.now();
            let (mut kv, revision) = write().await;
            assert!(
                readable(&mut kv, 2).await,
                "seed {seed}: compacted too early"
            );
            Clock
                .sleep_until(start + REVISION_CHECK_INTERVAL + Duration::from_secs(5))
                .await;
            let kept = revision - RETENTION;
            assert!(
                !readable(&mut kv, kept - 1).await,
                "seed {seed}: revision {} not compacted after five minutes",
                kept - 1
            );
            assert!(
                readable(&mut kv, kept).await,
                "seed {seed}: the last {RETENTION} revisions must stay"
            );
        })
        .await
        .unwrap();
}

#[test]
fn revision_compaction_keeps_the_last_revisions() {
    for seed in 0..2 {
        Runtime::with_seed_and_config(seed, Config::default()).block_on(scenario(seed));
    }
}
