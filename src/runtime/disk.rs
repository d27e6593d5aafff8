use std::io;
use std::path::{Path, PathBuf};

use super::CrashPoint;

/// How [`Disk::open`] treats an existing or missing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist.
    Existing,
    /// Open the file, creating it empty if it does not exist.
    Create,
    /// Create the file; fail with `AlreadyExists` if it exists.
    CreateNew,
}

/// A file system, reduced to what the WAL, snapshots and the backend need.
///
/// The contract a caller may rely on, and the simulator enforces:
/// - Writes are visible to reads at once but durable only after [`DiskFile::sync`].
/// - A created, renamed or removed name is durable only after [`Disk::sync_dir`] on its
///   directory.
/// - Any call may fail with an I/O error; a failed `sync` leaves durability unknown.
pub trait Disk: Send + Sync + std::fmt::Debug {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>>;
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names (not paths) of the entries in `dir`, sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Marks that the member reached `point`; an error means the power failed there and
    /// the caller must stop. Only a simulated disk ever fails.
    fn crash_point(&self, _point: CrashPoint) -> io::Result<()> {
        Ok(())
    }
}

/// An open file. Offsets are absolute; there is no cursor.
#[allow(clippy::len_without_is_empty)] // a file length is an I/O call, not a container size
pub trait DiskFile: Send + Sync + std::fmt::Debug {
    fn path(&self) -> &Path;
    fn len(&self) -> io::Result<u64>;
    /// Fills `buf` from `offset`; reading past the end is an `UnexpectedEof` error.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `data` at `offset`, extending the file if needed.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Truncates or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// [`DiskFile::set_len`], except that growing may leave a hole, which takes space only
    /// where it is written: for a file whose owner reserves length far ahead of its data.
    fn set_len_sparse(&self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }
    /// Bytes of storage the file occupies; less than its length where it has holes.
    fn allocated(&self) -> io::Result<u64> {
        self.len()
    }
    /// Makes the file's data and length durable (fdatasync).
    fn sync(&self) -> io::Result<()>;
    /// [`Disk::crash_point`] of the disk that holds this file.
    fn crash_point(&self, _point: CrashPoint) -> io::Result<()> {
        Ok(())
    }
}

/// The whole of a small file, such as a key or certificate named by a flag.
pub fn read_file(disk: &dyn Disk, path: &Path) -> io::Result<Vec<u8>> {
    let file = disk.open(path, OpenMode::Existing)?;
    let mut data = vec![0; file.len()? as usize];
    file.read_at(0, &mut data)?;
    Ok(data)
}

/// The directory that holds `path`, for [`Disk::sync_dir`].
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
