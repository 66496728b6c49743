//! The document APIs against a real `tandem` process: index, create, get, exists, `_source`,
//! delete, partial update and `_bulk`, with optimistic concurrency, automatic ids, automatic
//! index creation, refresh policies and each error's status and shape.

mod common;

use common::{Answer, EsClient, TandemProcess};
use reqwest::Method;
use serde_json::{json, Value};

fn assert_error(answer: &Answer, status: u16, error_type: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.body["status"], status, "{}", answer.text);
    assert_eq!(answer.body["error"]["type"], error_type, "{}", answer.text);
}

fn shards_one() -> Value {
    json!({"total": 1, "successful": 1, "failed": 0})
}

async fn index_and_get(client: &EsClient) {
    client
        .put(
            "/docs",
            json!({"mappings": {"properties": {"count": {"type": "long"}}}}),
        )
        .await;
    let created = client
        .put("/docs/_doc/1", json!({"user": "kimchy", "count": 1}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(
        created.body,
        json!({"_index": "docs", "_id": "1", "_version": 1, "result": "created",
               "_shards": shards_one(), "_seq_no": 0, "_primary_term": 1})
    );
    assert_eq!(created.headers["location"], "/docs/_doc/1");
    let updated = client
        .post("/docs/_doc/1", json!({"user": "kimchy", "count": 2}))
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.body["result"], "updated");
    assert_eq!(updated.body["_version"], 2);
    assert_eq!(updated.body["_seq_no"], 1);

    let got = client.get("/docs/_doc/1").await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(
        got.body,
        json!({"_index": "docs", "_id": "1", "_version": 2, "_seq_no": 1,
               "_primary_term": 1, "found": true,
               "_source": {"user": "kimchy", "count": 2}}),
        "real-time: no refresh needed"
    );
    let without_source = client.get("/docs/_doc/1?_source=false").await;
    assert!(without_source.body.get("_source").is_none());
    let source = client.get("/docs/_source/1").await;
    assert_eq!(source.body, json!({"user": "kimchy", "count": 2}));

    let missing = client.get("/docs/_doc/nope").await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.body,
        json!({"_index": "docs", "_id": "nope", "found": false})
    );
    assert_error(
        &client.get("/docs/_source/nope").await,
        404,
        "resource_not_found_exception",
    );
    assert_error(
        &client.get("/no-such-index/_doc/1").await,
        404,
        "index_not_found_exception",
    );
    assert_eq!(
        client.send(Method::HEAD, "/docs/_doc/1", None).await.status,
        200
    );
    let head = client.send(Method::HEAD, "/docs/_doc/nope", None).await;
    assert_eq!(head.status, 404);
    assert!(head.text.is_empty());
    assert_eq!(
        client
            .send(Method::HEAD, "/no-such-index/_doc/1", None)
            .await
            .status,
        404
    );

    let automatic = client
        .post("/docs/_doc", json!({"user": "anonymous"}))
        .await;
    assert_eq!(automatic.status, 201, "{}", automatic.text);
    let id = automatic.body["_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 20);
    assert_eq!(
        client.get(&format!("/docs/_doc/{id}")).await.body["_source"]["user"],
        "anonymous"
    );
}

async fn create_and_concurrency(client: &EsClient) {
    let created = client.put("/docs/_create/2", json!({"count": 1})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let conflict = client.post("/docs/_create/2", json!({"count": 1})).await;
    assert_error(&conflict, 409, "version_conflict_engine_exception");
    assert_eq!(conflict.body["error"]["index"], "docs");
    let conflict = client
        .put("/docs/_doc/2?op_type=create", json!({"count": 1}))
        .await;
    assert_error(&conflict, 409, "version_conflict_engine_exception");

    let current = client.get("/docs/_doc/2").await.body;
    let (seq_no, term) = (&current["_seq_no"], &current["_primary_term"]);
    let stale = client
        .put(
            &format!(
                "/docs/_doc/2?if_seq_no={}&if_primary_term={term}",
                seq_no.as_u64().unwrap() + 7
            ),
            json!({"count": 2}),
        )
        .await;
    assert_error(&stale, 409, "version_conflict_engine_exception");
    let matching = client
        .put(
            &format!("/docs/_doc/2?if_seq_no={seq_no}&if_primary_term={term}"),
            json!({"count": 2}),
        )
        .await;
    assert_eq!(matching.status, 200, "{}", matching.text);
    assert_error(
        &client
            .put("/docs/_doc/2?if_seq_no=1", json!({"count": 3}))
            .await,
        400,
        "action_request_validation_exception",
    );
    assert_error(
        &client
            .put("/docs/_doc/2?op_type=replace", json!({"count": 3}))
            .await,
        400,
        "illegal_argument_exception",
    );
    let routing = client
        .put("/docs/_doc/2?routing=user1", json!({"count": 3}))
        .await;
    assert_error(&routing, 400, "illegal_argument_exception");
    assert!(routing.body["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("routing"));
    assert_error(
        &client
            .put("/docs/_doc/2?wait_for_active_shards=2", json!({"count": 3}))
            .await,
        400,
        "illegal_argument_exception",
    );
    let one_copy = client
        .put(
            "/docs/_doc/2?wait_for_active_shards=1&timeout=1m",
            json!({"count": 3}),
        )
        .await;
    assert_eq!(one_copy.status, 200, "{}", one_copy.text);
    assert_error(
        &client.put("/docs/_doc/2?colour=red", json!({})).await,
        400,
        "illegal_argument_exception",
    );
}

async fn bad_documents(client: &EsClient) {
    let not_json = client
        .send(
            Method::PUT,
            "/docs/_doc/3",
            Some(("application/json", b"{\"user\": ".to_vec())),
        )
        .await;
    assert_error(&not_json, 400, "document_parsing_exception");
    let wrong_type = client.put("/docs/_doc/3", json!({"count": "many"})).await;
    assert_error(&wrong_type, 400, "document_parsing_exception");
    let not_object = client.put("/docs/_doc/3", json!([1, 2])).await;
    assert_error(&not_object, 400, "document_parsing_exception");
    let empty = client
        .send(
            Method::PUT,
            "/docs/_doc/3",
            Some(("application/json", Vec::new())),
        )
        .await;
    assert_error(&empty, 400, "action_request_validation_exception");
    let long_id = format!("/docs/_doc/{}", "x".repeat(513));
    assert_error(
        &client.put(&long_id, json!({})).await,
        400,
        "action_request_validation_exception",
    );
    assert_eq!(
        client.get("/docs/_doc/3").await.status,
        404,
        "nothing written"
    );
    // Over the per-operation limit (the translog's record limit), under the HTTP body limit:
    // refused before a seq_no is taken, so the write after it takes the next seq_no.
    let first = client
        .put("/big-docs/_doc/1", json!({"user": "before"}))
        .await;
    assert_eq!(first.body["_seq_no"], 0, "{}", first.text);
    let mut huge = br#"{"user":""#.to_vec();
    huge.resize(70 << 20, b'x');
    huge.extend_from_slice(br#""}"#);
    let too_large = client
        .send(
            Method::PUT,
            "/big-docs/_doc/2",
            Some(("application/json", huge)),
        )
        .await;
    assert_error(&too_large, 400, "illegal_argument_exception");
    assert!(
        too_large.text.contains("exceeds the limit"),
        "{}",
        too_large.text
    );
    assert_eq!(client.get("/big-docs/_doc/2").await.status, 404);
    let after = client
        .put("/big-docs/_doc/3", json!({"user": "after"}))
        .await;
    assert_eq!(after.body["_seq_no"], 1, "{}", after.text);
    // A keyword value over the term limit (32,766 bytes, as Elasticsearch): 400, no seq_no.
    let mapped = client
        .put(
            "/big-docs/_mapping",
            json!({"properties": {"tag": {"type": "keyword"}}}),
        )
        .await;
    assert_eq!(mapped.status, 200, "{}", mapped.text);
    let immense = client
        .put("/big-docs/_doc/4", json!({"tag": "t".repeat(32_767)}))
        .await;
    assert_error(&immense, 400, "illegal_argument_exception");
    assert!(
        immense.text.contains("immense term") && immense.text.contains("32766"),
        "{}",
        immense.text
    );
    let next = client
        .put("/big-docs/_doc/5", json!({"tag": "t".repeat(32_766)}))
        .await;
    assert_eq!(next.body["_seq_no"], 2, "{}", next.text);
}

async fn delete_and_refresh(client: &EsClient) {
    let refreshed = client
        .put("/docs/_doc/4?refresh=true", json!({"user": "visible"}))
        .await;
    assert_eq!(refreshed.status, 201, "{}", refreshed.text);
    assert_eq!(refreshed.body["forced_refresh"], true);
    assert_eq!(
        client.get("/docs/_count?q=user:visible").await.body["count"],
        1,
        "refresh=true makes the write searchable before the answer"
    );
    let waited = client
        .put("/docs/_doc/5?refresh=wait_for", json!({"user": "waited"}))
        .await;
    assert_eq!(waited.status, 201, "{}", waited.text);
    assert_eq!(
        client.get("/docs/_count?q=user:waited").await.body["count"],
        1
    );
    assert_error(
        &client.put("/docs/_doc/5?refresh=maybe", json!({})).await,
        400,
        "illegal_argument_exception",
    );

    let deleted = client.delete("/docs/_doc/4?refresh=true").await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert_eq!(deleted.body["result"], "deleted");
    assert_eq!(deleted.body["_shards"], shards_one());
    assert_eq!(
        client.get("/docs/_count?q=user:visible").await.body["count"],
        0
    );
    let again = client.delete("/docs/_doc/4").await;
    assert_eq!(again.status, 404, "{}", again.text);
    assert_eq!(again.body["result"], "not_found");
    assert_error(
        &client.delete("/no-such-index/_doc/1").await,
        404,
        "index_not_found_exception",
    );
    assert_eq!(
        client.get("/no-such-index").await.status,
        404,
        "a delete does not create the index"
    );
}

async fn automatic_index_creation(client: &EsClient) {
    let created = client
        .put(
            "/auto-created/_doc/1",
            json!({"@timestamp": "2026-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let index = client.get("/auto-created").await;
    assert_eq!(index.status, 200);
    assert_eq!(
        index.body["auto-created"]["mappings"]["properties"]["@timestamp"]["type"], "date",
        "dynamic mapping"
    );
    assert_error(
        &client.put("/Bad-Name/_doc/1", json!({})).await,
        400,
        "invalid_index_name_exception",
    );
}

async fn partial_updates(client: &EsClient) {
    client
        .put(
            "/docs/_doc/10",
            json!({"user": "u", "stats": {"a": 1, "b": 1}}),
        )
        .await;
    let updated = client
        .post(
            "/docs/_update/10",
            json!({"doc": {"stats": {"b": 2}, "tag": "t"}}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.body["result"], "updated");
    assert_eq!(updated.body["_version"], 2);
    assert_eq!(
        client.get("/docs/_source/10").await.body,
        json!({"user": "u", "stats": {"a": 1, "b": 2}, "tag": "t"}),
        "objects merge recursively"
    );
    let noop = client
        .post("/docs/_update/10", json!({"doc": {"tag": "t"}}))
        .await;
    assert_eq!(noop.status, 200, "{}", noop.text);
    assert_eq!(noop.body["result"], "noop");
    assert_eq!(noop.body["_version"], 2);
    let upserted = client
        .post(
            "/docs/_update/11",
            json!({"doc": {"user": "new"}, "doc_as_upsert": true}),
        )
        .await;
    assert_eq!(upserted.status, 201, "{}", upserted.text);
    assert_eq!(upserted.body["result"], "created");
    assert_error(
        &client
            .post("/docs/_update/12", json!({"doc": {"user": "new"}}))
            .await,
        404,
        "document_missing_exception",
    );
    assert_error(
        &client
            .post(
                "/docs/_update/10",
                json!({"script": {"source": "ctx._source.x = 1"}}),
            )
            .await,
        400,
        "illegal_argument_exception",
    );
    assert_error(
        &client
            .post(
                "/docs/_update/10?if_seq_no=0&if_primary_term=1",
                json!({"doc": {"x": 1}}),
            )
            .await,
        409,
        "version_conflict_engine_exception",
    );
}

async fn bulk(client: &EsClient) {
    let body = [
        json!({"index": {"_index": "bulk-docs", "_id": "1"}}),
        json!({"user": "a"}),
        json!({"create": {"_index": "bulk-docs", "_id": "2"}}),
        json!({"user": "b"}),
        json!({"create": {"_index": "bulk-docs", "_id": "1"}}),
        json!({"user": "conflict"}),
        json!({"update": {"_index": "bulk-docs", "_id": "2"}}),
        json!({"doc": {"extra": true}}),
        json!({"update": {"_index": "bulk-docs", "_id": "3"}}),
        json!({"doc": {"user": "c"}, "doc_as_upsert": true}),
        json!({"delete": {"_index": "bulk-docs", "_id": "1"}}),
        json!({"delete": {"_index": "bulk-docs", "_id": "missing"}}),
        json!({"index": {"_index": "bulk-docs"}}),
        json!({"user": 5, "nested": {"x": 1}}),
        json!({"index": {"_index": "bulk-docs", "_id": "bad"}}),
        json!({"nested": 7}),
        json!({"delete": {"_index": "no-such-index", "_id": "1"}}),
    ];
    let ndjson: String = body.iter().map(|line| format!("{line}\n")).collect();
    let answer = client.bulk("/_bulk?refresh=true", ndjson).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["errors"], true);
    assert!(answer.body["took"].is_u64());
    let items = answer.body["items"].as_array().unwrap();
    let summary: Vec<(String, u64, Value)> = items
        .iter()
        .map(|item| {
            let (action, body) = item.as_object().unwrap().iter().next().unwrap();
            (
                action.clone(),
                body["status"].as_u64().unwrap(),
                body.get("result").cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    let expected = [
        ("index", 201, json!("created")),
        ("create", 201, json!("created")),
        ("create", 409, Value::Null),
        ("update", 200, json!("updated")),
        ("update", 201, json!("created")),
        ("delete", 200, json!("deleted")),
        ("delete", 404, json!("not_found")),
        ("index", 201, json!("created")),
        ("index", 400, Value::Null),
        ("delete", 404, Value::Null),
    ];
    let expected: Vec<(String, u64, Value)> = expected
        .into_iter()
        .map(|(action, status, result)| (action.to_string(), status, result))
        .collect();
    assert_eq!(summary, expected, "{}", answer.text);
    let first = &items[0]["index"];
    assert_eq!(first["_index"], "bulk-docs");
    assert_eq!(first["_id"], "1");
    assert_eq!(first["_version"], 1);
    assert_eq!(first["_shards"], shards_one());
    assert!(first["_seq_no"].is_u64());
    assert_eq!(first["_primary_term"], 1);
    let conflict = &items[2]["create"]["error"];
    assert_eq!(conflict["type"], "version_conflict_engine_exception");
    assert_eq!(conflict["index"], "bulk-docs");
    assert_eq!(
        items[8]["index"]["error"]["type"],
        "document_parsing_exception"
    );
    assert_eq!(
        items[9]["delete"]["error"]["type"],
        "index_not_found_exception"
    );
    assert_eq!(
        client.get("/bulk-docs/_count").await.body["count"],
        3,
        "2, 3 and the automatic id; refresh=true made them searchable"
    );
    assert_eq!(
        client.get("/bulk-docs/_source/2").await.body,
        json!({"user": "b", "extra": true})
    );

    let into_index = client
        .bulk(
            "/bulk-default/_bulk",
            "{\"index\":{\"_id\":\"1\"}}\n{\"user\":\"d\"}\n".to_string(),
        )
        .await;
    assert_eq!(into_index.body["errors"], false, "{}", into_index.text);
    assert_eq!(
        into_index.body["items"][0]["index"]["_index"],
        "bulk-default"
    );

    let malformed = client
        .bulk(
            "/_bulk",
            "{\"index\":{\"_index\":\"bulk-bad\"}}\n{\"a\":1}\n{\"index\":\n{\"a\":2}\n"
                .to_string(),
        )
        .await;
    assert_error(&malformed, 400, "illegal_argument_exception");
    assert_eq!(
        client.get("/bulk-bad").await.status,
        404,
        "a malformed bulk applies nothing"
    );
    assert_error(
        &client
            .bulk("/_bulk", "{\"index\":{\"_index\":\"x\"}}\n{}".to_string())
            .await,
        400,
        "illegal_argument_exception",
    );
    let compatible = client
        .send(
            Method::POST,
            "/bulk-default/_bulk",
            Some((
                "application/vnd.elasticsearch+x-ndjson; compatible-with=8",
                b"{\"index\":{\"_id\":\"2\"}}\n{\"user\":\"e\"}\n".to_vec(),
            )),
        )
        .await;
    assert_eq!(compatible.body["errors"], false, "{}", compatible.text);
}

#[tokio::test]
async fn document_apis_answer_like_elasticsearch() {
    let dir = tempfile::tempdir().unwrap();
    let node = TandemProcess::start("documents", dir.path());
    let client = node.client();
    index_and_get(&client).await;
    create_and_concurrency(&client).await;
    bad_documents(&client).await;
    delete_and_refresh(&client).await;
    automatic_index_creation(&client).await;
    partial_updates(&client).await;
    bulk(&client).await;
}
