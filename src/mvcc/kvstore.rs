//! The store: the in-memory [`TreeIndex`] over the backend's `key` table, the current and
//! compacted revisions, and the consistent index of the last applied log entry.

use std::path::Path;
use std::time::Duration;

use prost::Message;
use redb::ReadableTable;

use super::error::{Error, Result};
use super::key_range::KeyRange;
use super::kvstore_compact::Compaction;
use super::request_check::RequestLimits;
use super::revision::Revision;
use super::tree_index::TreeIndex;
use crate::backend::{be, corrupt, get_u64, put_u64, Backend, ReadView, KEY, META};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::{RangeRequest, RangeResponse, ResponseHeader};
use crate::proto::mvccpb::event::EventType;
use crate::proto::mvccpb::{Event, KeyValue};
use crate::runtime::Disk;

const CONSISTENT_INDEX: &[u8] = b"consistent_index";
const NOSPACE_ALARM: &[u8] = b"alarm_nospace";

/// Limits and batching; the defaults are etcd's.
#[derive(Clone, Debug)]
pub struct Config {
    /// Applied entries per backend commit (etcd's backend batch limit).
    pub batch_limit: usize,
    /// How long the server lets a batch stay open before it calls [`KvStore::commit`].
    pub batch_interval: Duration,
    /// Largest encoded request accepted (etcd's `--max-request-bytes`).
    pub max_request_bytes: usize,
    /// Most compares or operations per txn branch (etcd's `--max-txn-ops`).
    pub max_txn_ops: usize,
    /// Backend size beyond which writes raise the NOSPACE alarm (`--quota-backend-bytes`).
    pub quota_bytes: u64,
    /// Revisions compaction scans per batch (one backend commit), so writes interleave.
    pub compaction_batch_limit: usize,
}

impl Config {
    pub fn limits(&self) -> RequestLimits {
        RequestLimits {
            max_request_bytes: self.max_request_bytes,
            max_txn_ops: self.max_txn_ops,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            batch_limit: 10_000,
            batch_interval: Duration::from_millis(100),
            max_request_bytes: 1536 * 1024,
            max_txn_ops: 128,
            quota_bytes: 2 << 30,
            compaction_batch_limit: 1000,
        }
    }
}

/// The multi-version store. Applies run one at a time, in log order (`&mut self`).
#[derive(Debug)]
pub struct KvStore {
    pub(super) backend: Backend,
    pub(super) index: TreeIndex,
    /// The revision of the last write transaction; 1 for an empty store, as in etcd.
    /// Invariant: `current_rev >= compact_rev`.
    pub(super) current_rev: i64,
    /// Reads below this revision fail; -1 before the first compaction.
    pub(super) compact_rev: i64,
    /// Physical removal still to do for the last compaction.
    pub(super) compaction: Option<Compaction>,
    consistent_index: u64,
    /// Invariant: `committed_index <= consistent_index`.
    committed_index: u64,
    /// Writes of revisions up to this one are committed: a [`ReadView`] taken now holds
    /// them. Invariant: `committed_rev <= current_rev`.
    committed_rev: i64,
    uncommitted: usize,
    nospace: bool,
    pub(super) cfg: Config,
}

