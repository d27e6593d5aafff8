//! Starting a member: its data directory, store, WAL, peer and client listeners, all from
//! a checked [`ServerConfig`].

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::config::ServerConfig;
use super::kv_apply::{lock, KvApplier, LeaseClock};
use super::lease_forward::{LeaseForwardServer, LeaseForwardService, LeaseForwarder};
use super::member::{self, MemberConfig, MemberError};
use super::metrics::ServerMetrics;
use super::snapshot::{self, Inbox, SnapshotOptions};
use super::transport::{PeerServer, Transport};
use super::url::Url;
use crate::api::cluster::{ClusterService, MembershipPeer};
use crate::api::context::Context;
use crate::api::gateway::Gateway;
use crate::api::http::HttpApi;
use crate::api::kv::KvService;
use crate::api::lease::LeaseService;
use crate::api::maintenance::MaintenanceService;
use crate::api::snapshot::SnapshotDir;
use crate::api::watch::WatchService;
use crate::lease::{Lessor, LessorConfig};
use crate::mvcc::{self, KvStore, WatchConfig, WatchableStore};
use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::proto::etcdserverpb::watch_server::WatchServer;
use crate::proto::etcdserverpb::{LeaseCheckpointRequest, LeaseRevokeRequest};
use crate::proto::internalpb::internal_raft_request::Request as Internal;
use crate::proto::peerpb::membership_server::MembershipServer;
use crate::runtime::{Clock, Disk};
use crate::wal::WalOptions;

/// gRPC framing on top of the largest request, as etcd allows.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// Received peer messages waiting for the member loop.
const INBOUND_QUEUE_LEN: usize = 8192;
/// How long a client request waits for its entry to apply (etcd: 5 s plus election time).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);
/// How long in-flight requests may take to finish once shutdown starts: a write waits
/// for its entry to be applied, which a working cluster does within a few heartbeats.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);
/// How often unsynced and victim watchers are moved forward (etcd: 100 ms).
const WATCH_SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// How often watchers that asked for it get a progress notification (etcd: 10 min).
const WATCH_PROGRESS_INTERVAL: Duration = Duration::from_secs(600);
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

/// Runs the member until `shutdown` completes or the member fails.
pub async fn run(
    cfg: ServerConfig,
    disk: Arc<dyn Disk>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BootError> {
    let member_dir = cfg.data_dir.join("member");
    let snap_dir = member_dir.join("snap");
    disk.create_dir_all(&snap_dir)
        .map_err(|source| BootError::DataDir {
            path: snap_dir.clone(),
            source,
        })?;
    let store_cfg = mvcc::Config {
        max_request_bytes: cfg.max_request_bytes as usize,
        quota_bytes: cfg.quota_backend_bytes,
        ..mvcc::Config::default()
    };
    snapshot::recover_backend(&disk, &member_dir.join("wal"), &snap_dir)?;
    let kv = KvStore::open(disk.as_ref(), &snap_dir.join(snapshot::DB), store_cfg)?;
    let mut watchable = WatchableStore::new(kv, WatchConfig::default());
    let lessor_cfg = LessorConfig {
        min_ttl: min_lease_ttl(cfg.election_timeout),
        ..LessorConfig::default()
    };
    let lessor = Arc::new(Mutex::new(
        Lessor::open(&mut watchable, lessor_cfg).map_err(|e| BootError::Stopped(e.to_string()))?,
    ));
    let store = Arc::new(Mutex::new(watchable));
    let clock = LeaseClock::new();
    let super::join::Identity {
        member_id,
        cluster_id,
        cluster,
    } = super::join::cluster_at_start(&cfg, &store, disk.as_ref(), &member_dir.join("wal")).await?;
    let metrics = Arc::new(ServerMetrics::new(member_id));
    lock(&store)
        .backend()
        .observe_commits(metrics.backend_commit.clone());
    let (transport, events) = Transport::new(member_id, cluster_id);
    for m in cluster.members().iter().filter(|m| m.id != member_id) {
        transport.add_peer(m.id, &cfg.dial_url(&m.name, &m.peer_ur_ls[0]));
    }
    cluster.removed().for_each(|id| transport.remove_member(id));
    let cluster = Arc::new(Mutex::new(cluster));
    let (inbound, inbound_rx) = mpsc::channel(INBOUND_QUEUE_LEN);
    let peer_service = transport.service(inbound).accept_snapshots(Inbox {
        disk: disk.clone(),
        dir: snap_dir.clone(),
    });
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
    };
    let snapshots = SnapshotDir::new(disk.clone(), snap_dir);
    let (handle, member_task) = member::start(
        member_cfg,
        disk,
        transport.clone(),
        inbound_rx,
        events,
        KvApplier::new(store.clone(), lessor.clone(), clock).with_cluster(cluster.clone()),
    )?;
    let leases = LeaseForwarder::new(
        handle.clone(),
        lessor.clone(),
        clock,
        transport.clone(),
        REQUEST_TIMEOUT,
    );
    tokio::spawn(sync_watchers(store.clone()));
    let ctx = Context {
        member: handle,
        store,
        lessor,
        cluster,
        clock,
        cluster_id,
        member_id,
    };
    let cluster_service = ClusterService {
        ctx: ctx.clone(),
        transport,
        token: cfg.initial_cluster_token.clone(),
    };
    let peer_addr = bind_addr(&cfg.listen_peer_urls[0])?;
    let peers = tonic::transport::Server::builder()
        .add_service(PeerServer::new(peer_service))
        .add_service(LeaseForwardServer::new(LeaseForwardService(leases.clone())))
        .add_service(MembershipServer::new(MembershipPeer(
            cluster_service.clone(),
        )))
        .serve(peer_addr);
    let client_urls = cfg.advertise_client_urls.iter().map(|u| u.to_string());
    tokio::spawn(super::join::publish(
        ctx.clone(),
        cfg.name.clone(),
        client_urls.collect(),
    ));
    tokio::spawn(expire_leases(ctx.clone(), cfg.election_timeout));
    let store = ctx.store.clone();
    let (shutdown, drained) = drain_after(shutdown);
    let client_addr = bind_addr(&cfg.listen_client_urls[0])?;
    let max_request = cfg.max_request_bytes as usize + GRPC_OVERHEAD_BYTES;
    let gateway = Gateway {
        kv: KvService(ctx.clone()),
        lease: LeaseService(ctx.clone(), leases),
        maintenance: MaintenanceService(ctx.clone(), snapshots),
    };
    let http = Arc::new(HttpApi {
        ctx: ctx.clone(),
        gateway: gateway.clone(),
    });
    let router = crate::runtime::client_server(http, max_request)
        .add_service(KvServer::new(gateway.kv).max_decoding_message_size(max_request))
        .add_service(WatchServer::new(WatchService(ctx)))
        .add_service(LeaseServer::new(gateway.lease))
        .add_service(ClusterServer::new(cluster_service))
        .add_service(MaintenanceServer::new(gateway.maintenance));
    let clients = crate::runtime::serve_clients(router, client_addr, shutdown);
    tracing::info!(
        member = format_args!("{member_id:x}"),
        cluster = format_args!("{cluster_id:x}"),
        client = %client_addr,
        peer = %peer_addr,
        "serving"
    );
    let mut member_task = member_task;
    tokio::select! {
        r = clients => r.map_err(|e| BootError::Listen {
            url: cfg.listen_client_urls[0].to_string(),
            reason: e.to_string(),
        })?,
        () = drained => tracing::warn!("shutdown: cutting requests and streams still open"),
        r = peers => return Err(BootError::Listen {
            url: cfg.listen_peer_urls[0].to_string(),
            reason: r.err().map_or_else(|| "peer listener stopped".into(), |e| e.to_string()),
        }),
        r = &mut member_task => return match r {
            Ok(Ok(())) => Err(BootError::Stopped("member loop ended".into())),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(BootError::Stopped(e.to_string())),
        },
    }
    // Shutting down: the member loop stops between Readies (whatever it applied is in the
    // WAL), then the backend commits its open batch so a restart replays nothing.
    member_task.abort();
    let _ = member_task.await;
    lock(&store).kv_mut().commit()?;
    tracing::info!("stopped");
    Ok(())
}

