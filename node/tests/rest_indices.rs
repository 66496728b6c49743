//! The index APIs against a real `tandem` process: create (nested and flat settings, the CCR
//! tutorial's mappings), get and exists, mappings and settings, close and open, refresh, flush,
//! force merge, delete and `_cat/indices`, each with its error cases.

mod common;

use common::{EsClient, TandemProcess};
use reqwest::Method;
use serde_json::{json, Value};

/// The index of Elastic's CCR tutorial.
fn server_metrics_body() -> Value {
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
    })
}

fn assert_error(answer: &common::Answer, status: u16, error_type: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.body["status"], status, "{}", answer.text);
    assert_eq!(answer.body["error"]["type"], error_type, "{}", answer.text);
    assert_eq!(
        answer.body["error"]["root_cause"][0]["type"], error_type,
        "{}",
        answer.text
    );
}

async fn create_get_and_exists(client: &EsClient) {
    let created = client.put("/server-metrics", server_metrics_body()).await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(
        created.body,
        json!({"acknowledged": true, "shards_acknowledged": true, "index": "server-metrics"})
    );
    let again = client.put("/server-metrics", server_metrics_body()).await;
    assert_error(&again, 400, "resource_already_exists_exception");
    assert_eq!(again.body["error"]["index"], "server-metrics");

    let got = client.get("/server-metrics").await;
    assert_eq!(got.status, 200, "{}", got.text);
    let index = &got.body["server-metrics"];
    assert_eq!(index["aliases"], json!({}));
    assert_eq!(index["mappings"]["properties"]["host"]["type"], "keyword");
    assert_eq!(
        index["mappings"]["properties"]["@timestamp"]["type"],
        "date"
    );
    assert_eq!(
        index["mappings"]["properties"]["response"]["type"],
        "double"
    );
    let settings = &index["settings"]["index"];
    assert_eq!(settings["number_of_shards"], "1");
    assert_eq!(settings["number_of_replicas"], "0");
    assert_eq!(settings["provided_name"], "server-metrics");
    assert!(settings["uuid"]
        .as_str()
        .is_some_and(|uuid| !uuid.is_empty()));
    assert!(settings["creation_date"]
        .as_str()
        .is_some_and(|date| date.parse::<u64>().is_ok()));

    let head = client.send(Method::HEAD, "/server-metrics", None).await;
    assert_eq!(head.status, 200);
    assert!(head.text.is_empty());
    let head = client.send(Method::HEAD, "/no-such-index", None).await;
    assert_eq!(head.status, 404);
    assert!(head.text.is_empty());
    assert_eq!(
        client.send(Method::HEAD, "/server-*", None).await.status,
        200
    );
    assert_eq!(
        client.send(Method::HEAD, "/nothing-*", None).await.status,
        404,
        "a pattern matching nothing does not exist"
    );
    assert_eq!(client.get("/nothing-*").await.body, json!({}));
    let missing = client.get("/no-such-index").await;
    assert_error(&missing, 404, "index_not_found_exception");
    assert_eq!(missing.body["error"]["index"], "no-such-index");
}

async fn creation_errors(client: &EsClient) {
    assert_error(
        &client.put("/Upper-Case", json!({})).await,
        400,
        "invalid_index_name_exception",
    );
    assert_error(
        &client.put("/_underscore", json!({})).await,
        400,
        "invalid_index_name_exception",
    );
    let unknown_setting = client
        .put(
            "/bad-settings",
            json!({"settings": {"index.colour": "red"}}),
        )
        .await;
    assert_eq!(unknown_setting.status, 400, "{}", unknown_setting.text);
    let zero_shards = client
        .put(
            "/bad-settings",
            json!({"settings": {"number_of_shards": 0}}),
        )
        .await;
    assert_eq!(zero_shards.status, 400, "{}", zero_shards.text);
    let bad_type = client
        .put(
            "/bad-mappings",
            json!({"mappings": {"properties": {"x": {"type": "hologram"}}}}),
        )
        .await;
    assert_error(&bad_type, 400, "mapper_parsing_exception");
    let unknown_key = client.put("/bad-body", json!({"setings": {}})).await;
    assert_error(&unknown_key, 400, "parse_exception");
    let malformed = client
        .send(
            Method::PUT,
            "/bad-json",
            Some(("application/json", b"{\"settings\": ".to_vec())),
        )
        .await;
    assert_eq!(malformed.status, 400, "{}", malformed.text);
    let unknown_parameter = client.put("/bad-parameter?colour=red", json!({})).await;
    assert_error(&unknown_parameter, 400, "illegal_argument_exception");
    assert_eq!(
        client
            .get("/bad-settings,bad-mappings,bad-body")
            .await
            .status,
        404,
        "failed creations leave no index"
    );
}

