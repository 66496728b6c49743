//! `GET /_cat/recovery[/{index}]`: one row per follower shard recovery (the remote recoveries
//! that bootstrap follower indices), with Elasticsearch's columns. Rows come from the same
//! records as `GET /_recovery` ([`crate::rest::recovery::recoveries`]), sorted by index then
//! shard. `?active_only` keeps the running ones.

use std::time::SystemTime;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tandem_replication::follower_indices::FollowerShardRecovery;

use super::{CatRequest, Column};
use crate::error::RestError;
use crate::rest::recovery::{epoch_millis, percent, recoveries, stage_name};
use crate::rest::{NodeState, Params};

/// Every column, in row order (hidden ones appear only when `?h=` names them, as in
/// Elasticsearch).
pub const COLUMNS: &[Column] = &[
    Column::text("index"),
    Column::number("shard"),
    Column::text("start_time").hidden(),
    Column::number("start_time_millis").hidden(),
    Column::text("stop_time").hidden(),
    Column::number("stop_time_millis").hidden(),
    Column::number("time"),
    Column::text("type"),
    Column::text("stage"),
    Column::text("source_host"),
    Column::text("source_node"),
    Column::text("target_host"),
    Column::text("target_node"),
    Column::text("repository"),
    Column::text("snapshot"),
    Column::number("files"),
    Column::number("files_recovered"),
    Column::number("files_percent"),
    Column::number("files_total"),
    Column::number("bytes"),
    Column::number("bytes_recovered"),
    Column::number("bytes_percent"),
    Column::number("bytes_total"),
    Column::number("translog_ops"),
    Column::number("translog_ops_recovered"),
    Column::number("translog_ops_percent"),
];

/// The routes of this module.
pub fn routes() -> Router<NodeState> {
    Router::new()
        .route("/_cat/recovery", get(cat_all))
        .route("/_cat/recovery/{index}", get(cat_some))
}

/// `time` as an ISO-8601 UTC timestamp with milliseconds (`2026-11-30T04:19:12.345Z`).
pub fn iso8601(time: SystemTime) -> String {
    let millis = epoch_millis(time);
    let (days, in_day) = (millis / 86_400_000, millis % 86_400_000);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm, proleptic Gregorian).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1_000 % 60,
        in_day % 1_000
    )
}

/// Every cell of one recovery, in [`COLUMNS`] order.
fn cells(node: &NodeState, recovery: &FollowerShardRecovery, request: &CatRequest) -> Vec<String> {
    let progress = &recovery.progress;
    let (stop_time, stop_millis) = match progress.stop_time {
        Some(stop) => (iso8601(stop), epoch_millis(stop).to_string()),
        None => (String::new(), String::new()),
    };
    let target_host = node.config.http.ip().to_string();
    vec![
        recovery.follower_index.clone(),
        recovery.shard.to_string(),
        iso8601(progress.start_time),
        epoch_millis(progress.start_time).to_string(),
        stop_time,
        stop_millis,
        request.time(progress.total_time),
        // Elasticsearch's type and stage, in the lower case its _cat API prints.
        "snapshot".to_string(),
        stage_name(progress.stage).to_lowercase(),
        "n/a".to_string(),
        "n/a".to_string(),
        target_host,
        node.config.name.clone(),
        format!("_ccr_{}", recovery.remote_cluster),
        "_latest_".to_string(),
        progress.files_total.to_string(),
        progress.files_recovered.to_string(),
        percent(progress.files_recovered, progress.files_total),
        progress.files_total.to_string(),
        request.size(progress.bytes_total),
        request.size(progress.bytes_recovered),
        percent(progress.bytes_recovered, progress.bytes_total),
        request.size(progress.bytes_total),
        // A snapshot-style recovery replays no translog: the pull loop takes over.
        "0".to_string(),
        "0".to_string(),
        "100.0%".to_string(),
    ]
}

async fn cat(
    node: NodeState,
    expression: Option<String>,
    params: Params,
) -> Result<Response, RestError> {
    let request = CatRequest::parse(
        "_cat/recovery",
        COLUMNS,
        &params,
        &["active_only", "detailed"],
        "index",
    )?;
    params.flag("detailed", false)?;
    let mut found = recoveries(
        &node,
        expression.as_deref(),
        params.flag("active_only", false)?,
    )?;
    found.sort_by(|a, b| {
        (a.follower_index.as_str(), a.shard).cmp(&(b.follower_index.as_str(), b.shard))
    });
    request.respond(
        found
            .iter()
            .map(|recovery| cells(&node, recovery, &request))
            .collect(),
    )
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
    use std::time::Duration;

    #[test]
    fn timestamps_are_iso8601_utc() {
        let at = |millis: u64| SystemTime::UNIX_EPOCH + Duration::from_millis(millis);
        assert_eq!(iso8601(at(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(at(951_782_400_000)), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(at(1_796_012_352_345)), "2026-11-30T04:19:12.345Z");
    }

    #[test]
    fn every_column_has_a_unique_name() {
        let mut names: Vec<&str> = COLUMNS.iter().map(|column| column.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COLUMNS.len());
    }
}
