//! Carrying retained history through merges: how segments that hold retained deleted
//! documents are merged without losing them.
//!
//! A tantivy merge drops the deleted documents of its segments, and deleted documents are the
//! shard's history. [`crate::merge::RetentionMergePolicy`] therefore never merges a segment
//! holding a deleted document at or above `min_retained_seq_no`; under updates with history
//! retained (a follower's lease, `index.soft_deletes.retention.operations`) soon every segment
//! holds one, and without this module the segment count, and the memory each segment holds,
//! would grow with every refresh. Elasticsearch's merges keep retained soft-deleted documents;
//! tantivy's cannot, so the engine copies them forward first.
//!
//! One group of such segments per refresh, chosen by the log merge policy:
//! 1. the retained deleted operations of the group are re-added to the writer, each as a
//!    document deleted by its `_seq_no` in the same batch (a *copy*), with a live anchor so the
//!    copies' segment is kept (see `crate::history`);
//! 2. a commit makes the copies durable;
//! 3. the operations deleted in the group's segments since the copies were read are copied the
//!    same way, and committed again, until a commit finds none new; then the merge starts.
//!
//! Why 3: a merge drops what is deleted in the last commit (tantivy hands it the committed
//! segments with their committed deletes), and writes go on between reading the copies and that
//! commit. From the third commit on, writers are held back (`batches`, exclusively) from before
//! the commit until the merge has started, so the fourth commit finds nothing new and the
//! loop ends. The commit that holds them back carries only the writes of the short window since
//! the one before, and a hold happens only when a group was hit by deletes twice in a row.
//!
//! Invariants:
//! - a merge of a group starts only after a commit that holds a copy of every operation the
//!   merge drops at or above the `min_retained_seq_no` of its selection, so no crash loses one;
//! - a copy's seq_no is never live: copies are made of deleted documents only, and their
//!   `Delete(_seq_no)` deletes nothing but documents of that deleted operation;
//! - until the merge ends an operation may be held twice (both deleted): the changes API keeps
//!   the first of equal seq_nos and lookups the highest, so nothing reads differently; a crash
//!   in between leaves the same, and the duplicates are merged away later;
//! - a carry's first copies total at most [`CARRY_MAX_BYTES`] (held in memory once), so a
//!   refresh's extra work is bounded; segments whose retained history does not fit are left
//!   out of the group (with history retained without end, a segment count that grows with
//!   the retained bytes, one segment per [`CARRY_MAX_BYTES`] / 2 at worst). The copies of the
//!   later rounds are what was deleted during one commit, bounded as the writes of that
//!   commit are (the writer slot's parked and queued bytes);
//! - nothing is carried while the shard opens: an open stays quick, and a crash loop does not
//!   copy the same history again and again.

use tantivy::index::SegmentId;
use tantivy::{DocId, SegmentReader};

use tantivy::indexer::UserOperation;

use super::write::history_document;
use super::writer_slot::ShardOperation;
use super::ShardInner;
use crate::error::{EngineError, Result};
use crate::history::{anchor_document, read_operation, SegmentHistory};
use crate::types::{Operation, SeqNo};

/// The most retained history one carry copies: the copies are read into memory before they go
/// to the writer.
pub(super) const CARRY_MAX_BYTES: usize = 32 * 1024 * 1024;

/// Commits of a carry made without holding writers back; the rounds after these hold them.
const UNHELD_ROUNDS: usize = 2;

/// Commits of a carry in all: two held rounds end it (the second finds no new delete).
const ROUNDS: usize = UNHELD_ROUNDS + 2;

