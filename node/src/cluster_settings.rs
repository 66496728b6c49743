//! Cluster settings (`PUT|GET /_cluster/settings`): the remote clusters this cluster reaches,
//! Elasticsearch's `cluster.remote.<alias>.*` keys, and how fast this cluster's follower
//! indices copy their leaders (`ccr.indices.recovery.max_bytes_per_sec`, `.chunk_size`,
//! `.max_concurrent_file_chunks`) and how full they may make the disk
//! (`cluster.routing.allocation.disk.watermark.high`, `.disk.threshold_enabled`), when the
//! node blocks writes for lack of disk (`.disk.watermark.flood_stage`, `.low` checked for
//! order only, `cluster.info.update.interval`, see [`crate::disk_monitor`]), and how many
//! shards the node may open (`cluster.max_shards_per_node`); persistent and transient.
//!
//! Settings are kept flat (`cluster.remote.leader.seeds`), as Elasticsearch does; an update
//! merges into them (a `null` value deletes a key) and is validated as a whole before anything
//! changes. Persistent settings are stored atomically in `<data>/cluster_settings.json`;
//! transient ones live until the process stops. Transient values win over persistent ones.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tandem_engine::durable_file;
use tandem_engine::shard_limit::{
    parse_max_shards_per_node, DEFAULT_MAX_SHARDS_PER_NODE, MAX_SHARDS_PER_NODE_SETTING,
};
use tandem_engine::storage::Storage;
use tandem_engine::units::ByteSize;
use tandem_recovery::disk::{DISK_THRESHOLD_ENABLED_SETTING, DISK_WATERMARK_HIGH_SETTING};
use tandem_recovery::target::RecoverySettings;
use tandem_recovery::DiskWatermark;

use crate::disk_monitor::{
    DiskMonitorSettings, DISK_WATERMARK_FLOOD_STAGE_SETTING, DISK_WATERMARK_LOW_SETTING,
    INFO_UPDATE_INTERVAL_SETTING,
};
use crate::error::RestError;
use crate::node::NodeError;

/// File of the persistent cluster settings.
pub const CLUSTER_SETTINGS_FILE: &str = "cluster_settings.json";
/// Prefix of every remote cluster setting.
const REMOTE_PREFIX: &str = "cluster.remote.";
/// The per-alias keys a remote cluster accepts.
const REMOTE_KEYS: &[&str] = &[
    "seeds",
    "mode",
    "proxy_address",
    "server_name",
    "skip_unavailable",
    "node_connections",
    "proxy_socket_connections",
    "transport.compress",
    "transport.ping_schedule",
];

/// Prefix of the remote recovery settings (Elasticsearch's `CcrSettings`).
const RECOVERY_PREFIX: &str = "ccr.indices.recovery.";
/// `ccr.indices.recovery.max_bytes_per_sec`: the follower's copy rate limit (`0` = none).
const RECOVERY_MAX_BYTES_PER_SEC: &str = "max_bytes_per_sec";
/// `ccr.indices.recovery.chunk_size`: bytes per file chunk request.
const RECOVERY_CHUNK_SIZE: &str = "chunk_size";
/// `ccr.indices.recovery.max_concurrent_file_chunks`: chunk requests in flight per shard.
const RECOVERY_MAX_CONCURRENT_FILE_CHUNKS: &str = "max_concurrent_file_chunks";
/// The recovery keys accepted after [`RECOVERY_PREFIX`].
const RECOVERY_KEYS: &[&str] = &[
    RECOVERY_MAX_BYTES_PER_SEC,
    RECOVERY_CHUNK_SIZE,
    RECOVERY_MAX_CONCURRENT_FILE_CHUNKS,
];
/// Smallest `chunk_size` Elasticsearch accepts.
const RECOVERY_CHUNK_SIZE_MIN_BYTES: u64 = 1024;

/// How a remote cluster is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoteMode {
    /// `mode: sniff` (the default): the seed nodes' addresses.
    Sniff {
        /// `host:port` of the leader nodes.
        seeds: Vec<String>,
    },
    /// `mode: proxy`: one address in front of the leader cluster.
    Proxy {
        /// `host:port`.
        proxy_address: String,
    },
}

/// One remote cluster's effective configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteClusterConfig {
    /// The alias.
    pub alias: String,
    /// How it is reached.
    pub mode: RemoteMode,
    /// `skip_unavailable` (default false in 8.x).
    pub skip_unavailable: bool,
}

