//! The lock order of a shard, enforced: every lock of a shard is a [`RankedMutex`] or a
//! [`RankedRwLock`] with a [`LockRank`], and a thread may take a lock only while every lock it
//! already holds has a lower rank. The order itself is stated in the shard module's doc
//! (`super`); [`LockRank`] is the same list in code, and a test checks that they agree.
//!
//! In debug builds (every test run) taking a lock out of order panics *before* blocking, naming
//! both locks, so an inversion is found by the first test that takes the two locks, not by the
//! deadlock it may cause under load. In release builds the wrappers are the parking_lot locks
//! and nothing more.
//!
//! Locks that other modules own (a version-map stripe, the writer slot, the history cache, the
//! translog) are not ranked here; where they sit in the order is stated in the shard module's
//! doc.

use std::ops::{Deref, DerefMut};
use std::time::Instant;

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The rank of each lock of a shard: a thread holding a lock may only take locks of a higher
/// rank. Listed in the order of the shard module's doc.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub(crate) enum LockRank {
    /// `Commits::refresh_lock`: one refresh or merge selection at a time.
    Refresh = 0,
    /// `ShardInner::config`: the dynamic settings.
    Config,
    /// `WritePath::batches`: shared by write batches, exclusive while a commit fixes its payload.
    Batches,
    /// `WritePath::tail`: operations not yet in a refreshed reader.
    Tail,
    /// `Checkpoints::tracker`: sequence numbers processed and persisted.
    Tracker,
    /// `Commits::searcher`: the reader of the last refresh.
    Searcher,
    /// `Retention::leases`: the retention leases.
    Leases,
    /// `Commits::merging`: the segments being merged.
    Merging,
    /// `ShardInner::failure`: the latched failure; nothing is taken while it is held.
    Failure,
}

#[cfg(any(debug_assertions, test))]
impl LockRank {
    /// Every rank, lowest first: the debug-build check names the highest rank a thread holds
    /// from it, and a test checks the shard module's doc lists the ranks in this order. Release
    /// builds check nothing and do without it.
    pub(crate) const ALL: [LockRank; 9] = [
        LockRank::Refresh,
        LockRank::Config,
        LockRank::Batches,
        LockRank::Tail,
        LockRank::Tracker,
        LockRank::Searcher,
        LockRank::Leases,
        LockRank::Merging,
        LockRank::Failure,
    ];
}

#[cfg(debug_assertions)]
thread_local! {
    /// Bit `rank` is set while this thread holds a lock of that rank.
    static HELD: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Proof that this thread registered a lock of `rank` as held; unregisters it when dropped.
struct Held {
    #[cfg(debug_assertions)]
    rank: LockRank,
}

impl Held {
    /// Registers `rank` as held, panicking if this thread holds a lock of the same or a higher
    /// rank. Called before blocking on the lock.
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn acquire(rank: LockRank) -> Held {
        #[cfg(debug_assertions)]
        {
            HELD.with(|held| {
                let bits = held.get();
                let higher = bits >> (rank as u32);
                if higher != 0 {
                    let highest = LockRank::ALL
                        .iter()
                        .rev()
                        .find(|held_rank| bits & (1 << (**held_rank as u32)) != 0);
                    panic!(
                        "shard lock order violated: taking {rank:?} while holding {highest:?} \
                         (see the lock order in the shard module's doc)"
                    );
                }
                held.set(bits | (1 << (rank as u32)));
            });
            Held { rank }
        }
        #[cfg(not(debug_assertions))]
        {
            let _ = rank;
            Held {}
        }
    }
}

impl Drop for Held {
    #[cfg_attr(not(debug_assertions), inline(always))]
    fn drop(&mut self) {
        #[cfg(debug_assertions)]
        HELD.with(|held| held.set(held.get() & !(1 << (self.rank as u32))));
    }
}

/// A mutex with a place in the shard's lock order.
pub(crate) struct RankedMutex<T> {
    rank: LockRank,
    lock: Mutex<T>,
}

/// The guard of a [`RankedMutex`].
pub(crate) struct RankedMutexGuard<'a, T> {
    // Field order: the lock is released before the rank is unregistered.
    guard: MutexGuard<'a, T>,
    _held: Held,
}

