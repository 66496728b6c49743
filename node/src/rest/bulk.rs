//! `POST /_bulk` and `POST /{index}/_bulk`: many writes in one ndjson request (`index`,
//! `create`, `delete` and `update` actions), answered item by item in request order.
//!
//! Guarantees: the whole request is parsed before anything is written, so a malformed line is
//! a 400 for the whole request (as in Elasticsearch) and nothing is applied; consecutive
//! index/create/delete items of one index go to the engine as one bulk (one durable group
//! commit per shard); an update is a read-merge-conditional write of its own; an item's failure
//! (conflict, bad document, follower index) is reported in its item and does not stop the
//! others.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use serde_json::{json, Map, Value};
use tandem_engine::index::Index;
use tandem_engine::indices::Indices;
use tandem_engine::shard::{DeleteRequest, IndexRequest, WriteRequest, WriteResult};
use tandem_engine::strict_json;
use tandem_engine::{PrimaryTerm, SeqNo};

use super::blocking::blocking;
use super::body::RawBody;
use super::documents::{
    apply_update, automatic_id, check_id, concurrency, document_error, index_for_write,
    refuse_unsupported, update_json, write_json, write_status, RefreshPolicy, UpdateSpec,
    MAX_RETRY_ON_CONFLICT,
};
use super::{ok, NodeState, Params};
use crate::error::RestError;
use crate::security::Principal;

/// The routes of this module.
pub fn routes() -> Router<NodeState> {
    Router::new()
        .route("/_bulk", post(bulk_without_index).put(bulk_without_index))
        .route("/{index}/_bulk", post(bulk_into_index).put(bulk_into_index))
}

/// What one bulk item does.
#[derive(Clone, Debug)]
pub(crate) enum BulkAction {
    /// `index` or `create` (`create_only`).
    Index {
        source: Vec<u8>,
        create_only: bool,
    },
    Delete,
    Update(Box<UpdateSpec>),
}

impl BulkAction {
    /// The action authorized on the item's index (Elasticsearch's name).
    pub(crate) fn security_action(&self) -> &'static str {
        match self {
            BulkAction::Index { .. } => "indices:data/write/index",
            BulkAction::Delete => "indices:data/write/delete",
            BulkAction::Update(_) => "indices:data/write/update",
        }
    }

    /// The action's name, which its item's answer is under.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            BulkAction::Index {
                create_only: true, ..
            } => "create",
            BulkAction::Index { .. } => "index",
            BulkAction::Delete => "delete",
            BulkAction::Update(_) => "update",
        }
    }
}

/// One parsed item.
#[derive(Clone, Debug)]
pub(crate) struct BulkItem {
    pub(crate) index: String,
    pub(crate) id: String,
    /// `id` was generated here (an `index` action without `_id`).
    automatic_id: bool,
    condition: Option<(SeqNo, PrimaryTerm)>,
    pub(crate) action: BulkAction,
}

fn malformed(line: usize, reason: impl std::fmt::Display) -> RestError {
    RestError::illegal_argument(format!("Malformed action/metadata line [{line}], {reason}"))
}

/// A key given twice in the action or update object on line `line` of the body: 400
/// `x_content_parse_exception` refusing the whole request, as Elasticsearch does, positioned
/// in the body (`[line:column] Duplicate field '_id'`). `None` for any other parse error.
fn duplicate_key(line: usize, error: &serde_json::Error) -> Option<RestError> {
    strict_json::is_duplicate_key(error).then(|| {
        RestError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "x_content_parse_exception",
            format!(
                "[{line}:{}] {}",
                error.column(),
                strict_json::message(error)
            ),
        )
    })
}

