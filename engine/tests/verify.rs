//! Verify digests: a follower built from its leader's history digests equal to it at any seq_no
//! both processed, while the leader keeps writing above it; one changed or missing operation
//! is found, by seq_no and `_id`, by descending the range tree.

mod common;

use std::sync::Arc;

use common::*;
use tandem_engine::shard::verify::{
    first_difference, EntryKind, RangeDigest, SeqRange, VerifyEntry, VerifyView, LEAF_SEQ_NOS,
};
use tandem_engine::shard::DeleteRequest;
use tandem_engine::{Operation, OperationKind, SeqNo, ShardEngine, SharedOperation};

type Difference = (Option<VerifyEntry>, Option<VerifyEntry>);

/// What a verify of `leader` against `follower` at `up_to` finds, with the round trips the
/// descent took.
struct Outcome {
    leader_root: RangeDigest,
    follower_root: RangeDigest,
    difference: Option<Difference>,
    descents: usize,
    /// Ids left out of the live entries.
    excluded: Vec<String>,
}

/// Both sides of a verify, as the coordinator builds them: the follower's snapshot first, the
/// union of changed ids, the history both retain.
fn verify(leader: &ShardEngine, follower: &ShardEngine, up_to: SeqNo) -> Outcome {
    let mut excluded = Vec::new();
    let follower_snapshot = follower.verify_snapshot(Some(up_to)).unwrap();
    let follower_changes = follower_snapshot.changes_above().unwrap();
    let follower_floor = follower_snapshot.retained_from();
    let leader_snapshot = leader.verify_snapshot(Some(up_to)).unwrap();
    let leader_changes = leader_snapshot.changes_above().unwrap();
    let history_from = leader_snapshot.retained_from().max(follower_floor);
    // The leader hears which ids the follower cannot tell; the follower hears the leader's.
    let leader_undetermined = leader_changes.undetermined.clone();
    let leader_view = VerifyView::build(
        leader_snapshot,
        leader_changes,
        follower_changes.undetermined.clone(),
        history_from,
    )
    .expect("leader view");
    let mut follower_view = VerifyView::build(
        follower_snapshot,
        follower_changes,
        Default::default(),
        follower_floor,
    )
    .expect("follower view");
    follower_view.raise_history_from(history_from).unwrap();
    follower_view
        .exclude_ids(leader_undetermined.iter())
        .unwrap();
    excluded.extend(follower_view.excluded().iter().map(str::to_string));
    let (leader_root, follower_root) = (leader_view.root(), follower_view.root());
    let mut descents = 0;
    let difference = match SeqRange::root(up_to) {
        Some(mut range) if leader_root != follower_root => loop {
            if range.len() <= LEAF_SEQ_NOS {
                break first_difference(
                    &leader_view.entries(range).unwrap(),
                    &follower_view.entries(range).unwrap(),
                );
            }
            descents += 1;
            range = range
                .children()
                .into_iter()
                .find(|child| {
                    leader_view.digest(*child).unwrap() != follower_view.digest(*child).unwrap()
                })
                .expect("a differing range has a differing child");
        },
        _ => None,
    };
    Outcome {
        leader_root,
        follower_root,
        difference,
        descents,
        excluded,
    }
}

/// Every operation of `leader` in `[from, to]`.
fn operations(leader: &ShardEngine, from: i64, to: i64) -> Vec<SharedOperation> {
    leader
        .changes(SeqNo(from), SeqNo(to), usize::MAX, usize::MAX)
        .unwrap()
}

/// A leader with updates, deletes, a no-op and several segments (merged once), keeping its
/// whole history.
fn busy_leader(dir: &std::path::Path, documents: u64) -> ShardEngine {
    let leader = create_shard(dir);
    leader
        .add_retention_lease("keep", SeqNo(0), "test")
        .unwrap();
    for n in 0..documents {
        leader.index(doc(n, "first")).unwrap();
        if n % 97 == 0 {
            leader.refresh().unwrap();
        }
    }
    for n in (0..documents).step_by(7) {
        leader.index(doc(n, "second")).unwrap();
    }
    for n in (3..documents).step_by(11) {
        leader
            .delete(DeleteRequest::new(format!("doc-{n}")))
            .unwrap();
    }
    leader.no_op("filler").unwrap();
    leader.refresh().unwrap();
    leader.force_merge(1).unwrap();
    leader
}

