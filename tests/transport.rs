//! The peer transport over real loopback sockets: delivery in order, reconnection once the
//! peer comes up, and refusal of another cluster's messages and of non-members' ones.

#![cfg(not(madsim))] // sim/tests/transport.rs covers the simulated network.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use detcd::proto::raftpb::{Message, MessageType};
use detcd::server::transport::{PeerEvent, PeerServer, Transport};
use tokio::sync::{mpsc, oneshot};

const CLUSTER: u64 = 0xc1;

fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn msg(from: u64, to: u64, index: u64) -> Message {
    let mut m = Message {
        from,
        to,
        index,
        term: 1,
        ..Default::default()
    };
    m.set_type(MessageType::MsgApp);
    m
}

/// Serves `transport`'s peer service on `addr` until the returned sender is dropped.
fn serve(
    transport: &Transport,
    addr: SocketAddr,
) -> (mpsc::Receiver<Message>, oneshot::Sender<()>) {
    let (inbound, rx) = mpsc::channel(1024);
    let (stop, stopped) = oneshot::channel::<()>();
    let service = transport.service(inbound);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(PeerServer::new(service))
            .serve_with_shutdown(addr, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    (rx, stop)
}

/// Sends numbered messages until one arrives or the deadline passes; returns its index.
async fn send_until_delivered(
    sender: &Transport,
    to: u64,
    rx: &mut mpsc::Receiver<Message>,
    deadline: Duration,
) -> Option<u64> {
    let start = Instant::now();
    let mut index = 1000;
    while start.elapsed() < deadline {
        index += 1;
        sender.send(msg(1, to, index));
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            return Some(m.index);
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_arrive_in_order_after_the_peer_comes_up() {
    let (a, mut a_events) = Transport::new(1, CLUSTER);
    let (b, _) = Transport::new(2, CLUSTER);
    b.add_peer(1, &format!("http://{}", free_addr()));
    let addr = free_addr();
    a.add_peer(2, &format!("http://{addr}"));
    assert!(a.send(msg(1, 2, 1)));
    let event = tokio::time::timeout(Duration::from_secs(10), a_events.recv()).await;
    assert_eq!(
        event.unwrap(),
        Some(PeerEvent::Unreachable(2)),
        "nobody listens yet"
    );

    let (mut rx, _stop) = serve(&b, addr);
    let first = send_until_delivered(&a, 2, &mut rx, Duration::from_secs(10)).await;
    assert!(first.is_some(), "no message arrived after the peer came up");
    for i in 1..=500 {
        assert!(a.send(msg(1, 2, i)), "queue full after {i}");
    }
    let mut got = Vec::new();
    while got.len() < 500 {
        let m = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("messages stopped arriving")
            .unwrap();
        if m.index <= 500 {
            got.push(m.index);
        }
    }
    assert_eq!(
        got,
        (1..=500).collect::<Vec<_>>(),
        "out of order or duplicated"
    );
    assert!(
        !a.send(msg(1, 9, 1)),
        "a message to an unknown peer was accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clusters_messages_are_refused() {
    let (b, _) = Transport::new(2, CLUSTER);
    b.add_peer(1, &format!("http://{}", free_addr()));
    let addr = free_addr();
    let (mut rx, _stop) = serve(&b, addr);
    let (stranger, mut events) = Transport::new(1, CLUSTER + 1);
    stranger.add_peer(2, &format!("http://{addr}"));
    let delivered = send_until_delivered(&stranger, 2, &mut rx, Duration::from_secs(2)).await;
    assert_eq!(
        delivered, None,
        "a message from another cluster was delivered"
    );
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv()).await;
    assert_eq!(event.unwrap(), Some(PeerEvent::Unreachable(2)));

    let (friend, _) = Transport::new(1, CLUSTER);
    friend.add_peer(2, &format!("http://{addr}"));
    let delivered = send_until_delivered(&friend, 2, &mut rx, Duration::from_secs(10)).await;
    assert!(
        delivered.is_some(),
        "the same cluster's messages did not arrive"
    );
}

/// A sender that knows the cluster ID but is not a member the receiver knows: its messages
/// are dropped and counted, and those of a known member on the same port still arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_members_messages_are_dropped_and_counted() {
    let (b, _) = Transport::new(2, CLUSTER);
    b.add_peer(1, &format!("http://{}", free_addr()));
    let addr = free_addr();
    let (inbound, mut rx) = mpsc::channel(1024);
    let dropped = prometheus_client::metrics::counter::Counter::<u64>::default();
    let service = b.service(inbound).count_unknown_senders(dropped.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(PeerServer::new(service))
            .serve(addr),
    );
    let (stranger, _) = Transport::new(9, CLUSTER);
    stranger.add_peer(2, &format!("http://{addr}"));
    let start = Instant::now();
    while dropped.get() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nothing was dropped"
        );
        stranger.send(msg(9, 2, 1));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        rx.try_recv().is_err(),
        "a non-member's message was delivered"
    );

    let (member, _) = Transport::new(1, CLUSTER);
    member.add_peer(2, &format!("http://{addr}"));
    let delivered = send_until_delivered(&member, 2, &mut rx, Duration::from_secs(10)).await;
    assert!(delivered.is_some(), "a member's message did not arrive");
}
