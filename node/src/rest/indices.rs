//! The index APIs: create (`PUT /{index}`), delete, get and exists, `_close` and `_open`,
//! `_mapping` and `_settings` (get and update), `_refresh`, `_flush` and `_forcemerge`, with
//! Elasticsearch's request and response shapes.
//!
//! Guarantees: every engine call runs off the async runtime; a missing index is a 404
//! `index_not_found_exception` naming it; settings and mappings are validated by the engine and
//! refused with a 400 naming the culprit; a force merge obeys retention leases (the engine never
//! merges away history a follower may still need).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::{json, Map, Value};
use tandem_engine::index::{AliasAction, Index, IndexMetadata};
use tandem_engine::indices::Indices;

use super::blocking::blocking;
use super::index_expression::resolve_indices;
use super::{ok, validate_index_name, JsonBody, NodeState, Params};
use crate::error::RestError;

/// The `index.version.created` shown for every index: Elasticsearch 8.19.0's index version.
const INDEX_VERSION_CREATED: &str = "8521000";
/// Parameters of the index management endpoints that only make sense on a cluster of many
/// nodes; a single node acts at once, so they are validated and have no further effect.
const CLUSTER_WAIT_PARAMETERS: &[&str] = &["timeout", "master_timeout", "wait_for_active_shards"];

/// The routes of this module.
pub fn routes() -> Router<NodeState> {
    Router::new()
        .route(
            "/{index}",
            put(create)
                .get(get_index)
                .head(index_exists)
                .delete(delete_index),
        )
        .route("/_aliases", post(update_aliases))
        .route("/{index}/_alias", get(get_aliases))
        .route("/{index}/_close", post(close))
        .route("/{index}/_open", post(open))
        .route(
            "/{index}/_mapping",
            get(get_mapping).put(put_mapping).post(put_mapping),
        )
        .route("/{index}/_settings", get(get_settings).put(put_settings))
        .route("/_refresh", post(refresh_all).get(refresh_all))
        .route("/{index}/_refresh", post(refresh).get(refresh))
        .route("/_flush", post(flush_all).get(flush_all))
        .route("/{index}/_flush", post(flush).get(flush))
        .route("/_forcemerge", post(force_merge_all))
        .route("/{index}/_forcemerge", post(force_merge))
}

/// Validates the cluster wait parameters (see [`CLUSTER_WAIT_PARAMETERS`]).
fn check_cluster_wait(params: &Params, extra: &[&str]) -> Result<(), RestError> {
    let allowed: Vec<&str> = CLUSTER_WAIT_PARAMETERS
        .iter()
        .chain(extra)
        .copied()
        .collect();
    params.allow(&allowed)?;
    params.time("timeout")?;
    params.time("master_timeout")?;
    check_active_shards(params)
}

/// `wait_for_active_shards`: a node holds one copy of each shard, so `all`, `0` and `1` are met
/// at once and anything more never would be.
pub fn check_active_shards(params: &Params) -> Result<(), RestError> {
    match params.get("wait_for_active_shards") {
        None | Some("all") => Ok(()),
        Some(count) if count.parse::<u32>().is_ok_and(|count| count <= 1) => Ok(()),
        Some(other) => Err(RestError::illegal_argument(format!(
            "wait_for_active_shards [{other}] cannot be met: a Tandem node holds one copy of each shard"
        ))),
    }
}

/// `{"total": n, "successful": n, "failed": 0}` for `n` shards.
pub fn shards_header(total: usize) -> Value {
    json!({ "total": total, "successful": total, "failed": 0 })
}

