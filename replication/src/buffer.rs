//! The write buffer of a shard follow task: operations read from the leader and not yet handed
//! to a write, ordered by sequence number, with their count and bytes tracked for back-pressure.
//!
//! Guarantees: [`WriteBuffer::take_batch`] returns operations in ascending sequence-number
//! order and never an empty batch while operations are buffered; the tracked count and bytes
//! always equal the sum over the buffered operations (checked in debug builds).
//!
//! Bound (invariant 7 of DESIGN.md §7): reads are only issued while [`WriteBuffer::has_room`],
//! so the buffer holds at most `max_write_buffer_size` bytes plus what the reads in flight when
//! it filled up can bring (`max_outstanding_read_requests * max_read_request_size`).

use std::collections::{BTreeMap, VecDeque};

use tandem_engine::SharedOperation;

/// One buffered operation with its size, counted once.
#[derive(Debug)]
struct Buffered {
    operation: SharedOperation,
    bytes: usize,
}

impl Buffered {
    fn seq_no(&self) -> i64 {
        self.operation.seq_no.0
    }
}

/// Operations waiting to be written to the follower, lowest sequence number first.
///
/// Kept as *runs*: each read response is a run of ascending sequence numbers, so the buffer is
/// a map from a run's first sequence number to the run. Runs are ascending within and do not
/// overlap (a run's last sequence number is below the next run's first), so the lowest
/// operation is always the front of the first run: buffering a read costs one map insertion
/// and taking an operation costs a pop, not a heap sift per operation.
#[derive(Debug, Default)]
pub struct WriteBuffer {
    runs: BTreeMap<i64, VecDeque<Buffered>>,
    len: usize,
    bytes: usize,
}

impl WriteBuffer {
    /// An empty buffer.
    pub fn new() -> WriteBuffer {
        WriteBuffer::default()
    }

    /// Buffers `operations` (in any order; the follower path is idempotent, so a duplicate
    /// sequence number is harmless, but callers avoid it). A read's operations come in
    /// ascending order and become one run; any others are sorted first, and runs that would
    /// overlap are merged.
    pub fn extend(&mut self, operations: impl IntoIterator<Item = SharedOperation>) {
        let mut run: VecDeque<Buffered> = operations
            .into_iter()
            .map(|operation| Buffered {
                bytes: operation.size_in_bytes(),
                operation,
            })
            .collect();
        if run.is_empty() {
            return;
        }
        if !run
            .iter()
            .zip(run.iter().skip(1))
            .all(|(a, b)| a.seq_no() <= b.seq_no())
        {
            run.make_contiguous().sort_by_key(Buffered::seq_no);
        }
        self.len += run.len();
        self.bytes += run.iter().map(|buffered| buffered.bytes).sum::<usize>();
        let (mut first, mut last) = (run[0].seq_no(), run[run.len() - 1].seq_no());
        // Runs overlapping [first, last]: those starting at or below `last` and ending at or
        // above `first`. Runs do not overlap one another, so these are the last ones starting
        // at or below `last`.
        let overlapping: Vec<i64> = self
            .runs
            .range(..=last)
            .rev()
            .take_while(|(_, existing)| existing.back().is_some_and(|b| b.seq_no() >= first))
            .map(|(&start, _)| start)
            .collect();
        for start in overlapping {
            if let Some(existing) = self.runs.remove(&start) {
                run = merge(run, existing);
                first = first.min(start);
                last = last.max(run[run.len() - 1].seq_no());
            }
        }
        debug_assert_eq!(run[0].seq_no(), first);
        debug_assert_eq!(run[run.len() - 1].seq_no(), last);
        self.runs.insert(first, run);
        self.check();
    }

    /// Number of buffered operations.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of the buffered operations.
    pub fn size_in_bytes(&self) -> usize {
        self.bytes
    }

    /// True while more reads may be issued: fewer than `max_count` operations and fewer than
    /// `max_bytes` bytes buffered.
    pub fn has_room(&self, max_count: usize, max_bytes: u64) -> bool {
        self.len < max_count && (self.bytes as u64) < max_bytes
    }

