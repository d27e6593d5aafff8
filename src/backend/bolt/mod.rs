//! bbolt's file format (etcd's backend, go.etcd.io/bbolt 1.3), written and read as data, so
//! that snapshots move between etcd and detcd. Only what etcd's files use: top-level
//! buckets of byte keys and values (no nested buckets, bucket sequences left at 0).
//!
//! The format, all integers little-endian (bbolt writes its structs in host order, and
//! every etcd release targets little-endian machines), `pgid` a u64 page number:
//! - The file is pages of `page_size` bytes (the OS page size, 4096 here). Every page starts
//!   with a 16-byte header: `id: pgid`, `flags: u16` (branch 0x01, leaf 0x02, meta 0x04,
//!   freelist 0x10), `count: u16` (elements), `overflow: u32` (further pages the same node
//!   occupies: a node larger than a page spans `1 + overflow` consecutive pages).
//! - Pages 0 and 1 are the two meta pages; the valid one with the larger `txid` is current.
//!   After the header: `magic: u32 = 0xED0CDAED`, `version: u32 = 2`, `page_size: u32`,
//!   `flags: u32`, the root bucket (`root: pgid`, `sequence: u64`), `freelist: pgid`,
//!   `pgid: pgid` (high-water mark: pages in use), `txid: u64`, and `checksum: u64`, the
//!   FNV-1a 64 of the 56 bytes before it.
//! - The freelist page lists free page ids (u64 each) after the header; `count` 0xFFFF means
//!   the real count is the first u64. `etcdutl snapshot status` (bbolt's `Tx.Check`) wants
//!   every page below the high-water mark reachable or free.
//! - A B+tree node is a branch or leaf page. Its elements follow the header, 16 bytes each;
//!   `pos` counts from the element itself to its key (key then value, for a leaf):
//!   branch `pos: u32, ksize: u32, pgid: pgid` (the child and its first key), leaf
//!   `flags: u32, pos: u32, ksize: u32, vsize: u32`.
//! - Buckets: the root bucket's tree maps bucket names to leaf elements with flag 0x01 whose
//!   value is the bucket header (`root: pgid, sequence: u64`). A bucket whose root is 0 is
//!   inline: a leaf page (header and elements, no padding) follows the header inside the
//!   value; bbolt inlines a single-leaf bucket of at most a quarter page.
//!
//! The writer streams: sorted keys in, pages out in order, one page per tree level held
//! in memory. The reader walks the trees through a [`Source`] (a slice or a file read in
//! place), one node in memory at a time.
//!
//! The reader trusts nothing: every offset is bounded by its page and the file, every page
//! by the high-water mark, every page may be part of one node only (no cycles), the tree
//! depth and key order are checked. Corrupt input is an error, never a panic.

mod read;
mod write;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

pub use read::{read, read_each, used_bytes, Source};
pub use write::{write, Sink, Writer};

/// A bolt database as data: bucket name to the bucket's keys and values, in byte order.
pub type Buckets = BTreeMap<Vec<u8>, BTreeMap<Vec<u8>, Vec<u8>>>;

/// Page size of the files written: etcd's on Linux x86-64.
pub const PAGE_SIZE: usize = 4096;
/// bbolt's limits on a key and a value.
pub const MAX_KEY_SIZE: usize = 32768;
pub const MAX_VALUE_SIZE: usize = (1 << 31) - 2;

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
const PAGE_HEADER: usize = 16;
const ELEMENT: usize = 16;
const BUCKET_HEADER: usize = 16;
/// The meta fields before the checksum (what the checksum covers).
const META_SUMMED: usize = 56;
const NO_FREELIST: u64 = u64::MAX;

const BRANCH: u16 = 0x01;
const LEAF: u16 = 0x02;
const META: u16 = 0x04;
const FREELIST: u16 = 0x10;
/// Leaf element flag of a bucket.
const BUCKET_LEAF: u32 = 0x01;

/// Why a file is not a readable bolt database, or a database cannot be written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BoltError {
    /// bbolt's own words for a file without a valid meta page.
    #[error("invalid database")]
    Invalid,
    #[error("version mismatch")]
    VersionMismatch,
    #[error("checksum error")]
    Checksum,
    #[error("file size {len} below the {pages} pages of {page_size} bytes the database uses")]
    Truncated {
        len: u64,
        pages: u64,
        page_size: u32,
    },
    #[error("page {page}: {what}")]
    Corrupt { page: u64, what: String },
    #[error("bucket {bucket:?}: {what}")]
    Unsupported { bucket: String, what: &'static str },
    #[error("key of {0} bytes: bbolt takes 1 to 32768")]
    KeySize(usize),
    #[error("value of {0} bytes: bbolt takes at most 2147483646")]
    ValueSize(usize),
    #[error("bucket {0:?}: written twice, or keys not in ascending order")]
    Order(String),
    #[error("write: {0}")]
    Io(String),
}

/// FNV-1a 64 (Go's hash/fnv New64a), the meta page checksum.
fn fnv64a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
