//! `tandem demo`: Elastic's CCR tutorial, end to end, on this machine, with security on as
//! Elasticsearch 8 has it. Two nodes start in this process on free loopback ports (cluster
//! `cluster-a`, the leader, and `cluster-b`, the follower), each with its own data directory,
//! its own certificate from one CA (`tandem certs`), TLS on its HTTP port and security on, and
//! talk to each other over the HTTP transport exactly as two `tandem` processes would. Every
//! step is a REST request (as `elastic`, over TLS), printed as it is sent:
//!
//! 1. create `server-metrics` on A and index documents;
//! 2. A makes a cross-cluster API key for it, B stores it in its keystore and reloads; connect
//!    B to A (`_cluster/settings`), follow (`_ccr/follow`): remote recovery, then
//!    replication while A keeps indexing at a steady rate, with progress bars and lag;
//! 3. the link to A goes dark (the follower is paused) while A acknowledges writes B never
//!    receives: the asynchronous window of every disaster;
//! 4. fail over in one call (`_ccr/promote`): B's copy becomes writable, and the answer says
//!    where each shard stands (its recovery point); writes go to B;
//! 5. fail back without a copy (`_ccr/failback`): B makes a key for A, A's index rolls back
//!    to the point it shares with B, writes the operations B never received to its
//!    divergent files and follows B; the demo replays those writes on B with `_bulk`;
//! 6. check that both sides hold the same documents, every write included (the demo fails
//!    otherwise).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use crate::config::NodeConfig;
use crate::server::RunningNode;

/// Longest any wait of the demo may take before it gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// How often progress is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Documents per `_bulk` request of the steady writer.
const BATCH: u64 = 50;

/// What the demo does, and how much of it.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Documents indexed before following starts.
    pub initial_docs: u64,
    /// Documents indexed while the follower replicates.
    pub streamed_docs: u64,
    /// Documents per second of the steady writer.
    pub docs_per_second: u64,
    /// Documents written to cluster B after failover.
    pub failover_docs: u64,
    /// Documents cluster A acknowledges while its link to cluster B is down (never
    /// replicated; recovered from the divergent files at failback).
    pub unshipped_docs: u64,
    /// Where the two data directories go (a temporary directory, removed at the end, when
    /// `None`).
    pub data: Option<PathBuf>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            initial_docs: 2_000,
            streamed_docs: 3_000,
            docs_per_second: 1_000,
            failover_docs: 500,
            unshipped_docs: 200,
            data: None,
        }
    }
}

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// A node (or its scratch directory, or the demo's HTTP client) could not start.
    #[error("cannot start a node: {0}")]
    Start(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A request failed or was answered with an error.
    #[error("{request}: {reason}")]
    Request {
        /// The request, as printed.
        request: String,
        /// What went wrong.
        reason: String,
    },
    /// A step did not complete within [`STEP_TIMEOUT`].
    #[error("timed out: {0}")]
    Timeout(String),
    /// The two clusters do not hold the same documents.
    #[error("the clusters differ: {0}")]
    Diverged(String),
}

/// A REST client of one node that prints every request it sends.
#[derive(Clone)]
struct Cluster {
    name: &'static str,
    url: String,
    address: String,
    http: reqwest::Client,
    /// The `elastic` user's password.
    password: String,
    /// The node's data directory (its keystore).
    data: PathBuf,
}

impl Cluster {
    fn new(
        name: &'static str,
        node: &RunningNode,
        ca: &std::path::Path,
        password: String,
    ) -> Result<Cluster, DemoError> {
        tandem_transport::tls::install_default_provider();
        let tls = tandem_transport::tls::client_config(&[ca.to_path_buf()], None)
            .map_err(|error| DemoError::Start(error.into()))?;
        let http = reqwest::Client::builder()
            .timeout(STEP_TIMEOUT)
            .use_preconfigured_tls(tls)
            .build()
            .map_err(|error| DemoError::Start(error.into()))?;
        Ok(Cluster {
            name,
            url: node.url(),
            address: node.address.to_string(),
            http,
            password,
            data: node.node.config.data.clone(),
        })
    }