fn follower_of(
    dir: &std::path::Path,
    ops: Vec<SharedOperation>,
    leader: &ShardEngine,
) -> ShardEngine {
    let follower = create_follower(dir);
    follower
        .add_retention_lease("keep", SeqNo(0), "test")
        .unwrap();
    // In chunks, in reverse chunk order: a follower applies batches as they come.
    let chunks: Vec<Vec<SharedOperation>> = ops.chunks(50).map(|c| c.to_vec()).collect();
    for chunk in chunks.into_iter().rev() {
        follower
            .apply_shared_operations(chunk, leader.max_seq_no_of_updates())
            .unwrap();
    }
    follower.refresh().unwrap();
    follower
}

#[test]
fn a_follower_built_from_its_leader_verifies_equal() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = busy_leader(dirs.0.path(), 600);
    let max = leader.max_seq_no();
    let follower = follower_of(dirs.1.path(), operations(&leader, 0, max.0), &leader);
    assert_eq!(follower.local_checkpoint(), max);

    let outcome = verify(&leader, &follower, max);
    assert_eq!(outcome.leader_root, outcome.follower_root);
    assert!(outcome.difference.is_none());
    let live = leader.doc_count();
    assert_eq!(outcome.leader_root.live_docs, live);
    assert_eq!(outcome.leader_root.history_ops, max.0 as u64 + 1);

    // At a lower seq_no too: everything above it is left out on both sides alike.
    let outcome = verify(&leader, &follower, SeqNo(max.0 / 2));
    assert_eq!(outcome.leader_root, outcome.follower_root);
    assert_eq!(outcome.leader_root.history_ops, max.0 as u64 / 2 + 1);
}

#[test]
fn a_leader_that_keeps_writing_above_up_to_still_verifies_equal() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dirs_2 = tempfile::tempdir().unwrap();
    let leader = busy_leader(dirs.0.path(), 400);
    let up_to = leader.max_seq_no();
    let follower = follower_of(dirs.1.path(), operations(&leader, 0, up_to.0), &leader);
    // The leader goes on: updates, deletes and new documents above up_to.
    for n in (0..400).step_by(5) {
        leader.index(doc(n, "third")).unwrap();
    }
    for n in (1..400).step_by(13) {
        leader
            .delete(DeleteRequest::new(format!("doc-{n}")))
            .unwrap();
    }
    for n in 400..450 {
        leader.index(doc(n, "new")).unwrap();
    }
    leader.force_merge(1).unwrap();
    // The follower has some of it, out of order.
    let above = operations(&leader, up_to.0 + 1, leader.max_seq_no().0);
    let some: Vec<SharedOperation> = above.iter().step_by(3).cloned().collect();
    follower
        .apply_shared_operations(some, leader.max_seq_no_of_updates())
        .unwrap();
    assert_eq!(follower.local_checkpoint(), SeqNo(up_to.0 + 1));

    let outcome = verify(&leader, &follower, up_to);
    assert_eq!(outcome.leader_root, outcome.follower_root);
    assert!(outcome.difference.is_none());
    // With the whole history kept, every changed id's state at up_to is rebuilt: none is
    // left out, and the live documents are those the follower has at up_to.
    assert!(outcome.excluded.is_empty(), "{:?}", outcome.excluded);
    let follower_at_up_to = follower_of(dirs_2.path(), operations(&leader, 0, up_to.0), &leader);
    assert_eq!(outcome.leader_root.live_docs, follower_at_up_to.doc_count());
}

/// `ops` with the operation at `seq_no` replaced by `replace`.
fn replaced(
    ops: &[SharedOperation],
    seq_no: i64,
    replace: impl Fn(&Operation) -> Operation,
) -> Vec<SharedOperation> {
    ops.iter()
        .map(|op| match op.seq_no.0 == seq_no {
            true => Arc::new(replace(op)),
            false => op.clone(),
        })
        .collect()
}

