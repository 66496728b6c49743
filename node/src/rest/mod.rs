//! The Elasticsearch-compatible REST API: the router and what every endpoint shares.
//!
//! Guarantees, for every request:
//! - the response carries `X-Elastic-Product: Elasticsearch` (the official clients check it);
//! - JSON bodies are accepted with `application/json`, `application/x-ndjson` and the
//!   compatibility media types `application/vnd.elasticsearch+json; compatible-with=7|8|9`
//!   (and `+x-ndjson`); anything else is a 406 with Elasticsearch's message;
//! - errors have Elasticsearch's shape ([`RestError`]); a malformed body, an unknown query
//!   parameter, an invalid index name or a body over [`MAX_BODY_BYTES`] is a 4xx, never a 500;
//! - `?pretty` pretty-prints the JSON answer and `?filter_path=` filters it
//!   ([`filter_path`]).
//!
//! Endpoints live in one module per API family; each exposes `routes()`.

pub mod actions;
pub mod blocking;
pub mod body;
pub mod bulk;
pub mod cat;
pub mod ccr;
pub mod cluster;
pub mod documents;
pub mod filter_path;
pub mod index_expression;
pub mod indices;
pub mod metrics;
pub mod nodes;
pub mod params;
pub mod recovery;
pub mod root;
pub mod search;
pub mod security;
pub mod stats;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::Layer;

pub use body::JsonBody;
pub use params::Params;

use crate::error::RestError;
use crate::node::Node;

/// Largest request body accepted (Elasticsearch's `http.max_content_length`, 100mb).
pub const MAX_BODY_BYTES: usize = 100 * 1024 * 1024;

/// The state every handler gets.
pub type NodeState = Arc<Node>;

/// The whole REST API of `node`.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .merge(root::routes())
        .merge(indices::routes())
        .merge(documents::routes())
        .merge(bulk::routes())
        .merge(search::routes())
        .merge(stats::routes())
        .merge(nodes::routes())
        .merge(metrics::routes())
        .merge(cat::routes())
        .merge(ccr::routes())
        .merge(cluster::routes())
        .merge(recovery::routes())
        .merge(security::routes())
        .merge(
            tandem_transport::router(Arc::new(node.leader.clone())).layer(
                axum::middleware::from_fn_with_state(node.clone(), nodes::count_transport),
            ),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            node.clone(),
            actions::authorize,
        ))
        .fallback(no_handler)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            authenticate,
        ))
        .layer(axum::middleware::from_fn(elasticsearch_conventions))
        .with_state(node)
}

/// With security on, authenticates the request before any handler runs (a 401 otherwise) and
/// hands its [`Principal`](crate::security::Principal) to the handlers as an extension.
async fn authenticate(State(node): State<NodeState>, mut request: Request, next: Next) -> Response {
    if !node.security.enabled() {
        return next.run(request).await;
    }
    let client = request
        .extensions()
        .get::<crate::http::ClientAddress>()
        .map(|address| address.0);
    if let Some(wait) = client.and_then(|client| node.security.failures.blocked(client.ip())) {
        let seconds = wait.as_secs().max(1);
        let mut response = RestError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "security_exception",
            format!("too many failed authentications from this address: retry in [{seconds}s]"),
        )
        .into_response();
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        return response;
    }
    let security = node.security.clone();
    let headers = request.headers().clone();
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    // A cached password or an API key is checked here; an argon2 verification takes tens of
    // milliseconds: not on a runtime worker.
    let checked = match security.authenticate_cached(&headers, &path) {
        Ok(Some(principal)) => Ok(Ok(principal)),
        Err(error) => Ok(Err(error)),
        Ok(None) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || security.authenticate(&headers, &path)).await
        }
    };
    match checked {
        Ok(Ok(principal)) => {
            request.extensions_mut().insert(Arc::new(principal));
            next.run(request).await
        }
        Ok(Err(error)) => {
            // The audit line: who (the reason names the user, or says no credentials came),
            // from where, what; never the secret.
            let origin = client.map(|c| c.to_string()).unwrap_or_default();
            tracing::warn!(
                target: "tandem::audit",
                event = "authentication_failed",
                origin = %origin,
                request = %format!("{method} {path}"),
                reason = %error.reason,
            );
            if let Some(client) = client {
                node.security.failures.record(client.ip());
            }
            crate::security::unauthorized_response(error)
        }
        Err(error) => {
            RestError::internal(format!("authentication failed: {error}")).into_response()
        }
    }
}

/// [`router`] behind the request rewrite of [`service`].
pub type NormalizedRouter = tower::util::MapRequest<Router, fn(Request) -> Request>;

/// The REST API of `node` as the server runs it: [`router`] behind the path normalization
/// that has to happen before routing (a trailing `/`, as in `POST /index/_doc/`, is
/// accepted as Elasticsearch accepts it).
pub fn service(node: Arc<Node>) -> axum::routing::IntoMakeService<NormalizedRouter> {
    axum::ServiceExt::<Request>::into_make_service(normalized(node))
}

/// [`router`] behind the path normalization of [`service`], as one connection serves it.
pub fn normalized(node: Arc<Node>) -> NormalizedRouter {
    tower::util::MapRequestLayer::new(trim_trailing_slash as fn(Request) -> Request)
        .layer(router(node))
}

