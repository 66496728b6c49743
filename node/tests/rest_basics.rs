//! The REST conventions every endpoint shares, against a real `tandem` process.

mod common;

use common::TandemProcess;

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
