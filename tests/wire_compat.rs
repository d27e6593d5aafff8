//! Wire compatibility with etcd: our generated types must encode exactly as the etcd
//! client's do. Two checks: messages round-trip between our types and the `etcd-client`
//! crate's, and every field of etcd's .proto files (as bundled with `etcd-client`) has the
//! same number, name and type in ours.

#![cfg(not(madsim))] // etcd-client is a real-network crate; simulated tonic does not encode.

use std::collections::BTreeMap;
use std::path::PathBuf;

use detcd::proto::{etcdserverpb as ours, mvccpb};
use etcd_client::proto as theirs;
use prost::Message;
use protox::prost_reflect::{DescriptorPool, Kind, MessageDescriptor};

#[test]
fn put_request_decodes_as_etcd_client_type_and_back() {
    let req = ours::PutRequest {
        key: b"k\x00\xff".to_vec(),
        value: vec![7; 300],
        lease: 0x1234_5678_9abc,
        prev_kv: true,
        ignore_value: false,
        ignore_lease: true,
    };
    let decoded = theirs::PbPutRequest::decode(req.encode_to_vec().as_slice()).unwrap();
    assert_eq!(decoded.key, req.key);
    assert_eq!(decoded.value, req.value);
    assert_eq!(decoded.lease, req.lease);
    assert!(decoded.prev_kv && decoded.ignore_lease && !decoded.ignore_value);
    let back = ours::PutRequest::decode(decoded.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back, req);
}

#[test]
fn range_response_round_trips_through_etcd_client_types() {
    let kv = |i: i64| mvccpb::KeyValue {
        key: format!("key{i}").into_bytes(),
        create_revision: i,
        mod_revision: i + 10,
        version: 3,
        value: format!("value{i}").into_bytes(),
        lease: i * 100,
    };
    let resp = ours::RangeResponse {
        header: Some(ours::ResponseHeader {
            cluster_id: 0xdead_beef,
            member_id: 0x8e9e_05c5_2164_694d,
            revision: 42,
            raft_term: 7,
        }),
        kvs: vec![kv(1), kv(2)],
        more: true,
        count: 17,
    };
    let decoded = theirs::PbRangeResponse::decode(resp.encode_to_vec().as_slice()).unwrap();
    let header = decoded.header.unwrap();
    assert_eq!(
        (
            header.cluster_id,
            header.member_id,
            header.revision,
            header.raft_term
        ),
        (0xdead_beef, 0x8e9e_05c5_2164_694d, 42, 7)
    );
    assert_eq!(decoded.kvs.len(), 2);
    assert_eq!(decoded.kvs[1].key, b"key2");
    assert_eq!(decoded.kvs[1].mod_revision, 12);
    assert_eq!(decoded.kvs[1].lease, 200);
    assert!(decoded.more);
    assert_eq!(decoded.count, 17);
    let back = ours::RangeResponse::decode(decoded.encode_to_vec().as_slice()).unwrap();
    assert_eq!(back, resp);
}

/// The etcd .proto files that ship inside the etcd-client crate's source.
fn etcd_client_proto_dir() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let registry = home.join("registry/src");
    let mut found = Vec::new();
    for index in std::fs::read_dir(&registry).unwrap() {
        for krate in std::fs::read_dir(index.unwrap().path()).unwrap() {
            let path = krate.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("etcd-client-0.") && path.join("proto/etcd").is_dir() {
                found.push(path.join("proto"));
            }
        }
    }
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| panic!("etcd-client sources not found under {}", registry.display()))
}

fn field_shape(m: &MessageDescriptor) -> BTreeMap<u32, String> {
    m.fields()
        .map(|f| {
            let kind = match f.kind() {
                Kind::Message(t) => t.full_name().to_string(),
                Kind::Enum(t) => t.full_name().to_string(),
                other => format!("{other:?}"),
            };
            let card = format!("{:?}", f.cardinality());
            (f.number(), format!("{} {card} {kind}", f.name()))
        })
        .collect()
}

/// What newer etcd releases added that detcd does not serve: a streaming range RPC and a
/// message etcd uses only in its own tests. Everything else must match.
const NOT_SERVED: &[&str] = &[
    "etcdserverpb.RangeStreamResponse",
    "etcdserverpb.DowngradeVersionTestRequest",
    "etcdserverpb.KV/RangeStream",
];

#[test]
fn every_etcd_field_has_our_number_name_and_type() {
    let root = etcd_client_proto_dir();
    let etcd_files = [
        "etcd/api/mvccpb/kv.proto",
        "etcd/api/authpb/auth.proto",
        "etcd/api/etcdserverpb/rpc.proto",
        "etcd/server/etcdserver/api/v3election/v3electionpb/v3election.proto",
        "etcd/server/etcdserver/api/v3lock/v3lockpb/v3lock.proto",
    ];
    let theirs = protox::compile(etcd_files, [&root]).unwrap();
    let theirs = DescriptorPool::from_file_descriptor_set(theirs).unwrap();
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let our_files = [
        "mvccpb/kv.proto",
        "authpb/auth.proto",
        "etcdserverpb/rpc.proto",
        "v3electionpb/v3election.proto",
        "v3lockpb/v3lock.proto",
    ];
    let ours = protox::compile(our_files, [manifest.join("proto/etcd")]).unwrap();
    let ours = DescriptorPool::from_file_descriptor_set(ours).unwrap();

    let packages = [
        "mvccpb",
        "authpb",
        "etcdserverpb",
        "v3electionpb",
        "v3lockpb",
    ];
    let mut problems = Vec::new();
    let mut checked = 0;
    for msg in theirs.all_messages() {
        if !packages.contains(&msg.package_name()) {
            continue;
        }
        if NOT_SERVED.contains(&msg.full_name()) {
            continue;
        }
        let Some(mine) = ours.get_message_by_name(msg.full_name()) else {
            problems.push(format!("missing message {}", msg.full_name()));
            continue;
        };
        let mine = field_shape(&mine);
        for (number, shape) in field_shape(&msg) {
            checked += 1;
            let id = format!("{}.{}", msg.full_name(), shape.split(' ').next().unwrap());
            match mine.get(&number) {
                Some(m) if *m == shape => {}
                Some(m) => problems.push(format!(
                    "{id} = {number}: etcd has `{shape}`, we have `{m}`"
                )),
                None => problems.push(format!("{id} = {number}: missing (`{shape}`)")),
            }
        }
    }
    for svc in theirs.services() {
        let Some(mine) = ours.get_service_by_name(svc.full_name()) else {
            problems.push(format!("missing service {}", svc.full_name()));
            continue;
        };
        for method in svc.methods() {
            let id = format!("{}/{}", svc.full_name(), method.name());
            if NOT_SERVED.contains(&id.as_str()) {
                continue;
            }
            if !mine.methods().any(|m| {
                m.name() == method.name()
                    && m.input().full_name() == method.input().full_name()
                    && m.output().full_name() == method.output().full_name()
                    && m.is_client_streaming() == method.is_client_streaming()
                    && m.is_server_streaming() == method.is_server_streaming()
            }) {
                problems.push(format!("{id} differs or is missing"));
            }
        }
    }
    assert!(checked > 200, "only {checked} fields compared");
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}
