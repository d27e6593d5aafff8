//! A damaged database file never panics the member: every byte of redb's header flipped,
//! bytes flipped at many offsets of every page in use, each such page zeroed or filled, and
//! the file cut at every page, of a store shut down cleanly and of one a crash left. Each
//! damaged copy is opened as the member opens it at boot (the store, with its index rebuilt
//! from every key revision), every table is read, and one more put is committed; the result
//! is a store that works or an error that names the file, never a panic.
//!
//! It once found redb 4.5's open of a cleanly closed file trusting it unread, and panicking
//! on damage: `unreachable!` on a page type, `assert!` on an allocator state, slices out of
//! bounds.

#![cfg(not(madsim))]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use detcd::backend::LEASE;
use detcd::mvcc::{no_leases, Config, KvStore};
use detcd::proto::etcdserverpb::{DeleteRangeRequest, PutRequest};
use detcd::runtime::{panic_message, RealDisk};

const PAGE: usize = 4096;

/// Offsets inside a page where a flipped byte lands on what redb parses: the page type,
/// counts, the first offsets and keys, and values further in.
const IN_PAGE: [usize; 14] = [0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 40, 100, 1000, 4095];

fn put(store: &mut KvStore, index: u64, key: String, len: usize) {
    store.begin_entry(index).unwrap();
    let req = PutRequest {
        key: key.into_bytes(),
        value: vec![index as u8; len],
        ..Default::default()
    };
    store.put(&req, &no_leases).unwrap();
}

/// A store of a few dozen keys over several commits: small values, values of 1-4 KiB and
/// values beyond a page, a deleted key and a lease row. Closed cleanly unless `crashed`, in
/// which case it is left as a crash leaves it (never closed).
fn store_file(path: &Path, crashed: bool) -> Vec<u8> {
    let mut store = KvStore::open(&RealDisk, path, Config::default()).unwrap();
    let mut index = 0;
    for n in 0..60 {
        index += 1;
        let len = [10, 1024, 2500, 4000, 6000][n % 5];
        put(
            &mut store,
            index,
            format!("/registry/pods/ns-{}/pod-{n}", n % 3),
            len,
        );
        if n % 10 == 9 {
            store.commit().unwrap();
        }
    }
    index += 1;
    store.begin_entry(index).unwrap();
    let req = DeleteRangeRequest {
        key: b"/registry/pods/ns-0/pod-0".to_vec(),
        ..Default::default()
    };
    store.delete_range(&req).unwrap();
    store
        .backend()
        .tx()
        .open_table(LEASE)
        .unwrap()
        .insert(7i64.to_be_bytes().as_slice(), [0; 24].as_slice())
        .unwrap();
    store.commit().unwrap();
    if crashed {
        std::mem::forget(store);
    } else {
        drop(store);
    }
    std::fs::read(path).unwrap()
}

/// Opens the store at `path` as the member does at boot, reads every table and commits one
/// more put: `Ok` if all of it worked, the error's message if not.
fn boot(path: &Path) -> Result<(), String> {
    let mut store = KvStore::open(&RealDisk, path, Config::default()).map_err(|e| e.to_string())?;
    store
        .committed_view()
        .and_then(|view| Ok(view.hash()?))
        .map_err(|e| e.to_string())?;
    let index = store.consistent_index() + 1;
    store.begin_entry(index).map_err(|e| e.to_string())?;
    let req = PutRequest {
        key: b"after".to_vec(),
        value: b"damage".to_vec(),
        ..Default::default()
    };
    store.put(&req, &no_leases).map_err(|e| e.to_string())?;
    store.commit().map_err(|e| e.to_string())
}

/// Every damaged copy of `good`: a name and the bytes.
fn damaged(good: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut cases = Vec::new();
    let mut with = |name: String, f: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = good.to_vec();
        f(&mut bytes);
        cases.push((name, bytes));
    };
    // The header: magic, god byte, page size, region layout, then two commit slots.
    for at in 0..320 {
        with(format!("header byte {at} flipped"), &|b| b[at] ^= 0xff);
    }
    let used =
        (1..good.len() / PAGE).filter(|p| good[p * PAGE..(p + 1) * PAGE].iter().any(|&b| b != 0));
    for page in used {
        let start = page * PAGE;
        for at in IN_PAGE {
            with(format!("page {page} byte {at} flipped"), &|b| {
                b[start + at] ^= 0xff
            });
        }
        with(format!("page {page} zeroed"), &|b| {
            b[start..start + PAGE].fill(0)
        });
        with(format!("page {page} filled"), &|b| {
            b[start..start + PAGE].fill(0xa5)
        });
        with(format!("cut at page {page}"), &|b| b.truncate(start));
        with(format!("cut inside page {page}"), &|b| {
            b.truncate(start + 100)
        });
    }
    for len in [0, 100, PAGE - 1, PAGE, PAGE + 1] {
        with(format!("cut to {len} bytes"), &|b| b.truncate(len));
    }
    cases
}

fn sweep(crashed: bool) {
    let dir = tempfile::tempdir().unwrap();
    let good = store_file(&dir.path().join("good.db"), crashed);
    let path = dir.path().join("damaged.db");
    let cases = damaged(&good);
    let (mut opened, mut refused, mut caught) = (0, 0, 0);
    let (mut panics, mut unnamed) = (Vec::new(), Vec::new());
    for (name, bytes) in &cases {
        std::fs::write(&path, bytes).unwrap();
        match catch_unwind(AssertUnwindSafe(|| boot(&path))) {
            Ok(Ok(())) => opened += 1,
            Ok(Err(e)) if e.contains(path.to_str().unwrap()) => {
                refused += 1;
                caught += e.contains("redb panicked") as usize;
            }
            Ok(Err(e)) => unnamed.push(format!("{name}: {e}")),
            Err(panic) => panics.push(format!("{name}: {}", panic_message(&*panic))),
        }
    }
    println!(
        "{} damaged copies (crashed: {crashed}): {opened} opened, {refused} refused naming the \
         file ({caught} on a redb panic caught)",
        cases.len()
    );
    assert!(
        panics.is_empty(),
        "{} panics:\n{}",
        panics.len(),
        panics.join("\n")
    );
    assert!(
        unnamed.is_empty(),
        "{} errors without the file:\n{}",
        unnamed.len(),
        unnamed.join("\n")
    );
    assert!(
        refused > cases.len() / 2,
        "damage went unnoticed: {opened} opened"
    );
}

#[test]
fn damage_to_a_cleanly_closed_store_is_an_error_naming_the_file() {
    sweep(false);
}

#[test]
fn damage_to_a_store_a_crash_left_is_an_error_naming_the_file() {
    sweep(true);
}
