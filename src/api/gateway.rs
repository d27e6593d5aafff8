//! etcd's JSON gateway (grpc-gateway v1 in etcd 3.5): `POST /v3/<service>/<call>` with the
//! request message as JSON, answered with the response message as JSON, in protobuf's JSON
//! mapping as etcd configures it: proto field names (`cluster_id`, `raft_term`), bytes in
//! base64, 64-bit integers as strings, default values left out, unknown fields ignored.
//!
//! The JSON is mapped onto the same prost messages the gRPC services take, through the
//! descriptors `build.rs` compiled, and each call goes to the gRPC service's own method,
//! so both paths answer alike. The `Authorization` header carries the caller's token, as
//! grpc-gateway passes it on.
//!
//! Streaming calls (watch, lease keep-alive, election observe, snapshot) answer with one
//! `{"result":…}` line per message, as grpc-gateway does. The bidirectional ones (watch,
//! keep-alive) read their request bodies as they come, so a client can send a watch's
//! cancel request after reading its events; a watch stream lives on after its body ends
//! until the client goes away, as etcd's does.

use std::future::Future;
use std::sync::LazyLock;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, Stream, StreamExt};
use prost_reflect::{
    DescriptorPool, DeserializeOptions, DynamicMessage, MethodDescriptor, SerializeOptions,
};
use serde::Serialize;
use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use super::auth::AuthService;
use super::cluster::ClusterService;
use super::election::ElectionService;
use super::http::{method_not_allowed, response};
use super::kv::KvService;
use super::lease::LeaseService;
use super::lock::LockService;
use super::maintenance::MaintenanceService;
use super::watch::WatchService;
use crate::net::{BodyStream, ConnInfo, HttpBody, HttpRequest, HttpResponse};
use crate::proto::etcdserverpb::auth_server::Auth;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::v3electionpb::election_server::Election;
use crate::proto::v3lockpb::lock_server::Lock;

const JSON: &str = "application/json";
/// The gRPC response's content type, which grpc-gateway forwards as server metadata with
/// every answer that is not an error.
const GRPC_CONTENT_TYPE: (&str, &str) = ("grpc-metadata-content-type", "application/grpc");

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

/// The bidirectional calls, whose request bodies are read as they come.
pub fn streams_body(path: &str) -> bool {
    matches!(path, "/v3/watch" | "/v3/lease/keepalive")
}

/// grpc-gateway's error body: the status message twice, and the gRPC code.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    code: i32,
    message: &'a str,
}

/// grpc-gateway's error in a stream, ending it: `{"error":{…}}`.
#[derive(Serialize)]
struct StreamError<'a> {
    error: StreamErrorBody<'a>,
}

#[derive(Serialize)]
struct StreamErrorBody<'a> {
    grpc_code: i32,
    http_code: u16,
    message: &'a str,
    http_status: &'static str,
}

/// grpc-gateway's HTTP status for a gRPC code, and Go's text for it.
fn http_status(code: Code) -> (u16, &'static str) {
    match code {
        Code::Ok => (200, "OK"),
        Code::Cancelled => (408, "Request Timeout"),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => (400, "Bad Request"),
        Code::DeadlineExceeded => (504, "Gateway Timeout"),
        Code::NotFound => (404, "Not Found"),
        Code::AlreadyExists | Code::Aborted => (409, "Conflict"),
        Code::PermissionDenied => (403, "Forbidden"),
        Code::Unauthenticated => (401, "Unauthorized"),
        Code::ResourceExhausted => (429, "Too Many Requests"),
        Code::Unimplemented => (501, "Not Implemented"),
        Code::Unavailable => (503, "Service Unavailable"),
        Code::Unknown | Code::Internal | Code::DataLoss => (500, "Internal Server Error"),
    }
}

fn error(status: &Status) -> HttpResponse {
    let body = ErrorBody {
        error: status.message(),
        code: status.code() as i32,
        message: status.message(),
    };
    let json = serde_json::to_vec(&body).expect("a struct of strings serializes");
    response(http_status(status.code()).0, JSON, json)
}

fn stream_error(status: &Status) -> Vec<u8> {
    let (http_code, http_status) = http_status(status.code());
    let body = StreamError {
        error: StreamErrorBody {
            grpc_code: status.code() as i32,
            http_code,
            message: status.message(),
            http_status,
        },
    };
    serde_json::to_vec(&body).expect("a struct of strings and numbers serializes")
}

