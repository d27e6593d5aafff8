//! The composition root: the one place that knows every layer. It starts the member
//! (`server::boot`), puts the API's adapters on the client and peer listeners, and runs
//! until shutdown or until the member stops. The `detcd` binary and the simulator both
//! start members here.

use std::future::Future;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::api::auth::AuthService;
use crate::api::cluster::ClusterService;
use crate::api::election::ElectionService;
use crate::api::gateway::Gateway;
use crate::api::http::HttpApi;
#[cfg(not(madsim))]
use crate::api::http::MetricsHttp;
use crate::api::kv::KvService;
use crate::api::lease::LeaseService;
use crate::api::lock::LockService;
use crate::api::maintenance::MaintenanceService;
use crate::api::peer::{LeaseForwardPeer, LeaseForwardServer, MembershipPeer, MembershipServer};
use crate::api::watch::WatchService;
use crate::net::{Bind, Dialer, Listen, ListenError, Tls, TlsSpec};
use crate::proto::etcdserverpb::auth_server::AuthServer;
use crate::proto::etcdserverpb::cluster_server::ClusterServer;
use crate::proto::etcdserverpb::kv_server::KvServer;
use crate::proto::etcdserverpb::lease_server::LeaseServer;
use crate::proto::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::proto::etcdserverpb::watch_server::WatchServer;
use crate::proto::v3electionpb::election_server::ElectionServer;
use crate::proto::v3lockpb::lock_server::LockServer;
use crate::runtime::{read_file, Clock, Disk};
use crate::server::boot::{self, bind_addr, BootError, Started};
use crate::server::config::ServerConfig;
use crate::server::member::MemberError;
use crate::server::transport::PeerServer;
use crate::server::url::Url;
use crate::server::Server;

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
    let read = |path: &Path| read_file(disk.as_ref(), path);
    let client_tls = load_tls(&cfg.client_tls, "", &cfg.listen_client_urls, &read)?;
    let peer_tls = load_tls(&cfg.peer_tls, "peer-", &cfg.listen_peer_urls, &read)?;
    let client_listens = listens(&cfg.listen_client_urls, &client_tls)?;
    let peer_listens = listens(&cfg.listen_peer_urls, &peer_tls)?;
    let metrics_tls = load_tls(&cfg.client_tls, "", &cfg.listen_metrics_urls, &read)?;
    let metrics_listens = listens(&cfg.listen_metrics_urls, &metrics_tls)?;
    let dialer = peer_tls.map(Dialer::with_tls).unwrap_or_default();
    let Started {
        server,
        raft_peers,
        mut member_task,
        mut watch_sync,
    } = boot::start(&cfg, disk, dialer).await?;
    let peers = tonic::transport::Server::builder()
        .add_service(PeerServer::new(raft_peers))
        .add_service(LeaseForwardServer::new(LeaseForwardPeer(server.clone())))
        .add_service(MembershipServer::new(MembershipPeer(server.clone())));
    let peers = crate::net::serve_peers(peers, peer_listens);
    let (shutdown, drained) = drain_after(shutdown);
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
        .http2_keepalive_interval(cfg.grpc_keepalive_interval)
        .http2_keepalive_timeout(cfg.grpc_keepalive_timeout)
        .max_concurrent_streams(cfg.max_concurrent_streams)
        .add_service(KvServer::new(gateway.kv).max_decoding_message_size(max_request))
        .add_service(WatchServer::new(gateway.watch))
        .add_service(LeaseServer::new(gateway.lease))
        .add_service(ClusterServer::new(gateway.cluster))
        .add_service(AuthServer::new(gateway.auth))
        .add_service(MaintenanceServer::new(gateway.maintenance))
        .add_service(ElectionServer::new(gateway.election))
        .add_service(LockServer::new(gateway.lock));
    let clients = crate::net::serve_clients(router, client_listens, shutdown);
    let metrics = serve_metrics(&server, metrics_listens, max_request);
    tracing::info!(
        member = format_args!("{:x}", server.member_id()),
        cluster = format_args!("{:x}", server.cluster_id()),
        client = %urls(&cfg.listen_client_urls),
        peer = %urls(&cfg.listen_peer_urls),
        "serving"
    );
    tokio::select! {
        r = clients => r.map_err(listen_error)?,
        r = metrics => r.map_err(listen_error)?,
        () = drained => tracing::warn!("shutdown: cutting requests and streams still open"),
        r = peers => return Err(match r {
            Ok(()) => BootError::Listen {
                url: urls(&cfg.listen_peer_urls),
                reason: "peer listener stopped".into(),
            },
            Err(e) => listen_error(e),
        }),
        r = &mut member_task => return match r {
            Ok(Ok(())) => Err(BootError::Stopped("member loop ended".into())),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(BootError::Stopped(e.to_string())),
        },
        r = &mut watch_sync => {
            member_task.abort();
            return Err(match r {
                Ok(fatal) => MemberError::from(fatal).into(),
                Err(e) => BootError::Stopped(e.to_string()),
            });
        }
    }
    // Shutting down: the member loop stops between Readies (whatever it applied is in the
    // WAL), then the backend commits its open batch so a restart replays nothing.
    member_task.abort();
    let _ = member_task.await;
    server.close()?;
    tracing::info!("stopped");
    Ok(())
}

