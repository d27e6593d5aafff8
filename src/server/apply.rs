//! Applies committed client requests to the MVCC store, the lessor and the membership,
//! and hands the typed result to the proposer. While the CORRUPT alarm is raised, writes
//! are refused here, as etcd's corrupt applier refuses them.

use std::time::Duration;

use prost::Message;
use tokio::sync::watch;
use tokio::time::Instant;

use super::corrupt::{CompactionHashes, KeyValueHash};
use super::error::Error;
use super::member::{Fatal, LogRequest, StateMachine};
use super::membership::{self, MembershipError, RaftCluster, SharedCluster};
use super::store::{lock, LeaseClock, LongHold, SharedAuth, SharedLessor, SharedStore};
use crate::lease::{self, Lessor};
use crate::mvcc::{self, KvStore, WatchableStore};
use crate::proto::etcdserverpb::{
    AlarmResponse, CompactionResponse, DeleteRangeResponse, LeaseCheckpointResponse,
    LeaseGrantResponse, LeaseRevokeResponse, PutResponse, TxnResponse,
};
use crate::proto::etcdserverpb::{AlarmType, CompactionRequest, TxnRequest};
use crate::proto::etcdserverpb::{
    AuthDisableResponse, AuthEnableResponse, AuthRoleAddResponse, AuthRoleDeleteResponse,
    AuthRoleGrantPermissionResponse, AuthRoleRevokePermissionResponse, AuthUserAddResponse,
    AuthUserChangePasswordResponse, AuthUserDeleteResponse, AuthUserGrantRoleResponse,
    AuthUserRevokeRoleResponse, AuthenticateResponse,
};
use crate::proto::internalpb::internal_raft_request::Request;
use crate::proto::internalpb::{InternalRaftRequest, MemberAttrSetResponse};
use crate::proto::raftpb::{ConfChange, ConfState};
use crate::runtime::Clock;

/// How long applied entries may stay in the backend's open transaction before a commit
/// makes them durable (etcd's backend batch interval). They are durable in the WAL
/// already; committing per Ready would cost a second fsync per batch of proposals.
pub const BACKEND_BATCH_INTERVAL: Duration = Duration::from_millis(100);

impl LogRequest for InternalRaftRequest {
    fn encode(&self) -> Vec<u8> {
        self.encode_to_vec()
    }

    /// An entry without a request is undecodable: [`Applier::apply`] relies on one.
    fn decode(payload: &[u8]) -> Option<Self> {
        <InternalRaftRequest as Message>::decode(payload)
            .ok()
            .filter(|r| r.request.is_some())
    }
}

/// The member's own request, proposed without a header (no caller to check at apply).
impl From<Request> for InternalRaftRequest {
    fn from(request: Request) -> Self {
        InternalRaftRequest {
            request: Some(request),
            header: None,
        }
    }
}

/// A response type that one kind of request produces: the proposer of a request of that
/// kind takes its response out of [`Applied`].
pub trait AppliedAs: Sized {
    fn from_applied(applied: Applied) -> Option<Self>;
}

/// Declares [`Applied`], one variant per kind of request, and each response type's way
/// out of it.
macro_rules! applied {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        /// What applying a request produced.
        #[derive(Debug)]
        pub enum Applied {
            $($variant($ty)),*
        }

        $(impl AppliedAs for $ty {
            fn from_applied(applied: Applied) -> Option<Self> {
                match applied {
                    Applied::$variant(r) => Some(r),
                    _ => None,
                }
            }
        })*
    };
}

applied!(
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    LeaseCheckpoint(LeaseCheckpointResponse),
    MemberAttrSet(MemberAttrSetResponse),
    Alarm(AlarmResponse),
    AuthEnable(AuthEnableResponse),
    AuthDisable(AuthDisableResponse),
    Authenticate(AuthenticateResponse),
    AuthUserAdd(AuthUserAddResponse),
    AuthUserDelete(AuthUserDeleteResponse),
    AuthUserChangePassword(AuthUserChangePasswordResponse),
    AuthUserGrantRole(AuthUserGrantRoleResponse),
    AuthUserRevokeRole(AuthUserRevokeRoleResponse),
    AuthRoleAdd(AuthRoleAddResponse),
    AuthRoleDelete(AuthRoleDeleteResponse),
    AuthRoleGrantPermission(AuthRoleGrantPermissionResponse),
    AuthRoleRevokePermission(AuthRoleRevokePermissionResponse),
);

