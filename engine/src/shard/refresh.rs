//! Refresh (tantivy commit + reader reload), translog trimming, `min_retained_seq_no`, and
//! the retention-aware merges the engine schedules itself.
//!
//! Why the engine schedules merges instead of installing a tantivy `MergePolicy`: the writer
//! offers not-yet-committed segments to its policy, and such merges apply deletes up to the
//! current opstamp, silently dropping history. `IndexWriter::merge` instead applies deletes only
//! up to the *last commit's* opstamp, so the eligibility computed on the reader of that commit is
//! exact as long as no commit happens between the check and the call (both run under the
//! refresh lock, and only a refresh commits).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tantivy::index::SegmentId;
use tantivy::{IndexReader, Searcher};

use super::lock_order::{LockRank, RankedMutex, RankedRwLock, RankedWriteGuard};
use super::writer_slot::ShardWriter;
use super::{prepare_commit, CommitPayload, ShardInner};
use crate::error::{EngineError, Result};
use crate::merge::RetentionMergePolicy;
use crate::types::{PrimaryTerm, SeqNo};

/// While a merge runs, the background pass releases the pages its sources' reads made
/// resident this often (see [`ShardInner::release_merge_sources`]).
pub(super) const MERGE_PAGES_RELEASE_INTERVAL: Duration = Duration::from_secs(1);

/// Bound on how long `force_merge` waits for merges already running.
const FORCE_MERGE_WAIT: Duration = Duration::from_secs(600);

/// The commit and refresh state of a shard: the reader each refresh installs, whether anything
/// changed since the last one, and the merges refreshes schedule.
pub(crate) struct Commits {
    /// Held by a refresh from start to end and by merge selection: one at a time.
    pub(super) refresh_lock: RankedMutex<RefreshState>,
    reader: IndexReader,
    /// The reader of the last commit. A refresh swaps it while the tail is locked, before the
    /// version map's refreshing generation is dropped; the end of a merge swaps it for one
    /// that holds the same documents in the merged segment (see
    /// [`ShardInner::reload_after_merges`]).
    searcher: RankedRwLock<Searcher>,
    /// Set by every change a commit must pick up (writes, lease changes, anchor deletes).
    dirty: AtomicBool,
    refresh_count: AtomicU64,
    last_commit_local_checkpoint: AtomicI64,
    /// Segments in merges the engine scheduled and that have not finished.
    merging: Arc<RankedMutex<Vec<SegmentId>>>,
    /// Set when a merge ends, cleared by the reload that drops its source segments.
    merged_since_reload: Arc<AtomicBool>,
}

#[derive(Default)]
pub(super) struct RefreshState {
    /// `min_retained_seq_no` when merges were last selected.
    merges_selected_at: Option<SeqNo>,
}

