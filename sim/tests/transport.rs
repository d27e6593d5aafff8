//! The peer transport on madsim's network: messages flow between two members, stop while
//! the receiver is cut off, and flow again as soon as the partition heals; all in virtual
//! time.

#![cfg(madsim)]

use std::net::SocketAddr;
use std::time::Duration;

use detcd::proto::raftpb::{Message, MessageType};
use detcd::server::transport::{PeerEvent, PeerServer, Transport};
use madsim::net::NetSim;
use madsim::runtime::Handle;
use tokio::sync::mpsc;

const CLUSTER: u64 = 7;

fn msg(index: u64) -> Message {
    let mut m = Message {
        from: 1,
        to: 2,
        index,
        ..Default::default()
    };
    m.set_type(MessageType::MsgHeartbeat);
    m
}

/// Sends until one message arrives within `deadline` of virtual time.
async fn delivered_within(
    a: &Transport,
    rx: &mut mpsc::Receiver<Message>,
    deadline: Duration,
) -> bool {
    let start = tokio::time::Instant::now();
    let mut i = 0;
    while start.elapsed() < deadline {
        i += 1;
        a.send(msg(i));
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), rx.recv()).await {
            return true;
        }
    }
    false
}

#[madsim::test]
async fn partition_stops_and_heal_resumes_delivery() {
    let handle = Handle::current();
    let b_addr: SocketAddr = "10.0.0.2:2380".parse().unwrap();
    let (inbound, mut rx) = mpsc::channel(1024);
    let b = handle.create_node().name("b").ip(b_addr.ip()).build();
    b.spawn(async move {
        let (transport, _) = Transport::new(2, CLUSTER);
        transport.add_peer(1, "http://10.0.0.1:2380");
        tonic::transport::Server::builder()
            .add_service(PeerServer::new(transport.service(inbound)))
            .serve(b_addr)
            .await
            .unwrap();
    });
    let a = handle
        .create_node()
        .name("a")
        .ip("10.0.0.1".parse().unwrap())
        .build();
    let (done_tx, mut done_rx) = mpsc::channel(1);
    let b_id = b.id();
    a.spawn(async move {
        let (a, mut events) = Transport::new(1, CLUSTER);
        a.add_peer(2, &format!("http://{b_addr}"));
        assert!(
            delivered_within(&a, &mut rx, Duration::from_secs(5)).await,
            "no delivery at first"
        );

        // Longer than a stream may stay silent: the stream open before the partition waits
        // on retransmissions (about 4 s after this heal), so delivery within a second of
        // the heal needs the transport to have redialled.
        NetSim::current().clog_node(b_id);
        while rx.try_recv().is_ok() {}
        assert!(
            !delivered_within(&a, &mut rx, Duration::from_secs(6)).await,
            "delivered across a partition"
        );
        NetSim::current().unclog_node(b_id);
        assert!(
            delivered_within(&a, &mut rx, Duration::from_secs(1)).await,
            "no delivery within a second of the heal"
        );
        let _ = events.try_recv();
        done_tx.send(()).await.unwrap();
    });
    done_rx.recv().await.expect("the sender node finished");
}

#[test]
fn unreachable_is_reported_when_nobody_listens() {
    let rt = madsim::runtime::Runtime::with_seed_and_config(5, madsim::Config::default());
    rt.block_on(async {
        let node = Handle::current()
            .create_node()
            .ip("10.0.0.1".parse().unwrap())
            .build();
        node.spawn(async {
            let (a, mut events) = Transport::new(1, CLUSTER);
            a.add_peer(2, "http://10.0.0.9:2380");
            a.send(msg(1));
            let event = tokio::time::timeout(Duration::from_secs(30), events.recv()).await;
            assert_eq!(event.unwrap(), Some(PeerEvent::Unreachable(2)));
        })
        .await
        .unwrap();
    });
}