impl RemoteClusterConfig {
    /// The addresses to try, in order.
    pub fn addresses(&self) -> Vec<String> {
        match &self.mode {
            RemoteMode::Sniff { seeds } => seeds.clone(),
            RemoteMode::Proxy { proxy_address } => vec![proxy_address.clone()],
        }
    }
}

/// Persistent and transient settings, flat.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// Survive a restart.
    pub persistent: BTreeMap<String, Value>,
    /// Last until the process stops.
    #[serde(skip)]
    pub transient: BTreeMap<String, Value>,
}

impl ClusterSettings {
    /// Loads the persistent settings of `data` (none if the file is absent).
    pub fn load(storage: &dyn Storage, data: &Path) -> Result<ClusterSettings, NodeError> {
        let path = data.join(CLUSTER_SETTINGS_FILE);
        match storage.read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| NodeError::Corrupted { path, source }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Ok(ClusterSettings::default())
            }
            Err(source) => Err(NodeError::Io { path, source }),
        }
    }

    /// Stores the persistent settings in `data`, atomically.
    pub fn store(&self, storage: &dyn Storage, data: &Path) -> Result<(), NodeError> {
        let path = data.join(CLUSTER_SETTINGS_FILE);
        let bytes = match serde_json::to_vec_pretty(self) {
            Ok(bytes) => bytes,
            Err(source) => return Err(NodeError::Encode { path, source }),
        };
        durable_file::replace_atomically(storage, &path, &bytes)?;
        Ok(())
    }

    /// Applies an update body (`{"persistent": {...}, "transient": {...}}`, nested or flat
    /// keys); returns the new settings and the changes in each scope (flat). Nothing changes
    /// when any key or value is invalid.
    pub fn updated(&self, body: &Value) -> Result<(ClusterSettings, Value, Value), RestError> {
        let Value::Object(body) = body else {
            return Err(RestError::parse(
                "request body is required and must be an object",
            ));
        };
        if let Some(key) = body
            .keys()
            .find(|k| *k != "persistent" && *k != "transient")
        {
            return Err(RestError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "x_content_parse_exception",
                format!("[cluster_update_settings_request] unknown field [{key}]"),
            ));
        }
        let mut next = self.clone();
        let mut changes = Vec::new();
        for (scope, target) in [
            ("persistent", &mut next.persistent),
            ("transient", &mut next.transient),
        ] {
            let mut flat = BTreeMap::new();
            if let Some(section) = body.get(scope) {
                if !section.is_object() {
                    return Err(RestError::parse(format!("[{scope}] must be an object")));
                }
                flatten("", section, &mut flat);
            }
            for (key, value) in &flat {
                check_key(scope, key)?;
                if value.is_null() {
                    // `cluster.remote.x.*: null` style deletes take every key below.
                    let prefix = key.trim_end_matches('*');
                    target.retain(|existing, _| {
                        existing != key && !(key.ends_with('*') && existing.starts_with(prefix))
                    });
                } else {
                    target.insert(key.clone(), normalize(value));
                }
            }
            // Echoed as Elasticsearch echoes it: values as the strings they are stored as.
            let echoed: BTreeMap<String, Value> = flat
                .into_iter()
                .map(|(key, value)| {
                    let value = if value.is_null() {
                        value
                    } else {
                        normalize(&value)
                    };
                    (key, value)
                })
                .collect();
            changes.push(nest(&echoed));
        }
        next.remote_clusters()?;
        // Each scope is checked on its own: a valid transient value must not hide an invalid
        // persistent one, which would surface on the next restart.
        recovery_settings_of(&next.persistent)?;
        recovery_settings_of(&next.transient)?;
        max_shards_per_node_of(&next.persistent)?;
        max_shards_per_node_of(&next.transient)?;
        // The watermarks are ordered across scopes (what counts is the merged value), and the
        // persistent ones alone too: they are all a restart keeps.
        next.disk_monitor_settings()?;
        disk_monitor_settings_of(&next.persistent)?;
        let transient = changes.pop().unwrap_or_default();
        let persistent = changes.pop().unwrap_or_default();
        Ok((next, persistent, transient))
    }

    /// Every remote cluster configured, transient values over persistent ones.
    pub fn remote_clusters(&self) -> Result<Vec<RemoteClusterConfig>, RestError> {
        let mut merged = self.persistent.clone();
        merged.extend(self.transient.clone());
        let mut by_alias: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        for (key, value) in merged {
            if let Some(rest) = key.strip_prefix(REMOTE_PREFIX) {
                if let Some((alias, setting)) = rest.split_once('.') {
                    by_alias
                        .entry(alias.to_string())
                        .or_default()
                        .insert(setting.to_string(), value);
                }
            }
        }
        by_alias
            .into_iter()
            .filter_map(|(alias, settings)| remote_config(&alias, &settings).transpose())
            .collect()
    }

    /// The settings of the remote recoveries this cluster starts: the defaults (40mb/s, 1mb
    /// chunks, 5 in flight, as Elasticsearch's) with the `ccr.indices.recovery.*` keys set,
    /// transient values over persistent ones.
    pub fn recovery_settings(&self) -> Result<RecoverySettings, RestError> {
        let mut merged = self.persistent.clone();
        merged.extend(self.transient.clone());
        recovery_settings_of(&merged)
    }

    /// `cluster.max_shards_per_node`: the shards this node may hold open (default 1000, as
    /// Elasticsearch's), transient value over persistent one.
    pub fn max_shards_per_node(&self) -> Result<u64, RestError> {
        let mut merged = self.persistent.clone();
        merged.extend(self.transient.clone());
        max_shards_per_node_of(&merged)
    }

    /// What the node's disk monitor does (see [`crate::disk_monitor`]): Elasticsearch's
    /// defaults (85%, 90%, 95%, every 30s) with the watermark keys set, transient values over
    /// persistent ones. The watermarks must be of one form (shares of the disk, or bytes to
    /// keep free) and in order: low, high, flood stage.
    pub fn disk_monitor_settings(&self) -> Result<DiskMonitorSettings, RestError> {
        let mut merged = self.persistent.clone();
        merged.extend(self.transient.clone());
        disk_monitor_settings_of(&merged)
    }

    /// The defaults of the settings this cluster knows and neither scope sets, as
    /// `GET /_cluster/settings?include_defaults=true` shows them (nested, or flat).
    pub fn defaults_json(&self, flat: bool) -> Value {
        let recovery = RecoverySettings::default();
        let disk = DiskMonitorSettings::default();
        let defaults: BTreeMap<String, Value> = [
            (DISK_THRESHOLD_ENABLED_SETTING, "true".to_string()),
            (DISK_WATERMARK_LOW_SETTING, disk.low.to_string()),
            (DISK_WATERMARK_HIGH_SETTING, disk.high.to_string()),
            (
                DISK_WATERMARK_FLOOD_STAGE_SETTING,
                disk.flood_stage.to_string(),
            ),
            (
                INFO_UPDATE_INTERVAL_SETTING,
                format!("{}s", disk.interval.as_secs()),
            ),
            (
                MAX_SHARDS_PER_NODE_SETTING,
                DEFAULT_MAX_SHARDS_PER_NODE.to_string(),
            ),
            (
                "ccr.indices.recovery.max_bytes_per_sec",
                ByteSize(recovery.max_bytes_per_sec).to_string(),
            ),
            (
                "ccr.indices.recovery.chunk_size",
                ByteSize(recovery.chunk_size_bytes as u64).to_string(),
            ),
            (
                "ccr.indices.recovery.max_concurrent_file_chunks",
                recovery.max_concurrent_file_chunks.to_string(),
            ),
        ]
        .into_iter()
        .filter(|(key, _)| {
            !self.persistent.contains_key(*key) && !self.transient.contains_key(*key)
        })
        .map(|(key, value)| (key.to_string(), Value::String(value)))
        .collect();
        if flat {
            Value::Object(defaults.into_iter().collect())
        } else {
            nest(&defaults)
        }
    }

    /// Both scopes, nested, as `GET /_cluster/settings` shows them (`flat` keeps the keys
    /// flat, as `?flat_settings=true` does).
    pub fn to_es_json(&self, flat: bool) -> Value {
        let render = |settings: &BTreeMap<String, Value>| {
            if flat {
                Value::Object(settings.clone().into_iter().collect())
            } else {
                nest(settings)
            }
        };
        serde_json::json!({
            "persistent": render(&self.persistent),
            "transient": render(&self.transient),
        })
    }
}