/// Serves `/metrics` and `/health` on `listens` (`--listen-metrics-urls`) until dropped;
/// never ends if there are none.
#[cfg(not(madsim))]
async fn serve_metrics(
    server: &Server,
    listens: Vec<Listen>,
    max_request: usize,
) -> Result<(), ListenError> {
    if listens.is_empty() {
        return std::future::pending().await;
    }
    let http = Arc::new(MetricsHttp(server.clone()));
    // Every path goes to the HTTP handler: the router holds no gRPC service.
    let router = crate::net::client_server(http, max_request)
        .add_optional_service::<KvServer<KvService>>(None);
    crate::net::serve_clients(router, listens, std::future::pending()).await
}

/// The simulator serves no HTTP.
#[cfg(madsim)]
async fn serve_metrics(_: &Server, _: Vec<Listen>, _: usize) -> Result<(), ListenError> {
    std::future::pending().await
}

/// The TLS that `spec` configures, loaded when some URL in `listen` is `https://`.
fn load_tls(
    spec: &TlsSpec,
    flag: &str,
    listen: &[Url],
    read: &dyn Fn(&Path) -> io::Result<Vec<u8>>,
) -> Result<Option<Tls>, BootError> {
    if !listen.iter().any(is_secure) {
        return Ok(None);
    }
    let hosts: Vec<String> = listen
        .iter()
        .map(|u| {
            u.host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        })
        .collect();
    Tls::load(spec, flag, &hosts, read)
        .map(Some)
        .map_err(BootError::Keys)
}

/// Whether `url` is served over TLS.
fn is_secure(url: &Url) -> bool {
    url.scheme == "https" || url.scheme == "unixs"
}

/// Every URL in `urls`, each with `tls` if it is `https://` or `unixs://`.
fn listens(urls: &[Url], tls: &Option<Tls>) -> Result<Vec<Listen>, BootError> {
    urls.iter()
        .map(|url| {
            let bind = if url.scheme.starts_with("unix") {
                Bind::Unix(format!("{}:{}", url.host, url.port).into())
            } else {
                Bind::Tcp(bind_addr(url)?)
            };
            Ok(Listen {
                url: url.to_string(),
                bind,
                tls: if is_secure(url) { tls.clone() } else { None },
            })
        })
        .collect()
}

fn urls(urls: &[Url]) -> String {
    let urls: Vec<String> = urls.iter().map(Url::to_string).collect();
    urls.join(",")
}

fn listen_error(e: ListenError) -> BootError {
    BootError::Listen {
        url: e.url,
        reason: e.source.to_string(),
    }
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
