//! A task's wait on the global checkpoint ([`GlobalCheckpointWait`]) holds no thread and is
//! never lost: it is woken by the advance that reaches its target (and not by one that falls
//! short), by a close of the shard, and it unregisters itself when dropped, so an abandoned
//! long poll leaves nothing behind. Polled by hand with a waker that counts its wake-ups: no
//! runtime is involved.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use common::*;
use tandem_engine::shard::GlobalCheckpointWait;
use tandem_engine::SeqNo;

/// A waker that counts how often it was woken.
#[derive(Default)]
struct CountingWaker {
    woken: AtomicUsize,
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.woken.fetch_add(1, Ordering::SeqCst);
    }
}

impl CountingWaker {
    fn woken(&self) -> usize {
        self.woken.load(Ordering::SeqCst)
    }
}

fn poll(wait: &mut GlobalCheckpointWait, waker: &Arc<CountingWaker>) -> Poll<SeqNo> {
    let waker = Waker::from(waker.clone());
    Pin::new(wait).poll(&mut Context::from_waker(&waker))
}

#[test]
fn a_wait_is_woken_by_the_write_that_reaches_it_and_not_before() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    let waker = Arc::new(CountingWaker::default());
    let mut wait = shard.global_checkpoint_reached(SeqNo(1));
    assert_eq!(poll(&mut wait, &waker), Poll::Pending);
    assert_eq!(shard.checkpoint_task_waits(), 1);

    shard.index(doc(0, "short of the target")).unwrap();
    assert_eq!(shard.global_checkpoint(), SeqNo(0));
    assert_eq!(
        waker.woken(),
        0,
        "an advance short of the target wakes nobody"
    );
    assert_eq!(poll(&mut wait, &waker), Poll::Pending);
    assert_eq!(shard.checkpoint_task_waits(), 1, "polled again, still one");

    shard.index(doc(1, "reaches it")).unwrap();
    assert_eq!(waker.woken(), 1, "the advance to the target wakes the wait");
    assert_eq!(
        shard.checkpoint_task_waits(),
        0,
        "a woken wait is no longer registered"
    );
    assert_eq!(poll(&mut wait, &waker), Poll::Ready(SeqNo(1)));
}

#[test]
fn a_reached_target_is_ready_at_once_and_registers_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    shard.index(doc(0, "x")).unwrap();
    let waker = Arc::new(CountingWaker::default());
    let mut wait = shard.global_checkpoint_reached(SeqNo(0));
    assert_eq!(poll(&mut wait, &waker), Poll::Ready(SeqNo(0)));
    assert_eq!(shard.checkpoint_task_waits(), 0);
}

#[test]
fn a_dropped_wait_unregisters_its_waker() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    let waker = Arc::new(CountingWaker::default());
    let mut waits: Vec<GlobalCheckpointWait> = (0..100)
        .map(|_| shard.global_checkpoint_reached(SeqNo(0)))
        .collect();
    for wait in &mut waits {
        assert_eq!(poll(wait, &waker), Poll::Pending);
    }
    assert_eq!(shard.checkpoint_task_waits(), 100);
    waits.truncate(40);
    assert_eq!(shard.checkpoint_task_waits(), 40);
    drop(waits);
    assert_eq!(shard.checkpoint_task_waits(), 0);
    shard.index(doc(0, "x")).unwrap();
    assert_eq!(waker.woken(), 0, "dropped waits are not woken");
}

#[test]
fn closing_the_shard_ends_every_wait() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    let waker = Arc::new(CountingWaker::default());
    let mut wait = shard.global_checkpoint_reached(SeqNo(10));
    assert_eq!(poll(&mut wait, &waker), Poll::Pending);
    shard.set_closing(true);
    assert_eq!(waker.woken(), 1);
    assert_eq!(poll(&mut wait, &waker), Poll::Ready(SeqNo(-1)));
    let mut later = shard.global_checkpoint_reached(SeqNo(10));
    assert_eq!(
        poll(&mut later, &waker),
        Poll::Ready(SeqNo(-1)),
        "a wait on a closing shard is over at once"
    );
    shard.set_closing(false);
    let mut after = shard.global_checkpoint_reached(SeqNo(10));
    assert_eq!(poll(&mut after, &waker), Poll::Pending);
}

/// Many threads write while many waits are polled again on every wake-up from other threads:
/// each wait ends with the checkpoint at or past its target, none is left registered, and no
/// wake-up is lost (a lost one would leave its wait pending until the bound below).
#[test]
fn concurrent_writes_never_lose_a_wake_up() {
    const WAITS: i64 = 200;
    const WRITES: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let shard = Arc::new(create_shard(dir.path()));
    let pollers: Vec<_> = (0..4)
        .map(|thread| {
            let shard = shard.clone();
            std::thread::spawn(move || {
                let mut waits: Vec<(i64, GlobalCheckpointWait, Arc<CountingWaker>)> = (0..WAITS)
                    .filter(|target| target % 4 == thread)
                    .map(|target| {
                        let wait = shard.global_checkpoint_reached(SeqNo(target));
                        (target, wait, Arc::new(CountingWaker::default()))
                    })
                    .collect();
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut seen = vec![0; waits.len()];
                let mut first = true;
                while !waits.is_empty() {
                    assert!(Instant::now() < deadline, "a wake-up was lost");
                    let mut index = 0;
                    while index < waits.len() {
                        let (target, wait, waker) = &mut waits[index];
                        // Polled on its first round and after each wake-up only: a lost
                        // wake-up leaves it pending for good.
                        if first || waker.woken() != seen[index] {
                            seen[index] = waker.woken();
                            if let Poll::Ready(reached) = poll(wait, waker) {
                                assert!(reached >= SeqNo(*target), "{reached} < {target}");
                                drop(waits.swap_remove(index));
                                seen.swap_remove(index);
                                continue;
                            }
                        }
                        index += 1;
                    }
                    first = false;
                    std::thread::yield_now();
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..2)
        .map(|thread| {
            let shard = shard.clone();
            std::thread::spawn(move || {
                for n in 0..WRITES / 2 {
                    shard.index(doc(thread * 1000 + n, "x")).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    for poller in pollers {
        poller.join().unwrap();
    }
    assert_eq!(shard.checkpoint_task_waits(), 0);
}
