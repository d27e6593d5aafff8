use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// Monotonic time. Under `cfg(madsim)` tokio's clock is the simulator's virtual clock, so
/// time advances only as the simulation schedules it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Clock;

impl Clock {
    pub fn now(&self) -> Instant {
        Instant::now()
    }

    pub fn sleep(&self, duration: Duration) -> impl Future<Output = ()> {
        tokio::time::sleep(duration)
    }

    pub fn sleep_until(&self, deadline: Instant) -> impl Future<Output = ()> {
        tokio::time::sleep_until(deadline)
    }

    /// Wall-clock time in nanoseconds since the Unix epoch, for lease deadlines shown to
    /// users and history timestamps. Virtual under madsim.
    pub fn unix_nanos(&self) -> u128 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    }
}
