//! Helpers for membership tests: members that join an existing cluster, processes that
//! stop by themselves, and calls retried while the cluster is not yet healthy for a change.

use std::time::{Duration, Instant};

use super::{grpc_message, Member, Process};

/// etcd refuses changes until every voter has been connected for its health interval.
const UNHEALTHY: &str = "etcdserver: unhealthy cluster";

/// Starts detcd for `m` with `--initial-cluster-state existing`.
pub fn start_joining(m: &Member, initial_cluster: &str) -> Process {
    m.spawn_with(
        env!("CARGO_BIN_EXE_detcd"),
        Some(initial_cluster),
        &["--initial-cluster-state", "existing"],
    )
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
