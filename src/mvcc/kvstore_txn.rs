//! Writes: a write transaction takes the next main revision and gives each change a sub
//! revision; put, delete-range and txn requests run inside one, as etcd's applier runs them.

use prost::Message;

use super::error::{Error, Result};
use super::key_range::KeyRange;
use super::kvstore::{header, KvStore};
use super::request_check::{check_delete_request, check_put_request, check_txn_request, has_put};
use super::revision::Revision;
use super::LeaseLookup;
use crate::backend::{be, KEY};
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::response_op::Response;
use crate::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest,
    RequestOp, ResponseOp, TxnRequest, TxnResponse,
};
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::{Event, KeyValue};

/// The changes of one write, as watch events (a delete's `kv` holds the key and revision).
pub type Events = Vec<Event>;

/// One write transaction: all its changes share main revision `begin_rev + 1`.
struct TxnWrite<'a> {
    s: &'a mut KvStore,
    begin_rev: i64,
    changes: Events,
}

impl<'a> TxnWrite<'a> {
    fn begin(s: &'a mut KvStore) -> Self {
        let begin_rev = s.current_rev;
        TxnWrite {
            s,
            begin_rev,
            changes: Vec::new(),
        }
    }

    /// The revision reads inside the transaction see: its own writes included.
    fn rev(&self) -> i64 {
        self.begin_rev + i64::from(!self.changes.is_empty())
    }

    fn next_rev(&self) -> Revision {
        Revision::new(self.begin_rev + 1, self.changes.len() as i64)
    }

    fn get(&self, key: &[u8]) -> Result<Option<KeyValue>> {
        match self.s.index.get(key, self.rev()) {
            Some(state) => Ok(Some(self.s.read_kv(state.modified)?)),
            None => Ok(None),
        }
    }

    fn put(&mut self, key: &[u8], value: Vec<u8>, lease: i64) -> Result<()> {
        let rev = self.next_rev();
        let (create_revision, version) = match self.s.index.get(key, rev.main) {
            Some(prev) => (prev.created.main, prev.version + 1),
            None => (rev.main, 1),
        };
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision,
            mod_revision: rev.main,
            version,
            value,
            lease,
        };
        self.write(rev, false, &kv)?;
        self.s.index.put(key, rev);
        self.changes.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: None,
        });
        Ok(())
    }

    fn delete_range(&mut self, range: &KeyRange) -> Result<i64> {
        let (found, _) = self.s.index.range(range, self.rev(), 0);
        let keys: Vec<Vec<u8>> = found.into_iter().map(|(k, _)| k.to_vec()).collect();
        for key in &keys {
            let rev = self.next_rev();
            // etcd stores a tombstone's value as the bare key.
            self.write(
                rev,
                true,
                &KeyValue {
                    key: key.clone(),
                    ..Default::default()
                },
            )?;
            self.s.index.tombstone(key, rev);
            let kv = KeyValue {
                key: key.clone(),
                mod_revision: rev.main,
                ..Default::default()
            };
            self.changes.push(Event {
                r#type: EventType::Delete as i32,
                kv: Some(kv),
                prev_kv: None,
            });
        }
        Ok(keys.len() as i64)
    }

    fn write(&self, rev: Revision, tombstone: bool, kv: &KeyValue) -> Result<()> {
        let mut table = self.s.backend.tx().open_table(KEY).map_err(be)?;
        table
            .insert(
                rev.to_key(tombstone).as_slice(),
                kv.encode_to_vec().as_slice(),
            )
            .map_err(be)?;
        Ok(())
    }

    fn end(self) -> Events {
        if !self.changes.is_empty() {
            self.s.current_rev = self.begin_rev + 1;
        }
        assert!(
            self.s.current_rev >= self.s.compact_rev,
            "revision {} below compaction {}",
            self.s.current_rev,
            self.s.compact_rev
        );
        self.changes
    }

    fn range(&self, req: &RangeRequest) -> Result<crate::proto::etcdserverpb::RangeResponse> {
        self.s.range_at(req, self.rev())
    }

    fn apply_put(&mut self, req: &PutRequest) -> Result<PutResponse> {
        let prev = if req.prev_kv || req.ignore_value || req.ignore_lease {
            self.get(&req.key)?
        } else {
            None
        };
        let (value, lease) = match &prev {
            Some(p) => (
                if req.ignore_value {
                    p.value.clone()
                } else {
                    req.value.clone()
                },
                if req.ignore_lease { p.lease } else { req.lease },
            ),
            None if req.ignore_value || req.ignore_lease => return Err(Error::KeyNotFound),
            None => (req.value.clone(), req.lease),
        };
        self.put(&req.key, value, lease)?;
        Ok(PutResponse {
            header: Some(header(self.begin_rev + 1)),
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    fn apply_delete(&mut self, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        let range = KeyRange::new(&req.key, &req.range_end);
        let prev_kvs = if req.prev_kv {
            self.range(&RangeRequest {
                key: req.key.clone(),
                range_end: req.range_end.clone(),
                ..Default::default()
            })?
            .kvs
        } else {
            Vec::new()
        };
        let deleted = self.delete_range(&range)?;
        let rev = if deleted != 0 || !self.changes.is_empty() {
            self.begin_rev + 1
        } else {
            self.begin_rev
        };
        Ok(DeleteRangeResponse {
            header: Some(header(rev)),
            deleted,
            prev_kvs,
        })
    }

    /// Runs the branches `path` chose (one entry per txn, depth first); nested txn
    /// responses carry no header, as in etcd.
    fn apply_txn(
        &mut self,
        req: &TxnRequest,
        path: &mut std::slice::Iter<'_, bool>,
    ) -> Result<TxnResponse> {
        let succeeded = *path.next().expect("a path entry per txn");
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                Some(Request::RequestRange(r)) => Response::ResponseRange(self.range(r)?),
                Some(Request::RequestPut(r)) => Response::ResponsePut(self.apply_put(r)?),
                Some(Request::RequestDeleteRange(r)) => {
                    Response::ResponseDeleteRange(self.apply_delete(r)?)
                }
                Some(Request::RequestTxn(r)) => Response::ResponseTxn(self.apply_txn(r, path)?),
                None => continue,
            };
            responses.push(ResponseOp {
                response: Some(response),
            });
        }
        Ok(TxnResponse {
            header: None,
            succeeded,
            responses,
        })
    }
}

