//! etcdctl against detcd prints what it prints against etcd. Both servers start fresh and
//! receive the same commands; outputs, errors and exit codes must match once member IDs,
//! cluster IDs and Raft terms (which differ by construction) are masked. Revisions are not
//! masked: they must agree. Needs `etcd` and `etcdctl` on PATH (`ci/install-etcd`).

#![cfg(not(madsim))]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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

fn on_path(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Starts `program` (etcd or detcd) as a single member; returns it and its endpoint.
fn start(program: &str, data_dir: &Path) -> (Process, String) {
    let client = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let child = Command::new(program)
        .args([
            "--name",
            "default",
            "--data-dir",
            data_dir.to_str().unwrap(),
        ])
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
        .args(["--initial-cluster", &format!("default={peer}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    (Process(child), client)
}

/// Runs etcdctl; a `watch` never ends by itself, so it runs for one second (timeout(1)).
fn etcdctl(endpoint: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = if args.first() == Some(&"watch") {
        let mut c = Command::new("timeout");
        c.args(["1", "etcdctl"]);
        c
    } else {
        Command::new("etcdctl")
    };
    cmd.env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "--command-timeout", "5s"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("etcdctl runs");
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn wait_ready(endpoint: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !etcdctl(endpoint, &["put", "ready", "1"], None)
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "{endpoint} never became ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Replaces the digits after each `pattern` with `N`.
fn mask_number(text: &str, pattern: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(pattern) {
        out.push_str(&rest[..at + pattern.len()]);
        rest = rest[at + pattern.len()..].trim_start_matches(|c: char| c.is_ascii_digit());
        out.push('N');
    }
    out.push_str(rest);
    out
}

/// What a comparison sees of one etcdctl run: exit code, stdout, and stderr without the
/// client's timestamped retry logs.
fn normalize(o: &Output) -> String {
    let mut stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    // JSON (-w json) and fields (-w fields) spellings.
    for pattern in [
        "\"cluster_id\":",
        "\"member_id\":",
        "\"raft_term\":",
        "\"ClusterID\" : ",
        "\"MemberID\" : ",
        "\"RaftTerm\" : ",
    ] {
        stdout = mask_number(&stdout, pattern);
    }
    let stderr: Vec<&str> = std::str::from_utf8(&o.stderr)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("{\"level\""))
        .collect();
    format!(
        "exit {:?}\n{stdout}stderr: {}",
        o.status.code(),
        stderr.join("\n")
    )
}

const TXN_SUCCESS: &str = "value(\"foo\") = \"baz\"\n\nput foo qux\nget a/1\n\nput never x\n\n";
const TXN_FAILURE: &str = "mod(\"foo\") < \"2\"\n\nput never x\n\nget foo\n\n";

#[test]
fn etcdctl_output_matches_etcd() {
    for program in ["etcd", "etcdctl"] {
        assert!(
            on_path(program),
            "{program} is not installed: run ci/install-etcd"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let (_etcd, etcd_url) = start("etcd", &dir.path().join("etcd"));
    let (_detcd, detcd_url) = start(env!("CARGO_BIN_EXE_detcd"), &dir.path().join("detcd"));
    wait_ready(&etcd_url);
    wait_ready(&detcd_url);

    let script: &[(&[&str], Option<&str>)] = &[
        (&["put", "foo", "bar"], None),
        (&["get", "foo"], None),
        (&["get", "foo", "-w", "json"], None),
        (&["put", "foo", "baz", "--prev-kv"], None),
        (&["put", "a/1", "x"], None),
        (&["put", "a/2", "y"], None),
        (&["put", "a/3", "z"], None),
        (&["get", "a/", "--prefix", "--keys-only"], None),
        (&["get", "a/", "--prefix", "--limit=2", "-w", "json"], None),
        (
            &[
                "get",
                "a/",
                "--prefix",
                "--sort-by=MODIFY",
                "--order=DESCEND",
            ],
            None,
        ),
        (
            &["get", "a/", "--prefix", "--count-only", "-w", "json"],
            None,
        ),
        (&["get", "", "--from-key", "--keys-only"], None),
        (&["get", "foo", "--rev=3"], None),
        (&["get", "foo", "--consistency=s", "-w", "fields"], None),
        (&["del", "a/2"], None),
        (&["del", "a/", "--prefix", "--prev-kv"], None),
        (&["del", "nothing"], None),
        (&["get", "z", "a"], None),
        (&["del", "z", "a"], None),
        (&["txn"], Some(TXN_SUCCESS)),
        (&["txn"], Some(TXN_FAILURE)),
        (&["get", "foo", "--rev=1000"], None),
        (&["watch", "foo", "--rev=1", "--prev-kv"], None),
        (&["watch", "a/", "--prefix", "--rev=4", "-w", "json"], None),
        (&["compaction", "5"], None),
        (&["get", "foo", "--rev=3"], None),
        (&["watch", "foo", "--rev=2"], None),
        (&["compaction", "4"], None),
        (&["get", "foo", "-w", "json"], None),
    ];
    let mut mismatches = Vec::new();
    for (args, stdin) in script {
        let theirs = normalize(&etcdctl(&etcd_url, args, *stdin));
        let ours = normalize(&etcdctl(&detcd_url, args, *stdin));
        if theirs != ours {
            mismatches.push(format!(
                "etcdctl {}\n--- etcd\n{theirs}\n--- detcd\n{ours}",
                args.join(" ")
            ));
        }
    }
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n\n"));
}