impl KvStore {
    /// Opens the store at `path`, rebuilding the index from the backend and finishing a
    /// compaction that a crash interrupted.
    pub fn open(disk: &dyn Disk, path: &Path, cfg: Config) -> Result<Self> {
        assert!(
            cfg.batch_limit > 0 && cfg.compaction_batch_limit > 0,
            "zero batch limit: {cfg:?}"
        );
        let backend = Backend::open(disk, path)?;
        let mut index = TreeIndex::default();
        let mut last_main = 1;
        {
            let table = backend.tx().open_table(KEY).map_err(be)?;
            for entry in table.iter().map_err(be)? {
                let (k, v) = entry.map_err(be)?;
                if !Revision::is_key(k.value()) {
                    return Err(corrupt(KEY, k.value(), "not a revision").into());
                }
                let (rev, tombstone) = Revision::from_key(k.value());
                let kv = decode(k.value(), v.value())?;
                if tombstone {
                    index.restore_tombstone(&kv.key, rev);
                } else {
                    index.restore(
                        &kv.key,
                        rev,
                        Revision::new(kv.create_revision, 0),
                        kv.version,
                    );
                }
                last_main = last_main.max(rev.main);
            }
        }
        let tx = backend.tx();
        let consistent_index = get_u64(tx, META, CONSISTENT_INDEX)?;
        let nospace = get_u64(tx, META, NOSPACE_ALARM)? != 0;
        let (scheduled, finished) = super::kvstore_compact::progress(tx)?;
        let mut store = KvStore {
            backend,
            index,
            current_rev: last_main.max(scheduled),
            compact_rev: finished,
            compaction: None,
            consistent_index,
            committed_index: consistent_index,
            committed_rev: last_main.max(scheduled),
            uncommitted: 0,
            nospace,
            cfg,
        };
        if scheduled > finished {
            store.schedule_compaction(scheduled)?;
            store.finish_compaction()?;
        }
        Ok(store)
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The revision of the last write.
    pub fn rev(&self) -> i64 {
        self.current_rev
    }

    /// The revision below which history is gone (-1: never compacted).
    pub fn compact_rev(&self) -> i64 {
        self.compact_rev
    }

    /// The index of the last log entry whose effects are in the store.
    pub fn consistent_index(&self) -> u64 {
        self.consistent_index
    }

    /// Starts applying log entry `index`: every backend commit from now on carries it as
    /// the consistent index, atomically with the entry's effects, so a restart resumes
    /// after it. Commits the previous batch first when it is full. Entries must come in
    /// order; call it for every entry, even one that changes nothing.
    pub fn begin_entry(&mut self, index: u64) -> Result<()> {
        assert!(
            index > self.consistent_index,
            "begin_entry({index}) not after consistent index({})",
            self.consistent_index
        );
        if self.uncommitted >= self.cfg.batch_limit {
            self.commit()?;
        }
        put_u64(self.backend.tx(), META, CONSISTENT_INDEX, index)?;
        self.consistent_index = index;
        self.uncommitted += 1;
        Ok(())
    }

    /// Makes every applied entry durable; the server calls it each batch interval.
    pub fn commit(&mut self) -> Result<()> {
        self.backend.commit()?;
        self.uncommitted = 0;
        self.committed_index = self.consistent_index;
        self.committed_rev = self.current_rev;
        Ok(())
    }

    /// The consistent index of the last commit: entries up to it survive a crash.
    pub fn committed_index(&self) -> u64 {
        self.committed_index
    }

    /// Rejects requests larger than `max_request_bytes`.
    pub fn check_size(&self, encoded_len: usize) -> Result<()> {
        if encoded_len > self.cfg.max_request_bytes {
            return Err(Error::RequestTooLarge);
        }
        Ok(())
    }

    /// Raises or clears the NOSPACE alarm, as applied from the log. While raised, puts fail
    /// with [`Error::NoSpace`]; deletes and compaction still work, to make room.
    pub fn set_nospace(&mut self, raised: bool) -> Result<()> {
        put_u64(self.backend.tx(), META, NOSPACE_ALARM, raised as u64)?;
        self.nospace = raised;
        Ok(())
    }

    pub fn nospace(&self) -> bool {
        self.nospace
    }

    pub(super) fn check_space(&self) -> Result<()> {
        if self.nospace {
            return Err(Error::NoSpace);
        }
        Ok(())
    }

    /// A read at the current revision.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        self.begin_range(req)?.finish()
    }

    /// A read at the current revision in two parts: what needs the store now (the index,
    /// values not yet committed), and [`RangeRead::finish`], which reads the committed
    /// values from a view after the store's lock is released.
    pub fn begin_range(&self, req: &RangeRequest) -> Result<RangeRead> {
        // etcd's gRPC layer refuses a range without a key before it reads anything.
        if req.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        self.check_size(req.encoded_len())?;
        self.begin_range_at(req, self.current_rev)
    }

