//! Unix socket listen URLs, as etcd accepts them in `--listen-client-urls`:
//! `unix://localhost:2379` binds the socket file `./localhost:2379` (relative to the
//! working directory, etcd's naming; one left by an earlier run is replaced) and serves it
//! in plaintext, `unixs://` serves it over TLS. etcdctl reaches both through the same
//! URLs, beside an ordinary `http://` URL.

#![cfg(not(madsim))]

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::tls::{text, tls_args, TestCa};
use common::{free_port, on_path, Process};

/// etcdctl run in `dir`, where the socket file is.
fn etcdctl_in(dir: &Path, endpoint: &str, tls: &[String], args: &[&str]) -> Output {
    Command::new("etcdctl")
        .current_dir(dir)
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "--dial-timeout", "2s"])
        .args(tls)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("etcdctl runs")
}

/// Puts `k` through `endpoint` until it succeeds (the member elects itself first), then
/// reads it back.
fn put_and_get(dir: &Path, endpoint: &str, tls: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = etcdctl_in(dir, endpoint, tls, &["put", "k", "v"]);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "put kept failing: {}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = etcdctl_in(dir, endpoint, tls, &["get", "k"]);
    assert_eq!(text(&out), "k\nv\n");
}

/// detcd in `dir`, one member, clients on `listen` (and a plain `http://` URL).
fn detcd(dir: &Path, listen: &str, tls: &[String]) -> Process {
    let (client, peer) = (free_port(), free_port());
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new(env!("CARGO_BIN_EXE_detcd"))
        .current_dir(dir)
        .args(["--name", "u", "--data-dir", "data"])
        .arg(format!(
            "--listen-client-urls={listen},http://127.0.0.1:{client}"
        ))
        .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=u={peer_url}"))
        .args(tls)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("detcd starts");
    Process(child)
}

#[test]
fn etcdctl_over_unix_sockets() {
    if !on_path("etcdctl") {
        eprintln!("SKIPPED etcdctl_over_unix_sockets: no etcdctl (run ci/install-etcd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plain = format!("unix://localhost:{}", free_port());
    std::fs::write(dir.path().join(&plain["unix://".len()..]), "left over").unwrap();
    let _member = detcd(dir.path(), &plain, &[]);
    put_and_get(dir.path(), &plain, &[]);

    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "ca");
    let server = ca.issue("server");
    let flags = [
        format!("--cert-file={}", server.cert.display()),
        format!("--key-file={}", server.key.display()),
    ];
    let secure = format!("unixs://localhost:{}", free_port());
    let _member = detcd(dir.path(), &secure, &flags);
    put_and_get(dir.path(), &secure, &tls_args(&ca, &ca.issue("client")));
    let plaintext = secure.replace("unixs://", "unix://");
    let out = etcdctl_in(dir.path(), &plaintext, &[], &["get", "k"]);
    assert!(
        !out.status.success(),
        "plaintext on the TLS socket: {}",
        text(&out)
    );
}
