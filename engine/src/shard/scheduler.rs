//! The node-wide scheduler of the shards' background work: one timer thread and a fixed pool
//! of [`WORKERS`] threads run every open shard's periodic pass (refresh on its interval,
//! translog fsync under `async` durability, flush at the translog threshold, lease expiry),
//! so an idle shard costs an entry in a heap instead of a thread.
//!
//! Guarantees:
//! - a shard's passes never overlap: a shard is back in the heap only once its pass ended;
//! - a pass runs no later than the time it asked for, plus the wait for a free worker (the
//!   pool is shared: a long refresh of one shard delays the others by at most its length on
//!   one worker);
//! - [`Scheduled::wake`] runs a pass as soon as a worker is free (the write path asks for one
//!   when the translog passes its flush threshold), and a wake during a pass runs another
//!   right after it;
//! - after [`Scheduled::cancel`] returns, no pass of that shard runs or will run.
//!
//! The queue lock is a leaf: nothing is locked under it, so a shard may call
//! [`Scheduled::wake`] holding any of its own locks.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// Threads running the passes. Passes are short for an idle shard; a refresh that commits
/// holds a worker for its commit (about 100 ms for a second of heavy writes), so a few
/// workers keep many busy shards on their intervals.
pub(crate) const WORKERS: usize = 4;
/// Passes dispatched and not yet started are bounded by this many per worker (the timer waits
/// for room, so a slow pool never queues every shard at once).
const DISPATCH_QUEUE_PER_WORKER: usize = 64;

/// One periodic job: returns when it wants to run next.
pub(crate) trait Pass: Send + Sync + 'static {
    /// Runs the pass; `None` when the job is gone (its shard was dropped) and never runs
    /// again.
    fn run(&self) -> Option<Instant>;
}

struct Task {
    pass: Box<dyn Pass>,
    /// Held through every run: [`Scheduled::cancel`] takes it to wait for a run in progress.
    running: Mutex<()>,
    cancelled: AtomicBool,
}

/// Where a registered job stands, under the queue lock.
struct Entry {
    task: Arc<Task>,
    /// The heap entry that counts; older ones for this id are stale.
    generation: u64,
    in_flight: bool,
    /// A wake arrived during the run in flight: run again at once.
    woken: bool,
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<(Instant, u64, u64)>>,
    entries: HashMap<u64, Entry>,
    next_id: u64,
}

struct Shared {
    queue: Mutex<Queue>,
    changed: Condvar,
}

/// The scheduler; one per process ([`scheduler`]).
pub(crate) struct Scheduler {
    shared: Arc<Shared>,
}

/// The process's scheduler, started on first use.
pub(crate) fn scheduler() -> &'static Scheduler {
    static SCHEDULER: OnceLock<Scheduler> = OnceLock::new();
    SCHEDULER.get_or_init(Scheduler::start)
}

impl Scheduler {
    fn start() -> Scheduler {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
        });
        let (dispatch, dispatched) =
            crossbeam_channel::bounded(WORKERS * DISPATCH_QUEUE_PER_WORKER);
        for worker in 0..WORKERS {
            let (shared, dispatched) = (shared.clone(), dispatched.clone());
            std::thread::Builder::new()
                .name(format!("tandem-shard-worker-{worker}"))
                .spawn(move || work(&shared, &dispatched))
                .expect("spawning a shard scheduler worker");
        }
        let timer_shared = shared.clone();
        std::thread::Builder::new()
            .name("tandem-shard-timer".to_string())
            .spawn(move || time(&timer_shared, &dispatch))
            .expect("spawning the shard scheduler timer");
        Scheduler { shared }
    }

    /// Registers `pass`, first run at `first_run`.
    pub(crate) fn register(&self, pass: Box<dyn Pass>, first_run: Instant) -> Scheduled {
        let task = Arc::new(Task {
            pass,
            running: Mutex::new(()),
            cancelled: AtomicBool::new(false),
        });
        let mut queue = self.shared.queue.lock();
        let id = queue.next_id;
        queue.next_id += 1;
        queue.entries.insert(
            id,
            Entry {
                task,
                generation: 0,
                in_flight: false,
                woken: false,
            },
        );
        queue.heap.push(Reverse((first_run, id, 0)));
        drop(queue);
        self.shared.changed.notify_one();
        Scheduled {
            shared: self.shared.clone(),
            id,
        }
    }
}

/// A registered job; dropping it (or a clone) does not cancel it (call
/// [`Scheduled::cancel`]).
#[derive(Clone)]
pub(crate) struct Scheduled {
    shared: Arc<Shared>,
    id: u64,
}

impl Scheduled {
    /// Runs the job as soon as a worker is free (right after its run in progress, if any).
    pub(crate) fn wake(&self) {
        let mut queue = self.shared.queue.lock();
        let Some(entry) = queue.entries.get_mut(&self.id) else {
            return;
        };
        if entry.in_flight {
            entry.woken = true;
            return;
        }
        entry.generation += 1;
        let generation = entry.generation;
        queue
            .heap
            .push(Reverse((Instant::now(), self.id, generation)));
        drop(queue);
        self.shared.changed.notify_one();
    }

    /// Removes the job and waits for its run in progress, if any: no run starts afterwards.
    /// Must not be called from the job's own run.
    pub(crate) fn cancel(&self) {
        let removed = self.shared.queue.lock().entries.remove(&self.id);
        if let Some(entry) = removed {
            entry.task.cancelled.store(true, Ordering::Release);
            drop(entry.task.running.lock());
        }
    }
}

