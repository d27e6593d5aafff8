//! Model-based test of the MVCC store: random puts, deletes, txns, ranges, compactions,
//! commits, reopens and crashes run against `KvStore` and against a deliberately naive
//! model (a Vec of every revision ever written); every response, error and HashKV must be
//! identical. A crash loses exactly the writes since the last commit.

use std::collections::BTreeSet;
use std::path::Path;

use detcd::mvcc::{Castagnoli, Config, KvStore, Revision};
use detcd::proto::etcdserverpb::compare::{CompareTarget, TargetUnion};
use detcd::proto::etcdserverpb::request_op::Request;
use detcd::proto::etcdserverpb::response_op::Response;
use detcd::proto::etcdserverpb::*;
use detcd::proto::mvccpb::KeyValue;
use detcd::runtime::{CrashMode, SimDisk};
use proptest::prelude::*;
use prost::Message;

const DB: &str = "/data/db";
/// Lease 1 exists, lease 2 does not.
fn leases(id: i64) -> bool {
    id == 1
}

#[derive(Clone, Debug)]
struct Rec {
    main: i64,
    sub: i64,
    key: Vec<u8>,
    /// `None` for a tombstone.
    kv: Option<KeyValue>,
}

#[derive(Clone, Debug)]
struct Model {
    recs: Vec<Rec>,
    rev: i64,
    compact: i64,
}

type Res<T> = Result<T, String>;

fn in_range(key: &[u8], end: &[u8], k: &[u8]) -> bool {
    if end.is_empty() {
        k == key
    } else if end == [0] {
        k >= key
    } else {
        k >= key && k < end
    }
}

impl Model {
    fn new() -> Self {
        Model {
            recs: Vec::new(),
            rev: 1,
            compact: -1,
        }
    }

    fn state_at(&self, key: &[u8], at: i64) -> Option<KeyValue> {
        self.recs
            .iter()
            .rev()
            .find(|r| r.key == key && r.main <= at)
            .and_then(|r| r.kv.clone())
    }

    fn keys(&self) -> BTreeSet<Vec<u8>> {
        self.recs.iter().map(|r| r.key.clone()).collect()
    }

