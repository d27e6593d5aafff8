//! Where a member's membership comes from when it starts, and its announcement once
//! started.
//!
//! After the first start the backend has it. A member of a new cluster starts from
//! `--initial-cluster`. A member joining an existing cluster (`--initial-cluster-state
//! existing`, after `member add`) asks the members listed in `--initial-cluster` for the
//! cluster's ID and members, as etcd does over its peer URLs, takes the ID `member add`
//! gave the member with its peer URLs, and starts with the others' configuration: it
//! becomes part of it when it applies its own addition from the log, which it catches up
//! on from the leader.

use std::path::Path;
use std::time::Duration;

use super::boot::BootError;
use super::config::{ClusterState, ServerConfig};
use super::membership::{save_conf_state, RaftCluster};
use super::store::{lock, SharedStore};
use super::v3::Server;
use crate::backend::{get_u64, put_u64, BackendError, META};
use crate::net::Dialer;
use crate::proto::etcdserverpb::{Member, MemberListRequest, MemberListResponse};
use crate::proto::internalpb::internal_raft_request::Request as Internal;
use crate::proto::internalpb::{MemberAttrSetRequest, MemberAttrSetResponse};
use crate::proto::peerpb::membership_client::MembershipClient;
use crate::runtime::{Clock, Disk};
use crate::wal::Wal;

/// Where the cluster and member IDs are kept once known (etcd reads them from its WAL
/// metadata).
const CLUSTER_ID_KEY: &[u8] = b"clusterID";
const MEMBER_ID_KEY: &[u8] = b"memberID";
/// How long to ask the existing members before giving up, how long one may take to
/// answer, and how long to wait before asking them all again.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
const JOIN_ASK: Duration = Duration::from_secs(1);
const JOIN_RETRY: Duration = Duration::from_millis(500);
/// How long one attempt to publish this member's attributes may take, and how long to
/// wait before the next.
const PUBLISH_ATTEMPT: Duration = Duration::from_secs(1);
const PUBLISH_RETRY: Duration = Duration::from_millis(500);

/// Who this member is and in which cluster.
#[derive(Debug)]
pub struct Identity {
    pub member_id: u64,
    pub cluster_id: u64,
    pub cluster: RaftCluster,
}

/// The IDs and membership this member starts with, saved to the backend (with Raft's
/// configuration) the first time.
pub async fn cluster_at_start(
    cfg: &ServerConfig,
    store: &SharedStore,
    disk: &dyn Disk,
    wal_dir: &Path,
    dialer: &Dialer,
) -> Result<Identity, BootError> {
    {
        let mut st = lock(store);
        let backend = st.backend();
        let unreadable = |e: BackendError| BootError::Backend {
            path: backend.path().to_path_buf(),
            reason: e.to_string(),
        };
        let cluster = RaftCluster::load(backend).map_err(unreadable)?;
        if !cluster.is_empty() {
            // A snapshot from the leader replaces the backend, the leader's own ID in it
            // included: the WAL, created with this member's IDs, names this member.
            let (member_id, cluster_id) = if Wal::exists(disk, wal_dir) {
                let m = Wal::read_metadata(disk, wal_dir).map_err(stopped)?;
                (m.member_id, m.cluster_id)
            } else {
                let tx = backend.tx();
                (
                    get_u64(tx, META, MEMBER_ID_KEY).map_err(unreadable)?,
                    get_u64(tx, META, CLUSTER_ID_KEY).map_err(unreadable)?,
                )
            };
            return Ok(Identity {
                member_id,
                cluster_id,
                cluster,
            });
        }
    }
    let mut id = match cfg.initial_cluster_state {
        ClusterState::New => {
            if !Wal::exists(disk, wal_dir) {
                refuse_if_bootstrapped(cfg, dialer).await?;
            }
            Identity {
                member_id: cfg.member_id(),
                cluster_id: cfg.cluster_id(),
                cluster: initial_members(cfg),
            }
        }
        ClusterState::Existing => existing_cluster(cfg, dialer).await?,
    };
    let mut st = lock(store);
    let backend = st.backend();
    id.cluster.save_all(backend).map_err(stopped)?;
    save_conf_state(backend, &id.cluster.conf_state()).map_err(stopped)?;
    put_u64(backend.tx(), META, CLUSTER_ID_KEY, id.cluster_id).map_err(stopped)?;
    put_u64(backend.tx(), META, MEMBER_ID_KEY, id.member_id).map_err(stopped)?;
    backend.commit().map_err(stopped)?;
    Ok(id)
}

fn stopped(e: impl ToString) -> BootError {
    BootError::Stopped(e.to_string())
}

/// The members of `--initial-cluster`, named as it names them (etcd does the same).
fn initial_members(cfg: &ServerConfig) -> RaftCluster {
    RaftCluster::new(cfg.initial_cluster.iter().map(|m| Member {
        id: m.id,
        name: m.name.clone(),
        peer_ur_ls: m.peer_urls.iter().map(ToString::to_string).collect(),
        ..Member::default()
    }))
}

