//! The primary path, real-time get, optimistic concurrency, refresh and reopen.

mod common;

use common::*;
use tandem_engine::shard::{DeleteRequest, IndexRequest, WriteOutcome};
use tandem_engine::{EngineError, PrimaryTerm, SeqNo};

#[test]
fn primary_assigns_seq_nos_versions_and_outcomes() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    let first = shard.index(doc(1, "a")).unwrap();
    assert_eq!(
        (first.seq_no, first.version, first.outcome),
        (SeqNo(0), 1, WriteOutcome::Created)
    );
    let second = shard.index(doc(1, "b")).unwrap();
    assert_eq!(
        (second.seq_no, second.version, second.outcome),
        (SeqNo(1), 2, WriteOutcome::Updated)
    );
    let deleted = shard.delete(DeleteRequest::new("doc-1")).unwrap();
    assert_eq!(
        (deleted.seq_no, deleted.version, deleted.outcome),
        (SeqNo(2), 3, WriteOutcome::Deleted)
    );
    let missing = shard.delete(DeleteRequest::new("doc-404")).unwrap();
    assert_eq!(missing.outcome, WriteOutcome::NotFound);
    let again = shard.index(doc(1, "c")).unwrap();
    assert_eq!((again.version, again.outcome), (4, WriteOutcome::Created));
    assert_eq!(shard.local_checkpoint(), SeqNo(4));
    assert_eq!(
        shard.global_checkpoint(),
        SeqNo(4),
        "request durability: acked = persisted"
    );
    assert_eq!(
        shard.max_seq_no_of_updates(),
        SeqNo(3),
        "updates and deletes move the MSU"
    );
}

/// A generated id is not looked up (Elasticsearch's append-only path for auto-generated ids):
/// shown by breaking its contract on purpose, with an id that exists, which a lookup would
/// have turned into an update at version 2. With a condition the lookup happens anyway.
#[test]
fn an_automatic_id_is_written_without_a_lookup_unless_a_condition_needs_one() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    let first = shard.index(doc(1, "a")).unwrap();
    shard.refresh().unwrap();
    let automatic = |body: &str| IndexRequest {
        automatic_id: true,
        ..doc(1, body)
    };
    let unlooked = shard.index(automatic("b")).unwrap();
    assert_eq!(
        (unlooked.version, unlooked.outcome),
        (1, WriteOutcome::Created),
        "the write did not look the id up"
    );
    let conditional = shard.index(IndexRequest {
        if_seq_no: Some(first.seq_no),
        if_primary_term: Some(first.primary_term),
        ..automatic("c")
    });
    assert!(
        matches!(conditional, Err(EngineError::VersionConflict { .. })),
        "a condition is checked against the id's latest write: {conditional:?}"
    );
}

#[test]
fn get_is_real_time_before_and_after_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    shard.index(doc(7, "x")).unwrap();
    let got = shard.get("doc-7").unwrap().expect("visible before refresh");
    assert_eq!(got.source, br#"{"n":7,"body":"x"}"#);
    assert_eq!(shard.doc_count(), 0, "not searchable before refresh");
    shard.refresh().unwrap();
    assert_eq!(shard.doc_count(), 1);
    let got = shard.get("doc-7").unwrap().expect("visible after refresh");
    assert_eq!((got.seq_no, got.version), (SeqNo(0), 1));
    shard.delete(DeleteRequest::new("doc-7")).unwrap();
    assert!(shard.get("doc-7").unwrap().is_none());
    shard.refresh().unwrap();
    assert!(shard.get("doc-7").unwrap().is_none());
    assert_eq!(shard.doc_count(), 0);
    assert!(shard.get("never").unwrap().is_none());
}

