//! Retained history must not stop merging. Under an update-heavy load with the whole history
//! retained (a lease at 0, or `index.soft_deletes.retention.operations` past the history), every
//! segment soon holds a retained deleted document, and `RetentionMergePolicy` alone never merges
//! such a segment (a tantivy merge drops deleted documents, and they are the history): the
//! segment count, and the memory each segment holds, would then grow with every refresh (a
//! 30-minute soak once had 2,366 segments on the leader after 10 minutes). Elasticsearch keeps
//! merging, its soft deletes surviving merges; the engine carries the history forward
//! (`shard::carry`). Without it the first test ends with one segment per refresh.

mod common;

use common::*;
use std::time::{Duration, Instant};
use tandem_engine::shard::WriteRequest;
use tandem_engine::SeqNo;

const IDS: u64 = 100;
const ROUNDS: u64 = 200;
const PER_ROUND: u64 = 20;
/// What a bounded shard holds after ROUNDS refreshes of updates, merges having run: tantivy's
/// log merge policy keeps a few segments per size level.
const MAX_SEGMENTS: usize = 40;

#[test]
fn an_update_heavy_load_under_retained_history_keeps_merging_and_keeps_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    // The whole history is retained.
    shard
        .add_retention_lease("follower", SeqNo(0), "ccr")
        .unwrap();
    let mut n = 0;
    for _ in 0..ROUNDS {
        let bulk: Vec<WriteRequest> = (0..PER_ROUND)
            .map(|_| {
                n += 1;
                WriteRequest::Index(doc(n % IDS, &format!("update-{n}")))
            })
            .collect();
        for result in shard.bulk(bulk) {
            result.unwrap();
        }
        shard.refresh().unwrap();
    }
    refresh_after_merges(&shard);
    let segments = shard.stats().segment_count;
    println!("{segments} segments after {ROUNDS} refreshes");
    assert!(
        segments <= MAX_SEGMENTS,
        "{segments} segments after {ROUNDS} refreshes: retained history stopped merging"
    );
    // Every operation is still there, once, in order.
    let history = full_history(&shard);
    assert_eq!(history.len() as u64, ROUNDS * PER_ROUND);
    for (expected, entry) in history.iter().enumerate() {
        assert_eq!(entry.0, expected as i64);
    }
    assert_eq!(shard.doc_count(), IDS);
}

/// Writers keep updating while refreshes carry groups forward: an operation deleted after a
/// group's copies were read and before its merge's commit must be copied too, or the merge
/// drops it. (That the copies and their anchor go to tantivy as one batch, so that no segment
/// holds copies without a live document, is proven by `crash_consistency`: it loses history
/// within a few cycles when they go one by one.)
#[test]
fn history_deleted_while_a_group_is_carried_survives_its_merge() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    const WRITERS: u64 = 2;
    const BULKS_PER_WRITER: u64 = 1500;
    const PER_BULK: u64 = 5;
    const UPDATED_IDS: u64 = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let shard = Arc::new(create_shard(dir.path()));
    shard
        .add_retention_lease("follower", SeqNo(0), "ccr")
        .unwrap();
    let running = Arc::new(AtomicU64::new(WRITERS));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let shard = shard.clone();
            let running = running.clone();
            std::thread::spawn(move || {
                let mut n = w;
                for _ in 0..BULKS_PER_WRITER {
                    let bulk: Vec<WriteRequest> = (0..PER_BULK)
                        .map(|_| {
                            n += WRITERS;
                            WriteRequest::Index(doc(n * 7919 % UPDATED_IDS, &format!("w{w}-{n}")))
                        })
                        .collect();
                    for result in shard.bulk(bulk) {
                        result.unwrap();
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                running.fetch_sub(1, Ordering::Relaxed);
            })
        })
        .collect();
    let mut refreshes = 0;
    while running.load(Ordering::Relaxed) > 0 {
        shard.refresh().unwrap();
        refreshes += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    for writer in writers {
        writer.join().unwrap();
    }
    refresh_after_merges(&shard);
    let history = full_history(&shard);
    assert_eq!(history.len() as i64, shard.max_seq_no().0 + 1);
    for (expected, entry) in history.iter().enumerate() {
        assert_eq!(entry.0, expected as i64, "history has a hole");
    }
    let segments = shard.stats().segment_count;
    println!(
        "{segments} segments after {refreshes} refreshes of {} operations",
        history.len()
    );
    assert!(segments <= MAX_SEGMENTS, "{segments} segments");
    assert_eq!(shard.doc_count(), UPDATED_IDS);
}

/// Waits (at most two minutes) for the merges running to end, then refreshes.
fn refresh_after_merges(shard: &tandem_engine::shard::ShardEngine) {
    let started = Instant::now();
    while shard.merging_segment_count() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "merges never ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    shard.refresh().unwrap();
}
