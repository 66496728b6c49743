//! `GET /_prometheus/metrics`, read with a Prometheus text parser: every family is there with
//! its labels; a follower's lag goes up while it is paused and its leader keeps indexing, and
//! back to 0 once it has resumed and caught up.

mod common;

use std::time::{Duration, Instant};

use common::{wait_for_count, EsClient};
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;

/// Every family of a follower node's scrape, and the labels each carries.
const FOLLOWER_FAMILIES: &[(&str, &[&str])] = &[
    (
        "tandem_follower_lag_operations",
        &["index", "shard", "remote_cluster", "leader_index"],
    ),
    (
        "tandem_follower_lag_seconds",
        &["index", "shard", "remote_cluster", "leader_index"],
    ),
    ("tandem_follower_read_operations_total", &["index", "shard"]),
    ("tandem_follower_read_bytes_total", &["index", "shard"]),
    (
        "tandem_follower_written_operations_total",
        &["index", "shard"],
    ),
    ("tandem_follower_written_bytes_total", &["index", "shard"]),
    ("tandem_follower_failed_reads_total", &["index", "shard"]),
    ("tandem_follower_failed_writes_total", &["index", "shard"]),
    ("tandem_follower_read_latency_seconds", &["index", "shard"]),
    ("tandem_follower_write_latency_seconds", &["index", "shard"]),
    ("tandem_follower_outstanding_reads", &["index", "shard"]),
    ("tandem_follower_outstanding_writes", &["index", "shard"]),
    ("tandem_follower_paused", &["index", "shard"]),
    ("tandem_follower_fatal", &["index", "shard"]),
    ("tandem_recovery_copied_bytes", &["index", "shard"]),
    ("tandem_recovery_total_bytes", &["index", "shard"]),
    ("tandem_recovery_rate_bytes_per_second", &["index", "shard"]),
    ("tandem_recovery_done", &["index", "shard"]),
    ("tandem_shard_indexed_operations_total", &["index", "shard"]),
    ("tandem_shard_deleted_operations_total", &["index", "shard"]),
    ("tandem_shard_docs", &["index", "shard"]),
    ("tandem_shard_translog_bytes", &["index", "shard"]),
    ("tandem_shard_refresh_seconds_total", &["index", "shard"]),
    ("tandem_shard_merge_seconds_total", &["index", "shard"]),
    ("tandem_shard_segments", &["index", "shard"]),
    ("tandem_shard_retention_floor_seq_no", &["index", "shard"]),
    ("tandem_shard_max_seq_no", &["index", "shard"]),
    ("tandem_shard_global_checkpoint", &["index", "shard"]),
    ("tandem_process_resident_memory_bytes", &[]),
    ("tandem_process_cpu_seconds_total", &[]),
    ("tandem_process_open_fds", &[]),
    ("tandem_http_open_connections", &[]),
    ("tandem_runtime_tasks", &[]),
    ("tandem_follow_tasks", &[]),
    ("tandem_verify_sessions", &[]),
];

async fn scrape(client: &EsClient) -> Scrape {
    let answer = client.get("/_prometheus/metrics").await;
    if std::env::var_os("TANDEM_PRINT_METRICS").is_some() {
        eprintln!("{}", answer.text);
    }
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(
        answer.text.ends_with("# EOF\n"),
        "OpenMetrics text: {}",
        answer.text
    );
    Scrape::parse(answer.text.lines().map(|line| Ok(line.to_string()))).expect("parses")
}

fn value(sample: &Sample) -> f64 {
    match &sample.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(buckets) => buckets.last().map_or(0.0, |bucket| bucket.count),
        Value::Summary(_) => panic!("no summaries"),
    }
}

/// The value of `family` for the follower shard 0 of `index`.
fn of(scrape: &Scrape, family: &str, index: &str) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|sample| {
            sample.metric == family
                && sample.labels.get("index") == Some(index)
                && sample.labels.get("shard") == Some("0")
        })
        .unwrap_or_else(|| panic!("no {family} for {index}"));
    value(sample)
}

