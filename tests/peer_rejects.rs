//! Over the real peer transport (gRPC on TCP), a malformed Raft message under a member's ID
//! reaches Raft and is refused: a proposal without entries to the leader (the message that
//! once stopped it with an assertion) and a heartbeat committing `u64::MAX`. Each shows in
//! `detcd_network_peer_rejected_messages_total`, and the cluster keeps serving.

#![cfg(not(madsim))]

mod common;

use std::time::Duration;

use common::cluster::{connect, poll, Cluster};
use common::http::{get, sample};
use detcd::proto::peerpb::peer_client::PeerClient;
use detcd::proto::peerpb::PeerMessage;
use detcd::proto::raftpb::{Message, MessageType};

const REJECTED: &str = "detcd_network_peer_rejected_messages_total";

async fn rejected(port: u16) -> Option<f64> {
    sample(&get(port, "/metrics").await.ok()?.body, REJECTED)
}

#[tokio::test]
async fn malformed_messages_from_a_member_id_are_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), &["a", "b", "c"]).await;
    let leader = cluster.leader().await;
    let other = (leader + 1) % 3;
    let mut c = connect(cluster.members[leader].client_port).await.unwrap();
    let status = c.status().await.unwrap();
    let header = status.header().unwrap();
    let (cluster_id, term) = (header.cluster_id(), header.raft_term());
    let port = cluster.members[leader].client_port;
    assert_eq!(rejected(port).await, Some(0.0));

    let message = |t: MessageType, term: u64, commit: u64| {
        let mut m = Message {
            from: cluster.ids[other],
            to: cluster.ids[leader],
            term,
            commit,
            ..Message::default()
        };
        m.set_type(t);
        PeerMessage {
            cluster_id,
            message: Some(m),
        }
    };
    let lies = vec![
        message(MessageType::MsgProp, 0, 0),
        message(MessageType::MsgHeartbeat, term, u64::MAX),
    ];
    let mut peer = PeerClient::connect(cluster.members[leader].peer_url())
        .await
        .unwrap();
    peer.stream(futures::stream::iter(lies)).await.unwrap();

    poll("both lies counted", Duration::from_secs(10), || async {
        (rejected(port).await? == 2.0).then_some(())
    })
    .await;
    c.put("still", "serving", None).await.unwrap();
    assert_eq!(cluster.leader().await, leader, "no election was caused");
}
