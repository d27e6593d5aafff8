//! The backend: redb (a copy-on-write B-tree, like etcd's bbolt) over [`runtime::Disk`], so
//! the simulator's crashes and faults reach it.
//!
//! One write transaction stays open between commits and serves reads too, so the state
//! machine reads its own uncommitted writes (etcd's read buffer does the same job). Applies
//! are grouped: [`Backend::commit`] ends a batch durably and opens the next. A crash loses
//! whole uncommitted batches and nothing else: redb's commit is atomic and its header
//! checksums reject torn writes. A defragment replaces the file by a copy written in key
//! order, as etcd's does ([`Backend::defragment`]).
//!
//! [`runtime::Disk`]: crate::runtime::Disk

pub mod bolt;
mod defrag;
mod disk_backend;
mod guard;
mod layout;
mod snapshot;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::histogram::Histogram;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableHandle, WriteTransaction};

use crate::runtime::{Clock, CrashPoint, Disk, DiskFile, OpenMode};

pub use disk_backend::DiskBackend;
use layout::{create_tables, HASHED};
pub use layout::{
    get_u64, put_u64, Table, AUTH, AUTH_ROLES, AUTH_USERS, KEY, LEASE, MEMBERS, MEMBERS_REMOVED,
    META,
};
pub use snapshot::{for_each, tables, verify, SnapshotSource};

/// A backend failure: the disk or redb. The state machine cannot go on after one.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend: {0}")]
    Redb(#[from] redb::Error),
    #[error("backend io: {0}")]
    Io(#[from] std::io::Error),
    /// A row no version of detcd writes: damage that redb's checksums did not catch, or a
    /// file from elsewhere. Reading on would act on garbage, so it is an error, not a panic.
    #[error("backend: table {table}, key {key}: {what}")]
    Corrupt {
        table: String,
        key: String,
        what: String,
    },
    /// The database file fails redb's checks, or redb panicked reading it: damage from
    /// outside redb (a bad disk, a stray write), since a crash only tears uncommitted pages.
    #[error("backend {}: {what}", file.display())]
    Damaged { file: PathBuf, what: String },
}

/// The error for a row of `table` under `key` that does not decode; `what` says how.
pub fn corrupt(table: Table, key: &[u8], what: impl Into<String>) -> BackendError {
    BackendError::Corrupt {
        table: table.name().to_string(),
        key: format!("\"{}\"", key.escape_ascii()),
        what: what.into(),
    }
}

/// Converts any redb error kind.
pub(crate) fn be<E: Into<redb::Error>>(e: E) -> BackendError {
    BackendError::Redb(e.into())
}

pub type Result<T> = std::result::Result<T, BackendError>;

/// redb's page cache; bounded so that memory per member stays predictable.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// A read-only snapshot of the last commit, taken under the store's lock and read after
/// it is released, so that long reads and applies do not wait for each other. It holds the
/// database it was taken from: a defragment that replaces the file meanwhile leaves that
/// database open, on the old file, until its last view ends.
pub struct ReadView {
    tx: redb::ReadTransaction,
    /// Declared after `tx`, so that the transaction ends before the database can close.
    _db: Arc<Database>,
}

impl ReadView {
    pub fn tx(&self) -> &redb::ReadTransaction {
        &self.tx
    }

    /// A crc32 of every table but `meta` (whose consistent index differs between members
    /// that applied the same entries in different batches).
    pub fn hash(&self) -> Result<u32> {
        let mut h = crc32fast::Hasher::new();
        for def in HASHED {
            h.update(def.name().as_bytes());
            let table = self.tx().open_table(def).map_err(be)?;
            for entry in table.iter().map_err(be)? {
                let (k, v) = entry.map_err(be)?;
                h.update(k.value());
                h.update(v.value());
            }
        }
        Ok(h.finalize())
    }
}

/// The redb database and its open write transaction.
pub struct Backend {
    /// Invariant: `Some` except inside [`Backend::commit`]. Declared before `db` so that
    /// it drops (aborts) first.
    tx: Option<WriteTransaction>,
    /// Shared with the [`ReadView`]s taken from it: a defragment replaces it, and the
    /// replaced database closes when the last of them ends.
    db: Arc<Database>,
    file: Arc<dyn DiskFile>,
    /// Where commits report their latency (etcd's
    /// `etcd_disk_backend_commit_duration_seconds`), if anywhere.
    commit_latency: Option<Histogram>,
    /// The bytes the file takes at the last commit, as etcd's backend keeps its size: the
    /// quota check reads it for every write, without the store's lock and without a stat.
    size: Arc<AtomicU64>,
    /// Why commits are refused: a defragment failed after its rename, so the file at the
    /// path may not be the one this backend writes ([`Backend::defragment`]).
    broken: Option<String>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("file", &self.file.path())
            .finish()
    }
}

