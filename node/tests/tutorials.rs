//! Elastic's CCR tutorials, request for request, against two real `tandem` processes on
//! loopback:
//!
//! - "set up cross-cluster replication": a remote cluster in `_cluster/settings`,
//!   `PUT /server-metrics-follower/_ccr/follow?wait_for_active_shards=1`, documents
//!   replicate, `_ccr/stats` shows the progress;
//! - "uni-directional disaster recovery": follow, fail over (pause, close, unfollow,
//!   open, write to the follower), fail back (the old leader follows the new one), and find on
//!   cluster A the document written on cluster B;
//! - crashes: kill -9 of the follower mid-replication, then of the leader; both restart on
//!   their ports and the follower ends with the leader's documents and history.
//!
//! Every test runs twice: as the nodes start by default, and `_with_security`, as the secure
//! demo runs them (TLS, security, `elastic` as the client, a cross-cluster API key in the
//! follower's keystore for each remote cluster): the same requests, the same answers.

mod common;

use std::time::{Duration, Instant};

use common::secure::{Clusters, Node, Security};
use common::{converge, EsClient};
use serde_json::{json, Value};

/// Longest wait for replication to show a result.
const CONVERGE_WITHIN: Duration = Duration::from_secs(90);

/// The index of the "set up cross-cluster replication" tutorial.
fn server_metrics() -> Value {
    json!({
        "settings": {"index": {"number_of_replicas": 0, "number_of_shards": 1,
                               "routing.allocation.total_shards_per_node": 1}},
        "mappings": {"_source": {"enabled": true}, "properties": {
            "@timestamp": {"type": "date"},
            "accept": {"type": "long"},
            "deny": {"type": "long"},
            "host": {"type": "keyword"},
            "response": {"type": "float"},
            "service": {"type": "keyword"},
            "total": {"type": "long"}
        }}
    })
}

fn metric(n: u64) -> Value {
    json!({
        "@timestamp": format!("2026-11-30T04:{:02}:{:02}Z", n / 60 % 60, n % 60),
        "accept": n * 3, "deny": n % 7, "host": format!("host-{}", n % 5),
        "response": (n % 100) as f64 / 10.0, "service": "web", "total": n * 3 + n % 7
    })
}

async fn bulk_metrics(client: &EsClient, index: &str, from: u64, to: u64) {
    let mut ndjson = String::new();
    for n in from..to {
        ndjson.push_str(&json!({"index": {"_index": index, "_id": n.to_string()}}).to_string());
        ndjson.push('\n');
        ndjson.push_str(&metric(n).to_string());
        ndjson.push('\n');
    }
    let answer = client.bulk("/_bulk", ndjson).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["errors"], false, "{}", answer.text);
}

fn expect_ok(answer: &common::Answer) {
    assert_eq!(answer.status, 200, "{}", answer.text);
}

