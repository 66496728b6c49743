//! Promotion of a follower index in one call (`FollowerIndices::promote`): what it answers,
//! what it leaves (a writable index of a new term, a lease keeping the history above the
//! recovery point, no follower lease on the old leader), and that a power cut at any storage
//! call of it leaves, after a restart, either the follower it was or the promoted index,
//! never anything between.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::open_followers;
use serde_json::json;
use tandem_engine::index::Index;
use tandem_engine::indices::Indices;
use tandem_engine::shard::{IndexRequest, WriteRequest};
use tandem_engine::storage::{CutMode, SimStorage, StorageRef};
use tandem_recovery::in_process::InProcessLeaderClient;
use tandem_recovery::source::{RecoverySource, RecoverySourceSettings};
use tandem_recovery::target::RecoverySettings;
use tandem_replication::error::CcrError;
use tandem_replication::follower_indices::{
    FollowRequest, FollowerIndices, PromoteRequest, DEFAULT_PROMOTION_RETENTION_PERIOD,
};
use tandem_replication::params::FollowParameters;
use tandem_replication::remote::RemoteClusters;

const WAIT: Duration = Duration::from_secs(60);

fn write_docs(index: &Index, from: u64, to: u64, body: &str) {
    let bulk = (from..to)
        .map(|n| {
            WriteRequest::Index(IndexRequest::new(
                format!("doc-{}", n % 80),
                format!(r#"{{"n":{n},"body":"{body}"}}"#),
            ))
        })
        .collect();
    for result in index.bulk(bulk) {
        result.expect("leader write");
    }
}

fn follow_logs() -> FollowRequest {
    FollowRequest {
        remote_cluster: "leader".to_string(),
        leader_index: "logs".to_string(),
        follower_index: "logs-copy".to_string(),
        parameters: FollowParameters {
            read_poll_timeout: Some(tandem_engine::units::TimeValue::from_millis(100)),
            ..FollowParameters::default()
        },
        wait_for_active_shards: true,
        settings: serde_json::Value::Null,
    }
}

fn promote_copy() -> PromoteRequest {
    PromoteRequest {
        follower_index: "logs-copy".to_string(),
        retention_period: DEFAULT_PROMOTION_RETENTION_PERIOD,
    }
}

/// A leader index `logs` of two shards with 300 operations, reachable as the remote `leader`
/// (its cluster's indices are returned to be kept open).
fn leader(dir: &Path) -> (Indices, Arc<Index>, Arc<RemoteClusters>) {
    let leader_indices = Indices::open(&dir.join("leader")).unwrap();
    let leader = leader_indices
        .create(
            "logs",
            &json!({"number_of_shards": 2}),
            &json!({"properties": {"n": {"type": "long"}}}),
        )
        .unwrap();
    write_docs(&leader, 0, 300, "before following");
    let client = InProcessLeaderClient::new(RecoverySource::new(RecoverySourceSettings::default()));
    client.register_index(leader.clone());
    let remotes = Arc::new(RemoteClusters::new());
    remotes.set("leader", Arc::new(client));
    (leader_indices, leader, remotes)
}

async fn wait_caught_up(leader: &Index, follower: &Indices) {
    let started = Instant::now();
    loop {
        let index = follower.get("logs-copy").expect("follower index");
        if leader
            .shards()
            .iter()
            .zip(index.shards())
            .all(|(l, f)| f.global_checkpoint() == l.global_checkpoint())
        {
            return;
        }
        assert!(started.elapsed() < WAIT, "the follower did not catch up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promote_turns_a_lagging_follower_into_a_writable_index_in_one_call() {
    let dir = tempfile::tempdir().unwrap();
    let (_leader_cluster, leader, remotes) = leader(dir.path());
    let (indices, followers) =
        open_followers("follower-cluster", &dir.path().join("follower"), remotes).await;
    followers.follow(follow_logs()).await.unwrap();
    wait_caught_up(&leader, &indices).await;
    let lease_id = followers.info(Some("logs-copy")).await.unwrap()[0]
        .metadata
        .lease_id
        .clone();
    let checkpoints: Vec<i64> = indices
        .get("logs-copy")
        .unwrap()
        .shards()
        .iter()
        .map(|s| s.local_checkpoint().0)
        .collect();

    // The follower falls behind: paused while the leader takes 100 more writes, which the
    // metrics' probe of a paused follower's leader sees.
    followers.pause("logs-copy").await.unwrap();
    write_docs(&leader, 300, 400, "never replicated");
    followers.follow_metrics().await;

    let refused = followers
        .promote(PromoteRequest {
            follower_index: "logs".to_string(),
            ..promote_copy()
        })
        .await
        .unwrap_err();
    assert!(matches!(refused, CcrError::NotAFollower(_)), "{refused}");

    let promoted = followers.promote(promote_copy()).await.unwrap();
    assert_eq!(promoted.index, "logs-copy");
    assert_eq!(promoted.shards.len(), 2);
    let mut behind = 0;
    for (shard, answer) in promoted.shards.iter().enumerate() {
        let leader_shard = &leader.shards()[shard];
        assert_eq!(answer.shard, shard as u32);
        assert_eq!(answer.local_checkpoint, checkpoints[shard]);
        assert_eq!(answer.max_seq_no, checkpoints[shard]);
        assert_eq!(answer.leader_max_seq_no, leader_shard.max_seq_no().0);
        assert_eq!(
            answer.operations_behind_leader,
            (leader_shard.max_seq_no().0 - checkpoints[shard]) as u64
        );
        assert!(answer.primary_term > leader_shard.primary_term().0);
        behind += answer.operations_behind_leader;
    }
    assert_eq!(behind, 100, "the 100 writes the follower never received");

    // A writable index of the new term, no longer a follower.
    assert!(followers.info(None).await.unwrap().is_empty());
    let copy = indices.get("logs-copy").unwrap();
    assert!(!copy.is_follower());
    let written = copy
        .index(IndexRequest::new("doc-new", r#"{"n":1}"#))
        .unwrap();
    let shard = copy.shard_for("doc-new");
    assert_eq!(written.primary_term.0, promoted.shards[shard].primary_term);
    assert_eq!(written.seq_no.0, checkpoints[shard] + 1);
    // Its history above the recovery point is kept under the promotion's lease.
    for (shard, engine) in copy.shards().iter().enumerate() {
        let leases = engine.retention_leases();
        let lease = &leases.leases[promoted.shards[shard].retention_lease.as_ref().unwrap()];
        assert_eq!(lease.retaining_seq_no.0, checkpoints[shard] + 1);
        assert!(lease.expires_at_millis.is_some());
        let recorded = engine.promotion().unwrap();
        let followed = recorded.leader.unwrap();
        assert_eq!(followed.leader_index, "logs");
        assert_eq!(
            followed.leader_history_uuid,
            leader.shards()[shard].history_uuid()
        );
    }
    // The follower's lease on the leader stays, keeping the history a failback reads.
    for shard in leader.shards() {
        assert!(shard.retention_leases().leases.contains_key(&lease_id));
    }
    // Promoted once: a second promote is refused as for any index that does not follow.
    let again = followers.promote(promote_copy()).await.unwrap_err();
    assert!(matches!(again, CcrError::NotAFollower(_)), "{again}");
}

/// Opens the follower cluster on the simulated disk `storage`, as a restarted node does.
async fn open_on(
    storage: &StorageRef,
    remotes: &Arc<RemoteClusters>,
) -> (Arc<Indices>, Arc<FollowerIndices>) {
    let root = Path::new("/follower");
    let indices = Arc::new(Indices::open_on(storage.clone(), &root.join("data")).unwrap());
    let followers = FollowerIndices::open(
        "follower-cluster",
        indices.clone(),
        remotes.clone(),
        RecoverySettings {
            max_bytes_per_sec: 0,
            ..RecoverySettings::default()
        },
        &root.join("state"),
    )
    .await
    .unwrap();
    (indices, Arc::new(followers))
}

/// What a restart after a cut found: the follower as it was, or the promoted index.
fn check_after_cut(indices: &Indices, followers_info_empty: bool, cut: usize) -> bool {
    let closed = indices.is_closed("logs-copy").unwrap();
    assert!(!closed, "cut {cut}: the index was left closed");
    let copy = indices.get("logs-copy").unwrap();
    let promoted: Vec<bool> = copy
        .shards()
        .iter()
        .map(|s| s.promotion().is_some())
        .collect();
    if copy.is_follower() {
        assert!(
            !followers_info_empty && promoted.iter().all(|p| !p),
            "cut {cut}: a follower with promoted shards {promoted:?}"
        );
        false
    } else {
        assert!(
            followers_info_empty && promoted.iter().all(|p| *p),
            "cut {cut}: a writable index whose shards are promoted {promoted:?}, follow state \
             gone: {followers_info_empty}"
        );
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_during_a_promotion_leaves_the_follower_or_the_promoted_index() {
    let dir = tempfile::tempdir().unwrap();
    let (_leader_cluster, leader, remotes) = leader(dir.path());
    let disk = SimStorage::new();
    let base = {
        let (indices, followers) = open_on(&disk.as_storage(), &remotes).await;
        followers.follow(follow_logs()).await.unwrap();
        wait_caught_up(&leader, &indices).await;
        followers.pause("logs-copy").await.unwrap();
        followers.shutdown().await;
        drop((indices, followers));
        // Everything synced: the base every cut starts from.
        disk.snapshot_after_cut(CutMode::Durable, 0)
    };

    // The run whose every storage call is a cut point: a restart, then the promotion.
    let recorded = base.snapshot_after_process_crash();
    recorded.record_journal();
    let (indices, followers) = open_on(&recorded.as_storage(), &remotes).await;
    let opened = recorded.stats().mutations;
    followers.promote(promote_copy()).await.unwrap();
    assert!(
        recorded.stats().mutations > opened,
        "the promotion wrote nothing"
    );
    followers.shutdown().await;
    drop((indices, followers));
    let journal = recorded.take_journal();
    let calls = journal.len();

    // Every cut point of the promotion (a stride keeps the run short; the seed of the
    // stride's offset is printed so that a failure can be run again).
    let stride = (calls / 150).max(1);
    let offset = (std::process::id() as usize) % stride;
    eprintln!("{calls} storage calls, cut every {stride} from {offset}");
    let replayed = base.snapshot_after_process_crash();
    let mut done = 0;
    let (mut rolled_back, mut finished) = (0, 0);
    for cut in (offset..=calls).step_by(stride) {
        replayed.replay(&journal, done..cut);
        done = cut;
        let survivor = replayed.snapshot_after_cut(CutMode::Durable, cut as u64);
        let (indices, followers) = open_on(&survivor.as_storage(), &remotes).await;
        let info_empty = followers.info(None).await.unwrap().is_empty();
        if check_after_cut(&indices, info_empty, cut) {
            finished += 1;
        } else {
            rolled_back += 1;
            // Never started, or started and not recorded: a new promote completes it.
            let again = followers.promote(promote_copy()).await.unwrap();
            assert_eq!(again.shards.len(), 2, "cut {cut}");
            assert!(!indices.get("logs-copy").unwrap().is_follower());
        }
        followers.shutdown().await;
    }
    eprintln!("{rolled_back} cuts left the follower, {finished} the promoted index");
    assert!(rolled_back > 0 && finished > 0);
}
