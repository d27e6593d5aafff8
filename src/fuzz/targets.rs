//! The decoders of outside bytes, each as a [`Target`]: what a file on disk, a peer or a
//! client can hand the member.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use prost::Message as _;

use super::Target;
use crate::api::gateway;
use crate::backend::{self, bolt, Backend};
use crate::mvcc::{self, KvStore};
use crate::net::authority::Rewriter;
use crate::proto::etcdserverpb::{
    AuthenticateRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseKeepAliveRequest, PutRequest,
    RangeRequest, TxnRequest, WatchRequest,
};
use crate::proto::raftpb::{
    ConfChange, ConfState, Entry, EntryType, HardState, Message, MessageType, Snapshot,
    SnapshotMetadata,
};
use crate::raft::{conf_change_of, Config, MemStorage, RawNode, StateRole};
use crate::runtime::{read_file, Disk, OpenMode, SimDisk};
use crate::snap::{SnapshotFile, Snapshotter};
use crate::wal::record::{self, RecordType, HEADER};
use crate::wal::{Metadata, SnapshotMark, Wal, WalOptions};

pub const ALL: [Target; 10] = [
    Target {
        name: "wal_records",
        seeds: wal_record_seeds,
        seal: None,
        run: wal_records,
    },
    Target {
        name: "wal_segment",
        seeds: wal_segment_seeds,
        seal: Some(seal_wal_segment),
        run: wal_segment,
    },
    Target {
        name: "snap_file",
        seeds: snap_seeds,
        seal: Some(seal_snap),
        run: snap_file,
    },
    Target {
        name: "peer_message",
        seeds: peer_seeds,
        seal: None,
        run: peer_message,
    },
    Target {
        name: "backend_snapshot",
        seeds: backend_seeds,
        seal: None,
        run: backend_snapshot,
    },
    Target {
        name: "backend_file",
        seeds: store_seeds,
        seal: None,
        run: backend_file,
    },
    Target {
        name: "gateway_body",
        seeds: gateway_seeds,
        seal: None,
        run: gateway_body,
    },
    Target {
        name: "http2_headers",
        seeds: http2_seeds,
        seal: None,
        run: http2_headers,
    },
    Target {
        name: "bolt_file",
        seeds: bolt_seeds,
        seal: Some(seal_bolt),
        run: bolt_file,
    },
    Target {
        name: "etcd_snapshot",
        seeds: etcd_snapshot_seeds,
        seal: Some(seal_bolt),
        run: etcd_snapshot,
    },
];

// ---- WAL ----

const WAL_DIR: &str = "/wal";
const SEGMENT: &str = "/wal/0000000000000000-0000000000000000.wal";
/// Small segments keep each input small; replay does not depend on the size.
const SEGMENT_SIZE: u64 = 16 << 10;

fn wal_options() -> WalOptions {
    WalOptions {
        segment_size: SEGMENT_SIZE,
    }
}

/// A WAL's first segment as a member writes it: metadata, hard states, entries of every
/// type (a configuration change among them), an overwrite of a suffix, a snapshot mark.
fn written_segment() -> Vec<u8> {
    let disk: Arc<dyn Disk> = Arc::new(SimDisk::new(1));
    let metadata = Metadata {
        member_id: 0x8e9e_05c5_2164_694d,
        cluster_id: 0xcdf8_1819_4e3a_8c32,
    };
    let mut wal = Wal::create(disk.clone(), Path::new(WAL_DIR), metadata, wal_options()).unwrap();
    let entry = |index, term, data: &[u8]| Entry {
        index,
        term,
        r#type: EntryType::EntryNormal as i32,
        data: data.to_vec(),
    };
    let cc = ConfChange {
        node_id: 2,
        context: b"http://127.0.0.1:2380".to_vec(),
        ..ConfChange::default()
    };
    let conf = Entry {
        r#type: EntryType::EntryConfChange as i32,
        ..entry(3, 1, &cc.encode_to_vec())
    };
    let hs = |term, commit| HardState {
        term,
        vote: 1,
        commit,
    };
    wal.save(
        Some(&hs(1, 1)),
        &[entry(1, 1, b""), entry(2, 1, b"put k v"), conf],
    )
    .unwrap();
    wal.save(Some(&hs(2, 3)), &[entry(3, 2, b"x"), entry(4, 2, b"y")])
        .unwrap();
    wal.save_snapshot(&SnapshotMark {
        index: 3,
        term: 2,
        conf_state: Some(ConfState {
            voters: vec![1, 2],
            ..ConfState::default()
        }),
    })
    .unwrap();
    drop(wal);
    let data = read_file(disk.as_ref(), Path::new(SEGMENT)).unwrap();
    // The preallocated zeros past the records, but for a sector, add nothing.
    let used = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    data[..(used + 512).min(data.len())].to_vec()
}

