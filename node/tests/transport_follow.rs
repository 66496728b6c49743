//! End to end over the HTTP transport: a leader `tandem` process, and a follower node in this
//! process whose remote cluster `leader` is an `HttpLeaderClient` on the leader's address. The
//! follower recovers the leader index over HTTP (chunks), then replicates the writes that
//! follow (shard changes, long polls); documents and operation history end up identical
//! (DESIGN.md §7, invariant 2).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{EsClient, TandemProcess};
use serde_json::{json, Value};
use tandem_engine::index::Index;
use tandem_engine::units::TimeValue;
use tandem_engine::{Operation, SeqNo};
use tandem_node::config::NodeConfig;
use tandem_node::server::RunningNode;
use tandem_recovery::conformance::immediate_changes_request;
use tandem_recovery::leader_api::{LeaderClient, ShardId};
use tandem_replication::follower_indices::FollowRequest;
use tandem_replication::params::FollowParameters;
use tandem_transport::HttpLeaderClient;

/// Longest the follower may take to catch up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);
const SHARDS: u32 = 2;
const IDS: u64 = 40;

/// Writes documents `from..to` over [`IDS`] ids (later ones update earlier ones), deleting
/// every ninth, in one `_bulk`.
async fn write_docs(leader: &EsClient, from: u64, to: u64, phase: &str) {
    let mut ndjson = String::new();
    for n in from..to {
        let id = format!("doc-{}", n % IDS);
        if n % 9 == 8 {
            ndjson.push_str(&json!({"delete": {"_index": "logs", "_id": id}}).to_string());
        } else {
            ndjson.push_str(&json!({"index": {"_index": "logs", "_id": id}}).to_string());
            ndjson.push('\n');
            ndjson.push_str(&json!({"n": n, "body": format!("{phase} {n}")}).to_string());
        }
        ndjson.push('\n');
    }
    let answer = leader.bulk("/_bulk", ndjson).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["errors"], false, "{}", answer.text);
}

/// The leader shard's global checkpoint and max_seq_no, read over the transport.
async fn leader_checkpoints(client: &HttpLeaderClient, shard: u32) -> (SeqNo, SeqNo) {
    let response = client
        .shard_changes(immediate_changes_request(
            ShardId::new("logs", shard),
            SeqNo(i64::MAX / 2),
        ))
        .await
        .expect("leader checkpoints");
    (
        response.changes.global_checkpoint,
        response.changes.max_seq_no,
    )
}

/// The leader shard's whole history, read over the transport in batches.
async fn leader_history(client: &HttpLeaderClient, shard: u32, to: SeqNo) -> Vec<Operation> {
    let mut history = Vec::new();
    let mut from = 0;
    while from <= to.0 {
        let response = client
            .shard_changes(immediate_changes_request(
                ShardId::new("logs", shard),
                SeqNo(from),
            ))
            .await
            .expect("leader history");
        assert!(
            !response.changes.operations.is_empty(),
            "no progress at {from}"
        );
        from += response.changes.operations.len() as i64;
        history.extend(response.changes.operations.iter().map(|op| (**op).clone()));
    }
    history
}

fn follower_history(index: &Index, shard: u32, to: SeqNo) -> Vec<Operation> {
    let mut history = Vec::new();
    let mut from = 0;
    while from <= to.0 {
        let batch = index.shards()[shard as usize]
            .changes(SeqNo(from), to, 100, usize::MAX)
            .expect("follower history");
        assert!(!batch.is_empty(), "no progress at {from}");
        from += batch.len() as i64;
        history.extend(batch.iter().map(|op| (**op).clone()));
    }
    history
}

