//! Helpers for the maintenance tests: members started with extra flags, and SIGTERM.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::Process;

/// A program that runs `program` with `flags` before the flags it is given, for
/// [`super::Member::spawn`]: the script `exec`s, so the member's process is `program`.
pub fn with_flags(dir: &Path, program: &str, flags: &[&str]) -> String {
    let path = dir.join(format!(
        "{}-{}.sh",
        Path::new(program).file_name().unwrap().to_str().unwrap(),
        flags.join("_").replace(['-', '/'], "")
    ));
    let script = format!("#!/bin/sh\nexec {program} {} \"$@\"\n", flags.join(" "));
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_str().unwrap().to_string()
}

/// Sends SIGTERM and waits for the process to exit, up to `deadline`; `None` if it is
/// still running then.
pub fn terminate(p: &mut Process, deadline: Duration) -> Option<ExitStatus> {
    let pid = p.0.id() as libc::pid_t;
    // SAFETY: kill(2) with a pid this test started and has not reaped.
    assert_eq!(
        unsafe { libc::kill(pid, libc::SIGTERM) },
        0,
        "kill -TERM {pid}"
    );
    let start = Instant::now();
    while start.elapsed() < deadline {
        if let Some(status) = p.0.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
