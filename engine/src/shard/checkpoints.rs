//! `Checkpoints`: the sequence numbers a shard has processed and persisted, and the waits on
//! the persisted checkpoint (long polls of the changes API).
//!
//! A wait is either a thread ([`Checkpoints::wait_for_persisted`], on a condition variable) or
//! a task ([`GlobalCheckpointWait`], a future whose waker is registered here): a long poll
//! served over the network is a task, so that a thousand idle polls hold no thread at all.
//!
//! Guarantees: a wait returns as soon as the persisted checkpoint reaches its target, the
//! shard starts closing or fails; a thread wait also when its cancel flag is set and waiters
//! are woken, or its deadline passes (a task's deadline and cancellation are its owner's:
//! dropping the future unregisters its waker at once). A wake-up between a waiter's check and
//! its wait cannot be missed, because both happen under the tracker lock, which every waker
//! takes before notifying.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use super::lock_order::{LockRank, RankedMutex, RankedMutexGuard};
use super::ShardInner;
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
    /// The wakers of the task waits. Taken only under the tracker lock, or alone to unregister
    /// a dropped wait; no lock is taken while it is held, and wakers are woken after both
    /// locks are released (a woken task may be polled at once on another thread).
    wakers: Mutex<TaskWakers>,
}

/// The registered task waits of one shard.
#[derive(Default)]
struct TaskWakers {
    next_id: u64,
    /// Wait id -> the persisted checkpoint it waits for, and the waker of its task.
    waiting: HashMap<u64, (SeqNo, Waker)>,
}

impl TaskWakers {
    /// Removes and returns the wakers of the waits whose target is at or below `checkpoint`
    /// (every wait when `checkpoint` is `None`).
    fn take_reached(&mut self, checkpoint: Option<SeqNo>) -> Vec<Waker> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        let reached: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, (target, _))| checkpoint.is_none_or(|checkpoint| *target <= checkpoint))
            .map(|(id, _)| *id)
            .collect();
        reached
            .into_iter()
            .filter_map(|id| self.waiting.remove(&id))
            .map(|(_, waker)| waker)
            .collect()
    }
}

impl Checkpoints {
    /// Checkpoints starting from `tracker`.
    pub(crate) fn new(tracker: LocalCheckpointTracker) -> Self {
        Checkpoints {
            tracker: RankedMutex::new(LockRank::Tracker, tracker),
            changed: Condvar::new(),
            closing: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            wakers: Mutex::new(TaskWakers::default()),
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
        let advanced = {
            let mut tracker = self.tracker.lock();
            seq_nos.iter().fold(false, |advanced, seq_no| {
                tracker.mark_persisted(SeqNo(*seq_no as i64)) | advanced
            })
        };
        if advanced {
            self.notify_changed();
        }
    }

    /// Wakes every waiter whose target was reached (after operations were marked persisted in
    /// bulk).
    pub(crate) fn notify_changed(&self) {
        let tracker = self.tracker.lock();
        self.changed.notify_all();
        let reached = self
            .wakers
            .lock()
            .take_reached(Some(tracker.persisted_checkpoint()));
        drop(tracker);
        reached.into_iter().for_each(Waker::wake);
    }

    /// Whether a wait for `seq_no` is over at `checkpoint`: reached, or the shard is closing
    /// or failed. Called under the tracker lock.
    fn wait_is_over(&self, checkpoint: SeqNo, seq_no: SeqNo) -> bool {
        checkpoint >= seq_no
            || self.closing.load(Ordering::Acquire)
            || self.failed.load(Ordering::Acquire)
    }

    /// Polls the task wait `id` (allocated on its first pending poll) for `seq_no`: the
    /// persisted checkpoint once the wait is over, else `Pending` with `waker` registered.
    fn poll_persisted(&self, seq_no: SeqNo, id: &mut Option<u64>, waker: &Waker) -> Poll<SeqNo> {
        let tracker = self.tracker.lock();
        let checkpoint = tracker.persisted_checkpoint();
        let mut wakers = self.wakers.lock();
        if self.wait_is_over(checkpoint, seq_no) {
            if let Some(id) = id.take() {
                wakers.waiting.remove(&id);
            }
            return Poll::Ready(checkpoint);
        }
        // Registered under the tracker lock, so an advance after the check above finds it.
        let id = *id.get_or_insert_with(|| {
            wakers.next_id += 1;
            wakers.next_id
        });
        match wakers.waiting.get_mut(&id) {
            Some((_, registered)) if registered.will_wake(waker) => {}
            Some((_, registered)) => registered.clone_from(waker),
            None => {
                wakers.waiting.insert(id, (seq_no, waker.clone()));
            }
        }
        Poll::Pending
    }

    /// Unregisters the task wait `id` (dropped before it was over).
    fn unregister(&self, id: u64) {
        self.wakers.lock().waiting.remove(&id);
    }

    /// How many task waits are registered (waiting, not yet woken).
    pub(crate) fn task_waits(&self) -> usize {
        self.wakers.lock().waiting.len()
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
            if self.wait_is_over(checkpoint, seq_no) || cancelled.load(Ordering::Acquire) {
                return checkpoint;
            }
            if tracker.wait_until(&self.changed, deadline) {
                return tracker.persisted_checkpoint();
            }
        }
    }

    /// Wakes every waiter, thread or task, so that each checks its wait again (thread waits
    /// whose cancel flag was set return).
    pub(crate) fn wake_waiters(&self) {
        let tracker = self.tracker.lock();
        self.changed.notify_all();
        let woken = self.wakers.lock().take_reached(None);
        drop(tracker);
        woken.into_iter().for_each(Waker::wake);
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

/// A task's wait for a shard's global (persisted) checkpoint to reach a sequence number: a
/// future that resolves to the checkpoint once it reaches the target, or at once when the
/// shard is closing or has failed (the checkpoint then, possibly below the target).
///
/// It needs no runtime and holds no thread: its waker is registered with the shard and woken
/// by the advance that reaches its target, by a close or a failure. It has no deadline of its
/// own: wrap it in the runtime's timeout. Dropping it unregisters its waker, so an abandoned
/// wait costs nothing afterwards ([`crate::ShardEngine::checkpoint_task_waits`] counts the
/// registered ones).
#[must_use = "a future does nothing unless polled"]
pub struct GlobalCheckpointWait {
    /// The shard whose checkpoints are waited on (kept alive by the wait).
    shard: Arc<ShardInner>,
    seq_no: SeqNo,
    /// The wait's registration, once a poll found it pending.
    id: Option<u64>,
}

impl GlobalCheckpointWait {
    /// A wait on the checkpoints of `shard` for `seq_no`.
    pub(super) fn new(shard: Arc<ShardInner>, seq_no: SeqNo) -> Self {
        GlobalCheckpointWait {
            shard,
            seq_no,
            id: None,
        }
    }
}

impl Future for GlobalCheckpointWait {
    type Output = SeqNo;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<SeqNo> {
        let this = self.get_mut();
        this.shard
            .checkpoints
            .poll_persisted(this.seq_no, &mut this.id, context.waker())
    }
}

impl Drop for GlobalCheckpointWait {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.shard.checkpoints.unregister(id);
        }
    }
}
