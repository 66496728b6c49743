//! `RetentionMergePolicy`: merges like tantivy's log merge policy, but never merges a segment
//! that holds a deleted document at or above `min_retained_seq_no` (a merge drops every deleted
//! document of its segments, and deleted documents are the shard's history).
//!
//! Per-segment facts (the largest deleted `_seq_no`) come from [`HistoryCache`] and are
//! computed once per (segment, number of deleted docs). The policy only considers segments of a
//! committed, refreshed reader: see `shard::refresh` for why that makes the check exact.
//!
//! Append-only data (no deleted documents) merges freely; update-heavy data merges as soon as
//! leases and checkpoints move `min_retained_seq_no` past its deleted documents, or, while they
//! do not, once the engine has copied the retained history forward
//! ([`RetentionMergePolicy::select_carrying`], `shard::carry`).

use std::collections::HashMap;

use tantivy::index::SegmentId;
use tantivy::indexer::{LogMergePolicy, MergePolicy};
use tantivy::{Index, Searcher, SegmentMeta};

use crate::error::{EngineError, Result};
use crate::history::HistoryCache;
use crate::types::SeqNo;

/// Chooses merges that keep every operation at or above `min_retained_seq_no`.
#[derive(Debug)]
pub struct RetentionMergePolicy {
    min_retained_seq_no: SeqNo,
    log: LogMergePolicy,
}

impl RetentionMergePolicy {
    /// A policy for the given retention point.
    pub fn new(min_retained_seq_no: SeqNo) -> Self {
        RetentionMergePolicy {
            min_retained_seq_no,
            log: LogMergePolicy::default(),
        }
    }

    /// True when merging the segment cannot drop retained history.
    pub fn may_merge(&self, max_deleted_seq_no: Option<u64>) -> bool {
        match max_deleted_seq_no {
            None => true,
            Some(max) => (max as i64) < self.min_retained_seq_no.0,
        }
    }

    /// The committed segments of `searcher` that may be merged, with their metas.
    fn eligible(
        &self,
        index: &Index,
        searcher: &Searcher,
        cache: &HistoryCache,
        excluded: &[SegmentId],
    ) -> Result<Vec<SegmentMeta>> {
        self.segments(index, searcher, cache, excluded, true)
    }

    /// Log-merge-policy candidates among the segments that hold retained deleted documents:
    /// each may be merged once that history has been carried forward (re-added as deleted
    /// documents, see `shard::carry`), as Elasticsearch's merges keep retained soft deletes.
    pub fn select_carrying(
        &self,
        index: &Index,
        searcher: &Searcher,
        cache: &HistoryCache,
        merging: &[SegmentId],
    ) -> Result<Vec<Vec<SegmentId>>> {
        // Sized by all their documents, deleted ones included: the log policy sizes segments by
        // live documents, which would put a segment of carried copies (one live anchor) among
        // the smallest, and every carry would copy all the history carried before again.
        let retaining: Vec<SegmentMeta> = self
            .segments(index, searcher, cache, merging, false)?
            .into_iter()
            .map(|meta| {
                let opstamp = meta.delete_opstamp().unwrap_or(0);
                meta.with_delete_meta(0, opstamp)
            })
            .collect();
        // A carry is worth its copies only when it merges segments together.
        Ok(self.candidates(&retaining, 2))
    }

    /// The log merge policy's groups among `segments`, of at least `min_len` segments each.
    fn candidates(&self, segments: &[SegmentMeta], min_len: usize) -> Vec<Vec<SegmentId>> {
        self.log
            .compute_merge_candidates(segments)
            .into_iter()
            .map(|candidate| candidate.0)
            .filter(|group| group.len() >= min_len)
            .collect()
    }

    /// The committed segments of `searcher`, not in `excluded`, that may (`mergeable`) or may
    /// not be merged as they are.
    fn segments(
        &self,
        index: &Index,
        searcher: &Searcher,
        cache: &HistoryCache,
        excluded: &[SegmentId],
        mergeable: bool,
    ) -> Result<Vec<SegmentMeta>> {
        let mut facts: HashMap<SegmentId, bool> = HashMap::new();
        for segment in searcher.segment_readers() {
            let history = cache.get(segment)?;
            let allowed = self.may_merge(history.max_deleted_seq_no(segment));
            facts.insert(segment.segment_id(), allowed);
        }
        let metas = index
            .searchable_segment_metas()
            .map_err(|e| EngineError::index("listing segments", e))?;
        Ok(metas
            .into_iter()
            .filter(|meta| {
                // Only segments of this reader: their delete counts are the ones checked.
                facts.get(&meta.id()) == Some(&mergeable) && !excluded.contains(&meta.id())
            })
            .collect())
    }

    /// Log-merge-policy candidates among the eligible segments.
    pub fn select(
        &self,
        index: &Index,
        searcher: &Searcher,
        cache: &HistoryCache,
        merging: &[SegmentId],
    ) -> Result<Vec<Vec<SegmentId>>> {
        let eligible = self.eligible(index, searcher, cache, merging)?;
        Ok(self.candidates(&eligible, 1))
    }

    /// Groups for a force merge: the eligible segments merged into as few groups as
    /// `max_num_segments` allows once the ineligible ones are counted.
    pub fn select_forced(
        &self,
        index: &Index,
        searcher: &Searcher,
        cache: &HistoryCache,
        max_num_segments: usize,
    ) -> Result<Vec<Vec<SegmentId>>> {
        let mut eligible = self.eligible(index, searcher, cache, &[])?;
        let total = searcher.segment_readers().len();
        let ineligible = total - eligible.len();
        let groups = max_num_segments.saturating_sub(ineligible).max(1);
        let has_deletes = eligible.iter().any(|meta| meta.num_deleted_docs() > 0);
        if eligible.is_empty() || (eligible.len() <= groups && !has_deletes) {
            return Ok(Vec::new());
        }
        eligible.sort_by_key(|meta| std::cmp::Reverse(meta.num_docs()));
        let mut out: Vec<Vec<SegmentId>> = vec![Vec::new(); groups.min(eligible.len())];
        let slots = out.len();
        for (position, meta) in eligible.iter().enumerate() {
            out[position % slots].push(meta.id());
        }
        Ok(out
            .into_iter()
            .filter(|group| group.len() > 1 || has_deletes)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_with_retained_deletes_may_not_merge() {
        let policy = RetentionMergePolicy::new(SeqNo(100));
        assert!(policy.may_merge(None));
        assert!(policy.may_merge(Some(99)));
        assert!(!policy.may_merge(Some(100)));
        assert!(!policy.may_merge(Some(5000)));
    }
}
