//! Multi-version key-value storage, etcd's `mvcc` package: every write transaction gets a
//! new main revision, every key keeps its history until compaction, and reads can go back
//! to any uncompacted revision. Watch lives here too, on top of the same history.
//!
//! The API takes and returns etcd's request and response types; headers carry only the
//! revision, the API layer adds cluster, member and term.
//!
//! How the server drives the state machine (one task, in log order):
//! 1. For each committed entry: [`KvStore::begin_entry`] with its index, then the request
//!    through [`WatchableStore::write`] (key writes), [`crate::lease::Lessor`] or
//!    [`crate::auth::AuthStore`]; hand the events of every write to
//!    [`crate::lease::Lessor::observe`]. Skip entries at or below
//!    [`KvStore::consistent_index`] after a restart: they are already applied.
//! 2. Every `batch_interval`: [`KvStore::commit`]; between Readies, while
//!    [`KvStore::compaction_pending`]: one [`KvStore::compaction_step`] at a time.
//! 3. Every 10 ms while a watcher is a victim or unsynced, sooner while passes leave fewer
//!    behind: [`WatchableStore::sync_watchers`]; every progress interval:
//!    [`WatchableStore::progress_notify`].
//! 4. On the leader: propose revokes for [`crate::lease::Lessor::expired`] and checkpoints
//!    from [`crate::lease::Lessor::checkpoints`]; before proposing a write, check the
//!    backend's size at its last commit ([`crate::backend::Backend::size_gauge`]) against
//!    the quota and propose the NOSPACE alarm when it does not fit.

pub mod error;
pub mod key_index;
pub mod key_range;
pub mod kvstore;
mod kvstore_compact;
mod kvstore_hash;
mod kvstore_txn;
mod request_check;
pub mod revision;
pub mod tree_index;
mod watchable_store;
mod watcher;
mod watcher_group;

pub use error::Error;
pub use key_range::KeyRange;
pub use kvstore::{Config, KvStore, RangeRead};
pub use kvstore_hash::{Castagnoli, HashKvRead};
pub use kvstore_txn::Events;
pub use request_check::{
    check_delete_request, check_put_request, check_txn_request, RequestLimits,
};
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
