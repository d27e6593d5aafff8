//! The peer transport: Raft messages between members, one gRPC client stream per peer.
//!
//! Sending never blocks the member loop: each peer has a bounded queue drained by its own
//! task, which connects, streams, and on failure reports the peer unreachable, drops what
//! is queued (Raft resends; stale appends would be refused anyway), backs off and
//! reconnects. A stream that stays open while the peer has gone silent (a partition: TCP
//! keeps retransmitting, with ever longer pauses) is dropped and redialled, as etcd's
//! connection read timeout does, so that a healed link carries messages again at once. Receiving hands messages to the member loop through a bounded queue, and
//! refuses streams from another cluster. The same code runs on tokio and under madsim.
//!
//! Members removed from the cluster are refused with etcd's message; a member refused so
//! learns it was removed and stops.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::net::Dialer;
use crate::proto::peerpb::peer_client::PeerClient;
use crate::proto::peerpb::peer_server::Peer;
pub use crate::proto::peerpb::peer_server::PeerServer;
use crate::proto::peerpb::{PeerMessage, SnapshotChunk, SnapshotResponse, StreamResponse};
use crate::proto::raftpb::{Message, MessageType};
use crate::raft::SnapshotStatus;
use crate::runtime::Clock;
use crate::server::snapshot::{self, Inbox, Outgoing};
use crate::server::store::lock;

/// What a member tells a removed one (etcd's errMemberRemoved).
pub const REMOVED_MESSAGE: &str = "the member has been permanently removed from the cluster";

/// Messages queued for one peer; past this, new ones are dropped and the peer is reported
/// unreachable.
pub const PEER_QUEUE_LEN: usize = 4096;
/// Messages in flight on one stream.
const STREAM_WINDOW: usize = 256;
/// Events waiting for the member loop; they are advisory, so overflow drops them.
const EVENT_QUEUE_LEN: usize = 1024;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// etcd redials an unreachable peer every 100 ms; dialling is cheap, a slow recovery is not.
const BACKOFF_MAX: Duration = Duration::from_millis(200);
/// How long a stream may carry messages to a peer that says nothing back before it is
/// redialled: ten election timeouts' worth of heartbeats at etcd's defaults would be
/// answered in this time (etcd's ConnReadTimeout is 5 s; a follower busy with a slow fsync
/// answers late, and dropping its stream then costs a redial, not safety).
const STREAM_STALL: Duration = Duration::from_secs(2);
/// How often a stream checks for a stall.
const STALL_CHECK: Duration = Duration::from_millis(500);

/// What the transport reports besides delivering messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerEvent {
    /// Messages to this member were lost; Raft should fall back to probing it.
    Unreachable(u64),
    /// A snapshot sent to `to` arrived, or did not.
    Snapshot { to: u64, status: SnapshotStatus },
    /// A peer refused this member as removed from the cluster.
    Removed,
}

/// The sending side, shared by the member loop.
#[derive(Clone, Debug)]
pub struct Transport {
    member_id: u64,
    cluster_id: u64,
    links: Arc<Mutex<BTreeMap<u64, Link>>>,
    events: mpsc::Sender<PeerEvent>,
    /// Members removed for good, whose messages are refused.
    removed: Arc<Mutex<BTreeSet<u64>>>,
    /// When each peer was last heard from, kept across link restarts.
    heard: Arc<Mutex<BTreeMap<u64, Heard>>>,
    dialer: Dialer,
}

/// When a peer's last message arrived, written by the receiving side and read by the
/// stream to that peer.
type Heard = Arc<Mutex<tokio::time::Instant>>;

