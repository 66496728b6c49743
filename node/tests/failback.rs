//! The seed tutorial's failover and failback, through `_ccr/promote` and `_ccr/failback`,
//! between two real `tandem` processes: the old leader is killed (-9) with writes in flight
//! that the follower never received (its link to the leader black-holed), the follower is
//! promoted and takes writes, the old leader restarts and fails back. Afterwards both indices
//! verify equal, and the divergent files hold exactly the old leader's acknowledged writes the
//! promoted index never received (plus, at most, writes in flight at the kill that reached
//! the old leader's translog unacknowledged); replayed with `_bulk`, they reach both clusters.
//!
//! Runs twice: as the nodes start by default, and `_with_security` (TLS, `elastic`, a
//! cross-cluster API key per remote).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::secure::{Clusters, Node, Security};
use common::{converge, documents, EsClient};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tandem_testkit::fault_proxy::{Fault, FaultProxy};

const CONVERGE_WITHIN: Duration = Duration::from_secs(90);
const LEADER: &str = "kibana_sample_data_ecommerce";
const FOLLOWER: &str = "kibana_sample_data_ecommerce2";

fn expect_ok(answer: &common::Answer) {
    assert_eq!(answer.status, 200, "{}", answer.text);
}

/// Configures `on` to reach `address` as remote cluster `alias` (proxy mode).
async fn remote(on: &EsClient, alias: &str, address: &str) {
    let configured = on
        .put(
            "/_cluster/settings",
            json!({"persistent": {"cluster": {"remote": {alias: {
                "mode": "proxy", "skip_unavailable": "true", "proxy_address": address
            }}}}}),
        )
        .await;
    expect_ok(&configured);
}

fn bulk_of(ids: &[String], round: u64) -> String {
    let mut ndjson = String::new();
    for id in ids {
        ndjson.push_str(&json!({"index": {"_index": LEADER, "_id": id}}).to_string());
        ndjson.push('\n');
        ndjson.push_str(&json!({"user": id, "round": round, "total": round}).to_string());
        ndjson.push('\n');
    }
    ndjson
}

