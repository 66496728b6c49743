//! Authentication with users, on a real `tandem` process started with `--security`: the first
//! start creates `elastic` and prints its password once; every request without valid Basic
//! credentials is a 401 in Elasticsearch's shape; users are managed through
//! `/_security/user` and through `tandem users` while the node runs; passwords never reach
//! the disk in clear.

mod common;

use std::path::Path;
use std::process::Command;

use common::{EsClient, TandemProcess};
use serde_json::json;

fn start(dir: &Path) -> TandemProcess {
    TandemProcess::start_with("secure", &dir.join("data"), "127.0.0.1:0", &["--security"])
}

fn users_cli(data: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .arg("users")
        .args(args)
        .arg("--data")
        .arg(data)
        .output()
        .expect("run tandem users");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_authenticate_and_are_managed_over_rest_and_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start(dir.path());
    let password = node.elastic_password();
    let anonymous = node.client();

    // No credentials: 401, the challenge, Elasticsearch's body.
    let refused = anonymous.get("/").await;
    assert_eq!(refused.status, 401, "{}", refused.text);
    let challenges: Vec<&str> = refused
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect();
    assert!(
        challenges
            .iter()
            .any(|c| c.starts_with("Basic realm=\"security\"")),
        "{challenges:?}"
    );
    assert_eq!(refused.body["error"]["type"], "security_exception");
    assert_eq!(
        refused.body["error"]["reason"],
        "missing authentication credentials for REST request [/]"
    );
    assert_eq!(refused.body["status"], 401);
    // Nothing is served without credentials, the transport included.
    for path in ["/_cat/indices", "/_cluster/health"] {
        assert_eq!(anonymous.get(path).await.status, 401, "{path}");
    }
    let transport = anonymous
        .post(tandem_transport::server::LIST_INDICES_PATH, json!({}))
        .await;
    assert_eq!(transport.status, 401, "{}", transport.text);

    let elastic = anonymous.with_basic("elastic", &password);
    let root = elastic.get("/").await;
    assert_eq!(root.status, 200, "{}", root.text);
    let me = elastic.get("/_security/_authenticate").await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["username"], "elastic");
    assert_eq!(me.body["roles"], json!(["superuser"]));
    assert_eq!(me.body["authentication_type"], "realm");

    let wrong = anonymous
        .with_basic("elastic", "not-the-password")
        .get("/")
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(
        wrong.body["error"]["reason"],
        "unable to authenticate user [elastic] for REST request [/]"
    );
    assert!(!wrong.text.contains("not-the-password"));

    // A user made over REST.
    let created = elastic
        .put(
            "/_security/user/ops",
            json!({"password": "ops-password-1", "roles": ["viewer"], "full_name": "Ops"}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    assert_eq!(created.body["created"], true);
    let ops = anonymous.with_basic("ops", "ops-password-1");
    let me = ops.get("/_security/_authenticate").await;
    assert_eq!(me.body["roles"], json!(["viewer"]), "{}", me.text);
    assert_eq!(me.body["full_name"], "Ops");
    // Without manage_security, in Elasticsearch's words.
    let forbidden = ops
        .put(
            "/_security/user/other",
            json!({"password": "other-password"}),
        )
        .await;
    assert_eq!(forbidden.status, 403, "{}", forbidden.text);
    assert_eq!(
        forbidden.body["error"]["reason"],
        "action [cluster:admin/xpack/security/user/put] is unauthorized for user [ops] with effective roles [viewer], this action is granted by the cluster privileges [manage_security,all]"
    );
    // Users change their own password.
    let changed = ops
        .post(
            "/_security/user/_password",
            json!({"password": "ops-password-2"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    assert_eq!(ops.get("/").await.status, 401);
    let ops = anonymous.with_basic("ops", "ops-password-2");
    assert_eq!(ops.get("/").await.status, 200);
    let short = elastic
        .put("/_security/user/tiny", json!({"password": "12345"}))
        .await;
    assert_eq!(short.status, 400, "{}", short.text);
    let listed = elastic.get("/_security/user").await;
    assert_eq!(
        listed.body["ops"]["roles"],
        json!(["viewer"]),
        "{}",
        listed.text
    );
    assert!(listed.body["ops"].get("password_hash").is_none());
    let disabled = elastic.put("/_security/user/ops/_disable", json!({})).await;
    assert_eq!(disabled.status, 200, "{}", disabled.text);
    assert_eq!(ops.get("/").await.status, 401);
    elastic.put("/_security/user/ops/_enable", json!({})).await;
    assert_eq!(ops.get("/").await.status, 200);
    let missing = elastic.get("/_security/user/nobody").await;
    assert_eq!(missing.status, 404);
    let reserved = elastic.delete("/_security/user/elastic").await;
    assert_eq!(reserved.status, 400, "{}", reserved.text);

    // `tandem users` on the running node's data directory: seen at the next request.
    let data = dir.path().join("data");
    let (added, text) = users_cli(
        &data,
        &["add", "batch", "-p", "batch-password", "-r", "superuser"],
    );
    assert!(added, "{text}");
    let batch = anonymous.with_basic("batch", "batch-password");
    assert_eq!(batch.get("/").await.status, 200);
    let (changed, text) = users_cli(&data, &["passwd", "batch", "-p", "batch-password-2"]);
    assert!(changed, "{text}");
    assert_eq!(batch.get("/").await.status, 401);
    assert_eq!(
        anonymous
            .with_basic("batch", "batch-password-2")
            .get("/")
            .await
            .status,
        200
    );
    let (duplicate, text) = users_cli(&data, &["add", "batch", "-p", "whatever-1"]);
    assert!(!duplicate && text.contains("already exists"), "{text}");
    let (removed, text) = users_cli(&data, &["remove", "batch"]);
    assert!(removed, "{text}");
    assert_eq!(
        anonymous
            .with_basic("batch", "batch-password-2")
            .get("/")
            .await
            .status,
        401
    );
    let deleted = elastic.delete("/_security/user/ops").await;
    assert_eq!(deleted.body["found"], true, "{}", deleted.text);
    assert_eq!(ops.get("/").await.status, 401);

    // No password in clear anywhere in the data directory.
    for entry in walk(&data) {
        let bytes = std::fs::read(&entry).unwrap();
        for secret in [password.as_str(), "ops-password-2", "batch-password-2"] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds a password",
                entry.display()
            );
        }
    }

    // A restart does not make (or print) a new password.
    assert!(node.terminate());
    drop(node);
    let node = start(dir.path());
    let client = node.client().with_basic("elastic", &password);
    assert_eq!(client.get("/").await.status, 200);
    assert!(
        !node
            .stdout_lines()
            .iter()
            .any(|line| line.contains("created the [elastic] superuser")),
        "{:?}",
        node.stdout_lines()
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().map_while(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_off_answers_the_security_api_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let node = TandemProcess::start("plain", &dir.path().join("data"));
    let client: EsClient = node.client();
    assert_eq!(client.get("/").await.status, 200);
    let answer = client.get("/_security/_authenticate").await;
    assert_eq!(
        answer.body["error"]["type"], "security_exception",
        "{}",
        answer.text
    );
    assert!(answer.text.contains("--security"), "{}", answer.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_authenticate_until_they_expire_or_are_invalidated() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path());
    let password = node.elastic_password();
    let anonymous = node.client();
    let elastic = anonymous.with_basic("elastic", &password);
    let role = elastic
        .put(
            "/_security/role/key_maker",
            json!({"cluster": ["manage_own_api_key"]}),
        )
        .await;
    assert_eq!(role.status, 200, "{}", role.text);
    let created = elastic
        .put(
            "/_security/user/ops",
            json!({"password": "ops-password", "roles": ["viewer", "key_maker"]}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let ops = anonymous.with_basic("ops", "ops-password");

    let key = ops
        .post(
            "/_security/api_key",
            json!({"name": "ingest", "metadata": {"team": "a"}}),
        )
        .await;
    assert_eq!(key.status, 200, "{}", key.text);
    let id = key.body["id"].as_str().unwrap().to_string();
    let encoded = key.body["encoded"].as_str().unwrap().to_string();
    let secret = key.body["api_key"].as_str().unwrap().to_string();
    let by_key = anonymous.with_authorization(&format!("ApiKey {encoded}"));
    let me = by_key.get("/_security/_authenticate").await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(me.body["username"], "ops");
    assert_eq!(me.body["authentication_type"], "api_key");
    assert_eq!(me.body["api_key"]["id"], id.as_str());
    assert_eq!(me.body["roles"], json!(["viewer", "key_maker"]));
    // An API key does not make API keys.
    let derived = by_key
        .post("/_security/api_key", json!({"name": "derived"}))
        .await;
    assert_eq!(derived.status, 400, "{}", derived.text);

    // A key that expires.
    let short = ops
        .post(
            "/_security/api_key",
            json!({"name": "short", "expiration": "1s"}),
        )
        .await;
    assert!(
        short.body["expiration"].as_u64().is_some(),
        "{}",
        short.text
    );
    let short_client = anonymous.with_authorization(&format!(
        "ApiKey {}",
        short.body["encoded"].as_str().unwrap()
    ));
    assert_eq!(short_client.get("/").await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1_200)).await;
    let expired = short_client.get("/").await;
    assert_eq!(expired.status, 401, "{}", expired.text);

    // Listing: a user sees its own keys, the superuser every key.
    let other = elastic
        .post("/_security/api_key", json!({"name": "elastic-key"}))
        .await;
    assert_eq!(other.status, 200, "{}", other.text);
    let mine = ops.get("/_security/api_key").await;
    let names: Vec<&str> = mine.body["api_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{}", mine.text);
    assert!(!names.contains(&"elastic-key"), "{names:?}");
    let all = elastic.get("/_security/api_key").await;
    assert_eq!(
        all.body["api_keys"].as_array().unwrap().len(),
        3,
        "{}",
        all.text
    );
    let one = elastic.get(&format!("/_security/api_key?id={id}")).await;
    assert_eq!(
        one.body["api_keys"][0]["metadata"]["team"], "a",
        "{}",
        one.text
    );
    assert!(one.body["api_keys"][0].get("key_hash").is_none());

    // Invalidation ends it at the next request.
    let invalidated = ops
        .delete_with_body("/_security/api_key", json!({"ids": [id.clone()]}))
        .await;
    assert_eq!(
        invalidated.body["invalidated_api_keys"],
        json!([id.clone()]),
        "{}",
        invalidated.text
    );
    let refused = by_key.get("/").await;
    assert_eq!(refused.status, 401, "{}", refused.text);
    assert_eq!(refused.body["error"]["type"], "security_exception");
    let again = ops
        .delete_with_body("/_security/api_key", json!({"ids": [id.clone()]}))
        .await;
    assert_eq!(
        again.body["previously_invalidated_api_keys"],
        json!([id]),
        "{}",
        again.text
    );
    // ops cannot invalidate elastic's key.
    let foreign = ops
        .delete_with_body("/_security/api_key", json!({"name": "elastic-key"}))
        .await;
    assert_eq!(
        foreign.body["invalidated_api_keys"],
        json!([]),
        "{}",
        foreign.text
    );

    for entry in walk(&dir.path().join("data")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds an API key secret",
            entry.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_are_rate_limited_per_address_and_audited() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args([
            "--name",
            "audited",
            "--http",
            "127.0.0.1:0",
            "--security",
            "--data",
        ])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .env("ELASTIC_PASSWORD", "elastic-password")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let url = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            line.strip_prefix(tandem_node::server::LISTENING_PREFIX)
                .map(|address| format!("http://{address}"))
        })
        .expect("the node listens");
    let stderr = child.stderr.take().unwrap();
    let (lines_sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_sender.send(line);
        }
    });
    let client = EsClient::new(&url);
    let guesser = client.with_basic("elastic", "guess-password");
    for attempt in 0..tandem_node::security::MAX_FAILED_AUTHENTICATIONS {
        let answer = guesser.get("/").await;
        assert_eq!(answer.status, 401, "attempt {attempt}: {}", answer.text);
    }
    let limited = guesser.get("/").await;
    assert_eq!(limited.status, 429, "{}", limited.text);
    assert!(limited.headers.get("retry-after").is_some());
    // Blocked before the credentials are looked at: the right password waits too.
    let right = client
        .with_basic("elastic", "elastic-password")
        .get("/")
        .await;
    assert_eq!(right.status, 429, "{}", right.text);
    let _ = child.kill();
    let _ = child.wait();
    let printed: Vec<String> = lines.try_iter().collect();
    let audit: Vec<&String> = printed
        .iter()
        .filter(|line| line.contains("authentication_failed"))
        .collect();
    assert!(!audit.is_empty(), "no audit line in {printed:?}");
    assert!(audit[0].contains("127.0.0.1"), "{}", audit[0]);
    assert!(audit[0].contains("elastic"), "{}", audit[0]);
    assert!(audit[0].contains("GET /"), "{}", audit[0]);
    assert!(
        !printed.iter().any(|line| line.contains("guess-password")),
        "a secret reached the log"
    );
}
