//! The configurations the search has explored, with subsumption.
//!
//! A configuration is the set of required operations linearized (as a fingerprint), the
//! model state, and how many members of each class of interchangeable optional (`info`)
//! operations were applied ([`super::info::gates`] makes those a prefix of each class). One
//! explored configuration subsumes another with the same required set and state whose
//! counts are all at least as high: the second has fewer options left, so whatever it can
//! reach, the first can too (renaming class members, which are interchangeable). The search
//! expands every configuration it records, so skipping subsumed ones keeps it complete:
//! a goal reachable from a skipped configuration is reachable, in no more steps, from the
//! one that subsumed it.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::Hash;

use super::fingerprint;

/// Members applied per class of optional operations.
type Counts = Box<[u32]>;

/// Explored configurations and the current one's set and counts.
pub struct Memo<K> {
    /// (required set, state key) -> the class counts explored there: the first inline, so
    /// that partitions without optional operations allocate nothing more per entry.
    seen: HashMap<(u128, K), (Counts, Vec<Counts>)>,
    /// Partition-local operation -> its class, for optional operations.
    class: Vec<Option<usize>>,
    counts: Vec<u32>,
    /// Fingerprint of the required operations linearized: XOR of one value per member.
    required: u128,
    /// Heap bytes of the class counts kept beside the entries, about.
    counts_bytes: usize,
}

/// Heap bytes of one kept `Counts` of `n` classes, about (the allocator's header included).
fn counts_bytes(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        4 * n + 16
    }
}

/// 128 pseudo-random bits for operation `j`.
fn member(j: usize) -> u128 {
    fingerprint::of(&[j as u64])
}

impl<K: Eq + Hash> Memo<K> {
    /// `class[j]` is `Some` for optional operations; classes are numbered from 0.
    pub fn new(class: Vec<Option<usize>>) -> Memo<K> {
        let classes = class.iter().flatten().max().map_or(0, |c| c + 1);
        Memo {
            seen: HashMap::new(),
            class,
            counts: vec![0; classes],
            required: 0,
            counts_bytes: 0,
        }
    }

    /// About how many bytes the memo holds after one more entry: its table (doubled when
    /// full, the old one still alive while the entries move) and the class counts.
    pub fn bytes_after_insert(&self) -> usize {
        let slot = std::mem::size_of::<((u128, K), (Counts, Vec<Counts>))>() + 1;
        // hashbrown keeps at most 7 entries per 8 slots.
        let slots = self.seen.capacity().max(3) * 8 / 7;
        let table = if self.seen.len() >= self.seen.capacity() {
            3 * slots
        } else {
            slots
        };
        table * slot + self.counts_bytes + counts_bytes(self.counts.len())
    }

    /// Moves to the configuration after linearizing `j` into a state with key `key`, unless
    /// an explored configuration subsumes it (then nothing changes and it returns false).
    pub fn enter(&mut self, j: usize, key: K) -> bool {
        self.toggle(j, true);
        let counts = &self.counts;
        let fresh = match self.seen.entry((self.required, key)) {
            Entry::Vacant(v) => {
                v.insert((counts.clone().into_boxed_slice(), Vec::new()));
                true
            }
            Entry::Occupied(mut o) => {
                let (first, more) = o.get_mut();
                let at_most = |e: &[u32]| e.iter().zip(counts).all(|(a, b)| a <= b);
                let subsumed = at_most(first) || more.iter().any(|e| at_most(e));
                if !subsumed {
                    more.push(counts.clone().into_boxed_slice());
                    // The box and its place in `more`.
                    self.counts_bytes += counts_bytes(counts.len()) + 16;
                }
                !subsumed
            }
        };
        if fresh {
            self.counts_bytes += counts_bytes(self.counts.len());
        }
        if !fresh {
            self.toggle(j, false);
        }
        fresh
    }

    /// Moves back from the configuration after linearizing `j`.
    pub fn leave(&mut self, j: usize) {
        self.toggle(j, false);
    }

    fn toggle(&mut self, j: usize, on: bool) {
        match self.class[j] {
            Some(c) if on => self.counts[c] += 1,
            Some(c) => {
                assert!(
                    self.counts[c] > 0,
                    "class {c} of op {j} has no member applied"
                );
                self.counts[c] -= 1;
            }
            None => self.required ^= member(j),
        }
    }
}
