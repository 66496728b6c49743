//! The changes API: every operation of a seq_no range, in order, from the refreshed segments
//! (deleted documents included) and from the in-memory tail of operations not yet refreshed.
//!
//! Invariant 3 (DESIGN.md §7): a returned batch is contiguous from `from`: it never skips or
//! duplicates an operation. A sequence number at or below the processed checkpoint that cannot be
//! found means the history is gone: `MissingHistory`. Above the checkpoint (operations still in
//! flight, gaps on a follower) the batch simply ends.
//!
//! [`ShardEngine::shard_changes`] is the leader side of a follower's read (Elasticsearch's shard
//! changes request): it only hands out operations at or below the global checkpoint, long-polls
//! when the follower is caught up, and checks the follower still follows this history.

use std::collections::hash_map::{Entry, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tantivy::DocId;

use super::ShardEngine;
use crate::error::{EngineError, Result};
use crate::history::{read_operation, SegmentHistory};
use crate::types::{SeqNo, SharedOperation};

/// A follower's read of a leader shard's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangesRequest {
    /// First sequence number wanted.
    pub from_seq_no: SeqNo,
    /// At most this many operations (>= 1).
    pub max_operation_count: usize,
    /// Stop adding operations once this many bytes are reached (at least one is returned when
    /// one is available).
    pub max_batch_size: usize,
    /// When `from_seq_no` is above the global checkpoint, wait this long for it to get there;
    /// zero answers at once.
    pub poll_timeout: Duration,
    /// The history the follower follows; a different one fails the read (the leader was
    /// replaced or restored: the follower must start over).
    pub expected_history_uuid: Option<String>,
}

/// What a follower's read returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangesResponse {
    /// Operations in sequence-number order, contiguous from `from_seq_no`, all at or below
    /// `global_checkpoint`; empty when none was available within the poll timeout. Shared
    /// with the shard's tail and caches: nothing is copied to serve a read.
    pub operations: Vec<SharedOperation>,
    /// The shard's global checkpoint when the read was served.
    pub global_checkpoint: SeqNo,
    /// The shard's max_seq_no.
    pub max_seq_no: SeqNo,
    /// The shard's max_seq_no_of_updates_or_deletes.
    pub max_seq_no_of_updates: SeqNo,
    /// Time the read took on the leader, waiting included.
    pub took: Duration,
}

impl ChangesResponse {
    /// The approximate size of the operations (the sum of
    /// [`Operation::size_in_bytes`](crate::Operation::size_in_bytes)): what `max_batch_size`
    /// bounds, and what a follower counts as bytes read.
    pub fn operations_size_in_bytes(&self) -> usize {
        self.operations
            .iter()
            .map(|operation| operation.size_in_bytes())
            .sum()
    }
}

enum Source {
    Segment { ordinal: usize, doc: DocId },
    Tail(SharedOperation),
}

impl ShardEngine {
    /// Serves a follower's read (see [`ChangesRequest`]): checks the history uuid, waits up
    /// to the poll timeout for the global checkpoint to reach `from_seq_no`, then returns the
    /// operations `[from_seq_no, min(global checkpoint, from + max_operation_count - 1)]`,
    /// bounded by `max_batch_size`. Fails with `MissingHistory` when retention already dropped
    /// some of them (fatal for the follower) and `HistoryUuidMismatch` when the follower
    /// follows another history.
    pub fn shard_changes(&self, request: &ChangesRequest) -> Result<ChangesResponse> {
        self.shard_changes_or_cancel(request, &AtomicBool::new(false))
    }

