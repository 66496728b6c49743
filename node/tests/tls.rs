//! TLS on the HTTP port, with certificates made by `tandem certs`: two real `tandem` processes
//! started with `--tls-cert`, `--tls-key` and `--tls-ca` serve REST only over TLS and
//! replicate to each other over TLS (the follower verifies the leader's certificate and its
//! name); clients that do not trust the CA, dial a name the certificate does not hold, or speak
//! plain HTTP are refused, and the node goes on serving. Client certificates are asked for
//! when `tls.client_authentication` says so. curl, as the README shows it, reaches a secure
//! node with `--cacert` and a password.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::secure::{make_certs, tls_args, trusting};
use common::{wait_for_count, EsClient, TandemProcess};
use serde_json::json;
use tandem_transport::tls::{ClientAuthentication, TlsFiles};

fn start_tls(name: &str, dir: &Path, certs: &Path) -> TandemProcess {
    let args = tls_args(certs, name);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TandemProcess::start_with(name, &dir.join(name), "127.0.0.1:0", &args)
}

/// A request that must not get an answer; returns the error's chain of causes.
async fn refused(client: reqwest::Client, url: &str) -> String {
    let error = client
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect_err("the request must be refused");
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_replication_run_over_tls_only() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path(), &["leader", "follower"]);
    let leader = start_tls("leader", dir.path(), &certs);
    let follower = start_tls("follower", dir.path(), &certs);
    assert!(leader.url.starts_with("https://"), "{}", leader.url);
    let leader_client = EsClient::with_tls(&leader.url, trusting(&certs, None));
    let follower_client = EsClient::with_tls(&follower.url, trusting(&certs, None));

    let root = leader_client.get("/").await;
    assert_eq!(root.status, 200, "{}", root.text);
    assert_eq!(root.body["name"], "leader");

    // Plain HTTP to the TLS port gets no answer.
    tandem_transport::tls::install_default_provider();
    let plain = reqwest::Client::new();
    let error = refused(plain, &format!("http://{}/", leader.address())).await;
    assert!(!error.is_empty());
    // A client that does not trust the CA refuses the node's certificate.
    let other_dir = tempfile::tempdir().unwrap();
    let other_certs = make_certs(other_dir.path(), &["stranger"]);
    let stranger = reqwest::Client::builder()
        .use_preconfigured_tls(trusting(&other_certs, None))
        .build()
        .unwrap();
    let error = refused(stranger, &format!("{}/", leader.url)).await;
    assert!(error.contains("UnknownIssuer"), "{error}");
    // A name the certificate does not hold is refused, even with the right CA.
    let port = leader.address().rsplit(':').next().unwrap().to_string();
    let misnamed = reqwest::Client::builder()
        .use_preconfigured_tls(trusting(&certs, None))
        .resolve(
            "elsewhere.example",
            leader.address().parse().expect("socket address"),
        )
        .build()
        .unwrap();
    let error = refused(misnamed, &format!("https://elsewhere.example:{port}/")).await;
    assert!(error.contains("not valid for name"), "{error}");
    // The node goes on serving after all that.
    assert_eq!(leader_client.get("/").await.status, 200);

    // Replication over TLS: the follower dials `https://` and verifies the leader.
    let created = leader_client
        .put(
            "/logs",
            json!({"settings": {"index": {"number_of_shards": 1}}}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let mut ndjson = String::new();
    for n in 0..50 {
        ndjson.push_str(&format!(
            "{{\"index\":{{\"_id\":\"{n}\"}}}}\n{{\"n\":{n}}}\n"
        ));
    }
    let indexed = leader_client.bulk("/logs/_bulk?refresh=true", ndjson).await;
    assert_eq!(indexed.body["errors"], false, "{}", indexed.text);
    let remote = follower_client
        .put(
            "/_cluster/settings",
            json!({"persistent": {"cluster": {"remote": {"leader": {"seeds": [leader.address()]}}}}}),
        )
        .await;
    assert_eq!(remote.status, 200, "{}", remote.text);
    let followed = follower_client
        .put(
            "/logs-copy/_ccr/follow?wait_for_active_shards=1",
            json!({"remote_cluster": "leader", "leader_index": "logs"}),
        )
        .await;
    assert_eq!(followed.status, 200, "{}", followed.text);
    wait_for_count(&follower_client, "logs-copy", 50).await;
    let more = leader_client
        .put("/logs/_doc/late?refresh=true", json!({"n": 50}))
        .await;
    assert_eq!(more.status, 201, "{}", more.text);
    wait_for_count(&follower_client, "logs-copy", 51).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_asked_for_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path(), &["node", "client"]);
    for (mode, anonymous_served) in [
        (ClientAuthentication::Required, false),
        (ClientAuthentication::Optional, true),
    ] {
        let mut config = common::in_process_config(&format!("node-{mode:?}"), dir.path());
        config.tls = Some(TlsFiles {
            certificate: certs.join("node.crt"),
            key: certs.join("node.key"),
            certificate_authorities: vec![certs.join("ca.crt")],
            client_authentication: mode,
        });
        let node = tandem_node::server::RunningNode::start(config)
            .await
            .expect("start");
        let url = node.url();
        let with_certificate = EsClient::with_tls(&url, trusting(&certs, Some("client")));
        assert_eq!(with_certificate.get("/").await.status, 200, "{mode:?}");
        let anonymous = reqwest::Client::builder()
            .use_preconfigured_tls(trusting(&certs, None))
            .build()
            .unwrap();
        if anonymous_served {
            let answer = anonymous.get(format!("{url}/")).send().await.unwrap();
            assert_eq!(answer.status(), 200, "{mode:?}");
        } else {
            refused(anonymous, &format!("{url}/")).await;
        }
        node.stop().await;
    }
}

