//! `_search` and `_count`, on one index, a comma list or a pattern of indices (`a,b`,
//! `logs-*`, `_all`) or every index: the `q=` query-string syntax or a query DSL body, `from`
//! and `size`, `track_total_hits`, `_source` on or off, with Elasticsearch's response shapes.
//!
//! Guarantees: hits are the best-scoring documents of the last refreshed readers across every
//! targeted shard, by descending score; `from + size` is bounded by [`MAX_RESULT_WINDOW`]
//! (Elasticsearch's `index.max_result_window`); what Tandem cannot do (sorting other than by
//! score, aggregations, highlighting, …) is a 400 naming it, never silently ignored.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};
use tandem_engine::index::{Index, SearchHit, SearchQuery};
use tandem_engine::indices::Indices;

use super::blocking::blocking;
use super::index_expression::resolve_indices;
use super::{ok, JsonBody, NodeState, Params};
use crate::error::RestError;

/// Largest `from + size` (Elasticsearch's `index.max_result_window` default).
pub const MAX_RESULT_WINDOW: usize = 10_000;
/// Hits per page when `size` is not given.
pub const DEFAULT_SIZE: usize = 10;
/// Up to which count `hits.total` is exact by default (`track_total_hits` default).
pub const DEFAULT_TRACK_TOTAL_HITS: u64 = 10_000;

/// Body keys of search features Tandem does not have: refused by name.
const UNSUPPORTED_BODY_KEYS: &[&str] = &[
    "aggs",
    "aggregations",
    "highlight",
    "suggest",
    "search_after",
    "collapse",
    "post_filter",
    "rescore",
    "script_fields",
    "docvalue_fields",
    "fields",
    "stored_fields",
    "explain",
    "version",
    "seq_no_primary_term",
    "profile",
    "pit",
    "knn",
    "runtime_mappings",
    "indices_boost",
    "min_score",
    "terminate_after",
    "stats",
    "ext",
    "slice",
];

/// The routes of this module.
pub fn routes() -> Router<NodeState> {
    Router::new()
        .route("/_search", get(search_all).post(search_all))
        .route("/{index}/_search", get(search_index).post(search_index))
        .route("/_count", get(count_all).post(count_all))
        .route("/{index}/_count", get(count_index).post(count_index))
}

/// How far `hits.total` counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TrackTotalHits {
    /// Not reported.
    Off,
    /// Exact up to the limit, then `gte` the limit.
    UpTo(u64),
}

impl TrackTotalHits {
    fn parse(value: &Value) -> Result<TrackTotalHits, RestError> {
        match value {
            Value::Bool(true) => Ok(TrackTotalHits::UpTo(u64::MAX)),
            Value::Bool(false) => Ok(TrackTotalHits::Off),
            Value::Number(limit) => limit
                .as_u64()
                .map(TrackTotalHits::UpTo)
                .ok_or_else(|| invalid_track_total_hits(value)),
            Value::String(text) => match text.as_str() {
                "true" => Ok(TrackTotalHits::UpTo(u64::MAX)),
                "false" => Ok(TrackTotalHits::Off),
                number => number
                    .parse()
                    .map(TrackTotalHits::UpTo)
                    .map_err(|_| invalid_track_total_hits(value)),
            },
            _ => Err(invalid_track_total_hits(value)),
        }
    }
}

fn invalid_track_total_hits(value: &Value) -> RestError {
    RestError::illegal_argument(format!(
        "[track_total_hits] must be true, false or a non-negative integer, got {value}"
    ))
}

/// A parsed search request.
#[derive(Clone, Debug)]
struct SearchRequest {
    query: SearchQuery,
    from: usize,
    size: usize,
    track_total_hits: TrackTotalHits,
    with_source: bool,
    total_as_number: bool,
}

