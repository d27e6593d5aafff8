//! The composition root: the one place that knows every layer. It starts the member
//! (`server::boot`), puts the API's adapters on the client and peer listeners, and runs
//! until shutdown or until the member stops. The `detcd` binary and the simulator both
//! start members here.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::api::auth::AuthService;
use crate::api::cluster::ClusterService;
use crate::api::election::ElectionService;
use crate::api::gateway::Gateway;
use crate::api::http::HttpApi;
use crate::api::kv::KvService;
use crate::api::lease::LeaseService;
use crate::api::lock::LockService;
use crate::api::maintenance::MaintenanceService;
use crate::api::peer::{LeaseForwardPeer, LeaseForwardServer, MembershipPeer, MembershipServer};
use crate::api::watch::WatchService;
use crate::proto::etcdserverpb::auth_server::AuthServer;
use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::proto::etcdserverpb::watch_server::WatchServer;
use crate::proto::v3electionpb::election_server::ElectionServer;
use crate::proto::v3lockpb::lock_server::LockServer;
use crate::runtime::{Clock, Disk};
use crate::server::boot::{self, bind_addr, BootError, Started};
use crate::server::config::ServerConfig;
use crate::server::transport::PeerServer;

/// gRPC framing on top of the largest request, as etcd allows.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
/// How long in-flight requests may take to finish once shutdown starts: a write waits
/// for its entry to be applied, which a working cluster does within a few heartbeats.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);

/// Runs the member until `shutdown` completes or the member fails.
pub async fn run(
    cfg: ServerConfig,
    disk: Arc<dyn Disk>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BootError> {
    let Started {
        server,
        raft_peers,
        mut member_task,
    } = boot::start(&cfg, disk).await?;
    let peer_addr = bind_addr(&cfg.listen_peer_urls[0])?;
    let peers = tonic::transport::Server::builder()
        .add_service(PeerServer::new(raft_peers))
        .add_service(LeaseForwardServer::new(LeaseForwardPeer(server.clone())))
        .add_service(MembershipServer::new(MembershipPeer(server.clone())))
        .serve(peer_addr);
    let (shutdown, drained) = drain_after(shutdown);
    let client_addr = bind_addr(&cfg.listen_client_urls[0])?;
    let max_request = cfg.max_request_bytes as usize + GRPC_OVERHEAD_BYTES;
    let gateway = Gateway {
        kv: KvService(server.clone()),
        watch: WatchService(server.clone()),
        lease: LeaseService(server.clone()),
        maintenance: MaintenanceService(server.clone()),
        cluster: ClusterService(server.clone()),
        auth: AuthService(server.clone()),
        election: ElectionService(server.clone()),
        lock: LockService(server.clone()),
    };
    let http = Arc::new(HttpApi {
        server: server.clone(),
        gateway: gateway.clone(),
    });
    let router = crate::net::client_server(http, max_request)
        .add_service(KvServer::new(gateway.kv).max_decoding_message_size(max_request))
        .add_service(WatchServer::new(gateway.watch))
        .add_service(LeaseServer::new(gateway.lease))
        .add_service(ClusterServer::new(gateway.cluster))
        .add_service(AuthServer::new(gateway.auth))
        .add_service(MaintenanceServer::new(gateway.maintenance))
        .add_service(ElectionServer::new(gateway.election))
        .add_service(LockServer::new(gateway.lock));
    let clients = crate::net::serve_clients(router, client_addr, shutdown);
    tracing::info!(
        member = format_args!("{:x}", server.member_id()),
        cluster = format_args!("{:x}", server.cluster_id()),
        client = %client_addr,
        peer = %peer_addr,
        "serving"
    );
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
    server.close()?;
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
