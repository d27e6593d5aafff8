//! The member's configuration: etcd's server flags (and their `ETCD_*` environment forms),
//! checked with etcd's rules and messages, and the member and cluster IDs derived from them
//! exactly as etcd derives them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use sha1::{Digest, Sha1};

use super::compaction::AutoCompaction;
use super::url::Url;
use crate::net::TlsSpec;

/// Elections slower than this make a cluster unavailable for too long after a failure.
pub const MAX_ELECTION_TIMEOUT_MS: u64 = 50_000;
/// The backend quota when `--quota-backend-bytes` is 0.
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 << 30;

/// How often watchers that asked for it get a progress notification, by default.
const WATCH_PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(600);

/// Smaller WAL segments would hold little beyond their head records.
pub const MIN_WAL_SEGMENT_BYTES: u64 = 16 << 10;

/// The command line, as etcd spells it.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "detcd",
    version,
    about = "An etcd-compatible key-value store member"
)]
pub struct Flags {
    /// Path to the server configuration file (etcd's YAML). Note that if a configuration
    /// file is provided, other command line flags and environment variables will be ignored.
    #[arg(long, env = "ETCD_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME", default_value = "default")]
    pub name: String,
    /// Path to the data directory [default: ${name}.detcd].
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// List of URLs to listen on for client traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub listen_client_urls: String,
    /// List of this member's client URLs to advertise to the public.
    #[arg(
        long,
        env = "ETCD_ADVERTISE_CLIENT_URLS",
        default_value = "http://localhost:2379"
    )]
    pub advertise_client_urls: String,
    /// List of URLs to listen on for peer traffic.
    #[arg(
        long,
        env = "ETCD_LISTEN_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub listen_peer_urls: String,
    /// List of this member's peer URLs to advertise to the rest of the cluster.
    #[arg(
        long,
        env = "ETCD_INITIAL_ADVERTISE_PEER_URLS",
        default_value = "http://localhost:2380"
    )]
    pub initial_advertise_peer_urls: String,
    /// Initial cluster configuration for bootstrapping, as name=url pairs
    /// [default: ${name}=${initial-advertise-peer-urls}].
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Initial cluster state ('new' or 'existing').
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE", default_value = "new",
          value_parser = ["new", "existing"])]
    pub initial_cluster_state: String,
    /// Initial cluster token for the cluster during bootstrap.
    #[arg(
        long,
        env = "ETCD_INITIAL_CLUSTER_TOKEN",
        default_value = "etcd-cluster"
    )]
    pub initial_cluster_token: String,
    /// Number of committed transactions to trigger a snapshot to disk.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,
    /// Number of entries a slow follower can catch up from after a snapshot is taken.
    #[arg(
        long,
        env = "ETCD_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES",
        default_value_t = 5000
    )]
    pub experimental_snapshot_catchup_entries: u64,
    /// Revisions a compaction scans per batch (one backend commit); 0 means the default,
    /// as in etcd.
    #[arg(
        long,
        env = "ETCD_EXPERIMENTAL_COMPACTION_BATCH_LIMIT",
        default_value_t = 1000
    )]
    pub experimental_compaction_batch_limit: usize,
    /// WAL segment size in bytes; small segments let tests see segments released.
    #[arg(long, env = "ETCD_EXPERIMENTAL_WAL_SEGMENT_BYTES", default_value_t = crate::wal::DEFAULT_SEGMENT_SIZE, hide = true)]
    pub experimental_wal_segment_bytes: u64,
    /// Raise alarms when backend size exceeds the given quota (0 defaults to 2 GiB).
    #[arg(
        long,
        env = "ETCD_QUOTA_BACKEND_BYTES",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub quota_backend_bytes: i64,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Time (in milliseconds) for an election to timeout.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// Maximum client request size in bytes the server will accept.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1_572_864)]
    pub max_request_bytes: u64,
    /// Specify auth token type and its options: `simple`, or
    /// `jwt,pub-key=PATH,priv-key=PATH,sign-method=RS256,ttl=5m`.
    #[arg(long, env = "ETCD_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,
    /// Time (in seconds) of the auth token's life.
    #[arg(long, env = "ETCD_AUTH_TOKEN_TTL", default_value_t = 300)]
    pub auth_token_ttl: u64,
    /// Specify bcrypt algorithm cost factor for auth password hashing.
    #[arg(long, env = "ETCD_BCRYPT_COST", default_value_t = 10)]
    pub bcrypt_cost: u32,
    /// Path to the client server TLS cert file.
    #[arg(long, env = "ETCD_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// Path to the client server TLS key file.
    #[arg(long, env = "ETCD_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Path to the client server TLS trusted CA cert file.
    #[arg(long, env = "ETCD_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Enable client cert authentication.
    #[arg(long, env = "ETCD_CLIENT_CERT_AUTH", num_args = 0..=1, default_value_t = false,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub client_cert_auth: bool,
    /// Client TLS using generated certificates.
    #[arg(long, env = "ETCD_AUTO_TLS", num_args = 0..=1, default_value_t = false,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub auto_tls: bool,
    /// Path to the peer server TLS cert file.
    #[arg(long, env = "ETCD_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,
    /// Path to the peer server TLS key file.
    #[arg(long, env = "ETCD_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,
    /// Path to the peer server TLS trusted CA file.
    #[arg(long, env = "ETCD_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Enable peer client cert authentication.
    #[arg(long, env = "ETCD_PEER_CLIENT_CERT_AUTH", num_args = 0..=1, default_value_t = false,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub peer_client_cert_auth: bool,
    /// Allowed CN for inter peer authentication.
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_CN")]
    pub peer_cert_allowed_cn: Option<String>,
    /// Peer TLS using generated certificates.
    #[arg(long, env = "ETCD_PEER_AUTO_TLS", num_args = 0..=1, default_value_t = false,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub peer_auto_tls: bool,
    /// Comma-separated list of supported TLS cipher suites between client/server and
    /// peers (empty will be auto-populated by rustls).
    #[arg(long, env = "ETCD_CIPHER_SUITES")]
    pub cipher_suites: Option<String>,
    /// Minimum TLS version supported by etcd (TLS1.2 or TLS1.3).
    #[arg(long, env = "ETCD_TLS_MIN_VERSION")]
    pub tls_min_version: Option<String>,
    /// Interpret 'auto-compaction-retention' one of: periodic|revision. 'periodic' for
    /// duration based retention, defaulting to hours if no time unit is provided (e.g.
    /// '5m'). 'revision' for revision number based retention.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_MODE", default_value = "periodic")]
    pub auto_compaction_mode: String,
    /// Auto compaction retention for mvcc key value store. 0 means disable auto compaction.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_RETENTION", default_value = "0")]
    pub auto_compaction_retention: String,
    /// Configures log level. Only supports debug, info, warn, error, panic, or fatal
    /// [default: info, or RUST_LOG's filter when set].
    #[arg(long, env = "ETCD_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Currently only supports 'zap' for structured logging (etcd's JSON lines).
    #[arg(long, env = "ETCD_LOGGER", default_value = "zap")]
    pub logger: String,
    /// List of URLs to listen on for the metrics and health endpoints.
    #[arg(long, env = "ETCD_LISTEN_METRICS_URLS")]
    pub listen_metrics_urls: Option<String>,
    /// Minimum interval duration that a client should wait before pinging server (not
    /// enforced: the HTTP/2 server has no ping policy).
    #[arg(long, env = "ETCD_GRPC_KEEPALIVE_MIN_TIME", default_value = "5s",
          value_parser = go_duration_flag)]
    pub grpc_keepalive_min_time: Duration,
    /// Frequency duration of server-to-client ping to check if a connection is alive (0 to
    /// disable).
    #[arg(long, env = "ETCD_GRPC_KEEPALIVE_INTERVAL", default_value = "2h",
          value_parser = go_duration_flag)]
    pub grpc_keepalive_interval: Duration,
    /// Additional duration of wait before closing a non-responsive connection (0 to
    /// disable).
    #[arg(long, env = "ETCD_GRPC_KEEPALIVE_TIMEOUT", default_value = "20s",
          value_parser = go_duration_flag)]
    pub grpc_keepalive_timeout: Duration,
    /// Maximum concurrent streams that each client can open at a time.
    #[arg(long, env = "ETCD_MAX_CONCURRENT_STREAMS", default_value_t = u32::MAX)]
    pub max_concurrent_streams: u32,
    /// Enable to persist lease remaining TTL to prevent indefinite auto-renewal of long
    /// lived leases.
    #[arg(long, env = "ETCD_EXPERIMENTAL_ENABLE_LEASE_CHECKPOINT", num_args = 0..=1,
          default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub experimental_enable_lease_checkpoint: bool,
    /// Disables fsync, unsafe, will cause data loss.
    #[arg(long, env = "ETCD_UNSAFE_NO_FSYNC", num_args = 0..=1, default_value_t = false,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub unsafe_no_fsync: bool,
    /// Maximum number of operations permitted in a transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Reject reconfiguration requests that would cause quorum loss.
    #[arg(long, env = "ETCD_STRICT_RECONFIG_CHECK", num_args = 0..=1, default_value_t = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub strict_reconfig_check: bool,
    /// Duration of periodic watch progress notifications.
    #[arg(long, env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m",
          value_parser = go_duration_flag)]
    pub experimental_watch_progress_notify_interval: Duration,
    /// Force to create a new one member cluster.
    #[arg(long, env = "ETCD_FORCE_NEW_CLUSTER", num_args = 0..=1, default_value_t = false,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub force_new_cluster: bool,
    /// Enable to check data corruption before serving any client/peer traffic.
    #[arg(long, env = "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", num_args = 0..=1,
          default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub experimental_initial_corrupt_check: bool,
    /// Duration of time between cluster corruption check passes (0s: off).
    #[arg(long, env = "ETCD_EXPERIMENTAL_CORRUPT_CHECK_TIME", default_value = "0s",
          value_parser = go_duration_flag)]
    pub experimental_corrupt_check_time: Duration,
    /// Enable leader to periodically check followers compaction hashes.
    #[arg(long, env = "ETCD_EXPERIMENTAL_COMPACT_HASH_CHECK_ENABLED", num_args = 0..=1,
          default_value_t = false, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub experimental_compact_hash_check_enabled: bool,
    /// Duration of time between leader checks followers compaction hashes.
    #[arg(long, env = "ETCD_EXPERIMENTAL_COMPACT_HASH_CHECK_TIME", default_value = "1m",
          value_parser = go_duration_flag)]
    pub experimental_compact_hash_check_time: Duration,
    /// Where to dial named peers instead of their advertised URLs, as name=url pairs: a
    /// fault runner puts a proxy on each link this way (`detcd-check jepsen`).
    #[arg(long, env = "ETCD_EXPERIMENTAL_PEER_DIAL_URLS", hide = true)]
    pub experimental_peer_dial_urls: Option<String>,
}