/// Only sorting by descending score is supported: `_score`, `{"_score": "desc"}`,
/// `{"_score": {"order": "desc"}}` or a list of those.
fn check_sort(sort: &Value) -> Result<(), RestError> {
    let refuse = |what: &Value| {
        Err(RestError::illegal_argument(format!(
            "sorting by {what} is not supported by Tandem: hits are sorted by descending _score"
        )))
    };
    match sort {
        Value::Array(items) => items.iter().try_for_each(check_sort),
        Value::String(text) if text == "_score" || text == "_score:desc" => Ok(()),
        Value::String(text) if text.contains(',') => text
            .split(',')
            .try_for_each(|part| check_sort(&Value::String(part.trim().to_string()))),
        Value::Object(object) if object.len() == 1 => match object.get("_score") {
            Some(Value::String(order)) if order == "desc" => Ok(()),
            Some(Value::Object(options))
                if options.len() == 1 && options.get("order") == Some(&json!("desc")) =>
            {
                Ok(())
            }
            _ => refuse(sort),
        },
        other => refuse(other),
    }
}

/// `_source`: on or off; field filtering is refused.
fn source_flag(value: &Value) -> Result<bool, RestError> {
    match value {
        Value::Bool(flag) => Ok(*flag),
        Value::String(text) if text == "true" => Ok(true),
        Value::String(text) if text == "false" => Ok(false),
        _ => Err(RestError::illegal_argument(
            "_source filtering is not supported by Tandem; use _source true or false",
        )),
    }
}

fn size_of(key: &str, value: &Value) -> Result<usize, RestError> {
    value
        .as_u64()
        .and_then(|number| usize::try_from(number).ok())
        .ok_or_else(|| {
            RestError::illegal_argument(format!(
                "[{key}] must be a non-negative integer, got {value}"
            ))
        })
}

impl SearchRequest {
    fn parse(params: &Params, body: Option<Value>) -> Result<SearchRequest, RestError> {
        params.allow(&[
            "q",
            "from",
            "size",
            "sort",
            "track_total_hits",
            "_source",
            "timeout",
            "rest_total_hits_as_int",
            "typed_keys",
        ])?;
        params.time("timeout")?;
        params.flag("typed_keys", false)?;
        let mut request = SearchRequest {
            query: SearchQuery::Dsl(json!({ "match_all": {} })),
            from: 0,
            size: DEFAULT_SIZE,
            track_total_hits: TrackTotalHits::UpTo(DEFAULT_TRACK_TOTAL_HITS),
            with_source: true,
            total_as_number: params.flag("rest_total_hits_as_int", false)?,
        };
        if let Some(body) = body {
            request.read_body(body)?;
        }
        // Parameters win over the body, as in Elasticsearch.
        if let Some(q) = params.get("q") {
            request.query = SearchQuery::QueryString(q.to_string());
        }
        if let Some(from) = params.number("from")? {
            request.from = usize::try_from(from).unwrap_or(usize::MAX);
        }
        if let Some(size) = params.number("size")? {
            request.size = usize::try_from(size).unwrap_or(usize::MAX);
        }
        if let Some(sort) = params.get("sort") {
            check_sort(&Value::String(sort.to_string()))?;
        }
        if let Some(track) = params.get("track_total_hits") {
            request.track_total_hits = TrackTotalHits::parse(&Value::String(track.to_string()))?;
        }
        if let Some(source) = params.get("_source") {
            request.with_source = source_flag(&Value::String(source.to_string()))?;
        }
        let window = request.from.saturating_add(request.size);
        if window > MAX_RESULT_WINDOW {
            return Err(RestError::illegal_argument(format!(
                "Result window is too large, from + size must be less than or equal to: [{MAX_RESULT_WINDOW}] but was [{window}]. See the scroll api for a more efficient way to request large data sets."
            )));
        }
        Ok(request)
    }

    fn read_body(&mut self, body: Value) -> Result<(), RestError> {
        let Value::Object(body) = body else {
            return Err(RestError::parse("the search body must be a JSON object"));
        };
        for (key, value) in body {
            match key.as_str() {
                "query" => self.query = SearchQuery::Dsl(value),
                "from" => self.from = size_of(&key, &value)?,
                "size" => self.size = size_of(&key, &value)?,
                "track_total_hits" => self.track_total_hits = TrackTotalHits::parse(&value)?,
                "_source" => self.with_source = source_flag(&value)?,
                "sort" => check_sort(&value)?,
                "timeout" => {}
                unsupported if UNSUPPORTED_BODY_KEYS.contains(&unsupported) => {
                    return Err(RestError::illegal_argument(format!(
                        "[{unsupported}] is not supported by Tandem"
                    )))
                }
                unknown => {
                    return Err(RestError::new(
                        axum::http::StatusCode::BAD_REQUEST,
                        "parsing_exception",
                        format!("Unknown key for a START_OBJECT in [{unknown}]."),
                    ))
                }
            }
        }
        Ok(())
    }
}