/// The method `name` of `service`, named in full (`v3lockpb.Lock`) or, in etcdserverpb, by
/// itself (`KV`).
pub(crate) fn method(service: &str, name: &str) -> MethodDescriptor {
    let full = match service.contains('.') {
        true => service.to_string(),
        false => format!("etcdserverpb.{service}"),
    };
    POOL.get_service_by_name(&full)
        .and_then(|s| s.methods().find(|m| m.name() == name))
        .unwrap_or_else(|| panic!("{full} has no method {name}"))
}

/// What the front of a request body holds.
enum Next {
    /// A JSON value, and the bytes it took.
    Value(serde_json::Value, usize),
    /// Only whitespace, or the start of a value.
    Incomplete,
    Invalid(Status),
}

fn next_value(buf: &[u8]) -> Next {
    let mut values = serde_json::Deserializer::from_slice(buf).into_iter::<serde_json::Value>();
    match values.next() {
        None => Next::Incomplete,
        Some(Ok(v)) => Next::Value(v, values.byte_offset()),
        Some(Err(e)) if e.is_eof() => Next::Incomplete,
        Some(Err(e)) => Next::Invalid(Status::invalid_argument(e.to_string())),
    }
}

/// Go's error for a body that ends inside a value.
fn unexpected_eof() -> Status {
    Status::invalid_argument("unexpected EOF")
}

/// `value` as the request message of `method`.
fn message<Req: prost::Message + Default>(
    method: &MethodDescriptor,
    value: serde_json::Value,
) -> Result<Req, Status> {
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    DynamicMessage::deserialize_with_options(method.input(), value, &options)
        .map_err(|e| Status::invalid_argument(e.to_string()))?
        .transcode_to()
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

/// The one request message of a unary or server-streaming call: the body's first JSON
/// value, as grpc-gateway's decoder reads it; an empty body is the empty message.
pub(crate) fn decode_one<Req: prost::Message + Default>(
    method: &MethodDescriptor,
    body: &[u8],
) -> Result<Req, Status> {
    match next_value(body) {
        Next::Value(v, _) => message(method, v),
        Next::Incomplete if body.iter().all(u8::is_ascii_whitespace) => Ok(Req::default()),
        Next::Incomplete => Err(unexpected_eof()),
        Next::Invalid(s) => Err(s),
    }
}

/// The request messages of a streamed body as they come: JSON values one after another.
/// It ends with the body, or with an error at a value that does not decode or outgrows
/// `max` bytes.
pub(crate) fn decode_stream<Req: prost::Message + Default>(
    method: MethodDescriptor,
    chunks: BoxStream<'static, Bytes>,
    max: usize,
) -> impl Stream<Item = Result<Req, Status>> + Send + 'static {
    futures::stream::unfold(Some((chunks, Vec::new())), move |state| {
        let method = method.clone();
        async move {
            let (mut chunks, mut buf) = state?;
            loop {
                match next_value(&buf) {
                    Next::Value(v, used) => {
                        buf.drain(..used);
                        return Some((message(&method, v), Some((chunks, buf))));
                    }
                    Next::Invalid(s) => return Some((Err(s), None)),
                    // Whitespace between values is not kept, so it never counts against `max`.
                    Next::Incomplete if buf.iter().all(u8::is_ascii_whitespace) => buf.clear(),
                    Next::Incomplete if buf.len() > max => {
                        let s = Status::resource_exhausted("etcdserver: request is too large");
                        return Some((Err(s), None));
                    }
                    Next::Incomplete => {}
                }
                match chunks.next().await {
                    Some(chunk) => buf.extend_from_slice(&chunk),
                    None if buf.is_empty() => return None,
                    None => return Some((Err(unexpected_eof()), None)),
                }
            }
        }
    })
}

fn to_json<Resp: prost::Message>(
    method: &MethodDescriptor,
    resp: &Resp,
) -> Result<Vec<u8>, Status> {
    let mut message = DynamicMessage::new(method.output());
    message
        .transcode_from(resp)
        .map_err(|e| Status::internal(e.to_string()))?;
    let options = SerializeOptions::new().use_proto_field_name(true);
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::new(&mut out);
    message
        .serialize_with_options(&mut ser, &options)
        .map_err(|e| Status::internal(e.to_string()))?;
    Ok(out)
}

fn encode<Resp: prost::Message>(method: &MethodDescriptor, resp: &Resp) -> HttpResponse {
    match to_json(method, resp) {
        Ok(json) => HttpResponse {
            headers: vec![GRPC_CONTENT_TYPE],
            ..response(200, JSON, json)
        },
        Err(s) => error(&s),
    }
}

