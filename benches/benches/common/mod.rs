//! What the node benches share: starting a node, and a REST client of one node.
#![allow(dead_code)] // each bench uses part of it

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::Value;
use tandem_node::config::NodeConfig;
use tandem_node::server::RunningNode;
use tokio::runtime::Runtime;

/// Starts a node named `name` on `runtime`, with its data in `data`, serving HTTP on a free
/// loopback port, with the `tandem` binary's default indexing buffer and HTTP limits.
pub fn start_node(runtime: &Runtime, data: PathBuf, name: &str) -> RunningNode {
    start_node_secured(runtime, data, name, None)
}

/// The certificates of secure bench nodes, made by `tandem certs` in `dir`: a CA and one node
/// certificate, `node.crt`, naming localhost and 127.0.0.1.
pub fn make_certs(dir: &Path) -> PathBuf {
    let out = dir.join("certs");
    tandem_node::certs::make(&tandem_node::certs::CertsRequest {
        out: out.clone(),
        nodes: vec!["node".to_string()],
        dns: Vec::new(),
        ips: Vec::new(),
        days: tandem_node::certs::DEFAULT_DAYS,
    })
    .expect("tandem certs");
    out
}

/// [`start_node`]; with `certs` (from [`make_certs`]), with TLS and security on, as the secure
/// demo runs a node.
pub fn start_node_secured(
    runtime: &Runtime,
    data: PathBuf,
    name: &str,
    certs: Option<&Path>,
) -> RunningNode {
    let tls = certs.map(|certs| tandem_transport::tls::TlsFiles {
        certificate: certs.join("node.crt"),
        key: certs.join("node.key"),
        certificate_authorities: vec![certs.join("ca.crt")],
        client_authentication: tandem_transport::tls::ClientAuthentication::None,
    });
    runtime
        .block_on(RunningNode::start(NodeConfig {
            data,
            http: "127.0.0.1:0".parse().expect("an address"),
            name: name.to_string(),
            indexing_buffer_bytes: tandem_node::config::default_indexing_buffer_bytes(),
            http_limits: tandem_node::http::HttpLimits::default(),
            security: tls.is_some(),
            tls,
            insecure: false,
        }))
        .unwrap_or_else(|error| panic!("starting node [{name}]: {error}"))
}

/// The `elastic` password a secure node generated at its first start.
pub fn elastic_password(node: &RunningNode) -> String {
    match node.node.take_bootstrap_password() {
        Some(tandem_node::security::Bootstrap::Generated(password)) => password,
        _ => panic!("node [{}] generated no password", node.node.config.name),
    }
}

/// A REST client of one node. Every call panics on a transport error or a non-2xx answer.
#[derive(Clone)]
pub struct Rest {
    http: reqwest::Client,
    url: String,
    /// The `Authorization` header of every request, if any.
    authorization: Option<String>,
}

impl Rest {
    pub fn new(url: String) -> Rest {
        tandem_transport::tls::install_default_provider();
        Rest {
            http: reqwest::Client::new(),
            url,
            authorization: None,
        }
    }

    /// A client of a secure node (`https://` `url`): trusts the CA in `certs` and sends
    /// `elastic`'s `password` as Basic credentials.
    pub fn secured(url: String, certs: &Path, password: &str) -> Rest {
        use base64::Engine as _;
        tandem_transport::tls::install_default_provider();
        let tls = tandem_transport::tls::client_config(&[certs.join("ca.crt")], None)
            .expect("client TLS configuration");
        let token = base64::engine::general_purpose::STANDARD.encode(format!("elastic:{password}"));
        Rest {
            http: reqwest::Client::builder()
                .use_preconfigured_tls(tls)
                .build()
                .expect("an HTTP client"),
            url,
            authorization: Some(format!("Basic {token}")),
        }
    }

    /// `builder` with this client's credentials.
    fn authorized(&self, builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.authorization {
            Some(value) => builder.header(reqwest::header::AUTHORIZATION, value),
            None => builder,
        }
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.authorized(
            self.http
                .request(method.clone(), format!("{}{path}", self.url)),
        );
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
        let status = response.status();
        let text = response
            .text()
            .await
            .unwrap_or_else(|error| panic!("{method} {path}: reading the answer: {error}"));
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub async fn get(&self, path: &str) -> Value {
        self.send(Method::GET, path, None).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Value {
        self.send(Method::PUT, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Value {
        self.send(Method::DELETE, path, None).await
    }

    /// One `_bulk` request of index actions into `index`; returns the highest seq_no given to
    /// its items. Panics if any item failed.
    pub async fn bulk(&self, index: &str, body: Vec<u8>) -> i64 {
        let path = format!("/{index}/_bulk");
        let response = self
            .authorized(self.http.post(format!("{}{path}", self.url)))
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(body)
            .send()
            .await
            .unwrap_or_else(|error| panic!("POST {path}: {error}"));
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .unwrap_or_else(|error| panic!("POST {path}: reading the answer: {error}"));
        assert!(status.is_success(), "POST {path}: {status}");
        let answer: Value = serde_json::from_slice(&bytes).expect("a JSON bulk answer");
        assert_eq!(answer["errors"], false, "POST {path}: {answer}");
        answer["items"]
            .as_array()
            .expect("bulk items")
            .iter()
            .filter_map(|item| item["index"]["_seq_no"].as_i64())
            .max()
            .unwrap_or(-1)
    }
}
