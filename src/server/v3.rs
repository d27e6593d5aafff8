//! The v3 API's calls as a member serves them (etcd's `v3_server.go`): writes are proposed
//! through the log and answered with what applying them produced; reads are served from
//! the local store, linearizable ones after a ReadIndex round. Every response leaves here
//! with its header complete. The gRPC and HTTP adapters in `api` call these and nothing
//! below them.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_chacha::ChaCha8Rng;

use super::apply::{AppliedAs, Applier};
use super::corrupt::CompactionHashes;
use super::error::{Error, Result};
use super::lease_forward::{ForwardError, LeaseForwarder};
use super::member::{MemberHandle, MemberStatus};
use super::membership::SharedCluster;
use super::metrics::ServerMetrics;
use super::snapshot_stream::SnapshotDir;
use super::store::{lock, LeaseClock, LongHold, SharedAuth, SharedLessor, SharedStore};
use super::transport::Transport;
use super::{alarm, quota, SERVER_VERSION};
use crate::auth::{AuthInfo, JwtTokens};
use crate::proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, CompactionRequest, CompactionResponse,
    DeleteRangeRequest, DeleteRangeResponse, HashKvResponse, HashResponse, LeaseGrantRequest,
    LeaseGrantResponse, LeaseKeepAliveResponse, LeaseLeasesResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, ResponseHeader, StatusResponse, TxnRequest, TxnResponse,
};
use crate::proto::etcdserverpb::{
    AuthDisableResponse, AuthEnableResponse, AuthRoleAddResponse, AuthRoleDeleteResponse,
    AuthRoleGrantPermissionResponse, AuthRoleRevokePermissionResponse, AuthUserAddResponse,
    AuthUserChangePasswordResponse, AuthUserDeleteResponse, AuthUserGrantRoleResponse,
    AuthUserRevokeRoleResponse, AuthenticateResponse,
};
use crate::proto::internalpb::internal_raft_request::Request;
use crate::proto::internalpb::{InternalRaftRequest, RequestHeader};
use crate::runtime::{CrashPoint, Disk};
use crate::{lease, mvcc};

/// How long a leader move may take before the caller is told so.
const MOVE_LEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// One member's server: what every service calls. Cheap to clone.
#[derive(Clone)]
pub struct Server {
    pub(super) member: MemberHandle<Applier>,
    pub(super) store: SharedStore,
    pub(super) lessor: SharedLessor,
    pub(super) auth: SharedAuth,
    /// Salts for password hashes and simple tokens, seeded once per member.
    pub(super) rng: Arc<Mutex<ChaCha8Rng>>,
    pub(super) bcrypt_cost: u32,
    /// `--auth-token jwt`: Authenticate signs tokens and every call verifies them.
    pub(super) jwt: Option<Arc<JwtTokens>>,
    pub(super) cluster: SharedCluster,
    pub(super) clock: LeaseClock,
    pub(super) leases: LeaseForwarder,
    pub(super) transport: Transport,
    pub(super) snapshots: SnapshotDir,
    /// Hashes recorded at compactions, which HashKV answers with for their revisions.
    pub(super) compaction_hashes: CompactionHashes,
    /// The revision up to which this member's backend is compacted.
    pub(super) compacted: tokio::sync::watch::Receiver<i64>,
    /// `--strict-reconfig-check`: membership changes that could cost the cluster its
    /// quorum are refused.
    pub(super) strict_reconfig_check: bool,
    /// What a write may be: it is checked against these before it is proposed.
    pub(super) limits: mvcc::RequestLimits,
    /// The backend's size at its last commit and `--quota-backend-bytes`, which every write
    /// is checked against before it is proposed.
    pub(super) backend_size: Arc<AtomicU64>,
    pub(super) quota_bytes: u64,
    /// The member's disk, for the crash points outside the write path.
    pub(super) disk: Arc<dyn Disk>,
    /// The initial cluster token: new member IDs derive from it, as etcd's do.
    pub(super) token: String,
    pub(super) cluster_id: u64,
    pub(super) member_id: u64,
}

impl Server {
    pub fn member_id(&self) -> u64 {
        self.member_id
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// Where this member's Raft stands.
    pub fn status(&self) -> MemberStatus {
        self.member.status()
    }

    pub fn metrics(&self) -> &ServerMetrics {
        self.member.metrics()
    }

    /// The leader's lease calls, for the peer service that answers forwarded ones.
    pub fn leases(&self) -> &LeaseForwarder {
        &self.leases
    }

    /// The MVCC store with its watchers (watch streams read it directly).
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// A response header at `revision`, or at the store's current revision if `None`.
    pub fn header(&self, revision: Option<i64>) -> Option<ResponseHeader> {
        let revision = revision.unwrap_or_else(|| lock(&self.store).kv().rev());
        Some(ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.member.status().term,
        })
    }