    /// [`ShardEngine::shard_changes`] whose long poll ends early once `cancelled` is set and
    /// [`ShardEngine::wake_checkpoint_waiters`] called (the requester went away).
    pub fn shard_changes_or_cancel(
        &self,
        request: &ChangesRequest,
        cancelled: &AtomicBool,
    ) -> Result<ChangesResponse> {
        let started = Instant::now();
        self.check_changes_request(request)?;
        let global_checkpoint = self.global_checkpoint();
        if request.from_seq_no > global_checkpoint && !request.poll_timeout.is_zero() {
            self.wait_for_global_checkpoint_or_cancel(
                request.from_seq_no,
                request.poll_timeout,
                cancelled,
            );
        }
        self.read_shard_changes(request, started)
    }

    /// The checks of a follower's read that need no wait: a valid range, the history the
    /// follower follows, a shard that has not failed. A long poll served in two halves calls
    /// it before its wait ([`ShardEngine::global_checkpoint_reached`]), so that a read that
    /// can never succeed fails at once instead of after the poll timeout.
    pub fn check_changes_request(&self, request: &ChangesRequest) -> Result<()> {
        if request.from_seq_no.0 < 0 {
            return Err(EngineError::InvalidArgument(format!(
                "from_seq_no [{}] must be non-negative",
                request.from_seq_no
            )));
        }
        if request.max_operation_count == 0 {
            return Err(EngineError::InvalidArgument(
                "max_operation_count must be at least 1".to_string(),
            ));
        }
        self.check_history_uuid(request.expected_history_uuid.as_deref())?;
        self.inner.check_failed()
    }

    /// The read half of a follower's read, without any wait: the operations from
    /// `from_seq_no` up to the global checkpoint now (none when it is below `from_seq_no`).
    /// Checks the history and the shard's failure again, since either may have changed while
    /// a long poll waited; `started` is when the read began (its `took` counts the wait).
    /// Reads segments: call it where blocking is allowed.
    pub fn read_shard_changes(
        &self,
        request: &ChangesRequest,
        started: Instant,
    ) -> Result<ChangesResponse> {
        self.check_history_uuid(request.expected_history_uuid.as_deref())?;
        self.inner.check_failed()?;
        let global_checkpoint = self.global_checkpoint();
        let operations = if request.from_seq_no <= global_checkpoint {
            self.changes(
                request.from_seq_no,
                global_checkpoint,
                request.max_operation_count,
                request.max_batch_size.max(1),
            )?
        } else {
            Vec::new()
        };
        Ok(ChangesResponse {
            operations,
            global_checkpoint,
            max_seq_no: self.max_seq_no(),
            max_seq_no_of_updates: self.max_seq_no_of_updates(),
            took: started.elapsed(),
        })
    }

