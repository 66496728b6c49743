//! `GET|PUT /_cluster/settings` (the remote clusters, `cluster.remote.<alias>.*`) and
//! `GET /_remote/info` (each remote cluster's configuration and whether it answers a
//! transport request now).

use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};

use super::{ok, JsonBody, NodeState, Params};
use crate::cluster_settings::{RemoteClusterConfig, RemoteMode};
use crate::error::RestError;
use crate::node::Node;

/// How long `_remote/info` waits for a remote cluster to answer its probe.
const CONNECT_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Elasticsearch's defaults, shown by `_remote/info`.
const INITIAL_CONNECT_TIMEOUT: &str = "30s";
const MAX_CONNECTIONS_PER_CLUSTER: u32 = 3;
const MAX_PROXY_SOCKET_CONNECTIONS: u32 = 18;

/// The routes of this module.
pub fn routes() -> Router<NodeState> {
    Router::new()
        .route("/_cluster/settings", get(get_settings).put(put_settings))
        .route("/_remote/info", get(remote_info))
        .route(
            "/_nodes/reload_secure_settings",
            axum::routing::post(reload_secure_settings),
        )
        .route(
            "/_nodes/{node_id}/reload_secure_settings",
            axum::routing::post(reload_secure_settings),
        )
}

/// `POST /_nodes[/{node_id}]/reload_secure_settings`: the keystore read again (the remote
/// clusters' credentials), in Elasticsearch's answer shape.
async fn reload_secure_settings(
    State(node): State<NodeState>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["timeout"])?;
    params.time("timeout")?;
    node.reload_secure_settings().await?;
    Ok(ok(json!({
        "_nodes": {"total": 1, "successful": 1, "failed": 0},
        "cluster_name": node.identity.cluster_name,
        "nodes": {node.identity.node_id.clone(): {"name": node.config.name}},
    })))
}

async fn get_settings(
    State(node): State<NodeState>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&[
        "flat_settings",
        "include_defaults",
        "master_timeout",
        "timeout",
    ])?;
    params.time("master_timeout")?;
    params.time("timeout")?;
    let flat = params.flag("flat_settings", false)?;
    let settings = node.cluster_settings().await;
    let mut answer = settings.to_es_json(flat);
    if params.flag("include_defaults", false)? {
        answer["defaults"] = settings.defaults_json(flat);
    }
    Ok(ok(answer))
}

async fn put_settings(
    State(node): State<NodeState>,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, RestError> {
    params.allow(&["flat_settings", "master_timeout", "timeout"])?;
    params.time("master_timeout")?;
    params.time("timeout")?;
    params.flag("flat_settings", false)?;
    let body = body.ok_or_else(|| RestError::parse("request body is required"))?;
    let (persistent, transient) = node.update_cluster_settings(&body).await?;
    Ok(ok(json!({
        "acknowledged": true,
        "persistent": persistent,
        "transient": transient,
    })))
}

/// Whether the remote cluster `alias` answers a transport request within
/// [`CONNECT_PROBE_TIMEOUT`], through the client its followers use: as Elasticsearch's
/// `connected`, this is false when the address accepts TCP but the TLS handshake fails (a
/// certificate that does not verify or does not name the address) or the credentials are
/// refused, not only when nothing listens.
async fn connected(node: &Node, alias: &str) -> bool {
    let Ok(client) = node.remotes.get(alias) else {
        return false;
    };
    match tokio::time::timeout(CONNECT_PROBE_TIMEOUT, client.list_indices()).await {
        Ok(Ok(_)) => true,
        Ok(Err(error)) => {
            tracing::debug!(%alias, %error, "remote cluster probe failed");
            false
        }
        Err(_) => false,
    }
}

async fn remote_entry(node: &Node, remote: &RemoteClusterConfig) -> Value {
    let connected = connected(node, &remote.alias).await;
    let mut entry = Map::new();
    entry.insert("connected".into(), json!(connected));
    match &remote.mode {
        RemoteMode::Sniff { seeds } => {
            entry.insert("mode".into(), json!("sniff"));
            entry.insert("seeds".into(), json!(seeds));
            entry.insert("num_nodes_connected".into(), json!(u32::from(connected)));
            entry.insert(
                "max_connections_per_cluster".into(),
                json!(MAX_CONNECTIONS_PER_CLUSTER),
            );
        }
        RemoteMode::Proxy { proxy_address } => {
            entry.insert("mode".into(), json!("proxy"));
            entry.insert("proxy_address".into(), json!(proxy_address));
            entry.insert("server_name".into(), json!(""));
            entry.insert(
                "num_proxy_sockets_connected".into(),
                json!(if connected {
                    MAX_PROXY_SOCKET_CONNECTIONS
                } else {
                    0
                }),
            );
            entry.insert(
                "max_proxy_socket_connections".into(),
                json!(MAX_PROXY_SOCKET_CONNECTIONS),
            );
        }
    }
    entry.insert(
        "initial_connect_timeout".into(),
        json!(INITIAL_CONNECT_TIMEOUT),
    );
    entry.insert("skip_unavailable".into(), json!(remote.skip_unavailable));
    Value::Object(entry)
}

async fn remote_info(State(node): State<NodeState>, params: Params) -> Result<Response, RestError> {
    params.allow(&[])?;
    let remotes = node.cluster_settings().await.remote_clusters()?;
    let mut answer = Map::new();
    for remote in &remotes {
        answer.insert(remote.alias.clone(), remote_entry(&node, remote).await);
    }
    Ok(ok(Value::Object(answer)))
}
