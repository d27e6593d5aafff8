//! Multi-version key-value storage, etcd's `mvcc` package: every write transaction gets a
//! new main revision, every key keeps its history until compaction, and reads can go back
//! to any uncompacted revision. Watch lives here too, on top of the same history.
//!
//! The API takes and returns etcd's request and response types; headers carry only the
//! revision, the API layer adds cluster, member and term.

pub mod error;
pub mod key_index;
pub mod key_range;
pub mod kvstore;
mod kvstore_compact;
mod kvstore_txn;
mod request_check;
pub mod revision;
pub mod tree_index;
mod watchable_store;
mod watcher;
mod watcher_group;

pub use error::Error;
pub use key_range::KeyRange;
pub use kvstore::{Config, KvStore};
pub use kvstore_txn::Events;
pub use revision::Revision;
pub use watchable_store::{WatchConfig, WatchableStore, NO_WATCH_ID};

/// Tells the store which leases exist, so a put can reject an unknown one. The lessor
/// implements it; closures do too.
pub trait LeaseLookup {
    fn lease_exists(&self, id: i64) -> bool;
}

impl<F: Fn(i64) -> bool> LeaseLookup for F {
    fn lease_exists(&self, id: i64) -> bool {
        self(id)
    }
}

/// For stores without leases: every lease is unknown.
pub fn no_leases(_: i64) -> bool {
    false
}