#[test]
fn a_node_refuses_to_start_with_unusable_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path(), &["node", "other"]);
    let garbage = dir.path().join("garbage.crt");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["--http", "127.0.0.1:0", "--data"])
            .arg(dir.path().join("data"))
            .args(args)
            .output()
            .expect("run tandem");
        assert!(!output.status.success(), "{args:?} started");
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    let path = |name: &str| certs.join(name).display().to_string();
    let stderr = run(&[
        "--tls-cert",
        &garbage.display().to_string(),
        "--tls-key",
        &path("node.key"),
    ]);
    assert!(stderr.contains("garbage.crt"), "{stderr}");
    // A key that is not the certificate's.
    let stderr = run(&[
        "--tls-cert",
        &path("node.crt"),
        "--tls-key",
        &path("other.key"),
    ]);
    assert!(stderr.contains("cannot be used together"), "{stderr}");
    let stderr = run(&["--tls-cert", &path("node.crt")]);
    assert!(stderr.contains("tls.key"), "{stderr}");
    let stderr = run(&[
        "--tls-cert",
        &path("node.crt"),
        "--tls-key",
        &path("node.key"),
        "--tls-client-auth",
        "required",
    ]);
    assert!(stderr.contains("certificate authorit"), "{stderr}");
}

/// Runs `curl` with `args`; returns its exit code and what it printed.
fn curl(args: &[&str]) -> (i32, String) {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl is needed by this test (apt-get install curl)");
    let mut text = String::from_utf8_lossy(&output.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_reaches_a_secure_node_with_the_ca_and_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let certs = make_certs(dir.path(), &["node"]);
    let mut args = tls_args(&certs, "node");
    args.push("--security".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let node = TandemProcess::start_with("node", &dir.path().join("node"), "127.0.0.1:0", &args);
    let password = node.elastic_password();
    let ca = certs.join("ca.crt").display().to_string();
    let port = node.address().rsplit(':').next().unwrap().to_string();
    let user = format!("elastic:{password}");
    for host in ["localhost", "127.0.0.1"] {
        let url = format!("https://{host}:{}/_security/_authenticate", port);
        let (code, text) = curl(&["--fail", "--cacert", &ca, "-u", &user, &url]);
        assert_eq!(code, 0, "{text}");
        let answer: serde_json::Value = serde_json::from_str(&text).expect(&text);
        assert_eq!(answer["username"], "elastic", "{text}");
    }
    let url = format!("https://localhost:{}/", port);
    // A wrong password: 401, with the challenge and Elasticsearch's body.
    let (code, text) = curl(&["--cacert", &ca, "-u", "elastic:wrong", "--include", &url]);
    assert_eq!(code, 0, "{text}");
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{text}"
    );
    assert!(text.contains("security_exception"), "{text}");
    // Without the CA, curl cannot verify the node's certificate (exit 60).
    let (code, text) = curl(&["-u", &user, &url]);
    assert_eq!(code, 60, "{text}");
    // Plain HTTP to the TLS port gets no HTTP answer.
    let (code, text) = curl(&["-u", &user, &format!("http://localhost:{}/", port)]);
    assert_ne!(code, 0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_refuses_a_leader_whose_certificate_does_not_name_its_address() {
    let dir = tempfile::tempdir().unwrap();
    // `tandem certs` names localhost, 127.0.0.1 and ::1; the leader listens on 127.0.0.2.
    let certs = make_certs(dir.path(), &["leader", "follower"]);
    let args = tls_args(&certs, "leader");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let leader =
        TandemProcess::start_with("leader", &dir.path().join("leader"), "127.0.0.2:0", &args);
    let follower = start_tls("follower", dir.path(), &certs);
    let follower_client = EsClient::with_tls(&follower.url, trusting(&certs, None));

    let remote = follower_client
        .put(
            "/_cluster/settings",
            json!({"persistent": {"cluster": {"remote": {"leader": {"seeds": [leader.address()]}}}}}),
        )
        .await;
    assert_eq!(remote.status, 200, "{}", remote.text);
    let info = follower_client.get("/_remote/info").await;
    assert_eq!(info.body["leader"]["connected"], false, "{}", info.text);
    let followed = follower_client
        .put(
            "/logs-copy/_ccr/follow?wait_for_active_shards=1",
            json!({"remote_cluster": "leader", "leader_index": "logs"}),
        )
        .await;
    assert_ne!(followed.status, 200, "{}", followed.text);
    assert!(
        followed.text.contains("not valid for name"),
        "{}",
        followed.text
    );
    assert_eq!(follower_client.get("/logs-copy").await.status, 404);
}