/// The open indices of `expression` (every index when `None`), with their names.
fn targets(
    indices: &Indices,
    expression: Option<&str>,
) -> Result<Vec<(String, Arc<Index>)>, RestError> {
    resolve_indices(indices, expression.unwrap_or("_all"))?
        .into_iter()
        .map(|name| {
            let index = indices.get(&name)?;
            Ok((name, index))
        })
        .collect()
}

/// `_shards` of a search over `total` shards.
fn search_shards(total: usize) -> Value {
    json!({ "total": total, "successful": total, "skipped": 0, "failed": 0 })
}

/// The result of a search over several indices.
struct Found {
    shards: usize,
    total_hits: u64,
    max_score: Option<f32>,
    hits: Vec<(String, SearchHit)>,
}

fn run_search(
    indices: &Indices,
    expression: Option<&str>,
    request: &SearchRequest,
) -> Result<Found, RestError> {
    let window = request.from.saturating_add(request.size);
    let mut found = Found {
        shards: 0,
        total_hits: 0,
        max_score: None,
        hits: Vec::new(),
    };
    for (name, index) in targets(indices, expression)? {
        let result = index.search_query(&request.query, 0, window)?;
        found.shards += index.shards().len();
        found.total_hits += result.total_hits;
        found
            .hits
            .extend(result.hits.into_iter().map(|hit| (name.clone(), hit)));
    }
    // Stable: equal scores keep index order, then each index's own order.
    found.hits.sort_by(|a, b| b.1.score.total_cmp(&a.1.score));
    if request.size > 0 {
        found.max_score = found.hits.first().map(|(_, hit)| hit.score);
    }
    found.hits = found
        .hits
        .into_iter()
        .skip(request.from)
        .take(request.size)
        .collect();
    Ok(found)
}

fn hit_json(index: &str, hit: &SearchHit, with_source: bool) -> Result<Value, RestError> {
    let mut body = json!({ "_index": index, "_id": hit.id, "_score": hit.score });
    if with_source {
        body["_source"] = serde_json::from_slice(&hit.source).map_err(|error| {
            RestError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "exception",
                format!("a stored _source is not JSON: {error}"),
            )
        })?;
    }
    Ok(body)
}

fn search_json(
    found: &Found,
    request: &SearchRequest,
    took_millis: u64,
) -> Result<Value, RestError> {
    let hits = found
        .hits
        .iter()
        .map(|(index, hit)| hit_json(index, hit, request.with_source))
        .collect::<Result<Vec<_>, _>>()?;
    let mut hits_object = Map::new();
    match (request.track_total_hits, request.total_as_number) {
        (TrackTotalHits::Off, true) => {
            hits_object.insert("total".into(), json!(-1));
        }
        (TrackTotalHits::Off, false) => {}
        (TrackTotalHits::UpTo(_), true) => {
            hits_object.insert("total".into(), json!(found.total_hits));
        }
        (TrackTotalHits::UpTo(limit), false) => {
            let total = if found.total_hits > limit {
                json!({ "value": limit, "relation": "gte" })
            } else {
                json!({ "value": found.total_hits, "relation": "eq" })
            };
            hits_object.insert("total".into(), total);
        }
    }
    hits_object.insert("max_score".into(), json!(found.max_score));
    hits_object.insert("hits".into(), Value::Array(hits));
    Ok(json!({
        "took": took_millis,
        "timed_out": false,
        "_shards": search_shards(found.shards),
        "hits": hits_object,
    }))
}

