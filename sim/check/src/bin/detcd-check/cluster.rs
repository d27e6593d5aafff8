//! A cluster of real detcd processes on loopback, each with its own data directory and log
//! file in the run directory, and a [`Proxy`] on every directed peer link: member `a` dials
//! member `b` at proxy (a, b) while both advertise their real peer URLs, so member IDs are
//! the same as without proxies. A member the membership nemesis removed and added back
//! under a new ID is dialed by the others at its real peer URL (they learn it from the
//! log) until they restart, so partitions reach its inbound links only after that.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use detcd::proto::etcdserverpb::cluster_client::ClusterClient;
use detcd::proto::etcdserverpb::kv_client::KvClient;
use detcd::proto::etcdserverpb::maintenance_client::MaintenanceClient;
use detcd::proto::etcdserverpb::{
    Member as Listed, MemberAddRequest, MemberListRequest, MemberPromoteRequest,
    MemberRemoveRequest, RangeRequest, StatusRequest, StatusResponse,
};
use detcd::server::config::member_id;
use detcd::server::url::Url;
use detcd_check::client::{channel, converged};

use crate::proxy::Proxy;

/// The `--initial-cluster-token` of every run.
const TOKEN: &str = "detcd-jepsen";
/// Longest wait for one status or hash answer.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait for one membership call (a change waits for its commit).
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause between polls of the members.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The key the readiness probe reads; the workload never touches it.
const READY_KEY: &str = "jepsen-ready";

/// One member: where it listens, and its process while it runs.
struct Member {
    name: String,
    id: u64,
    data_dir: PathBuf,
    log: PathBuf,
    client_port: u16,
    peer_port: u16,
    process: Option<Child>,
    paused: bool,
    /// Removed from the cluster by the membership nemesis: never restarted until added
    /// back.
    removed: bool,
    /// Added back under a new ID: it starts with `--initial-cluster-state existing`, which
    /// joins the running cluster while its data directory is empty (a kill may come before
    /// it wrote anything) and is ignored once it has data.
    joining: bool,
}

impl Member {
    fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
}

pub struct Cluster {
    detcd: PathBuf,
    members: Vec<Member>,
    /// Keyed by (dialing member, dialed member).
    proxies: BTreeMap<(usize, usize), Proxy>,
}

/// `n` distinct free loopback ports, all held until all are chosen.
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

impl Cluster {
    /// Starts `size` members of a new cluster under `dir`, not waiting for them.
    pub async fn start(detcd: &Path, size: usize, dir: &Path) -> Result<Cluster, String> {
        let ports = free_ports(2 * size).map_err(|e| format!("no free ports: {e}"))?;
        let mut members = Vec::new();
        for i in 0..size {
            let name = format!("m{i}");
            let peer_port = ports[2 * i + 1];
            let peer_url = Url::parse(&format!("http://127.0.0.1:{peer_port}"))?;
            members.push(Member {
                id: member_id(&[peer_url], TOKEN),
                data_dir: dir.join(&name),
                log: dir.join(format!("{name}.log")),
                name,
                client_port: ports[2 * i],
                peer_port,
                process: None,
                paused: false,
                removed: false,
                joining: false,
            });
        }
        let mut proxies = BTreeMap::new();
        for a in 0..size {
            for (b, to) in members.iter().enumerate().filter(|&(b, _)| b != a) {
                let target = SocketAddr::from(([127, 0, 0, 1], to.peer_port));
                let proxy = Proxy::start(target)
                    .await
                    .map_err(|e| format!("cannot start the proxy m{a}->m{b}: {e}"))?;
                proxies.insert((a, b), proxy);
            }
        }
        let mut cluster = Cluster {
            detcd: detcd.to_path_buf(),
            members,
            proxies,
        };
        for i in 0..size {
            cluster.spawn(i)?;
        }
        Ok(cluster)
    }

    pub fn size(&self) -> usize {
        self.members.len()
    }

    pub fn client_urls(&self) -> Vec<String> {
        self.members.iter().map(Member::client_url).collect()
    }