impl Flags {
    /// Parses `args` (program name first). As etcd does, a flag given both on the command
    /// line and in the environment is an error rather than a silent override.
    pub fn parse_from<I, T>(args: I) -> Result<Flags, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let mut cmd = Flags::command();
        let matches = cmd.try_get_matches_from_mut(args)?;
        if matches.contains_id("config_file") {
            let ignored: Vec<String> = cmd
                .get_arguments()
                .filter(|a| a.get_id() != "config_file")
                .filter_map(|a| match matches.value_source(a.get_id().as_str()) {
                    Some(ValueSource::CommandLine) => Some(format!("--{}", a.get_long()?)),
                    Some(ValueSource::EnvVariable) => {
                        Some(a.get_env()?.to_string_lossy().into_owned())
                    }
                    _ => None,
                })
                .collect();
            if !ignored.is_empty() {
                tracing::warn!(
                    ?ignored,
                    "a configuration file is given: other flags and environment variables are ignored"
                );
            }
            return Flags::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd));
        }
        let shadowed = cmd.get_arguments().find_map(|arg| {
            let env = arg.get_env()?;
            (matches.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine)
                && std::env::var_os(env).is_some())
            .then(|| env.to_string_lossy().into_owned())
        });
        if let Some(env) = shadowed {
            return Err(cmd.error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "conflicting environment variable {env:?} is shadowed by corresponding \
                     command-line flag (either unset environment variable or disable flag)"
                ),
            ));
        }
        Flags::from_arg_matches(&matches).map_err(|e| e.format(&mut cmd))
    }
}

