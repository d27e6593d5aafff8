//! etcd's JSON gateway (grpc-gateway v1 in etcd 3.5): `POST /v3/<service>/<call>` with the
//! request message as JSON, answered with the response message as JSON, in protobuf's JSON
//! mapping as etcd configures it: proto field names (`cluster_id`, `raft_term`), bytes in
//! base64, 64-bit integers as strings, default values left out.
//!
//! The JSON is mapped onto the same prost messages the gRPC services take, through the
//! descriptors `build.rs` compiled, and each call goes to the gRPC service's own method,
//! so both paths answer alike. Streaming calls (watch, lease keep-alive, snapshot, election
//! observe) are not served here, nor yet the Auth service.

use std::future::Future;
use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, DynamicMessage, MethodDescriptor, SerializeOptions};
use serde::Serialize;
use tonic::{Code, Status};

use super::cluster::ClusterService;
use super::election::ElectionService;
use super::http::response;
use super::kv::KvService;
use super::lease::LeaseService;
use super::lock::LockService;
use super::maintenance::MaintenanceService;
use crate::net::{HttpRequest, HttpResponse};
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::v3electionpb::election_server::Election;
use crate::proto::v3lockpb::lock_server::Lock;

const JSON: &str = "application/json";

/// The descriptors of every message, as compiled by `build.rs`.
static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(
        include_bytes!(concat!(env!("OUT_DIR"), "/detcd_descriptor.bin")).as_slice(),
    )
    .expect("build.rs wrote a valid descriptor set")
});

pub fn serves(path: &str) -> bool {
    path.starts_with("/v3/")
}

/// grpc-gateway's error body: the status message twice, and the gRPC code.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    code: i32,
    message: &'a str,
}

/// grpc-gateway's HTTP status for a gRPC code.
fn http_status(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::Cancelled => 408,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::DeadlineExceeded => 504,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::PermissionDenied => 403,
        Code::Unauthenticated => 401,
        Code::ResourceExhausted => 429,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
    }
}

fn error(status: &Status) -> HttpResponse {
    let body = ErrorBody {
        error: status.message(),
        code: status.code() as i32,
        message: status.message(),
    };
    let json = serde_json::to_vec(&body).expect("a struct of strings serializes");
    response(http_status(status.code()), JSON, json)
}

/// The method `name` of `service`, named in full (`v3lockpb.Lock`) or, in etcdserverpb, by
/// itself (`KV`).
fn method(service: &str, name: &str) -> MethodDescriptor {
    let full = match service.contains('.') {
        true => service.to_string(),
        false => format!("etcdserverpb.{service}"),
    };
    POOL.get_service_by_name(&full)
        .and_then(|s| s.methods().find(|m| m.name() == name))
        .unwrap_or_else(|| panic!("{full} has no method {name}"))
}

/// The request message of `method` from JSON; an empty body is the empty message.
fn decode<Req: prost::Message + Default>(
    method: &MethodDescriptor,
    body: &[u8],
) -> Result<Req, Status> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Req::default());
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let message = DynamicMessage::deserialize(method.input(), &mut de)
        .and_then(|m| de.end().map(|()| m))
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    message
        .transcode_to()
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

fn encode<Resp: prost::Message>(method: &MethodDescriptor, resp: &Resp) -> HttpResponse {
    let mut message = DynamicMessage::new(method.output());
    if let Err(e) = message.transcode_from(resp) {
        return error(&Status::internal(e.to_string()));
    }
    let options = SerializeOptions::new().use_proto_field_name(true);
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::new(&mut out);
    match message.serialize_with_options(&mut ser, &options) {
        Ok(()) => response(200, JSON, out),
        Err(e) => error(&Status::internal(e.to_string())),
    }
}

/// One unary call: JSON to the request message, the service method, the response to JSON.
async fn unary<Req, Resp, Fut>(
    service: &str,
    name: &str,
    body: &[u8],
    call: impl FnOnce(tonic::Request<Req>) -> Fut,
) -> HttpResponse
where
    Req: prost::Message + Default,
    Resp: prost::Message,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let method = method(service, name);
    let request = match decode(&method, body) {
        Ok(r) => r,
        Err(s) => return error(&s),
    };
    match call(tonic::Request::new(request)).await {
        Ok(resp) => encode(&method, resp.get_ref()),
        Err(s) => error(&s),
    }
}

/// The gRPC services behind the gateway's paths.
#[derive(Clone)]
pub struct Gateway {
    pub kv: KvService,
    pub lease: LeaseService,
    pub maintenance: MaintenanceService,
    pub cluster: ClusterService,
    pub election: ElectionService,
    pub lock: LockService,
}

