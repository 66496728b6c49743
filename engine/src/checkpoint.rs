//! `LocalCheckpointTracker`: which sequence numbers a shard has processed and persisted.
//!
//! Operations may complete out of order (always on a follower, and on a primary with
//! concurrent writers), so the tracker keeps, for each of the two checkpoints, the highest
//! sequence number below which *every* operation is done, plus a sparse set of completed
//! sequence numbers above it. The sparse set is paged: one 1,024-bit page per block of sequence
//! numbers that has a completed operation above the checkpoint, so memory is proportional to the
//! spread of in-flight operations, not to the history.
//!
//! Invariant (checked by assertions): a checkpoint never decreases, and no page is kept at or
//! below its checkpoint.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::types::SeqNo;

const BITS_PER_PAGE: i64 = 1024;
const WORDS_PER_PAGE: usize = (BITS_PER_PAGE / 64) as usize;

/// One page's bits: bit `b` of word `w` is sequence number `page * 1024 + w * 64 + b`.
type Page = Box<[u64; WORDS_PER_PAGE]>;

/// Hashes a page number (an `i64`, written once per lookup) with one multiplication: page
/// numbers are dense and not chosen by an adversary, so SipHash's cost buys nothing here.
#[derive(Default)]
struct PageNumberHasher(u64);