/// Parses the ndjson body into items (see the module documentation).
pub(crate) fn parse_bulk(
    body: &[u8],
    default_index: Option<&str>,
) -> Result<Vec<BulkItem>, RestError> {
    if !body.is_empty() && !body.ends_with(b"\n") {
        return Err(RestError::illegal_argument(
            "The bulk request must be terminated by a newline [\\n]",
        ));
    }
    let mut lines = body
        .split(|byte| *byte == b'\n')
        .enumerate()
        .map(|(number, line)| (number + 1, line))
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace));
    let mut items = Vec::new();
    while let Some((number, line)) = lines.next() {
        let action: Value = strict_json::from_slice(line).map_err(|error| {
            duplicate_key(number, &error)
                .unwrap_or_else(|| malformed(number, format!("expected a JSON object: {error}")))
        })?;
        let Some(object) = action.as_object() else {
            return Err(malformed(number, "expected START_OBJECT"));
        };
        let (kind, metadata) = match (object.iter().next(), object.len()) {
            (Some(entry), 1) => entry,
            _ => {
                return Err(malformed(
                    number,
                    "expected exactly one of [create], [delete], [index] or [update]",
                ))
            }
        };
        let Some(metadata) = metadata.as_object() else {
            return Err(malformed(
                number,
                format!("expected an object for [{kind}]"),
            ));
        };
        let needs_source = kind != "delete";
        let source = if needs_source {
            match lines.next() {
                Some(numbered_source) => Some(numbered_source),
                None => {
                    return Err(RestError::illegal_argument(format!(
                        "The bulk request's [{kind}] action on line [{number}] is missing its source line"
                    )))
                }
            }
        } else {
            None
        };
        items.push(parse_item(number, kind, metadata, source, default_index)?);
    }
    if items.is_empty() {
        return Err(RestError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "action_request_validation_exception",
            "Validation Failed: 1: no requests added;",
        ));
    }
    Ok(items)
}

fn parse_item(
    number: usize,
    kind: &str,
    metadata: &Map<String, Value>,
    source: Option<(usize, &[u8])>,
    default_index: Option<&str>,
) -> Result<BulkItem, RestError> {
    let mut index = default_index.map(str::to_string);
    let mut id = None;
    let (mut if_seq_no, mut if_primary_term) = (None, None);
    let mut retry_on_conflict = 0;
    let mut create_only = kind == "create";
    let number_of = |key: &str, value: &Value| {
        value
            .as_u64()
            .or_else(|| value.as_str().and_then(|text| text.parse().ok()))
            .ok_or_else(|| malformed(number, format!("[{key}] must be a non-negative integer")))
    };
    for (key, value) in metadata {
        match key.as_str() {
            "_index" => index = Some(text_of(number, key, value)?),
            "_id" => id = Some(text_of(number, key, value)?),
            "if_seq_no" => if_seq_no = Some(number_of(key, value)?),
            "if_primary_term" => if_primary_term = Some(number_of(key, value)?),
            "retry_on_conflict" if kind == "update" => {
                retry_on_conflict = number_of(key, value)?.min(MAX_RETRY_ON_CONFLICT)
            }
            "op_type" if kind == "index" => match value.as_str() {
                Some("create") => create_only = true,
                Some("index") => {}
                _ => return Err(malformed(number, "[op_type] must be [index] or [create]")),
            },
            "routing" | "version" | "version_type" | "pipeline" | "require_alias"
            | "dynamic_templates" | "_source" => {
                return Err(RestError::illegal_argument(format!(
                    "Action/metadata line [{number}] uses [{key}], which Tandem does not support"
                )))
            }
            other => {
                return Err(RestError::illegal_argument(format!(
                    "Action/metadata line [{number}] contains an unknown parameter [{other}]"
                )))
            }
        }
    }
    let Some(index) = index else {
        return Err(super::documents::validation("index is missing"));
    };
    let condition = concurrency(if_seq_no, if_primary_term)?;
    let action = match (kind, source) {
        ("index" | "create", Some((_, source))) => BulkAction::Index {
            source: source.to_vec(),
            create_only,
        },
        ("delete", None) => BulkAction::Delete,
        ("update", Some((source_number, source))) => {
            let body: Value = strict_json::from_slice(source).map_err(|error| {
                duplicate_key(source_number, &error).unwrap_or_else(|| {
                    RestError::parse(format!(
                        "the update on line [{number}] is not a JSON object: {error}"
                    ))
                })
            })?;
            let mut spec = UpdateSpec::parse(&body)?;
            spec.condition = condition;
            spec.retry_on_conflict = retry_on_conflict;
            BulkAction::Update(Box::new(spec))
        }
        (other, _) => {
            return Err(malformed(
                number,
                format!(
                    "expected field [create], [delete], [index] or [update] but found [{other}]"
                ),
            ))
        }
    };
    let (id, automatic) = match (id, &action) {
        (Some(id), _) => (id, false),
        (None, BulkAction::Index { .. }) => (automatic_id(), true),
        (None, _) => return Err(super::documents::validation("id is missing")),
    };
    check_id(&id)?;
    Ok(BulkItem {
        index,
        id,
        automatic_id: automatic,
        condition,
        action,
    })
}

