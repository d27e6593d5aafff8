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

impl redb::StorageBackend for DiskBackend {
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.file.read_at(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync()
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_at(offset, data)
    }
}
