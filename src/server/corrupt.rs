//! Corruption detection, as etcd 3.5 runs it (`server/etcdserver/corrupt.go`): members
//! compare HashKV, etcd's hash of the key history up to a revision, which every member
//! holding the same log must agree on.
//!
//! - The initial check (`--experimental-initial-corrupt-check`): a member restarting with
//!   data compares its hash at its own revision with each peer's at that revision before it
//!   serves anything; a different hash at the same compaction revision stops it.
//! - The periodic check (`--experimental-corrupt-check-time`): the leader asks every peer
//!   for its hash at the leader's revision. A peer ahead of the leader, compacted further,
//!   or with another hash at the same compaction revision raises the CORRUPT alarm naming
//!   that peer (as etcd 3.5.1 to 3.5.6 name it; 3.5.7 and later name no member). The
//!   leader's own hash changing under an unchanged revision raises it naming the leader.
//! - The compaction hash check (`--experimental-compact-hash-check-enabled`, every
//!   `--experimental-compact-hash-check-time`, etcd 3.5.7's): every member records its hash
//!   at each compaction it applies; the leader asks its peers for theirs at the newest
//!   revisions not yet checked, and any that compacted from the same revision must agree.
//!
//! Once the alarm is applied every member refuses writes ("etcdserver: corrupt cluster",
//! see [`super::apply`]) until an operator disarms it. Peers are asked over the peer
//! listener's Membership service, etcd's `/members/hashkv`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::store::{lock, SharedStore};
use super::transport::Transport;
use super::v3::Server;
use crate::mvcc;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::{AlarmRequest, AlarmType, HashKvRequest, HashKvResponse};
use crate::proto::peerpb::membership_client::MembershipClient;
use crate::runtime::Clock;

/// How many compaction hashes a member keeps (etcd's `hashStorageMaxSize`).
const MAX_COMPACTION_HASHES: usize = 10;

/// What a member's keys hash to at `revision`, counting from `compact_revision`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyValueHash {
    pub hash: u32,
    pub compact_revision: i64,
    pub revision: i64,
}

impl From<&HashKvResponse> for KeyValueHash {
    fn from(r: &HashKvResponse) -> Self {
        KeyValueHash {
            hash: r.hash,
            compact_revision: r.compact_revision,
            revision: r.hash_revision,
        }
    }
}

/// The hashes recorded as compactions were applied, oldest first: a compacted revision
/// can still be compared through them. Memory only, as in etcd. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct CompactionHashes(Arc<Mutex<Vec<KeyValueHash>>>);

impl CompactionHashes {
    /// Records `h`, keeping the [`MAX_COMPACTION_HASHES`] newest.
    pub fn store(&self, h: KeyValueHash) {
        tracing::info!(
            hash = h.hash,
            revision = h.revision,
            compact_revision = h.compact_revision,
            "storing new hash"
        );
        let mut hashes = lock(&self.0);
        hashes.push(h);
        hashes.sort_by_key(|h| h.revision);
        let excess = hashes.len().saturating_sub(MAX_COMPACTION_HASHES);
        hashes.drain(..excess);
    }

    /// The hash recorded for `revision`, if one is.
    pub fn at(&self, revision: i64) -> Option<KeyValueHash> {
        lock(&self.0)
            .iter()
            .find(|h| h.revision == revision)
            .copied()
    }

    /// The recorded hashes above `checked`, newest first.
    fn newer_than(&self, checked: i64) -> Vec<KeyValueHash> {
        let hashes = lock(&self.0);
        hashes
            .iter()
            .rev()
            .take_while(|h| h.revision > checked)
            .copied()
            .collect()
    }
}

/// One peer's answer to a HashKV request.
struct PeerHash {
    id: u64,
    url: String,
    answer: Result<HashKvResponse, tonic::Status>,
}

/// Asks every peer for its HashKV at `revision`, one after the other, as etcd does.
async fn peer_hashes(transport: &Transport, revision: i64, timeout: Duration) -> Vec<PeerHash> {
    let mut out = Vec::new();
    for id in transport.peers() {
        let Some(url) = transport.peer_url(id) else {
            continue;
        };
        let ask = async {
            let channel = transport
                .dialer()
                .connect(&url)
                .await
                .map_err(tonic::Status::unavailable)?;
            let request = HashKvRequest { revision };
            let resp = MembershipClient::new(channel).hash_kv(request).await?;
            Ok(resp.into_inner())
        };
        let answer = match tokio::time::timeout(timeout, ask).await {
            Ok(answer) => answer,
            Err(_) => Err(tonic::Status::deadline_exceeded(
                "hash kv request timed out",
            )),
        };
        if let Err(e) = &answer {
            tracing::warn!(
                requested_revision = revision,
                remote_peer_endpoint = %url,
                error = %e.message(),
                "failed hash kv request"
            );
        }
        out.push(PeerHash { id, url, answer });
    }
    out
}

