//! `GET /` (who this node is, the answer clients use to check the product and version) and
//! `GET /_cluster/health[/{index}]`.

use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;

use super::index_expression::resolve_indices;
use super::{ok, NodeState, Params};
use crate::error::RestError;
use crate::node::COMPATIBLE_VERSION;

/// The routes of this module.
pub fn routes() -> Router<NodeState> {
    Router::new()
        .route("/", get(info).head(info))
        .route("/_cluster/health", get(health))
        .route("/_cluster/health/{index}", get(index_health))
}

async fn info(State(node): State<NodeState>, params: Params) -> Result<Response, RestError> {
    params.allow(&[])?;
    Ok(ok(json!({
        "name": node.config.name,
        "cluster_name": node.identity.cluster_name,
        "cluster_uuid": node.identity.cluster_uuid,
        "version": {
            "number": COMPATIBLE_VERSION,
            "build_flavor": "default",
            "build_type": "tandem",
            "build_hash": "tandem",
            "build_date": "2026-11-01T00:00:00.000Z",
            "build_snapshot": false,
            "lucene_version": "tantivy-0.27",
            "minimum_wire_compatibility_version": "7.17.0",
            "minimum_index_compatibility_version": "7.0.0",
            "tandem_version": env!("CARGO_PKG_VERSION"),
        },
        "tagline": "You Know, for Search",
    })))
}

/// Parameters that make `_cluster/health` wait.
const HEALTH_WAIT_PARAMETERS: &[&str] = &[
    "wait_for_status",
    "wait_for_active_shards",
    "wait_for_no_relocating_shards",
    "wait_for_no_initializing_shards",
];
/// Elasticsearch's default `timeout` of a waiting health request.
const HEALTH_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// How often a waiting health request looks at the state again (an async sleep: no thread is
/// held while it waits).
const HEALTH_POLL_INTERVAL: Duration = Duration::from_millis(50);

async fn health(State(node): State<NodeState>, params: Params) -> Result<Response, RestError> {
    cluster_health(node, None, params).await
}

async fn index_health(
    State(node): State<NodeState>,
    Path(index): Path<String>,
    params: Params,
) -> Result<Response, RestError> {
    cluster_health(node, Some(index), params).await
}

/// A health status; the order is Elasticsearch's (green is better than yellow, which is better
/// than red), so `wait_for_status=yellow` is met by green.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum HealthStatus {
    Red,
    Yellow,
    Green,
}

impl HealthStatus {
    fn parse(text: &str) -> Result<HealthStatus, RestError> {
        match text {
            "green" => Ok(HealthStatus::Green),
            "yellow" => Ok(HealthStatus::Yellow),
            "red" => Ok(HealthStatus::Red),
            other => Err(RestError::illegal_argument(format!(
                "unknown cluster health status [{other}]"
            ))),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            HealthStatus::Green => "green",
            HealthStatus::Yellow => "yellow",
            HealthStatus::Red => "red",
        }
    }
}

/// `wait_for_active_shards` of a health request: `all`, or a number of active shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ActiveShards {
    All,
    AtLeast(u64),
}

impl ActiveShards {
    /// Elasticsearch's `ActiveShardCount.parseString`.
    fn parse(text: &str) -> Result<ActiveShards, RestError> {
        match text {
            "all" => Ok(ActiveShards::All),
            number => number
                .parse::<u64>()
                .map(ActiveShards::AtLeast)
                .map_err(|_| {
                    RestError::illegal_argument(format!("cannot parse ActiveShardCount[{text}]"))
                }),
        }
    }
}

/// What a health request waits for (nothing when no `wait_for_*` parameter is given).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct HealthWait {
    status: Option<HealthStatus>,
    active_shards: Option<ActiveShards>,
    no_initializing_shards: bool,
    no_relocating_shards: bool,
}

impl HealthWait {
    fn parse(params: &Params) -> Result<HealthWait, RestError> {
        Ok(HealthWait {
            status: params
                .get("wait_for_status")
                .map(HealthStatus::parse)
                .transpose()?,
            active_shards: params
                .get("wait_for_active_shards")
                .map(ActiveShards::parse)
                .transpose()?,
            no_initializing_shards: params.flag("wait_for_no_initializing_shards", false)?,
            no_relocating_shards: params.flag("wait_for_no_relocating_shards", false)?,
        })
    }

    /// True when `health` meets every condition.
    fn met_by(&self, health: &HealthSnapshot) -> bool {
        let status = self.status.is_none_or(|wanted| health.status >= wanted);
        let active = match self.active_shards {
            None => true,
            Some(ActiveShards::All) => health.active == health.shards,
            Some(ActiveShards::AtLeast(count)) => health.active as u64 >= count,
        };
        let initializing = !self.no_initializing_shards || health.initializing == 0;
        let relocating = !self.no_relocating_shards || health.relocating == 0;
        status && active && initializing && relocating
    }
}

/// The health of the indices a request names, at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HealthSnapshot {
    pub(crate) status: HealthStatus,
    pub(crate) shards: usize,
    pub(crate) active: usize,
    pub(crate) unassigned: usize,
    pub(crate) initializing: usize,
    pub(crate) relocating: usize,
}

impl HealthSnapshot {
    /// The active shards, in percent of all (100 when there is none).
    pub(crate) fn active_percent(&self) -> f64 {
        if self.shards == 0 {
            100.0
        } else {
            self.active as f64 * 100.0 / self.shards as f64
        }
    }
}

