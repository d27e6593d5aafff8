//! Simulation hooks the rest of detcd calls unconditionally: the run's trace hash and
//! planted bugs. Under `cfg(madsim)` they are live; in the real build they do nothing, so
//! the code above the runtime is the same in both builds.
//!
//! The trace is per thread: madsim runs a whole simulation on the thread that calls
//! `block_on`, so parallel tests in one process keep separate traces.

/// A deliberately broken behaviour, switched on in a simulation to prove that the checks
/// catch it. `DETCD_PLANT_BUG` names them, comma-separated; members read it once at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bug {
    /// Linearizable reads are answered from local state without a ReadIndex round.
    StaleRead,
    /// WAL fsyncs report success without making anything durable, so members acknowledge
    /// appends that a power loss takes back.
    AckBeforeFsync,
    /// The Lock service answers at once, without waiting for earlier contenders' keys to go,
    /// so two clients hold a lock together.
    LockNoWait,
    /// Votes are granted without Raft's check that the candidate's log is up to date.
    VoteIgnoresLog,
    /// A watcher that fell behind (created at a past revision, or resumed) loses the first
    /// event of its catch-up from the store's history.
    WatchCatchUpSkip,
    /// Compaction drops the revision that shows a key's value at the compaction revision
    /// as well as the superseded ones, so a key last written before it vanishes.
    CompactDropsLatest,
}

impl Bug {
    /// The name `DETCD_PLANT_BUG` uses.
    pub fn name(self) -> &'static str {
        match self {
            Bug::StaleRead => "stale-read",
            Bug::AckBeforeFsync => "ack-before-fsync",
            Bug::LockNoWait => "lock-no-wait",
            Bug::WatchCatchUpSkip => "watch-catch-up-skip",
            Bug::VoteIgnoresLog => "vote-ignores-log",
            Bug::CompactDropsLatest => "compact-drops-latest",
        }
    }
}

/// Rare protocol events a simulation's expectations count (each is also in the trace), e.g.
/// that a scenario really made a member catch up through the leader's snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Milestone {
    /// A follower or learner replaced its state with a snapshot received from the leader.
    SnapshotInstalled,
    /// A member's power failed at an armed crash point.
    CrashPointPowerCut,
    /// A member's process was killed at an armed crash point.
    CrashPointKill,
    /// A member stalled at an armed crash point.
    CrashPointPause,
}

/// The environment variable naming planted bugs.
pub const PLANT_BUG_ENV: &str = "DETCD_PLANT_BUG";

#[cfg(madsim)]
mod imp {
    use std::cell::Cell;

    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0100_0000_01b3;
    /// One counter per [`super::Milestone`].
    const MILESTONE_KINDS: usize = 4;

    thread_local! {
        static TRACE: Cell<u64> = const { Cell::new(FNV_OFFSET) };
        static MILESTONES: Cell<[u64; MILESTONE_KINDS]> =
            const { Cell::new([0; MILESTONE_KINDS]) };
    }

    pub fn reset() {
        TRACE.with(|t| t.set(FNV_OFFSET));
        MILESTONES.with(|m| m.set([0; MILESTONE_KINDS]));
    }

    pub fn reach(m: super::Milestone) {
        record(b'R', &[m as u64]);
        MILESTONES.with(|c| {
            let mut counts = c.get();
            counts[m as usize] += 1;
            c.set(counts);
        });
    }

    pub fn reached(m: super::Milestone) -> u64 {
        MILESTONES.with(|c| c.get()[m as usize])
    }

    pub fn record(tag: u8, words: &[u64]) {
        TRACE.with(|t| {
            let mut h = t.get();
            for b in std::iter::once(tag).chain(words.iter().flat_map(|w| w.to_le_bytes())) {
                h ^= u64::from(b);
                h = h.wrapping_mul(FNV_PRIME);
            }
            t.set(h);
        });
    }

    pub fn value() -> u64 {
        TRACE.with(Cell::get)
    }

    pub fn planted(bug: super::Bug) -> bool {
        std::env::var(super::PLANT_BUG_ENV)
            .is_ok_and(|v| v.split(',').any(|name| name.trim() == bug.name()))
    }
}

#[cfg(not(madsim))]
mod imp {
    pub fn reset() {}

    pub fn record(_tag: u8, _words: &[u64]) {}

    pub fn reach(_m: super::Milestone) {}

    pub fn reached(_m: super::Milestone) -> u64 {
        0
    }

    pub fn value() -> u64 {
        0
    }

    pub fn planted(_bug: super::Bug) -> bool {
        false
    }
}

/// Starts a new trace (a simulation run calls it first).
pub fn trace_reset() {
    imp::reset()
}

/// Folds one event, a tag and its fields, into the trace.
pub fn trace(tag: u8, words: &[u64]) {
    imp::record(tag, words)
}

/// The trace so far; 0 outside the simulation.
pub fn trace_value() -> u64 {
    imp::value()
}

/// Counts one occurrence of `m` in this simulation run.
pub fn reach(m: Milestone) {
    imp::reach(m)
}

/// How often `m` occurred since [`trace_reset`]; 0 outside the simulation.
pub fn reached(m: Milestone) -> u64 {
    imp::reached(m)
}

/// Whether `bug` is planted; always false outside the simulation.
pub fn planted(bug: Bug) -> bool {
    imp::planted(bug)
}
