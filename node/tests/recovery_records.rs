//! `/_recovery` forgets the recoveries of indices that no longer exist (issue 20 item 9),
//! whichever way the index went: a `DELETE`, or a removal that bypassed the follow state
//! (here the engine's own delete, as a delete that failed half-way leaves things).

mod common;

use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recoveries_of_deleted_indices_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let pair = common::in_process_pair(dir.path()).await;
    let (leader, follower) = (&pair.leader_client, &pair.follower_client);
    let created = leader
        .put("/logs", json!({"settings": {"number_of_shards": 2}}))
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(
        leader.put("/logs/_doc/1", json!({"n": 1})).await.status,
        201
    );
    for copy in ["copy-a", "copy-b"] {
        let follow = follower
            .put(
                &format!("/{copy}/_ccr/follow?wait_for_active_shards=1"),
                json!({"remote_cluster": "leader", "leader_index": "logs"}),
            )
            .await;
        assert_eq!(follow.status, 200, "{}", follow.text);
    }
    let all = follower.get("/_recovery").await;
    assert_eq!(all.status, 200, "{}", all.text);
    for copy in ["copy-a", "copy-b"] {
        assert_eq!(
            all.body[copy]["shards"].as_array().map(Vec::len),
            Some(2),
            "{}",
            all.text
        );
    }

    // A DELETE of the index.
    assert_eq!(follower.delete("/copy-a").await.status, 200);
    // An index removed without its follow state hearing of it.
    let paused = follower.post_empty("/copy-b/_ccr/pause_follow").await;
    assert_eq!(paused.status, 200, "{}", paused.text);
    pair.follower.node.indices.delete("copy-b").unwrap();

    let all = follower.get("/_recovery").await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(all.body, json!({}), "{}", all.text);
    for copy in ["copy-a", "copy-b"] {
        let one = follower.get(&format!("/{copy}/_recovery")).await;
        assert_eq!(one.status, 404, "{}", one.text);
        assert_eq!(one.body["error"]["type"], "index_not_found_exception");
    }
}
