//! `GET /_cat/nodes`: the node, in one row (see the parent module for the table parameters).
//!
//! Columns: ip heap.percent ram.percent cpu load_1m load_5m load_15m node.role master name, and
//! on request id, pid, port, http_address, uptime, file_desc.current, file_desc.max. Tandem has
//! no heap: `heap.percent` is the process's resident memory as a share of the machine's.

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use super::{CatRequest, Column};
use crate::error::RestError;
use crate::rest::blocking::blocking;
use crate::rest::{NodeState, Params};
use crate::system;

/// Every column, in display order.
pub const COLUMNS: &[Column] = &[
    Column::text("ip"),
    Column::number("heap.percent"),
    Column::number("ram.percent"),
    Column::number("cpu"),
    Column::number("load_1m"),
    Column::number("load_5m"),
    Column::number("load_15m"),
    Column::text("node.role"),
    Column::text("master"),
    Column::text("name"),
    Column::text("id").hidden(),
    Column::number("pid").hidden(),
    Column::number("port").hidden(),
    Column::text("http_address").hidden(),
    Column::text("uptime").hidden(),
    Column::number("file_desc.current").hidden(),
    Column::number("file_desc.max").hidden(),
];

/// The routes of this module.
pub fn routes() -> Router<NodeState> {
    Router::new().route("/_cat/nodes", get(cat_nodes))
}

async fn cat_nodes(State(node): State<NodeState>, params: Params) -> Result<Response, RestError> {
    let request = CatRequest::parse("_cat/nodes", COLUMNS, &params, &["full_id"], "name")?;
    let sampled = node.clone();
    let (os, process, (_, cpu)) =
        blocking(move || Ok((system::os(), system::process(), sampled.cpu.percents()))).await?;
    let percent = system::percent;
    let used = os.mem_total_bytes.saturating_sub(os.mem_free_bytes);
    let uptime = node.started.elapsed();
    let row = vec![
        node.config.http.ip().to_string(),
        percent(process.resident_bytes, os.mem_total_bytes).to_string(),
        percent(used, os.mem_total_bytes).to_string(),
        cpu.to_string(),
        format!("{:.2}", os.load_average[0]),
        format!("{:.2}", os.load_average[1]),
        format!("{:.2}", os.load_average[2]),
        "dimr".to_string(),
        "*".to_string(),
        node.config.name.clone(),
        node.identity.node_id.clone(),
        std::process::id().to_string(),
        node.config.http.port().to_string(),
        node.config.http.to_string(),
        request.time(uptime),
        process.open_file_descriptors.to_string(),
        process.max_file_descriptors.to_string(),
    ];
    request.respond(vec![row])
}
