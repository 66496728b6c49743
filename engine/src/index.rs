//! `Index`: N shards fixed at creation, with settings, mappings, routing by `_id` and search
//! across shards.
//!
//! On disk: `<dir>/index_metadata.json` (name, uuid, settings, mappings and their versions,
//! replaced atomically on every change) and one shard directory per shard, `<dir>/<shard>/`.
//! Routing is `fnv1a64(_id) mod number_of_shards`: stable across processes and versions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tantivy::collector::{Count, TopDocs};

use crate::durable_file;
use crate::error::{EngineError, Result};
use crate::mapping::{
    check_total_fields, DocumentMapper, MappingListener, Mappings, DEFAULT_TOTAL_FIELDS_LIMIT,
};
use crate::shard::{
    DeleteRequest, Durability, GetResult, IndexRequest, PromotionRequest, ShardConfig, ShardEngine,
    WriteRequest, WriteResult, DEFAULT_TRANSLOG_FLUSH_THRESHOLD_BYTES,
};
use crate::storage::{Storage, StorageRef};
use crate::types::PrimaryTerm;
use crate::units::{parse_time_millis, ByteSize};

/// The file holding an index's metadata.
pub const INDEX_METADATA_FILE: &str = "index_metadata.json";
/// Marker file of a follower shard (see [`Index::set_follower`]).
const FOLLOWER_MARKER: &str = crate::shard::FOLLOWER_MARKER_FILE;
/// Marker of a shard that stopped following while closed: its next open promotes it to a
/// primary (bumps the primary term, durably) before it takes any write, so its own writes
/// never share a term with the leader's operations it replicated.
const PROMOTE_MARKER: &str = "promote_to_primary";
/// Most shards an index may have.
pub const MAX_SHARDS: u32 = 1024;

/// The promotion the marker `path` asks for, if there is one: written by
/// [`Index::mark_for_promotion`]; a marker of older versions (`1`) asks for a bare promotion.
fn read_promotion_marker(storage: &dyn Storage, path: &Path) -> Result<Option<PromotionRequest>> {
    let Some(content) = durable_file::read_if_exists(storage, path)? else {
        return Ok(None);
    };
    if content == b"1" {
        return Ok(Some(PromotionRequest::default()));
    }
    serde_json::from_slice(&content)
        .map(Some)
        .map_err(|e| EngineError::Corrupted {
            path: path.to_path_buf(),
            reason: format!("invalid promotion marker: {e}"),
        })
}

/// Elasticsearch's error for a write to index `name` while it has
/// `index.blocks.read_only_allow_delete` (a 429, which clients and follow tasks retry).
fn read_only_allow_delete_error(name: &str) -> EngineError {
    EngineError::NoSpace(format!(
        "index [{name}] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block];"
    ))
}

/// Index settings, with Elasticsearch's names and defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexSettings {
    /// `index.number_of_shards` (default 1).
    pub number_of_shards: u32,
    /// `index.number_of_replicas` (accepted and kept; a Tandem node holds one copy).
    pub number_of_replicas: u32,
    /// `index.refresh_interval` in milliseconds; `None` for `-1` (refresh on demand only).
    pub refresh_interval_millis: Option<u64>,
    /// `index.translog.durability`: true for `request` (default), false for `async`.
    pub durability_request: bool,
    /// `index.translog.sync_interval` in milliseconds (default 5s), used by `async`.
    pub translog_sync_interval_millis: u64,
    /// `index.soft_deletes.retention_lease.period` in milliseconds (default 12h).
    pub retention_lease_period_millis: u64,
    /// `index.soft_deletes.retention.operations` (default 0).
    pub retention_operations: u64,
    /// `index.translog.flush_threshold_size` in bytes (default 512mb).
    #[serde(default = "default_translog_flush_threshold_bytes")]
    pub translog_flush_threshold_bytes: u64,
    /// `index.mapping.total_fields.limit` (default 1000): how many fields new documents and
    /// mapping updates may grow the mappings to; a follower applies its leader's mappings as
    /// they are.
    #[serde(default = "default_total_fields_limit")]
    pub total_fields_limit: u64,
    /// Settings about where shards go in a cluster of many nodes (`routing.allocation.*`,
    /// `routing.rebalance.*`, `auto_expand_replicas`, `priority`,
    /// `unassigned.node_left.delayed_timeout`), keyed without the `index.` prefix: accepted
    /// and shown as given, so that requests written for Elasticsearch work, but without
    /// effect on a one-node cluster.
    #[serde(default)]
    pub placement: BTreeMap<String, String>,
    /// `index.blocks.read_only_allow_delete` (default false): writes and settings changes are
    /// refused with a 429 `cluster_block_exception` (reads and deletes of the index go on).
    /// The node sets it on every index when its disk passes the flood-stage watermark and
    /// clears it when the disk is back under the high watermark; an operator may set or clear
    /// it by hand. A follower does not take it from its leader.
    #[serde(default)]
    pub read_only_allow_delete: bool,
}

fn default_total_fields_limit() -> u64 {
    DEFAULT_TOTAL_FIELDS_LIMIT
}

fn default_translog_flush_threshold_bytes() -> u64 {
    DEFAULT_TRANSLOG_FLUSH_THRESHOLD_BYTES
}

/// Whether `key` (without `index.`) is a placement setting ([`IndexSettings::placement`]).
fn is_placement_setting(key: &str) -> bool {
    key.starts_with("routing.allocation.")
        || key.starts_with("routing.rebalance.")
        || matches!(
            key,
            "auto_expand_replicas" | "priority" | "unassigned.node_left.delayed_timeout"
        )
}

impl Default for IndexSettings {
    fn default() -> Self {
        IndexSettings {
            number_of_shards: 1,
            number_of_replicas: 1,
            refresh_interval_millis: Some(1000),
            durability_request: true,
            translog_sync_interval_millis: 5000,
            retention_lease_period_millis: 12 * 3600 * 1000,
            retention_operations: 0,
            translog_flush_threshold_bytes: DEFAULT_TRANSLOG_FLUSH_THRESHOLD_BYTES,
            total_fields_limit: DEFAULT_TOTAL_FIELDS_LIMIT,
            placement: BTreeMap::new(),
            read_only_allow_delete: false,
        }
    }
}

