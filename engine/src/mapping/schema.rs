//! The tantivy schema of an index.

use std::collections::BTreeMap;

use tantivy::schema::{
    DateOptions, Field, IndexRecordOption, JsonObjectOptions, NumericOptions, Schema,
    TextFieldIndexing, FAST, INDEXED, STORED, STRING, TEXT,
};

use super::mappings::{FieldType, Mappings};
use super::{
    ALL_FIELD, DYNAMIC_FIELD, ID_FIELD, OP_TYPE_FIELD, PRIMARY_TERM_FIELD, RECORD_FIELD,
    SEQ_NO_FIELD, VERSION_FIELD,
};

/// The tantivy schema of one index plus handles to every field.
///
/// Built once at index creation from the initial mappings and rebuilt from the
/// same (persisted) mappings when the index is reopened: the set of schema
/// fields is part of [`Mappings`]' serialized form, so the result is identical.
#[derive(Clone, Debug)]
pub struct IndexSchema {
    /// The tantivy schema.
    pub schema: Schema,
    /// `_id`: raw string, indexed, not stored.
    pub id: Field,
    /// `_seq_no`: u64, indexed and fast.
    pub seq_no: Field,
    /// `_primary_term`: u64, fast.
    pub primary_term: Field,
    /// `_version`: u64, fast.
    pub version: Field,
    /// `_op_type`: u64, fast.
    pub op_type: Field,
    /// `_record`: bytes, stored (id + source envelope written by the engine).
    pub record: Field,
    /// `_dynamic`: JSON field holding every field outside the schema.
    pub dynamic: Field,
    /// `_all`: text field holding every string value of a document.
    pub all: Field,
    /// Mapped fields that are real tantivy fields, by dotted name.
    mapped: BTreeMap<String, (Field, FieldType)>,
}

impl IndexSchema {
    /// Builds the schema: the meta fields, then every schema field of
    /// `mappings` in name order. Deterministic for equal mappings.
    pub fn build(mappings: &Mappings) -> IndexSchema {
        let mut builder = Schema::builder();
        let id = builder.add_text_field(ID_FIELD, STRING);
        let seq_no = builder.add_u64_field(SEQ_NO_FIELD, INDEXED | FAST);
        let primary_term = builder.add_u64_field(PRIMARY_TERM_FIELD, FAST);
        let version = builder.add_u64_field(VERSION_FIELD, FAST);
        let op_type = builder.add_u64_field(OP_TYPE_FIELD, FAST);
        let record = builder.add_bytes_field(RECORD_FIELD, STORED);
        let json_options = JsonObjectOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("default")
                .set_index_option(IndexRecordOption::WithFreqsAndPositions),
        );
        let dynamic = builder.add_json_field(DYNAMIC_FIELD, json_options);
        let all = builder.add_text_field(ALL_FIELD, TEXT);

        let mut mapped = BTreeMap::new();
        for (name, field_type) in mappings.schema_fields() {
            // Names were validated when the mappings were parsed; a name that
            // tantivy would reject (or that collides with a meta field) stays
            // dynamic instead of panicking in the schema builder.
            if !tantivy::schema::is_valid_field_name(name) || name.starts_with('_') {
                continue;
            }
            let field =
                match field_type {
                    FieldType::Keyword => builder.add_text_field(name, STRING | FAST),
                    FieldType::Text => builder.add_text_field(name, TEXT),
                    FieldType::Long | FieldType::Integer => builder
                        .add_i64_field(name, NumericOptions::default().set_indexed().set_fast()),
                    FieldType::Double | FieldType::Float => builder
                        .add_f64_field(name, NumericOptions::default().set_indexed().set_fast()),
                    FieldType::Boolean => builder
                        .add_bool_field(name, NumericOptions::default().set_indexed().set_fast()),
                    FieldType::Date => builder
                        .add_date_field(name, DateOptions::default().set_indexed().set_fast()),
                };
            mapped.insert(name.to_string(), (field, field_type));
        }
        IndexSchema {
            schema: builder.build(),
            id,
            seq_no,
            primary_term,
            version,
            op_type,
            record,
            dynamic,
            all,
            mapped,
        }
    }

    /// The tantivy field of a mapped field, if it is part of the schema
    /// (`None` for fields living in `_dynamic` and for meta fields).
    pub fn mapped_field(&self, name: &str) -> Option<Field> {
        self.mapped.get(name).map(|(field, _)| *field)
    }

    /// A mapped schema field with the type it was created with.
    pub(crate) fn mapped_entry(&self, name: &str) -> Option<(Field, FieldType)> {
        self.mapped.get(name).copied()
    }

    /// Mapped schema fields, by dotted name in sorted order.
    pub(crate) fn mapped_fields(&self) -> impl Iterator<Item = (&str, Field, FieldType)> + '_ {
        self.mapped
            .iter()
            .map(|(name, (field, field_type))| (name.as_str(), *field, *field_type))
    }
}
