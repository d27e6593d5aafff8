//! The Maintenance service: member status, hashes and leader moves. Alarms,
//! defragmentation, snapshots and downgrades are not served yet and answer Unimplemented.

use std::time::Duration;

use tonic::{Request, Response, Status};

use super::context::Context;
use super::errors::status;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use crate::server::kv_apply::lock;

/// How long a leader move may take before the caller is told so.
const MOVE_LEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// The etcd API version detcd reports (etcdctl shows it in `endpoint status`).
pub const SERVER_VERSION: &str = "3.5.0";

#[derive(Clone)]
pub struct MaintenanceService(pub Context);

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!("detcd: {what} is not served yet"))
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, _: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        Err(not_yet("Alarm"))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let st = self.0.member.status();
        let (revision, db_size) = {
            let mut store = lock(&self.0.store);
            let size = store.backend().size().map_err(|e| status(e.to_string()))?;
            (store.kv().rev(), size as i64)
        };
        Ok(Response::new(StatusResponse {
            header: self.0.header(Some(revision)),
            version: SERVER_VERSION.to_string(),
            db_size,
            leader: st.leader,
            raft_index: st.commit,
            raft_term: st.term,
            raft_applied_index: st.applied,
            db_size_in_use: db_size,
            ..Default::default()
        }))
    }

    async fn defragment(
        &self,
        _: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        Err(not_yet("Defragment"))
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

    type SnapshotStream = futures::stream::Empty<Result<SnapshotResponse, Status>>;

    async fn snapshot(
        &self,
        _: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(not_yet("Snapshot"))
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
            Ok(false) => Err(crate::server::member::ProposeError::Stopped.into()),
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