#[test]
fn optimistic_concurrency_rejects_stale_writers() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    let written = shard.index(doc(1, "a")).unwrap();
    shard.refresh().unwrap();
    let mut stale = doc(1, "b");
    stale.if_seq_no = Some(SeqNo(99));
    stale.if_primary_term = Some(PrimaryTerm(1));
    let error = shard.index(stale).unwrap_err();
    assert!(
        matches!(error, EngineError::VersionConflict { .. }),
        "{error}"
    );
    assert_eq!(error.status(), 409);
    let mut good = doc(1, "c");
    good.if_seq_no = Some(written.seq_no);
    good.if_primary_term = Some(written.primary_term);
    let updated = shard.index(good).unwrap();
    assert_eq!(updated.version, 2);
    let mut create = doc(1, "d");
    create.create_only = true;
    assert!(matches!(
        shard.index(create).unwrap_err(),
        EngineError::VersionConflict { .. }
    ));
    let mut on_missing = DeleteRequest::new("nope");
    on_missing.if_seq_no = Some(SeqNo(0));
    on_missing.if_primary_term = Some(PrimaryTerm(1));
    assert!(matches!(
        shard.delete(on_missing).unwrap_err(),
        EngineError::VersionConflict { .. }
    ));
    // Rejected writes used no sequence number.
    assert_eq!(shard.max_seq_no(), SeqNo(1));
    assert_eq!(
        shard.get("doc-1").unwrap().unwrap().source,
        br#"{"n":1,"body":"c"}"#
    );
}

#[test]
fn bad_documents_are_rejected_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    shard.index(doc(1, "a")).unwrap();
    let bad = shard
        .index(IndexRequest::new("doc-2", b"not json".to_vec()))
        .unwrap_err();
    assert_eq!(bad.status(), 400, "{bad}");
    assert!(shard.index(IndexRequest::new("", b"{}".to_vec())).is_err());
    let results = shard.bulk(vec![
        tandem_engine::shard::WriteRequest::Index(doc(3, "ok")),
        tandem_engine::shard::WriteRequest::Index(IndexRequest::new("doc-4", b"[1,2]".to_vec())),
        tandem_engine::shard::WriteRequest::Index(doc(5, "ok")),
    ]);
    assert!(results[0].is_ok() && results[1].is_err() && results[2].is_ok());
    assert_eq!(
        shard.local_checkpoint(),
        SeqNo(2),
        "no gap left by rejected items"
    );
    drop(shard);
    let shard = reopen(dir.path());
    for id in ["doc-1", "doc-3", "doc-5"] {
        assert!(shard.get(id).unwrap().is_some(), "{id}");
    }
}

#[test]
fn reopen_replays_unrefreshed_writes_and_keeps_history() {
    let dir = tempfile::tempdir().unwrap();
    {
        let shard = create_shard(dir.path());
        for n in 0..50 {
            shard.index(doc(n, "first")).unwrap();
        }
        shard.refresh().unwrap();
        for n in 0..20 {
            shard.index(doc(n, "second")).unwrap();
        }
        shard.delete(DeleteRequest::new("doc-49")).unwrap();
        shard.no_op("test gap filler").unwrap();
        // Dropped without close: the last 22 operations exist only in the translog.
    }
    let shard = reopen(dir.path());
    assert_eq!(shard.max_seq_no(), SeqNo(71));
    assert_eq!(shard.local_checkpoint(), SeqNo(71));
    assert_eq!(shard.doc_count(), 49);
    assert_eq!(shard.get("doc-3").unwrap().unwrap().version, 2);
    let history = full_history(&shard);
    assert_eq!(history.len(), 72);
    assert_eq!(history[70].3, "delete");
    assert_eq!(history[71].3, "noop");
    // The next write continues the sequence.
    assert_eq!(shard.index(doc(100, "x")).unwrap().seq_no, SeqNo(72));
}

#[test]
fn follower_refuses_direct_writes_until_promoted() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_follower(dir.path());
    let error = shard.index(doc(1, "a")).unwrap_err();
    assert_eq!(error.status(), 403);
    assert!(error.to_string().contains("follower index"), "{error}");
    let promotion = shard
        .promote_to_primary(&tandem_engine::shard::PromotionRequest::default())
        .unwrap();
    assert_eq!(promotion.primary_term, PrimaryTerm(2));
    let written = shard.index(doc(1, "a")).unwrap();
    assert_eq!(written.primary_term, PrimaryTerm(2));
}

#[test]
fn a_shard_index_directory_that_cannot_be_opened_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let index_dir = dir.path().join("index");
    std::fs::write(&index_dir, b"a file where the index directory belongs").unwrap();
    let Err(error) = tandem_engine::ShardEngine::open(dir.path(), mapper(), manual_config()) else {
        panic!("a file is not a shard's index directory");
    };
    assert!(
        matches!(&error, EngineError::Io { path, .. } if *path == index_dir),
        "{error:?}"
    );
    assert_eq!(error.status(), 500, "{error}");
}