#[derive(Debug)]
struct Link {
    url: String,
    queue: mpsc::Sender<Message>,
    task: tokio::task::JoinHandle<()>,
    /// Since when the stream to the peer is up (etcd's ActiveSince); None while down.
    active_since: Arc<Mutex<Option<tokio::time::Instant>>>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Transport {
    /// A transport for `member_id` in `cluster_id`, and the receiver of its events.
    pub fn new(member_id: u64, cluster_id: u64) -> (Transport, mpsc::Receiver<PeerEvent>) {
        Transport::with_dialer(member_id, cluster_id, Dialer::default())
    }

    /// [`Transport::new`], dialling peers with `dialer` (peer TLS).
    pub fn with_dialer(
        member_id: u64,
        cluster_id: u64,
        dialer: Dialer,
    ) -> (Transport, mpsc::Receiver<PeerEvent>) {
        let (events, rx) = mpsc::channel(EVENT_QUEUE_LEN);
        let transport = Transport {
            member_id,
            cluster_id,
            links: Arc::new(Mutex::new(BTreeMap::new())),
            events,
            removed: Arc::default(),
            heard: Arc::default(),
            dialer,
        };
        (transport, rx)
    }

    /// How this member dials its peers, for every peer call.
    pub fn dialer(&self) -> &Dialer {
        &self.dialer
    }

    fn links(&self) -> MutexGuard<'_, BTreeMap<u64, Link>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts (or, if its URL changed, restarts) the link to peer `id` at `url`.
    pub fn add_peer(&self, id: u64, url: &str) {
        assert_ne!(id, self.member_id, "a member is not its own peer");
        let mut links = self.links();
        if links.get(&id).is_some_and(|l| l.url == url) {
            return;
        }
        let (queue, rx) = mpsc::channel(PEER_QUEUE_LEN);
        let active_since = Arc::new(Mutex::new(None));
        let heard = lock(&self.heard)
            .entry(id)
            .or_insert_with(|| Arc::new(Mutex::new(Clock.now())))
            .clone();
        let task = tokio::spawn(run_link(
            id,
            url.to_string(),
            self.cluster_id,
            rx,
            self.events.clone(),
            LinkState {
                active_since: active_since.clone(),
                heard,
                dialer: self.dialer.clone(),
            },
        ));
        links.insert(
            id,
            Link {
                url: url.to_string(),
                queue,
                task,
                active_since,
            },
        );
    }

    pub fn remove_peer(&self, id: u64) {
        self.links().remove(&id);
    }

    /// Drops the link to a member removed from the cluster and refuses its messages.
    pub fn remove_member(&self, id: u64) {
        self.remove_peer(id);
        lock(&self.removed).insert(id);
    }

    /// Since when the stream to `id` is up, if it is.
    pub fn active_since(&self, id: u64) -> Option<tokio::time::Instant> {
        self.links().get(&id).and_then(|l| *lock(&l.active_since))
    }

    /// IDs of the peers with a link, ascending.
    pub fn peers(&self) -> Vec<u64> {
        self.links().keys().copied().collect()
    }

    /// The peer URL of member `id`, if it is a peer.
    pub fn peer_url(&self, id: u64) -> Option<String> {
        self.links().get(&id).map(|l| l.url.clone())
    }

    /// Queues `msg` for its recipient. Returns false if it was dropped (unknown peer or
    /// full queue); a full queue also reports the peer unreachable.
    pub fn send(&self, msg: Message) -> bool {
        let to = msg.to;
        let queued = match self.links().get(&to) {
            Some(link) => link.queue.try_send(msg).is_ok(),
            None => return false,
        };
        if !queued {
            let _ = self.events.try_send(PeerEvent::Unreachable(to));
        }
        queued
    }

    /// Streams a snapshot to its recipient on a task of its own, and reports how it went
    /// as a [`PeerEvent::Snapshot`], which Raft waits for before it sends another.
    pub fn send_snapshot(&self, out: Outgoing) {
        let to = out.message.to;
        let url = self.links().get(&to).map(|l| l.url.clone());
        let (events, cluster_id) = (self.events.clone(), self.cluster_id);
        let dialer = self.dialer.clone();
        tokio::spawn(async move {
            let result = match url {
                Some(url) => snapshot::send(&dialer, &url, cluster_id, out).await,
                None => Err("no link to the member".to_string()),
            };
            let status = match result {
                Ok(()) => SnapshotStatus::Finish,
                Err(e) => {
                    tracing::warn!(peer = format_args!("{to:x}"), error = %e, "sending a snapshot failed");
                    SnapshotStatus::Failure
                }
            };
            let _ = events.send(PeerEvent::Snapshot { to, status }).await;
        });
    }

    /// The receiving service, delivering accepted messages to `inbound`; serve it wrapped
    /// in [`PeerServer::new`].
    pub fn service(&self, inbound: mpsc::Sender<Message>) -> PeerService {
        PeerService {
            member_id: self.member_id,
            cluster_id: self.cluster_id,
            inbound,
            snapshots: None,
            removed: self.removed.clone(),
            heard: self.heard.clone(),
            unknown_senders: Counter::default(),
            mismatches: Arc::default(),
        }
    }
}

/// Why a stream to a peer stopped.
enum Stopped {
    /// The transport dropped the link: stop for good.
    Removed,
    /// The connection or stream failed: reconnect.
    Failed,
    /// The peer refused this member as removed from the cluster.
    Refused,
    /// Messages went out but the peer said nothing for [`STREAM_STALL`].
    Stalled,
}

/// What a link's task shares with the transport.
struct LinkState {
    /// Since when the stream is up; None while down.
    active_since: Arc<Mutex<Option<tokio::time::Instant>>>,
    heard: Heard,
    dialer: Dialer,
}

async fn run_link(
    to: u64,
    url: String,
    cluster_id: u64,
    mut queue: mpsc::Receiver<Message>,
    events: mpsc::Sender<PeerEvent>,
    state: LinkState,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let connected = state.dialer.connect(&url).await.ok();
        if let Some(channel) = connected {
            backoff = BACKOFF_MIN;
            *lock(&state.active_since) = Some(Clock.now());
            let client = PeerClient::new(channel);
            let stopped = stream_to(client, cluster_id, &mut queue, &state.heard).await;
            *lock(&state.active_since) = None;
            match stopped {
                Stopped::Removed => return,
                Stopped::Refused => {
                    let _ = events.try_send(PeerEvent::Removed);
                }
                Stopped::Stalled => {
                    tracing::debug!(peer = format_args!("{to:x}"), "peer silent; redialling");
                }
                Stopped::Failed => {}
            }
        }
        tracing::debug!(peer = format_args!("{to:x}"), %url, "peer unreachable");
        let _ = events.try_send(PeerEvent::Unreachable(to));
        while queue.try_recv().is_ok() {}
        Clock.sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Forwards `queue` onto one stream until the stream fails or stalls, or the link is
/// removed.
async fn stream_to(
    mut client: PeerClient<tonic::transport::Channel>,
    cluster_id: u64,
    queue: &mut mpsc::Receiver<Message>,
    heard: &Mutex<tokio::time::Instant>,
) -> Stopped {
    let (tx, rx) = mpsc::channel::<Message>(STREAM_WINDOW);
    let outbound =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) }).map(
            move |message| PeerMessage {
                cluster_id,
                message: Some(message),
            },
        );
    // The call runs as its own task so that a full window never stalls it.
    let mut call = tokio::spawn(async move { client.stream(Request::new(outbound)).await });
    let started = Clock.now();
    let mut last_sent = None;
    let mut check = tokio::time::interval_at(started + STALL_CHECK, STALL_CHECK);
    loop {
        tokio::select! {
            _ = check.tick() => {
                let silent_since = (*lock(heard)).max(started);
                if last_sent.is_some_and(|sent| sent > silent_since)
                    && silent_since.elapsed() > STREAM_STALL
                {
                    call.abort();
                    return Stopped::Stalled;
                }
            }
            ended = &mut call => {
                let refused = matches!(&ended, Ok(Err(s)) if s.message() == REMOVED_MESSAGE);
                return if refused { Stopped::Refused } else { Stopped::Failed };
            }
            msg = queue.recv() => match msg {
                None => {
                    call.abort();
                    return Stopped::Removed;
                }
                Some(m) => {
                    if tx.send(m).await.is_err() {
                        return Stopped::Failed;
                    }
                    last_sent = Some(Clock.now());
                }
            },
        }
    }
}

