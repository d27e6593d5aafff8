//! The cluster's membership as etcd keeps it (its `RaftCluster`): every member with its
//! peer URLs, its published name and client URLs and whether it is a learner, and the IDs
//! removed for good. It changes only by applying log entries (Raft configuration changes,
//! whose context carries the member, and published attributes), so every member holds the
//! same one; the backend's `members` and `members_removed` tables keep it across restarts,
//! with Raft's configuration (`confState` in `meta`) written in the same batch.
//!
//! The checks etcd makes before proposing a change with `--strict-reconfig-check` (its
//! default) are here too, as pure functions of the membership and what the caller knows
//! about connectivity and Raft progress.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use prost::Message;
use redb::ReadableTable;

use crate::backend::{be, corrupt, Backend, BackendError, MEMBERS, MEMBERS_REMOVED, META};
use crate::proto::etcdserverpb::Member;
use crate::proto::raftpb::{ConfChange, ConfChangeType, ConfState};

/// Learners a cluster may have at once (etcd's maxLearners).
pub const MAX_LEARNERS: usize = 1;
/// A learner is in sync when its match index is at least this share of the leader's
/// (etcd's readyPercent in isLearnerReady).
const LEARNER_READY_SHARE: f64 = 0.9;
/// Where Raft's configuration after the last applied change is kept.
pub(crate) const CONF_STATE_KEY: &[u8] = b"confState";

/// Why a membership change is refused; the messages are etcd's, as clients see them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// etcd reports both an unknown and a removed ID so (ErrIDNotFound, ErrIDRemoved).
    #[error("etcdserver: member not found")]
    NotFound,
    #[error("etcdserver: member ID already exist")]
    Exists,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: given member URLs are invalid")]
    BadUrls,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStarted,
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    #[error("etcdserver: can only promote a learner member")]
    NotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
}

/// The membership shared by the apply loop (writes) and the services (reads).
pub type SharedCluster = Arc<Mutex<RaftCluster>>;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RaftCluster {
    members: BTreeMap<u64, Member>,
    removed: BTreeSet<u64>,
}

/// A member is started once it has published its name (etcd's IsStarted).
fn started(m: &Member) -> bool {
    !m.name.is_empty()
}

/// The smallest majority of `n`.
fn quorum(n: usize) -> usize {
    n / 2 + 1
}

impl RaftCluster {
    /// A membership of `members` (a new cluster's, or an existing one's as a peer reports
    /// it to a joining member).
    pub fn new(members: impl IntoIterator<Item = Member>) -> Self {
        RaftCluster {
            members: members.into_iter().map(|m| (m.id, m)).collect(),
            removed: BTreeSet::new(),
        }
    }

    /// Every member, by ascending ID (etcd lists them so).
    pub fn members(&self) -> Vec<Member> {
        self.members.values().cloned().collect()
    }

    pub fn member(&self, id: u64) -> Option<&Member> {
        self.members.get(&id)
    }

    pub fn is_removed(&self, id: u64) -> bool {
        self.removed.contains(&id)
    }

    pub fn removed(&self) -> impl Iterator<Item = u64> + '_ {
        self.removed.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn voters(&self) -> impl Iterator<Item = &Member> {
        self.members.values().filter(|m| !m.is_learner)
    }

    /// Raft's configuration for these members.
    pub fn conf_state(&self) -> ConfState {
        let (learners, voters): (Vec<&Member>, Vec<&Member>) =
            self.members.values().partition(|m| m.is_learner);
        ConfState {
            voters: voters.iter().map(|m| m.id).collect(),
            learners: learners.iter().map(|m| m.id).collect(),
            ..ConfState::default()
        }
    }

    fn peer_urls_taken(&self, except: u64, urls: &[String]) -> bool {
        self.members
            .values()
            .filter(|m| m.id != except)
            .any(|m| m.peer_ur_ls.iter().any(|u| urls.contains(u)))
    }