impl Flags {
    /// The flags an etcd configuration file (YAML, see [`file`]) sets; the environment
    /// plays no part, as in etcd.
    pub fn from_config_file(yaml: &str) -> Result<Flags, String> {
        let mut cmd = Flags::command().mut_args(|a| a.env(None));
        let has_flag = |name: &str| {
            name != "config-file" && cmd.get_arguments().any(|a| a.get_long() == Some(name))
        };
        let args = file::args(yaml, has_flag)?;
        let argv = std::iter::once("detcd".to_string()).chain(args);
        let matches = cmd.try_get_matches_from_mut(argv).map_err(|e| {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            first.trim_start_matches("error: ").to_string()
        })?;
        Flags::from_arg_matches(&matches).map_err(|e| e.to_string())
    }
}

/// A duration flag as Go's `time.ParseDuration` reads it.
fn go_duration_flag(value: &str) -> Result<Duration, String> {
    super::compaction::parse_go_duration(value)
}

/// Whether the member starts a new cluster or joins an existing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

/// One member of the initial cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialMember {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<Url>,
}

/// A checked configuration.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client_urls: Vec<Url>,
    pub advertise_client_urls: Vec<Url>,
    pub listen_peer_urls: Vec<Url>,
    pub initial_advertise_peer_urls: Vec<Url>,
    /// Sorted by member ID.
    pub initial_cluster: Vec<InitialMember>,
    pub initial_cluster_state: ClusterState,
    pub initial_cluster_token: String,
    pub snapshot_count: u64,
    pub snapshot_catchup_entries: u64,
    pub compaction_batch_limit: usize,
    pub wal_segment_bytes: u64,
    pub quota_backend_bytes: u64,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    pub max_request_bytes: u64,
    /// How long a simple token lives unused.
    pub auth_token_ttl: Duration,
    pub auth_token: AuthToken,
    pub bcrypt_cost: u32,
    /// `None` when off.
    pub auto_compaction: Option<AutoCompaction>,
    /// `--force-new-cluster`: restart from the data as the only member.
    pub force_new_cluster: bool,
    pub max_txn_ops: usize,
    pub strict_reconfig_check: bool,
    /// Where `/metrics` and `/health` are served besides the client URLs.
    pub listen_metrics_urls: Vec<Url>,
    /// Server pings on idle client connections (`None`: off), and how long one may go
    /// unanswered (`None`: no limit).
    pub grpc_keepalive_interval: Option<Duration>,
    pub grpc_keepalive_timeout: Option<Duration>,
    pub max_concurrent_streams: u32,
    /// Whether the leader checkpoints remaining lease TTLs.
    pub lease_checkpoint: bool,
    pub unsafe_no_fsync: bool,
    /// How often watchers that asked for it get a progress notification.
    pub watch_progress_notify_interval: Duration,
    /// Corruption checks: before serving, periodically on the leader (`None`: off), and
    /// of compaction hashes (`None`: off).
    pub initial_corrupt_check: bool,
    pub corrupt_check_time: Option<Duration>,
    pub compact_hash_check_time: Option<Duration>,
    /// Dial URLs overriding peers' advertised ones, by member name.
    pub peer_dial_urls: BTreeMap<String, Url>,
    pub client_tls: TlsSpec,
    pub peer_tls: TlsSpec,
}