impl Commits {
    /// The state of a shard just opened on a commit whose local checkpoint is
    /// `last_commit_local_checkpoint`, read through `reader` (whose searcher is `searcher`).
    pub(crate) fn new(
        reader: IndexReader,
        searcher: Searcher,
        last_commit_local_checkpoint: SeqNo,
    ) -> Self {
        Commits {
            refresh_lock: RankedMutex::new(LockRank::Refresh, RefreshState::default()),
            reader,
            searcher: RankedRwLock::new(LockRank::Searcher, searcher),
            dirty: AtomicBool::new(false),
            refresh_count: AtomicU64::new(0),
            last_commit_local_checkpoint: AtomicI64::new(last_commit_local_checkpoint.0),
            merging: Arc::new(RankedMutex::new(LockRank::Merging, Vec::new())),
            merged_since_reload: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The searcher of the last refresh.
    pub(crate) fn searcher(&self) -> Searcher {
        self.searcher.read().clone()
    }

    /// Records a change the next refresh must commit.
    pub(crate) fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    /// Refreshes (commits) since the shard was opened.
    pub(crate) fn refresh_count(&self) -> u64 {
        self.refresh_count.load(Ordering::Relaxed)
    }

    /// Segments being merged now.
    pub(crate) fn merging_segment_count(&self) -> usize {
        self.merging.lock().len()
    }

    /// True while one of `segments` is being merged.
    pub(crate) fn is_merging(&self, segments: &[SegmentId]) -> bool {
        self.merging.lock().iter().any(|id| segments.contains(id))
    }
}

impl ShardInner {
    /// Commits everything applied so far (if anything changed, or `force`), installs the new
    /// reader, trims the translog and selects merges.
    pub(super) fn refresh(&self, force: bool) -> Result<()> {
        let mut state = self.commits.refresh_lock.lock();
        self.refresh_locked(&mut state, force)
    }

    /// A forced refresh, then `then` with the refresh lock still held: no commit, reader
    /// reload or floor change runs between the two, so `then` sees the searcher, the retention
    /// floor and the last commit's local checkpoint (its argument) of one commit.
    pub(super) fn refresh_then<T>(&self, then: impl FnOnce(SeqNo) -> T) -> Result<T> {
        let mut state = self.commits.refresh_lock.lock();
        self.refresh_locked(&mut state, true)?;
        Ok(then(self.last_commit_local_checkpoint()))
    }

    /// The commit of [`super::ShardEngine::close`]: a forced refresh that selects no merge.
    pub(super) fn commit_for_close(&self) -> Result<()> {
        let _state = self.commits.refresh_lock.lock();
        self.check_failed()?;
        let retention_operations = self.config().retention_operations;
        self.commit_and_reload(None, retention_operations)
    }

    fn refresh_locked(&self, state: &mut RefreshState, force: bool) -> Result<()> {
        self.check_failed()?;
        // A batch finishing between this swap and the commit's exclusive section is committed
        // and leaves `dirty` set: one redundant commit, never a missed one.
        let dirty = self.commits.dirty.swap(false, Ordering::AcqRel);
        // A floor that can advance is persisted by a commit before any merge selects with it.
        let retention_operations = self.config().retention_operations;
        let advancing = self
            .next_min_retained_seq_no(self.last_commit_local_checkpoint(), retention_operations)
            > self.retention.min_retained_seq_no();
        if dirty || force || advancing {
            if let Err(error) = self.commit_and_reload(None, retention_operations) {
                // Not committed: the next refresh tries again (a failed shard refuses it).
                self.commits.dirty.store(true, Ordering::Release);
                return Err(error);
            }
        }
        let min_retained = self.retention.min_retained_seq_no();
        if dirty || force || state.merges_selected_at != Some(min_retained) {
            state.merges_selected_at = Some(min_retained);
            self.schedule_merges(min_retained)?;
        }
        Ok(())
    }

    /// Closes the tantivy writer if nothing was written to it for `idle_for` and it holds
    /// nothing uncommitted (see [`super::writer_slot::WriterSlot::release_if_idle`]). Under
    /// the refresh lock, so no commit runs and no merge starts meanwhile; not while a merge
    /// runs on the writer's threads.
    pub(super) fn release_idle_writer(&self, idle_for: std::time::Duration) {
        let _state = self.commits.refresh_lock.lock();
        if self.commits.merging_segment_count() == 0
            && self.writes.writer().release_if_idle(idle_for)
        {
            tracing::debug!(shard = %self.dir.display(), "closed the idle writer");
        }
    }

    /// The commit of a refresh. Writers are held back only while the payload is fixed and the
    /// writer taken (the `batches` write lock); while tantivy finishes the segments, their
    /// batches are parked in the [`super::writer_slot::WriterSlot`]. Unless the caller already
    /// holds them back (`held`) for longer: then nothing is parked, and no write reaches the
    /// index between this commit and the guard's release.
    ///
    /// `retention_operations` is the shard's setting, read by the caller before any writer was
    /// held back (the configuration lock ranks before theirs).
    pub(super) fn commit_and_reload(
        &self,
        held: Option<&RankedWriteGuard<'_, ()>>,
        retention_operations: u64,
    ) -> Result<()> {
        // The translog first, before anything is held back: a full disk leaves the buffered
        // operations buffered and the shard open (see `translog_failure`); the roll below then
        // writes only what was appended meanwhile.
        self.translog
            .sync()
            .map_err(|error| self.translog_failure(error))?;
        let waited = Instant::now();
        let (payload, mut writer) = {
            let own;
            let held = match held {
                Some(held) => held,
                None => {
                    own = self.writes.hold_batches();
                    &own
                }
            };
            self.writes.begin_refresh(held);
            let (local_checkpoint, max_seq_no) = {
                let tracker = self.checkpoints.lock();
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
                max_seq_no_of_updates: self.writes.max_seq_no_of_updates(),
                history_uuid: self.history_uuid.clone(),
                primary_term: PrimaryTerm(self.primary_term.load(Ordering::Acquire)),
                translog_uuid: self.translog_uuid.clone(),
                translog_generation: generation,
                retention_leases: self.retention.leases(),
                // Raised in memory only once this commit is durable (see `Retention`).
                min_retained_seq_no: self
                    .next_min_retained_seq_no(local_checkpoint, retention_operations),
                promotion: self.promotion.lock().clone(),
                history_ceilings: self.retention.history().ceilings(),
            };
            // Everything processed so far was handed to this writer: nothing is parked while
            // it is in the slot.
            let writer = self
                .writes
                .writer()
                .take()
                .map_err(|e| self.fail(EngineError::index("opening the writer", e)))?;
            (payload, writer)
        };
        let writer_taken = waited.elapsed();
        let started = Instant::now();
        let prepared = prepare_commit(&mut writer, &payload);
        let prepare = started.elapsed();
        let returned = self.writes.writer().give_back(writer);
        let committed = prepared
            .map_err(|e| self.fail(e))?
            .wait()
            .map_err(|e| self.fail(EngineError::index("committing", e)));
        returned.map_err(|e| self.fail(EngineError::index("adding parked documents", e)))?;
        committed?;
        let commit = started.elapsed();
        let searcher = self.reload_reader()?;
        let released = self
            .writes
            .end_refresh(|| *self.commits.searcher.write() = searcher.clone());
        // Freed by a helper thread: a second of writes takes a while to free, and this thread
        // holds the refresh lock.
        let freed = std::thread::Builder::new()
            .name("tandem-free".to_string())
            .spawn(move || drop(released));
        if let Err(error) = freed {
            tracing::debug!(%error, "freeing the refreshed generation inline");
        }
        self.commits
            .last_commit_local_checkpoint
            .store(payload.local_checkpoint.0, Ordering::Release);
        self.retention
            .raise_min_retained_seq_no(payload.min_retained_seq_no);
        self.translog
            .trim_below(payload.translog_generation)
            .map_err(|e| self.fail(e.into()))?;
        self.retention.history().retain(&searcher);
        self.compact_anchors(&searcher)?;
        self.commits.refresh_count.fetch_add(1, Ordering::Relaxed);
        self.counters.record_refresh(waited.elapsed(), commit);
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

    /// Reloads the reader on the last commit and the merges that ended since (letting go of
    /// the segments they merged away) and warms the history of its new segments; returns its
    /// searcher, not yet installed. Under the refresh lock.
    fn reload_reader(&self) -> Result<Searcher> {
        self.commits
            .merged_since_reload
            .store(false, Ordering::Release);
        self.commits
            .reader
            .reload()
            .map_err(|e| self.fail(EngineError::index("reloading the reader", e)))?;
        let searcher = self.commits.reader.searcher();
        self.warm_history(&searcher);
        Ok(searcher)
    }

    /// Builds the history views and id filters of the segments `searcher` holds that have
    /// none yet (see [`crate::history::HistoryCache::warm`]), then lets go of the pages of
    /// their term dictionaries the filters were built from: the build reads every `_id` term
    /// once, and those pages would otherwise stay resident as long as the segment lives,
    /// growing the node's RSS with the index although no lookup asked for them.
    fn warm_history(&self, searcher: &Searcher) {
        match self
            .retention
            .history()
            .warm(searcher, self.mapper.schema().id)
        {
            Ok(built) => {
                let terms: Vec<String> = built
                    .iter()
                    .map(|id| format!("{}.term", id.uuid_string()))
                    .collect();
                if !terms.is_empty() {
                    self.directory.release_resident_pages(|path| {
                        terms.iter().any(|name| path == Path::new(name))
                    });
                }
            }
            // The lookups that need what could not be built report the error themselves.
            Err(error) => {
                tracing::warn!(shard = %self.dir.display(), %error, "warming the history cache")
            }
        }
    }

    /// Lets go of the resident pages of the segments being merged: a merge reads its source
    /// segments whole, and while it runs (seconds to minutes for large segments) what it read
    /// would stay resident beside what it writes. Called by the background pass, which runs
    /// every [`MERGE_PAGES_RELEASE_INTERVAL`] while a merge does.
    pub(super) fn release_merge_sources(&self) {
        let sources: Vec<String> = self
            .commits
            .merging
            .lock()
            .iter()
            .map(|id| format!("{}.", id.uuid_string()))
            .collect();
        if !sources.is_empty() {
            self.directory.release_resident_pages(|path| {
                let name = path.to_string_lossy();
                sources
                    .iter()
                    .any(|prefix| name.starts_with(prefix.as_str()))
            });
        }
    }

    /// Deletes every live anchor of a segment but its first: one live document is enough to
    /// keep the segment (see `crate::history`), and the surplus would grow with every batch.
    /// The kept anchor is never deleted, so no segment can become empty through this.
    fn compact_anchors(&self, searcher: &tantivy::Searcher) -> Result<()> {
        let schema = self.mapper.schema();
        let mut surplus = Vec::new();
        for segment in searcher.segment_readers() {
            let history = self.retention.history().get(segment)?;
            let live = history.live_anchors(segment);
            surplus.extend(live.iter().skip(1).map(|(_, number)| *number));
        }
        if !surplus.is_empty() {
            self.writes
                .writer()
                .with_changes(|writer| {
                    for number in surplus {
                        writer.delete_term(tantivy::Term::from_field_text(
                            schema.id,
                            &crate::history::anchor_id(number),
                        ));
                    }
                })
                .map_err(|e| self.fail(EngineError::index("opening the writer", e)))?;
            // The deletes are applied by the next commit.
            self.commits.mark_dirty();
        }
        Ok(())
    }

    /// The floor a commit holding `local_checkpoint` may persist: `max(current, min(leases,
    /// 1 + gcp - retention_operations, 1 + local_checkpoint))` (see
    /// [`Retention::next_min_retained_seq_no`](super::retention::Retention)).
    fn next_min_retained_seq_no(
        &self,
        local_checkpoint: SeqNo,
        retention_operations: u64,
    ) -> SeqNo {
        let global_checkpoint = self.checkpoints.persisted().0;
        let by_operations = global_checkpoint + 1 - retention_operations as i64;
        self.retention
            .next_min_retained_seq_no(by_operations, local_checkpoint.0 + 1)
    }

    fn last_commit_local_checkpoint(&self) -> SeqNo {
        SeqNo(
            self.commits
                .last_commit_local_checkpoint
                .load(Ordering::Acquire),
        )
    }

    pub(super) fn policy(&self, min_retained: SeqNo) -> RetentionMergePolicy {
        RetentionMergePolicy::new(min_retained)
    }

    fn schedule_merges(&self, min_retained: SeqNo) -> Result<()> {
        if !self.scheduled_merges {
            return Ok(());
        }
        let scheduled = self.schedule_log_merges(min_retained)?;
        self.carry_and_merge(min_retained, &scheduled)
    }

    /// Starts the merges of the log merge policy among the segments that may be merged as they
    /// are; returns the segments merging now.
    fn schedule_log_merges(&self, min_retained: SeqNo) -> Result<Vec<SegmentId>> {
        let searcher = self.commits.searcher();
        let merging = self.commits.merging.lock().clone();
        let candidates = self.policy(min_retained).select(
            &self.index,
            &searcher,
            self.retention.history(),
            &merging,
        )?;
        if !candidates.is_empty() {
            self.writes
                .writer()
                .with(|writer| {
                    for candidate in candidates {
                        self.start_merge(writer, candidate);
                    }
                })
                .map_err(|e| self.fail(EngineError::index("opening the writer", e)))?;
        }
        Ok(self.commits.merging.lock().clone())
    }

    pub(super) fn start_merge(&self, writer: &mut ShardWriter, segments: Vec<SegmentId>) {
        self.commits.merging.lock().extend(segments.iter().copied());
        let docs: u64 = self
            .commits
            .searcher()
            .segment_readers()
            .iter()
            .filter(|segment| segments.contains(&segment.segment_id()))
            .map(|segment| u64::from(segment.max_doc()))
            .sum();
        let counters = self.counters.clone();
        counters.merge_started(docs);
        tracing::debug!(
            shard = %self.dir.display(),
            segments = segments.len(),
            docs,
            "merge started"
        );
        let started = Instant::now();
        let future = writer.merge(&segments);
        let shard = self.dir.clone();
        let directory = self.directory.clone();
        let merging = self.commits.merging.clone();
        let merged = self.commits.merged_since_reload.clone();
        let background = self.background.get().cloned();
        let spawned = std::thread::Builder::new()
            .name("tandem-merge-wait".to_string())
            .spawn(move || {
                match future.wait() {
                    Ok(_) => {}
                    // The engine closed while the merge ran: it was stopped on purpose.
                    Err(_) if directory.is_retired() => {
                        tracing::debug!(shard = %shard.display(), "merge stopped by the close");
                    }
                    Err(error) => tracing::warn!(%error, "merge failed"),
                }
                tracing::debug!(
                    shard = %shard.display(),
                    docs,
                    took_ms = started.elapsed().as_millis() as u64,
                    "merge ended"
                );
                counters.merge_ended(docs, started.elapsed());
                merging.lock().retain(|id| !segments.contains(id));
                // The background pass installs a reader without the merged-away segments.
                merged.store(true, Ordering::Release);
                if let Some(background) = background {
                    background.wake();
                }
            });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot spawn a merge waiter");
        }
        // The background pass releases the sources' pages while the merge runs.
        self.wake_background();
    }

    /// Installs a reader on the segments as merges left them, if a merge ended since the last
    /// reader was installed, so that the merged-away segments are let go at once rather than at
    /// the next refresh (which a bulk load with refresh disabled may not run for minutes): their
    /// files stay mapped, resident and on disk (deleted but open) while any reader holds them.
    ///
    /// Nothing visible changes: tantivy saves a merge's result with the deletes of the last
    /// commit, so the new reader holds the same documents as the one it replaces, and the
    /// tail and the version map, which hold what is newer, are untouched. Under the refresh
    /// lock, so no commit runs meanwhile.
    pub(super) fn reload_after_merges(&self) -> Result<()> {
        if !self.commits.merged_since_reload.load(Ordering::Acquire) {
            return Ok(());
        }
        let _state = self.commits.refresh_lock.lock();
        self.check_failed()?;
        let searcher = self.reload_reader()?;
        let merged_away = std::mem::replace(&mut *self.commits.searcher.write(), searcher.clone());
        self.retention.history().retain(&searcher);
        drop(merged_away);
        Ok(())
    }

    /// See [`super::ShardEngine::force_merge`].
    pub(super) fn force_merge(&self, max_num_segments: usize) -> Result<()> {
        self.refresh(true)?;
        let started = Instant::now();
        while !self.commits.merging.lock().is_empty() {
            if started.elapsed() > FORCE_MERGE_WAIT {
                return Err(EngineError::Closed(
                    "timed out waiting for running merges".to_string(),
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let (merging, future) = {
            let _state = self.commits.refresh_lock.lock();
            // The floor the refresh above committed (merges never select with more).
            let min_retained = self.retention.min_retained_seq_no();
            let searcher = self.commits.searcher();
            let groups = self.policy(min_retained).select_forced(
                &self.index,
                &searcher,
                self.retention.history(),
                max_num_segments,
            )?;
            let merging: Vec<SegmentId> = groups.iter().flatten().copied().collect();
            let future = self
                .writes
                .writer()
                .with(|writer| {
                    // Registered as merging while they run, as the engine's own merges are:
                    // the writer is then never released as idle under them (which would
                    // kill them), and nothing else selects their segments.
                    self.commits.merging.lock().extend(merging.iter().copied());
                    groups
                        .into_iter()
                        .map(|group| writer.merge(group.as_slice()))
                        .collect::<Vec<_>>()
                })
                .map_err(|e| self.fail(EngineError::index("opening the writer", e)))?;
            (merging, future)
        };
        let ended: Vec<_> = future.into_iter().map(|merge| merge.wait()).collect();
        self.commits
            .merging
            .lock()
            .retain(|id| !merging.contains(id));
        for merge in ended {
            merge.map_err(|e| EngineError::index("force merge", e))?;
        }
        // Install a reader that shows the merged segments.
        self.commits.mark_dirty();
        self.refresh(true)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use crate::mapping::{DocumentMapper, Mappings};
    use crate::shard::{IndexRequest, ShardConfig, ShardEngine};
    use crate::types::PrimaryTerm;

    #[test]
    fn a_close_commits_and_selects_no_merge() {
        let dir = tempfile::tempdir().unwrap();
        let config = ShardConfig {
            refresh_interval: None,
            indexing_threads: 1,
            ..ShardConfig::default()
        };
        let mapper = Arc::new(DocumentMapper::new(Mappings::empty(), 1, None));
        let shard = ShardEngine::create(dir.path(), mapper.clone(), config.clone(), PrimaryTerm(1))
            .unwrap();
        let write_segment = |segment: u64| {
            for n in 0..20u64 {
                let id = segment * 20 + n;
                shard
                    .index(IndexRequest::new(
                        format!("doc-{id}"),
                        format!(r#"{{"n":{id}}}"#).into_bytes(),
                    ))
                    .unwrap();
            }
        };
        // Seven small segments: one short of the log merge policy's 8 to a level.
        for segment in 0..7 {
            write_segment(segment);
            shard.refresh().unwrap();
        }
        assert_eq!(shard.segments().len(), 7);
        // The eighth is committed by the close, which would make a merge of 8 due.
        write_segment(7);
        let counters = shard.inner.counters.clone();
        shard.close().unwrap();
        let merges = counters.snapshot();
        assert_eq!((merges.merge_total, merges.merge_current), (0, 0));
        let reopened = ShardEngine::open(
            dir.path(),
            mapper,
            ShardConfig {
                scheduled_merges: false,
                ..config
            },
        )
        .unwrap();
        assert_eq!(reopened.doc_count(), 160);
    }

    #[test]
    fn a_force_merge_keeps_its_writer_while_it_runs() {
        let dir = tempfile::tempdir().unwrap();
        let config = ShardConfig {
            refresh_interval: None,
            indexing_threads: 1,
            ..ShardConfig::default()
        };
        let mapper = Arc::new(DocumentMapper::new(Mappings::empty(), 1, None));
        let shard = ShardEngine::create(dir.path(), mapper, config, PrimaryTerm(1)).unwrap();
        for segment in 0..12u64 {
            for n in 0..300u64 {
                let id = segment * 300 + n;
                let source = format!(r#"{{"n":{id},"body":"document {id} of segment {segment}"}}"#);
                shard
                    .index(IndexRequest::new(format!("doc-{id}"), source.into_bytes()))
                    .unwrap();
            }
            shard.refresh().unwrap();
        }
        assert!(shard.segments().len() > 1);
        // The background pass releases a writer idle longer than its setting: here at every
        // moment of the merge.
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                while !stop.load(Ordering::Acquire) {
                    shard.inner.release_idle_writer(Duration::ZERO);
                    std::thread::sleep(Duration::from_micros(200));
                }
            });
            let merged = shard.force_merge(1);
            stop.store(true, Ordering::Release);
            merged.unwrap();
        });
        assert_eq!(shard.segments().len(), 1);
        assert_eq!(shard.doc_count(), 3_600);
    }
}
