//! Refresh (tantivy commit + reader reload), translog trimming, `min_retained_seq_no`, and
//! the retention-aware merges the engine schedules itself.
//!
//! Why the engine schedules merges instead of installing a tantivy `MergePolicy`: the writer
//! offers not-yet-committed segments to its policy, and such merges apply deletes up to the
//! current opstamp, silently dropping history. `IndexWriter::merge` instead applies deletes only
//! up to the *last commit's* opstamp, so the eligibility computed on the reader of that commit is
//! exact as long as no commit happens between the check and the call (both run under the
//! refresh lock, and only a refresh commits).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tantivy::index::SegmentId;

use super::writer_slot::ShardWriter;
use super::{prepare_commit, CommitPayload, ShardInner};
use crate::error::{EngineError, Result};
use crate::merge::RetentionMergePolicy;
use crate::types::{PrimaryTerm, SeqNo};

/// Bound on how long `force_merge` waits for merges already running.
const FORCE_MERGE_WAIT: Duration = Duration::from_secs(600);

impl ShardInner {
    /// Commits everything applied so far (if anything changed, or `force`), installs the new
    /// reader, trims the translog and selects merges.
    pub(super) fn refresh(&self, force: bool) -> Result<()> {
        let mut state = self.refresh_lock.lock();
        self.check_failed()?;
        // A batch finishing between this swap and the commit's exclusive section is committed
        // and leaves `dirty` set: one redundant commit, never a missed one.
        let dirty = self.dirty.swap(false, Ordering::AcqRel);
        if dirty || force {
            self.commit_and_reload()?;
        }
        let min_retained = self.advance_min_retained_seq_no();
        if dirty || force || state.merges_selected_at != Some(min_retained) {
            state.merges_selected_at = Some(min_retained);
            self.schedule_merges(min_retained)?;
        }
        Ok(())
    }