/// The state machine of a member: keys, watchers, leases, auth and membership.
pub struct Applier {
    store: SharedStore,
    lessor: SharedLessor,
    auth: SharedAuth,
    clock: LeaseClock,
    last_commit: Instant,
    cluster: SharedCluster,
    compaction_hashes: CompactionHashes,
    /// Whether a compaction's removals from the backend are left to do.
    compacting: bool,
    /// The revision up to which the backend is compacted, for physical compactions to
    /// wait on.
    compacted: watch::Sender<i64>,
    /// Whether a CORRUPT alarm is raised: writes are refused while it is.
    corrupt: bool,
}

impl Applier {
    /// Applies membership changes to `cluster` (which the backend's tables seeded), and
    /// records the hash at each compaction in `compaction_hashes`.
    pub fn new(
        store: SharedStore,
        lessor: SharedLessor,
        auth: SharedAuth,
        clock: LeaseClock,
        cluster: SharedCluster,
        compaction_hashes: CompactionHashes,
    ) -> Result<Self, Fatal> {
        let corrupt = corrupt_alarm(&mut lock(&store))?;
        let compacted = watch::Sender::new(lock(&store).kv().compact_rev());
        Ok(Applier {
            store,
            lessor,
            auth,
            clock,
            last_commit: Clock.now(),
            cluster,
            compaction_hashes,
            compacting: false,
            compacted,
            corrupt,
        })
    }

    /// The revision up to which the backend is compacted, as it changes.
    pub fn compacted(&self) -> watch::Receiver<i64> {
        self.compacted.subscribe()
    }

    /// Commits the backend if the batch interval has passed.
    fn commit_if_due(&mut self) -> Result<(), Fatal> {
        let now = Clock.now();
        if now - self.last_commit < BACKEND_BATCH_INTERVAL {
            return Ok(());
        }
        let mut store = lock(&self.store);
        on_kv(&mut store, |kv| {
            if kv.consistent_index() > kv.committed_index() {
                kv.commit()?;
            }
            Ok(())
        })
        .map_err(|e| Fatal::new("committing", e))?;
        self.last_commit = now;
        Ok(())
    }
}

/// Whether a CORRUPT alarm is raised in `store`.
fn corrupt_alarm(store: &mut WatchableStore) -> Result<bool, Fatal> {
    match super::alarm::active(store, AlarmType::Corrupt) {
        Ok(alarms) => Ok(!alarms.is_empty()),
        Err(e) => Err(Fatal::new("reading the alarms", e)),
    }
}

/// The requests etcd's corrupt applier refuses: key writes, compaction and lease grants
/// and revokes. A read-only txn is served beside the log in etcd, so it is not refused.
fn refused_when_corrupt(request: &Request) -> bool {
    let read_only = |t: &TxnRequest| {
        use crate::proto::etcdserverpb::request_op::Request as Op;
        let ranges = |ops: &[crate::proto::etcdserverpb::RequestOp]| {
            ops.iter()
                .all(|op| matches!(op.request, Some(Op::RequestRange(_))))
        };
        ranges(&t.success) && ranges(&t.failure)
    };
    match request {
        Request::Txn(t) => !read_only(t),
        Request::Put(_)
        | Request::DeleteRange(_)
        | Request::Compaction(_)
        | Request::LeaseGrant(_)
        | Request::LeaseRevoke(_) => true,
        _ => false,
    }
}

/// Records the hash at the revision `r` compacts to, as it is before the compaction (etcd
/// 3.5.7 hashes as it compacts), for the compaction hash check. The scan reads a view of
/// the store as it is now, on a task of its own: it takes time that grows with the data,
/// which the member loop must not wait for.
fn record_compaction_hash(
    kv: &mut KvStore,
    r: &CompactionRequest,
    hashes: &CompactionHashes,
) -> mvcc::error::Result<()> {
    if r.revision <= kv.compact_rev() || r.revision > kv.rev() {
        return Ok(());
    }
    let read = kv.begin_hash_kv(r.revision)?;
    let (hashes, revision) = (hashes.clone(), r.revision);
    tokio::spawn(async move {
        match crate::runtime::blocking(move || read.finish()).await {
            Ok(h) => hashes.store(KeyValueHash::from(&h)),
            Err(e) => tracing::warn!(revision, "cannot hash the store at a compaction: {e}"),
        }
    });
    Ok(())
}

/// Whether an error fails only the request (answered to the client) or the member: after
/// a backend failure the store's memory and disk may disagree, and applying on would
/// diverge from the other members.
fn is_fatal(e: &Error) -> bool {
    matches!(
        e,
        Error::Mvcc(mvcc::Error::Backend(_))
            | Error::Lease(lease::Error::Backend(_))
            | Error::Auth(crate::auth::Error::Backend(_))
            | Error::Lease(lease::Error::Mvcc(mvcc::Error::Backend(_)))
    )
}

