//! Merges never drop history at or above `min_retained_seq_no`, which never decreases
//! (DESIGN.md §7 invariant 4); history below it may go.

mod common;

use common::*;
use tandem_engine::shard::{DeleteRequest, WriteRequest};
use tandem_engine::{EngineError, SeqNo};

const DOCS: u64 = 400;

/// Indexes DOCS documents, then updates each of them `rounds` times (deleting every 10th in
/// the last round), refreshing after each round so several segments hold deleted docs.
fn churn(shard: &tandem_engine::ShardEngine, rounds: u64) {
    for round in 0..=rounds {
        let bulk: Vec<WriteRequest> = (0..DOCS)
            .map(|n| {
                if round == rounds && round > 0 && n % 10 == 0 {
                    WriteRequest::Delete(DeleteRequest::new(format!("doc-{n}")))
                } else {
                    WriteRequest::Index(doc(n, &format!("round-{round}")))
                }
            })
            .collect();
        for result in shard.bulk(bulk) {
            result.unwrap();
        }
        shard.refresh().unwrap();
    }
}

fn assert_history_from(shard: &tandem_engine::ShardEngine, from: SeqNo) {
    let max = shard.max_seq_no();
    let mut next = from.0;
    while next <= max.0 {
        let batch = shard.changes(SeqNo(next), max, 5000, usize::MAX).unwrap();
        for op in batch {
            assert_eq!(op.seq_no.0, next);
            next += 1;
        }
    }
    assert_eq!(next, max.0 + 1);
}

#[test]
fn force_merge_keeps_history_at_and_above_each_lease() {
    for lease_at in [0i64, 500, 1000, 1500] {
        let dir = tempfile::tempdir().unwrap();
        let shard = create_shard(dir.path());
        shard
            .add_retention_lease("follower", SeqNo(lease_at), "ccr")
            .unwrap();
        churn(&shard, 3);
        let before = shard.stats();
        assert!(before.segment_count > 1);
        shard.force_merge(1).unwrap();
        let min_retained = shard.min_retained_seq_no();
        assert_eq!(min_retained, SeqNo(lease_at), "the lease decides");
        assert_history_from(&shard, min_retained);
        assert_eq!(shard.doc_count(), DOCS - DOCS / 10);
        if lease_at > 0 {
            // Segments holding only history below the lease may merge and drop it.
            let after = shard.stats();
            assert!(after.doc_count_with_history <= before.doc_count_with_history);
        }
    }
}

#[test]
fn without_leases_merges_drop_history_and_reads_fail_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    churn(&shard, 2);
    shard.force_merge(1).unwrap();
    let stats = shard.stats();
    assert_eq!(stats.segment_count, 1);
    assert_eq!(
        stats.doc_count_with_history, stats.doc_count,
        "every deleted document was dropped"
    );
    let error = shard
        .changes(SeqNo(0), SeqNo(10), 100, usize::MAX)
        .unwrap_err();
    match &error {
        EngineError::MissingHistory { from, missing, .. } => {
            assert_eq!((*from, *missing), (SeqNo(0), SeqNo(0)));
        }
        other => panic!("expected MissingHistory, got {other}"),
    }
    assert!(
        error.to_string().contains("retention_lease.period"),
        "{error}"
    );
    // The newest operations (live documents) are still there.
    let last = shard.max_seq_no();
    assert_eq!(shard.changes(last, last, 1, usize::MAX).unwrap().len(), 1);
}

#[test]
fn heavy_updates_with_background_merges_lose_no_retained_history() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    shard
        .add_retention_lease("follower", SeqNo(0), "ccr")
        .unwrap();
    let mut renewed = SeqNo(0);
    for round in 0..12u64 {
        for start in (0..DOCS).step_by(50) {
            let bulk = (start..start + 50)
                .map(|n| WriteRequest::Index(doc(n, &format!("r{round}"))))
                .collect();
            for result in shard.bulk(bulk) {
                result.unwrap();
            }
            // Many small segments: the log merge policy has work to schedule at each refresh.
            shard.refresh().unwrap();
        }
        if round % 3 == 2 {
            renewed = SeqNo(shard.global_checkpoint().0 / 2);
            shard.renew_retention_lease("follower", renewed).unwrap();
        }
    }
    shard.refresh().unwrap();
    assert_eq!(shard.min_retained_seq_no(), renewed);
    assert_history_from(&shard, renewed);
    shard.force_merge(1).unwrap();
    assert_history_from(&shard, renewed);
}

#[test]
fn min_retained_seq_no_never_decreases() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    churn(&shard, 1);
    shard.refresh().unwrap();
    let high = shard.min_retained_seq_no();
    assert!(
        high.0 > 100,
        "no lease: retention follows the commits ({high})"
    );
    shard.add_retention_lease("late", SeqNo(10), "ccr").unwrap();
    shard.refresh().unwrap();
    assert_eq!(
        shard.min_retained_seq_no(),
        high,
        "a late lease cannot resurrect history"
    );
    drop(shard);
    let shard = reopen(dir.path());
    assert!(
        shard.min_retained_seq_no() >= high,
        "persisted in the commit"
    );
}

#[test]
fn leases_persist_expire_and_never_go_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    shard.add_retention_lease("a", SeqNo(5), "ccr").unwrap();
    shard.add_retention_lease("b", SeqNo(7), "ccr").unwrap();
    assert!(shard.renew_retention_lease("a", SeqNo(3)).is_err());
    shard.renew_retention_lease("a", SeqNo(9)).unwrap();
    assert!(shard.add_retention_lease("a", SeqNo(1), "ccr").is_err());
    drop(shard);
    let shard = reopen(dir.path());
    let leases = shard.retention_leases();
    assert_eq!(leases.leases["a"].retaining_seq_no, SeqNo(9));
    assert_eq!(leases.leases.len(), 2);
    let far_future = leases.leases["a"].timestamp_millis + 13 * 3600 * 1000;
    let expired = shard.expire_retention_leases(far_future).unwrap();
    assert_eq!(expired.len(), 2);
    assert!(shard.retention_leases().leases.is_empty());
    shard.remove_retention_lease("a").unwrap_err();
}