/// One message of a streamed answer: `{"result":…}` and a newline.
fn chunk<Resp: prost::Message>(method: &MethodDescriptor, resp: &Resp) -> Vec<u8> {
    match to_json(method, resp) {
        Ok(json) => [&b"{\"result\":"[..], &json, b"}\n"].concat(),
        Err(s) => stream_error(&s),
    }
}

/// What a call reads of its HTTP request, once the body stream (if any) is taken out.
#[derive(Clone, Copy)]
struct Call<'a> {
    body: &'a [u8],
    authorization: Option<&'a str>,
    /// `Grpc-Metadata-*` headers.
    metadata: &'a [(String, String)],
    /// The client certificate's Common Name: the auth user under `--client-cert-auth`.
    common_name: Option<&'a str>,
}

/// The request as grpc-gateway hands it to the gRPC service: `Grpc-Metadata-*` headers as
/// metadata, the caller's token where etcd reads it from, and the TLS client's name.
fn with_caller<T>(message: T, call: Call<'_>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let md = request.metadata_mut();
    for (name, value) in call.metadata {
        let name = tonic::metadata::MetadataKey::from_bytes(name.as_bytes());
        if let (Ok(name), Ok(value)) = (name, MetadataValue::try_from(value.as_str())) {
            md.insert(name, value);
        }
    }
    if let Some(token) = call
        .authorization
        .and_then(|a| MetadataValue::try_from(a).ok())
    {
        md.insert("token", token);
    }
    let common_name = call.common_name.map(str::to_string);
    request.extensions_mut().insert(ConnInfo { common_name });
    request
}

/// One unary call: JSON to the request message, the service method, the response to JSON.
async fn unary<Req, Resp, Fut>(
    service: &str,
    name: &str,
    request: Call<'_>,
    call: impl FnOnce(tonic::Request<Req>) -> Fut,
) -> HttpResponse
where
    Req: prost::Message + Default,
    Resp: prost::Message,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let method = method(service, name);
    let message = match decode_one(&method, request.body) {
        Ok(r) => r,
        Err(s) => return error(&s),
    };
    match call(with_caller(message, request)).await {
        Ok(resp) => encode(&method, resp.get_ref()),
        Err(s) => error(&s),
    }
}

/// One server-streaming call (election observe, snapshot): the request as for a unary
/// call, the answer as [`forward`] sends it.
async fn server_stream<Req, Resp, S, Fut>(
    service: &str,
    name: &str,
    request: Call<'_>,
    call: impl FnOnce(tonic::Request<Req>) -> Fut,
) -> HttpResponse
where
    Req: prost::Message + Default,
    Resp: prost::Message + 'static,
    S: Stream<Item = Result<Resp, Status>> + Send + 'static,
    Fut: Future<Output = Result<tonic::Response<S>, Status>>,
{
    let method = method(service, name);
    let message = match decode_one(&method, request.body) {
        Ok(r) => r,
        Err(s) => return error(&s),
    };
    match call(with_caller(message, request)).await {
        Ok(resp) => forward(method, resp.into_inner()).await,
        Err(s) => error(&s),
    }
}

/// A bidirectional call's requests, as grpc-gateway's calls stream them.
type Requests<Req> = tonic::Request<BoxStream<'static, Req>>;

