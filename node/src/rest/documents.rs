//! The single-document APIs: index (`PUT|POST /{index}/_doc/{id}`, `POST /{index}/_doc` with an
//! automatic id), create (`/{index}/_create/{id}`), get and exists (`/_doc/{id}`,
//! `/_source/{id}`), delete, and partial update (`POST /{index}/_update/{id}`), with
//! Elasticsearch's parameters and response shapes.
//!
//! Guarantees: a write is acknowledged only once the engine made it durable; writing into a
//! missing index creates it with default settings (Elasticsearch's `action.auto_create_index`
//! default), a delete does not; optimistic concurrency (`if_seq_no` + `if_primary_term`) and
//! `op_type=create` conflicts are 409s; a follower index refuses writes with the engine's 403;
//! parameters Tandem cannot honour (`routing`, external versions, pipelines) are refused with a
//! 400 naming them rather than ignored.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde_json::{json, Map, Value};
use tandem_engine::index::Index;
use tandem_engine::indices::Indices;
use tandem_engine::shard::{DeleteRequest, GetResult, IndexRequest, WriteOutcome, WriteResult};
use tandem_engine::{EngineError, PrimaryTerm, SeqNo};

use super::blocking::blocking;
use super::body::RawBody;
use super::indices::{check_active_shards, shards_header};
use super::{validate_index_name, JsonBody, NodeState, Params};
use crate::error::RestError;

/// Longest document id, in bytes (Elasticsearch's limit).
pub const MAX_ID_BYTES: usize = 512;
/// Most retries of an update that lost a race (`retry_on_conflict`).
pub const MAX_RETRY_ON_CONFLICT: u64 = 100;

/// Parameters Tandem refuses with a clear 400 instead of silently ignoring them.
const UNSUPPORTED_PARAMETERS: &[(&str, &str)] = &[
    (
        "routing",
        "custom routing is not supported by Tandem: documents are routed by _id",
    ),
    (
        "version",
        "external versioning is not supported by Tandem: use if_seq_no and if_primary_term",
    ),
    (
        "version_type",
        "external versioning is not supported by Tandem: use if_seq_no and if_primary_term",
    ),
    ("pipeline", "ingest pipelines are not supported by Tandem"),
];

/// The routes of this module.
pub fn routes() -> Router<NodeState> {
    Router::new()
        .route("/{index}/_doc", post(index_with_automatic_id))
        .route(
            "/{index}/_doc/{id}",
            put(index_document)
                .post(index_document)
                .get(get_document)
                .head(document_exists)
                .delete(delete_document),
        )
        .route(
            "/{index}/_create/{id}",
            put(create_document).post(create_document),
        )
        .route(
            "/{index}/_source/{id}",
            get(get_source).head(document_exists),
        )
        .route("/{index}/_update/{id}", post(update_document))
}

/// When a write becomes visible to search (`refresh`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshPolicy {
    /// At the next periodic refresh (`false`, the default).
    Periodic,
    /// Before the answer, by refreshing now (`true`).
    Immediate,
    /// Before the answer (`wait_for`); Tandem refreshes at once rather than waiting for the
    /// periodic refresh, which gives the same visibility sooner.
    WaitFor,
}

impl RefreshPolicy {
    /// The policy of the `refresh` parameter.
    pub fn from_params(params: &Params) -> Result<RefreshPolicy, RestError> {
        match params.get("refresh") {
            None | Some("false") => Ok(RefreshPolicy::Periodic),
            Some("" | "true") => Ok(RefreshPolicy::Immediate),
            Some("wait_for") => Ok(RefreshPolicy::WaitFor),
            Some(other) => Err(RestError::illegal_argument(format!(
                "Unknown value for refresh: [{other}]."
            ))),
        }
    }

    /// Refreshes `index` if the policy asks for it.
    pub fn apply(self, index: &Index) -> Result<(), RestError> {
        if self != RefreshPolicy::Periodic {
            index.refresh()?;
        }
        Ok(())
    }
}