/// The timer: dispatches every job whose time has come, then sleeps until the next one.
fn time(shared: &Shared, dispatch: &crossbeam_channel::Sender<(u64, Arc<Task>)>) {
    let mut queue = shared.queue.lock();
    loop {
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(Reverse((at, id, generation))) = queue.heap.peek().copied() {
            if at > now {
                break;
            }
            queue.heap.pop();
            let Some(entry) = queue.entries.get_mut(&id) else {
                continue;
            };
            if entry.generation != generation || entry.in_flight {
                continue;
            }
            entry.in_flight = true;
            due.push((id, entry.task.clone()));
        }
        if !due.is_empty() {
            // Sent without the lock: a full channel waits for the workers, which need it.
            drop(queue);
            for job in due {
                if dispatch.send(job).is_err() {
                    return;
                }
            }
            queue = shared.queue.lock();
            continue;
        }
        match queue.heap.peek() {
            Some(Reverse((at, _, _))) => {
                let at = *at;
                shared.changed.wait_until(&mut queue, at);
            }
            None => shared.changed.wait(&mut queue),
        }
    }
}

/// A worker: runs dispatched jobs and puts them back in the heap at the time they ask for.
fn work(shared: &Shared, dispatched: &crossbeam_channel::Receiver<(u64, Arc<Task>)>) {
    while let Ok((id, task)) = dispatched.recv() {
        let next = {
            let _running = task.running.lock();
            if task.cancelled.load(Ordering::Acquire) {
                continue;
            }
            task.pass.run()
        };
        let mut queue = shared.queue.lock();
        let Some(next) = next else {
            queue.entries.remove(&id);
            continue;
        };
        let Some(entry) = queue.entries.get_mut(&id) else {
            continue;
        };
        entry.in_flight = false;
        entry.generation += 1;
        let at = if std::mem::take(&mut entry.woken) {
            Instant::now()
        } else {
            next
        };
        let generation = entry.generation;
        let earliest = queue
            .heap
            .peek()
            .is_none_or(|Reverse((first, _, _))| at < *first);
        queue.heap.push(Reverse((at, id, generation)));
        drop(queue);
        if earliest {
            shared.changed.notify_one();
        }
    }
}

/// The shortest time a pass may ask to wait: a pass that keeps asking for "now" does not spin.
pub(crate) const MIN_PASS_DELAY: Duration = Duration::from_millis(5);

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    struct Counting {
        runs: Arc<AtomicUsize>,
        every: Duration,
        busy: Duration,
        overlapping: Arc<AtomicBool>,
        running: AtomicBool,
    }

    impl Pass for Counting {
        fn run(&self) -> Option<Instant> {
            if self.running.swap(true, Ordering::SeqCst) {
                self.overlapping.store(true, Ordering::SeqCst);
            }
            std::thread::sleep(self.busy);
            self.runs.fetch_add(1, Ordering::SeqCst);
            self.running.store(false, Ordering::SeqCst);
            Some(Instant::now() + self.every)
        }
    }

    fn counting(
        every: Duration,
        busy: Duration,
    ) -> (Box<Counting>, Arc<AtomicUsize>, Arc<AtomicBool>) {
        let runs = Arc::new(AtomicUsize::new(0));
        let overlapping = Arc::new(AtomicBool::new(false));
        let pass = Box::new(Counting {
            runs: runs.clone(),
            every,
            busy,
            overlapping: overlapping.clone(),
            running: AtomicBool::new(false),
        });
        (pass, runs, overlapping)
    }

    fn wait_for(runs: &AtomicUsize, at_least: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < at_least {
            assert!(
                Instant::now() < deadline,
                "{} runs",
                runs.load(Ordering::SeqCst)
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn jobs_run_on_their_interval_never_overlap_and_stop_when_cancelled() {
        let (pass, runs, overlapping) =
            counting(Duration::from_millis(20), Duration::from_millis(2));
        let started = Instant::now();
        let job = scheduler().register(pass, Instant::now());
        wait_for(&runs, 5);
        // Five runs, four intervals apart at least.
        assert!(started.elapsed() >= Duration::from_millis(80));
        // Woken many times while it may be running: still one run at a time.
        for _ in 0..50 {
            job.wake();
        }
        wait_for(&runs, 7);
        job.cancel();
        let after_cancel = runs.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            runs.load(Ordering::SeqCst),
            after_cancel,
            "no run after cancel"
        );
        assert!(!overlapping.load(Ordering::SeqCst));
    }

    #[test]
    fn a_wake_runs_a_job_long_before_its_time() {
        let (pass, runs, _) = counting(Duration::from_secs(3600), Duration::ZERO);
        let job = scheduler().register(pass, Instant::now() + Duration::from_secs(3600));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(runs.load(Ordering::SeqCst), 0);
        job.wake();
        wait_for(&runs, 1);
        job.cancel();
    }

    #[test]
    fn many_jobs_share_the_workers() {
        let jobs: Vec<_> = (0..200)
            .map(|_| {
                let (pass, runs, _) = counting(Duration::from_millis(10), Duration::ZERO);
                (scheduler().register(pass, Instant::now()), runs)
            })
            .collect();
        for (_, runs) in &jobs {
            wait_for(runs, 3);
        }
        for (job, _) in &jobs {
            job.cancel();
        }
    }
}
