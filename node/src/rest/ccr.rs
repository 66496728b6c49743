//! The `_ccr` endpoints (DESIGN.md §6) with Elasticsearch's request and response shapes, over
//! the node's [`FollowerIndices`](tandem_replication::follower_indices::FollowerIndices) and
//! [`AutoFollowCoordinator`](tandem_replication::auto_follow::AutoFollowCoordinator):
//! follow, pause, resume, unfollow, forget-follower, stats, info and auto-follow patterns.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::{json, Map, Value};
use tandem_engine::SeqNo;
use tandem_replication::auto_follow::AutoFollowPattern;
use tandem_replication::error::CcrError;
use tandem_replication::follower_indices::{
    FailbackRequest, FollowRequest, PromoteRequest, DEFAULT_PROMOTION_RETENTION_PERIOD,
};
use tandem_replication::leader::{forget_follower, ForgetFollowerRequest};
use tandem_replication::params::FollowParameters;

use super::{ok, validate_index_name, JsonBody, NodeState, Params};
use crate::error::RestError;

/// Keys of a follow request body besides the follow parameters.
const FOLLOW_KEYS: &[&str] = &[
    "remote_cluster",
    "leader_index",
    "settings",
    "data_stream_name",
];
/// Keys of an auto-follow pattern body besides the follow parameters.
const PATTERN_KEYS: &[&str] = &[
    "remote_cluster",
    "leader_index_patterns",
    "leader_index_exclusion_patterns",
    "follow_index_pattern",
    "settings",
];
/// The follow parameters' keys.
const PARAMETER_KEYS: &[&str] = &[
    "max_read_request_operation_count",
    "max_outstanding_read_requests",
    "max_read_request_size",
    "max_write_request_operation_count",
    "max_write_request_size",
    "max_outstanding_write_requests",
    "max_write_buffer_count",
    "max_write_buffer_size",
    "max_retry_delay",
    "read_poll_timeout",
];

/// The routes of this module.
pub fn routes() -> Router<NodeState> {
    Router::new()
        .route("/{index}/_ccr/follow", put(follow))
        .route("/{index}/_ccr/pause_follow", post(pause_follow))
        .route("/{index}/_ccr/resume_follow", post(resume_follow))
        .route("/{index}/_ccr/unfollow", post(unfollow))
        .route("/{index}/_ccr/promote", post(promote))
        .route("/{index}/_ccr/failback", post(failback))
        .route("/{index}/_ccr/forget_follower", post(forget))
        .route("/{index}/_ccr/stats", get(index_stats))
        .route("/{index}/_ccr/info", get(info))
        .route("/{index}/_ccr/verify", post(verify))
        .route("/_ccr/stats", get(stats))
        .route("/_ccr/auto_follow", get(get_all_patterns))
        .route(
            "/_ccr/auto_follow/{name}",
            put(put_pattern).get(get_pattern).delete(delete_pattern),
        )
        .route("/_ccr/auto_follow/{name}/pause", post(pause_pattern))
        .route("/_ccr/auto_follow/{name}/resume", post(resume_pattern))
}

/// The body as an object (`{}` when absent); anything else is a parse error.
fn object(body: JsonBody, request: &str) -> Result<Map<String, Value>, RestError> {
    match body.or_empty() {
        Value::Object(map) => Ok(map),
        _ => Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "x_content_parse_exception",
            format!("[{request}] expected an object body"),
        )),
    }
}

/// Refuses a key outside `known` (and the follow parameters), as Elasticsearch's parsers do.
fn check_keys(body: &Map<String, Value>, known: &[&str], request: &str) -> Result<(), RestError> {
    match body
        .keys()
        .find(|key| !known.contains(&key.as_str()) && !PARAMETER_KEYS.contains(&key.as_str()))
    {
        Some(key) => Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "x_content_parse_exception",
            format!("[{request}] unknown field [{key}]"),
        )),
        None => Ok(()),
    }
}

