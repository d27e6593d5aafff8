//! Client TLS as etcd serves it: etcdctl with `--cacert --cert --key` against an
//! `https://` listener, `--client-cert-auth` refusing clients without a certificate and
//! taking a certificate's Common Name as the auth user (on gRPC and the JSON gateway),
//! HTTP/1.1 endpoints on the same TLS listener, plaintext refused there, and an
//! `https://` URL without a certificate refused at start. Certificates are made by each
//! test. Needs `etcdctl` on PATH.

#![cfg(not(madsim))]

mod common;

use std::io::{Read, Write};
use std::process::Command;

use common::tls::{etcdctl, text, tls_args, until_ok, CertFiles, TestCa};
use common::{on_path, Member};

/// An HTTP/1.1 GET over TLS, presenting `client`'s certificate; the whole response.
fn https_get(port: u16, ca: &TestCa, client: &CertFiles, path: &str) -> String {
    https(port, ca, client, "GET", path, "")
}

/// An HTTP/1.1 request over TLS, presenting `client`'s certificate; the whole response.
fn https(
    port: u16,
    ca: &TestCa,
    client: &CertFiles,
    method: &str,
    path: &str,
    body: &str,
) -> String {
    let mut tls = ca.connect(port, client);
    write!(
        tls,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    // A server that closes without close_notify still delivered the response.
    let _ = tls.read_to_string(&mut response);
    response
}

#[test]
fn etcdctl_over_tls_with_client_certificates() {
    if !on_path("etcdctl") {
        eprintln!("SKIPPED: etcdctl is not on PATH (ci/install-etcd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "detcd-test-ca");
    let server_cert = ca.issue("server");
    let root = ca.issue("root");
    let alice = ca.issue("alice");
    let mut m = Member::new("tls", dir.path());
    m.client_scheme = "https";
    let cert_flags = [
        format!("--cert-file={}", server_cert.cert.display()),
        format!("--key-file={}", server_cert.key.display()),
        format!("--trusted-ca-file={}", ca.cert.display()),
        "--client-cert-auth".to_string(),
        "--bcrypt-cost=4".to_string(),
    ];
    let flags: Vec<&str> = cert_flags.iter().map(String::as_str).collect();
    let _server = m.spawn_with(env!("CARGO_BIN_EXE_detcd"), None, &flags);
    let endpoint = m.client_url();
    let as_root = tls_args(&ca, &root);
    let as_root: Vec<&str> = as_root.iter().map(String::as_str).collect();
    let as_alice = tls_args(&ca, &alice);
    let as_alice: Vec<&str> = as_alice.iter().map(String::as_str).collect();

    until_ok(&endpoint, &as_root, &["put", "foo", "bar"]);
    let got = until_ok(&endpoint, &as_root, &["get", "foo", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&got.stdout), "bar\n");

    // Only the CA's certificates get in: none at all, or plaintext, fails.
    let ca_only = format!("--cacert={}", ca.cert.display());
    let refused = etcdctl(&endpoint, &[&ca_only], &["get", "foo"]);
    assert!(
        !refused.status.success(),
        "no client certificate: {}",
        text(&refused)
    );
    let plain = endpoint.replace("https://", "http://");
    let refused = etcdctl(&plain, &[], &["get", "foo"]);
    assert!(!refused.status.success(), "plaintext: {}", text(&refused));

    // The HTTP/1.1 endpoints are on the same TLS listener.
    let health = https_get(m.client_port, &ca, &root, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains(r#"{"health":"true""#), "{health}");

    // With auth on, the certificate's Common Name is the user.
    for cmd in [
        &["user", "add", "root:rootpw"][..],
        &["user", "grant-role", "root", "root"],
        &["user", "add", "alice:alicepw"],
        &["role", "add", "app"],
        &[
            "role",
            "grant-permission",
            "app",
            "readwrite",
            "app/",
            "--prefix",
        ],
        &["user", "grant-role", "alice", "app"],
        &["auth", "enable"],
    ] {
        until_ok(&endpoint, &as_root, cmd);
    }
    until_ok(&endpoint, &as_alice, &["put", "app/1", "x"]);
    let denied = etcdctl(&endpoint, &as_alice, &["put", "other", "x"]);
    assert!(!denied.status.success());
    assert!(
        text(&denied).contains("etcdserver: permission denied"),
        "{}",
        text(&denied)
    );
    // So it is on the JSON gateway, as etcd's gateway passes the certificate on.
    let put = |key: &str| format!(r#"{{"key":"{key}","value":"eA=="}}"#);
    let allowed = https(
        m.client_port,
        &ca,
        &alice,
        "POST",
        "/v3/kv/put",
        &put("YXBwLzI="),
    );
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
    let denied = https(
        m.client_port,
        &ca,
        &alice,
        "POST",
        "/v3/kv/put",
        &put("b3RoZXI="),
    );
    assert!(denied.starts_with("HTTP/1.1 403"), "{denied}");
    assert!(denied.contains("etcdserver: permission denied"), "{denied}");
    // root by certificate may read anything, and a password still works beside it.
    until_ok(&endpoint, &as_root, &["get", "other"]);
    until_ok(
        &endpoint,
        &as_alice,
        &["--user", "alice:alicepw", "get", "app/1"],
    );
}

#[test]
fn https_url_without_a_certificate_is_a_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = Member::new("notls", dir.path());
    m.client_scheme = "https";
    let out = Command::new(env!("CARGO_BIN_EXE_detcd"))
        .args(["--name", &m.name])
        .args(["--data-dir", m.data_dir.to_str().unwrap()])
        .args(["--listen-client-urls", &m.client_url()])
        .args(["--advertise-client-urls", &m.client_url()])
        .args(["--listen-peer-urls", &m.peer_url()])
        .args(["--initial-advertise-peer-urls", &m.peer_url()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "TLS key/cert (--cert-file, --key-file) must be provided for client url {} with HTTPS scheme",
            m.client_url()
        )),
        "{stderr}"
    );
}