    /// etcd's IsReadyToAddVotingMember: the started voters must still be a quorum with
    /// one more voter (a lone member may add a second).
    pub fn ready_to_add_voter(&self) -> bool {
        let members = self.voters().count() + 1;
        let started = self.voters().filter(|m| started(m)).count();
        (started == 1 && members == 2) || started >= quorum(members)
    }

    /// etcd's IsReadyToRemoveVotingMember: the other started voters must be a quorum of
    /// the voters left.
    pub fn ready_to_remove_voter(&self, id: u64) -> bool {
        let rest: Vec<&Member> = self.voters().filter(|m| m.id != id).collect();
        rest.iter().filter(|m| started(m)).count() >= quorum(rest.len())
    }

    /// etcd's IsReadyToPromoteMember: the started voters and the learner (counted as
    /// started, as etcd counts it) must be a quorum of the voters after the promotion.
    pub fn ready_to_promote(&self) -> bool {
        let members = self.voters().count() + 1;
        let started = self.voters().filter(|m| started(m)).count() + 1;
        started >= quorum(members)
    }

    /// etcd's health check before adding a voter: every other voter has been connected
    /// for the health interval (`connected(id)` says so).
    pub fn fully_connected(&self, me: u64, connected: impl Fn(u64) -> bool) -> bool {
        self.voters()
            .filter(|m| m.id != me)
            .all(|m| connected(m.id))
    }

    /// etcd's health check before removing voter `id`: a member that is down may go;
    /// otherwise the connected voters left must still be a quorum.
    pub fn may_remove_connected(&self, me: u64, id: u64, connected: impl Fn(u64) -> bool) -> bool {
        if id != me && !connected(id) {
            return true;
        }
        let voters = self.voters().count();
        let active = self
            .voters()
            .filter(|m| m.id == me || connected(m.id))
            .count();
        active.saturating_sub(1) >= quorum(voters.saturating_sub(1))
    }