#[test]
fn async_durability_acks_before_fsync_and_syncs_on_interval() {
    use std::time::Duration;
    use tandem_engine::{Durability, ShardConfig, ShardEngine};
    let dir = tempfile::tempdir().unwrap();
    let config = ShardConfig {
        durability: Durability::Async {
            interval: Duration::from_millis(100),
        },
        ..manual_config()
    };
    let shard = ShardEngine::create(dir.path(), mapper(), config.clone(), PrimaryTerm(1)).unwrap();
    for n in 0..20 {
        shard.index(doc(n, "a")).unwrap();
    }
    assert_eq!(shard.local_checkpoint(), SeqNo(19));
    // The background fsync runs within a few intervals.
    let reached = shard.wait_for_global_checkpoint(SeqNo(19), Duration::from_secs(10));
    assert_eq!(reached, SeqNo(19));
    drop(shard);
    let shard = ShardEngine::open(dir.path(), mapper(), config).unwrap();
    assert_eq!(shard.local_checkpoint(), SeqNo(19), "synced writes survive");
}

#[test]
fn a_source_over_the_operation_limit_is_refused_before_it_gets_a_seq_no() {
    use std::sync::Arc;
    use tandem_engine::shard::MAX_SOURCE_BYTES;
    use tandem_engine::{Operation, OperationKind};

    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    shard.index(doc(1, "a")).unwrap();
    // A valid JSON object one byte over the limit.
    let mut source = br#"{"body":""#.to_vec();
    source.resize(MAX_SOURCE_BYTES + 1 - 2, b'x');
    source.extend_from_slice(br#""}"#);
    assert_eq!(source.len(), MAX_SOURCE_BYTES + 1);
    let refused = shard.index(IndexRequest::new("big", source.clone()));
    assert!(
        matches!(&refused, Err(EngineError::InvalidArgument(reason)) if reason.contains("exceeds the limit")),
        "{refused:?}"
    );
    assert_eq!(shard.max_seq_no(), SeqNo(0), "no seq_no was assigned");
    // Later writes are acknowledged and the checkpoints follow them.
    let next = shard.index(doc(2, "b")).unwrap();
    assert_eq!(next.seq_no, SeqNo(1));
    assert_eq!(shard.global_checkpoint(), SeqNo(1));
    assert!(shard.get("big").unwrap().is_none());

    // A follower refuses such an operation from its leader before applying any of the batch.
    let follower_dir = tempfile::tempdir().unwrap();
    let follower = create_follower(follower_dir.path());
    let operation = |seq_no: i64, id: &str, source: Vec<u8>| Operation {
        seq_no: SeqNo(seq_no),
        primary_term: PrimaryTerm(1),
        version: 1,
        kind: OperationKind::Index {
            id: id.to_string(),
            source,
        },
    };
    let batch = vec![
        Arc::new(operation(0, "small", br#"{"n":1}"#.to_vec())),
        Arc::new(operation(1, "big", source)),
    ];
    let refused = follower.apply_shared_operations(batch, SeqNo(-1));
    assert!(
        matches!(&refused, Err(EngineError::InvalidArgument(reason)) if reason.contains("exceeds the limit")),
        "{refused:?}"
    );
    assert_eq!(
        follower.max_seq_no(),
        SeqNo(-1),
        "nothing of the batch was applied"
    );
}

/// Items of one bulk on the same id see each other in order: an index then a delete of it
/// deletes it (version 2), and a create after that creates it again.
#[test]
fn bulk_items_on_one_id_apply_in_order() {
    use tandem_engine::shard::WriteRequest;
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    let results = shard.bulk(vec![
        WriteRequest::Index(doc(1, "a")),
        WriteRequest::Index(doc(2, "b")),
        WriteRequest::Delete(DeleteRequest::new("doc-1")),
        WriteRequest::Index(doc(1, "c")),
    ]);
    let outcomes: Vec<(WriteOutcome, u64, i64)> = results
        .into_iter()
        .map(|result| {
            let result = result.unwrap();
            (result.outcome, result.version, result.seq_no.0)
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (WriteOutcome::Created, 1, 0),
            (WriteOutcome::Created, 1, 1),
            (WriteOutcome::Deleted, 2, 2),
            (WriteOutcome::Created, 3, 3),
        ]
    );
    assert_eq!(shard.get("doc-1").unwrap().unwrap().version, 3);
}