    /// Range as etcd's applier runs it, with `cur` the revision the reader sees.
    pub(super) fn range_at(&self, req: &RangeRequest, cur: i64) -> Result<RangeResponse> {
        self.begin_range_at(req, cur)?.finish()
    }

    fn begin_range_at(&self, req: &RangeRequest, cur: i64) -> Result<RangeRead> {
        let at = self.read_rev(req.revision, cur)?;
        let range = KeyRange::new(&req.key, &req.range_end);
        let mut read = RangeRead {
            resp: RangeResponse {
                header: Some(header(cur)),
                ..Default::default()
            },
            slots: Vec::new(),
            view: None,
            req: RangeRequest {
                key: Vec::new(),
                range_end: Vec::new(),
                ..req.clone()
            },
        };
        if req.count_only {
            read.resp.count = self.index.range(&range, at, 1).1 as i64;
            return Ok(read);
        }
        let filtered = req.min_mod_revision != 0
            || req.max_mod_revision != 0
            || req.min_create_revision != 0
            || req.max_create_revision != 0;
        // An explicit sort order or a filter needs every key; otherwise one extra shows
        // `more`.
        let fetch = if req.sort_order != SortOrder::None as i32 || filtered || req.limit <= 0 {
            0
        } else {
            req.limit as usize + 1
        };
        let (found, count) = self.index.range(&range, at, fetch);
        read.resp.count = count as i64;
        let revs = found.iter().map(|(_, state)| state.modified);
        if found
            .iter()
            .any(|(_, s)| s.modified.main <= self.committed_rev)
        {
            read.view = Some(self.backend.view()?);
        }
        let table = self.backend.tx().open_table(KEY).map_err(be)?;
        read.slots = revs
            .map(|rev| match rev.main <= self.committed_rev {
                true => Ok(Slot::Committed(rev)),
                false => read_value(&table, rev).map(Slot::Read),
            })
            .collect::<Result<_>>()?;
        Ok(read)
    }

    /// The revision a read of `requested` (0: current) sees, or why it cannot.
    pub(super) fn read_rev(&self, requested: i64, cur: i64) -> Result<i64> {
        if requested > cur {
            return Err(Error::FutureRev);
        }
        let at = if requested <= 0 { cur } else { requested };
        if at < self.compact_rev {
            return Err(Error::Compacted);
        }
        Ok(at)
    }

    /// The value stored at `rev`, which the index says is a put.
    pub(super) fn read_kv(&self, rev: Revision) -> Result<KeyValue> {
        read_value(&self.backend.tx().open_table(KEY).map_err(be)?, rev)
    }

    /// Commits, then returns a view of everything applied: for long reads (Hash, HashKV)
    /// that run after the store's lock is released.
    pub fn committed_view(&mut self) -> Result<ReadView> {
        self.commit()?;
        Ok(self.backend.view()?)
    }

    /// The changes of main revisions `from..=to` in revision order, as watch events (from
    /// the backend, so compacted history is gone: callers check `compact_rev` first).
    pub fn history(&self, from: i64, to: i64) -> Result<Vec<Event>> {
        let table = self.backend.tx().open_table(KEY).map_err(be)?;
        let (lo, hi) = (Revision::start_key(from), Revision::start_key(to + 1));
        let mut events = Vec::new();
        for entry in table.range(lo.as_slice()..hi.as_slice()).map_err(be)? {
            let (k, v) = entry.map_err(be)?;
            let (rev, tombstone) = Revision::from_key(k.value());
            let mut kv = decode(k.value(), v.value())?;
            let kind = if tombstone {
                kv.mod_revision = rev.main;
                EventType::Delete
            } else {
                EventType::Put
            };
            events.push(Event {
                r#type: kind as i32,
                kv: Some(kv),
                prev_kv: None,
            });
        }
        Ok(events)
    }

    /// The value `key` had just before `rev`, if that is still readable.
    pub fn value_before(&self, key: &[u8], rev: i64) -> Result<Option<KeyValue>> {
        if rev - 1 < self.compact_rev {
            return Ok(None);
        }
        match self.index.get(key, rev - 1) {
            Some(state) => Ok(Some(self.read_kv(state.modified)?)),
            None => Ok(None),
        }
    }

