//! Authorization with Elasticsearch's privileges, on a real `tandem` process with
//! `--security`: custom roles over index patterns, refusals in Elasticsearch's words, bulk
//! items refused one by one, API keys limited by their role descriptors, and the role API.

mod common;

use common::secure::start_secured;
use common::EsClient;
use serde_json::json;

async fn user(elastic: &EsClient, name: &str, roles: &[&str]) -> EsClient {
    let created = elastic
        .put(
            &format!("/_security/user/{name}"),
            json!({"password": format!("{name}-password"), "roles": roles}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    elastic.with_basic(name, &format!("{name}-password"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_grant_elasticsearch_privileges_over_index_patterns() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, elastic) = start_secured("secure", &dir.path().join("data"));
    for (role, body) in [
        (
            "logs_reader",
            json!({"cluster": ["monitor"], "indices": [{"names": ["logs-*"], "privileges": ["read", "view_index_metadata"]}]}),
        ),
        (
            "logs_writer",
            json!({"indices": [{"names": ["logs-*"], "privileges": ["write", "create_index"]}]}),
        ),
        ("key_maker", json!({"cluster": ["manage_own_api_key"]})),
    ] {
        let put = elastic.put(&format!("/_security/role/{role}"), body).await;
        assert_eq!(put.status, 200, "{}", put.text);
        assert_eq!(put.body["role"]["created"], true);
    }
    let bad = elastic
        .put(
            "/_security/role/bad",
            json!({"cluster": ["rule_everything"]}),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert!(
        bad.text
            .contains("unknown cluster privilege [rule_everything]"),
        "{}",
        bad.text
    );
    let reserved = elastic
        .put("/_security/role/superuser", json!({"cluster": ["monitor"]}))
        .await;
    assert_eq!(reserved.status, 400, "{}", reserved.text);
    let shown = elastic.get("/_security/role/logs_reader").await;
    assert_eq!(
        shown.body["logs_reader"]["indices"][0]["names"],
        json!(["logs-*"]),
        "{}",
        shown.text
    );
    assert_eq!(
        elastic.get("/_security/role/superuser").await.body["superuser"]["metadata"]["_reserved"],
        true
    );

    let writer = user(&elastic, "writer", &["logs_writer", "key_maker"]).await;
    let reader = user(&elastic, "reader", &["logs_reader"]).await;
    let nobody = user(&elastic, "nobody", &["no_such_role"]).await;

    assert_eq!(writer.put("/logs-a", json!({})).await.status, 200);
    let refused = writer.put("/other", json!({})).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert_eq!(refused.body["error"]["type"], "security_exception");
    assert_eq!(
        refused.body["error"]["reason"],
        "action [indices:admin/create] is unauthorized for user [writer] with effective roles [key_maker,logs_writer] on indices [other], this action is granted by the index privileges [create_index,manage,all]"
    );
    assert_eq!(elastic.put("/other", json!({})).await.status, 200);

    // Bulk items are authorized one by one.
    let bulk = writer
        .bulk(
            "/_bulk?refresh=true",
            "{\"index\":{\"_index\":\"logs-a\",\"_id\":\"1\"}}\n{\"n\":1}\n{\"index\":{\"_index\":\"other\",\"_id\":\"1\"}}\n{\"n\":2}\n{\"index\":{\"_index\":\"logs-a\",\"_id\":\"2\"}}\n{\"n\":3}\n".to_string(),
        )
        .await;
    assert_eq!(bulk.status, 200, "{}", bulk.text);
    assert_eq!(bulk.body["errors"], true);
    assert_eq!(
        bulk.body["items"][0]["index"]["status"], 201,
        "{}",
        bulk.text
    );
    assert_eq!(
        bulk.body["items"][1]["index"]["status"], 403,
        "{}",
        bulk.text
    );
    assert_eq!(
        bulk.body["items"][1]["index"]["error"]["type"],
        "security_exception"
    );
    assert_eq!(
        bulk.body["items"][2]["index"]["status"], 201,
        "{}",
        bulk.text
    );
    // The index in the path does not open the items' own indices.
    let smuggled = writer
        .bulk(
            "/logs-a/_bulk",
            "{\"index\":{\"_index\":\"other\",\"_id\":\"9\"}}\n{\"n\":9}\n".to_string(),
        )
        .await;
    assert_eq!(
        smuggled.body["items"][0]["index"]["status"], 403,
        "{}",
        smuggled.text
    );
    assert_eq!(elastic.get("/other/_doc/9").await.status, 404);

    // The reader reads logs-*, and nothing else.
    let count = reader.get("/logs-a/_count").await;
    assert_eq!(count.status, 200, "{}", count.text);
    assert_eq!(count.body["count"], 2);
    assert_eq!(
        reader.get("/").await.status,
        200,
        "monitor grants cluster:monitor/main"
    );
    let write = reader.post("/logs-a/_doc", json!({"n": 4})).await;
    assert_eq!(write.status, 403, "{}", write.text);
    assert!(
        write
            .text
            .contains("granted by the index privileges [write,all]"),
        "{}",
        write.text
    );
    let settings = reader
        .put("/_cluster/settings", json!({"persistent": {}}))
        .await;
    assert_eq!(settings.status, 403, "{}", settings.text);
    assert_eq!(
        settings.body["error"]["reason"],
        "action [cluster:admin/settings/update] is unauthorized for user [reader] with effective roles [logs_reader], this action is granted by the cluster privileges [manage,all]"
    );
    assert_eq!(reader.get("/other/_search").await.status, 403);
    assert_eq!(reader.get("/logs-*/_search").await.status, 200);
    assert_eq!(reader.delete("/logs-a").await.status, 403);
    assert_eq!(reader.get("/_security/user").await.status, 403);
    // A role that does not exist grants nothing.
    assert_eq!(nobody.get("/").await.status, 403);
    assert_eq!(nobody.get("/_security/_authenticate").await.status, 200);

    // An API key is limited by its role descriptors as well as by its owner's roles.
    assert_eq!(elastic.put("/logs-b", json!({})).await.status, 200);
    let key = writer
        .post(
            "/_security/api_key",
            json!({"name": "only-a", "role_descriptors": {"only_a": {"indices": [{"names": ["logs-a"], "privileges": ["write"]}]}}}),
        )
        .await;
    assert_eq!(key.status, 200, "{}", key.text);
    let by_key =
        elastic.with_authorization(&format!("ApiKey {}", key.body["encoded"].as_str().unwrap()));
    assert_eq!(
        by_key.put("/logs-a/_doc/k", json!({"n": 5})).await.status,
        201
    );
    let outside = by_key.put("/logs-b/_doc/k", json!({"n": 6})).await;
    assert_eq!(outside.status, 403, "{}", outside.text);
    assert!(
        outside.text.contains("for API key id ["),
        "{}",
        outside.text
    );
    let bad_key = writer
        .post(
            "/_security/api_key",
            json!({"name": "bad", "role_descriptors": {"r": {"indices": [{"names": ["x"], "privileges": ["fly"]}]}}}),
        )
        .await;
    assert_eq!(bad_key.status, 400, "{}", bad_key.text);

    // Following needs manage_ccr and manage_follow_index, as in Elasticsearch.
    let follower_role = elastic
        .put(
            "/_security/role/follower",
            json!({"cluster": ["manage_ccr"], "indices": [{"names": ["copy-*"], "privileges": ["manage_follow_index", "monitor", "read"]}]}),
        )
        .await;
    assert_eq!(follower_role.status, 200, "{}", follower_role.text);
    let follower = user(&elastic, "follower", &["follower"]).await;
    let body = json!({"remote_cluster": "nowhere", "leader_index": "logs-a"});
    let no_ccr = reader.put("/copy-a/_ccr/follow", body.clone()).await;
    assert_eq!(no_ccr.status, 403, "{}", no_ccr.text);
    assert!(
        no_ccr.text.contains("cluster privileges [manage_ccr"),
        "{}",
        no_ccr.text
    );
    let wrong_index = follower.put("/logs-copy/_ccr/follow", body.clone()).await;
    assert_eq!(wrong_index.status, 403, "{}", wrong_index.text);
    let allowed = follower.put("/copy-a/_ccr/follow", body).await;
    assert_ne!(allowed.status, 403, "{}", allowed.text);
    assert_ne!(allowed.status, 401, "{}", allowed.text);

    // Deleting a role takes its privileges away at the next request.
    assert_eq!(
        elastic.delete("/_security/role/logs_reader").await.body["found"],
        true
    );
    assert_eq!(reader.get("/logs-a/_count").await.status, 403);
}
