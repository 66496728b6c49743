//! A pinned commit stays complete and readable while the leader keeps committing, merging and
//! garbage-collecting; a follower bootstrapped from a copy of it holds the same documents and
//! history and continues from the commit's checkpoint.

mod common;

use std::path::Path;

use common::*;
use tandem_engine::shard::{checksum_file, footer_checksum};
use tandem_engine::shard::{ChecksumKind, DeleteRequest, PinnedCommit, ShardEngine};
use tandem_engine::{EngineError, SeqNo};

fn write_batches(shard: &ShardEngine, batches: u64, per_batch: u64, salt: &str) {
    for batch in 0..batches {
        for n in 0..per_batch {
            shard.index(doc(n + batch * per_batch, salt)).unwrap();
        }
        shard.refresh().unwrap();
    }
}

fn copy_pinned(pinned: &PinnedCommit, shard_dir: &Path) {
    let index_dir = shard_dir.join("index");
    std::fs::create_dir_all(&index_dir).unwrap();
    for file in pinned.files() {
        std::fs::write(index_dir.join(&file.info().name), file.bytes()).unwrap();
    }
}

fn assert_checksums_hold(pinned: &PinnedCommit) {
    for file in pinned.files() {
        let info = file.info();
        assert_eq!(file.bytes().len() as u64, info.length, "{}", info.name);
        let computed = match info.checksum_kind {
            ChecksumKind::TantivyFooter => {
                let (stored, body) = footer_checksum(file.bytes()).unwrap();
                let computed = crc32fast::hash(&file.bytes()[..body as usize]);
                assert_eq!(stored, computed, "{}", info.name);
                let footer = crc32fast::hash(&file.bytes()[body as usize..]);
                assert_eq!(info.footer_checksum, Some(footer), "{}", info.name);
                computed
            }
            ChecksumKind::WholeFile => crc32fast::hash(file.bytes()),
        };
        assert_eq!(computed, info.checksum, "{}", info.name);
    }
}

#[test]
fn pinned_commit_survives_later_commits_merges_and_garbage_collection() {
    let dir = tempfile::tempdir().unwrap();
    let leader = create_shard(&dir.path().join("leader"));
    write_batches(&leader, 4, 50, "first");
    leader.delete(DeleteRequest::new("doc-3")).unwrap();
    leader.refresh().unwrap();
    let pinned = leader.pin_latest_commit().unwrap();
    let pinned_history = full_history(&leader);
    assert!(pinned.files().len() > 10, "a multi-segment commit");
    assert_eq!(pinned.payload().local_checkpoint, leader.local_checkpoint());

    // Overwrite everything, merge down to one segment: without the pin, GC deletes the files.
    write_batches(&leader, 4, 50, "second");
    leader.force_merge(1).unwrap();
    leader.refresh().unwrap();
    assert_eq!(leader.stats().segment_count, 1);
    let leader_index = dir.path().join("leader").join("index");
    for file in pinned.files() {
        if file.info().checksum_kind == ChecksumKind::TantivyFooter {
            assert!(
                leader_index.join(&file.info().name).exists(),
                "{} was collected",
                file.info().name
            );
        }
    }
    assert_checksums_hold(&pinned);

    // A copy of the pinned files opens as the pinned commit.
    let follower_dir = dir.path().join("follower");
    copy_pinned(&pinned, &follower_dir);
    let follower =
        ShardEngine::bootstrap_follower(&follower_dir, mapper(), manual_config()).unwrap();
    assert_eq!(full_history(&follower), pinned_history);
    assert_eq!(follower.doc_count(), 199);

    // Released: the next garbage collection deletes the old segment files.
    let names: Vec<String> = pinned
        .files()
        .iter()
        .filter(|file| file.info().checksum_kind == ChecksumKind::TantivyFooter)
        .map(|file| file.info().name.clone())
        .collect();
    drop(pinned);
    leader.index(doc(10_000, "trigger")).unwrap();
    leader.refresh().unwrap();
    assert!(
        names.iter().all(|name| !leader_index.join(name).exists()),
        "the released pin still kept files"
    );
}