    /// Starts member `i`'s process, from its data directory if it has one.
    fn spawn(&mut self, i: usize) -> Result<(), String> {
        let initial_cluster: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect();
        let dial: Vec<String> = self
            .members
            .iter()
            .enumerate()
            .filter(|&(b, _)| b != i)
            .map(|(b, m)| {
                format!(
                    "{}=http://127.0.0.1:{}",
                    m.name,
                    self.proxies[&(i, b)].port()
                )
            })
            .collect();
        let m = &mut self.members[i];
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .map_err(|e| format!("{}: {e}", m.log.display()))?;
        let stderr = log
            .try_clone()
            .map_err(|e| format!("{}: {e}", m.log.display()))?;
        let mut cmd = Command::new(&self.detcd);
        cmd.args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &m.client_url()])
            .args(["--advertise-client-urls", &m.client_url()])
            .args(["--listen-peer-urls", &m.peer_url()])
            .args(["--initial-advertise-peer-urls", &m.peer_url()])
            .args(["--initial-cluster", &initial_cluster.join(",")])
            .args(["--initial-cluster-token", TOKEN])
            .args(["--experimental-peer-dial-urls", &dial.join(",")])
            .args(if m.joining {
                &["--initial-cluster-state", "existing"][..]
            } else {
                &[]
            })
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("info".into()),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(stderr);
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            // Members die with the runner even when it is killed, so no run leaves
            // processes behind.
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.detcd.display()))?;
        let _ = writeln!(
            log,
            "--- detcd-check: started {} (pid {})",
            m.name,
            child.id()
        );
        m.process = Some(child);
        m.paused = false;
        Ok(())
    }

    /// kill -9 member `i`; true if it was running.
    pub fn kill(&mut self, i: usize) -> bool {
        let m = &mut self.members[i];
        let Some(mut child) = m.process.take() else {
            return false;
        };
        let _ = child.kill();
        let _ = child.wait();
        m.paused = false;
        note(&m.log, &format!("killed {}", m.name));
        true
    }

    /// Restarts member `i` from its data directory, unless it runs or was removed.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        if self.members[i].process.is_some() || self.members[i].removed {
            return Ok(());
        }
        self.spawn(i)
    }

    /// Whether member `i` runs and is not paused.
    pub fn running(&self, i: usize) -> bool {
        self.members[i].process.is_some() && !self.members[i].paused
    }

    /// Member `i` as the cluster lists it (asking each running member in turn), or None
    /// if no member lists it; Err if none answered.
    pub async fn listed(&self, i: usize) -> Result<Option<Listed>, String> {
        let peer_url = self.members[i].peer_url();
        let list = self
            .membership_call(
                |mut c| async move { c.member_list(MemberListRequest::default()).await },
            )
            .await?;
        Ok(list
            .members
            .into_iter()
            .find(|m| m.peer_ur_ls.contains(&peer_url)))
    }

    /// Removes member `i` from the cluster (unless the cluster no longer lists it: a call
    /// that timed out may have been applied), kills it and wipes its data.
    pub async fn remove(&mut self, i: usize) -> Result<(), String> {
        if let Some(listed) = self.listed(i).await? {
            let id = listed.id;
            let removed = self
                .membership_call(|mut c| async move {
                    c.member_remove(MemberRemoveRequest { id }).await
                })
                .await;
            if let Err(e) = removed {
                if self.listed(i).await?.is_some() {
                    return Err(e);
                }
            }
        }
        self.kill(i);
        let m = &mut self.members[i];
        m.removed = true;
        std::fs::remove_dir_all(&m.data_dir).or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(format!("{}: {e}", m.data_dir.display())),
        })?;
        note(&m.log, &format!("removed {} and wiped its data", m.name));
        Ok(())
    }

    /// Adds removed member `i` back as a learner (unless the cluster lists it already) and
    /// starts it, empty, joining the cluster.
    pub async fn add_learner(&mut self, i: usize) -> Result<(), String> {
        let id = match self.listed(i).await? {
            Some(listed) => listed.id,
            None => {
                let peer_ur_ls = vec![self.members[i].peer_url()];
                let added = self
                    .membership_call(|mut c| {
                        let peer_ur_ls = peer_ur_ls.clone();
                        async move {
                            let add = MemberAddRequest {
                                peer_ur_ls,
                                is_learner: true,
                            };
                            c.member_add(add).await
                        }
                    })
                    .await?;
                added
                    .member
                    .map(|m| m.id)
                    .ok_or("member add: no member in the answer")?
            }
        };
        let m = &mut self.members[i];
        m.id = id;
        m.removed = false;
        m.joining = true;
        note(&m.log, &format!("added {} back as learner {id:x}", m.name));
        self.spawn(i)
    }

    /// Promotes learner `id`.
    pub async fn promote(&self, id: u64) -> Result<(), String> {
        self.membership_call(
            |mut c| async move { c.member_promote(MemberPromoteRequest { id }).await },
        )
        .await
        .map(drop)
    }

    /// Sends a Cluster call to each running member in turn until one answers; Err with the
    /// last refusal if none does.
    async fn membership_call<T, F, Fut>(&self, call: F) -> Result<T, String>
    where
        F: Fn(ClusterClient<tonic::transport::Channel>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last = "no member runs".to_string();
        for (i, m) in self.members.iter().enumerate() {
            if !self.running(i) || m.removed {
                continue;
            }
            let Ok(ch) = channel(&m.client_url()) else {
                continue;
            };
            match tokio::time::timeout(MEMBERSHIP_TIMEOUT, call(ClusterClient::new(ch))).await {
                Ok(Ok(resp)) => return Ok(resp.into_inner()),
                Ok(Err(status)) => last = format!("{}: {}", m.name, status.message()),
                Err(_) => last = format!("{}: no answer in time", m.name),
            }
        }
        Err(last)
    }

    /// SIGSTOP (`stop`) or SIGCONT member `i`; true if its state changed.
    pub fn pause(&mut self, i: usize, stop: bool) -> bool {
        let m = &mut self.members[i];
        let Some(child) = &m.process else {
            return false;
        };
        if m.paused == stop {
            return false;
        }
        let signal = if stop { libc::SIGSTOP } else { libc::SIGCONT };
        // SAFETY: kill(2) on our own child's pid, which wait() has not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        m.paused = stop;
        let what = if stop { "paused" } else { "resumed" };
        note(&m.log, &format!("{what} {}", m.name));
        true
    }

    /// Cuts every link between `a` and `b`, both ways.
    pub fn cut(&self, a: usize, b: usize) {
        self.proxies[&(a, b)].cut();
        self.proxies[&(b, a)].cut();
    }

    pub fn heal_links(&self) {
        for p in self.proxies.values() {
            p.heal();
        }
    }

    /// Restarts killed members, resumes paused ones and heals every link.
    pub fn heal(&mut self) -> Result<(), String> {
        self.heal_links();
        for i in 0..self.size() {
            self.pause(i, false);
            self.restart(i)?;
        }
        Ok(())
    }

    /// Member `i`'s status, if it answers in time.
    async fn status(&self, i: usize) -> Option<StatusResponse> {
        let mut m = MaintenanceClient::new(channel(&self.members[i].client_url()).ok()?);
        let call = m.status(StatusRequest {});
        let resp = tokio::time::timeout(QUERY_TIMEOUT, call).await.ok()?.ok()?;
        Some(resp.into_inner())
    }

    /// The leader that a member reports in the highest term, if any does.
    pub async fn leader(&self) -> Option<usize> {
        let mut best: Option<(u64, u64)> = None;
        for i in 0..self.size() {
            if let Some(s) = self.status(i).await.filter(|s| s.leader != 0) {
                best = best.max(Some((s.raft_term, s.leader)));
            }
        }
        let (_, leader) = best?;
        self.members.iter().position(|m| m.id == leader)
    }

    /// Waits until every member answers and a linearizable read succeeds (there is a
    /// leader). Nothing is written, so the history starts at revision 1, as the etcd
    /// model assumes.
    pub async fn wait_ready(&self, deadline: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let mut answering = 0;
            for i in 0..self.size() {
                answering += usize::from(self.status(i).await.is_some());
            }
            if answering == self.size() && self.probe_read().await {
                return Ok(());
            }
            if start.elapsed() > deadline {
                return Err(format!(
                    "the cluster was not ready after {}s ({answering} of {} members answered); \
                     see the member logs",
                    deadline.as_secs(),
                    self.size()
                ));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn probe_read(&self) -> bool {
        let Ok(ch) = channel(&self.members[0].client_url()) else {
            return false;
        };
        let mut kv = KvClient::new(ch);
        let read = kv.range(RangeRequest {
            key: READY_KEY.into(),
            ..RangeRequest::default()
        });
        matches!(tokio::time::timeout(QUERY_TIMEOUT, read).await, Ok(Ok(_)))
    }

    /// Every member's HashKV at the one revision all report: Ok((revision, hash)) when
    /// they agree; Err says what differed or stood in the way at the deadline.
    pub async fn converge(&self, deadline: Duration) -> Result<(i64, u32), String> {
        let c = converged(&self.client_urls(), deadline).await?;
        Ok((c.revision, c.agree()?))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.size() {
            self.kill(i);
        }
    }
}

fn note(log: &Path, what: &str) {
    if let Ok(mut f) = OpenOptions::new().append(true).open(log) {
        let _ = writeln!(f, "--- detcd-check: {what}");
    }
}
