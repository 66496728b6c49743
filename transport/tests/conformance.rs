//! The `LeaderClient` conformance suite over HTTP: an `HttpLeaderClient` talking to
//! [`tandem_transport::router`] served in this process on a free loopback port (the same
//! suite runs in process in `tandem-recovery`).

mod common;

use std::sync::Arc;

use common::LeaderServer;
use tandem_recovery::conformance::LeaderFixture;
use tandem_transport::HttpLeaderClient;

async fn http_leader() -> LeaderFixture {
    let dir = tempfile::tempdir().unwrap();
    let server = LeaderServer::start(&dir.path().join("data")).await;
    let client = HttpLeaderClient::new(vec![server.address.to_string()]);
    LeaderFixture {
        indices: server.indices.clone(),
        reference: server.leader.clone(),
        client: Arc::new(client),
        guard: Box::new((server, dir)),
    }
}

tandem_recovery::leader_client_conformance!(http_leader);
