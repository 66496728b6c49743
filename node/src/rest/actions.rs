//! Every REST endpoint's action, with Elasticsearch's name, and the authorization that runs
//! before its handler when security is on.
//!
//! Guarantees:
//! - [`ENDPOINTS`] names an action for every route of the router (the `every_route_has_an_action`
//!   test reads the routes of `rest/` and the transport and fails on one without);
//! - a route missing from the table is refused to everybody, superusers included (fail closed);
//! - an index action is checked on every index the request names in its path; a wildcard or
//!   `_all` is checked on every existing index it matches (Elasticsearch would instead narrow
//!   it to the indices the user may see; Tandem refuses the whole request);
//! - endpoints whose indices are in the body (`_bulk`) or whose check depends on who is asked
//!   about (changing one's own password, one's own API keys) are checked by their handler, per
//!   item, as [`Check::Handler`] says.

use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::RequestExt;

use super::index_expression::wildcard_matches;
use super::NodeState;
use crate::error::RestError;
use crate::security::Principal;

/// How a request is authorized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// A cluster action.
    Cluster(&'static str),
    /// An index action on the indices of the path's `{index}`.
    Index(&'static str),
    /// An index action on every index (an endpoint without `{index}`, as `/_search`).
    AllIndices(&'static str),
    /// A cluster action and an index action on the path's `{index}`, both needed.
    ClusterAndIndex(&'static str, &'static str),
    /// The handler checks (see the module documentation); the action names what it does.
    Handler(&'static str),
    /// Every authenticated user may (`_authenticate`).
    Authenticated,
}

/// One route's method, path pattern (as the router declares it) and check.
pub type Endpoint = (&'static str, &'static str, Check);

/// The transport's routes share one action: a follower's reads of this cluster.
pub const TRANSPORT_ACTION: &str = "cluster:internal/tandem/transport/read";

/// Every route of the REST API (the transport's routes are matched by their prefix).
pub const ENDPOINTS: &[Endpoint] = {
    use Check::*;
    &[
        ("GET", "/", Cluster("cluster:monitor/main")),
        ("HEAD", "/", Cluster("cluster:monitor/main")),
        ("GET", "/_cluster/health", Cluster("cluster:monitor/health")),
        (
            "GET",
            "/_cluster/health/{index}",
            Cluster("cluster:monitor/health"),
        ),
        (
            "GET",
            "/_cluster/settings",
            Cluster("cluster:monitor/state"),
        ),
        (
            "PUT",
            "/_cluster/settings",
            Cluster("cluster:admin/settings/update"),
        ),
        (
            "GET",
            "/_remote/info",
            Cluster("cluster:monitor/remote/info"),
        ),
        (
            "POST",
            "/_nodes/reload_secure_settings",
            Cluster("cluster:admin/nodes/reload_secure_settings"),
        ),
        (
            "POST",
            "/_nodes/{node_id}/reload_secure_settings",
            Cluster("cluster:admin/nodes/reload_secure_settings"),
        ),
        // Indices.
        ("PUT", "/{index}", Index("indices:admin/create")),
        ("GET", "/{index}", Index("indices:admin/get")),
        ("HEAD", "/{index}", Index("indices:admin/get")),
        ("DELETE", "/{index}", Index("indices:admin/delete")),
        ("POST", "/_aliases", AllIndices("indices:admin/aliases")),
        ("GET", "/{index}/_alias", Index("indices:admin/aliases/get")),
        ("POST", "/{index}/_close", Index("indices:admin/close")),
        ("POST", "/{index}/_open", Index("indices:admin/open")),
        (
            "GET",
            "/{index}/_mapping",
            Index("indices:admin/mappings/get"),
        ),
        (
            "PUT",
            "/{index}/_mapping",
            Index("indices:admin/mapping/put"),
        ),
        (
            "POST",
            "/{index}/_mapping",
            Index("indices:admin/mapping/put"),
        ),
        (
            "GET",
            "/{index}/_settings",
            Index("indices:monitor/settings/get"),
        ),
        (
            "PUT",
            "/{index}/_settings",
            Index("indices:admin/settings/update"),
        ),
        ("GET", "/_refresh", AllIndices("indices:admin/refresh")),
        ("POST", "/_refresh", AllIndices("indices:admin/refresh")),
        ("GET", "/{index}/_refresh", Index("indices:admin/refresh")),
        ("POST", "/{index}/_refresh", Index("indices:admin/refresh")),
        ("GET", "/_flush", AllIndices("indices:admin/flush")),
        ("POST", "/_flush", AllIndices("indices:admin/flush")),
        ("GET", "/{index}/_flush", Index("indices:admin/flush")),
        ("POST", "/{index}/_flush", Index("indices:admin/flush")),
        (
            "POST",
            "/_forcemerge",
            AllIndices("indices:admin/forcemerge"),
        ),
        (
            "POST",
            "/{index}/_forcemerge",
            Index("indices:admin/forcemerge"),
        ),
        ("GET", "/_recovery", AllIndices("indices:monitor/recovery")),
        (
            "GET",
            "/{index}/_recovery",
            Index("indices:monitor/recovery"),
        ),
        // Documents.
        ("POST", "/{index}/_doc", Index("indices:data/write/index")),
        (
            "PUT",
            "/{index}/_doc/{id}",
            Index("indices:data/write/index"),
        ),
        (
            "POST",
            "/{index}/_doc/{id}",
            Index("indices:data/write/index"),
        ),
        ("GET", "/{index}/_doc/{id}", Index("indices:data/read/get")),
        ("HEAD", "/{index}/_doc/{id}", Index("indices:data/read/get")),
        (
            "DELETE",
            "/{index}/_doc/{id}",
            Index("indices:data/write/delete"),
        ),
        (
            "PUT",
            "/{index}/_create/{id}",
            Index("indices:data/write/index"),
        ),
        (
            "POST",
            "/{index}/_create/{id}",
            Index("indices:data/write/index"),
        ),
        (
            "GET",
            "/{index}/_source/{id}",
            Index("indices:data/read/get"),
        ),
        (
            "HEAD",
            "/{index}/_source/{id}",
            Index("indices:data/read/get"),
        ),
        (
            "POST",
            "/{index}/_update/{id}",
            Index("indices:data/write/update"),
        ),
        ("POST", "/_bulk", Handler("indices:data/write/bulk")),
        ("PUT", "/_bulk", Handler("indices:data/write/bulk")),
        ("POST", "/{index}/_bulk", Handler("indices:data/write/bulk")),
        ("PUT", "/{index}/_bulk", Handler("indices:data/write/bulk")),
        // Search.
        ("GET", "/_search", AllIndices("indices:data/read/search")),
        ("POST", "/_search", AllIndices("indices:data/read/search")),
        ("GET", "/{index}/_search", Index("indices:data/read/search")),
        (
            "POST",
            "/{index}/_search",
            Index("indices:data/read/search"),
        ),
        // Node and cluster stats.
        (
            "GET",
            "/_prometheus/metrics",
            Cluster("cluster:monitor/prometheus/metrics"),
        ),
        (
            "GET",
            "/_nodes/stats",
            Cluster("cluster:monitor/nodes/stats"),
        ),
        (
            "GET",
            "/_nodes/stats/{metric}",
            Cluster("cluster:monitor/nodes/stats"),
        ),
        (
            "GET",
            "/_nodes/{node_id}/stats",
            Cluster("cluster:monitor/nodes/stats"),
        ),
        (
            "GET",
            "/_nodes/{node_id}/stats/{metric}",
            Cluster("cluster:monitor/nodes/stats"),
        ),
        ("GET", "/_cluster/stats", Cluster("cluster:monitor/stats")),
        (
            "GET",
            "/_cluster/stats/nodes/{node_id}",
            Cluster("cluster:monitor/stats"),
        ),
        // Index stats.
        ("GET", "/_stats", AllIndices("indices:monitor/stats")),
        (
            "GET",
            "/_stats/{metric}",
            AllIndices("indices:monitor/stats"),
        ),
        ("GET", "/{index}/_stats", Index("indices:monitor/stats")),
        (
            "GET",
            "/{index}/_stats/{metric}",
            Index("indices:monitor/stats"),
        ),
        ("GET", "/_count", AllIndices("indices:data/read/search")),
        ("POST", "/_count", AllIndices("indices:data/read/search")),
        ("GET", "/{index}/_count", Index("indices:data/read/search")),
        ("POST", "/{index}/_count", Index("indices:data/read/search")),
        // Cat.
        ("GET", "/_cat/health", Cluster("cluster:monitor/health")),
        ("GET", "/_cat/count", AllIndices("indices:data/read/search")),
        (
            "GET",
            "/_cat/count/{index}",
            Index("indices:data/read/search"),
        ),
        ("GET", "/_cat/indices", Cluster("cluster:monitor/state")),
        (
            "GET",
            "/_cat/indices/{index}",
            Cluster("cluster:monitor/state"),
        ),
        ("GET", "/_cat/shards", Cluster("cluster:monitor/state")),
        (
            "GET",
            "/_cat/shards/{index}",
            Cluster("cluster:monitor/state"),
        ),
        ("GET", "/_cat/segments", Cluster("cluster:monitor/state")),
        (
            "GET",
            "/_cat/segments/{index}",
            Cluster("cluster:monitor/state"),
        ),
        ("GET", "/_cat/nodes", Cluster("cluster:monitor/nodes/info")),
        ("GET", "/_cat/recovery", Cluster("cluster:monitor/state")),
        (
            "GET",
            "/_cat/recovery/{index}",
            Cluster("cluster:monitor/state"),
        ),
        // Cross-cluster replication.
        (
            "PUT",
            "/{index}/_ccr/follow",
            ClusterAndIndex(
                "cluster:admin/xpack/ccr/put_follow",
                "indices:admin/xpack/ccr/put_follow",
            ),
        ),
        (
            "POST",
            "/{index}/_ccr/pause_follow",
            Cluster("cluster:admin/xpack/ccr/pause_follow"),
        ),
        (
            "POST",
            "/{index}/_ccr/resume_follow",
            Cluster("cluster:admin/xpack/ccr/resume_follow"),
        ),
        (
            "POST",
            "/{index}/_ccr/unfollow",
            Index("indices:admin/xpack/ccr/unfollow"),
        ),
        (
            "POST",
            "/{index}/_ccr/promote",
            ClusterAndIndex(
                "cluster:admin/xpack/ccr/promote",
                "indices:admin/xpack/ccr/promote",
            ),
        ),
        (
            "POST",
            "/{index}/_ccr/failback",
            ClusterAndIndex(
                "cluster:admin/xpack/ccr/failback",
                "indices:admin/xpack/ccr/failback",
            ),
        ),
        (
            "POST",
            "/{index}/_ccr/forget_follower",
            Index("indices:admin/xpack/ccr/forget_follower"),
        ),
        (
            "GET",
            "/{index}/_ccr/stats",
            Cluster("cluster:monitor/ccr/follow_stats"),
        ),
        (
            "GET",
            "/{index}/_ccr/info",
            Cluster("cluster:monitor/ccr/follow_info"),
        ),
        (
            "POST",
            "/{index}/_ccr/verify",
            ClusterAndIndex("cluster:monitor/ccr/verify", "indices:monitor/ccr/verify"),
        ),
        ("GET", "/_ccr/stats", Cluster("cluster:monitor/ccr/stats")),
        (
            "GET",
            "/_ccr/auto_follow",
            Cluster("cluster:admin/xpack/ccr/auto_follow_pattern/get"),
        ),
        (
            "GET",
            "/_ccr/auto_follow/{name}",
            Cluster("cluster:admin/xpack/ccr/auto_follow_pattern/get"),
        ),
        (
            "PUT",
            "/_ccr/auto_follow/{name}",
            Cluster("cluster:admin/xpack/ccr/auto_follow_pattern/put"),
        ),
        (
            "DELETE",
            "/_ccr/auto_follow/{name}",
            Cluster("cluster:admin/xpack/ccr/auto_follow_pattern/delete"),
        ),
        (
            "POST",
            "/_ccr/auto_follow/{name}/pause",
            Cluster("cluster:admin/xpack/ccr/auto_follow_pattern/activate"),
        ),
        (
            "POST",
            "/_ccr/auto_follow/{name}/resume",
            Cluster("cluster:admin/xpack/ccr/auto_follow_pattern/activate"),
        ),
        // Security.
        ("GET", "/_security/_authenticate", Authenticated),
        (
            "GET",
            "/_security/user",
            Cluster("cluster:admin/xpack/security/user/get"),
        ),
        (
            "GET",
            "/_security/user/{name}",
            Cluster("cluster:admin/xpack/security/user/get"),
        ),
        (
            "PUT",
            "/_security/user/{name}",
            Cluster("cluster:admin/xpack/security/user/put"),
        ),
        (
            "POST",
            "/_security/user/{name}",
            Cluster("cluster:admin/xpack/security/user/put"),
        ),
        (
            "DELETE",
            "/_security/user/{name}",
            Cluster("cluster:admin/xpack/security/user/delete"),
        ),
        (
            "POST",
            "/_security/user/_password",
            Handler("cluster:admin/xpack/security/user/change_password"),
        ),
        (
            "PUT",
            "/_security/user/_password",
            Handler("cluster:admin/xpack/security/user/change_password"),
        ),
        (
            "POST",
            "/_security/user/{name}/_password",
            Handler("cluster:admin/xpack/security/user/change_password"),
        ),
        (
            "PUT",
            "/_security/user/{name}/_password",
            Handler("cluster:admin/xpack/security/user/change_password"),
        ),
        (
            "POST",
            "/_security/user/{name}/_enable",
            Cluster("cluster:admin/xpack/security/user/set_enabled"),
        ),
        (
            "PUT",
            "/_security/user/{name}/_enable",
            Cluster("cluster:admin/xpack/security/user/set_enabled"),
        ),
        (
            "POST",
            "/_security/user/{name}/_disable",
            Cluster("cluster:admin/xpack/security/user/set_enabled"),
        ),
        (
            "PUT",
            "/_security/user/{name}/_disable",
            Cluster("cluster:admin/xpack/security/user/set_enabled"),
        ),
        (
            "POST",
            "/_security/cross_cluster/api_key",
            Cluster("cluster:admin/xpack/security/cross_cluster/api_key/create"),
        ),
        (
            "POST",
            "/_security/api_key",
            Cluster("cluster:admin/xpack/security/api_key/create"),
        ),
        (
            "PUT",
            "/_security/api_key",
            Cluster("cluster:admin/xpack/security/api_key/create"),
        ),
        (
            "GET",
            "/_security/api_key",
            Cluster("cluster:admin/xpack/security/api_key/get"),
        ),
        (
            "DELETE",
            "/_security/api_key",
            Cluster("cluster:admin/xpack/security/api_key/invalidate"),
        ),
        (
            "GET",
            "/_security/role",
            Cluster("cluster:admin/xpack/security/role/get"),
        ),
        (
            "GET",
            "/_security/role/{name}",
            Cluster("cluster:admin/xpack/security/role/get"),
        ),
        (
            "PUT",
            "/_security/role/{name}",
            Cluster("cluster:admin/xpack/security/role/put"),
        ),
        (
            "POST",
            "/_security/role/{name}",
            Cluster("cluster:admin/xpack/security/role/put"),
        ),
        (
            "DELETE",
            "/_security/role/{name}",
            Cluster("cluster:admin/xpack/security/role/delete"),
        ),
    ]
};

/// The table of every REST endpoint with its action and the privileges that grant it, in
/// Markdown, as `docs/rest-privileges.md` holds it (a test keeps that file current).
pub fn endpoint_table_markdown() -> String {
    use crate::security::privileges::{cluster_privileges_granting, index_privileges_granting};
    let list = |names: Vec<&str>| names.join(", ");
    let mut table =
        String::from("| Method | Path | Action | Privileges that grant it |\n|---|---|---|---|\n");
    let mut row = |method: &str, path: &str, action: &str, privileges: String| {
        table.push_str(&format!(
            "| {method} | `{path}` | `{action}` | {privileges} |\n"
        ));
    };
    for (method, path, check) in ENDPOINTS {
        match check {
            Check::Cluster(action) => row(
                method,
                path,
                action,
                format!("cluster: {}", list(cluster_privileges_granting(action))),
            ),
            Check::Index(action) => row(
                method,
                path,
                action,
                format!(
                    "index, on `{{index}}`: {}",
                    list(index_privileges_granting(action))
                ),
            ),
            Check::AllIndices(action) => row(
                method,
                path,
                action,
                format!(
                    "index, on every index: {}",
                    list(index_privileges_granting(action))
                ),
            ),
            Check::ClusterAndIndex(cluster, index) => row(
                method,
                path,
                &format!("{cluster}` and `{index}"),
                format!(
                    "cluster: {}; and index, on `{{index}}`: {}",
                    list(cluster_privileges_granting(cluster)),
                    list(index_privileges_granting(index))
                ),
            ),
            Check::Handler(action) if path.ends_with("_bulk") => row(
                method,
                path,
                action,
                format!(
                    "checked per item, on the item's index: its action \
                     (`indices:data/write/index`, `delete` or `update`), granted by {} (which \
                     also auto-create the index, as Elasticsearch's `auto_configure`); a \
                     refused item gets its own 403",
                    list(index_privileges_granting("indices:data/write/index"))
                ),
            ),
            Check::Handler(action) => row(
                method,
                path,
                action,
                format!(
                    "one's own password: any authenticated user; another user's: cluster {}",
                    list(cluster_privileges_granting(
                        "cluster:admin/xpack/security/user/change_password"
                    ))
                ),
            ),
            Check::Authenticated => row(
                method,
                path,
                "cluster:monitor/xpack/security/authenticate",
                "any authenticated user".to_string(),
            ),
        }
    }
    row(
        "POST",
        "/_tandem/v1/*",
        TRANSPORT_ACTION,
        "a cross-cluster API key whose `access.replication` names cover the leader index; \
         otherwise index `read` on it"
            .to_string(),
    );
    table
}

/// The check of `method` on the route `path` (the router's pattern).
pub fn check_for(method: &Method, path: &str) -> Option<Check> {
    if path.starts_with(tandem_transport::server::PATH_PREFIX) {
        return Some(Check::Cluster(TRANSPORT_ACTION));
    }
    ENDPOINTS
        .iter()
        .find(|(m, p, _)| *m == method.as_str() && *p == path)
        .map(|(_, _, check)| *check)
}

/// The concrete indices an index expression names: each comma-separated name, a wildcard
/// or `_all` expanded over the existing indices; exclusions (`-name`) are left out.
fn expression_indices(node: &NodeState, expression: &str) -> Vec<String> {
    let mut named = Vec::new();
    for part in expression.split(',').filter(|part| !part.is_empty()) {
        if part.starts_with('-') {
            continue;
        }
        if part == "_all" || part.contains('*') {
            let pattern = if part == "_all" { "*" } else { part };
            named.extend(
                node.indices
                    .names()
                    .into_iter()
                    .filter(|index| wildcard_matches(pattern, index)),
            );
        } else {
            named.push(part.to_string());
        }
    }
    named.sort();
    named.dedup();
    named
}

/// Runs the check of the matched route before its handler (security on only).
pub async fn authorize(
    State(node): State<NodeState>,
    mut request: Request,
    next: Next,
) -> Response {
    if !node.security.enabled() {
        return next.run(request).await;
    }
    let Some(principal) = request
        .extensions()
        .get::<std::sync::Arc<Principal>>()
        .cloned()
    else {
        return RestError::internal("an unauthenticated request reached authorization")
            .into_response();
    };
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|matched| matched.as_str().to_string())
        .unwrap_or_default();
    let method = request.method().clone();
    let Some(check) = check_for(&method, &path) else {
        return RestError::internal(format!(
            "no action is mapped for [{method} {path}]: refused until one is"
        ))
        .into_response();
    };
    let index_param = match request.extract_parts::<RawPathParams>().await {
        Ok(params) => params
            .iter()
            .find(|(key, _)| *key == "index")
            .map(|(_, value)| value.to_string()),
        Err(_) => None,
    };
    let security = &node.security;
    let transport = path.starts_with(tandem_transport::server::PATH_PREFIX);
    if principal.cross_cluster.is_some() && !transport {
        let (id, _) = principal.api_key.clone().unwrap_or_default();
        return RestError::new(
            axum::http::StatusCode::FORBIDDEN,
            "security_exception",
            format!("authentication expected API key type of [rest], but API key [{id}] has type [cross_cluster]"),
        )
        .into_response();
    }
    if transport {
        // A cross-cluster key reaches the transport by itself; anyone else needs read_ccr.
        if principal.cross_cluster.is_none() {
            if let Err(error) = security.check_cluster(&principal, TRANSPORT_ACTION) {
                return error.into_response();
            }
        }
        let (security, principal) = (node.security.clone(), principal.clone());
        request
            .extensions_mut()
            .insert(tandem_transport::server::IndexAccess(std::sync::Arc::new(
                move |index: &str| {
                    security
                        .check_transport_index(&principal, index)
                        .map_err(tandem_recovery::LeaderError::Unauthorized)
                },
            )));
        return next.run(request).await;
    }
    let path_indices = || expression_indices(&node, index_param.as_deref().unwrap_or(""));
    let checked = match check {
        Check::Cluster(action) => security.check_cluster(&principal, action),
        Check::Index(action) => security.check_indices(&principal, action, &path_indices()),
        Check::AllIndices(action) => {
            security.check_indices(&principal, action, &expression_indices(&node, "_all"))
        }
        Check::ClusterAndIndex(cluster, index) => security
            .check_cluster(&principal, cluster)
            .and_then(|()| security.check_indices(&principal, index, &path_indices())),
        Check::Handler(_) | Check::Authenticated => Ok(()),
    };
    match checked {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `(method, path)` the router's modules declare with `.route("path", get(..)...)`,
    /// read from their sources (axum cannot list a router's routes).
    fn declared_routes() -> Vec<(String, String)> {
        let mut files = Vec::new();
        let mut dirs = vec![std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/rest")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().map_while(Result::ok) {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("actions.rs")
                {
                    files.push(path);
                }
            }
        }
        let mut routes = Vec::new();
        for file in files {
            let source = std::fs::read_to_string(&file).unwrap();
            let mut rest = source.as_str();
            while let Some(at) = rest.find(".route(") {
                let after = &rest[at + ".route(".len()..];
                // The call's text, up to its closing parenthesis.
                let mut depth = 1;
                let end = after
                    .char_indices()
                    .find(|&(_, c)| {
                        match c {
                            '(' => depth += 1,
                            ')' => depth -= 1,
                            _ => {}
                        }
                        depth == 0
                    })
                    .map(|(i, _)| i)
                    .expect("a closed .route( call");
                let call = &after[..end];
                rest = &after[end..];
                let call = call.trim_start();
                let Some(literal) = call.strip_prefix('"') else {
                    panic!(
                        "{}: a route whose path is not a literal: {call}",
                        file.display()
                    );
                };
                let path = &literal[..literal.find('"').unwrap()];
                let methods = &literal[path.len()..];
                for (token, method) in [
                    ("get(", "GET"),
                    ("post(", "POST"),
                    ("put(", "PUT"),
                    ("delete(", "DELETE"),
                    ("head(", "HEAD"),
                ] {
                    let found = methods.match_indices(token).any(|(i, _)| {
                        i == 0 || {
                            let before = methods.as_bytes()[i - 1];
                            !(before.is_ascii_alphanumeric() || before == b'_')
                        }
                    });
                    if found {
                        routes.push((method.to_string(), path.to_string()));
                    }
                }
            }
        }
        routes
    }

    #[test]
    fn every_route_has_an_action_and_every_action_a_route() {
        let routes = declared_routes();
        assert!(
            routes.len() > 60,
            "the scan found only {} routes",
            routes.len()
        );
        let missing: Vec<_> = routes
            .iter()
            .filter(|(method, path)| check_for(&method.parse().unwrap(), path).is_none())
            .collect();
        assert!(missing.is_empty(), "routes without an action: {missing:?}");
        let stale: Vec<_> = ENDPOINTS
            .iter()
            .filter(|(method, path, _)| !routes.iter().any(|(m, p)| m == method && p == path))
            .collect();
        assert!(stale.is_empty(), "actions without a route: {stale:?}");
        // The transport's routes all live under its prefix, which maps to its action.
        assert_eq!(
            check_for(&Method::POST, tandem_transport::server::LIST_INDICES_PATH),
            Some(Check::Cluster(TRANSPORT_ACTION))
        );
    }

    #[test]
    fn the_endpoint_table_in_the_docs_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/rest-privileges.md");
        let table = endpoint_table_markdown();
        let header = "# REST endpoints, their actions and the privileges that grant them\n\n\
            With `--security`, every request is authorized before its handler runs (see \
            `node/src/rest/actions.rs`). Generated from the code: \
            `TANDEM_UPDATE_DOCS=1 cargo test -p tandem-node --lib endpoint_table` rewrites \
            this file.\n\n";
        let expected = format!("{header}{table}");
        if std::env::var_os("TANDEM_UPDATE_DOCS").is_some() {
            std::fs::write(path, &expected).unwrap();
        }
        let found = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            found == expected,
            "{path} is stale: run `TANDEM_UPDATE_DOCS=1 cargo test -p tandem-node --lib endpoint_table`"
        );
    }

    #[test]
    fn every_action_is_granted_by_some_privilege() {
        use crate::security::privileges::{cluster_privileges_granting, index_privileges_granting};
        for (method, path, check) in ENDPOINTS {
            let (cluster, index) = match check {
                Check::Cluster(action) => (Some(*action), None),
                Check::Index(action) | Check::AllIndices(action) => (None, Some(*action)),
                Check::ClusterAndIndex(cluster, index) => (Some(*cluster), Some(*index)),
                Check::Handler(_) | Check::Authenticated => (None, None),
            };
            if let Some(action) = cluster {
                assert!(
                    !cluster_privileges_granting(action).is_empty(),
                    "{method} {path}: nothing grants {action}"
                );
            }
            if let Some(action) = index {
                assert!(
                    !index_privileges_granting(action).is_empty(),
                    "{method} {path}: nothing grants {action}"
                );
            }
        }
    }
}