    fn range(&self, req: &RangeRequest, cur: i64) -> Res<RangeResponse> {
        if req.revision > cur {
            return Err("etcdserver: mvcc: required revision is a future revision".into());
        }
        let at = if req.revision > 0 { req.revision } else { cur };
        if at < self.compact {
            return Err("etcdserver: mvcc: required revision has been compacted".into());
        }
        let mut kvs: Vec<KeyValue> = self
            .keys()
            .into_iter()
            .filter(|k| in_range(&req.key, &req.range_end, k))
            .filter_map(|k| self.state_at(&k, at))
            .collect();
        let count = kvs.len() as i64;
        let header = Some(ResponseHeader {
            revision: cur,
            ..Default::default()
        });
        if req.count_only {
            return Ok(RangeResponse {
                header,
                count,
                ..Default::default()
            });
        }
        let drop = |kv: &KeyValue| {
            let outside = |bound: i64, v: i64, below: bool| {
                bound != 0 && if below { v < bound } else { v > bound }
            };
            outside(req.max_mod_revision, kv.mod_revision, false)
                || outside(req.min_mod_revision, kv.mod_revision, true)
                || outside(req.min_create_revision, kv.create_revision, true)
                || outside(req.max_create_revision, kv.create_revision, false)
        };
        kvs.retain(|kv| !drop(kv));
        // etcd's quirk: a sort target without a sort order sorts only the keys a limit
        // lets through (plus the one that tells `more`), taken in key order.
        let unfiltered = [
            req.max_mod_revision,
            req.min_mod_revision,
            req.min_create_revision,
            req.max_create_revision,
        ] == [0; 4];
        if req.sort_order == 0 && unfiltered && req.limit > 0 {
            kvs.truncate(req.limit as usize + 1);
        }
        let target = req.sort_target;
        let descend = req.sort_order == 2;
        if req.sort_order != 0 || target != 0 {
            kvs.sort_by(|a, b| {
                let (a, b) = if descend { (b, a) } else { (a, b) };
                match target {
                    1 => a.version.cmp(&b.version),
                    2 => a.create_revision.cmp(&b.create_revision),
                    3 => a.mod_revision.cmp(&b.mod_revision),
                    4 => a.value.cmp(&b.value),
                    _ => a.key.cmp(&b.key),
                }
            });
        }
        let more = req.limit > 0 && kvs.len() as i64 > req.limit;
        if more {
            kvs.truncate(req.limit as usize);
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value = Vec::new();
            }
        }
        Ok(RangeResponse {
            header,
            kvs,
            more,
            count,
        })
    }

    fn check_put(&self, p: &PutRequest) -> Res<()> {
        if p.ignore_value && !p.value.is_empty() {
            return Err("etcdserver: value is provided".into());
        }
        if p.ignore_lease && p.lease != 0 {
            return Err("etcdserver: lease is provided".into());
        }
        Ok(())
    }

    fn check_put_state(&self, p: &PutRequest) -> Res<()> {
        if (p.ignore_value || p.ignore_lease) && self.state_at(&p.key, self.rev).is_none() {
            return Err("etcdserver: key not found".into());
        }
        if p.lease != 0 && !leases(p.lease) {
            return Err("etcdserver: requested lease not found".into());
        }
        Ok(())
    }

    /// Writes at revision `self.rev + 1`; `subs` counts the changes so far.
    fn do_put(&mut self, p: &PutRequest, subs: &mut i64) -> PutResponse {
        let main = self.rev + 1;
        let prev = self.state_at(&p.key, main);
        let kv = KeyValue {
            key: p.key.clone(),
            create_revision: prev.as_ref().map_or(main, |k| k.create_revision),
            mod_revision: main,
            version: prev.as_ref().map_or(1, |k| k.version + 1),
            value: if p.ignore_value {
                prev.as_ref().unwrap().value.clone()
            } else {
                p.value.clone()
            },
            lease: if p.ignore_lease {
                prev.as_ref().unwrap().lease
            } else {
                p.lease
            },
        };
        self.recs.push(Rec {
            main,
            sub: *subs,
            key: p.key.clone(),
            kv: Some(kv),
        });
        *subs += 1;
        PutResponse {
            header: Some(ResponseHeader {
                revision: main,
                ..Default::default()
            }),
            prev_kv: if p.prev_kv { prev } else { None },
        }
    }

    fn do_delete(&mut self, d: &DeleteRangeRequest, subs: &mut i64) -> DeleteRangeResponse {
        let main = self.rev + 1;
        let read_at = if *subs > 0 { main } else { self.rev };
        let live: Vec<KeyValue> = self
            .keys()
            .into_iter()
            .filter(|k| in_range(&d.key, &d.range_end, k))
            .filter_map(|k| self.state_at(&k, read_at))
            .collect();
        for kv in &live {
            self.recs.push(Rec {
                main,
                sub: *subs,
                key: kv.key.clone(),
                kv: None,
            });
            *subs += 1;
        }
        DeleteRangeResponse {
            header: Some(ResponseHeader {
                revision: if *subs > 0 { main } else { self.rev },
                ..Default::default()
            }),
            deleted: live.len() as i64,
            prev_kvs: if d.prev_kv { live } else { Vec::new() },
        }
    }

    fn compare(&self, c: &Compare) -> bool {
        let kvs: Vec<KeyValue> = self
            .keys()
            .into_iter()
            .filter(|k| in_range(&c.key, &c.range_end, k))
            .filter_map(|k| self.state_at(&k, self.rev))
            .collect();
        if kvs.is_empty() && c.target == CompareTarget::Value as i32 {
            return false;
        }
        let check = |kv: &KeyValue| {
            let ord = match &c.target_union {
                Some(TargetUnion::Value(v)) => kv.value.cmp(v),
                Some(TargetUnion::Version(n)) => kv.version.cmp(n),
                Some(TargetUnion::CreateRevision(n)) => kv.create_revision.cmp(n),
                Some(TargetUnion::ModRevision(n)) => kv.mod_revision.cmp(n),
                Some(TargetUnion::Lease(n)) => kv.lease.cmp(n),
                None => unreachable!(),
            };
            match c.result {
                0 => ord.is_eq(),
                1 => ord.is_gt(),
                2 => ord.is_lt(),
                _ => ord.is_ne(),
            }
        };
        if kvs.is_empty() {
            return check(&KeyValue::default());
        }
        kvs.iter().all(check)
    }

    /// The generator nests only read-only txns and never uses `"\0"` in a txn delete.
    fn duplicate(ops: &[RequestOp]) -> bool {
        let puts: Vec<&PutRequest> = ops
            .iter()
            .filter_map(|o| match &o.request {
                Some(Request::RequestPut(p)) => Some(p),
                _ => None,
            })
            .collect();
        let dels: Vec<&DeleteRangeRequest> = ops
            .iter()
            .filter_map(|o| match &o.request {
                Some(Request::RequestDeleteRange(d)) => Some(d),
                _ => None,
            })
            .collect();
        puts.iter().enumerate().any(|(i, p)| {
            puts[..i].iter().any(|q| q.key == p.key)
                || dels.iter().any(|d| in_range(&d.key, &d.range_end, &p.key))
        })
    }

    fn ops_of(t: &TxnRequest, ok: bool) -> &[RequestOp] {
        if ok {
            &t.success
        } else {
            &t.failure
        }
    }

    fn txn(&mut self, t: &TxnRequest) -> Res<TxnResponse> {
        for op in t.success.iter().chain(&t.failure) {
            if let Some(Request::RequestPut(p)) = &op.request {
                self.check_put(p)?;
            }
        }
        if Self::duplicate(&t.success) || Self::duplicate(&t.failure) {
            return Err("etcdserver: duplicate key given in txn request".into());
        }
        let ok = t.compare.iter().all(|c| self.compare(c));
        let nested_ok: Vec<bool> = Self::ops_of(t, ok)
            .iter()
            .filter_map(|o| match &o.request {
                Some(Request::RequestTxn(n)) => Some(n.compare.iter().all(|c| self.compare(c))),
                _ => None,
            })
            .collect();
        for op in Self::ops_of(t, ok) {
            if let Some(Request::RequestPut(p)) = &op.request {
                self.check_put_state(p)?;
            }
        }
        // Reads with a revision must be possible at the txn's start, nested ones included.
        let mut nested_iter = nested_ok.iter();
        for op in Self::ops_of(t, ok) {
            let reads: Vec<&RangeRequest> = match &op.request {
                Some(Request::RequestRange(r)) => vec![r],
                Some(Request::RequestTxn(n)) => Self::ops_of(n, *nested_iter.next().unwrap())
                    .iter()
                    .filter_map(|o| match &o.request {
                        Some(Request::RequestRange(r)) => Some(r),
                        _ => None,
                    })
                    .collect(),
                _ => vec![],
            };
            for r in reads.into_iter().filter(|r| r.revision != 0) {
                self.range(
                    &RangeRequest {
                        revision: r.revision,
                        ..Default::default()
                    },
                    self.rev,
                )?;
            }
        }
        let mut subs = 0;
        let mut nested = nested_ok.into_iter();
        let mut responses = Vec::new();
        for op in Self::ops_of(t, ok).to_vec() {
            let read_at = if subs > 0 { self.rev + 1 } else { self.rev };
            let r = match &op.request {
                Some(Request::RequestPut(p)) => Response::ResponsePut(self.do_put(p, &mut subs)),
                Some(Request::RequestDeleteRange(d)) => {
                    Response::ResponseDeleteRange(self.do_delete(d, &mut subs))
                }
                Some(Request::RequestRange(r)) => Response::ResponseRange(self.range(r, read_at)?),
                Some(Request::RequestTxn(n)) => {
                    let nok = nested.next().unwrap();
                    let mut rs = Vec::new();
                    for op in Self::ops_of(n, nok) {
                        let Some(Request::RequestRange(r)) = &op.request else {
                            unreachable!()
                        };
                        rs.push(ResponseOp {
                            response: Some(Response::ResponseRange(self.range(r, read_at)?)),
                        });
                    }
                    Response::ResponseTxn(TxnResponse {
                        header: None,
                        succeeded: nok,
                        responses: rs,
                    })
                }
                None => unreachable!(),
            };
            responses.push(ResponseOp { response: Some(r) });
        }
        if subs > 0 {
            self.rev += 1;
        }
        Ok(TxnResponse {
            header: Some(ResponseHeader {
                revision: self.rev,
                ..Default::default()
            }),
            succeeded: ok,
            responses,
        })
    }

    fn put(&mut self, p: &PutRequest) -> Res<PutResponse> {
        self.check_put(p)?;
        self.check_put_state(p)?;
        let r = self.do_put(p, &mut 0);
        self.rev += 1;
        Ok(r)
    }

    fn delete(&mut self, d: &DeleteRangeRequest) -> Res<DeleteRangeResponse> {
        let mut subs = 0;
        let r = self.do_delete(d, &mut subs);
        if subs > 0 {
            self.rev += 1;
        }
        Ok(r)
    }

    fn compact(&mut self, rev: i64) -> Res<CompactionResponse> {
        if rev <= self.compact {
            return Err("etcdserver: mvcc: required revision has been compacted".into());
        }
        if rev > self.rev {
            return Err("etcdserver: mvcc: required revision is a future revision".into());
        }
        self.compact = rev;
        Ok(CompactionResponse {
            header: Some(ResponseHeader {
                revision: self.rev,
                ..Default::default()
            }),
        })
    }

    /// Per key, the revision that shows its value at `at` (none if it was absent then):
    /// etcd's `treeIndex.Keep`.
    fn keep(&self, at: i64) -> Vec<(i64, i64)> {
        self.keys()
            .into_iter()
            .filter_map(|k| self.recs.iter().rev().find(|r| r.key == k && r.main <= at))
            .filter(|r| r.kv.is_some())
            .map(|r| (r.main, r.sub))
            .collect()
    }

    /// HashKV by etcd's definition: every revision up to `at`, but at or below the compact
    /// revision only those kept at `at`, or if there are none, those compaction keeps.
    fn hash_kv(&self, at: i64) -> u32 {
        let mut kept = self.keep(at);
        if kept.is_empty() {
            kept = self.keep(self.compact);
        }
        let mut h = Castagnoli::default();
        h.update(b"key");
        for r in self
            .recs
            .iter()
            .filter(|r| r.main <= at && (r.main > self.compact || kept.contains(&(r.main, r.sub))))
        {
            h.update(&Revision::new(r.main, r.sub).to_key(r.kv.is_none()));
            let v = r.kv.clone().unwrap_or(KeyValue {
                key: r.key.clone(),
                ..Default::default()
            });
            h.update(&v.encode_to_vec());
        }
        h.finalize()
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put(PutRequest),
    Delete(DeleteRangeRequest),
    Range(RangeRequest),
    Txn(TxnRequest),
    /// Compact at `rev_back` revisions below the current one.
    Compact {
        rev_back: i64,
        physical: bool,
    },
    CompactionStep,
    /// HashKV `rev_back` revisions below the current one.
    HashKv(i64),
    Commit,
    Reopen,
    Crash(u8),
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![
        b"a".to_vec(),
        b"b".to_vec(),
        b"b1".to_vec(),
        b"c".to_vec(),
        b"d".to_vec(),
    ])
}

