//! The Snapshot call (etcdctl `snapshot save`): a consistent copy of the backend as an etcd
//! database (bbolt, etcd's buckets: see [`crate::migrate`]), streamed
//! in etcd's chunks and followed, as etcd does, by one message holding the sha256 of
//! everything before it (etcdctl `snapshot restore` checks the file's last 32 bytes).
//!
//! The copy is made from a read transaction on the last backend commit (forced first, so
//! the copy holds every applied entry) into a temporary file beside the backend; applies go
//! on meanwhile. The file is removed once the stream ends or the client goes away.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use std::pin::Pin;

use futures::Stream;
use sha2::{Digest, Sha256};

use super::error::{Error, Result};
use super::store::{lock, SharedStore};
use crate::proto::etcdserverpb::SnapshotResponse;
use crate::runtime::{Disk, DiskFile, OpenMode};

/// Bytes per message (etcd's snapshotSendBufferSize).
pub const SNAPSHOT_CHUNK_BYTES: u64 = 32 * 1024;

const COPY_PREFIX: &str = "snapshot-";
const COPY_SUFFIX: &str = ".db.tmp";

fn is_copy(name: &str) -> bool {
    name.starts_with(COPY_PREFIX) && name.ends_with(COPY_SUFFIX)
}

/// Where snapshot copies are made: a directory and a counter naming each copy.
#[derive(Clone, Debug)]
pub struct SnapshotDir {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    next: Arc<AtomicU64>,
}

/// A copy being streamed; removed when dropped.
struct Copy {
    disk: Arc<dyn Disk>,
    file: Box<dyn DiskFile>,
    len: u64,
    sent: u64,
    sha: Option<Sha256>,
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = self.disk.remove(self.file.path());
    }
}

/// The messages of one Snapshot call, ending with the checksum or an error.
pub type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse>> + Send>>;

fn io_error(e: impl std::fmt::Display) -> Error {
    Error::Snapshot(e.to_string())
}

impl SnapshotDir {
    /// Copies go into `dir`; copies a crash left behind there are removed.
    pub fn new(disk: Arc<dyn Disk>, dir: PathBuf) -> Self {
        let names = disk.list(&dir).unwrap_or_default();
        for name in names.iter().filter(|n| is_copy(n)) {
            let _ = disk.remove(&dir.join(name));
        }
        SnapshotDir {
            disk,
            dir,
            next: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Commits the backend, copies the commit, and returns the stream of the copy.
    pub fn stream(&self, store: &SharedStore) -> Result<SnapshotStream> {
        let read = {
            let mut store = lock(store);
            let kv = store.kv_mut();
            if kv.consistent_index() > kv.committed_index() {
                kv.commit().map_err(io_error)?;
            }
            store.backend().view().map_err(io_error)?
        };
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{COPY_PREFIX}{n}{COPY_SUFFIX}"));
        let copied = crate::migrate::write_etcd_db(read.tx(), self.disk.as_ref(), &path);
        drop(read);
        if let Err(e) = copied {
            let _ = self.disk.remove(&path);
            return Err(io_error(e));
        }
        let file = self
            .disk
            .open(&path, OpenMode::Existing)
            .map_err(io_error)?;
        let mut copy = Copy {
            disk: self.disk.clone(),
            file,
            len: 0,
            sent: 0,
            sha: Some(Sha256::new()),
        };
        copy.len = copy.file.len().map_err(io_error)?;
        Ok(Box::pin(futures::stream::unfold(
            copy,
            |mut copy| async move {
                let next = copy.next_message().transpose()?;
                if next.is_err() {
                    // A failed read ends the stream.
                    copy.sha = None;
                    copy.sent = copy.len;
                }
                Some((next, copy))
            },
        )))
    }
}

impl Copy {
    /// The next chunk, then the checksum, then nothing.
    fn next_message(&mut self) -> Result<Option<SnapshotResponse>> {
        if self.sent == self.len {
            return Ok(self.sha.take().map(|sha| SnapshotResponse {
                remaining_bytes: 0,
                blob: sha.finalize().to_vec(),
                ..Default::default()
            }));
        }
        let n = SNAPSHOT_CHUNK_BYTES.min(self.len - self.sent);
        let mut blob = vec![0; n as usize];
        self.file.read_at(self.sent, &mut blob).map_err(io_error)?;
        self.sent += n;
        if let Some(sha) = self.sha.as_mut() {
            sha.update(&blob);
        }
        Ok(Some(SnapshotResponse {
            remaining_bytes: self.len - self.sent,
            blob,
            ..Default::default()
        }))
    }
}