/// `data` as the only segment of a fresh disk.
fn disk_with(path: &str, data: &[u8]) -> Arc<dyn Disk> {
    let disk = SimDisk::new(2);
    let path = Path::new(path);
    disk.create_dir_all(path.parent().unwrap()).unwrap();
    let file = disk.open(path, OpenMode::CreateNew).unwrap();
    file.write_at(0, data).unwrap();
    file.sync().unwrap();
    Arc::new(disk)
}

/// Everything a member reads of a WAL at boot; true if it opens. When it opens, the
/// replay must be what a second open finds after Raft appends one more entry (after the
/// last replayed one; the WAL's own last index may be further, at a later snapshot mark),
/// plus that entry.
fn replay_wal(segment: &[u8]) -> bool {
    let disk = disk_with(SEGMENT, segment);
    let dir = Path::new(WAL_DIR);
    let _ = Wal::read_metadata(disk.as_ref(), dir);
    let marks = Wal::snapshot_marks(disk.as_ref(), dir);
    for from in marks
        .unwrap_or_default()
        .iter()
        .chain([&SnapshotMark::default()])
    {
        let Ok((mut wal, replay)) = Wal::open(disk.clone(), dir, from, wal_options()) else {
            continue;
        };
        let last = replay.entries.last();
        let next = Entry {
            index: last.map_or(from.index, |e| e.index) + 1,
            term: last.map_or(from.term, |e| e.term).max(1),
            ..Entry::default()
        };
        if next.index > crate::raft::MAX_INDEX_OR_TERM
            || wal.save(None, std::slice::from_ref(&next)).is_err()
        {
            return true;
        }
        drop(wal);
        let (_, again) = Wal::open(disk.clone(), dir, from, wal_options())
            .expect("a WAL that opened and took an entry opens again");
        let mut expected = replay.entries.clone();
        expected.push(next);
        assert_eq!(again.entries, expected, "replay from {from:?}");
        assert_eq!(again.hard_state, replay.hard_state);
        return true;
    }
    false
}

/// Records as `[type, len_lo, len_hi, payload…]…`, to be framed with valid checksums.
fn wal_record_seeds() -> Vec<Vec<u8>> {
    let segment = written_segment();
    let (mut offset, mut crc, mut out) = (0, 0, Vec::new());
    while let Ok(r) = record::decode(&segment, offset, crc) {
        if r.typ != RecordType::Pad {
            out.push(r.typ as u8);
            out.extend_from_slice(&(r.payload.len() as u16).to_le_bytes());
            out.extend_from_slice(&r.payload);
        }
        (offset, crc) = (r.end, r.crc);
    }
    assert!(out.len() > 100, "the seed segment decodes");
    vec![out]
}

/// Frames `[type, len, payload]` records with valid lengths and chained checksums, so
/// that replay's decoding of each payload is what gets fuzzed.
fn frame_records(mut input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut crc = 0;
    while let [typ, lo, hi, rest @ ..] = input {
        let len = (u16::from_le_bytes([*lo, *hi]) as usize).min(rest.len());
        let typ = match typ % 6 {
            1 => RecordType::Seed,
            2 => RecordType::Metadata,
            3 => RecordType::Entry,
            4 => RecordType::HardState,
            5 => RecordType::Snapshot,
            _ => RecordType::Pad,
        };
        crc = record::encode(&mut out, 0, crc, typ, |b| b.extend_from_slice(&rest[..len]));
        input = &rest[len..];
    }
    record::pad_to_sector(&mut out, 0, crc);
    out
}

