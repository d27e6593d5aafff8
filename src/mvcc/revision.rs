//! Revisions: `main` counts write transactions, `sub` the changes inside one.

use std::fmt;

/// Bytes of an encoded revision: main (8, big-endian), `_`, sub (8, big-endian).
pub const REV_BYTES: usize = 17;
/// Bytes of a tombstone's key in the `key` table: the revision then `t`.
pub const MARKED_REV_BYTES: usize = REV_BYTES + 1;
const TOMBSTONE_MARK: u8 = b't';

/// A point in the store's history. Ordered by main, then sub.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }

    /// The backend key: big-endian so that byte order is revision order; a tombstone
    /// carries a mark after the revision.
    pub fn to_key(self, tombstone: bool) -> Vec<u8> {
        assert!(self.main >= 0 && self.sub >= 0, "negative revision {self}");
        let mut b = Vec::with_capacity(MARKED_REV_BYTES);
        b.extend_from_slice(&self.main.to_be_bytes());
        b.push(b'_');
        b.extend_from_slice(&self.sub.to_be_bytes());
        if tombstone {
            b.push(TOMBSTONE_MARK);
        }
        b
    }

    /// Decodes a backend key into the revision and whether it is a tombstone.
    /// Whether `b` is a key [`Revision::from_key`] reads.
    pub fn is_key(b: &[u8]) -> bool {
        b.len() == REV_BYTES || (b.len() == MARKED_REV_BYTES && b[REV_BYTES] == TOMBSTONE_MARK)
    }

    pub fn from_key(b: &[u8]) -> (Revision, bool) {
        assert!(Self::is_key(b), "revision key of {} bytes: {b:?}", b.len());
        let main = i64::from_be_bytes(b[0..8].try_into().expect("8 bytes"));
        let sub = i64::from_be_bytes(b[9..17].try_into().expect("8 bytes"));
        (Revision { main, sub }, b.len() == MARKED_REV_BYTES)
    }

    /// The smallest backend key of main revision `main`, for range scans.
    pub fn start_key(main: i64) -> Vec<u8> {
        Revision::new(main, 0).to_key(false)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.main, self.sub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Compaction and history scans rely on byte order matching revision order.
        #[test]
        fn key_order_is_revision_order(a in (0..i64::MAX, 0..i64::MAX), b in (0..i64::MAX, 0..i64::MAX), ta: bool) {
            let (ra, rb) = (Revision::new(a.0, a.1), Revision::new(b.0, b.1));
            prop_assert_eq!(ra.cmp(&rb), ra.to_key(false).cmp(&rb.to_key(false)));
            prop_assert_eq!(Revision::from_key(&ra.to_key(ta)), (ra, ta));
        }
    }
}