async fn wait_caught_up(leader: &HttpLeaderClient, follower: &Index) -> Vec<SeqNo> {
    let started = Instant::now();
    let mut targets = Vec::new();
    for shard in 0..SHARDS {
        targets.push(leader_checkpoints(leader, shard).await.0);
    }
    loop {
        let caught_up = follower
            .shards()
            .iter()
            .zip(&targets)
            .all(|(shard, target)| shard.global_checkpoint() >= *target);
        if caught_up {
            return targets;
        }
        assert!(
            started.elapsed() < CATCH_UP_TIMEOUT,
            "the follower did not catch up with {targets:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn assert_same_documents(leader: &EsClient, follower: &Index) {
    for n in 0..IDS {
        let id = format!("doc-{n}");
        let answer = leader.get(&format!("/logs/_doc/{id}")).await;
        let on_leader = if answer.body["found"] == true {
            Some((
                answer.body["_seq_no"].as_i64().unwrap(),
                answer.body["_version"].as_u64().unwrap(),
                answer.body["_source"].clone(),
            ))
        } else {
            None
        };
        let on_follower = follower.get(&id).unwrap().map(|doc| {
            (
                doc.seq_no.0,
                doc.version,
                serde_json::from_slice::<Value>(&doc.source).unwrap(),
            )
        });
        assert_eq!(on_follower, on_leader, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_recovers_and_replicates_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let mut leader_process = TandemProcess::start("leader", &dir.path().join("leader"));
    let leader = leader_process.client();
    // No background refresh (so no merge the test does not ask for), and history retained
    // whatever the leases say, so that the whole history can be compared.
    let created = leader
        .put(
            "/logs",
            json!({
                "settings": {
                    "index.number_of_shards": SHARDS,
                    "index.refresh_interval": "-1",
                    "index.soft_deletes.retention.operations": 1_000_000
                },
                "mappings": {"properties": {"n": {"type": "long"}, "body": {"type": "text"}}}
            }),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    write_docs(&leader, 0, 300, "committed").await;
    let refreshed = leader.post_empty("/logs/_refresh").await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    write_docs(&leader, 300, 400, "translog only").await;

    let follower = RunningNode::start(NodeConfig {
        data: dir.path().join("follower"),
        http: "127.0.0.1:0".parse().unwrap(),
        name: "follower".to_string(),
        indexing_buffer_bytes: tandem_node::config::default_indexing_buffer_bytes(),
        http_limits: tandem_node::http::HttpLimits::default(),
        tls: None,
        security: false,
        insecure: false,
    })
    .await
    .unwrap();
    let transport = Arc::new(HttpLeaderClient::new(vec![leader_process
        .address()
        .to_string()]));
    assert_eq!(transport.addresses(), [leader_process.address()]);
    follower.node.remotes.set("leader", transport.clone());
    let response = tokio::time::timeout(
        CATCH_UP_TIMEOUT,
        follower.node.followers.follow(FollowRequest {
            remote_cluster: "leader".to_string(),
            leader_index: "logs".to_string(),
            follower_index: "logs-copy".to_string(),
            parameters: FollowParameters {
                read_poll_timeout: Some(TimeValue::from_millis(1000)),
                ..FollowParameters::default()
            },
            wait_for_active_shards: true,
            settings: Value::Null,
        }),
    )
    .await
    .expect("the follow request did not complete")
    .expect("follow");
    assert!(response.follow_index_shards_acked && response.index_following_started);
    let copy = follower.node.indices.get("logs-copy").unwrap();
    wait_caught_up(&transport, &copy).await;
    assert_same_documents(&leader, &copy).await;

    // Writes after following arrive through shard changes (long polls over HTTP).
    write_docs(&leader, 400, 700, "replicated").await;
    let checkpoints = wait_caught_up(&transport, &copy).await;
    assert_same_documents(&leader, &copy).await;
    for (shard, checkpoint) in (0..SHARDS).zip(checkpoints) {
        assert_eq!(
            follower_history(&copy, shard, checkpoint),
            leader_history(&transport, shard, checkpoint).await,
            "history of shard {shard}"
        );
    }
    let stats = follower
        .node
        .followers
        .stats(Some("logs-copy"))
        .await
        .unwrap();
    for shard in &stats[0].shards {
        assert!(
            shard.fatal_exception.is_none(),
            "{:?}",
            shard.fatal_exception
        );
        assert!(shard.successful_read_requests > 0);
    }
    follower.stop().await;
    assert!(leader_process.terminate(), "the leader exits cleanly");
}
