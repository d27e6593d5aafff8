//! Tests of the disk seam: the simulated disk must lose exactly what its fault model says,
//! and the real disk must behave like it where both are defined.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

fn dir() -> PathBuf {
    PathBuf::from("/data")
}

fn file(name: &str) -> PathBuf {
    dir().join(name)
}

fn disk(seed: u64) -> SimDisk {
    let d = SimDisk::new(seed);
    d.create_dir_all(&dir()).unwrap();
    d
}

fn read_all(d: &dyn Disk, path: &Path) -> Vec<u8> {
    let f = d.open(path, OpenMode::Existing).unwrap();
    let mut buf = vec![0; f.len().unwrap() as usize];
    f.read_at(0, &mut buf).unwrap();
    buf
}

#[test]
fn unsynced_writes_are_lost_and_synced_ones_kept() {
    let d = disk(1);
    let f = d.open(&file("a"), OpenMode::CreateNew).unwrap();
    d.sync_dir(&dir()).unwrap();
    f.write_at(0, b"durable").unwrap();
    f.sync().unwrap();
    f.write_at(7, b" pending").unwrap();
    assert_eq!(
        read_all(&d, &file("a")),
        b"durable pending",
        "reads see unsynced data"
    );
    d.crash_with(CrashMode::DropAll);
    assert_eq!(read_all(&d, &file("a")), b"durable");
}

#[test]
fn keep_all_crash_keeps_unsynced_writes() {
    let d = disk(1);
    let f = d.open(&file("a"), OpenMode::CreateNew).unwrap();
    d.sync_dir(&dir()).unwrap();
    f.write_at(0, b"pending").unwrap();
    d.crash_with(CrashMode::KeepAll);
    assert_eq!(read_all(&d, &file("a")), b"pending");
}

/// A torn write keeps or drops whole sectors, never part of one, and over many seeds both
/// outcomes happen for every sector.
#[test]
fn tear_keeps_or_drops_whole_sectors() {
    let sectors = 8u64;
    let mut kept = vec![0u32; sectors as usize];
    for seed in 0..64 {
        let d = disk(seed);
        let f = d.open(&file("a"), OpenMode::CreateNew).unwrap();
        f.write_at(0, &vec![0xAA; (sectors * SECTOR) as usize])
            .unwrap();
        f.sync().unwrap();
        d.sync_dir(&dir()).unwrap();
        f.write_at(0, &vec![0x55; (sectors * SECTOR) as usize])
            .unwrap();
        d.crash_with(CrashMode::Tear);
        let data = read_all(&d, &file("a"));
        assert_eq!(data.len() as u64, sectors * SECTOR);
        for (i, sector) in data.chunks(SECTOR as usize).enumerate() {
            let first = sector[0];
            assert!(
                sector.iter().all(|&b| b == first) && (first == 0xAA || first == 0x55),
                "seed {seed}: sector {i} is torn inside"
            );
            kept[i] += u32::from(first == 0x55);
        }
    }
    assert!(
        kept.iter().all(|&k| k > 0 && k < 64),
        "every sector must be both kept and dropped over 64 seeds: {kept:?}"
    );
}

#[test]
fn dropped_sectors_past_the_durable_end_read_as_zeros() {
    let d = disk(3);
    let f = d.open(&file("a"), OpenMode::CreateNew).unwrap();
    d.sync_dir(&dir()).unwrap();
    f.set_len(4 * SECTOR).unwrap();
    f.sync().unwrap();
    f.write_at(SECTOR, &[7; SECTOR as usize]).unwrap();
    d.crash_with(CrashMode::DropAll);
    assert_eq!(read_all(&d, &file("a")), vec![0; 4 * SECTOR as usize]);
}

#[test]
fn file_not_synced_in_its_directory_vanishes() {
    let d = disk(1);
    let f = d.open(&file("a"), OpenMode::CreateNew).unwrap();
    f.write_at(0, b"x").unwrap();
    f.sync().unwrap();
    d.crash_with(CrashMode::DropAll);
    assert!(
        !d.exists(&file("a")),
        "an unsynced directory entry survived"
    );

    let f = d.open(&file("b"), OpenMode::CreateNew).unwrap();
    f.write_at(0, b"y").unwrap();
    f.sync().unwrap();
    d.sync_dir(&dir()).unwrap();
    d.crash_with(CrashMode::DropAll);
    assert_eq!(read_all(&d, &file("b")), b"y");
}

