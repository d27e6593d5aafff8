//! Starting a member: its data directory, store, WAL, peer and client listeners, all from
//! a checked [`ServerConfig`].

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::config::ServerConfig;
use super::kv_apply::KvApplier;
use super::member::{self, MemberConfig, MemberError};
use super::transport::{PeerServer, Transport};
use super::url::Url;
use crate::api::kv::KvService;
use crate::api::maintenance::MaintenanceService;
use crate::api::watch::WatchService;
use crate::mvcc::{self, KvStore, WatchConfig, WatchableStore};
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::proto::etcdserverpb::watch_server::WatchServer;
use crate::runtime::Disk;
use crate::wal::WalOptions;

/// gRPC framing on top of the largest request, as etcd allows.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// Received peer messages waiting for the member loop.
const INBOUND_QUEUE_LEN: usize = 8192;
/// How long a client request waits for its entry to apply (etcd: 5 s plus election time).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);
/// How often unsynced and victim watchers are moved forward (etcd: 100 ms).
const WATCH_SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// How often watchers that asked for it get a progress notification (etcd: 10 min).
const WATCH_PROGRESS_INTERVAL: Duration = Duration::from_secs(600);

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
    let kv = KvStore::open(disk.as_ref(), &snap_dir.join("db"), store_cfg)?;
    let store = Arc::new(Mutex::new(WatchableStore::new(kv, WatchConfig::default())));
    let member_id = cfg.member_id();
    let cluster_id = cfg.cluster_id();
    let (transport, events) = Transport::new(member_id, cluster_id);
    for m in cfg.initial_cluster.iter().filter(|m| m.id != member_id) {
        transport.add_peer(m.id, &m.peer_urls[0].to_string());
    }
    let (inbound, inbound_rx) = mpsc::channel(INBOUND_QUEUE_LEN);
    let peer_service = transport.service(inbound);
    let member_cfg = MemberConfig {
        id: member_id,
        cluster_id,
        voters: cfg.initial_cluster.iter().map(|m| m.id).collect(),
        wal_dir: member_dir.join("wal"),
        wal: WalOptions::default(),
        tick: cfg.heartbeat_interval,
        election_ticks: cfg.election_ticks(),
        heartbeat_ticks: 1,
        request_timeout: REQUEST_TIMEOUT,
        seed: member_id ^ crate::runtime::entropy_seed(),
    };
    let (handle, member_task) = member::start(
        member_cfg,
        disk,
        transport,
        inbound_rx,
        events,
        KvApplier::new(store.clone()),
    )?;
    let peer_addr = bind_addr(&cfg.listen_peer_urls[0])?;
    let peers = tonic::transport::Server::builder()
        .add_service(PeerServer::new(peer_service))
        .serve(peer_addr);
    tokio::spawn(sync_watchers(store.clone()));
    let watch = WatchService {
        member: handle.clone(),
        store: store.clone(),
        cluster_id,
        member_id,
    };
    let maintenance = MaintenanceService {
        member: handle.clone(),
        store: store.clone(),
        cluster_id,
        member_id,
    };
    let kv = KvService {
        member: handle,
        store,
        cluster_id,
        member_id,
    };
    let client_addr = bind_addr(&cfg.listen_client_urls[0])?;
    let clients = tonic::transport::Server::builder()
        .add_service(
            KvServer::new(kv)
                .max_decoding_message_size(cfg.max_request_bytes as usize + GRPC_OVERHEAD_BYTES),
        )
        .add_service(WatchServer::new(watch))
        .add_service(MaintenanceServer::new(maintenance))
        .serve_with_shutdown(client_addr, shutdown);
    tracing::info!(
        member = format_args!("{member_id:x}"),
        cluster = format_args!("{cluster_id:x}"),
        client = %client_addr,
        peer = %peer_addr,
        "serving"
    );
    tokio::select! {
        r = clients => r.map_err(|e| BootError::Listen {
            url: cfg.listen_client_urls[0].to_string(),
            reason: e.to_string(),
        }),
        r = peers => Err(BootError::Listen {
            url: cfg.listen_peer_urls[0].to_string(),
            reason: r.err().map_or_else(|| "peer listener stopped".into(), |e| e.to_string()),
        }),
        r = member_task => match r {
            Ok(Ok(())) => Err(BootError::Stopped("member loop ended".into())),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(BootError::Stopped(e.to_string())),
        },
    }
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
