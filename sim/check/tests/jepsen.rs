//! `detcd-check jepsen` against real detcd processes: a short run under kills and
//! partitions must record operations, inject both faults and be found linearizable; the
//! same runner with a planted bug (serializable reads from random members, `--stale-reads`)
//! must be found not linearizable, which shows the runner can fail at all; membership
//! changes beside the faults keep the history linearizable.

#![cfg(not(madsim))]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest a run may take: its time limit, start-up, healing and the check.
const RUN_DEADLINE: Duration = Duration::from_secs(120);

/// The runner's process, killed if the test ends early.
struct Runner(Child);

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The detcd binary beside detcd-check's. Cargo hands a test only its own package's
/// binaries; `cargo test --workspace` builds detcd's in the same directory.
fn detcd_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_detcd-check")).with_file_name("detcd");
    assert!(
        path.exists(),
        "{} is missing: build it first (`cargo build --bin detcd`) or run `cargo test --workspace`",
        path.display()
    );
    path
}

/// Runs `detcd-check jepsen` with `args` in a run directory under `dir`; returns its exit
/// status, standard output and `summary.json`.
fn jepsen(dir: &Path, args: &[&str]) -> (ExitStatus, String, Value) {
    let run = dir.join("run");
    let out = dir.join("stdout");
    let child = Command::new(env!("CARGO_BIN_EXE_detcd-check"))
        .arg("jepsen")
        .arg("--detcd")
        .arg(detcd_binary())
        .arg("--dir")
        .arg(&run)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(File::create(&out).unwrap())
        .spawn()
        .unwrap();
    let mut runner = Runner(child);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = runner.0.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < RUN_DEADLINE, "the run took too long");
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&out).unwrap();
    let summary = std::fs::read_to_string(run.join("summary.json"))
        .unwrap_or_else(|e| panic!("no summary ({e}); output:\n{stdout}"));
    let history = std::fs::read_to_string(run.join("history.jsonl")).unwrap();
    assert!(!history.is_empty(), "empty history; output:\n{stdout}");
    (status, stdout, serde_json::from_str(&summary).unwrap())
}

fn count(summary: &Value, field: &str, name: &str) -> u64 {
    summary[field][name].as_u64().unwrap_or(0)
}

#[test]
fn kills_and_partitions_leave_the_history_linearizable() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, summary) = jepsen(
        dir.path(),
        &[
            "--members=3",
            "--time-limit=10",
            "--nemesis=kill,partition",
            "--nemesis-interval=1.5",
            "--seed=7",
        ],
    );
    assert_eq!(status.code(), Some(0), "output:\n{stdout}");
    assert_eq!(summary["verdict"], "linearizable", "output:\n{stdout}");
    assert!(count(&summary, "completions", "ok") >= 50, "{summary:#}");
    assert!(count(&summary, "faults", "kill") >= 1, "{summary:#}");
    assert!(count(&summary, "faults", "partition") >= 1, "{summary:#}");
    assert!(summary["converged"]["revision"].as_i64().unwrap() > 1);
}

/// The membership nemesis beside kills and partitions on five members: a member removed,
/// added back as a learner with its data wiped and promoted, the run still linearizable,
/// every member a voter again and converged.
#[test]
fn membership_changes_under_faults_leave_the_history_linearizable() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, summary) = jepsen(
        dir.path(),
        &[
            "--members=5",
            "--time-limit=15",
            "--nemesis=kill,partition",
            "--membership",
            "--nemesis-interval=2.5",
            "--seed=7",
        ],
    );
    assert_eq!(status.code(), Some(0), "output:\n{stdout}");
    assert_eq!(summary["verdict"], "linearizable", "output:\n{stdout}");
    for step in ["member-remove", "member-add-learner", "member-promote"] {
        assert!(count(&summary, "faults", step) >= 1, "{step}: {summary:#}");
    }
    assert!(summary["converged"]["revision"].as_i64().unwrap() > 1);
}

/// Each partition of three members leaves one alone, still answering serializable reads
/// with what it last applied while the other two go on writing.
#[test]
fn stale_reads_under_partitions_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, summary) = jepsen(
        dir.path(),
        &[
            "--members=3",
            "--time-limit=6",
            "--nemesis=partition",
            "--nemesis-interval=1",
            "--seed=7",
            "--stale-reads",
        ],
    );
    assert_eq!(summary["verdict"], "not linearizable", "output:\n{stdout}");
    assert_eq!(status.code(), Some(1), "output:\n{stdout}");
    assert!(stdout.contains("not linearizable"), "output:\n{stdout}");
}

/// Fault names are the simulator's; one this runner cannot inject on real processes is
/// refused by name before anything starts, not silently skipped.
#[test]
fn a_fault_only_the_simulator_injects_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_detcd-check"))
        .args(["jepsen", "--nemesis", "kill,power-loss"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("power-loss is injected by the simulator only"),
        "{stderr}"
    );
}