/// Where reads start: mostly at the first key, so that they span several keys.
fn read_key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![2 => Just(b"a".to_vec()), 1 => key()]
}

/// Where reads end: mostly past every key.
fn read_end() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![3 => Just(b"e".to_vec()), 1 => Just(vec![0]), 2 => range_end()]
}

fn range_end() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![
        vec![],
        vec![],
        vec![0],
        b"c".to_vec(),
        b"e".to_vec(),
        b"b".to_vec(),
    ])
}

fn put() -> impl Strategy<Value = PutRequest> {
    (
        key(),
        prop::sample::select(vec![
            b"".to_vec(),
            b"x".to_vec(),
            b"y".to_vec(),
            b"zz".to_vec(),
        ]),
        prop::sample::select(vec![0i64, 0, 0, 0, 1, 2]),
        any::<bool>(),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(key, value, lease, prev_kv, ignore_value, ignore_lease)| PutRequest {
                key,
                value,
                lease,
                prev_kv,
                ignore_value,
                ignore_lease,
            },
        )
}

fn delete(allow_nul: bool) -> impl Strategy<Value = DeleteRangeRequest> {
    (key(), range_end(), any::<bool>()).prop_map(move |(key, mut range_end, prev_kv)| {
        if !allow_nul && range_end == [0] {
            range_end.clear();
        }
        DeleteRangeRequest {
            key,
            range_end,
            prev_kv,
        }
    })
}