/// One bidirectional call (watch, lease keep-alive): the requests in the body as they come,
/// the answers as [`forward`] sends them. A first request that does not decode fails the
/// call as Unknown, as grpc-gateway's does; reading stops quietly at a later one.
async fn bidi_stream<Req, Resp, S>(
    service: &str,
    name: &str,
    (request, streamed, max): (Call<'_>, Option<BodyStream>, usize),
    call: impl FnOnce(Requests<Req>) -> Result<S, Status>,
) -> HttpResponse
where
    Req: prost::Message + Default + 'static,
    Resp: prost::Message + 'static,
    S: Stream<Item = Result<Resp, Status>> + Send + 'static,
{
    let method = method(service, name);
    let whole = futures::stream::once(std::future::ready(Bytes::copy_from_slice(request.body)));
    let chunks = streamed.unwrap_or_else(|| whole.boxed());
    let mut messages = Box::pin(decode_stream::<Req>(method.clone(), chunks, max));
    let requests = match messages.next().await {
        None => futures::stream::empty().boxed(),
        Some(Err(s)) => return error(&Status::unknown(s.message())),
        Some(Ok(first)) => {
            let rest = messages
                .take_while(|m| std::future::ready(m.is_ok()))
                .filter_map(|m| std::future::ready(m.ok()));
            futures::stream::once(std::future::ready(first))
                .chain(rest)
                .boxed()
        }
    };
    match call(with_caller(requests, request)) {
        Ok(responses) => forward(method, responses).await,
        Err(s) => error(&s),
    }
}

/// grpc-gateway's streamed answer: each message as a `{"result":…}` line, and an error as
/// `{"error":{…}}`, which ends it. As grpc-gateway's, the answer starts with the first
/// message, so an error before any sets the HTTP status.
async fn forward<Resp: prost::Message + 'static>(
    method: MethodDescriptor,
    responses: impl Stream<Item = Result<Resp, Status>> + Send + 'static,
) -> HttpResponse {
    let mut responses = Box::pin(responses);
    let first = match responses.next().await {
        None => return response(200, JSON, Vec::new()),
        Some(Err(s)) => return response(http_status(s.code()).0, JSON, stream_error(&s)),
        Some(Ok(m)) => chunk(&method, &m),
    };
    let rest = futures::stream::unfold(Some(responses), move |responses| {
        let method = method.clone();
        async move {
            let mut responses = responses?;
            match responses.next().await? {
                Ok(m) => Some((chunk(&method, &m), Some(responses))),
                Err(s) => Some((stream_error(&s), None)),
            }
        }
    });
    HttpResponse {
        status: 200,
        content_type: JSON,
        headers: vec![GRPC_CONTENT_TYPE],
        body: HttpBody::Stream(futures::stream::once(async { first }).chain(rest).boxed()),
    }
}

/// The gRPC services behind the gateway's paths.
#[derive(Clone)]
pub struct Gateway {
    pub kv: KvService,
    pub watch: WatchService,
    pub lease: LeaseService,
    pub maintenance: MaintenanceService,
    pub cluster: ClusterService,
    pub auth: AuthService,
    pub election: ElectionService,
    pub lock: LockService,
}

impl Gateway {
    /// Serves `POST /v3/...` with etcd 3.5's gateway paths; another method on one of them
    /// is refused as grpc-gateway refuses it.
    pub async fn handle(&self, mut request: HttpRequest) -> HttpResponse {
        let post = request.method == "POST";
        let Some(call) = self.route(&mut request) else {
            return not_found();
        };
        if !post {
            return method_not_allowed();
        }
        call.await
    }

