//! Starting a member: its data directory, store, WAL, member loop and background jobs,
//! all from a checked [`ServerConfig`]. The listeners are the composition root's
//! (`crate::start`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::apply::Applier;
use super::config::{AuthToken, ServerConfig};
use super::corrupt::{self, CompactionHashes};
use super::lease_forward::LeaseForwarder;
use super::member::{self, Fatal, MemberConfig, MemberError, MemberTask};
use super::metrics::ServerMetrics;
use super::snapshot::{self, Inbox, SnapshotOptions};
use super::snapshot_stream::SnapshotDir;
use super::store::{lock, LeaseClock, SharedStore};
use super::transport::{PeerService, Transport};
use super::url::Url;
use super::v3::Server;
use crate::auth::{AuthStore, JwtTokens};
use crate::lease::{Lessor, LessorConfig};
use crate::mvcc::{self, KvStore, WatchConfig, WatchableStore};
use crate::net::Dialer;
use crate::proto::etcdserverpb::{
    LeaseCheckpointRequest, LeaseCheckpointResponse, LeaseRevokeRequest,
};
use crate::proto::internalpb::internal_raft_request::Request as Internal;
use crate::runtime::{Clock, Disk};
use crate::wal::{Wal, WalOptions};

/// Received peer messages waiting for the member loop.
const INBOUND_QUEUE_LEN: usize = 8192;
/// How long a client request waits for its entry to apply (etcd: 5 s plus election time).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);
/// How often, while some watcher is a victim or unsynced, the sync pass runs (etcd: 10 ms
/// for victims, 100 ms for unsynced watchers, but at once again while it makes progress).
/// A victim's buffer is often full for a moment only, as a fan-out burst fills it; retried
/// only every 100 ms, 10,000 watchers under load saw event p99 of 694-895 ms, against
/// 489-622 ms with this retry.
const WATCH_VICTIM_INTERVAL: Duration = Duration::from_millis(10);
/// The shortest pause between sync passes while unsynced watchers are left.
const WATCH_CATCH_UP_PAUSE: Duration = Duration::from_millis(1);
/// How often the leader looks for expired leases (etcd: 500 ms).
const LEASE_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// How often the leader checkpoints remaining TTLs, so that a new leader does not give
/// every lease its full TTL again (etcd's default, 5 min).
const LEASE_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(300);