/// `--auth-token`: which tokens Authenticate hands out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthToken {
    Simple,
    /// Signed tokens (etcd's JWT provider); without a private key the member only
    /// verifies them.
    Jwt {
        sign_method: String,
        pub_key: PathBuf,
        priv_key: Option<PathBuf>,
        ttl: Duration,
    },
}

impl AuthToken {
    /// Parses etcd's `type,option=value,...` form.
    fn parse(value: &str) -> Result<AuthToken, String> {
        let mut parts = value.split(',');
        match parts.next() {
            Some("simple") => return Ok(AuthToken::Simple),
            Some("jwt") => {}
            _ => return Err(format!("unknown token type: {value}")),
        }
        let (mut sign_method, mut pub_key, mut priv_key) = (None, None, None);
        let mut ttl = crate::auth::DEFAULT_JWT_TTL;
        for option in parts {
            match option.split_once('=') {
                Some(("sign-method", v)) => sign_method = Some(v.to_string()),
                Some(("pub-key", v)) => pub_key = Some(PathBuf::from(v)),
                Some(("priv-key", v)) => priv_key = Some(PathBuf::from(v)),
                Some(("ttl", v)) => ttl = go_duration(v).ok_or(format!("invalid jwt ttl {v:?}"))?,
                _ => return Err(format!("unknown token option: {option}")),
            }
        }
        Ok(AuthToken::Jwt {
            sign_method: sign_method.ok_or("jwt needs sign-method")?,
            pub_key: pub_key.ok_or("jwt needs pub-key")?,
            priv_key,
            ttl,
        })
    }
}