fn text_of(number: usize, key: &str, value: &Value) -> Result<String, RestError> {
    value
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| malformed(number, format!("[{key}] must be a string")))
}

/// The answer of one item: `{"<action>": {...}}`.
fn item_json(
    item: &BulkItem,
    result: Result<(axum::http::StatusCode, Value), RestError>,
) -> (bool, Value) {
    let (failed, mut body) = match result {
        Ok((status, mut body)) => {
            body["status"] = json!(status.as_u16());
            (false, body)
        }
        Err(error) => {
            let mut reason = error.to_json()["error"].clone();
            if let Some(reason) = reason.as_object_mut() {
                reason.remove("root_cause");
            }
            (
                true,
                json!({
                    "_index": item.index,
                    "_id": item.id,
                    "status": error.status.as_u16(),
                    "error": reason,
                }),
            )
        }
    };
    body.as_object_mut()
        .map(|object| object.remove("forced_refresh"));
    (failed, json!({ item.action.name(): body }))
}

fn written(index: &str, result: &WriteResult) -> (axum::http::StatusCode, Value) {
    (
        write_status(result.outcome),
        write_json(index, result, RefreshPolicy::Periodic),
    )
}

/// Whether the caller may run an item (security: its action on its index).
pub(crate) type ItemCheck<'a> = &'a (dyn Fn(&BulkItem) -> Result<(), RestError> + Sync);

/// Every item allowed (security off).
pub(crate) fn allow_all(_: &BulkItem) -> Result<(), RestError> {
    Ok(())
}

/// Applies the items in order; returns each item's answer and whether any failed. An item
/// `authorize` refuses fails alone, with the refusal, as Elasticsearch fails it.
pub(crate) fn execute(
    indices: &Indices,
    items: &[BulkItem],
    refresh: RefreshPolicy,
    authorize: ItemCheck<'_>,
) -> (bool, Vec<Value>) {
    let mut targets: HashMap<String, Result<Arc<Index>, RestError>> = HashMap::new();
    let mut answers: Vec<Value> = Vec::with_capacity(items.len());
    let mut errors = false;
    let mut position = 0;
    while position < items.len() {
        let item = &items[position];
        if let Err(refused) = authorize(item) {
            let (_, answer) = item_json(item, Err(refused));
            errors = true;
            answers.push(answer);
            position += 1;
            continue;
        }
        let target = targets
            .entry(item.index.clone())
            .or_insert_with(|| match item.action {
                BulkAction::Delete => indices.get(&item.index).map_err(RestError::from),
                _ => index_for_write(indices, &item.index),
            })
            .clone();
        // A run: this item and the following plain writes into the same index.
        let run_end = match item.action {
            BulkAction::Update(_) => position + 1,
            _ => {
                let mut end = position + 1;
                while end < items.len()
                    && items[end].index == item.index
                    && !matches!(items[end].action, BulkAction::Update(_))
                    && authorize(&items[end]).is_ok()
                {
                    end += 1;
                }
                end
            }
        };
        let run = &items[position..run_end];
        let results: Vec<Result<(axum::http::StatusCode, Value), RestError>> = match &target {
            Err(error) => run.iter().map(|_| Err(error.clone())).collect(),
            Ok(index) => apply_run(index, run),
        };
        for (item, result) in run.iter().zip(results) {
            let (failed, answer) = item_json(item, result);
            errors |= failed;
            answers.push(answer);
        }
        position = run_end;
    }
    if refresh != RefreshPolicy::Periodic {
        for index in targets.values().flatten() {
            if let Err(error) = index.refresh() {
                tracing::warn!(%error, "refresh after a bulk failed");
            }
        }
    }
    (errors, answers)
}