    /// The commit of a refresh. Writers are held back only while the payload is fixed and the
    /// writer taken (the `batches` write lock); while tantivy finishes the segments, their
    /// batches are parked in the [`super::writer_slot::WriterSlot`].
    fn commit_and_reload(&self) -> Result<()> {
        let waited = Instant::now();
        let (payload, mut writer) = {
            // No batch is in flight: batches hold the read side.
            let _exclusive = self.batches.write();
            self.version_map.begin_refresh();
            self.tail.lock().begin_refresh();
            let (local_checkpoint, max_seq_no) = {
                let tracker = self.tracker.lock();
                (tracker.processed_checkpoint(), tracker.max_seq_no())
            };
            // Every commit starts a new translog generation, so a replay never sees an
            // operation the commit holds. Rolling by size instead, with replay skipping what the
            // commit holds, can lose a live document after a crash.
            let generation = self
                .translog
                .roll_generation()
                .map_err(|e| self.fail(e.into()))?;
            let payload = CommitPayload {
                local_checkpoint,
                max_seq_no,
                max_seq_no_of_updates: SeqNo(self.max_seq_no_of_updates.load(Ordering::Acquire)),
                history_uuid: self.history_uuid.read().clone(),
                primary_term: PrimaryTerm(self.primary_term.load(Ordering::Acquire)),
                translog_uuid: self.translog_uuid.clone(),
                translog_generation: generation,
                retention_leases: self.leases.lock().clone(),
                min_retained_seq_no: SeqNo(self.min_retained_seq_no.load(Ordering::Acquire)),
            };
            // Everything processed so far was handed to this writer: nothing is parked while
            // it is in the slot.
            (payload, self.writer.take())
        };
        let writer_taken = waited.elapsed();
        let started = Instant::now();
        let prepared = prepare_commit(&mut writer, &payload);
        let prepare = started.elapsed();
        let returned = self.writer.give_back(writer);
        let committed = prepared
            .map_err(|e| self.fail(e))?
            .wait()
            .map_err(|e| self.fail(EngineError::index("committing", e)));
        returned.map_err(|e| self.fail(EngineError::index("adding parked documents", e)))?;
        committed?;
        let commit = started.elapsed();
        self.reader
            .reload()
            .map_err(|e| self.fail(EngineError::index("reloading the reader", e)))?;
        let searcher = self.reader.searcher();
        if let Err(error) = self.history.warm(&searcher, self.mapper.schema().id) {
            // The lookups that need what could not be built report the error themselves.
            tracing::warn!(shard = %self.dir.display(), %error, "warming the history cache");
        }
        let released_tail = {
            let mut tail = self.tail.lock();
            *self.searcher.write() = searcher.clone();
            tail.end_refresh()
        };
        let released_versions = self.version_map.end_refresh();
        // Freed by a helper thread: a second of writes takes a while to free, and this thread
        // holds the refresh lock.
        let freed = std::thread::Builder::new()
            .name("tandem-free".to_string())
            .spawn(move || drop((released_tail, released_versions)));
        if let Err(error) = freed {
            tracing::debug!(%error, "freeing the refreshed generation inline");
        }
        self.last_commit_local_checkpoint
            .store(payload.local_checkpoint.0, Ordering::Release);
        self.translog
            .trim_below(payload.translog_generation)
            .map_err(|e| self.fail(e.into()))?;
        self.history.retain(&searcher);
        self.compact_anchors(&searcher)?;
        self.refresh_count.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            shard = %self.dir.display(),
            writer_taken_us = writer_taken.as_micros() as u64,
            prepare_us = prepare.as_micros() as u64,
            commit_us = commit.as_micros() as u64,
            total_us = waited.elapsed().as_micros() as u64,
            "refresh committed"
        );
        Ok(())
    }

    /// Deletes every live anchor of a segment but its first: one live document is enough to
    /// keep the segment (see `crate::history`), and the surplus would grow with every batch.
    /// The kept anchor is never deleted, so no segment can become empty through this.
    fn compact_anchors(&self, searcher: &tantivy::Searcher) -> Result<()> {
        let schema = self.mapper.schema();
        let mut surplus = Vec::new();
        for segment in searcher.segment_readers() {
            let history = self.history.get(segment)?;
            let live = history.live_anchors(segment);
            surplus.extend(live.iter().skip(1).map(|(_, number)| *number));
        }
        let deleted = surplus.len();
        if deleted > 0 {
            self.writer.with(|writer| {
                for number in surplus {
                    writer.delete_term(tantivy::Term::from_field_text(
                        schema.id,
                        &crate::history::anchor_id(number),
                    ));
                }
            });
        }
        if deleted > 0 {
            // The deletes are applied by the next commit.
            self.dirty.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// `min_retained_seq_no = max(previous, min(leases, 1 + gcp - retention_operations,
    /// 1 + local checkpoint of the last commit))`; never decreases (invariant 4).
    pub(super) fn advance_min_retained_seq_no(&self) -> SeqNo {
        let by_leases = self
            .leases
            .lock()
            .min_retaining_seq_no()
            .map_or(i64::MAX, |seq_no| seq_no.0);
        let global_checkpoint = self.tracker.lock().persisted_checkpoint().0;
        let by_operations = global_checkpoint + 1 - self.config().retention_operations as i64;
        let by_commit = self.last_commit_local_checkpoint.load(Ordering::Acquire) + 1;
        let candidate = by_leases.min(by_operations).min(by_commit);
        let previous = self
            .min_retained_seq_no
            .fetch_max(candidate, Ordering::AcqRel);
        SeqNo(previous.max(candidate))
    }

    fn policy(&self, min_retained: SeqNo) -> RetentionMergePolicy {
        RetentionMergePolicy::new(min_retained)
    }

    fn schedule_merges(&self, min_retained: SeqNo) -> Result<()> {
        let searcher = self.searcher.read().clone();
        let merging = self.merging.lock().clone();
        let candidates =
            self.policy(min_retained)
                .select(&self.index, &searcher, &self.history, &merging)?;
        if !candidates.is_empty() {
            self.writer.with(|writer| {
                for candidate in candidates {
                    self.start_merge(writer, candidate);
                }
            });
        }
        Ok(())
    }

    fn start_merge(&self, writer: &mut ShardWriter, segments: Vec<SegmentId>) {
        self.merging.lock().extend(segments.iter().copied());
        let future = writer.merge(&segments);
        let merging = self.merging.clone();
        let spawned = std::thread::Builder::new()
            .name("tandem-merge-wait".to_string())
            .spawn(move || {
                if let Err(error) = future.wait() {
                    tracing::warn!(%error, "merge failed");
                }
                merging.lock().retain(|id| !segments.contains(id));
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot spawn a merge waiter");
        }
    }

    /// See [`super::ShardEngine::force_merge`].
    pub(super) fn force_merge(&self, max_num_segments: usize) -> Result<()> {
        self.refresh(true)?;
        let started = Instant::now();
        while !self.merging.lock().is_empty() {
            if started.elapsed() > FORCE_MERGE_WAIT {
                return Err(EngineError::Closed(
                    "timed out waiting for running merges".to_string(),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let future = {
            let _state = self.refresh_lock.lock();
            let min_retained = self.advance_min_retained_seq_no();
            let searcher = self.searcher.read().clone();
            let groups = self.policy(min_retained).select_forced(
                &self.index,
                &searcher,
                &self.history,
                max_num_segments,
            )?;
            self.writer.with(|writer| {
                groups
                    .into_iter()
                    .map(|group| writer.merge(group.as_slice()))
                    .collect::<Vec<_>>()
            })
        };
        for merge in future {
            merge
                .wait()
                .map_err(|e| EngineError::index("force merge", e))?;
        }
        // Install a reader that shows the merged segments.
        self.dirty.store(true, Ordering::Release);
        self.refresh(true)
    }
}