async fn search(
    node: NodeState,
    expression: Option<String>,
    params: Params,
    body: Option<Value>,
) -> Result<Response, RestError> {
    let started = Instant::now();
    let request = SearchRequest::parse(&params, body)?;
    let indices = node.indices.clone();
    let (found, request) = blocking(move || {
        let found = run_search(&indices, expression.as_deref(), &request)?;
        Ok((found, request))
    })
    .await?;
    let took = started.elapsed().as_millis() as u64;
    Ok(ok(search_json(&found, &request, took)?))
}

async fn search_all(
    State(node): State<NodeState>,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, RestError> {
    search(node, None, params, body).await
}

async fn search_index(
    State(node): State<NodeState>,
    Path(expression): Path<String>,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, RestError> {
    search(node, Some(expression), params, body).await
}

/// The query of a `_count` request: `q=`, else the body's `query`, else everything.
fn count_query(params: &Params, body: Option<Value>) -> Result<SearchQuery, RestError> {
    params.allow(&["q"])?;
    if let Some(q) = params.get("q") {
        return Ok(SearchQuery::QueryString(q.to_string()));
    }
    let Some(body) = body else {
        return Ok(SearchQuery::Dsl(json!({ "match_all": {} })));
    };
    let Value::Object(mut body) = body else {
        return Err(RestError::parse("the count body must be a JSON object"));
    };
    if let Some(unknown) = body.keys().find(|key| key.as_str() != "query") {
        return Err(RestError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "parsing_exception",
            format!("request does not support [{unknown}]"),
        ));
    }
    Ok(SearchQuery::Dsl(
        body.remove("query")
            .unwrap_or_else(|| json!({ "match_all": {} })),
    ))
}

async fn count(
    node: NodeState,
    expression: Option<String>,
    params: Params,
    body: Option<Value>,
) -> Result<Response, RestError> {
    let query = count_query(&params, body)?;
    let indices = node.indices.clone();
    let (count, shards) = blocking(move || {
        let mut count = 0u64;
        let mut shards = 0usize;
        for (_, index) in targets(&indices, expression.as_deref())? {
            count += index.count(&query)?;
            shards += index.shards().len();
        }
        Ok((count, shards))
    })
    .await?;
    Ok(ok(
        json!({ "count": count, "_shards": search_shards(shards) }),
    ))
}

async fn count_all(
    State(node): State<NodeState>,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, RestError> {
    count(node, None, params, body).await
}

async fn count_index(
    State(node): State<NodeState>,
    Path(expression): Path<String>,
    params: Params,
    JsonBody(body): JsonBody,
) -> Result<Response, RestError> {
    count(node, Some(expression), params, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_score_sorts_are_accepted() {
        for good in [
            json!("_score"),
            json!(["_score"]),
            json!({"_score": "desc"}),
            json!([{"_score": {"order": "desc"}}]),
        ] {
            assert!(check_sort(&good).is_ok(), "{good}");
        }
        for bad in [
            json!("@timestamp"),
            json!({"_score": "asc"}),
            json!([{"total": "desc"}]),
            json!("_score,total:asc"),
        ] {
            let error = check_sort(&bad).unwrap_err();
            assert!(error.reason.contains("not supported"), "{bad}");
        }
    }

    #[test]
    fn parameters_win_over_the_body_and_the_window_is_bounded() {
        let params = Params::parse("/_search", Some("q=status:ok&size=3")).unwrap();
        let request = SearchRequest::parse(
            &params,
            Some(json!({"query": {"match_all": {}}, "size": 7, "from": 2})),
        )
        .unwrap();
        assert_eq!(request.query, SearchQuery::QueryString("status:ok".into()));
        assert_eq!((request.from, request.size), (2, 3));
        let params = Params::parse("/_search", Some("from=9995&size=10")).unwrap();
        let error = SearchRequest::parse(&params, None).unwrap_err();
        assert!(error.reason.starts_with("Result window is too large"));
        let params = Params::parse("/_search", None).unwrap();
        let error = SearchRequest::parse(&params, Some(json!({"aggs": {}}))).unwrap_err();
        assert_eq!(error.reason, "[aggs] is not supported by Tandem");
        let error = SearchRequest::parse(&params, Some(json!({"qeury": {}}))).unwrap_err();
        assert_eq!(error.error_type, "parsing_exception");
    }
}
