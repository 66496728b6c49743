//! `GET /_cat/count[/{index}]`: the number of documents a search sees (refreshed, live
//! documents of the primaries) in every open index, or in those `{index}` names, in one row.
//!
//! Columns: epoch timestamp count. A closed index named in `{index}` is an error, as for
//! `_count`; without `{index}`, closed indices are skipped.

use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::{epoch_and_timestamp, CatRequest, Column};
use crate::error::RestError;
use crate::rest::blocking::blocking;
use crate::rest::index_expression::resolve_indices;
use crate::rest::{NodeState, Params};

/// Every column, in display order.
pub const COLUMNS: &[Column] = &[
    Column::number("epoch"),
    Column::text("timestamp"),
    Column::number("count"),
];

/// The routes of this module.
pub fn routes() -> Router<NodeState> {
    Router::new()
        .route("/_cat/count", get(count_all))
        .route("/_cat/count/{index}", get(count_some))
}

async fn cat_count(
    node: NodeState,
    expression: Option<String>,
    params: Params,
) -> Result<Response, RestError> {
    let request = CatRequest::parse("_cat/count", COLUMNS, &params, &[], "count")?;
    let indices = node.indices.clone();
    let count = blocking(move || {
        let names = match &expression {
            Some(expression) => resolve_indices(&indices, expression)?,
            None => {
                let mut open = Vec::new();
                for name in indices.names() {
                    if !indices.is_closed(&name)? {
                        open.push(name);
                    }
                }
                open
            }
        };
        let mut count = 0u64;
        for name in names {
            let index = indices.get(&name)?;
            count += index
                .shards()
                .iter()
                .map(|shard| shard.stats().doc_count)
                .sum::<u64>();
        }
        Ok::<u64, RestError>(count)
    })
    .await?;
    let [epoch, timestamp] = epoch_and_timestamp(SystemTime::now());
    request.respond(vec![vec![epoch, timestamp, count.to_string()]])
}

async fn count_all(State(node): State<NodeState>, params: Params) -> Result<Response, RestError> {
    cat_count(node, None, params).await
}

async fn count_some(
    State(node): State<NodeState>,
    Path(expression): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    cat_count(node, Some(expression), params).await
}