/// Splits `shutdown` into the signal for the client listener (stop accepting, let
/// in-flight requests finish) and a future that completes [`SHUTDOWN_DRAIN`] after it
/// fired, when whatever is still open (watch and keepalive streams never end by
/// themselves) is cut.
fn drain_after(
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (
    impl Future<Output = ()> + Send + 'static,
    impl Future<Output = ()> + Send + 'static,
) {
    let (fired, fired_rx) = tokio::sync::oneshot::channel();
    let signal = async move {
        shutdown.await;
        let _ = fired.send(());
    };
    let drained = async move {
        match fired_rx.await {
            Ok(()) => Clock.sleep(SHUTDOWN_DRAIN).await,
            Err(_) => std::future::pending().await,
        }
    };
    (signal, drained)
}

/// Moves lagging watchers forward, and sends progress notifications, on their intervals.
async fn sync_watchers(store: crate::server::kv_apply::SharedStore) {
    let per_progress =
        (WATCH_PROGRESS_INTERVAL.as_millis() / WATCH_SYNC_INTERVAL.as_millis()) as u64;
    let mut ticker = tokio::time::interval(WATCH_SYNC_INTERVAL);
    for round in 1u64.. {
        ticker.tick().await;
        let mut st = crate::server::kv_apply::lock(&store);
        if let Err(e) = st.sync_watchers() {
            panic!("watch sync failed reading the backend: {e}");
        }
        if round % per_progress == 0 {
            st.progress_notify();
        }
    }
}

/// The leader's lease duties: becoming the primary lessor (extending every lease by an
/// election timeout, as etcd does, so none expires during the handover), proposing revokes
/// for expired leases and checkpoints of remaining TTLs; stepping down when not leader.
async fn expire_leases(ctx: Context, election_timeout: Duration) {
    let per_checkpoint =
        (LEASE_CHECKPOINT_INTERVAL.as_millis() / LEASE_CHECK_INTERVAL.as_millis()) as u64;
    let mut ticker = tokio::time::interval(LEASE_CHECK_INTERVAL);
    let mut status = ctx.member.status_changes();
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
        let now = ctx.clock.now();
        let (expired, checkpoints) = {
            let mut lessor = lock(&ctx.lessor);
            if !ctx.member.status().is_leader {
                if lessor.is_primary() {
                    lessor.demote();
                }
                continue;
            }
            if !lessor.is_primary() {
                lessor.promote(now, election_timeout);
            }
            let checkpoints = if round % per_checkpoint == 0 {
                lessor.checkpoints(now)
            } else {
                Vec::new()
            };
            (lessor.expired(now), checkpoints)
        };
        for id in expired {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let _ = ctx
                    .propose(Internal::LeaseRevoke(LeaseRevokeRequest { id }))
                    .await;
            });
        }
        if !checkpoints.is_empty() {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let request = LeaseCheckpointRequest { checkpoints };
                let _ = ctx.propose(Internal::LeaseCheckpoint(request)).await;
            });
        }
    }
}