/// Receives Raft messages from peers.
#[derive(Debug)]
pub struct PeerService {
    member_id: u64,
    cluster_id: u64,
    inbound: mpsc::Sender<Message>,
    /// Where received snapshots go; without it, snapshots are refused.
    snapshots: Option<Inbox>,
    removed: Arc<Mutex<BTreeSet<u64>>>,
    /// The peers this member knows, and when each was last heard from.
    heard: Arc<Mutex<BTreeMap<u64, Heard>>>,
    /// Messages dropped because their sender is not a member this member knows.
    unknown_senders: Counter,
    /// Senders (and their cluster IDs) whose cluster ID mismatch was logged.
    mismatches: Arc<Mutex<BTreeSet<(u64, u64)>>>,
}

impl PeerService {
    /// Counts the messages dropped from unknown senders in `counter`.
    pub fn count_unknown_senders(mut self, counter: Counter) -> Self {
        self.unknown_senders = counter;
        self
    }

    /// Accepts snapshots, writing their databases through `inbox`.
    pub fn accept_snapshots(mut self, inbox: Inbox) -> Self {
        self.snapshots = Some(inbox);
        self
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn stream(
        &self,
        request: Request<Streaming<PeerMessage>>,
    ) -> Result<Response<StreamResponse>, Status> {
        let mut stream = request.into_inner();
        // The last sender seen on this stream, and when it was heard from.
        let mut heard: Option<(u64, Heard)> = None;
        while let Some(pm) = stream.message().await? {
            if pm.cluster_id != self.cluster_id {
                let from = pm.message.as_ref().map_or(0, |m| m.from);
                // An operator error (a wiped member, a wrong --initial-cluster-token) that
                // would otherwise show only as an unreachable peer; once per sender, as it
                // redials every few hundred milliseconds.
                if lock(&self.mismatches).insert((from, pm.cluster_id)) {
                    tracing::warn!(
                        local_cluster = format_args!("{:x}", self.cluster_id),
                        remote_cluster = format_args!("{:x}", pm.cluster_id),
                        remote_member = format_args!("{from:x}"),
                        "request cluster ID mismatch"
                    );
                }
                return Err(Status::failed_precondition(format!(
                    "cluster ID mismatch: member {:x} is in cluster {:x}, the sender in {:x}",
                    self.member_id, self.cluster_id, pm.cluster_id
                )));
            }
            let Some(message) = pm.message else {
                return Err(Status::invalid_argument(
                    "peer message without a Raft message",
                ));
            };
            if lock(&self.removed).contains(&message.from) {
                return Err(Status::failed_precondition(REMOVED_MESSAGE));
            }
            if message.to != self.member_id {
                return Err(Status::invalid_argument(format!(
                    "message for member {:x} delivered to member {:x}",
                    message.to, self.member_id
                )));
            }
            if message.r#type() == MessageType::MsgSnap {
                return Err(Status::invalid_argument(
                    "a MsgSnap comes with its database through the Snapshot call",
                ));
            }
            if heard.as_ref().is_none_or(|(from, _)| *from != message.from) {
                let known = lock(&self.heard).get(&message.from).cloned();
                heard = known.map(|h| (message.from, h));
            }
            // As etcd's peer handler answers "sender not found": a message from a member
            // this one does not know (yet: it learns of a new member when it applies the
            // change) is not stepped, lest a stranger that knows the cluster ID vote,
            // campaign or append.
            let Some((_, last_heard)) = &heard else {
                self.unknown_senders.inc();
                tracing::debug!(
                    from = format_args!("{:x}", message.from),
                    "dropped a message from a non-member"
                );
                continue;
            };
            *lock(last_heard) = Clock.now();
            // A full queue means the member loop is behind; dropping is safe, Raft resends.
            let _ = self.inbound.try_send(message);
        }
        Ok(Response::new(StreamResponse {}))
    }

    async fn snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<SnapshotResponse>, Status> {
        let Some(inbox) = &self.snapshots else {
            return Err(Status::unimplemented(format!(
                "member {:x} does not accept snapshots",
                self.member_id
            )));
        };
        let known = |from: u64| {
            let known = lock(&self.heard).contains_key(&from);
            if !known {
                self.unknown_senders.inc();
            }
            known
        };
        snapshot::receive(
            request.into_inner(),
            self.member_id,
            self.cluster_id,
            inbox,
            &self.inbound,
            &known,
        )
        .await?;
        Ok(Response::new(SnapshotResponse {}))
    }
}
