//! Named crash points in the write path, the places where etcd's robustness suite crashes
//! or stalls a member (its gofail failpoints, spelled in kebab-case). The code reaches each
//! one through [`Disk::crash_point`](super::Disk::crash_point): a no-op on a real disk; a
//! [`SimDisk`](super::SimDisk) armed with [`Fault::CrashAt`](super::Fault::CrashAt) loses
//! power or is killed there, so nothing the member does afterwards reaches the disk, or
//! stalls there ([`PointFault`](super::PointFault)).

/// Declares [`CrashPoint`] with each point's name.
macro_rules! crash_points {
    ($($point:ident = $name:literal: $doc:literal),* $(,)?) => {
        /// A named point in the write path where a simulated member can crash or stall.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
        pub enum CrashPoint {
            $(#[doc = $doc] $point),*
        }

        impl CrashPoint {
            /// Every point, in declaration order.
            pub const ALL: &'static [CrashPoint] = &[$(CrashPoint::$point),*];

            /// The name scenario files use.
            pub fn name(self) -> &'static str {
                match self {
                    $(CrashPoint::$point => $name),*
                }
            }
        }
    };
}

crash_points!(
    RaftBeforeSave = "raft-before-save": "Before a Ready's hard state and entries go to the WAL.",
    RaftAfterSave = "raft-after-save": "After the WAL save, before the entries reach Raft's storage.",
    RaftAfterSaveSnap = "raft-after-save-snap": "After a received snapshot's file and WAL mark are saved.",
    RaftBeforeApplySnap = "raft-before-apply-snap": "After the WAL save, before a received snapshot replaces the state.",
    RaftAfterApplySnap = "raft-after-apply-snap": "After a received snapshot replaced the state.",
    RaftAfterWalRelease = "raft-after-wal-release": "After WAL segments before a snapshot were released.",
    BackendBeforeCommit = "backend-before-commit": "Before a backend batch commits.",
    BackendAfterCommit = "backend-after-commit": "After a backend batch committed.",
    DefragBeforeCopy = "defrag-before-copy": "Before defragmentation copies the database.",
    DefragBeforeRename = "defrag-before-rename": "After the copy, before it replaces the database.",
    CompactBeforeCommitScheduled = "compact-before-commit-scheduled": "Before a compaction's scheduled revision commits.",
    CompactAfterCommitScheduled = "compact-after-commit-scheduled": "After a compaction's scheduled revision committed.",
    CompactBeforeSetFinished = "compact-before-set-finished": "Before a compaction records that it finished.",
    CompactAfterSetFinished = "compact-after-set-finished": "After a compaction recorded that it finished.",
    CompactBeforeCommitBatch = "compact-before-commit-batch": "Before a batch of compacted revisions commits.",
    CompactAfterCommitBatch = "compact-after-commit-batch": "After a batch of compacted revisions committed.",
    ApplyBeforeOpenSnapshot = "apply-before-open-snapshot": "Before a received database replaces the backend.",
    BeforeApplyOneConfChange = "before-apply-one-conf-change": "Before a committed configuration change applies.",
    BeforeLeaderSend = "before-leader-send": "Before the messages Raft sends ahead of the WAL save (a leader's appends).",
    BeforeFollowerSend = "before-follower-send": "Before the messages that wait for the WAL save (acknowledgements, votes).",
    BeforeSendWatchResponse = "before-send-watch-response": "Before a watch response goes to the client.",
);

impl std::str::FromStr for CrashPoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        CrashPoint::ALL
            .iter()
            .copied()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown crash point {s:?}"))
    }
}

impl std::fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scenario files name points; every name must parse back to its point.
    #[test]
    fn names_round_trip() {
        for &p in CrashPoint::ALL {
            assert_eq!(p.name().parse::<CrashPoint>(), Ok(p));
        }
        assert!("raft-before-nothing".parse::<CrashPoint>().is_err());
    }
}