/// Whether a peer refused with `e`.
fn refused_with(answer: &Result<HashKvResponse, tonic::Status>, e: mvcc::Error) -> bool {
    matches!(answer, Err(s) if s.message() == e.to_string())
}

/// etcd's initial check: this member's hash at its revision against each peer's there.
/// Peers that cannot answer (down, behind, compacted further) are logged and skipped.
pub async fn initial_check(
    store: &SharedStore,
    transport: &Transport,
    member_id: u64,
    timeout: Duration,
) -> Result<(), String> {
    tracing::info!(
        local_member_id = %format_args!("{member_id:x}"),
        ?timeout,
        "starting initial corruption check"
    );
    let local = lock(store)
        .kv()
        .hash_kv(0)
        .map_err(|e| format!("{member_id:x} failed to fetch hash ({e})"))?;
    let revision = local.hash_revision;
    let mut mismatch = 0;
    for p in peer_hashes(transport, revision, timeout).await {
        let peer = format_args!("{:x}", p.id);
        match &p.answer {
            Ok(r) if r.hash != local.hash => {
                let same_compaction = r.compact_revision == local.compact_revision;
                let what = if same_compaction {
                    mismatch += 1;
                    "found different hash values from remote peer"
                } else {
                    "found different compact revision values from remote peer"
                };
                tracing::warn!(
                    local_member_revision = revision,
                    local_member_compact_revision = local.compact_revision,
                    local_member_hash = local.hash,
                    remote_peer_id = %peer,
                    remote_peer_endpoint = %p.url,
                    remote_peer_revision = r.header.as_ref().map_or(0, |h| h.revision),
                    remote_peer_compact_revision = r.compact_revision,
                    remote_peer_hash = r.hash,
                    "{what}"
                );
            }
            Ok(_) => {}
            Err(_) if refused_with(&p.answer, mvcc::Error::FutureRev) => tracing::warn!(
                local_member_revision = revision,
                remote_peer_id = %peer,
                "cannot fetch hash from slow remote peer"
            ),
            Err(_) if refused_with(&p.answer, mvcc::Error::Compacted) => tracing::warn!(
                local_member_revision = revision,
                remote_peer_id = %peer,
                "cannot fetch hash from remote peer; local member is behind"
            ),
            Err(_) => {}
        }
    }
    if mismatch > 0 {
        return Err(format!("{member_id:x} found data inconsistency with peers"));
    }
    tracing::info!(
        local_member_id = %format_args!("{member_id:x}"),
        "initial corruption checking passed; no corruption"
    );
    Ok(())
}

/// Raises the CORRUPT alarm for `member_id` through the log, without waiting for it.
fn raise(server: &Server, member_id: u64) {
    let server = server.clone();
    tokio::spawn(async move {
        let request = AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id,
            alarm: AlarmType::Corrupt as i32,
        };
        if let Err(e) = server.alarm(request).await {
            tracing::warn!(error = %e, "failed to raise the CORRUPT alarm");
        }
    });
}

/// The leader's periodic check, every `interval` for as long as the server runs.
pub async fn periodic(server: Server, interval: Duration, timeout: Duration) {
    tracing::info!(?interval, "enabled corruption checking");
    loop {
        Clock.sleep(interval).await;
        if !server.status().is_leader {
            continue;
        }
        if let Err(e) = check_hash_kv(&server, timeout).await {
            tracing::warn!(error = %e, "failed to check hash KV");
        }
    }
}

