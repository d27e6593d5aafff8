use std::collections::BTreeMap;
use std::time::Duration;

use redb::ReadableTable;

use super::expiry::ExpiryQueue;
use super::{Error, Lease, Result};
use crate::backend::{be, corrupt, get_u64, put_u64, LEASE, META};
use crate::mvcc::kvstore::header;
use crate::mvcc::{Events, LeaseLookup, WatchableStore};
use crate::proto::etcdserverpb::{
    LeaseCheckpoint, LeaseCheckpointRequest, LeaseGrantRequest, LeaseGrantResponse,
    LeaseKeepAliveResponse, LeaseLeasesResponse, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveResponse, RangeRequest,
};
use crate::proto::mvccpb::event::EventType;

/// etcd's MaxLeaseTTL: larger grants are refused.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;
const AUTO_ID: &[u8] = b"lease_auto_id";

#[derive(Clone, Debug)]
pub struct LessorConfig {
    /// Smallest TTL granted (etcd: 1.5 election timeouts, rounded up to seconds).
    pub min_ttl: i64,
    /// How long after proposing a revoke the leader proposes it again if it has not
    /// applied (etcd's expiredLeaseRetryInterval).
    pub revoke_retry: Duration,
    /// Expired leases returned per [`Lessor::expired`] call (etcd revokes 1000/s).
    pub max_revokes: usize,
    /// Checkpoints per [`Lessor::checkpoints`] call (etcd's maxLeaseCheckpointBatchSize).
    pub max_checkpoints: usize,
}

impl Default for LessorConfig {
    fn default() -> Self {
        LessorConfig {
            min_ttl: 2,
            revoke_retry: Duration::from_secs(3),
            max_revokes: 1000,
            max_checkpoints: 1000,
        }
    }
}

/// The leases and the keys attached to them.
#[derive(Debug)]
pub struct Lessor {
    cfg: LessorConfig,
    leases: BTreeMap<i64, Lease>,
    /// Invariant: `key_lease[k] == l` iff `leases[l].keys` holds `k`.
    key_lease: BTreeMap<Vec<u8>, i64>,
    /// Whether this member is the leader, which alone tracks expiry.
    primary: bool,
    /// On the primary, every lease by when it next needs a look: its expiry, or when a
    /// proposed revoke is proposed again (`revoke_retry` later).
    queue: ExpiryQueue,
    /// The last lease checkpointed; the next batch starts after it.
    checkpoint_cursor: i64,
}

impl LeaseLookup for Lessor {
    fn lease_exists(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }
}