async fn flat_and_nested_settings(client: &EsClient) {
    let created = client
        .put(
            "/flat-settings",
            json!({"settings": {
                "index.number_of_shards": 2,
                "index.translog.durability": "async",
                "index.soft_deletes.retention_lease.period": "1h",
                "refresh_interval": "-1"
            }}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let settings = client.get("/flat-settings/_settings").await;
    let index = &settings.body["flat-settings"]["settings"]["index"];
    assert_eq!(index["number_of_shards"], "2");
    assert_eq!(index["translog"]["durability"], "async");
    assert_eq!(index["refresh_interval"], "-1");
    assert_eq!(
        index["soft_deletes"]["retention_lease"]["period"],
        "3600000ms"
    );

    // Dynamic settings apply to the open index at once: with `-1` a write stays unsearchable,
    // a short interval makes the background refresh find it.
    let written = client
        .put("/flat-settings/_doc/1", json!({"status": "ok"}))
        .await;
    assert_eq!(written.status, 201, "{}", written.text);
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(client.get("/flat-settings/_count").await.body["count"], 0);
    let live = client
        .put(
            "/flat-settings/_settings",
            json!({"index": {"refresh_interval": "20ms"}}),
        )
        .await;
    assert_eq!(live.status, 200, "{}", live.text);
    let started = std::time::Instant::now();
    while client.get("/flat-settings/_count").await.body["count"] != 1 {
        assert!(
            started.elapsed().as_secs() < 10,
            "the new interval never refreshed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    let updated = client
        .put(
            "/flat-settings/_settings",
            json!({"index": {"refresh_interval": "5s"}}),
        )
        .await;
    assert_eq!(
        updated.body,
        json!({"acknowledged": true}),
        "{}",
        updated.text
    );
    let flat = client
        .get("/flat-settings/_settings?flat_settings=true")
        .await;
    assert_eq!(
        flat.body["flat-settings"]["settings"]["index.refresh_interval"],
        "5000ms"
    );
    let final_setting = client
        .put(
            "/flat-settings/_settings",
            json!({"index.number_of_shards": 3}),
        )
        .await;
    assert_error(&final_setting, 400, "illegal_argument_exception");
    assert_error(
        &client
            .put(
                "/no-such-index/_settings",
                json!({"refresh_interval": "1s"}),
            )
            .await,
        404,
        "index_not_found_exception",
    );
}

async fn mappings(client: &EsClient) {
    let added = client
        .put(
            "/server-metrics/_mapping",
            json!({"properties": {"region": {"type": "keyword"}}}),
        )
        .await;
    assert_eq!(added.body, json!({"acknowledged": true}), "{}", added.text);
    let got = client.get("/server-metrics/_mapping").await;
    let properties = &got.body["server-metrics"]["mappings"]["properties"];
    assert_eq!(properties["region"]["type"], "keyword");
    assert_eq!(properties["total"]["type"], "long");
    let conflict = client
        .put(
            "/server-metrics/_mapping",
            json!({"properties": {"host": {"type": "long"}}}),
        )
        .await;
    assert_error(&conflict, 400, "mapper_parsing_exception");
    assert_error(
        &client.get("/no-such-index/_mapping").await,
        404,
        "index_not_found_exception",
    );
}

async fn close_open_refresh_flush_merge(client: &EsClient) {
    client.put("/lifecycle", json!({})).await;
    for n in 0..5 {
        let path = format!("/lifecycle/_doc/{n}");
        assert_eq!(client.put(&path, json!({"n": n})).await.status, 201);
        // Updates leave soft-deleted history behind for the merge to consider.
        assert_eq!(client.put(&path, json!({"n": n + 1})).await.status, 200);
    }
    let refreshed = client.post_empty("/lifecycle/_refresh").await;
    assert_eq!(
        refreshed.body,
        json!({"_shards": {"total": 1, "successful": 1, "failed": 0}}),
        "{}",
        refreshed.text
    );
    let everything = client.get("/_refresh").await;
    assert_eq!(everything.status, 200, "{}", everything.text);
    assert!(everything.body["_shards"]["total"].as_u64().unwrap() >= 1);
    let flushed = client.post_empty("/lifecycle/_flush").await;
    assert_eq!(flushed.body["_shards"]["failed"], 0, "{}", flushed.text);
    let merged = client
        .post_empty("/lifecycle/_forcemerge?max_num_segments=1")
        .await;
    assert_eq!(merged.body["_shards"]["successful"], 1, "{}", merged.text);
    assert_eq!(
        client.get("/lifecycle/_count").await.body["count"],
        5,
        "a merge keeps every live document"
    );
    assert_error(
        &client
            .post_empty("/lifecycle/_forcemerge?max_num_segments=0")
            .await,
        400,
        "illegal_argument_exception",
    );
    assert_error(
        &client.post_empty("/no-such-index/_refresh").await,
        404,
        "index_not_found_exception",
    );

    let closed = client.post_empty("/lifecycle/_close").await;
    assert_eq!(
        closed.body,
        json!({"acknowledged": true, "shards_acknowledged": true,
               "indices": {"lifecycle": {"closed": true}}}),
        "{}",
        closed.text
    );
    assert_error(
        &client.get("/lifecycle/_search").await,
        400,
        "index_closed_exception",
    );
    assert_error(
        &client.put("/lifecycle/_doc/9", json!({"n": 9})).await,
        400,
        "index_closed_exception",
    );
    assert_eq!(
        client.get("/lifecycle").await.status,
        200,
        "a closed index still has metadata"
    );
    let cat = client.get("/_cat/indices/lifecycle?format=json").await;
    assert_eq!(cat.body[0]["status"], "close", "{}", cat.text);
    let opened = client.post_empty("/lifecycle/_open").await;
    assert_eq!(
        opened.body,
        json!({"acknowledged": true, "shards_acknowledged": true}),
        "{}",
        opened.text
    );
    let document = client.get("/lifecycle/_doc/3").await;
    assert_eq!(
        document.body["_source"],
        json!({"n": 4}),
        "{}",
        document.text
    );
    assert_error(
        &client.post_empty("/no-such-index/_close").await,
        404,
        "index_not_found_exception",
    );
}

async fn cat_indices(client: &EsClient) {
    let table = client.get("/_cat/indices?v").await;
    assert_eq!(table.status, 200, "{}", table.text);
    let mut lines = table.text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        vec![
            "health",
            "status",
            "index",
            "uuid",
            "pri",
            "rep",
            "docs.count",
            "docs.deleted",
            "store.size",
            "pri.store.size",
            "dataset.size"
        ]
    );
    let row = lines
        .find(|line| line.contains(" lifecycle "))
        .expect("a row for lifecycle");
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[..2], &["green", "open"]);
    assert_eq!(cells[6], "5", "{row}");

    let json = client.get("/_cat/indices/server-metrics?format=json").await;
    assert_eq!(json.status, 200, "{}", json.text);
    let row = &json.body[0];
    assert_eq!(row["index"], "server-metrics");
    assert_eq!(row["pri"], "1");
    assert_eq!(row["docs.count"], "0");
    let picked = client
        .get("/_cat/indices/lifecycle?h=index,docs.count&bytes=b")
        .await;
    assert_eq!(picked.text.trim(), "lifecycle 5");
    assert_error(
        &client.get("/_cat/indices?h=colour").await,
        400,
        "illegal_argument_exception",
    );
    assert_error(
        &client.get("/_cat/indices/no-such-index").await,
        404,
        "index_not_found_exception",
    );
}

async fn cat_health_and_count(client: &EsClient) {
    let table = client.get("/_cat/health?v").await;
    assert_eq!(table.status, 200, "{}", table.text);
    let mut lines = table.text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        vec![
            "epoch",
            "timestamp",
            "cluster",
            "status",
            "node.total",
            "node.data",
            "shards",
            "pri",
            "relo",
            "init",
            "unassign",
            "unassign.pri",
            "pending_tasks",
            "max_task_wait_time",
            "active_shards_percent"
        ]
    );
    let cells: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert!(
        cells[0].parse::<u64>().unwrap() > 1_700_000_000,
        "{cells:?}"
    );
    assert_eq!(cells[1].len(), 8, "HH:MM:SS: {cells:?}");
    assert_eq!(&cells[3..6], &["green", "1", "1"], "{cells:?}");
    assert_eq!(cells[14], "100.0%");
    let health = client.get("/_cat/health?format=json&ts=false").await;
    assert_eq!(health.status, 200, "{}", health.text);
    let row = &health.body[0];
    assert!(row.get("epoch").is_none(), "{}", health.text);
    assert_eq!(row["status"], "green");
    assert_eq!(row["unassign"], "0");
    let shards: u64 = row["shards"].as_str().unwrap().parse().unwrap();
    assert!(shards >= 2, "{}", health.text);

    let count = client.get("/_cat/count/lifecycle?h=count").await;
    assert_eq!(count.status, 200, "{}", count.text);
    assert_eq!(count.text.trim(), "5");
    let all = client.get("/_cat/count?format=json").await;
    assert_eq!(all.status, 200, "{}", all.text);
    let total: u64 = all.body[0]["count"].as_str().unwrap().parse().unwrap();
    assert!(total >= 5, "{}", all.text);
    assert!(all.body[0]["epoch"].is_string(), "{}", all.text);
    assert_error(
        &client.get("/_cat/count/no-such-index").await,
        404,
        "index_not_found_exception",
    );
}

async fn index_stats(client: &EsClient) {
    let created = client
        .put(
            "/stats-test",
            json!({"settings": {"index": {"number_of_shards": 2}}}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let mut ndjson = String::new();
    for n in 0..30 {
        ndjson.push_str(
            &json!({"index": {"_index": "stats-test", "_id": format!("d{n}")}}).to_string(),
        );
        ndjson.push('\n');
        ndjson.push_str(&json!({"n": n}).to_string());
        ndjson.push('\n');
    }
    ndjson.push_str(&json!({"delete": {"_index": "stats-test", "_id": "d0"}}).to_string());
    ndjson.push('\n');
    assert_eq!(client.bulk("/_bulk", ndjson).await.status, 200);
    client.post_empty("/stats-test/_refresh").await;
    let searched = client.get("/stats-test/_search?q=n:3").await;
    assert_eq!(searched.status, 200, "{}", searched.text);

    let stats = client.get("/stats-test/_stats").await;
    assert_eq!(stats.status, 200, "{}", stats.text);
    assert_eq!(stats.body["_shards"]["total"], 2, "{}", stats.text);
    let primaries = &stats.body["indices"]["stats-test"]["primaries"];
    assert_eq!(primaries["docs"]["count"], 29, "{}", stats.text);
    assert_eq!(primaries["indexing"]["index_total"], 30, "{}", stats.text);
    assert_eq!(primaries["indexing"]["delete_total"], 1, "{}", stats.text);
    assert_eq!(primaries["search"]["query_total"], 2, "{}", stats.text);
    assert!(
        primaries["refresh"]["total"].as_u64().unwrap() >= 2,
        "{}",
        stats.text
    );
    assert!(
        primaries["store"]["size_in_bytes"].as_u64().unwrap() > 0,
        "{}",
        stats.text
    );
    for section in ["flush", "merges", "translog", "segments"] {
        assert!(primaries[section].is_object(), "{section}: {}", stats.text);
    }
    assert_eq!(
        stats.body["indices"]["stats-test"]["total"], *primaries,
        "one copy of each shard"
    );

    let shards = client.get("/stats-test/_stats?level=shards").await;
    assert_eq!(shards.status, 200, "{}", shards.text);
    let shard = &shards.body["indices"]["stats-test"]["shards"]["0"][0];
    assert_eq!(shard["routing"]["primary"], true, "{}", shards.text);
    let seq_no = &shard["seq_no"];
    assert!(
        seq_no["max_seq_no"].as_i64().unwrap() >= 0,
        "{}",
        shards.text
    );
    assert_eq!(
        seq_no["local_checkpoint"], seq_no["max_seq_no"],
        "{}",
        shards.text
    );
    assert_eq!(
        seq_no["global_checkpoint"], seq_no["max_seq_no"],
        "{}",
        shards.text
    );
    assert!(
        shard["retention_leases"]["leases"].is_array(),
        "{}",
        shards.text
    );

    let docs_only = client.get("/_stats/docs,store?level=cluster").await;
    assert_eq!(docs_only.status, 200, "{}", docs_only.text);
    assert!(
        docs_only.body.get("indices").is_none(),
        "{}",
        docs_only.text
    );
    let all = &docs_only.body["_all"]["primaries"];
    assert!(
        all["docs"]["count"].as_u64().unwrap() >= 29,
        "{}",
        docs_only.text
    );
    assert!(all.get("indexing").is_none(), "{}", docs_only.text);
    assert_error(
        &client.get("/_stats/nonsense").await,
        400,
        "illegal_argument_exception",
    );
    assert_error(
        &client.get("/_stats?level=everything").await,
        400,
        "illegal_argument_exception",
    );
    assert_error(
        &client.get("/no-such-index/_stats").await,
        404,
        "index_not_found_exception",
    );

    // The shards, segments and node tables.
    let shards = client.get("/_cat/shards/stats-test?v").await;
    assert_eq!(shards.status, 200, "{}", shards.text);
    let lines: Vec<Vec<&str>> = shards
        .text
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        ["index", "shard", "prirep", "state", "docs", "store", "dataset", "ip", "node"]
    );
    assert_eq!(lines.len(), 3, "{}", shards.text);
    assert_eq!(&lines[1][..4], ["stats-test", "0", "p", "STARTED"]);
    let docs: u64 = lines[1..]
        .iter()
        .map(|row| row[4].parse::<u64>().unwrap())
        .sum();
    assert_eq!(docs, 29);
    let seq = client
        .get("/_cat/shards/stats-test?format=json&h=shard,seq_no.max,seq_no.global_checkpoint")
        .await;
    assert_eq!(seq.status, 200, "{}", seq.text);
    assert_eq!(
        seq.body[0]["seq_no.max"], seq.body[0]["seq_no.global_checkpoint"],
        "{}",
        seq.text
    );
    let segments = client.get("/_cat/segments/stats-test?format=json").await;
    assert_eq!(segments.status, 200, "{}", segments.text);
    let live: u64 = segments
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["docs.count"].as_str().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(live, 29, "{}", segments.text);
    let nodes = client
        .get("/_cat/nodes?format=json&h=name,master,ram.percent,port")
        .await;
    assert_eq!(nodes.status, 200, "{}", nodes.text);
    assert_eq!(nodes.body[0]["master"], "*", "{}", nodes.text);
    assert_ne!(nodes.body[0]["port"], "0", "the bound port: {}", nodes.text);

    let node_stats = client.get("/_nodes/stats").await;
    assert_eq!(node_stats.status, 200, "{}", node_stats.text);
    let (_, node) = node_stats.body["nodes"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    for section in ["indices", "os", "process", "fs", "http", "transport"] {
        assert!(node[section].is_object(), "{section}: {}", node_stats.text);
    }
    assert!(node["indices"]["indexing"]["index_total"].as_u64().unwrap() >= 30);
    let local = client.get("/_nodes/_local/stats/process,fs").await;
    assert_eq!(local.status, 200, "{}", local.text);
    let (_, node) = local.body["nodes"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    assert!(node.get("indices").is_none(), "{}", local.text);
    let nobody = client.get("/_nodes/someone-else/stats").await;
    assert_eq!(nobody.body["_nodes"]["total"], 0, "{}", nobody.text);
    assert_error(
        &client.get("/_nodes/stats/nonsense").await,
        400,
        "illegal_argument_exception",
    );
    let cluster = client.get("/_cluster/stats").await;
    assert_eq!(cluster.status, 200, "{}", cluster.text);
    assert!(
        cluster.body["indices"]["count"].as_u64().unwrap() >= 1,
        "{}",
        cluster.text
    );
    assert!(cluster.body["indices"]["docs"]["count"].as_u64().unwrap() >= 29);
    assert_eq!(
        cluster.body["nodes"]["count"]["total"], 1,
        "{}",
        cluster.text
    );
}

async fn delete(client: &EsClient) {
    assert_error(
        &client.delete("/flat-*").await,
        400,
        "illegal_argument_exception",
    );
    let deleted = client.delete("/flat-settings").await;
    assert_eq!(
        deleted.body,
        json!({"acknowledged": true}),
        "{}",
        deleted.text
    );
    assert_error(
        &client.delete("/flat-settings").await,
        404,
        "index_not_found_exception",
    );
    assert_eq!(
        client
            .send(Method::HEAD, "/flat-settings", None)
            .await
            .status,
        404
    );
}

async fn aliases(client: &EsClient) {
    // Create with aliases: a bad alias is refused before the index exists.
    let bad = client
        .put("/aliased", json!({"aliases": {"Upper": {}}}))
        .await;
    assert_error(&bad, 400, "invalid_index_name_exception");
    assert_eq!(
        client.send(Method::HEAD, "/aliased", None).await.status,
        404
    );
    let created = client
        .put(
            "/aliased",
            json!({"aliases": {"current": {}, "filtered": {"filter": {"term": {"host": "a"}}}}}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let got = client.get("/aliased").await;
    assert_eq!(
        got.body["aliased"]["aliases"]["filtered"]["filter"],
        json!({"term": {"host": "a"}})
    );
    assert_eq!(got.body["aliased"]["aliases"]["current"], json!({}));

    // POST /_aliases: add and remove, applied per index; an unknown index changes nothing.
    let updated = client
        .post(
            "/_aliases",
            json!({"actions": [
                {"remove": {"index": "aliased", "alias": "current"}},
                {"add": {"index": "aliased", "alias": "next", "is_write_index": true}}
            ]}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.body["acknowledged"], true);
    let listed = client.get("/aliased/_alias").await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let names: Vec<&String> = listed.body["aliased"]["aliases"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(names, ["filtered", "next"]);
    assert_eq!(
        listed.body["aliased"]["aliases"]["next"]["is_write_index"],
        true
    );

    let missing = client
        .post(
            "/_aliases",
            json!({"actions": [{"add": {"index": "no-such-index", "alias": "x"}}]}),
        )
        .await;
    assert_error(&missing, 404, "index_not_found_exception");
    let malformed = client
        .post(
            "/_aliases",
            json!({"actions": [{"rename": {"index": "aliased", "alias": "x"}}]}),
        )
        .await;
    assert_eq!(malformed.status, 400, "{}", malformed.text);
    let unchanged = client.get("/aliased/_alias").await;
    assert_eq!(unchanged.body, listed.body);
    assert_error(
        &client.get("/no-such-index/_alias").await,
        404,
        "index_not_found_exception",
    );
    assert_eq!(client.delete("/aliased").await.status, 200);
}

#[tokio::test]
async fn index_apis_answer_like_elasticsearch() {
    let dir = tempfile::tempdir().unwrap();
    let node = TandemProcess::start("indices", dir.path());
    let client = node.client();
    create_get_and_exists(&client).await;
    creation_errors(&client).await;
    flat_and_nested_settings(&client).await;
    mappings(&client).await;
    close_open_refresh_flush_merge(&client).await;
    cat_indices(&client).await;
    cat_health_and_count(&client).await;
    index_stats(&client).await;
    delete(&client).await;
    aliases(&client).await;
}
