use std::collections::BTreeSet;
use std::time::Duration;

use super::lessor::MAX_LEASE_TTL;

/// Bytes of a lease record in the backend: id, granted TTL, remaining TTL (big-endian).
pub const RECORD_BYTES: usize = 24;

/// One lease. TTLs are whole seconds, as in etcd's API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: i64,
    /// The TTL granted (after raising it to the minimum).
    pub ttl: i64,
    /// The TTL left at the last checkpoint; 0 when never checkpointed (the full TTL).
    pub remaining_ttl: i64,
    /// When it expires, on the primary only; `None` on followers (never, by itself).
    pub expiry: Option<Duration>,
    pub keys: BTreeSet<Vec<u8>>,
}

impl Lease {
    pub fn new(id: i64, ttl: i64) -> Self {
        Lease {
            id,
            ttl,
            remaining_ttl: 0,
            expiry: None,
            keys: BTreeSet::new(),
        }
    }

    /// Restarts the countdown at `now`, from the checkpointed TTL if there is one, plus
    /// `extend` (a new leader's grace period).
    pub fn refresh(&mut self, now: Duration, extend: Duration) {
        let secs = if self.remaining_ttl > 0 {
            self.remaining_ttl
        } else {
            self.ttl
        };
        self.expiry = Some(now + extend + Duration::from_secs(secs as u64));
    }

    /// Whole seconds left at `now`, rounded up; `None` on a follower.
    pub fn remaining(&self, now: Duration) -> Option<i64> {
        let left = self.expiry?.saturating_sub(now);
        Some(left.as_millis().div_ceil(1000) as i64)
    }

    pub fn encode(&self) -> [u8; RECORD_BYTES] {
        let mut b = [0; RECORD_BYTES];
        b[0..8].copy_from_slice(&self.id.to_be_bytes());
        b[8..16].copy_from_slice(&self.ttl.to_be_bytes());
        b[16..24].copy_from_slice(&self.remaining_ttl.to_be_bytes());
        b
    }

    /// The lease a backend record holds, or what is wrong with it: a record of another
    /// size, or a TTL no grant gives (one would overflow the expiry arithmetic).
    pub fn decode(b: &[u8]) -> Result<Self, String> {
        let Ok(b) = <&[u8; RECORD_BYTES]>::try_from(b) else {
            return Err(format!(
                "lease record of {} bytes, want {RECORD_BYTES}",
                b.len()
            ));
        };
        let int = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let (id, ttl, remaining_ttl) = (int(0), int(8), int(16));
        for (what, v) in [("TTL", ttl), ("remaining TTL", remaining_ttl)] {
            if !(0..=MAX_LEASE_TTL).contains(&v) {
                return Err(format!(
                    "lease {id:x}: {what} {v} outside [0, {MAX_LEASE_TTL}]"
                ));
            }
        }
        Ok(Lease {
            remaining_ttl,
            ..Lease::new(id, ttl)
        })
    }
}