impl IndexSettings {
    /// Parses Elasticsearch settings: `{"index": {...}}`, `{"number_of_shards": 1}` or flat
    /// dotted keys (`"index.number_of_shards": "1"`). Unknown settings are an error.
    pub fn from_es_json(body: &Value) -> Result<IndexSettings> {
        let mut settings = IndexSettings::default();
        settings.apply_es_json(body, true)?;
        Ok(settings)
    }

    /// Applies a settings update; `creating` allows the settings fixed at creation.
    pub fn apply_es_json(&mut self, body: &Value, creating: bool) -> Result<()> {
        let mut flat = BTreeMap::new();
        flatten("", body, &mut flat)?;
        for (key, value) in flat {
            let key = key.strip_prefix("index.").unwrap_or(&key).to_string();
            let text = match &value {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                other => other.to_string(),
            };
            let invalid = |why: &str| {
                EngineError::InvalidArgument(format!(
                    "failed to parse value [{text}] for setting [index.{key}]: {why}"
                ))
            };
            match key.as_str() {
                "number_of_shards" => {
                    if !creating {
                        return Err(EngineError::InvalidArgument(
                            "final index setting [index.number_of_shards], not updateable".to_string(),
                        ));
                    }
                    let shards: u32 = text.parse().map_err(|_| invalid("not an integer"))?;
                    if shards == 0 || shards > MAX_SHARDS {
                        return Err(invalid(&format!("must be between 1 and {MAX_SHARDS}")));
                    }
                    self.number_of_shards = shards;
                }
                "number_of_replicas" => {
                    self.number_of_replicas = text.parse().map_err(|_| invalid("not an integer"))?
                }
                "refresh_interval" => {
                    self.refresh_interval_millis = if text == "-1" {
                        None
                    } else {
                        Some(parse_time_millis(&text).ok_or_else(|| invalid("not a time value"))?)
                    }
                }
                "translog.durability" => {
                    self.durability_request = match text.to_ascii_lowercase().as_str() {
                        "request" => true,
                        "async" => false,
                        _ => return Err(invalid("expected [request] or [async]")),
                    }
                }
                "translog.flush_threshold_size" => {
                    let bytes = ByteSize::parse(&text).map_err(|why| invalid(&why))?.bytes();
                    if bytes == 0 {
                        return Err(invalid("must be greater than 0"));
                    }
                    self.translog_flush_threshold_bytes = bytes;
                }
                "translog.sync_interval" => {
                    self.translog_sync_interval_millis =
                        parse_time_millis(&text).ok_or_else(|| invalid("not a time value"))?
                }
                "soft_deletes.retention_lease.period" => {
                    self.retention_lease_period_millis =
                        parse_time_millis(&text).ok_or_else(|| invalid("not a time value"))?
                }
                "soft_deletes.retention.operations" => {
                    self.retention_operations = text.parse().map_err(|_| invalid("not an integer"))?
                }
                "mapping.total_fields.limit" => {
                    self.total_fields_limit = text.parse().map_err(|_| invalid("not an integer"))?
                }
                "blocks.read_only_allow_delete" => {
                    self.read_only_allow_delete = match text.as_str() {
                        "true" => true,
                        "false" | "null" => false,
                        _ => return Err(invalid("expected [true] or [false]")),
                    }
                }
                "soft_deletes.enabled" if text == "true" => {}
                placement if is_placement_setting(placement) => {
                    if value.is_object() {
                        return Err(invalid("expected a value, got an object"));
                    }
                    self.placement.insert(key.clone(), text);
                }
                "uuid" | "provided_name" | "creation_date" | "version.created" if creating => {}
                _ => {
                    return Err(EngineError::InvalidArgument(format!(
                        "unknown setting [index.{key}] please check that any required plugins are installed, or check the breaking changes documentation for removed settings"
                    )))
                }
            }
        }
        Ok(())
    }

    /// The settings as Elasticsearch shows them (`{"index": {...}}`, values as strings).
    pub fn to_es_json(&self) -> Value {
        let mut settings = serde_json::json!({
            "index": {
                "number_of_shards": self.number_of_shards.to_string(),
                "number_of_replicas": self.number_of_replicas.to_string(),
                "refresh_interval": self.refresh_interval_millis.map_or("-1".to_string(), |ms| format!("{ms}ms")),
                "translog": {
                    "durability": if self.durability_request { "request" } else { "async" },
                    "sync_interval": format!("{}ms", self.translog_sync_interval_millis),
                    "flush_threshold_size": ByteSize(self.translog_flush_threshold_bytes).to_string(),
                },
                "soft_deletes": {
                    "enabled": "true",
                    "retention_lease": { "period": format!("{}ms", self.retention_lease_period_millis) },
                    "retention": { "operations": self.retention_operations.to_string() },
                },
            }
        });
        // Shown when set, as Elasticsearch shows the settings an index was given.
        if self.total_fields_limit != DEFAULT_TOTAL_FIELDS_LIMIT {
            settings["index"]["mapping"] =
                serde_json::json!({"total_fields": {"limit": self.total_fields_limit.to_string()}});
        }
        if self.read_only_allow_delete {
            settings["index"]["blocks"] = serde_json::json!({"read_only_allow_delete": "true"});
        }
        for (key, value) in &self.placement {
            let mut node = &mut settings["index"];
            for part in key.split('.') {
                if !node.is_object() {
                    *node = Value::Object(serde_json::Map::new());
                }
                node = &mut node[part];
            }
            *node = Value::String(value.clone());
        }
        settings
    }

    /// The shard configuration these settings describe.
    pub fn shard_config(&self) -> ShardConfig {
        ShardConfig {
            durability: if self.durability_request {
                Durability::Request
            } else {
                Durability::Async {
                    interval: Duration::from_millis(self.translog_sync_interval_millis.max(1)),
                }
            },
            refresh_interval: self.refresh_interval_millis.map(Duration::from_millis),
            retention_lease_period: Duration::from_millis(self.retention_lease_period_millis),
            retention_operations: self.retention_operations,
            translog_flush_threshold_bytes: self.translog_flush_threshold_bytes,
            ..ShardConfig::default()
        }
    }
}

