//! What security costs a request: one node in this process, `GET /_cluster/health` sent by
//! eight concurrent clients over kept-alive connections, in three set-ups measured side by side
//! in the same process (the machine is shared and noisy; the ratios are the figures):
//!
//! - `plain`: HTTP, security off (the baseline);
//! - `tls_basic`: TLS (a certificate from `tandem certs`) and security on, `Authorization:
//!   Basic` for `elastic` (the argon2id verification is cached after the first request, so
//!   this is TLS, a SHA-256, the role check and the audit-free path);
//! - `tls_api_key`: the same with `Authorization: ApiKey` (a SHA-256 of the key per request).
//!
//! Also `argon2id_verify`: one uncached password verification (what a first request, or a
//! wrong password, costs the node; why failures are rate-limited per address).
//!
//! Run: `cargo bench -p tandem-benches --bench security_overhead`.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tandem_node::config::NodeConfig;
use tandem_node::server::RunningNode;

/// Requests per measured batch, spread over [`CLIENTS`].
const REQUESTS: usize = 2_000;
const CLIENTS: usize = 8;

struct Setup {
    url: String,
    http: reqwest::Client,
    authorization: Option<String>,
    /// The node, owned by the first set-up that uses it.
    node: Option<RunningNode>,
}

fn start(runtime: &tokio::runtime::Runtime, dir: &std::path::Path, secure: bool) -> RunningNode {
    let certs = dir.join("certs");
    let tls = secure.then(|| tandem_transport::tls::TlsFiles {
        certificate: certs.join("bench.crt"),
        key: certs.join("bench.key"),
        certificate_authorities: vec![certs.join("ca.crt")],
        client_authentication: tandem_transport::tls::ClientAuthentication::None,
    });
    let name = if secure { "secure" } else { "plain" };
    runtime
        .block_on(RunningNode::start(NodeConfig {
            data: dir.join(name),
            http: "127.0.0.1:0".parse().expect("an address"),
            name: name.to_string(),
            indexing_buffer_bytes: tandem_node::config::default_indexing_buffer_bytes(),
            http_limits: tandem_node::http::HttpLimits::default(),
            tls,
            security: secure,
            insecure: false,
        }))
        .expect("start the node")
}

fn client(ca: Option<&std::path::Path>) -> reqwest::Client {
    tandem_transport::tls::install_default_provider();
    let builder = reqwest::Client::builder().pool_max_idle_per_host(CLIENTS);
    let builder = match ca {
        Some(ca) => builder.use_preconfigured_tls(
            tandem_transport::tls::client_config(&[ca.to_path_buf()], None).expect("tls"),
        ),
        None => builder,
    };
    builder.build().expect("client")
}

fn run_batch(runtime: &tokio::runtime::Runtime, setup: &Setup) -> Duration {
    let started = Instant::now();
    runtime.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            let (http, url, authorization) = (
                setup.http.clone(),
                format!("{}/_cluster/health", setup.url),
                setup.authorization.clone(),
            );
            clients.push(tokio::spawn(async move {
                for _ in 0..REQUESTS / CLIENTS {
                    let mut request = http.get(&url);
                    if let Some(authorization) = &authorization {
                        request = request.header("authorization", authorization);
                    }
                    let answer = request.send().await.expect("request");
                    assert!(answer.status().is_success(), "{}", answer.status());
                    answer.bytes().await.expect("body");
                }
            }));
        }
        for client in clients {
            client.await.expect("client task");
        }
    });
    started.elapsed()
}

fn security_overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("scratch");
    tandem_node::certs::make(&tandem_node::certs::CertsRequest {
        out: dir.path().join("certs"),
        nodes: vec!["bench".to_string()],
        dns: Vec::new(),
        ips: Vec::new(),
        days: 30,
    })
    .expect("certificates");
    let ca = dir.path().join("certs").join("ca.crt");
    let plain_node = start(&runtime, dir.path(), false);
    let secure_node = start(&runtime, dir.path(), true);
    let password = match secure_node.node.take_bootstrap_password() {
        Some(tandem_node::security::Bootstrap::Generated(password)) => password,
        _ => std::env::var("ELASTIC_PASSWORD").expect("the elastic password"),
    };
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("elastic:{password}"))
    );
    let http = client(Some(&ca));
    let key = runtime.block_on(async {
        let answer = http
            .post(format!("{}/_security/api_key", secure_node.url()))
            .header("authorization", &basic)
            .json(&serde_json::json!({"name": "bench"}))
            .send()
            .await
            .expect("create an API key");
        let body: serde_json::Value = answer.json().await.expect("key");
        body["encoded"].as_str().expect("encoded").to_string()
    });
    let setups = [
        (
            "plain",
            Setup {
                url: plain_node.url(),
                http: client(None),
                authorization: None,
                node: Some(plain_node),
            },
        ),
        (
            "tls_basic",
            Setup {
                url: secure_node.url(),
                http: http.clone(),
                authorization: Some(basic),
                node: Some(secure_node),
            },
        ),
    ];
    let api_key = Setup {
        url: setups[1].1.url.clone(),
        http,
        authorization: Some(format!("ApiKey {key}")),
        node: None,
    };
    let mut group = c.benchmark_group("security_overhead");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(REQUESTS as u64));
    for (name, setup) in setups
        .iter()
        .map(|(n, s)| (*n, s))
        .chain([("tls_api_key", &api_key)])
    {
        // Warm: connections open, the password verified once.
        run_batch(&runtime, setup);
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| (0..iterations).map(|_| run_batch(&runtime, setup)).sum())
        });
    }
    group.throughput(Throughput::Elements(1));
    let hash = tandem_node::security::secrets::hash_password("bench-password");
    group.bench_function("argon2id_verify", |b| {
        b.iter(|| tandem_node::security::secrets::verify_password("bench-password", &hash))
    });
    group.finish();
    drop(api_key);
    for (_, setup) in setups {
        if let Some(node) = setup.node {
            runtime.block_on(node.stop());
        }
    }
}

criterion_group!(benches, security_overhead);
criterion_main!(benches);
