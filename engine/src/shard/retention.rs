//! `Retention`: what a shard keeps of its history and why: the per-segment history cache, the
//! retention leases and `min_retained_seq_no`, the floor below which merges may drop deleted
//! documents.
//!
//! Guarantees: `min_retained_seq_no` never decreases (invariant 4), restarts and crashes
//! included: it is raised only to a floor a durable commit's payload already holds, so the
//! floor a shard reopens with is the last one it reported; a lease change is persisted
//! (appended to the lease log and fsynced) before it is installed, so a failed change or
//! persist leaves the leases as they were.

use std::sync::atomic::{AtomicI64, Ordering};

use super::lock_order::{LockRank, RankedMutex};
use crate::error::Result;
use crate::history::HistoryCache;
use crate::lease_log::LeaseLog;
use crate::leases::RetentionLeases;
use crate::types::SeqNo;

/// The installed leases and the log they are persisted in, changed together under one lock.
struct LeaseState {
    leases: RetentionLeases,
    log: LeaseLog,
}

/// The history cache, the leases and the retention floor of a shard.
pub(crate) struct Retention {
    history: HistoryCache,
    leases: RankedMutex<LeaseState>,
    min_retained_seq_no: AtomicI64,
}

impl Retention {
    /// Retention starting from `history` (with the last commit's history ceilings),
    /// `leases` (persisted in `log`) and the floor `min_retained_seq_no` (from the shard's
    /// last commit).
    pub(crate) fn new(
        history: HistoryCache,
        log: LeaseLog,
        leases: RetentionLeases,
        min_retained_seq_no: SeqNo,
    ) -> Self {
        Retention {
            history,
            leases: RankedMutex::new(LockRank::Leases, LeaseState { leases, log }),
            min_retained_seq_no: AtomicI64::new(min_retained_seq_no.0),
        }
    }

    /// The per-segment history cache.
    pub(crate) fn history(&self) -> &HistoryCache {
        &self.history
    }

    /// The current leases.
    pub(crate) fn leases(&self) -> RetentionLeases {
        self.leases.lock().leases.clone()
    }

    /// Bytes of the lease log on disk.
    pub(crate) fn lease_log_bytes(&self) -> u64 {
        self.leases.lock().log.size_in_bytes()
    }

    /// Merges may drop deleted documents below it.
    pub(crate) fn min_retained_seq_no(&self) -> SeqNo {
        SeqNo(self.min_retained_seq_no.load(Ordering::Acquire))
    }

    /// Applies `change` to a copy of the leases, appends the difference to the lease log,
    /// then installs the copy. Returns the change's result and whether the leases changed.
    pub(crate) fn update_leases<T>(
        &self,
        change: impl FnOnce(&mut RetentionLeases) -> Result<T>,
    ) -> Result<(T, bool)> {
        let mut state = self.leases.lock();
        let mut updated = state.leases.clone();
        let result = change(&mut updated)?;
        let changed = updated != state.leases;
        if changed {
            let LeaseState { leases, log } = &mut *state;
            log.append(leases, &updated)?;
            *leases = updated;
        }
        Ok((result, changed))
    }

    /// The floor a commit may persist now: `min(leases, by_operations, by_commit)`, or the
    /// current floor if that is higher. `by_operations` is `1 + global checkpoint -
    /// retention_operations`; `by_commit` is `1 + the local checkpoint the commit holds`.
    /// Nothing changes until [`Retention::raise_min_retained_seq_no`].
    pub(crate) fn next_min_retained_seq_no(&self, by_operations: i64, by_commit: i64) -> SeqNo {
        let by_leases = self
            .leases
            .lock()
            .leases
            .min_retaining_seq_no()
            .map_or(i64::MAX, |seq_no| seq_no.0);
        let candidate = by_leases.min(by_operations).min(by_commit);
        SeqNo(candidate.max(self.min_retained_seq_no().0))
    }

    /// Raises the floor to `floor` (never lowers it). Called only once a commit whose payload
    /// holds `floor` is durable: merges select with the floor this returns, so no segment on
    /// disk lacks history a crash-recovered shard would claim (invariant 4, across crashes too).
    pub(crate) fn raise_min_retained_seq_no(&self, floor: SeqNo) -> SeqNo {
        let previous = self
            .min_retained_seq_no
            .fetch_max(floor.0, Ordering::AcqRel);
        SeqNo(previous.max(floor.0))
    }
}
