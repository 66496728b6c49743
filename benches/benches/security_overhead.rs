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
//! And `aes_gcm_open_128` / `aes_gcm_open_256` (and `_seal_`): AES-GCM alone over 1 MiB in TLS
//! records of 16 KiB, as a follower decrypts (a copy of each record, then an in-place open) and
//! a leader encrypts a recovery's chunks: the floor of what TLS costs a transfer per MiB,
//! whatever the TLS library around it does.
//!
//! And `tls_receive_rustls`: a follower's TLS receive path alone, in memory: 1 MiB that a
//! rustls server connection (Tandem's configuration, AES-128-GCM) encrypted, taken by a rustls
//! client connection as `tandem_transport::tls_io` feeds it (`read_tls` from a buffer,
//! `process_new_packets`, `reader().read` into a 64 KiB buffer, as hyper reads). What it costs
//! above `aes_gcm_open_128` is what rustls adds to the cipher (its deframer copy, a fresh
//! plaintext `Vec` per record, the copy out); with the follower's core saturated during a
//! recovery, plain costing P ms per MiB there, a TLS recovery's ratio cannot pass
//! P / (P + this), whatever else is done.
//!
//! Run: `cargo bench -p tandem-benches --bench security_overhead`.

use std::time::{Duration, Instant};

/// The allocator of the `tandem` binary, so the node and rustls here allocate as they do there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    aes_gcm(&mut group);
    tls_receive(&mut group, &dir.path().join("certs"));
    group.finish();
    drop(api_key);
    for (_, setup) in setups {
        if let Some(node) = setup.node {
            runtime.block_on(node.stop());
        }
    }
}

/// Plaintext bytes of a full TLS record.
const TLS_RECORD_BYTES: usize = 16 * 1024;
/// Bytes per measured AES-GCM iteration: a recovery chunk.
const AES_CHUNK_BYTES: usize = 1024 * 1024;

/// AES-128-GCM and AES-256-GCM over one chunk in TLS records: seal in place (the leader),
/// copy and open in place (the follower).
fn aes_gcm(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
    group.throughput(Throughput::Bytes(AES_CHUNK_BYTES as u64));
    for (name, algorithm) in [("128", &AES_128_GCM), ("256", &AES_256_GCM)] {
        let key_bytes = vec![7u8; algorithm.key_len()];
        let key = LessSafeKey::new(UnboundKey::new(algorithm, &key_bytes).expect("a key"));
        let nonce = |record: usize| {
            let mut bytes = [0u8; 12];
            bytes[4..].copy_from_slice(&(record as u64).to_be_bytes());
            Nonce::assume_unique_for_key(bytes)
        };
        let records = AES_CHUNK_BYTES / TLS_RECORD_BYTES;
        let plaintext: Vec<u8> = (0..TLS_RECORD_BYTES).map(|i| (i % 251) as u8).collect();
        let mut buffer = plaintext.clone();
        group.bench_function(format!("aes_gcm_seal_{name}"), |b| {
            b.iter(|| {
                for record in 0..records {
                    buffer.copy_from_slice(&plaintext);
                    let tag = key
                        .seal_in_place_separate_tag(nonce(record), Aad::empty(), &mut buffer)
                        .expect("sealed");
                    let _ = std::hint::black_box(tag);
                }
            })
        });
        let sealed: Vec<Vec<u8>> = (0..records)
            .map(|record| {
                let mut record_bytes = plaintext.clone();
                key.seal_in_place_append_tag(nonce(record), Aad::empty(), &mut record_bytes)
                    .expect("sealed");
                record_bytes
            })
            .collect();
        let mut work = vec![0u8; TLS_RECORD_BYTES + algorithm.tag_len()];
        group.bench_function(format!("aes_gcm_open_{name}"), |b| {
            b.iter(|| {
                for (record, sealed) in sealed.iter().enumerate() {
                    work.copy_from_slice(sealed);
                    let opened = key
                        .open_in_place(nonce(record), Aad::empty(), &mut work)
                        .expect("opened");
                    std::hint::black_box(opened.len());
                }
            })
        });
    }
}

/// `tls_receive_rustls`: what rustls's receive path costs a follower per MiB (see the module
/// documentation); only the client's side is timed, the server's encryption is not.
fn tls_receive(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    certs: &std::path::Path,
) {
    use std::io::{Read, Write};
    let files = tandem_transport::tls::TlsFiles {
        certificate: certs.join("bench.crt"),
        key: certs.join("bench.key"),
        certificate_authorities: vec![certs.join("ca.crt")],
        client_authentication: tandem_transport::tls::ClientAuthentication::None,
    };
    let server_config = tandem_transport::tls::server_config(&files).expect("server config");
    let client_config =
        tandem_transport::tls::client_config(&[certs.join("ca.crt")], None).expect("client config");
    let mut server =
        rustls::Connection::Server(rustls::ServerConnection::new(server_config).expect("server"));
    let name = rustls::pki_types::ServerName::try_from("bench").expect("a name");
    let mut client = rustls::Connection::Client(
        rustls::ClientConnection::new(std::sync::Arc::new(client_config), name).expect("client"),
    );
    // The handshake, in memory.
    let mut wire = Vec::new();
    while client.is_handshaking() || server.is_handshaking() {
        deliver(&mut client, &mut server, &mut wire);
        deliver(&mut server, &mut client, &mut wire);
    }
    assert_eq!(
        client.negotiated_cipher_suite().map(|suite| suite.suite()),
        Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
    );
    server.set_buffer_limit(None);
    let payload: Vec<u8> = (0..AES_CHUNK_BYTES).map(|i| (i % 251) as u8).collect();
    let mut out = vec![0u8; 64 * 1024];
    group.throughput(Throughput::Bytes(AES_CHUNK_BYTES as u64));
    group.bench_function("tls_receive_rustls", |b| {
        b.iter_custom(|iterations| {
            let mut timed = Duration::ZERO;
            for _ in 0..iterations {
                server.writer().write_all(&payload).expect("buffered");
                wire.clear();
                while server.wants_write() {
                    server.write_tls(&mut wire).expect("encrypted");
                }
                let started = Instant::now();
                let mut input = &wire[..];
                let mut received = 0;
                while !input.is_empty() {
                    client.read_tls(&mut input).expect("read");
                    client.process_new_packets().expect("records");
                    loop {
                        match client.reader().read(&mut out) {
                            Ok(0) => break,
                            Ok(n) => {
                                received += n;
                                std::hint::black_box(&out[..n]);
                            }
                            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(error) => panic!("plaintext: {error}"),
                        }
                    }
                }
                timed += started.elapsed();
                assert_eq!(received, AES_CHUNK_BYTES, "every byte received");
            }
            timed
        })
    });
}

/// Hands every TLS record `from` has to send to `to`, in memory (a handshake's flight).
fn deliver(from: &mut rustls::Connection, to: &mut rustls::Connection, wire: &mut Vec<u8>) {
    wire.clear();
    while from.wants_write() {
        from.write_tls(wire).expect("records out");
    }
    let mut input = &wire[..];
    while !input.is_empty() {
        to.read_tls(&mut input).expect("records in");
        to.process_new_packets().expect("the handshake");
    }
}

criterion_group!(benches, security_overhead);
criterion_main!(benches);