/// etcd's minimum lease TTL: 1.5 election timeouts, in whole seconds, rounded up.
fn min_lease_ttl(election_timeout: Duration) -> i64 {
    (election_timeout.as_millis() as u64 * 3 / 2).div_ceil(1000) as i64
}

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("detcd: cannot listen on {url}: {reason}")]
    Listen { url: String, reason: String },
    #[error("detcd: cannot open the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("detcd: {0}")]
    Store(#[from] mvcc::Error),
    #[error("detcd: {0}")]
    Member(#[from] MemberError),
    #[error("detcd: {0}")]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error("detcd: member stopped: {0}")]
    Stopped(String),
    /// The backend file holds what the member cannot read (a damaged row, an I/O error).
    #[error("detcd: {}: {reason}", path.display())]
    Backend { path: PathBuf, reason: String },
    /// The initial corruption check found this member's data differs from a peer's.
    #[error("detcd: {0}")]
    Corrupt(String),
    /// A TLS or JWT key file that cannot be read or used.
    #[error("detcd: {0}")]
    Keys(String),
}

/// The socket address to bind for `url`: `localhost` means the IPv4 loopback.
pub fn bind_addr(url: &Url) -> Result<SocketAddr, BootError> {
    let host = url.host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host == "localhost" {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse().map_err(|_| BootError::Listen {
            url: url.to_string(),
            reason: "listen URLs need an IP address or localhost".into(),
        })?
    };
    Ok(SocketAddr::new(ip, url.port))
}

/// A started member: its server, the Raft transport's peer service, and the member loop.
pub struct Started {
    pub server: Server,
    /// Serves Raft messages and snapshots from peers, beside the peer services in `api`.
    pub raft_peers: PeerService,
    /// Ends when the member stops: removed, or its durable state failed.
    pub member_task: MemberTask,
    /// Ends only when moving watchers forward failed to read the backend: the member
    /// then cannot keep its watch guarantees and must stop.
    pub watch_sync: JoinHandle<Fatal>,
}

/// Opens the data directory, store and WAL, finds the member's identity, and starts the
/// member loop and its background jobs (watcher sync, lease expiry, publishing this
/// member's attributes). Every peer call dials through `dialer`.
pub async fn start(
    cfg: &ServerConfig,
    disk: Arc<dyn Disk>,
    dialer: Dialer,
) -> Result<Started, BootError> {
    let member_dir = cfg.data_dir.join("member");
    let snap_dir = member_dir.join("snap");
    // A member that has run before (etcd: its WAL exists) checks its data at start.
    let initialized = Wal::exists(disk.as_ref(), &member_dir.join("wal"));
    disk.create_dir_all(&snap_dir)
        .map_err(|source| BootError::DataDir {
            path: snap_dir.clone(),
            source,
        })?;
    let limits = mvcc::RequestLimits {
        max_request_bytes: cfg.max_request_bytes as usize,
        max_txn_ops: cfg.max_txn_ops,
    };
    let store_cfg = mvcc::Config {
        max_request_bytes: cfg.max_request_bytes as usize,
        max_txn_ops: cfg.max_txn_ops,
        quota_bytes: cfg.quota_backend_bytes,
        compaction_batch_limit: cfg.compaction_batch_limit,
        ..mvcc::Config::default()
    };
    snapshot::recover_backend(&disk, &member_dir.join("wal"), &snap_dir)?;
    let db = snap_dir.join(snapshot::DB);
    let unreadable = |reason: &dyn std::fmt::Display| BootError::Backend {
        path: db.clone(),
        reason: reason.to_string(),
    };
    let kv = KvStore::open(disk.as_ref(), &db, store_cfg).map_err(|e| unreadable(&e))?;
    let mut watchable = WatchableStore::new(kv, WatchConfig::default());
    let lessor_cfg = LessorConfig {
        min_ttl: min_lease_ttl(cfg.election_timeout),
        ..LessorConfig::default()
    };
    let lessor = Arc::new(Mutex::new(
        Lessor::open(&mut watchable, lessor_cfg).map_err(|e| unreadable(&e))?,
    ));
    let auth =
        AuthStore::open(watchable.backend(), cfg.auth_token_ttl).map_err(|e| unreadable(&e))?;
    let auth = Arc::new(Mutex::new(auth));
    let jwt = jwt_tokens(&cfg.auth_token, disk.as_ref())?;
    let backend_size = watchable.backend().size_gauge();
    let store = Arc::new(Mutex::new(watchable));
    let clock = LeaseClock::new();
    let super::join::Identity {
        member_id,
        cluster_id,
        cluster,
    } = super::join::cluster_at_start(cfg, &store, disk.as_ref(), &member_dir.join("wal"), &dialer)
        .await?;
    let metrics = Arc::new(ServerMetrics::new(member_id));
    lock(&store)
        .backend()
        .observe_commits(metrics.backend_commit.clone());
    let (transport, events) = Transport::with_dialer(member_id, cluster_id, dialer);
    for m in cluster.members().iter().filter(|m| m.id != member_id) {
        transport.add_peer(m.id, &cfg.dial_url(&m.name, &m.peer_ur_ls[0]));
    }
    cluster.removed().for_each(|id| transport.remove_member(id));
    if cfg.initial_corrupt_check && initialized {
        corrupt::initial_check(&store, &transport, member_id, REQUEST_TIMEOUT)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "checkInitialHashKV failed");
                BootError::Corrupt(e)
            })?;
    }
    let cluster = Arc::new(Mutex::new(cluster));
    let (inbound, inbound_rx) = mpsc::channel(INBOUND_QUEUE_LEN);
    let raft_peers = transport
        .service(inbound)
        .accept_snapshots(Inbox {
            disk: disk.clone(),
            dir: snap_dir.clone(),
        })
        .count_unknown_senders(metrics.peer_unknown_senders.clone());
    let member_cfg = MemberConfig {
        id: member_id,
        cluster_id,
        voters: cfg.initial_cluster.iter().map(|m| m.id).collect(),
        wal_dir: member_dir.join("wal"),
        wal: WalOptions {
            segment_size: cfg.wal_segment_bytes,
        },
        snap_dir: snap_dir.clone(),
        snapshot: SnapshotOptions {
            count: cfg.snapshot_count,
            catchup_entries: cfg.snapshot_catchup_entries,
        },
        tick: cfg.heartbeat_interval,
        election_ticks: cfg.election_ticks(),
        heartbeat_ticks: 1,
        request_timeout: REQUEST_TIMEOUT,
        seed: member_id ^ crate::runtime::entropy_seed(),
        metrics,
        force_new_cluster: cfg.force_new_cluster,
        unsafe_no_fsync: cfg.unsafe_no_fsync,
    };
    let snapshots = SnapshotDir::new(disk.clone(), snap_dir);
    let compaction_hashes = CompactionHashes::default();
    let applier = Applier::new(
        store.clone(),
        lessor.clone(),
        auth.clone(),
        clock,
        cluster.clone(),
        compaction_hashes.clone(),
    )
    .map_err(|e| unreadable(&e))?;
    let compacted = applier.compacted();
    let (handle, member_task) = member::start(
        member_cfg,
        disk.clone(),
        transport.clone(),
        inbound_rx,
        events,
        applier,
    )?;
    let leases = LeaseForwarder::new(
        handle.clone(),
        lessor.clone(),
        clock,
        transport.clone(),
        REQUEST_TIMEOUT,
    );
    let server = Server {
        member: handle,
        store,
        lessor,
        auth,
        rng: Arc::new(Mutex::new(crate::runtime::seeded_rng(
            member_id ^ crate::runtime::entropy_seed(),
        ))),
        bcrypt_cost: cfg.bcrypt_cost,
        jwt,
        cluster,
        clock,
        leases,
        transport,
        snapshots,
        compaction_hashes,
        compacted,
        strict_reconfig_check: cfg.strict_reconfig_check,
        limits,
        backend_size,
        quota_bytes: cfg.quota_backend_bytes,
        disk,
        token: cfg.initial_cluster_token.clone(),
        cluster_id,
        member_id,
    };
    let watch_sync = tokio::spawn(sync_watchers(
        server.store.clone(),
        cfg.watch_progress_notify_interval,
    ));
    let client_urls = cfg.advertise_client_urls.iter().map(|u| u.to_string());
    tokio::spawn(super::join::publish(
        server.clone(),
        cfg.name.clone(),
        client_urls.collect(),
    ));
    tokio::spawn(expire_leases(
        server.clone(),
        cfg.election_timeout,
        cfg.lease_checkpoint,
    ));
    if let Some(policy) = cfg.auto_compaction {
        tokio::spawn(super::compaction::run(server.clone(), policy));
    }
    if let Some(every) = cfg.corrupt_check_time {
        tokio::spawn(corrupt::periodic(server.clone(), every, REQUEST_TIMEOUT));
    }
    if let Some(every) = cfg.compact_hash_check_time {
        tokio::spawn(corrupt::compact_hash_checks(
            server.clone(),
            every,
            REQUEST_TIMEOUT,
        ));
    }
    Ok(Started {
        server,
        raft_peers,
        member_task,
        watch_sync,
    })
}

