//! `index.mapping.total_fields.limit` (issue 20 item 9): on the primary path, documents and
//! mapping updates cannot grow the mappings past the limit (400 `illegal_argument_exception`
//! with Elasticsearch's message); the limit is a dynamic setting; a follower applies its
//! leader's mappings as they are, whatever its own limit.

mod common;

use std::time::{Duration, Instant};

use common::{start_in_process, EsClient};
use serde_json::{json, Map, Value};

/// Longest wait for the follower to catch up.
const WITHIN: Duration = Duration::from_secs(60);

/// A document with fields `{prefix}0` to `{prefix}{count - 1}`.
fn wide_document(prefix: &str, count: usize) -> Value {
    let fields: Map<String, Value> = (0..count)
        .map(|n| (format!("{prefix}{n}"), json!(n)))
        .collect();
    Value::Object(fields)
}

async fn mapped_fields(client: &EsClient, index: &str) -> usize {
    let mapping = client.get(&format!("/{index}/_mapping")).await;
    mapping.body[index]["mappings"]["properties"]
        .as_object()
        .map_or(0, Map::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_and_mapping_updates_stop_at_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_in_process("limits", dir.path()).await;
    let client = EsClient::new(&node.url());
    assert_eq!(client.put("/wide", json!({})).await.status, 200);

    // 999 fields fit under the default limit of 1000.
    let fits = client.put("/wide/_doc/1", wide_document("f", 999)).await;
    assert_eq!(fits.status, 201, "{}", fits.text);
    // An object and its field count two: 1001 fields.
    let over = client.put("/wide/_doc/2", json!({"o": {"a": 1}})).await;
    assert_eq!(over.status, 400, "{}", over.text);
    assert_eq!(over.body["error"]["type"], "illegal_argument_exception");
    assert_eq!(
        over.body["error"]["reason"],
        "Limit of total fields [1000] has been exceeded while adding new fields [2]"
    );
    assert_eq!(client.get("/wide/_doc/2").await.status, 404);
    // One more field is exactly the limit.
    let last = client.put("/wide/_doc/3", json!({"last": 1})).await;
    assert_eq!(last.status, 201, "{}", last.text);
    // A mapping update past it is refused, and so is a bulk item.
    let mapping = client
        .put(
            "/wide/_mapping",
            json!({"properties": {"extra": {"type": "keyword"}}}),
        )
        .await;
    assert_eq!(mapping.status, 400, "{}", mapping.text);
    assert_eq!(
        mapping.body["error"]["reason"],
        "Limit of total fields [1000] has been exceeded"
    );
    let bulk = client
        .bulk(
            "/wide/_bulk",
            "{\"index\":{\"_id\":\"b\"}}\n{\"another\":1}\n".to_string(),
        )
        .await;
    assert_eq!(bulk.status, 200, "{}", bulk.text);
    assert_eq!(bulk.body["errors"], true);
    assert_eq!(
        bulk.body["items"][0]["index"]["error"]["type"],
        "illegal_argument_exception"
    );
    assert_eq!(mapped_fields(&client, "wide").await, 1000);

    // The limit is dynamic.
    let raised = client
        .put(
            "/wide/_settings",
            json!({"index": {"mapping": {"total_fields": {"limit": 1002}}}}),
        )
        .await;
    assert_eq!(raised.status, 200, "{}", raised.text);
    let settings = client.get("/wide/_settings").await;
    assert_eq!(
        settings.body["wide"]["settings"]["index"]["mapping"]["total_fields"]["limit"],
        "1002"
    );
    let now_fits = client.put("/wide/_doc/2", json!({"o": {"a": 1}})).await;
    assert_eq!(now_fits.status, 201, "{}", now_fits.text);
    let bad = client
        .put(
            "/wide/_settings",
            json!({"index.mapping.total_fields.limit": "many"}),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);

    // An index cannot be created with more fields than its limit.
    let properties: Map<String, Value> = (0..3)
        .map(|n| (format!("p{n}"), json!({"type": "long"})))
        .collect();
    let created = client
        .put(
            "/narrow",
            json!({"settings": {"index.mapping.total_fields.limit": 2},
                   "mappings": {"properties": properties}}),
        )
        .await;
    assert_eq!(created.status, 400, "{}", created.text);
    assert_eq!(
        created.body["error"]["reason"],
        "Limit of total fields [2] has been exceeded"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_applies_its_leaders_mappings_past_its_own_limit() {
    let dir = tempfile::tempdir().unwrap();
    let pair = common::in_process_pair(dir.path()).await;
    let (leader, follower) = (&pair.leader_client, &pair.follower_client);
    let created = leader
        .put("/logs", json!({"settings": {"number_of_shards": 1}}))
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(
        leader.put("/logs/_doc/0", json!({"seed": 1})).await.status,
        201
    );
    let follow = follower
        .put(
            "/copy/_ccr/follow?wait_for_active_shards=1",
            json!({"remote_cluster": "leader", "leader_index": "logs"}),
        )
        .await;
    assert_eq!(follow.status, 200, "{}", follow.text);

    // The leader raises its limit (a setting a follower keeps its own value of) and grows
    // past the follower's.
    let raised = leader
        .put(
            "/logs/_settings",
            json!({"index.mapping.total_fields.limit": 3000}),
        )
        .await;
    assert_eq!(raised.status, 200, "{}", raised.text);
    let wide = leader.put("/logs/_doc/1", wide_document("f", 1500)).await;
    assert_eq!(wide.status, 201, "{}", wide.text);

    let started = Instant::now();
    while mapped_fields(follower, "copy").await < 1501 {
        assert!(
            started.elapsed() < WITHIN,
            "the follower did not take its leader's mappings: {}",
            follower.get("/copy/_ccr/stats").await.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    loop {
        follower.post_empty("/copy/_refresh").await;
        let got = follower.get("/copy/_doc/1").await;
        if got.status == 200 {
            assert_eq!(got.body["_source"], wide_document("f", 1500));
            break;
        }
        assert!(started.elapsed() < WITHIN, "{}", got.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settings = follower.get("/copy/_settings").await;
    assert!(
        settings.body["copy"]["settings"]["index"]["mapping"].is_null(),
        "the follower has its own (default) limit: {}",
        settings.text
    );
}