/// The disk monitor's settings in one flat map of settings, over the defaults.
fn disk_monitor_settings_of(
    flat: &BTreeMap<String, Value>,
) -> Result<DiskMonitorSettings, RestError> {
    let mut settings = DiskMonitorSettings::default();
    let watermark = |key: &str| -> Result<Option<DiskWatermark>, RestError> {
        let Some(text) = flat.get(key).and_then(text) else {
            return Ok(None);
        };
        DiskWatermark::parse(&text, |bytes| {
            ByteSize::parse(bytes).ok().map(|size| size.bytes())
        })
        .map(Some)
        .map_err(|why| {
            RestError::illegal_argument(format!(
                "failed to parse value [{text}] for setting [{key}], {why}"
            ))
        })
    };
    if let Some(low) = watermark(DISK_WATERMARK_LOW_SETTING)? {
        settings.low = low;
    }
    if let Some(high) = watermark(DISK_WATERMARK_HIGH_SETTING)? {
        settings.high = high;
    }
    if let Some(flood_stage) = watermark(DISK_WATERMARK_FLOOD_STAGE_SETTING)? {
        settings.flood_stage = flood_stage;
    }
    if let Some(text) = flat.get(DISK_THRESHOLD_ENABLED_SETTING).and_then(text) {
        settings.enabled = match text.as_str() {
            "true" => true,
            "false" => false,
            _ => {
                return Err(RestError::illegal_argument(format!(
                    "failed to parse value [{text}] for setting [{DISK_THRESHOLD_ENABLED_SETTING}], must be [true] or [false]"
                )))
            }
        };
    }
    if let Some(text) = flat.get(INFO_UPDATE_INTERVAL_SETTING).and_then(text) {
        let min = crate::disk_monitor::MIN_CHECK_INTERVAL;
        settings.interval = tandem_engine::units::TimeValue::parse(&text)
            .map(|time| time.0)
            .filter(|interval| *interval >= min)
            .ok_or_else(|| {
                RestError::illegal_argument(format!(
                    "failed to parse value [{text}] for setting [{INFO_UPDATE_INTERVAL_SETTING}], must be a time value >= [{}s]",
                    min.as_secs()
                ))
            })?;
    }
    for ((lower_name, lower), (upper_name, upper)) in [
        (("low", settings.low), ("high", settings.high)),
        (
            ("high", settings.high),
            ("flood stage", settings.flood_stage),
        ),
    ] {
        match lower.at_most(&upper) {
            Some(true) => {}
            Some(false) => {
                return Err(RestError::illegal_argument(format!(
                    "the {lower_name} disk watermark [{lower}] allows more of the disk to be used than the {upper_name} disk watermark [{upper}]"
                )))
            }
            None => {
                return Err(RestError::illegal_argument(format!(
                    "the {lower_name} disk watermark [{lower}] and the {upper_name} disk watermark [{upper}] must both be percentages (or ratios) or both byte sizes"
                )))
            }
        }
    }
    Ok(settings)
}

