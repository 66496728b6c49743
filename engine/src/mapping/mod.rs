//! Elasticsearch-style mappings on top of tantivy.
//!
//! This module translates between the Elasticsearch index model and tantivy:
//!
//! * [`DocumentMapper`]: an index's mappings shared by its shards, turning a JSON `_source`
//!   into a tantivy document and growing the mappings with dynamic fields.
//! * [`Mappings`]: the Elasticsearch view of an index's fields (`PUT index`,
//!   `PUT _mapping`, `GET _mapping`), serializable so the engine can persist it.
//! * [`IndexSchema`]: the tantivy schema built once, at index creation, from the
//!   initial mappings, plus handles to every field.
//! * [`IndexSchema::parse_document`]: an Elasticsearch `_source` to a tantivy
//!   document, with dynamic mapping of unknown fields.
//! * [`IndexSchema::parse_query_string`]: the `q=` query-string syntax to a
//!   tantivy query.
//! * [`IndexSchema::parse_query_dsl`]: the Elasticsearch query DSL to a
//!   tantivy query.
//!
//! A tantivy schema cannot grow, but Elasticsearch mappings can. Fields present
//! in the mappings when the index is created become real tantivy fields; every
//! field added later (through `PUT _mapping` or dynamic mapping) is indexed
//! under the catch-all JSON field [`DYNAMIC_FIELD`], at the path given by its
//! dotted name.

mod date;
mod document;
mod dsl;
mod error;
mod mapper;
mod mappings;
mod query;
mod schema;

#[cfg(test)]
mod tests;

pub use document::ParsedDocument;

/// The longest keyword value, in UTF-8 bytes (Lucene's and so Elasticsearch's term limit).
/// A keyword value is indexed as one term; tantivy would drop a term longer than its own
/// limit (`tantivy::tokenizer::MAX_TOKEN_LEN`, about twice this) without an error, so a
/// longer value is refused with the document instead. Text is split into words, and tantivy's
/// tokenizer drops overlong words, as Elasticsearch's analyzers cap them.
pub const MAX_TERM_BYTES: usize = 32_766;
pub use dsl::{MAX_CLAUSE_COUNT, MAX_QUERY_DEPTH};
pub use error::{DocumentError, MappingError, QueryError};
pub use mapper::{check_total_fields, DocumentMapper, MappingListener, DEFAULT_TOTAL_FIELDS_LIMIT};
pub use mappings::{Dynamic, FieldType, Mappings};
pub use schema::IndexSchema;

/// Name of the document id meta field (raw string, indexed, not stored).
pub const ID_FIELD: &str = "_id";
/// Name of the sequence number meta field (`u64`, indexed and fast).
pub const SEQ_NO_FIELD: &str = "_seq_no";
/// Name of the primary term meta field (`u64`, fast).
pub const PRIMARY_TERM_FIELD: &str = "_primary_term";
/// Name of the document version meta field (`u64`, fast).
pub const VERSION_FIELD: &str = "_version";
/// Name of the operation type meta field (`u64`, fast).
pub const OP_TYPE_FIELD: &str = "_op_type";
/// Name of the stored record meta field (bytes, stored): the engine keeps the
/// id and `_source` envelope there.
pub const RECORD_FIELD: &str = "_record";
/// Name of the catch-all JSON field holding every field that is not part of
/// the tantivy schema.
pub const DYNAMIC_FIELD: &str = "_dynamic";
/// Name of the text field receiving every string value of a document, searched
/// by unqualified query terms.
pub const ALL_FIELD: &str = "_all";