    /// The call for `request`'s path, not started.
    fn route<'a>(&'a self, request: &'a mut HttpRequest) -> Option<BoxFuture<'a, HttpResponse>> {
        let HttpRequest {
            path,
            authorization,
            metadata,
            common_name,
            body,
            body_stream,
            max_body,
            ..
        } = request;
        let r = Call {
            body,
            authorization: authorization.as_deref(),
            metadata,
            common_name: common_name.as_deref(),
        };
        let streamed = (r, body_stream.take(), *max_body);
        let Gateway {
            kv,
            watch,
            lease,
            maintenance,
            cluster,
            auth,
            election,
            lock,
        } = self;
        let call = match path.as_str() {
            "/v3/kv/range" => unary("KV", "Range", r, |r| kv.range(r)).boxed(),
            "/v3/kv/put" => unary("KV", "Put", r, |r| kv.put(r)).boxed(),
            "/v3/kv/deleterange" => unary("KV", "DeleteRange", r, |r| kv.delete_range(r)).boxed(),
            "/v3/kv/txn" => unary("KV", "Txn", r, |r| kv.txn(r)).boxed(),
            "/v3/kv/compaction" => unary("KV", "Compact", r, |r| kv.compact(r)).boxed(),
            "/v3/watch" => bidi_stream("Watch", "Watch", streamed, |r| {
                let caller = super::auth::caller(&watch.0, &r)?;
                Ok(watch.open(caller, r.into_inner()))
            })
            .boxed(),
            "/v3/lease/grant" => unary("Lease", "LeaseGrant", r, |r| lease.lease_grant(r)).boxed(),
            "/v3/lease/revoke" | "/v3/kv/lease/revoke" => {
                unary("Lease", "LeaseRevoke", r, |r| lease.lease_revoke(r)).boxed()
            }
            "/v3/lease/keepalive" => bidi_stream("Lease", "LeaseKeepAlive", streamed, |r| {
                Ok(lease.keep_alive(r.into_inner()))
            })
            .boxed(),
            "/v3/lease/timetolive" | "/v3/kv/lease/timetolive" => {
                unary("Lease", "LeaseTimeToLive", r, |r| {
                    lease.lease_time_to_live(r)
                })
                .boxed()
            }
            "/v3/lease/leases" | "/v3/kv/lease/leases" => {
                unary("Lease", "LeaseLeases", r, |r| lease.lease_leases(r)).boxed()
            }
            "/v3/maintenance/status" => {
                unary("Maintenance", "Status", r, |r| maintenance.status(r)).boxed()
            }
            // etcd 3.5 declares this path for both Hash and HashKV; its gateway serves Hash.
            "/v3/maintenance/hash" => {
                unary("Maintenance", "Hash", r, |r| maintenance.hash(r)).boxed()
            }
            "/v3/maintenance/alarm" => {
                unary("Maintenance", "Alarm", r, |r| maintenance.alarm(r)).boxed()
            }
            "/v3/maintenance/defragment" => unary("Maintenance", "Defragment", r, |r| {
                maintenance.defragment(r)
            })
            .boxed(),
            "/v3/maintenance/snapshot" => {
                server_stream("Maintenance", "Snapshot", r, |r| maintenance.snapshot(r)).boxed()
            }
            "/v3/maintenance/transfer-leadership" => unary("Maintenance", "MoveLeader", r, |r| {
                maintenance.move_leader(r)
            })
            .boxed(),
            "/v3/maintenance/downgrade" => {
                unary("Maintenance", "Downgrade", r, |r| maintenance.downgrade(r)).boxed()
            }
            "/v3/cluster/member/add" => {
                unary("Cluster", "MemberAdd", r, |r| cluster.member_add(r)).boxed()
            }
            "/v3/cluster/member/remove" => {
                unary("Cluster", "MemberRemove", r, |r| cluster.member_remove(r)).boxed()
            }
            "/v3/cluster/member/update" => {
                unary("Cluster", "MemberUpdate", r, |r| cluster.member_update(r)).boxed()
            }
            "/v3/cluster/member/list" => {
                unary("Cluster", "MemberList", r, |r| cluster.member_list(r)).boxed()
            }
            "/v3/cluster/member/promote" => {
                unary("Cluster", "MemberPromote", r, |r| cluster.member_promote(r)).boxed()
            }
            "/v3/auth/enable" => unary("Auth", "AuthEnable", r, |r| auth.auth_enable(r)).boxed(),
            "/v3/auth/disable" => unary("Auth", "AuthDisable", r, |r| auth.auth_disable(r)).boxed(),
            "/v3/auth/status" => unary("Auth", "AuthStatus", r, |r| auth.auth_status(r)).boxed(),
            "/v3/auth/authenticate" => {
                unary("Auth", "Authenticate", r, |r| auth.authenticate(r)).boxed()
            }
            "/v3/auth/user/add" => unary("Auth", "UserAdd", r, |r| auth.user_add(r)).boxed(),
            "/v3/auth/user/get" => unary("Auth", "UserGet", r, |r| auth.user_get(r)).boxed(),
            "/v3/auth/user/list" => unary("Auth", "UserList", r, |r| auth.user_list(r)).boxed(),
            "/v3/auth/user/delete" => {
                unary("Auth", "UserDelete", r, |r| auth.user_delete(r)).boxed()
            }
            "/v3/auth/user/changepw" => unary("Auth", "UserChangePassword", r, |r| {
                auth.user_change_password(r)
            })
            .boxed(),
            "/v3/auth/user/grant" => {
                unary("Auth", "UserGrantRole", r, |r| auth.user_grant_role(r)).boxed()
            }
            "/v3/auth/user/revoke" => {
                unary("Auth", "UserRevokeRole", r, |r| auth.user_revoke_role(r)).boxed()
            }
            "/v3/auth/role/add" => unary("Auth", "RoleAdd", r, |r| auth.role_add(r)).boxed(),
            "/v3/auth/role/get" => unary("Auth", "RoleGet", r, |r| auth.role_get(r)).boxed(),
            "/v3/auth/role/list" => unary("Auth", "RoleList", r, |r| auth.role_list(r)).boxed(),
            "/v3/auth/role/delete" => {
                unary("Auth", "RoleDelete", r, |r| auth.role_delete(r)).boxed()
            }
            "/v3/auth/role/grant" => unary("Auth", "RoleGrantPermission", r, |r| {
                auth.role_grant_permission(r)
            })
            .boxed(),
            "/v3/auth/role/revoke" => unary("Auth", "RoleRevokePermission", r, |r| {
                auth.role_revoke_permission(r)
            })
            .boxed(),
            "/v3/election/campaign" => {
                unary(ELECTION, "Campaign", r, |r| election.campaign(r)).boxed()
            }
            "/v3/election/proclaim" => {
                unary(ELECTION, "Proclaim", r, |r| election.proclaim(r)).boxed()
            }
            "/v3/election/leader" => unary(ELECTION, "Leader", r, |r| election.leader(r)).boxed(),
            "/v3/election/observe" => {
                server_stream(ELECTION, "Observe", r, |r| election.observe(r)).boxed()
            }
            "/v3/election/resign" => unary(ELECTION, "Resign", r, |r| election.resign(r)).boxed(),
            "/v3/lock/lock" => unary(LOCK, "Lock", r, |r| lock.lock(r)).boxed(),
            "/v3/lock/unlock" => unary(LOCK, "Unlock", r, |r| lock.unlock(r)).boxed(),
            _ => return None,
        };
        Some(call)
    }
}