/// Refuses the parameters of [`UNSUPPORTED_PARAMETERS`] and `require_alias=true`, and checks
/// `timeout` and `wait_for_active_shards`.
pub fn refuse_unsupported(params: &Params) -> Result<(), RestError> {
    for (name, why) in UNSUPPORTED_PARAMETERS {
        if params.get(name).is_some() {
            return Err(RestError::illegal_argument(format!("[{name}]: {why}")));
        }
    }
    if params.flag("require_alias", false)? {
        return Err(RestError::illegal_argument(
            "[require_alias]: aliases are not supported by Tandem",
        ));
    }
    params.time("timeout")?;
    check_active_shards(params)
}

/// A 400 `action_request_validation_exception` with Elasticsearch's wording.
pub fn validation(reason: &str) -> RestError {
    RestError::new(
        StatusCode::BAD_REQUEST,
        "action_request_validation_exception",
        format!("Validation Failed: 1: {reason};"),
    )
}

/// `if_seq_no` and `if_primary_term`, which go together.
pub fn concurrency(
    if_seq_no: Option<u64>,
    if_primary_term: Option<u64>,
) -> Result<Option<(SeqNo, PrimaryTerm)>, RestError> {
    match (if_seq_no, if_primary_term) {
        (None, None) => Ok(None),
        (Some(seq_no), Some(term)) if term > 0 => {
            let seq_no = i64::try_from(seq_no).map_err(|_| {
                RestError::illegal_argument(format!("if_seq_no [{seq_no}] is too large"))
            })?;
            Ok(Some((SeqNo(seq_no), PrimaryTerm(term))))
        }
        (Some(_), _) => Err(validation("ifSeqNo is set, but primary term is [0]")),
        (None, Some(_)) => Err(validation("ifPrimaryTerm is set, but seq_no is unassigned")),
    }
}

/// Checks a document id.
pub fn check_id(id: &str) -> Result<(), RestError> {
    if id.is_empty() {
        return Err(validation("id cannot be empty"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(validation(&format!(
            "id [{id}] is too long, must be no longer than {MAX_ID_BYTES} bytes but was: {}",
            id.len()
        )));
    }
    Ok(())
}

/// A fresh document id (20 characters, like Elasticsearch's).
pub fn automatic_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..20].to_string()
}

/// The open index `name`, created with default settings if it does not exist.
pub fn index_for_write(indices: &Indices, name: &str) -> Result<Arc<Index>, RestError> {
    match indices.get(name) {
        Err(EngineError::IndexNotFound { .. }) => {
            validate_index_name(name)?;
            match indices.create(name, &json!({}), &json!({})) {
                Ok(index) => Ok(index),
                // Created by a concurrent request in between.
                Err(EngineError::IndexAlreadyExists { .. }) => Ok(indices.get(name)?),
                Err(error) => Err(error.into()),
            }
        }
        other => Ok(other?),
    }
}

/// An engine error about a document of `index`, naming the index as Elasticsearch does.
pub fn document_error(error: EngineError, index: &str) -> RestError {
    let rest = RestError::from(error);
    if rest.extra.contains_key("index") {
        rest
    } else {
        rest.with("index", index)
    }
}

/// The HTTP status of a write's outcome.
pub fn write_status(outcome: WriteOutcome) -> StatusCode {
    match outcome {
        WriteOutcome::Created => StatusCode::CREATED,
        WriteOutcome::NotFound => StatusCode::NOT_FOUND,
        WriteOutcome::Updated | WriteOutcome::Deleted => StatusCode::OK,
    }
}

