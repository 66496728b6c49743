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

use crate::types::SeqNo;

const BITS_PER_PAGE: i64 = 1024;
const WORDS_PER_PAGE: usize = (BITS_PER_PAGE / 64) as usize;

/// One checkpoint and the sparse set of completed sequence numbers above it.
#[derive(Debug, Clone)]
struct CheckpointBitSet {
    checkpoint: i64,
    pages: HashMap<i64, Box<[u64; WORDS_PER_PAGE]>>,
}

impl CheckpointBitSet {
    fn new(checkpoint: i64) -> Self {
        CheckpointBitSet {
            checkpoint,
            pages: HashMap::new(),
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
        if seq_no == self.checkpoint + 1 && self.pages.is_empty() {
            // The common in-order case: no page ever allocated.
            self.checkpoint = seq_no;
            return true;
        }
        let page = seq_no / BITS_PER_PAGE;
        let bit = (seq_no % BITS_PER_PAGE) as usize;
        let words = self
            .pages
            .entry(page)
            .or_insert_with(|| Box::new([0u64; WORDS_PER_PAGE]));
        words[bit / 64] |= 1u64 << (bit % 64);
        if seq_no != self.checkpoint + 1 {
            return false;
        }
        self.advance();
        true
    }

    fn advance(&mut self) {
        loop {
            let next = self.checkpoint + 1;
            let page = next / BITS_PER_PAGE;
            let bit = (next % BITS_PER_PAGE) as usize;
            let Some(words) = self.pages.get(&page) else {
                break;
            };
            if words[bit / 64] & (1u64 << (bit % 64)) == 0 {
                break;
            }
            self.checkpoint = next;
            if bit as i64 == BITS_PER_PAGE - 1 {
                self.pages.remove(&page);
            }
        }
        // Drop the page holding the checkpoint once nothing above it remains set.
        let page = self.checkpoint / BITS_PER_PAGE;
        if let Some(words) = self.pages.get(&page) {
            let first_bit_above = (self.checkpoint % BITS_PER_PAGE + 1) as usize;
            let anything_above = (first_bit_above..BITS_PER_PAGE as usize)
                .any(|bit| words[bit / 64] & (1u64 << (bit % 64)) != 0);
            if !anything_above {
                self.pages.remove(&page);
            }
        }
        debug_assert!(self
            .pages
            .keys()
            .all(|page| (page + 1) * BITS_PER_PAGE - 1 > self.checkpoint));
    }
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
