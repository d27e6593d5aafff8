//! A member persisting its Readies to the WAL restarts from what the WAL replays.

use crate::proto::walpb::{Metadata, SnapshotMark};
use crate::raft::tests::network::config;
use crate::raft::{MemStorage, RawNode, Storage};
use crate::runtime::{Disk, SimDisk};
use crate::wal::{Wal, WalOptions};
use std::path::Path;
use std::sync::Arc;

/// Handles every Ready, writing the WAL before the in-memory log, as the Ready
/// contract's step 2 requires.
fn drive(node: &mut RawNode<MemStorage>, wal: &mut Wal) {
    while node.has_ready() {
        let rd = node.ready();
        wal.save(rd.hard_state.as_ref(), &rd.entries).unwrap();
        let store = node.store_mut();
        store.append(&rd.entries);
        if let Some(hs) = rd.hard_state {
            store.set_hard_state(hs);
        }
        node.advance(rd);
    }
}

#[test]
fn member_restarts_from_the_wal() {
    let disk: Arc<dyn Disk> = Arc::new(SimDisk::new(3));
    let dir = Path::new("/member/wal");
    let mut wal = Wal::create(
        disk.clone(),
        dir,
        Metadata::default(),
        WalOptions::default(),
    )
    .unwrap();
    let boot = MemStorage::new_with_voters(&[1]);
    let boot_snapshot = boot.snapshot().unwrap();
    // The WAL records where the bootstrap snapshot cuts the log.
    let meta = boot_snapshot.metadata.clone().unwrap();
    let mark = SnapshotMark {
        index: meta.index,
        term: meta.term,
        conf_state: meta.conf_state,
    };
    wal.save_snapshot(&mark).unwrap();
    let mut node = RawNode::new(config(1), boot).unwrap();
    node.campaign().unwrap();
    for i in 0..5u8 {
        node.propose(vec![i]).unwrap();
        drive(&mut node, &mut wal);
    }
    let before = (node.raft.hard_state(), node.raft.raft_log.last_index());
    assert_eq!(before.0.commit, 7, "bootstrap + leader entry + 5 proposals");
    drop((node, wal));

    let (mut wal, replay) = Wal::open(disk, dir, &mark, WalOptions::default()).unwrap();
    let store =
        MemStorage::from_durable(Some(boot_snapshot), replay.hard_state, &replay.entries).unwrap();
    let mut node = RawNode::new(config(1), store).unwrap();
    assert_eq!(
        (node.raft.hard_state(), node.raft.raft_log.last_index()),
        before
    );
    node.campaign().unwrap();
    node.propose(b"after".to_vec()).unwrap();
    drive(&mut node, &mut wal);
    assert_eq!(
        node.raft.raft_log.committed, 9,
        "new leader entry + proposal"
    );
}