fn required_string(body: &Map<String, Value>, key: &str) -> Result<String, RestError> {
    match body.get(key) {
        Some(Value::String(value)) if !value.is_empty() => Ok(value.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            format!("Validation Failed: 1: [{key}] is missing;"),
        )),
        Some(_) => Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "x_content_parse_exception",
            format!("[{key}] must be a string"),
        )),
    }
}

fn parameters(body: &Map<String, Value>) -> Result<FollowParameters, RestError> {
    let parameters = FollowParameters::from_es_json(body)
        .map_err(|error| RestError::from(CcrError::from(error)))?;
    parameters
        .validate()
        .map_err(|error| RestError::from(CcrError::from(error)))?;
    Ok(parameters)
}

/// `wait_for_active_shards`: absent or `0` returns before recovery; `all` or a positive count
/// waits (one node holds one copy of every shard).
fn wait_for_active_shards(params: &Params) -> Result<bool, RestError> {
    match params.get("wait_for_active_shards") {
        None => Ok(false),
        Some("all") => Ok(true),
        Some(value) => match value.parse::<i64>() {
            Ok(0) => Ok(false),
            Ok(count) if count >= 1 => Ok(true),
            _ => Err(RestError::illegal_argument(format!(
                "invalid wait_for_active_shards value [{value}]: a non-negative count or [all]"
            ))),
        },
    }
}

async fn follow(
    State(node): State<NodeState>,
    Path(index): Path<String>,
    params: Params,
    body: JsonBody,
) -> Result<Response, RestError> {
    params.allow(&["wait_for_active_shards", "master_timeout"])?;
    validate_index_name(&index)?;
    let body = object(body, "put_follow_request")?;
    check_keys(&body, FOLLOW_KEYS, "put_follow_request")?;
    if body.contains_key("data_stream_name") {
        return Err(RestError::illegal_argument(
            "data streams are not supported: [data_stream_name] cannot be set",
        ));
    }
    let request = FollowRequest {
        remote_cluster: required_string(&body, "remote_cluster")?,
        leader_index: required_string(&body, "leader_index")?,
        follower_index: index,
        parameters: parameters(&body)?,
        wait_for_active_shards: wait_for_active_shards(&params)?,
        settings: body.get("settings").cloned().unwrap_or(Value::Null),
    };
    let response = node.followers.follow(request).await?;
    Ok(ok(serde_json::to_value(response).unwrap_or_default()))
}

/// Elasticsearch checks that the index exists before that it follows: "not a follower" of an
/// index that does not exist is a 404 `index_not_found_exception`.
fn missing_or(node: &NodeState, error: CcrError) -> RestError {
    match error {
        CcrError::NotAFollower(name) if node.indices.metadata(&name).is_err() => {
            RestError::index_not_found(&name)
        }
        other => other.into(),
    }
}

async fn pause_follow(
    State(node): State<NodeState>,
    Path(index): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["master_timeout"])?;
    node.followers
        .pause(&index)
        .await
        .map_err(|error| missing_or(&node, error))?;
    Ok(ok(json!({"acknowledged": true})))
}

async fn resume_follow(
    State(node): State<NodeState>,
    Path(index): Path<String>,
    params: Params,
    body: JsonBody,
) -> Result<Response, RestError> {
    params.allow(&["master_timeout"])?;
    let body = object(body, "resume_follow_request")?;
    check_keys(&body, &[], "resume_follow_request")?;
    node.followers
        .resume(&index, parameters(&body)?)
        .await
        .map_err(|error| missing_or(&node, error))?;
    Ok(ok(json!({"acknowledged": true})))
}

async fn unfollow(
    State(node): State<NodeState>,
    Path(index): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["master_timeout"])?;
    let not_removed = node
        .followers
        .unfollow(&index)
        .await
        .map_err(|error| missing_or(&node, error))?;
    let mut answer = json!({"acknowledged": true});
    if !not_removed.is_empty() {
        // The index is converted whatever happened on the leader; the leases left there
        // expire after their period, or go with a forget_follower on the leader.
        answer["retention_leases_not_removed"] = json!(not_removed);
    }
    Ok(ok(answer))
}