async fn create(
    State(node): State<NodeState>,
    Path(name): Path<String>,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, RestError> {
    check_cluster_wait(&params, &[])?;
    validate_index_name(&name)?;
    let body = body.unwrap_or_else(|| json!({}));
    let Some(object) = body.as_object() else {
        return Err(RestError::parse(
            "the create index body must be a JSON object",
        ));
    };
    let empty = json!({});
    for (key, value) in object {
        match key.as_str() {
            "settings" | "mappings" => {}
            "aliases" if value.is_object() => {}
            "aliases" => {
                return Err(RestError::parse(
                    "[aliases] of create index must be an object",
                ))
            }
            other => {
                return Err(RestError::parse(format!(
                    "unknown key [{other}] for create index"
                )))
            }
        }
    }
    let settings = object.get("settings").unwrap_or(&empty).clone();
    let mappings = object.get("mappings").unwrap_or(&empty).clone();
    let aliases: Vec<AliasAction> = object
        .get("aliases")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(alias, body)| AliasAction::Add {
            alias: alias.clone(),
            body: body.clone(),
        })
        .collect();
    // Checked before the index exists, so that a bad alias does not leave it half created.
    for action in &aliases {
        if let AliasAction::Add { alias, body } = action {
            validate_index_name(alias)?;
            if !body.is_object() {
                return Err(RestError::parse(format!(
                    "alias [{alias}] must be an object"
                )));
            }
        }
    }
    let indices = node.indices.clone();
    let created = name.clone();
    blocking(move || {
        indices.create(&created, &settings, &mappings)?;
        if !aliases.is_empty() {
            indices.get(&created)?.update_aliases(&aliases)?;
        }
        Ok(())
    })
    .await?;
    Ok(ok(json!({
        "acknowledged": true,
        "shards_acknowledged": true,
        "index": name,
    })))
}

/// The settings of an index as `GET /{index}/_settings` shows them (nested form).
pub fn settings_json(metadata: &IndexMetadata) -> Value {
    let mut settings = metadata.settings.to_es_json();
    if let Some(index) = settings.get_mut("index").and_then(Value::as_object_mut) {
        index.insert("uuid".into(), json!(metadata.uuid));
        index.insert("provided_name".into(), json!(metadata.name));
        index.insert(
            "creation_date".into(),
            json!(metadata.creation_date_millis.to_string()),
        );
        index.insert(
            "version".into(),
            json!({ "created": INDEX_VERSION_CREATED }),
        );
    }
    settings
}

/// Nested settings to Elasticsearch's `flat_settings=true` form (`"index.uuid": "…"`).
fn flatten_settings(prefix: &str, value: &Value, out: &mut Map<String, Value>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_settings(&key, child, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn shown_settings(metadata: &IndexMetadata, flat: bool) -> Value {
    let settings = settings_json(metadata);
    if !flat {
        return settings;
    }
    let mut out = Map::new();
    flatten_settings("", &settings, &mut out);
    Value::Object(out)
}

/// The metadata of every index `expression` designates, in order.
fn metadata_of(indices: &Indices, expression: &str) -> Result<Vec<IndexMetadata>, RestError> {
    resolve_indices(indices, expression)?
        .iter()
        .map(|name| indices.metadata(name).map_err(RestError::from))
        .collect()
}

async fn get_index(
    State(node): State<NodeState>,
    Path(expression): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["flat_settings", "master_timeout"])?;
    params.time("master_timeout")?;
    let flat = params.flag("flat_settings", false)?;
    let mut answer = Map::new();
    for metadata in metadata_of(&node.indices, &expression)? {
        answer.insert(
            metadata.name.clone(),
            json!({
                "aliases": metadata.aliases,
                "mappings": metadata.mappings.to_es_json(),
                "settings": shown_settings(&metadata, flat),
            }),
        );
    }
    Ok(ok(Value::Object(answer)))
}

/// `POST /_aliases`: `{"actions": [{"add": {"index": i, "alias": a, ...}}, {"remove": {...}}]}`.
/// Actions are grouped per index and each index applies its group atomically; every action is
/// checked before any index changes.
async fn update_aliases(
    State(node): State<NodeState>,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, RestError> {
    check_cluster_wait(&params, &[])?;
    let body = body.ok_or_else(|| RestError::parse("request body is required"))?;
    let actions = body
        .get("actions")
        .and_then(Value::as_array)
        .ok_or_else(|| RestError::parse("[aliases] requires an [actions] array"))?;
    let mut per_index: std::collections::BTreeMap<String, Vec<AliasAction>> = Default::default();
    for action in actions {
        let (kind, spec) = match action
            .as_object()
            .map(|object| object.iter().collect::<Vec<_>>())
        {
            Some(entries) if entries.len() == 1 => entries[0],
            _ => {
                return Err(RestError::parse(
                    "each alias action must be an object with exactly one of [add, remove]",
                ))
            }
        };
        let spec = spec
            .as_object()
            .ok_or_else(|| RestError::parse(format!("[{kind}] must be an object")))?;
        let field = |name: &str| -> Result<String, RestError> {
            spec.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| RestError::illegal_argument(format!("[{kind}] requires [{name}]")))
        };
        let index = field("index")?;
        let alias = field("alias")?;
        let action = match kind.as_str() {
            "add" => {
                validate_index_name(&alias)?;
                let mut body = spec.clone();
                body.remove("index");
                body.remove("alias");
                AliasAction::Add {
                    alias,
                    body: Value::Object(body),
                }
            }
            "remove" => AliasAction::Remove { alias },
            other => {
                return Err(RestError::parse(format!(
                    "unknown alias action [{other}], expected one of [add, remove]"
                )))
            }
        };
        per_index.entry(index).or_default().push(action);
    }
    let indices = node.indices.clone();
    blocking(move || {
        let targets = per_index
            .into_iter()
            .map(|(name, actions)| Ok((indices.get(&name)?, actions)))
            .collect::<Result<Vec<_>, RestError>>()?;
        for (index, actions) in targets {
            index.update_aliases(&actions)?;
        }
        Ok(())
    })
    .await?;
    Ok(ok(json!({ "acknowledged": true, "errors": false })))
}

/// `GET /{index}/_alias`: the aliases of each designated index.
async fn get_aliases(
    State(node): State<NodeState>,
    Path(expression): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["master_timeout"])?;
    let mut answer = Map::new();
    for metadata in metadata_of(&node.indices, &expression)? {
        answer.insert(
            metadata.name.clone(),
            json!({ "aliases": metadata.aliases }),
        );
    }
    Ok(ok(Value::Object(answer)))
}