impl KvStore {
    /// Puts one key; `leases` tells which leases exist.
    pub fn put(
        &mut self,
        req: &PutRequest,
        leases: &dyn LeaseLookup,
    ) -> Result<(PutResponse, Events)> {
        check_put_request(req, &self.cfg.limits())?;
        self.check_space()?;
        self.check_put_state(req, leases)?;
        let mut txn = TxnWrite::begin(self);
        let resp = txn.apply_put(req)?;
        Ok((resp, txn.end()))
    }

    /// Deletes a key or range; deleting nothing takes no revision.
    pub fn delete_range(
        &mut self,
        req: &DeleteRangeRequest,
    ) -> Result<(DeleteRangeResponse, Events)> {
        check_delete_request(req, &self.cfg.limits())?;
        let mut txn = TxnWrite::begin(self);
        let resp = txn.apply_delete(req)?;
        Ok((resp, txn.end()))
    }

    /// Deletes `keys` in one revision, with no request limits: a lease revoke, which
    /// etcd applies as one raw write transaction however many keys the lease holds.
    pub fn delete_keys(&mut self, keys: &[Vec<u8>]) -> Result<Events> {
        let mut txn = TxnWrite::begin(self);
        for key in keys {
            txn.delete_range(&KeyRange::Single(key.clone()))?;
        }
        Ok(txn.end())
    }

    /// A txn: compares (of every nested txn too) are evaluated first against the state
    /// before the txn, then the chosen branches run as one write transaction.
    pub fn txn(
        &mut self,
        req: &TxnRequest,
        leases: &dyn LeaseLookup,
    ) -> Result<(TxnResponse, Events)> {
        check_txn_request(req, &self.cfg.limits())?;
        // Under the NOSPACE alarm etcd refuses a txn with a put anywhere in it, whichever
        // branch would run.
        if has_put(req) {
            self.check_space()?;
        }
        let mut path = Vec::new();
        self.compare_path(req, &mut path)?;
        self.check_txn_state(req, &path, leases)?;
        let mut txn = TxnWrite::begin(self);
        let mut resp = txn.apply_txn(req, &mut path.iter())?;
        let events = txn.end();
        resp.header = Some(header(self.current_rev));
        Ok((resp, events))
    }

