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

use crate::backend::bolt::{self, BoltError, Buckets};
use crate::backend::{tables, BackendError};
use crate::mvcc::Castagnoli;
use crate::runtime::{Disk, OpenMode};

pub use layout::{export, import};

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
/// database file at `path`, replacing any file there: what the Snapshot call streams.
pub fn write_etcd_db(
    from: &redb::ReadTransaction,
    disk: &dyn Disk,
    path: &Path,
) -> Result<(), MigrateError> {
    let db = bolt::write(&export(&tables(from)?)?)?;
    if disk.exists(path) {
        disk.remove(path)?;
    }
    let file = disk.open(path, OpenMode::CreateNew)?;
    Ok(file.write_at(0, &db)?)
}

/// The database followed by its sha256, as etcd's Snapshot RPC streams it.
pub fn with_trailer(mut db: Vec<u8>) -> Vec<u8> {
    let sum = Sha256::digest(&db);
    db.extend_from_slice(&sum);
    db
}

/// The database inside a snapshot file, its sha256 trailer checked unless `skip_check`;
/// a file without a trailer passes only when `skip_check` (etcdutl's rules).
pub fn strip_trailer(file: &[u8], skip_check: bool) -> Result<&[u8], MigrateError> {
    let has_trailer = file.len() % 512 == TRAILER_BYTES;
    if !has_trailer {
        return if skip_check {
            Ok(file)
        } else {
            Err(MigrateError::MissingHash)
        };
    }
    let (db, sum) = file.split_at(file.len() - TRAILER_BYTES);
    if !skip_check {
        let got = Sha256::digest(db);
        if got.as_slice() != sum {
            return Err(MigrateError::HashMismatch {
                expected: sum.to_vec(),
                got: got.to_vec(),
            });
        }
    }
    Ok(db)
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

/// etcdutl's status of a bolt file (trailer, if any, removed).
pub fn status(db: &[u8]) -> Result<Status, MigrateError> {
    let buckets = bolt::read(db)?;
    let mut s = Status {
        hash: 0,
        revision: 0,
        total_key: 0,
        total_size: bolt::used_bytes(db)?,
    };
    let mut h = Castagnoli::default();
    for (name, kvs) in &buckets {
        h.update(name);
        for (k, v) in kvs {
            h.update(k);
            h.update(v);
            s.total_key += 1;
        }
        if name == b"key" {
            if let Some(k) = kvs.keys().next_back() {
                s.revision = layout::revision(k)?.0.main;
            }
        }
    }
    s.hash = h.finalize();
    Ok(s)
}

/// Reads an etcd database, refusing a bolt file that is not one.
pub fn read_etcd(db: &[u8]) -> Result<Buckets, MigrateError> {
    let buckets = bolt::read(db)?;
    if !buckets.contains_key(&b"key"[..]) || !buckets.contains_key(&b"meta"[..]) {
        return Err(MigrateError::NotEtcd(
            "no \"key\" and \"meta\" buckets".to_string(),
        ));
    }
    Ok(buckets)
}
