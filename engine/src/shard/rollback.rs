//! Rolling a shard back to a sequence number: how a failback removes the operations an old
//! leader holds above the point its history shares with the promoted index (DESIGN.md §10).
//!
//! [`ShardEngine::roll_back_to`] removes every operation above the point from the shard: from
//! its live documents and from its history, which the changes API, a verify and a later
//! failback read. The history is every document of every segment, deleted or not, so a removed
//! operation is deleted in tantivy and *voided* in its segment: the segment gets a history
//! ceiling, the point (see `crate::history`), above which none of its documents is history.
//! No segment is rewritten, so a rollback costs the operations it removes, not the size of the
//! segments holding them; the next merge of a segment drops its voided operations. The ids the
//! removed operations touched get back their state at the point from the caller (`restored`:
//! the new leader's versions, fetched by id), so the rollback does not depend on the shard's
//! own history below the point, which merges may already have dropped.
//!
//! Invariants:
//! - the deletes, the restored documents, the ceilings and the checkpoints at the point are
//!   made durable by one commit: a crash leaves the rollback done or not started;
//! - nothing at or below the point leaves the history: a ceiling voids only what is above it;
//! - a rollback is idempotent: run again after a crash at any point, it finds the operations
//!   above the point still there or voided, and ends in the same state; restored documents
//!   replace the ones an earlier run restored;
//! - it runs on a follower shard that nothing else writes (a failback holds its index closed
//!   to users), so nothing it does races a write or a read of the history; it refuses a
//!   primary.

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

/// Longest a rollback waits for running merges of the segments it voids operations in.
const MERGE_WAIT: Duration = Duration::from_secs(600);

/// What a rollback did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RollbackOutcome {
    /// Operations above the point that were removed.
    pub removed_operations: usize,
    /// Documents restored from the caller's versions.
    pub restored_documents: usize,
    /// Segments that got a history ceiling at the point (their removed operations are voided
    /// until a merge drops them).
    pub voided_segments: usize,
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
        // in its result, without their ceiling: the rollback waits for those (merges of other
        // segments go on).
        let began = Instant::now();
        inner.refresh(true)?;
        let refreshed = began.elapsed();
        let started = Instant::now();
        let outcome = loop {
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
        let left = self.operations_present(
            SeqNo(point.0 + 1),
            SeqNo(MAX_HISTORY_SEQ_NO as i64),
            1,
            usize::MAX,
        )?;
        // Every segment holding an operation above the point got its ceiling.
        assert!(
            left.is_empty(),
            "a rollback left operations above the point: {left:?}"
        );
        tracing::info!(
            shard = %inner.dir.display(),
            point = %point,
            removed = outcome.removed_operations,
            restored = outcome.restored_documents,
            voided_segments = outcome.voided_segments,
            refresh_ms = refreshed.as_millis() as u64,
            took_ms = began.elapsed().as_millis() as u64,
            "rolled the shard back"
        );
        Ok(outcome)
    }

    /// The locked part of [`ShardEngine::roll_back_to`]: `None` (nothing done) while a merge
    /// runs on a segment holding operations above `point`; else what it did.
    fn roll_back_unless_merging(
        &self,
        point: SeqNo,
        restored: &[Operation],
    ) -> Result<Option<RollbackOutcome>> {
        let inner = &self.inner;
        let _refresh = inner.commits.refresh_lock.lock();
        let retention_operations = inner.config().retention_operations;
        let held = inner.writes.hold_batches();
        let searcher = inner.commits.searcher();
        let schema = inner.mapper.schema();
        let mut removed: BTreeSet<u64> = BTreeSet::new();
        let mut affected: Vec<SegmentId> = Vec::new();
        let mut docs = Vec::new();
        for segment in searcher.segment_readers() {
            let history = inner.retention.history().get(segment)?;
            docs.clear();
            history.docs_in_range((point.0 + 1) as u64, MAX_HISTORY_SEQ_NO, &mut docs);
            if docs.is_empty() {
                continue;
            }
            removed.extend(docs.iter().map(|(seq_no, _)| *seq_no));
            affected.push(segment.segment_id());
        }
        if inner.commits.is_merging(&affected) {
            return Ok(None);
        }
        let restored_ids: HashSet<&str> = restored.iter().filter_map(Operation::id).collect();
        if restored_ids.len() != restored.len() {
            return Err(EngineError::InvalidArgument(
                "a rollback restores each id once".to_string(),
            ));
        }
        let mut batch: Vec<ShardOperation> =
            Vec::with_capacity(1 + removed.len() + 2 * restored.len());
        // Every batch starts with a live anchor (see `crate::history`).
        batch.push(UserOperation::Add(
            anchor_document(schema, inner.writes.next_anchor()).into(),
        ));
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
        for segment in &affected {
            inner.retention.history().lower_ceiling(*segment, point);
        }
        *inner.checkpoints.lock() = LocalCheckpointTracker::new(point, point);
        inner.commits.mark_dirty();
        // The commit holding the deletes, the restored documents and the ceilings, with the
        // point as its checkpoint and max_seq_no; it starts a new translog generation and
        // drops the ones holding the removed operations.
        inner.commit_and_reload(Some(&held), retention_operations)?;
        drop(held);
        Ok(Some(RollbackOutcome {
            removed_operations: removed.len(),
            restored_documents: restored.len(),
            voided_segments: affected.len(),
        }))
    }
}