impl Backend {
    /// Opens (or creates) the database file at `path` and makes sure every table exists.
    /// A copy that a defragment left beside it unfinished is removed, as etcd's
    /// `cleanupSnapdir` removes `db.tmp*` at boot.
    ///
    /// A file that was shut down cleanly is verified first (redb's integrity check: the
    /// checksum of every page of the committed trees), since redb's open trusts it and would
    /// read damage unchecked; a file a crash left is verified by redb's own recovery. Damage
    /// is [`BackendError::Damaged`], never a panic; so is damage that redb could repair only
    /// by going back to the commit before the last, since the entries of the lost commit may
    /// already be gone from the WAL.
    pub fn open(disk: &dyn Disk, path: &Path) -> Result<Self> {
        let dir = dir_of(path);
        disk.create_dir_all(dir)?;
        defrag::remove_leftover(disk, path)?;
        let existed = disk.exists(path);
        let file: Arc<dyn DiskFile> = Arc::from(disk.open(path, OpenMode::Create)?);
        if !existed {
            disk.sync_dir(dir)?;
        }
        guard::guard(path, || {
            let mut backend = Backend {
                db: Arc::new(open_db(path, file.clone(), existed)?),
                tx: None,
                file,
                commit_latency: None,
                size: Default::default(),
                broken: None,
            };
            backend.begin()?;
            create_tables(backend.tx())?;
            backend.commit()?;
            Ok(backend)
        })
    }

    fn begin(&mut self) -> Result<()> {
        assert!(self.tx.is_none(), "begin with a write transaction open");
        let mut tx = self.db.begin_write().map_err(be)?;
        tx.set_durability(Durability::Immediate).map_err(be)?;
        self.tx = Some(tx);
        Ok(())
    }

    /// The open transaction: reads see every write made since open, committed or not.
    pub fn tx(&self) -> &WriteTransaction {
        self.tx
            .as_ref()
            .expect("a write transaction is always open")
    }

    /// Makes everything written so far durable, atomically, and opens the next batch.
    pub fn commit(&mut self) -> Result<()> {
        self.usable()?;
        self.crash_point(CrashPoint::BackendBeforeCommit)?;
        let tx = self.tx.take().expect("a write transaction is always open");
        let start = Clock.now();
        let committed = tx.commit();
        if let Some(h) = &self.commit_latency {
            h.observe((Clock.now() - start).as_secs_f64());
        }
        // A new transaction even after a failed commit: readers still find one open.
        let begun = self.begin();
        committed.map_err(be)?;
        begun?;
        self.size.store(self.file.allocated()?, Ordering::Relaxed);
        self.crash_point(CrashPoint::BackendAfterCommit)
    }

    /// Refuses to write once a defragment failed past the point of no return.
    fn usable(&self) -> Result<()> {
        match &self.broken {
            Some(why) => Err(BackendError::Io(std::io::Error::other(format!(
                "{}: {why}",
                self.path().display()
            )))),
            None => Ok(()),
        }
    }

    /// Marks that the write path reached `point` ([`crate::runtime::Disk::crash_point`]).
    pub fn crash_point(&self, point: CrashPoint) -> Result<()> {
        Ok(self.file.crash_point(point)?)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Reports the latency of every later commit to `histogram`, in seconds on the
    /// runtime clock.
    pub fn observe_commits(&mut self, histogram: Histogram) {
        self.commit_latency = Some(histogram);
    }

    /// Bytes the database file takes on disk at the last commit, for `dbSize` and the space
    /// quota: what etcd counts, the pages ever used (bbolt's high-water mark), not the length
    /// that redb reserves ahead of them ([`DiskBackend`] leaves it a hole).
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Relaxed)
    }

    /// [`Backend::size`] as a shared value that follows every later commit.
    pub fn size_gauge(&self) -> Arc<AtomicU64> {
        self.size.clone()
    }

    /// Makes `gauge` follow this backend from now on: a backend that replaces another
    /// (a restored snapshot) keeps the gauge its readers hold.
    pub fn adopt_size_gauge(&mut self, gauge: Arc<AtomicU64>) {
        gauge.store(self.size(), Ordering::Relaxed);
        self.size = gauge;
    }

    /// Writes what `from` (a [`Backend::begin_read`] snapshot) sees, every table, into a
    /// new database file at `path`, which must not exist, and makes it durable: a
    /// consistent copy made while applies go on. Written in key order, it holds no free
    /// pages ([`Backend::defragment`]).
    pub fn copy(from: &redb::ReadTransaction, disk: &dyn Disk, path: &Path) -> Result<()> {
        let dir = dir_of(path);
        disk.create_dir_all(dir)?;
        defrag::write_dense(from, disk, path)?;
        Ok(disk.sync_dir(dir)?)
    }

    /// Checks redb's own invariants; for tests after a crash. Fails while a view is open.
    pub fn check_integrity(&mut self) -> Result<bool> {
        let tx = self.tx.take().expect("a write transaction is always open");
        tx.abort().map_err(be)?;
        let checked = match Arc::get_mut(&mut self.db) {
            Some(db) => db.check_integrity().map_err(be),
            None => Err(BackendError::Io(std::io::Error::other(
                "integrity check with a read view open",
            ))),
        };
        self.begin()?;
        checked
    }

    /// A [`ReadView`] of the last commit.
    pub fn view(&self) -> Result<ReadView> {
        Ok(ReadView {
            tx: self.db.begin_read().map_err(be)?,
            _db: self.db.clone(),
        })
    }

    /// A read-only snapshot of the last commit, for readers that must not see a batch in
    /// progress. Only while the caller holds the backend: a defragment closes the database
    /// under it, and its reads then fail; a reader that lets go first takes a
    /// [`Backend::view`].
    pub fn begin_read(&self) -> Result<redb::ReadTransaction> {
        self.db.begin_read().map_err(be)
    }
}

