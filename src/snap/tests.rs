use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::proto::raftpb::{ConfState, SnapshotMetadata};
use crate::runtime::{CrashMode, Disk, Fault, IoOp, SimDisk};

fn dir() -> PathBuf {
    PathBuf::from("/member/snap")
}

fn snap(term: u64, index: u64) -> SnapshotFile {
    SnapshotFile {
        metadata: Some(SnapshotMetadata {
            conf_state: Some(ConfState {
                voters: vec![1, 2, 3],
                ..Default::default()
            }),
            index,
            term,
        }),
        backend: format!("db-{index}"),
    }
}

fn setup() -> (SimDisk, Snapshotter) {
    let sim = SimDisk::new(11);
    let disk: Arc<dyn Disk> = Arc::new(sim.clone());
    (sim, Snapshotter::new(disk, &dir()).unwrap())
}

fn index_of(s: Option<SnapshotFile>) -> Option<u64> {
    s.map(|s| s.metadata.unwrap().index)
}

#[test]
fn newest_is_loaded() {
    let (_, ss) = setup();
    assert_eq!(ss.load_newest_where(|_| true).unwrap(), None);
    ss.save(&snap(1, 10)).unwrap();
    ss.save(&snap(2, 30)).unwrap();
    ss.save(&snap(2, 20)).unwrap();
    assert_eq!(ss.load_newest_where(|_| true).unwrap(), Some(snap(2, 30)));
}

#[test]
fn saved_snapshot_survives_a_crash() {
    let (sim, ss) = setup();
    ss.save(&snap(1, 10)).unwrap();
    sim.crash_with(CrashMode::DropAll);
    assert_eq!(index_of(ss.load_newest_where(|_| true).unwrap()), Some(10));
}

/// A bit flip makes a snapshot unusable; the next older one is used and the damaged file is
/// set aside so it is not read again.
#[test]
fn damaged_newest_falls_back_to_older() {
    let (sim, ss) = setup();
    ss.save(&snap(1, 10)).unwrap();
    ss.save(&snap(1, 20)).unwrap();
    sim.inject(Fault::BitFlip {
        path: dir().join(super::file_name(1, 20)),
        offset: 20,
        bit: 0,
    });
    assert_eq!(index_of(ss.load_newest_where(|_| true).unwrap()), Some(10));
    let names = sim.list(&dir()).unwrap();
    assert!(
        names.contains(&format!("{}.broken", super::file_name(1, 20))),
        "{names:?}"
    );
}

/// A snapshot file written but never marked in the WAL (crash in between) is skipped.
#[test]
fn only_marked_snapshots_are_used() {
    let (_, ss) = setup();
    ss.save(&snap(1, 10)).unwrap();
    ss.save(&snap(1, 20)).unwrap();
    let marks = [SnapshotMark {
        index: 10,
        term: 1,
        conf_state: None,
    }];
    assert_eq!(index_of(ss.load_newest_marked(&marks).unwrap()), Some(10));
    assert_eq!(ss.load_newest_marked(&[]).unwrap(), None);
}

#[test]
fn failed_save_leaves_no_snapshot() {
    let (sim, ss) = setup();
    sim.inject(Fault::Eio {
        op: IoOp::Sync,
        path: dir(),
        count: 1,
    });
    assert!(ss.save(&snap(1, 10)).is_err());
    sim.crash();
    assert_eq!(ss.load_newest_where(|_| true).unwrap(), None);
    ss.save(&snap(1, 10)).unwrap();
    assert_eq!(ss.gc(5).unwrap(), 0);
    let names = sim.list(&dir()).unwrap();
    assert_eq!(
        names,
        vec![super::file_name(1, 10)],
        "leftover not collected"
    );
}

#[test]
fn gc_keeps_the_newest() {
    let (sim, ss) = setup();
    for i in 1..=5 {
        ss.save(&snap(1, i * 10)).unwrap();
    }
    assert_eq!(ss.gc(2).unwrap(), 3);
    let names = sim.list(&dir()).unwrap();
    assert_eq!(
        names,
        vec![super::file_name(1, 40), super::file_name(1, 50)]
    );
}

#[test]
fn snapshot_without_metadata_is_refused() {
    let (_, ss) = setup();
    let err = ss.save(&SnapshotFile::default()).unwrap_err();
    assert!(matches!(err, SnapError::NoMetadata));
}
