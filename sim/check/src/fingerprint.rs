//! 128-bit fingerprints for memoizing large values by a small key. Two different values
//! share one with probability about 2^-128 per pair; the search relies on that as Porcupine
//! and knossos rely on hashing.

/// splitmix64's finalizer: a bijection on u64 that scatters nearby inputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A fingerprint of a sequence of words.
pub fn of(words: &[u64]) -> u128 {
    let (mut a, mut b) = (0x9e37_79b9_7f4a_7c15_u64, 0x5851_f42d_4c95_7f2d_u64);
    for &w in words {
        a = mix(a ^ w);
        b = mix(b.wrapping_add(w).rotate_left(17) ^ a);
    }
    (u128::from(a) << 64) | u128::from(b)
}

#[cfg(test)]
mod tests {
    #[test]
    fn nearby_inputs_get_distinct_fingerprints() {
        let mut all: Vec<u128> = (1..=1000u64)
            .flat_map(|i| [super::of(&[i]), super::of(&[i, 0]), super::of(&[0, i])])
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 3000);
    }
}