#[test]
fn unsynced_rename_and_remove_revert() {
    let d = disk(1);
    let f = d.open(&file("tmp"), OpenMode::CreateNew).unwrap();
    f.write_at(0, b"x").unwrap();
    f.sync().unwrap();
    d.sync_dir(&dir()).unwrap();
    d.rename(&file("tmp"), &file("final")).unwrap();
    assert_eq!(d.list(&dir()).unwrap(), vec!["final".to_string()]);
    d.crash_with(CrashMode::DropAll);
    assert_eq!(d.list(&dir()).unwrap(), vec!["tmp".to_string()]);

    d.remove(&file("tmp")).unwrap();
    d.crash_with(CrashMode::DropAll);
    assert_eq!(
        read_all(&d, &file("tmp")),
        b"x",
        "unsynced removal was durable"
    );
    d.remove(&file("tmp")).unwrap();
    d.sync_dir(&dir()).unwrap();
    d.crash_with(CrashMode::DropAll);
    assert!(!d.exists(&file("tmp")));
}

#[test]
fn handles_die_with_a_crash() {
    let d = disk(1);
    let f = d.open(&file("a"), OpenMode::CreateNew).unwrap();
    d.sync_dir(&dir()).unwrap();
    d.crash();
    let err = f.write_at(0, b"late").unwrap_err();
    assert!(err.to_string().contains("before a crash"), "{err}");
    assert!(f.sync().is_err());
}

#[test]
fn injected_eio_fails_the_counted_operations_only() {
    let d = disk(1);
    let f = d.open(&file("a"), OpenMode::CreateNew).unwrap();
    d.sync_dir(&dir()).unwrap();
    d.inject(Fault::Eio {
        op: IoOp::Write,
        path: dir(),
        count: 2,
    });
    assert_eq!(f.write_at(0, b"x").unwrap_err().raw_os_error(), Some(5));
    assert!(f.write_at(0, b"x").is_err());
    f.write_at(0, b"ok").unwrap();
    assert_eq!(
        read_all(&d, &file("a")),
        b"ok",
        "a failed write changed the file"
    );

    d.inject(Fault::Eio {
        op: IoOp::Sync,
        path: file("a"),
        count: 1,
    });
    assert!(f.sync().is_err());
    d.crash_with(CrashMode::DropAll);
    assert_eq!(
        read_all(&d, &file("a")),
        b"",
        "a failed sync made data durable"
    );

    let f = d.open(&file("a"), OpenMode::Existing).unwrap();
    d.inject(Fault::Eio {
        op: IoOp::Read,
        path: file("a"),
        count: 1,
    });
    assert!(f.read_at(0, &mut []).is_err());
    f.read_at(0, &mut []).unwrap();
}

#[test]
fn random_eio_follows_its_rate() {
    let d = disk(9);
    let f = d.open(&file("a"), OpenMode::CreateNew).unwrap();
    d.inject(Fault::RandomEio {
        op: IoOp::Write,
        probability: 0.25,
    });
    let failures = (0..1000).filter(|_| f.write_at(0, b"x").is_err()).count();
    assert!(
        (150..350).contains(&failures),
        "{failures} of 1000 writes failed"
    );
    d.heal();
    f.write_at(0, b"x").unwrap();
}

#[test]
fn no_space_refuses_growth_and_changes_nothing() {
    let d = disk(1);
    let f = d.open(&file("a"), OpenMode::CreateNew).unwrap();
    f.write_at(0, &[1; 100]).unwrap();
    d.inject(Fault::NoSpace {
        capacity: Some(150),
    });
    let err = f.write_at(100, &[2; 100]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::StorageFull);
    assert!(f.set_len(200).is_err());
    assert_eq!(f.len().unwrap(), 100);
    f.write_at(0, &[3; 100]).unwrap();
    assert_eq!(d.used_bytes(), 100);
}

/// A flipped bit is media corruption: it survives crashes and rereads.
#[test]
fn bit_flip_is_not_cured_by_a_crash() {
    let d = disk(1);
    let f = d.open(&file("a"), OpenMode::CreateNew).unwrap();
    f.write_at(0, &[0; 16]).unwrap();
    f.sync().unwrap();
    d.sync_dir(&dir()).unwrap();
    d.inject(Fault::BitFlip {
        path: file("a"),
        offset: 5,
        bit: 3,
    });
    assert_eq!(read_all(&d, &file("a"))[5], 8);
    d.crash();
    assert_eq!(read_all(&d, &file("a"))[5], 8);
}