fn wal_records(input: &[u8]) -> bool {
    replay_wal(&frame_records(input))
}

fn wal_segment_seeds() -> Vec<Vec<u8>> {
    vec![written_segment()]
}

/// Rewrites the length check and chain checksum of every record the lengths delimit.
fn seal_wal_segment(data: &mut [u8]) {
    let mut offset = 0;
    let mut crc = 0;
    while offset + HEADER <= data.len() {
        let len = u32::from_le_bytes(data[offset..offset + 4].try_into().unwrap());
        let end = offset + HEADER + len as usize;
        if len == 0 || end > data.len() {
            return;
        }
        data[offset + 4..offset + 8].copy_from_slice(&(!len).to_le_bytes());
        crc = record::checksum(crc, data[offset + 12], &data[offset + HEADER..end]);
        data[offset + 8..offset + 12].copy_from_slice(&crc.to_le_bytes());
        offset = end;
    }
}

fn wal_segment(input: &[u8]) -> bool {
    replay_wal(input)
}

// ---- snap ----

const SNAP_DIR: &str = "/snap";
const SNAP_FILE: &str = "/snap/0000000000000002-0000000000000003.snap";

fn snap_seeds() -> Vec<Vec<u8>> {
    let disk: Arc<dyn Disk> = Arc::new(SimDisk::new(3));
    let snap = Snapshotter::new(disk.clone(), Path::new(SNAP_DIR)).unwrap();
    snap.save(&SnapshotFile {
        metadata: Some(SnapshotMetadata {
            conf_state: Some(ConfState {
                voters: vec![1, 2, 3],
                learners: vec![4],
                ..ConfState::default()
            }),
            index: 3,
            term: 2,
        }),
        backend: "0000000000000003.snap.db".into(),
    })
    .unwrap();
    vec![read_file(disk.as_ref(), Path::new(SNAP_FILE)).unwrap()]
}