    /// Makes a cross-cluster API key on this cluster for `index` and stores it in
    /// `follower`'s keystore as the credentials of `alias`, then reloads them there (what
    /// `tandem keystore add cluster.remote.<alias>.credentials` and
    /// `POST /_nodes/reload_secure_settings` do).
    async fn grant_replication(
        &self,
        index: &str,
        follower: &Cluster,
        alias: &str,
    ) -> Result<(), DemoError> {
        let key = self
            .send(
                reqwest::Method::POST,
                "/_security/cross_cluster/api_key",
                Some(Body::Json(json!({
                    "name": format!("{}-replication", follower.name),
                    "access": {"replication": [{"names": [index]}]},
                }))),
                false,
            )
            .await?;
        let encoded = key["encoded"].as_str().unwrap_or_default().to_string();
        let setting = format!("cluster.remote.{alias}.credentials");
        println!("  {} tandem keystore add {setting}", follower.name);
        let data = follower.data.clone();
        tokio::task::spawn_blocking(move || {
            crate::security::keystore::Keystore::open(tandem_engine::storage::real(), &data)?
                .add(&setting, &encoded)
        })
        .await
        .map_err(|error| DemoError::Start(error.into()))?
        .map_err(|error| DemoError::Start(error.into()))?;
        follower.post("/_nodes/reload_secure_settings").await?;
        Ok(())
    }

    /// Sends a request; `quiet` ones (polls, bulk batches) are not printed.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Body>,
        quiet: bool,
    ) -> Result<Value, DemoError> {
        let line = format!("{} {method} {path}", self.name);
        if !quiet {
            println!("  {line}");
        }
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .basic_auth(crate::security::ELASTIC, Some(&self.password));
        match body {
            Some(Body::Json(value)) => request = request.json(&value),
            Some(Body::Ndjson(text)) => {
                request = request
                    .header("content-type", "application/x-ndjson")
                    .body(text)
            }
            None => {}
        }
        let failed = |reason: String| DemoError::Request {
            request: line.clone(),
            reason,
        };
        let response = request.send().await.map_err(|e| failed(e.to_string()))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| failed(e.to_string()))?;
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| failed(format!("{e}: {text}")))?
        };
        if !status.is_success() {
            return Err(failed(format!("{status}: {text}")));
        }
        Ok(value)
    }

    async fn get(&self, path: &str) -> Result<Value, DemoError> {
        self.send(reqwest::Method::GET, path, None, true).await
    }

    async fn put(&self, path: &str, body: Value) -> Result<Value, DemoError> {
        self.send(reqwest::Method::PUT, path, Some(Body::Json(body)), false)
            .await
    }

    async fn post(&self, path: &str) -> Result<Value, DemoError> {
        self.send(reqwest::Method::POST, path, None, false).await
    }

    async fn post_json(&self, path: &str, body: Value) -> Result<Value, DemoError> {
        self.send(reqwest::Method::POST, path, Some(Body::Json(body)), false)
            .await
    }

    /// Indexes documents `from..to` of the demo's series into `index`, in one `_bulk`.
    async fn bulk(&self, index: &str, from: u64, to: u64) -> Result<(), DemoError> {
        let mut ndjson = String::new();
        for n in from..to {
            ndjson.push_str(&json!({"index": {"_id": format!("m-{n}")}}).to_string());
            ndjson.push('\n');
            ndjson.push_str(&metric(n).to_string());
            ndjson.push('\n');
        }
        let answer = self
            .send(
                reqwest::Method::POST,
                &format!("/{index}/_bulk"),
                Some(Body::Ndjson(ndjson)),
                true,
            )
            .await?;
        if answer["errors"] != false {
            return Err(DemoError::Request {
                request: format!("{} POST /{index}/_bulk", self.name),
                reason: answer.to_string(),
            });
        }
        Ok(())
    }

    /// Every document of `index`, id -> source.
    async fn documents(&self, index: &str) -> Result<BTreeMap<String, Value>, DemoError> {
        self.send(
            reqwest::Method::POST,
            &format!("/{index}/_refresh"),
            None,
            true,
        )
        .await?;
        let answer = self
            .send(
                reqwest::Method::POST,
                &format!("/{index}/_search"),
                Some(Body::Json(
                    json!({"size": 10_000, "query": {"match_all": {}}}),
                )),
                true,
            )
            .await?;
        let hits = answer["hits"]["hits"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(hits
            .into_iter()
            .filter_map(|hit| Some((hit["_id"].as_str()?.to_string(), hit["_source"].clone())))
            .collect())
    }
}

