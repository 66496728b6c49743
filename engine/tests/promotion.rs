//! Promotion of a follower shard to a primary (`ShardEngine::promote_to_primary`, and the
//! marker an index's next open promotes by): the recorded recovery point, the new term, the
//! gaps filled in it, the lease that keeps the history above the point, and durability.

mod common;

use common::{create_follower, full_history, manual_config, mapper};
use tandem_engine::shard::{FollowedLeader, PromotionLease, PromotionRequest, ShardEngine};
use tandem_engine::{Operation, OperationKind, PrimaryTerm, SeqNo};

const DAY_MILLIS: u64 = 24 * 3_600_000;

fn leader_op(seq_no: i64, id: &str, body: &str) -> Operation {
    Operation {
        seq_no: SeqNo(seq_no),
        primary_term: PrimaryTerm(3),
        version: 1,
        kind: OperationKind::Index {
            id: id.to_string(),
            source: format!(r#"{{"body":"{body}"}}"#).into_bytes(),
        },
    }
}

fn request(period_millis: u64) -> PromotionRequest {
    PromotionRequest {
        lease: Some(PromotionLease {
            id: "promoted/logs".to_string(),
            period_millis,
        }),
        leader: Some(FollowedLeader {
            remote_cluster: "dc1".to_string(),
            leader_index: "logs".to_string(),
            leader_index_uuid: "leader-uuid".to_string(),
            leader_history_uuid: "leader-history".to_string(),
            leader_max_seq_no: SeqNo(40),
        }),
    }
}

fn reopen_primary(dir: &std::path::Path) -> ShardEngine {
    ShardEngine::open(dir, mapper(), manual_config()).expect("reopen")
}

/// A follower holding 0..=19 in order and 25, 27 and 30 out of order: checkpoint 19, max 30.
fn follower_with_gaps(dir: &std::path::Path) -> ShardEngine {
    let shard = create_follower(dir);
    let mut ops: Vec<Operation> = (0..20)
        .map(|n| leader_op(n, &format!("doc-{n}"), "replicated"))
        .collect();
    ops.extend([25, 27, 30].map(|n| leader_op(n, &format!("doc-{n}"), "out of order")));
    shard.apply_operations(&ops, SeqNo(-1)).unwrap();
    shard.refresh().unwrap();
    assert_eq!(shard.local_checkpoint(), SeqNo(19));
    assert_eq!(shard.max_seq_no(), SeqNo(30));
    shard
}

#[test]
fn a_promotion_records_its_recovery_point_and_fills_the_gaps_in_a_new_term() {
    let dir = tempfile::tempdir().unwrap();
    let shard = follower_with_gaps(dir.path());
    let promotion = shard.promote_to_primary(&request(DAY_MILLIS)).unwrap();
    assert_eq!(promotion.local_checkpoint, SeqNo(19));
    assert_eq!(promotion.max_seq_no, SeqNo(30));
    // Above every term of its history, whatever the shard's own term was.
    assert_eq!(promotion.primary_term, PrimaryTerm(4));
    assert_eq!(shard.primary_term(), PrimaryTerm(4));
    assert_eq!(promotion.lease_id.as_deref(), Some("promoted/logs"));
    assert_eq!(
        promotion.leader.as_ref().unwrap().leader_max_seq_no,
        SeqNo(40)
    );
    // The boundary: the highest operations at or below the checkpoint, highest first.
    let seq_nos: Vec<i64> = promotion.boundary.iter().map(|e| e.seq_no).collect();
    assert_eq!(seq_nos, vec![19, 18, 17, 16, 15, 14, 13, 12]);
    assert_eq!(promotion.boundary[0].id, "doc-19");
    assert_eq!(promotion.boundary[0].primary_term, 3);

    // Every gap above the checkpoint is a no-op in the new term; the operations that arrived
    // out of order keep theirs.
    assert_eq!(shard.local_checkpoint(), SeqNo(30));
    let history = full_history(&shard);
    for (seq_no, term, _, op_type, ..) in &history[20..] {
        if [25, 27, 30].contains(seq_no) {
            assert_eq!((*term, op_type.as_str()), (3, "index"), "seq_no {seq_no}");
        } else {
            assert_eq!((*term, op_type.as_str()), (4, "noop"), "seq_no {seq_no}");
        }
    }
    // Writable, in the new term.
    let written = shard.index(common::doc(100, "after")).unwrap();
    assert_eq!(written.seq_no, SeqNo(31));
    assert_eq!(written.primary_term, PrimaryTerm(4));

    // The lease keeps the history from the checkpoint + 1, until its own expiry.
    let leases = shard.retention_leases();
    let lease = &leases.leases["promoted/logs"];
    assert_eq!(lease.retaining_seq_no, SeqNo(20));
    let expires = lease.expires_at_millis.expect("an expiring lease");
    assert_eq!(expires - lease.timestamp_millis, DAY_MILLIS);
    assert!(shard.min_retained_seq_no() <= SeqNo(20));
    // Past the index's lease period (12h) it stays: its own is a day.
    let timestamp = lease.timestamp_millis;
    assert!(shard
        .expire_retention_leases(timestamp + 13 * 3_600_000)
        .unwrap()
        .is_empty());
    assert!(shard
        .retention_leases()
        .leases
        .contains_key("promoted/logs"));

    // Durable: a reopen finds the same promotion and term.
    drop(shard);
    let reopened = reopen_primary(dir.path());
    assert_eq!(reopened.promotion(), Some(promotion.clone()));
    assert_eq!(reopened.primary_term(), PrimaryTerm(4));
    assert!(!reopened.is_follower());
    assert_eq!(reopened.max_seq_no(), SeqNo(31));
    assert_eq!(
        reopened.retention_leases().leases["promoted/logs"].expires_at_millis,
        Some(expires)
    );
    let removed = reopened
        .expire_retention_leases(timestamp + DAY_MILLIS + 1)
        .unwrap();
    assert_eq!(removed.len(), 1);
}

#[test]
fn the_lease_period_of_a_promotion_is_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let shard = follower_with_gaps(dir.path());
    shard.promote_to_primary(&request(1_000)).unwrap();
    let lease = shard.retention_leases().leases["promoted/logs"].clone();
    // The index's period is 12h: the promotion lease goes after its own second.
    let removed = shard
        .expire_retention_leases(lease.timestamp_millis + 1_001)
        .unwrap();
    assert_eq!(removed.len(), 1);
    assert!(shard.retention_leases().leases.is_empty());
}