    fn compare_path(&self, req: &TxnRequest, path: &mut Vec<bool>) -> Result<()> {
        let mut ok = true;
        for c in &req.compare {
            if !self.compare(c)? {
                ok = false;
                break;
            }
        }
        path.push(ok);
        for op in if ok { &req.success } else { &req.failure } {
            if let Some(Request::RequestTxn(t)) = &op.request {
                self.compare_path(t, path)?;
            }
        }
        Ok(())
    }

    /// etcd's applyCompare: every key in the range must satisfy the compare; an empty
    /// range compares a zero KeyValue, except that a value compare then fails.
    fn compare(&self, c: &Compare) -> Result<bool> {
        let req = RangeRequest {
            key: c.key.clone(),
            range_end: c.range_end.clone(),
            ..Default::default()
        };
        let kvs = self.range_at(&req, self.current_rev)?.kvs;
        let target = CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version);
        if kvs.is_empty() {
            return Ok(
                target != CompareTarget::Value && compare_kv(c, target, &KeyValue::default())
            );
        }
        Ok(kvs.iter().all(|kv| compare_kv(c, target, kv)))
    }

    /// Calls `check` on every operation of the branches `path` chose, nested ones too.
    fn check_path(
        req: &TxnRequest,
        path: &mut std::slice::Iter<'_, bool>,
        check: &mut dyn FnMut(&RequestOp) -> Result<()>,
    ) -> Result<()> {
        let ops = if *path.next().expect("a path entry per txn") {
            &req.success
        } else {
            &req.failure
        };
        for op in ops {
            check(op)?;
            if let Some(Request::RequestTxn(t)) = &op.request {
                Self::check_path(t, path, check)?;
            }
        }
        Ok(())
    }

    /// etcd's checks before a txn writes anything: puts first (keys that `ignore_*` needs
    /// exist, leases are known), then reads (their revisions are readable
    /// at the txn's start), so that a txn fails whole or not at all.
    fn check_txn_state(
        &self,
        req: &TxnRequest,
        path: &[bool],
        leases: &dyn LeaseLookup,
    ) -> Result<()> {
        Self::check_path(req, &mut path.iter(), &mut |op| match &op.request {
            Some(Request::RequestPut(p)) => self.check_put_state(p, leases),
            _ => Ok(()),
        })?;
        Self::check_path(req, &mut path.iter(), &mut |op| match &op.request {
            Some(Request::RequestRange(r)) if r.revision != 0 => {
                self.read_rev(r.revision, self.current_rev).map(drop)
            }
            _ => Ok(()),
        })
    }

    fn check_put_state(&self, req: &PutRequest, leases: &dyn LeaseLookup) -> Result<()> {
        if (req.ignore_value || req.ignore_lease)
            && self.index.get(&req.key, self.current_rev).is_none()
        {
            return Err(Error::KeyNotFound);
        }
        if req.lease != 0 && !leases.lease_exists(req.lease) {
            return Err(Error::LeaseNotFound);
        }
        Ok(())
    }
}

fn compare_kv(c: &Compare, target: CompareTarget, kv: &KeyValue) -> bool {
    let ord = match (target, &c.target_union) {
        (CompareTarget::Value, Some(TargetUnion::Value(v))) => {
            kv.value.as_slice().cmp(v.as_slice())
        }
        (CompareTarget::Value, _) => kv.value.as_slice().cmp(&[]),
        (CompareTarget::Version, u) => kv.version.cmp(&int_target(u)),
        (CompareTarget::Create, u) => kv.create_revision.cmp(&int_target(u)),
        (CompareTarget::Mod, u) => kv.mod_revision.cmp(&int_target(u)),
        (CompareTarget::Lease, u) => kv.lease.cmp(&int_target(u)),
    };
    match CompareResult::try_from(c.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ord.is_eq(),
        CompareResult::NotEqual => ord.is_ne(),
        CompareResult::Greater => ord.is_gt(),
        CompareResult::Less => ord.is_lt(),
    }
}

/// The integer a compare names; a target of another kind counts as 0, as in etcd.
fn int_target(u: &Option<TargetUnion>) -> i64 {
    match u {
        Some(
            TargetUnion::Version(n)
            | TargetUnion::CreateRevision(n)
            | TargetUnion::ModRevision(n)
            | TargetUnion::Lease(n),
        ) => *n,
        _ => 0,
    }
}