/// Rewrites the magic, checksum and length of the header for the payload that follows.
fn seal_snap(data: &mut [u8]) {
    if data.len() < 12 {
        return;
    }
    let payload = data[12..].to_vec();
    data[..4].copy_from_slice(b"DSNP");
    data[4..8].copy_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    data[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
}

/// A snapshot file loads or is set aside; one that loads saves and loads back the same.
fn snap_file(input: &[u8]) -> bool {
    let disk = disk_with(SNAP_FILE, input);
    let snap = Snapshotter::new(disk.clone(), Path::new(SNAP_DIR)).unwrap();
    let Some(loaded) = snap.load_newest_where(|_| true).unwrap() else {
        return false;
    };
    let again_disk: Arc<dyn Disk> = Arc::new(SimDisk::new(4));
    let again = Snapshotter::new(again_disk, Path::new(SNAP_DIR)).unwrap();
    again.save(&loaded).unwrap();
    assert_eq!(again.load_newest_where(|_| true).unwrap(), Some(loaded));
    true
}

// ---- peer messages ----

fn peer_seeds() -> Vec<Vec<u8>> {
    let entries = vec![
        Entry {
            index: 1,
            term: 1,
            ..Entry::default()
        },
        Entry {
            index: 2,
            term: 1,
            r#type: EntryType::EntryConfChange as i32,
            data: ConfChange {
                node_id: 4,
                ..ConfChange::default()
            }
            .encode_to_vec(),
        },
    ];
    let m = |t: MessageType| Message {
        r#type: t as i32,
        to: 1,
        from: 2,
        term: 1,
        ..Message::default()
    };
    let snapshot = Snapshot {
        data: Vec::new(),
        metadata: Some(SnapshotMetadata {
            conf_state: Some(ConfState {
                voters: vec![1, 2, 3],
                ..ConfState::default()
            }),
            index: 5,
            term: 1,
        }),
    };
    [
        Message {
            entries: entries.clone(),
            commit: 1,
            ..m(MessageType::MsgApp)
        },
        Message {
            commit: 1,
            ..m(MessageType::MsgHeartbeat)
        },
        Message {
            index: 2,
            log_term: 1,
            term: 2,
            ..m(MessageType::MsgVote)
        },
        Message {
            index: 1,
            ..m(MessageType::MsgAppResp)
        },
        m(MessageType::MsgHeartbeatResp),
        Message {
            snapshot: Some(snapshot),
            ..m(MessageType::MsgSnap)
        },
        Message {
            entries,
            ..m(MessageType::MsgProp)
        },
        m(MessageType::MsgTimeoutNow),
        Message {
            entries: vec![Entry {
                data: b"ctx".to_vec(),
                ..Entry::default()
            }],
            ..m(MessageType::MsgReadIndex)
        },
    ]
    .iter()
    .map(Message::encode_to_vec)
    .collect()
}

/// Persists and applies one Ready as the member does, in the order the Ready contract
/// states.
fn handle_ready(node: &mut RawNode<MemStorage>) {
    if !node.has_ready() {
        return;
    }
    let rd = node.ready();
    let store = node.store_mut();
    if let Some(s) = rd.snapshot.clone() {
        store
            .apply_snapshot(s)
            .expect("raft hands over only newer snapshots");
    }
    store.append(&rd.entries);
    if let Some(hs) = &rd.hard_state {
        store.set_hard_state(*hs);
    }
    for e in &rd.committed_entries {
        if let Some(cc) = conf_change_of(e) {
            let _ = node.apply_conf_change(&cc);
        }
    }
    node.advance(rd);
}

/// Member 1 of a cluster of 1, 2 and 3, as a follower and as the leader of term 1 (which,
/// without pre-vote, one granted vote makes).
fn members() -> [RawNode<MemStorage>; 2] {
    let node = |cfg| RawNode::new(cfg, MemStorage::new_with_voters(&[1, 2, 3])).unwrap();
    let follower = node(Config::new(1));
    let mut leader = node(Config {
        pre_vote: false,
        ..Config::new(1)
    });
    leader.campaign().unwrap();
    handle_ready(&mut leader);
    let term = leader.store().hard_state().term;
    leader
        .step(Message {
            r#type: MessageType::MsgVoteResp as i32,
            to: 1,
            from: 2,
            term,
            ..Message::default()
        })
        .unwrap();
    handle_ready(&mut leader);
    assert_eq!(leader.soft_state().raft_state, StateRole::Leader);
    [follower, leader]
}

/// A message off the peer stream is decoded, then stepped into a follower and a leader:
/// refused or taken, never a panic. `to` is set to the receiver, as the transport routes.
fn peer_message(input: &[u8]) -> bool {
    let Ok(mut m) = Message::decode(input) else {
        return false;
    };
    assert_eq!(
        Message::decode(m.encode_to_vec().as_slice()).as_ref(),
        Ok(&m)
    );
    m.to = 1;
    let mut taken = false;
    for mut node in members() {
        if node.step(m.clone()).is_ok() {
            handle_ready(&mut node);
            taken = true;
        }
    }
    taken
}

// ---- received backend snapshots ----

const DB: &str = "/snap/0000000000000003.snap.db";

fn backend_seeds() -> Vec<Vec<u8>> {
    let disk = SimDisk::new(5);
    let mut b = Backend::open(&disk, Path::new(DB)).unwrap();
    backend::put_u64(b.tx(), backend::META, b"consistent_index", 9).unwrap();
    let kv = crate::proto::mvccpb::KeyValue {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        create_revision: 2,
        mod_revision: 2,
        version: 1,
        lease: 0,
    };
    let rev = crate::mvcc::Revision::new(2, 0).to_key(false);
    b.tx()
        .open_table(backend::KEY)
        .unwrap()
        .insert(rev.as_slice(), kv.encode_to_vec().as_slice())
        .unwrap();
    b.commit().unwrap();
    drop(b);
    vec![read_file(&disk, Path::new(DB)).unwrap()]
}

/// A received database is checked before the member keeps it: an error or a pass.
fn backend_snapshot(input: &[u8]) -> bool {
    let disk = disk_with(DB, input);
    crate::server::snapshot_rows::check(disk.as_ref(), Path::new(DB)).is_ok()
}

// ---- the member's own database file ----

const STORE: &str = "/member/snap/db";

/// A store of a few keys over two commits, one value beyond a page, closed cleanly.
fn store_seeds() -> Vec<Vec<u8>> {
    let disk = SimDisk::new(5);
    let mut kv = KvStore::open(&disk, Path::new(STORE), mvcc::Config::default()).unwrap();
    for (index, len) in [(1, 3), (2, 1500), (3, 5000)] {
        kv.begin_entry(index).unwrap();
        let req = PutRequest {
            key: format!("/registry/pods/p{index}").into_bytes(),
            value: vec![index as u8; len],
            ..PutRequest::default()
        };
        kv.put(&req, &mvcc::no_leases).unwrap();
        kv.commit().unwrap();
    }
    drop(kv);
    vec![read_file(&disk, Path::new(STORE)).unwrap()]
}

/// The member's database as it boots on it: the store opens (rebuilding its index from every
/// key revision), every table reads, and a put commits; or an error names the file.
fn backend_file(input: &[u8]) -> bool {
    let disk = disk_with(STORE, input);
    let booted = KvStore::open(disk.as_ref(), Path::new(STORE), mvcc::Config::default()).and_then(
        |mut kv| {
            kv.committed_view()?.hash()?;
            kv.begin_entry(kv.consistent_index() + 1)?;
            let req = PutRequest {
                key: b"k".to_vec(),
                ..PutRequest::default()
            };
            kv.put(&req, &mvcc::no_leases)?;
            kv.commit()
        },
    );
    if let Err(e) = &booted {
        let e = e.to_string();
        assert!(e.contains(STORE), "the file is not named: {e}");
    }
    booted.is_ok()
}

// ---- the JSON gateway ----

/// The request bodies the gateway decodes, by (service, method); the input's first byte
/// picks one.
const CALLS: [(&str, &str); 8] = [
    ("KV", "Put"),
    ("KV", "Range"),
    ("KV", "DeleteRange"),
    ("KV", "Txn"),
    ("Lease", "LeaseGrant"),
    ("Auth", "Authenticate"),
    ("Watch", "Watch"),
    ("Lease", "LeaseKeepAlive"),
];

fn gateway_seeds() -> Vec<Vec<u8>> {
    let bodies: [&str; 8] = [
        r#"{"key":"Zm9v","value":"YmFy","lease":"7","prev_kv":true}"#,
        r#"{"key":"YQ==","range_end":"AA==","limit":"10","revision":"-1","sort_order":"DESCEND"}"#,
        r#"{"key":"YQ==","range_end":"Yg==","prev_kv":true}"#,
        r#"{"compare":[{"key":"YQ==","result":"EQUAL","target":"VALUE","value":"MQ=="},{"target":"MOD","mod_revision":"3","key":"Yg=="}],"success":[{"request_put":{"key":"YQ==","value":"Mg=="}}],"failure":[{"request_range":{"key":"YQ=="}},{"request_txn":{}}]}"#,
        r#"{"TTL":"60","ID":"0"}"#,
        r#"{"name":"root","password":"pässword"}"#,
        r#"{"create_request":{"key":"YQ==","start_revision":"1","filters":["NOPUT"]}} {"cancel_request":{"watch_id":"0"}}"#,
        r#"{"ID":"7"}{"ID":"-1"} {"ID":1e3}"#,
    ];
    bodies
        .iter()
        .enumerate()
        .map(|(i, b)| [&[i as u8][..], b.as_bytes()].concat())
        .collect()
}

/// A decoded request must encode to JSON that decodes to the same request.
fn json_round_trip<Req: prost::Message + Default + PartialEq>(
    method: &prost_reflect::MethodDescriptor,
    req: &Req,
) {
    let mut dynamic = prost_reflect::DynamicMessage::new(method.input());
    dynamic.transcode_from(req).unwrap();
    let json = serde_json::to_vec(&dynamic).unwrap();
    let again: Req = gateway::decode_one(method, &json)
        .unwrap_or_else(|e| panic!("{} does not decode: {e}", String::from_utf8_lossy(&json)));
    assert!(&again == req, "{}", String::from_utf8_lossy(&json));
}

fn unary<Req: prost::Message + Default + PartialEq>(call: (&str, &str), body: &[u8]) -> bool {
    let method = gateway::method(call.0, call.1);
    let Ok(req) = gateway::decode_one::<Req>(&method, body) else {
        return false;
    };
    json_round_trip(&method, &req);
    true
}

/// A streamed body, split in two where the input says, decodes to requests and errors.
fn streamed<Req: prost::Message + Default + PartialEq + 'static>(
    call: (&str, &str),
    body: &[u8],
) -> bool {
    let method = gateway::method(call.0, call.1);
    let cut = body.first().map_or(0, |&b| b as usize).min(body.len());
    let chunks = [&body[..cut], &body[cut..]].map(Bytes::copy_from_slice);
    let chunks = futures::stream::iter(chunks).boxed();
    let stream = gateway::decode_stream::<Req>(method.clone(), chunks, 4096);
    let mut decoded = false;
    for req in futures::executor::block_on(stream.collect::<Vec<_>>())
        .into_iter()
        .flatten()
    {
        json_round_trip(&method, &req);
        decoded = true;
    }
    decoded
}