/// Connects `follower` to `leader` as remote cluster `alias` in sniff mode (with its
/// credentials when security is on).
async fn remote_cluster(clusters: &Clusters, follower: &Node, alias: &str, leader: &Node) {
    clusters.grant(follower, leader, alias).await;
    let address = leader.address();
    let answer = follower
        .client()
        .put(
            "/_cluster/settings",
            json!({"persistent": {"cluster": {"remote": {alias: {"seeds": [address]}}}}}),
        )
        .await;
    expect_ok(&answer);
    assert_eq!(answer.body["acknowledged"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_002_set_up_cross_cluster_replication() {
    set_up_cross_cluster_replication(Security::Off).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_002_set_up_cross_cluster_replication_with_security() {
    set_up_cross_cluster_replication(Security::On).await
}

async fn set_up_cross_cluster_replication(security: Security) {
    let dir = tempfile::tempdir().unwrap();
    let clusters = Clusters::new(dir.path(), security);
    let leader = clusters.start("leader", &dir.path().join("leader"));
    let follower = clusters.start("follower", &dir.path().join("follower"));
    let (on_leader, on_follower) = (leader.client(), follower.client());

    expect_ok(&on_leader.put("/server-metrics", server_metrics()).await);
    bulk_metrics(&on_leader, "server-metrics", 0, 500).await;

    // Connect the follower to the leader and check the connection.
    remote_cluster(&clusters, &follower, "leader", &leader).await;
    let info = on_follower.get("/_remote/info").await;
    expect_ok(&info);
    assert_eq!(info.body["leader"]["connected"], true, "{}", info.text);
    assert_eq!(info.body["leader"]["mode"], "sniff");
    assert_eq!(info.body["leader"]["seeds"], json!([leader.address()]));
    let settings = on_follower.get("/_cluster/settings").await;
    assert_eq!(
        settings.body["persistent"]["cluster"]["remote"]["leader"]["seeds"],
        json!([leader.address()])
    );

    let followed = on_follower
        .put(
            "/server-metrics-follower/_ccr/follow?wait_for_active_shards=1",
            json!({"remote_cluster": "leader", "leader_index": "server-metrics"}),
        )
        .await;
    expect_ok(&followed);
    assert_eq!(
        followed.body,
        json!({"follow_index_created": true, "follow_index_shards_acked": true,
               "index_following_started": true})
    );

    // New documents on the leader replicate.
    bulk_metrics(&on_leader, "server-metrics", 500, 1_000).await;
    let count = converge(
        (&on_leader, "server-metrics"),
        (&on_follower, "server-metrics-follower"),
        CONVERGE_WITHIN,
    )
    .await;
    assert_eq!(count, 1_000);

    let stats = on_follower.get("/server-metrics-follower/_ccr/stats").await;
    expect_ok(&stats);
    let shard = &stats.body["indices"][0]["shards"][0];
    assert_eq!(shard["remote_cluster"], "leader", "{}", stats.text);
    assert_eq!(shard["leader_index"], "server-metrics");
    assert_eq!(shard["follower_global_checkpoint"], 999);
    assert_eq!(shard["leader_global_checkpoint"], 999);
    assert!(shard["operations_written"].as_u64().unwrap() >= 500);
    assert!(shard["fatal_exception"].is_null());
    let all = on_follower.get("/_ccr/stats").await;
    assert_eq!(
        all.body["follow_stats"]["indices"][0]["index"],
        "server-metrics-follower"
    );

    // The follower index is read-only, and _recovery tells where it came from.
    let write = on_follower
        .put("/server-metrics-follower/_doc/x", json!({"host": "x"}))
        .await;
    assert_eq!(write.status, 403, "{}", write.text);
    let recovery = on_follower.get("/server-metrics-follower/_recovery").await;
    let shard = &recovery.body["server-metrics-follower"]["shards"][0];
    assert_eq!(shard["type"], "SNAPSHOT");
    assert_eq!(shard["stage"], "DONE");
    assert_eq!(shard["source"]["repository"], "_ccr_leader");

    // An alias nobody configured (Elasticsearch's NoSuchRemoteClusterException is a 404).
    let unknown = on_follower
        .put(
            "/other/_ccr/follow",
            json!({"remote_cluster": "nowhere", "leader_index": "server-metrics"}),
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    assert_eq!(
        unknown.body["error"]["type"],
        "no_such_remote_cluster_exception"
    );
    assert_eq!(
        unknown.body["error"]["reason"],
        "no such remote cluster: [nowhere]"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_uni_directional_disaster_recovery() {
    uni_directional_disaster_recovery(Security::Off).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_000_uni_directional_disaster_recovery_with_security() {
    uni_directional_disaster_recovery(Security::On).await
}

async fn uni_directional_disaster_recovery(security: Security) {
    let dir = tempfile::tempdir().unwrap();
    let clusters = Clusters::new(dir.path(), security);
    let cluster_a = clusters.start("clusterA", &dir.path().join("a"));
    let cluster_b = clusters.start("clusterB", &dir.path().join("b"));
    let (on_a, on_b) = (cluster_a.client(), cluster_b.client());

    expect_ok(
        &on_a
            .put(
                "/kibana_sample_data_ecommerce",
                json!({"mappings": {"properties": {"user": {"type": "keyword"},
                                                   "total": {"type": "long"}}}}),
            )
            .await,
    );
    let mut ndjson = String::new();
    for n in 0..300 {
        ndjson.push_str("{\"index\":{}}\n");
        ndjson.push_str(&json!({"user": format!("customer-{n}"), "total": n}).to_string());
        ndjson.push('\n');
    }
    expect_ok(
        &on_a
            .bulk("/kibana_sample_data_ecommerce/_bulk", ndjson)
            .await,
    );

    // Cluster B follows cluster A, configured in proxy mode as in the tutorial.
    clusters.grant(&cluster_b, &cluster_a, "clusterA").await;
    let configured = on_b
        .put(
            "/_cluster/settings",
            json!({"persistent": {"cluster": {"remote": {"clusterA": {
                "mode": "proxy", "skip_unavailable": "true",
                "proxy_socket_connections": "18", "proxy_address": cluster_a.address()
            }}}}}),
        )
        .await;
    expect_ok(&configured);
    let info = on_b.get("/_remote/info").await;
    assert_eq!(info.body["clusterA"]["mode"], "proxy", "{}", info.text);
    assert_eq!(info.body["clusterA"]["connected"], true);
    assert_eq!(info.body["clusterA"]["skip_unavailable"], true);
    let followed = on_b
        .put(
            "/kibana_sample_data_ecommerce2/_ccr/follow?wait_for_active_shards=1",
            json!({"remote_cluster": "clusterA", "leader_index": "kibana_sample_data_ecommerce"}),
        )
        .await;
    expect_ok(&followed);
    converge(
        (&on_a, "kibana_sample_data_ecommerce"),
        (&on_b, "kibana_sample_data_ecommerce2"),
        CONVERGE_WITHIN,
    )
    .await;

    // Failover: cluster A is gone; cluster B's copy becomes a normal index.
    expect_ok(
        &on_b
            .post_empty("/kibana_sample_data_ecommerce2/_ccr/pause_follow")
            .await,
    );
    expect_ok(
        &on_b
            .post_empty("/kibana_sample_data_ecommerce2/_close")
            .await,
    );
    let unfollowed = on_b
        .post_empty("/kibana_sample_data_ecommerce2/_ccr/unfollow")
        .await;
    expect_ok(&unfollowed);
    assert_eq!(unfollowed.body, json!({"acknowledged": true}));
    expect_ok(
        &on_b
            .post_empty("/kibana_sample_data_ecommerce2/_open")
            .await,
    );
    let written = on_b
        .post(
            "/kibana_sample_data_ecommerce2/_doc/",
            json!({"user": "kimchy"}),
        )
        .await;
    assert_eq!(written.status, 201, "{}", written.text);
    assert_eq!(written.body["result"], "created");

    // Failback: cluster A drops its stale index and follows cluster B.
    expect_ok(&on_a.delete("/kibana_sample_data_ecommerce").await);
    clusters.grant(&cluster_a, &cluster_b, "clusterB").await;
    let configured = on_a
        .put(
            "/_cluster/settings",
            json!({"persistent": {"cluster": {"remote": {"clusterB": {
                "mode": "proxy", "skip_unavailable": "true",
                "proxy_socket_connections": "18", "proxy_address": cluster_b.address()
            }}}}}),
        )
        .await;
    expect_ok(&configured);
    let followed = on_a
        .put(
            "/kibana_sample_data_ecommerce/_ccr/follow?wait_for_active_shards=1",
            json!({"remote_cluster": "clusterB", "leader_index": "kibana_sample_data_ecommerce2"}),
        )
        .await;
    expect_ok(&followed);
    let count = converge(
        (&on_b, "kibana_sample_data_ecommerce2"),
        (&on_a, "kibana_sample_data_ecommerce"),
        CONVERGE_WITHIN,
    )
    .await;
    assert_eq!(count, 301);

    let found = on_a
        .get("/kibana_sample_data_ecommerce/_search?q=kimchy")
        .await;
    expect_ok(&found);
    assert_eq!(found.body["hits"]["total"]["value"], 1, "{}", found.text);
    assert_eq!(found.body["hits"]["hits"][0]["_source"]["user"], "kimchy");
}

/// Per shard, the follower's operations equal the leader's: read from both data directories
/// once the processes are gone.
fn assert_same_history(leader_data: &std::path::Path, follower_data: &std::path::Path) {
    use tandem_engine::indices::Indices;
    use tandem_engine::SeqNo;
    let leader = Indices::open(leader_data).unwrap();
    let follower = Indices::open(follower_data).unwrap();
    let (leader, follower) = (
        leader.get("logs").unwrap(),
        follower.get("logs-copy").unwrap(),
    );
    assert_eq!(leader.shards().len(), follower.shards().len());
    for (leader_shard, follower_shard) in leader.shards().iter().zip(follower.shards()) {
        let checkpoint = leader_shard.global_checkpoint();
        assert_eq!(follower_shard.global_checkpoint(), checkpoint);
        let read = |shard: &tandem_engine::ShardEngine| -> Vec<tandem_engine::Operation> {
            shard
                .changes(SeqNo(0), checkpoint, usize::MAX, usize::MAX)
                .unwrap()
                .into_iter()
                .map(|operation| (*operation).clone())
                .collect()
        };
        let history = read(leader_shard);
        assert_eq!(history.len() as i64, checkpoint.0 + 1);
        assert_eq!(read(follower_shard), history);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_resumes_after_kill_9_of_the_follower_and_of_the_leader() {
    replication_resumes_after_kill_9(Security::Off).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_resumes_after_kill_9_of_the_follower_and_of_the_leader_with_security() {
    replication_resumes_after_kill_9(Security::On).await
}

async fn replication_resumes_after_kill_9(security: Security) {
    let dir = tempfile::tempdir().unwrap();
    let clusters = Clusters::new(dir.path(), security);
    let (leader_data, follower_data) = (dir.path().join("leader"), dir.path().join("follower"));
    let mut leader = clusters.start("leader", &leader_data);
    let mut follower = clusters.start("follower", &follower_data);
    let (leader_address, follower_address) =
        (leader.address().to_string(), follower.address().to_string());
    expect_ok(
        &leader
            .client()
            .put(
                "/logs",
                json!({"settings": {"index": {"number_of_shards": 2,
                                              "translog.durability": "request"}}}),
            )
            .await,
    );
    bulk_metrics(&leader.client(), "logs", 0, 400).await;
    remote_cluster(&clusters, &follower, "leader", &leader).await;
    expect_ok(
        &follower
            .client()
            .put(
                "/logs-copy/_ccr/follow?wait_for_active_shards=1",
                json!({"remote_cluster": "leader", "leader_index": "logs"}),
            )
            .await,
    );

    // Writes keep coming while the follower is killed: some of them it has, some not.
    let writer = {
        let client = leader.client();
        tokio::spawn(async move {
            for batch in 0..20u64 {
                bulk_metrics(&client, "logs", 400 + batch * 50, 450 + batch * 50).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    follower.kill9();
    writer.await.unwrap();
    let mut follower = clusters.start_on("follower", &follower_data, &follower_address);
    converge(
        (&leader.client(), "logs"),
        (&follower.client(), "logs-copy"),
        CONVERGE_WITHIN,
    )
    .await;

    // Now the leader dies mid-stream; acknowledged writes survive, and the follower, retrying
    // meanwhile, resumes once the leader is back on its address.
    bulk_metrics(&leader.client(), "logs", 1_400, 1_600).await;
    leader.kill9();
    let stats = follower.client().get("/logs-copy/_ccr/stats").await;
    expect_ok(&stats);
    let mut leader = clusters.start_on("leader", &leader_data, &leader_address);
    bulk_metrics(&leader.client(), "logs", 1_600, 1_700).await;
    // Updates of existing documents and a delete, so the history is more than appends.
    bulk_metrics(&leader.client(), "logs", 0, 50).await;
    expect_ok(&leader.client().delete("/logs/_doc/7").await);
    let count = converge(
        (&leader.client(), "logs"),
        (&follower.client(), "logs-copy"),
        CONVERGE_WITHIN,
    )
    .await;
    assert_eq!(count, 1_699);

    // Wait for the follower's checkpoints to reach the leader's, then compare histories.
    let started = Instant::now();
    loop {
        let stats = follower.client().get("/logs-copy/_ccr/stats").await.body;
        let shards = stats["indices"][0]["shards"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let caught_up = shards.len() == 2
            && shards.iter().all(|shard| {
                shard["follower_global_checkpoint"] == shard["leader_global_checkpoint"]
                    && shard["fatal_exception"].is_null()
            });
        if caught_up {
            break;
        }
        assert!(started.elapsed() < CONVERGE_WITHIN, "{stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(follower.terminate(), "the follower exits cleanly");
    assert!(leader.terminate(), "the leader exits cleanly");
    assert_same_history(&leader_data, &follower_data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_followers_follow_a_change_of_the_remote_clusters_address() {
    remote_cluster_address_change(Security::Off).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_followers_follow_a_change_of_the_remote_clusters_address_with_security() {
    remote_cluster_address_change(Security::On).await
}

async fn remote_cluster_address_change(security: Security) {
    let dir = tempfile::tempdir().unwrap();
    let clusters = Clusters::new(dir.path(), security);
    let leader_data = dir.path().join("leader");
    let mut leader = clusters.start("leader", &leader_data);
    let follower = clusters.start("follower", &dir.path().join("follower"));
    let on_follower = follower.client();
    expect_ok(
        &leader
            .client()
            .put("/server-metrics", server_metrics())
            .await,
    );
    bulk_metrics(&leader.client(), "server-metrics", 0, 100).await;
    remote_cluster(&clusters, &follower, "leader", &leader).await;
    expect_ok(
        &on_follower
            .put(
                "/copy/_ccr/follow?wait_for_active_shards=1",
                json!({"remote_cluster": "leader", "leader_index": "server-metrics"}),
            )
            .await,
    );
    converge(
        (&leader.client(), "server-metrics"),
        (&on_follower, "copy"),
        CONVERGE_WITHIN,
    )
    .await;

    // The leader moves to another port; only the remote cluster setting changes.
    assert!(leader.terminate());
    let leader = clusters.start("leader", &leader_data);
    bulk_metrics(&leader.client(), "server-metrics", 100, 250).await;
    remote_cluster(&clusters, &follower, "leader", &leader).await;
    let count = converge(
        (&leader.client(), "server-metrics"),
        (&on_follower, "copy"),
        CONVERGE_WITHIN,
    )
    .await;
    assert_eq!(count, 250);
    let info = on_follower.get("/copy/_ccr/info").await;
    assert_eq!(
        info.body["follower_indices"][0]["status"], "active",
        "{}",
        info.text
    );
}
