//! Rolling a shard back to a sequence number: how a failback removes the operations an old
//! leader holds above the point its history shares with the promoted index (DESIGN.md §10).
//!
//! [`ShardEngine::roll_back_to`] removes every operation above the point from the shard: from
//! its live documents and from its history, which the changes API, a verify and a later
//! failback read. The history is every document of every segment, deleted or not, so a removed
//! operation must leave its segment: the documents above the point are deleted, and the
//! segments holding them are merged (a merge drops deleted documents), after the retained
//! history at or below the point that those segments hold was copied forward as `carry.rs`
//! copies it. The ids the removed operations touched get back their state at the point from
//! the caller (`restored`: the new leader's versions, fetched by id), so the rollback does not
//! depend on the shard's own history below the point, which merges may already have dropped.
//!
//! Invariants:
//! - the merge of a rollback is the one merge that drops history at or above
//!   `min_retained_seq_no`: only operations above the point, which the rollback removes on
//!   purpose, and nothing at or below it that was not copied first;
//! - a rollback is idempotent: run again after a crash at any point, it finds the operations
//!   above the point still in their segments (deleted, unmerged) or gone, and ends in the same
//!   state; restored documents replace the ones an earlier run restored;
//! - it runs on a follower shard that nothing else writes (a failback holds its index closed
//!   to users), so nothing it does races a write; it refuses a primary.

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use tantivy::index::SegmentId;
use tantivy::indexer::UserOperation;
use tantivy::Term;

use super::write::history_document;
use super::writer_slot::ShardOperation;
use super::ShardEngine;
use crate::checkpoint::LocalCheckpointTracker;
use crate::error::{EngineError, Result};
use crate::history::{anchor_document, MAX_HISTORY_SEQ_NO};
use crate::types::{Operation, OperationKind, SeqNo};

/// The most retained history a rollback copies forward out of the segments it merges: the
/// copies are read into memory first. A shard whose retained history below the point in those
/// segments is larger refuses the rollback (its retention floor is far below the point).
pub const ROLLBACK_MAX_CARRY_BYTES: usize = 256 * 1024 * 1024;

/// Longest a rollback waits for merges already running before it starts.
const MERGE_WAIT: Duration = Duration::from_secs(600);

/// What a rollback did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RollbackOutcome {
    /// Operations above the point that were removed.
    pub removed_operations: usize,
    /// Documents restored from the caller's versions.
    pub restored_documents: usize,
    /// Retained operations at or below the point copied out of the merged segments.
    pub carried_operations: usize,
    /// Segments merged to drop the removed operations.
    pub merged_segments: usize,
}

