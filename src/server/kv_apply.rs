//! Applies committed client requests to the MVCC store and the lessor, and turns what they
//! return into the bytes a proposer waits for.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prost::Message;
use tokio::time::Instant;

use super::member::StateMachine;
use super::membership::{self, RaftCluster, SharedCluster};
use crate::lease::{self, Lessor};
use crate::mvcc::{self, KvStore, WatchableStore};
use crate::proto::etcdserverpb::LeaseCheckpointResponse;
use crate::proto::internalpb::internal_raft_request::Request;
use crate::proto::internalpb::internal_raft_response::Response;
use crate::proto::internalpb::MemberAttrSetResponse;
use crate::proto::internalpb::{InternalRaftRequest, InternalRaftResponse};
use crate::proto::raftpb::{ConfChange, ConfState};
use crate::runtime::Clock;

/// The MVCC store with its watchers, shared by the apply loop (writes) and the API
/// (serializable reads, watch streams). Lock order: store, then lessor, then cluster.
pub type SharedStore = Arc<Mutex<WatchableStore>>;
/// The leases; see [`SharedStore`] for the lock order.
pub type SharedLessor = Arc<Mutex<Lessor>>;

pub fn lock<T>(shared: &Arc<Mutex<T>>) -> MutexGuard<'_, T> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// The lessor's notion of now: time since the member started, on the runtime clock.
#[derive(Clone, Copy, Debug)]
pub struct LeaseClock {
    start: Instant,
}

impl LeaseClock {
    pub fn new() -> Self {
        LeaseClock { start: Clock.now() }
    }

    pub fn now(&self) -> Duration {
        Clock.now() - self.start
    }
}

impl Default for LeaseClock {
    fn default() -> Self {
        Self::new()
    }
}

/// How long applied entries may stay in the backend's open transaction before a commit
/// makes them durable (etcd's backend batch interval). They are durable in the WAL
/// already; committing per Ready would cost a second fsync per batch of proposals.
pub const BACKEND_BATCH_INTERVAL: Duration = Duration::from_millis(100);

/// The state machine of a member: keys, watchers, leases and membership.
pub struct KvApplier {
    store: SharedStore,
    lessor: SharedLessor,
    clock: LeaseClock,
    last_commit: Instant,
    cluster: SharedCluster,
}

impl KvApplier {
    pub fn new(store: SharedStore, lessor: SharedLessor, clock: LeaseClock) -> Self {
        KvApplier {
            store,
            lessor,
            clock,
            last_commit: Clock.now(),
            cluster: SharedCluster::default(),
        }
    }

    /// Applies membership changes to `cluster` (which the backend's tables seeded).
    pub fn with_cluster(self, cluster: SharedCluster) -> Self {
        KvApplier { cluster, ..self }
    }

    /// Commits the backend if the batch interval has passed, and runs pending compaction.
    fn commit_if_due(&mut self) {
        let now = Clock.now();
        let due = now - self.last_commit >= BACKEND_BATCH_INTERVAL;
        let mut store = lock(&self.store);
        let committed = on_kv(&mut store, |kv| {
            if due && kv.consistent_index() > kv.committed_index() {
                kv.commit()?;
            }
            while kv.compaction_pending() {
                kv.compaction_step()?;
            }
            Ok(())
        });
        if let Err(e) = committed {
            panic!("backend commit failed: {e}");
        }
        if due {
            self.last_commit = now;
        }
    }
}

/// Why an entry failed: a client error (answered) or a backend failure (fatal).
enum Failure {
    Client(String),
    Backend(String),
}

impl From<mvcc::Error> for Failure {
    fn from(e: mvcc::Error) -> Self {
        match e {
            mvcc::Error::Backend(b) => Failure::Backend(b.to_string()),
            other => Failure::Client(other.to_string()),
        }
    }
}

impl From<lease::Error> for Failure {
    fn from(e: lease::Error) -> Self {
        match e {
            lease::Error::Mvcc(m) => m.into(),
            lease::Error::Backend(b) => Failure::Backend(b.to_string()),
            other => Failure::Client(other.to_string()),
        }
    }
}

