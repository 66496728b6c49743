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

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use tandem_engine::SharedOperation;

/// One buffered operation, ordered by sequence number only.
#[derive(Debug)]
struct Buffered {
    operation: SharedOperation,
    bytes: usize,
}

impl PartialEq for Buffered {
    fn eq(&self, other: &Self) -> bool {
        self.operation.seq_no == other.operation.seq_no
    }
}

impl Eq for Buffered {}

impl PartialOrd for Buffered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Buffered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.operation.seq_no.cmp(&other.operation.seq_no)
    }
}

/// Operations waiting to be written to the follower, lowest sequence number first.
#[derive(Debug, Default)]
pub struct WriteBuffer {
    heap: BinaryHeap<Reverse<Buffered>>,
    bytes: usize,
}

impl WriteBuffer {
    /// An empty buffer.
    pub fn new() -> WriteBuffer {
        WriteBuffer::default()
    }

    /// Buffers `operations` (in any order; the follower path is idempotent, so a duplicate
    /// sequence number is harmless, but callers avoid it).
    pub fn extend(&mut self, operations: impl IntoIterator<Item = SharedOperation>) {
        for operation in operations {
            let bytes = operation.size_in_bytes();
            self.bytes += bytes;
            self.heap.push(Reverse(Buffered { operation, bytes }));
        }
        self.check();
    }

    /// Number of buffered operations.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Bytes of the buffered operations.
    pub fn size_in_bytes(&self) -> usize {
        self.bytes
    }

    /// True while more reads may be issued: fewer than `max_count` operations and fewer than
    /// `max_bytes` bytes buffered.
    pub fn has_room(&self, max_count: usize, max_bytes: u64) -> bool {
        self.heap.len() < max_count && (self.bytes as u64) < max_bytes
    }

    /// Removes and returns the lowest operations, in sequence-number order: up to `max_count`
    /// of them, stopping before the one that would take the batch past `max_bytes` (the first
    /// operation is always taken, however large, so an oversized operation cannot stall the
    /// task). Empty only when the buffer is.
    pub fn take_batch(&mut self, max_count: usize, max_bytes: u64) -> Vec<SharedOperation> {
        let mut batch = Vec::with_capacity(max_count.min(self.heap.len()));
        let mut bytes = 0u64;
        while batch.len() < max_count {
            let Some(Reverse(next)) = self.heap.peek() else {
                break;
            };
            if !batch.is_empty() && bytes + next.bytes as u64 > max_bytes {
                break;
            }
            let Some(Reverse(taken)) = self.heap.pop() else {
                break;
            };
            bytes += taken.bytes as u64;
            self.bytes -= taken.bytes;
            batch.push(taken.operation);
        }
        self.check();
        batch
    }

    /// Drops everything (a stopped task).
    pub fn clear(&mut self) {
        self.heap.clear();
        self.bytes = 0;
    }

    fn check(&self) {
        debug_assert_eq!(
            self.bytes,
            self.heap.iter().map(|Reverse(b)| b.bytes).sum::<usize>(),
            "write buffer byte accounting"
        );
    }
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