enum Body {
    Json(Value),
    Ndjson(String),
}

/// Document `n` of the demo's series (the tutorial's `server-metrics` fields).
/// A `_bulk` body that replays, on `index`, the operations of a divergent file (one JSON
/// operation a line: `op_type`, `_id`, `_source`).
fn bulk_of_divergent(text: &str, index: &str) -> Result<String, DemoError> {
    let mut ndjson = String::new();
    for line in text.lines() {
        let op: Value = serde_json::from_str(line).map_err(|error| DemoError::Request {
            request: "reading a divergent operation".to_string(),
            reason: error.to_string(),
        })?;
        let id = &op["_id"];
        if op["op_type"] == "delete" {
            ndjson.push_str(&json!({"delete": {"_index": index, "_id": id}}).to_string());
        } else {
            ndjson.push_str(&json!({"index": {"_index": index, "_id": id}}).to_string());
            ndjson.push('\n');
            ndjson.push_str(&op["_source"].to_string());
        }
        ndjson.push('\n');
    }
    Ok(ndjson)
}

fn metric(n: u64) -> Value {
    const SERVICES: [&str; 3] = ["checkout", "search", "cart"];
    json!({
        "@timestamp": 1_796_000_000_000u64 + n * 1_000,
        "accept": n * 7 % 1_000,
        "deny": n % 13,
        "host": format!("web-{:02}", n % 8),
        "response": (n % 500) as f64 / 100.0,
        "service": SERVICES[(n % 3) as usize],
        "total": n * 7 % 1_000 + n % 13,
    })
}

/// The tutorial's index.
fn server_metrics() -> Value {
    json!({
        "settings": {"index": {"number_of_shards": 1, "number_of_replicas": 0}},
        "mappings": {"properties": {
            "@timestamp": {"type": "date"},
            "accept": {"type": "long"},
            "deny": {"type": "long"},
            "host": {"type": "keyword"},
            "response": {"type": "float"},
            "service": {"type": "keyword"},
            "total": {"type": "long"}
        }}
    })
}

fn bar(length: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(length);
    let style =
        ProgressStyle::with_template("  {prefix:<12} [{bar:40.cyan/blue}] {pos:>7}/{len:7} {msg}")
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(label.to_string());
    bar
}

fn step(title: &str) {
    println!("\n== {title}");
}