/// Flattens a settings body into dotted keys. An empty object under a key other than the
/// `index` namespace is kept as a value, so that the setting it names refuses it as a value of
/// the wrong type (`"number_of_replicas": {}` is not a number) instead of it vanishing.
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) -> Result<()> {
    match value {
        Value::Object(map) if map.is_empty() && !prefix.is_empty() && prefix != "index" => {
            out.insert(prefix.to_string(), value.clone());
            Ok(())
        }
        Value::Object(map) => {
            for (key, child) in map {
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&key, child, out)?;
            }
            Ok(())
        }
        Value::Null if prefix.is_empty() => Ok(()),
        _ if prefix.is_empty() => Err(EngineError::InvalidArgument(
            "index settings must be a JSON object".to_string(),
        )),
        other => {
            out.insert(prefix.to_string(), other.clone());
            Ok(())
        }
    }
}

/// What is persisted about an index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexMetadata {
    /// Index name.
    pub name: String,
    /// Index uuid (new for every created index).
    pub uuid: String,
    /// Settings.
    pub settings: IndexSettings,
    /// Mappings.
    pub mappings: Mappings,
    /// Grows with every mapping change.
    pub mapping_version: u64,
    /// Grows with every settings change.
    pub settings_version: u64,
    /// Grows with every alias change.
    pub aliases_version: u64,
    /// Creation time, milliseconds since the Unix epoch.
    pub creation_date_millis: u64,
    /// Aliases of the index: name -> Elasticsearch alias body (`filter`, `routing`,
    /// `is_write_index`, …; `{}` for a plain alias).
    #[serde(default)]
    pub aliases: BTreeMap<String, Value>,
}

/// One action of an aliases update (`POST /_aliases`).
#[derive(Clone, Debug, PartialEq)]
pub enum AliasAction {
    /// Adds (or replaces) an alias with its body.
    Add {
        /// Alias name.
        alias: String,
        /// The alias body (`{}`, or with `filter`, `routing`, `is_write_index`).
        body: Value,
    },
    /// Removes an alias.
    Remove {
        /// Alias name.
        alias: String,
    },
}

/// One search hit.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchHit {
    /// Document id.
    pub id: String,
    /// Relevance score.
    pub score: f32,
    /// The document's `_source` (JSON bytes).
    pub source: Vec<u8>,
}

/// The result of a search.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchResult {
    /// Number of matching documents.
    pub total_hits: u64,
    /// The best hits, by descending score.
    pub hits: Vec<SearchHit>,
    /// Highest score, if any hit.
    pub max_score: Option<f32>,
}

/// The query of a search or count.
#[derive(Clone, Debug, PartialEq)]
pub enum SearchQuery {
    /// Elasticsearch `q=` query-string syntax.
    QueryString(String),
    /// An Elasticsearch query DSL object (`{"match": {"field": "text"}}`).
    Dsl(Value),
}

/// An index: its metadata and shards.
pub struct Index {
    /// Where the index's files are.
    storage: StorageRef,
    dir: PathBuf,
    metadata: Arc<RwLock<IndexMetadata>>,
    mapper: Arc<DocumentMapper>,
    shards: Vec<ShardEngine>,
    /// Set by [`Index::begin_close`]: the index is being closed or deleted and takes no new
    /// users (see [`Indices::get`](crate::indices::Indices::get)).
    closing: AtomicBool,
    /// Set by [`Index::begin_delete`]: the index is being deleted (not only closed).
    deleted: AtomicBool,
}

/// Checks an index name against Elasticsearch's rules (lowercase, no `\/*?"<>| ,#:`, not
/// starting with `_`, `-` or `+`, not `.` or `..`, at most 255 bytes).
pub fn validate_index_name(name: &str) -> Result<()> {
    let invalid =
        |why: &str| EngineError::InvalidArgument(format!("Invalid index name [{name}], {why}"));
    if name.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if name != name.to_lowercase() {
        return Err(invalid("must be lowercase"));
    }
    if name.starts_with(['_', '-', '+']) {
        return Err(invalid("must not start with '_', '-', or '+'"));
    }
    if name == "." || name == ".." {
        return Err(invalid("must not be '.' or '..'"));
    }
    if name.len() > 255 {
        return Err(invalid("index name is too long"));
    }
    if let Some(bad) = name.chars().find(|c| r#"\/*?"<>| ,#:"#.contains(*c)) {
        return Err(invalid(&format!("must not contain the character [{bad}]")));
    }
    Ok(())
}

/// Persists every mapping change of the index in `dir`. Like every metadata writer (settings,
/// aliases, leader catch-up), it reads, modifies and persists the metadata under its write
/// lock, so that no writer persists a copy that misses another's change. The mapper calls it
/// under its own mappings lock: the lock order is mappings, then metadata, and no metadata
/// writer takes the mappings lock.
fn metadata_listener(
    storage: StorageRef,
    dir: PathBuf,
    metadata: Arc<RwLock<IndexMetadata>>,
) -> MappingListener {
    Box::new(move |mappings, version| {
        let mut current = metadata.write();
        let mut updated = current.clone();
        updated.mappings = mappings.clone();
        updated.mapping_version = version;
        persist_metadata(&*storage, &dir, &updated)?;
        *current = updated;
        Ok(())
    })
}

fn persist_metadata(storage: &dyn Storage, dir: &Path, metadata: &IndexMetadata) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(metadata)
        .map_err(|e| EngineError::encode("index metadata", e))?;
    durable_file::replace_atomically(storage, &dir.join(INDEX_METADATA_FILE), &bytes)?;
    Ok(())
}

/// True when something is at `path` (an I/O error other than "not found" is an error).
fn exists(storage: &dyn Storage, path: &Path) -> Result<bool> {
    storage.exists(path).map_err(|e| EngineError::io(path, e))
}

impl Index {
    /// Creates an index in `dir` (which must not exist yet) from Elasticsearch settings and
    /// mappings bodies.
    pub fn create(dir: &Path, name: &str, settings: &Value, mappings: &Value) -> Result<Index> {
        let settings = IndexSettings::from_es_json(settings)?;
        let mappings = Mappings::from_es_json(mappings)?;
        Self::create_with(
            &crate::storage::real(),
            dir,
            name,
            &uuid::Uuid::new_v4().to_string(),
            settings,
            mappings,
            false,
        )
    }

