//! Remote recovery end to end over the in-process client: identical files, same documents and
//! history, recovery while the leader keeps writing and merging, faults, lost sessions, resume,
//! leases and refused file names.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use tandem_engine::shard::{MANAGED_FILE, META_FILE};
use tandem_engine::SeqNo;
use tandem_recovery::{
    LeaderClient, RecoveryError, RecoverySettings, RecoveryStage, RecoveryTarget,
};

const TEST_TIMEOUT: Duration = Duration::from_secs(120);

async fn bounded<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, future)
        .await
        .expect("test took too long")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_of_a_multi_segment_shard_is_byte_identical_with_the_same_history() {
    let dir = tempfile::tempdir().unwrap();
    let leader = create_leader(dir.path());
    write_history(&leader, 6, 120, 150, "a");
    settle(leader_shard(&leader));
    let leader_shard_ref = leader_shard(&leader);
    assert!(leader_shard_ref.stats().segment_count >= 2);
    assert!(leader_shard_ref.stats().doc_count_with_history > leader_shard_ref.doc_count());
    let client = Arc::new(client_for(&leader));
    let target = RecoveryTarget::new(client.clone(), test_settings()).unwrap();

    // The copy alone: every file equals the leader's (meta.json included: the pinned commit is
    // the leader's current one).
    let copy_dir = dir.path().join("copy");
    let copied = bounded(target.copy_commit(&shard_id(), &index_dir(&copy_dir)))
        .await
        .unwrap();
    let copied_files = read_dir_files(&index_dir(&copy_dir));
    let leader_files = read_dir_files(&leader.dir().join("0").join("index"));
    assert_eq!(copied_files.len(), copied.session.files.len());
    for (name, bytes) in &copied_files {
        if name == MANAGED_FILE {
            continue; // generated for the commit, verified by checksum
        }
        let leader_bytes = leader_files.get(name).unwrap();
        let first_diff = leader_bytes
            .iter()
            .zip(bytes.iter())
            .position(|(a, b)| a != b);
        assert!(
            leader_bytes == bytes,
            "{name} differs from the leader's: {} vs {} bytes, first difference at {first_diff:?}",
            leader_bytes.len(),
            bytes.len()
        );
    }
    assert!(copied_files.contains_key(META_FILE));
    assert_eq!(
        client.recovery_source().open_session_count(),
        0,
        "session closed"
    );

    // The full recovery: an engine with the leader's documents and history.
    let follower_dir = dir.path().join("follower");
    let target = RecoveryTarget::new(client.clone(), test_settings()).unwrap();
    let recovered = bounded(target.recover(request(&leader, &follower_dir)))
        .await
        .unwrap();
    let follower = &recovered.engine;
    let checkpoint = recovered.commit.session.local_checkpoint;
    assert_eq!(checkpoint, leader_shard_ref.local_checkpoint());
    assert_eq!(follower.doc_count(), leader_shard_ref.doc_count());
    assert_eq!(
        history_up_to(follower, checkpoint),
        history_up_to(leader_shard_ref, checkpoint)
    );
    assert_eq!(follower.global_checkpoint(), checkpoint);
    assert!(follower.is_follower());
    assert_ne!(follower.history_uuid(), leader_shard_ref.history_uuid());
    // The bootstrap commit rewrote meta.json; the copied segment files stay as they were.
    for file in &recovered.commit.session.files {
        if file.name == META_FILE || file.name == MANAGED_FILE {
            continue;
        }
        let bytes = std::fs::read(index_dir(&follower_dir).join(&file.name)).unwrap();
        assert!(
            leader_files.get(&file.name) == Some(&bytes),
            "{} differs",
            file.name
        );
    }
    let snapshot = target.progress().snapshot();
    assert_eq!(snapshot.stage, RecoveryStage::Done);
    assert_eq!(snapshot.files_recovered, snapshot.files_total);
    assert_eq!(snapshot.bytes_recovered, snapshot.bytes_total);
    assert_eq!(snapshot.percent(), 100.0);
    assert!(snapshot.stop_time.is_some());
    // The lease stays for replication, retaining from checkpoint + 1.
    let leases = leader_shard_ref.retention_leases();
    let lease = leases.leases.get("follower-cluster/follower/0").unwrap();
    assert_eq!(lease.retaining_seq_no, checkpoint.next());

    // Replication continues at checkpoint + 1; re-fetched operations are skipped.
    write_history(&leader, 2, 50, 150, "b");
    let operations: Vec<_> = leader_shard_ref
        .changes(SeqNo(0), leader_shard_ref.max_seq_no(), 100_000, usize::MAX)
        .unwrap()
        .iter()
        .map(|op| (**op).clone())
        .collect();
    let applied = follower
        .apply_operations(&operations, leader_shard_ref.max_seq_no_of_updates())
        .unwrap();
    assert_eq!(
        applied as i64,
        leader_shard_ref.max_seq_no().0 - checkpoint.0
    );
    follower.refresh().unwrap();
    let max = leader_shard_ref.max_seq_no();
    assert_eq!(
        history_up_to(follower, max),
        history_up_to(leader_shard_ref, max)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_files_stay_valid_while_the_leader_keeps_indexing_and_merging() {
    let dir = tempfile::tempdir().unwrap();
    let leader = create_leader(dir.path());
    // Without the history lease the leader's merges really drop history and files.
    leader_shard(&leader)
        .remove_retention_lease(HISTORY_LEASE)
        .unwrap();
    write_history(&leader, 5, 300, 400, "before");
    settle(leader_shard(&leader));
    let expected_checkpoint = leader_shard(&leader).local_checkpoint();
    let expected_docs = leader_shard(&leader).doc_count();
    // The commit the recovery will pin, kept aside to compare with.
    let reference: std::collections::BTreeMap<String, Vec<u8>> = {
        let pinned = leader_shard(&leader).pin_latest_commit().unwrap();
        pinned
            .files()
            .iter()
            .map(|file| (file.info().name.clone(), file.bytes().to_vec()))
            .collect()
    };
    let target_progress = Arc::new(parking_lot::Mutex::new(None));
    // Twice in the middle of the copy, the leader indexes, merges everything it may and
    // commits (garbage collection runs).
    let mut hooks: Vec<Hook> = Vec::new();
    for files_recovered in [2u64, 8] {
        let leader = leader.clone();
        hooks.push(after_files(&target_progress, files_recovered, move || {
            write_history(&leader, 2, 100, 400, "during");
            leader_shard(&leader).force_merge(1).unwrap();
            leader_shard(&leader).refresh().unwrap();
        }));
    }
    let client = Arc::new(HookClient::new(Arc::new(client_for(&leader)), hooks));
    let target = RecoveryTarget::new(client.clone(), test_settings()).unwrap();
    *target_progress.lock() = Some(target.progress());
    let follower_dir = dir.path().join("follower");
    let recovered = bounded(target.recover(request(&leader, &follower_dir)))
        .await
        .unwrap();
    assert_eq!(
        client.hooks_left(),
        0,
        "the leader did not change during the copy"
    );
    assert_eq!(
        recovered.commit.session.local_checkpoint,
        expected_checkpoint
    );
    for file in &recovered.commit.session.files {
        if file.name == META_FILE || file.name == MANAGED_FILE {
            continue; // rewritten by the follower's tantivy (verified by checksum when copied)
        }
        let bytes = std::fs::read(index_dir(&follower_dir).join(&file.name)).unwrap();
        assert!(
            reference.get(&file.name) == Some(&bytes),
            "{} differs",
            file.name
        );
    }
    assert_eq!(recovered.commit.session.files.len(), reference.len());
    // The copied history is complete above the retention floor the leader had when it pinned
    // the commit (here its checkpoint + 1: the leader merged history away before).
    let floor = recovered.engine.min_retained_seq_no();
    assert!(floor <= expected_checkpoint.next());
    let history = history_range(&recovered.engine, floor, expected_checkpoint);
    assert_eq!(history.len() as i64, expected_checkpoint.0 - floor.0 + 1);
    assert_eq!(recovered.engine.doc_count(), expected_docs);
    assert!(leader_shard(&leader).local_checkpoint() > expected_checkpoint);
    // The leader's merges took files the recovery copied out of its commits while they were
    // pinned.
    let latest = leader_shard(&leader).pin_latest_commit().unwrap();
    let gone = recovered
        .commit
        .session
        .files
        .iter()
        .filter(|file| file.name != META_FILE && file.name != MANAGED_FILE)
        .filter(|file| latest.file(&file.name).is_none())
        .count();
    assert!(
        gone > 0,
        "no pinned file was merged away: the test proves nothing"
    );
    let snapshot = target.progress().snapshot();
    assert_eq!(snapshot.restarts, 0);
    assert_eq!(snapshot.session_reopens, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_completes_through_dropped_delayed_corrupted_and_failed_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let leader = create_leader(dir.path());
    write_history(&leader, 6, 600, 800, "faults");
    settle(leader_shard(&leader));
    let inner: Arc<dyn LeaderClient> = Arc::new(client_for(&leader));
    let faults = Faults {
        drop_percent: 3,
        delay_percent: 10,
        corrupt_percent: 2,
        error_percent: 8,
    };
    let faulty = Arc::new(FaultyLeaderClient::new(inner, faults, 7));
    let settings = RecoverySettings {
        chunk_size_bytes: 4 * 1024,
        chunk_request_timeout: Duration::from_millis(300),
        max_file_attempts: 10,
        ..test_settings()
    };
    let target = RecoveryTarget::new(faulty.clone(), settings).unwrap();
    let follower_dir = dir.path().join("follower");
    // Copy first to compare the files byte for byte, then recover on top (reusing them).
    let copied = bounded(target.copy_commit(&shard_id(), &index_dir(&follower_dir)))
        .await
        .unwrap();
    let leader_files = read_dir_files(&leader.dir().join("0").join("index"));
    for (name, bytes) in read_dir_files(&index_dir(&follower_dir)) {
        if name != MANAGED_FILE {
            assert!(leader_files.get(&name) == Some(&bytes), "{name} differs");
        }
    }
    let counts = &faulty.counts;
    let drops = counts.drops.load(Ordering::Relaxed);
    let errors = counts.errors.load(Ordering::Relaxed);
    let corruptions = counts.corruptions.load(Ordering::Relaxed);
    let delays = counts.delays.load(Ordering::Relaxed);
    assert!(
        drops > 0 && errors > 0 && corruptions > 0 && delays > 0,
        "{counts:?}"
    );
    let snapshot = target.progress().snapshot();
    assert!(
        snapshot.chunk_retries >= drops + errors,
        "{} retries for {drops} drops and {errors} errors",
        snapshot.chunk_retries
    );
    assert!(snapshot.file_refetches >= 1, "corruptions went unnoticed");
    assert!(snapshot.file_refetches <= corruptions);
    assert_eq!(snapshot.files_recovered, copied.session.files.len() as u64);

    let target = RecoveryTarget::new(faulty.clone(), test_settings()).unwrap();
    let recovered = bounded(target.recover(request(&leader, &follower_dir)))
        .await
        .unwrap();
    let checkpoint = recovered.commit.session.local_checkpoint;
    assert_eq!(
        history_up_to(&recovered.engine, checkpoint),
        history_up_to(leader_shard(&leader), checkpoint)
    );
    let resumed = target.progress().snapshot();
    assert_eq!(
        resumed.files_reused, resumed.files_total,
        "verified files are reused"
    );
}

/// A hook that fires on a chunk request once the target has written data: it waits (holding
/// that request) until the target has recovered `files` files, then runs `action`.
fn after_files(
    progress: &Arc<parking_lot::Mutex<Option<tandem_recovery::RecoveryProgress>>>,
    files: u64,
    action: impl FnOnce() + Send + 'static,
) -> Hook {
    let started = progress.clone();
    let progress = progress.clone();
    (
        Box::new(move || {
            started
                .lock()
                .as_ref()
                .is_some_and(|p| p.snapshot().bytes_recovered > 0)
        }),
        Box::new(move || {
            let progress = progress.lock().clone().unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while progress.snapshot().files_recovered < files {
                assert!(std::time::Instant::now() < deadline, "no progress");
                std::thread::sleep(Duration::from_millis(1));
            }
            action()
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_session_is_reopened_and_a_changed_commit_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let leader = create_leader(dir.path());
    leader_shard(&leader)
        .remove_retention_lease(HISTORY_LEASE)
        .unwrap();
    write_history(&leader, 4, 200, 250, "lost");
    settle(leader_shard(&leader));
    let in_process = Arc::new(client_for(&leader));
    let source = in_process.recovery_source().clone();

    // Session closed under the recovery (a leader restart), commit unchanged: continue.
    let progress = Arc::new(parking_lot::Mutex::new(None));
    let restart = {
        let source = source.clone();
        after_files(&progress, 3, move || {
            assert_eq!(source.close_all_sessions(), 1);
        })
    };
    let client = Arc::new(HookClient::new(in_process.clone(), vec![restart]));
    let target = RecoveryTarget::new(client.clone(), test_settings()).unwrap();
    *progress.lock() = Some(target.progress());
    let recovered = bounded(target.recover(request(&leader, &dir.path().join("f1"))))
        .await
        .unwrap();
    assert_eq!(client.hooks_left(), 0);
    let snapshot = target.progress().snapshot();
    assert_eq!(snapshot.session_reopens, 1);
    assert_eq!(snapshot.restarts, 0);
    assert_eq!(snapshot.files_recovered, snapshot.files_total);
    let checkpoint = recovered.commit.session.local_checkpoint;
    assert_eq!(
        recovered.engine.doc_count(),
        leader_shard(&leader).doc_count()
    );
    let floor = recovered.engine.min_retained_seq_no();
    assert_eq!(
        history_range(&recovered.engine, floor, checkpoint).len() as i64,
        checkpoint.0 - floor.0 + 1
    );

    // Session lost and the leader merged meanwhile: copied files are gone from the new
    // commit, so the copy starts over and ends on the new commit.
    let progress = Arc::new(parking_lot::Mutex::new(None));
    let change = {
        let source = source.clone();
        let leader = leader.clone();
        after_files(&progress, 3, move || {
            write_history(&leader, 1, 50, 250, "changed");
            leader_shard(&leader).force_merge(1).unwrap();
            leader_shard(&leader).refresh().unwrap();
            assert_eq!(source.close_all_sessions(), 1);
        })
    };
    let client = Arc::new(HookClient::new(in_process.clone(), vec![change]));
    let target = RecoveryTarget::new(client.clone(), test_settings()).unwrap();
    *progress.lock() = Some(target.progress());
    let follower_dir = dir.path().join("f2");
    let mut request = request(&leader, &follower_dir);
    request.lease_id = "second".to_string();
    let recovered = bounded(target.recover(request)).await.unwrap();
    assert_eq!(client.hooks_left(), 0);
    let snapshot = target.progress().snapshot();
    assert_eq!(snapshot.session_reopens, 1);
    assert_eq!(snapshot.restarts, 1, "{snapshot:?}");
    let checkpoint = recovered.commit.session.local_checkpoint;
    assert_eq!(checkpoint, leader_shard(&leader).local_checkpoint());
    assert_eq!(
        recovered.engine.doc_count(),
        leader_shard(&leader).doc_count()
    );
    // Exactly the new commit's files are in place.
    let mut names: Vec<String> = read_dir_files(&index_dir(&follower_dir))
        .into_keys()
        .filter(|name| !name.ends_with(".json") && !name.ends_with(".lock"))
        .collect();
    names.sort();
    let mut expected: Vec<String> = recovered
        .commit
        .session
        .files
        .iter()
        .map(|file| file.name.clone())
        .filter(|name| !name.ends_with(".json"))
        .collect();
    expected.sort();
    assert_eq!(names, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_lease_exists_during_recovery_and_is_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let leader = create_leader(dir.path());
    write_history(&leader, 4, 200, 250, "lease");
    let client = Arc::new(client_for(&leader));
    let settings = RecoverySettings {
        max_bytes_per_sec: 256 * 1024,
        lease_renew_interval: Duration::from_millis(40),
        ..test_settings()
    };
    let target = RecoveryTarget::new(client.clone(), settings).unwrap();
    let lease_id = "follower-cluster/follower/0";
    let observer = {
        let leader = leader.clone();
        let progress = target.progress();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let snapshot = progress.snapshot();
                if snapshot.stage == RecoveryStage::Index {
                    let leases = leader_shard(&leader).retention_leases();
                    let lease = leases.leases.get(lease_id).cloned();
                    seen.push(lease.map(|l| (l.retaining_seq_no, l.timestamp_millis)));
                }
                if snapshot.stop_time.is_some() {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let recovered = bounded(target.recover(request(&leader, &dir.path().join("follower")))).await;
    let recovered = recovered.unwrap();
    let seen = observer.await.unwrap();
    assert!(
        seen.len() > 10,
        "recovery too short to observe: {}",
        seen.len()
    );
    assert!(
        seen.iter()
            .all(|lease| matches!(lease, Some((SeqNo(0), _)))),
        "{seen:?}"
    );
    let timestamps: std::collections::BTreeSet<u64> = seen
        .iter()
        .flatten()
        .map(|(_, timestamp)| *timestamp)
        .collect();
    assert!(timestamps.len() >= 3, "lease not renewed: {timestamps:?}");
    // One timestamp is the lease's creation; the renewal in flight when the recovery ends is
    // cut off after the leader applied it, before it is counted.
    let renewals = target.progress().snapshot().lease_renewals;
    assert!(
        renewals as usize + 2 >= timestamps.len(),
        "{renewals} renewals, {timestamps:?}"
    );
    let leases = leader_shard(&leader).retention_leases();
    assert_eq!(
        leases.leases.get(lease_id).unwrap().retaining_seq_no,
        recovered.commit.session.local_checkpoint.next()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_recovery_removes_its_lease_and_reports_failed() {
    let dir = tempfile::tempdir().unwrap();
    let leader = create_leader(dir.path());
    write_history(&leader, 1, 10, 10, "x");
    let client = Arc::new(client_for(&leader));
    let target = RecoveryTarget::new(client.clone(), test_settings()).unwrap();
    let mut bad = request(&leader, &dir.path().join("follower"));
    bad.leader_shard = tandem_recovery::ShardId::new(LEADER_INDEX, 3);
    let error = bounded(target.recover(bad)).await.err().unwrap();
    assert!(matches!(error, RecoveryError::Leader { .. }), "{error}");
    let snapshot = target.progress().snapshot();
    assert_eq!(snapshot.stage, RecoveryStage::Failed);
    assert!(snapshot.failure.unwrap().contains("no shard [3]"));
}