/// Applies a run of items of one index (one update, or plain writes as one engine bulk).
fn apply_run(
    index: &Index,
    run: &[BulkItem],
) -> Vec<Result<(axum::http::StatusCode, Value), RestError>> {
    let name = run
        .first()
        .map(|item| item.index.clone())
        .unwrap_or_default();
    if let [BulkItem {
        id,
        action: BulkAction::Update(spec),
        ..
    }] = run
    {
        let outcome = apply_update(index, id, spec)
            .map(|outcome| update_json(&name, &outcome, RefreshPolicy::Periodic))
            .map_err(|error| document_error(error, &name));
        return vec![outcome];
    }
    let requests: Vec<WriteRequest> = run
        .iter()
        .map(|item| {
            let (if_seq_no, if_primary_term) = match item.condition {
                Some((seq_no, term)) => (Some(seq_no), Some(term)),
                None => (None, None),
            };
            match &item.action {
                BulkAction::Index {
                    source,
                    create_only,
                } => WriteRequest::Index(IndexRequest {
                    id: item.id.clone(),
                    source: source.clone(),
                    if_seq_no,
                    if_primary_term,
                    create_only: *create_only,
                    automatic_id: item.automatic_id,
                }),
                _ => WriteRequest::Delete(DeleteRequest {
                    id: item.id.clone(),
                    if_seq_no,
                    if_primary_term,
                }),
            }
        })
        .collect();
    index
        .bulk(requests)
        .into_iter()
        .map(|result| {
            result
                .map(|result| written(&name, &result))
                .map_err(|error| document_error(error, &name))
        })
        .collect()
}

async fn run_bulk(
    node: NodeState,
    principal: Option<Arc<Principal>>,
    default_index: Option<String>,
    params: Params,
    body: Bytes,
) -> Result<Response, RestError> {
    params.allow(&[
        "refresh",
        "timeout",
        "wait_for_active_shards",
        "require_alias",
        "routing",
        "pipeline",
    ])?;
    refuse_unsupported(&params)?;
    let refresh = RefreshPolicy::from_params(&params)?;
    let started = Instant::now();
    let indices = node.indices.clone();
    let security = node.security.clone();
    let (errors, items) = blocking(move || {
        let items = parse_bulk(&body, default_index.as_deref())?;
        let answers = match principal.filter(|_| security.enabled()) {
            Some(principal) => {
                let check = |item: &BulkItem| {
                    security.check_indices(
                        &principal,
                        item.action.security_action(),
                        std::slice::from_ref(&item.index),
                    )
                };
                execute(&indices, &items, refresh, &check)
            }
            None => execute(&indices, &items, refresh, &allow_all),
        };
        Ok(answers)
    })
    .await?;
    Ok(ok(json!({
        "errors": errors,
        "took": started.elapsed().as_millis() as u64,
        "items": items,
    })))
}

async fn bulk_without_index(
    State(node): State<NodeState>,
    principal: Option<Extension<Arc<Principal>>>,
    params: Params,
    RawBody(body): RawBody,
) -> Result<Response, RestError> {
    let principal = principal.map(|Extension(principal)| principal);
    run_bulk(node, principal, None, params, body).await
}

