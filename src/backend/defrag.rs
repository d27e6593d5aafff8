//! Defragmentation by copy, as etcd's backend does it (`backend.defrag`): every table is
//! written in key order into a fresh file beside the database, the file is synced, renamed
//! over the database and opened in its place. redb's own `compact` moves pages in place but
//! walks every page of the trees on each pass, whether or not anything moves (seconds on a
//! few hundred MiB); the copy reads each row once, and since redb fills a leaf before it
//! starts the next on ascending keys, it leaves no free page.
//!
//! What a crash leaves: until the rename the database file is untouched, and at most a copy
//! lies beside it (`db.tmp` for `db`), which [`Backend::open`] removes. The copy is complete
//! and synced before the rename, so once the rename reaches the disk the database's name
//! holds a whole file either way. The crash points fall where etcd's failpoints do:
//! `defrag-before-copy`, then `defrag-before-rename` once the copy is synced (etcd has none
//! after the rename).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use redb::{Durability, ReadableTable, TableHandle};

use super::{be, dir_of, guard, open_db, Backend, DiskBackend, Result, DEFAULT_CACHE_BYTES};
use crate::runtime::{CrashPoint, Disk, DiskFile, OpenMode};

impl Backend {
    /// Commits, then replaces the file by a copy without free pages (etcd's defragment).
    /// `disk` is the one the backend was opened on. Open [`super::ReadView`]s go on reading
    /// the file they began on, which stays open until the last of them ends.
    ///
    /// A failure before the rename (ENOSPC while copying, a failed sync) is an error that
    /// leaves the database as it was, in use. After the rename the path names the copy: if
    /// making the rename durable or opening the copy fails, every later commit is refused
    /// (etcd exits there), since this backend no longer writes the file the path names.
    pub fn defragment(&mut self, disk: &dyn Disk) -> Result<()> {
        self.usable()?;
        self.crash_point(CrashPoint::DefragBeforeCopy)?;
        self.commit_batch()?;
        let path = self.path().to_path_buf();
        let tmp = temp_path(&path);
        let renamed = remove_leftover(disk, &path)
            .and_then(|()| write_dense(&self.begin_read()?, disk, &tmp))
            .and_then(|()| self.crash_point(CrashPoint::DefragBeforeRename))
            .and_then(|()| Ok(disk.rename(&tmp, &path)?));
        if let Err(e) = renamed {
            // Best effort: the next open removes what is left.
            let _ = disk.remove(&tmp);
            return Err(e);
        }
        self.reopen(disk, &path).inspect_err(|e| {
            self.broken = Some(format!(
                "a defragment renamed its copy over the database, then failed ({e}); restart \
                 to open the copy"
            ));
        })
    }

    /// Commits the open batch and opens the next, without [`Backend::commit`]'s crash
    /// points: a defragment passes its own.
    fn commit_batch(&mut self) -> Result<()> {
        let tx = self.tx.take().expect("a write transaction is always open");
        let committed = tx.commit();
        let begun = self.begin();
        committed.map_err(be)?;
        begun?;
        self.size.store(self.file.allocated()?, Ordering::Relaxed);
        Ok(())
    }

    /// Makes the rename of the copy to `path` durable and puts the copy in use. Not verified
    /// as [`Backend::open`] verifies a file: this process has just written it.
    fn reopen(&mut self, disk: &dyn Disk, path: &Path) -> Result<()> {
        disk.sync_dir(dir_of(path))?;
        let file: Arc<dyn DiskFile> = Arc::from(disk.open(path, OpenMode::Existing)?);
        let db = guard::guard(path, || open_db(path, file.clone(), false))?;
        let mut tx = db.begin_write().map_err(be)?;
        tx.set_durability(Durability::Immediate).map_err(be)?;
        let size = file.allocated()?;
        // The old batch (empty) aborts before its database closes.
        drop(self.tx.replace(tx));
        self.db = Arc::new(db);
        self.file = file;
        self.size.store(size, Ordering::Relaxed);
        Ok(())
    }
}