const ELECTION: &str = "v3electionpb.Election";
const LOCK: &str = "v3lockpb.Lock";

/// grpc-gateway's answer for a path it has no route for.
fn not_found() -> HttpResponse {
    response(404, "text/plain; charset=utf-8", b"Not Found\n".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::{PutRequest, ResponseHeader, StatusResponse};

    fn body(r: HttpResponse) -> String {
        match r.body {
            HttpBody::Full(b) => String::from_utf8(b).unwrap(),
            HttpBody::Stream(_) => panic!("a whole body"),
        }
    }

    #[test]
    fn json_maps_onto_prost_messages_as_etcd_gateway_does() {
        let put = method("KV", "Put");
        let req: PutRequest = decode_one(
            &put,
            br#"{"key":"Zm9v","value":"YmFy","lease":"7","unknown":1}"#,
        )
        .unwrap();
        assert_eq!(
            (req.key.as_slice(), req.value.as_slice()),
            (&b"foo"[..], &b"bar"[..])
        );
        assert_eq!(req.lease, 7);
        let empty: PutRequest = decode_one(&put, b" \n").unwrap();
        assert_eq!(empty, PutRequest::default());
        let bad = decode_one::<PutRequest>(&put, b"{\"key\":").unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);
        let eof = decode_one::<PutRequest>(&put, b" {\"key\":\"YQ==\"").unwrap_err();
        assert_eq!(eof.message(), "unexpected EOF");
        // A stream's requests follow one another, split anywhere; a value that does not
        // decode is an error there (the caller stops at it).
        let chunks = [r#"{"key":"YQ"#, r#"=="} {"ke"#, r#"y":"Yg=="}{"key":1}"#];
        let chunks =
            futures::stream::iter(chunks.map(|c| Bytes::from_static(c.as_bytes()))).boxed();
        let many: Vec<Result<PutRequest, Status>> =
            futures::executor::block_on(decode_stream(put.clone(), chunks, 100).collect());
        let keys: Vec<_> = many
            .iter()
            .map(|m| m.as_ref().map(|p| p.key.clone()).ok())
            .collect();
        assert_eq!(keys, [Some(b"a".to_vec()), Some(b"b".to_vec()), None]);
        let unfinished = [&b"{\"key\":\""[..], &[b'A'; 100]].concat();
        let too_big = futures::stream::iter([Bytes::from(unfinished)]).boxed();
        let too_big: Vec<Result<PutRequest, Status>> =
            futures::executor::block_on(decode_stream(put, too_big, 100).collect());
        assert_eq!(
            too_big[0].as_ref().unwrap_err().code(),
            Code::ResourceExhausted
        );

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
            body(out),
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
            body(out),
            r#"{"error":"etcdserver: mvcc: required revision is a future revision","code":11,"message":"etcdserver: mvcc: required revision is a future revision"}"#
        );
        // Within a stream, as etcd 3.5 ends a snapshot its caller may not take.
        let chunk = stream_error(&Status::unknown("auth: user name is empty"));
        assert_eq!(
            String::from_utf8(chunk).unwrap(),
            r#"{"error":{"grpc_code":2,"http_code":500,"message":"auth: user name is empty","http_status":"Internal Server Error"}}"#
        );
    }
}
