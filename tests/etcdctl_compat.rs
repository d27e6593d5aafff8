//! etcdctl against detcd prints what it prints against etcd. Both servers start fresh and
//! receive the same commands; outputs, errors and exit codes must match once member IDs,
//! cluster IDs and Raft terms (which differ by construction) are masked. Revisions are not
//! masked: they must agree. Needs `etcd` and `etcdctl` on PATH (`ci/install-etcd`).

#![cfg(not(madsim))]

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{on_path, Member};

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

/// Replaces the decimal digits after each `pattern` with `N`.
fn mask_number(text: &str, pattern: &str) -> String {
    mask_after(text, pattern, |c| c.is_ascii_digit(), "N")
}

/// Replaces the run of characters `in_run` after each `pattern` with `mask`.
fn mask_after(text: &str, pattern: &str, in_run: fn(char) -> bool, mask: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(pattern) {
        out.push_str(&rest[..at + pattern.len()]);
        rest = rest[at + pattern.len()..].trim_start_matches(in_run);
        out.push_str(mask);
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

/// Replaces every run of digits with `N`, for outputs whose numbers differ by design
/// (ports, sizes, indexes, versions, lease IDs).
fn mask_digits(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if !c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('N') {
            out.push('N');
        }
    }
    out
}

/// One server in a comparison: its endpoint, and values that differ between servers
/// (a file name, a lease ID) behind placeholders, substituted into the arguments and
/// masked back in the output.
struct Side {
    endpoint: String,
    vars: Vec<(&'static str, String)>,
}

impl Side {
    fn run(&self, args: &[&str]) -> String {
        let subst = |a: &str| {
            self.vars
                .iter()
                .fold(a.to_string(), |a, (name, value)| a.replace(name, value))
        };
        let args: Vec<String> = args.iter().map(|a| subst(a)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut text = normalize(&etcdctl(&self.endpoint, &args, None));
        for (name, value) in &self.vars {
            text = text.replace(value.as_str(), name);
        }
        // The exit code line stays as it is.
        let (exit, output) = text.split_once('\n').unwrap_or((&text, ""));
        format!("{exit}\n{}", mask_digits(output))
    }
}

/// Runs `script` on both servers; the outputs must agree once numbers are masked.
fn compare(script: &[&[&str]], etcd: &Side, detcd: &Side) -> Vec<String> {
    let mut mismatches = Vec::new();
    for args in script {
        let (theirs, ours) = (etcd.run(args), detcd.run(args));
        if theirs != ours {
            mismatches.push(format!(
                "etcdctl {}\n--- etcd\n{theirs}\n--- detcd\n{ours}",
                args.join(" ")
            ));
        }
    }
    mismatches
}

/// Puts values of `value_len` bytes until the quota refuses one.
fn fill(endpoint: &str, value_len: usize) {
    let value = "x".repeat(value_len);
    for i in 0..100 {
        let put = etcdctl(endpoint, &["put", &format!("fill/{i}"), &value], None);
        if !put.status.success() {
            return;
        }
    }
    panic!("{endpoint}: the quota never refused a put");
}

/// The NOSPACE alarm under a tiny `--quota-backend-bytes` (each server its own: etcd's
/// bbolt file starts at 20 kB, detcd's redb file at 1 MiB), then `alarm list`, capped
/// writes, `endpoint status`, `defrag`, `snapshot save` and `alarm disarm`.
#[test]
fn alarm_defrag_and_snapshot_output_matches_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Member::new("etcd", dir.path());
    let detcd = Member::new("detcd", dir.path());
    let _etcd = etcd.spawn_with("etcd", None, &["--quota-backend-bytes", "53248"]);
    let _detcd = detcd.spawn_with(
        env!("CARGO_BIN_EXE_detcd"),
        None,
        &["--quota-backend-bytes", "1200000"],
    );
    let side = |m: &Member| Side {
        endpoint: m.client_url(),
        vars: vec![(
            "SNAPSHOT",
            dir.path()
                .join(format!("{}.snapshot.db", m.name))
                .to_str()
                .unwrap()
                .to_string(),
        )],
    };
    let (theirs, ours) = (side(&etcd), side(&detcd));
    wait_ready(&theirs.endpoint);
    wait_ready(&ours.endpoint);
    let mut mismatches = compare(
        &[&["alarm", "list"], &["endpoint", "status", "-w", "json"]],
        &theirs,
        &ours,
    );
    fill(&theirs.endpoint, 10_000);
    fill(&ours.endpoint, 100_000);
    let script: &[&[&str]] = &[
        &["alarm", "list"],
        &["put", "x", "y"],
        &["lease", "grant", "10"],
        &["get", "x"],
        &["endpoint", "status", "-w", "json"],
        &["del", "fill/0"],
        &["defrag"],
        &["snapshot", "save", "SNAPSHOT"],
        &["alarm", "disarm"],
        &["alarm", "list"],
    ];
    mismatches.extend(compare(script, &theirs, &ours));
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n\n"));
}

/// `endpoint status` in etcdctl's simple format, the fields that differ between servers
/// by design (member ID, version, database size, Raft term and indexes) masked.
fn simple_status(endpoint: &str) -> String {
    let out = etcdctl(endpoint, &["endpoint", "status"], None);
    let text = String::from_utf8(out.stdout).unwrap();
    let fields: Vec<&str> = text
        .trim_end_matches('\n')
        .split(", ")
        .enumerate()
        .map(|(i, f)| match i {
            0 if f == endpoint => "ENDPOINT",
            1 | 2 | 3 | 6 | 7 | 8 => "_",
            _ => f,
        })
        .collect();
    format!("exit {:?}: {}", out.status.code(), fields.join(", "))
}

/// Endpoints given as URLs, as etcd's documentation writes them. For calls on one
/// endpoint (status, defrag, hashkv) etcdctl 3.4 sends the whole URL as HTTP/2
/// `:authority`, which Rust's h2 alone would refuse (hyperium/h2#525).
#[test]
fn http_endpoints_match_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Member::new("etcd", dir.path());
    let detcd = Member::new("detcd", dir.path());
    let _etcd = etcd.spawn("etcd", None);
    let _detcd = detcd.start(None);
    let side = |m: &Member| Side {
        endpoint: m.client_url(),
        vars: Vec::new(),
    };
    let (theirs, ours) = (side(&etcd), side(&detcd));
    wait_ready(&theirs.endpoint);
    wait_ready(&ours.endpoint);
    let script: &[&[&str]] = &[
        &["put", "foo", "bar"],
        &["get", "foo"],
        &["endpoint", "status", "-w", "json"],
        &["defrag"],
        &["endpoint", "hashkv", "-w", "json"],
        &["get", "foo", "-w", "json"],
    ];
    let mut mismatches = compare(script, &theirs, &ours);
    let (theirs, ours) = (
        simple_status(&theirs.endpoint),
        simple_status(&ours.endpoint),
    );
    assert_eq!(
        theirs,
        "exit Some(0): ENDPOINT, _, _, _, true, false, _, _, _, "
    );
    if theirs != ours {
        mismatches.push(format!(
            "endpoint status\n--- etcd\n{theirs}\n--- detcd\n{ours}"
        ));
    }
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n\n"));
}

/// The endpoint (host:port) of a follower of the cluster `members` form.
async fn follower(members: &[Member]) -> String {
    let leader = common::cluster::poll("a leader", Duration::from_secs(30), || {
        common::cluster::leader_seen_by(members[0].client_port)
    })
    .await;
    for m in members {
        let id = common::cluster::poll("a member ID", Duration::from_secs(30), || {
            common::cluster::member_id(m.client_port)
        })
        .await;
        if id != leader {
            return format!("127.0.0.1:{}", m.client_port);
        }
    }
    unreachable!("every member is the leader");
}

/// A lease granted through `endpoint`, by its hex ID as etcdctl prints it.
fn grant(endpoint: &str) -> String {
    let out = etcdctl(endpoint, &["lease", "grant", "60"], None);
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace()
        .nth(1)
        .expect("lease <id> granted")
        .to_string()
}

/// Lease calls only the leader answers, sent to a follower of a 3-member cluster.
#[tokio::test]
async fn lease_calls_at_a_follower_match_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let start = |program: &str, prefix: &str| {
        let members: Vec<Member> = (0..3)
            .map(|i| Member::new(&format!("{prefix}{i}"), dir.path()))
            .collect();
        let cluster = common::initial_cluster(&members);
        let procs: Vec<_> = members
            .iter()
            .map(|m| m.spawn(program, Some(&cluster)))
            .collect();
        (members, procs)
    };
    let (etcd, _etcd) = start("etcd", "etcd");
    let (detcd, _detcd) = start(env!("CARGO_BIN_EXE_detcd"), "detcd");
    let mut sides = Vec::new();
    for members in [&etcd, &detcd] {
        let endpoint = follower(members).await;
        wait_ready(&endpoint);
        let lease = grant(&endpoint);
        sides.push(Side {
            endpoint,
            vars: vec![("LEASE", lease)],
        });
    }
    let script: &[&[&str]] = &[
        &["lease", "keep-alive", "--once", "LEASE"],
        &["lease", "timetolive", "LEASE"],
        &["lease", "timetolive", "LEASE", "--keys"],
        &["lease", "keep-alive", "--once", "5eed"],
        &["lease", "timetolive", "5eed"],
        &["lease", "list"],
        &["lease", "revoke", "LEASE"],
        &["lease", "timetolive", "LEASE"],
        &["lease", "revoke", "LEASE"],
        &["endpoint", "status", "-w", "json"],
    ];
    let mismatches = compare(script, &sides[0], &sides[1]);
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n\n"));
    // `endpoint health` prints (to stderr, in etcdctl 3.4) how long the check took, in
    // whatever unit fits.
    for side in &sides {
        let out = etcdctl(&side.endpoint, &["endpoint", "health"], None);
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {text}", side.endpoint);
        assert!(
            text.starts_with(&format!(
                "{} is healthy: successfully committed proposal: took = ",
                side.endpoint
            )),
            "{text}"
        );
    }
}