/// The directory that holds `path`.
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Opens redb on `file` (`path`), after checking its integrity if `verify` and it was shut
/// down cleanly ([`Backend::open`]). Inside [`guard::guard`]: a damaged file can panic redb.
fn open_db(path: &Path, file: Arc<dyn DiskFile>, verify: bool) -> Result<Database> {
    let recovered = Arc::new(AtomicBool::new(false));
    let mut db = redb::Builder::new()
        .set_cache_size(DEFAULT_CACHE_BYTES)
        .set_repair_callback({
            let recovered = recovered.clone();
            move |_| recovered.store(true, Ordering::Relaxed)
        })
        .create_with_backend(DiskBackend::new(file))
        .map_err(be)?;
    if verify && !recovered.load(Ordering::Relaxed) && !db.check_integrity().map_err(be)? {
        return Err(BackendError::Damaged {
            file: path.to_path_buf(),
            what: "redb's integrity check found damage and repaired the file, which may have \
                   lost its last commit: check the disk, then restore the member from a \
                   snapshot or remove it and add it back"
                .into(),
        });
    }
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{CrashMode, Fault, IoOp, PointFault, SimDisk};

    fn committed(b: &Backend) -> Option<u64> {
        let rt = b.begin_read().unwrap();
        let t = rt.open_table(META).unwrap();
        let v = t.get(b"x".as_slice()).unwrap()?;
        Some(u64::from_be_bytes(v.value().try_into().unwrap()))
    }

    /// A failing disk is an error that names the file and the errno, for the member to
    /// stop on; and a crash point armed on the disk fails the commit it precedes.
    #[test]
    fn disk_failures_name_the_file() {
        let disk = SimDisk::new(1);
        let path = Path::new("/d/db");
        let mut b = Backend::open(&disk, path).unwrap();
        put_u64(b.tx(), META, b"x", 1).unwrap();
        disk.inject(Fault::Eio {
            op: IoOp::Sync,
            path: path.into(),
            count: 1,
        });
        let e = b.commit().unwrap_err().to_string();
        assert!(e.contains("fsync /d/db") && e.contains("os error 5"), "{e}");
        disk.heal();
        let mut b = Backend::open(&disk, Path::new("/d/db2")).unwrap();
        disk.inject(Fault::CrashAt {
            point: CrashPoint::BackendBeforeCommit,
            nth: 1,
            then: PointFault::PowerCut,
        });
        let e = b.commit().unwrap_err().to_string();
        assert!(e.contains("backend-before-commit"), "{e}");
        assert_eq!(
            disk.stopped_at(),
            Some((CrashPoint::BackendBeforeCommit, PointFault::PowerCut))
        );
    }

    /// Readers of [`Backend::begin_read`] see commits only, and a crash keeps exactly the
    /// committed batches, even when the open batch's pages happened to reach the disk.
    #[test]
    fn batches_are_atomic_and_readers_see_only_commits() {
        let disk = SimDisk::new(1);
        let path = Path::new("/d/db");
        let mut b = Backend::open(&disk, path).unwrap();
        put_u64(b.tx(), META, b"x", 1).unwrap();
        assert_eq!(committed(&b), None);
        assert_eq!(
            get_u64(b.tx(), META, b"x").unwrap(),
            1,
            "the batch reads its own writes"
        );
        b.commit().unwrap();
        assert_eq!(committed(&b), Some(1));
        put_u64(b.tx(), META, b"x", 2).unwrap();
        drop(b);
        disk.crash_with(CrashMode::KeepAll);
        let b = Backend::open(&disk, path).unwrap();
        assert_eq!(get_u64(b.tx(), META, b"x").unwrap(), 1);
    }
}
