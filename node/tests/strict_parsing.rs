//! Elasticsearch's parse rules against a real `tandem` process: a key given twice in a request
//! body or a document is a 400 at any depth (never "the last one wins"), and a setting refuses
//! a value of the wrong type, and an auto-follow pattern refuses a follower name pattern that
//! cannot make a valid index name.

mod common;

use common::{Answer, EsClient, TandemProcess};
use reqwest::Method;
use serde_json::{json, Value};

fn assert_error(answer: &Answer, status: u16, error_type: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.body["status"], status, "{}", answer.text);
    assert_eq!(answer.body["error"]["type"], error_type, "{}", answer.text);
}

async fn send_text(client: &EsClient, method: Method, path: &str, body: &str) -> Answer {
    let content_type = if path.ends_with("_bulk") {
        "application/x-ndjson"
    } else {
        "application/json"
    };
    client
        .send(method, path, Some((content_type, body.as_bytes().to_vec())))
        .await
}

async fn documents_with_a_key_twice(client: &EsClient) {
    let created = client.put("/docs", json!({})).await;
    assert_eq!(created.status, 200, "{}", created.text);
    let twice = send_text(client, Method::PUT, "/docs/_doc/1", r#"{"f":1,"f":"two"}"#).await;
    assert_error(&twice, 400, "document_parsing_exception");
    assert!(
        twice.body["error"]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("[1:10] Duplicate field 'f'")),
        "{}",
        twice.text
    );
    let nested = send_text(
        client,
        Method::POST,
        "/docs/_doc",
        r#"{"user":{"name":"a","tags":[{"k":1,"k":2}]}}"#,
    )
    .await;
    assert_error(&nested, 400, "document_parsing_exception");
    assert!(
        nested.text.contains("Duplicate field 'k'"),
        "{}",
        nested.text
    );
    // The same key in two different objects is no duplicate.
    let distinct = send_text(
        client,
        Method::PUT,
        "/docs/_doc/2",
        r#"{"a":{"k":1},"b":{"k":2}}"#,
    )
    .await;
    assert_eq!(distinct.status, 201, "{}", distinct.text);
    assert_eq!(
        client.get("/docs/_doc/1").await.status,
        404,
        "nothing written"
    );

    // In `_bulk`, a document with a key twice fails its item; an action line with a key twice
    // refuses the whole request.
    let bulk = client
        .bulk(
            "/_bulk",
            "{\"index\":{\"_index\":\"docs\",\"_id\":\"3\"}}\n{\"f\":1,\"f\":2}\n\
             {\"index\":{\"_index\":\"docs\",\"_id\":\"4\"}}\n{\"f\":1}\n"
                .to_string(),
        )
        .await;
    assert_eq!(bulk.status, 200, "{}", bulk.text);
    assert_eq!(bulk.body["errors"], true, "{}", bulk.text);
    let items = &bulk.body["items"];
    assert_eq!(
        items[0]["index"]["error"]["type"], "document_parsing_exception",
        "{}",
        bulk.text
    );
    assert_eq!(items[1]["index"]["status"], 201, "{}", bulk.text);
    let action_twice = client
        .bulk(
            "/_bulk",
            "{\"index\":{\"_index\":\"docs\"}}\n{\"f\":1}\n\
             {\"index\":{\"_index\":\"docs\",\"_id\":\"5\",\"_id\":\"6\"}}\n{\"f\":1}\n"
                .to_string(),
        )
        .await;
    assert_error(&action_twice, 400, "x_content_parse_exception");
    assert_eq!(
        action_twice.body["error"]["reason"], "[3:41] Duplicate field '_id'",
        "{}",
        action_twice.text
    );
    let update_twice = client
        .bulk(
            "/docs/_bulk",
            "{\"update\":{\"_id\":\"4\"}}\n{\"doc\":{\"f\":2},\"doc\":{\"f\":3}}\n".to_string(),
        )
        .await;
    assert_error(&update_twice, 400, "x_content_parse_exception");
    assert_eq!(
        update_twice.body["error"]["reason"], "[2:20] Duplicate field 'doc'",
        "{}",
        update_twice.text
    );
    client.post_empty("/docs/_refresh").await;
    let count = client.get("/docs/_count").await;
    assert_eq!(count.body["count"], 2, "{}", count.text);
}

