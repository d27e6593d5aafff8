//! Helpers for tests that run real member processes (detcd, or etcd for comparison).
//! Each test binary uses a different subset of them.
#![allow(dead_code)]

pub mod cluster;
pub mod http;
pub mod maint;
pub mod member;
pub mod tls;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::Client;

/// A member process, killed (kill -9) when dropped, however the test ends.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How to start one member: its name, data directory and loopback ports.
pub struct Member {
    pub name: String,
    pub data_dir: PathBuf,
    pub client_port: u16,
    pub peer_port: u16,
    /// `http` unless a test serves TLS.
    pub client_scheme: &'static str,
    pub peer_scheme: &'static str,
}

impl Member {
    /// A member on fresh ports, with its data under `dir`.
    pub fn new(name: &str, dir: &Path) -> Member {
        Member {
            name: name.to_string(),
            data_dir: dir.join(name),
            client_port: free_port(),
            peer_port: free_port(),
            client_scheme: "http",
            peer_scheme: "http",
        }
    }

    pub fn client_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.client_scheme, self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.peer_scheme, self.peer_port)
    }

    /// Starts `program` with etcd's flags for this member; `initial_cluster` defaults to
    /// this member alone.
    pub fn spawn(&self, program: &str, initial_cluster: Option<&str>) -> Process {
        self.spawn_with(program, initial_cluster, &[])
    }

    /// [`Member::spawn`] with `extra` flags after the member's own. Flags are passed as
    /// arguments, never through a wrapper script: a script written while another test
    /// thread forks can be held open for writing by that child, and exec then fails with
    /// "Text file busy".
    pub fn spawn_with(
        &self,
        program: &str,
        initial_cluster: Option<&str>,
        extra: &[&str],
    ) -> Process {
        let child = self
            .command(program, initial_cluster, extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        Process(child)
    }

    /// Starts detcd for this member with `extra` flags, its log (at `RUST_LOG=info`)
    /// going to `log`.
    pub fn start_logged(&self, initial_cluster: &str, extra: &[&str], log: &Path) -> Process {
        let log = std::fs::File::create(log).unwrap();
        let child = self
            .command(env!("CARGO_BIN_EXE_detcd"), Some(initial_cluster), extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start detcd: {e}"));
        Process(child)
    }

    /// The command line of [`Member::spawn_with`].
    pub fn command(&self, program: &str, initial_cluster: Option<&str>, extra: &[&str]) -> Command {
        let own = format!("{}={}", self.name, self.peer_url());
        let mut command = Command::new(program);
        command
            .args(["--name", &self.name])
            .args(["--data-dir", self.data_dir.to_str().unwrap()])
            .args(["--listen-client-urls", &self.client_url()])
            .args(["--advertise-client-urls", &self.client_url()])
            .args(["--listen-peer-urls", &self.peer_url()])
            .args(["--initial-advertise-peer-urls", &self.peer_url()])
            .args(["--initial-cluster", initial_cluster.unwrap_or(&own)])
            .args(["--initial-cluster-token", "detcd-test"])
            .args(extra);
        command
    }

    /// Starts detcd for this member.
    pub fn start(&self, initial_cluster: Option<&str>) -> Process {
        self.spawn(env!("CARGO_BIN_EXE_detcd"), initial_cluster)
    }
}

/// `name=peer-url,...` for `members`.
pub fn initial_cluster(members: &[Member]) -> String {
    members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect::<Vec<_>>()
        .join(",")
}

/// A client of the member on `port` once a write succeeds there (a leader exists),
/// polling until a deadline.
pub async fn ready_client(port: u16) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut c) = Client::connect([format!("http://127.0.0.1:{port}")], None).await {
            if c.put("__ready", "", None).await.is_ok() {
                return c;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no member became ready on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The server's message in a client error.
pub fn grpc_message(e: etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.message().to_string(),
        other => other.to_string(),
    }
}

/// Where ci/install-etcd puts the official etcd 3.5.1 binaries (`$ETCD35_DIR` overrides).
pub fn etcd35_dir() -> PathBuf {
    std::env::var_os("ETCD35_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/etcd-v3.5.1"))
}

/// The etcd 3.5.1 binary `name` (etcd, etcdctl, etcdutl), or `None` with a message saying
/// the test that wanted it is skipped.
pub fn etcd35(name: &str, test: &str) -> Option<PathBuf> {
    let path = etcd35_dir().join(name);
    if path.is_file() {
        return Some(path);
    }
    eprintln!(
        "SKIPPED {test}: {} is absent (run ci/install-etcd, or set ETCD35_DIR)",
        path.display()
    );
    None
}

/// Whether `program` runs (is on PATH).
pub fn on_path(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}
