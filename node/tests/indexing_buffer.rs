//! The node keeps its indexing buffer within `indices.memory.index_buffer_size`: a bulk load
//! with `refresh_interval: -1` into a node with a 1 MB buffer is refreshed as it goes, and no
//! document is lost.

mod common;

use std::time::{Duration, Instant};

use common::EsClient;
use serde_json::json;
use tandem_node::config::NodeConfig;
use tandem_node::server::RunningNode;

const BUDGET: u64 = 1 << 20;
const WITHIN: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_load_with_refresh_disabled_stays_within_the_indexing_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let node = RunningNode::start(NodeConfig {
        data: dir.path().join("node"),
        http: "127.0.0.1:0".parse().unwrap(),
        name: "node".to_string(),
        indexing_buffer_bytes: BUDGET,
        http_limits: tandem_node::http::HttpLimits::default(),
        tls: None,
        security: false,
        insecure: false,
    })
    .await
    .unwrap();
    let client = EsClient::new(&node.url());
    let created = client
        .put("/bulk", json!({"settings": {"refresh_interval": "-1"}}))
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let body = "x".repeat(1000);
    for round in 0..8 {
        let mut ndjson = String::new();
        for n in 0..500 {
            ndjson.push_str(&format!("{{\"index\":{{\"_id\":\"{round}-{n}\"}}}}\n"));
            ndjson.push_str(&json!({"body": body}).to_string());
            ndjson.push('\n');
        }
        let bulk = client.bulk("/bulk/_bulk", ndjson).await;
        assert_eq!(bulk.status, 200, "{}", bulk.text);
        assert_eq!(bulk.body["errors"], false);
    }
    // About 4 MB was written: the node refreshes until the buffer fits its budget.
    let started = Instant::now();
    while node.node.indices.indexing_buffer_bytes() > BUDGET {
        assert!(started.elapsed() < WITHIN, "the buffer stays over budget");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let index = node.node.indices.get("bulk").unwrap();
    assert!(index.shards()[0].stats().refresh_count > 0);
    client.post_empty("/bulk/_refresh").await;
    let count = client.get("/bulk/_count").await;
    assert_eq!(count.body["count"], 4000, "{}", count.text);
}