    /// The checks etcd makes when a change is applied (ValidateConfigurationChange).
    fn validate(&self, cc: &ConfChange, m: Option<&Member>) -> Result<(), MembershipError> {
        let id = cc.node_id;
        if self.removed.contains(&id) {
            return Err(MembershipError::NotFound);
        }
        let existing = self.members.get(&id);
        match cc.r#type() {
            ConfChangeType::ConfChangeAddNode => {
                let m = m.ok_or(MembershipError::BadUrls)?;
                match existing {
                    Some(e) if !e.is_learner => Err(MembershipError::Exists),
                    // A voter's add for a learner is its promotion.
                    Some(_) => Ok(()),
                    None if self.peer_urls_taken(id, &m.peer_ur_ls) => {
                        Err(MembershipError::PeerUrlExists)
                    }
                    None => Ok(()),
                }
            }
            ConfChangeType::ConfChangeAddLearnerNode => {
                let m = m.ok_or(MembershipError::BadUrls)?;
                if existing.is_some() {
                    Err(MembershipError::Exists)
                } else if self.peer_urls_taken(id, &m.peer_ur_ls) {
                    Err(MembershipError::PeerUrlExists)
                } else if self.members.values().filter(|m| m.is_learner).count() >= MAX_LEARNERS {
                    Err(MembershipError::TooManyLearners)
                } else {
                    Ok(())
                }
            }
            ConfChangeType::ConfChangeRemoveNode => {
                existing.map(|_| ()).ok_or(MembershipError::NotFound)
            }
            ConfChangeType::ConfChangeUpdateNode => {
                let m = m.ok_or(MembershipError::BadUrls)?;
                if existing.is_none() {
                    Err(MembershipError::NotFound)
                } else if self.peer_urls_taken(id, &m.peer_ur_ls) {
                    Err(MembershipError::PeerUrlExists)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Applies a committed configuration change to the membership and the backend. On
    /// an error nothing changed, and Raft must apply the change as a no-op (etcd sets its
    /// node ID to none). A removal of an ID that is not a member still records the ID as
    /// removed, so that a member that joined later and replays the log agrees on the
    /// removed set.
    pub fn apply_conf_change(
        &mut self,
        backend: &Backend,
        cc: &ConfChange,
    ) -> Result<Result<(), MembershipError>, BackendError> {
        let m = Member::decode(cc.context.as_slice())
            .ok()
            .filter(|m| m.id == cc.node_id);
        let outcome = self.validate(cc, m.as_ref());
        let id = cc.node_id;
        let tx = backend.tx();
        let key = id.to_be_bytes();
        match (cc.r#type(), outcome.clone()) {
            (ConfChangeType::ConfChangeRemoveNode, Ok(()) | Err(MembershipError::NotFound))
                if !self.removed.contains(&id) =>
            {
                self.members.remove(&id);
                self.removed.insert(id);
                tx.open_table(MEMBERS)
                    .map_err(be)?
                    .remove(key.as_slice())
                    .map_err(be)?;
                tx.open_table(MEMBERS_REMOVED)
                    .map_err(be)?
                    .insert(key.as_slice(), b"removed".as_slice())
                    .map_err(be)?;
            }
            (_, Err(_)) | (ConfChangeType::ConfChangeRemoveNode, Ok(())) => {}
            (ty, Ok(())) => {
                let m = m.expect("validated changes carry their member");
                let member = match self.members.get(&id) {
                    // A promotion or a peer URL update keeps the published attributes.
                    Some(e) => Member {
                        peer_ur_ls: if ty == ConfChangeType::ConfChangeUpdateNode {
                            m.peer_ur_ls
                        } else {
                            e.peer_ur_ls.clone()
                        },
                        is_learner: e.is_learner && ty != ConfChangeType::ConfChangeAddNode,
                        ..e.clone()
                    },
                    None => m,
                };
                self.save(backend, member)?;
            }
        }
        Ok(outcome)
    }

    /// A member published its name and client URLs; ignored for unknown and removed
    /// members, as etcd does.
    pub fn set_attributes(
        &mut self,
        backend: &Backend,
        id: u64,
        name: String,
        client_urls: Vec<String>,
    ) -> Result<(), BackendError> {
        let Some(existing) = self.members.get(&id) else {
            return Ok(());
        };
        let member = Member {
            name,
            client_ur_ls: client_urls,
            ..existing.clone()
        };
        self.save(backend, member)
    }

    fn save(&mut self, backend: &Backend, m: Member) -> Result<(), BackendError> {
        backend
            .tx()
            .open_table(MEMBERS)
            .map_err(be)?
            .insert(m.id.to_be_bytes().as_slice(), m.encode_to_vec().as_slice())
            .map_err(be)?;
        self.members.insert(m.id, m);
        Ok(())
    }

    /// Writes every member, for a backend that has none yet.
    pub fn save_all(&mut self, backend: &Backend) -> Result<(), BackendError> {
        for m in self.members() {
            self.save(backend, m)?;
        }
        Ok(())
    }

    /// The membership the backend holds (empty for a new backend).
    pub fn load(backend: &Backend) -> Result<Self, BackendError> {
        let tx = backend.tx();
        let mut cluster = RaftCluster::default();
        for entry in tx.open_table(MEMBERS).map_err(be)?.iter().map_err(be)? {
            let (k, v) = entry.map_err(be)?;
            let m = decode_member(k.value(), v.value())?;
            cluster.members.insert(m.id, m);
        }
        for entry in tx
            .open_table(MEMBERS_REMOVED)
            .map_err(be)?
            .iter()
            .map_err(be)?
        {
            let (k, _) = entry.map_err(be)?;
            cluster.removed.insert(decode_removed(k.value())?);
        }
        Ok(cluster)
    }
}

/// A row of the members table: a member under its ID, with a peer URL to dial.
pub(crate) fn decode_member(k: &[u8], v: &[u8]) -> Result<Member, BackendError> {
    let m = Member::decode(v).map_err(|e| corrupt(MEMBERS, k, format!("undecodable: {e}")))?;
    if k != m.id.to_be_bytes() {
        return Err(corrupt(MEMBERS, k, format!("holds member {:x}", m.id)));
    }
    if m.peer_ur_ls.is_empty() {
        return Err(corrupt(MEMBERS, k, "a member without peer URLs"));
    }
    Ok(m)
}

/// A key of the removed members table: a member ID.
pub(crate) fn decode_removed(k: &[u8]) -> Result<u64, BackendError> {
    let id = k.try_into().map_err(|_| {
        corrupt(
            MEMBERS_REMOVED,
            k,
            format!("member ID of {} bytes, want 8", k.len()),
        )
    })?;
    Ok(u64::from_be_bytes(id))
}

/// Raft's configuration after the last applied change, if one was saved.
pub fn load_conf_state(backend: &Backend) -> Result<Option<ConfState>, BackendError> {
    let table = backend.tx().open_table(META).map_err(be)?;
    let value = table.get(CONF_STATE_KEY).map_err(be)?;
    value
        .map(|v| {
            ConfState::decode(v.value())
                .map_err(|e| corrupt(META, CONF_STATE_KEY, format!("undecodable: {e}")))
        })
        .transpose()
}

/// Saves Raft's configuration; with the consistent index in the same batch, a restart
/// resumes Raft from the configuration that matches the applied entries.
pub fn save_conf_state(backend: &Backend, cs: &ConfState) -> Result<(), BackendError> {
    backend
        .tx()
        .open_table(META)
        .map_err(be)?
        .insert(CONF_STATE_KEY, cs.encode_to_vec().as_slice())
        .map_err(be)?;
    Ok(())
}

/// etcd's isLearnerReady, from the leader's match indexes: a learner the leader does not
/// track passes (the apply check refuses it later).
pub fn learner_ready(matched: &BTreeMap<u64, u64>, leader: u64, learner: u64) -> bool {
    match (matched.get(&learner), matched.get(&leader)) {
        (Some(&l), Some(&lead)) => l as f64 >= lead as f64 * LEARNER_READY_SHARE,
        _ => true,
    }
}

/// A new member's ID as etcd computes it: sha1 of the sorted peer URLs, the cluster
/// token and the time in seconds, first 8 bytes big-endian.
pub fn new_member_id(peer_urls: &[String], token: &str, unix_secs: u64) -> u64 {
    use sha1::{Digest, Sha1};
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut h = Sha1::new();
    h.update(urls.concat().as_bytes());
    h.update(token.as_bytes());
    h.update(unix_secs.to_string().as_bytes());
    u64::from_be_bytes(h.finalize()[..8].try_into().expect("sha1 has 20 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, name: &str, learner: bool) -> Member {
        Member {
            id,
            name: name.into(),
            peer_ur_ls: vec![format!("http://127.0.0.1:{id}")],
            client_ur_ls: Vec::new(),
            is_learner: learner,
        }
    }

    /// etcd's quorum arithmetic for strict reconfiguration.
    #[test]
    fn readiness_follows_etcd() {
        let lone = RaftCluster::new([member(1, "a", false)]);
        assert!(lone.ready_to_add_voter(), "a lone member may add a second");
        let two_unstarted = RaftCluster::new([member(1, "a", false), member(2, "", false)]);
        assert!(!two_unstarted.ready_to_add_voter());
        let three = RaftCluster::new([
            member(1, "a", false),
            member(2, "b", false),
            member(3, "", false),
        ]);
        assert!(
            !three.ready_to_add_voter(),
            "4 voters, 2 started: not a quorum"
        );
        assert!(three.ready_to_remove_voter(3));
        assert!(
            !three.ready_to_remove_voter(1),
            "b alone is not a quorum of a, c"
        );
        let with_learner = RaftCluster::new([member(1, "a", false), member(4, "", true)]);
        assert!(with_learner.ready_to_promote(), "a and the learner: 2 of 2");
        let one_started = RaftCluster::new([
            member(1, "a", false),
            member(2, "", false),
            member(3, "", false),
        ]);
        assert!(!one_started.ready_to_promote(), "a and the learner: 2 of 4");
        assert_eq!(with_learner.conf_state().learners, vec![4]);
    }

    fn change(ty: ConfChangeType, m: &Member) -> ConfChange {
        let mut cc = ConfChange {
            node_id: m.id,
            context: m.encode_to_vec(),
            ..ConfChange::default()
        };
        cc.set_type(ty);
        cc
    }

    /// Changes apply as etcd validates them, and the backend holds the result: a reload
    /// gives the same membership and Raft configuration.
    #[test]
    fn changes_apply_and_survive_a_reload() {
        use crate::runtime::SimDisk;
        let disk = SimDisk::new(7);
        let backend = Backend::open(&disk, std::path::Path::new("/m/db")).unwrap();
        let mut cluster = RaftCluster::new([member(1, "a", false)]);
        cluster.save_all(&backend).unwrap();
        let apply = |c: &mut RaftCluster, ty, m: &Member| {
            c.apply_conf_change(&backend, &change(ty, m)).unwrap()
        };
        use ConfChangeType::*;
        let learner = member(2, "", true);
        assert_eq!(
            apply(&mut cluster, ConfChangeAddLearnerNode, &learner),
            Ok(())
        );
        let second = member(3, "", true);
        assert_eq!(
            apply(&mut cluster, ConfChangeAddLearnerNode, &second),
            Err(MembershipError::TooManyLearners)
        );
        let clash = Member {
            peer_ur_ls: learner.peer_ur_ls.clone(),
            ..member(4, "", false)
        };
        assert_eq!(
            apply(&mut cluster, ConfChangeAddNode, &clash),
            Err(MembershipError::PeerUrlExists)
        );
        cluster
            .set_attributes(&backend, 2, "b".into(), vec!["http://b".into()])
            .unwrap();
        let promoted = Member {
            is_learner: false,
            ..learner.clone()
        };
        assert_eq!(apply(&mut cluster, ConfChangeAddNode, &promoted), Ok(()));
        assert_eq!(
            apply(&mut cluster, ConfChangeAddNode, &promoted),
            Err(MembershipError::Exists)
        );
        let b = cluster.member(2).unwrap();
        assert!(!b.is_learner);
        assert_eq!(b.name, "b", "promotion keeps the published attributes");
        assert_eq!(cluster.conf_state().voters, vec![1, 2]);
        assert_eq!(apply(&mut cluster, ConfChangeRemoveNode, &promoted), Ok(()));
        assert_eq!(
            apply(&mut cluster, ConfChangeRemoveNode, &promoted),
            Err(MembershipError::NotFound),
            "a removed ID"
        );
        assert_eq!(
            apply(&mut cluster, ConfChangeAddLearnerNode, &learner),
            Err(MembershipError::NotFound),
            "a removed ID cannot come back"
        );
        save_conf_state(&backend, &cluster.conf_state()).unwrap();
        assert_eq!(RaftCluster::load(&backend).unwrap(), cluster);
        assert_eq!(
            load_conf_state(&backend).unwrap(),
            Some(cluster.conf_state())
        );
        assert!(cluster.is_removed(2));
    }

    #[test]
    fn learner_readiness_is_ninety_percent_of_the_leader() {
        let matched = BTreeMap::from([(1, 100), (4, 89)]);
        assert!(!learner_ready(&matched, 1, 4));
        let matched = BTreeMap::from([(1, 100), (4, 90)]);
        assert!(learner_ready(&matched, 1, 4));
    }
}
