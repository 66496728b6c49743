//! `Checkpoints`: the sequence numbers a shard has processed and persisted, and the threads
//! waiting for them (long polls of the changes API).
//!
//! Guarantees: a wait returns as soon as the persisted checkpoint reaches its target, its cancel
//! flag is set and waiters are woken, the shard starts closing or fails, or its deadline passes; a wake-up
//! between a waiter's check and its wait cannot be missed, because both happen under the
//! tracker lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use parking_lot::Condvar;

use super::lock_order::{LockRank, RankedMutex, RankedMutexGuard};
use crate::checkpoint::LocalCheckpointTracker;
use crate::types::SeqNo;

/// The checkpoint tracker of a shard and the waits on its persisted checkpoint.
pub(crate) struct Checkpoints {
    tracker: RankedMutex<LocalCheckpointTracker>,
    /// Notified (under the tracker lock) when the persisted checkpoint advances, and by
    /// [`Checkpoints::wake_waiters`].
    changed: Condvar,
    /// Set while the shard's index is being closed: waits return at once instead of holding
    /// the index open until their timeout.
    closing: AtomicBool,
    /// Set for good when the shard fails: its checkpoint may never advance again, so no wait
    /// may last.
    failed: AtomicBool,
}

impl Checkpoints {
    /// Checkpoints starting from `tracker`.
    pub(crate) fn new(tracker: LocalCheckpointTracker) -> Self {
        Checkpoints {
            tracker: RankedMutex::new(LockRank::Tracker, tracker),
            changed: Condvar::new(),
            closing: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        }
    }

    /// The tracker, locked (for a sequence of reads and marks that must see one state).
    pub(crate) fn lock(&self) -> RankedMutexGuard<'_, LocalCheckpointTracker> {
        self.tracker.lock()
    }

    /// Every operation at or below it has been processed.
    pub(crate) fn processed(&self) -> SeqNo {
        self.tracker.lock().processed_checkpoint()
    }

    /// Every operation at or below it is durable.
    pub(crate) fn persisted(&self) -> SeqNo {
        self.tracker.lock().persisted_checkpoint()
    }

    /// The highest sequence number seen.
    pub(crate) fn max_seq_no(&self) -> SeqNo {
        self.tracker.lock().max_seq_no()
    }

    /// Marks `seq_nos` persisted and wakes the waiters if the persisted checkpoint advanced.
    pub(crate) fn mark_persisted(&self, seq_nos: &[u64]) {
        let mut tracker = self.tracker.lock();
        let mut advanced = false;
        for seq_no in seq_nos {
            advanced |= tracker.mark_persisted(SeqNo(*seq_no as i64));
        }
        if advanced {
            self.changed.notify_all();
        }
    }

    /// Wakes every waiter unconditionally (after operations were marked persisted in bulk).
    pub(crate) fn notify_changed(&self) {
        self.changed.notify_all();
    }

    /// Waits until the persisted checkpoint reaches `seq_no`, `cancelled` is set (and
    /// [`Checkpoints::wake_waiters`] called), the shard starts closing or fails, or `deadline`
    /// passes;
    /// returns the persisted checkpoint at that moment.
    pub(crate) fn wait_for_persisted(
        &self,
        seq_no: SeqNo,
        deadline: Instant,
        cancelled: &AtomicBool,
    ) -> SeqNo {
        let mut tracker = self.tracker.lock();
        loop {
            let checkpoint = tracker.persisted_checkpoint();
            // Checked under the tracker lock, which the waker takes before notifying: a cancel
            // (or a close) between this check and the wait below cannot be missed.
            if checkpoint >= seq_no
                || cancelled.load(Ordering::Acquire)
                || self.closing.load(Ordering::Acquire)
                || self.failed.load(Ordering::Acquire)
            {
                return checkpoint;
            }
            if tracker.wait_until(&self.changed, deadline) {
                return tracker.persisted_checkpoint();
            }
        }
    }

    /// Wakes every waiter, so that waits whose cancel flag was set return.
    pub(crate) fn wake_waiters(&self) {
        let _tracker = self.tracker.lock();
        self.changed.notify_all();
    }

    /// Marks the shard as failed and wakes every waiter; later waits return at once.
    pub(crate) fn set_failed(&self) {
        self.failed.store(true, Ordering::Release);
        self.wake_waiters();
    }

    /// Marks the shard as closing (or not) and wakes every waiter.
    pub(crate) fn set_closing(&self, closing: bool) {
        self.closing.store(closing, Ordering::Release);
        self.wake_waiters();
    }
}
