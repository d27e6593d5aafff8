//! The state a member's tasks share: the MVCC store with its watchers, the lessor, and the
//! lessor's clock. The apply loop writes them; the services read them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

use tokio::time::Instant;

use crate::auth::AuthStore;
use crate::lease::Lessor;
use crate::mvcc::WatchableStore;
use crate::runtime::{wait_in_place, Clock};

/// The MVCC store with its watchers, shared by the apply loop (writes) and the services
/// (serializable reads, watch streams). Lock order: store, then lessor, then auth, then
/// cluster.
pub type SharedStore = Arc<Mutex<WatchableStore>>;
/// The leases; see [`SharedStore`] for the lock order.
pub type SharedLessor = Arc<Mutex<Lessor>>;
/// Users, roles and tokens; see [`SharedStore`] for the lock order.
pub type SharedAuth = Arc<Mutex<AuthStore>>;

/// [`LongHold`]s in progress, in this process.
static LONG_HOLDS: AtomicUsize = AtomicUsize::new(0);

/// Marks a hold of a shared lock that may last seconds (defragmentation, installing a
/// snapshot). While one lasts, a task that must wait for a lock first hands its async
/// worker to the other tasks ([`wait_in_place`]), so the member keeps serving what needs
/// no lock (HTTP/2 pings included) instead of every worker blocking on the lock. Short
/// waits stay plain: a hand-off costs more than they do.
pub struct LongHold(());

impl LongHold {
    pub fn begin() -> Self {
        LONG_HOLDS.fetch_add(1, Ordering::SeqCst);
        LongHold(())
    }
}

impl Drop for LongHold {
    fn drop(&mut self) {
        LONG_HOLDS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Locks `shared`. A poisoned lock is taken as is: the task that panicked holding it
/// reports its own failure, and the others go on with the data as it was left.
pub fn lock<T>(shared: &Mutex<T>) -> MutexGuard<'_, T> {
    if LONG_HOLDS.load(Ordering::SeqCst) > 0 {
        match shared.try_lock() {
            Ok(guard) => return guard,
            Err(TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                return wait_in_place(|| shared.lock().unwrap_or_else(|p| p.into_inner()))
            }
        }
    }
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// The lessor's notion of now: time since the member started, on the runtime clock.
#[derive(Clone, Copy, Debug)]
pub struct LeaseClock {
    start: Instant,
}

impl LeaseClock {
    pub fn new() -> Self {
        LeaseClock { start: Clock.now() }
    }

    pub fn now(&self) -> Duration {
        Clock.now() - self.start
    }
}

impl Default for LeaseClock {
    fn default() -> Self {
        Self::new()
    }
}