/// Writes on `client` in bulks of new and updated ids until stopped or refused; returns the
/// ids whose write was acknowledged and those sent without an answer.
async fn write_until_stopped(
    client: EsClient,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<Mutex<BTreeSet<String>>>,
) -> BTreeSet<String> {
    let mut unanswered = BTreeSet::new();
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let ids: Vec<String> = (0..8)
            .map(|n| match n % 4 {
                // An update of a document both clusters hold.
                0 => format!("order-{}", (round * 13 + n) % 300),
                _ => format!("window-{round}-{n}"),
            })
            .collect();
        let body = bulk_of(&ids, round).into_bytes();
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            client.try_send(
                reqwest::Method::POST,
                "/_bulk",
                Some(("application/x-ndjson", body)),
            ),
        )
        .await;
        match answer {
            Ok(Ok(answer)) if answer.status == 200 => {
                let items = answer.body["items"].as_array().cloned().unwrap_or_default();
                let mut acked = acknowledged.lock();
                for (id, item) in ids.iter().zip(items) {
                    let status = item["index"]["status"].as_u64().unwrap_or(0);
                    if status == 200 || status == 201 {
                        acked.insert(id.clone());
                    }
                }
            }
            // The node was killed under the request: its writes may or may not be in.
            _ => {
                unanswered.extend(ids);
                break;
            }
        }
        round += 1;
    }
    unanswered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_by_promote_and_failback_by_operations() {
    failover_and_failback(Security::Off).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_by_promote_and_failback_by_operations_with_security() {
    failover_and_failback(Security::On).await
}

async fn failover_and_failback(security: Security) {
    let dir = tempfile::tempdir().unwrap();
    let clusters = Clusters::new(dir.path(), security);
    let mut cluster_a = clusters.start("clusterA", &dir.path().join("a"));
    let cluster_b = clusters.start("clusterB", &dir.path().join("b"));
    let a_address = cluster_a.address().to_string();
    let (on_a, on_b) = (cluster_a.client(), cluster_b.client());

    expect_ok(
        &on_a
            .put(
                &format!("/{LEADER}"),
                json!({"settings": {"index": {"number_of_shards": 2}},
                       "mappings": {"properties": {"user": {"type": "keyword"},
                                                   "total": {"type": "long"}}}}),
            )
            .await,
    );
    let orders: Vec<String> = (0..300).map(|n| format!("order-{n}")).collect();
    let answer = on_a.bulk("/_bulk", bulk_of(&orders, 0)).await;
    expect_ok(&answer);
    assert_eq!(answer.body["errors"], false, "{}", answer.text);

    // Cluster B follows cluster A through a proxy that can cut the link.
    let proxy = FaultProxy::start(a_address.parse().unwrap()).await;
    clusters.grant(&cluster_b, &cluster_a, "clusterA").await;
    remote(&on_b, "clusterA", &proxy.address.to_string()).await;
    let followed = on_b
        .put(
            &format!("/{FOLLOWER}/_ccr/follow?wait_for_active_shards=1"),
            json!({"remote_cluster": "clusterA", "leader_index": LEADER}),
        )
        .await;
    expect_ok(&followed);
    converge((&on_a, LEADER), (&on_b, FOLLOWER), CONVERGE_WITHIN).await;

    // The bad day: the link goes dark, cluster A acknowledges writes cluster B never gets,
    // and is killed with writes in flight.
    proxy.set(Fault::BlackHole);
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let writer = tokio::spawn(write_until_stopped(
        on_a.clone(),
        stop.clone(),
        acknowledged.clone(),
    ));
    let started = Instant::now();
    while acknowledged.lock().len() < 200 {
        assert!(
            started.elapsed() < CONVERGE_WITHIN,
            "cluster A took no writes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster_a.kill9();
    stop.store(true, Ordering::Relaxed);
    let unanswered = writer.await.unwrap();
    let acknowledged: BTreeSet<String> = acknowledged.lock().clone();
    drop(proxy);

    // Failover: one call.
    let promoted = on_b
        .post(&format!("/{FOLLOWER}/_ccr/promote"), json!({}))
        .await;
    expect_ok(&promoted);
    let shards = promoted.body["shards"].as_array().unwrap().clone();
    assert_eq!(shards.len(), 2, "{}", promoted.text);
    let points: Vec<i64> = shards
        .iter()
        .map(|shard| shard["local_checkpoint"].as_i64().unwrap())
        .collect();
    let written = on_b
        .post(
            &format!("/{FOLLOWER}/_doc/kimchy"),
            json!({"user": "kimchy", "total": 1}),
        )
        .await;
    assert_eq!(written.status, 201, "{}", written.text);
    let updated = on_b
        .post(
            &format!("/{FOLLOWER}/_doc/order-7"),
            json!({"user": "order-7", "total": -7}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text);

    // Cluster A comes back with its data and fails back: its index follows cluster B's.
    let cluster_a = clusters.start_on("clusterA", &dir.path().join("a"), &a_address);
    let on_a = cluster_a.client();
    clusters.grant(&cluster_a, &cluster_b, "clusterB").await;
    remote(&on_a, "clusterB", cluster_b.address()).await;
    let failed_back = on_a
        .post(
            &format!("/{LEADER}/_ccr/failback"),
            json!({"remote_cluster": "clusterB", "leader_index": FOLLOWER,
                   "read_poll_timeout": "1s"}),
        )
        .await;
    expect_ok(&failed_back);
    let shards = failed_back.body["shards"].as_array().unwrap().clone();
    for (shard, point) in shards.iter().zip(&points) {
        assert_eq!(shard["shared_seq_no"].as_i64().unwrap(), *point, "{shard}");
    }

    // The divergent files: every acknowledged write B never got, and nothing else but
    // writes in flight at the kill.
    let mut divergent: BTreeMap<String, Value> = BTreeMap::new();
    let mut lines = Vec::new();
    for shard in &shards {
        let Some(file) = shard["divergent_file"].as_str() else {
            continue;
        };
        assert!(file.contains("/divergent/"), "{file}");
        for line in std::fs::read_to_string(file).unwrap().lines() {
            let op: Value = serde_json::from_str(line).unwrap();
            assert!(op["seq_no"].as_i64().unwrap() > shard["shared_seq_no"].as_i64().unwrap());
            divergent.insert(op["_id"].as_str().unwrap().to_string(), op.clone());
            lines.push(op);
        }
    }
    assert_eq!(
        failed_back.body["divergent_operations"].as_u64().unwrap(),
        lines.len() as u64
    );
    let ids: BTreeSet<String> = divergent.keys().cloned().collect();
    let missing: Vec<&String> = acknowledged.difference(&ids).collect();
    assert!(
        missing.is_empty(),
        "acknowledged writes not in the divergent files: {missing:?}"
    );
    let extra: Vec<&String> = ids
        .difference(&acknowledged)
        .filter(|id| !unanswered.contains(*id))
        .collect();
    assert!(extra.is_empty(), "divergent writes never sent: {extra:?}");
    eprintln!(
        "{} acknowledged, {} unanswered at the kill, {} divergent operations",
        acknowledged.len(),
        unanswered.len(),
        lines.len()
    );

    // Both indices hold the same documents, and verify equal.
    let count = converge((&on_b, FOLLOWER), (&on_a, LEADER), CONVERGE_WITHIN).await;
    assert_eq!(count, 301, "300 orders and kimchy");
    let found = on_a.get(&format!("/{LEADER}/_search?q=kimchy")).await;
    assert_eq!(found.body["hits"]["total"]["value"], 1, "{}", found.text);
    let verified = on_a.post_empty(&format!("/{LEADER}/_ccr/verify")).await;
    expect_ok(&verified);
    assert_eq!(verified.body["equal"], true, "{}", verified.text);
    let info = on_a.get(&format!("/{LEADER}/_ccr/info")).await;
    expect_ok(&info);
    let entry = &info.body["follower_indices"][0];
    assert_eq!(entry["leader_index"], FOLLOWER, "{}", info.text);
    assert_eq!(
        entry["failback"]["divergent_operations"].as_u64().unwrap(),
        lines.len() as u64,
        "{}",
        info.text
    );

    // The operator replays the divergent writes on the new leader with _bulk; they reach
    // cluster A through replication.
    let mut replay = String::new();
    for op in divergent.values() {
        let id = op["_id"].as_str().unwrap();
        match op["op_type"].as_str().unwrap() {
            "index" => {
                replay.push_str(&json!({"index": {"_index": FOLLOWER, "_id": id}}).to_string());
                replay.push('\n');
                replay.push_str(&op["_source"].to_string());
            }
            _ => replay.push_str(&json!({"delete": {"_index": FOLLOWER, "_id": id}}).to_string()),
        }
        replay.push('\n');
    }
    let replayed = on_b.bulk("/_bulk", replay).await;
    expect_ok(&replayed);
    assert_eq!(replayed.body["errors"], false, "{}", replayed.text);
    converge((&on_b, FOLLOWER), (&on_a, LEADER), CONVERGE_WITHIN).await;
    let on_b_docs = documents(&on_b, FOLLOWER).await;
    for id in &acknowledged {
        assert!(on_b_docs.contains_key(id), "{id} was not replayed");
    }
    let _keep: Vec<&Node> = vec![&cluster_a, &cluster_b];
}