    /// Completes a header the state machine filled with its revision.
    fn complete(&self, header: Option<ResponseHeader>) -> Option<ResponseHeader> {
        self.header(header.map(|h| h.revision))
    }

    /// Proposes `request`, after the quota let it in, and returns what applying it
    /// produced.
    pub(super) async fn propose<R: AppliedAs>(&self, request: Request) -> Result<R> {
        self.propose_as(None, request).await
    }

    /// [`Server::propose`] on behalf of `caller`, whose permissions the apply checks again
    /// (see [`super::auth::check_at_apply`]).
    async fn propose_as<R: AppliedAs>(
        &self,
        caller: Option<&AuthInfo>,
        request: Request,
    ) -> Result<R> {
        quota::check(self, &request).await?;
        self.check_request(&request)?;
        let entry = InternalRaftRequest {
            request: Some(request),
            header: caller.map(|c| RequestHeader {
                username: c.user.clone(),
                auth_revision: c.revision,
            }),
        };
        let applied = self.member.propose(entry).await??;
        Ok(R::from_applied(applied).expect("a request applies to the response of its own kind"))
    }

    /// Marks that this member reached `point` outside its write path; an error means its
    /// (simulated) power failed there, and the caller must stop what it was doing.
    pub fn crash_point(&self, point: CrashPoint) -> std::io::Result<()> {
        self.disk.crash_point(point)
    }

    /// `--max-request-bytes`: also the size a watch response is kept under when the
    /// watcher asked for fragments.
    pub fn max_request_bytes(&self) -> usize {
        self.limits.max_request_bytes
    }

    /// etcd's request checks, made before proposing so that a bad request never reaches
    /// the log; the apply makes them again on what the log holds.
    fn check_request(&self, request: &Request) -> Result<()> {
        let limits = &self.limits;
        match request {
            Request::Put(r) => mvcc::check_put_request(r, limits)?,
            Request::DeleteRange(r) => mvcc::check_delete_request(r, limits)?,
            Request::Txn(r) => mvcc::check_txn_request(r, limits)?,
            _ => {}
        }
        Ok(())
    }

    /// Proposes a write (for `caller`, if any) and completes the header of its response.
    pub(super) async fn write<R: AppliedAs + Headed>(
        &self,
        caller: Option<&AuthInfo>,
        request: Request,
    ) -> Result<R> {
        let mut resp: R = self.propose_as(caller, request).await?;
        let header = resp.header();
        *header = self.complete(header.take());
        Ok(resp)
    }