/// A member of a new cluster that has no data yet must not be one that already started:
/// its data directory was wiped, and with an empty log it would vote as if it had never
/// promised anything, and could help elect a leader without committed entries. As etcd's
/// `isMemberBootstrapped`, each other member of `--initial-cluster` is asked once; if one
/// lists this member with client URLs (published once it started), the start stops with
/// etcd's message. Peers that do not answer (all of a new cluster starting) are no proof.
async fn refuse_if_bootstrapped(cfg: &ServerConfig, dialer: &Dialer) -> Result<(), BootError> {
    let me = cfg.member_id();
    let peers = cfg.initial_cluster.iter().filter(|m| m.id != me);
    for url in peers.flat_map(|m| m.peer_urls.iter().map(ToString::to_string)) {
        let Some(resp) = ask_members(dialer, &url).await else {
            continue;
        };
        if resp
            .members
            .iter()
            .any(|m| m.id == me && !m.client_ur_ls.is_empty())
        {
            return Err(BootError::Stopped(format!(
                "member {me:x} has already been bootstrapped"
            )));
        }
    }
    Ok(())
}

/// Asks the other members of `--initial-cluster` for the cluster until one lists this
/// member's peer URLs (added with `member add`). This member is left out of the membership
/// it starts with: its addition is in the log.
///
/// An answer without this member is not final: `member add` returns once the member that
/// took it has applied the addition, and a follower asked a moment later (or one cut off
/// from the leader) may not have yet. So every peer is asked, again and again, until
/// [`JOIN_TIMEOUT`]; only then does a member that no answer lists stop.
async fn existing_cluster(cfg: &ServerConfig, dialer: &Dialer) -> Result<Identity, BootError> {
    let mut mine: Vec<String> = cfg
        .initial_advertise_peer_urls
        .iter()
        .map(ToString::to_string)
        .collect();
    mine.sort();
    let urls: Vec<String> = cfg
        .initial_cluster
        .iter()
        .flat_map(|m| m.peer_urls.iter().map(ToString::to_string))
        .filter(|u| !mine.contains(u))
        .collect();
    let deadline = Clock.now() + JOIN_TIMEOUT;
    // Peers that answered without this member, in the order of `urls`.
    let mut without_me: Vec<&str> = Vec::new();
    loop {
        for url in &urls {
            let Some(resp) = ask_members(dialer, url).await else {
                continue;
            };
            if let Some(id) = joined(resp, &mine) {
                return Ok(id);
            }
            if !without_me.contains(&url.as_str()) {
                without_me.push(url);
            }
        }
        if Clock.now() >= deadline {
            return Err(BootError::Stopped(if without_me.is_empty() {
                format!("cannot fetch the cluster from the peer URLs {urls:?}")
            } else {
                format!(
                    "no member with peer URLs {mine:?} in the cluster that {without_me:?} \
                     reported for {JOIN_TIMEOUT:?}: add it with `member add` first"
                )
            }));
        }
        tracing::info!(
            peers = ?urls,
            answered_without_this_member = ?without_me,
            "waiting for a peer to list this member's peer URLs {mine:?}"
        );
        Clock.sleep(JOIN_RETRY).await;
    }
}

/// One peer's membership, or None if it does not answer within [`JOIN_ASK`].
async fn ask_members(dialer: &Dialer, url: &str) -> Option<MemberListResponse> {
    let asked = async {
        let mut client = MembershipClient::new(dialer.connect(url).await.ok()?);
        let resp = client
            .member_list(MemberListRequest::default())
            .await
            .ok()?;
        Some(resp.into_inner())
    };
    tokio::time::timeout(JOIN_ASK, asked).await.ok().flatten()
}

/// This member's identity from a peer's membership, if it lists the peer URLs `mine`
/// (sorted).
fn joined(resp: MemberListResponse, mine: &[String]) -> Option<Identity> {
    let me = resp
        .members
        .iter()
        .find(|m| {
            let mut theirs = m.peer_ur_ls.clone();
            theirs.sort();
            theirs == mine
        })?
        .id;
    let others = resp.members.into_iter().filter(|m| m.id != me);
    Some(Identity {
        member_id: me,
        cluster_id: resp.header.map_or(0, |h| h.cluster_id),
        cluster: RaftCluster::new(others),
    })
}

/// Publishes this member's name and client URLs through the log until it is applied
/// (etcd's publishV3), so that every member lists them. Each attempt waits for a leader
/// and gives up after [`PUBLISH_ATTEMPT`]: a proposal forwarded before the link to the
/// leader was up is lost, and should not stay pending for a whole request timeout.
pub async fn publish(server: Server, name: String, client_urls: Vec<String>) {
    let request = MemberAttrSetRequest {
        member_id: server.member_id,
        name,
        client_urls,
    };
    let mut status = server.member.status_changes();
    loop {
        while status.borrow_and_update().leader == 0 {
            if status.changed().await.is_err() {
                return;
            }
        }
        let attempt =
            server.propose::<MemberAttrSetResponse>(Internal::MemberAttrSet(request.clone()));
        if let Ok(Ok(_)) = tokio::time::timeout(PUBLISH_ATTEMPT, attempt).await {
            return;
        }
        Clock.sleep(PUBLISH_RETRY).await;
    }
}