async fn index_exists(
    State(node): State<NodeState>,
    Path(expression): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["master_timeout"])?;
    // A wildcard that matches nothing does not exist either.
    let status = match resolve_indices(&node.indices, &expression) {
        Ok(names) if !names.is_empty() => StatusCode::OK,
        _ => StatusCode::NOT_FOUND,
    };
    Ok(status.into_response())
}

/// Concrete names only: deleting by wildcard is refused, as with Elasticsearch's default
/// `action.destructive_requires_name: true`.
fn concrete_names(indices: &Indices, expression: &str) -> Result<Vec<String>, RestError> {
    if expression.contains('*') || expression.split(',').any(|part| part.trim() == "_all") {
        return Err(RestError::illegal_argument(
            "Wildcard expressions or all indices are not allowed",
        ));
    }
    resolve_indices(indices, expression)
}

async fn delete_index(
    State(node): State<NodeState>,
    Path(expression): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    check_cluster_wait(&params, &[])?;
    // A follower index whose remote recovery has not completed is deleted by cancelling the
    // recovery (which removes its files and its leases on the leader).
    let mut rest = Vec::new();
    for name in expression.split(',') {
        if !node.followers.cancel_recovery(name.trim()).await {
            rest.push(name);
        }
    }
    if rest.is_empty() {
        return Ok(ok(json!({ "acknowledged": true })));
    }
    let expression = rest.join(",");
    let indices = node.indices.clone();
    let names = blocking(move || concrete_names(&indices, &expression)).await?;
    for name in names {
        // A follower's tasks stop before its engine goes away; its follow state goes after.
        node.followers.index_closing(&name).await;
        let indices = node.indices.clone();
        let deleted = {
            let name = name.clone();
            blocking(move || Ok(indices.delete(&name)?)).await
        };
        if let Err(error) = deleted {
            // Still there (the delete was refused): a follower resumes following.
            if node.indices.metadata(&name).is_ok() {
                if let Err(restart) = node.followers.index_opened(&name).await {
                    tracing::warn!(index = %name, %restart, "cannot restart following after a failed delete");
                }
            }
            return Err(error);
        }
        node.followers.index_deleted(&name).await?;
    }
    Ok(ok(json!({ "acknowledged": true })))
}

