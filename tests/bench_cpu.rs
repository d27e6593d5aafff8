//! detcd-bench's CPU accounting: `ci/bench` compares stores by the CPU time each spends
//! per request, so the figures must come from the named processes and the measured phase.

#![cfg(not(madsim))]

mod common;

use std::process::Command;

use common::{ready_client, Member};
use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_detcd-bench");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_and_client_cpu_per_request_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let m = Member::new("m0", dir.path());
    let server = m.start(None);
    ready_client(m.client_port).await;
    let pid = server.0.id().to_string();
    let out = tokio::task::spawn_blocking({
        let url = m.client_url();
        move || {
            Command::new(BENCH)
                .args(["--endpoints", &url, "--clients", "10", "--conns", "2"])
                .args(["--total", "2000", "--server-pids", &pid, "--json"])
                .args(["put", "--key-space-size", "100"])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["ok"], 2000);
    assert_eq!(summary["errors"], 0);
    // 2,000 puts cost each side tens of milliseconds of CPU, several clock ticks: a zero
    // would mean the wrong process or the wrong window was read.
    for figure in ["server_cpu_us_per_req", "client_cpu_us_per_req"] {
        let us = summary[figure]
            .as_f64()
            .unwrap_or_else(|| panic!("{figure} in {summary}"));
        assert!(us > 0.0 && us < 100_000.0, "{figure} = {us}");
    }
}

#[test]
fn server_pids_are_refused_with_compare() {
    let compare = Command::new(BENCH)
        .args(["--compare", "http://127.0.0.1:1", "http://127.0.0.1:2"])
        .args(["--server-pids", "1", "put"])
        .output()
        .unwrap();
    assert!(!compare.status.success());
    assert!(
        String::from_utf8_lossy(&compare.stderr)
            .contains("--server-pids cannot be used with --compare"),
        "{}",
        String::from_utf8_lossy(&compare.stderr)
    );
}
