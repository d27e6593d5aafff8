//! Flow control: appends sent to a follower but not yet acknowledged.

use std::collections::VecDeque;

/// A bounded window of in-flight appends, by count and by bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inflights {
    /// `(last index, payload bytes)` of each in-flight append, oldest first.
    queue: VecDeque<(u64, u64)>,
    bytes: u64,
    /// Named limits: `max_inflight_msgs` and `max_inflight_bytes` (0 = unlimited bytes).
    cap: usize,
    max_bytes: u64,
}

impl Inflights {
    pub fn new(cap: usize, max_bytes: u64) -> Self {
        Self {
            queue: VecDeque::with_capacity(cap),
            bytes: 0,
            cap,
            max_bytes,
        }
    }

    /// Records an append ending at `index` carrying `bytes` of payload.
    pub fn add(&mut self, index: u64, bytes: u64) {
        assert!(
            !self.full(),
            "cannot add into a full inflights (count {}/{}, bytes {}/{})",
            self.queue.len(),
            self.cap,
            self.bytes,
            self.max_bytes
        );
        if let Some(&(last, _)) = self.queue.back() {
            assert!(index > last, "inflight index({index}) <= last({last})");
        }
        self.queue.push_back((index, bytes));
        self.bytes += bytes;
    }

    /// Frees every append up to and including `to`.
    pub fn free_le(&mut self, to: u64) {
        while let Some(&(idx, b)) = self.queue.front() {
            if idx > to {
                break;
            }
            self.bytes -= b;
            self.queue.pop_front();
        }
    }

    /// Frees the oldest append; used when a heartbeat response shows the follower is
    /// alive although acknowledgements were lost.
    pub fn free_first_one(&mut self) {
        if let Some(&(idx, _)) = self.queue.front() {
            self.free_le(idx);
        }
    }

    pub fn full(&self) -> bool {
        self.queue.len() >= self.cap || (self.max_bytes != 0 && self.bytes >= self.max_bytes)
    }

    pub fn count(&self) -> usize {
        self.queue.len()
    }

    pub fn reset(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_by_count_or_bytes() {
        let mut ins = Inflights::new(3, 100);
        ins.add(1, 10);
        ins.add(2, 10);
        assert!(!ins.full());
        ins.add(3, 10);
        assert!(ins.full(), "count limit");
        ins.free_le(2);
        assert_eq!(ins.count(), 1);
        ins.add(4, 90);
        assert!(ins.full(), "byte limit: 100 of 100");
        ins.free_first_one();
        assert!(!ins.full());
        ins.free_le(9);
        assert_eq!((ins.count(), ins.bytes), (0, 0));
    }

    #[test]
    #[should_panic(expected = "cannot add into a full inflights")]
    fn add_to_full_panics() {
        let mut ins = Inflights::new(1, 0);
        ins.add(1, 1);
        ins.add(2, 1);
    }
}