/// The JWT keys `--auth-token jwt,...` names, read and checked at start.
fn jwt_tokens(token: &AuthToken, disk: &dyn Disk) -> Result<Option<Arc<JwtTokens>>, BootError> {
    let AuthToken::Jwt {
        sign_method,
        pub_key,
        priv_key,
        ttl,
    } = token
    else {
        return Ok(None);
    };
    let read = |path: &std::path::Path| {
        crate::runtime::read_file(disk, path)
            .map_err(|e| BootError::Keys(format!("--auth-token key {}: {e}", path.display())))
    };
    let private = priv_key.as_deref().map(read).transpose()?;
    let tokens = JwtTokens::new(sign_method, &read(pub_key)?, private.as_deref(), *ttl)
        .map_err(|e| BootError::Keys(format!("--auth-token: {e}")))?;
    Ok(Some(Arc::new(tokens)))
}

impl Server {
    /// Commits the backend's open batch, once the member loop has stopped, so that a
    /// restart replays nothing.
    pub fn close(&self) -> Result<(), BootError> {
        lock(&self.store).kv_mut().commit()?;
        Ok(())
    }
}

/// Moves lagging watchers forward, and sends progress notifications every `progress`;
/// returns only when reading the backend failed.
async fn sync_watchers(store: SharedStore, progress: Duration) -> Fatal {
    let clock = Clock;
    let mut last_progress = clock.now();
    let mut delay = WATCH_VICTIM_INTERVAL;
    loop {
        clock.sleep(delay).await;
        let mut st = lock(&store);
        let now = clock.now();
        let (_, unsynced, victims) = st.watcher_counts();
        if unsynced + victims > 0 {
            if let Err(e) = st.sync_watchers() {
                return Fatal::new("syncing watchers", e);
            }
        }
        if now - last_progress >= progress.max(WATCH_VICTIM_INTERVAL) {
            st.progress_notify();
            last_progress = now;
        }
        // As etcd's sync loop: while a pass leaves fewer watchers behind, but some, the next
        // follows after as long as this one took, so catching up takes at most half of the
        // store's time; watchers that make no progress are retried at the victim interval.
        let (_, unsynced_left, victims_left) = st.watcher_counts();
        let left = unsynced_left + victims_left;
        delay = if left > 0 && left < unsynced + victims {
            (clock.now() - now).clamp(WATCH_CATCH_UP_PAUSE, WATCH_VICTIM_INTERVAL)
        } else {
            WATCH_VICTIM_INTERVAL
        };
    }
}

