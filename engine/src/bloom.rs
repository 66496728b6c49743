//! `IdBloomFilter`: a per-segment Bloom filter over the document ids of a segment.
//!
//! The primary path looks every written id up in every segment (to find the version it
//! replaces); for new ids, that is a term-dictionary probe per segment that finds nothing. A
//! segment is immutable, so its filter is built once, from its `_id` term dictionary, and answers
//! "certainly absent" for ~99% of absent ids with a few memory reads.
//!
//! Sizing: 10 bits per id and 7 probes (false-positive rate ~0.8%), double hashing over one
//! 64-bit hash.

use std::hash::{BuildHasher, Hasher};

const BITS_PER_KEY: usize = 10;
const PROBES: u64 = 7;

/// A fixed-seed hasher, so a filter's answers do not depend on the process.
#[derive(Clone, Copy, Default)]
struct Fnv1a;

struct Fnv1aHasher(u64);

impl Hasher for Fnv1aHasher {
    fn finish(&self) -> u64 {
        // Finalizer (from splitmix64) spreads the FNV state over all bits.
        let mut x = self.0;
        x ^= x >> 30;
        x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x ^= x >> 27;
        x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

impl BuildHasher for Fnv1a {
    type Hasher = Fnv1aHasher;
    fn build_hasher(&self) -> Fnv1aHasher {
        Fnv1aHasher(0xcbf2_9ce4_8422_2325)
    }
}

/// A Bloom filter over byte strings.
pub struct IdBloomFilter {
    words: Box<[u64]>,
    bits: u64,
}

impl IdBloomFilter {
    /// An empty filter sized for `keys` keys.
    pub fn with_capacity(keys: usize) -> Self {
        let bits = (keys.max(1) * BITS_PER_KEY).next_multiple_of(64);
        IdBloomFilter {
            words: vec![0u64; bits / 64].into_boxed_slice(),
            bits: bits as u64,
        }
    }

    fn probes(&self, key: &[u8]) -> impl Iterator<Item = u64> + '_ {
        let hash = Fnv1a.hash_one(key);
        let (first, second) = (hash, (hash >> 32) | 1);
        (0..PROBES).map(move |probe| first.wrapping_add(probe.wrapping_mul(second)) % self.bits)
    }

    /// Adds a key.
    pub fn insert(&mut self, key: &[u8]) {
        let positions: Vec<u64> = self.probes(key).collect();
        for bit in positions {
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    /// False when `key` was certainly never inserted.
    pub fn may_contain(&self, key: &[u8]) -> bool {
        self.probes(key)
            .all(|bit| self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let mut filter = IdBloomFilter::with_capacity(10_000);
        for n in 0..10_000 {
            filter.insert(format!("doc-{n}").as_bytes());
        }
        assert!((0..10_000).all(|n| filter.may_contain(format!("doc-{n}").as_bytes())));
        let false_positives = (10_000..110_000)
            .filter(|n| filter.may_contain(format!("doc-{n}").as_bytes()))
            .count();
        assert!(
            false_positives < 2_000,
            "{false_positives} false positives in 100k"
        );
    }
}
