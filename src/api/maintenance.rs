//! The Maintenance service: member status and hashes. Alarms, defragmentation, snapshots,
//! leader moves and downgrades are not served yet and answer Unimplemented.

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
use crate::server::SERVER_VERSION;

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

    async fn move_leader(
        &self,
        _: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        Err(not_yet("MoveLeader"))
    }

    async fn downgrade(
        &self,
        _: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(not_yet("Downgrade"))
    }
}