impl Lessor {
    /// Loads the leases from the backend and reattaches the keys that name them.
    pub fn open(store: &mut WatchableStore, cfg: LessorConfig) -> Result<Self> {
        let mut leases = BTreeMap::new();
        {
            let table = store.backend().tx().open_table(LEASE).map_err(be)?;
            for entry in table.iter().map_err(be)? {
                let (k, v) = entry.map_err(be)?;
                let lease = Lease::decode(v.value()).map_err(|e| corrupt(LEASE, k.value(), e))?;
                leases.insert(lease.id, lease);
            }
        }
        let mut lessor = Lessor {
            cfg,
            leases,
            key_lease: BTreeMap::new(),
            primary: false,
            queue: ExpiryQueue::default(),
            checkpoint_cursor: 0,
        };
        let all = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        };
        for kv in store.kv().range(&all)?.kvs {
            if kv.lease != 0 {
                lessor.attach(&kv.key, kv.lease);
            }
        }
        Ok(lessor)
    }

    /// Reloads the leases from a store restored from a snapshot.
    pub fn reopen(&mut self, store: &mut WatchableStore) -> Result<()> {
        *self = Lessor::open(store, self.cfg.clone())?;
        Ok(())
    }

    fn attach(&mut self, key: &[u8], id: i64) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.insert(key.to_vec());
            self.key_lease.insert(key.to_vec(), id);
        }
    }

    fn detach(&mut self, key: &[u8]) {
        if let Some(id) = self.key_lease.remove(key) {
            if let Some(lease) = self.leases.get_mut(&id) {
                lease.keys.remove(key);
            }
        }
    }

    /// Follows a write: puts attach their key to the lease they name (detaching it from
    /// its previous one), deletes detach.
    pub fn observe(&mut self, events: &Events) {
        for ev in events {
            let kv = ev.kv.as_ref().expect("events carry a kv");
            let old = self.key_lease.get(&kv.key).copied().unwrap_or(0);
            let new = if ev.r#type == EventType::Put as i32 {
                kv.lease
            } else {
                0
            };
            if old != new {
                self.detach(&kv.key);
                if new != 0 {
                    self.attach(&kv.key, new);
                }
            }
        }
    }

    fn persist(&self, store: &mut WatchableStore, lease: &Lease) -> Result<()> {
        let mut table = store.backend().tx().open_table(LEASE).map_err(be)?;
        table
            .insert(lease.id.to_be_bytes().as_slice(), lease.encode().as_slice())
            .map_err(be)?;
        Ok(())
    }

    /// Grants a lease, applied from the log. Id 0 asks for one chosen here, from a counter
    /// kept in the backend so that every member chooses alike.
    pub fn grant(
        &mut self,
        store: &mut WatchableStore,
        req: &LeaseGrantRequest,
        now: Duration,
    ) -> Result<LeaseGrantResponse> {
        if store.kv().nospace() {
            return Err(crate::mvcc::Error::NoSpace.into());
        }
        if req.ttl > MAX_LEASE_TTL {
            return Err(Error::TtlTooLarge);
        }
        let id = if req.id != 0 {
            req.id
        } else {
            let tx = store.backend().tx();
            let mut next = get_u64(tx, META, AUTO_ID)? as i64 + 1;
            while self.leases.contains_key(&next) {
                next += 1;
            }
            put_u64(tx, META, AUTO_ID, next as u64)?;
            next
        };
        if self.leases.contains_key(&id) {
            return Err(Error::Exists);
        }
        let mut lease = Lease::new(id, req.ttl.max(self.cfg.min_ttl));
        if self.primary {
            lease.refresh(now, Duration::ZERO);
            self.queue.set(id, lease.expiry.expect("refreshed"));
        }
        self.persist(store, &lease)?;
        let resp = LeaseGrantResponse {
            header: Some(header(store.kv().rev())),
            id,
            ttl: lease.ttl,
            error: String::new(),
        };
        self.leases.insert(id, lease);
        Ok(resp)
    }

    /// Revokes a lease, applied from the log: its keys go in one revision.
    pub fn revoke(&mut self, store: &mut WatchableStore, id: i64) -> Result<LeaseRevokeResponse> {
        let keys: Vec<Vec<u8>> = self
            .leases
            .get(&id)
            .ok_or(Error::NotFound)?
            .keys
            .iter()
            .cloned()
            .collect();
        let ((), events) = store.write(|kv| Ok(((), kv.delete_keys(&keys)?)))?;
        self.observe(&events);
        let lease = self.leases.remove(&id).expect("checked above");
        assert!(
            lease.keys.is_empty(),
            "lease {id} kept {} keys after revoke",
            lease.keys.len()
        );
        self.queue.remove(id);
        {
            let mut table = store.backend().tx().open_table(LEASE).map_err(be)?;
            table.remove(id.to_be_bytes().as_slice()).map_err(be)?;
        }
        Ok(LeaseRevokeResponse {
            header: Some(header(store.kv().rev())),
        })
    }

    /// Renews a lease on the leader. A lease with a checkpointed TTL returns a checkpoint
    /// clearing it, which the leader must propose: otherwise a later leader would count
    /// from the stale remainder.
    pub fn keep_alive(
        &mut self,
        id: i64,
        now: Duration,
    ) -> Result<(LeaseKeepAliveResponse, Option<LeaseCheckpoint>)> {
        if !self.primary {
            return Err(Error::NotPrimary);
        }
        let lease = self.leases.get_mut(&id).ok_or(Error::NotFound)?;
        if lease.remaining(now).unwrap_or(0) <= 0 {
            return Err(Error::NotFound); // expired: its revoke is on the way
        }
        let clear = (lease.remaining_ttl > 0).then_some(LeaseCheckpoint {
            id,
            remaining_ttl: 0,
        });
        let expiry = now + Duration::from_secs(lease.ttl as u64);
        lease.expiry = Some(expiry);
        self.queue.set(id, expiry);
        Ok((
            LeaseKeepAliveResponse {
                header: None,
                id,
                ttl: lease.ttl,
            },
            clear,
        ))
    }

    /// TTL left (on the leader), granted TTL and, if asked, the attached keys; TTL -1 for
    /// an unknown lease, as etcd answers.
    pub fn time_to_live(
        &self,
        id: i64,
        keys: bool,
        now: Duration,
    ) -> Result<LeaseTimeToLiveResponse> {
        if !self.primary {
            return Err(Error::NotPrimary);
        }
        let Some(lease) = self.leases.get(&id) else {
            return Ok(LeaseTimeToLiveResponse {
                id,
                ttl: -1,
                ..Default::default()
            });
        };
        Ok(LeaseTimeToLiveResponse {
            header: None,
            id,
            ttl: lease.remaining(now).unwrap_or(lease.ttl),
            granted_ttl: lease.ttl,
            keys: if keys {
                lease.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }

    /// Every lease, by id.
    pub fn leases(&self) -> LeaseLeasesResponse {
        LeaseLeasesResponse {
            header: None,
            leases: self.leases.keys().map(|&id| LeaseStatus { id }).collect(),
        }
    }

    /// Becoming leader: every lease counts down from now (from its checkpointed remainder
    /// if it has one) plus `extend`, the grace period for clients to reach the new leader.
    pub fn promote(&mut self, now: Duration, extend: Duration) {
        self.primary = true;
        for lease in self.leases.values_mut() {
            lease.refresh(now, extend);
            if let Some(expiry) = lease.expiry {
                self.queue.set(lease.id, expiry);
            }
        }
    }

    /// Losing leadership: expiry is someone else's business now.
    pub fn demote(&mut self) {
        self.primary = false;
        self.queue.clear();
        for lease in self.leases.values_mut() {
            lease.expiry = None;
        }
    }

    pub fn is_primary(&self) -> bool {
        self.primary
    }

    /// The leader's expired leases to propose revokes for, earliest first: at most
    /// `max_revokes`, none proposed within `revoke_retry`. Costs what expired, not what
    /// exists.
    pub fn expired(&mut self, now: Duration) -> Vec<i64> {
        self.queue
            .take_due(now, self.cfg.revoke_retry, self.cfg.max_revokes)
    }

    /// The leader's checkpoints to propose: the remaining TTL of up to `max_checkpoints`
    /// leases, continuing after the last batch so that every lease gets its turn.
    pub fn checkpoints(&mut self, now: Duration) -> Vec<LeaseCheckpoint> {
        if !self.primary {
            return Vec::new();
        }
        let after = self
            .leases
            .range(self.checkpoint_cursor + 1..)
            .chain(self.leases.range(..=self.checkpoint_cursor));
        let batch: Vec<LeaseCheckpoint> = after
            .take(self.cfg.max_checkpoints)
            .filter_map(|(&id, l)| {
                Some(LeaseCheckpoint {
                    id,
                    remaining_ttl: l.remaining(now)?.max(1),
                })
            })
            .collect();
        if let Some(last) = batch.last() {
            self.checkpoint_cursor = last.id;
        }
        batch
    }

    /// Applies checkpoints from the log: the remaining TTLs become durable for the next
    /// leader's [`Lessor::promote`]. The current leader's countdowns stay as they are (the
    /// entry applies a little after its TTLs were read), as in etcd.
    pub fn apply_checkpoint(
        &mut self,
        store: &mut WatchableStore,
        req: &LeaseCheckpointRequest,
    ) -> Result<()> {
        for cp in &req.checkpoints {
            let Some(lease) = self.leases.get_mut(&cp.id) else {
                continue;
            };
            lease.remaining_ttl = cp.remaining_ttl;
            let lease = lease.clone();
            self.persist(store, &lease)?;
        }
        Ok(())
    }

    pub fn get(&self, id: i64) -> Option<&Lease> {
        self.leases.get(&id)
    }
}
