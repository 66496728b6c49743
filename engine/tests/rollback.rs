//! `ShardEngine::roll_back_to`: an old leader's shard rolled back to the point its history
//! shares with a promoted copy holds exactly the copy's state and history at that point, and
//! then takes the copy's later operations as a follower, with nothing of its own left above
//! the point: in its documents, its history, its translog, or after a reopen.

mod common;

use common::{create_follower, create_shard, doc, full_history, manual_config, mapper};
use tandem_engine::shard::{DeleteRequest, ShardEngine};
use tandem_engine::{Operation, OperationKind, PrimaryTerm, SeqNo};

/// The shared history: 60 operations (ids doc-0..doc-29 written twice, then doc-7 and doc-8
/// deleted), in three segments.
fn shared_history(shard: &ShardEngine) {
    for round in 0..2 {
        for n in 0..29 {
            shard.index(doc(n, &format!("shared {round}"))).unwrap();
        }
        shard.refresh().unwrap();
    }
    shard.delete(DeleteRequest::new("doc-7")).unwrap();
    shard.delete(DeleteRequest::new("doc-8")).unwrap();
    shard.refresh().unwrap();
    assert_eq!(shard.max_seq_no(), SeqNo(59));
}

/// The old leader's writes above the point, which the promoted copy never received: updates
/// of shared ids, new ids, a delete of a shared id and a re-creation of a deleted one.
fn divergent_writes(shard: &ShardEngine) {
    for n in [1, 2, 3, 40, 41] {
        shard.index(doc(n, "divergent")).unwrap();
    }
    shard.refresh().unwrap();
    shard.delete(DeleteRequest::new("doc-4")).unwrap();
    shard.index(doc(7, "re-created on the old leader")).unwrap();
    shard.index(doc(1, "divergent twice")).unwrap();
    // Left in the translog only: the rollback must drop it there too.
}

fn copy_of(leader: &ShardEngine, dir: &std::path::Path, to: SeqNo) -> ShardEngine {
    let copy = create_follower(dir);
    // The tests compare whole histories: no merge may drop any of it.
    copy.add_retention_lease("keep", SeqNo(0), "test").unwrap();
    let ops: Vec<Operation> = leader
        .changes(SeqNo(0), to, usize::MAX, usize::MAX)
        .unwrap()
        .iter()
        .map(|op| (**op).clone())
        .collect();
    copy.apply_operations(&ops, leader.max_seq_no_of_updates())
        .unwrap();
    copy.refresh().unwrap();
    copy
}

/// The copy's live versions of `ids` at or below `point` (what a failback fetches by id).
fn restored_from(copy: &ShardEngine, ids: &[String], point: SeqNo) -> Vec<Operation> {
    ids.iter()
        .filter_map(|id| copy.get(id).unwrap().map(|found| (id, found)))
        .filter(|(_, found)| found.seq_no <= point)
        .map(|(id, found)| Operation {
            seq_no: found.seq_no,
            primary_term: found.primary_term,
            version: found.version,
            kind: OperationKind::Index {
                id: id.clone(),
                source: found.source,
            },
        })
        .collect()
}

