//! Membership changes on real detcd processes: the member list, a learner that joins,
//! catches up and is promoted, etcd's refusals of changes that would cost the quorum, a
//! removed member that stops, and leadership moved to a chosen follower.

#![cfg(not(madsim))]

mod common;

use std::time::{Duration, Instant};

use common::cluster::{connect, leader_seen_by, poll, Cluster};
use common::member::{exited, once_healthy, start_joining};
use common::{grpc_message, Member};
use detcd::proto::etcdserverpb::cluster_client::ClusterClient;
use detcd::proto::etcdserverpb::MemberListRequest;
use etcd_client::{GetOptions, MemberAddOptions};

const DEADLINE: Duration = Duration::from_secs(20);

/// Every member lists all three with the names and client URLs they published, and a
/// linearizable list (confirmed by ReadIndex) agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_list_shows_names_and_client_urls() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), &["a", "b", "c"]).await;
    for m in &cluster.members {
        let listed = poll("every member started", DEADLINE, || async {
            let mut c = connect(m.client_port).await?;
            let list = c.member_list().await.ok()?;
            let all_started = list.members().iter().all(|m| !m.client_urls().is_empty());
            all_started.then(|| list.members().to_vec())
        })
        .await;
        let mut seen: Vec<(String, String, String)> = listed
            .iter()
            .map(|l| {
                assert!(!l.is_learner());
                (
                    l.name().to_string(),
                    l.peer_urls().join(","),
                    l.client_urls().join(","),
                )
            })
            .collect();
        seen.sort();
        let want: Vec<_> = cluster
            .members
            .iter()
            .map(|m| (m.name.clone(), m.peer_url(), m.client_url()))
            .collect();
        assert_eq!(seen, want);
        let ids: Vec<u64> = listed.iter().map(|l| l.id()).collect();
        let mut sorted = cluster.ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "members are listed by ID");
    }
    let mut client = ClusterClient::connect(cluster.members[1].client_url())
        .await
        .unwrap();
    let list = client
        .member_list(MemberListRequest { linearizable: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.members.len(), 3);
    assert_eq!(list.header.unwrap().member_id, cluster.ids[1]);
}

/// A learner added and started with `--initial-cluster-state existing` replays the log
/// and serves the keys written before it came; promotion is refused while it is not in
/// sync and succeeds once it is, through a follower (forwarded to the leader).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_joins_catches_up_and_is_promoted() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), &["a", "b", "c"]).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let mut c = connect(cluster.members[follower].client_port)
        .await
        .unwrap();
    for i in 0..20 {
        c.put(format!("k{i}"), format!("v{i}"), None).await.unwrap();
    }
    let err = c.member_promote(0x1234).await.unwrap_err();
    assert_eq!(grpc_message(err), "etcdserver: member not found");

    let d = Member::new("d", dir.path());
    let added = once_healthy(|| {
        let mut c = c.clone();
        let url = d.peer_url();
        async move {
            let opts = MemberAddOptions::new().with_is_learner();
            c.member_add([url], Some(opts)).await
        }
    })
    .await
    .unwrap();
    let learner = added.member().unwrap().clone();
    assert!(learner.is_learner());
    assert_eq!(learner.peer_urls(), [d.peer_url()]);
    assert_eq!(added.member_list().len(), 4);
    let err = c.member_promote(learner.id()).await.unwrap_err();
    assert_eq!(
        grpc_message(err),
        "etcdserver: can only promote a learner member which is in sync with leader"
    );
    let err = c
        .member_add(
            ["http://127.0.0.1:9"],
            Some(MemberAddOptions::new().with_is_learner()),
        )
        .await
        .unwrap_err();
    assert_eq!(
        grpc_message(err),
        "etcdserver: too many learner members in cluster"
    );

    let with_d = format!("{},d={}", cluster.initial_cluster, d.peer_url());
    let _d = start_joining(&d, &with_d);
    poll("the learner to serve the keys", DEADLINE, || async {
        let mut dc = connect(d.client_port).await?;
        let opts = GetOptions::new().with_serializable();
        let got = dc.get("k19", Some(opts)).await.ok()?;
        (got.kvs().first()?.value() == b"v19").then_some(())
    })
    .await;
    poll("the promotion", DEADLINE, || {
        let (mut c, id) = (c.clone(), learner.id());
        async move { c.member_promote(id).await.ok() }
    })
    .await;
    poll("the promoted member listed with its name", DEADLINE, || {
        let (mut c, id) = (c.clone(), learner.id());
        async move {
            let list = c.member_list().await.ok()?;
            let d = list.members().iter().find(|m| m.id() == id)?;
            (!d.is_learner() && d.name() == "d").then_some(())
        }
    })
    .await;
    let mut dc = connect(d.client_port).await.unwrap();
    dc.put("from-d", "1", None).await.unwrap();
    // Every member holds the same keys and membership (the hash covers both).
    let mut ports = cluster.ports();
    ports.push(d.client_port);
    poll("the same hash on all four members", DEADLINE, || async {
        let mut hashes = Vec::new();
        for &p in &ports {
            hashes.push(connect(p).await?.hash().await.ok()?.hash());
        }
        hashes.iter().all(|&h| h == hashes[0]).then_some(())
    })
    .await;
    let err = c.member_promote(cluster.ids[leader]).await.unwrap_err();
    assert_eq!(
        grpc_message(err),
        "etcdserver: can only promote a learner member"
    );
}