async fn request_bodies_with_a_key_twice(client: &EsClient) {
    let create = send_text(
        client,
        Method::PUT,
        "/twice",
        r#"{"settings":{"number_of_shards":2},"settings":{"number_of_shards":3}}"#,
    )
    .await;
    assert_error(&create, 400, "x_content_parse_exception");
    assert_eq!(
        create.body["error"]["reason"], "[1:45] Duplicate field 'settings'",
        "{}",
        create.text
    );
    assert_eq!(client.get("/twice").await.status, 404, "not created");
    let search = send_text(
        client,
        Method::POST,
        "/docs/_search",
        r#"{"query":{"match_all":{}},"query":{"term":{"f":1}}}"#,
    )
    .await;
    assert_error(&search, 400, "x_content_parse_exception");
    assert!(
        search.text.contains("Duplicate field 'query'"),
        "{}",
        search.text
    );
    let nested = send_text(
        client,
        Method::PUT,
        "/docs/_settings",
        "{\"index\": {\n  \"refresh_interval\": \"1s\",\n  \"refresh_interval\": \"-1\"}}",
    )
    .await;
    assert_error(&nested, 400, "x_content_parse_exception");
    assert_eq!(
        nested.body["error"]["reason"], "[3:20] Duplicate field 'refresh_interval'",
        "{}",
        nested.text
    );
}

async fn settings_of_the_wrong_type(client: &EsClient) {
    for (body, setting) in [
        (
            json!({"settings": {"number_of_replicas": {}}}),
            "number_of_replicas",
        ),
        (
            json!({"settings": {"index": {"number_of_shards": [2]}}}),
            "number_of_shards",
        ),
        (
            json!({"settings": {"refresh_interval": true}}),
            "refresh_interval",
        ),
    ] {
        let answer = client.put("/typed", body.clone()).await;
        assert_error(&answer, 400, "illegal_argument_exception");
        let reason = answer.body["error"]["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(&format!("[index.{setting}]")),
            "{body}: {reason}"
        );
    }
    assert_eq!(client.get("/typed").await.status, 404, "not created");
    let update = client
        .put(
            "/docs/_settings",
            json!({"index": {"number_of_replicas": {}}}),
        )
        .await;
    assert_error(&update, 400, "illegal_argument_exception");
    let settings = client.get("/docs/_settings").await;
    assert_eq!(
        settings.body["docs"]["settings"]["index"]["number_of_replicas"],
        Value::from("1"),
        "{}",
        settings.text
    );
}

/// A `follow_index_pattern` that cannot make a valid index name is refused at PUT (before the
/// remote cluster is even looked up), not at every match after a recovery was made for it.
async fn auto_follow_patterns_that_make_invalid_names(client: &EsClient) {
    for bad in [
        "Copy-{{leader_index}}",
        "{{leader_index}}/x",
        "_{{leader_index}}",
    ] {
        let answer = client
            .put(
                "/_ccr/auto_follow/bad",
                json!({"remote_cluster": "nowhere", "leader_index_patterns": ["logs-*"],
                       "follow_index_pattern": bad}),
            )
            .await;
        assert_error(&answer, 400, "illegal_argument_exception");
        assert!(
            answer.text.contains("[follow_index_pattern]"),
            "{bad}: {}",
            answer.text
        );
    }
    let patterns = client.get("/_ccr/auto_follow").await;
    assert_eq!(patterns.body["patterns"], json!([]), "{}", patterns.text);
}

#[tokio::test]
async fn duplicate_keys_and_settings_of_the_wrong_type_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = TandemProcess::start("strict-parsing", dir.path());
    let client = node.client();
    documents_with_a_key_twice(&client).await;
    request_bodies_with_a_key_twice(&client).await;
    settings_of_the_wrong_type(&client).await;
    auto_follow_patterns_that_make_invalid_names(&client).await;
}
