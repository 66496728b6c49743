//! `Retention`: what a shard keeps of its history and why: the per-segment history cache, the
//! retention leases and `min_retained_seq_no`, the floor below which merges may drop deleted
//! documents.
//!
//! Guarantees: `min_retained_seq_no` never decreases (invariant 4); a lease change is persisted
//! before it is installed, so a failed change or persist leaves the leases as they were.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};

use super::lock_order::{LockRank, RankedMutex};
use crate::error::Result;
use crate::history::HistoryCache;
use crate::leases::RetentionLeases;
use crate::types::SeqNo;

/// The history cache, the leases and the retention floor of a shard.
pub(crate) struct Retention {
    history: HistoryCache,
    leases: RankedMutex<RetentionLeases>,
    min_retained_seq_no: AtomicI64,
}

impl Retention {
    /// Retention starting from `leases` and the floor `min_retained_seq_no` (both from the
    /// shard's last commit or lease file).
    pub(crate) fn new(leases: RetentionLeases, min_retained_seq_no: SeqNo) -> Self {
        Retention {
            history: HistoryCache::default(),
            leases: RankedMutex::new(LockRank::Leases, leases),
            min_retained_seq_no: AtomicI64::new(min_retained_seq_no.0),
        }
    }

    /// The per-segment history cache.
    pub(crate) fn history(&self) -> &HistoryCache {
        &self.history
    }

    /// The current leases.
    pub(crate) fn leases(&self) -> RetentionLeases {
        self.leases.lock().clone()
    }

    /// Merges may drop deleted documents below it.
    pub(crate) fn min_retained_seq_no(&self) -> SeqNo {
        SeqNo(self.min_retained_seq_no.load(Ordering::Acquire))
    }

    /// Applies `change` to a copy of the leases, persists the copy in `shard_dir`, then
    /// installs it. Returns the change's result and whether the leases changed.
    pub(crate) fn update_leases<T>(
        &self,
        shard_dir: &Path,
        change: impl FnOnce(&mut RetentionLeases) -> Result<T>,
    ) -> Result<(T, bool)> {
        let mut leases = self.leases.lock();
        let mut updated = leases.clone();
        let result = change(&mut updated)?;
        let changed = updated != *leases;
        if changed {
            updated.persist(shard_dir)?;
            *leases = updated;
        }
        Ok((result, changed))
    }

    /// Raises `min_retained_seq_no` to `min(leases, by_operations, by_commit)` if that is
    /// higher, and returns it. `by_operations` is `1 + global checkpoint -
    /// retention_operations`; `by_commit` is `1 + the local checkpoint of the last commit`.
    pub(crate) fn advance_min_retained_seq_no(&self, by_operations: i64, by_commit: i64) -> SeqNo {
        let by_leases = self
            .leases
            .lock()
            .min_retaining_seq_no()
            .map_or(i64::MAX, |seq_no| seq_no.0);
        let candidate = by_leases.min(by_operations).min(by_commit);
        let previous = self
            .min_retained_seq_no
            .fetch_max(candidate, Ordering::AcqRel);
        SeqNo(previous.max(candidate))
    }
}
