//! Helpers for the maintenance tests: SIGTERM and waiting for the exit.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::Process;

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
    wait_exit(p, deadline)
}

/// Waits up to `deadline` for the process to exit; `None` if it is still running then.
pub fn wait_exit(p: &mut Process, deadline: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if let Some(status) = p.0.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}