/// `/a/b/` becomes `/a/b` (the root stays `/`); the query is kept.
fn trim_trailing_slash(mut request: Request) -> Request {
    let path = request.uri().path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let rebuilt = match request.uri().query() {
            Some(query) => format!("{trimmed}?{query}"),
            None => trimmed.to_string(),
        };
        if let Ok(uri) = rebuilt.parse() {
            *request.uri_mut() = uri;
        }
    }
    request
}

/// Elasticsearch's answer to a path no endpoint serves.
async fn no_handler(method: Method, uri: axum::http::Uri) -> RestError {
    RestError::new(
        StatusCode::BAD_REQUEST,
        "illegal_argument_exception",
        format!("no handler found for uri [{uri}] and method [{method}]"),
    )
}

/// Adds the product header, renders `?pretty`, and turns axum's own rejections (wrong method)
/// into Elasticsearch-shaped errors.
async fn elasticsearch_conventions(request: Request, next: Next) -> Response {
    let pretty = request.uri().query().is_some_and(|query| {
        query
            .split('&')
            .any(|pair| pair == "pretty" || pair.starts_with("pretty=") && pair != "pretty=false")
    });
    // Every request passes here (bulks included): parse the query only when it can matter.
    let filter = request
        .uri()
        .query()
        .filter(|query| query.contains("filter_path"))
        .and_then(|query| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(query)
                .ok()?
                .into_iter()
                .find(|(key, _)| key == "filter_path")
                .and_then(|(_, value)| filter_path::FilterPath::parse(&value))
        });
    let method = request.method().clone();
    let uri = request.uri().clone();
    let mut response = next.run(request).await;
    if let Some(filter) = filter.filter(|_| is_json(&response)) {
        response = filter_json(response, &filter).await;
    }
    if response.status() == StatusCode::METHOD_NOT_ALLOWED && !is_json(&response) {
        let allowed = response
            .headers()
            .get(axum::http::header::ALLOW)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_string();
        response = RestError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "illegal_argument_exception",
            format!(
                "Incorrect HTTP method for uri [{uri}] and method [{method}], allowed: [{allowed}]"
            ),
        )
        .into_response();
    }
    if pretty && is_json(&response) {
        response = pretty_print(response).await;
    }
    response.headers_mut().insert(
        "x-elastic-product",
        HeaderValue::from_static("Elasticsearch"),
    );
    response
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

/// Applies `filter` to a JSON answer (`{}` when nothing is left, as Elasticsearch answers).
async fn filter_json(response: Response, filter: &filter_path::FilterPath) -> Response {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return RestError::internal("response body lost").into_response();
    };
    let filtered = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(value) => {
            let kept = filter
                .apply(&value)
                .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
            serde_json::to_vec(&kept).unwrap_or_else(|_| bytes.to_vec())
        }
        Err(_) => bytes.to_vec(),
    };
    let mut response = Response::from_parts(parts, axum::body::Body::from(filtered));
    response
        .headers_mut()
        .remove(axum::http::header::CONTENT_LENGTH);
    response
}

async fn pretty_print(response: Response) -> Response {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return RestError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            "response body lost",
        )
        .into_response();
    };
    let rendered = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|value| serde_json::to_vec_pretty(&value).ok())
        .map(|mut pretty| {
            pretty.push(b'\n');
            pretty
        })
        .unwrap_or_else(|| bytes.to_vec());
    let mut response = Response::from_parts(parts, axum::body::Body::from(rendered));
    response
        .headers_mut()
        .remove(axum::http::header::CONTENT_LENGTH);
    response
}

/// A `200 OK` JSON answer.
pub fn ok(value: serde_json::Value) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

/// Checks an index name against Elasticsearch's rules (lowercase, no `\ / * ? " < > | , #` or
/// space, not starting with `-`, `_` or `+`, not `.` or `..`, at most 255 bytes).
pub fn validate_index_name(name: &str) -> Result<(), RestError> {
    let invalid = |why: &str| {
        Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "invalid_index_name_exception",
            format!("Invalid index name [{name}], {why}"),
        )
        .with("index", name))
    };
    if name.is_empty() {
        return invalid("must not be empty");
    }
    if name != name.to_lowercase() {
        return invalid("must be lowercase");
    }
    if name.starts_with(['-', '_', '+']) {
        return invalid("must not start with '_', '-', or '+'");
    }
    if name == "." || name == ".." {
        return invalid("must not be '.' or '..'");
    }
    if name.len() > 255 {
        return invalid(&format!("index name is too long, ({} > 255)", name.len()));
    }
    if let Some(bad) = name.chars().find(|c| {
        matches!(
            c,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
        )
    }) {
        return invalid(&format!(
            "must not contain the following characters [{bad}]"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_follow_elasticsearch_rules() {
        for good in [
            "server-metrics",
            "logs.2026",
            "a_b",
            "kibana_sample_data_ecommerce",
        ] {
            assert!(validate_index_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", "Upper", "_x", "-x", "+x", ".", "..", "a b", "a/b", "a*", "a,b", "a#b",
        ] {
            let error = validate_index_name(bad).unwrap_err();
            assert_eq!(error.error_type, "invalid_index_name_exception", "{bad}");
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
        }
        assert!(validate_index_name(&"a".repeat(256)).is_err());
    }
}