/// Shrinking then growing must not resurrect old durable bytes at the next sync.
#[test]
fn shrink_then_grow_syncs_zeros() {
    let d = disk(1);
    let f = d.open(&file("a"), OpenMode::CreateNew).unwrap();
    d.sync_dir(&dir()).unwrap();
    f.write_at(0, &[9; 2048]).unwrap();
    f.sync().unwrap();
    f.set_len(0).unwrap();
    f.set_len(2048).unwrap();
    f.sync().unwrap();
    d.crash_with(CrashMode::DropAll);
    assert_eq!(read_all(&d, &file("a")), vec![0; 2048]);
}

#[test]
fn same_seed_same_trace_and_content() {
    let run = |seed| {
        let d = disk(seed);
        let f = d.open(&file("a"), OpenMode::CreateNew).unwrap();
        for i in 0..20u64 {
            f.write_at(i * 300, &[i as u8; 300]).unwrap();
            if i % 7 == 0 {
                f.sync().unwrap();
            }
        }
        d.sync_dir(&dir()).unwrap();
        d.crash();
        (d.trace_hash(), read_all(&d, &file("a")))
    };
    assert_eq!(run(42), run(42));
    assert_ne!(
        run(42).0,
        run(43).0,
        "the crash mode did not reach the trace"
    );
}

#[test]
fn opening_in_a_missing_directory_fails() {
    let d = SimDisk::new(1);
    let err = d
        .open(Path::new("/nowhere/a"), OpenMode::Create)
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn real_disk_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let d = RealDisk;
    let sub = tmp.path().join("wal");
    d.create_dir_all(&sub).unwrap();
    let path = sub.join("a");
    let f = d.open(&path, OpenMode::CreateNew).unwrap();
    assert!(d.open(&path, OpenMode::CreateNew).is_err());
    f.write_at(4, b"tail").unwrap();
    f.sync().unwrap();
    d.sync_dir(&sub).unwrap();
    assert_eq!(read_all(&d, &path), b"\0\0\0\0tail");
    f.set_len(4096).unwrap();
    let mut grown = vec![1; 4096];
    f.read_at(0, &mut grown).unwrap();
    assert_eq!(&grown[..8], b"\0\0\0\0tail");
    assert!(
        grown[8..].iter().all(|&b| b == 0),
        "preallocated space must read as zeros"
    );
    f.set_len(2).unwrap();
    assert_eq!(f.len().unwrap(), 2);
    let mut buf = [0; 4];
    assert_eq!(
        f.read_at(0, &mut buf).unwrap_err().kind(),
        std::io::ErrorKind::UnexpectedEof
    );
    d.rename(&path, &sub.join("b")).unwrap();
    assert_eq!(d.list(&sub).unwrap(), vec!["b".to_string()]);
    d.remove(&sub.join("b")).unwrap();
    assert!(!d.exists(&sub.join("b")));
}

#[test]
fn die_after_fails_everything_until_the_crash() {
    let d = disk(1);
    let f = d.open(&file("a"), OpenMode::CreateNew).unwrap();
    d.inject(Fault::DieAfter { ops: 2 });
    f.write_at(0, b"one").unwrap();
    f.sync().unwrap();
    assert!(f.write_at(3, b"two").is_err());
    assert!(
        f.read_at(0, &mut [0; 3]).is_err(),
        "a dead process read the disk"
    );
    assert!(d.sync_dir(&dir()).is_err());
    d.crash_with(CrashMode::DropAll);
    assert!(
        !d.exists(&file("a")),
        "the directory entry was never synced"
    );
    d.open(&file("b"), OpenMode::CreateNew).unwrap();
}

/// Arms raft-after-save on `d` to do `then` on its `nth` pass, after writing two synced
/// sectors and four unsynced ones to a file whose entry is synced, and creating one whose
/// entry is not.
fn armed(d: &SimDisk, nth: u32, then: PointFault) -> Box<dyn DiskFile> {
    let f = d.open(&file("a"), OpenMode::CreateNew).unwrap();
    d.sync_dir(&dir()).unwrap();
    f.write_at(0, &[1; 2 * SECTOR as usize]).unwrap();
    f.sync().unwrap();
    f.write_at(2 * SECTOR, &[2; 4 * SECTOR as usize]).unwrap();
    d.open(&file("unlisted"), OpenMode::CreateNew).unwrap();
    d.inject(Fault::CrashAt {
        point: CrashPoint::RaftAfterSave,
        nth,
        then,
    });
    f
}

