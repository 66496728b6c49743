//! `_search` and `_count` against a real `tandem` process: Elastic's CCR tutorial (create
//! `server-metrics`, bulk index, search with `q=`), the query DSL, pagination, total hits,
//! several indices at once, and each error's status and shape.

mod common;

use common::{Answer, EsClient, TandemProcess};
use serde_json::{json, Value};

fn assert_error(answer: &Answer, status: u16, error_type: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.body["status"], status, "{}", answer.text);
    assert_eq!(answer.body["error"]["type"], error_type, "{}", answer.text);
}

/// The ids of a search answer's hits, in order.
fn ids(answer: &Answer) -> Vec<String> {
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.body["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["_id"].as_str().unwrap().to_string())
        .collect()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| id.to_string()).collect()
}

/// Elastic's CCR tutorial: the leader index and its documents.
async fn ccr_tutorial(client: &EsClient) {
    let created = client
        .put(
            "/server-metrics",
            json!({
                "settings": {"index": {"number_of_shards": 1, "number_of_replicas": 0}},
                "mappings": {"properties": {
                    "@timestamp": {"type": "date"},
                    "accept": {"type": "long"},
                    "deny": {"type": "long"},
                    "host": {"type": "keyword"},
                    "response": {"type": "double"},
                    "service": {"type": "keyword"},
                    "total": {"type": "long"}
                }}
            }),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let documents = [
        json!({"@timestamp": "2026-01-01T10:00:00Z", "accept": 10, "deny": 1, "host": "host1", "response": 0.5, "service": "web", "total": 11}),
        json!({"@timestamp": "2026-01-01T11:00:00Z", "accept": 20, "deny": 0, "host": "host2", "response": 1.5, "service": "web", "total": 20}),
        json!({"@timestamp": "2026-01-02T10:00:00Z", "accept": 5, "deny": 5, "host": "host1", "response": 2.5, "service": "db", "total": 10}),
        json!({"@timestamp": "2026-01-03T10:00:00Z", "accept": 0, "deny": 9, "host": "host3", "response": 9.0, "service": "cache", "total": 9}),
    ];
    let ndjson: String = documents
        .iter()
        .enumerate()
        .map(|(n, document)| format!("{{\"index\":{{\"_id\":\"{}\"}}}}\n{document}\n", n + 1))
        .collect();
    let bulk = client.bulk("/server-metrics/_bulk", ndjson).await;
    assert_eq!(bulk.body["errors"], false, "{}", bulk.text);
    assert_eq!(
        client.post_empty("/server-metrics/_refresh").await.status,
        200
    );

    let answer = client.get("/server-metrics/_search?q=host:host1").await;
    assert_eq!(sorted(ids(&answer)), strings(&["1", "3"]));
    assert_eq!(answer.body["timed_out"], false);
    assert_eq!(
        answer.body["_shards"],
        json!({"total": 1, "successful": 1, "skipped": 0, "failed": 0})
    );
    assert_eq!(
        answer.body["hits"]["total"],
        json!({"value": 2, "relation": "eq"})
    );
    assert!(answer.body["took"].is_u64());
    assert!(answer.body["hits"]["max_score"].as_f64().unwrap() > 0.0);
    let hit = &answer.body["hits"]["hits"][0];
    assert_eq!(hit["_index"], "server-metrics");
    assert!(hit["_score"].as_f64().unwrap() > 0.0);
    assert_eq!(hit["_source"]["host"], "host1");

    let everything = client.get("/server-metrics/_search").await;
    assert_eq!(
        everything.body["hits"]["total"]["value"], 4,
        "{}",
        everything.text
    );
    let ranged = client
        .get("/server-metrics/_search?q=total:[10%20TO%2011]")
        .await;
    assert_eq!(sorted(ids(&ranged)), strings(&["1", "3"]));
}

async fn query_dsl(client: &EsClient) {
    let search = |body: Value| {
        let client = client.clone();
        async move { client.post("/server-metrics/_search", body).await }
    };
    let all = search(json!({"query": {"match_all": {}}})).await;
    assert_eq!(ids(&all).len(), 4);
    assert_eq!(all.body["hits"]["max_score"], 1.0);
    let matched = search(json!({"query": {"match": {"service": "web"}}})).await;
    assert_eq!(sorted(ids(&matched)), strings(&["1", "2"]));
    let term = search(json!({"query": {"term": {"host": "host3"}}})).await;
    assert_eq!(ids(&term), strings(&["4"]));
    let terms = search(json!({"query": {"terms": {"service": ["db", "cache"]}}})).await;
    assert_eq!(sorted(ids(&terms)), strings(&["3", "4"]));
    let range = search(
        json!({"query": {"range": {"@timestamp": {"gte": "2026-01-02", "lt": "2026-01-03"}}}}),
    )
    .await;
    assert_eq!(ids(&range), strings(&["3"]));
    let numbers = search(json!({"query": {"range": {"response": {"gt": 1.0, "lte": 2.5}}}})).await;
    assert_eq!(sorted(ids(&numbers)), strings(&["2", "3"]));
    let boolean = search(json!({"query": {"bool": {
        "must": [{"match": {"service": "web"}}],
        "filter": [{"range": {"accept": {"gte": 15}}}],
        "must_not": [{"term": {"host": "host1"}}]
    }}}))
    .await;
    assert_eq!(ids(&boolean), strings(&["2"]));
    let should = search(json!({"query": {"bool": {
        "should": [{"term": {"host": "host1"}}, {"term": {"service": "web"}}, {"range": {"deny": {"gte": 5}}}],
        "minimum_should_match": 2
    }}}))
    .await;
    assert_eq!(sorted(ids(&should)), strings(&["1", "3"]));
    let exists = search(json!({"query": {"exists": {"field": "deny"}}})).await;
    assert_eq!(ids(&exists).len(), 4);
    let query_string =
        search(json!({"query": {"query_string": {"query": "service:db OR host:host3"}}})).await;
    assert_eq!(sorted(ids(&query_string)), strings(&["3", "4"]));

    let page =
        search(json!({"query": {"match_all": {}}, "from": 1, "size": 2, "sort": ["_score"]})).await;
    assert_eq!(ids(&page).len(), 2);
    assert_eq!(page.body["hits"]["total"]["value"], 4);
    let empty_page = search(json!({"size": 0})).await;
    assert!(ids(&empty_page).is_empty());
    assert_eq!(empty_page.body["hits"]["max_score"], Value::Null);
    let capped = search(json!({"track_total_hits": 2})).await;
    assert_eq!(
        capped.body["hits"]["total"],
        json!({"value": 2, "relation": "gte"})
    );
    let untracked = client
        .get("/server-metrics/_search?track_total_hits=false")
        .await;
    assert!(
        untracked.body["hits"].get("total").is_none(),
        "{}",
        untracked.text
    );
    let as_int = client
        .get("/server-metrics/_search?rest_total_hits_as_int=true")
        .await;
    assert_eq!(as_int.body["hits"]["total"], 4);
    let without_source = search(json!({"_source": false})).await;
    assert!(without_source.body["hits"]["hits"][0]
        .get("_source")
        .is_none());
}

async fn counts(client: &EsClient) {
    let count = client.get("/server-metrics/_count?q=service:web").await;
    assert_eq!(
        count.body,
        json!({"count": 2, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}),
        "{}",
        count.text
    );
    let body = client
        .post(
            "/server-metrics/_count",
            json!({"query": {"term": {"host": "host1"}}}),
        )
        .await;
    assert_eq!(body.body["count"], 2, "{}", body.text);
    assert_eq!(client.get("/server-metrics/_count").await.body["count"], 4);
    assert_error(
        &client
            .post("/server-metrics/_count", json!({"size": 1}))
            .await,
        400,
        "parsing_exception",
    );
}

async fn several_indices(client: &EsClient) {
    for (index, user) in [("search-a", "alice"), ("search-b", "bob")] {
        let answer = client
            .put(
                &format!("/{index}/_doc/1?refresh=true"),
                json!({"user": user, "group": "g"}),
            )
            .await;
        assert_eq!(answer.status, 201, "{}", answer.text);
    }
    let listed = client.get("/search-a,search-b/_search?q=group:g").await;
    assert_eq!(ids(&listed).len(), 2);
    let pattern = client.get("/search-*/_search?q=user:bob").await;
    assert_eq!(pattern.body["hits"]["hits"][0]["_index"], "search-b");
    assert_eq!(pattern.body["_shards"]["total"], 2);
    let everything = client.get("/_search?q=group:g").await;
    assert_eq!(ids(&everything).len(), 2);
    let all = client.get("/_all/_count").await;
    assert!(all.body["count"].as_u64().unwrap() >= 6, "{}", all.text);
    let nothing = client.get("/nothing-*/_search").await;
    assert_eq!(
        nothing.body["hits"]["total"]["value"], 0,
        "{}",
        nothing.text
    );
    let count = client.get("/_count?q=user:alice").await;
    assert_eq!(count.body["count"], 1);
}

async fn errors(client: &EsClient) {
    assert_error(
        &client.get("/no-such-index/_search").await,
        404,
        "index_not_found_exception",
    );
    assert_error(
        &client.get("/server-metrics,no-such-index/_search").await,
        404,
        "index_not_found_exception",
    );
    let unknown_query = client
        .post(
            "/server-metrics/_search",
            json!({"query": {"fuzzy": {"host": "h"}}}),
        )
        .await;
    assert_error(&unknown_query, 400, "parsing_exception");
    assert_eq!(
        unknown_query.body["error"]["reason"],
        "unknown query [fuzzy]"
    );
    assert_error(
        &client
            .post(
                "/server-metrics/_search",
                json!({"query": {"match": {"host": {"query": "x", "fuzziness": 2}}}}),
            )
            .await,
        400,
        "parsing_exception",
    );
    let sort = client
        .post(
            "/server-metrics/_search",
            json!({"sort": [{"@timestamp": "desc"}]}),
        )
        .await;
    assert_error(&sort, 400, "illegal_argument_exception");
    assert_error(
        &client.get("/server-metrics/_search?sort=total:asc").await,
        400,
        "illegal_argument_exception",
    );
    assert_error(
        &client
            .post(
                "/server-metrics/_search",
                json!({"aggs": {"hosts": {"terms": {"field": "host"}}}}),
            )
            .await,
        400,
        "illegal_argument_exception",
    );
    assert_error(
        &client.get("/server-metrics/_search?from=9999&size=2").await,
        400,
        "illegal_argument_exception",
    );
    assert_eq!(
        client.get("/server-metrics/_search?q=host:(").await.status,
        400
    );
    assert_eq!(
        client
            .post(
                "/server-metrics/_search",
                json!({"query": {"range": {"@timestamp": {"gte": "yesterday"}}}})
            )
            .await
            .status,
        400
    );
    assert_error(
        &client.get("/server-metrics/_search?colour=red").await,
        400,
        "illegal_argument_exception",
    );
    let malformed = client
        .send(
            reqwest::Method::POST,
            "/server-metrics/_search",
            Some(("application/json", b"{\"query\":".to_vec())),
        )
        .await;
    assert_eq!(malformed.status, 400, "{}", malformed.text);
}

#[tokio::test]
async fn search_and_count_answer_like_elasticsearch() {
    let dir = tempfile::tempdir().unwrap();
    let node = TandemProcess::start("search", dir.path());
    let client = node.client();
    ccr_tutorial(&client).await;
    query_dsl(&client).await;
    counts(&client).await;
    several_indices(&client).await;
    errors(&client).await;
}