fn range() -> impl Strategy<Value = RangeRequest> {
    (
        read_key(),
        read_end(),
        0..4i64,
        -2..3i64,
        0..3i32,
        0..5i32,
        any::<bool>(),
        prop::bool::weighted(0.1),
        // Each revision filter is off (0) most of the time, so unfiltered reads with
        // limits and sort targets come up often.
        [(); 4].map(|()| prop::option::weighted(0.25, 1..8i64).prop_map(|f| f.unwrap_or(0))),
    )
        .prop_map(
            |(
                key,
                range_end,
                limit,
                rev_back,
                sort_order,
                sort_target,
                keys_only,
                count_only,
                f,
            )| RangeRequest {
                key,
                range_end,
                limit,
                // Resolved against the current revision when run: negative = current.
                revision: rev_back,
                sort_order,
                sort_target,
                keys_only,
                count_only,
                min_mod_revision: f[0],
                max_mod_revision: f[1],
                min_create_revision: f[2],
                max_create_revision: f[3],
                serializable: false,
            },
        )
}

fn compare() -> impl Strategy<Value = Compare> {
    (
        key(),
        prop::sample::select(vec![vec![], vec![], b"c".to_vec()]),
        0..4i32,
        0..5i32,
        0..6i64,
    )
        .prop_map(|(key, range_end, result, target, n)| {
            let target_union = Some(match target {
                0 => TargetUnion::Version(n),
                1 => TargetUnion::CreateRevision(n),
                2 => TargetUnion::ModRevision(n),
                3 => TargetUnion::Value(if n % 2 == 0 {
                    b"x".to_vec()
                } else {
                    b"y".to_vec()
                }),
                _ => TargetUnion::Lease(n % 2),
            });
            Compare {
                result,
                target,
                key,
                range_end,
                target_union,
            }
        })
}