async fn bulk_into_index(
    State(node): State<NodeState>,
    principal: Option<Extension<Arc<Principal>>>,
    Path(index): Path<String>,
    params: Params,
    RawBody(body): RawBody,
) -> Result<Response, RestError> {
    let principal = principal.map(|Extension(principal)| principal);
    run_bulk(node, principal, Some(index), params, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bulk_body_parses_into_items_in_order() {
        let body = concat!(
            "{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"x\":1}\n",
            "{\"create\":{\"_id\":\"2\"}}\n{\"x\":2}\n",
            "{\"delete\":{\"_index\":\"b\",\"_id\":\"3\"}}\n",
            "\n",
            "{\"update\":{\"_id\":\"1\",\"retry_on_conflict\":3}}\n{\"doc\":{\"y\":1},\"doc_as_upsert\":true}\n",
            "{\"index\":{}}\n{\"x\":3}\n",
        );
        let items = parse_bulk(body.as_bytes(), Some("d")).unwrap();
        let summary: Vec<(&str, &str)> = items
            .iter()
            .map(|item| (item.action.name(), item.index.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("index", "a"),
                ("create", "d"),
                ("delete", "b"),
                ("update", "d"),
                ("index", "d")
            ]
        );
        assert_eq!(items[4].id.len(), 20, "an automatic id");
        let BulkAction::Update(spec) = &items[3].action else {
            panic!("an update")
        };
        assert!(spec.doc_as_upsert);
        assert_eq!(spec.retry_on_conflict, 3);
    }

    #[test]
    fn items_fail_alone_and_a_follower_index_refuses_writes_with_a_403() {
        let dir = tempfile::tempdir().unwrap();
        let indices = Indices::open(dir.path()).unwrap();
        indices
            .create_with(
                "followed",
                "uuid-1",
                tandem_engine::index::IndexSettings::default(),
                tandem_engine::mapping::Mappings::empty(),
                true,
            )
            .unwrap();
        let body = concat!(
            "{\"index\":{\"_index\":\"followed\",\"_id\":\"1\"}}\n{\"x\":1}\n",
            "{\"index\":{\"_index\":\"plain\",\"_id\":\"1\"}}\n{\"x\":1}\n",
            "{\"delete\":{\"_index\":\"followed\",\"_id\":\"1\"}}\n",
        );
        let items = parse_bulk(body.as_bytes(), None).unwrap();
        let (errors, answers) = execute(&indices, &items, RefreshPolicy::Immediate, &allow_all);
        assert!(errors);
        let refused = &answers[0]["index"];
        assert_eq!(refused["status"], 403, "{refused}");
        assert_eq!(refused["error"]["type"], "cluster_block_exception");
        assert_eq!(refused["error"]["index"], "followed");
        assert_eq!(answers[1]["index"]["status"], 201, "created on the fly");
        assert_eq!(answers[2]["delete"]["status"], 403);
        let plain = indices.get("plain").unwrap();
        assert_eq!(plain.doc_count(), 1, "refreshed before the answer");
    }

    #[test]
    fn malformed_bulk_bodies_are_refused_whole() {
        let cases = [
            (
                "{\"index\":{\"_index\":\"a\"}}\n{\"x\":1}",
                "terminated by a newline",
            ),
            (
                "{\"index\":{\"_index\":\"a\"}\n{\"x\":1}\n",
                "Malformed action/metadata line [1]",
            ),
            (
                "{\"frobnicate\":{\"_index\":\"a\"}}\n{}\n",
                "found [frobnicate]",
            ),
            (
                "{\"index\":{\"_index\":\"a\"}}\n",
                "missing its source line",
            ),
            ("{\"delete\":{\"_index\":\"a\"}}\n", "id is missing"),
            ("{\"index\":{\"_id\":\"1\"}}\n{}\n", "index is missing"),
            (
                "{\"index\":{\"_index\":\"a\",\"routing\":\"r\"}}\n{}\n",
                "[routing]",
            ),
            (
                "{\"index\":{\"_index\":\"a\",\"colour\":1}}\n{}\n",
                "unknown parameter [colour]",
            ),
            (
                "{\"update\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"doc\":\n",
                "not a JSON object",
            ),
            (
                "{\"update\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"script\":\"x\"}\n",
                "scripted",
            ),
            ("\n", "no requests added"),
        ];
        for (body, expected) in cases {
            let error = parse_bulk(body.as_bytes(), None).unwrap_err();
            assert_eq!(error.status.as_u16(), 400, "{body}");
            assert!(error.reason.contains(expected), "{body}: {}", error.reason);
        }
    }
}
