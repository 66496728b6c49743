//! Every REST endpoint refuses a user without privileges, as Elasticsearch does: the test
//! walks [`ENDPOINTS`] (the table the router is checked against), sends each request as an
//! authenticated user whose role grants nothing, and expects a 403 `security_exception` that
//! names the endpoint's action; endpoints whose handler checks per item refuse the items, and
//! `_authenticate` answers. The transport's routes refuse the same user. Nothing the refused
//! requests asked for happened.

mod common;

use common::secure::start_secured;
use serde_json::json;
use tandem_node::rest::actions::{Check, ENDPOINTS};

/// The path of `pattern` with its parameters filled in.
fn concrete(pattern: &str) -> String {
    pattern
        .replace("{index}", "logs-a")
        .replace("{id}", "1")
        .replace("{name}", "someone")
        .replace("{node_id}", "_local")
}

/// A body the handler would accept, where one is needed to get past parsing.
fn body_for(method: &str, path: &str) -> Option<(&'static str, Vec<u8>)> {
    if path.ends_with("_bulk") {
        let ndjson = "{\"index\":{\"_index\":\"logs-a\",\"_id\":\"9\"}}\n{\"n\":9}\n";
        return Some(("application/x-ndjson", ndjson.as_bytes().to_vec()));
    }
    match method {
        "PUT" | "POST" => Some(("application/json", b"{}".to_vec())),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_without_privileges_is_refused_every_action() {
    let dir = tempfile::tempdir().unwrap();
    let (_node, elastic) = start_secured("secure", &dir.path().join("data"));
    let created = elastic
        .put("/logs-a", json!({"settings": {"number_of_shards": 1}}))
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let doc = elastic
        .put("/logs-a/_doc/1?refresh=true", json!({"n": 1}))
        .await;
    assert_eq!(doc.status, 201, "{}", doc.text);
    for name in ["nobody", "someone"] {
        let user = elastic
            .put(
                &format!("/_security/user/{name}"),
                json!({"password": format!("{name}-password"), "roles": []}),
            )
            .await;
        assert_eq!(user.status, 200, "{}", user.text);
    }
    let nobody = elastic.with_basic("nobody", "nobody-password");

    let mut wrong = Vec::new();
    for &(method, pattern, check) in ENDPOINTS {
        let path = concrete(pattern);
        let answer = nobody
            .send(
                method.parse().expect("an HTTP method"),
                &path,
                body_for(method, pattern),
            )
            .await;
        let refused_naming = |action: &str| {
            answer.status == 403
                && (method == "HEAD"
                    || (answer.body["error"]["type"] == "security_exception"
                        && answer.body["error"]["reason"]
                            .as_str()
                            .is_some_and(|reason| {
                                reason.contains(&format!("action [{action}] is unauthorized"))
                            })))
        };
        let fine = match check {
            Check::Cluster(action) | Check::Index(action) | Check::AllIndices(action) => {
                refused_naming(action)
            }
            Check::ClusterAndIndex(cluster, index) => {
                refused_naming(cluster) || refused_naming(index)
            }
            // `_bulk`: the request is answered, each item refused.
            Check::Handler(action) if pattern.ends_with("_bulk") => {
                answer.status == 200
                    && answer.body["items"][0]["index"]["status"] == 403
                    && answer.body["items"][0]["index"]["error"]["reason"]
                        .as_str()
                        .is_some_and(|reason| reason.contains("is unauthorized"))
                    && action == "indices:data/write/bulk"
            }
            // Another user's password.
            Check::Handler(action) if pattern.contains("{name}") => refused_naming(action),
            // One's own password: allowed (here refused as an empty request).
            Check::Handler(_) => answer.status != 403,
            Check::Authenticated => answer.status == 200,
        };
        if !fine {
            wrong.push(format!(
                "{method} {path} ({check:?}): {} {}",
                answer.status, answer.text
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "not refused as expected:\n{}",
        wrong.join("\n")
    );

    // The transport: a user without `read` on the index reads nothing of it.
    let changes = nobody
        .post("/_tandem/v1/index_metadata", json!({"index": "logs-a"}))
        .await;
    assert!(
        changes.status == 403 || changes.text.contains("is unauthorized"),
        "{} {}",
        changes.status,
        changes.text
    );

    // Nothing the refused requests asked for happened.
    let still = elastic.get("/logs-a/_doc/1").await;
    assert_eq!(still.status, 200, "{}", still.text);
    assert_eq!(still.body["_source"], json!({"n": 1}));
    assert_eq!(elastic.get("/logs-a/_doc/9").await.status, 404);
    let someone = elastic.get("/_security/user/someone").await;
    assert_eq!(someone.body["someone"]["enabled"], true, "{}", someone.text);
    assert_eq!(
        elastic
            .with_basic("someone", "someone-password")
            .get("/_security/_authenticate")
            .await
            .status,
        200
    );
}