impl<T> RankedMutex<T> {
    /// A mutex of `rank` holding `value`.
    pub(crate) fn new(rank: LockRank, value: T) -> Self {
        RankedMutex {
            rank,
            lock: Mutex::new(value),
        }
    }

    /// Locks it (in debug builds, panics if the lock order forbids it on this thread).
    pub(crate) fn lock(&self) -> RankedMutexGuard<'_, T> {
        let held = Held::acquire(self.rank);
        RankedMutexGuard {
            guard: self.lock.lock(),
            _held: held,
        }
    }
}

impl<T> RankedMutexGuard<'_, T> {
    /// Waits on `condvar` until notified or `deadline`, releasing the lock meanwhile; true if
    /// the deadline passed. The thread stays registered as holding the lock: it takes no other
    /// lock while it waits.
    pub(crate) fn wait_until(&mut self, condvar: &Condvar, deadline: Instant) -> bool {
        condvar.wait_until(&mut self.guard, deadline).timed_out()
    }
}

impl<T> Deref for RankedMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for RankedMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

/// A reader-writer lock with a place in the shard's lock order.
pub(crate) struct RankedRwLock<T> {
    rank: LockRank,
    lock: RwLock<T>,
}

/// The shared guard of a [`RankedRwLock`].
pub(crate) struct RankedReadGuard<'a, T> {
    guard: RwLockReadGuard<'a, T>,
    _held: Held,
}

/// The exclusive guard of a [`RankedRwLock`].
pub(crate) struct RankedWriteGuard<'a, T> {
    guard: RwLockWriteGuard<'a, T>,
    _held: Held,
}

impl<T> RankedRwLock<T> {
    /// A lock of `rank` holding `value`.
    pub(crate) fn new(rank: LockRank, value: T) -> Self {
        RankedRwLock {
            rank,
            lock: RwLock::new(value),
        }
    }

    /// Takes it shared (in debug builds, panics if the lock order forbids it on this thread).
    pub(crate) fn read(&self) -> RankedReadGuard<'_, T> {
        let held = Held::acquire(self.rank);
        RankedReadGuard {
            guard: self.lock.read(),
            _held: held,
        }
    }

    /// Takes it exclusively (in debug builds, panics if the lock order forbids it on this
    /// thread).
    pub(crate) fn write(&self) -> RankedWriteGuard<'_, T> {
        let held = Held::acquire(self.rank);
        RankedWriteGuard {
            guard: self.lock.write(),
            _held: held,
        }
    }
}

impl<T> Deref for RankedReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> Deref for RankedWriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for RankedWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_module_doc_states_the_ranks_in_order() {
        let doc: String = include_str!("mod.rs")
            .lines()
            .take_while(|line| line.starts_with("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        let order = doc
            .split("Lock order")
            .nth(1)
            .expect("the shard module's doc has a `Lock order` section");
        let mut from = 0;
        for rank in LockRank::ALL {
            let name = format!("{rank:?}");
            let at = order[from..]
                .find(&format!("`{name}`"))
                .unwrap_or_else(|| panic!("{name} is missing or out of order in the doc"));
            from += at + name.len();
        }
    }

    #[test]
    fn locks_taken_in_rank_order_are_allowed_and_released() {
        let tail = RankedMutex::new(LockRank::Tail, 1);
        let searcher = RankedRwLock::new(LockRank::Searcher, 2);
        {
            let _tail = tail.lock();
            let _searcher = searcher.read();
        }
        // Both were released: the lower rank may be taken again.
        let _tail = tail.lock();
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "taking Tail while holding Some(Tracker)")]
    fn a_lower_rank_taken_under_a_higher_one_panics() {
        let tail = RankedMutex::new(LockRank::Tail, ());
        let tracker = RankedMutex::new(LockRank::Tracker, ());
        let _tracker = tracker.lock();
        let _tail = tail.lock();
    }

    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "taking Batches while holding Some(Batches)")]
    fn a_lock_taken_twice_by_one_thread_panics() {
        let batches = RankedRwLock::new(LockRank::Batches, ());
        let _first = batches.read();
        let _second = batches.read();
    }
}