fn gateway_body(input: &[u8]) -> bool {
    let Some((&pick, body)) = input.split_first() else {
        return false;
    };
    let call = CALLS[pick as usize % CALLS.len()];
    match pick as usize % CALLS.len() {
        0 => unary::<PutRequest>(call, body),
        1 => unary::<RangeRequest>(call, body),
        2 => unary::<DeleteRangeRequest>(call, body),
        3 => unary::<TxnRequest>(call, body),
        4 => unary::<LeaseGrantRequest>(call, body),
        5 => unary::<AuthenticateRequest>(call, body),
        6 => streamed::<WatchRequest>(call, body),
        _ => streamed::<LeaseKeepAliveRequest>(call, body),
    }
}

// ---- the HTTP/2 header rewriter ----

fn http2_seeds() -> Vec<Vec<u8>> {
    let mut encoder = loona_hpack::Encoder::new();
    let headers = |authority: &'static str| {
        [
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/etcdserverpb.KV/Range"),
            (b":authority", authority.as_bytes()),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ]
    };
    let frame = |kind: u8, flags: u8, stream: u32, payload: &[u8]| {
        let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        f.extend_from_slice(&[kind, flags]);
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    };
    // The piece size first (7: odd splits), then the frames after the preface.
    let connection = |frames: &[Vec<u8>]| {
        let mut bytes = vec![7];
        bytes.extend(frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]));
        frames.iter().for_each(|f| bytes.extend_from_slice(f));
        bytes
    };
    let first = encoder.encode(headers("http://127.0.0.1:2379"));
    let second = encoder.encode(headers("http://127.0.0.1:2379"));
    let (a, b) = first.split_at(first.len() / 2);
    let plain = loona_hpack::Encoder::new().encode(headers("127.0.0.1:2379"));
    vec![
        connection(&[
            frame(0x1, 0x4, 1, &first),
            frame(0x0, 0x1, 1, &[0, 0, 0, 0, 2, 8, 1]),
            frame(0x1, 0x4 | 0x1, 3, &second),
        ]),
        connection(&[frame(0x1, 0, 1, a), frame(0x9, 0x4, 1, b)]),
        connection(&[frame(
            0x1,
            0x4 | 0x8,
            1,
            &[[2].as_slice(), &first, &[0, 0]].concat(),
        )]),
        connection(&[frame(0x1, 0x4, 1, &plain)]),
    ]
}