/// `POST /{index}/_ccr/promote` (a Tandem extension): pause, stop, convert and open in one
/// durable call; the answer gives each shard's recovery point (see
/// [`FollowerIndices::promote`](tandem_replication::follower_indices::FollowerIndices::promote)).
/// Body (optional): `retention_period`, how long the promoted index keeps its history above
/// the recovery point for a failback (default 12h).
async fn promote(
    State(node): State<NodeState>,
    Path(index): Path<String>,
    params: Params,
    body: JsonBody,
) -> Result<Response, RestError> {
    params.allow(&["master_timeout"])?;
    let body = object(body, "promote_request")?;
    check_keys(&body, &["retention_period"], "promote_request")?;
    let retention_period = match body.get("retention_period") {
        None | Some(Value::Null) => DEFAULT_PROMOTION_RETENTION_PERIOD,
        Some(value) => {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            match tandem_engine::units::parse_time_millis(&text) {
                Some(millis) if millis > 0 => std::time::Duration::from_millis(millis),
                _ => {
                    return Err(RestError::illegal_argument(format!(
                        "failed to parse [retention_period] with value [{text}]: a positive \
                         time value such as [12h] is expected"
                    )))
                }
            }
        }
    };
    let promoted = node
        .followers
        .promote(PromoteRequest {
            follower_index: index,
            retention_period,
        })
        .await
        .map_err(|error| missing_or(&node, error))?;
    Ok(ok(json!({
        "acknowledged": true,
        "index": promoted.index,
        "shards": promoted.shards,
    })))
}

/// `POST /{index}/_ccr/failback` (a Tandem extension) on the old leader of a promoted index:
/// `remote_cluster` and `leader_index` name the promoted index, and the follow parameters
/// may be given as for a follow. The index becomes its follower without a copy of what both
/// hold; the answer names, per shard, the shared point and the file of the writes the
/// promoted index never received (see
/// [`FollowerIndices::failback`](tandem_replication::follower_indices::FollowerIndices::failback)).
async fn failback(
    State(node): State<NodeState>,
    Path(index): Path<String>,
    params: Params,
    body: JsonBody,
) -> Result<Response, RestError> {
    params.allow(&["master_timeout"])?;
    let body = object(body, "failback_request")?;
    let known: Vec<&str> = ["remote_cluster", "leader_index", "allow_full_recovery"]
        .iter()
        .chain(PARAMETER_KEYS)
        .copied()
        .collect();
    check_keys(&body, &known, "failback_request")?;
    let request = FailbackRequest {
        index,
        remote_cluster: required_string(&body, "remote_cluster")?,
        leader_index: required_string(&body, "leader_index")?,
        parameters: parameters(&body)?,
        allow_full_recovery: match body.get("allow_full_recovery") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(allowed)) => *allowed,
            Some(Value::String(text)) if text == "true" || text == "false" => text == "true",
            Some(other) => {
                return Err(RestError::illegal_argument(format!(
                    "[allow_full_recovery] must be a boolean, got [{other}]"
                )))
            }
        },
    };
    let response = node.followers.failback(request).await?;
    let divergent: u64 = response
        .shards
        .iter()
        .map(|shard| shard.divergent_operations)
        .sum();
    Ok(ok(json!({
        "acknowledged": true,
        "index": response.index,
        "remote_cluster": response.remote_cluster,
        "leader_index": response.leader_index,
        "full_recovery": response.full_recovery,
        "divergent_operations": divergent,
        "shards": response.shards,
    })))
}