/// Runs one request; key writes go through the watchable store so watchers see them, and
/// their events reach the lessor so keys attach to and detach from leases.
fn run(
    store: &mut WatchableStore,
    lessor: &mut Lessor,
    cluster: &SharedCluster,
    request: Request,
    now: Duration,
) -> Result<Response, Failure> {
    Ok(match request {
        Request::Put(r) => {
            let (resp, events) = store.write(|kv| kv.put(&r, &*lessor))?;
            lessor.observe(&events);
            Response::Put(resp)
        }
        Request::DeleteRange(r) => {
            let (resp, events) = store.write(|kv| kv.delete_range(&r))?;
            lessor.observe(&events);
            Response::DeleteRange(resp)
        }
        Request::Txn(r) => {
            let (resp, events) = store.write(|kv| kv.txn(&r, &*lessor))?;
            lessor.observe(&events);
            Response::Txn(resp)
        }
        Request::Compaction(r) => Response::Compaction(on_kv(store, |kv| kv.compact(&r))?),
        Request::LeaseGrant(r) => Response::LeaseGrant(lessor.grant(store, &r, now)?),
        Request::LeaseRevoke(r) => Response::LeaseRevoke(lessor.revoke(store, r.id)?),
        Request::LeaseCheckpoint(r) => {
            lessor.apply_checkpoint(store, &r)?;
            Response::LeaseCheckpoint(LeaseCheckpointResponse { header: None })
        }
        Request::MemberAttrSet(r) => {
            let mut cluster = lock(cluster);
            let set = cluster.set_attributes(store.backend(), r.member_id, r.name, r.client_urls);
            set.map_err(|e| Failure::Backend(e.to_string()))?;
            Response::MemberAttrSet(MemberAttrSetResponse {})
        }
        Request::Alarm(r) => Response::Alarm(super::alarm::apply(store, &r)?),
    })
}

/// Runs `f` on the KV store for its effect on the backend, outside any key write.
fn on_kv<R>(
    store: &mut WatchableStore,
    f: impl FnOnce(&mut KvStore) -> mvcc::error::Result<R>,
) -> mvcc::error::Result<R> {
    Ok(store.write(|kv| Ok((f(kv)?, Vec::new())))?.0)
}

impl StateMachine for KvApplier {
    fn apply(&mut self, index: u64, payload: &[u8]) -> Vec<u8> {
        let mut store = lock(&self.store);
        let mut lessor = lock(&self.lessor);
        let response = match InternalRaftRequest::decode(payload) {
            Ok(InternalRaftRequest {
                request: Some(request),
            }) => {
                if let Err(e) = on_kv(&mut store, |kv| kv.begin_entry(index)) {
                    panic!("backend failed to start entry {index}: {e}");
                }
                let now = self.clock.now();
                match run(&mut store, &mut lessor, &self.cluster, request, now) {
                    Ok(r) => r,
                    Err(Failure::Client(message)) => Response::Error(message),
                    Err(Failure::Backend(e)) => {
                        panic!("backend failed applying entry {index}: {e}")
                    }
                }
            }
            _ => Response::Error(format!("etcdserver: malformed log entry {index}")),
        };
        InternalRaftResponse {
            response: Some(response),
        }
        .encode_to_vec()
    }

    fn end_batch(&mut self) {
        self.commit_if_due();
    }

    fn on_tick(&mut self) {
        self.commit_if_due();
    }

    fn applied_index(&self) -> u64 {
        lock(&self.store).kv().consistent_index()
    }

    fn sync(&mut self) {
        let mut store = lock(&self.store);
        if let Err(e) = on_kv(&mut store, |kv| kv.commit()) {
            panic!("backend commit failed: {e}");
        }
        self.last_commit = Clock.now();
    }

    fn snapshot_source(&mut self) -> Option<crate::backend::SnapshotSource> {
        let mut store = lock(&self.store);
        match store.backend().snapshot_source() {
            Ok(source) => Some(source),
            Err(e) => panic!("backend read failed: {e}"),
        }
    }

    fn restore(&mut self, disk: &dyn crate::runtime::Disk, db: &std::path::Path) {
        let mut store = lock(&self.store);
        let mut lessor = lock(&self.lessor);
        super::snapshot::restore_store(disk, db, &mut store, &mut lessor);
        let cluster = RaftCluster::load(store.backend())
            .unwrap_or_else(|e| panic!("backend failed reading the restored membership: {e}"));
        *lock(&self.cluster) = cluster;
    }

    fn peer_urls(&self) -> Vec<(u64, String)> {
        let cluster = lock(&self.cluster);
        let urls = cluster.members().into_iter();
        urls.filter_map(|m| Some((m.id, m.peer_ur_ls.into_iter().next()?)))
            .collect()
    }

    fn apply_conf_change(&mut self, index: u64, cc: &ConfChange) -> Result<(), String> {
        let mut store = lock(&self.store);
        let applied = on_kv(&mut store, |kv| kv.begin_entry(index)).map_err(|e| e.to_string());
        let applied = applied.and_then(|()| {
            let backend = store.backend();
            let outcome = lock(&self.cluster).apply_conf_change(backend, cc);
            outcome.map_err(|e| e.to_string())
        });
        match applied {
            Ok(outcome) => outcome.map_err(|e| e.to_string()),
            Err(e) => panic!("backend failed applying configuration change {index}: {e}"),
        }
    }

    fn save_conf_state(&mut self, cs: &ConfState) {
        if let Err(e) = membership::save_conf_state(lock(&self.store).backend(), cs) {
            panic!("backend failed saving Raft's configuration: {e}");
        }
    }

    fn conf_state(&self) -> Option<ConfState> {
        let mut store = lock(&self.store);
        membership::load_conf_state(store.backend())
            .unwrap_or_else(|e| panic!("backend failed reading Raft's configuration: {e}"))
    }
}
