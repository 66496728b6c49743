//! [`CountingAllocator`]: the system allocator, counting the bytes allocated now and the most
//! allocated at once since the last reset, for tests that measure memory instead of inferring
//! it. A test binary installs it as its `#[global_allocator]`; the counts are process-wide, so
//! tests that measure them run one at a time.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

static ALLOCATED_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_ALLOCATED_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting (see the module documentation).
pub struct CountingAllocator;

impl CountingAllocator {
    /// Starts a new peak measurement; returns the bytes allocated now.
    pub fn reset_peak() -> usize {
        let now = ALLOCATED_BYTES.load(Ordering::Relaxed);
        PEAK_ALLOCATED_BYTES.store(now, Ordering::Relaxed);
        now
    }

    /// The most bytes allocated at once since the last [`CountingAllocator::reset_peak`].
    pub fn peak() -> usize {
        PEAK_ALLOCATED_BYTES.load(Ordering::Relaxed)
    }

    /// The bytes allocated now.
    pub fn allocated() -> usize {
        ALLOCATED_BYTES.load(Ordering::Relaxed)
    }
}

// SAFETY: every call is passed to the system allocator unchanged; the counters are atomics.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the system allocator's.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            let now = ALLOCATED_BYTES.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK_ALLOCATED_BYTES.fetch_max(now, Ordering::Relaxed);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.dealloc(pointer, layout) };
        ALLOCATED_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}
