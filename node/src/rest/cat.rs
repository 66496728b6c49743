//! `GET /_cat/indices[/{index}]`: one row per index, as a text table (`?v` adds the header) or
//! JSON (`?format=json`), with Elasticsearch's column names; `?h=` picks columns and `?bytes=`
//! the size unit.
//!
//! Columns: health status index uuid pri rep docs.count docs.deleted store.size pri.store.size
//! dataset.size. `docs.deleted` counts the soft-deleted documents the shards still hold
//! (history kept for followers); sizes are the bytes of the index directory. A closed index has
//! no document counts.

use std::path::Path as FilePath;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{Map, Value};
use tandem_engine::indices::Indices;

use super::blocking::blocking;
use super::index_expression::resolve_indices;
use super::{ok, NodeState, Params};
use crate::error::RestError;

/// Every column, in display order.
pub const COLUMNS: &[&str] = &[
    "health",
    "status",
    "index",
    "uuid",
    "pri",
    "rep",
    "docs.count",
    "docs.deleted",
    "store.size",
    "pri.store.size",
    "dataset.size",
];
/// Columns holding numbers (right-aligned in the text table).
const NUMERIC_COLUMNS: &[&str] = &[
    "pri",
    "rep",
    "docs.count",
    "docs.deleted",
    "store.size",
    "pri.store.size",
    "dataset.size",
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
    Ok(row)
}

/// Byte sizes as Elasticsearch shows them: `bytes=b|kb|mb|gb|tb` gives a whole number in that
/// unit; without it, a human form such as `4.5kb`.
fn format_size(bytes: u64, unit: Option<&str>) -> Result<String, RestError> {
    const UNITS: &[(&str, u64)] = &[
        ("b", 1),
        ("kb", 1 << 10),
        ("mb", 1 << 20),
        ("gb", 1 << 30),
        ("tb", 1 << 40),
    ];
    if let Some(unit) = unit {
        let Some((_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(RestError::illegal_argument(format!(
                "failed to parse [bytes] value [{unit}]: expected b, kb, mb, gb or tb"
            )));
        };
        return Ok((bytes / scale).to_string());
    }
    let (name, scale) = UNITS
        .iter()
        .rev()
        .find(|(_, scale)| bytes >= *scale)
        .copied()
        .unwrap_or(("b", 1));
    if scale == 1 {
        return Ok(format!("{bytes}b"));
    }
    let value = bytes as f64 / scale as f64;
    let text = format!("{value:.1}");
    Ok(format!("{}{name}", text.trim_end_matches(".0")))
}

fn cell(row: &IndexRow, column: &str, unit: Option<&str>) -> Result<String, RestError> {
    Ok(match column {
        "health" => "green".to_string(),
        "status" => row.status.to_string(),
        "index" => row.name.clone(),
        "uuid" => row.uuid.clone(),
        "pri" => row.primaries.to_string(),
        "rep" => row.replicas.to_string(),
        "docs.count" => row
            .documents
            .map_or(String::new(), |(live, _)| live.to_string()),
        "docs.deleted" => row
            .documents
            .map_or(String::new(), |(_, deleted)| deleted.to_string()),
        // One copy of each shard: the primaries are the whole store.
        "store.size" | "pri.store.size" | "dataset.size" => format_size(row.size_bytes, unit)?,
        other => {
            return Err(RestError::illegal_argument(format!(
                "unknown column [{other}] for _cat/indices"
            )))
        }
    })
}

/// The selected columns (`h=`, with `*` wildcards as Elasticsearch allows).
fn selected_columns(params: &Params) -> Result<Vec<&'static str>, RestError> {
    let Some(wanted) = params.get("h") else {
        return Ok(COLUMNS.to_vec());
    };
    let mut columns = Vec::new();
    for name in wanted
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        let matching: Vec<&'static str> = COLUMNS
            .iter()
            .copied()
            .filter(|column| super::index_expression::wildcard_matches(name, column))
            .collect();
        if matching.is_empty() {
            return Err(RestError::illegal_argument(format!(
                "unknown column [{name}] for _cat/indices"
            )));
        }
        columns.extend(matching);
    }
    Ok(columns)
}