/// The leader's lease duties: becoming the primary lessor (extending every lease by an
/// election timeout, as etcd does, so none expires during the handover), proposing revokes
/// for expired leases and, if `checkpoint`, checkpoints of remaining TTLs; stepping down
/// when not leader.
async fn expire_leases(server: Server, election_timeout: Duration, checkpoint: bool) {
    let per_checkpoint =
        (LEASE_CHECKPOINT_INTERVAL.as_millis() / LEASE_CHECK_INTERVAL.as_millis()) as u64;
    let mut ticker = tokio::time::interval(LEASE_CHECK_INTERVAL);
    let mut status = server.member.status_changes();
    for round in 1u64.. {
        // A new leader takes over the leases at once, not at the next tick.
        tokio::select! {
            _ = ticker.tick() => {}
            changed = status.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let now = server.clock.now();
        let (expired, checkpoints) = {
            let mut lessor = lock(&server.lessor);
            if !server.member.status().is_leader {
                if lessor.is_primary() {
                    lessor.demote();
                }
                continue;
            }
            if !lessor.is_primary() {
                lessor.promote(now, election_timeout);
            }
            let checkpoints = if checkpoint && round % per_checkpoint == 0 {
                lessor.checkpoints(now)
            } else {
                Vec::new()
            };
            (lessor.expired(now), checkpoints)
        };
        for id in expired {
            let server = server.clone();
            tokio::spawn(async move {
                let _ = server.lease_revoke(None, LeaseRevokeRequest { id }).await;
            });
        }
        if !checkpoints.is_empty() {
            let server = server.clone();
            tokio::spawn(async move {
                let request = Internal::LeaseCheckpoint(LeaseCheckpointRequest { checkpoints });
                let _ = server.propose::<LeaseCheckpointResponse>(request).await;
            });
        }
    }
}
