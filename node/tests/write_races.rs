//! Writes racing `DELETE` and `_close` of their index (issue 20 item 10): index, bulk, update,
//! delete, `_mapping`, `_settings`, `_refresh` and `_search` answer what Elasticsearch answers
//! for an index that is gone (404 `index_not_found_exception`) or closed (400
//! `index_closed_exception`), or succeed, but never a 5xx such as "engine is closed".

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{start_in_process, Answer, EsClient};
use serde_json::json;

/// Concurrent writers per round.
const WRITERS: usize = 12;
/// Rounds of create, race, delete (or close).
const ROUNDS: usize = 8;
/// How long the writers run before the index goes away.
const BEFORE_DELETE: Duration = Duration::from_millis(150);
/// How long the writers keep running after it went away.
const AFTER_DELETE: Duration = Duration::from_millis(150);

/// One request of writer `writer`'s `step`-th turn, cycling through every kind of write.
async fn one_write(client: &EsClient, writer: usize, step: u64) -> (&'static str, Answer) {
    let id = format!("{writer}-{}", step % 50);
    match step % 8 {
        0 => (
            "index",
            client
                .put(&format!("/race/_doc/{id}"), json!({"n": step, "t": "text"}))
                .await,
        ),
        1 => {
            let mut ndjson = String::new();
            for item in 0..20 {
                ndjson.push_str(&format!(
                    "{{\"index\":{{\"_id\":\"{id}-{item}\"}}}}\n{{\"n\":{item}}}\n"
                ));
            }
            ("bulk", client.bulk("/race/_bulk", ndjson).await)
        }
        2 => (
            "update",
            client
                .post(
                    &format!("/race/_update/{id}"),
                    json!({"doc": {"m": step}, "doc_as_upsert": true}),
                )
                .await,
        ),
        3 => ("delete", client.delete(&format!("/race/_doc/{id}")).await),
        4 => (
            "mapping",
            client
                .put(
                    "/race/_mapping",
                    json!({"properties": {format!("f{}", step % 30): {"type": "keyword"}}}),
                )
                .await,
        ),
        5 => (
            "settings",
            client
                .put(
                    "/race/_settings",
                    json!({"index": {"refresh_interval": format!("{}s", 1 + step % 5)}}),
                )
                .await,
        ),
        6 => ("refresh", client.post_empty("/race/_refresh").await),
        _ => (
            "search",
            client
                .post("/race/_search", json!({"query": {"match_all": {}}}))
                .await,
        ),
    }
}

/// Runs the writers against `race` while `go_away` (a delete or a close) happens, and fails
/// on any 5xx or on a 4xx other than the index being gone or closed.
async fn race(client: &EsClient, go_away: &str) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (client, stop, requests) = (client.clone(), stop.clone(), requests.clone());
        writers.push(tokio::spawn(async move {
            let mut step = writer as u64;
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (kind, answer) = one_write(&client, writer, step).await;
                step += 1;
                requests.fetch_add(1, Ordering::Relaxed);
                let expected = match answer.status {
                    200..=299 => true,
                    404 => {
                        answer.body["error"]["type"] == "index_not_found_exception"
                            || (kind == "delete" && answer.body["result"] == "not_found")
                    }
                    400 => answer.body["error"]["type"] == "index_closed_exception",
                    _ => false,
                };
                // Bulk items carry their own status.
                if let Some(items) = answer.body["items"].as_array() {
                    for item in items {
                        let item = &item["index"];
                        let status = item["status"].as_u64().unwrap_or(0);
                        let type_name = &item["error"]["type"];
                        if status >= 500
                            || (status >= 400
                                && type_name != "index_not_found_exception"
                                && type_name != "index_closed_exception")
                        {
                            failures.push(format!("bulk item {status}: {item}"));
                        }
                    }
                }
                if !expected {
                    failures.push(format!("{kind}: {} {}", answer.status, answer.text));
                }
            }
            failures
        }));
    }
    tokio::time::sleep(BEFORE_DELETE).await;
    let gone = if go_away == "delete" {
        client.delete("/race").await
    } else {
        client.post_empty("/race/_close").await
    };
    assert!(
        gone.status == 200 || gone.status == 404,
        "{go_away}: {} {}",
        gone.status,
        gone.text
    );
    tokio::time::sleep(AFTER_DELETE).await;
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for writer in writers {
        failures.extend(writer.await.expect("writer task"));
    }
    assert!(
        failures.is_empty(),
        "{} unexpected answers racing {go_away}, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    requests.load(Ordering::Relaxed)
}

/// Deletes `race` whatever state it is in, so the next round starts from nothing.
async fn remove(client: &EsClient) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = client.delete("/race").await;
        if answer.status == 404 {
            return;
        }
        assert!(
            answer.status == 200 && Instant::now() < deadline,
            "{} {}",
            answer.status,
            answer.text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_racing_delete_or_close_never_answer_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_in_process("races", dir.path()).await;
    let client = EsClient::new(&node.url());
    let mut requests = 0;
    for round in 0..ROUNDS {
        let created = client
            .put(
                "/race",
                json!({"settings": {"number_of_shards": 2, "number_of_replicas": 0}}),
            )
            .await;
        assert_eq!(created.status, 200, "{}", created.text);
        let go_away = if round % 2 == 0 { "delete" } else { "close" };
        requests += race(&client, go_away).await;
        remove(&client).await;
    }
    assert!(requests > (ROUNDS * WRITERS) as u64, "{requests} requests");
    node.stop().await;
}