    /// Creates an index with the given parts; `follower` shards refuse direct writes. A new
    /// primary index's mappings must fit its `index.mapping.total_fields.limit`; a follower
    /// takes its leader's mappings as they are.
    pub fn create_with(
        storage: &StorageRef,
        dir: &Path,
        name: &str,
        uuid: &str,
        settings: IndexSettings,
        mappings: Mappings,
        follower: bool,
    ) -> Result<Index> {
        validate_index_name(name)?;
        if !follower {
            check_total_fields(
                &Mappings::empty(),
                &mappings,
                settings.total_fields_limit,
                false,
            )?;
        }
        if exists(&**storage, &dir.join(INDEX_METADATA_FILE))? {
            return Err(EngineError::IndexAlreadyExists {
                name: name.to_string(),
            });
        }
        durable_file::create_dir_all(&**storage, dir)?;
        let metadata = IndexMetadata {
            name: name.to_string(),
            uuid: uuid.to_string(),
            settings: settings.clone(),
            mappings,
            mapping_version: 1,
            settings_version: 1,
            aliases_version: 1,
            aliases: BTreeMap::new(),
            creation_date_millis: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        };
        let metadata = Arc::new(RwLock::new(metadata));
        let mapper = Arc::new(DocumentMapper::new(
            metadata.read().mappings.clone(),
            1,
            Some(metadata_listener(
                storage.clone(),
                dir.to_path_buf(),
                metadata.clone(),
            )),
        ));
        mapper.set_total_fields_limit(settings.total_fields_limit);
        let mut config = settings.shard_config();
        config.follower = follower;
        config.storage = storage.clone();
        let mut shards = Vec::new();
        for shard in 0..settings.number_of_shards {
            let shard_dir = dir.join(shard.to_string());
            shards.push(ShardEngine::create(
                &shard_dir,
                mapper.clone(),
                config.clone(),
                PrimaryTerm(1),
            )?);
            if follower {
                // As `set_follower` does: the shard reopens as a follower.
                durable_file::replace_atomically(
                    &**storage,
                    &shard_dir.join(FOLLOWER_MARKER),
                    b"1",
                )?;
            }
        }
        // The metadata file is written last: its presence marks a complete index.
        persist_metadata(&**storage, dir, &metadata.read())?;
        let index = Index {
            storage: storage.clone(),
            dir: dir.to_path_buf(),
            metadata,
            mapper,
            shards,
            closing: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
        };
        index.apply_write_block();
        Ok(index)
    }

