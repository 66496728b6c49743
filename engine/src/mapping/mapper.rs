//! `DocumentMapper`: an index's mappings, shared by its shards, and the conversion of a JSON
//! `_source` into a tantivy document.
//!
//! Dynamic fields discovered while parsing are added to the mappings (and the mapping version
//! bumped and persisted through the index's listener) *before* the write that introduced them
//! is applied, so an acknowledged document never depends on a mapping that was not saved.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use tantivy::TantivyDocument;

use crate::error::{EngineError, Result};
use crate::mapping::{IndexSchema, Mappings};

/// Called with the new mappings and version whenever they change; an error refuses the change.
pub type MappingListener = Box<dyn Fn(&Mappings, u64) -> Result<()> + Send + Sync>;

/// Where a source being parsed comes from, which decides whether a duplicate key is refused.
#[derive(Clone, Copy)]
enum SourceOrigin {
    /// A new document from a client.
    Client,
    /// An operation already in the history (translog replay, a leader's operation).
    History,
}

/// Elasticsearch's default `index.mapping.total_fields.limit`.
pub const DEFAULT_TOTAL_FIELDS_LIMIT: u64 = 1000;

/// The mappings of one index and its tantivy schema.
pub struct DocumentMapper {
    schema: Arc<IndexSchema>,
    mappings: RwLock<Mappings>,
    version: AtomicU64,
    listener: Option<MappingListener>,
    /// `index.mapping.total_fields.limit`: what new documents and mapping updates from
    /// clients may grow the mappings to (a leader's mappings and operations are applied as
    /// they are).
    total_fields_limit: AtomicU64,
}

/// Refuses `updated` when it has more fields than `limit` and more than `current` (mappings
/// already over a lowered limit keep working, as in Elasticsearch, but cannot grow).
/// `dynamic` adds Elasticsearch's "while adding new fields [n]".
pub fn check_total_fields(
    current: &Mappings,
    updated: &Mappings,
    limit: u64,
    dynamic: bool,
) -> Result<()> {
    let (before, after) = (current.total_fields(), updated.total_fields());
    if after as u64 <= limit || after <= before {
        return Ok(());
    }
    let adding = if dynamic {
        format!(" while adding new fields [{}]", after - before)
    } else {
        String::new()
    };
    Err(EngineError::InvalidArgument(format!(
        "Limit of total fields [{limit}] has been exceeded{adding}"
    )))
}

impl DocumentMapper {
    /// A mapper over `mappings` (at `version`); `listener` persists changes.
    pub fn new(mappings: Mappings, version: u64, listener: Option<MappingListener>) -> Self {
        DocumentMapper {
            schema: Arc::new(IndexSchema::build(&mappings)),
            mappings: RwLock::new(mappings),
            version: AtomicU64::new(version),
            listener,
            total_fields_limit: AtomicU64::new(DEFAULT_TOTAL_FIELDS_LIMIT),
        }
    }

    /// Sets `index.mapping.total_fields.limit` (a dynamic setting).
    pub fn set_total_fields_limit(&self, limit: u64) {
        self.total_fields_limit.store(limit, Ordering::Release);
    }

    /// The tantivy schema.
    pub fn schema(&self) -> &Arc<IndexSchema> {
        &self.schema
    }

    /// A copy of the current mappings.
    pub fn mappings(&self) -> Mappings {
        self.mappings.read().clone()
    }

    /// The mapping version (grows on every change).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Parses a new document's `source` (see [`IndexSchema::parse_document`]), adding any new
    /// dynamic field to the mappings first.
    pub fn parse(&self, source: &[u8]) -> Result<TantivyDocument> {
        self.parse_as(source, SourceOrigin::Client)
    }

    /// Parses the `source` of an operation already in the history (see
    /// [`IndexSchema::parse_recorded_document`]), adding any new dynamic field first.
    pub fn parse_recorded(&self, source: &[u8]) -> Result<TantivyDocument> {
        self.parse_as(source, SourceOrigin::History)
    }

    fn parse_as(&self, source: &[u8], origin: SourceOrigin) -> Result<TantivyDocument> {
        let parse = |mappings: &Mappings| match origin {
            SourceOrigin::Client => self.schema.parse_document(mappings, source),
            SourceOrigin::History => self.schema.parse_recorded_document(mappings, source),
        };
        let parsed = {
            let mappings = self.mappings.read();
            parse(&mappings)?
        };
        if parsed.new_fields.is_empty() {
            return Ok(parsed.document);
        }
        let mut mappings = self.mappings.write();
        // Parse again under the write lock: another writer may have added the same fields with
        // a type this document does not fit.
        let parsed = parse(&mappings)?;
        if parsed.new_fields.is_empty() {
            return Ok(parsed.document);
        }
        let mut updated = mappings.clone();
        updated.add_fields(&parsed.new_fields)?;
        if matches!(origin, SourceOrigin::Client) {
            let limit = self.total_fields_limit.load(Ordering::Acquire);
            check_total_fields(&mappings, &updated, limit, true)?;
        }
        let version = self.version.load(Ordering::Acquire) + 1;
        if let Some(listener) = &self.listener {
            listener(&updated, version)?;
        }
        *mappings = updated;
        self.version.store(version, Ordering::Release);
        Ok(parsed.document)
    }

    /// Merges an Elasticsearch mapping update; returns true when something changed.
    pub fn merge(&self, body: &serde_json::Value) -> Result<bool> {
        let mut mappings = self.mappings.write();
        let mut updated = mappings.clone();
        if !updated.merge_es_json(body)? {
            return Ok(false);
        }
        let limit = self.total_fields_limit.load(Ordering::Acquire);
        check_total_fields(&mappings, &updated, limit, false)?;
        let version = self.version.load(Ordering::Acquire) + 1;
        if let Some(listener) = &self.listener {
            listener(&updated, version)?;
        }
        *mappings = updated;
        self.version.store(version, Ordering::Release);
        Ok(true)
    }

    /// Replaces the mappings with a leader's (follower catch-up); keeps the schema.
    pub fn replace(&self, mappings: Mappings, version: u64) -> Result<()> {
        let mut current = self.mappings.write();
        if let Some(listener) = &self.listener {
            listener(&mappings, version)?;
        }
        *current = mappings;
        self.version.store(version, Ordering::Release);
        Ok(())
    }
}
