//! The Maintenance service: member status, hashes, alarms, defragmentation, snapshots
//! and leader moves. Downgrades are not served yet and answer Unimplemented.

use tonic::{Request, Response, Status};

use super::auth::admin;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use crate::server::Server;

#[derive(Clone)]
pub struct MaintenanceService(pub Server);

type SnapshotStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    /// Anyone may list alarms; raising or clearing one is root's.
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        if request.get_ref().action != AlarmAction::Get as i32 {
            admin(&self.0, &request)?;
        }
        Ok(Response::new(self.0.alarm(request.into_inner()).await?))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(self.0.maintenance_status()?))
    }

    async fn defragment(
        &self,
        request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        admin(&self.0, &request)?;
        self.0.defragment()?;
        // etcd's answer carries no header (`&pb.DefragmentResponse{}`).
        Ok(Response::new(DefragmentResponse { header: None }))
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        admin(&self.0, &request)?;
        Ok(Response::new(self.0.hash()?))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        admin(&self.0, &request)?;
        Ok(Response::new(
            self.0.hash_kv(request.into_inner().revision)?,
        ))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        admin(&self.0, &request)?;
        use futures::StreamExt;
        let stream = self.0.snapshot()?.map(|r| r.map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        admin(&self.0, &request)?;
        let header = self.0.move_leader(request.into_inner().target_id).await?;
        Ok(Response::new(MoveLeaderResponse { header }))
    }

    async fn downgrade(
        &self,
        _: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(Status::unimplemented("detcd: Downgrade is not served yet"))
    }
}
