//! What the node benches share: starting a node, and a REST client of one node.
#![allow(dead_code)] // each bench uses part of it

use std::path::PathBuf;

use reqwest::Method;
use serde_json::Value;
use tandem_node::config::NodeConfig;
use tandem_node::server::RunningNode;
use tokio::runtime::Runtime;

/// Starts a node named `name` on `runtime`, with its data in `data`, serving HTTP on a free
/// loopback port, with the `tandem` binary's default indexing buffer and HTTP limits.
pub fn start_node(runtime: &Runtime, data: PathBuf, name: &str) -> RunningNode {
    runtime
        .block_on(RunningNode::start(NodeConfig {
            data,
            http: "127.0.0.1:0".parse().expect("an address"),
            name: name.to_string(),
            indexing_buffer_bytes: tandem_node::config::default_indexing_buffer_bytes(),
            http_limits: tandem_node::http::HttpLimits::default(),
            tls: None,
            security: false,
            insecure: false,
        }))
        .unwrap_or_else(|error| panic!("starting node [{name}]: {error}"))
}

/// A REST client of one node. Every call panics on a transport error or a non-2xx answer.
#[derive(Clone)]
pub struct Rest {
    http: reqwest::Client,
    url: String,
}

impl Rest {
    pub fn new(url: String) -> Rest {
        tandem_transport::tls::install_default_provider();
        Rest {
            http: reqwest::Client::new(),
            url,
        }
    }

    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.url));
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
            .http
            .post(format!("{}{path}", self.url))
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
