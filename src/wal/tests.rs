//! WAL behaviour on the simulated disk: replay, overwrites, segments, snapshots, and the
//! line between a torn tail (truncated) and corruption (an error naming file and offset).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::*;
use crate::proto::raftpb::{Entry, HardState};
use crate::runtime::{CrashMode, Disk, Fault, IoOp, OpenMode, SimDisk};

fn dir() -> PathBuf {
    PathBuf::from("/member/wal")
}

fn small() -> WalOptions {
    WalOptions { segment_size: 4096 }
}

fn meta() -> Metadata {
    Metadata {
        member_id: 7,
        cluster_id: 42,
    }
}

fn entry(index: u64, term: u64, size: usize) -> Entry {
    Entry {
        index,
        term,
        data: (0..size).map(|i| (i as u64 * 31 + index) as u8).collect(),
        ..Default::default()
    }
}

fn hs(term: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote: 1,
        commit,
    }
}

fn setup() -> (SimDisk, Arc<dyn Disk>, Wal) {
    let sim = SimDisk::new(5);
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    let wal = Wal::create(disk.clone(), &dir(), meta(), small()).unwrap();
    (sim, disk, wal)
}

fn reopen(disk: &Arc<dyn Disk>, from: &SnapshotMark) -> Result<(Wal, Replay)> {
    Wal::open(disk.clone(), &dir(), from, small())
}

fn start() -> SnapshotMark {
    SnapshotMark::default()
}

fn indexes(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.index).collect()
}

fn segment_paths(disk: &Arc<dyn Disk>) -> Vec<PathBuf> {
    let names = disk.list(&dir()).unwrap();
    names.iter().map(|n| dir().join(n)).collect()
}

#[test]
fn replay_returns_what_was_saved() {
    let (_, disk, mut wal) = setup();
    let entries: Vec<Entry> = (1..=3).map(|i| entry(i, 1, 10)).collect();
    wal.save(Some(&hs(1, 2)), &entries).unwrap();
    drop(wal);
    let (wal, replay) = reopen(&disk, &start()).unwrap();
    assert_eq!(replay.metadata, meta());
    assert_eq!(replay.hard_state, hs(1, 2));
    assert_eq!(replay.entries, entries);
    assert_eq!(replay.torn_tail, None);
    assert_eq!(wal.last_index(), 3);
}

#[test]
fn create_refuses_an_existing_wal() {
    let (_, disk, _wal) = setup();
    let err = Wal::create(disk, &dir(), meta(), small()).unwrap_err();
    assert!(matches!(err, WalError::AlreadyExists(_)), "{err}");
}

#[test]
fn open_without_a_wal_is_not_found() {
    let disk: Arc<dyn Disk> = Arc::new(SimDisk::new(1));
    assert!(!Wal::exists(disk.as_ref(), &dir()));
    let err = reopen(&disk, &start()).unwrap_err();
    assert!(matches!(err, WalError::NotFound(_)), "{err}");
}

/// Raft overwrites a conflicting suffix (thesis 3.5); replay must show only the new one.
#[test]
fn later_entries_overwrite_a_conflicting_suffix() {
    let (_, disk, mut wal) = setup();
    let old: Vec<Entry> = (1..=5).map(|i| entry(i, 1, 8)).collect();
    wal.save(None, &old).unwrap();
    let new: Vec<Entry> = (3..=4).map(|i| entry(i, 2, 9)).collect();
    wal.save(Some(&hs(2, 2)), &new).unwrap();
    assert_eq!(wal.last_index(), 4);
    drop(wal);
    let (_, replay) = reopen(&disk, &start()).unwrap();
    assert_eq!(indexes(&replay.entries), vec![1, 2, 3, 4]);
    assert_eq!(replay.entries[2..], new[..]);
}

#[test]
fn gaps_are_refused_and_change_nothing() {
    let (sim, disk, mut wal) = setup();
    wal.save(None, &[entry(1, 1, 4)]).unwrap();
    let trace = sim.trace_hash();
    let err = wal.save(None, &[entry(3, 1, 4)]).unwrap_err();
    assert!(matches!(err, WalError::Gap { index: 3, last: 1 }), "{err}");
    let err = wal
        .save(None, &[entry(2, 1, 4), entry(4, 1, 4)])
        .unwrap_err();
    assert!(matches!(err, WalError::Gap { index: 4, last: 2 }), "{err}");
    assert_eq!(sim.trace_hash(), trace, "a refused save touched the disk");
    wal.save(None, &[entry(2, 1, 4)]).unwrap();
    drop(wal);
    assert_eq!(
        indexes(&reopen(&disk, &start()).unwrap().1.entries),
        vec![1, 2]
    );
}