async fn close(
    State(node): State<NodeState>,
    Path(expression): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    check_cluster_wait(&params, &[])?;
    // Only a delete stops a remote recovery: closing a recovering follower is refused.
    for name in expression.split(',') {
        node.followers.check_not_recovering(name.trim())?;
    }
    let indices = node.indices.clone();
    let names = blocking(move || concrete_names(&indices, &expression)).await?;
    let mut closed = Map::new();
    for name in names {
        // A following index stays following: its tasks stop while it is closed.
        node.followers.index_closing(&name).await;
        let indices = node.indices.clone();
        let closing = name.clone();
        if let Err(error) = blocking(move || Ok(indices.close_index(&closing)?)).await {
            if let Err(restart) = node.followers.index_opened(&name).await {
                tracing::warn!(index = %name, %restart, "cannot restart following after a failed close");
            }
            return Err(error);
        }
        closed.insert(name, json!({ "closed": true }));
    }
    Ok(ok(json!({
        "acknowledged": true,
        "shards_acknowledged": true,
        "indices": closed,
    })))
}

async fn open(
    State(node): State<NodeState>,
    Path(expression): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    check_cluster_wait(&params, &[])?;
    let indices = node.indices.clone();
    let names = blocking(move || concrete_names(&indices, &expression)).await?;
    for name in names {
        // An index whose failback has not completed stays closed until it does.
        node.followers.check_not_failing_back(&name).await?;
        let indices = node.indices.clone();
        let opening = name.clone();
        blocking(move || Ok(indices.open_index(&opening)?)).await?;
        node.followers.index_opened(&name).await?;
    }
    Ok(ok(
        json!({ "acknowledged": true, "shards_acknowledged": true }),
    ))
}

async fn get_mapping(
    State(node): State<NodeState>,
    Path(expression): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["master_timeout"])?;
    params.time("master_timeout")?;
    let mut answer = Map::new();
    for metadata in metadata_of(&node.indices, &expression)? {
        answer.insert(
            metadata.name.clone(),
            json!({ "mappings": metadata.mappings.to_es_json() }),
        );
    }
    Ok(ok(Value::Object(answer)))
}

/// The open indices `expression` designates (a named closed index is a 400
/// `index_closed_exception`).
fn open_indices(indices: &Indices, expression: &str) -> Result<Vec<Arc<Index>>, RestError> {
    resolve_indices(indices, expression)?
        .iter()
        .map(|name| indices.get(name).map_err(RestError::from))
        .collect()
}

async fn put_mapping(
    State(node): State<NodeState>,
    Path(expression): Path<String>,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, RestError> {
    check_cluster_wait(&params, &[])?;
    let Some(body) = body else {
        return Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            "Validation Failed: 1: mapping source is missing;",
        ));
    };
    let indices = node.indices.clone();
    blocking(move || {
        for index in open_indices(&indices, &expression)? {
            index.put_mapping(&body)?;
        }
        Ok(())
    })
    .await?;
    Ok(ok(json!({ "acknowledged": true })))
}

async fn get_settings(
    State(node): State<NodeState>,
    Path(expression): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["flat_settings", "master_timeout"])?;
    params.time("master_timeout")?;
    let flat = params.flag("flat_settings", false)?;
    let mut answer = Map::new();
    for metadata in metadata_of(&node.indices, &expression)? {
        answer.insert(
            metadata.name.clone(),
            json!({ "settings": shown_settings(&metadata, flat) }),
        );
    }
    Ok(ok(Value::Object(answer)))
}

async fn put_settings(
    State(node): State<NodeState>,
    Path(expression): Path<String>,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, RestError> {
    check_cluster_wait(&params, &["preserve_existing"])?;
    if params.flag("preserve_existing", false)? {
        return Err(RestError::illegal_argument(
            "preserve_existing is not supported by Tandem",
        ));
    }
    let Some(mut body) = body else {
        return Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            "Validation Failed: 1: no settings to update;",
        ));
    };
    // `{"settings": {...}}` is accepted as well as the settings themselves.
    if let Some(inner) = body
        .as_object_mut()
        .filter(|object| object.len() == 1)
        .and_then(|object| object.remove("settings"))
    {
        body = inner;
    }
    let indices = node.indices.clone();
    blocking(move || {
        for index in open_indices(&indices, &expression)? {
            index.update_settings(&body)?;
        }
        Ok(())
    })
    .await?;
    Ok(ok(json!({ "acknowledged": true })))
}

