//! Test support: real `tandem` processes on free loopback ports, and a small JSON client.

#![allow(dead_code)]

pub mod secure;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use tandem_node::server::{LISTENING_PREFIX, LISTENING_TLS_PREFIX};

/// How long a node may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A `tandem` child process. Killed (SIGKILL) when dropped.
pub struct TandemProcess {
    pub name: String,
    pub data: PathBuf,
    pub url: String,
    child: Child,
    /// Every line the process printed on stdout so far.
    stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl TandemProcess {
    /// Starts a node called `name` on `data`, on a free port.
    pub fn start(name: &str, data: &Path) -> TandemProcess {
        TandemProcess::start_on(name, data, "127.0.0.1:0")
    }

    /// Starts a node on a given address (a restart keeps its port, so followers' remote
    /// cluster settings stay valid).
    pub fn start_on(name: &str, data: &Path, http: &str) -> TandemProcess {
        TandemProcess::start_with(name, data, http, &[])
    }

    /// Starts a node with extra command-line arguments (`--tls-cert`, ...).
    pub fn start_with(name: &str, data: &Path, http: &str, args: &[&str]) -> TandemProcess {
        TandemProcess::start_with_env(name, data, http, args, &[])
    }

    /// Starts a node with extra command-line arguments and environment variables.
    pub fn start_with_env(
        name: &str,
        data: &Path,
        http: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> TandemProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["--name", name, "--http", http, "--data"])
            .arg(data)
            .args(args)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn tandem");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, receiver) = mpsc::channel();
        let printed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = printed.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line.clone());
                if let Some(address) = line.strip_prefix(LISTENING_PREFIX) {
                    let _ = sender.send(format!("http://{address}"));
                } else if let Some(address) = line.strip_prefix(LISTENING_TLS_PREFIX) {
                    let _ = sender.send(format!("https://{address}"));
                }
            }
        });
        let url = match receiver.recv_timeout(START_TIMEOUT) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("tandem [{name}] did not start listening within {START_TIMEOUT:?}");
            }
        };
        TandemProcess {
            name: name.to_string(),
            data: data.to_path_buf(),
            url,
            child,
            stdout: printed,
        }
    }

    /// The lines printed on stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// The `elastic` password a `--security` node printed at its first start (waits up to 5 s
    /// for the line).
    pub fn elastic_password(&self) -> String {
        for _ in 0..200 {
            let lines = self.stdout_lines();
            if let Some(at) = lines.iter().position(|line| {
                line.starts_with("tandem security: created the [elastic] superuser")
            }) {
                if let Some(password) = lines[at + 1..]
                    .iter()
                    .map(|line| line.trim())
                    .find(|line| !line.is_empty())
                {
                    return password.to_string();
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("no password printed: {:?}", self.stdout_lines());
    }

    /// The process id of the `tandem` child.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The `host:port` it listens on.
    pub fn address(&self) -> &str {
        self.url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait (bounded) for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        for _ in 0..600 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
        false
    }

    /// A client of this node.
    pub fn client(&self) -> EsClient {
        EsClient::new(&self.url)
    }
}

impl Drop for TandemProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A JSON-over-HTTP client that returns the status and the parsed body.
#[derive(Clone)]
pub struct EsClient {
    base: String,
    http: reqwest::Client,
    /// The `Authorization` header every request carries, if any.
    authorization: Option<String>,
}

/// An answer: status, headers, and the body as JSON (`Value::Null` if empty or not JSON; the
/// raw text in `text`).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl EsClient {
    pub fn new(base: &str) -> EsClient {
        tandem_transport::tls::install_default_provider();
        EsClient {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("client"),
            authorization: None,
        }
    }

    /// A client over TLS with `config` (its trusted CAs, and its certificate if any).
    pub fn with_tls(base: &str, config: rustls::ClientConfig) -> EsClient {
        EsClient {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .use_preconfigured_tls(config)
                .build()
                .expect("client"),
            authorization: None,
        }
    }

    /// The same client, sending `user:password` as Basic credentials.
    pub fn with_basic(&self, user: &str, password: &str) -> EsClient {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        EsClient {
            authorization: Some(format!("Basic {token}")),
            ..self.clone()
        }
    }

    /// The same client, sending `value` as the `Authorization` header.
    pub fn with_authorization(&self, value: &str) -> EsClient {
        EsClient {
            authorization: Some(value.to_string()),
            ..self.clone()
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Answer {
        self.try_send(method, path, body).await.expect("request")
    }

    /// [`EsClient::send`] that returns a failed request (the node went away) instead of
    /// panicking.
    pub async fn try_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<Answer, reqwest::Error> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(authorization) = &self.authorization {
            request = request.header("authorization", authorization);
        }
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Answer {
            status,
            headers,
            body,
            text,
        })
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(reqwest::Method::DELETE, path, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.send(
            reqwest::Method::PUT,
            path,
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(
            reqwest::Method::POST,
            path,
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await
    }

    pub async fn delete_with_body(&self, path: &str, body: Value) -> Answer {
        self.send(
            reqwest::Method::DELETE,
            path,
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await
    }

    pub async fn post_empty(&self, path: &str) -> Answer {
        self.send(reqwest::Method::POST, path, None).await
    }

    pub async fn bulk(&self, path: &str, ndjson: String) -> Answer {
        self.send(
            reqwest::Method::POST,
            path,
            Some(("application/x-ndjson", ndjson.into_bytes())),
        )
        .await
    }
}

/// The configuration of a node on a free loopback port, its data in `dir/<name>`.
pub fn in_process_config(name: &str, dir: &Path) -> tandem_node::config::NodeConfig {
    tandem_node::config::NodeConfig {
        data: dir.join(name),
        http: "127.0.0.1:0".parse().expect("a loopback address"),
        name: name.to_string(),
        indexing_buffer_bytes: tandem_node::config::default_indexing_buffer_bytes(),
        http_limits: tandem_node::http::HttpLimits::default(),
        tls: None,
        security: false,
        insecure: false,
    }
}

/// A node in this process on a free loopback port, its data in `dir/<name>`.
pub async fn start_in_process(name: &str, dir: &Path) -> tandem_node::server::RunningNode {
    tandem_node::server::RunningNode::start(in_process_config(name, dir))
        .await
        .expect("starting an in-process node")
}

/// Two nodes in this process, `leader` and `follower`, with their clients; the follower
/// reaches the leader as remote cluster `leader` through the leader's in-process client.
pub struct InProcessPair {
    pub leader: tandem_node::server::RunningNode,
    pub follower: tandem_node::server::RunningNode,
    pub leader_client: EsClient,
    pub follower_client: EsClient,
}

/// Starts an [`InProcessPair`] with its data under `dir`.
pub async fn in_process_pair(dir: &Path) -> InProcessPair {
    let leader = start_in_process("leader", dir).await;
    let follower = start_in_process("follower", dir).await;
    follower
        .node
        .remotes
        .set("leader", std::sync::Arc::new(leader.node.leader.clone()));
    let (leader_client, follower_client) =
        (EsClient::new(&leader.url()), EsClient::new(&follower.url()));
    InProcessPair {
        leader,
        follower,
        leader_client,
        follower_client,
    }
}

/// How long replication may take to show a result in [`wait_for_count`].
pub const CONVERGE_WITHIN: Duration = Duration::from_secs(60);

/// Refreshes `index` and counts its documents until there are `expected`; panics after
/// [`CONVERGE_WITHIN`].
pub async fn wait_for_count(client: &EsClient, index: &str, expected: u64) {
    let started = std::time::Instant::now();
    loop {
        client.post_empty(&format!("/{index}/_refresh")).await;
        let count = client.get(&format!("/{index}/_count")).await;
        if count.body["count"] == expected {
            return;
        }
        assert!(
            started.elapsed() < CONVERGE_WITHIN,
            "[{index}] has {}, expected {expected}",
            count.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every document of `index` (refreshed first), id -> source.
pub async fn documents(
    client: &EsClient,
    index: &str,
) -> std::collections::BTreeMap<String, Value> {
    let refreshed = client.post_empty(&format!("/{index}/_refresh")).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    let answer = client
        .post(
            &format!("/{index}/_search"),
            serde_json::json!({"size": 10_000, "query": {"match_all": {}}}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.body["hits"]["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|hit| {
            (
                hit["_id"].as_str().expect("an _id").to_string(),
                hit["_source"].clone(),
            )
        })
        .collect()
}

/// Waits (up to `within`) until `follower` holds the same documents as `leader`, each an
/// (client, index) pair; returns how many.
pub async fn converge(
    leader: (&EsClient, &str),
    follower: (&EsClient, &str),
    within: Duration,
) -> usize {
    let started = std::time::Instant::now();
    loop {
        let expected = documents(leader.0, leader.1).await;
        let got = documents(follower.0, follower.1).await;
        if expected == got {
            return got.len();
        }
        assert!(
            started.elapsed() < within,
            "[{}] has {} documents, [{}] has {}",
            follower.1,
            got.len(),
            leader.1,
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates `index` with `shards` shards and indexes `{"n": n}` under id `n` for each of `ids`;
/// panics on any refusal.
pub async fn create_with_documents(
    client: &EsClient,
    index: &str,
    shards: u32,
    ids: std::ops::Range<u64>,
) {
    let created = client
        .put(
            &format!("/{index}"),
            serde_json::json!({"settings": {"number_of_shards": shards}}),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text);
    for n in ids {
        let put = client
            .put(&format!("/{index}/_doc/{n}"), serde_json::json!({"n": n}))
            .await;
        assert_eq!(put.status, 201, "{}", put.text);
    }
}

/// Makes `follower_index` follow `leader_index` of remote cluster `leader`, waiting for its
/// shards; panics if the follow is refused.
pub async fn follow(client: &EsClient, follower_index: &str, leader_index: &str) {
    let follow = client
        .put(
            &format!("/{follower_index}/_ccr/follow?wait_for_active_shards=1"),
            serde_json::json!({"remote_cluster": "leader", "leader_index": leader_index}),
        )
        .await;
    assert_eq!(follow.status, 200, "{}", follow.text);
}
