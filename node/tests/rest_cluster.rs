//! `_cluster/settings` and `_remote/info` against a real `tandem` process: remote clusters in
//! sniff and proxy mode, flat and nested keys, transient over persistent, `null` deletes,
//! validation that changes nothing, and persistence across a restart.

mod common;

use common::TandemProcess;
use serde_json::json;

#[tokio::test]
async fn remote_clusters_are_configured_validated_and_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = TandemProcess::start("cluster-b", dir.path());
    let address = node.address().to_string();
    let client = node.client();

    assert_eq!(
        client.get("/_cluster/settings").await.body,
        json!({"persistent": {}, "transient": {}})
    );
    assert_eq!(client.get("/_remote/info").await.body, json!({}));

    // Sniff mode, nested keys; this node itself serves as the reachable "leader".
    let put = client
        .put(
            "/_cluster/settings",
            json!({"persistent": {"cluster": {"remote": {"leader": {"seeds": [address]}}}}}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(
        put.body,
        json!({"acknowledged": true,
               "persistent": {"cluster": {"remote": {"leader": {"seeds": [address]}}}},
               "transient": {}})
    );
    // Proxy mode, flat keys, transient; an unreachable address.
    let put = client
        .put(
            "/_cluster/settings",
            json!({"transient": {"cluster.remote.gone.mode": "proxy",
                                 "cluster.remote.gone.proxy_address": "127.0.0.1:1",
                                 "cluster.remote.gone.skip_unavailable": true}}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    let info = client.get("/_remote/info").await;
    assert_eq!(info.body["leader"]["connected"], true, "{}", info.text);
    assert_eq!(info.body["leader"]["mode"], "sniff");
    assert_eq!(info.body["leader"]["num_nodes_connected"], 1);
    assert_eq!(info.body["gone"]["connected"], false);
    assert_eq!(info.body["gone"]["mode"], "proxy");
    assert_eq!(info.body["gone"]["proxy_address"], "127.0.0.1:1");
    assert_eq!(info.body["gone"]["skip_unavailable"], true);
    let flat = client.get("/_cluster/settings?flat_settings=true").await;
    assert_eq!(
        flat.body["persistent"]["cluster.remote.leader.seeds"],
        json!([address])
    );
    assert_eq!(flat.body["transient"]["cluster.remote.gone.mode"], "proxy");

    // Invalid updates change nothing.
    for (body, reason) in [
        (
            json!({"persistent": {"cluster.remote.x.seeds": ["no-port"]}}),
            "expected host:port",
        ),
        (
            json!({"persistent": {"cluster.remote.x.colour": "blue"}}),
            "not recognized",
        ),
        (json!({"persistent": {"indices.nope": 1}}), "not recognized"),
        (json!({"sometimes": {}}), "unknown field [sometimes]"),
    ] {
        let refused = client.put("/_cluster/settings", body.clone()).await;
        assert_eq!(refused.status, 400, "{body}: {}", refused.text);
        let got = refused.body["error"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(got.contains(reason), "{body}: {got}");
    }
    assert_eq!(
        client
            .get("/_cluster/settings?flat_settings=true")
            .await
            .body,
        flat.body
    );

    // A follow through an unreachable remote is a connection error, not a hang.
    let follow = client
        .put(
            "/copy/_ccr/follow",
            json!({"remote_cluster": "gone", "leader_index": "x"}),
        )
        .await;
    assert!(follow.status >= 400, "{}", follow.text);

    // Persistent settings survive a restart; transient ones do not.
    assert!(node.terminate());
    let node = TandemProcess::start_on("cluster-b", dir.path(), &address);
    let client = node.client();
    let after = client.get("/_cluster/settings?flat_settings=true").await;
    assert_eq!(
        after.body,
        json!({"persistent": {"cluster.remote.leader.seeds": [address]}, "transient": {}})
    );
    assert_eq!(
        client.get("/_remote/info").await.body["leader"]["connected"],
        true
    );

    // null deletes: a key, then a whole remote with a wildcard.
    let deleted = client
        .put(
            "/_cluster/settings",
            json!({"persistent": {"cluster.remote.leader.*": null}}),
        )
        .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert_eq!(
        client.get("/_cluster/settings").await.body,
        json!({"persistent": {}, "transient": {}})
    );
    assert_eq!(client.get("/_remote/info").await.body, json!({}));
}
