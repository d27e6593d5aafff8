//! etcd's database file, to and from detcd: the snapshot format etcd's tools read
//! (`etcdctl snapshot save`, `etcdutl snapshot status` and `restore`), so that data moves
//! between etcd and detcd in either direction.
//!
//! A snapshot is a bbolt file in etcd's layout ([`layout`]) followed by the sha256 of the
//! file, which etcd's restore checks; a file whose size is 32 past a multiple of 512
//! carries one (etcd's rule, as bolt files are whole pages).

pub mod layout;

use sha2::{Digest, Sha256};

use std::path::Path;

use crate::backend::bolt::{self, BoltError, Source};
use crate::backend::{for_each, tables, BackendError};
use crate::mvcc::Castagnoli;
use crate::runtime::{Disk, DiskFile, OpenMode};

pub use layout::{export, import_entry};

/// Bytes of the sha256 trailer.
pub const TRAILER_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{0}")]
    Bolt(#[from] BoltError),
    /// etcdutl's words.
    #[error("snapshot missing hash but --skip-hash-check=false")]
    MissingHash,
    #[error("expected sha256 {expected:?}, got {got:?}")]
    HashMismatch { expected: Vec<u8>, got: Vec<u8> },
    #[error("not an etcd database: {0}")]
    NotEtcd(String),
    #[error("{0}")]
    Backend(#[from] BackendError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Writes what `from` (a [`crate::backend::Backend::begin_read`] snapshot) sees as an etcd
/// database file at `path`, replacing any file there: what the Snapshot call streams. The
/// `key` table streams through; only the other tables (leases, auth, membership: small)
/// are held in memory.
pub fn write_etcd_db(
    from: &redb::ReadTransaction,
    disk: &dyn Disk,
    path: &Path,
) -> Result<(), MigrateError> {
    let rest = tables(from, &["key"])?;
    let finished = layout::finished_compaction(&rest)?;
    if disk.exists(path) {
        disk.remove(path)?;
    }
    let file = disk.open(path, OpenMode::CreateNew)?;
    let mut w = bolt::Writer::new(FileSink(file.as_ref()));
    for (name, kvs) in &export(&rest)? {
        w.bucket(name)?;
        if name == b"key" {
            for_each(from, "key", |k, v| {
                if layout::exported(k, finished)? {
                    w.put(k, v)?;
                }
                Ok::<_, MigrateError>(())
            })?;
        }
        for (k, v) in kvs {
            w.put(k, v)?;
        }
    }
    w.finish()?;
    Ok(())
}

/// The bolt writer's sink on a disk file.
struct FileSink<'a>(&'a dyn DiskFile);

impl bolt::Sink for FileSink<'_> {
    fn write_at(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.0.write_at(offset, bytes)
    }
}

/// The database followed by its sha256, as etcd's Snapshot RPC streams it.
pub fn with_trailer(mut db: Vec<u8>) -> Vec<u8> {
    let sum = Sha256::digest(&db);
    db.extend_from_slice(&sum);
    db
}

/// Bytes of the database inside a snapshot file of `len` bytes (etcd's rule for a trailer).
pub fn db_len(len: u64) -> u64 {
    if len % 512 == TRAILER_BYTES as u64 {
        len - TRAILER_BYTES as u64
    } else {
        len
    }
}

/// Checks a snapshot's sha256 trailer unless `skip_check`; a file without one passes only
/// when `skip_check` (etcdutl's rules). Reads the file in chunks.
pub fn check_trailer<S: Source + ?Sized>(file: &S, skip_check: bool) -> Result<(), MigrateError> {
    let db = db_len(file.size());
    if db == file.size() {
        return if skip_check {
            Ok(())
        } else {
            Err(MigrateError::MissingHash)
        };
    }
    if skip_check {
        return Ok(());
    }
    let mut sha = Sha256::new();
    let mut chunk = vec![0; 1 << 20];
    let mut at = 0;
    while at < db {
        let n = chunk.len().min((db - at) as usize);
        file.read_at(at, &mut chunk[..n])?;
        sha.update(&chunk[..n]);
        at += n as u64;
    }
    let mut expected = [0; TRAILER_BYTES];
    file.read_at(db, &mut expected)?;
    let got = sha.finalize();
    if got.as_slice() != expected {
        return Err(MigrateError::HashMismatch {
            expected: expected.to_vec(),
            got: got.to_vec(),
        });
    }
    Ok(())
}

/// The first `len` bytes of a source: the database without its trailer.
pub struct Prefix<'a, S: ?Sized>(pub &'a S, pub u64);

