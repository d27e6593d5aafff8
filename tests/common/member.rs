//! Helpers for membership tests: members that join an existing cluster, processes that
//! stop by themselves, and calls retried while the cluster is not yet healthy for a change.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{grpc_message, Member, Process};

/// etcd refuses changes until every voter has been connected for its health interval.
const UNHEALTHY: &str = "etcdserver: unhealthy cluster";

/// Starts detcd for `m` with `--initial-cluster-state existing`, through a wrapper script
/// in `dir` that adds the flag to the ones [`Member::spawn`] passes.
pub fn start_joining(m: &Member, initial_cluster: &str, dir: &Path) -> Process {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join(format!("join-{}.sh", m.name));
    let body = format!(
        "#!/bin/sh\nexec {} \"$@\" --initial-cluster-state existing\n",
        env!("CARGO_BIN_EXE_detcd")
    );
    std::fs::write(&script, body).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    m.spawn(script.to_str().unwrap(), Some(initial_cluster))
}

/// Whether the process has exited.
pub fn exited(p: &mut Process) -> bool {
    matches!(p.0.try_wait(), Ok(Some(_)))
}

/// Runs `call` until it gives an answer other than "unhealthy cluster", for up to 20 s.
pub async fn once_healthy<T, F, Fut>(mut call: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match call().await.map_err(grpc_message) {
            Err(e) if e == UNHEALTHY && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}
