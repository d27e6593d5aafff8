//! The state a member's tasks share: the MVCC store with its watchers, the lessor, and the
//! lessor's clock. The apply loop writes them; the services read them.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::auth::AuthStore;
use crate::lease::Lessor;
use crate::mvcc::WatchableStore;
use crate::runtime::Clock;

/// The MVCC store with its watchers, shared by the apply loop (writes) and the services
/// (serializable reads, watch streams). Lock order: store, then lessor, then auth, then
/// cluster.
pub type SharedStore = Arc<Mutex<WatchableStore>>;
/// The leases; see [`SharedStore`] for the lock order.
pub type SharedLessor = Arc<Mutex<Lessor>>;
/// Users, roles and tokens; see [`SharedStore`] for the lock order.
pub type SharedAuth = Arc<Mutex<AuthStore>>;

/// Locks `shared`. A poisoned lock is taken as is: the task that panicked holding it
/// reports its own failure, and the others go on with the data as it was left.
pub fn lock<T>(shared: &Mutex<T>) -> MutexGuard<'_, T> {
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
