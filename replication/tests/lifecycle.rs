//! The follow lifecycle through `FollowerIndices`: follow (remote recovery + tasks), follow
//! info and stats, pause, resume, restart of the process, unfollow, and the Elasticsearch
//! messages of the refused transitions.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::open_followers;
use serde_json::json;
use tandem_engine::index::Index;
use tandem_engine::indices::Indices;
use tandem_engine::shard::{IndexRequest, WriteRequest};
use tandem_recovery::in_process::InProcessLeaderClient;
use tandem_recovery::source::{RecoverySource, RecoverySourceSettings};
use tandem_replication::error::CcrError;
use tandem_replication::follower_indices::FollowRequest;
use tandem_replication::params::FollowParameters;
use tandem_replication::remote::RemoteClusters;

const WAIT: Duration = Duration::from_secs(60);

fn write_docs(index: &Index, from: u64, to: u64, body: &str) {
    let bulk = (from..to)
        .map(|n| {
            WriteRequest::Index(IndexRequest::new(
                format!("doc-{}", n % 50),
                format!(r#"{{"n":{n},"body":"{body}"}}"#),
            ))
        })
        .collect();
    for result in index.bulk(bulk) {
        result.expect("leader write");
    }
}

async fn wait_caught_up(leader: &Index, follower: &Indices, name: &str) {
    let started = Instant::now();
    loop {
        let index = follower.get(name).expect("follower index");
        let caught_up = leader
            .shards()
            .iter()
            .zip(index.shards())
            .all(|(l, f)| f.global_checkpoint() == l.global_checkpoint());
        if caught_up {
            return;
        }
        assert!(started.elapsed() < WAIT, "the follower did not catch up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn same_documents(leader: &Index, follower: &Index) {
    for n in 0..50 {
        let id = format!("doc-{n}");
        let l = leader
            .get(&id)
            .unwrap()
            .map(|d| (d.seq_no, d.version, d.source));
        let f = follower
            .get(&id)
            .unwrap()
            .map(|d| (d.seq_no, d.version, d.source));
        assert_eq!(l, f, "{id}");
    }
}

/// A follow of `logs` on the remote `leader` as `logs-copy`, long-polling for
/// `read_poll_millis`, that waits for the recovery.
fn follow_logs(read_poll_millis: u64) -> FollowRequest {
    FollowRequest {
        remote_cluster: "leader".to_string(),
        leader_index: "logs".to_string(),
        follower_index: "logs-copy".to_string(),
        parameters: FollowParameters {
            read_poll_timeout: Some(tandem_engine::units::TimeValue::from_millis(
                read_poll_millis,
            )),
            ..FollowParameters::default()
        },
        wait_for_active_shards: true,
        settings: serde_json::Value::Null,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_pause_resume_restart_and_unfollow() {
    let dir = tempfile::tempdir().unwrap();
    let leader_indices = Indices::open(&dir.path().join("leader")).unwrap();
    let leader = leader_indices
        .create(
            "logs",
            &json!({"number_of_shards": 2}),
            &json!({"properties": {"n": {"type": "long"}, "body": {"type": "text"}}}),
        )
        .unwrap();
    write_docs(&leader, 0, 300, "before following");
    leader.refresh().unwrap();
    write_docs(&leader, 300, 400, "in the translog only");
    let client = InProcessLeaderClient::new(RecoverySource::new(RecoverySourceSettings::default()));
    client.register_index(leader.clone());
    let remotes = Arc::new(RemoteClusters::new());
    remotes.set("leader", Arc::new(client));
    let follower_dir = dir.path().join("follower");
    let (indices, followers) =
        open_followers("follower-cluster", &follower_dir, remotes.clone()).await;

    let request = follow_logs(100);
    let response = followers.follow(request.clone()).await.unwrap();
    assert!(
        response.follow_index_created
            && response.follow_index_shards_acked
            && response.index_following_started
    );
    let error = followers.follow(request.clone()).await.unwrap_err();
    assert_eq!(error.status(), 400, "{error}");
    let unknown_remote = FollowRequest {
        remote_cluster: "nowhere".to_string(),
        follower_index: "other".to_string(),
        ..request.clone()
    };
    let error = followers.follow(unknown_remote).await.unwrap_err();
    assert_eq!(error.to_string(), "no such remote cluster: [nowhere]");

    wait_caught_up(&leader, &indices, "logs-copy").await;
    let copy = indices.get("logs-copy").unwrap();
    same_documents(&leader, &copy);
    let refused = copy
        .index(IndexRequest::new("x", r#"{"n":1}"#))
        .unwrap_err();
    assert_eq!(refused.status(), 403);
    // Every leader shard holds the follower's lease.
    let lease_id = followers.info(Some("logs-copy")).await.unwrap()[0]
        .metadata
        .lease_id
        .clone();
    for shard in leader.shards() {
        assert!(shard.retention_leases().leases.contains_key(&lease_id));
    }

    let info = followers.info(None).await.unwrap();
    assert_eq!(info.len(), 1);
    let rendered = info[0].to_es_json();
    assert_eq!(rendered["status"], "active");
    assert_eq!(rendered["leader_index"], "logs");
    assert_eq!(rendered["parameters"]["read_poll_timeout"], "100ms");
    assert_eq!(
        rendered["parameters"]["max_read_request_operation_count"],
        5120
    );
    // The stats catch up with the engine's checkpoints as the tasks publish them.
    let started = Instant::now();
    loop {
        let stats = followers.stats(Some("logs-copy")).await.unwrap();
        assert_eq!(stats[0].shards.len(), 2);
        if stats[0].total_global_checkpoint_lag == 0 {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "lag stays {}",
            stats[0].total_global_checkpoint_lag
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Pause: nothing more arrives; pausing twice and pausing a non-follower are refused.
    followers.pause("logs-copy").await.unwrap();
    let error = followers.pause("logs-copy").await.unwrap_err();
    assert_eq!(error.to_string(), "no shard follow tasks for [logs-copy]");
    assert_eq!(
        error.status(),
        400,
        "as Elasticsearch: an IllegalArgumentException"
    );
    assert_eq!(error.type_name(), "illegal_argument_exception");
    let error = followers.pause("logs").await.unwrap_err();
    assert_eq!(error.to_string(), "index [logs] is not a follower index");
    assert_eq!(
        followers.info(Some("logs-copy")).await.unwrap()[0].to_es_json()["status"],
        "paused"
    );
    assert!(
        followers.stats(None).await.unwrap().is_empty(),
        "no stats while paused"
    );
    let before = copy
        .shards()
        .iter()
        .map(|s| s.max_seq_no())
        .collect::<Vec<_>>();
    write_docs(&leader, 400, 450, "while paused");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        copy.shards()
            .iter()
            .map(|s| s.max_seq_no())
            .collect::<Vec<_>>(),
        before
    );

    // Resume catches up; unfollow needs paused and closed.
    followers
        .resume(
            "logs-copy",
            FollowParameters {
                read_poll_timeout: Some(tandem_engine::units::TimeValue::from_millis(100)),
                ..FollowParameters::default()
            },
        )
        .await
        .unwrap();
    wait_caught_up(&leader, &indices, "logs-copy").await;
    same_documents(&leader, &copy);
    let error = followers.unfollow("logs-copy").await.unwrap_err();
    assert_eq!(error.to_string(), "cannot convert the follower index [logs-copy] to a non-follower, because it has not been paused");
    drop(copy);

    // A restart resumes following.
    followers.shutdown().await;
    drop(followers);
    drop(indices);
    let (indices, followers) =
        open_followers("follower-cluster", &follower_dir, remotes.clone()).await;
    write_docs(&leader, 450, 500, "after the restart");
    wait_caught_up(&leader, &indices, "logs-copy").await;
    same_documents(&leader, &indices.get("logs-copy").unwrap());

    followers.pause("logs-copy").await.unwrap();
    let error = followers.unfollow("logs-copy").await.unwrap_err();
    assert!(matches!(error, CcrError::NotClosed(_)));
    assert_eq!(error.to_string(), "cannot convert the follower index [logs-copy] to a non-follower, because it has not been closed");
    indices.close_index("logs-copy").unwrap();
    let not_removed = followers.unfollow("logs-copy").await.unwrap();
    assert!(not_removed.is_empty(), "{not_removed:?}");
    for shard in leader.shards() {
        assert!(
            !shard.retention_leases().leases.contains_key(&lease_id),
            "lease removed"
        );
    }
    let error = followers.pause("logs-copy").await.unwrap_err();
    assert!(matches!(error, CcrError::NotAFollower(_)));
    let copy = indices.open_index("logs-copy").unwrap();
    assert!(!copy.is_follower());
    let leader_term = leader.shards()[0].primary_term();
    let written = copy
        .index(IndexRequest::new(
            "doc-new",
            r#"{"n":1,"body":"written on the old follower"}"#,
        ))
        .unwrap();
    assert!(copy.get("doc-new").unwrap().is_some());
    assert!(
        written.primary_term > leader_term,
        "the promoted follower writes in a new term: {:?} vs the leader's {leader_term:?}",
        written.primary_term
    );
    // The promotion happened once: a reopen keeps the term.
    let promoted_term = written.primary_term;
    drop(copy);
    indices.close_index("logs-copy").unwrap();
    let copy = indices.open_index("logs-copy").unwrap();
    let shard = copy.shard_for("doc-new");
    assert_eq!(copy.shards()[shard].primary_term(), promoted_term);
    assert!(followers.info(None).await.unwrap().is_empty());
}

/// A new index in `dir` with the leader's name, uuid and mappings and the given settings:
/// another index posing as the leader (a restore or a re-creation with the same uuid).
fn leader_like(
    dir: &Path,
    leader: &tandem_engine::index::IndexMetadata,
    settings: tandem_engine::index::IndexSettings,
) -> Arc<Index> {
    Arc::new(
        Index::create_with(
            &tandem_engine::storage::real(),
            dir,
            &leader.name,
            &leader.uuid,
            settings,
            leader.mappings.clone(),
            false,
        )
        .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_without_waiting_then_resume_refuses_a_changed_leader() {
    let dir = tempfile::tempdir().unwrap();
    let leader_indices = Indices::open(&dir.path().join("leader")).unwrap();
    let leader = leader_indices
        .create(
            "logs",
            &json!({"number_of_shards": 2}),
            &json!({"properties": {"n": {"type": "long"}, "body": {"type": "text"}}}),
        )
        .unwrap();
    write_docs(&leader, 0, 200, "before following");
    leader.refresh().unwrap();
    let client = InProcessLeaderClient::new(RecoverySource::new(RecoverySourceSettings::default()));
    client.register_index(leader.clone());
    let remotes = Arc::new(RemoteClusters::new());
    remotes.set("leader", Arc::new(client.clone()));
    let (indices, followers) =
        open_followers("follower-cluster", &dir.path().join("follower"), remotes).await;

    // wait_for_active_shards=0: the answer comes before the recovery is done, as in
    // Elasticsearch; the recovery and then following go on in the background.
    let response = followers
        .follow(FollowRequest {
            wait_for_active_shards: false,
            ..follow_logs(100)
        })
        .await
        .unwrap();
    assert!(response.follow_index_created);
    assert!(!response.follow_index_shards_acked && !response.index_following_started);
    let started = Instant::now();
    while indices.get("logs-copy").is_err() || followers.stats(Some("logs-copy")).await.is_err() {
        assert!(
            started.elapsed() < WAIT,
            "the background follow did not finish"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    write_docs(&leader, 200, 250, "after following started");
    wait_caught_up(&leader, &indices, "logs-copy").await;
    same_documents(&leader, &indices.get("logs-copy").unwrap());
    let recoveries = followers.recoveries(Some("logs-copy"));
    assert_eq!(recoveries.len(), 2, "one recovery per shard");
    for recovery in &recoveries {
        assert_eq!(recovery.leader_index, "logs");
        assert_eq!(
            recovery.progress.stage,
            tandem_recovery::progress::RecoveryStage::Done
        );
        assert!(recovery.progress.bytes_recovered > 0);
    }
    assert!(followers.recoveries(Some("other")).is_empty());

    // The leader is replaced by an index with the same name and uuid but another history
    // (a restore would do that): resume is refused with Elasticsearch's message.
    followers.pause("logs-copy").await.unwrap();
    let metadata = leader.metadata();
    // The same uuid with another shard count: refused before any shard is asked.
    let mut three_shards = metadata.settings.clone();
    three_shards.number_of_shards = 3;
    let resharded = leader_like(&dir.path().join("resharded"), &metadata, three_shards);
    client.register_index(resharded);
    let error = followers
        .resume("logs-copy", FollowParameters::default())
        .await
        .unwrap_err();
    assert!(matches!(error, CcrError::LeaderChanged(_)), "{error}");
    assert_eq!(
        error.to_string(),
        "leader index primary shards [3] does not match with the number of shards of the \
         follow index [2]"
    );
    let impostor = leader_like(
        &dir.path().join("impostor"),
        &metadata,
        metadata.settings.clone(),
    );
    client.register_index(impostor);
    let error = followers
        .resume("logs-copy", FollowParameters::default())
        .await
        .unwrap_err();
    assert!(matches!(error, CcrError::LeaderChanged(_)), "{error}");
    let message = error.to_string();
    assert!(
        message.starts_with("leader shard [logs][0] should reference [")
            && message.ends_with("as history uuid"),
        "{message}"
    );

    // A leader re-created under the same name (new uuid) is refused as well.
    let recreated = Indices::open(&dir.path().join("recreated"))
        .unwrap()
        .create("logs", &json!({"number_of_shards": 2}), &json!({}))
        .unwrap();
    client.register_index(recreated);
    let error = followers
        .resume("logs-copy", FollowParameters::default())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("was replaced"), "{error}");

    // The original leader back: resume works.
    client.register_index(leader.clone());
    followers
        .resume("logs-copy", FollowParameters::default())
        .await
        .unwrap();
    followers.shutdown().await;
}

/// A leader whose file chunks never arrive: a recovery through it stays in progress.
struct StalledChunks(Arc<dyn tandem_recovery::leader_api::LeaderClient>);

impl tandem_recovery::leader_api::ForwardingLeaderClient for StalledChunks {
    fn inner(&self) -> &dyn tandem_recovery::leader_api::LeaderClient {
        self.0.as_ref()
    }

    fn read_file_chunk(
        &self,
        _request: tandem_recovery::leader_api::ReadFileChunkRequest,
    ) -> tandem_recovery::leader_api::LeaderFuture<'_, tandem_recovery::leader_api::FileChunk> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_still_recovering_at_a_stop_is_started_again_on_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let leader_indices = Indices::open(&dir.path().join("leader")).unwrap();
    let leader = leader_indices
        .create(
            "logs",
            &json!({"number_of_shards": 1}),
            &json!({"properties": {"n": {"type": "long"}, "body": {"type": "text"}}}),
        )
        .unwrap();
    write_docs(&leader, 0, 200, "committed");
    leader.refresh().unwrap();
    let client: Arc<dyn tandem_recovery::leader_api::LeaderClient> = {
        let client =
            InProcessLeaderClient::new(RecoverySource::new(RecoverySourceSettings::default()));
        client.register_index(leader.clone());
        Arc::new(client)
    };
    let follower_dir = dir.path().join("follower");
    {
        let stalled = Arc::new(RemoteClusters::new());
        stalled.set("leader", Arc::new(StalledChunks(client.clone())));
        let (indices, followers) = open_followers("follower-cluster", &follower_dir, stalled).await;
        let response = followers
            .follow(FollowRequest {
                wait_for_active_shards: false,
                settings: json!({"index": {"refresh_interval": "200ms"}}),
                ..follow_logs(100)
            })
            .await
            .unwrap();
        assert!(!response.index_following_started);
        // The process stops while the recovery waits for its chunks.
        followers.shutdown().await;
        assert!(indices.get("logs-copy").is_err());
    }

    // The next start resumes the follow, with its parameters and settings.
    let remotes = Arc::new(RemoteClusters::new());
    remotes.set("leader", client);
    let (indices, followers) = open_followers("follower-cluster", &follower_dir, remotes).await;
    followers.resume_pending_follows().await;
    let started = Instant::now();
    while indices.get("logs-copy").is_err() || followers.stats(Some("logs-copy")).await.is_err() {
        assert!(
            started.elapsed() < WAIT,
            "the pending follow did not complete"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    write_docs(&leader, 200, 260, "after the restart");
    wait_caught_up(&leader, &indices, "logs-copy").await;
    same_documents(&leader, &indices.get("logs-copy").unwrap());
    let metadata = indices.metadata("logs-copy").unwrap();
    assert_eq!(metadata.settings.refresh_interval_millis, Some(200));
    let info = followers.info(Some("logs-copy")).await.unwrap();
    assert_eq!(
        info[0].parameters.read_poll_timeout,
        tandem_engine::units::TimeValue::from_millis(100)
    );

    // Completed: nothing is pending any more, so a further start resumes nothing.
    followers.shutdown().await;
    drop(followers);
    drop(indices);
    let (_, followers) = open_followers(
        "follower-cluster",
        &follower_dir,
        Arc::new(RemoteClusters::new()),
    )
    .await;
    followers.resume_pending_follows().await;
    let pending =
        std::fs::read_to_string(follower_dir.join("state/ccr_pending_follows.json")).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&pending).unwrap(),
        json!({})
    );
}

/// A leader cluster whose indices can be closed and reopened: a client over its `Indices`.
fn leader_cluster(dir: &Path, shards: u32) -> (Arc<Indices>, Arc<RemoteClusters>) {
    let indices = Arc::new(Indices::open(&dir.join("leader")).unwrap());
    indices
        .create(
            "logs",
            &json!({ "number_of_shards": shards }),
            &json!({"properties": {"n": {"type": "long"}, "body": {"type": "text"}}}),
        )
        .unwrap();
    let client = InProcessLeaderClient::over_indices(
        indices.clone(),
        RecoverySource::new(RecoverySourceSettings::default()),
    );
    let remotes = Arc::new(RemoteClusters::new());
    remotes.set("leader", Arc::new(client));
    (indices, remotes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_closed_during_a_follow_is_retried_until_it_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let (leader_indices, remotes) = leader_cluster(dir.path(), 2);
    let leader = leader_indices.get("logs").unwrap();
    write_docs(&leader, 0, 200, "before following");
    let (indices, followers) =
        open_followers("follower-cluster", &dir.path().join("follower"), remotes).await;
    // A long poll far longer than the test: closing the leader must end it, not wait for it.
    let mut request = follow_logs(60_000);
    request.parameters.max_retry_delay = Some(tandem_engine::units::TimeValue::from_millis(50));
    followers.follow(request).await.unwrap();
    wait_caught_up(&leader, &indices, "logs-copy").await;
    drop(leader);

    // The follower is long-polling every leader shard: the close ends the polls and goes on.
    let closing = Instant::now();
    leader_indices.close_index("logs").unwrap();
    assert!(
        closing.elapsed() < Duration::from_secs(10),
        "the close waited {:?} for the follower's long polls",
        closing.elapsed()
    );
    // Reads now fail with the leader's index_closed_exception, which is retried, not fatal.
    let started = Instant::now();
    loop {
        let stats = followers.stats(Some("logs-copy")).await.unwrap();
        let shards = &stats[0].shards;
        for shard in shards {
            assert_eq!(shard.fatal_exception, None, "closed is not fatal");
        }
        let retried = shards.iter().all(|shard| {
            shard.read_exceptions.iter().any(|read| {
                read.retries >= 1 && read.exception.error_type == "index_closed_exception"
            })
        });
        if retried {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "no retried index_closed_exception: {shards:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Reopened and written to: following goes on where it was, and the exceptions clear.
    let leader = leader_indices.open_index("logs").unwrap();
    write_docs(&leader, 200, 300, "after the reopen");
    wait_caught_up(&leader, &indices, "logs-copy").await;
    same_documents(&leader, &indices.get("logs-copy").unwrap());
    let started = Instant::now();
    loop {
        let stats = followers.stats(Some("logs-copy")).await.unwrap();
        if stats[0]
            .shards
            .iter()
            .all(|shard| shard.read_exceptions.is_empty() && shard.fatal_exception.is_none())
        {
            break;
        }
        assert!(started.elapsed() < WAIT, "{:?}", stats[0].shards);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Resume needs both indices open, as in Elasticsearch; a refused resume changes nothing.
    followers.pause("logs-copy").await.unwrap();
    drop(leader);
    leader_indices.close_index("logs").unwrap();
    let error = followers
        .resume("logs-copy", FollowParameters::default())
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "leader and follow index must be open");
    assert_eq!(
        (error.status(), error.type_name()),
        (400, "illegal_argument_exception")
    );
    let leader = leader_indices.open_index("logs").unwrap();
    indices.close_index("logs-copy").unwrap();
    let error = followers
        .resume("logs-copy", FollowParameters::default())
        .await
        .unwrap_err();
    assert_eq!(error.to_string(), "leader and follow index must be open");
    assert_eq!(
        followers.info(Some("logs-copy")).await.unwrap()[0].to_es_json()["status"],
        "paused"
    );
    indices.open_index("logs-copy").unwrap();
    followers
        .resume("logs-copy", FollowParameters::default())
        .await
        .unwrap();
    write_docs(&leader, 300, 350, "after the resume");
    wait_caught_up(&leader, &indices, "logs-copy").await;
    same_documents(&leader, &indices.get("logs-copy").unwrap());
    followers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_follower_stays_paused_across_a_restart_and_unfollows_without_its_remote() {
    let dir = tempfile::tempdir().unwrap();
    let (leader_indices, remotes) = leader_cluster(dir.path(), 2);
    let leader = leader_indices.get("logs").unwrap();
    write_docs(&leader, 0, 200, "before following");
    let follower_dir = dir.path().join("follower");
    let (indices, followers) =
        open_followers("follower-cluster", &follower_dir, remotes.clone()).await;
    followers.follow(follow_logs(100)).await.unwrap();
    wait_caught_up(&leader, &indices, "logs-copy").await;
    followers.pause("logs-copy").await.unwrap();
    let lease_id = followers.info(Some("logs-copy")).await.unwrap()[0]
        .metadata
        .lease_id
        .clone();

    // Restarted while paused: still paused, no task, nothing replicated.
    followers.shutdown().await;
    drop(followers);
    drop(indices);
    let (indices, followers) =
        open_followers("follower-cluster", &follower_dir, remotes.clone()).await;
    write_docs(&leader, 200, 260, "while paused and restarted");
    let info = followers.info(Some("logs-copy")).await.unwrap();
    assert_eq!(info[0].to_es_json()["status"], "paused");
    assert!(followers.stats(None).await.unwrap().is_empty(), "no task");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let copy = indices.get("logs-copy").unwrap();
    for (follower, leader) in copy.shards().iter().zip(leader.shards()) {
        assert!(
            follower.max_seq_no() < leader.max_seq_no(),
            "nothing arrived"
        );
    }
    assert!(copy.is_follower(), "a paused follower still refuses writes");
    let refused = copy
        .index(IndexRequest::new("x", r#"{"n":1}"#))
        .unwrap_err();
    assert_eq!(refused.status(), 403);
    drop(copy);

    // Its remote cluster removed, unfollow still converts it and names the leases it left.
    indices.close_index("logs-copy").unwrap();
    assert!(remotes.remove("leader"));
    let not_removed = followers.unfollow("logs-copy").await.unwrap();
    assert_eq!(
        not_removed,
        vec![
            "[logs][0]: no such remote cluster: [leader]".to_string(),
            "[logs][1]: no such remote cluster: [leader]".to_string(),
        ]
    );
    for shard in leader.shards() {
        assert!(
            shard.retention_leases().leases.contains_key(&lease_id),
            "the lease stays on the leader until it expires"
        );
    }
    assert!(followers.info(None).await.unwrap().is_empty());
    let copy = indices.open_index("logs-copy").unwrap();
    assert!(!copy.is_follower());
    copy.index(IndexRequest::new("doc-new", r#"{"n":1}"#))
        .unwrap();
    // The conversion is persisted: a restart neither follows nor refuses writes.
    drop(copy);
    followers.shutdown().await;
    drop(followers);
    drop(indices);
    let (indices, followers) = open_followers("follower-cluster", &follower_dir, remotes).await;
    assert!(followers.info(None).await.unwrap().is_empty());
    let copy = indices.get("logs-copy").unwrap();
    assert!(!copy.is_follower());
    assert!(copy.get("doc-new").unwrap().is_some());
}
