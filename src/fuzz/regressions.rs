//! Inputs the fuzzer once found panicking, each kept as a test with what it found.

use super::{from_text, run_one, targets::ALL};

fn replay(target: &str, input: &str) {
    let target = ALL.iter().find(|t| t.name == target).unwrap();
    if let Err(e) = run_one(target, &from_text(input)) {
        panic!("{}: {e}", target.name);
    }
}

/// An entry at or below the snapshot after later entries cleared the replayed entries but
/// kept the last index at the later ones, so the next entry saved left a gap that the
/// next open refused ("entries are not contiguous"): the member could not restart.
#[test]
fn wal_overwrite_below_the_snapshot_ends_the_log_there() {
    replay(
        "wal_records",
        include_str!("crashes/wal-overwrite-below-snapshot.txt"),
    );
}

/// A snapshot mark past the last entry (a follower that installed a leader's snapshot),
/// replayed from an older mark: the WAL's last index is the mark's, while Raft's log ends
/// at the last entry and appends after it. The WAL accepts that append and replays it; the
/// fuzz property first assumed the append came after the mark, which left a gap.
#[test]
fn wal_append_after_the_entries_below_a_later_snapshot_mark() {
    replay(
        "wal_records",
        include_str!("crashes/wal-append-below-a-later-mark.txt"),
    );
}

/// A received snapshot database with a damaged page: redb 4.5 reaches `unreachable!()` on
/// the page type while it commits on open (btree_cursor.rs), so checking the file from a
/// peer panicked the member. The check now catches redb's panic and refuses the file.
#[test]
fn backend_snapshot_redb_unreachable_on_commit() {
    replay(
        "backend_snapshot",
        include_str!("crashes/redb-unreachable-page-type-on-commit.txt"),
    );
}