    /// Reads the metadata of the index in `dir` without opening it.
    pub fn read_metadata(storage: &dyn Storage, dir: &Path) -> Result<IndexMetadata> {
        let path = dir.join(INDEX_METADATA_FILE);
        let bytes = storage.read(&path).map_err(|e| EngineError::io(&path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| EngineError::Corrupted {
            path: path.clone(),
            reason: format!("invalid index metadata: {e}"),
        })
    }

    /// Writes the metadata of a new index whose shards were built in `dir` by other means
    /// (remote recovery), making the index complete (see [`crate::indices`]), and opens it.
    pub fn create_from_shards(
        storage: &StorageRef,
        dir: &Path,
        metadata: &IndexMetadata,
    ) -> Result<Index> {
        validate_index_name(&metadata.name)?;
        if exists(&**storage, &dir.join(INDEX_METADATA_FILE))? {
            return Err(EngineError::IndexAlreadyExists {
                name: metadata.name.clone(),
            });
        }
        for shard in 0..metadata.settings.number_of_shards {
            let shard_dir = dir.join(shard.to_string());
            if !storage.is_dir(&shard_dir) {
                return Err(EngineError::InvalidArgument(format!(
                    "index [{}] has no shard directory {}",
                    metadata.name,
                    shard_dir.display()
                )));
            }
        }
        persist_metadata(&**storage, dir, metadata)?;
        Index::open_on(storage, dir)
    }

    /// Marks the shards of the (closed) index in `dir` as followers or not, as
    /// [`Index::set_follower`] does for an open one. A follower shard that stops following
    /// is promoted to a primary (new primary term) when the index is next opened.
    pub fn set_follower_markers(
        storage: &dyn Storage,
        dir: &Path,
        shards: u32,
        follower: bool,
    ) -> Result<()> {
        if follower {
            for shard in 0..shards {
                let marker = dir.join(shard.to_string()).join(FOLLOWER_MARKER);
                durable_file::replace_atomically(storage, &marker, b"1")?;
            }
            return Ok(());
        }
        let requests = vec![PromotionRequest::default(); shards as usize];
        Index::mark_for_promotion(storage, dir, &requests)
    }

    /// Turns the follower shards of the (closed) index in `dir` into shards that are promoted
    /// to primaries when the index is next opened, shard `n` with `requests[n]` (see
    /// [`ShardEngine::promote_to_primary`]). Shards that do not follow are left as they are.
    pub fn mark_for_promotion(
        storage: &dyn Storage,
        dir: &Path,
        requests: &[PromotionRequest],
    ) -> Result<()> {
        for (shard, request) in requests.iter().enumerate() {
            let shard_dir = dir.join(shard.to_string());
            let marker = shard_dir.join(FOLLOWER_MARKER);
            if exists(storage, &marker)? {
                let content = serde_json::to_vec(request)
                    .map_err(|e| EngineError::encode("a promotion marker", e))?;
                // The promotion is recorded before the follower marker goes: a crash in
                // between leaves a follower that is promoted on a later unfollow.
                durable_file::replace_atomically(
                    storage,
                    &shard_dir.join(PROMOTE_MARKER),
                    &content,
                )?;
                durable_file::remove_file(storage, &marker)?;
            }
        }
        Ok(())
    }

    /// Opens the index in `dir` of the file system.
    pub fn open(dir: &Path) -> Result<Index> {
        Index::open_on(&crate::storage::real(), dir)
    }

    /// Opens the index in `dir` of `storage`.
    pub fn open_on(storage: &StorageRef, dir: &Path) -> Result<Index> {
        Index::open_with(storage, dir, true)
    }

    /// Opens the index in `dir` of `storage` for maintenance: its shards start no merge of
    /// their own (see [`ShardConfig::scheduled_merges`]), so that a big merge the open
    /// would select does not hold the maintenance up (a failback's rollback).
    pub fn open_for_maintenance(storage: &StorageRef, dir: &Path) -> Result<Index> {
        Index::open_with(storage, dir, false)
    }

    fn open_with(storage: &StorageRef, dir: &Path, scheduled_merges: bool) -> Result<Index> {
        let metadata = Index::read_metadata(&**storage, dir)?;
        let config = ShardConfig {
            scheduled_merges,
            ..metadata.settings.shard_config()
        };
        let shard_count = metadata.settings.number_of_shards;
        let version = metadata.mapping_version;
        let metadata = Arc::new(RwLock::new(metadata));
        let mapper = Arc::new(DocumentMapper::new(
            metadata.read().mappings.clone(),
            version,
            Some(metadata_listener(
                storage.clone(),
                dir.to_path_buf(),
                metadata.clone(),
            )),
        ));
        mapper.set_total_fields_limit(metadata.read().settings.total_fields_limit);
        let mut shards = Vec::new();
        for shard in 0..shard_count {
            let shard_dir = dir.join(shard.to_string());
            let mut config = config.clone();
            config.storage = storage.clone();
            // A shard remembers whether it follows through its own open; see `set_follower`.
            let follower = exists(&**storage, &shard_dir.join(FOLLOWER_MARKER))?;
            let promote = shard_dir.join(PROMOTE_MARKER);
            let promotion = read_promotion_marker(&**storage, &promote)?;
            // A shard to promote opens as the follower it still is: the gaps above its
            // checkpoint are filled by the promotion, in the new term, not by the open.
            config.follower = follower || promotion.is_some();
            let engine = ShardEngine::open(&shard_dir, mapper.clone(), config)?;
            if let (false, Some(request)) = (follower, promotion) {
                engine.promote_to_primary(&request)?;
                durable_file::remove_file(&**storage, &promote)?;
            }
            shards.push(engine);
        }
        let index = Index {
            storage: storage.clone(),
            dir: dir.to_path_buf(),
            metadata,
            mapper,
            shards,
            closing: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
        };
        index.apply_write_block();
        Ok(index)
    }

    /// Hands `index.blocks.read_only_allow_delete` as it is now to every shard (see
    /// [`ShardEngine::set_write_block`]). The metadata stays read-locked meanwhile, so that
    /// racing changes reach the shards in the order they were made.
    fn apply_write_block(&self) {
        let metadata = self.metadata.read();
        let reason = metadata
            .settings
            .read_only_allow_delete
            .then(|| read_only_allow_delete_error(&metadata.name).to_string());
        for shard in &self.shards {
            shard.set_write_block(reason.as_deref());
        }
    }

    /// True while `index.blocks.read_only_allow_delete` is set.
    pub fn read_only_allow_delete(&self) -> bool {
        self.metadata.read().settings.read_only_allow_delete
    }

    /// Sets or clears `index.blocks.read_only_allow_delete`; returns whether it changed. The
    /// change is persisted like any setting, but unlike other settings it takes effect even
    /// when that fails (the error is returned): a disk too full to record the block must not
    /// keep it from holding.
    pub fn set_read_only_allow_delete(&self, blocked: bool) -> Result<bool> {
        let mut metadata = self.metadata.write();
        if metadata.settings.read_only_allow_delete == blocked {
            return Ok(false);
        }
        let mut updated = metadata.clone();
        updated.settings.read_only_allow_delete = blocked;
        updated.settings_version += 1;
        let persisted = persist_metadata(&*self.storage, &self.dir, &updated);
        *metadata = updated;
        drop(metadata);
        self.apply_write_block();
        persisted.map(|()| true)
    }

    /// Starts closing (or deleting) the index: it takes no new users, and the long polls of
    /// its shards end now (see [`ShardEngine::set_closing`]). False if it was closing already.
    pub fn begin_close(&self) -> bool {
        if self.closing.swap(true, Ordering::AcqRel) {
            return false;
        }
        for shard in &self.shards {
            shard.set_closing(true);
        }
        true
    }

    /// Starts deleting the index: as [`Index::begin_close`], and the operations in flight that
    /// fail from now on answer `IndexNotFound` (see [`Index::settle`]).
    pub fn begin_delete(&self) -> bool {
        self.deleted.store(true, Ordering::Release);
        self.begin_close()
    }

    /// The answer to an operation that raced a close or delete of this index: an error the
    /// close or delete caused (the engine closed under it, its files removed: a 5xx) is
    /// Elasticsearch's `index_not_found_exception` for a deleted index and
    /// `index_closed_exception` for a closed one. Errors of the request itself (a version
    /// conflict, a bad document) and errors of an index that is not closing stay as they are.
    fn settle<T>(&self, result: Result<T>) -> Result<T> {
        match result {
            Err(error) if error.status() >= 500 && self.is_closing() => {
                let name = self.name();
                Err(if self.deleted.load(Ordering::Acquire) {
                    EngineError::IndexNotFound { name }
                } else {
                    EngineError::IndexClosed { name }
                })
            }
            other => other,
        }
    }

    /// Undoes [`Index::begin_close`]: the close did not happen and the index is open as before.
    pub fn cancel_close(&self) {
        for shard in &self.shards {
            shard.set_closing(false);
        }
        self.closing.store(false, Ordering::Release);
    }

    /// True between [`Index::begin_close`] and [`Index::cancel_close`].
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The storage the index's files are on.
    pub fn storage(&self) -> &StorageRef {
        &self.storage
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A copy of the metadata.
    pub fn metadata(&self) -> IndexMetadata {
        self.metadata.read().clone()
    }

    /// Index name.
    pub fn name(&self) -> String {
        self.metadata.read().name.clone()
    }

    /// The shards, by shard number.
    pub fn shards(&self) -> &[ShardEngine] {
        &self.shards
    }

    /// The document mapper shared by the shards.
    pub fn mapper(&self) -> &Arc<DocumentMapper> {
        &self.mapper
    }

    /// The shard number that holds `id`.
    pub fn shard_for(&self, id: &str) -> usize {
        route(id, self.shards.len())
    }

    /// Marks every shard as a follower (refusing direct writes) or not; persisted.
    pub fn set_follower(&self, follower: bool) -> Result<()> {
        Index::set_follower_markers(
            &*self.storage,
            &self.dir,
            self.shards.len() as u32,
            follower,
        )?;
        for shard in &self.shards {
            shard.set_follower(follower);
        }
        Ok(())
    }

    /// Indexes one document.
    pub fn index(&self, request: IndexRequest) -> Result<WriteResult> {
        self.settle(self.shards[self.shard_for(&request.id)].index(request))
    }

    /// Deletes one document.
    pub fn delete(&self, request: DeleteRequest) -> Result<WriteResult> {
        self.settle(self.shards[self.shard_for(&request.id)].delete(request))
    }

    /// Reads one document (real-time).
    pub fn get(&self, id: &str) -> Result<Option<GetResult>> {
        self.settle(self.shards[self.shard_for(id)].get(id))
    }

    /// Applies a bulk: items are grouped per shard, results come back in request order.
    pub fn bulk(&self, requests: Vec<WriteRequest>) -> Vec<Result<WriteResult>> {
        let mut per_shard: Vec<Vec<(usize, WriteRequest)>> =
            (0..self.shards.len()).map(|_| Vec::new()).collect();
        for (position, request) in requests.into_iter().enumerate() {
            let id = match &request {
                WriteRequest::Index(index) => &index.id,
                WriteRequest::Delete(delete) => &delete.id,
            };
            per_shard[self.shard_for(id)].push((position, request));
        }
        let mut results: Vec<Option<Result<WriteResult>>> = Vec::new();
        for (shard, items) in per_shard.into_iter().enumerate() {
            if items.is_empty() {
                continue;
            }
            let (positions, requests): (Vec<usize>, Vec<WriteRequest>) = items.into_iter().unzip();
            for (position, result) in positions.into_iter().zip(self.shards[shard].bulk(requests)) {
                if results.len() <= position {
                    results.resize_with(position + 1, || None);
                }
                results[position] = Some(result);
            }
        }
        results
            .into_iter()
            .map(|result| {
                self.settle(result.unwrap_or_else(|| {
                    Err(EngineError::InvalidArgument("bulk item lost".to_string()))
                }))
            })
            .collect()
    }

    /// Refreshes every shard.
    pub fn refresh(&self) -> Result<()> {
        self.settle(self.shards.iter().try_for_each(ShardEngine::refresh))
    }

    /// Live documents in the last refreshed readers.
    pub fn doc_count(&self) -> u64 {
        self.shards.iter().map(ShardEngine::doc_count).sum()
    }

    /// Merges an Elasticsearch mapping update. A follower index refuses it: its mappings come
    /// from its leader (see [`Index::apply_leader_mappings`]).
    pub fn put_mapping(&self, body: &Value) -> Result<bool> {
        self.settle(self.put_mapping_unsettled(body))
    }

    fn put_mapping_unsettled(&self, body: &Value) -> Result<bool> {
        if self.is_follower() {
            return Err(EngineError::ReadOnlyFollower(format!(
                "cannot change the mappings of follower index [{}]; they follow its leader",
                self.name()
            )));
        }
        if self.read_only_allow_delete() {
            return Err(read_only_allow_delete_error(&self.name()));
        }
        self.mapper.merge(body)
    }

    /// Installs a leader's mappings and mapping version on this (follower) index.
    pub fn apply_leader_mappings(&self, mappings: Mappings, mapping_version: u64) -> Result<()> {
        self.mapper.replace(mappings, mapping_version)
    }

    /// Applies alias actions in order (bumps `aliases_version` when something changed). A
    /// follower index refuses: its aliases come from its leader. Removing an alias the index
    /// does not have is an error (`aliases_not_found_exception` in Elasticsearch).
    pub fn update_aliases(&self, actions: &[AliasAction]) -> Result<bool> {
        self.settle(self.update_aliases_unsettled(actions))
    }

    fn update_aliases_unsettled(&self, actions: &[AliasAction]) -> Result<bool> {
        if self.is_follower() {
            return Err(EngineError::ReadOnlyFollower(format!(
                "cannot change the aliases of follower index [{}]; they follow its leader",
                self.name()
            )));
        }
        let mut metadata = self.metadata.write();
        let mut updated = metadata.clone();
        for action in actions {
            match action {
                AliasAction::Add { alias, body } => {
                    validate_index_name(alias)?;
                    if !body.is_object() {
                        return Err(EngineError::InvalidArgument(format!(
                            "alias [{alias}] must be an object"
                        )));
                    }
                    updated.aliases.insert(alias.clone(), body.clone());
                }
                AliasAction::Remove { alias } => {
                    if updated.aliases.remove(alias).is_none() {
                        return Err(EngineError::InvalidArgument(format!(
                            "aliases [{alias}] missing on index [{}]",
                            updated.name
                        )));
                    }
                }
            }
        }
        if updated.aliases == metadata.aliases {
            return Ok(false);
        }
        updated.aliases_version += 1;
        persist_metadata(&*self.storage, &self.dir, &updated)?;
        *metadata = updated;
        Ok(true)
    }

    /// Catches a follower index up with its leader's metadata: the leader's mappings (when
    /// newer) and aliases, and the leader's settings version. The settings themselves stay the
    /// follower's: every setting Tandem has (replicas, refresh interval, translog durability
    /// and sync interval, soft-delete retention) is one Elasticsearch does not replicate to
    /// followers (its `NON_REPLICATED_SETTINGS`), as each cluster tunes them for itself.
    pub fn apply_leader_metadata(&self, leader: &IndexMetadata) -> Result<()> {
        if leader.mapping_version > self.metadata.read().mapping_version {
            self.mapper
                .replace(leader.mappings.clone(), leader.mapping_version)?;
        }
        let mut metadata = self.metadata.write();
        let mut updated = metadata.clone();
        updated.settings_version = updated.settings_version.max(leader.settings_version);
        if leader.aliases_version > updated.aliases_version {
            updated.aliases = leader.aliases.clone();
            updated.aliases_version = leader.aliases_version;
        }
        if updated != *metadata {
            persist_metadata(&*self.storage, &self.dir, &updated)?;
            *metadata = updated;
        }
        Ok(())
    }

    /// True when the index follows a leader (direct writes and mapping changes are refused).
    pub fn is_follower(&self) -> bool {
        self.shards.first().is_some_and(ShardEngine::is_follower)
    }

    /// Applies a settings update (bumps `settings_version` when something changed). The
    /// dynamic settings (refresh interval, translog durability and sync interval, soft-delete
    /// retention) take effect at once on every open shard; the update is persisted first, so a
    /// shard that cannot take it (a failed shard) gets it when it is reopened.
    pub fn update_settings(&self, body: &Value) -> Result<bool> {
        self.settle(self.update_settings_unsettled(body))
    }

    fn update_settings_unsettled(&self, body: &Value) -> Result<bool> {
        let mut metadata = self.metadata.write();
        let mut updated = metadata.clone();
        updated.settings.apply_es_json(body, false)?;
        if updated.settings == metadata.settings {
            return Ok(false);
        }
        // The block refuses every other settings change while it stays (Elasticsearch's
        // metadata-write block); an update that clears it may change others with it.
        let others_changed = IndexSettings {
            read_only_allow_delete: metadata.settings.read_only_allow_delete,
            ..updated.settings.clone()
        } != metadata.settings;
        if updated.settings.read_only_allow_delete
            && metadata.settings.read_only_allow_delete
            && others_changed
        {
            return Err(read_only_allow_delete_error(&metadata.name));
        }
        updated.settings_version += 1;
        persist_metadata(&*self.storage, &self.dir, &updated)?;
        let dynamic = updated.settings.shard_config().dynamic();
        self.mapper
            .set_total_fields_limit(updated.settings.total_fields_limit);
        *metadata = updated;
        drop(metadata);
        self.apply_write_block();
        for shard in &self.shards {
            shard.update_dynamic_config(dynamic)?;
        }
        Ok(true)
    }

    /// Searches every shard with an Elasticsearch `q=` query string; `from` + `size` paginate.
    pub fn search(&self, query: &str, from: usize, size: usize) -> Result<SearchResult> {
        let query = self.build_query(&SearchQuery::QueryString(query.to_string()))?;
        self.settle(self.run_search(query, from, size))
    }

    /// Searches every shard with a query given as `q=` text or query DSL; `from` + `size`
    /// paginate.
    pub fn search_query(
        &self,
        query: &SearchQuery,
        from: usize,
        size: usize,
    ) -> Result<SearchResult> {
        let query = self.build_query(query)?;
        self.settle(self.run_search(query, from, size))
    }

    /// Searches every shard with an Elasticsearch query DSL object (`{"match": {...}}`).
    pub fn search_dsl(&self, query: &Value, from: usize, size: usize) -> Result<SearchResult> {
        self.search_query(&SearchQuery::Dsl(query.clone()), from, size)
    }

    /// Number of live documents matching `query` in the last refreshed readers.
    pub fn count(&self, query: &SearchQuery) -> Result<u64> {
        self.settle(self.count_unsettled(query))
    }

    fn count_unsettled(&self, query: &SearchQuery) -> Result<u64> {
        let query = self.build_query(query)?;
        let mut total = 0u64;
        for shard in &self.shards {
            let started = std::time::Instant::now();
            let count = shard
                .searcher()
                .search(&query, &Count)
                .map_err(|e| EngineError::index("counting", e))?;
            shard.record_search(Some(started.elapsed()), None);
            total += count as u64;
        }
        Ok(total)
    }

    /// The tantivy query of a search, without the engine's anchor documents.
    fn build_query(&self, query: &SearchQuery) -> Result<tantivy::query::BooleanQuery> {
        let mappings = self.mapper.mappings();
        let schema = self.mapper.schema();
        let Some(first) = self.shards.first() else {
            return Ok(tantivy::query::BooleanQuery::new(Vec::new()));
        };
        let user_query = match query {
            SearchQuery::QueryString(text) => {
                schema.parse_query_string(first.tantivy_index(), &mappings, text)?
            }
            SearchQuery::Dsl(dsl) => {
                schema.parse_query_dsl(first.tantivy_index(), &mappings, dsl)?
            }
        };
        Ok(crate::history::without_anchors(user_query, schema))
    }

    fn run_search(
        &self,
        query: tantivy::query::BooleanQuery,
        from: usize,
        size: usize,
    ) -> Result<SearchResult> {
        let wanted = from.saturating_add(size);
        let mut total_hits = 0u64;
        let mut candidates = Vec::new();
        // Hits are read back from the searcher that found them: a refresh in between would
        // make their addresses point at other documents.
        let mut searchers = Vec::with_capacity(self.shards.len());
        for (shard_number, shard) in self.shards.iter().enumerate() {
            let started = std::time::Instant::now();
            let searcher = shard.searcher();
            let collector = (TopDocs::with_limit(wanted.max(1)).order_by_score(), Count);
            let (top, count) = searcher
                .search(&query, &collector)
                .map_err(|e| EngineError::index("searching", e))?;
            shard.record_search(Some(started.elapsed()), None);
            total_hits += count as u64;
            candidates.extend(
                top.into_iter()
                    .map(|(score, address)| (score, shard_number, address)),
            );
            searchers.push(searcher);
        }
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let max_score = candidates.first().map(|candidate| candidate.0);
        let mut hits = Vec::new();
        let mut fetched = vec![None::<std::time::Duration>; self.shards.len()];
        for (score, shard_number, address) in candidates.into_iter().skip(from).take(size) {
            let started = std::time::Instant::now();
            let (id, source) =
                self.shards[shard_number].read_document(&searchers[shard_number], address)?;
            let took = fetched[shard_number].get_or_insert(std::time::Duration::ZERO);
            *took += started.elapsed();
            hits.push(SearchHit { id, score, source });
        }
        for (shard, took) in self.shards.iter().zip(fetched) {
            if took.is_some() {
                shard.record_search(None, took);
            }
        }
        Ok(SearchResult {
            total_hits,
            hits,
            max_score,
        })
    }

    /// Elasticsearch's flush: fsyncs every shard's translog, then commits every shard (which
    /// trims the translog down to what the commit does not hold).
    pub fn flush(&self) -> Result<()> {
        self.settle(self.shards.iter().try_for_each(|shard| {
            shard.sync_translog()?;
            shard.refresh()
        }))
    }

    /// Force-merges every shard down to at most `max_num_segments` segments where retention
    /// allows it (segments holding history at or above `min_retained_seq_no` are never merged:
    /// invariant 4), and waits for the merges.
    pub fn force_merge(&self, max_num_segments: usize) -> Result<()> {
        self.settle(
            self.shards
                .iter()
                .try_for_each(|shard| shard.force_merge(max_num_segments)),
        )
    }

    /// The shards that failed, with the reason (see [`ShardEngine::failure`]).
    pub fn shard_failures(&self) -> Vec<(usize, String)> {
        self.shards
            .iter()
            .enumerate()
            .filter_map(|(shard, engine)| engine.failure().map(|failure| (shard, failure)))
            .collect()
    }

    /// Closes every shard (fsync + commit).
    pub fn close(self) -> Result<()> {
        for shard in self.shards {
            shard.close()?;
        }
        Ok(())
    }
}

/// `fnv1a64(id) mod shards`: the shard of a document id.
pub fn route(id: &str, shards: usize) -> usize {
    assert!(shards > 0, "an index has at least one shard");
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % shards as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_every_shape_and_reject_unknown() {
        let nested =
            IndexSettings::from_es_json(&serde_json::json!({"index": {"number_of_shards": 3}}))
                .unwrap();
        let flat = IndexSettings::from_es_json(&serde_json::json!({"index.number_of_shards": "3"}))
            .unwrap();
        let bare =
            IndexSettings::from_es_json(&serde_json::json!({"number_of_shards": 3})).unwrap();
        assert_eq!(nested.number_of_shards, 3);
        assert_eq!(nested, flat);
        assert_eq!(flat, bare);
        assert!(IndexSettings::from_es_json(&serde_json::json!({"number_of_shards": 0})).is_err());
        assert!(IndexSettings::from_es_json(&serde_json::json!({"index.bogus": 1})).is_err());
        let mut settings = IndexSettings::default();
        assert!(settings
            .apply_es_json(&serde_json::json!({"number_of_shards": 2}), false)
            .is_err());
    }

    #[test]
    fn every_setting_refuses_a_value_of_the_wrong_type() {
        for (key, value) in [
            ("number_of_replicas", serde_json::json!({})),
            ("number_of_replicas", serde_json::json!([1])),
            ("number_of_replicas", serde_json::json!(true)),
            ("number_of_replicas", serde_json::json!(1.5)),
            ("number_of_shards", serde_json::json!({})),
            ("refresh_interval", serde_json::json!({})),
            ("refresh_interval", serde_json::json!(true)),
            ("translog.durability", serde_json::json!(1)),
            ("translog.sync_interval", serde_json::json!([])),
            (
                "soft_deletes.retention.operations",
                serde_json::json!("many"),
            ),
            ("priority", serde_json::json!({})),
        ] {
            let body = serde_json::json!({ "index": { key: value.clone() } });
            let error = IndexSettings::from_es_json(&body).expect_err(key);
            assert_eq!(error.status(), 400, "{key}: {value}");
            assert!(
                error.to_string().contains(&format!("[index.{key}]")),
                "{key}: {error}"
            );
        }
        let empty_namespace = IndexSettings::from_es_json(&serde_json::json!({"index": {}}));
        assert_eq!(empty_namespace.unwrap(), IndexSettings::default());
    }

    #[test]
    fn placement_settings_are_kept_and_shown_without_effect() {
        let settings = IndexSettings::from_es_json(&serde_json::json!({
            "index": {"routing.allocation.total_shards_per_node": 1, "priority": "10"}
        }))
        .unwrap();
        assert_eq!(
            settings.placement["routing.allocation.total_shards_per_node"],
            "1"
        );
        let shown = settings.to_es_json();
        assert_eq!(
            shown["index"]["routing"]["allocation"]["total_shards_per_node"],
            "1"
        );
        assert_eq!(shown["index"]["priority"], "10");
        assert_eq!(shown["index"]["number_of_shards"], "1");
        assert_eq!(
            IndexSettings::from_es_json(&shown["index"]).unwrap(),
            settings
        );
        assert!(IndexSettings::from_es_json(&serde_json::json!({"routing.bogus": 1})).is_err());
    }

    #[test]
    fn corrupted_index_metadata_is_a_corruption_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(INDEX_METADATA_FILE);
        std::fs::write(&path, br#"{"name": "logs", "settings": "#).unwrap();
        for result in [
            Index::read_metadata(&crate::storage::RealStorage, dir.path()).map(|_| ()),
            Index::open(dir.path()).map(|_| ()),
        ] {
            let error = result.expect_err("the metadata is not JSON");
            assert!(
                matches!(&error, EngineError::Corrupted { path: reported, .. } if *reported == path),
                "{error:?}"
            );
            assert_eq!(error.status(), 500);
            assert_eq!(error.type_name(), "corrupt_index_exception");
        }
    }

    #[test]
    fn routing_is_stable_and_spreads() {
        assert_eq!(route("a", 1), 0);
        assert_eq!(route("doc-1", 5), route("doc-1", 5));
        let mut counts = [0usize; 4];
        for n in 0..4000 {
            counts[route(&format!("doc-{n}"), 4)] += 1;
        }
        assert!(counts.iter().all(|count| *count > 800), "{counts:?}");
    }

    #[test]
    fn dsl_search_count_flush_and_force_merge_span_every_shard() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::create(
            &dir.path().join("logs"),
            "logs",
            &serde_json::json!({"number_of_shards": 3, "refresh_interval": "-1"}),
            &serde_json::json!({"properties": {"status": {"type": "keyword"}}}),
        )
        .unwrap();
        for n in 0..30 {
            let status = if n % 3 == 0 { "error" } else { "ok" };
            let source = serde_json::json!({"status": status, "n": n}).to_string();
            index
                .index(IndexRequest::new(n.to_string(), source))
                .unwrap();
        }
        index.flush().unwrap();
        let errors = serde_json::json!({"term": {"status": "error"}});
        assert_eq!(index.count(&SearchQuery::Dsl(errors.clone())).unwrap(), 10);
        assert_eq!(
            index
                .count(&SearchQuery::QueryString("status:ok".to_string()))
                .unwrap(),
            20
        );
        let page = index.search_dsl(&errors, 2, 5).unwrap();
        assert_eq!((page.total_hits, page.hits.len()), (10, 5));
        let bad = serde_json::json!({"nope": {}});
        assert!(matches!(
            index.search_dsl(&bad, 0, 1),
            Err(EngineError::Query(_))
        ));
        for n in 0..30 {
            let source = serde_json::json!({"status": "ok", "n": n}).to_string();
            index
                .index(IndexRequest::new(n.to_string(), source))
                .unwrap();
        }
        index.force_merge(1).unwrap();
        assert_eq!(index.count(&SearchQuery::Dsl(errors)).unwrap(), 0);
        assert_eq!(index.doc_count(), 30, "merges keep every live document");
    }

    #[test]
    fn index_names_are_validated() {
        assert!(validate_index_name("server-metrics").is_ok());
        for bad in ["", "Upper", "_x", "a/b", "a b", ".."] {
            assert!(validate_index_name(bad).is_err(), "{bad}");
        }
    }
}