/// Waits for the remote recovery of `index` on `cluster`, showing bytes copied.
async fn watch_recovery(cluster: &Cluster, index: &str) -> Result<(), DemoError> {
    let progress = bar(0, "recovery");
    let started = Instant::now();
    loop {
        let answer = cluster.get(&format!("/{index}/_recovery")).await?;
        let shards = answer[index]["shards"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let total: u64 = shards
            .iter()
            .filter_map(|shard| shard["index"]["size"]["total_in_bytes"].as_u64())
            .sum();
        let recovered: u64 = shards
            .iter()
            .filter_map(|shard| shard["index"]["size"]["recovered_in_bytes"].as_u64())
            .sum();
        progress.set_length(total);
        progress.set_position(recovered);
        progress.set_message("bytes");
        if let Some(failed) = shards.iter().find(|shard| shard["stage"] == "FAILED") {
            progress.abandon();
            return Err(DemoError::Request {
                request: format!("{} GET /{index}/_recovery", cluster.name),
                reason: failed.to_string(),
            });
        }
        if !shards.is_empty() && shards.iter().all(|shard| shard["stage"] == "DONE") {
            progress.finish_with_message(format!("bytes, done in {:?}", started.elapsed()));
            println!(
                "  recovered {} files, {recovered} bytes from the leader's commit",
                shards
                    .iter()
                    .filter_map(|shard| shard["index"]["files"]["recovered"].as_u64())
                    .sum::<u64>()
            );
            return Ok(());
        }
        if started.elapsed() > STEP_TIMEOUT {
            progress.abandon();
            return Err(DemoError::Timeout(format!("recovery of [{index}]")));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Waits until the shard follow tasks of `index` run: they start once its recovery is done,
/// and until then `_ccr/stats` answers that there are none (as Elasticsearch's does).
async fn wait_for_follow_tasks(cluster: &Cluster, index: &str) -> Result<(), DemoError> {
    let started = Instant::now();
    loop {
        match cluster.get(&format!("/{index}/_ccr/stats")).await {
            Ok(_) => return Ok(()),
            Err(DemoError::Request { reason, .. })
                if reason.contains("resource_not_found_exception")
                    && started.elapsed() <= STEP_TIMEOUT =>
            {
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Follows the replication of `index` on `cluster` until `done` reports the writer finished
/// and the follower holds every operation; returns the largest lag seen, in operations.
async fn watch_replication(
    cluster: &Cluster,
    index: &str,
    done: &tokio::sync::watch::Receiver<bool>,
) -> Result<i64, DemoError> {
    let progress = bar(0, "replication");
    let started = Instant::now();
    let mut max_lag = 0i64;
    loop {
        let answer = cluster.get(&format!("/{index}/_ccr/stats")).await?;
        let shards = answer["indices"][0]["shards"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let leader: i64 = shards
            .iter()
            .filter_map(|shard| shard["leader_global_checkpoint"].as_i64())
            .map(|checkpoint| checkpoint + 1)
            .sum();
        let follower: i64 = shards
            .iter()
            .filter_map(|shard| shard["follower_global_checkpoint"].as_i64())
            .map(|checkpoint| checkpoint + 1)
            .sum();
        if let Some(fatal) = shards
            .iter()
            .find(|shard| !shard["fatal_exception"].is_null())
        {
            progress.abandon();
            return Err(DemoError::Request {
                request: format!("{} GET /{index}/_ccr/stats", cluster.name),
                reason: fatal["fatal_exception"].to_string(),
            });
        }
        let lag = leader - follower;
        max_lag = max_lag.max(lag);
        let since_read = shards
            .iter()
            .filter_map(|shard| shard["time_since_last_read_millis"].as_i64())
            .min()
            .unwrap_or(0);
        progress.set_length(leader.max(0) as u64);
        progress.set_position(follower.max(0) as u64);
        progress.set_message(format!(
            "ops, lag {lag:>5} ops, last read {since_read} ms ago"
        ));
        if *done.borrow() && !shards.is_empty() && lag == 0 {
            progress.finish_with_message(format!("ops, caught up (largest lag {max_lag} ops)"));
            return Ok(max_lag);
        }
        if started.elapsed() > STEP_TIMEOUT {
            progress.abandon();
            return Err(DemoError::Timeout(format!("replication of [{index}]")));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Waits until `follower` holds the same documents as `leader`; returns how many.
async fn same_documents(
    leader: (&Cluster, &str),
    follower: (&Cluster, &str),
) -> Result<usize, DemoError> {
    let started = Instant::now();
    loop {
        let expected = leader.0.documents(leader.1).await?;
        let got = follower.0.documents(follower.1).await?;
        if expected == got {
            return Ok(got.len());
        }
        if started.elapsed() > STEP_TIMEOUT {
            let missing = expected.keys().filter(|id| !got.contains_key(*id)).count();
            return Err(DemoError::Diverged(format!(
                "{}/{} has {} documents, {}/{} has {} ({missing} missing)",
                leader.0.name,
                leader.1,
                expected.len(),
                follower.0.name,
                follower.1,
                got.len()
            )));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Runs the demo (see the module documentation). Call inside a tokio runtime.
pub async fn run(options: DemoOptions) -> Result<(), DemoError> {
    let temporary;
    let data = match &options.data {
        Some(data) => data.clone(),
        None => {
            temporary = tempfile::tempdir().map_err(|error| DemoError::Start(error.into()))?;
            temporary.path().to_path_buf()
        }
    };
    step("Two clusters on loopback, with TLS and security");
    let certs = data.join("certs");
    let request = crate::certs::CertsRequest {
        out: certs.clone(),
        nodes: vec!["cluster-a".to_string(), "cluster-b".to_string()],
        dns: Vec::new(),
        ips: Vec::new(),
        days: crate::certs::DEFAULT_DAYS,
    };
    // A kept data directory from an earlier run has its certificates already.
    if !certs.join("cluster-a.crt").exists() {
        tokio::task::spawn_blocking(move || crate::certs::make(&request))
            .await
            .map_err(|error| DemoError::Start(error.into()))?
            .map_err(|error| DemoError::Start(error.into()))?;
    }
    println!(
        "  tandem certs --out {} --node cluster-a --node cluster-b",
        certs.display()
    );
    let ca = certs.join(crate::certs::CA_CERTIFICATE);
    let start = |name: &str| {
        RunningNode::start(NodeConfig {
            data: data.join(name),
            http: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            name: name.to_string(),
            indexing_buffer_bytes: crate::config::default_indexing_buffer_bytes(),
            http_limits: crate::http::HttpLimits::default(),
            tls: Some(tandem_transport::tls::TlsFiles {
                certificate: certs.join(format!("{name}.crt")),
                key: certs.join(format!("{name}.key")),
                certificate_authorities: vec![ca.clone()],
                client_authentication: tandem_transport::tls::ClientAuthentication::None,
            }),
            security: true,
            insecure: false,
        })
    };
    let node_a = start("cluster-a")
        .await
        .map_err(|error| DemoError::Start(error.into()))?;
    let node_b = start("cluster-b")
        .await
        .map_err(|error| DemoError::Start(error.into()))?;
    let a = Cluster::new("cluster-a", &node_a, &ca, elastic_password(&node_a)?)?;
    let b = Cluster::new("cluster-b", &node_b, &ca, elastic_password(&node_b)?)?;
    println!("  cluster-a (leader)   {} (user elastic)", a.url);
    println!("  cluster-b (follower) {} (user elastic)", b.url);
    let outcome = scenario(&a, &b, &options).await;
    node_b.stop().await;
    node_a.stop().await;
    outcome
}

/// The `elastic` password of a node the demo started: generated at its first start, or
/// `ELASTIC_PASSWORD`'s; a kept data directory from an earlier run needs `ELASTIC_PASSWORD`.
fn elastic_password(node: &RunningNode) -> Result<String, DemoError> {
    match node.node.take_bootstrap_password() {
        Some(crate::security::Bootstrap::Generated(password)) => Ok(password),
        _ => std::env::var(crate::security::ELASTIC_PASSWORD_ENV).map_err(|_| {
            DemoError::Start(
                format!(
                    "the [elastic] password of [{}] is not known: set {}",
                    node.node.config.name,
                    crate::security::ELASTIC_PASSWORD_ENV
                )
                .into(),
            )
        }),
    }
}

async fn scenario(a: &Cluster, b: &Cluster, options: &DemoOptions) -> Result<(), DemoError> {
    step("The leader index");
    a.put("/server-metrics", server_metrics()).await?;
    let initial = bar(options.initial_docs, "indexing");
    let mut next = 0;
    while next < options.initial_docs {
        let to = (next + 500).min(options.initial_docs);
        a.bulk("server-metrics", next, to).await?;
        initial.set_position(to);
        next = to;
    }
    initial.finish();
    a.post("/server-metrics/_flush").await?;
    println!("  {} documents on cluster-a", options.initial_docs);

    step("Connect cluster-b to cluster-a with a cross-cluster API key, and follow");
    a.grant_replication("server-metrics", b, "leader").await?;
    b.put(
        "/_cluster/settings",
        json!({"persistent": {"cluster": {"remote": {"leader": {"seeds": [a.address]}}}}}),
    )
    .await?;
    let info = b.get("/_remote/info").await?;
    println!(
        "  remote cluster [leader] connected: {}",
        info["leader"]["connected"]
    );

    // A steady writer keeps the leader busy while the follower recovers and replicates.
    let (done_sender, done) = tokio::sync::watch::channel(false);
    let writer = {
        let a = a.clone();
        let (first, count, rate) = (
            options.initial_docs,
            options.streamed_docs,
            options.docs_per_second.max(1),
        );
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_micros(BATCH * 1_000_000 / rate));
            let mut next = first;
            while next < first + count {
                ticker.tick().await;
                let to = (next + BATCH).min(first + count);
                a.bulk("server-metrics", next, to).await?;
                next = to;
            }
            let _ = done_sender.send(true);
            Ok::<(), DemoError>(())
        })
    };
    b.put(
        "/server-metrics-follower/_ccr/follow?wait_for_active_shards=0",
        json!({"remote_cluster": "leader", "leader_index": "server-metrics"}),
    )
    .await?;
    watch_recovery(b, "server-metrics-follower").await?;
    wait_for_follow_tasks(b, "server-metrics-follower").await?;
    println!(
        "  cluster-a indexes {} more documents at {} docs/s while cluster-b follows",
        options.streamed_docs, options.docs_per_second
    );
    let max_lag = watch_replication(b, "server-metrics-follower", &done).await;
    let written = writer
        .await
        .map_err(|error| DemoError::Start(error.into()))?;
    written?;
    println!(
        "  replicated while indexing; the follower was at most {} operations behind",
        max_lag?
    );
    let count = same_documents((a, "server-metrics"), (b, "server-metrics-follower")).await?;
    println!("  cluster-b holds the leader's {count} documents");

    step("The link to cluster-a goes dark; cluster-a acknowledges writes cluster-b never gets");
    b.post("/server-metrics-follower/_ccr/pause_follow").await?;
    let first = options.initial_docs + options.streamed_docs;
    let unshipped = first + options.failover_docs;
    a.bulk(
        "server-metrics",
        unshipped,
        unshipped + options.unshipped_docs,
    )
    .await?;
    println!(
        "  {} documents acknowledged by cluster-a only, then cluster-a is lost",
        options.unshipped_docs
    );

    step("Fail over in one call: cluster-b's copy is promoted and takes the writes");
    let promoted = b.post("/server-metrics-follower/_ccr/promote").await?;
    for shard in promoted["shards"].as_array().into_iter().flatten() {
        println!(
            "  shard {}: recovery point seq_no {} (max_seq_no {}; the leader was last seen at {})",
            shard["shard"],
            shard["local_checkpoint"],
            shard["max_seq_no"],
            shard["leader_max_seq_no"]
        );
    }
    b.bulk(
        "server-metrics-follower",
        first,
        first + options.failover_docs,
    )
    .await?;
    println!(
        "  {} new documents written to cluster-b",
        options.failover_docs
    );

    step("Fail back without a copy: cluster-a's index follows cluster-b from the shared point");
    b.grant_replication("server-metrics-follower", a, "cluster-b")
        .await?;
    a.put(
        "/_cluster/settings",
        json!({"persistent": {"cluster": {"remote": {"cluster-b": {"seeds": [b.address]}}}}}),
    )
    .await?;
    let failed_back = a
        .post_json(
            "/server-metrics/_ccr/failback",
            json!({"remote_cluster": "cluster-b", "leader_index": "server-metrics-follower"}),
        )
        .await?;
    let mut replay = String::new();
    for shard in failed_back["shards"].as_array().into_iter().flatten() {
        println!(
            "  shard {}: shared up to seq_no {}, {} operations rolled back, {} never reached cluster-b",
            shard["shard"],
            shard["shared_seq_no"],
            shard["rolled_back_operations"],
            shard["divergent_operations"]
        );
        let Some(file) = shard["divergent_file"].as_str() else {
            continue;
        };
        println!("    written to {file}");
        let text = std::fs::read_to_string(file).map_err(|error| DemoError::Request {
            request: format!("reading {file}"),
            reason: error.to_string(),
        })?;
        replay.push_str(&bulk_of_divergent(&text, "server-metrics-follower")?);
    }

    step("Replay the writes cluster-b never received, with _bulk on cluster-b");
    println!("  cluster-b POST /_bulk (the divergent operations)");
    let answer = b
        .send(
            reqwest::Method::POST,
            "/_bulk",
            Some(Body::Ndjson(replay)),
            true,
        )
        .await?;
    if answer["errors"] != false {
        return Err(DemoError::Request {
            request: "cluster-b POST /_bulk".to_string(),
            reason: answer.to_string(),
        });
    }

    step("Check");
    let count = same_documents((b, "server-metrics-follower"), (a, "server-metrics")).await?;
    let expected = first + options.failover_docs + options.unshipped_docs;
    if count as u64 != expected {
        return Err(DemoError::Diverged(format!(
            "{count} documents on each side, {expected} written"
        )));
    }
    println!("  both clusters hold the same {count} documents");
    Ok(())
}