#[test]
fn a_kill_at_a_crash_point_keeps_every_byte_written() {
    let d = disk(1);
    let f = armed(&d, 1, PointFault::Kill);
    d.crash_point(CrashPoint::RaftBeforeSave).unwrap();
    let err = f.crash_point(CrashPoint::RaftAfterSave).unwrap_err();
    assert!(err.to_string().contains("killed"), "{err}");
    assert_eq!(
        d.stopped_at(),
        Some((CrashPoint::RaftAfterSave, PointFault::Kill))
    );
    assert!(f.write_at(0, b"late").is_err(), "a killed process wrote");
    assert!(d.crash_point(CrashPoint::RaftBeforeSave).is_err());
    d.process_died();
    assert_eq!(d.stopped_at(), None);
    assert!(f.len().is_err(), "a killed process's handle lives on");
    let mut want = vec![1; 2 * SECTOR as usize];
    want.extend([2; 4 * SECTOR as usize]);
    assert_eq!(read_all(&d, &file("a")), want);
    assert!(d.exists(&file("unlisted")));
    // Kept in the page cache, not synced: a power cut afterwards may still lose it.
    d.crash_with(CrashMode::DropAll);
    assert_eq!(read_all(&d, &file("a")), &want[..2 * SECTOR as usize]);
    assert!(!d.exists(&file("unlisted")));
}

/// A power cut at a point loses what a power cut loses: over seeds, the unsynced sectors
/// are kept, dropped or torn, the synced ones always kept.
#[test]
fn a_power_cut_at_a_crash_point_may_tear_unsynced_writes() {
    let mut lengths = BTreeSet::new();
    let mut torn = false;
    for seed in 0..64 {
        let d = disk(seed);
        let f = armed(&d, 1, PointFault::PowerCut);
        let err = f.crash_point(CrashPoint::RaftAfterSave).unwrap_err();
        assert!(err.to_string().contains("power failed"), "{err}");
        assert_eq!(
            d.stopped_at(),
            Some((CrashPoint::RaftAfterSave, PointFault::PowerCut))
        );
        assert!(f.sync().is_err(), "a powerless machine synced");
        d.crash();
        assert_eq!(d.stopped_at(), None);
        let data = read_all(&d, &file("a"));
        assert!(
            data.len() >= 2 * SECTOR as usize,
            "seed {seed}: synced data lost"
        );
        assert!(data[..2 * SECTOR as usize].iter().all(|&b| b == 1));
        let tail = &data[2 * SECTOR as usize..];
        torn |= tail.contains(&2) && tail.iter().any(|&b| b != 2);
        lengths.insert(data.len());
    }
    assert_eq!(
        lengths,
        BTreeSet::from([2 * SECTOR as usize, 6 * SECTOR as usize]),
        "unsynced growth should sometimes survive and sometimes not"
    );
    assert!(torn, "no seed tore the unsynced sectors");
}

#[test]
fn a_pause_at_a_crash_point_stalls_on_the_nth_pass_and_loses_nothing() {
    let d = disk(1);
    let stalls = Arc::new(Mutex::new(Vec::new()));
    let seen = stalls.clone();
    d.on_stall(move |delay| seen.lock().unwrap().push(delay));
    let f = armed(&d, 2, PointFault::Pause(Duration::from_millis(250)));
    f.crash_point(CrashPoint::RaftAfterSave).unwrap();
    assert!(stalls.lock().unwrap().is_empty(), "stalled on the 1st pass");
    f.crash_point(CrashPoint::RaftAfterSave).unwrap();
    assert_eq!(*stalls.lock().unwrap(), [Duration::from_millis(250)]);
    f.crash_point(CrashPoint::RaftAfterSave).unwrap();
    assert_eq!(stalls.lock().unwrap().len(), 1, "a fired point stays armed");
    assert_eq!(d.stopped_at(), None, "a pause stops nothing");
    f.write_at(6 * SECTOR, b"after").unwrap();
    f.sync().unwrap();
    d.crash_with(CrashMode::DropAll);
    let data = read_all(&d, &file("a"));
    assert_eq!(data.len(), 6 * SECTOR as usize + 5);
    assert!(data[2 * SECTOR as usize..6 * SECTOR as usize]
        .iter()
        .all(|&b| b == 2));
}
