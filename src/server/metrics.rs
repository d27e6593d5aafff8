//! A member's Prometheus metrics, with etcd's names, help texts, types and buckets, so that
//! etcd's dashboards and alerts (e.g. on `etcd_disk_wal_fsync_duration_seconds`) work
//! unchanged.
//!
//! Each member has its own registry rather than a process-wide one: the simulator runs
//! several members in one process, and they must not share counters. Updating a metric is
//! an atomic operation (histograms: a short lock), never an allocation.

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::member::MemberStatus;
use super::SERVER_VERSION;

/// The `Content-Type` of [`ServerMetrics::encode`]'s output, as etcd serves it.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// etcd's disk latency buckets: 1 ms doubling up to 8.192 s.
fn disk_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.001, 2.0, 14)
}

/// A labelled gauge set to 1, etcd's way of exporting a string (an ID, a version).
fn info_gauge(label: &str, value: String) -> Family<Vec<(String, String)>, Gauge> {
    let family = Family::<Vec<(String, String)>, Gauge>::default();
    family
        .get_or_create(&vec![(label.to_string(), value)])
        .set(1);
    family
}

/// The metrics of one member. Fields are cheap handles onto the registry's metrics.
#[derive(Debug)]
pub struct ServerMetrics {
    registry: Registry,
    /// Raft's commit index (a gauge despite the name, as in etcd).
    pub proposals_committed: Gauge,
    /// The applied index (a gauge despite the name, as in etcd).
    pub proposals_applied: Gauge,
    /// Proposals made through this member that have not finished.
    pub proposals_pending: Gauge,
    /// Proposals that failed: no leader, timed out, stopped or abandoned by the caller.
    pub proposals_failed: Counter,
    pub leader_changes: Counter,
    pub has_leader: Gauge,
    pub is_leader: Gauge,
    /// WAL fsync latency, observed by the WAL itself.
    pub wal_fsync: Histogram,
    /// Backend commit latency, observed by the backend itself.
    pub backend_commit: Histogram,
    /// Set when scraped, from the backend file's size.
    pub db_total_size: Gauge,
    /// Set when scraped, from the watchable store.
    pub watchers: Gauge,
    /// Raft messages dropped because their sender is not a known member (detcd's own).
    pub peer_unknown_senders: Counter,
    /// Raft messages refused because no honest member sends them (detcd's own).
    pub peer_rejected_messages: Counter,
}

impl ServerMetrics {
    pub fn new(member_id: u64) -> Self {
        let mut m = ServerMetrics {
            proposals_committed: Gauge::default(),
            proposals_applied: Gauge::default(),
            proposals_pending: Gauge::default(),
            proposals_failed: Counter::default(),
            leader_changes: Counter::default(),
            has_leader: Gauge::default(),
            is_leader: Gauge::default(),
            wal_fsync: Histogram::new(disk_buckets()),
            backend_commit: Histogram::new(disk_buckets()),
            db_total_size: Gauge::default(),
            watchers: Gauge::default(),
            peer_unknown_senders: Counter::default(),
            peer_rejected_messages: Counter::default(),
            registry: Registry::default(),
        };
        let registry = &mut m.registry;
        // Counters are registered without `_total`: the encoder appends it.
        registry.register(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not",
            m.has_leader.clone(),
        );
        registry.register(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise",
            m.is_leader.clone(),
        );
        registry.register(
            "etcd_server_leader_changes_seen",
            "The number of leader changes seen",
            m.leader_changes.clone(),
        );
        registry.register(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed",
            m.proposals_committed.clone(),
        );
        registry.register(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied",
            m.proposals_applied.clone(),
        );
        registry.register(
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit",
            m.proposals_pending.clone(),
        );
        registry.register(
            "etcd_server_proposals_failed",
            "The total number of failed proposals seen",
            m.proposals_failed.clone(),
        );
        registry.register(
            "detcd_network_peer_unknown_sender_messages",
            "The total number of Raft messages dropped because their sender is not a known member",
            m.peer_unknown_senders.clone(),
        );
        registry.register(
            "detcd_network_peer_rejected_messages",
            "The total number of malformed Raft messages refused (logged at warn)",
            m.peer_rejected_messages.clone(),
        );
        registry.register(
            "etcd_server_id",
            "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID",
            info_gauge("server_id", format!("{member_id:x}")),
        );
        registry.register(
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version",
            info_gauge("server_version", SERVER_VERSION.to_string()),
        );
        registry.register(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL",
            m.wal_fsync.clone(),
        );
        registry.register(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend",
            m.backend_commit.clone(),
        );
        registry.register(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes",
            m.db_total_size.clone(),
        );
        registry.register(
            "etcd_debugging_mvcc_watcher_total",
            "Total number of watchers",
            m.watchers.clone(),
        );
        m
    }