/// The answer body of an acknowledged write.
pub fn write_json(index: &str, result: &WriteResult, refresh: RefreshPolicy) -> Value {
    let mut body = json!({
        "_index": index,
        "_id": result.id,
        "_version": result.version,
        "result": result.outcome.name(),
        "_shards": shards_header(1),
        "_seq_no": result.seq_no.0,
        "_primary_term": result.primary_term.0,
    });
    if refresh == RefreshPolicy::Immediate {
        body["forced_refresh"] = json!(true);
    }
    body
}

fn write_response(index: &str, result: &WriteResult, refresh: RefreshPolicy) -> Response {
    let status = write_status(result.outcome);
    let body = axum::Json(write_json(index, result, refresh));
    if status == StatusCode::CREATED {
        let location = format!("/{index}/_doc/{}", result.id);
        (status, [(header::LOCATION, location)], body).into_response()
    } else {
        (status, body).into_response()
    }
}

/// The parameters of `PUT|POST /{index}/_doc/{id}`, `/_create/{id}` and `POST /{index}/_doc`.
const INDEX_PARAMETERS: &[&str] = &[
    "if_seq_no",
    "if_primary_term",
    "refresh",
    "op_type",
    "timeout",
    "wait_for_active_shards",
    "require_alias",
    "routing",
    "version",
    "version_type",
    "pipeline",
];

async fn index_document(
    State(node): State<NodeState>,
    Path((index, id)): Path<(String, String)>,
    params: Params,
    RawBody(body): RawBody,
) -> Result<Response, RestError> {
    write_document(node, index, Some(id), params, body, false).await
}

async fn index_with_automatic_id(
    State(node): State<NodeState>,
    Path(index): Path<String>,
    params: Params,
    RawBody(body): RawBody,
) -> Result<Response, RestError> {
    write_document(node, index, None, params, body, false).await
}

async fn create_document(
    State(node): State<NodeState>,
    Path((index, id)): Path<(String, String)>,
    params: Params,
    RawBody(body): RawBody,
) -> Result<Response, RestError> {
    write_document(node, index, Some(id), params, body, true).await
}