#[test]
fn a_copy_recovered_from_a_promoted_shard_does_not_carry_its_promotion() {
    // The promotion belongs to the shard's own history: a follower's commit that copied it
    // must not claim it (a failback to the copy would start from a point it never held).
    let dir = tempfile::tempdir().unwrap();
    let shard = follower_with_gaps(dir.path());
    shard
        .promote_to_primary(&PromotionRequest::default())
        .unwrap();
    shard.refresh().unwrap();
    let pinned = shard.pin_latest_commit().unwrap();
    assert!(pinned.payload().promotion.is_some());
    let copy = tempfile::tempdir().unwrap();
    let index_dir = copy.path().join("index");
    std::fs::create_dir_all(&index_dir).unwrap();
    for file in pinned.files() {
        std::fs::write(index_dir.join(&file.info().name), file.bytes()).unwrap();
    }
    let follower = ShardEngine::bootstrap_follower(copy.path(), mapper(), manual_config()).unwrap();
    assert_eq!(follower.promotion(), None);
    assert_eq!(follower.local_checkpoint(), SeqNo(30));
}

#[test]
fn a_shard_promoted_by_its_marker_opens_as_a_primary_of_the_new_term() {
    use tandem_engine::index::{Index, IndexMetadata};
    let dir = tempfile::tempdir().unwrap();
    let index = Index::create(
        dir.path(),
        "logs",
        &serde_json::json!({}),
        &serde_json::json!({}),
    )
    .unwrap();
    index.set_follower(true).unwrap();
    let ops: Vec<Operation> = [0, 1, 2, 5]
        .map(|n| leader_op(n, &format!("doc-{n}"), "replicated"))
        .into();
    // One shard: every operation goes to it.
    index.shards()[0].apply_operations(&ops, SeqNo(-1)).unwrap();
    let metadata: IndexMetadata = index.metadata();
    drop(index);
    let requests = [request(60_000)];
    Index::mark_for_promotion(
        &*tandem_engine::storage::real(),
        dir.path(),
        &requests[..metadata.settings.number_of_shards as usize],
    )
    .unwrap();
    let reopened = Index::open(dir.path()).unwrap();
    let shard = &reopened.shards()[0];
    assert!(!shard.is_follower());
    let promotion = shard.promotion().expect("promoted at open");
    assert_eq!(promotion.local_checkpoint, SeqNo(2));
    assert_eq!(promotion.max_seq_no, SeqNo(5));
    assert_eq!(promotion.primary_term, PrimaryTerm(4));
    // Gaps 3 and 4 filled in the new term, not the old one.
    let history = full_history(shard);
    assert_eq!((history[3].1, history[3].3.as_str()), (4, "noop"));
    assert_eq!((history[4].1, history[4].3.as_str()), (4, "noop"));
    drop(reopened);
    // Promoted once: the marker is gone and a second open keeps the term.
    let again = Index::open(dir.path()).unwrap();
    assert_eq!(again.shards()[0].primary_term(), PrimaryTerm(4));
    assert_eq!(again.shards()[0].promotion(), Some(promotion));
}