impl ShardInner {
    /// Carries the retained history of one group of segments forward and starts its merge
    /// (see the module documentation). `merging` are the segments merging now. Under the
    /// refresh lock, after the refresh's own commit.
    pub(super) fn carry_and_merge(&self, min_retained: SeqNo, merging: &[SegmentId]) -> Result<()> {
        if self.background.get().is_none() {
            return Ok(());
        }
        let retention_operations = self.config().retention_operations;
        let searcher = self.commits.searcher();
        let groups = self.policy(min_retained).select_carrying(
            &self.index,
            &searcher,
            self.retention.history(),
            merging,
        )?;
        let Some(candidate) = groups.into_iter().next() else {
            return Ok(());
        };
        // The candidate's segments whose retained history fits, in reader order.
        let mut group: Vec<SegmentReader> = Vec::new();
        let mut copies = Vec::new();
        let mut bytes = 0;
        for segment in searcher.segment_readers() {
            if !candidate.contains(&segment.segment_id()) {
                continue;
            }
            let budget = CARRY_MAX_BYTES - bytes;
            if let Some(mut segment_copies) =
                self.retained_deletes(segment, None, min_retained, budget)?
            {
                bytes += segment_copies
                    .iter()
                    .map(Operation::size_in_bytes)
                    .sum::<usize>();
                copies.append(&mut segment_copies);
                group.push(segment.clone());
            }
        }
        if group.len() < 2 {
            return Ok(());
        }
        let ids: Vec<SegmentId> = group.iter().map(SegmentReader::segment_id).collect();
        let mut copied = copies.len();
        self.add_copies(&copies)?;
        drop(copies);
        let mut held = None;
        for round in 0..ROUNDS {
            if round >= UNHELD_ROUNDS && held.is_none() {
                held = Some(self.writes.hold_batches());
            }
            self.commit_and_reload(held.as_ref(), retention_operations)?;
            let searcher = self.commits.searcher();
            let now: Vec<SegmentReader> = ids
                .iter()
                .filter_map(|id| {
                    searcher
                        .segment_readers()
                        .iter()
                        .find(|segment| segment.segment_id() == *id)
                        .cloned()
                })
                .collect();
            if now.len() != group.len() {
                // Nothing else merges these segments; should it happen, nothing is lost by
                // stopping here (the copies stay as duplicates).
                tracing::warn!(shard = %self.dir.display(), "a carried segment went away");
                return Ok(());
            }
            let mut fresh = Vec::new();
            for (segment, before) in now.iter().zip(&group) {
                let found =
                    self.retained_deletes(segment, Some(before), min_retained, usize::MAX)?;
                fresh.extend(found.into_iter().flatten());
            }
            if fresh.is_empty() {
                self.writes
                    .writer()
                    .with(|writer| self.start_merge(writer, ids.clone()))
                    .map_err(|e| self.fail(EngineError::index("opening the writer", e)))?;
                tracing::debug!(
                    shard = %self.dir.display(),
                    segments = ids.len(),
                    operations = copied,
                    commits = round + 1,
                    held = held.is_some(),
                    "carried retained history forward and started the merge"
                );
                return Ok(());
            }
            copied += fresh.len();
            self.add_copies(&fresh)?;
            group = now;
        }
        // Unreachable while only write batches delete: the last two rounds held them back.
        tracing::warn!(
            shard = %self.dir.display(),
            "deletes kept reaching a carried group; its merge is left for a later refresh"
        );
        Ok(())
    }

    /// The retained operations (`seq_no >= min_retained`) deleted in `segment` and not in
    /// `before` (the same segment read earlier), anchors aside; `None` if they exceed
    /// `budget` bytes.
    pub(super) fn retained_deletes(
        &self,
        segment: &SegmentReader,
        before: Option<&SegmentReader>,
        min_retained: SeqNo,
        budget: usize,
    ) -> Result<Option<Vec<Operation>>> {
        let newly_deleted =
            |doc: DocId| segment.is_deleted(doc) && !before.is_some_and(|b| b.is_deleted(doc));
        if before.is_some_and(|b| b.num_deleted_docs() == segment.num_deleted_docs()) {
            return Ok(Some(Vec::new()));
        }
        let history = self.retention.history().get(segment)?;
        let schema = self.mapper.schema();
        let mut store = None;
        let mut found = Vec::new();
        let mut bytes = 0;
        for doc in 0..segment.max_doc() {
            if !newly_deleted(doc) || history.is_outside_history(doc) {
                continue;
            }
            let (seq_no, ..) = history.meta(doc)?;
            if seq_no < min_retained {
                continue;
            }
            let store = match &mut store {
                Some(store) => store,
                None => store.insert(SegmentHistory::scan_store(segment)?),
            };
            let operation = read_operation(&history, store, schema, doc)?;
            bytes += operation.size_in_bytes();
            if bytes > budget {
                return Ok(None);
            }
            found.push(operation);
        }
        Ok(Some(found))
    }

    /// Hands `copies` to the writer, each deleted by its seq_no, behind a live anchor, as one
    /// batch: tantivy indexes a batch into one segment (it starts a new segment only between
    /// batches), so the anchor keeps every copy's segment. The next commit makes them durable.
    fn add_copies(&self, copies: &[Operation]) -> Result<()> {
        if copies.is_empty() {
            return Ok(());
        }
        let schema = self.mapper.schema();
        let mut batch: Vec<ShardOperation> = Vec::with_capacity(1 + 2 * copies.len());
        // A live anchor keeps the copies' segment: tantivy drops a segment whose documents
        // are all deleted.
        batch.push(UserOperation::Add(
            anchor_document(schema, self.writes.next_anchor()).into(),
        ));
        for operation in copies {
            batch.push(UserOperation::Add(
                history_document(schema, operation, Default::default()).into(),
            ));
            batch.push(UserOperation::Delete(tantivy::Term::from_field_u64(
                schema.seq_no,
                operation.seq_no.0 as u64,
            )));
        }
        self.writes
            .writer()
            .with_changes(|writer| writer.run(batch))
            .and_then(|added| added)
            .map_err(|e| self.fail(EngineError::index("carrying history forward", e)))?;
        self.commits.mark_dirty();
        Ok(())
    }
}
