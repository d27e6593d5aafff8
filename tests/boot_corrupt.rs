//! A member whose backend it cannot read stops at boot with a message that names the file
//! and what is wrong, and exits non-zero, without a panic: one damaged row per kind of
//! record decoded at start (keys and values, alarm, lease, membership, Raft's
//! configuration, the meta integers, auth), a backend that has applied past the end of its
//! WAL, a WAL whose hard state commits past its last entry, and a database file damaged
//! below the rows (tests/backend_damage.rs sweeps such damage without a process).
//! The rows are written with the library's own backend, as a damaged disk or a stray
//! tool would leave them.

#![cfg(not(madsim))]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::maint::{terminate, wait_exit};
use common::{ready_client, Member, Process};
use detcd::backend::{Backend, Table, AUTH_USERS, KEY, LEASE, MEMBERS, MEMBERS_REMOVED, META};
use detcd::proto::raftpb::HardState;
use detcd::runtime::{Disk, RealDisk};
use detcd::wal::{Wal, WalOptions};
use etcd_client::PutOptions;
use redb::TableDefinition;

const ALARM: Table = TableDefinition::new("alarm");

/// A damaged row: the case's name, the table, key and value, and what the message says.
type Case<'a> = (&'a str, Table, &'a [u8], &'a [u8], &'a str);
/// Damage to the database file: the case's name and what it does to the file's bytes.
type Damage<'a> = (&'a str, &'a dyn Fn(&mut Vec<u8>));

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The member on `data_dir`, on `m`'s ports.
fn member_at(m: &Member, data_dir: PathBuf) -> Member {
    Member {
        name: m.name.clone(),
        data_dir,
        client_port: m.client_port,
        peer_port: m.peer_port,
        client_scheme: m.client_scheme,
        peer_scheme: m.peer_scheme,
    }
}

/// Starts `m` and returns its exit code and stderr once it exits (within a deadline).
fn boot(m: &Member, log: &Path) -> (Option<i32>, String) {
    let child = m
        .command(env!("CARGO_BIN_EXE_detcd"), None, &[])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut p = Process(child);
    let status = wait_exit(&mut p, Duration::from_secs(20))
        .unwrap_or_else(|| panic!("{} still runs with a damaged backend", m.name));
    (status.code(), std::fs::read_to_string(log).unwrap())
}

