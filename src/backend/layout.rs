//! The tables, etcd's bucket names kept. Every table maps bytes to bytes, so that
//! [`super::Backend::hash`] can walk them all alike; integers are big-endian so that byte
//! order is numeric order.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{be, Result};

/// A table of the backend.
pub type Table = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// Key revisions ([`crate::mvcc::revision`] bytes) to encoded `mvccpb::KeyValue`.
pub const KEY: Table = TableDefinition::new("key");
/// Consistent index and compaction progress.
pub const META: Table = TableDefinition::new("meta");
/// Lease id (big-endian i64) to encoded lease record.
pub const LEASE: Table = TableDefinition::new("lease");
/// Auth enabled flag and auth store revision.
pub const AUTH: Table = TableDefinition::new("auth");
/// User name to encoded `authpb::User`.
pub const AUTH_USERS: Table = TableDefinition::new("authUsers");
/// Role name to encoded `authpb::Role`.
pub const AUTH_ROLES: Table = TableDefinition::new("authRoles");

/// Member id (big-endian u64) to encoded `etcdserverpb::Member`: the cluster's members.
pub const MEMBERS: Table = TableDefinition::new("members");
/// Member id (big-endian u64) to nothing: members removed for good, whose messages are refused.
pub const MEMBERS_REMOVED: Table = TableDefinition::new("members_removed");

const ALL: [Table; 8] = [
    KEY,
    META,
    LEASE,
    AUTH,
    AUTH_USERS,
    AUTH_ROLES,
    MEMBERS,
    MEMBERS_REMOVED,
];
/// The tables that members must agree on byte for byte (etcd's hash covers its members
/// buckets too).
pub(super) const HASHED: [Table; 7] = [
    KEY,
    LEASE,
    AUTH,
    AUTH_USERS,
    AUTH_ROLES,
    MEMBERS,
    MEMBERS_REMOVED,
];

pub(super) fn create_tables(tx: &WriteTransaction) -> Result<()> {
    for table in ALL {
        tx.open_table(table).map_err(be)?;
    }
    Ok(())
}

/// Reads a big-endian u64 stored under `key` in `table`; absent reads as 0.
pub fn get_u64(tx: &WriteTransaction, table: Table, key: &[u8]) -> Result<u64> {
    let t = tx.open_table(table).map_err(be)?;
    let v = t.get(key).map_err(be)?;
    Ok(match v {
        Some(v) => {
            let bytes: [u8; 8] = v.value().try_into().map_err(|_| {
                super::corrupt(
                    table,
                    key,
                    format!("value of {} bytes, want 8", v.value().len()),
                )
            })?;
            u64::from_be_bytes(bytes)
        }
        None => 0,
    })
}

/// Writes a big-endian u64 under `key` in `table`.
pub fn put_u64(tx: &WriteTransaction, table: Table, key: &[u8], value: u64) -> Result<()> {
    let mut t = tx.open_table(table).map_err(be)?;
    t.insert(key, value.to_be_bytes().as_slice()).map_err(be)?;
    Ok(())
}
