//! etcdctl against detcd prints what it prints against etcd. Both servers start fresh and
//! receive the same commands; outputs, errors and exit codes must match once member IDs,
//! cluster IDs and Raft terms (which differ by construction) are masked. Revisions are not
//! masked: they must agree. Needs `etcd` and `etcdctl` on PATH (`ci/install-etcd`).

#![cfg(not(madsim))]

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Member;

fn on_path(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
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
    let etcd = Member::new("etcd", dir.path());
    let detcd = Member::new("detcd", dir.path());
    let _etcd = etcd.spawn("etcd", None);
    let _detcd = detcd.start(None);
    let (etcd_url, detcd_url) = (etcd.client_url(), detcd.client_url());
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

/// What a comparison sees of a membership command: [`normalize`], then the server's own
/// URLs as `CLIENT` and `PEER`, member and cluster IDs (hex or decimal, 10 digits or more)
/// as `ID`, runs of spaces and of dashes as one (etcdctl pads IDs to 16 columns, tables
/// to the widest cell), and the members of
/// `ETCD_INITIAL_CLUSTER` sorted; with `sort_lines`, lines sorted (lists order members by
/// ID, which differ).
fn normalize_members(o: &Output, m: &Member, sort_lines: bool) -> String {
    let text = normalize(o)
        .replace(&m.client_url(), "CLIENT")
        .replace(&m.peer_url(), "PEER");
    let mut lines: Vec<String> = text
        .lines()
        .map(|line| {
            let line = match line.strip_prefix("ETCD_INITIAL_CLUSTER=\"") {
                Some(rest) => {
                    let mut members: Vec<&str> = rest.trim_end_matches('"').split(',').collect();
                    members.sort();
                    format!("ETCD_INITIAL_CLUSTER=\"{}\"", members.join(","))
                }
                None => line.to_string(),
            };
            mask_ids(&line)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    if sort_lines {
        lines.sort();
    }
    lines.join("\n")
}

/// Replaces every run of 10 or more hex digits with `ID`.
fn mask_ids(line: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for c in line.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        out.push_str(if run.len() >= 10 { "ID" } else { &run });
        run.clear();
        out.push(c);
    }
    out.pop();
    out
}

/// The ID in etcdctl's "Member <hex id> added to cluster ..." line.
fn added_id(o: &Output) -> String {
    let stdout = String::from_utf8_lossy(&o.stdout);
    let id = stdout.split_whitespace().nth(1);
    id.unwrap_or_else(|| panic!("member add printed {stdout:?}"))
        .to_string()
}

#[test]
fn etcdctl_member_commands_match_etcd() {
    let (etcd_dir, detcd_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The same name on both, so that lists compare as they are.
    let etcd = Member::new("m", etcd_dir.path());
    let detcd = Member::new("m", detcd_dir.path());
    let _etcd = etcd.spawn("etcd", None);
    let _detcd = detcd.start(None);
    for m in [&etcd, &detcd] {
        wait_ready(&m.client_url());
        // A member lists its client URLs once it has published them through the log.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !String::from_utf8_lossy(&etcdctl(&m.client_url(), &["member", "list"], None).stdout)
            .contains(&m.client_url())
        {
            assert!(
                Instant::now() < deadline,
                "{} never listed its client URL",
                m.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let learner_url = "http://127.0.0.1:9";
    let add = [
        "member",
        "add",
        "new",
        "--peer-urls",
        learner_url,
        "--learner",
    ];
    let run = |m: &Member| -> Vec<String> {
        let url = m.client_url();
        let mut out = Vec::new();
        let mut step = |args: &[&str], sort_lines: bool| {
            let o = etcdctl(&url, args, None);
            out.push(format!(
                "etcdctl {}\n{}",
                mask_ids(&args.join(" ")),
                normalize_members(&o, m, sort_lines)
            ));
            o
        };
        step(&["member", "list"], false);
        step(&["member", "list", "-w", "json"], false);
        step(&["member", "list", "-w", "table"], false);
        let id = added_id(&step(&add, false));
        step(&["member", "list"], true);
        step(&["member", "promote", &id], false);
        step(
            &[
                "member",
                "add",
                "other",
                "--peer-urls",
                "http://127.0.0.1:8",
                "--learner",
            ],
            false,
        );
        step(&["member", "remove", &id], false);
        step(&["member", "remove", &id], false);
        step(&["member", "list", "-w", "json"], false);
        out
    };
    let (theirs, ours) = (run(&etcd), run(&detcd));
    let mismatches: Vec<String> = theirs
        .iter()
        .zip(&ours)
        .filter(|(t, o)| t != o)
        .map(|(t, o)| format!("--- etcd\n{t}\n--- detcd\n{o}"))
        .collect();
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n\n"));
}
