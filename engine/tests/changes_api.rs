//! The changes API: contiguous, ordered, bounded batches from segments and the in-memory tail,
//! deletes and no-ops included; loud failures for missing history (DESIGN.md §7 invariant 3).

mod common;

use std::time::{Duration, Instant};

use common::*;
use tandem_engine::shard::DeleteRequest;
use tandem_engine::{EngineError, Operation, OperationKind, PrimaryTerm, SeqNo};

#[test]
fn reads_span_segments_and_the_tail_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    shard
        .add_retention_lease("reader", SeqNo(0), "test")
        .unwrap();
    for n in 0..30 {
        shard.index(doc(n, "a")).unwrap();
    }
    shard.refresh().unwrap();
    for n in 0..10 {
        shard.index(doc(n, "b")).unwrap();
    }
    shard.delete(DeleteRequest::new("doc-29")).unwrap();
    shard.refresh().unwrap();
    shard.no_op("filler").unwrap();
    for n in 10..15 {
        shard.index(doc(n, "tail")).unwrap();
    }
    assert!(
        shard.stats().tail_operations >= 6,
        "the last writes are in the tail only"
    );
    let history = full_history(&shard);
    assert_eq!(history.len(), 47);
    assert_eq!(history[0].4.as_deref(), Some("doc-0"));
    assert_eq!(history[30].2, 2, "update has version 2");
    assert_eq!(history[40].3, "delete");
    assert_eq!(history[41].3, "noop");
    assert_eq!(
        history[46].5.as_deref(),
        Some(&br#"{"n":14,"body":"tail"}"#[..])
    );
}

#[test]
fn batches_respect_count_and_byte_limits() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    for n in 0..100 {
        shard.index(doc(n, "x")).unwrap();
    }
    shard.refresh().unwrap();
    let batch = shard.changes(SeqNo(10), SeqNo(99), 7, usize::MAX).unwrap();
    assert_eq!(
        batch.iter().map(|op| op.seq_no.0).collect::<Vec<_>>(),
        (10..17).collect::<Vec<_>>()
    );
    let one = shard.changes(SeqNo(10), SeqNo(99), 100, 1).unwrap();
    assert_eq!(
        one.len(),
        1,
        "at least one op even when it exceeds max_bytes"
    );
    let some = shard.changes(SeqNo(0), SeqNo(99), 100, 300).unwrap();
    assert!(some.len() > 1 && some.len() < 100);
    assert!(
        shard
            .changes(SeqNo(100), SeqNo(200), 10, usize::MAX)
            .unwrap()
            .is_empty(),
        "beyond max_seq_no"
    );
    assert!(matches!(
        shard.changes(SeqNo(5), SeqNo(4), 10, usize::MAX),
        Err(EngineError::InvalidArgument(_))
    ));
    assert!(shard.changes(SeqNo(-3), SeqNo(4), 10, usize::MAX).is_err());
    assert!(shard.changes(SeqNo(0), SeqNo(4), 0, usize::MAX).is_err());
}

#[test]
fn follower_gaps_end_a_batch_without_error() {
    let dir = tempfile::tempdir().unwrap();
    let follower = create_follower(dir.path());
    let op = |seq_no: i64| Operation {
        seq_no: SeqNo(seq_no),
        primary_term: PrimaryTerm(1),
        version: 1,
        kind: OperationKind::Index {
            id: format!("d{seq_no}"),
            source: b"{}".to_vec(),
        },
    };
    follower
        .apply_operations(&[op(0), op(1), op(3), op(4)], SeqNo(-1))
        .unwrap();
    assert_eq!(follower.local_checkpoint(), SeqNo(1));
    assert_eq!(follower.max_seq_no(), SeqNo(4));
    let batch = follower
        .changes(SeqNo(0), SeqNo(4), 10, usize::MAX)
        .unwrap();
    assert_eq!(batch.len(), 2, "stops at the gap above the checkpoint");
    follower.apply_operations(&[op(2)], SeqNo(-1)).unwrap();
    assert_eq!(follower.local_checkpoint(), SeqNo(4));
    assert_eq!(
        follower
            .changes(SeqNo(0), SeqNo(4), 10, usize::MAX)
            .unwrap()
            .len(),
        5
    );
}

#[test]
fn long_poll_waits_for_the_global_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let shard = std::sync::Arc::new(create_shard(dir.path()));
    let started = Instant::now();
    assert_eq!(
        shard.wait_for_global_checkpoint(SeqNo(0), Duration::from_millis(50)),
        SeqNo(-1)
    );
    assert!(
        started.elapsed() >= Duration::from_millis(45),
        "waited for the timeout"
    );
    let writer = {
        let shard = shard.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            for n in 0..3 {
                shard.index(doc(n, "x")).unwrap();
            }
        })
    };
    let reached = shard.wait_for_global_checkpoint(SeqNo(2), Duration::from_secs(30));
    assert!(reached >= SeqNo(2));
    writer.join().unwrap();
}