/// The bootstrap commits the follower's payload with a tantivy writer of its own: it must not
/// merge the copied segments, which would drop their deleted documents, the retained history
/// (tantivy's default merge policy merges eight segments of a size).
#[test]
fn bootstrap_keeps_the_history_of_many_small_segments() {
    let dir = tempfile::tempdir().unwrap();
    let leader = create_shard(&dir.path().join("leader"));
    leader
        .add_retention_lease("keep-all", SeqNo(0), "test")
        .unwrap();
    for batch in 0..16 {
        // Half of each batch updates the previous batch's ids: their old versions are deleted.
        for n in 0..10 {
            leader
                .index(doc(n + batch * 5, &format!("v{batch}")))
                .unwrap();
        }
        leader.refresh().unwrap();
    }
    let pinned = leader.pin_latest_commit().unwrap();
    let segments = pinned
        .files()
        .iter()
        .filter(|file| file.info().name.ends_with(".idx"))
        .count();
    assert!(
        segments >= 8,
        "only {segments} segments: the case needs eight or more"
    );
    let pinned_history = full_history(&leader);
    assert_eq!(pinned_history.len(), 160);
    let follower_dir = dir.path().join("follower");
    copy_pinned(&pinned, &follower_dir);
    drop(pinned);

    let follower =
        ShardEngine::bootstrap_follower(&follower_dir, mapper(), manual_config()).unwrap();
    assert_eq!(full_history(&follower), pinned_history);
    drop(follower);
    let reopened = ShardEngine::open(
        &follower_dir,
        mapper(),
        tandem_engine::shard::ShardConfig {
            follower: true,
            ..manual_config()
        },
    )
    .unwrap();
    assert_eq!(full_history(&reopened), pinned_history);
    assert_eq!(reopened.doc_count(), 85);
}

#[test]
fn bootstrapped_follower_continues_from_the_commit_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let leader = create_shard(&dir.path().join("leader"));
    write_batches(&leader, 3, 40, "one");
    leader.delete(DeleteRequest::new("doc-7")).unwrap();
    leader.refresh().unwrap();
    let pinned = leader.pin_latest_commit().unwrap();
    let checkpoint = pinned.payload().local_checkpoint;
    let follower_dir = dir.path().join("follower");
    copy_pinned(&pinned, &follower_dir);
    drop(pinned);
    write_batches(&leader, 1, 30, "two");

    let follower =
        ShardEngine::bootstrap_follower(&follower_dir, mapper(), manual_config()).unwrap();
    assert!(follower.is_follower());
    assert_ne!(follower.history_uuid(), leader.history_uuid());
    assert_eq!(follower.local_checkpoint(), checkpoint);
    assert_eq!(follower.global_checkpoint(), checkpoint);
    assert!(follower.retention_leases().leases.is_empty());
    assert!(matches!(
        follower.index(doc(1, "direct")),
        Err(EngineError::ReadOnlyFollower(_))
    ));

    // Replaying everything from 0 skips what the commit holds and applies the rest.
    let operations: Vec<_> = leader
        .changes(SeqNo(0), leader.max_seq_no(), 10_000, usize::MAX)
        .unwrap()
        .iter()
        .map(|op| (**op).clone())
        .collect();
    let applied = follower
        .apply_operations(&operations, leader.max_seq_no_of_updates())
        .unwrap();
    assert_eq!(applied as i64, leader.max_seq_no().0 - checkpoint.0);
    follower.refresh().unwrap();
    leader.refresh().unwrap();
    assert_eq!(full_history(&follower), full_history(&leader));
    assert_eq!(follower.doc_count(), leader.doc_count());

    // It re-opens as the same follower (new translog, new history uuid kept).
    let history_uuid = follower.history_uuid();
    follower.close().unwrap();
    let reopened = ShardEngine::open(
        &follower_dir,
        mapper(),
        tandem_engine::ShardConfig {
            follower: true,
            ..manual_config()
        },
    )
    .unwrap();
    assert_eq!(reopened.history_uuid(), history_uuid);
    assert_eq!(reopened.local_checkpoint(), leader.local_checkpoint());
    assert!(follower_dir.join("follower").exists());
}

#[test]
fn checksum_file_matches_the_pinned_checksums_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let leader = create_shard(&dir.path().join("leader"));
    write_batches(&leader, 2, 20, "x");
    let pinned = leader.pin_latest_commit().unwrap();
    let copy = dir.path().join("copy");
    copy_pinned(&pinned, &copy);
    for file in pinned.files() {
        let info = file.info();
        let path = copy.join("index").join(&info.name);
        assert!(info.matches(
            checksum_file(
                &tandem_engine::storage::RealStorage,
                &path,
                info.checksum_kind
            )
            .unwrap()
        ));
    }
}