    /// Waits until this member has applied everything committed when called.
    pub async fn read_index(&self) -> Result<()> {
        Ok(self.member.read_index().await?)
    }

    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        if !req.serializable {
            self.read_index().await?;
        }
        // The index under the store's lock; committed values after it is released, so
        // that a large range and the applies do not wait for each other.
        let read = lock(&self.store).kv().begin_range(&req)?;
        let mut resp = read.finish()?;
        resp.header = self.complete(resp.header);
        Ok(resp)
    }

    /// A client's put; `caller` is who asked (`None` for the member's own writes).
    pub async fn put(&self, caller: Option<&AuthInfo>, req: PutRequest) -> Result<PutResponse> {
        self.write(caller, Request::Put(req)).await
    }

    pub async fn delete_range(
        &self,
        caller: Option<&AuthInfo>,
        req: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse> {
        self.write(caller, Request::DeleteRange(req)).await
    }

    pub async fn txn(&self, caller: Option<&AuthInfo>, req: TxnRequest) -> Result<TxnResponse> {
        self.write(caller, Request::Txn(req)).await
    }

    /// Compacts the history up to `req.revision`. With `physical`, answers once this
    /// member's backend has lost the compacted revisions, as etcd does; the removal runs
    /// in steps between applies, so the wait grows with the data but holds nothing up.
    pub async fn compact(&self, req: CompactionRequest) -> Result<CompactionResponse> {
        let (physical, revision) = (req.physical, req.revision);
        let resp = self.write(None, Request::Compaction(req)).await?;
        if physical {
            self.compacted
                .clone()
                .wait_for(|&compacted| compacted >= revision)
                .await
                .map_err(|_| super::member::ProposeError::Stopped)?;
        }
        Ok(resp)
    }

    pub async fn lease_grant(&self, req: LeaseGrantRequest) -> Result<LeaseGrantResponse> {
        self.write(None, Request::LeaseGrant(req)).await
    }

    pub async fn lease_revoke(
        &self,
        caller: Option<&AuthInfo>,
        req: LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse> {
        self.write(caller, Request::LeaseRevoke(req)).await
    }

    /// One keepalive, renewed by the leader; an unknown or expired lease gets TTL 0, as
    /// etcd answers.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<LeaseKeepAliveResponse> {
        let mut resp = match self.leases.keep_alive(id).await {
            Ok(resp) => resp,
            Err(ForwardError::Lease(lease::Error::NotFound)) => LeaseKeepAliveResponse {
                header: None,
                id,
                ttl: 0,
            },
            Err(e) => return Err(e.into()),
        };
        resp.header = self.header(None);
        Ok(resp)
    }

    /// The leader's view of a lease.
    pub async fn lease_time_to_live(
        &self,
        req: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse> {
        let mut resp = self.leases.time_to_live(req).await?;
        resp.header = self.header(None);
        Ok(resp)
    }

    pub fn lease_leases(&self) -> LeaseLeasesResponse {
        let mut resp = lock(&self.lessor).leases();
        resp.header = self.header(None);
        resp
    }

    /// Every action goes through the log, as in etcd, so a GET sees what was applied.
    pub async fn alarm(&self, req: AlarmRequest) -> Result<AlarmResponse> {
        self.write(None, Request::Alarm(req)).await
    }

    /// The alarms raised in the cluster, as applied on this member.
    pub fn active_alarms(&self) -> Result<Vec<AlarmMember>> {
        Ok(alarm::active(&mut lock(&self.store), AlarmType::None)?)
    }

    /// This member's status, as etcd's Maintenance Status reports it: a missing leader,
    /// then each alarm in its text form, as errors.
    pub fn maintenance_status(&self) -> Result<StatusResponse> {
        let st = self.member.status();
        let (revision, db_size, quota, alarms) = {
            let mut store = lock(&self.store);
            let size = store.backend().size();
            let alarms = alarm::active(&mut store, AlarmType::None)?;
            let quota = store.kv().config().quota_bytes as i64;
            (store.kv().rev(), size as i64, quota, alarms)
        };
        let no_leader = (st.leader == 0).then(|| super::member::ProposeError::NoLeader.to_string());
        let errors = no_leader
            .into_iter()
            .chain(alarms.iter().map(alarm_text))
            .collect();
        Ok(StatusResponse {
            header: self.header(Some(revision)),
            version: SERVER_VERSION.to_string(),
            db_size,
            leader: st.leader,
            raft_index: st.commit,
            raft_term: st.term,
            raft_applied_index: st.applied,
            db_size_in_use: db_size,
            errors,
            db_size_quota: quota,
            ..Default::default()
        })
    }

    /// Commits, then replaces this member's backend file by a defragmented copy (members
    /// defragment one by one, as in etcd: the call is not replicated). Returns the revision
    /// it was done at.
    /// The store stays locked throughout, as etcd's defragment blocks reads and writes, but
    /// the member keeps answering what needs no store ([`LongHold`]).
    pub fn defragment(&self) -> Result<Option<ResponseHeader>> {
        let _long = LongHold::begin();
        let revision = crate::runtime::wait_in_place(|| -> Result<i64> {
            let mut store = lock(&self.store);
            store.kv_mut().commit()?;
            store
                .backend()
                .defragment(self.disk.as_ref())
                .map_err(Error::Defragment)?;
            Ok(store.kv().rev())
        })?;
        Ok(self.header(Some(revision)))
    }

    /// Hash of the whole backend; the scan reads a view of the last commit, so applies go
    /// on while it runs.
    pub fn hash(&self) -> Result<HashResponse> {
        let (view, revision) = {
            let mut store = lock(&self.store);
            (store.kv_mut().committed_view()?, store.kv().rev())
        };
        Ok(HashResponse {
            header: self.header(Some(revision)),
            hash: view.hash()?,
        })
    }

    /// HashKV at `revision` (0: the current one). A compacted revision is refused, as
    /// etcd 3.5.1 refuses it. The scan runs without the store's lock.
    pub fn hash_kv(&self, revision: i64) -> Result<HashKvResponse> {
        let read = lock(&self.store).kv_mut().begin_hash_kv(revision)?;
        let mut resp = read.finish()?;
        resp.header = self.complete(resp.header);
        Ok(resp)
    }

    /// HashKV as a peer's corruption check asks for it (etcd 3.5.7's): a hash recorded
    /// when the compaction to `revision` was applied answers for it.
    pub fn peer_hash_kv(&self, revision: i64) -> Result<HashKvResponse> {
        let Some(h) = self.compaction_hashes.at(revision).filter(|_| revision > 0) else {
            return self.hash_kv(revision);
        };
        Ok(HashKvResponse {
            header: self.header(None),
            hash: h.hash,
            compact_revision: h.compact_revision,
            hash_revision: h.revision,
        })
    }

    /// A consistent copy of the backend, as etcd's Snapshot call streams it.
    pub fn snapshot(&self) -> Result<super::snapshot_stream::SnapshotStream> {
        self.snapshots.stream(&self.store)
    }

    /// etcd's MoveLeader: only the leader moves leadership, only to a voter, and answers
    /// once it sees the transferee lead.
    pub async fn move_leader(&self, target: u64) -> Result<Option<ResponseHeader>> {
        if !self.member.status().is_leader {
            return Err(super::member::ProposeError::NotLeader.into());
        }
        let voter = lock(&self.cluster).member(target).map(|m| !m.is_learner);
        if voter != Some(true) {
            return Err(Error::BadLeaderTransferee);
        }
        self.member.transfer_leader(target)?;
        let mut changes = self.member.status_changes();
        let moved = tokio::time::timeout(MOVE_LEADER_TIMEOUT, async {
            while changes.borrow_and_update().leader != target {
                if changes.changed().await.is_err() {
                    return false;
                }
            }
            true
        });
        match moved.await {
            Ok(true) => Ok(self.header(None)),
            Ok(false) => Err(super::member::ProposeError::Stopped.into()),
            Err(_) => Err(Error::LeaderTransferTimeout),
        }
    }

    /// etcd's `checkV3Health`: why this member is unhealthy, if it is. An alarm not in
    /// `excluded` (by name), no leader (unless `serializable`, which asks about this member
    /// alone), or a failing one-key range (linearizable unless serializable).
    pub async fn health(&self, excluded: &[&str], serializable: bool) -> Option<String> {
        // An unreadable alarm table counts as an unknown alarm rather than as healthy.
        let alarms = self
            .active_alarms()
            .map(|alarms| alarms.iter().map(|m| alarm_type(m.alarm)).collect())
            .unwrap_or_else(|_| vec![AlarmType::None]);
        if let Some(alarm) = alarms
            .into_iter()
            .find(|a| !excluded.contains(&a.as_str_name()))
        {
            return Some(
                match alarm {
                    AlarmType::Nospace => "ALARM NOSPACE",
                    AlarmType::Corrupt => "ALARM CORRUPT",
                    AlarmType::None => "ALARM UNKNOWN",
                }
                .to_string(),
            );
        }
        if !serializable && self.member.status().leader == 0 {
            return Some("RAFT NO LEADER".to_string());
        }
        let probe = RangeRequest {
            key: b"health".to_vec(),
            keys_only: true,
            limit: 1,
            serializable,
            ..RangeRequest::default()
        };
        match self.range(probe).await {
            Ok(_) => None,
            Err(e) => Some(format!("RANGE ERROR:{e}")),
        }
    }

    /// Prometheus's text format; the gauges etcd computes on scrape are refreshed first.
    pub fn metrics_text(&self) -> String {
        let metrics = self.member.metrics();
        {
            let mut store = lock(&self.store);
            let (synced, unsynced, victims) = store.watcher_counts();
            metrics.watchers.set((synced + unsynced + victims) as i64);
            metrics.db_total_size.set(store.backend().size() as i64);
        }
        metrics.encode()
    }
}

/// A response with etcd's header, which leaves the server complete.
pub(super) trait Headed {
    fn header(&mut self) -> &mut Option<ResponseHeader>;
}

macro_rules! headed {
    ($($ty:ty),*) => {$(
        impl Headed for $ty {
            fn header(&mut self) -> &mut Option<ResponseHeader> {
                &mut self.header
            }
        }
    )*};
}

headed!(
    PutResponse,
    DeleteRangeResponse,
    TxnResponse,
    CompactionResponse,
    LeaseGrantResponse,
    LeaseRevokeResponse,
    AlarmResponse,
    AuthEnableResponse,
    AuthDisableResponse,
    AuthenticateResponse,
    AuthUserAddResponse,
    AuthUserDeleteResponse,
    AuthUserChangePasswordResponse,
    AuthUserGrantRoleResponse,
    AuthUserRevokeRoleResponse,
    AuthRoleAddResponse,
    AuthRoleDeleteResponse,
    AuthRoleGrantPermissionResponse,
    AuthRoleRevokePermissionResponse
);

fn alarm_type(alarm: i32) -> AlarmType {
    AlarmType::try_from(alarm).unwrap_or(AlarmType::None)
}

/// An alarm as etcd prints it in Status errors (its protobuf text form).
fn alarm_text(m: &AlarmMember) -> String {
    format!(
        "memberID:{} alarm:{} ",
        m.member_id,
        alarm_type(m.alarm).as_str_name()
    )
}

impl From<ForwardError> for Error {
    fn from(e: ForwardError) -> Self {
        match e {
            ForwardError::Lease(e) => Error::Lease(e),
            ForwardError::Member(e) => Error::Propose(e),
        }
    }
}