/// Users, roles and `auth enable`, then what each user may do: outputs and errors as
/// etcd's, refusals included (no token, a wrong password, a key outside the role, a
/// root-only call, deleting root while auth is on).
#[test]
fn etcdctl_auth_output_matches_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Member::new("etcd", dir.path());
    let detcd = Member::new("detcd", dir.path());
    let _etcd = etcd.spawn("etcd", None);
    let _detcd = detcd.spawn_with(env!("CARGO_BIN_EXE_detcd"), None, &["--bcrypt-cost", "4"]);
    let side = |m: &Member| Side {
        endpoint: m.client_url(),
        vars: Vec::new(),
    };
    let (theirs, ours) = (side(&etcd), side(&detcd));
    wait_ready(&theirs.endpoint);
    wait_ready(&ours.endpoint);
    let root = "--user=root:rootpw";
    let alice = "--user=alice:alicepw";
    let mismatches = compare(
        &[
            &["auth", "enable"],
            &["user", "add", "root:rootpw"],
            &["auth", "enable"],
            &["user", "grant-role", "root", "root"],
            &["user", "add", "root:again"],
            &["user", "add", "alice:alicepw"],
            &["role", "add", "reader"],
            &["role", "add", "reader"],
            &[
                "role",
                "grant-permission",
                "reader",
                "read",
                "a/",
                "--prefix",
            ],
            &["role", "grant-permission", "reader", "readwrite", "a/1"],
            &["role", "grant-permission", "nobody", "read", "x"],
            &["user", "grant-role", "alice", "reader"],
            &["user", "grant-role", "alice", "nobody"],
            &["user", "get", "alice"],
            &["user", "list"],
            &["role", "get", "reader"],
            &["role", "list"],
            &["put", "a/1", "one"],
            &["auth", "enable"],
            &["put", "a/2", "x"],
            &["get", "a/1"],
            &[alice, "put", "a/1", "two"],
            &[alice, "put", "a/2", "two"],
            &[alice, "get", "a/", "--prefix"],
            &[alice, "get", "b"],
            &[alice, "del", "a/1"],
            &[alice, "user", "list"],
            &[alice, "user", "get", "alice"],
            &[alice, "role", "get", "reader"],
            &[alice, "defrag"],
            &["--user=alice:wrong", "get", "a/1"],
            &["--user=nobody:pw", "get", "a/1"],
            &[root, "get", "", "--from-key"],
            &[root, "role", "get", "root"],
            &[root, "role", "revoke-permission", "reader", "a/1"],
            &[root, "role", "revoke-permission", "reader", "a/1"],
            &[alice, "put", "a/1", "three"],
            &[root, "user", "revoke-role", "alice", "reader"],
            &[root, "user", "revoke-role", "alice", "reader"],
            &[alice, "get", "a/1"],
            &[root, "user", "delete", "root"],
            &[root, "user", "revoke-role", "root", "root"],
            &[root, "role", "delete", "reader"],
            &[root, "user", "delete", "alice"],
            &[root, "user", "list"],
            &[root, "auth", "disable"],
            &["get", "a/1"],
            &["user", "delete", "nobody"],
            &["role", "delete", "nobody"],
        ],
        &theirs,
        &ours,
    );
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n\n"));
}

