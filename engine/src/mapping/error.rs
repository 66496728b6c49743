//! Error types of the mapping module.

use super::mappings::FieldType;

/// An invalid mapping definition or mapping update.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MappingError {
    /// The mapping body (or a part of it) does not have the expected JSON shape.
    #[error("invalid mapping for [{field}]: {reason}")]
    InvalidShape {
        /// The field (or mapping parameter path) at fault; `<root>` for the body itself.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A field declares a type this engine does not support.
    #[error("no handler for type [{type_name}] declared on field [{field}]")]
    UnknownType {
        /// The field at fault.
        field: String,
        /// The declared type.
        type_name: String,
    },
    /// A field name is not acceptable.
    #[error("invalid field name [{field}]: {reason}")]
    InvalidFieldName {
        /// The field at fault.
        field: String,
        /// Why the name is rejected.
        reason: String,
    },
    /// A field already has a different type.
    #[error("mapper [{field}] cannot be changed from type [{existing}] to [{requested}]")]
    TypeConflict {
        /// The field at fault.
        field: String,
        /// The type the field already has.
        existing: FieldType,
        /// The type that was requested.
        requested: FieldType,
    },
    /// A field would be both a value and an object holding other fields.
    #[error("field [{field}] conflicts with field [{other}]: a field cannot be both a value and an object")]
    ObjectConflict {
        /// The field at fault.
        field: String,
        /// The existing field it conflicts with.
        other: String,
    },
}

/// A document that cannot be indexed with the current mappings.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// The source is not valid JSON.
    #[error("failed to parse document source: {0}")]
    InvalidJson(String),
    /// The source is valid JSON but not a JSON object.
    #[error("document source must be a JSON object, got {0}")]
    NotAnObject(String),
    /// A field name in the document is not acceptable.
    #[error("invalid field name [{field}] in document: {reason}")]
    InvalidFieldName {
        /// The field at fault.
        field: String,
        /// Why the name is rejected.
        reason: String,
    },
    /// A value does not fit the type of its field.
    #[error("failed to parse field [{field}] of type [{field_type}]: value {value}: {reason}")]
    TypeMismatch {
        /// The field at fault.
        field: String,
        /// The field's type.
        field_type: FieldType,
        /// The offending value, as JSON (possibly shortened).
        value: String,
        /// Why the value does not fit.
        reason: String,
    },
    /// A value is given where the mappings have an object, or the reverse.
    #[error("field [{field}] conflicts with field [{other}]: a field cannot be both a value and an object")]
    ObjectConflict {
        /// The field at fault.
        field: String,
        /// The field it conflicts with.
        other: String,
    },
    /// A keyword value longer than [`MAX_TERM_BYTES`](super::MAX_TERM_BYTES): it would be
    /// one term, and the index cannot hold it (Elasticsearch's "immense term").
    #[error(
        "Document contains at least one immense term in field=\"{field}\" (whose UTF8 \
         encoding is longer than the max length {max}), all of which were skipped. The \
         prefix of the first immense term is: '{prefix}...'"
    )]
    ImmenseTerm {
        /// The field at fault.
        field: String,
        /// The limit, in bytes.
        max: usize,
        /// The first bytes of the value.
        prefix: String,
    },
    /// The mappings are `dynamic: strict` and the document has an unmapped field.
    #[error("mapping set to strict, dynamic introduction of [{field}] is not allowed")]
    StrictDynamic {
        /// The unmapped field.
        field: String,
    },
}

/// A query string that cannot be turned into a query.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The query string is not valid query-string syntax.
    #[error("failed to parse query [{query}]: {message}")]
    Syntax {
        /// The query string.
        query: String,
        /// What the parser reported.
        message: String,
    },
    /// A clause targeting a field cannot be built (bad value, unsupported query kind).
    #[error("invalid query on field [{field}]: {message}")]
    Field {
        /// The targeted field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A clause without a field cannot be built.
    #[error("invalid query: {0}")]
    Invalid(String),
    /// A query DSL body does not have the shape of a query (unknown query type, unknown or
    /// malformed parameter); Elasticsearch's `parsing_exception`.
    #[error("{0}")]
    Parsing(String),
}

/// Shortens a JSON rendering of a value for error messages.
pub(crate) fn describe_value(value: &serde_json::Value) -> String {
    const MAX: usize = 120;
    let text = value.to_string();
    if text.len() <= MAX {
        return text;
    }
    let mut cut = MAX;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &text[..cut])
}