impl ShardEngine {
    /// Rolls the shard back to `point` (see the module documentation): every operation above
    /// it is removed from the documents and the history, each of `restored` (index operations
    /// at or below `point`: the live versions, at the point, of ids that removed operations
    /// touched) becomes the live document of its id, the checkpoints and max_seq_no become
    /// `point`, and the result is committed. The translog generations holding the removed
    /// operations are dropped by that commit.
    pub fn roll_back_to(&self, point: SeqNo, restored: &[Operation]) -> Result<RollbackOutcome> {
        let inner = &self.inner;
        inner.check_failed()?;
        if !self.is_follower() {
            return Err(EngineError::InvalidArgument(format!(
                "shard [{}] is not a follower: only a follower shard is rolled back",
                inner.dir.display()
            )));
        }
        if point.0 < -1 {
            return Err(EngineError::InvalidArgument(format!(
                "cannot roll back to [{point}]"
            )));
        }
        for operation in restored {
            let fits = matches!(operation.kind, OperationKind::Index { .. })
                && operation.seq_no <= point
                && operation.seq_no.0 >= 0;
            if !fits {
                return Err(EngineError::InvalidArgument(format!(
                    "a restored document must be an index operation at or below the point \
                     [{point}]; got seq_no [{}] of type [{}]",
                    operation.seq_no,
                    operation.op_type().name()
                )));
            }
        }
        // Everything applied is in a commit: the segments read below are all there is. A merge
        // running on segments that hold operations above the point would bring them back
        // in its result: the rollback waits for those (merges of other segments go on).
        inner.refresh(true)?;
        let started = Instant::now();
        let (merging, outcome) = loop {
            inner.reload_after_merges()?;
            if let Some(done) = self.roll_back_unless_merging(point, restored)? {
                break done;
            }
            if started.elapsed() > MERGE_WAIT {
                return Err(EngineError::Closed(
                    "timed out waiting for running merges before a rollback".to_string(),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let waited = Instant::now();
        while inner.commits.is_merging(&merging) {
            if waited.elapsed() > MERGE_WAIT {
                return Err(EngineError::Closed(
                    "timed out waiting for the merge of a rollback".to_string(),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        inner.check_failed()?;
        // Commits the merge and installs a reader without the removed operations.
        inner.reload_after_merges()?;
        inner.commits.mark_dirty();
        inner.refresh(true)?;
        let left = self.operations_present(
            SeqNo(point.0 + 1),
            SeqNo(MAX_HISTORY_SEQ_NO as i64),
            1,
            usize::MAX,
        )?;
        if !left.is_empty() {
            // The merge failed (it logs why): the removed operations are still in their
            // segments. A failback runs the rollback again.
            return Err(EngineError::Closed(format!(
                "the merge of the rollback of shard [{}] did not complete",
                inner.dir.display()
            )));
        }
        tracing::info!(
            shard = %inner.dir.display(),
            point = %point,
            removed = outcome.removed_operations,
            restored = outcome.restored_documents,
            carried = outcome.carried_operations,
            merged_segments = outcome.merged_segments,
            "rolled the shard back"
        );
        Ok(outcome)
    }

    /// The locked part of [`ShardEngine::roll_back_to`]: `None` (nothing done) while a merge
    /// runs on a segment holding operations above `point`; else the segments whose merge it
    /// started, and what it did.
    fn roll_back_unless_merging(
        &self,
        point: SeqNo,
        restored: &[Operation],
    ) -> Result<Option<(Vec<SegmentId>, RollbackOutcome)>> {
        let inner = &self.inner;
        let _refresh = inner.commits.refresh_lock.lock();
        let retention_operations = inner.config().retention_operations;
        let held = inner.writes.hold_batches();
        let searcher = inner.commits.searcher();
        let min_retained = inner.retention.min_retained_seq_no();
        let schema = inner.mapper.schema();
        let mut removed: BTreeSet<u64> = BTreeSet::new();
        let mut affected: Vec<SegmentId> = Vec::new();
        let mut copies = Vec::new();
        let mut carried_bytes = 0usize;
        let mut docs = Vec::new();
        let mut holding = Vec::new();
        for segment in searcher.segment_readers() {
            let history = inner.retention.history().get(segment)?;
            docs.clear();
            history.docs_in_range((point.0 + 1) as u64, MAX_HISTORY_SEQ_NO, &mut docs);
            if docs.is_empty() {
                continue;
            }
            removed.extend(docs.iter().map(|(seq_no, _)| *seq_no));
            affected.push(segment.segment_id());
            holding.push(segment);
        }
        if inner.commits.is_merging(&affected) {
            return Ok(None);
        }
        for segment in holding {
            let budget = ROLLBACK_MAX_CARRY_BYTES - carried_bytes;
            let Some(found) = inner.retained_deletes(segment, None, min_retained, budget)? else {
                return Err(EngineError::InvalidArgument(format!(
                    "cannot roll back shard [{}] to [{point}]: the retained history the \
                     rollback must copy exceeds [{ROLLBACK_MAX_CARRY_BYTES}] bytes",
                    inner.dir.display()
                )));
            };
            for operation in found {
                if operation.seq_no <= point {
                    carried_bytes += operation.size_in_bytes();
                    copies.push(operation);
                }
            }
        }
        let restored_ids: HashSet<&str> = restored.iter().filter_map(Operation::id).collect();
        if restored_ids.len() != restored.len() {
            return Err(EngineError::InvalidArgument(
                "a rollback restores each id once".to_string(),
            ));
        }
        let mut batch: Vec<ShardOperation> =
            Vec::with_capacity(1 + 2 * copies.len() + removed.len() + 2 * restored.len());
        // A live anchor keeps the copies' segment (see `carry.rs`).
        batch.push(UserOperation::Add(
            anchor_document(schema, inner.writes.next_anchor()).into(),
        ));
        for operation in &copies {
            batch.push(UserOperation::Add(
                history_document(schema, operation, Default::default()).into(),
            ));
            batch.push(UserOperation::Delete(Term::from_field_u64(
                schema.seq_no,
                operation.seq_no.0 as u64,
            )));
        }
        for seq_no in &removed {
            batch.push(UserOperation::Delete(Term::from_field_u64(
                schema.seq_no,
                *seq_no,
            )));
        }
        for operation in restored {
            let OperationKind::Index { id, source } = &operation.kind else {
                continue;
            };
            // Whatever is live for the id (an earlier run's restored copy) goes first.
            batch.push(UserOperation::Delete(Term::from_field_text(schema.id, id)));
            let document = inner.mapper.parse_recorded(source)?;
            batch.push(UserOperation::Add(
                history_document(schema, operation, document).into(),
            ));
        }
        inner
            .writes
            .writer()
            .with_changes(|writer| writer.run(batch))
            .and_then(|added| added)
            .map_err(|e| inner.fail(EngineError::index("rolling back", e)))?;
        *inner.checkpoints.lock() = LocalCheckpointTracker::new(point, point);
        inner.commits.mark_dirty();
        // The commit holding the deletes and the restored documents, with the point as
        // its checkpoint and max_seq_no; it starts a new translog generation and drops
        // the ones holding the removed operations.
        inner.commit_and_reload(Some(&held), retention_operations)?;
        if !affected.is_empty() {
            inner
                .writes
                .writer()
                .with(|writer| inner.start_merge(writer, affected.clone()))
                .map_err(|e| inner.fail(EngineError::index("opening the writer", e)))?;
        }
        let outcome = RollbackOutcome {
            removed_operations: removed.len(),
            restored_documents: restored.len(),
            carried_operations: copies.len(),
            merged_segments: affected.len(),
        };
        drop(held);
        Ok(Some((affected, outcome)))
    }
}
