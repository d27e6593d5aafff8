//! The seam between detcd and the world: disk, clock and randomness.
//!
//! Everything above this module reaches files, time and entropy only through here, so the
//! same code runs for real (tokio, std::fs) and under the madsim simulator (virtual time,
//! seeded randomness, [`SimDisk`] with its crash and fault model). `tests/seams.rs` enforces
//! the rule on the source tree.

mod clock;
mod crash;
mod disk;
mod hooks;
mod malloc;
mod real_disk;
mod sched;
mod sim_disk;
mod sparse;
mod zeros;

pub use clock::Clock;
pub use crash::CrashPoint;
pub use disk::{read_file, Disk, DiskFile, OpenMode};
pub use hooks::{
    planted, reach, reached, trace, trace_reset, trace_value, Bug, Milestone, PLANT_BUG_ENV,
};
pub use real_disk::RealDisk;
pub use sched::threaded_runtime;
pub use sim_disk::{CrashMode, Fault, IoOp, PointFault, SimDisk, SECTOR};
pub use zeros::all_zero;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A deterministic random generator for the given seed; the only RNG constructor that code
/// above the runtime uses.
pub fn seeded_rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// A seed from the environment: virtual under madsim (seeded by the simulation), the OS
/// otherwise. Use it to pick a seed once, then derive everything from it.
pub fn entropy_seed() -> u64 {
    rand::random()
}

#[cfg(test)]
mod disk_tests;

/// The message a caught panic carried.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Runs `wait` (for a lock that another task holds for long) so that the async worker's
/// other tasks go on meanwhile: tokio hands the worker to another thread. In place where
/// that cannot be done (madsim, where nothing waits; a current-thread runtime).
pub fn wait_in_place<T>(wait: impl FnOnce() -> T) -> T {
    #[cfg(not(madsim))]
    if tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
    {
        return tokio::task::block_in_place(wait);
    }
    wait()
}

/// Runs blocking work (large file copies) off the async workers, so that the member loop
/// and the transport keep going. Under madsim the work runs in place: the simulated disk
/// is memory and threads are not allowed.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    #[cfg(not(madsim))]
    {
        tokio::task::spawn_blocking(work)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }
    #[cfg(madsim)]
    {
        work()
    }
}