    /// The backend, for the lease and auth stores that share it.
    pub fn backend(&mut self) -> &mut Backend {
        &mut self.backend
    }
}

/// A response header with only the revision; the API layer adds the rest.
pub fn header(revision: i64) -> ResponseHeader {
    ResponseHeader {
        revision,
        ..Default::default()
    }
}

/// The value stored at `rev`, which the index says is a put.
fn read_value(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    rev: Revision,
) -> Result<KeyValue> {
    let key = rev.to_key(false);
    let v = table.get(key.as_slice()).map_err(be)?;
    let v = v.unwrap_or_else(|| panic!("index names revision {rev} that the backend lacks"));
    decode(&key, v.value())
}

/// A value of a [`RangeRead`]: read under the store's lock, or committed and read later.
enum Slot {
    Read(KeyValue),
    Committed(Revision),
}

/// A range whose index lookup is done; [`RangeRead::finish`] reads the committed values
/// and shapes the response (filters, sort, limit), without the store.
pub struct RangeRead {
    resp: RangeResponse,
    slots: Vec<Slot>,
    /// A view of the last commit, when a slot needs one.
    view: Option<ReadView>,
    /// The request's options (its key and range end are not needed any more).
    req: RangeRequest,
}

impl RangeRead {
    pub fn finish(self) -> Result<RangeResponse> {
        let RangeRead {
            mut resp,
            slots,
            view,
            req,
        } = self;
        if req.count_only {
            return Ok(resp);
        }
        let table = match &view {
            Some(v) => Some(v.tx().open_table(KEY).map_err(be)?),
            None => None,
        };
        let mut kvs = Vec::with_capacity(slots.len());
        for slot in slots {
            kvs.push(match slot {
                Slot::Read(kv) => kv,
                Slot::Committed(rev) => {
                    read_value(table.as_ref().expect("a view for committed values"), rev)?
                }
            });
        }
        drop(table);
        drop(view);
        kvs.retain(|kv| {
            (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
                && kv.mod_revision >= req.min_mod_revision
                && kv.create_revision >= req.min_create_revision
                && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
        });
        // As in etcd, a sort target without an order sorts only what the limit fetched
        // (in key order).
        let sort_order = match SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None) {
            SortOrder::None if req.sort_target != SortTarget::Key as i32 => SortOrder::Ascend,
            order => order,
        };
        sort_kvs(&mut kvs, sort_order, req.sort_target);
        if req.limit > 0 && kvs.len() > req.limit as usize {
            kvs.truncate(req.limit as usize);
            resp.more = true;
        }
        if req.keys_only {
            kvs.iter_mut().for_each(|kv| kv.value.clear());
        }
        resp.kvs = kvs;
        Ok(resp)
    }
}

/// The KeyValue stored under backend key `key`; bytes that are not one are damage.
pub(super) fn decode(key: &[u8], bytes: &[u8]) -> Result<KeyValue> {
    KeyValue::decode(bytes).map_err(|e| {
        corrupt(
            KEY,
            key,
            format!("undecodable value of {} bytes: {e}", bytes.len()),
        )
        .into()
    })
}

/// etcd sorts by the target and reverses for descending order; ties keep key order here
/// (etcd's sort is not stable, so any order of ties is etcd-compatible).
fn sort_kvs(kvs: &mut [KeyValue], order: SortOrder, target: i32) {
    if order == SortOrder::None {
        return;
    }
    let target = SortTarget::try_from(target).unwrap_or(SortTarget::Key);
    let key = |kv: &KeyValue| -> (i64, Vec<u8>) {
        match target {
            SortTarget::Key => (0, kv.key.clone()),
            SortTarget::Version => (kv.version, Vec::new()),
            SortTarget::Create => (kv.create_revision, Vec::new()),
            SortTarget::Mod => (kv.mod_revision, Vec::new()),
            SortTarget::Value => (0, kv.value.clone()),
        }
    };
    if order == SortOrder::Descend {
        kvs.sort_by_key(|kv| std::cmp::Reverse(key(kv)));
    } else {
        kvs.sort_by_key(key);
    }
}