    fn check_history_uuid(&self, expected: Option<&str>) -> Result<()> {
        match expected {
            Some(expected) => {
                let actual = self.history_uuid();
                if actual != expected {
                    return Err(EngineError::HistoryUuidMismatch {
                        expected: expected.to_string(),
                        actual,
                    });
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Returns the operations with sequence numbers in `[from, to]`, in order, stopping after
    /// `max_operations` operations or once `max_bytes` is reached (at least one operation is
    /// returned when one exists), or at the first not-yet-processed sequence number.
    pub fn changes(
        &self,
        from: SeqNo,
        to: SeqNo,
        max_operations: usize,
        max_bytes: usize,
    ) -> Result<Vec<SharedOperation>> {
        self.read_operations(from, to, max_operations, max_bytes, true)
    }

    /// The operations the shard holds with sequence numbers in `[from, to]`, in order, each
    /// once, with the same limits as [`ShardEngine::changes`] but stepping over missing ones
    /// (merged away, or gaps above the checkpoint) instead of failing or stopping at them.
    /// Only the first `max_operations` sequence numbers of the range are looked at (the
    /// read is bounded by the range, not by what it finds): a caller paging through a range
    /// goes on from `from + max_operations` when the answer holds fewer.
    pub fn operations_present(
        &self,
        from: SeqNo,
        to: SeqNo,
        max_operations: usize,
        max_bytes: usize,
    ) -> Result<Vec<SharedOperation>> {
        self.read_operations(from, to, max_operations, max_bytes, false)
    }

    /// [`ShardEngine::changes`] when `contiguous`, else [`ShardEngine::operations_present`].
    fn read_operations(
        &self,
        from: SeqNo,
        to: SeqNo,
        max_operations: usize,
        max_bytes: usize,
        contiguous: bool,
    ) -> Result<Vec<SharedOperation>> {
        if from.0 < 0 || to < from {
            return Err(EngineError::InvalidArgument(format!(
                "invalid changes range [{from}, {to}]"
            )));
        }
        if max_operations == 0 {
            return Err(EngineError::InvalidArgument(
                "max_operations must be at least 1".to_string(),
            ));
        }
        let inner = &self.inner;
        inner.check_failed()?;
        // `max_operations` may be any usize (usize::MAX = no limit): never let it wrap.
        let span = i64::try_from(max_operations).unwrap_or(i64::MAX);
        let last = SeqNo(to.0.min(from.0.saturating_add(span - 1)));
        // One consistent view: every processed operation is in the reader or in the tail.
        let (searcher, mut tail_ops, processed) = {
            let tail = inner.writes.tail();
            let processed = inner.checkpoints.processed();
            let searcher = inner.commits.searcher();
            let mut ops = Vec::new();
            tail.collect_range(from, last, &mut ops);
            (searcher, ops, processed)
        };
        // `last` may be far beyond max_seq_no: size the buffer by what can exist, not the range.
        let capacity = (last.0.min(processed.0.max(from.0)) - from.0 + 1) as usize;
        let mut found: Vec<(u64, Source)> = Vec::with_capacity(capacity + tail_ops.len());
        let mut docs = Vec::new();
        let mut histories = Vec::new();
        for (ordinal, segment) in searcher.segment_readers().iter().enumerate() {
            let history = inner.retention.history().get(segment)?;
            docs.clear();
            history.docs_in_range(from.0 as u64, last.0 as u64, &mut docs);
            found.extend(
                docs.iter()
                    .map(|&(seq_no, doc)| (seq_no, Source::Segment { ordinal, doc })),
            );
            histories.push(history);
        }
        found.extend(
            tail_ops
                .drain(..)
                .map(|op| (op.seq_no.0 as u64, Source::Tail(op))),
        );
        found.sort_by_key(|(seq_no, _)| *seq_no);

        // The stores this read opens, by segment ordinal (a batch touches a few segments of
        // possibly thousands): their block caches live as long as the read.
        let mut stores: HashMap<usize, tantivy::store::StoreReader> = HashMap::new();
        let mut out = Vec::with_capacity(found.len().min(max_operations));
        let mut bytes = 0usize;
        let mut expected = from.0 as u64;
        for (seq_no, source) in found {
            if seq_no < expected {
                // The same operation in the reader and in the tail: keep the first.
                continue;
            }
            if seq_no > expected {
                if contiguous {
                    break;
                }
                expected = seq_no;
            }
            let operation = match source {
                Source::Tail(op) => op,
                Source::Segment { ordinal, doc } => {
                    let history = &histories[ordinal];
                    let store = match stores.entry(ordinal) {
                        Entry::Occupied(open) => open.into_mut(),
                        Entry::Vacant(slot) => slot.insert(SegmentHistory::scan_store(
                            searcher.segment_reader(ordinal as u32),
                        )?),
                    };
                    Arc::new(read_operation(history, store, inner.mapper.schema(), doc)?)
                }
            };
            bytes += operation.size_in_bytes();
            out.push(operation);
            expected += 1;
            if out.len() >= max_operations || bytes >= max_bytes || expected > last.0 as u64 {
                return Ok(out);
            }
        }
        let missing = SeqNo(expected as i64);
        if contiguous && missing <= processed && missing <= last {
            return Err(EngineError::MissingHistory { from, to, missing });
        }
        Ok(out)
    }
}