/// Ids the old leader touched above `point`.
fn touched_above(shard: &ShardEngine, point: SeqNo) -> Vec<String> {
    let mut ids: Vec<String> = shard
        .changes(
            SeqNo(point.0 + 1),
            shard.max_seq_no(),
            usize::MAX,
            usize::MAX,
        )
        .unwrap()
        .iter()
        .filter_map(|op| op.id().map(str::to_string))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Applies [`new_leader_operations`] to the new leader's copy and to the rolled-back shard
/// that follows it, and refreshes both.
fn follow_new_leader(rolled_back: &ShardEngine, copy: &ShardEngine, point: SeqNo) {
    let next = new_leader_operations(point);
    for shard in [copy, rolled_back] {
        shard.apply_operations(&next, SeqNo(point.0 + 4)).unwrap();
        shard.refresh().unwrap();
    }
}

fn live_documents(shard: &ShardEngine) -> Vec<(String, i64, u64, Vec<u8>)> {
    (0..50)
        .filter_map(|n| {
            let id = format!("doc-{n}");
            shard
                .get(&id)
                .unwrap()
                .map(|found| (id, found.seq_no.0, found.version, found.source))
        })
        .collect()
}

/// The new leader's operations above the point: a gap no-op of the promotion, then writes
/// in its new term.
fn new_leader_operations(point: SeqNo) -> Vec<Operation> {
    let term = PrimaryTerm(2);
    let mut ops = vec![Operation {
        seq_no: SeqNo(point.0 + 1),
        primary_term: term,
        version: 1,
        kind: OperationKind::NoOp {
            reason: "filling gaps".to_string(),
        },
    }];
    for (offset, (id, version)) in [("doc-2", 3), ("doc-45", 1), ("doc-4", 3)]
        .iter()
        .enumerate()
    {
        ops.push(Operation {
            seq_no: SeqNo(point.0 + 2 + offset as i64),
            primary_term: term,
            version: *version,
            kind: OperationKind::Index {
                id: id.to_string(),
                source: format!(r#"{{"body":"new leader {id}"}}"#).into_bytes(),
            },
        });
    }
    ops
}

#[test]
fn a_rolled_back_shard_holds_the_copy_state_at_the_point_and_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let old_leader = create_shard(&dir.path().join("old"));
    old_leader
        .add_retention_lease("keep", SeqNo(0), "test")
        .unwrap();
    shared_history(&old_leader);
    let point = SeqNo(59);
    let copy = copy_of(&old_leader, &dir.path().join("copy"), point);
    divergent_writes(&old_leader);
    assert_eq!(old_leader.max_seq_no(), SeqNo(67));
    let divergent_history = full_history(&old_leader)[60..].to_vec();

    let touched = touched_above(&old_leader, point);
    assert_eq!(
        touched,
        ["doc-1", "doc-2", "doc-3", "doc-4", "doc-40", "doc-41", "doc-7"]
    );
    let restored = restored_from(&copy, &touched, point);
    // doc-40, doc-41 and doc-7 were not live at the point: nothing to restore for them.
    assert_eq!(restored.len(), 4);

    // A primary is refused; the old leader's shard follows first.
    assert!(old_leader.roll_back_to(point, &restored).is_err());
    old_leader.set_follower(true);
    let outcome = old_leader.roll_back_to(point, &restored).unwrap();
    assert_eq!(outcome.removed_operations, 8);
    assert_eq!(outcome.restored_documents, 4);
    assert!(outcome.voided_segments >= 1, "{outcome:?}");

    let check = |shard: &ShardEngine, when: &str| {
        assert_eq!(shard.max_seq_no(), point, "{when}");
        assert_eq!(shard.local_checkpoint(), point, "{when}");
        assert_eq!(live_documents(shard), live_documents(&copy), "{when}");
        assert_eq!(shard.doc_count(), copy.doc_count(), "{when}");
        // Nothing of the old leader's is left above the point.
        let above = shard
            .operations_present(SeqNo(point.0 + 1), SeqNo(1_000), 1_000, usize::MAX)
            .unwrap();
        assert!(above.is_empty(), "{when}: {above:?}");
        // What history it holds at or below the point is the copy's.
        let history = full_history(&copy);
        let held = shard
            .operations_present(SeqNo(0), point, 1_000, usize::MAX)
            .unwrap();
        for op in &held {
            let expected = &history[op.seq_no.0 as usize];
            assert_eq!(
                (
                    op.seq_no.0,
                    op.primary_term.0,
                    op.version,
                    op.id().map(str::to_string)
                ),
                (expected.0, expected.1, expected.2, expected.4.clone()),
                "{when}"
            );
        }
    };
    check(&old_leader, "after the rollback");

    // A second run (a failback resumed after a crash) changes nothing.
    let again = old_leader.roll_back_to(point, &restored).unwrap();
    assert_eq!(again.removed_operations, 0);
    check(&old_leader, "after a second rollback");

    // Durable, translog included: a reopen replays none of the removed operations.
    drop(old_leader);
    let old_leader = ShardEngine::open(
        &dir.path().join("old"),
        mapper(),
        tandem_engine::shard::ShardConfig {
            follower: true,
            ..manual_config()
        },
    )
    .unwrap();
    check(&old_leader, "after a reopen");

    // It follows the copy from the point + 1: the copy's operations, and only them.
    follow_new_leader(&old_leader, &copy, point);
    assert_eq!(full_history(&old_leader)[60..], full_history(&copy)[60..]);
    assert_ne!(full_history(&old_leader)[60..], divergent_history[..4]);
    assert_eq!(live_documents(&old_leader), live_documents(&copy));
    assert_eq!(old_leader.doc_count(), copy.doc_count());
}

#[test]
fn retained_history_below_the_point_survives_the_rollback_and_the_merges_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let old_leader = create_shard(&dir.path().join("old"));
    // A lease keeps everything: the segments holding the removed operations also hold
    // retained deletes below the point, which the rollback and every later merge must keep.
    old_leader
        .add_retention_lease("keep", SeqNo(0), "test")
        .unwrap();
    for n in 0..29 {
        old_leader.index(doc(n, "shared 0")).unwrap();
    }
    old_leader.refresh().unwrap();
    // The second half of the shared history and the divergent writes end up in one segment.
    for n in 0..29 {
        old_leader.index(doc(n, "shared 1")).unwrap();
    }
    old_leader.delete(DeleteRequest::new("doc-7")).unwrap();
    old_leader.delete(DeleteRequest::new("doc-8")).unwrap();
    let point = SeqNo(59);
    let copy = copy_of(&old_leader, &dir.path().join("copy"), point);
    for n in 0..5 {
        old_leader
            .index(doc(n, "divergent in a mixed segment"))
            .unwrap();
    }
    old_leader.refresh().unwrap();
    let touched = touched_above(&old_leader, point);
    let restored = restored_from(&copy, &touched, point);
    old_leader.set_follower(true);
    let outcome = old_leader.roll_back_to(point, &restored).unwrap();
    assert_eq!(outcome.removed_operations, 5);
    assert_eq!(outcome.voided_segments, 1, "{outcome:?}");
    // The whole history up to the point is still there, and is the copy's.
    assert_eq!(full_history(&old_leader), full_history(&copy));
    assert_eq!(live_documents(&old_leader), live_documents(&copy));

    // A copy of the rolled-back commit's files (a remote recovery from it) reads the same
    // history: the ceilings travel with the segments.
    let pinned = old_leader.pin_latest_commit().unwrap();
    assert_eq!(pinned.payload().history_ceilings.len(), 1);
    let recovered = tempfile::tempdir().unwrap();
    let index_dir = recovered.path().join("index");
    std::fs::create_dir_all(&index_dir).unwrap();
    for file in pinned.files() {
        std::fs::write(index_dir.join(&file.info().name), file.bytes()).unwrap();
    }
    drop(pinned);
    let recovered =
        ShardEngine::bootstrap_follower(recovered.path(), mapper(), manual_config()).unwrap();
    assert_eq!(full_history(&recovered), full_history(&copy));
    assert_eq!(live_documents(&recovered), live_documents(&copy));

    // Once no lease holds the history below the point, a merge of everything drops it and the
    // voided operations alike: those are not carried forward (carried, they would be history
    // again, in a segment without a ceiling).
    old_leader.remove_retention_lease("keep").unwrap();
    old_leader.refresh().unwrap();
    old_leader.force_merge(1).unwrap();
    old_leader.refresh().unwrap();
    assert_eq!(
        old_leader.segments().len(),
        1,
        "{:?}",
        old_leader.segments()
    );
    let above = old_leader
        .operations_present(SeqNo(point.0 + 1), SeqNo(1_000), 1_000, usize::MAX)
        .unwrap();
    assert!(above.is_empty(), "{above:?}");
    assert_eq!(live_documents(&old_leader), live_documents(&copy));

    // It follows on: the copy's next operations, at the seq_nos the voided ones had.
    follow_new_leader(&old_leader, &copy, point);
    let from_point = |shard: &ShardEngine| {
        shard
            .changes(SeqNo(point.0 + 1), SeqNo(point.0 + 4), 1_000, usize::MAX)
            .unwrap()
            .iter()
            .map(|op| (**op).clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(from_point(&old_leader), from_point(&copy));
    assert_eq!(live_documents(&old_leader), live_documents(&copy));
    // The commits after the merge no longer name the merged-away segment.
    let pinned = old_leader.pin_latest_commit().unwrap();
    assert!(
        pinned.payload().history_ceilings.is_empty(),
        "{:?} {:?}",
        pinned.payload().history_ceilings,
        old_leader.segments()
    );
}