/// etcd's `checkHashKV`: the leader's hash before and after its peers answered (a
/// linearizable read in between makes sure it has applied what they have), then each
/// peer's answer against it. At most one alarm per check.
async fn check_hash_kv(server: &Server, timeout: Duration) -> super::error::Result<()> {
    let h = server.hash_kv(0)?;
    let (rev, crev) = (h.hash_revision, h.compact_revision);
    let peers = peer_hashes(&server.transport, rev, timeout).await;
    server.read_index().await?;
    let h2 = server.hash_kv(0)?;
    let (rev2, crev2) = (h2.hash_revision, h2.compact_revision);
    let mut alarmed = false;
    let mut mismatch = |id: u64| {
        if !alarmed {
            alarmed = true;
            raise(server, id);
        }
    };
    if h2.hash != h.hash && rev2 == rev && crev2 == crev {
        tracing::warn!(
            revision_1 = rev,
            compact_revision_1 = crev,
            hash_1 = h.hash,
            revision_2 = rev2,
            compact_revision_2 = crev2,
            hash_2 = h2.hash,
            "found hash mismatch"
        );
        mismatch(server.member_id());
    }
    let mut checked = 0;
    for p in &peers {
        let Ok(r) = &p.answer else { continue };
        checked += 1;
        let follower = format_args!("{:x}", p.id);
        let follower_rev = r.header.as_ref().map_or(0, |h| h.revision);
        if follower_rev > rev2 {
            tracing::warn!(
                leader_revision = rev2,
                follower_revision = follower_rev,
                follower_peer_id = %follower,
                "revision from follower must be less than or equal to leader's"
            );
            mismatch(p.id);
        }
        if r.compact_revision > crev2 {
            tracing::warn!(
                leader_compact_revision = crev2,
                follower_compact_revision = r.compact_revision,
                follower_peer_id = %follower,
                "compact revision from follower must be less than or equal to leader's"
            );
            mismatch(p.id);
        }
        if r.compact_revision == crev && r.hash != h.hash {
            tracing::warn!(
                leader_compact_revision = crev2,
                leader_hash = h.hash,
                follower_compact_revision = r.compact_revision,
                follower_hash = r.hash,
                follower_peer_id = %follower,
                "same compact revision then hashes must match"
            );
            mismatch(p.id);
        }
    }
    tracing::info!(
        number_of_peers_checked = checked,
        "finished peer corruption check"
    );
    Ok(())
}

/// The leader's compaction hash check, every `interval` for as long as the server runs.
pub async fn compact_hash_checks(server: Server, interval: Duration, timeout: Duration) {
    let mut checked = 0;
    loop {
        Clock.sleep(interval).await;
        if server.status().is_leader {
            checked = compact_hash_check(&server, checked, timeout).await;
        }
    }
}

/// etcd's `CompactHashCheck`: from the newest recorded hash above `checked` down, asks
/// the peers for theirs at its revision; peers that compacted from the same revision must
/// agree. Stops at the first revision every peer confirmed, and returns it as the new
/// `checked`; a mismatch raises the alarm for that peer.
async fn compact_hash_check(server: &Server, checked: i64, timeout: Duration) -> i64 {
    tracing::info!(?timeout, "starting compact hash check");
    let hashes = server.compaction_hashes.newer_than(checked);
    for (i, hash) in hashes.iter().enumerate() {
        let peers = peer_hashes(&server.transport, hash.revision, timeout).await;
        if peers.is_empty() {
            continue;
        }
        let mut confirmed = 0;
        for p in &peers {
            let Ok(r) = &p.answer else { continue };
            if r.compact_revision != hash.compact_revision {
                continue;
            }
            if r.hash != hash.hash {
                raise(server, p.id);
                tracing::error!(
                    revision = hash.revision,
                    leader_compact_revision = hash.compact_revision,
                    leader_hash = hash.hash,
                    follower_compact_revision = r.compact_revision,
                    follower_hash = r.hash,
                    follower_peer_id = %format_args!("{:x}", p.id),
                    "failed compaction hash check"
                );
                return checked;
            }
            confirmed += 1;
        }
        if confirmed == peers.len() {
            tracing::info!(
                number_of_peers_checked = confirmed,
                revision = hash.revision,
                "successfully checked hash on whole cluster"
            );
            tracing::info!(
                number_of_hashes_checked = i + 1,
                "finished compaction hash check"
            );
            return checked.max(hash.revision);
        }
        tracing::warn!(
            number_of_peers_checked = confirmed,
            number_of_peers = peers.len(),
            revision = hash.revision,
            "skipped revision in compaction hash check; was not able to check all peers"
        );
    }
    tracing::info!(
        number_of_hashes_checked = hashes.len(),
        "finished compaction hash check"
    );
    checked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(revision: i64) -> KeyValueHash {
        KeyValueHash {
            hash: revision as u32 * 7,
            compact_revision: revision - 1,
            revision,
        }
    }

    /// etcd's hash storage: sorted by revision, the ten newest kept, looked up by exact
    /// revision; the check walks the unchecked ones newest first.
    #[test]
    fn compaction_hashes_keep_the_newest_ten() {
        let hashes = CompactionHashes::default();
        for r in (1..=12).rev() {
            hashes.store(hash(r * 10));
        }
        assert_eq!(hashes.at(30), Some(hash(30)));
        assert_eq!(hashes.at(20), None, "the oldest two are gone");
        assert_eq!(hashes.at(35), None);
        let unchecked: Vec<i64> = hashes.newer_than(90).iter().map(|h| h.revision).collect();
        assert_eq!(unchecked, [120, 110, 100]);
        assert_eq!(hashes.newer_than(0).len(), MAX_COMPACTION_HASHES);
    }
}