#[tokio::test]
async fn a_damaged_backend_row_stops_the_member_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let m = Member::new("m1", dir.path());
    let mut p = m.start(None);
    let mut c = ready_client(m.client_port).await;
    let lease = c.lease_grant(60, None).await.unwrap().id();
    c.put("k", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    assert!(terminate(&mut p, Duration::from_secs(20)).is_some_and(|s| s.success()));

    let member_key = 7u64.to_be_bytes();
    let negative_ttl = [&7i64.to_be_bytes()[..], &(-1i64).to_be_bytes(), &[0; 8]].concat();
    // Revision 1,000,000 (main, '_', sub 0), beyond anything written: a row of its own.
    let revision_key = [&1_000_000i64.to_be_bytes()[..], b"_", &0i64.to_be_bytes()].concat();
    let cases: [Case; 11] = [
        (
            "kv-value",
            KEY,
            &revision_key,
            b"\xff\xff\xff",
            "table key, key",
        ),
        ("kv-key", KEY, b"not a revision", b"", "not a revision"),
        (
            "alarm",
            ALARM,
            b"\x01\x02",
            b"",
            "alarm key of 2 bytes, want 12",
        ),
        (
            "lease",
            LEASE,
            &member_key,
            b"short",
            "lease record of 5 bytes, want 24",
        ),
        (
            "lease-ttl",
            LEASE,
            &member_key,
            &negative_ttl,
            "lease 7: TTL -1 outside",
        ),
        (
            "member",
            MEMBERS,
            &member_key,
            b"\xff\xff\xff",
            "table members, key",
        ),
        (
            "removed",
            MEMBERS_REMOVED,
            b"x",
            b"",
            "member ID of 1 bytes, want 8",
        ),
        (
            "conf-state",
            META,
            b"confState",
            b"\xff\xff\xff",
            "reading Raft's configuration",
        ),
        (
            "meta-u64",
            META,
            b"consistent_index",
            b"abc",
            "value of 3 bytes, want 8",
        ),
        (
            "auth",
            AUTH_USERS,
            b"alice",
            b"\xff\xff\xff",
            "undecodable user",
        ),
        (
            "applied-past-wal",
            META,
            b"consistent_index",
            &1_000_000u64.to_be_bytes(),
            "the backend has applied entry 1000000, but the WAL in",
        ),
    ];
    for (name, table, key, value, expected) in cases {
        let copy = member_at(&m, dir.path().join(name));
        copy_dir(&m.data_dir, &copy.data_dir);
        let db = copy.data_dir.join("member/snap/db");
        let mut backend = Backend::open(&RealDisk, &db).unwrap();
        backend
            .tx()
            .open_table(table)
            .unwrap()
            .insert(key, value)
            .unwrap();
        backend.commit().unwrap();
        drop(backend);

        let (code, stderr) = boot(&copy, &dir.path().join(format!("{name}.log")));
        assert_eq!(code, Some(1), "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        let named = match name {
            "applied-past-wal" => copy.data_dir.join("member/wal"),
            _ => db,
        };
        assert!(
            stderr.contains(named.to_str().unwrap()),
            "{name}: {} not named: {stderr}",
            named.display()
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }

    // A WAL whose last hard state commits past its last entry (raft would panic on it).
    let copy = member_at(&m, dir.path().join("commit-past-wal"));
    copy_dir(&m.data_dir, &copy.data_dir);
    let wal_dir = copy.data_dir.join("member/wal");
    let disk: Arc<dyn Disk> = Arc::new(RealDisk);
    let marks = Wal::snapshot_marks(disk.as_ref(), &wal_dir).unwrap();
    let from = marks.last().unwrap();
    let (mut wal, replay) = Wal::open(disk, &wal_dir, from, WalOptions::default()).unwrap();
    let hs = HardState {
        commit: 1_000_000,
        ..replay.hard_state
    };
    wal.save(Some(&hs), &[]).unwrap();
    drop(wal);
    let (code, stderr) = boot(&copy, &dir.path().join("commit-past-wal.log"));
    assert_eq!(code, Some(1), "{stderr}");
    let expected = format!("the WAL in {} commits entry 1000000", wal_dir.display());
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A database file damaged outside redb (a flipped byte in a page of keys, both commit
/// slots of the header, a file cut short) stops the member with the file named: redb's open
/// trusts a cleanly closed file, so the member verifies it, and catches redb's panics.
#[tokio::test]
async fn a_damaged_database_file_stops_the_member_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let m = Member::new("m1", dir.path());
    let mut p = m.start(None);
    let mut c = ready_client(m.client_port).await;
    let marker = b"damage-marker-".repeat(100);
    c.put("k", marker.clone(), None).await.unwrap();
    assert!(terminate(&mut p, Duration::from_secs(20)).is_some_and(|s| s.success()));
    let good = std::fs::read(m.data_dir.join("member/snap/db")).unwrap();
    let at = good
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the value is in the file");

    let cases: [Damage; 3] = [
        ("value-byte", &|b| b[at + 7] ^= 0xff),
        ("both-slots", &|b| {
            // Byte 8 of each 128-byte commit slot (at 64 and 192): its root page number.
            b[64 + 8] ^= 0xff;
            b[192 + 8] ^= 0xff;
        }),
        ("cut", &|b| b.truncate(at)),
    ];
    for (name, damage) in cases {
        let copy = member_at(&m, dir.path().join(name));
        copy_dir(&m.data_dir, &copy.data_dir);
        let db = copy.data_dir.join("member/snap/db");
        let mut bytes = good.clone();
        damage(&mut bytes);
        std::fs::write(&db, bytes).unwrap();
        let (code, stderr) = boot(&copy, &dir.path().join(format!("{name}.log")));
        assert_eq!(code, Some(1), "{name}: {stderr}");
        assert!(stderr.contains(db.to_str().unwrap()), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}
