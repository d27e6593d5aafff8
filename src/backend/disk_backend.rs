use std::io;
use std::sync::Arc;

use crate::runtime::DiskFile;

/// redb's storage seam implemented on a [`DiskFile`]: redb reads, writes and syncs through
/// the runtime, so under simulation its unsynced pages are what a crash tears.
#[derive(Debug)]
pub struct DiskBackend {
    file: Arc<dyn DiskFile>,
}

impl DiskBackend {
    pub fn new(file: Arc<dyn DiskFile>) -> Self {
        DiskBackend { file }
    }
}

impl DiskBackend {
    /// `e` with the operation and the database file named, so a member that stops on it
    /// says which file failed and how (the errno stays in the message).
    fn named(&self, op: &str, e: io::Error) -> io::Error {
        io::Error::new(
            e.kind(),
            format!("{op} {}: {e}", self.file.path().display()),
        )
    }
}

impl redb::StorageBackend for DiskBackend {
    fn len(&self) -> io::Result<u64> {
        self.file.len().map_err(|e| self.named("stat", e))
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.file
            .read_at(offset, out)
            .map_err(|e| self.named("read", e))
    }

    /// Sparse: redb doubles the file's length whenever it runs out of pages (up to 4 GiB),
    /// so allocating that length would take up to twice the space the pages need.
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file
            .set_len_sparse(len)
            .map_err(|e| self.named("resize", e))
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync().map_err(|e| self.named("fsync", e))
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file
            .write_at(offset, data)
            .map_err(|e| self.named("write", e))
    }
}