fn text_table(columns: &[&str], rows: &[Vec<String>], header_line: bool) -> String {
    let mut widths: Vec<usize> = columns
        .iter()
        .map(|column| if header_line { column.len() } else { 0 })
        .collect();
    for row in rows {
        for (width, value) in widths.iter_mut().zip(row) {
            *width = (*width).max(value.chars().count());
        }
    }
    let render = |values: &[String], out: &mut String| {
        let line: Vec<String> = values
            .iter()
            .zip(columns)
            .zip(&widths)
            .map(|((value, column), width)| {
                if NUMERIC_COLUMNS.contains(column) {
                    format!("{value:>width$}")
                } else {
                    format!("{value:<width$}")
                }
            })
            .collect();
        out.push_str(line.join(" ").trim_end());
        out.push('\n');
    };
    let mut out = String::new();
    if header_line {
        let header: Vec<String> = columns.iter().map(|column| column.to_string()).collect();
        render(&header, &mut out);
    }
    for row in rows {
        render(row, &mut out);
    }
    out
}

async fn cat(
    node: NodeState,
    expression: Option<String>,
    params: Params,
) -> Result<Response, RestError> {
    params.allow(&["v", "format", "h", "bytes", "s"])?;
    let header_line = params.flag("v", false)?;
    let json_format = match params.get("format") {
        None | Some("text" | "txt") => false,
        Some("json") => true,
        Some(other) => {
            return Err(RestError::illegal_argument(format!(
                "format [{other}] is not supported by Tandem's _cat APIs (text or json)"
            )))
        }
    };
    match params.get("s") {
        None | Some("index" | "index:asc") => {}
        Some(other) => {
            return Err(RestError::illegal_argument(format!(
                "sorting _cat/indices by [{other}] is not supported by Tandem (rows are sorted by index)"
            )))
        }
    }
    let columns = selected_columns(&params)?;
    let unit = params.get("bytes").map(str::to_string);
    let indices = node.indices.clone();
    let rows = blocking(move || {
        let mut names = resolve_indices(&indices, expression.as_deref().unwrap_or("*"))?;
        if expression.is_none() {
            // Every index, closed ones too.
            names = indices.names();
        }
        names.sort();
        names
            .iter()
            .map(|name| row_of(&indices, name))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    let cells = rows
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|column| cell(row, column, unit.as_deref()))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    if json_format {
        let objects: Vec<Value> = cells
            .into_iter()
            .map(|values| {
                let object: Map<String, Value> = columns
                    .iter()
                    .zip(values)
                    .map(|(column, value)| (column.to_string(), Value::String(value)))
                    .collect();
                Value::Object(object)
            })
            .collect();
        return Ok(ok(Value::Array(objects)));
    }
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
        text_table(&columns, &cells, header_line),
    )
        .into_response())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_elasticsearch() {
        assert_eq!(format_size(225, None).unwrap(), "225b");
        assert_eq!(format_size(4608, None).unwrap(), "4.5kb");
        assert_eq!(format_size(1 << 20, None).unwrap(), "1mb");
        assert_eq!(format_size(3 << 20, Some("kb")).unwrap(), "3072");
        assert!(format_size(1, Some("parsecs")).is_err());
    }

    #[test]
    fn the_text_table_aligns_numbers_right() {
        let rows = vec![
            vec!["open".to_string(), "a".to_string(), "5".to_string()],
            vec!["close".to_string(), "bbb".to_string(), "".to_string()],
        ];
        let table = text_table(&["status", "index", "docs.count"], &rows, true);
        assert_eq!(
            table,
            "status index docs.count\nopen   a              5\nclose  bbb\n"
        );
    }
}
