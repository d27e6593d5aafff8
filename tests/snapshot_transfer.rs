//! The Snapshot peer call over loopback: a backend copy streamed by the transport arrives
//! whole and verified before its MsgSnap reaches Raft; damaged, short, oversized or foreign
//! streams are refused with a clear error and leave no file behind.

#![cfg(not(madsim))] // sim/tests/snapshot.rs covers the simulated network.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use detcd::backend::{get_u64, put_u64, Backend, META};
use detcd::proto::peerpb::peer_client::PeerClient;
use detcd::proto::peerpb::{PeerMessage, SnapshotChunk};
use detcd::proto::raftpb::{Message, MessageType, Snapshot, SnapshotMetadata};
use detcd::raft::SnapshotStatus;
use detcd::runtime::{Disk, RealDisk};
use detcd::server::snapshot::{received_db_name, Inbox, Outgoing, MAX_SNAPSHOT_BYTES};
use detcd::server::transport::{PeerEvent, PeerServer, Transport};
use tokio::sync::mpsc;
use tonic::Code;

const CLUSTER: u64 = 0xc1;
const INDEX: u64 = 7;

fn msg_snap(to: u64) -> Message {
    let mut m = Message {
        from: 1,
        to,
        term: 2,
        snapshot: Some(Snapshot {
            data: Vec::new(),
            metadata: Some(SnapshotMetadata {
                conf_state: None,
                index: INDEX,
                term: 2,
            }),
        }),
        ..Default::default()
    };
    m.set_type(MessageType::MsgSnap);
    m
}

/// Member 2's peer service, accepting snapshots into `dir`; returns its address and inbound.
async fn serve(dir: &Path) -> (SocketAddr, mpsc::Receiver<Message>) {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (transport, _events) = Transport::new(2, CLUSTER);
    // The sender, member 1, is known; nothing listens at its URL.
    transport.add_peer(1, "http://127.0.0.1:9");
    let (inbound, rx) = mpsc::channel(16);
    let service = transport.service(inbound).accept_snapshots(Inbox {
        disk: Arc::new(RealDisk),
        dir: dir.to_path_buf(),
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(PeerServer::new(service))
            .serve(addr),
    );
    (addr, rx)
}

async fn client(addr: SocketAddr) -> PeerClient<tonic::transport::Channel> {
    for _ in 0..100 {
        if let Ok(c) = PeerClient::connect(format!("http://{addr}")).await {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("peer service at {addr} never came up");
}

fn chunk(message: Option<Message>, total_size: u64, data: &[u8]) -> SnapshotChunk {
    SnapshotChunk {
        cluster_id: CLUSTER,
        message,
        total_size,
        data: data.to_vec(),
        crc32: crc32fast::hash(data),
    }
}

fn files(dir: &Path) -> Vec<String> {
    RealDisk.list(dir).unwrap()
}

#[tokio::test]
async fn a_streamed_backend_arrives_verified_before_its_msgsnap() {
    let dir = tempfile::tempdir().unwrap();
    let (from_dir, to_dir) = (dir.path().join("1"), dir.path().join("2"));
    RealDisk.create_dir_all(&to_dir).unwrap();
    let (addr, mut inbound) = serve(&to_dir).await;
    let disk: Arc<dyn Disk> = Arc::new(RealDisk);
    let mut backend = Backend::open(disk.as_ref(), &from_dir.join("db")).unwrap();
    put_u64(backend.tx(), META, b"applied", 41).unwrap();
    backend.commit().unwrap();
    let source = backend.snapshot_source().unwrap();
    let (sender, mut events) = Transport::new(1, CLUSTER);
    sender.add_peer(2, &format!("http://{addr}"));
    sender.send_snapshot(Outgoing {
        message: msg_snap(2),
        source,
        disk: disk.clone(),
        dir: from_dir.clone(),
    });
    let event = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match events.recv().await {
                Some(PeerEvent::Unreachable(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(
        event,
        Some(PeerEvent::Snapshot {
            to: 2,
            status: SnapshotStatus::Finish
        })
    );
    let stepped = inbound.try_recv().expect("the MsgSnap was handed to Raft");
    assert_eq!(stepped.r#type(), MessageType::MsgSnap);
    let received = Backend::open(disk.as_ref(), &to_dir.join(received_db_name(INDEX))).unwrap();
    assert_eq!(get_u64(received.tx(), META, b"applied").unwrap(), 41);
    assert_eq!(files(&to_dir), vec![received_db_name(INDEX)]);
    assert_eq!(
        files(&from_dir),
        vec!["db".to_string()],
        "the copy is removed"
    );
}

#[tokio::test]
async fn damaged_short_oversized_foreign_and_strangers_streams_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, mut inbound) = serve(dir.path()).await;
    let mut c = client(addr).await;
    let refuse = |chunks: Vec<SnapshotChunk>| {
        let mut c = c.clone();
        async move {
            c.snapshot(futures::stream::iter(chunks))
                .await
                .expect_err("refused")
        }
    };

    let mut bad = chunk(Some(msg_snap(2)), 8, b"12345678");
    bad.crc32 ^= 1;
    let e = refuse(vec![bad]).await;
    assert_eq!(e.code(), Code::DataLoss);
    assert_eq!(e.message(), "snapshot chunk at offset 0: crc32 mismatch");

    let e = refuse(vec![chunk(Some(msg_snap(2)), 16, b"12345678")]).await;
    assert_eq!(e.code(), Code::DataLoss);
    assert_eq!(e.message(), "snapshot truncated: 8 of 16 bytes");

    let e = refuse(vec![chunk(Some(msg_snap(2)), 8, b"not redb")]).await;
    assert_eq!(e.code(), Code::DataLoss);
    assert!(e.message().contains("integrity"), "{}", e.message());

    let e = refuse(vec![chunk(Some(msg_snap(2)), MAX_SNAPSHOT_BYTES + 1, b"")]).await;
    assert_eq!(e.code(), Code::ResourceExhausted);

    let mut foreign = chunk(Some(msg_snap(2)), 0, b"");
    foreign.cluster_id = 0xc2;
    assert_eq!(refuse(vec![foreign]).await.code(), Code::FailedPrecondition);
    assert_eq!(
        refuse(vec![chunk(Some(msg_snap(3)), 0, b"")]).await.code(),
        Code::InvalidArgument
    );
    assert_eq!(
        refuse(vec![chunk(None, 0, b"")]).await.code(),
        Code::InvalidArgument
    );
    let mut stranger = msg_snap(2);
    stranger.from = 9;
    let e = refuse(vec![chunk(Some(stranger), 8, b"12345678")]).await;
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(e.message(), "snapshot from 9, which is not a member");

    // A MsgSnap without its database is refused on the message stream too.
    let e = c
        .stream(futures::stream::iter(vec![PeerMessage {
            cluster_id: CLUSTER,
            message: Some(msg_snap(2)),
        }]))
        .await
        .expect_err("refused");
    assert_eq!(e.code(), Code::InvalidArgument);

    assert!(inbound.try_recv().is_err(), "nothing reached Raft");
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
}