async fn forget(
    State(node): State<NodeState>,
    Path(index): Path<String>,
    params: Params,
    body: JsonBody,
) -> Result<Response, RestError> {
    params.allow(&["timeout"])?;
    let body = object(body, "forget_follower_request")?;
    let known = [
        "follower_cluster",
        "follower_index",
        "follower_index_uuid",
        "leader_remote_cluster",
    ];
    if let Some(key) = body.keys().find(|key| !known.contains(&key.as_str())) {
        return Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "x_content_parse_exception",
            format!("[forget_follower_request] unknown field [{key}]"),
        ));
    }
    let request = ForgetFollowerRequest {
        follower_cluster: required_string(&body, "follower_cluster")?,
        follower_index: required_string(&body, "follower_index")?,
        follower_index_uuid: required_string(&body, "follower_index_uuid")?,
        leader_remote_cluster: required_string(&body, "leader_remote_cluster")?,
    };
    let leader = node.indices.get(&index)?;
    let response = tokio::task::spawn_blocking(move || forget_follower(&leader, &request))
        .await
        .map_err(|e| {
            RestError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "exception",
                e.to_string(),
            )
        })?;
    Ok(ok(json!({"_shards": response})))
}

async fn index_stats(
    State(node): State<NodeState>,
    Path(index): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["timeout"])?;
    let names: Vec<&str> = index.split(',').collect();
    if let ["_all" | "*"] = names.as_slice() {
        return Ok(ok(json!({"indices": node.followers.stats(None).await?})));
    }
    let mut indices = Vec::new();
    for name in &names {
        let wanted = (*name != "_all" && *name != "*").then_some(*name);
        match node.followers.stats(wanted).await {
            Ok(stats) => indices.extend(stats),
            Err(CcrError::NotAFollower(_)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    // As Elasticsearch: naming only indices without shard follow tasks (missing, not
    // followers, or paused) is a 404; naming some with tasks lists those.
    if indices.is_empty() {
        return Err(RestError::new(
            StatusCode::NOT_FOUND,
            "resource_not_found_exception",
            format!("No shard follow tasks for follower indices [{index}]"),
        ));
    }
    Ok(ok(json!({"indices": indices})))
}

/// `POST /{index}/_ccr/verify[?up_to_seq_no=N]` (a Tandem extension): proves the follower
/// index holds what its leader holds, shard by shard, or names the first difference.
async fn verify(
    State(node): State<NodeState>,
    Path(index): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["up_to_seq_no"])?;
    let up_to = match params.number("up_to_seq_no")? {
        Some(value) => Some(SeqNo(i64::try_from(value).map_err(|_| {
            RestError::illegal_argument(format!("up_to_seq_no [{value}] is out of range"))
        })?)),
        None => None,
    };
    let verification = node
        .followers
        .verify(&index, up_to)
        .await
        .map_err(|error| missing_or(&node, error))?;
    Ok(ok(json!(verification)))
}

async fn stats(State(node): State<NodeState>, params: Params) -> Result<Response, RestError> {
    params.allow(&["timeout", "master_timeout"])?;
    let follow_stats = node.followers.stats(None).await?;
    Ok(ok(json!({
        "auto_follow_stats": node.auto_follow.stats(),
        "follow_stats": {
            "indices": follow_stats,
            // Tandem: leases of ended follows still to be removed from their leader.
            "pending_retention_lease_removals": node.followers.pending_lease_removals().len(),
        },
    })))
}

async fn info(
    State(node): State<NodeState>,
    Path(index): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["master_timeout"])?;
    let wanted = (index != "_all" && index != "*").then_some(index.as_str());
    let followers = match node.followers.info(wanted).await {
        Ok(followers) => followers,
        // Elasticsearch lists nothing for an index that exists but does not follow.
        Err(CcrError::NotAFollower(name)) => {
            if node.indices.metadata(&name).is_err() {
                return Err(RestError::index_not_found(&name));
            }
            Vec::new()
        }
        Err(error) => return Err(error.into()),
    };
    let rendered: Vec<Value> = followers.iter().map(|f| f.to_es_json()).collect();
    Ok(ok(json!({"follower_indices": rendered})))
}