    /// Removes and returns the lowest operations, in sequence-number order: up to `max_count`
    /// of them, stopping before the one that would take the batch past `max_bytes` (the first
    /// operation is always taken, however large, so an oversized operation cannot stall the
    /// task). Empty only when the buffer is.
    pub fn take_batch(&mut self, max_count: usize, max_bytes: u64) -> Vec<SharedOperation> {
        let mut batch = Vec::with_capacity(max_count.min(self.len));
        let mut bytes = 0u64;
        let mut full = false;
        while batch.len() < max_count && !full {
            let Some(mut entry) = self.runs.first_entry() else {
                break;
            };
            let run = entry.get_mut();
            while batch.len() < max_count {
                let Some(next) = run.front() else {
                    break;
                };
                if !batch.is_empty() && bytes + next.bytes as u64 > max_bytes {
                    full = true;
                    break;
                }
                let Some(taken) = run.pop_front() else {
                    break;
                };
                bytes += taken.bytes as u64;
                self.bytes -= taken.bytes;
                self.len -= 1;
                batch.push(taken.operation);
            }
            if run.is_empty() {
                entry.remove();
            } else {
                // The rest of the run now starts higher: re-key it (the map's order holds, as
                // runs do not overlap).
                let run = entry.remove();
                self.runs.insert(run[0].seq_no(), run);
            }
        }
        self.check();
        batch
    }

    /// Drops everything (a stopped task).
    pub fn clear(&mut self) {
        self.runs.clear();
        self.len = 0;
        self.bytes = 0;
    }

    fn check(&self) {
        if cfg!(debug_assertions) {
            let buffered = self.runs.values().flatten();
            assert_eq!(self.len, buffered.clone().count(), "write buffer count");
            assert_eq!(
                self.bytes,
                buffered.map(|b| b.bytes).sum::<usize>(),
                "write buffer byte accounting"
            );
            let mut previous_last = None;
            for (&start, run) in &self.runs {
                assert_eq!(run.front().map(Buffered::seq_no), Some(start), "run key");
                assert!(
                    run.iter()
                        .zip(run.iter().skip(1))
                        .all(|(a, b)| a.seq_no() <= b.seq_no()),
                    "a run is ascending"
                );
                assert!(previous_last < Some(start), "runs do not overlap");
                previous_last = run.back().map(Buffered::seq_no);
            }
        }
    }
}