#[test]
fn segments_cut_chain_and_carry_the_hard_state() {
    let (_, disk, mut wal) = setup();
    let mut all = Vec::new();
    for i in 1..=60 {
        let e = entry(i, 1, 200);
        wal.save(Some(&hs(1, i)), std::slice::from_ref(&e)).unwrap();
        all.push(e);
    }
    assert!(
        wal.segment_count() >= 3,
        "only {} segments",
        wal.segment_count()
    );
    drop(wal);
    let (_, replay) = reopen(&disk, &start()).unwrap();
    assert_eq!(replay.entries, all);
    assert_eq!(replay.hard_state, hs(1, 60));
}

#[test]
fn release_keeps_what_a_snapshot_needs() {
    let (_, disk, mut wal) = setup();
    for i in 1..=60 {
        wal.save(None, &[entry(i, 1, 200)]).unwrap();
    }
    wal.save(Some(&hs(1, 60)), &[]).unwrap();
    let mark = SnapshotMark {
        index: 40,
        term: 1,
        conf_state: None,
    };
    wal.save_snapshot(&mark).unwrap();
    let before = wal.segment_count();
    wal.release_to(40).unwrap();
    assert!(wal.segment_count() < before, "nothing was released");
    drop(wal);
    let (_, replay) = reopen(&disk, &mark).unwrap();
    assert_eq!(indexes(&replay.entries), (41..=60).collect::<Vec<_>>());
    assert_eq!(
        replay.hard_state,
        hs(1, 60),
        "hard state lost with old segments"
    );
    let err = reopen(&disk, &start()).unwrap_err();
    assert!(
        matches!(err, WalError::SnapshotNotFound { index: 0, .. }),
        "{err}"
    );
}

#[test]
fn snapshot_term_must_match() {
    let (_, disk, mut wal) = setup();
    wal.save(None, &[entry(1, 1, 4)]).unwrap();
    wal.save_snapshot(&SnapshotMark {
        index: 1,
        term: 1,
        conf_state: None,
    })
    .unwrap();
    drop(wal);
    let err = reopen(
        &disk,
        &SnapshotMark {
            index: 1,
            term: 2,
            conf_state: None,
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            WalError::SnapshotMismatch {
                index: 1,
                expected: 2,
                found: 1
            }
        ),
        "{err}"
    );
}

/// A follower that installs a snapshot past its log continues from the snapshot's index.
#[test]
fn snapshot_past_the_log_moves_the_last_index() {
    let (_, disk, mut wal) = setup();
    wal.save(None, &[entry(1, 1, 4)]).unwrap();
    let mark = SnapshotMark {
        index: 100,
        term: 3,
        conf_state: None,
    };
    wal.save_snapshot(&mark).unwrap();
    assert_eq!(wal.last_index(), 100);
    wal.save(None, &[entry(101, 3, 4)]).unwrap();
    drop(wal);
    let (_, replay) = reopen(&disk, &mark).unwrap();
    assert_eq!(indexes(&replay.entries), vec![101]);
}

fn flip_and_open(disk: &Arc<dyn Disk>, sim: &SimDisk, path: &Path, offset: u64) -> WalError {
    sim.inject(Fault::BitFlip {
        path: path.to_path_buf(),
        offset,
        bit: 2,
    });
    reopen(disk, &start()).unwrap_err()
}

#[test]
fn bit_flip_in_an_earlier_segment_names_file_and_offset() {
    let (sim, disk, mut wal) = setup();
    for i in 1..=40 {
        wal.save(None, &[entry(i, 1, 200)]).unwrap();
    }
    drop(wal);
    let first = segment_paths(&disk)[0].clone();
    let err = flip_and_open(&disk, &sim, &first, 1000);
    let WalError::Corrupt { path, offset, .. } = &err else {
        panic!("expected corruption, got {err}");
    };
    assert_eq!(path, &first);
    assert!(
        *offset <= 1000 && 1000 - offset < 300,
        "offset {offset} is not the damaged record"
    );
    let text = err.to_string();
    assert!(
        text.contains(&first.display().to_string()) && text.contains("offset"),
        "{text}"
    );
}