/// Writes every table that `from` sees into a new database file at `path`, in key order and
/// one transaction, and syncs it; making its name durable is the caller's part.
pub(super) fn write_dense(
    from: &redb::ReadTransaction,
    disk: &dyn Disk,
    path: &Path,
) -> Result<()> {
    let file: Arc<dyn DiskFile> = Arc::from(disk.open(path, OpenMode::CreateNew)?);
    let db = redb::Builder::new()
        .set_cache_size(DEFAULT_CACHE_BYTES)
        .create_with_backend(DiskBackend::new(file.clone()))
        .map_err(be)?;
    let mut tx = db.begin_write().map_err(be)?;
    tx.set_durability(Durability::Immediate).map_err(be)?;
    for handle in from.list_tables().map_err(be)? {
        let def = redb::TableDefinition::<&[u8], &[u8]>::new(handle.name());
        let src = from.open_table(def).map_err(be)?;
        let mut dst = tx.open_table(def).map_err(be)?;
        for entry in src.iter().map_err(be)? {
            let (k, v) = entry.map_err(be)?;
            dst.insert(k.value(), v.value()).map_err(be)?;
        }
    }
    tx.commit().map_err(be)?;
    db.close().map_err(be)?;
    Ok(file.sync()?)
}

/// Where a defragment writes its copy of the database at `path`: beside it, named as
/// etcd's (`db.tmp*` for `db`).
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Removes the copy an interrupted defragment left beside the database at `path`. Its
/// removal need not be durable: a copy that comes back after a crash goes the next time.
pub(super) fn remove_leftover(disk: &dyn Disk, path: &Path) -> Result<()> {
    let tmp = temp_path(path);
    if disk.exists(&tmp) {
        disk.remove(&tmp)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::bolt::Buckets;
    use crate::backend::{tables, KEY};
    use crate::runtime::{Fault, PointFault, RealDisk, SimDisk};

    /// Rows of 0.5-2 KiB under `keys` keys, then every other key deleted, so that the file
    /// holds free pages; every row is committed.
    fn loaded(disk: &dyn Disk, path: &Path, keys: u32) -> Backend {
        let mut b = Backend::open(disk, path).unwrap();
        for i in 0..keys {
            let value = vec![i as u8; 512 + (i as usize * 37) % 1536];
            b.insert("key", &i.to_be_bytes(), &value).unwrap();
            if i % 50 == 49 {
                b.commit().unwrap();
            }
        }
        {
            let mut t = b.tx().open_table(KEY).unwrap();
            for i in (0..keys).step_by(2) {
                t.remove(i.to_be_bytes().as_slice()).unwrap();
            }
        }
        b.commit().unwrap();
        b
    }

    fn rows(b: &Backend) -> Buckets {
        tables(&b.begin_read().unwrap(), &[]).unwrap()
    }

    /// The copy holds every row of every table, takes no more space than redb's in-place
    /// compaction of the same file (measured on the real disk, where the size is the blocks
    /// the file occupies), and opens again, intact, with no copy left beside it.
    #[test]
    fn the_copy_keeps_every_row_and_is_no_larger_than_compact() {
        let dir = tempfile::tempdir().unwrap();
        let (path, other) = (dir.path().join("db"), dir.path().join("other"));
        let mut b = loaded(&RealDisk, &path, 400);
        let before = rows(&b);
        let fragmented = b.size();
        b.defragment(&RealDisk).unwrap();
        assert_eq!(rows(&b), before);
        let copied = b.size();

        let mut c = loaded(&RealDisk, &other, 400);
        c.tx.take().unwrap().abort().unwrap();
        while Arc::get_mut(&mut c.db).unwrap().compact().unwrap() {}
        let compacted = c.file.allocated().unwrap();
        assert!(
            copied <= compacted && copied < fragmented,
            "copy {copied} bytes, in-place compaction {compacted}, before {fragmented}"
        );

        put(&mut b, 7);
        drop(b);
        assert!(!RealDisk.exists(&temp_path(&path)));
        let mut b = Backend::open(&RealDisk, &path).unwrap();
        assert!(b.check_integrity().unwrap());
        let mut expected = before;
        expected
            .get_mut(b"meta".as_slice())
            .unwrap()
            .insert(b"x".to_vec(), 7u64.to_be_bytes().to_vec());
        assert_eq!(rows(&b), expected);
    }

    fn put(b: &mut Backend, x: u64) {
        crate::backend::put_u64(b.tx(), crate::backend::META, b"x", x).unwrap();
        b.commit().unwrap();
    }

    /// A view taken before a defragment reads its commit after the file was replaced and
    /// written again; the replaced file stays open for it.
    #[test]
    fn a_view_outlives_the_file_it_began_on() {
        let disk = SimDisk::new(3);
        let mut b = loaded(&disk, Path::new("/d/db"), 100);
        put(&mut b, 1);
        let view = b.view().unwrap();
        b.defragment(&disk).unwrap();
        put(&mut b, 2);
        let t = view.tx().open_table(crate::backend::META).unwrap();
        assert_eq!(
            t.get(b"x".as_slice()).unwrap().unwrap().value(),
            1u64.to_be_bytes()
        );
        assert_eq!(
            crate::backend::get_u64(b.tx(), crate::backend::META, b"x").unwrap(),
            2
        );
    }

    /// The power fails after each disk operation of a defragment in turn (and at each of
    /// its crash points, killed or cut): whatever the crash keeps or tears, the store opens
    /// with every committed row, verified, and without the copy.
    #[test]
    fn a_crash_anywhere_in_a_defragment_keeps_the_committed_rows() {
        let path = Path::new("/d/db");
        let mut cases: Vec<Fault> = [CrashPoint::DefragBeforeCopy, CrashPoint::DefragBeforeRename]
            .into_iter()
            .flat_map(|point| {
                [PointFault::PowerCut, PointFault::Kill].map(|then| Fault::CrashAt {
                    point,
                    nth: 1,
                    then,
                })
            })
            .collect();
        cases.extend((0..).map(|ops| Fault::DieAfter { ops }).take(2000));
        let mut finished = false;
        for (n, fault) in cases.into_iter().enumerate() {
            let disk = SimDisk::new(n as u64);
            let mut b = loaded(&disk, path, 60);
            put(&mut b, 1);
            let expected = rows(&b);
            disk.inject(fault.clone());
            let done = b.defragment(&disk).is_ok();
            if done && matches!(fault, Fault::DieAfter { .. }) {
                finished = true;
            }
            drop(b);
            disk.crash();
            let mut b = Backend::open(&disk, path)
                .unwrap_or_else(|e| panic!("{fault:?}: the store does not open: {e}"));
            assert!(
                !disk.exists(&temp_path(path)),
                "{fault:?}: the copy is left"
            );
            assert!(b.check_integrity().unwrap(), "{fault:?}");
            assert_eq!(rows(&b), expected, "{fault:?}");
            if finished {
                break;
            }
        }
        assert!(finished, "2,000 operations did not finish a defragment");
    }

    /// Running out of space while copying is an error that leaves the database as it was
    /// and in use, and the partial copy removed; with space again, the defragment works.
    #[test]
    fn no_space_for_the_copy_leaves_the_database_in_use() {
        let disk = SimDisk::new(5);
        let path = Path::new("/d/db");
        let mut b = loaded(&disk, path, 400);
        let before = rows(&b);
        disk.inject(Fault::NoSpace {
            capacity: Some(disk.used_bytes() + 64 * 1024),
        });
        let e = b.defragment(&disk).unwrap_err().to_string();
        assert!(e.contains("os error 28"), "{e}");
        assert!(!disk.exists(&temp_path(path)));
        disk.heal();
        assert_eq!(rows(&b), before);
        put(&mut b, 3);
        b.defragment(&disk).unwrap();
        assert_eq!(
            crate::backend::get_u64(b.tx(), crate::backend::META, b"x").unwrap(),
            3
        );
    }

    /// A copy left beside the database, whole or torn, does not stop it opening, and goes.
    #[test]
    fn a_leftover_copy_is_removed_at_open() {
        let disk = SimDisk::new(6);
        let path = Path::new("/d/db");
        let b = loaded(&disk, path, 100);
        let expected = rows(&b);
        drop(b);
        let tmp = temp_path(path);
        let f = disk.open(&tmp, OpenMode::CreateNew).unwrap();
        f.write_at(0, &[0xab; 8192]).unwrap();
        drop(f);
        let b = Backend::open(&disk, path).unwrap();
        assert!(!disk.exists(&tmp));
        assert_eq!(rows(&b), expected);
        assert_eq!(temp_path(path), Path::new("/d/db.tmp"));
    }
}
