//! The `LeaderClient` conformance suite against the in-process client.

use tandem_recovery::conformance::LeaderFixture;

async fn in_process_leader() -> LeaderFixture {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    LeaderFixture::in_process(&data, Box::new(dir))
}

tandem_recovery::leader_client_conformance!(in_process_leader);