/// Even in the last segment, damage to a record that was written whole is corruption, not
/// a torn tail: truncating it would drop an acknowledged write.
#[test]
fn bit_flip_in_the_last_segment_is_corruption_not_a_tear() {
    let (sim, disk, mut wal) = setup();
    // Zero-filled entries: masking must keep them from looking like torn sectors.
    let entries: Vec<Entry> = (1..=2)
        .map(|i| Entry {
            index: i,
            term: 1,
            data: vec![0; 1200],
            ..Default::default()
        })
        .collect();
    wal.save(None, &entries).unwrap();
    drop(wal);
    let last = segment_paths(&disk).last().unwrap().clone();
    let err = flip_and_open(&disk, &sim, &last, 700);
    assert!(matches!(err, WalError::Corrupt { .. }), "{err}");
}

#[test]
fn torn_tail_is_truncated_and_writing_continues() {
    let (sim, disk, mut wal) = setup();
    wal.save(None, &[entry(1, 1, 100)]).unwrap();
    sim.inject(Fault::Eio {
        op: IoOp::Sync,
        path: dir(),
        count: 1,
    });
    let err = wal.save(None, &[entry(2, 1, 3000)]).unwrap_err();
    assert!(matches!(err, WalError::Io { op: "fsync", .. }), "{err}");
    let err = wal.save(None, &[entry(2, 1, 10)]).unwrap_err();
    assert!(
        matches!(err, WalError::Failed(_)),
        "writes continued after a failed fsync: {err}"
    );
    // Keep the first sector of the unsynced record, drop the rest: a torn write.
    let mut torn = false;
    for seed in 0..64 {
        let sim2 = SimDisk::new(seed);
        let disk2: Arc<dyn Disk> = Arc::new(sim2.clone());
        let mut w = Wal::create(disk2.clone(), &dir(), meta(), small()).unwrap();
        w.save(None, &[entry(1, 1, 100)]).unwrap();
        sim2.inject(Fault::Eio {
            op: IoOp::Sync,
            path: dir(),
            count: 1,
        });
        w.save(None, &[entry(2, 1, 3000)]).unwrap_err();
        drop(w);
        sim2.crash_with(CrashMode::Tear);
        let (mut w, replay) = reopen(&disk2, &start()).unwrap();
        assert!(replay.entries.len() <= 2);
        assert_eq!(replay.entries[0], entry(1, 1, 100));
        if replay.torn_tail.is_some() {
            torn = true;
            assert_eq!(indexes(&replay.entries), vec![1]);
            w.save(None, &[entry(2, 2, 50)]).unwrap();
            drop(w);
            let (_, again) = reopen(&disk2, &start()).unwrap();
            assert_eq!(again.entries[1], entry(2, 2, 50));
            assert_eq!(again.torn_tail, None, "the tear was not repaired");
        }
    }
    assert!(torn, "no seed produced a torn tail");
    drop(disk);
}

#[test]
fn failed_preallocation_fails_the_wal() {
    let (sim, disk, mut wal) = setup();
    sim.inject(Fault::NoSpace {
        // Room for the record, not for the next segment's preallocation.
        capacity: Some(sim.used_bytes() + 2000),
    });
    let err = wal.save(None, &[entry(1, 1, 4100)]).unwrap_err();
    assert!(err.to_string().contains("No space left"), "{err}");
    assert!(matches!(
        wal.save(None, &[entry(2, 1, 1)]),
        Err(WalError::Failed(_))
    ));
    assert!(matches!(wal.cut(), Err(WalError::Failed(_))));
    sim.heal();
    drop(wal);
    let (_, replay) = reopen(&disk, &start()).unwrap();
    assert_eq!(
        replay.entries,
        vec![entry(1, 1, 4100)],
        "the entry was synced before the cut failed"
    );
}

#[test]
fn a_missing_middle_segment_is_detected() {
    let (_, disk, mut wal) = setup();
    for i in 1..=60 {
        wal.save(None, &[entry(i, 1, 200)]).unwrap();
    }
    drop(wal);
    let paths = segment_paths(&disk);
    assert!(paths.len() >= 3);
    disk.remove(&paths[1]).unwrap();
    let err = reopen(&disk, &start()).unwrap_err();
    assert!(err.to_string().contains("sequence jumps"), "{err}");
}

