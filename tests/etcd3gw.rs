//! The Python etcd3gw client, which speaks only the JSON gateway, works against detcd:
//! `tests/etcd3gw/client.py` (put/get/delete, prefix reads, leases with keys, locks, the
//! watch_prefix iterator and its cancellation) passes against detcd, and against etcd 3.5.1
//! where it is installed, which shows the script asks only what etcd answers.

#![cfg(not(madsim))]

mod common;

use std::process::Command;
use std::time::Duration;

use common::cluster::poll;
use common::http::request;
use common::{etcd35_dir, Member};

/// Debian's python3-etcd3gw is installed for the system interpreter (ci/install-etcd).
const PYTHON: &str = "/usr/bin/python3";

fn etcd3gw_installed() -> bool {
    Command::new(PYTHON)
        .args(["-c", "import etcd3gw"])
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs the client script against `program` as a fresh single member.
async fn client_script_passes(program: &str, dir: &std::path::Path) {
    let member = Member::new("py", dir);
    let _proc = member.spawn(program, None);
    let port = member.client_port;
    poll("the gateway serving", Duration::from_secs(30), || async {
        let r = request(port, "POST", "/v3/kv/range", r#"{"key":"eA=="}"#).await;
        (r.ok()?.status == 200).then_some(())
    })
    .await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/etcd3gw/client.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["60", PYTHON, script, &port.to_string()])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "etcd3gw against {program}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd3gw_client_works() {
    if !etcd3gw_installed() {
        eprintln!("SKIPPED etcd3gw_client_works: no etcd3gw for {PYTHON} (run ci/install-etcd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    client_script_passes(env!("CARGO_BIN_EXE_detcd"), &dir.path().join("detcd")).await;
    let etcd = etcd35_dir().join("etcd");
    if etcd.is_file() {
        client_script_passes(etcd.to_str().unwrap(), &dir.path().join("etcd")).await;
    }
}