/// The client's bytes (the preface, then the input's frames) fed as they arrive, in pieces
/// whose size the input's first byte picks: bytes out or an error, and the same bytes out
/// as when they arrive at once.
fn http2_headers(input: &[u8]) -> bool {
    let Some((&piece, frames)) = input.split_first() else {
        return false;
    };
    let bytes = [&b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..], frames].concat();
    let feed = |piece: usize| {
        let mut rewriter = Rewriter::default();
        let mut out = Vec::new();
        for chunk in bytes.chunks(piece.max(1)) {
            rewriter.feed(chunk, &mut out).map_err(|e| e.to_string())?;
        }
        Ok::<_, String>(out)
    };
    let whole = feed(bytes.len());
    let pieces = feed(piece as usize);
    assert_eq!(whole, pieces, "fed whole and in pieces of {piece}");
    whole.is_ok()
}

// ---- the bolt reader ----

fn bolt_seeds() -> Vec<Vec<u8>> {
    let mut b = bolt::Buckets::new();
    let big: BTreeMap<Vec<u8>, Vec<u8>> = (0u32..400)
        .map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; (i % 40) as usize]))
        .collect();
    b.insert(b"key".to_vec(), big);
    b.insert(
        b"meta".to_vec(),
        BTreeMap::from([(b"consistent_index".to_vec(), 9u64.to_be_bytes().to_vec())]),
    );
    b.insert(
        b"large".to_vec(),
        BTreeMap::from([(b"v".to_vec(), vec![7; 5000])]),
    );
    b.insert(b"empty".to_vec(), BTreeMap::new());
    vec![bolt::write(&b).unwrap()]
}