    /// Records a newly published member status: leadership and Raft progress.
    pub fn observe_status(&self, before: &MemberStatus, now: &MemberStatus) {
        if now.leader != 0 && now.leader != before.leader {
            self.leader_changes.inc();
        }
        self.has_leader.set(i64::from(now.leader != 0));
        self.is_leader.set(i64::from(now.is_leader));
        self.proposals_committed.set(now.commit as i64);
        self.proposals_applied.set(now.applied as i64);
    }

    /// Every metric in Prometheus's text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Counts one proposal as pending while it lives, and as failed unless [`Self::succeeded`]
/// is called: a caller that gives up (drops the future) counts as a failure, as in etcd.
pub struct PendingProposal<'a> {
    metrics: &'a ServerMetrics,
    succeeded: bool,
}

impl<'a> PendingProposal<'a> {
    pub fn start(metrics: &'a ServerMetrics) -> Self {
        metrics.proposals_pending.inc();
        PendingProposal {
            metrics,
            succeeded: false,
        }
    }

    pub fn succeeded(mut self) {
        self.succeeded = true;
    }
}

impl Drop for PendingProposal<'_> {
    fn drop(&mut self) {
        self.metrics.proposals_pending.dec();
        if !self.succeeded {
            self.metrics.proposals_failed.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_etcd_names_and_types() {
        let m = ServerMetrics::new(0x8e9e05c52164694d);
        m.leader_changes.inc();
        m.wal_fsync.observe(0.0015);
        let text = m.encode();
        for line in [
            "# TYPE etcd_server_leader_changes_seen_total counter",
            "etcd_server_leader_changes_seen_total 1",
            "# TYPE etcd_server_proposals_committed_total gauge",
            "# TYPE etcd_server_proposals_failed_total counter",
            "etcd_server_id{server_id=\"8e9e05c52164694d\"} 1",
            "etcd_server_version{server_version=\"3.5.0\"} 1",
            "# TYPE etcd_disk_wal_fsync_duration_seconds histogram",
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 0",
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"} 1",
            "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"8.192\"} 1",
            "etcd_disk_wal_fsync_duration_seconds_count 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn pending_proposals_count_failures_unless_they_succeed() {
        let m = ServerMetrics::new(1);
        let ok = PendingProposal::start(&m);
        let abandoned = PendingProposal::start(&m);
        assert_eq!(m.proposals_pending.get(), 2);
        ok.succeeded();
        drop(abandoned);
        assert_eq!(m.proposals_pending.get(), 0);
        assert_eq!(m.proposals_failed.get(), 1);
    }

    #[test]
    fn leader_changes_count_new_leaders_only() {
        let m = ServerMetrics::new(1);
        let none = MemberStatus::default();
        let led_by_2 = MemberStatus { leader: 2, ..none };
        m.observe_status(&none, &led_by_2);
        m.observe_status(&led_by_2, &led_by_2);
        m.observe_status(&led_by_2, &none);
        assert_eq!(m.leader_changes.get(), 1);
        assert_eq!(m.has_leader.get(), 0);
    }
}
