//! The `LeaderClient` conformance suite over HTTP: an `HttpLeaderClient` talking to a node
//! served in this process on a free loopback port (the same suite runs in process in
//! `tandem-recovery`).

use std::sync::Arc;

use tandem_node::config::NodeConfig;
use tandem_node::server::RunningNode;
use tandem_node::transport::HttpLeaderClient;
use tandem_recovery::conformance::LeaderFixture;

async fn http_leader() -> LeaderFixture {
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        data: dir.path().join("data"),
        http: "127.0.0.1:0".parse().unwrap(),
        name: "leader".to_string(),
    };
    let running = RunningNode::start(config).await.unwrap();
    let client = HttpLeaderClient::new(vec![running.address.to_string()]);
    LeaderFixture {
        indices: running.node.indices.clone(),
        reference: running.node.leader.clone(),
        client: Arc::new(client),
        guard: Box::new((running, dir)),
    }
}

tandem_recovery::leader_client_conformance!(http_leader);
