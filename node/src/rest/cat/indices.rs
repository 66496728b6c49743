//! `GET /_cat/indices[/{index}]`: one row per index (see the parent module for the table
//! parameters).
//!
//! Columns: health status index uuid pri rep docs.count docs.deleted store.size pri.store.size
//! dataset.size. `docs.deleted` counts the soft-deleted documents the shards still hold
//! (history kept for followers); sizes are the bytes of the index directory. A closed index has
//! no document counts.

use std::path::Path as FilePath;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tandem_engine::indices::Indices;

use super::{CatRequest, Column};
use crate::error::RestError;
use crate::rest::blocking::blocking;
use crate::rest::index_expression::resolve_indices;
use crate::rest::{NodeState, Params};

/// Every column, in display order.
pub const COLUMNS: &[Column] = &[
    Column::text("health"),
    Column::text("status"),
    Column::text("index"),
    Column::text("uuid"),
    Column::number("pri"),
    Column::number("rep"),
    Column::number("docs.count"),
    Column::number("docs.deleted"),
    Column::number("store.size"),
    Column::number("pri.store.size"),
    Column::number("dataset.size"),
];
/// Deepest directory level walked when measuring an index (index, shard, translog or segment
/// files: three levels are enough; the bound guards against links and surprises).
const MAX_SIZE_DEPTH: usize = 6;

/// The routes of this module.
pub fn routes() -> Router<NodeState> {
    Router::new()
        .route("/_cat/indices", get(cat_all))
        .route("/_cat/indices/{index}", get(cat_some))
}

/// The facts of one row.
struct IndexRow {
    status: &'static str,
    name: String,
    uuid: String,
    primaries: u32,
    replicas: u32,
    /// Live and soft-deleted documents; `None` when closed.
    documents: Option<(u64, u64)>,
    size_bytes: u64,
    /// A shard failed and is not reopened yet.
    failed: bool,
}

fn directory_size(path: &FilePath, depth: usize) -> u64 {
    if depth > MAX_SIZE_DEPTH {
        return 0;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    // Files may vanish while we walk (merges, translog trimming): they count as empty.
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => directory_size(&entry.path(), depth + 1),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |meta| meta.len()),
            _ => 0,
        })
        .sum()
}

fn row_of(indices: &Indices, name: &str) -> Result<IndexRow, RestError> {
    let metadata = indices.metadata(name)?;
    let mut row = IndexRow {
        status: "open",
        name: name.to_string(),
        uuid: metadata.uuid.clone(),
        primaries: metadata.settings.number_of_shards,
        replicas: metadata.settings.number_of_replicas,
        documents: None,
        size_bytes: 0,
        failed: false,
    };
    if indices.is_closed(name)? {
        row.status = "close";
        row.size_bytes = indices.with_closed_index(name, |dir, _| Ok(directory_size(dir, 0)))?;
        return Ok(row);
    }
    let index = indices.get(name)?;
    let (mut live, mut deleted) = (0u64, 0u64);
    for shard in index.shards() {
        let stats = shard.stats();
        live += stats.doc_count;
        deleted += stats.doc_count_with_history.saturating_sub(stats.doc_count);
    }
    row.documents = Some((live, deleted));
    row.size_bytes = directory_size(index.dir(), 0);
    row.failed = !index.shard_failures().is_empty();
    Ok(row)
}

/// Every cell of `row`, in [`COLUMNS`] order.
fn cells(row: &IndexRow, request: &CatRequest) -> Vec<String> {
    let (live, deleted) = match row.documents {
        Some((live, deleted)) => (live.to_string(), deleted.to_string()),
        None => (String::new(), String::new()),
    };
    // One copy of each shard: the primaries are the whole store.
    let size = request.size(row.size_bytes);
    vec![
        if row.failed { "red" } else { "green" }.to_string(),
        row.status.to_string(),
        row.name.clone(),
        row.uuid.clone(),
        row.primaries.to_string(),
        row.replicas.to_string(),
        live,
        deleted,
        size.clone(),
        size.clone(),
        size,
    ]
}

async fn cat(
    node: NodeState,
    expression: Option<String>,
    params: Params,
) -> Result<Response, RestError> {
    let request = CatRequest::parse("_cat/indices", COLUMNS, &params, &[], "index")?;
    let indices = node.indices.clone();
    let rows = blocking(move || {
        let mut names = match expression {
            Some(expression) => resolve_indices(&indices, &expression)?,
            // Every index, closed ones too.
            None => indices.names(),
        };
        names.sort();
        names
            .iter()
            .map(|name| row_of(&indices, name))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    request.respond(rows.iter().map(|row| cells(row, &request)).collect())
}

async fn cat_all(State(node): State<NodeState>, params: Params) -> Result<Response, RestError> {
    cat(node, None, params).await
}

async fn cat_some(
    State(node): State<NodeState>,
    Path(expression): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    cat(node, Some(expression), params).await
}