impl Hasher for PageNumberHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_i64` is used by `i64` keys; this keeps the hasher total all the same.
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_i64(&mut self, page: i64) {
        // Fibonacci hashing: the high bits, which hashbrown uses first, mix every input bit.
        self.0 = (page as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// One checkpoint and the sparse set of completed sequence numbers above it.
#[derive(Debug, Clone)]
struct CheckpointBitSet {
    checkpoint: i64,
    pages: HashMap<i64, Page, BuildHasherDefault<PageNumberHasher>>,
}

impl CheckpointBitSet {
    fn new(checkpoint: i64) -> Self {
        CheckpointBitSet {
            checkpoint,
            pages: HashMap::default(),
        }
    }

    fn contains(&self, seq_no: i64) -> bool {
        if seq_no <= self.checkpoint {
            return true;
        }
        let page = seq_no / BITS_PER_PAGE;
        let bit = (seq_no % BITS_PER_PAGE) as usize;
        self.pages
            .get(&page)
            .is_some_and(|words| words[bit / 64] & (1u64 << (bit % 64)) != 0)
    }

    /// Marks `seq_no` done; returns true when the checkpoint moved.
    fn mark(&mut self, seq_no: i64) -> bool {
        assert!(seq_no >= 0, "cannot mark sequence number {seq_no}");
        if seq_no <= self.checkpoint {
            return false;
        }
        if seq_no == self.checkpoint + 1 {
            // The next one: no bit to set, only the run of later ones already done to join.
            self.checkpoint = seq_no;
            if !self.pages.is_empty() {
                self.advance();
            }
            return true;
        }
        let page = seq_no / BITS_PER_PAGE;
        let bit = (seq_no % BITS_PER_PAGE) as usize;
        let words = self
            .pages
            .entry(page)
            .or_insert_with(|| Box::new([0u64; WORDS_PER_PAGE]));
        words[bit / 64] |= 1u64 << (bit % 64);
        false
    }

    /// Moves the checkpoint over the done sequence numbers that follow it, a word at a time,
    /// and frees the pages it leaves behind.
    fn advance(&mut self) {
        loop {
            let next = self.checkpoint + 1;
            let page = next / BITS_PER_PAGE;
            let Some(words) = self.pages.get(&page) else {
                break;
            };
            let first = (next % BITS_PER_PAGE) as usize;
            let run = ones_from(words, first);
            self.checkpoint += run as i64;
            if first + run < BITS_PER_PAGE as usize {
                // Stopped on a sequence number not yet done, bit `first + run` of this page:
                // keep the page if anything above it is set.
                if !any_from(words, first + run) {
                    self.pages.remove(&page);
                }
                break;
            }
            // The page's last sequence number is done: the page is all below the checkpoint.
            self.pages.remove(&page);
        }
        debug_assert!(self
            .pages
            .keys()
            .all(|page| (page + 1) * BITS_PER_PAGE - 1 > self.checkpoint));
    }
}

/// How many bits are set in a row in `words`, starting at bit `first`.
fn ones_from(words: &[u64; WORDS_PER_PAGE], first: usize) -> usize {
    let mut bit = first;
    while bit < BITS_PER_PAGE as usize {
        let shift = bit % 64;
        let ones = (words[bit / 64] >> shift).trailing_ones() as usize;
        // The shift brings in zeros from the top: at most `64 - shift` ones are real.
        let ones = ones.min(64 - shift);
        bit += ones;
        if ones < 64 - shift {
            break;
        }
    }
    bit - first
}

/// True when any bit of `words` at or after bit `first` is set.
fn any_from(words: &[u64; WORDS_PER_PAGE], first: usize) -> bool {
    if first >= BITS_PER_PAGE as usize {
        return false;
    }
    let word = first / 64;
    words[word] >> (first % 64) != 0 || words[word + 1..].iter().any(|&w| w != 0)
}

/// Tracks the processed and persisted local checkpoints and `max_seq_no` of one shard.
///
/// Not synchronized: the engine keeps it behind a mutex.
#[derive(Debug, Clone)]
pub struct LocalCheckpointTracker {
    next_seq_no: i64,
    max_seq_no: i64,
    processed: CheckpointBitSet,
    persisted: CheckpointBitSet,
}

impl LocalCheckpointTracker {
    /// A tracker for a shard whose operations up to `local_checkpoint` are all processed and
    /// persisted and whose highest sequence number is `max_seq_no`.
    pub fn new(max_seq_no: SeqNo, local_checkpoint: SeqNo) -> Self {
        assert!(max_seq_no.0 >= SeqNo::NO_OPS_PERFORMED.0);
        assert!(local_checkpoint.0 >= SeqNo::NO_OPS_PERFORMED.0);
        assert!(
            local_checkpoint <= max_seq_no,
            "local checkpoint {local_checkpoint} above max_seq_no {max_seq_no}"
        );
        LocalCheckpointTracker {
            next_seq_no: max_seq_no.0 + 1,
            max_seq_no: max_seq_no.0,
            processed: CheckpointBitSet::new(local_checkpoint.0),
            persisted: CheckpointBitSet::new(local_checkpoint.0),
        }
    }

    /// Assigns the next sequence number (primary only).
    pub fn generate_seq_no(&mut self) -> SeqNo {
        let seq_no = self.next_seq_no;
        self.next_seq_no += 1;
        self.max_seq_no = self.max_seq_no.max(seq_no);
        SeqNo(seq_no)
    }

    /// Records that an operation with `seq_no` exists (replica path), so the next generated
    /// sequence number is above it.
    pub fn advance_max_seq_no(&mut self, seq_no: SeqNo) {
        self.max_seq_no = self.max_seq_no.max(seq_no.0);
        self.next_seq_no = self.next_seq_no.max(seq_no.0 + 1);
    }

    /// Marks `seq_no` as applied to the index. Returns true when the processed checkpoint moved.
    pub fn mark_processed(&mut self, seq_no: SeqNo) -> bool {
        self.advance_max_seq_no(seq_no);
        self.processed.mark(seq_no.0)
    }

    /// Marks `seq_no` as durable in the translog. Returns true when the persisted checkpoint
    /// moved.
    pub fn mark_persisted(&mut self, seq_no: SeqNo) -> bool {
        self.advance_max_seq_no(seq_no);
        self.persisted.mark(seq_no.0)
    }

    /// True when `seq_no` has been processed (applied) already.
    pub fn has_processed(&self, seq_no: SeqNo) -> bool {
        self.processed.contains(seq_no.0)
    }

    /// Every operation at or below this sequence number has been processed.
    pub fn processed_checkpoint(&self) -> SeqNo {
        SeqNo(self.processed.checkpoint)
    }

    /// Every operation at or below this sequence number is durable.
    pub fn persisted_checkpoint(&self) -> SeqNo {
        SeqNo(self.persisted.checkpoint)
    }

    /// The highest sequence number seen.
    pub fn max_seq_no(&self) -> SeqNo {
        SeqNo(self.max_seq_no)
    }

    /// Number of allocated pages (for tests and stats).
    #[cfg(test)]
    pub fn pending_pages(&self) -> usize {
        self.processed.pages.len() + self.persisted.pages.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn in_order_marks_advance_without_pages() {
        let mut tracker = LocalCheckpointTracker::new(SeqNo(-1), SeqNo(-1));
        for _ in 0..5000 {
            let seq_no = tracker.generate_seq_no();
            assert!(tracker.mark_processed(seq_no));
        }
        assert_eq!(tracker.processed_checkpoint(), SeqNo(4999));
        assert_eq!(tracker.persisted_checkpoint(), SeqNo(-1));
        assert_eq!(tracker.pending_pages(), 0);
    }

    #[test]
    fn runs_of_ones_are_counted_across_words() {
        let mut words = [0u64; WORDS_PER_PAGE];
        assert_eq!(ones_from(&words, 0), 0);
        words[0] = u64::MAX << 3;
        words[1] = 0b111;
        assert_eq!(ones_from(&words, 3), 61 + 3);
        assert_eq!(ones_from(&words, 2), 0);
        assert_eq!(ones_from(&[u64::MAX; WORDS_PER_PAGE], 1000), 24);
        assert!(any_from(&words, 66));
        assert!(!any_from(&words, 67));
        assert!(!any_from(&words, BITS_PER_PAGE as usize));
    }

    #[test]
    fn gap_holds_checkpoint_until_filled() {
        let mut tracker = LocalCheckpointTracker::new(SeqNo(-1), SeqNo(-1));
        for seq_no in [0, 1, 3, 4, 2000, 5] {
            tracker.mark_processed(SeqNo(seq_no));
        }
        assert_eq!(tracker.processed_checkpoint(), SeqNo(1));
        assert!(tracker.has_processed(SeqNo(2000)));
        assert!(!tracker.has_processed(SeqNo(2)));
        assert_eq!(tracker.max_seq_no(), SeqNo(2000));
        tracker.mark_processed(SeqNo(2));
        assert_eq!(tracker.processed_checkpoint(), SeqNo(5));
        for seq_no in 6..2000 {
            tracker.mark_processed(SeqNo(seq_no));
        }
        assert_eq!(tracker.processed_checkpoint(), SeqNo(2000));
        assert_eq!(
            tracker.pending_pages(),
            0,
            "pages below the checkpoint must be freed"
        );
        assert_eq!(tracker.generate_seq_no(), SeqNo(2001));
    }

    proptest! {
        #[test]
        fn the_bitset_agrees_with_a_set_of_done_sequence_numbers(
            delays in proptest::collection::vec(0i64..2500, 0..5000),
            repeats in proptest::collection::vec(0i64..5000, 0..100),
        ) {
            // Sequence numbers done out of order within a window (as concurrent writes finish),
            // with some marked again.
            let mut marks: Vec<i64> = (0..delays.len() as i64).collect();
            marks.sort_by_key(|&seq_no| seq_no + delays[seq_no as usize]);
            for (at, seq_no) in repeats.into_iter().enumerate() {
                let at = (at * 37) % (marks.len() + 1);
                marks.insert(at, seq_no);
            }
            let mut bitset = CheckpointBitSet::new(-1);
            let mut done = std::collections::BTreeSet::new();
            let mut checkpoint = -1i64;
            for seq_no in marks {
                let moved = bitset.mark(seq_no);
                done.insert(seq_no);
                let before = checkpoint;
                while done.contains(&(checkpoint + 1)) {
                    checkpoint += 1;
                }
                prop_assert_eq!(moved, checkpoint != before);
                prop_assert_eq!(bitset.checkpoint, checkpoint);
                prop_assert!(bitset
                    .pages
                    .keys()
                    .all(|page| (page + 1) * BITS_PER_PAGE - 1 > checkpoint));
            }
            for seq_no in 0..5000 {
                prop_assert_eq!(bitset.contains(seq_no), done.contains(&seq_no), "{}", seq_no);
            }
            // Every page left holds something above the checkpoint.
            for (page, words) in &bitset.pages {
                let first = (checkpoint + 1 - page * BITS_PER_PAGE).max(0) as usize;
                prop_assert!(any_from(words, first), "page {} is kept empty", page);
            }
        }

        #[test]
        fn any_permutation_reaches_the_same_checkpoint(
            mut order in Just((0..3000i64).collect::<Vec<_>>()).prop_shuffle(),
            cut in 0usize..3000,
        ) {
            let mut tracker = LocalCheckpointTracker::new(SeqNo(-1), SeqNo(-1));
            let missing = order.remove(cut);
            for seq_no in &order {
                tracker.mark_persisted(SeqNo(*seq_no));
            }
            prop_assert_eq!(tracker.persisted_checkpoint(), SeqNo(missing - 1));
            tracker.mark_persisted(SeqNo(missing));
            prop_assert_eq!(tracker.persisted_checkpoint(), SeqNo(2999));
            prop_assert_eq!(tracker.pending_pages(), 0);
        }
    }
}
