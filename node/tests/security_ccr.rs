//! Cross-cluster replication with security on both clusters, in Elasticsearch 8's API-key
//! model: the leader makes a cross-cluster API key for `logs-*`, the follower stores it in its
//! keystore with `tandem keystore add` and reloads it without a restart; replication works for
//! the indices the key covers, is refused (naming the index) for the others; a follower index
//! whose leader index the reloaded key no longer covers stops with a fatal exception naming it
//! in `_ccr/stats` while another goes on, and every follow stops once its key is invalidated.
//! Every transport call (metadata, leases, listing) is refused without a credential, with a
//! wrong one, and for an index the key does not cover.

mod common;

use std::time::{Duration, Instant};

use common::secure::{keystore_add, start_secured};
use common::{wait_for_count, EsClient, TandemProcess};
use serde_json::{json, Value};
use tandem_engine::SeqNo;
use tandem_recovery::{
    AddRetentionLeaseRequest, IndexMetadataRequest, LeaderClient, LeaderError, ShardId,
};
use tandem_transport::HttpLeaderClient;

async fn index_docs(client: &EsClient, index: &str, count: u32) {
    let mut ndjson = String::new();
    for n in 0..count {
        ndjson.push_str(&format!(
            "{{\"index\":{{\"_id\":\"{n}\"}}}}\n{{\"n\":{n}}}\n"
        ));
    }
    let answer = client
        .bulk(&format!("/{index}/_bulk?refresh=true"), ndjson)
        .await;
    assert_eq!(answer.body["errors"], false, "{}", answer.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_cluster_api_key_opens_its_indices_to_a_follower_until_invalidated() {
    let dir = tempfile::tempdir().unwrap();
    let leader = TandemProcess::start_with(
        "leader",
        &dir.path().join("leader"),
        "127.0.0.1:0",
        &["--security"],
    );
    let follower_data = dir.path().join("follower");
    let follower =
        TandemProcess::start_with("follower", &follower_data, "127.0.0.1:0", &["--security"]);
    let leader_client = leader
        .client()
        .with_basic("elastic", &leader.elastic_password());
    let follower_client = follower
        .client()
        .with_basic("elastic", &follower.elastic_password());

    for index in ["logs-a", "logs-b", "other"] {
        let created = leader_client
            .put(
                &format!("/{index}"),
                json!({"settings": {"index": {"number_of_shards": 1}}}),
            )
            .await;
        assert_eq!(created.status, 200, "{}", created.text);
        index_docs(&leader_client, index, 20).await;
    }
    let remote = follower_client
        .put(
            "/_cluster/settings",
            json!({"persistent": {"cluster": {"remote": {"leader": {"seeds": [leader.address()]}}}}}),
        )
        .await;
    assert_eq!(remote.status, 200, "{}", remote.text);

    // Without credentials the leader refuses, and the follow says so.
    let follow = json!({"remote_cluster": "leader", "leader_index": "logs-a"});
    let anonymous = follower_client
        .put(
            "/logs-copy/_ccr/follow?wait_for_active_shards=1",
            follow.clone(),
        )
        .await;
    assert_eq!(anonymous.status, 403, "{}", anonymous.text);
    assert_eq!(
        anonymous.body["error"]["type"], "security_exception",
        "{}",
        anonymous.text
    );
    assert!(
        anonymous
            .text
            .contains("missing authentication credentials"),
        "{}",
        anonymous.text
    );

    // The leader's cross-cluster key, in the follower's keystore, reloaded.
    let key = leader_client
        .post(
            "/_security/cross_cluster/api_key",
            json!({"name": "follower-cluster", "access": {"replication": [{"names": ["logs-*"]}]}}),
        )
        .await;
    assert_eq!(key.status, 200, "{}", key.text);
    let key_id = key.body["id"].as_str().unwrap().to_string();
    let encoded = key.body["encoded"].as_str().unwrap().to_string();
    // Good for the transport only.
    let rest = leader
        .client()
        .with_authorization(&format!("ApiKey {encoded}"))
        .get("/_cat/indices")
        .await;
    assert_eq!(rest.status, 403, "{}", rest.text);
    keystore_add(
        &follower_data,
        "cluster.remote.leader.credentials",
        &encoded,
    );
    let reloaded = follower_client
        .post_empty("/_nodes/reload_secure_settings")
        .await;
    assert_eq!(reloaded.status, 200, "{}", reloaded.text);
    assert_eq!(reloaded.body["_nodes"]["successful"], 1);

    let followed = follower_client
        .put("/logs-copy/_ccr/follow?wait_for_active_shards=1", follow)
        .await;
    assert_eq!(followed.status, 200, "{}", followed.text);
    wait_for_count(&follower_client, "logs-copy", 20).await;
    let late = leader_client
        .put("/logs-a/_doc/late?refresh=true", json!({"n": 99}))
        .await;
    assert_eq!(late.status, 201, "{}", late.text);
    wait_for_count(&follower_client, "logs-copy", 21).await;

    // An index the key does not cover is refused, by name.
    let outside = follower_client
        .put(
            "/other-copy/_ccr/follow?wait_for_active_shards=1",
            json!({"remote_cluster": "leader", "leader_index": "other"}),
        )
        .await;
    assert_eq!(outside.status, 403, "{}", outside.text);
    assert!(
        outside.text.contains("on indices [other]"),
        "{}",
        outside.text
    );

    // A second follower index under the same key.
    let followed_b = follower_client
        .put(
            "/logs-b-copy/_ccr/follow?wait_for_active_shards=1",
            json!({"remote_cluster": "leader", "leader_index": "logs-b"}),
        )
        .await;
    assert_eq!(followed_b.status, 200, "{}", followed_b.text);
    wait_for_count(&follower_client, "logs-b-copy", 20).await;

    // The keystore now holds a key for logs-b only: logs-copy's next read is refused, naming
    // its leader index, and its task stops with a fatal exception; logs-b-copy goes on.
    let narrow = leader_client
        .post(
            "/_security/cross_cluster/api_key",
            json!({"name": "logs-b-only", "access": {"replication": [{"names": ["logs-b"]}]}}),
        )
        .await;
    assert_eq!(narrow.status, 200, "{}", narrow.text);
    let narrow_id = narrow.body["id"].as_str().unwrap().to_string();
    keystore_add(
        &follower_data,
        "cluster.remote.leader.credentials",
        narrow.body["encoded"].as_str().unwrap(),
    );
    assert_eq!(
        follower_client
            .post_empty("/_nodes/reload_secure_settings")
            .await
            .status,
        200
    );
    for index in ["logs-a", "logs-b"] {
        let wake = leader_client
            .put(
                &format!("/{index}/_doc/after?refresh=true"),
                json!({"n": 100}),
            )
            .await;
        assert_eq!(wake.status, 201, "{}", wake.text);
    }
    let fatal = wait_for_fatal(&follower_client, "logs-copy").await;
    assert_eq!(fatal["type"], "security_exception", "{fatal}");
    assert!(
        fatal["reason"]
            .as_str()
            .unwrap()
            .contains("on indices [logs-a]"),
        "{fatal}"
    );
    wait_for_count(&follower_client, "logs-b-copy", 21).await;

    // Invalidated: the follower's next read is refused, and the task stops, fatally.
    let revoked = leader_client
        .delete_with_body("/_security/api_key", json!({"ids": [narrow_id, key_id]}))
        .await;
    assert_eq!(
        revoked.body["invalidated_api_keys"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "{}",
        revoked.text
    );
    let wake = leader_client
        .put("/logs-b/_doc/revoked?refresh=true", json!({"n": 101}))
        .await;
    assert_eq!(wake.status, 201, "{}", wake.text);
    let fatal = wait_for_fatal(&follower_client, "logs-b-copy").await;
    assert_eq!(fatal["type"], "security_exception", "{fatal}");
    assert!(
        fatal["reason"].as_str().unwrap().contains("refused"),
        "{fatal}"
    );
}

/// The fatal exception of `index`'s first shard in `_ccr/stats`, once there is one.
async fn wait_for_fatal(client: &EsClient, index: &str) -> Value {
    let started = Instant::now();
    loop {
        let stats = client.get(&format!("/{index}/_ccr/stats")).await;
        let shard = &stats.body["indices"][0]["shards"][0];
        if !shard["fatal_exception"].is_null() {
            return shard["fatal_exception"].clone();
        }
        assert!(
            started.elapsed() < common::CONVERGE_WITHIN,
            "no fatal exception on [{index}]: {}",
            stats.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `Err(Unauthorized)`'s reason, or a panic naming what came instead.
fn unauthorized<T: std::fmt::Debug>(outcome: Result<T, LeaderError>, call: &str) -> String {
    match outcome {
        Err(LeaderError::Unauthorized(reason)) => reason,
        other => panic!("{call}: expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_call_needs_a_credential_that_covers_its_index() {
    use base64::Engine as _;

    let dir = tempfile::tempdir().unwrap();
    let (leader, elastic) = start_secured("leader", &dir.path().join("leader"));
    for index in ["logs-a", "other"] {
        let created = elastic
            .put(
                &format!("/{index}"),
                json!({"settings": {"index": {"number_of_shards": 1}}}),
            )
            .await;
        assert_eq!(created.status, 200, "{}", created.text);
        index_docs(&elastic, index, 5).await;
    }
    let key = elastic
        .post(
            "/_security/cross_cluster/api_key",
            json!({"name": "logs", "access": {"replication": [{"names": ["logs-*"]}]}}),
        )
        .await;
    assert_eq!(key.status, 200, "{}", key.text);
    let key_id = key.body["id"].as_str().unwrap().to_string();
    let encoded = key.body["encoded"].as_str().unwrap().to_string();

    let client = HttpLeaderClient::new(vec![leader.address().to_string()]);
    let metadata = |index: &str| client.index_metadata(IndexMetadataRequest::new(index));
    let lease = |index: &str| {
        client.add_retention_lease(AddRetentionLeaseRequest::new(
            ShardId::new(index, 0),
            "intruder",
            SeqNo(0),
            "test",
        ))
    };

    // No credential: every call is refused, a lease that would pin history included.
    let reason = unauthorized(metadata("logs-a").await, "no credential");
    assert!(reason.contains("HTTP 401"), "{reason}");
    assert!(
        reason.contains("missing authentication credentials"),
        "{reason}"
    );
    unauthorized(lease("logs-a").await, "a lease without a credential");
    unauthorized(client.list_indices().await, "listing without a credential");

    // A key id that does not exist, and the right id with a wrong secret.
    for wrong in [
        "no-such-id:no-such-secret".to_string(),
        format!("{key_id}:wrong-secret"),
    ] {
        let wrong = base64::engine::general_purpose::STANDARD.encode(wrong);
        client.set_credentials(Some(&wrong)).unwrap();
        let reason = unauthorized(metadata("logs-a").await, "a wrong credential");
        assert!(reason.contains("HTTP 401"), "{reason}");
        unauthorized(lease("logs-a").await, "a lease with a wrong credential");
    }
    // A user's password is not the key's secret either.
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{key_id}:{}", leader.elastic_password()));
    client.set_credentials(Some(&basic)).unwrap();
    unauthorized(metadata("logs-a").await, "a password as the key's secret");

    // The key: its indices only.
    client.set_credentials(Some(&encoded)).unwrap();
    let held = metadata("logs-a").await.expect("the key covers logs-a");
    assert_eq!(held.name, "logs-a");
    lease("logs-a").await.expect("a lease on logs-a");
    let reason = unauthorized(metadata("other").await, "an index the key does not cover");
    assert!(reason.contains("is unauthorized"), "{reason}");
    assert!(reason.contains("[other]"), "{reason}");
    assert!(reason.contains(&key_id), "{reason}");
    unauthorized(
        lease("other").await,
        "a lease on an index the key does not cover",
    );
    let listed = client.list_indices().await.expect("listing with the key");
    let names: Vec<&str> = listed.iter().map(|summary| summary.name.as_str()).collect();
    assert!(names.contains(&"logs-a"), "{names:?}");

    // Invalidated: refused at the next call.
    let invalidated = elastic
        .delete_with_body("/_security/api_key", json!({"ids": [key_id]}))
        .await;
    assert_eq!(invalidated.status, 200, "{}", invalidated.text);
    let reason = unauthorized(metadata("logs-a").await, "an invalidated key");
    assert!(reason.contains("HTTP 401"), "{reason}");
}