/// Merges two ascending runs into one.
fn merge(a: VecDeque<Buffered>, b: VecDeque<Buffered>) -> VecDeque<Buffered> {
    let mut merged = VecDeque::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let take_a = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => x.seq_no() <= y.seq_no(),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_a { a.next() } else { b.next() };
        merged.extend(next);
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;
    use tandem_engine::{Operation, OperationKind, PrimaryTerm, SeqNo};

    fn op(seq_no: i64, source_len: usize) -> SharedOperation {
        Arc::new(Operation {
            seq_no: SeqNo(seq_no),
            primary_term: PrimaryTerm(1),
            version: 1,
            kind: OperationKind::Index {
                id: format!("id-{seq_no}"),
                source: vec![b'x'; source_len],
            },
        })
    }

    #[test]
    fn batches_come_out_in_seq_no_order_within_count_and_bytes() {
        let mut buffer = WriteBuffer::new();
        buffer.extend([op(5, 10), op(1, 10), op(3, 10)]);
        buffer.extend([op(2, 10), op(4, 10)]);
        assert_eq!(buffer.len(), 5);
        let one = op(1, 10).size_in_bytes() as u64;
        let first = buffer.take_batch(10, 2 * one);
        assert_eq!(first.iter().map(|o| o.seq_no.0).collect::<Vec<_>>(), [1, 2]);
        let second = buffer.take_batch(2, u64::MAX);
        assert_eq!(
            second.iter().map(|o| o.seq_no.0).collect::<Vec<_>>(),
            [3, 4]
        );
        assert_eq!(buffer.len(), 1);
        assert_eq!(buffer.size_in_bytes() as u64, one);
    }

    #[test]
    fn an_oversized_operation_still_moves() {
        let mut buffer = WriteBuffer::new();
        buffer.extend([op(7, 10_000), op(8, 1)]);
        let batch = buffer.take_batch(10, 100);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].seq_no, SeqNo(7));
        assert!(buffer.take_batch(0, u64::MAX).is_empty());
    }

    #[test]
    fn room_is_bounded_by_count_and_bytes() {
        let mut buffer = WriteBuffer::new();
        assert!(buffer.has_room(1, 1));
        buffer.extend([op(0, 100)]);
        assert!(!buffer.has_room(1, u64::MAX), "count cap");
        assert!(!buffer.has_room(10, 50), "byte cap");
        assert!(buffer.has_room(10, 10_000));
        buffer.clear();
        assert!(buffer.is_empty());
        assert_eq!(buffer.size_in_bytes(), 0);
    }

    proptest! {
        #[test]
        fn reads_in_any_order_and_overlap_come_out_in_order(
            reads in proptest::collection::vec(
                (0i64..2_000, 1usize..300, any::<bool>()), 0..40),
            takes in proptest::collection::vec((1usize..400, 1u64..20_000), 0..40),
        ) {
            // Ranges of sequence numbers, ascending or reversed, overlapping at random (a
            // repeat is harmless to the follower path, so the buffer keeps it), with batches
            // taken in between; what comes out is in order and is exactly what went in.
            let mut buffer = WriteBuffer::new();
            let mut model: Vec<i64> = Vec::new();
            let mut out: Vec<i64> = Vec::new();
            let mut takes = takes.into_iter();
            for (from, count, reversed) in reads {
                let mut range: Vec<i64> = (from..from + count as i64).collect();
                if reversed {
                    range.reverse();
                }
                model.extend(&range);
                buffer.extend(range.iter().map(|&s| op(s, (s % 13) as usize)));
                if let Some((take, max_bytes)) = takes.next() {
                    let batch = buffer.take_batch(take, max_bytes);
                    prop_assert!(batch.windows(2).all(|w| w[0].seq_no <= w[1].seq_no));
                    // Nothing left in the buffer is below what a batch returned.
                    if let (Some(last), Some(lowest)) = (batch.last(), buffer.take_batch(1, 0).first().cloned()) {
                        prop_assert!(last.seq_no <= lowest.seq_no);
                        buffer.extend([lowest]);
                    }
                    out.extend(batch.iter().map(|o| o.seq_no.0));
                }
                prop_assert_eq!(buffer.len() + out.len(), model.len());
            }
            while !buffer.is_empty() {
                out.extend(buffer.take_batch(64, u64::MAX).iter().map(|o| o.seq_no.0));
            }
            model.sort_unstable();
            out.sort_unstable();
            prop_assert_eq!(out, model);
            prop_assert_eq!(buffer.size_in_bytes(), 0);
        }

        #[test]
        fn draining_yields_every_operation_once_in_order(
            seq_nos in proptest::collection::hash_set(0i64..10_000, 0..200),
            max_count in 1usize..50,
            max_bytes in 1u64..5_000,
        ) {
            let mut buffer = WriteBuffer::new();
            let mut expected: Vec<i64> = seq_nos.iter().copied().collect();
            buffer.extend(expected.iter().map(|&s| op(s, (s % 97) as usize)));
            expected.sort_unstable();
            let mut drained = Vec::new();
            while !buffer.is_empty() {
                let batch = buffer.take_batch(max_count, max_bytes);
                prop_assert!(!batch.is_empty());
                prop_assert!(batch.len() <= max_count);
                let bytes: u64 = batch.iter().map(|o| o.size_in_bytes() as u64).sum();
                prop_assert!(batch.len() == 1 || bytes <= max_bytes);
                drained.extend(batch.iter().map(|o| o.seq_no.0));
            }
            prop_assert_eq!(drained, expected);
            prop_assert_eq!(buffer.size_in_bytes(), 0);
        }
    }
}