/// A zero checksum in a meta page is accepted (as bbolt does for old files), so zeroing
/// both lets mutated meta fields through.
fn seal_bolt(data: &mut [u8]) {
    for page in [0, bolt::PAGE_SIZE] {
        let at = page + 16 + 56;
        if data.len() >= at + 8 {
            data[at..at + 8].fill(0);
        }
    }
}

/// A bolt file reads as buckets or an error; buckets write and read back the same.
fn bolt_file(input: &[u8]) -> bool {
    let _ = bolt::used_bytes(input);
    let Ok(buckets) = bolt::read(input) else {
        return false;
    };
    if let Ok(file) = bolt::write(&buckets) {
        assert_eq!(bolt::read(&file), Ok(buckets));
    }
    true
}

// ---- etcd snapshots (detcdutl snapshot restore, status) ----

/// An etcd database as the Snapshot call writes it: revisions, a lease, auth, meta.
fn etcd_snapshot_seeds() -> Vec<Vec<u8>> {
    let mut t = bolt::Buckets::new();
    let key = (1..60i64)
        .map(|main| {
            let kv = crate::proto::mvccpb::KeyValue {
                key: format!("k{}", main % 7).into_bytes(),
                mod_revision: main,
                create_revision: main,
                version: 1,
                value: vec![b'v'; (main % 30) as usize],
                lease: 7,
            };
            let rev = crate::mvcc::Revision::new(main, 0).to_key(false);
            (rev, kv.encode_to_vec())
        })
        .collect();
    t.insert(b"key".to_vec(), key);
    let lease: Vec<u8> = [7i64, 60, 30]
        .iter()
        .flat_map(|x| x.to_be_bytes())
        .collect();
    t.insert(
        b"lease".to_vec(),
        [(7i64.to_be_bytes().to_vec(), lease)].into(),
    );
    t.insert(
        b"meta".to_vec(),
        [(b"finishedCompactRev".to_vec(), 3u64.to_be_bytes().to_vec())].into(),
    );
    t.insert(
        b"auth".to_vec(),
        [(b"authRevision".to_vec(), 2u64.to_be_bytes().to_vec())].into(),
    );
    let db = bolt::write(&crate::migrate::export(&t).unwrap()).unwrap();
    vec![crate::migrate::with_trailer(db)]
}

/// An etcd snapshot file read as detcdutl reads it: its trailer checked, its status, and
/// every entry imported; every imported row is one the member reads back at boot.
fn etcd_snapshot(input: &[u8]) -> bool {
    let _ = crate::migrate::check_trailer(input, false);
    let _ = crate::migrate::status(input);
    let imported = crate::migrate::import_each(input, |table, _, v| {
        if table == "lease" {
            assert!(
                crate::lease::Lease::decode(v).is_ok(),
                "imported lease {v:?}"
            );
        }
        Ok(())
    });
    imported.is_ok()
}
