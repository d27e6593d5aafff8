//! Snapshot metadata files: which Raft index and term a snapshot covers, its membership,
//! and the backend file that holds the state.
//!
//! Each snapshot is one file `{term:016x}-{index:016x}.snap` in the snap directory, so names
//! sort oldest first. Its content is a magic, a crc32 and a length before the protobuf
//! `walpb.SnapshotFile`. A file is written under a temporary name, fsynced and renamed, so
//! a crash leaves either the whole file or none. A file that fails its checksum is renamed
//! to `.broken` and the next older one is used, as etcd does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;

pub use crate::proto::walpb::{SnapshotFile, SnapshotMark};
use crate::runtime::{Disk, OpenMode};

const MAGIC: &[u8; 4] = b"DSNP";
const HEADER: usize = 12;
const SUFFIX: &str = ".snap";
const BROKEN_SUFFIX: &str = ".broken";
const TMP_SUFFIX: &str = ".snap.tmp";
/// Snapshot metadata is small; anything bigger is not one of ours.
const MAX_FILE_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SnapError {
    #[error("snap: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("snap: snapshot has no metadata")]
    NoMetadata,
}

pub type Result<T> = std::result::Result<T, SnapError>;

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SnapError {
    let path = path.to_path_buf();
    move |source| SnapError::Io { op, path, source }
}

fn file_name(term: u64, index: u64) -> String {
    format!("{term:016x}-{index:016x}{SUFFIX}")
}

/// Stores and finds snapshot metadata files in one directory.
#[derive(Debug)]
pub struct Snapshotter {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
}

impl Snapshotter {
    pub fn new(disk: Arc<dyn Disk>, dir: &Path) -> Result<Snapshotter> {
        disk.create_dir_all(dir)
            .map_err(io_err("create dir", dir))?;
        Ok(Snapshotter {
            disk,
            dir: dir.to_path_buf(),
        })
    }

    /// Durably writes `snap`; when this returns, a crash cannot lose it.
    pub fn save(&self, snap: &SnapshotFile) -> Result<()> {
        let meta = snap.metadata.as_ref().ok_or(SnapError::NoMetadata)?;
        let name = file_name(meta.term, meta.index);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let payload = snap.encode_to_vec();
        let mut data = Vec::with_capacity(HEADER + payload.len());
        data.extend_from_slice(MAGIC);
        data.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        data.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        data.extend_from_slice(&payload);
        let disk = self.disk.as_ref();
        if disk.exists(&tmp) {
            disk.remove(&tmp).map_err(io_err("remove", &tmp))?;
        }
        let file = disk
            .open(&tmp, OpenMode::CreateNew)
            .map_err(io_err("create", &tmp))?;
        file.write_at(0, &data).map_err(io_err("write", &tmp))?;
        file.sync().map_err(io_err("fsync", &tmp))?;
        drop(file);
        disk.rename(&tmp, &path).map_err(io_err("rename", &tmp))?;
        disk.sync_dir(&self.dir)
            .map_err(io_err("sync dir", &self.dir))
    }

    /// Names of complete snapshot files, newest first.
    fn names_newest_first(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .disk
            .list(&self.dir)
            .map_err(io_err("list", &self.dir))?
            .into_iter()
            .filter(|n| n.ends_with(SUFFIX))
            .collect();
        names.sort_unstable_by(|a, b| b.cmp(a));
        Ok(names)
    }

    /// Reads and checks one file; `Ok(None)` if its content is damaged.
    fn read(&self, path: &Path) -> Result<Option<SnapshotFile>> {
        let file = self
            .disk
            .open(path, OpenMode::Existing)
            .map_err(io_err("open", path))?;
        let len = file.len().map_err(io_err("stat", path))?;
        if !(HEADER as u64..=MAX_FILE_BYTES).contains(&len) {
            return Ok(None);
        }
        let mut data = vec![0; len as usize];
        file.read_at(0, &mut data).map_err(io_err("read", path))?;
        let crc = u32::from_le_bytes(data[4..8].try_into().expect("4 bytes"));
        let size = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes")) as usize;
        let payload = &data[HEADER..];
        if &data[..4] != MAGIC || size != payload.len() || crc32fast::hash(payload) != crc {
            return Ok(None);
        }
        Ok(SnapshotFile::decode(payload)
            .ok()
            .filter(|s| s.metadata.is_some()))
    }

    /// The newest intact snapshot that `accept` agrees to (e.g. one the WAL has a mark for).
    /// Damaged files met on the way are renamed to `.broken`.
    pub fn load_newest_where(
        &self,
        mut accept: impl FnMut(&SnapshotFile) -> bool,
    ) -> Result<Option<SnapshotFile>> {
        for name in self.names_newest_first()? {
            let path = self.dir.join(&name);
            match self.read(&path)? {
                Some(snap) if accept(&snap) => return Ok(Some(snap)),
                Some(_) => {}
                None => {
                    tracing::warn!(path = %path.display(), "snapshot file is damaged; setting it aside");
                    let broken = self.dir.join(format!("{name}{BROKEN_SUFFIX}"));
                    self.disk
                        .rename(&path, &broken)
                        .map_err(io_err("rename", &path))?;
                }
            }
        }
        Ok(None)
    }

    /// The newest intact snapshot whose index and term the WAL marked.
    pub fn load_newest_marked(&self, marks: &[SnapshotMark]) -> Result<Option<SnapshotFile>> {
        self.load_newest_where(|snap| {
            let meta = snap.metadata.as_ref().expect("read() checks metadata");
            marks
                .iter()
                .any(|m| m.index == meta.index && m.term == meta.term)
        })
    }

    /// Removes all but the newest `keep` snapshot files, and leftovers of interrupted saves;
    /// returns how many snapshot files were removed.
    pub fn gc(&self, keep: usize) -> Result<usize> {
        let names = self.names_newest_first()?;
        let leftovers = self
            .disk
            .list(&self.dir)
            .map_err(io_err("list", &self.dir))?
            .into_iter()
            .filter(|n| n.ends_with(TMP_SUFFIX));
        let old: Vec<String> = names.into_iter().skip(keep).collect();
        let removed = old.len();
        for name in old.into_iter().chain(leftovers) {
            let path = self.dir.join(name);
            self.disk.remove(&path).map_err(io_err("remove", &path))?;
        }
        self.disk
            .sync_dir(&self.dir)
            .map_err(io_err("sync dir", &self.dir))?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests;