#[test]
fn a_changed_document_is_found_by_seq_no_and_id() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = busy_leader(dirs.0.path(), 3000);
    let max = leader.max_seq_no();
    // A live document's operation (doc-1000 is neither updated nor deleted).
    let ops = operations(&leader, 0, max.0);
    let target = ops
        .iter()
        .find(|op| op.id() == Some("doc-1000"))
        .unwrap()
        .seq_no;
    let tampered = replaced(&ops, target.0, |op| Operation {
        kind: OperationKind::Index {
            id: "doc-1000".into(),
            source: br#"{"n":1000,"body":"tampered"}"#.to_vec(),
        },
        ..op.clone()
    });
    let follower = follower_of(dirs.1.path(), tampered, &leader);

    let outcome = verify(&leader, &follower, max);
    assert_ne!(outcome.leader_root, outcome.follower_root);
    let (on_leader, on_follower) = outcome.difference.expect("a difference");
    let (on_leader, on_follower) = (on_leader.unwrap(), on_follower.unwrap());
    assert_eq!(
        (on_leader.seq_no, on_leader.id.as_str()),
        (target.0, "doc-1000")
    );
    assert_eq!(on_leader.kind, EntryKind::Live);
    assert_eq!(on_follower.seq_no, target.0);
    assert_ne!(on_leader.source_hash, on_follower.source_hash);
    assert!(
        (1..=2).contains(&outcome.descents),
        "a logarithmic descent, not a scan: {}",
        outcome.descents
    );
}

#[test]
fn a_dropped_operation_is_found_by_seq_no_and_id() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = busy_leader(dirs.0.path(), 2000);
    let max = leader.max_seq_no();
    let ops = operations(&leader, 0, max.0);
    let target = ops
        .iter()
        .find(|op| op.id() == Some("doc-1500"))
        .unwrap()
        .seq_no;
    // The follower got a no-op in its place: its checkpoint still advanced.
    let dropped = replaced(&ops, target.0, |op| Operation {
        version: 1,
        kind: OperationKind::NoOp {
            reason: "lost".into(),
        },
        ..op.clone()
    });
    let follower = follower_of(dirs.1.path(), dropped, &leader);
    assert_eq!(follower.local_checkpoint(), max);

    let outcome = verify(&leader, &follower, max);
    let (on_leader, on_follower) = outcome.difference.expect("a difference");
    let on_leader = on_leader.unwrap();
    assert_eq!(
        (on_leader.seq_no, on_leader.id.as_str()),
        (target.0, "doc-1500")
    );
    assert_eq!(on_leader.kind, EntryKind::Live);
    assert!(
        on_follower.is_none(),
        "the follower has no live document there"
    );
}

#[test]
fn up_to_must_be_processed() {
    let dir = tempfile::tempdir().unwrap();
    let shard = create_shard(dir.path());
    for n in 0..5 {
        shard.index(doc(n, "x")).unwrap();
    }
    let error = shard
        .verify_snapshot(Some(SeqNo(5)))
        .err()
        .expect("refused");
    assert!(
        error.to_string().contains("local checkpoint [4]"),
        "{error}"
    );
    let empty = tempfile::tempdir().unwrap();
    let empty = create_shard(empty.path());
    let snapshot = empty.verify_snapshot(None).unwrap();
    let floor = snapshot.retained_from();
    let changes = snapshot.changes_above().unwrap();
    let view = VerifyView::build(snapshot, changes, Default::default(), floor).unwrap();
    assert_eq!(view.root(), RangeDigest::default());
}

#[test]
fn ids_whose_state_at_up_to_was_merged_away_are_left_out_and_the_rest_still_verifies() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = create_shard(dirs.0.path());
    leader
        .add_retention_lease("copy", SeqNo(0), "test")
        .unwrap();
    for n in 0..400 {
        leader.index(doc(n, "first")).unwrap();
    }
    let up_to = leader.max_seq_no();
    let follower = follower_of(dirs.1.path(), operations(&leader, 0, up_to.0), &leader);
    // The follower's lease moves to up_to + 1, as a follower's does: the leader may drop the
    // history below it.
    leader
        .renew_retention_lease("copy", SeqNo(up_to.0 + 1))
        .unwrap();
    for n in (0..400).step_by(3) {
        leader.index(doc(n, "second")).unwrap();
    }
    leader.refresh().unwrap();
    leader.force_merge(1).unwrap();
    assert!(leader.min_retained_seq_no() > SeqNo(0));

    let outcome = verify(&leader, &follower, up_to);
    assert_eq!(outcome.leader_root, outcome.follower_root);
    assert_eq!(outcome.excluded.len(), 134, "the updated ids are left out");
    assert_eq!(outcome.leader_root.live_docs, 400 - 134);

    // Below the leader's floor, the changes above up_to can no longer be told: refused.
    let snapshot = leader.verify_snapshot(Some(SeqNo(10))).unwrap();
    let error = snapshot.changes_above().expect_err("refused");
    assert!(
        error
            .to_string()
            .contains("no longer holds every operation"),
        "{error}"
    );
}