/// An etcdctl that runs until it is stopped (`elect`, `lock`): the lines it prints arrive
/// on a channel as it prints them; killed (kill -9) when dropped, however the test ends.
struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Running {
    fn start(endpoint: &str, args: &[&str]) -> Running {
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", endpoint])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("etcdctl runs");
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running { child, lines }
    }

    /// The next `n` lines it prints, waiting for each up to 20 s.
    fn next(&self, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                let line = self.lines.recv_timeout(Duration::from_secs(20));
                line.unwrap_or_else(|e| panic!("etcdctl printed no line: {e}"))
            })
            .collect()
    }

    /// Whether it has printed nothing more so far.
    fn quiet(&self) -> bool {
        self.lines.try_recv().is_err()
    }

    /// Sends `signal` (`INT`, `KILL`), or none, then waits for the end: its exit code,
    /// what it printed since, and its stderr as [`normalize`] shows it.
    fn stop(&mut self, signal: Option<&str>) -> String {
        if let Some(signal) = signal {
            let pid = self.child.id().to_string();
            let sent = Command::new("kill")
                .args([&format!("-{signal}"), &pid])
                .status();
            assert!(sent.unwrap().success(), "kill -{signal} {pid}");
        }
        let status = self.child.wait().unwrap();
        let mut stderr = Vec::new();
        std::io::Read::read_to_end(self.child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
        let printed: Vec<String> = self.lines.iter().collect();
        let output = Output {
            status,
            stdout: printed
                .iter()
                .map(|l| format!("{l}\n"))
                .collect::<String>()
                .into(),
            stderr,
        };
        normalize(&output)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls until `count` keys live under `prefix`.
fn wait_keys(endpoint: &str, prefix: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = etcdctl(endpoint, &["get", prefix, "--prefix", "--keys-only"], None);
        let text = String::from_utf8_lossy(&out.stdout);
        if text.lines().filter(|l| !l.is_empty()).count() == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never {count} keys under {prefix}: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The lease ID in a key `name/<lease hex>` as etcdctl prints it.
fn lease_of(key: &str) -> &str {
    key.rsplit_once('/').expect("name/lease").1
}

/// What a campaigner prints once elected (its key and proposal), which the listener must
/// print too.
fn elected(campaigner: &Running, listener: &Running) -> Vec<String> {
    let lines = campaigner.next(2);
    assert_eq!(listener.next(2), lines, "the listener names the new leader");
    lines
}

/// etcdctl 3.4's `elect` and `lock` (the client-side recipes of etcd's `concurrency`
/// package: sessions, creation-revision order, watches on the previous key) on one
/// server: campaigners and lock holders interrupted, killed and outlived by their leases,
/// a listener following each leader. Returns the transcript, lease IDs masked.
fn elect_and_lock(endpoint: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Lease IDs differ by design (etcd's carry the member ID and a timestamp).
    let mask = |text: String| {
        ["svc/", "job/", "lease "].iter().fold(text, |t, p| {
            mask_after(&t, p, |c| c.is_ascii_hexdigit(), "LEASE")
        })
    };
    let mut say = |what: &str, text: String| out.push(format!("{what}\n{}", mask(text)));
    let mut listener = Running::start(endpoint, &["elect", "--listen", "svc"]);
    let mut p1 = Running::start(endpoint, &["elect", "svc", "p1"]);
    say("p1 elected", elected(&p1, &listener).join("\n"));
    let mut p2 = Running::start(endpoint, &["elect", "svc", "p2"]);
    wait_keys(endpoint, "svc/", 2);
    assert!(p2.quiet(), "p2 elected while p1 leads");
    say("p1 interrupted", p1.stop(Some("INT")));
    let p2_key = elected(&p2, &listener);
    say("p2 elected", p2_key.join("\n"));
    let mut p3 = Running::start(endpoint, &["elect", "svc", "p3"]);
    wait_keys(endpoint, "svc/", 2);
    say("p2 killed", p2.stop(Some("KILL")));
    assert!(p3.quiet() && listener.quiet(), "p2's lease still lives");
    let revoke = etcdctl(endpoint, &["lease", "revoke", lease_of(&p2_key[0])], None);
    say("p2's lease revoked", normalize(&revoke));
    say("p3 elected", elected(&p3, &listener).join("\n"));
    say("p3 interrupted", p3.stop(Some("INT")));
    say("listener interrupted", listener.stop(Some("INT")));
    say(
        "leaders left",
        normalize(&etcdctl(endpoint, &["get", "svc/", "--prefix"], None)),
    );

    let mut holder = Running::start(endpoint, &["lock", "job"]);
    say("holder", holder.next(1).join("\n"));
    let mut waiter = Running::start(endpoint, &["lock", "--ttl", "3", "job"]);
    wait_keys(endpoint, "job/", 2);
    assert!(waiter.quiet(), "two holders");
    say("holder interrupted", holder.stop(Some("INT")));
    say("waiter", waiter.next(1).join("\n"));
    let echo = r#"echo "$ETCD_LOCK_KEY" "$ETCD_LOCK_REV""#;
    let mut exec = Running::start(endpoint, &["lock", "job", "--", "sh", "-c", echo]);
    wait_keys(endpoint, "job/", 2);
    // Killed, the waiter holds the lock until its lease (3 s, kept alive every second)
    // expires.
    let killed = Instant::now();
    say("waiter killed", waiter.stop(Some("KILL")));
    let line = exec.next(1);
    let waited = killed.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "granted {waited:?} after the kill"
    );
    say("exec", line.join("\n"));
    say("exec ends", exec.stop(None));
    say(
        "locks left",
        normalize(&etcdctl(endpoint, &["get", "job/", "--prefix"], None)),
    );
    out
}

/// `etcdctl elect`, `elect --listen` and `lock` print against detcd what they print
/// against etcd, revisions included.
#[test]
fn etcdctl_elect_and_lock_match_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Member::new("etcd", dir.path());
    let detcd = Member::new("detcd", dir.path());
    let _etcd = etcd.spawn("etcd", None);
    let _detcd = detcd.start(None);
    wait_ready(&etcd.client_url());
    wait_ready(&detcd.client_url());
    let theirs = elect_and_lock(&etcd.client_url());
    let ours = elect_and_lock(&detcd.client_url());
    let mismatches: Vec<String> = theirs
        .iter()
        .zip(&ours)
        .filter(|(t, o)| t != o)
        .map(|(t, o)| format!("--- etcd\n{t}\n--- detcd\n{o}"))
        .collect();
    assert!(mismatches.is_empty(), "\n{}", mismatches.join("\n\n"));
}