fn op_in_txn() -> impl Strategy<Value = RequestOp> {
    let nested = (
        prop::collection::vec(compare(), 0..2),
        prop::collection::vec(range(), 0..2),
        prop::collection::vec(range(), 0..2),
    )
        .prop_map(|(compare, s, f)| {
            let wrap = |v: Vec<RangeRequest>| {
                v.into_iter()
                    .map(|r| RequestOp {
                        request: Some(Request::RequestRange(r)),
                    })
                    .collect()
            };
            TxnRequest {
                compare,
                success: wrap(s),
                failure: wrap(f),
            }
        });
    prop_oneof![
        3 => put().prop_map(Request::RequestPut),
        2 => delete(false).prop_map(Request::RequestDeleteRange),
        2 => range().prop_map(Request::RequestRange),
        1 => nested.prop_map(Request::RequestTxn),
    ]
    .prop_map(|r| RequestOp { request: Some(r) })
}

fn txn() -> impl Strategy<Value = TxnRequest> {
    (
        prop::collection::vec(compare(), 0..3),
        prop::collection::vec(op_in_txn(), 0..4),
        prop::collection::vec(op_in_txn(), 0..4),
    )
        .prop_map(|(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        // Puts outweigh what empties the store (deletes, crashes before a commit), so that
        // reads find several keys with histories.
        14 => put().prop_map(Op::Put),
        3 => delete(true).prop_map(Op::Delete),
        6 => range().prop_map(Op::Range),
        5 => txn().prop_map(Op::Txn),
        1 => (-1..4i64, any::<bool>()).prop_map(|(rev_back, physical)| Op::Compact { rev_back, physical }),
        1 => Just(Op::CompactionStep),
        1 => (-1..5i64).prop_map(Op::HashKv),
        3 => Just(Op::Commit),
        1 => Just(Op::Reopen),
        1 => any::<u8>().prop_map(Op::Crash),
    ]
}

fn config() -> Config {
    // Batches never fill by themselves: the test decides when commits happen.
    Config {
        batch_limit: 1_000_000,
        compaction_batch_limit: 2,
        ..Config::default()
    }
}

fn open(disk: &SimDisk) -> KvStore {
    KvStore::open(disk, Path::new(DB), config()).expect("open")
}

fn run(ops: Vec<Op>) {
    let disk = SimDisk::new(7);
    let mut store = open(&disk);
    let mut model = Model::new();
    let mut durable = model.clone();
    let mut index = 0;
    let err = |e: detcd::mvcc::Error| e.to_string();
    for (i, op) in ops.into_iter().enumerate() {
        index += 1;
        store.begin_entry(index).unwrap();
        let cur = model.rev;
        let ctx = format!("op {i}: {op:?}");
        match op {
            Op::Put(p) => assert_eq!(
                store.put(&p, &leases).map(|r| r.0).map_err(err),
                model.put(&p),
                "{ctx}"
            ),
            Op::Delete(d) => assert_eq!(
                store.delete_range(&d).map(|r| r.0).map_err(err),
                model.delete(&d),
                "{ctx}"
            ),
            Op::Range(mut r) => {
                if r.revision > 0 {
                    r.revision = cur - r.revision + 1;
                }
                assert_eq!(store.range(&r).map_err(err), model.range(&r, cur), "{ctx}");
            }
            Op::Txn(t) => assert_eq!(
                store.txn(&t, &leases).map(|r| r.0).map_err(err),
                model.txn(&t),
                "{ctx}"
            ),
            Op::Compact { rev_back, physical } => {
                let req = CompactionRequest {
                    revision: cur - rev_back,
                    physical,
                };
                let got = store.compact(&req).map_err(err);
                assert_eq!(got, model.compact(req.revision), "{ctx}");
                if physical && got.is_ok() {
                    durable = model.clone();
                }
            }
            Op::CompactionStep => {
                if store.compaction_pending() {
                    durable = model.clone();
                }
                store.compaction_step().unwrap();
            }
            Op::HashKv(back) => {
                let got = store
                    .hash_kv(cur - back)
                    .map(|r| (r.hash, r.compact_revision, r.hash_revision))
                    .map_err(err);
                let at = if cur - back > 0 { cur - back } else { cur };
                // As etcd, a hash at the compact revision is compacted (a range there is not).
                let want = if cur - back > 0 && at <= model.compact {
                    Err("etcdserver: mvcc: required revision has been compacted".to_string())
                } else {
                    model
                        .range(
                            &RangeRequest {
                                revision: cur - back,
                                ..Default::default()
                            },
                            cur,
                        )
                        .map(|_| (model.hash_kv(at), model.compact, at))
                };
                assert_eq!(got, want, "{ctx}");
            }
            Op::Commit => {
                store.commit().unwrap();
                durable = model.clone();
            }
            Op::Reopen => {
                store.commit().unwrap();
                durable = model.clone();
                drop(store);
                store = open(&disk);
            }
            Op::Crash(how) => {
                drop(store);
                disk.crash_with(
                    [CrashMode::DropAll, CrashMode::KeepAll, CrashMode::Tear][how as usize % 3],
                );
                store = open(&disk);
                model = durable.clone();
                index = store.consistent_index();
            }
        }
        assert_eq!(store.rev(), model.rev, "{ctx}");
        assert_eq!(
            store.hash_kv(0).unwrap().hash,
            model.hash_kv(model.rev),
            "hash after {ctx}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in prop::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
