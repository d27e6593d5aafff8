//! The backend as a snapshot: a consistent copy for a follower whose log is behind the
//! leader's first index, and the check a received copy passes before it becomes the
//! backend. etcd streams its bbolt file from a read transaction; redb has no such copy,
//! so the tables of a read transaction are written into a fresh database file in key
//! order ([`Backend::copy`]), which leaves it as dense as a defragmented one.

use std::path::Path;

use redb::{ReadableTable, TableHandle};

use super::bolt::Buckets;
use super::{be, Backend, BackendError, ReadView, Result};
use crate::runtime::Disk;

/// The backend as of one commit, held by a [`ReadView`]: later commits and defragments do
/// not change what it reads.
pub struct SnapshotSource(ReadView);

impl std::fmt::Debug for SnapshotSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnapshotSource")
    }
}

impl Backend {
    /// The state of the last commit; commit first for it to hold everything applied.
    pub fn snapshot_source(&self) -> Result<SnapshotSource> {
        Ok(SnapshotSource(self.view()?))
    }
}

impl SnapshotSource {
    /// Writes every table into a new database at `path` (replacing any file there) and
    /// makes it durable.
    pub fn write_to(&self, disk: &dyn Disk, path: &Path) -> Result<()> {
        if disk.exists(path) {
            disk.remove(path)?;
        }
        Backend::copy(self.0.tx(), disk, path)
    }
}

/// Every table that `from` (a [`Backend::begin_read`] snapshot) sees but those named in
/// `except`, as data: name to keys and values.
pub fn tables(from: &redb::ReadTransaction, except: &[&str]) -> Result<Buckets> {
    let mut out = Buckets::new();
    for handle in from.list_tables().map_err(be)? {
        if except.contains(&handle.name()) {
            continue;
        }
        let mut kvs = std::collections::BTreeMap::new();
        for_each(from, handle.name(), |k, v| {
            kvs.insert(k.to_vec(), v.to_vec());
            Ok::<_, BackendError>(())
        })?;
        out.insert(handle.name().as_bytes().to_vec(), kvs);
    }
    Ok(out)
}

/// Calls `f` with every entry of table `name` that `from` sees, in key order, without
/// holding the table in memory.
pub fn for_each<E: From<BackendError>>(
    from: &redb::ReadTransaction,
    name: &str,
    mut f: impl FnMut(&[u8], &[u8]) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let def = redb::TableDefinition::<&[u8], &[u8]>::new(name);
    let table = from.open_table(def).map_err(be)?;
    for entry in table.iter().map_err(be)? {
        let (k, v) = entry.map_err(be)?;
        f(k.value(), v.value())?;
    }
    Ok(())
}

impl Backend {
    /// Writes one entry of table `name` into the open batch.
    pub fn insert(&self, name: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let def = redb::TableDefinition::<&[u8], &[u8]>::new(name);
        let mut table = self.tx().open_table(def).map_err(be)?;
        table.insert(key, value).map_err(be)?;
        Ok(())
    }
}

/// Whether the database at `path` opens, which verifies it ([`Backend::open`]): a received
/// snapshot must, before it replaces the backend. Damage is an error, not `false`.
pub fn verify(disk: &dyn Disk, path: &Path) -> Result<bool> {
    Backend::open(disk, path).map(|_| true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{get_u64, put_u64, META};
    use crate::runtime::{OpenMode, SimDisk};

    /// The copy holds the source's commit: neither the open batch nor later commits.
    #[test]
    fn copy_holds_exactly_the_source_commit() {
        let disk = SimDisk::new(7);
        let mut b = Backend::open(&disk, Path::new("/d/db")).unwrap();
        put_u64(b.tx(), META, b"x", 1).unwrap();
        b.commit().unwrap();
        put_u64(b.tx(), META, b"x", 2).unwrap();
        let source = b.snapshot_source().unwrap();
        b.commit().unwrap();
        put_u64(b.tx(), META, b"x", 3).unwrap();
        b.commit().unwrap();
        let copy_path = Path::new("/d/copy.db");
        source.write_to(&disk, copy_path).unwrap();
        assert!(verify(&disk, copy_path).unwrap());
        let copy = Backend::open(&disk, copy_path).unwrap();
        assert_eq!(get_u64(copy.tx(), META, b"x").unwrap(), 1);
    }

    #[test]
    fn garbage_does_not_verify() {
        let disk = SimDisk::new(7);
        disk.create_dir_all(Path::new("/d")).unwrap();
        let path = Path::new("/d/bad.db");
        let f = disk.open(path, OpenMode::CreateNew).unwrap();
        f.write_at(0, &[0xab; 8192]).unwrap();
        drop(f);
        assert!(!matches!(verify(&disk, path), Ok(true)));
    }
}