/// With one voter down, adding a voter (two of four up) or removing a live one (one of
/// two up) would cost the quorum: both are refused as etcd refuses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_that_would_lose_quorum_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), &["a", "b", "c"]).await;
    let leader = cluster.leader().await;
    let down = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let mut c = connect(cluster.members[leader].client_port).await.unwrap();
    let cc = c.clone();
    let learner = || {
        let mut c = cc.clone();
        let opts = MemberAddOptions::new().with_is_learner();
        async move { c.member_add(["http://127.0.0.1:9"], Some(opts)).await }
    };
    // A learner add passes the health check once every voter has been connected for
    // etcd's health interval; it is harmless, and removed again.
    let probe = once_healthy(learner).await.unwrap();
    let probe = probe.member().unwrap().id();
    c.member_remove(probe).await.unwrap();
    cluster.kill(down);
    // Until the leader notices the dead member, the probe may still pass: remove it again.
    let refused = poll("the leader to notice the dead member", DEADLINE, || async {
        match learner().await {
            Ok(added) => {
                let id = added.member().unwrap().id();
                c.clone().member_remove(id).await.unwrap();
                None
            }
            Err(e) => match grpc_message(e) {
                // Added again within the second the last one was: etcd's member IDs hash
                // the peer URLs and the time in seconds, so it is the removed ID, refused
                // for good. The next second gives a new one.
                m if m == "etcdserver: member not found" => None,
                m => Some(m),
            },
        }
    })
    .await;
    assert_eq!(refused, "etcdserver: unhealthy cluster");
    let err = c
        .member_add(["http://127.0.0.1:8"], None)
        .await
        .unwrap_err();
    assert_eq!(grpc_message(err), "etcdserver: unhealthy cluster");
    let err = c.member_remove(cluster.ids[other]).await.unwrap_err();
    assert_eq!(grpc_message(err), "etcdserver: unhealthy cluster");
    // The dead member itself may go: it is not part of the active quorum.
    c.member_remove(cluster.ids[down]).await.unwrap();
    c.put("still", "serving", None).await.unwrap();
}

/// A single member may add a second voter (etcd's exception); with that one never
/// started, a third would leave the started members without a quorum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_to_unstarted_voters_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), &["a"]).await;
    let mut c = connect(cluster.members[0].client_port).await.unwrap();
    c.member_add(["http://127.0.0.1:9"], None).await.unwrap();
    let err = c
        .member_add(["http://127.0.0.1:8"], None)
        .await
        .unwrap_err();
    assert_eq!(
        grpc_message(err),
        "etcdserver: re-configuration failed due to not enough started members"
    );
    let err = c
        .member_add(
            ["http://127.0.0.1:9"],
            Some(MemberAddOptions::new().with_is_learner()),
        )
        .await
        .unwrap_err();
    assert_eq!(grpc_message(err), "etcdserver: unhealthy cluster");
}

/// A removed member stops by itself, its ID cannot be removed again, and the other two
/// keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_member_stops_and_the_rest_serve() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::start(dir.path(), &["a", "b", "c"]).await;
    let leader = cluster.leader().await;
    let gone = (leader + 1) % 3;
    let mut c = connect(cluster.members[leader].client_port).await.unwrap();
    let resp = once_healthy(|| {
        let mut c = c.clone();
        let id = cluster.ids[gone];
        async move { c.member_remove(id).await }
    })
    .await
    .unwrap();
    assert_eq!(resp.members().len(), 2);
    poll("the removed member to stop", DEADLINE, || {
        let stopped = exited(cluster.procs[gone].as_mut().unwrap());
        async move { stopped.then_some(()) }
    })
    .await;
    let err = c.member_remove(cluster.ids[gone]).await.unwrap_err();
    assert_eq!(grpc_message(err), "etcdserver: member not found");
    c.put("after", "removal", None).await.unwrap();
    let rest = (leader + 2) % 3;
    let mut r = connect(cluster.members[rest].client_port).await.unwrap();
    let got = r.get("after", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"removal");
    let list = r.member_list().await.unwrap();
    assert!(list.members().iter().all(|m| m.id() != cluster.ids[gone]));
}

/// A member started with `--initial-cluster-state existing` that no `member add` made
/// keeps asking for the join timeout (an answer without it may only be stale), then stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_without_member_add_stops_after_the_join_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), &["a"]).await;
    let stranger = Member::new("s", dir.path());
    let with_s = format!("{},s={}", cluster.initial_cluster, stranger.peer_url());
    let started = Instant::now();
    let mut p = start_joining(&stranger, &with_s);
    poll(
        "the unlisted member to stop",
        Duration::from_secs(30),
        || {
            let stopped = exited(&mut p);
            async move { stopped.then_some(()) }
        },
    )
    .await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(9),
        "stopped after only {took:?}"
    );
}

/// MoveLeader hands leadership to the chosen follower; a follower refuses to move it, and
/// an unknown transferee is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_leader_to_a_chosen_follower() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path(), &["a", "b", "c"]).await;
    let leader = cluster.leader().await;
    let target = (leader + 2) % 3;
    let mut f = connect(cluster.members[target].client_port).await.unwrap();
    let err = f.move_leader(cluster.ids[leader]).await.unwrap_err();
    assert_eq!(grpc_message(err), "etcdserver: not leader");
    let mut l = connect(cluster.members[leader].client_port).await.unwrap();
    let err = l.move_leader(0x1234).await.unwrap_err();
    assert_eq!(grpc_message(err), "etcdserver: bad leader transferee");
    l.move_leader(cluster.ids[target]).await.unwrap();
    for m in &cluster.members {
        poll("every member to see the new leader", DEADLINE, || async {
            (leader_seen_by(m.client_port).await? == cluster.ids[target]).then_some(())
        })
        .await;
    }
    f.put("led-by", "target", None).await.unwrap();
}
