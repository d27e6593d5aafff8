//! The write-ahead log: Raft's hard state, entries and snapshot marks, durable before they
//! are acknowledged.
//!
//! A WAL is a directory of segment files (`{seq:016x}-{first_index:016x}.wal`). Each
//! segment is preallocated, starts with a seed record that carries the chain crc of the
//! previous segment, then the member's metadata and the latest hard state, so that any
//! segment can start a replay once older ones are released. Records are framed as
//! described in [`record`]: length-prefixed, XOR-masked, and crc32-checksummed with the
//! checksum chained across records and segments.
//!
//! On open, the records are replayed. In the last segment, a record torn by a crash (a
//! zeroed sector inside it) ends the log and is truncated away: it was never acknowledged,
//! because [`Wal::save`] returns only after fsync. Any other damage is a
//! [`WalError::Corrupt`] naming the file and offset; nothing is skipped silently.
//!
//! After an I/O error the WAL refuses further writes: whether a failed fsync persisted
//! anything is unknown, so the only safe continuation is to reopen and replay.

pub(crate) mod record;
mod replay;
mod segment;
mod writer;

#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;

pub use crate::proto::walpb::{Metadata, SnapshotMark};
pub use writer::{Replay, Wal};

/// Segment size at which the WAL cuts a new segment (etcd's SegmentSizeBytes).
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;

#[derive(Clone, Debug)]
pub struct WalOptions {
    /// A segment is cut once it holds this many bytes; new segments are preallocated to it.
    pub segment_size: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("wal: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("wal: corrupt record in {path} at offset {offset}: {reason}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("wal: no WAL in {0}")]
    NotFound(PathBuf),
    #[error("wal: {0} already holds a WAL")]
    AlreadyExists(PathBuf),
    #[error("wal: snapshot at index {index} (term {term}) is not in the WAL")]
    SnapshotNotFound { index: u64, term: u64 },
    #[error("wal: snapshot at index {index} has term {found} in the WAL, expected {expected}")]
    SnapshotMismatch {
        index: u64,
        expected: u64,
        found: u64,
    },
    #[error("wal: entries are not contiguous: index {index} follows {last}")]
    Gap { index: u64, last: u64 },
    #[error("wal: record payload of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("wal: refusing writes after an earlier I/O error ({0}); reopen to recover")]
    Failed(String),
}

pub type Result<T> = std::result::Result<T, WalError>;
