//! The check a received snapshot database passes before the member keeps it: redb opens
//! it and finds it intact, and every row of every table decodes the way the member reads
//! it when it restores (with the same decoders, where the member has one). A row that does not would make the restore panic, and since a
//! received database is swapped in at boot, panic again at every restart.

use std::path::Path;

use prost::Message as _;
use redb::ReadableTable;

use crate::backend::{self, be, Backend, Table, AUTH, AUTH_ROLES, AUTH_USERS, KEY, LEASE, META};
use crate::backend::{MEMBERS, MEMBERS_REMOVED};
use crate::lease::Lease;
use crate::mvcc::Revision;
use crate::proto::authpb::{Role, User};
use crate::proto::mvccpb::KeyValue;
use crate::proto::raftpb::ConfState;
use crate::runtime::{panic_message, Disk};
use crate::server::alarm::{member_of, ALARM};
use crate::server::membership::{decode_member, decode_removed, CONF_STATE_KEY};

/// How one table's rows must look.
type RowCheck = fn(key: &[u8], value: &[u8]) -> bool;

fn u64_value(_: &[u8], v: &[u8]) -> bool {
    v.len() == 8
}

const TABLES: [(Table, RowCheck); 9] = [
    (KEY, |k, v| {
        Revision::is_key(k) && KeyValue::decode(v).is_ok()
    }),
    (META, |k, v| match k {
        CONF_STATE_KEY => ConfState::decode(v).is_ok(),
        _ => v.len() == 8,
    }),
    (LEASE, |k, v| k.len() == 8 && Lease::decode(v).is_ok()),
    (AUTH, u64_value),
    (AUTH_USERS, |_, v| User::decode(v).is_ok()),
    (AUTH_ROLES, |_, v| Role::decode(v).is_ok()),
    (MEMBERS, |k, v| decode_member(k, v).is_ok()),
    (MEMBERS_REMOVED, |k, _| decode_removed(k).is_ok()),
    (ALARM, |k, _| member_of(k).is_ok()),
];

/// Checks the database at `path`; the error names what is wrong.
///
/// redb has panics that a damaged file reaches (an `unreachable!` on a page type while it
/// commits, found by `ci/fuzz`); the file comes from a peer, so a panic is caught here and
/// refuses the file like any other damage instead of stopping the member.
pub fn check(disk: &dyn Disk, path: &Path) -> Result<(), String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_rows(disk, path)))
        .unwrap_or_else(|e| Err(format!("redb panicked reading it: {}", panic_message(&*e))))
}

fn check_rows(disk: &dyn Disk, path: &Path) -> Result<(), String> {
    match backend::verify(disk, path) {
        Ok(true) => {}
        verdict => return Err(format!("redb finds it damaged: {verdict:?}")),
    }
    let backend = Backend::open(disk, path).map_err(|e| format!("redb cannot open it: {e}"))?;
    let tx = backend.tx();
    for (table, row_ok) in TABLES {
        let name = redb::TableHandle::name(&table).to_string();
        let t = tx
            .open_table(table)
            .map_err(|e| format!("table {name}: {}", be(e)))?;
        for (i, row) in t
            .iter()
            .map_err(|e| format!("table {name}: {}", be(e)))?
            .enumerate()
        {
            let (k, v) = row.map_err(|e| format!("table {name} row {i}: {}", be(e)))?;
            if !row_ok(k.value(), v.value()) {
                return Err(format!(
                    "table {name} row {i} (key {:?}) does not decode",
                    String::from_utf8_lossy(k.value())
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::put_u64;
    use crate::runtime::SimDisk;

    fn with_row(table: Table, key: &[u8], value: &[u8]) -> Result<(), String> {
        let disk = SimDisk::new(3);
        let path = Path::new("/snap/x.snap.db");
        let mut b = Backend::open(&disk, path).unwrap();
        put_u64(b.tx(), META, b"consistent_index", 9).unwrap();
        b.tx()
            .open_table(table)
            .unwrap()
            .insert(key, value)
            .unwrap();
        b.commit().unwrap();
        drop(b);
        check(&disk, path)
    }

    #[test]
    fn good_rows_pass_and_each_bad_row_is_named() {
        let kv = KeyValue {
            key: b"k".to_vec(),
            ..KeyValue::default()
        };
        let rev_key = Revision::new(2, 0).to_key(false);
        assert_eq!(with_row(KEY, &rev_key, &kv.encode_to_vec()), Ok(()));
        for (table, key, value) in [
            (KEY, b"short".as_slice(), kv.encode_to_vec()),
            (KEY, rev_key.as_slice(), vec![0xff; 3]),
            (LEASE, &[0; 8], vec![0; 5]),
            (META, CONF_STATE_KEY, vec![0xff; 3]),
            (AUTH, b"authRevision", vec![1]),
            (AUTH_USERS, b"alice", vec![0xff; 3]),
            (MEMBERS, &[1; 8], vec![0xff; 3]),
            (MEMBERS_REMOVED, b"x", Vec::new()),
            (ALARM, b"short", Vec::new()),
        ] {
            let err = with_row(table, key, &value).unwrap_err();
            assert!(err.contains("does not decode"), "{err}");
        }
    }
}