/// A Go duration of one unit (`300ms`, `30s`, `10m`, `1h`), as etcd's token options take.
fn go_duration(value: &str) -> Option<Duration> {
    let split = value.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = value.split_at(split);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        "h" => Duration::from_secs(n.checked_mul(3600)?),
        _ => return None,
    })
}

/// The client's TLS flags, or (`peer`) the peer's; an `https://` listen URL needs a
/// certificate, as in etcd.
fn tls_spec(f: &Flags, peer: bool, listen: &[Url]) -> Result<TlsSpec, String> {
    let cipher_suites = f.cipher_suites.iter().flat_map(|s| s.split(','));
    let shared = TlsSpec {
        cipher_suites: cipher_suites
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        min_version: f.tls_min_version.clone(),
        ..TlsSpec::default()
    };
    let (spec, prefix, kind) = if peer {
        let spec = TlsSpec {
            cert_file: f.peer_cert_file.clone(),
            key_file: f.peer_key_file.clone(),
            trusted_ca_file: f.peer_trusted_ca_file.clone(),
            client_cert_auth: f.peer_client_cert_auth,
            auto_tls: f.peer_auto_tls,
            allowed_cn: f.peer_cert_allowed_cn.clone(),
            ..shared
        };
        (spec, "peer-", "peer")
    } else {
        let spec = TlsSpec {
            cert_file: f.cert_file.clone(),
            key_file: f.key_file.clone(),
            trusted_ca_file: f.trusted_ca_file.clone(),
            client_cert_auth: f.client_cert_auth,
            auto_tls: f.auto_tls,
            ..shared
        };
        (spec, "", "client")
    };
    let secure = |u: &&Url| u.scheme == "https" || u.scheme == "unixs";
    if let Some(url) = listen.iter().find(secure) {
        if !spec.has_certificate() {
            return Err(format!(
                "TLS key/cert (--{prefix}cert-file, --{prefix}key-file) must be provided for \
                 {kind} url {url} with HTTPS scheme"
            ));
        }
    }
    Ok(spec)
}

fn urls(flag: &str, value: &str) -> Result<Vec<Url>, String> {
    Url::parse_list(value).map_err(|e| format!("invalid --{flag}: {e}"))
}

/// etcd's member ID: the first 8 bytes (big-endian) of sha1(sorted peer URLs ++ token).
pub fn member_id(peer_urls: &[Url], token: &str) -> u64 {
    let mut strs: Vec<String> = peer_urls.iter().map(Url::to_string).collect();
    strs.sort();
    let mut h = Sha1::new();
    h.update(strs.concat().as_bytes());
    h.update(token.as_bytes());
    u64::from_be_bytes(h.finalize()[..8].try_into().expect("sha1 has 20 bytes"))
}

/// etcd's cluster ID: the first 8 bytes of sha1 over the sorted member IDs, big-endian.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut h = Sha1::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    u64::from_be_bytes(h.finalize()[..8].try_into().expect("sha1 has 20 bytes"))
}

/// Parses `--flag`'s `name=url,name=url,...`; a name may repeat to give several URLs.
fn parse_named_urls(flag: &str, value: &str) -> Result<BTreeMap<String, Vec<Url>>, String> {
    let mut by_name: BTreeMap<String, Vec<Url>> = BTreeMap::new();
    for pair in value.split(',').map(str::trim) {
        let (name, url) = pair
            .split_once('=')
            .filter(|(n, _)| !n.is_empty())
            .ok_or_else(|| format!("invalid --{flag} entry {pair:?}: expected name=url"))?;
        let url = Url::parse(url).map_err(|e| format!("invalid --{flag}: {e}"))?;
        by_name.entry(name.to_string()).or_default().push(url);
    }
    Ok(by_name)
}

/// Parses `--initial-cluster`.
fn parse_initial_cluster(value: &str, token: &str) -> Result<Vec<InitialMember>, String> {
    let by_name = parse_named_urls("initial-cluster", value)?;
    let mut members: Vec<InitialMember> = by_name
        .into_iter()
        .map(|(name, peer_urls)| InitialMember {
            id: member_id(&peer_urls, token),
            name,
            peer_urls,
        })
        .collect();
    members.sort_by_key(|m| m.id);
    for pair in members.windows(2) {
        if pair[0].id == pair[1].id {
            return Err(format!(
                "--initial-cluster members {:?} and {:?} have the same peer URLs",
                pair[0].name, pair[1].name
            ));
        }
    }
    Ok(members)
}

