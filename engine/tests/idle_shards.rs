//! The cost of a shard: background work of every shard runs on the node-wide scheduler (a
//! timer and a few workers), not on a thread per shard, and still keeps each shard's refresh
//! interval, `async` translog fsync interval, translog flush threshold and lease expiry; an
//! idle shard holds no tantivy writer (no indexing, segment-updater or merge threads, no lock
//! file), which the next write opens again.
//!
//! One test function: it counts the process's threads, which tests running in parallel in the
//! same binary would disturb.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use tandem_engine::shard::ShardConfig;
use tandem_engine::{Durability, PrimaryTerm, SeqNo, ShardEngine};

/// Shards opened at once.
const SHARDS: usize = 40;
/// Longest wait for background work that is due within a second.
const WITHIN: Duration = Duration::from_secs(20);

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("reading /proc/self/task")
        .count()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < WITHIN, "{what}");
        std::thread::sleep(Duration::from_millis(5));
    }
    started.elapsed()
}

fn shard_config(number: usize) -> ShardConfig {
    ShardConfig {
        refresh_interval: Some(Duration::from_millis(200)),
        // Every other shard acknowledges before its fsync.
        durability: if number.is_multiple_of(2) {
            Durability::Request
        } else {
            Durability::Async {
                interval: Duration::from_millis(150),
            }
        },
        writer_idle_release: Duration::from_secs(1),
        ..manual_config()
    }
}

fn create(dir: &Path, number: usize) -> ShardEngine {
    ShardEngine::create(
        &dir.join(number.to_string()),
        mapper(),
        shard_config(number),
        PrimaryTerm(1),
    )
    .expect("creating a shard")
}

#[test]
fn shards_share_the_scheduler_keep_their_intervals_and_hold_no_idle_writer() {
    let dir = tempfile::tempdir().unwrap();
    // The scheduler starts with the first shard.
    let first = create(dir.path(), 0);
    let before = threads();
    let mut shards = vec![first];
    shards.extend((1..SHARDS).map(|number| create(dir.path(), number)));
    // Threads of writers just closed and of helpers freeing memory exit by themselves.
    wait_until("idle shards add no thread each", || threads() <= before + 2);
    assert!(
        shards.iter().all(|shard| !shard.writer_is_open()),
        "a shard never written holds no writer"
    );

    // Refresh on the interval, without a call: every shard's write becomes searchable.
    for (number, shard) in shards.iter().enumerate() {
        shard.index(doc(number as u64, "x")).unwrap();
        assert!(shard.writer_is_open(), "a write opens the writer");
    }
    let waited = wait_until("every shard refreshed on its interval", || {
        shards.iter().all(|shard| shard.doc_count() == 1)
    });
    assert!(
        waited >= Duration::from_millis(100),
        "not before the interval: {waited:?}"
    );

    // Async durability: the background fsync makes every write durable within its interval.
    for (number, shard) in shards.iter().enumerate() {
        let reached = shard.wait_for_global_checkpoint(SeqNo(0), WITHIN);
        assert_eq!(reached, SeqNo(0), "shard {number}");
    }

    // Idle again: the writers close, and a later write reopens one and is kept.
    wait_until("idle writers closed", || {
        shards.iter().all(|shard| !shard.writer_is_open())
    });
    wait_until("closed writers leave no thread", || threads() <= before + 2);
    shards[1].index(doc(100, "after idle")).unwrap();
    assert!(shards[1].writer_is_open());
    wait_until("a reopened writer's write refreshed", || {
        shards[1].doc_count() == 2
    });

    // The translog flush threshold commits a shard whose refresh is off.
    let mut flushed = shards.pop().unwrap();
    flushed
        .update_dynamic_config(tandem_engine::shard::DynamicShardConfig {
            refresh_interval: None,
            translog_flush_threshold_bytes: 64 * 1024,
            ..flushed.dynamic_config()
        })
        .unwrap();
    let refreshes = flushed.stats().refresh_count;
    for n in 0..200 {
        flushed.index(doc(1000 + n, &"y".repeat(1000))).unwrap();
    }
    wait_until("the flush threshold committed", || {
        let stats = flushed.stats();
        stats.refresh_count > refreshes && stats.translog_size_in_bytes <= 64 * 1024
    });

    // Lease expiry runs on the scheduler too.
    flushed
        .update_dynamic_config(tandem_engine::shard::DynamicShardConfig {
            retention_lease_period: Duration::from_millis(100),
            ..flushed.dynamic_config()
        })
        .unwrap();
    flushed
        .add_retention_lease("gone", SeqNo(0), "test")
        .unwrap();
    wait_until("the lease expired", || {
        flushed.retention_leases().leases.is_empty()
    });

    // Closed and reopened, every write is there.
    let path = flushed.dir().to_path_buf();
    flushed.close().unwrap();
    flushed = ShardEngine::open(&path, mapper(), shard_config(SHARDS - 1)).unwrap();
    // The open releases its writer at once unless a merge of the reopened segments is still
    // running (a loaded machine); the idle check releases it once the merge is done.
    wait_until("a reopened idle shard holds no writer", || {
        !flushed.writer_is_open()
    });
    assert!(flushed.get("doc-1199").unwrap().is_some());
    assert_eq!(flushed.doc_count(), 201);
    drop(flushed);
    drop(shards);
}