/// Runs `action` on every open index of `expression` and answers the shard header.
async fn on_every_shard(
    node: NodeState,
    expression: String,
    action: fn(&Index) -> Result<(), RestError>,
) -> Result<Response, RestError> {
    let indices = node.indices.clone();
    let shards = blocking(move || {
        let mut shards = 0;
        for index in open_indices(&indices, &expression)? {
            action(&index)?;
            shards += index.shards().len();
        }
        Ok(shards)
    })
    .await?;
    Ok(ok(json!({ "_shards": shards_header(shards) })))
}

fn refresh_index(index: &Index) -> Result<(), RestError> {
    Ok(index.refresh()?)
}

fn flush_index(index: &Index) -> Result<(), RestError> {
    Ok(index.flush()?)
}

async fn refresh_all(State(node): State<NodeState>, params: Params) -> Result<Response, RestError> {
    params.allow(&[])?;
    on_every_shard(node, "_all".to_string(), refresh_index).await
}

async fn refresh(
    State(node): State<NodeState>,
    Path(expression): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&[])?;
    on_every_shard(node, expression, refresh_index).await
}

/// Validates the flush parameters: a flush always commits and waits.
fn check_flush(params: &Params) -> Result<(), RestError> {
    params.allow(&["force", "wait_if_ongoing"])?;
    params.flag("force", false)?;
    if !params.flag("wait_if_ongoing", true)? {
        return Err(RestError::illegal_argument(
            "wait_if_ongoing=false is not supported by Tandem: a flush waits for the commit",
        ));
    }
    Ok(())
}

async fn flush_all(State(node): State<NodeState>, params: Params) -> Result<Response, RestError> {
    check_flush(&params)?;
    on_every_shard(node, "_all".to_string(), flush_index).await
}

async fn flush(
    State(node): State<NodeState>,
    Path(expression): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    check_flush(&params)?;
    on_every_shard(node, expression, flush_index).await
}

/// The segment count a force merge aims at: `max_num_segments`, or (without it, or with
/// `only_expunge_deletes`) as many as there are, which rewrites only segments holding deleted
/// documents that retention lets go.
fn force_merge_target(params: &Params) -> Result<usize, RestError> {
    params.allow(&[
        "max_num_segments",
        "only_expunge_deletes",
        "flush",
        "wait_for_completion",
    ])?;
    params.flag("flush", true)?;
    if !params.flag("wait_for_completion", true)? {
        return Err(RestError::illegal_argument(
            "wait_for_completion=false is not supported by Tandem",
        ));
    }
    let expunge = params.flag("only_expunge_deletes", false)?;
    match params.number("max_num_segments")? {
        Some(_) if expunge => Err(RestError::new(
            StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            "Validation Failed: 1: cannot set only_expunge_deletes and max_num_segments at the same time;",
        )),
        Some(0) => Err(RestError::illegal_argument(
            "max_num_segments must be at least 1",
        )),
        Some(count) => Ok(usize::try_from(count).unwrap_or(usize::MAX)),
        None => Ok(usize::MAX),
    }
}

async fn run_force_merge(
    node: NodeState,
    expression: String,
    segments: usize,
) -> Result<Response, RestError> {
    let indices = node.indices.clone();
    let shards = blocking(move || {
        let mut shards = 0;
        for index in open_indices(&indices, &expression)? {
            index.force_merge(segments)?;
            shards += index.shards().len();
        }
        Ok(shards)
    })
    .await?;
    Ok(ok(json!({ "_shards": shards_header(shards) })))
}

async fn force_merge_all(
    State(node): State<NodeState>,
    params: Params,
) -> Result<Response, RestError> {
    let segments = force_merge_target(&params)?;
    run_force_merge(node, "_all".to_string(), segments).await
}

async fn force_merge(
    State(node): State<NodeState>,
    Path(expression): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    let segments = force_merge_target(&params)?;
    run_force_merge(node, expression, segments).await
}