async fn index_documents(client: &EsClient, from: u64, count: u64) {
    let mut ndjson = String::new();
    for n in from..from + count {
        ndjson.push_str(&json!({"index": {"_index": "metrics", "_id": n.to_string()}}).to_string());
        ndjson.push('\n');
        ndjson.push_str(&json!({"n": n}).to_string());
        ndjson.push('\n');
    }
    let answer = client.bulk("/_bulk", ndjson).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_family_is_scraped_and_the_lag_follows_a_pause() {
    let dir = tempfile::tempdir().unwrap();
    let pair = common::in_process_pair(dir.path()).await;
    let created = pair
        .leader_client
        .put(
            "/metrics",
            json!({"settings": {"index": {"number_of_shards": 1}}}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    index_documents(&pair.leader_client, 0, 50).await;
    let followed = pair
        .follower_client
        .put(
            "/metrics-copy/_ccr/follow?wait_for_active_shards=1",
            json!({"remote_cluster": "leader", "leader_index": "metrics"}),
        )
        .await;
    assert_eq!(followed.status, 200, "{}", followed.text);
    index_documents(&pair.leader_client, 50, 50).await;
    wait_for_count(&pair.follower_client, "metrics-copy", 100).await;

    let scraped = scrape(&pair.follower_client).await;
    for (family, labels) in FOLLOWER_FAMILIES {
        let samples: Vec<&Sample> = scraped
            .samples
            .iter()
            .filter(|sample| sample.metric == *family)
            .collect();
        assert!(!samples.is_empty(), "no samples of {family}");
        for sample in samples {
            for label in *labels {
                assert!(
                    sample.labels.get(label).is_some(),
                    "{family} without {label}"
                );
            }
        }
        let base = family.trim_end_matches("_total");
        assert!(scraped.docs.contains_key(base), "{family} has a HELP line");
    }
    assert!(
        of(
            &scraped,
            "tandem_follower_written_operations_total",
            "metrics-copy"
        ) >= 50.0
    );
    assert!(
        of(
            &scraped,
            "tandem_follower_read_latency_seconds",
            "metrics-copy"
        ) >= 1.0
    );
    assert!(of(&scraped, "tandem_recovery_done", "metrics-copy") == 1.0);
    assert!(of(&scraped, "tandem_shard_docs", "metrics-copy") == 100.0);

    // Caught up: no lag.
    let started = Instant::now();
    loop {
        let scraped = scrape(&pair.follower_client).await;
        if of(&scraped, "tandem_follower_lag_operations", "metrics-copy") == 0.0 {
            assert_eq!(
                of(&scraped, "tandem_follower_lag_seconds", "metrics-copy"),
                0.0
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the lag never reached 0"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Paused while the leader indexes: the lag grows, in operations and in seconds.
    let paused = pair
        .follower_client
        .post_empty("/metrics-copy/_ccr/pause_follow")
        .await;
    assert_eq!(paused.status, 200, "{}", paused.text);
    index_documents(&pair.leader_client, 100, 30).await;
    let first = scrape(&pair.follower_client).await;
    assert_eq!(of(&first, "tandem_follower_paused", "metrics-copy"), 1.0);
    assert_eq!(
        of(&first, "tandem_follower_lag_operations", "metrics-copy"),
        30.0
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let later = scrape(&pair.follower_client).await;
    let seconds = of(&later, "tandem_follower_lag_seconds", "metrics-copy");
    assert!(
        seconds >= 1.0,
        "the lag's age grows while paused: {seconds}"
    );
    assert!(seconds > of(&first, "tandem_follower_lag_seconds", "metrics-copy"));

    // Resumed: back to 0.
    let resumed = pair
        .follower_client
        .post("/metrics-copy/_ccr/resume_follow", json!({}))
        .await;
    assert_eq!(resumed.status, 200, "{}", resumed.text);
    let started = Instant::now();
    loop {
        let scraped = scrape(&pair.follower_client).await;
        if of(&scraped, "tandem_follower_lag_operations", "metrics-copy") == 0.0 {
            assert_eq!(
                of(&scraped, "tandem_follower_lag_seconds", "metrics-copy"),
                0.0
            );
            assert_eq!(of(&scraped, "tandem_follower_paused", "metrics-copy"), 0.0);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the lag never went back to 0"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The leader's scrape: its shards, no follower families' samples.
    let leader = scrape(&pair.leader_client).await;
    assert_eq!(of(&leader, "tandem_shard_docs", "metrics"), 130.0);
    assert!(of(&leader, "tandem_shard_indexed_operations_total", "metrics") >= 130.0);
    assert!(!leader
        .samples
        .iter()
        .any(|sample| sample.metric == "tandem_follower_lag_operations"));

    pair.follower.stop().await;
    pair.leader.stop().await;
}