/// Runs one request; key writes go through the watchable store so watchers see them, and
/// their events reach the lessor so keys attach to and detach from leases.
fn run(
    store: &mut WatchableStore,
    lessor: &mut Lessor,
    auth: &SharedAuth,
    cluster: &SharedCluster,
    hashes: &CompactionHashes,
    request: Request,
    now: Duration,
) -> Result<Applied, Error> {
    if let Some(applied) = super::auth::apply(&mut lock(auth), store.backend(), &request, now) {
        return Ok(applied?);
    }
    Ok(match request {
        Request::Put(r) => {
            let (resp, events) = store.write(|kv| kv.put(&r, &*lessor))?;
            lessor.observe(&events);
            Applied::Put(resp)
        }
        Request::DeleteRange(r) => {
            let (resp, events) = store.write(|kv| kv.delete_range(&r))?;
            lessor.observe(&events);
            Applied::DeleteRange(resp)
        }
        Request::Txn(r) => {
            let (resp, events) = store.write(|kv| kv.txn(&r, &*lessor))?;
            lessor.observe(&events);
            Applied::Txn(resp)
        }
        Request::Compaction(r) => {
            record_compaction_hash(store.kv_mut(), &r, hashes)?;
            // The member loop removes the revisions in steps between Readies
            // (`Applier::background_step`); a physical compaction's caller waits for them
            // there, not in the log.
            let scheduled = CompactionRequest {
                physical: false,
                ..r
            };
            Applied::Compaction(on_kv(store, |kv| kv.compact(&scheduled))?)
        }
        Request::LeaseGrant(r) => Applied::LeaseGrant(lessor.grant(store, &r, now)?),
        Request::LeaseRevoke(r) => Applied::LeaseRevoke(lessor.revoke(store, r.id)?),
        Request::LeaseCheckpoint(r) => {
            lessor.apply_checkpoint(store, &r)?;
            Applied::LeaseCheckpoint(LeaseCheckpointResponse { header: None })
        }
        Request::MemberAttrSet(r) => {
            let mut cluster = lock(cluster);
            cluster.set_attributes(store.backend(), r.member_id, r.name, r.client_urls)?;
            Applied::MemberAttrSet(MemberAttrSetResponse {})
        }
        Request::Alarm(r) => Applied::Alarm(super::alarm::apply(store, &r)?),
        Request::AuthEnable(_)
        | Request::AuthDisable(_)
        | Request::Authenticate(_)
        | Request::AuthUserAdd(_)
        | Request::AuthUserDelete(_)
        | Request::AuthUserChangePassword(_)
        | Request::AuthUserGrantRole(_)
        | Request::AuthUserRevokeRole(_)
        | Request::AuthRoleAdd(_)
        | Request::AuthRoleDelete(_)
        | Request::AuthRoleGrantPermission(_)
        | Request::AuthRoleRevokePermission(_) => unreachable!("auth requests apply above"),
    })
}

/// Runs `f` on the KV store for its effect on the backend, outside any key write.
fn on_kv<R>(
    store: &mut WatchableStore,
    f: impl FnOnce(&mut KvStore) -> mvcc::error::Result<R>,
) -> mvcc::error::Result<R> {
    Ok(store.write(|kv| Ok((f(kv)?, Vec::new())))?.0)
}

impl StateMachine for Applier {
    type Request = InternalRaftRequest;
    type Response = Result<Applied, Error>;
    type Refusal = MembershipError;

    fn apply(
        &mut self,
        index: u64,
        entry: InternalRaftRequest,
    ) -> Result<Result<Applied, Error>, Fatal> {
        let request = entry
            .request
            .expect("decode keeps only entries with a request");
        let mut store = lock(&self.store);
        let mut lessor = lock(&self.lessor);
        on_kv(&mut store, |kv| kv.begin_entry(index))
            .map_err(|e| Fatal::new(format!("starting entry {index}"), e))?;
        let before = store.kv().rev();
        let now = self.clock.now();
        let checked = match &entry.header {
            Some(header) => {
                super::auth::check_at_apply(&lock(&self.auth), &lessor, header, &request)
            }
            None => Ok(()),
        };
        let alarm = matches!(request, Request::Alarm(_));
        let applied = match checked {
            Ok(()) if self.corrupt && refused_when_corrupt(&request) => Err(Error::Corrupt),
            Ok(()) => run(
                &mut store,
                &mut lessor,
                &self.auth,
                &self.cluster,
                &self.compaction_hashes,
                request,
                now,
            ),
            Err(e) => Err(e.into()),
        };
        if alarm {
            self.corrupt = corrupt_alarm(&mut store)?;
        }
        self.compacting |= store.kv().compaction_pending();
        let applied = match applied {
            Err(e) if is_fatal(&e) => return Err(Fatal::new(format!("applying entry {index}"), e)),
            applied => applied,
        };
        let after = store.kv().rev();
        assert!(
            after == before || after == before + 1,
            "entry {index} moved the revision from {before} to {after}: one entry, at most one revision"
        );
        Ok(applied)
    }

