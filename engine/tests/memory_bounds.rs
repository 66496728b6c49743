//! Memory and translog bounded in bytes with refresh disabled (the bulk-load recipe): the
//! translog flush threshold commits and trims the translog, and the node-wide indexing buffer
//! refreshes the shards holding most until they fit.

use std::time::{Duration, Instant};

use serde_json::json;
use tandem_engine::indices::Indices;
use tandem_engine::shard::{IndexRequest, WriteRequest};

const WITHIN: Duration = Duration::from_secs(30);

fn bulk(index: &tandem_engine::Index, prefix: &str, docs: usize, body_bytes: usize) {
    let body = "x".repeat(body_bytes);
    let requests = (0..docs)
        .map(|n| {
            WriteRequest::Index(IndexRequest::new(
                format!("{prefix}-{n}"),
                format!(r#"{{"n":{n},"body":"{body}"}}"#).into_bytes(),
            ))
        })
        .collect();
    assert!(index.bulk(requests).iter().all(Result::is_ok));
}

#[test]
fn the_translog_flush_threshold_commits_and_trims_with_refresh_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let indices = Indices::open(dir.path()).unwrap();
    let index = indices
        .create(
            "bulk",
            &json!({"refresh_interval": "-1", "translog": {"flush_threshold_size": "1mb"}}),
            &json!({}),
        )
        .unwrap();
    assert_eq!(
        index.metadata().settings.to_es_json()["index"]["translog"]["flush_threshold_size"],
        "1mb"
    );
    let shard = &index.shards()[0];
    for round in 0..8 {
        bulk(&index, &format!("r{round}"), 500, 1000);
    }
    let started = Instant::now();
    while shard.stats().translog_size_in_bytes > 1 << 20 {
        assert!(started.elapsed() < WITHIN, "{:?}", shard.stats());
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = shard.stats();
    assert!(stats.refresh_count > 0, "{stats:?}");
    assert_eq!(stats.max_seq_no.0, 3999);
    assert!(shard.get("r0-0").unwrap().is_some());
    assert!(shard.get("r7-499").unwrap().is_some());
    for bad in ["0", "lots", "-1mb"] {
        assert!(
            index
                .update_settings(&json!({"index.translog.flush_threshold_size": bad}))
                .is_err(),
            "{bad}"
        );
    }
}

#[test]
fn the_indexing_buffer_budget_refreshes_the_shards_holding_most() {
    let dir = tempfile::tempdir().unwrap();
    let indices = Indices::open(dir.path()).unwrap();
    let settings = json!({"refresh_interval": "-1"});
    let big = indices.create("big", &settings, &json!({})).unwrap();
    let small = indices.create("small", &settings, &json!({})).unwrap();
    bulk(&big, "b", 2000, 500);
    bulk(&small, "s", 100, 500);
    let big_bytes = big.shards()[0].indexing_buffer_bytes();
    let small_bytes = small.shards()[0].indexing_buffer_bytes();
    // Each operation holds at least its source in the tail, and tantivy's in-memory segment
    // holds it again (well within the writer's budget here).
    assert!(big_bytes > 2 * 2000 * 500, "{big_bytes}");
    assert!(small_bytes > 2 * 100 * 500 && small_bytes < big_bytes);
    assert_eq!(indices.indexing_buffer_bytes(), big_bytes + small_bytes);
    assert_eq!(big.shards()[0].stats().indexing_buffer_bytes, big_bytes);

    // Within budget: nothing happens.
    assert!(indices
        .enforce_indexing_buffer(big_bytes + small_bytes)
        .is_empty());
    // Over it: the biggest goes first, and is enough.
    let refreshed = indices.enforce_indexing_buffer(small_bytes + 1);
    assert_eq!(refreshed, vec![("big".to_string(), 0, big_bytes)]);
    assert_eq!(big.shards()[0].indexing_buffer_bytes(), 0);
    assert_eq!(big.shards()[0].stats().tail_operations, 0);
    assert_eq!(small.shards()[0].indexing_buffer_bytes(), small_bytes);
    // Nothing lost: the refreshed documents are read from the index now.
    assert!(big.shards()[0].get("b-1999").unwrap().is_some());
    assert_eq!(big.doc_count(), 2000);
    // A budget of zero refreshes every shard that holds anything.
    let refreshed = indices.enforce_indexing_buffer(0);
    assert_eq!(refreshed, vec![("small".to_string(), 0, small_bytes)]);
    assert_eq!(indices.indexing_buffer_bytes(), 0);
}

#[test]
fn the_writers_share_of_the_indexing_buffer_stops_at_its_budget() {
    use tandem_engine::shard::indexing_buffer_estimate;
    assert_eq!(indexing_buffer_estimate(0, 100), 0);
    assert_eq!(indexing_buffer_estimate(40, 100), 80);
    // Past its budget tantivy writes a segment out by itself: the rest is the tail's.
    assert_eq!(indexing_buffer_estimate(1_000, 100), 1_100);
    assert_eq!(indexing_buffer_estimate(u64::MAX, 100), u64::MAX);
}