fn pattern_from_body(body: Map<String, Value>) -> Result<AutoFollowPattern, RestError> {
    check_keys(&body, PATTERN_KEYS, "auto_follow_pattern")?;
    let strings = |key: &str| -> Result<Vec<String>, RestError> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(one)) => Ok(vec![one.clone()]),
            Some(Value::Array(values)) => values
                .iter()
                .map(|value| {
                    value.as_str().map(str::to_string).ok_or_else(|| {
                        RestError::parse(format!("[{key}] must be a list of strings"))
                    })
                })
                .collect(),
            Some(_) => Err(RestError::parse(format!(
                "[{key}] must be a list of strings"
            ))),
        }
    };
    let settings = match body.get("settings") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(settings)) => settings.clone(),
        Some(_) => return Err(RestError::parse("[settings] must be an object")),
    };
    let follow_index_pattern = match body.get("follow_index_pattern") {
        None | Some(Value::Null) => None,
        Some(Value::String(pattern)) => Some(pattern.clone()),
        Some(_) => return Err(RestError::parse("[follow_index_pattern] must be a string")),
    };
    let parameters: Map<String, Value> = body
        .iter()
        .filter(|(key, _)| PARAMETER_KEYS.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    Ok(AutoFollowPattern {
        remote_cluster: required_string(&body, "remote_cluster")?,
        leader_index_patterns: strings("leader_index_patterns")?,
        leader_index_exclusion_patterns: strings("leader_index_exclusion_patterns")?,
        follow_index_pattern,
        parameters,
        settings,
    })
}

async fn put_pattern(
    State(node): State<NodeState>,
    Path(name): Path<String>,
    params: Params,
    body: JsonBody,
) -> Result<Response, RestError> {
    params.allow(&["master_timeout"])?;
    let pattern = pattern_from_body(object(body, "auto_follow_pattern")?)?;
    node.auto_follow.put_pattern(&name, pattern).await?;
    Ok(ok(json!({"acknowledged": true})))
}

fn render_pattern(name: &str, pattern: &AutoFollowPattern, active: bool) -> Value {
    let mut rendered = Map::new();
    rendered.insert("active".into(), json!(active));
    rendered.insert("remote_cluster".into(), json!(pattern.remote_cluster));
    rendered.insert(
        "leader_index_patterns".into(),
        json!(pattern.leader_index_patterns),
    );
    rendered.insert(
        "leader_index_exclusion_patterns".into(),
        json!(pattern.leader_index_exclusion_patterns),
    );
    if let Some(follow_index_pattern) = &pattern.follow_index_pattern {
        rendered.insert("follow_index_pattern".into(), json!(follow_index_pattern));
    }
    rendered.insert("settings".into(), Value::Object(pattern.settings.clone()));
    rendered.extend(pattern.parameters.clone());
    json!({"name": name, "pattern": rendered})
}

async fn list_patterns(node: &NodeState, name: Option<&str>) -> Result<Response, RestError> {
    let patterns = node.auto_follow.get_patterns(name).await?;
    let rendered: Vec<Value> = patterns
        .iter()
        .map(|(name, pattern, active)| render_pattern(name, pattern, *active))
        .collect();
    Ok(ok(json!({"patterns": rendered})))
}

async fn get_all_patterns(
    State(node): State<NodeState>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["master_timeout"])?;
    list_patterns(&node, None).await
}

async fn get_pattern(
    State(node): State<NodeState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["master_timeout"])?;
    list_patterns(&node, Some(&name)).await
}

async fn delete_pattern(
    State(node): State<NodeState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["master_timeout"])?;
    node.auto_follow.delete_pattern(&name).await?;
    Ok(ok(json!({"acknowledged": true})))
}

async fn pause_pattern(
    State(node): State<NodeState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["master_timeout"])?;
    node.auto_follow.set_active(&name, false).await?;
    Ok(ok(json!({"acknowledged": true})))
}

async fn resume_pattern(
    State(node): State<NodeState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["master_timeout"])?;
    node.auto_follow.set_active(&name, true).await?;
    Ok(ok(json!({"acknowledged": true})))
}