    fn end_batch(&mut self) -> Result<(), Fatal> {
        self.commit_if_due()
    }

    fn on_tick(&mut self) -> Result<(), Fatal> {
        self.commit_if_due()
    }

    fn has_background_work(&self) -> bool {
        self.compacting
    }

    /// One batch of the pending compaction; publishes the compaction revision once the
    /// backend has lost every revision below it.
    fn background_step(&mut self) -> Result<(), Fatal> {
        let mut store = lock(&self.store);
        let more = on_kv(&mut store, |kv| kv.compaction_step())
            .map_err(|e| Fatal::new("compacting", e))?;
        if !more {
            self.compacting = false;
            self.compacted.send_replace(store.kv().compact_rev());
        }
        Ok(())
    }

    fn applied_index(&self) -> u64 {
        lock(&self.store).kv().consistent_index()
    }

    fn sync(&mut self) -> Result<(), Fatal> {
        let mut store = lock(&self.store);
        on_kv(&mut store, |kv| kv.commit()).map_err(|e| Fatal::new("committing", e))?;
        self.last_commit = Clock.now();
        Ok(())
    }

    fn snapshot_source(&mut self) -> Result<Option<crate::backend::SnapshotSource>, Fatal> {
        let mut store = lock(&self.store);
        match store.backend().snapshot_source() {
            Ok(source) => Ok(Some(source)),
            Err(e) => Err(Fatal::new("reading the snapshot to send", e)),
        }
    }

    fn restore(
        &mut self,
        disk: &dyn crate::runtime::Disk,
        db: &std::path::Path,
    ) -> Result<(), Fatal> {
        let _long = LongHold::begin();
        let mut store = lock(&self.store);
        let mut lessor = lock(&self.lessor);
        super::snapshot::restore_store(disk, db, &mut store, &mut lessor)?;
        let mut auth = lock(&self.auth);
        let tokens_ttl = auth.tokens.ttl();
        let restored = crate::auth::AuthStore::open(store.backend(), tokens_ttl)
            .map_err(|e| Fatal::new("reading the restored auth store", e))?;
        // Tokens are memory only; those issued before the snapshot stay good until the
        // auth revision they carry is passed.
        let tokens =
            std::mem::replace(&mut auth.tokens, crate::auth::SimpleTokens::new(tokens_ttl));
        *auth = restored;
        auth.tokens = tokens;
        let cluster = RaftCluster::load(store.backend())
            .map_err(|e| Fatal::new("reading the restored membership", e))?;
        *lock(&self.cluster) = cluster;
        self.corrupt = corrupt_alarm(&mut store)?;
        Ok(())
    }

    fn peer_urls(&self) -> Vec<(u64, String)> {
        let cluster = lock(&self.cluster);
        let urls = cluster.members().into_iter();
        urls.filter_map(|m| Some((m.id, m.peer_ur_ls.into_iter().next()?)))
            .collect()
    }

    fn apply_conf_change(
        &mut self,
        index: u64,
        cc: &ConfChange,
    ) -> Result<Result<(), MembershipError>, Fatal> {
        let mut store = lock(&self.store);
        on_kv(&mut store, |kv| kv.begin_entry(index))
            .map_err(|e| Fatal::new(format!("starting configuration change {index}"), e))?;
        let backend = store.backend();
        lock(&self.cluster)
            .apply_conf_change(backend, cc)
            .map_err(|e| Fatal::new(format!("applying configuration change {index}"), e))
    }

    fn save_conf_state(&mut self, cs: &ConfState) -> Result<(), Fatal> {
        membership::save_conf_state(lock(&self.store).backend(), cs)
            .map_err(|e| Fatal::new("saving Raft's configuration", e))
    }

    fn conf_state(&self) -> Result<Option<ConfState>, Fatal> {
        let mut store = lock(&self.store);
        let backend = store.backend();
        membership::load_conf_state(backend).map_err(|e| {
            let what = format!(
                "reading Raft's configuration from {}",
                backend.path().display()
            );
            Fatal::new(what, e)
        })
    }
}