async fn write_document(
    node: NodeState,
    index: String,
    id: Option<String>,
    params: Params,
    body: Bytes,
    create: bool,
) -> Result<Response, RestError> {
    params.allow(INDEX_PARAMETERS)?;
    refuse_unsupported(&params)?;
    let refresh = RefreshPolicy::from_params(&params)?;
    let create = match params.get("op_type") {
        None | Some("index") => create,
        Some("create") => true,
        Some(other) => {
            return Err(RestError::illegal_argument(format!(
                "opType must be 'create' or 'index', found: [{other}]"
            )))
        }
    };
    let condition = concurrency(
        params.number("if_seq_no")?,
        params.number("if_primary_term")?,
    )?;
    if create && condition.is_some() {
        return Err(validation(
            "create operations do not support compare and set. use index instead",
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(validation("source is missing"));
    }
    // An automatic id is new: the write is a create.
    let automatic = id.is_none();
    let create = create || automatic;
    let id = id.unwrap_or_else(automatic_id);
    check_id(&id)?;
    let indices = node.indices.clone();
    let name = index.clone();
    let result = blocking(move || {
        let target = index_for_write(&indices, &name)?;
        let request = IndexRequest {
            id,
            source: body.to_vec(),
            if_seq_no: condition.map(|(seq_no, _)| seq_no),
            if_primary_term: condition.map(|(_, term)| term),
            create_only: create,
            automatic_id: automatic,
        };
        let result = target
            .index(request)
            .map_err(|error| document_error(error, &name))?;
        refresh.apply(&target)?;
        Ok(result)
    })
    .await?;
    Ok(write_response(&index, &result, refresh))
}

/// The open index `name` for a read (no automatic creation).
fn index_for_read(indices: &Indices, name: &str) -> Result<Arc<Index>, RestError> {
    Ok(indices.get(name)?)
}

/// Whether the `_source` parameter asks for the source; field filtering is refused.
fn wants_source(params: &Params) -> Result<bool, RestError> {
    params.flag("_source", true).map_err(|_| {
        RestError::illegal_argument(
            "_source filtering is not supported by Tandem; use _source=true or false",
        )
    })
}

/// Reads a document (real-time), refreshing first if `refresh` asks for it.
async fn read_document(
    node: &NodeState,
    index: &str,
    id: &str,
    params: &Params,
) -> Result<Option<GetResult>, RestError> {
    refuse_unsupported(params)?;
    params.flag("realtime", true)?;
    let refresh = params.flag("refresh", false)?;
    check_id(id)?;
    let indices = node.indices.clone();
    let (name, id) = (index.to_string(), id.to_string());
    blocking(move || {
        let target = index_for_read(&indices, &name)?;
        if refresh {
            target.refresh()?;
        }
        target
            .get(&id)
            .map_err(|error| document_error(error, &name))
    })
    .await
}

/// A stored `_source` as JSON (it was validated as a JSON object when written).
fn source_json(source: &[u8]) -> Result<Value, RestError> {
    serde_json::from_slice(source).map_err(|error| {
        RestError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            format!("a stored _source is not JSON: {error}"),
        )
    })
}

const GET_PARAMETERS: &[&str] = &["realtime", "refresh", "_source", "preference", "routing"];

async fn get_document(
    State(node): State<NodeState>,
    Path((index, id)): Path<(String, String)>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(GET_PARAMETERS)?;
    let with_source = wants_source(&params)?;
    let Some(found) = read_document(&node, &index, &id, &params).await? else {
        let body = json!({ "_index": index, "_id": id, "found": false });
        return Ok((StatusCode::NOT_FOUND, axum::Json(body)).into_response());
    };
    let mut body = json!({
        "_index": index,
        "_id": found.id,
        "_version": found.version,
        "_seq_no": found.seq_no.0,
        "_primary_term": found.primary_term.0,
        "found": true,
    });
    if with_source {
        body["_source"] = source_json(&found.source)?;
    }
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

async fn document_exists(
    State(node): State<NodeState>,
    Path((index, id)): Path<(String, String)>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(GET_PARAMETERS)?;
    wants_source(&params)?;
    let status = match read_document(&node, &index, &id, &params).await {
        Ok(Some(_)) => StatusCode::OK,
        Ok(None) => StatusCode::NOT_FOUND,
        Err(error) if error.status == StatusCode::NOT_FOUND => StatusCode::NOT_FOUND,
        Err(error) => return Err(error),
    };
    Ok(status.into_response())
}

async fn get_source(
    State(node): State<NodeState>,
    Path((index, id)): Path<(String, String)>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["realtime", "refresh", "preference", "routing"])?;
    let Some(found) = read_document(&node, &index, &id, &params).await? else {
        return Err(RestError::new(
            StatusCode::NOT_FOUND,
            "resource_not_found_exception",
            format!("Document not found [{index}]/[_doc]/[{id}]"),
        ));
    };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        found.source,
    )
        .into_response())
}

async fn delete_document(
    State(node): State<NodeState>,
    Path((index, id)): Path<(String, String)>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&[
        "if_seq_no",
        "if_primary_term",
        "refresh",
        "timeout",
        "wait_for_active_shards",
        "routing",
        "version",
        "version_type",
    ])?;
    refuse_unsupported(&params)?;
    let refresh = RefreshPolicy::from_params(&params)?;
    let condition = concurrency(
        params.number("if_seq_no")?,
        params.number("if_primary_term")?,
    )?;
    check_id(&id)?;
    let indices = node.indices.clone();
    let name = index.clone();
    let result = blocking(move || {
        let target = index_for_read(&indices, &name)?;
        let request = DeleteRequest {
            id,
            if_seq_no: condition.map(|(seq_no, _)| seq_no),
            if_primary_term: condition.map(|(_, term)| term),
        };
        let result = target
            .delete(request)
            .map_err(|error| document_error(error, &name))?;
        refresh.apply(&target)?;
        Ok(result)
    })
    .await?;
    Ok(write_response(&index, &result, refresh))
}

