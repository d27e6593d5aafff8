//! Peer TLS as etcd runs it: three members whose peer URLs are `https://`, each presenting
//! a certificate from one CA (`--peer-cert-file --peer-key-file --peer-trusted-ca-file
//! --peer-client-cert-auth --peer-cert-allowed-cn`), or generated ones (`--peer-auto-tls`),
//! elect a leader and replicate; a peer whose certificate names another CN is refused in
//! the handshake; etcdctl works against a cluster with client and peer TLS. Certificates
//! are made by each test.

#![cfg(not(madsim))]

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::cluster::poll;
use common::tls::{text, tls_args, until_ok, TestCa};
use common::{initial_cluster, on_path, Member, Process};

/// Starts `names` with https peer URLs and `flags`, and checks that a write on the first
/// is read (linearizably, through the leader) on the last.
/// The members and their processes, still running.
async fn replicate(
    dir: &std::path::Path,
    names: &[&str],
    flags: &[String],
) -> (Vec<Member>, Vec<Process>) {
    let members: Vec<Member> = names
        .iter()
        .map(|n| {
            let mut m = Member::new(n, dir);
            m.peer_scheme = "https";
            m
        })
        .collect();
    let cluster = initial_cluster(&members);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let procs: Vec<Process> = members
        .iter()
        .map(|m| m.spawn_with(env!("CARGO_BIN_EXE_detcd"), Some(&cluster), &flags))
        .collect();
    let mut first = common::ready_client(members[0].client_port).await;
    first.put("k", "v", None).await.unwrap();
    let last = members.last().unwrap().client_port;
    let value = poll(
        "the write on the last member",
        Duration::from_secs(30),
        || async {
            let mut c = common::cluster::connect(last).await?;
            let resp = c.get("k", None).await.ok()?;
            Some(resp.kvs().first()?.value().to_vec())
        },
    )
    .await;
    assert_eq!(value, b"v");
    let listed = first.member_list().await.unwrap();
    let mut peer_urls: Vec<String> = listed
        .members()
        .iter()
        .flat_map(|m| m.peer_urls().to_vec())
        .collect();
    peer_urls.sort();
    let mut expected: Vec<String> = members.iter().map(Member::peer_url).collect();
    expected.sort();
    assert_eq!(peer_urls, expected);
    (members, procs)
}

#[tokio::test]
async fn three_members_over_peer_tls_and_a_disallowed_cn_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "detcd-peer-ca");
    let peer = ca.issue("member");
    let flags = [
        format!("--peer-cert-file={}", peer.cert.display()),
        format!("--peer-key-file={}", peer.key.display()),
        format!("--peer-trusted-ca-file={}", ca.cert.display()),
        "--peer-client-cert-auth".to_string(),
        "--peer-cert-allowed-cn=member".to_string(),
    ];
    let (members, _procs) = replicate(dir.path(), &["p1", "p2", "p3"], &flags).await;

    // The peer port answers an HTTP/2 preface from a certificate with the allowed CN,
    // and refuses the handshake of one with another CN from the same CA.
    let port = members[0].peer_port;
    let answer = |cn: &str| {
        let mut tls = ca.connect(port, &ca.issue(cn));
        let wrote = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0");
        let mut buf = [0u8; 9];
        wrote.and_then(|()| tls.read_exact(&mut buf)).map(|()| buf)
    };
    let settings = answer("member").expect("the allowed CN is served");
    assert_eq!(settings[3], 0x4, "the server's first frame is SETTINGS");
    let refused = answer("intruder").expect_err("another CN is refused");
    assert!(
        refused.to_string().contains("HandshakeFailure"),
        "{refused}"
    );
}

#[tokio::test]
async fn three_members_over_peer_auto_tls() {
    let dir = tempfile::tempdir().unwrap();
    replicate(
        dir.path(),
        &["a1", "a2", "a3"],
        &["--peer-auto-tls".to_string()],
    )
    .await;
}

/// etcdctl with `--cacert --cert --key` against three members that serve clients and
/// peers over TLS: a write on one is read on another, and every member is healthy.
#[test]
fn etcdctl_against_a_tls_cluster() {
    if !on_path("etcdctl") {
        eprintln!("SKIPPED: etcdctl is not on PATH (ci/install-etcd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new(dir.path(), "detcd-test-ca");
    let (member, client) = (ca.issue("member"), ca.issue("client"));
    let members: Vec<Member> = ["t1", "t2", "t3"]
        .iter()
        .map(|n| {
            let mut m = Member::new(n, dir.path());
            m.client_scheme = "https";
            m.peer_scheme = "https";
            m
        })
        .collect();
    let cluster = initial_cluster(&members);
    let mut flags = Vec::new();
    for prefix in ["", "peer-"] {
        flags.push(format!("--{prefix}cert-file={}", member.cert.display()));
        flags.push(format!("--{prefix}key-file={}", member.key.display()));
        flags.push(format!("--{prefix}trusted-ca-file={}", ca.cert.display()));
        flags.push(format!("--{prefix}client-cert-auth"));
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let _procs: Vec<Process> = members
        .iter()
        .map(|m| m.spawn_with(env!("CARGO_BIN_EXE_detcd"), Some(&cluster), &flags))
        .collect();
    let tls = tls_args(&ca, &client);
    let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
    until_ok(&members[0].client_url(), &tls, &["put", "k", "v"]);
    let got = until_ok(
        &members[2].client_url(),
        &tls,
        &["get", "k", "--print-value-only"],
    );
    assert_eq!(String::from_utf8_lossy(&got.stdout), "v\n");
    let all: Vec<String> = members.iter().map(Member::client_url).collect();
    let health = until_ok(&all.join(","), &tls, &["endpoint", "health"]);
    assert_eq!(
        text(&health).matches("is healthy").count(),
        3,
        "{}",
        text(&health)
    );
}