#[test]
fn oversized_records_are_refused() {
    let (_, _, mut wal) = setup();
    let huge = Entry {
        index: 1,
        term: 1,
        data: vec![1; record::MAX_PAYLOAD + 1],
        ..Default::default()
    };
    let err = wal.save(None, &[huge]).unwrap_err();
    assert!(matches!(err, WalError::TooLarge { .. }), "{err}");
    wal.save(None, &[entry(1, 1, 4)]).unwrap();
}

#[test]
fn leftover_temporary_segment_is_removed() {
    let (_, disk, wal) = setup();
    drop(wal);
    let tmp = dir().join("0000000000000001-0000000000000001.wal.tmp");
    disk.open(&tmp, OpenMode::CreateNew).unwrap();
    reopen(&disk, &start()).unwrap();
    assert!(!disk.exists(&tmp));
}

#[test]
fn snapshot_marks_lists_every_mark_without_changing_anything() {
    let (sim, disk, mut wal) = setup();
    for i in 1..=30 {
        wal.save(None, &[entry(i, 1, 200)]).unwrap();
    }
    let mark = SnapshotMark {
        index: 25,
        term: 1,
        conf_state: None,
    };
    wal.save_snapshot(&mark).unwrap();
    let trace = sim.trace_hash();
    let marks = Wal::snapshot_marks(disk.as_ref(), &dir()).unwrap();
    assert_eq!(marks, vec![SnapshotMark::default(), mark.clone()]);
    drop(wal);
    let listed = sim.trace_hash();
    assert_ne!(trace, listed, "reads are traced too");
    let (_, replay) = reopen(&disk, &mark).unwrap();
    assert_eq!(replay.snapshots, vec![mark]);
}

#[test]
fn a_commit_only_hard_state_waits_for_the_next_fsync() {
    let (sim, disk, mut wal) = setup();
    wal.save(Some(&hs(1, 1)), &[entry(1, 1, 10), entry(2, 1, 10)])
        .unwrap();
    // Only the commit index moves: written, not fsynced (etcd's MustSync).
    wal.save(Some(&hs(1, 2)), &[]).unwrap();
    drop(wal);
    sim.crash_with(CrashMode::DropAll);
    let (mut wal, replay) = reopen(&disk, &start()).unwrap();
    assert_eq!(indexes(&replay.entries), vec![1, 2]);
    assert_eq!(
        replay.hard_state,
        hs(1, 1),
        "a commit-only save was fsynced"
    );
    // A new term (or vote) is durable at once.
    wal.save(Some(&hs(2, 1)), &[]).unwrap();
    drop(wal);
    sim.crash_with(CrashMode::DropAll);
    let (mut wal, replay) = reopen(&disk, &start()).unwrap();
    assert_eq!(replay.hard_state, hs(2, 1), "a new term was not fsynced");
    // Entries are, and their fsync takes the commit-only save before them along.
    wal.save(Some(&hs(2, 2)), &[]).unwrap();
    wal.save(None, &[entry(3, 2, 10)]).unwrap();
    drop(wal);
    sim.crash_with(CrashMode::DropAll);
    let (_, replay) = reopen(&disk, &start()).unwrap();
    assert_eq!(indexes(&replay.entries), vec![1, 2, 3]);
    assert_eq!(replay.hard_state, hs(2, 2));
}

#[test]
fn metadata_comes_from_the_newest_segment_head_even_after_release() {
    let (_, disk, mut wal) = setup();
    for i in 1..=60 {
        wal.save(Some(&hs(1, i)), &[entry(i, 1, 200)]).unwrap();
    }
    wal.release_to(40).unwrap();
    assert!(segment_paths(&disk).len() > 1, "the entries span segments");
    assert_eq!(Wal::read_metadata(disk.as_ref(), &dir()).unwrap(), meta());
    // A head that is not a WAL's is an error naming the file, not a panic.
    let newest = segment_paths(&disk).pop().unwrap();
    let f = disk.open(&newest, OpenMode::Existing).unwrap();
    f.write_at(0, &[0xff; 64]).unwrap();
    drop(f);
    let err = Wal::read_metadata(disk.as_ref(), &dir()).unwrap_err();
    assert!(err.to_string().contains(newest.to_str().unwrap()), "{err}");
}