/// A partial update: the `doc` merged into the current source, or an upsert when the document
/// does not exist.
#[derive(Clone, Debug, PartialEq)]
pub struct UpdateSpec {
    /// The partial document merged into the current source.
    pub doc: Map<String, Value>,
    /// The document to create if none exists (`upsert`).
    pub upsert: Option<Map<String, Value>>,
    /// Create the document from `doc` if none exists.
    pub doc_as_upsert: bool,
    /// Skip the write when the merge changes nothing (default true).
    pub detect_noop: bool,
    /// Only update this version of the document.
    pub condition: Option<(SeqNo, PrimaryTerm)>,
    /// Retries when a concurrent write wins the race.
    pub retry_on_conflict: u64,
}

impl UpdateSpec {
    /// Reads an update body (`{"doc": {...}, "doc_as_upsert": true, …}`); scripts are refused.
    pub fn parse(body: &Value) -> Result<UpdateSpec, RestError> {
        let Some(object) = body.as_object() else {
            return Err(RestError::parse("the update body must be a JSON object"));
        };
        let mut spec = UpdateSpec {
            doc: Map::new(),
            upsert: None,
            doc_as_upsert: false,
            detect_noop: true,
            condition: None,
            retry_on_conflict: 0,
        };
        let mut has_doc = false;
        let object_of = |key: &str, value: &Value| {
            value.as_object().cloned().ok_or_else(|| {
                RestError::parse(format!("[UpdateRequest] [{key}] must be a JSON object"))
            })
        };
        let flag_of = |key: &str, value: &Value| {
            value.as_bool().ok_or_else(|| {
                RestError::parse(format!("[UpdateRequest] [{key}] must be true or false"))
            })
        };
        for (key, value) in object {
            match key.as_str() {
                "doc" => {
                    spec.doc = object_of(key, value)?;
                    has_doc = true;
                }
                "upsert" => spec.upsert = Some(object_of(key, value)?),
                "doc_as_upsert" => spec.doc_as_upsert = flag_of(key, value)?,
                "detect_noop" => spec.detect_noop = flag_of(key, value)?,
                "script" | "scripted_upsert" => {
                    return Err(RestError::illegal_argument(
                        "scripted updates are not supported by Tandem; use a partial [doc]",
                    ))
                }
                other => {
                    return Err(RestError::new(
                        StatusCode::BAD_REQUEST,
                        "x_content_parse_exception",
                        format!("[UpdateRequest] unknown field [{other}]"),
                    ))
                }
            }
        }
        if !has_doc {
            return Err(validation("script or doc is missing"));
        }
        Ok(spec)
    }
}

/// What an update did.
#[derive(Clone, Debug, PartialEq)]
pub enum UpdateOutcome {
    /// The document was created or replaced.
    Written(WriteResult),
    /// The merge changed nothing: the current document, untouched.
    Noop(GetResult),
}