/// Parses `--experimental-peer-dial-urls`: one URL per member of the initial cluster.
fn parse_peer_dial_urls(
    f: &Flags,
    initial_cluster: &[InitialMember],
) -> Result<BTreeMap<String, Url>, String> {
    let Some(value) = &f.experimental_peer_dial_urls else {
        return Ok(BTreeMap::new());
    };
    let flag = "experimental-peer-dial-urls";
    let mut dial = BTreeMap::new();
    for (name, mut urls) in parse_named_urls(flag, value)? {
        if !initial_cluster.iter().any(|m| m.name == name) {
            return Err(format!(
                "--{flag} names {name:?}, which --initial-cluster does not"
            ));
        }
        if urls.len() > 1 {
            return Err(format!("--{flag} gives {name:?} more than one URL"));
        }
        dial.insert(name, urls.remove(0));
    }
    Ok(dial)
}

impl ServerConfig {
    pub fn from_flags(f: &Flags) -> Result<ServerConfig, String> {
        if f.election_timeout < 5 * f.heartbeat_interval {
            return Err(format!(
                "--election-timeout[{}ms] should be at least as 5 times as --heartbeat-interval[{}ms]",
                f.election_timeout, f.heartbeat_interval
            ));
        }
        if f.election_timeout > MAX_ELECTION_TIMEOUT_MS {
            return Err(format!(
                "--election-timeout[{}ms] is too long, and should be set less than {MAX_ELECTION_TIMEOUT_MS}ms",
                f.election_timeout
            ));
        }
        if f.experimental_wal_segment_bytes < MIN_WAL_SEGMENT_BYTES {
            return Err(format!(
                "--experimental-wal-segment-bytes[{}] must be at least {MIN_WAL_SEGMENT_BYTES}",
                f.experimental_wal_segment_bytes
            ));
        }
        if f.heartbeat_interval == 0 {
            return Err("--heartbeat-interval must be at least 1ms".into());
        }
        // bcrypt's valid costs, as etcd checks them at start.
        if !(4..=31).contains(&f.bcrypt_cost) {
            return Err(format!(
                "--bcrypt-cost[{}] must be between 4 and 31",
                f.bcrypt_cost
            ));
        }
        if f.experimental_compact_hash_check_time.is_zero() {
            return Err("--experimental-compact-hash-check-time must be >0 (set to 0s)".into());
        }
        if !super::log::LOGGERS.contains(&f.logger.as_str()) {
            return Err(format!("unknown logger option {:?}", f.logger));
        }
        if let Some(level) = &f.log_level {
            super::log::level(level).map_err(|e| format!("invalid --log-level: {e}"))?;
        }
        let listen_metrics_urls = match &f.listen_metrics_urls {
            Some(value) => urls("listen-metrics-urls", value)?,
            None => Vec::new(),
        };
        let quota_backend_bytes = match f.quota_backend_bytes {
            q if q < 0 => return Err(format!("--quota-backend-bytes[{q}] must not be negative")),
            0 => DEFAULT_QUOTA_BACKEND_BYTES,
            q => q as u64,
        };
        let initial_advertise_peer_urls = urls(
            "initial-advertise-peer-urls",
            &f.initial_advertise_peer_urls,
        )?;
        let initial_cluster_value = f.initial_cluster.clone().unwrap_or_else(|| {
            initial_advertise_peer_urls
                .iter()
                .map(|u| format!("{}={u}", f.name))
                .collect::<Vec<_>>()
                .join(",")
        });
        let initial_cluster =
            parse_initial_cluster(&initial_cluster_value, &f.initial_cluster_token)?;
        let me = initial_cluster
            .iter()
            .find(|m| m.name == f.name)
            .ok_or_else(|| {
                format!(
                    "couldn't find local name {:?} in the initial cluster configuration",
                    f.name
                )
            })?;
        let mut mine: Vec<String> = me.peer_urls.iter().map(Url::to_string).collect();
        let mut advertised: Vec<String> = initial_advertise_peer_urls
            .iter()
            .map(Url::to_string)
            .collect();
        mine.sort();
        advertised.sort();
        if mine != advertised {
            return Err(format!(
                "--initial-cluster has {}={} but missing from --initial-advertise-peer-urls={}",
                f.name,
                mine.join(","),
                advertised.join(",")
            ));
        }
        let peer_dial_urls = parse_peer_dial_urls(f, &initial_cluster)?;
        let listen_client_urls = urls("listen-client-urls", &f.listen_client_urls)?;
        let listen_peer_urls = urls("listen-peer-urls", &f.listen_peer_urls)?;
        let client_tls = tls_spec(f, false, &listen_client_urls)?;
        let peer_tls = tls_spec(f, true, &listen_peer_urls)?;
        let auto_compaction =
            AutoCompaction::parse(&f.auto_compaction_mode, &f.auto_compaction_retention)?;
        Ok(ServerConfig {
            name: f.name.clone(),
            data_dir: f
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}.detcd", f.name))),
            listen_client_urls,
            advertise_client_urls: urls("advertise-client-urls", &f.advertise_client_urls)?,
            listen_peer_urls,
            initial_advertise_peer_urls,
            initial_cluster,
            initial_cluster_state: match f.initial_cluster_state.as_str() {
                "existing" => ClusterState::Existing,
                _ => ClusterState::New,
            },
            initial_cluster_token: f.initial_cluster_token.clone(),
            snapshot_count: f.snapshot_count,
            snapshot_catchup_entries: f.experimental_snapshot_catchup_entries,
            compaction_batch_limit: match f.experimental_compaction_batch_limit {
                0 => crate::mvcc::Config::default().compaction_batch_limit,
                limit => limit,
            },
            wal_segment_bytes: f.experimental_wal_segment_bytes,
            quota_backend_bytes,
            heartbeat_interval: Duration::from_millis(f.heartbeat_interval),
            election_timeout: Duration::from_millis(f.election_timeout),
            max_request_bytes: f.max_request_bytes,
            auth_token_ttl: Duration::from_secs(f.auth_token_ttl),
            auth_token: AuthToken::parse(&f.auth_token)?,
            bcrypt_cost: f.bcrypt_cost,
            auto_compaction,
            force_new_cluster: f.force_new_cluster,
            max_txn_ops: f.max_txn_ops,
            strict_reconfig_check: f.strict_reconfig_check,
            listen_metrics_urls,
            grpc_keepalive_interval: Some(f.grpc_keepalive_interval).filter(|d| !d.is_zero()),
            grpc_keepalive_timeout: Some(f.grpc_keepalive_timeout).filter(|d| !d.is_zero()),
            max_concurrent_streams: f.max_concurrent_streams,
            lease_checkpoint: f.experimental_enable_lease_checkpoint,
            unsafe_no_fsync: f.unsafe_no_fsync,
            // etcd keeps its default for 0.
            watch_progress_notify_interval: Some(f.experimental_watch_progress_notify_interval)
                .filter(|d| !d.is_zero())
                .unwrap_or(WATCH_PROGRESS_NOTIFY_INTERVAL),
            initial_corrupt_check: f.experimental_initial_corrupt_check,
            corrupt_check_time: Some(f.experimental_corrupt_check_time).filter(|d| !d.is_zero()),
            compact_hash_check_time: f
                .experimental_compact_hash_check_enabled
                .then_some(f.experimental_compact_hash_check_time),
            peer_dial_urls,
            client_tls,
            peer_tls,
        })
    }

    /// The URL this member dials to reach the peer named `name` that advertises `url`.
    pub fn dial_url(&self, name: &str, url: &str) -> String {
        self.peer_dial_urls
            .get(name)
            .map_or_else(|| url.to_string(), |u| u.to_string())
    }

    /// This member's ID.
    pub fn member_id(&self) -> u64 {
        member_id(
            &self.initial_advertise_peer_urls,
            &self.initial_cluster_token,
        )
    }

    /// The ID of the cluster the initial configuration describes.
    pub fn cluster_id(&self) -> u64 {
        let ids: Vec<u64> = self.initial_cluster.iter().map(|m| m.id).collect();
        cluster_id(&ids)
    }

    /// Raft ticks per election timeout, with one tick per heartbeat interval.
    pub fn election_ticks(&self) -> usize {
        (self.election_timeout.as_millis() / self.heartbeat_interval.as_millis()) as usize
    }
}

mod file;
#[cfg(test)]
mod tests;
