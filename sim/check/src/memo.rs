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

/// Explored configurations and the current one's set and counts.
pub struct Memo<K> {
    /// (required set, state key) -> the class counts explored there, as records of
    /// `arena`: the first inline, so that most entries allocate nothing of their own.
    seen: HashMap<(u128, K), (u32, Vec<u32>)>,
    /// Class counts of explored configurations, `counts.len()` per record, all in one
    /// allocation so that dropping a large memo frees a few blocks, not one per entry.
    arena: Vec<u32>,
    /// Heap bytes of the record lists beside first records, about.
    more_bytes: usize,
    /// Partition-local operation -> its class, for optional operations.
    class: Vec<Option<usize>>,
    counts: Vec<u32>,
    /// Fingerprint of the required operations linearized: XOR of one value per member.
    required: u128,
}

/// 128 pseudo-random bits for operation `j`.
fn member(j: usize) -> u128 {
    fingerprint::of(&[j as u64])
}

/// Bytes a growing `Vec` of `len` elements of `size` bytes holds after one more push, with
/// its old buffer still alive while a full one moves.
fn vec_bytes_after_push(len: usize, capacity: usize, size: usize) -> usize {
    if len < capacity {
        capacity * size
    } else {
        3 * capacity.max(4) * size
    }
}

impl<K: Eq + Hash> Memo<K> {
    /// `class[j]` is `Some` for optional operations; classes are numbered from 0.
    pub fn new(class: Vec<Option<usize>>) -> Memo<K> {
        let classes = class.iter().flatten().max().map_or(0, |c| c + 1);
        Memo {
            seen: HashMap::new(),
            arena: Vec::new(),
            more_bytes: 0,
            class,
            counts: vec![0; classes],
            required: 0,
        }
    }

    /// About how many bytes the memo holds after one more entry: its table (doubled when
    /// full, the old one still alive while the entries move), the class counts and the
    /// lists of further records.
    pub fn bytes_after_insert(&self) -> usize {
        let slot = std::mem::size_of::<((u128, K), (u32, Vec<u32>))>() + 1;
        // hashbrown keeps at most 7 entries per 8 slots.
        let table = vec_bytes_after_push(self.seen.len(), self.seen.capacity(), slot) * 8 / 7;
        let arena = vec_bytes_after_push(self.arena.len(), self.arena.capacity(), 4);
        table + arena + self.more_bytes
    }

    /// Moves to the configuration after linearizing `j` into a state with key `key`, unless
    /// an explored configuration subsumes it (then nothing changes and it returns false).
    pub fn enter(&mut self, j: usize, key: K) -> bool {
        self.toggle(j, true);
        let n = self.counts.len();
        let record = u32::try_from(self.arena.len().checked_div(n).unwrap_or(0))
            .expect("the memory bound keeps records under 2^32");
        let (arena, counts) = (&self.arena, &self.counts);
        let at_most = |r: u32| {
            let at = r as usize * n;
            arena[at..at + n].iter().zip(counts).all(|(a, b)| a <= b)
        };
        let fresh = match self.seen.entry((self.required, key)) {
            Entry::Vacant(v) => {
                v.insert((record, Vec::new()));
                true
            }
            Entry::Occupied(mut o) => {
                let (first, more) = o.get_mut();
                let subsumed = at_most(*first) || more.iter().any(|&r| at_most(r));
                if !subsumed {
                    // A list's first push allocates room for four.
                    self.more_bytes += if more.is_empty() { 32 } else { 4 };
                    more.push(record);
                }
                !subsumed
            }
        };
        if fresh {
            self.arena.extend_from_slice(&self.counts);
        } else {
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