/// `cluster.max_shards_per_node` in one flat map of settings, or its default.
fn max_shards_per_node_of(flat: &BTreeMap<String, Value>) -> Result<u64, RestError> {
    match flat.get(MAX_SHARDS_PER_NODE_SETTING).and_then(text) {
        Some(value) => parse_max_shards_per_node(&value).map_err(RestError::illegal_argument),
        None => Ok(DEFAULT_MAX_SHARDS_PER_NODE),
    }
}

/// The recovery settings of one flat map of settings, over the defaults.
fn recovery_settings_of(flat: &BTreeMap<String, Value>) -> Result<RecoverySettings, RestError> {
    let mut settings = RecoverySettings::default();
    let mut threshold_enabled = true;
    for (key, value) in flat {
        let text = text(value).unwrap_or_default();
        let invalid = |why: String| {
            RestError::illegal_argument(format!(
                "failed to parse value [{text}] for setting [{key}], {why}"
            ))
        };
        if key == DISK_WATERMARK_HIGH_SETTING {
            settings.disk_watermark_high = DiskWatermark::parse(&text, |bytes| {
                ByteSize::parse(bytes).ok().map(|size| size.bytes())
            })
            .map_err(invalid)?;
            continue;
        }
        if key == DISK_THRESHOLD_ENABLED_SETTING {
            threshold_enabled = match text.as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(invalid("must be [true] or [false]".to_string())),
            };
            continue;
        }
        let Some(setting) = key.strip_prefix(RECOVERY_PREFIX) else {
            continue;
        };
        match setting {
            RECOVERY_MAX_BYTES_PER_SEC => {
                settings.max_bytes_per_sec = ByteSize::parse(&text).map_err(invalid)?.bytes();
            }
            RECOVERY_CHUNK_SIZE => {
                let bytes = ByteSize::parse(&text).map_err(invalid)?.bytes();
                let max = tandem_recovery::target::MAX_CHUNK_SIZE_BYTES as u64;
                if !(RECOVERY_CHUNK_SIZE_MIN_BYTES..=max).contains(&bytes) {
                    return Err(invalid(format!(
                        "must be >= [{}] and <= [{}]",
                        ByteSize(RECOVERY_CHUNK_SIZE_MIN_BYTES),
                        ByteSize(max)
                    )));
                }
                settings.chunk_size_bytes = bytes as usize;
            }
            RECOVERY_MAX_CONCURRENT_FILE_CHUNKS => {
                let range = tandem_recovery::target::MAX_CONCURRENT_FILE_CHUNKS_RANGE;
                let chunks = text
                    .parse::<usize>()
                    .ok()
                    .filter(|chunks| range.contains(chunks))
                    .ok_or_else(|| {
                        invalid(format!(
                            "must be an integer >= [{}] and <= [{}]",
                            range.start(),
                            range.end()
                        ))
                    })?;
                settings.max_concurrent_file_chunks = chunks;
            }
            _ => {}
        }
    }
    if !threshold_enabled {
        settings.disk_watermark_high = DiskWatermark::Disabled;
    }
    settings
        .validate()
        .map_err(|error| RestError::illegal_argument(error.to_string()))?;
    Ok(settings)
}

fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() || prefix.is_empty() => {
            for (key, child) in map {
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&key, child, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn nest(flat: &BTreeMap<String, Value>) -> Value {
    let mut root = Map::new();
    for (key, value) in flat {
        let mut node = &mut root;
        let parts: Vec<&str> = key.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            let entry = node
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            node = entry.as_object_mut().expect("just made an object");
        }
        node.insert(parts[parts.len() - 1].to_string(), value.clone());
    }
    Value::Object(root)
}

/// Elasticsearch stores setting values as strings (lists stay lists of strings).
fn normalize(value: &Value) -> Value {
    match value {
        Value::Array(values) => Value::Array(values.iter().map(normalize).collect()),
        Value::String(_) => value.clone(),
        other => Value::String(other.to_string()),
    }
}

fn check_key(scope: &str, key: &str) -> Result<(), RestError> {
    let unknown =
        || RestError::illegal_argument(format!("{scope} setting [{key}], not recognized"));
    if key == DISK_WATERMARK_HIGH_SETTING
        || key == DISK_WATERMARK_LOW_SETTING
        || key == DISK_WATERMARK_FLOOD_STAGE_SETTING
        || key == INFO_UPDATE_INTERVAL_SETTING
        || key == DISK_THRESHOLD_ENABLED_SETTING
        || key == MAX_SHARDS_PER_NODE_SETTING
    {
        return Ok(());
    }
    if let Some(setting) = key.strip_prefix(RECOVERY_PREFIX) {
        return if RECOVERY_KEYS.contains(&setting) {
            Ok(())
        } else {
            Err(unknown())
        };
    }
    let rest = key.strip_prefix(REMOTE_PREFIX).ok_or_else(unknown)?;
    let (alias, setting) = rest.split_once('.').ok_or_else(unknown)?;
    if alias.is_empty()
        || !alias
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(RestError::illegal_argument(format!(
            "invalid remote cluster alias [{alias}] in setting [{key}]"
        )));
    }
    if setting == "*" || REMOTE_KEYS.contains(&setting) {
        Ok(())
    } else {
        Err(unknown())
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn check_address(alias: &str, setting: &str, address: &str) -> Result<(), RestError> {
    let valid = address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if valid {
        return Ok(());
    }
    Err(RestError::illegal_argument(format!(
        "failed to parse [{address}] in setting [cluster.remote.{alias}.{setting}]: expected host:port"
    )))
}

/// The configuration of one alias; `None` when it has no address at all (only deletes left).
fn remote_config(
    alias: &str,
    settings: &BTreeMap<String, Value>,
) -> Result<Option<RemoteClusterConfig>, RestError> {
    let mode = settings
        .get("mode")
        .and_then(text)
        .unwrap_or_else(|| "sniff".into());
    let seeds: Vec<String> = match settings.get("seeds") {
        Some(Value::Array(values)) => values.iter().filter_map(text).collect(),
        Some(value) => text(value).into_iter().collect(),
        None => Vec::new(),
    };
    let proxy_address = settings.get("proxy_address").and_then(text);
    let skip_unavailable = match settings.get("skip_unavailable").and_then(text).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(RestError::illegal_argument(format!(
            "Failed to parse value [{other}] for setting [cluster.remote.{alias}.skip_unavailable]"
        )))
        }
    };
    let mode = match mode.as_str() {
        "sniff" => {
            if proxy_address.is_some() {
                return Err(RestError::illegal_argument(format!(
                    "Setting \"cluster.remote.{alias}.proxy_address\" cannot be used with the configured \"cluster.remote.{alias}.mode\" [required=PROXY, configured=SNIFF]"
                )));
            }
            if seeds.is_empty() {
                return Ok(None);
            }
            for seed in &seeds {
                check_address(alias, "seeds", seed)?;
            }
            RemoteMode::Sniff { seeds }
        }
        "proxy" => {
            if !seeds.is_empty() {
                return Err(RestError::illegal_argument(format!(
                    "Setting \"cluster.remote.{alias}.seeds\" cannot be used with the configured \"cluster.remote.{alias}.mode\" [required=SNIFF, configured=PROXY]"
                )));
            }
            let Some(proxy_address) = proxy_address else {
                return Ok(None);
            };
            check_address(alias, "proxy_address", &proxy_address)?;
            RemoteMode::Proxy { proxy_address }
        }
        other => {
            return Err(RestError::illegal_argument(format!(
            "Invalid mode [{other}] for [cluster.remote.{alias}.mode]: expected [sniff] or [proxy]"
        )))
        }
    };
    Ok(Some(RemoteClusterConfig {
        alias: alias.to_string(),
        mode,
        skip_unavailable,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tandem_engine::storage::RealStorage;

    #[test]
    fn nested_and_flat_updates_merge_and_null_deletes() {
        let settings = ClusterSettings::default();
        let (settings, persistent, transient) = settings
            .updated(&json!({"persistent": {"cluster": {"remote": {"leader": {"seeds": ["127.0.0.1:9300"]}}}}}))
            .unwrap();
        assert_eq!(
            persistent,
            json!({"cluster": {"remote": {"leader": {"seeds": ["127.0.0.1:9300"]}}}})
        );
        assert_eq!(transient, json!({}));
        let (settings, _, _) = settings
            .updated(&json!({"persistent": {"cluster.remote.other.mode": "proxy", "cluster.remote.other.proxy_address": "localhost:9400", "cluster.remote.other.skip_unavailable": true}}))
            .unwrap();
        let remotes = settings.remote_clusters().unwrap();
        assert_eq!(remotes.len(), 2);
        assert_eq!(remotes[0].alias, "leader");
        assert_eq!(
            remotes[1].mode,
            RemoteMode::Proxy {
                proxy_address: "localhost:9400".into()
            }
        );
        assert!(remotes[1].skip_unavailable);
        assert_eq!(
            settings.to_es_json(false)["persistent"]["cluster"]["remote"]["other"]
                ["skip_unavailable"],
            "true"
        );
        let (settings, _, _) = settings
            .updated(&json!({"persistent": {"cluster.remote.leader.seeds": null}}))
            .unwrap();
        let remotes = settings.remote_clusters().unwrap();
        assert_eq!(remotes.len(), 1, "a null deletes the alias");
        let (settings, _, _) = settings
            .updated(&json!({"persistent": {"cluster.remote.other.*": null}}))
            .unwrap();
        assert!(settings.persistent.is_empty());
    }

    #[test]
    fn invalid_updates_change_nothing_and_say_why() {
        let settings = ClusterSettings::default();
        for (body, expected) in [
            (
                json!({"persistent": {"cluster.routing.allocation.enable": "all"}}),
                "not recognized",
            ),
            (
                json!({"persistent": {"cluster.remote.a.seeds": ["nohost"]}}),
                "expected host:port",
            ),
            (
                json!({"persistent": {"cluster.remote.a.mode": "proxy", "cluster.remote.a.seeds": ["h:1"]}}),
                "required=SNIFF",
            ),
            (
                json!({"persistent": {"cluster.remote.a.mode": "carrier-pigeon"}}),
                "Invalid mode",
            ),
            (
                json!({"persistent": {"cluster.remote.a.colour": "red"}}),
                "not recognized",
            ),
            (json!({"permanent": {}}), "unknown field"),
        ] {
            let error = settings.updated(&body).unwrap_err();
            assert!(error.reason.contains(expected), "{body}: {}", error.reason);
            assert_eq!(error.status, axum::http::StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn recovery_settings_are_elasticsearch_keys_with_its_defaults_and_ranges() {
        let defaults = ClusterSettings::default().recovery_settings().unwrap();
        assert_eq!(defaults, RecoverySettings::default());
        assert_eq!(defaults.max_bytes_per_sec, 40 << 20);
        let (settings, persistent, _) = ClusterSettings::default()
            .updated(&json!({"persistent": {"ccr": {"indices": {"recovery": {
                "max_bytes_per_sec": "10gb",
                "chunk_size": "4mb",
                "max_concurrent_file_chunks": 8
            }}}}}))
            .unwrap();
        assert_eq!(
            persistent["ccr"]["indices"]["recovery"]["max_bytes_per_sec"],
            "10gb"
        );
        let recovery = settings.recovery_settings().unwrap();
        assert_eq!(recovery.max_bytes_per_sec, 10 << 30);
        assert_eq!(recovery.chunk_size_bytes, 4 << 20);
        assert_eq!(recovery.max_concurrent_file_chunks, 8);
        // Transient wins; `0` turns the rate limit off; a null goes back to the default.
        let (settings, _, _) = settings
            .updated(&json!({
                "transient": {"ccr.indices.recovery.max_bytes_per_sec": "0"},
                "persistent": {"ccr.indices.recovery.chunk_size": null},
            }))
            .unwrap();
        let recovery = settings.recovery_settings().unwrap();
        assert_eq!(recovery.max_bytes_per_sec, 0);
        assert_eq!(recovery.chunk_size_bytes, 1 << 20);
        assert_eq!(recovery.max_concurrent_file_chunks, 8);
        for (body, expected) in [
            (
                json!({"persistent": {"ccr.indices.recovery.max_concurrent_file_chunks": 11}}),
                "must be an integer >= [1] and <= [10]",
            ),
            (
                json!({"persistent": {"ccr.indices.recovery.chunk_size": "1b"}}),
                "must be >= [1kb]",
            ),
            (
                json!({"persistent": {"ccr.indices.recovery.max_bytes_per_sec": "fast"}}),
                "failed to parse value [fast] for setting [ccr.indices.recovery.max_bytes_per_sec]",
            ),
            (
                json!({"persistent": {"ccr.indices.recovery.colour": "red"}}),
                "not recognized",
            ),
        ] {
            let error = settings.updated(&body).unwrap_err();
            assert!(error.reason.contains(expected), "{body}: {}", error.reason);
        }
    }

    #[test]
    fn disk_watermarks_are_ordered_in_the_merged_settings_and_in_what_a_restart_keeps() {
        let (settings, _, _) = ClusterSettings::default()
            .updated(&json!({"transient": {
                "cluster.routing.allocation.disk.watermark.low": "70%",
                "cluster.routing.allocation.disk.watermark.high": "80%",
            }}))
            .unwrap();
        let monitor = settings.disk_monitor_settings().unwrap();
        assert_eq!(monitor.high, DiskWatermark::UsedBasisPoints(8_000));
        assert_eq!(monitor.flood_stage, DiskWatermark::UsedBasisPoints(9_500));
        // Valid over the transient 80%, not over the default 90% a restart would bring back.
        let error = settings
            .updated(&json!({"persistent": {
                "cluster.routing.allocation.disk.watermark.flood_stage": "85%"
            }}))
            .unwrap_err();
        assert!(
            error.reason.contains("the high disk watermark [90%]"),
            "{}",
            error.reason
        );
        let (settings, _, _) = settings
            .updated(&json!({"transient": {
                "cluster.routing.allocation.disk.watermark.flood_stage": "85%",
                "cluster.info.update.interval": "1m",
            }}))
            .unwrap();
        let monitor = settings.disk_monitor_settings().unwrap();
        assert_eq!(monitor.flood_stage, DiskWatermark::UsedBasisPoints(8_500));
        assert_eq!(monitor.interval, std::time::Duration::from_secs(60));
    }

    #[test]
    fn the_disk_high_watermark_is_elasticsearch_setting_with_its_forms() {
        let defaults = ClusterSettings::default().recovery_settings().unwrap();
        assert_eq!(
            defaults.disk_watermark_high,
            DiskWatermark::UsedBasisPoints(9_000)
        );
        for (value, expected) in [
            (json!("85%"), DiskWatermark::UsedBasisPoints(8_500)),
            (json!("0.95"), DiskWatermark::UsedBasisPoints(9_500)),
            (json!("10gb"), DiskWatermark::FreeBytes(10 << 30)),
        ] {
            let (settings, _, _) = ClusterSettings::default()
                .updated(
                    // The watermarks must share a form (Elasticsearch's rule): all three set.
                    &json!({"persistent": {"cluster": {"routing": {"allocation": {
                        "disk": {"watermark": {"low": value, "high": value, "flood_stage": value}}
                    }}}}}),
                )
                .unwrap();
            let recovery = settings.recovery_settings().unwrap();
            assert_eq!(recovery.disk_watermark_high, expected, "{value}");
        }
        let (settings, _, _) = ClusterSettings::default()
            .updated(&json!({"transient": {
                "cluster.routing.allocation.disk.threshold_enabled": false
            }}))
            .unwrap();
        let recovery = settings.recovery_settings().unwrap();
        assert_eq!(recovery.disk_watermark_high, DiskWatermark::Disabled);
        for (body, expected) in [
            (
                json!({"persistent": {"cluster.routing.allocation.disk.watermark.high": "120%"}}),
                "failed to parse value [120%] for setting \
                 [cluster.routing.allocation.disk.watermark.high]",
            ),
            (
                json!({"persistent": {"cluster.routing.allocation.disk.threshold_enabled": "maybe"}}),
                "must be [true] or [false]",
            ),
        ] {
            let error = ClusterSettings::default().updated(&body).unwrap_err();
            assert!(error.reason.contains(expected), "{body}: {}", error.reason);
        }
    }

    #[test]
    fn max_shards_per_node_defaults_to_elasticsearch_and_refuses_values_below_one() {
        assert_eq!(
            ClusterSettings::default().max_shards_per_node().unwrap(),
            1000
        );
        let (settings, persistent, _) = ClusterSettings::default()
            .updated(
                &json!({"persistent": {"cluster": {"max_shards_per_node": 20}},
                              "transient": {"cluster.max_shards_per_node": "30"}}),
            )
            .unwrap();
        assert_eq!(persistent["cluster"]["max_shards_per_node"], "20");
        assert_eq!(settings.max_shards_per_node().unwrap(), 30);
        for (value, expected) in [
            (json!(0), "must be >= 1"),
            (json!("lots"), "Failed to parse value [lots]"),
        ] {
            let error = settings
                .updated(&json!({"persistent": {"cluster.max_shards_per_node": value}}))
                .unwrap_err();
            assert!(error.reason.contains(expected), "{value}: {}", error.reason);
            assert_eq!(error.error_type, "illegal_argument_exception");
        }
    }

    #[test]
    fn transient_wins_and_is_not_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let (settings, _, _) = ClusterSettings::default()
            .updated(&json!({
                "persistent": {"cluster.remote.a.seeds": ["127.0.0.1:1"]},
                "transient": {"cluster.remote.a.seeds": ["127.0.0.1:2"]},
            }))
            .unwrap();
        assert_eq!(
            settings.remote_clusters().unwrap()[0].addresses(),
            vec!["127.0.0.1:2"]
        );
        settings.store(&RealStorage, dir.path()).unwrap();
        let loaded = ClusterSettings::load(&RealStorage, dir.path()).unwrap();
        assert!(loaded.transient.is_empty());
        assert_eq!(
            loaded.remote_clusters().unwrap()[0].addresses(),
            vec!["127.0.0.1:1"]
        );
    }

    #[test]
    fn a_settings_file_that_does_not_parse_is_corrupted_and_an_unreadable_one_is_io() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CLUSTER_SETTINGS_FILE);
        std::fs::write(&path, b"{\"persistent\": ").unwrap();
        let corrupted = ClusterSettings::load(&RealStorage, dir.path()).unwrap_err();
        assert!(
            matches!(&corrupted, NodeError::Corrupted { path: reported, .. } if *reported == path),
            "{corrupted:?}"
        );
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        let unreadable = ClusterSettings::load(&RealStorage, dir.path()).unwrap_err();
        assert!(matches!(unreadable, NodeError::Io { .. }), "{unreadable:?}");
        let unwritable = ClusterSettings::default()
            .store(&RealStorage, dir.path())
            .unwrap_err();
        assert!(matches!(unwritable, NodeError::Io { .. }), "{unwritable:?}");
    }
}