impl<S: Source + ?Sized> Source for Prefix<'_, S> {
    fn size(&self) -> u64 {
        self.1
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if offset + buf.len() as u64 > self.1 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.0.read_at(offset, buf)
    }
}

/// What `etcdutl snapshot status` reports.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// crc32 Castagnoli of every bucket's name, keys and values, buckets in name order.
    pub hash: u32,
    /// Main revision of the last key in the `key` bucket.
    pub revision: i64,
    /// Keys in all buckets.
    pub total_key: u64,
    /// Bytes of the pages in use.
    pub total_size: u64,
}

/// etcdutl's status of a bolt file (a trailer, if any, is past the pages and unread).
pub fn status<S: Source + ?Sized>(db: &S) -> Result<Status, MigrateError> {
    let mut s = Status {
        hash: 0,
        revision: 0,
        total_key: 0,
        total_size: bolt::used_bytes(db)?,
    };
    let mut h = Castagnoli::default();
    let mut current: Option<Vec<u8>> = None;
    bolt::read_each(db, |bucket, k, v| {
        if current.as_deref() != Some(bucket) {
            h.update(bucket);
            current = Some(bucket.to_vec());
        }
        if k.is_empty() {
            return Ok(()); // an empty bucket
        }
        h.update(k);
        h.update(v);
        s.total_key += 1;
        if bucket == b"key" {
            s.revision = layout::revision(k)?.0.main;
        }
        Ok::<_, MigrateError>(())
    })?;
    s.hash = h.finalize();
    Ok(s)
}

/// Calls `f(table, key, value)` with every entry of an etcd database as detcd stores it
/// ([`layout::import_entry`]); refuses a bolt file that is not an etcd database.
pub fn import_each<S: Source + ?Sized>(
    db: &S,
    mut f: impl FnMut(&str, &[u8], &[u8]) -> Result<(), MigrateError>,
) -> Result<(), MigrateError> {
    let mut seen = (false, false);
    bolt::read_each(db, |bucket, k, v| {
        seen.0 |= bucket == b"key";
        seen.1 |= bucket == b"meta";
        if k.is_empty() {
            return Ok(()); // an empty bucket
        }
        match layout::import_entry(bucket, k, v)? {
            Some((t, k, v)) => f(t, &k, &v),
            None => Ok(()),
        }
    })?;
    if seen != (true, true) {
        return Err(MigrateError::NotEtcd(
            "no \"key\" and \"meta\" buckets".to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// An etcd database of a few hundred revisions, a lease and meta, as export writes it.
    fn etcd_file() -> Vec<u8> {
        let mut t = bolt::Buckets::new();
        let key = (1..400i64)
            .map(|main| {
                let kv = crate::proto::mvccpb::KeyValue {
                    key: format!("k{}", main % 17).into_bytes(),
                    mod_revision: main,
                    create_revision: main,
                    version: 1,
                    value: vec![b'v'; (main % 90) as usize],
                    lease: 0,
                };
                let rev = crate::mvcc::Revision::new(main, 0).to_key(false);
                (rev, prost::Message::encode_to_vec(&kv))
            })
            .collect();
        t.insert(b"key".to_vec(), key);
        let lease: Vec<u8> = [7i64, 60, 0].iter().flat_map(|x| x.to_be_bytes()).collect();
        t.insert(
            b"lease".to_vec(),
            [(7i64.to_be_bytes().to_vec(), lease)].into(),
        );
        t.insert(
            b"meta".to_vec(),
            [(b"finishedCompactRev".to_vec(), 3u64.to_be_bytes().to_vec())].into(),
        );
        bolt::write(&export(&t).unwrap()).unwrap()
    }

    #[test]
    fn a_valid_file_imports() {
        let file = etcd_file();
        let mut n = 0;
        import_each(&file[..], |_, _, _| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(
            n,
            399 + 1 + 1,
            "revisions, the lease, the finished compaction"
        );
        assert_eq!(status(&file[..]).unwrap().revision, 399);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        /// Flipped bytes past the meta pages give an error or data, never a panic, in
        /// status and in import (whose output reaches the store).
        #[test]
        fn corrupt_files_do_not_panic(
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut file = etcd_file();
            let data = file.len() - 2 * bolt::PAGE_SIZE;
            for (at, byte) in flips {
                file[2 * bolt::PAGE_SIZE + at.index(data)] = byte;
            }
            let _ = status(&file[..]);
            let _ = import_each(&file[..], |_, _, _| Ok(()));
        }
    }
}