impl Gateway {
    /// Serves `POST /v3/...` with etcd 3.5's gateway paths.
    pub async fn handle(&self, request: HttpRequest) -> HttpResponse {
        if request.method != "POST" {
            return not_found();
        }
        let body = request.body.as_ref();
        let Gateway {
            kv,
            lease,
            maintenance,
            cluster,
            election,
            lock,
        } = self;
        match request.path.as_str() {
            "/v3/kv/range" => unary("KV", "Range", body, |r| kv.range(r)).await,
            "/v3/kv/put" => unary("KV", "Put", body, |r| kv.put(r)).await,
            "/v3/kv/deleterange" => unary("KV", "DeleteRange", body, |r| kv.delete_range(r)).await,
            "/v3/kv/txn" => unary("KV", "Txn", body, |r| kv.txn(r)).await,
            "/v3/kv/compaction" => unary("KV", "Compact", body, |r| kv.compact(r)).await,
            "/v3/lease/grant" => unary("Lease", "LeaseGrant", body, |r| lease.lease_grant(r)).await,
            "/v3/lease/revoke" | "/v3/kv/lease/revoke" => {
                unary("Lease", "LeaseRevoke", body, |r| lease.lease_revoke(r)).await
            }
            "/v3/lease/timetolive" | "/v3/kv/lease/timetolive" => {
                unary("Lease", "LeaseTimeToLive", body, |r| {
                    lease.lease_time_to_live(r)
                })
                .await
            }
            "/v3/lease/leases" | "/v3/kv/lease/leases" => {
                unary("Lease", "LeaseLeases", body, |r| lease.lease_leases(r)).await
            }
            "/v3/maintenance/status" => {
                unary("Maintenance", "Status", body, |r| maintenance.status(r)).await
            }
            "/v3/maintenance/hash" => {
                unary("Maintenance", "Hash", body, |r| maintenance.hash(r)).await
            }
            "/v3/maintenance/hashkv" => {
                unary("Maintenance", "HashKV", body, |r| maintenance.hash_kv(r)).await
            }
            "/v3/maintenance/alarm" => {
                unary("Maintenance", "Alarm", body, |r| maintenance.alarm(r)).await
            }
            "/v3/maintenance/defragment" => {
                unary("Maintenance", "Defragment", body, |r| {
                    maintenance.defragment(r)
                })
                .await
            }
            "/v3/maintenance/transfer-leadership" => {
                unary("Maintenance", "MoveLeader", body, |r| {
                    maintenance.move_leader(r)
                })
                .await
            }
            "/v3/maintenance/downgrade" => {
                unary("Maintenance", "Downgrade", body, |r| {
                    maintenance.downgrade(r)
                })
                .await
            }
            "/v3/cluster/member/add" => {
                unary("Cluster", "MemberAdd", body, |r| cluster.member_add(r)).await
            }
            "/v3/cluster/member/remove" => {
                unary("Cluster", "MemberRemove", body, |r| {
                    cluster.member_remove(r)
                })
                .await
            }
            "/v3/cluster/member/update" => {
                unary("Cluster", "MemberUpdate", body, |r| {
                    cluster.member_update(r)
                })
                .await
            }
            "/v3/cluster/member/list" => {
                unary("Cluster", "MemberList", body, |r| cluster.member_list(r)).await
            }
            "/v3/cluster/member/promote" => {
                unary("Cluster", "MemberPromote", body, |r| {
                    cluster.member_promote(r)
                })
                .await
            }
            "/v3/election/campaign" => {
                unary(ELECTION, "Campaign", body, |r| election.campaign(r)).await
            }
            "/v3/election/proclaim" => {
                unary(ELECTION, "Proclaim", body, |r| election.proclaim(r)).await
            }
            "/v3/election/leader" => unary(ELECTION, "Leader", body, |r| election.leader(r)).await,
            "/v3/election/resign" => unary(ELECTION, "Resign", body, |r| election.resign(r)).await,
            "/v3/lock/lock" => unary(LOCK, "Lock", body, |r| lock.lock(r)).await,
            "/v3/lock/unlock" => unary(LOCK, "Unlock", body, |r| lock.unlock(r)).await,
            _ => not_found(),
        }
    }
}

const ELECTION: &str = "v3electionpb.Election";
const LOCK: &str = "v3lockpb.Lock";

/// grpc-gateway's answer for a path or method it has no route for.
fn not_found() -> HttpResponse {
    response(404, "text/plain; charset=utf-8", b"Not Found\n".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::{PutRequest, ResponseHeader, StatusResponse};

    #[test]
    fn json_maps_onto_prost_messages_as_etcd_gateway_does() {
        let put = method("KV", "Put");
        let req: PutRequest =
            decode(&put, br#"{"key":"Zm9v","value":"YmFy","lease":"7"}"#).unwrap();
        assert_eq!(
            (req.key.as_slice(), req.value.as_slice()),
            (&b"foo"[..], &b"bar"[..])
        );
        assert_eq!(req.lease, 7);
        let empty: PutRequest = decode(&put, b"").unwrap();
        assert_eq!(empty, PutRequest::default());
        let bad = decode::<PutRequest>(&put, b"{\"key\":").unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);

        let status = method("Maintenance", "Status");
        let resp = StatusResponse {
            header: Some(ResponseHeader {
                cluster_id: 14841639068965178418,
                member_id: 1,
                revision: 2,
                raft_term: 3,
            }),
            version: "3.5.0".into(),
            ..StatusResponse::default()
        };
        let out = encode(&status, &resp);
        assert_eq!(
            String::from_utf8(out.body).unwrap(),
            r#"{"header":{"cluster_id":"14841639068965178418","member_id":"1","revision":"2","raft_term":"3"},"version":"3.5.0"}"#
        );
    }

    #[test]
    fn errors_carry_grpc_code_and_http_status() {
        let out = error(&Status::out_of_range(
            "etcdserver: mvcc: required revision is a future revision",
        ));
        assert_eq!(out.status, 400);
        assert_eq!(
            String::from_utf8(out.body).unwrap(),
            r#"{"error":"etcdserver: mvcc: required revision is a future revision","code":11,"message":"etcdserver: mvcc: required revision is a future revision"}"#
        );
    }
}
