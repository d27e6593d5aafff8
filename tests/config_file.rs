//! `--config-file` in etcd's YAML: etcd 3.5.1's own sample file (`etcd.conf.yml.sample`,
//! every key, with this test's name, directory and ports) starts a member; as in etcd,
//! flags (and `ETCD_*` variables) beside the file are ignored. A file etcd would not take,
//! or with a key etcd does not know, stops the member at start with exit code 1, naming
//! the key, before anything is written.

#![cfg(not(madsim))]

mod common;

use std::path::Path;
use std::process::Command;

use common::{free_port, ready_client, Member};

/// etcd 3.5.1's etcd.conf.yml.sample without its comments; `{…}` are filled in.
const SAMPLE: &str = "\
name: '{name}'
data-dir: {data}
wal-dir:
snapshot-count: 10000
heartbeat-interval: 100
election-timeout: 1000
quota-backend-bytes: 0
listen-peer-urls: http://127.0.0.1:{peer}
listen-client-urls: http://127.0.0.1:{client}
max-snapshots: 5
max-wals: 5
cors:
initial-advertise-peer-urls: http://127.0.0.1:{peer}
advertise-client-urls: http://127.0.0.1:{client}
discovery:
discovery-fallback: 'proxy'
discovery-proxy:
discovery-srv:
initial-cluster:
initial-cluster-token: 'etcd-cluster'
initial-cluster-state: 'new'
strict-reconfig-check: false
enable-v2: true
enable-pprof: true
proxy: 'off'
proxy-failure-wait: 5000
proxy-refresh-interval: 30000
proxy-dial-timeout: 1000
proxy-write-timeout: 5000
proxy-read-timeout: 0
client-transport-security:
  cert-file:
  key-file:
  client-cert-auth: false
  trusted-ca-file:
  auto-tls: false
peer-transport-security:
  cert-file:
  key-file:
  client-cert-auth: false
  trusted-ca-file:
  auto-tls: false
self-signed-cert-validity: 1
log-level: debug
logger: zap
log-outputs: [stderr]
force-new-cluster: false
auto-compaction-mode: periodic
auto-compaction-retention: \"1\"
";

fn sample(name: &str, data: &Path, client: u16, peer: u16) -> String {
    SAMPLE
        .replace("{name}", name)
        .replace("{data}", data.to_str().unwrap())
        .replace("{client}", &client.to_string())
        .replace("{peer}", &peer.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_sample_config_starts_a_member() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("from-file.detcd");
    // The member's own flags (name "from-flags", its data dir) come first and are ignored.
    let member = Member::new("from-flags", dir.path());
    let (client, peer) = (member.client_port, member.peer_port);
    let file = dir.path().join("etcd.yaml");
    std::fs::write(&file, sample("from-file", &data, client, peer)).unwrap();
    let config = ["--config-file", file.to_str().unwrap()];
    let _proc = member.spawn_with(env!("CARGO_BIN_EXE_detcd"), None, &config);
    let mut c = ready_client(client).await;
    let members = c.member_list().await.unwrap();
    let names: Vec<&str> = members.members().iter().map(|m| m.name()).collect();
    assert_eq!(names, ["from-file"], "the file's name, not the flag's");
    assert!(data.join("member").is_dir(), "the file's data dir");
    assert!(!member.data_dir.exists(), "not the flag's");
}

#[test]
fn bad_config_files_stop_the_member_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bad.detcd");
    let good = sample("bad", &data, free_port(), free_port());
    for (yaml, says) in [
        (
            format!("{good}nmae: typo\n"),
            r#"unknown key "nmae""#.to_string(),
        ),
        (
            good.replace("heartbeat-interval: 100", "heartbeat-interval: often"),
            "invalid value 'often' for '--heartbeat-interval".to_string(),
        ),
        (
            good.replace(
                "auto-compaction-retention: \"1\"",
                "auto-compaction-retention: 1d",
            ),
            "invalid --auto-compaction-retention".to_string(),
        ),
        (
            "name: [\n".to_string(),
            "did not find expected node content".into(),
        ),
        (
            "this is not yaml at all\n".to_string(),
            "the file is not a mapping of keys to values".into(),
        ),
        (
            good.replace(
                "  auto-tls: false\npeer",
                "  auto-tls: false\n  client-cert-file: /c.crt\npeer",
            ),
            r#""client-transport-security.client-cert-file" is not served by detcd"#.to_string(),
        ),
    ] {
        let file = dir.path().join("etcd.yaml");
        std::fs::write(&file, &yaml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_detcd"))
            .args(["--config-file", file.to_str().unwrap()])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{says}: {stderr}");
        assert!(stderr.contains(&says), "wanted {says:?} in {stderr}");
        assert!(!data.exists(), "{says}: the data dir was written");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_detcd"))
        .env("ETCD_CONFIG_FILE", dir.path().join("absent.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("absent.yaml"));
}
