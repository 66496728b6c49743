//! The REST conventions every endpoint shares, against a real `tandem` process.

mod common;

use std::time::{Duration, Instant};

use common::TandemProcess;
use serde_json::json;

#[tokio::test]
async fn root_answers_like_elasticsearch_and_errors_have_its_shape() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TandemProcess::start("cluster-a", dir.path());
    let client = node.client();

    let root = client.get("/").await;
    assert_eq!(root.status, 200);
    assert_eq!(root.headers["x-elastic-product"], "Elasticsearch");
    assert_eq!(root.body["cluster_name"], "cluster-a");
    assert!(root.body["version"]["number"]
        .as_str()
        .unwrap()
        .starts_with("8."));
    assert_eq!(root.body["tagline"], "You Know, for Search");

    let pretty = client.get("/?pretty").await;
    assert!(
        pretty.text.contains("\n  \"cluster_name\""),
        "{}",
        pretty.text
    );

    let filtered = client
        .get("/?filter_path=version.number,-version.build*")
        .await;
    assert_eq!(filtered.status, 200, "{}", filtered.text);
    assert_eq!(
        filtered.body,
        serde_json::json!({"version": {"number": "8.19.0"}})
    );
    let nothing = client.get("/?filter_path=no.such.field").await;
    assert_eq!(nothing.body, serde_json::json!({}));

    let unknown_param = client.get("/?colour=red").await;
    assert_eq!(unknown_param.status, 400);
    assert_eq!(unknown_param.headers["x-elastic-product"], "Elasticsearch");
    assert_eq!(
        unknown_param.body["error"]["root_cause"][0]["reason"],
        "request [/] contains unrecognized parameter: [colour]"
    );

    let no_handler = client.get("/_no_such_api/x/y").await;
    assert_eq!(no_handler.status, 400);
    assert_eq!(
        no_handler.body["error"]["type"],
        "illegal_argument_exception"
    );
    assert_eq!(no_handler.body["status"], 400);

    let wrong_method = client.delete("/_cluster/health").await;
    assert_eq!(wrong_method.status, 405);
    assert!(wrong_method.body["error"]["root_cause"][0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("Incorrect HTTP method"));

    // Identity survives a restart.
    let uuid = root.body["cluster_uuid"].clone();
    assert!(node.terminate(), "SIGTERM gives a clean exit");
    let node = TandemProcess::start("cluster-a", dir.path());
    assert_eq!(node.client().get("/").await.body["cluster_uuid"], uuid);
}

#[tokio::test]
async fn cluster_health_of_indices_is_red_while_one_is_missing_and_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = TandemProcess::start("cluster-a", dir.path());
    let client = node.client();
    let created = client
        .put(
            "/logs",
            json!({"settings": {"index": {"number_of_shards": 2}}}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);

    let health = client
        .get("/_cluster/health/logs?wait_for_status=green&timeout=5s")
        .await;
    assert_eq!(health.status, 200, "{}", health.text);
    assert_eq!(health.body["status"], "green");
    assert_eq!(health.body["timed_out"], false);
    assert_eq!(health.body["active_primary_shards"], 2);

    // Without a wait condition a missing index answers red at once, not an error.
    let missing = client.get("/_cluster/health/logs,metrics").await;
    assert_eq!(missing.status, 200, "{}", missing.text);
    assert_eq!(missing.body["status"], "red");
    assert_eq!(missing.body["timed_out"], false);

    // With one, the request waits for the index up to its timeout, then answers 408.
    let started = Instant::now();
    let timed_out = client
        .get("/_cluster/health/metrics?wait_for_status=yellow&timeout=300ms")
        .await;
    assert_eq!(timed_out.status, 408, "{}", timed_out.text);
    assert_eq!(timed_out.body["status"], "red");
    assert_eq!(timed_out.body["timed_out"], true);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .get("/_cluster/health/metrics?wait_for_status=green&timeout=30s")
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(client.put("/metrics", json!({})).await.status, 200);
    let waited = waiting.await.unwrap();
    assert_eq!(waited.status, 200, "{}", waited.text);
    assert_eq!(waited.body["status"], "green");

    let bad = client
        .get("/_cluster/health/logs?wait_for_status=blue")
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
}

#[test]
fn sigterm_right_after_the_listening_line_exits_cleanly() {
    // The listening line is printed before the node awaits its shutdown: the SIGTERM handler
    // must already be in place then, or the signal's default action kills the process.
    let dir = tempfile::tempdir().expect("a temporary directory");
    for round in 0..3 {
        let mut node = TandemProcess::start("cluster-a", dir.path());
        assert!(
            node.terminate(),
            "round {round}: SIGTERM at once gives a clean exit"
        );
    }
}
