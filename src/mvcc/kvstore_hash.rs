//! HashKV exactly as etcd computes it (`store.HashByRev`), so that etcd and detcd holding
//! the same history answer the same hash: crc32 Castagnoli over the bucket name `key`, then
//! every backend key and value of the `key` table in revision order up to the revision,
//! tombstones included. Below the compaction revision only what etcd's compaction keeps
//! counts: per key, the revision that shows its value at the hashed revision (etcd's
//! `treeIndex.Keep`); if no key has one, whatever compaction left (etcd then hashes its
//! whole compacted backend). The answer therefore does not depend on how far the physical
//! compaction has gone, on this member or on etcd.

use std::collections::BTreeSet;

use redb::{ReadableTable, TableHandle};

use super::error::{Error, Result};
use super::kvstore::{header, KvStore};
use super::revision::Revision;
use crate::backend::{be, ReadView, KEY};
use crate::proto::etcdserverpb::HashKvResponse;

/// crc32 with the Castagnoli polynomial (Go's `crc32.MakeTable(crc32.Castagnoli)`), which
/// etcd's Hash and HashKV use; crc32fast only has the IEEE one.
#[derive(Clone, Debug)]
pub struct Castagnoli(u32);

/// Byte-at-a-time table of the reflected polynomial 0x82F63B78.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

impl Default for Castagnoli {
    fn default() -> Self {
        Castagnoli(!0)
    }
}

impl Castagnoli {
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = TABLE[((self.0 ^ b as u32) & 0xff) as usize] ^ (self.0 >> 8);
        }
    }

    pub fn finalize(&self) -> u32 {
        !self.0
    }
}

/// What HashKV at a revision reads, fixed when it was asked: the revision, the
/// compaction, and the revisions kept below it.
struct HashPlan {
    at: i64,
    current_rev: i64,
    compact_rev: i64,
    keep: BTreeSet<Revision>,
}

impl HashPlan {
    fn hash(
        &self,
        table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    ) -> Result<HashKvResponse> {
        let mut h = Castagnoli::default();
        h.update(KEY.name().as_bytes());
        let upper = Revision::start_key(self.at + 1);
        for entry in table.range(..upper.as_slice()).map_err(be)? {
            let (k, v) = entry.map_err(be)?;
            let (r, _) = Revision::from_key(k.value());
            if r.main <= self.compact_rev && !self.keep.contains(&r) {
                continue;
            }
            h.update(k.value());
            h.update(v.value());
        }
        Ok(HashKvResponse {
            header: Some(header(self.current_rev)),
            hash: h.finalize(),
            compact_revision: self.compact_rev,
            hash_revision: self.at,
        })
    }
}

/// A HashKV whose backend scan runs after the store's lock is released
/// ([`KvStore::begin_hash_kv`]).
pub struct HashKvRead {
    plan: HashPlan,
    view: ReadView,
}

impl HashKvRead {
    pub fn finish(self) -> Result<HashKvResponse> {
        self.plan.hash(&self.view.tx().open_table(KEY).map_err(be)?)
    }
}

impl KvStore {
    /// etcd's HashKV at `rev` (0: the current revision). As etcd, a revision at or below
    /// the compaction revision is compacted, although a range may still read it.
    pub fn hash_kv(&self, rev: i64) -> Result<HashKvResponse> {
        self.hash_plan(rev)?
            .hash(&self.backend.tx().open_table(KEY).map_err(be)?)
    }

    /// [`KvStore::hash_kv`], committing first so that the scan can read a view of the last
    /// commit without the store.
    pub fn begin_hash_kv(&mut self, rev: i64) -> Result<HashKvRead> {
        let plan = self.hash_plan(rev)?;
        Ok(HashKvRead {
            view: self.committed_view()?,
            plan,
        })
    }

    fn hash_plan(&self, rev: i64) -> Result<HashPlan> {
        if rev > self.current_rev {
            return Err(Error::FutureRev);
        }
        if rev > 0 && rev <= self.compact_rev {
            return Err(Error::Compacted);
        }
        let at = if rev > 0 { rev } else { self.current_rev };
        let mut keep = self.index.keep(at);
        if keep.is_empty() {
            keep = self.index.keep(self.compact_rev);
        }
        Ok(HashPlan {
            at,
            current_rev: self.current_rev,
            compact_rev: self.compact_rev,
            keep,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Castagnoli;

    /// The check value of CRC-32C (RFC 3720's iSCSI polynomial), split across updates.
    #[test]
    fn castagnoli_check_value() {
        let mut h = Castagnoli::default();
        h.update(b"1234");
        h.update(b"56789");
        assert_eq!(h.finalize(), 0xE306_9283);
    }
}