/// Merges `patch` into `target` as Elasticsearch does: objects recursively, anything else
/// replaced.
pub fn merge_into(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match (target.get_mut(key), value) {
            (Some(Value::Object(existing)), Value::Object(inner)) => merge_into(existing, inner),
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Applies an update to document `id` of `index`: read, merge, conditional write, retried up
/// to `retry_on_conflict` times when a concurrent write wins.
pub fn apply_update(
    index: &Index,
    id: &str,
    spec: &UpdateSpec,
) -> Result<UpdateOutcome, EngineError> {
    let mut attempt = 0;
    loop {
        let outcome = update_once(index, id, spec);
        match outcome {
            Err(EngineError::VersionConflict { .. })
                if spec.condition.is_none() && attempt < spec.retry_on_conflict =>
            {
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn update_once(index: &Index, id: &str, spec: &UpdateSpec) -> Result<UpdateOutcome, EngineError> {
    let Some(current) = index.get(id)? else {
        let source = if spec.doc_as_upsert {
            &spec.doc
        } else if let Some(upsert) = &spec.upsert {
            upsert
        } else {
            return Err(EngineError::DocumentNotFound { id: id.to_string() });
        };
        let mut request = IndexRequest::new(id, Value::Object(source.clone()).to_string());
        request.create_only = true;
        return index.index(request).map(UpdateOutcome::Written);
    };
    if let Some((seq_no, term)) = spec.condition {
        if current.seq_no != seq_no || current.primary_term != term {
            return Err(EngineError::VersionConflict {
                id: id.to_string(),
                reason: format!(
                    "required seqNo [{}], primary term [{}]. current document has seqNo [{}] and primary term [{}]",
                    seq_no.0, term.0, current.seq_no.0, current.primary_term.0
                ),
            });
        }
    }
    let mut merged = match serde_json::from_slice::<Value>(&current.source) {
        Ok(Value::Object(source)) => source,
        _ => {
            return Err(EngineError::InvalidArgument(format!(
                "the stored source of document [{id}] is not a JSON object"
            )))
        }
    };
    let original = merged.clone();
    merge_into(&mut merged, &spec.doc);
    if spec.detect_noop && merged == original {
        return Ok(UpdateOutcome::Noop(current));
    }
    let request = IndexRequest {
        id: id.to_string(),
        source: Value::Object(merged).to_string().into_bytes(),
        if_seq_no: Some(current.seq_no),
        if_primary_term: Some(current.primary_term),
        create_only: false,
        automatic_id: false,
    };
    index.index(request).map(UpdateOutcome::Written)
}

/// The answer body and status of an update.
pub fn update_json(
    index: &str,
    outcome: &UpdateOutcome,
    refresh: RefreshPolicy,
) -> (StatusCode, Value) {
    match outcome {
        UpdateOutcome::Written(result) => (
            write_status(result.outcome),
            write_json(index, result, refresh),
        ),
        UpdateOutcome::Noop(current) => (
            StatusCode::OK,
            json!({
                "_index": index,
                "_id": current.id,
                "_version": current.version,
                "result": "noop",
                "_shards": { "total": 0, "successful": 0, "failed": 0 },
                "_seq_no": current.seq_no.0,
                "_primary_term": current.primary_term.0,
            }),
        ),
    }
}

async fn update_document(
    State(node): State<NodeState>,
    Path((index, id)): Path<(String, String)>,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, RestError> {
    params.allow(&[
        "if_seq_no",
        "if_primary_term",
        "refresh",
        "retry_on_conflict",
        "timeout",
        "wait_for_active_shards",
        "require_alias",
        "routing",
    ])?;
    refuse_unsupported(&params)?;
    let refresh = RefreshPolicy::from_params(&params)?;
    let Some(body) = body else {
        return Err(validation("script or doc is missing"));
    };
    let mut spec = UpdateSpec::parse(&body)?;
    spec.condition = concurrency(
        params.number("if_seq_no")?,
        params.number("if_primary_term")?,
    )?;
    spec.retry_on_conflict = params.number("retry_on_conflict")?.unwrap_or(0);
    if spec.retry_on_conflict > MAX_RETRY_ON_CONFLICT {
        return Err(RestError::illegal_argument(format!(
            "retry_on_conflict must be at most {MAX_RETRY_ON_CONFLICT}"
        )));
    }
    check_id(&id)?;
    let indices = node.indices.clone();
    let name = index.clone();
    let outcome = blocking(move || {
        let target = index_for_write(&indices, &name)?;
        let outcome =
            apply_update(&target, &id, &spec).map_err(|error| document_error(error, &name))?;
        refresh.apply(&target)?;
        Ok(outcome)
    })
    .await?;
    let (status, body) = update_json(&index, &outcome, refresh);
    Ok((status, axum::Json(body)).into_response())
}