/// The health of `index` (an index expression; every index when `None`) now. A named index
/// that does not exist makes it red, as in Elasticsearch; so does a failed shard, which is
/// unassigned until the node reopens it (see `shard_failures`). On one node every shard of
/// an open index is its primary, so none is initializing or relocating.
pub(crate) fn health_now(
    node: &NodeState,
    index: Option<&str>,
) -> Result<HealthSnapshot, RestError> {
    let resolved = match index {
        None => Some(resolve_indices(&node.indices, "_all")?),
        Some(expression) => match resolve_indices(&node.indices, expression) {
            Ok(names) => Some(names),
            Err(error) if error.status == StatusCode::NOT_FOUND => None,
            Err(error) => return Err(error),
        },
    };
    let (mut shards, mut failed) = resolved
        .iter()
        .flatten()
        .filter_map(|name| node.indices.get(name).ok())
        .fold((0usize, 0usize), |(shards, failed), index| {
            (
                shards + index.shards().len(),
                failed + index.shard_failures().len(),
            )
        });
    // An index down after a failed repair (closed, but not by anyone): all its shards are
    // unassigned, as Elasticsearch shows a shard it cannot allocate.
    for name in node.indices.failed_reopens().into_keys() {
        let wanted = index.is_none() || resolved.iter().flatten().any(|known| *known == name);
        if let (true, Ok(metadata)) = (wanted, node.indices.metadata(&name)) {
            let down = metadata.settings.number_of_shards as usize;
            shards += down;
            failed += down;
        }
    }
    let status = if resolved.is_none() || failed > 0 {
        HealthStatus::Red
    } else {
        HealthStatus::Green
    };
    Ok(HealthSnapshot {
        status,
        shards,
        active: shards - failed,
        unassigned: failed,
        initializing: 0,
        relocating: 0,
    })
}

/// `_cluster/health[/{index}]`. A request with a `wait_for_*` parameter waits until the state
/// meets all of them or `timeout` (default 30s) passes, then answers 408 with
/// `timed_out: true`, as Elasticsearch does.
async fn cluster_health(
    node: NodeState,
    index: Option<String>,
    params: Params,
) -> Result<Response, RestError> {
    let mut allowed = vec!["timeout", "level", "local", "master_timeout"];
    allowed.extend_from_slice(HEALTH_WAIT_PARAMETERS);
    params.allow(&allowed)?;
    params.flag("local", false)?;
    let wait = HealthWait::parse(&params)?;
    let deadline = Instant::now() + params.time("timeout")?.unwrap_or(HEALTH_TIMEOUT_DEFAULT);
    let (health, timed_out) = loop {
        let health = health_now(&node, index.as_deref())?;
        if wait.met_by(&health) {
            break (health, false);
        }
        if Instant::now() >= deadline {
            break (health, true);
        }
        tokio::time::sleep(
            HEALTH_POLL_INTERVAL.min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
    };
    let active_percent = health.active_percent();
    let answer = json!({
        "cluster_name": node.identity.cluster_name,
        "status": health.status.name(),
        "timed_out": timed_out,
        "number_of_nodes": 1,
        "number_of_data_nodes": 1,
        "active_primary_shards": health.active,
        "active_shards": health.active,
        "relocating_shards": health.relocating,
        "initializing_shards": health.initializing,
        "unassigned_shards": health.unassigned,
        "unassigned_primary_shards": health.unassigned,
        "delayed_unassigned_shards": 0,
        "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0,
        "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": active_percent,
    });
    let code = if timed_out {
        StatusCode::REQUEST_TIMEOUT
    } else {
        StatusCode::OK
    };
    Ok((code, axum::Json(answer)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(status: HealthStatus, shards: usize, active: usize) -> HealthSnapshot {
        HealthSnapshot {
            status,
            shards,
            active,
            unassigned: shards - active,
            initializing: 0,
            relocating: 0,
        }
    }

    fn wait(query: &str) -> HealthWait {
        HealthWait::parse(&Params::parse("/_cluster/health", Some(query)).unwrap()).unwrap()
    }

    #[test]
    fn a_status_is_met_by_itself_and_better_ones() {
        let green = snapshot(HealthStatus::Green, 2, 2);
        let red = snapshot(HealthStatus::Red, 2, 1);
        assert!(wait("wait_for_status=yellow").met_by(&green));
        assert!(wait("wait_for_status=green").met_by(&green));
        assert!(!wait("wait_for_status=green").met_by(&red));
        assert!(!wait("wait_for_status=yellow").met_by(&red));
        assert!(wait("wait_for_status=red").met_by(&red));
        assert_eq!(wait(""), HealthWait::default());
    }

    #[test]
    fn active_shards_count_all_or_at_least() {
        let partly = snapshot(HealthStatus::Red, 3, 2);
        assert!(wait("wait_for_active_shards=2").met_by(&partly));
        assert!(!wait("wait_for_active_shards=3").met_by(&partly));
        assert!(!wait("wait_for_active_shards=all").met_by(&partly));
        assert!(wait("wait_for_active_shards=all").met_by(&snapshot(HealthStatus::Green, 3, 3)));
        assert!(wait("wait_for_no_initializing_shards=true").met_by(&partly));
    }

    #[test]
    fn bad_wait_values_are_refused_as_elasticsearch_does() {
        let parse =
            |query| HealthWait::parse(&Params::parse("/_cluster/health", Some(query)).unwrap());
        assert_eq!(
            parse("wait_for_status=blue").unwrap_err().reason,
            "unknown cluster health status [blue]"
        );
        assert_eq!(
            parse("wait_for_active_shards=some").unwrap_err().reason,
            "cannot parse ActiveShardCount[some]"
        );
        assert!(parse("wait_for_no_initializing_shards=maybe").is_err());
    }
}
