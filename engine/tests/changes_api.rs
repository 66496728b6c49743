//! The changes API: contiguous, ordered, bounded batches from segments and the in-memory tail,
//! deletes and no-ops included; loud failures for missing history (DESIGN.md §7 invariant 3).

mod common;

use std::time::{Duration, Instant};

use common::*;
use tandem_engine::shard::{ChangesRequest, DeleteRequest, APPLY_CHUNK};
use tandem_engine::{
    Durability, EngineError, Operation, OperationKind, PrimaryTerm, SeqNo, ShardConfig, ShardEngine,
};

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
fn a_follower_write_longer_than_a_chunk_is_checked_first_and_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let follower = create_follower(dir.path());
    let index = |seq_no: usize, id: String, source: &[u8]| Operation {
        seq_no: SeqNo(seq_no as i64),
        primary_term: PrimaryTerm(1),
        version: 1,
        kind: OperationKind::Index {
            id,
            source: source.to_vec(),
        },
    };
    let count = 3 * APPLY_CHUNK + 17;
    let operations: Vec<Operation> = (0..count)
        .map(|seq_no| index(seq_no, format!("d{seq_no}"), br#"{"n":1}"#))
        .collect();

    // An invalid id in the last chunk: refused before anything is applied.
    let mut bad_id = operations.clone();
    bad_id[count - 1] = index(count - 1, String::new(), b"{}");
    assert!(matches!(
        follower.apply_operations(&bad_id, SeqNo(-1)),
        Err(EngineError::InvalidArgument(_))
    ));
    assert_eq!(follower.max_seq_no(), SeqNo(-1), "nothing applied");

    // A source that does not parse, in the third chunk: the chunks before it are applied.
    let broken = 2 * APPLY_CHUNK + 5;
    let mut bad_source = operations.clone();
    bad_source[broken] = index(broken, format!("d{broken}"), b"{not json");
    assert!(follower.apply_operations(&bad_source, SeqNo(-1)).is_err());
    assert_eq!(
        follower.local_checkpoint(),
        SeqNo(2 * APPLY_CHUNK as i64 - 1)
    );

    // The whole write again: only what is missing is applied, once.
    assert_eq!(
        follower.apply_operations(&operations, SeqNo(-1)).unwrap(),
        count - 2 * APPLY_CHUNK
    );
    assert_eq!(follower.local_checkpoint(), SeqNo(count as i64 - 1));
    follower.refresh().unwrap();
    let history = full_history(&follower);
    assert_eq!(history.len(), count);
    assert!(history
        .iter()
        .enumerate()
        .all(|(at, entry)| entry.0 == at as i64 && entry.3 == "index"));
    assert_eq!(follower.stats().doc_count, count as u64);
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

fn changes_request(from: i64, max: usize, poll: Duration) -> ChangesRequest {
    ChangesRequest {
        from_seq_no: SeqNo(from),
        max_operation_count: max,
        max_batch_size: usize::MAX,
        poll_timeout: poll,
        expected_history_uuid: None,
    }
}

#[test]
fn shard_changes_serves_only_up_to_the_global_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = ShardConfig {
        durability: Durability::Async {
            interval: Duration::from_secs(3600),
        },
        ..manual_config()
    };
    let shard = ShardEngine::create(dir.path(), mapper(), config, PrimaryTerm(1)).unwrap();
    for n in 0..5 {
        shard.index(doc(n, "durable")).unwrap();
    }
    shard.sync_translog().unwrap();
    for n in 5..8 {
        shard.index(doc(n, "not yet durable")).unwrap();
    }
    assert_eq!(shard.global_checkpoint(), SeqNo(4));
    assert_eq!(shard.max_seq_no(), SeqNo(7));
    let response = shard
        .shard_changes(&changes_request(2, 100, Duration::ZERO))
        .unwrap();
    let seq_nos: Vec<i64> = response.operations.iter().map(|op| op.seq_no.0).collect();
    assert_eq!(seq_nos, [2, 3, 4], "nothing above the global checkpoint");
    assert_eq!(response.global_checkpoint, SeqNo(4));
    assert_eq!(response.max_seq_no, SeqNo(7));
    assert_eq!(response.max_seq_no_of_updates, SeqNo(-1), "no update yet");
    let bounded = shard
        .shard_changes(&changes_request(0, 2, Duration::ZERO))
        .unwrap();
    assert_eq!(bounded.operations.len(), 2, "max_operation_count");
    let caught_up = shard
        .shard_changes(&changes_request(5, 100, Duration::ZERO))
        .unwrap();
    assert!(caught_up.operations.is_empty());
}

#[test]
fn shard_changes_long_polls_when_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let shard = std::sync::Arc::new(create_shard(dir.path()));
    shard.index(doc(0, "first")).unwrap();
    let idle = shard
        .shard_changes(&changes_request(1, 100, Duration::from_millis(60)))
        .unwrap();
    assert!(idle.operations.is_empty());
    assert!(idle.took >= Duration::from_millis(55), "{:?}", idle.took);
    let writer = {
        let shard = shard.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            shard.index(doc(1, "second")).unwrap();
        })
    };
    let woken = shard
        .shard_changes(&changes_request(1, 100, Duration::from_secs(30)))
        .unwrap();
    writer.join().unwrap();
    assert_eq!(woken.operations.len(), 1);
    assert_eq!(woken.operations[0].id(), Some("doc-1"));
    assert!(
        woken.took < Duration::from_secs(20),
        "woken by the write, not the timeout"
    );
}

#[test]
fn shard_changes_refuses_another_history_and_pruned_history() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    for n in 0..10 {
        shard.index(doc(n % 3, "v")).unwrap();
    }
    let mut request = changes_request(0, 100, Duration::ZERO);
    request.expected_history_uuid = Some("not-this-one".to_string());
    let error = shard.shard_changes(&request).unwrap_err();
    assert!(
        matches!(error, EngineError::HistoryUuidMismatch { .. }),
        "{error}"
    );
    assert!(error.to_string().starts_with("unexpected history uuid"));
    request.expected_history_uuid = Some(shard.history_uuid());
    assert_eq!(shard.shard_changes(&request).unwrap().operations.len(), 10);

    // No lease and no retained operations: a refresh and merge drop the updated history.
    shard.refresh().unwrap();
    shard.force_merge(1).unwrap();
    let error = shard.shard_changes(&request).unwrap_err();
    assert!(
        matches!(error, EngineError::MissingHistory { .. }),
        "{error}"
    );
    assert!(error
        .to_string()
        .contains("[index.soft_deletes.retention_lease.period]"));
}

#[test]
fn a_cancelled_long_poll_returns_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let shard = std::sync::Arc::new(create_shard(dir.path()));
    let cancelled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (shard, cancelled) = (shard.clone(), cancelled.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            let response = shard
                .shard_changes_or_cancel(
                    &changes_request(0, 10, Duration::from_secs(60)),
                    &cancelled,
                )
                .unwrap();
            (response, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    cancelled.store(true, std::sync::atomic::Ordering::Release);
    shard.wake_checkpoint_waiters();
    let (response, waited) = poller.join().unwrap();
    assert!(response.operations.is_empty());
    assert!(
        waited < Duration::from_secs(30),
        "cancel ended the wait: {waited:?}"
    );
}
