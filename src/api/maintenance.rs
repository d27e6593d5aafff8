//! The Maintenance service: member status, hashes, alarms, defragmentation, snapshots
//! and leader moves. Downgrades are not served yet and answer Unimplemented.

use std::time::Duration;

use tonic::{Request, Response, Status};

use super::context::{propose_rpc, Context};
use super::errors::status;
use super::snapshot::SnapshotDir;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse,
    DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse,
};
use crate::server::alarm;
use crate::server::kv_apply::lock;
use crate::server::member::ProposeError;
use crate::server::SERVER_VERSION;

/// How long a leader move may take before the caller is told so.
const MOVE_LEADER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct MaintenanceService(pub Context, pub SnapshotDir);

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!("detcd: {what} is not served yet"))
}

/// An alarm as etcd prints it in Status errors (its protobuf text form).
fn alarm_text(m: &AlarmMember) -> String {
    let alarm = AlarmType::try_from(m.alarm).unwrap_or(AlarmType::None);
    format!("memberID:{} alarm:{} ", m.member_id, alarm.as_str_name())
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    /// Every action goes through the log, as in etcd, so a GET sees what was applied.
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        propose_rpc!(self.0, Alarm, request)
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let st = self.0.member.status();
        let (revision, db_size, quota, alarms) = {
            let mut store = lock(&self.0.store);
            let size = store.backend().size().map_err(|e| status(e.to_string()))?;
            let alarms =
                alarm::active(&mut store, AlarmType::None).map_err(|e| status(e.to_string()))?;
            let quota = store.kv().config().quota_bytes as i64;
            (store.kv().rev(), size as i64, quota, alarms)
        };
        // etcd reports a missing leader, then each alarm in its text form.
        let no_leader = (st.leader == 0).then(|| ProposeError::NoLeader.to_string());
        let errors = no_leader
            .into_iter()
            .chain(alarms.iter().map(alarm_text))
            .collect();
        Ok(Response::new(StatusResponse {
            header: self.0.header(Some(revision)),
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
        }))
    }

    /// Commits, then compacts this member's backend file (members defragment one by one,
    /// as in etcd: the call is not replicated).
    async fn defragment(
        &self,
        _: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        let revision = {
            let mut store = lock(&self.0.store);
            let defragmented = store
                .kv_mut()
                .commit()
                .and_then(|()| Ok(store.backend().defragment()?));
            defragmented.map_err(|e| status(format!("etcdserver: defragment: {e}")))?;
            store.kv().rev()
        };
        Ok(Response::new(DefragmentResponse {
            header: self.0.header(Some(revision)),
        }))
    }

    async fn hash(&self, _: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let store = lock(&self.0.store);
        let hash = store.kv().hash().map_err(|e| status(e.to_string()))?;
        Ok(Response::new(HashResponse {
            header: self.0.header(Some(store.kv().rev())),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let store = lock(&self.0.store);
        let mut resp = store
            .kv()
            .hash_kv(request.into_inner().revision)
            .map_err(|e| status(e.to_string()))?;
        resp.header = self.0.header(Some(store.kv().rev()));
        Ok(Response::new(resp))
    }

    type SnapshotStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

    async fn snapshot(
        &self,
        _: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Ok(Response::new(Box::pin(self.1.stream(&self.0)?)))
    }

    /// etcd's MoveLeader: only the leader moves leadership, only to a voter, and answers
    /// once it sees the transferee lead.
    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = request.into_inner().target_id;
        let ctx = &self.0;
        if !ctx.member.status().is_leader {
            return Err(status("etcdserver: not leader".into()));
        }
        let voter = lock(&ctx.cluster).member(target).map(|m| !m.is_learner);
        if voter != Some(true) {
            return Err(status("etcdserver: bad leader transferee".into()));
        }
        ctx.member.transfer_leader(target)?;
        let mut changes = ctx.member.status_changes();
        let moved = tokio::time::timeout(MOVE_LEADER_TIMEOUT, async {
            while changes.borrow_and_update().leader != target {
                if changes.changed().await.is_err() {
                    return false;
                }
            }
            true
        });
        match moved.await {
            Ok(true) => Ok(Response::new(MoveLeaderResponse {
                header: ctx.header(None),
            })),
            Ok(false) => Err(ProposeError::Stopped.into()),
            Err(_) => Err(status(
                "etcdserver: request timed out, leader transfer took too long".into(),
            )),
        }
    }

    async fn downgrade(
        &self,
        _: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(not_yet("Downgrade"))
    }
}
