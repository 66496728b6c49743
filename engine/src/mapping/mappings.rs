//! The Elasticsearch view of an index's fields.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::MappingError;

/// The type of a mapped field, named as in Elasticsearch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Exact string values (not analyzed).
    Keyword,
    /// Full-text string values (analyzed with the default tokenizer).
    Text,
    /// 64-bit signed integers.
    Long,
    /// 32-bit signed integers (indexed as 64-bit).
    Integer,
    /// 64-bit floating point numbers.
    Double,
    /// 32-bit floating point numbers (indexed as 64-bit).
    Float,
    /// Booleans.
    Boolean,
    /// Dates: RFC 3339 strings, `yyyy-MM-dd` strings or epoch milliseconds.
    Date,
}

impl FieldType {
    /// The Elasticsearch name of the type (`keyword`, `long`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Keyword => "keyword",
            FieldType::Text => "text",
            FieldType::Long => "long",
            FieldType::Integer => "integer",
            FieldType::Double => "double",
            FieldType::Float => "float",
            FieldType::Boolean => "boolean",
            FieldType::Date => "date",
        }
    }

    /// Parses an Elasticsearch type name; `None` for unsupported types.
    pub fn from_es_name(name: &str) -> Option<FieldType> {
        Some(match name {
            "keyword" => FieldType::Keyword,
            "text" => FieldType::Text,
            "long" => FieldType::Long,
            "integer" => FieldType::Integer,
            "double" => FieldType::Double,
            "float" => FieldType::Float,
            "boolean" => FieldType::Boolean,
            "date" => FieldType::Date,
            _ => return None,
        })
    }

    /// Whether the type is one of the numeric types.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            FieldType::Long | FieldType::Integer | FieldType::Double | FieldType::Float
        )
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Elasticsearch `dynamic` mapping setting: what happens to unmapped
/// fields of a document.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dynamic {
    /// Unmapped fields are mapped (type inferred) and indexed. The default.
    #[default]
    True,
    /// Unmapped fields are kept in `_source` only: not mapped, not indexed.
    False,
    /// Unmapped fields make the document fail.
    Strict,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct MappedField {
    #[serde(rename = "type")]
    field_type: FieldType,
    /// Whether the field is a real tantivy field (it was mapped when the index
    /// was created); otherwise it lives in the `_dynamic` JSON field.
    #[serde(default)]
    in_schema: bool,
}

/// An index's mappings: Elasticsearch view, serializable, versioned by the caller.
///
/// Field names are flattened dotted paths (`host.name`). The serialized form
/// records which fields are part of the tantivy schema, so
/// [`IndexSchema::build`](super::IndexSchema::build) on the deserialized
/// value reproduces the schema the index was created with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Mappings {
    fields: BTreeMap<String, MappedField>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dynamic: Option<Dynamic>,
}

impl Mappings {
    /// Mappings without any field (every field will be dynamic).
    pub fn empty() -> Self {
        Mappings::default()
    }

    /// Parses the mappings given at index creation. Accepts
    /// `{"properties": {...}}`, `{}` and an optional root `"dynamic"` setting.
    /// Every field becomes part of the tantivy schema.
    pub fn from_es_json(body: &Value) -> Result<Self, MappingError> {
        let (fields, dynamic) = parse_body(body)?;
        Ok(Mappings {
            fields: fields
                .into_iter()
                .map(|(name, field_type)| {
                    (
                        name,
                        MappedField {
                            field_type,
                            in_schema: true,
                        },
                    )
                })
                .collect(),
            dynamic,
        })
    }

    /// The mappings in Elasticsearch form: `{"properties": {...}}` with dotted
    /// names re-nested into objects (plus `"dynamic"` if it was set).
    pub fn to_es_json(&self) -> Value {
        let mut properties = Map::new();
        for (name, field) in &self.fields {
            insert_nested(&mut properties, name, field.field_type);
        }
        let mut root = Map::new();
        if let Some(dynamic) = self.dynamic {
            let value = match dynamic {
                Dynamic::True => Value::Bool(true),
                Dynamic::False => Value::Bool(false),
                Dynamic::Strict => Value::String("strict".to_string()),
            };
            root.insert("dynamic".to_string(), value);
        }
        root.insert("properties".to_string(), Value::Object(properties));
        Value::Object(root)
    }

    /// Merges an ES mapping update (PUT _mapping): new fields are added (they
    /// go to `_dynamic`), an existing field with a different type is an error.
    /// Returns whether anything changed. On error nothing is modified.
    pub fn merge_es_json(&mut self, body: &Value) -> Result<bool, MappingError> {
        let (fields, dynamic) = parse_body(body)?;
        let new_fields: Vec<(String, FieldType)> = fields.into_iter().collect();
        self.check_additions(&new_fields)?;
        let mut changed = self.insert_unchecked(new_fields);
        if let Some(dynamic) = dynamic {
            if self.dynamic != Some(dynamic) {
                self.dynamic = Some(dynamic);
                changed = true;
            }
        }
        Ok(changed)
    }

    /// Adds fields outside the tantivy schema (typically the `new_fields` of a
    /// [`ParsedDocument`](super::ParsedDocument)). Fields that already exist
    /// with the same type are ignored. Returns whether anything changed. On
    /// error nothing is modified.
    pub fn add_fields(&mut self, fields: &[(String, FieldType)]) -> Result<bool, MappingError> {
        for (name, _) in fields {
            validate_field_name(name).map_err(|reason| MappingError::InvalidFieldName {
                field: name.clone(),
                reason,
            })?;
        }
        self.check_additions(fields)?;
        Ok(self.insert_unchecked(fields.iter().cloned()))
    }

    /// The type of a field, by dotted name.
    pub fn field_type(&self, name: &str) -> Option<FieldType> {
        self.fields.get(name).map(|f| f.field_type)
    }

    /// Whether the field is a real tantivy field (mapped at index creation)
    /// rather than a path inside the `_dynamic` JSON field.
    pub fn is_in_schema(&self, name: &str) -> bool {
        self.fields.get(name).is_some_and(|f| f.in_schema)
    }

    /// The `dynamic` setting (default [`Dynamic::True`]).
    pub fn dynamic(&self) -> Dynamic {
        self.dynamic.unwrap_or_default()
    }

    /// Every field, by dotted name in sorted order, with its type.
    pub fn iter(&self) -> impl Iterator<Item = (&str, FieldType)> + '_ {
        self.fields
            .iter()
            .map(|(name, field)| (name.as_str(), field.field_type))
    }

    /// Number of (leaf) fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Number of fields as Elasticsearch counts them against `index.mapping.total_fields.limit`:
    /// every field and every object that holds fields (`a.b` and `a.c` are three: `a`, `a.b`,
    /// `a.c`); metadata fields do not count.
    pub fn total_fields(&self) -> usize {
        let mut names: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
        for name in self.fields.keys() {
            names.insert(name);
            let mut prefix = name.as_str();
            while let Some((parent, _)) = prefix.rsplit_once('.') {
                if !names.insert(parent) {
                    break;
                }
                prefix = parent;
            }
        }
        names.len()
    }

    /// Whether there is no field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Names of the fields that are part of the tantivy schema, sorted.
    pub(crate) fn schema_fields(&self) -> impl Iterator<Item = (&str, FieldType)> + '_ {
        self.fields
            .iter()
            .filter(|(_, field)| field.in_schema)
            .map(|(name, field)| (name.as_str(), field.field_type))
    }

    /// If `name` cannot be added because an existing field is an object
    /// prefix of it or it is an object prefix of an existing field, returns
    /// that existing field.
    pub(crate) fn object_conflict(&self, name: &str) -> Option<String> {
        object_conflict_in(&self.fields, name)
    }

    /// Checks that `fields` can be added: same type if existing, no
    /// value/object conflicts with existing fields or between themselves.
    fn check_additions(&self, fields: &[(String, FieldType)]) -> Result<(), MappingError> {
        let mut pending: BTreeMap<String, FieldType> = BTreeMap::new();
        for (name, field_type) in fields {
            if let Some(existing) = self.field_type(name) {
                if existing != *field_type {
                    return Err(MappingError::TypeConflict {
                        field: name.clone(),
                        existing,
                        requested: *field_type,
                    });
                }
                continue;
            }
            if let Some(previous) = pending.get(name) {
                if previous != field_type {
                    return Err(MappingError::TypeConflict {
                        field: name.clone(),
                        existing: *previous,
                        requested: *field_type,
                    });
                }
                continue;
            }
            if let Some(other) = self
                .object_conflict(name)
                .or_else(|| object_conflict_in(&pending, name))
            {
                return Err(MappingError::ObjectConflict {
                    field: name.clone(),
                    other,
                });
            }
            pending.insert(name.clone(), *field_type);
        }
        Ok(())
    }

    fn insert_unchecked(&mut self, fields: impl IntoIterator<Item = (String, FieldType)>) -> bool {
        let mut changed = false;
        for (name, field_type) in fields {
            if self.fields.contains_key(&name) {
                continue;
            }
            self.fields.insert(
                name,
                MappedField {
                    field_type,
                    in_schema: false,
                },
            );
            changed = true;
        }
        changed
    }
}

/// Finds a field of `map` that is a dotted prefix of `name`, or that has
/// `name` as a dotted prefix.
fn object_conflict_in<V>(map: &BTreeMap<String, V>, name: &str) -> Option<String> {
    for (pos, _) in name.match_indices('.') {
        let prefix = &name[..pos];
        if map.contains_key(prefix) {
            return Some(prefix.to_string());
        }
    }
    let object_prefix = format!("{name}.");
    map.range(object_prefix.clone()..)
        .next()
        .filter(|(key, _)| key.starts_with(&object_prefix))
        .map(|(key, _)| key.clone())
}

/// Checks a (flattened, dotted) field name. Returns the reason if invalid.
pub(crate) fn validate_field_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("field name cannot be empty".to_string());
    }
    if name.trim().is_empty() {
        return Err("field name cannot contain only whitespace".to_string());
    }
    if name.starts_with('_') {
        return Err("field names starting with '_' are reserved for metadata fields".to_string());
    }
    if name.starts_with('-') {
        return Err("field names cannot start with '-'".to_string());
    }
    if name.split('.').any(str::is_empty) {
        return Err(
            "field name cannot start or end with '.' or contain consecutive dots".to_string(),
        );
    }
    Ok(())
}

type ParsedBody = (BTreeMap<String, FieldType>, Option<Dynamic>);

fn parse_body(body: &Value) -> Result<ParsedBody, MappingError> {
    let root = body.as_object().ok_or_else(|| MappingError::InvalidShape {
        field: "<root>".to_string(),
        reason: format!("mapping must be a JSON object, got {body}"),
    })?;
    let mut fields = BTreeMap::new();
    let mut dynamic = None;
    for (key, value) in root {
        match key.as_str() {
            "properties" => parse_properties("", value, &mut fields)?,
            "dynamic" => dynamic = Some(parse_dynamic(value)?),
            // `_source` is always kept: followers replicate it and history is made of it.
            "_source" if value == &serde_json::json!({"enabled": true}) => {}
            "_source" => {
                return Err(MappingError::InvalidShape {
                    field: "_source".to_string(),
                    reason: "Tandem always keeps _source (followers replicate it); only {\"enabled\": true} is accepted".to_string(),
                })
            }
            other => {
                return Err(MappingError::InvalidShape {
                    field: other.to_string(),
                    reason: "unsupported root mapping parameter".to_string(),
                })
            }
        }
    }
    for name in fields.keys() {
        if let Some(other) = object_conflict_in(&fields, name) {
            return Err(MappingError::ObjectConflict {
                field: name.clone(),
                other,
            });
        }
    }
    Ok((fields, dynamic))
}

fn parse_dynamic(value: &Value) -> Result<Dynamic, MappingError> {
    match value {
        Value::Bool(true) => Ok(Dynamic::True),
        Value::Bool(false) => Ok(Dynamic::False),
        Value::String(s) if s == "true" => Ok(Dynamic::True),
        Value::String(s) if s == "false" => Ok(Dynamic::False),
        Value::String(s) if s == "strict" => Ok(Dynamic::Strict),
        other => Err(MappingError::InvalidShape {
            field: "dynamic".to_string(),
            reason: format!("expected true, false or \"strict\", got {other}"),
        }),
    }
}

fn parse_properties(
    prefix: &str,
    properties: &Value,
    out: &mut BTreeMap<String, FieldType>,
) -> Result<(), MappingError> {
    let owner = if prefix.is_empty() { "<root>" } else { prefix };
    let properties = properties
        .as_object()
        .ok_or_else(|| MappingError::InvalidShape {
            field: owner.to_string(),
            reason: format!("[properties] must be a JSON object, got {properties}"),
        })?;
    for (name, definition) in properties {
        let full = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        if name.is_empty() {
            return Err(MappingError::InvalidFieldName {
                field: full,
                reason: "field name cannot be empty".to_string(),
            });
        }
        validate_field_name(&full).map_err(|reason| MappingError::InvalidFieldName {
            field: full.clone(),
            reason,
        })?;
        parse_field(&full, definition, out)?;
    }
    Ok(())
}

fn parse_field(
    name: &str,
    definition: &Value,
    out: &mut BTreeMap<String, FieldType>,
) -> Result<(), MappingError> {
    let definition = definition
        .as_object()
        .ok_or_else(|| MappingError::InvalidShape {
            field: name.to_string(),
            reason: format!("field definition must be a JSON object, got {definition}"),
        })?;
    let mut type_name = None;
    let mut properties = None;
    for (key, value) in definition {
        match key.as_str() {
            "type" => {
                let s = value.as_str().ok_or_else(|| MappingError::InvalidShape {
                    field: name.to_string(),
                    reason: format!("[type] must be a string, got {value}"),
                })?;
                type_name = Some(s);
            }
            "properties" => properties = Some(value),
            other => {
                return Err(MappingError::InvalidShape {
                    field: name.to_string(),
                    reason: format!("unsupported mapping parameter [{other}]"),
                })
            }
        }
    }
    match (type_name, properties) {
        (None | Some("object"), Some(properties)) => parse_properties(name, properties, out),
        (Some("object"), None) => Ok(()),
        (Some(t), Some(_)) => Err(MappingError::InvalidShape {
            field: name.to_string(),
            reason: format!("a field of type [{t}] cannot have [properties]"),
        }),
        (None, None) => Err(MappingError::InvalidShape {
            field: name.to_string(),
            reason: "no [type] and no [properties] given".to_string(),
        }),
        (Some(t), None) => {
            let field_type =
                FieldType::from_es_name(t).ok_or_else(|| MappingError::UnknownType {
                    field: name.to_string(),
                    type_name: t.to_string(),
                })?;
            match out.get(name) {
                Some(existing) if *existing != field_type => Err(MappingError::TypeConflict {
                    field: name.to_string(),
                    existing: *existing,
                    requested: field_type,
                }),
                _ => {
                    out.insert(name.to_string(), field_type);
                    Ok(())
                }
            }
        }
    }
}

/// Inserts `name` (dotted) into an ES `properties` object, creating the
/// intermediate objects. Never panics, even on inconsistent input.
fn insert_nested(properties: &mut Map<String, Value>, name: &str, field_type: FieldType) {
    let mut current = properties;
    let mut segments = name.split('.').peekable();
    while let Some(segment) = segments.next() {
        if segments.peek().is_none() {
            let mut leaf = Map::new();
            leaf.insert(
                "type".to_string(),
                Value::String(field_type.as_str().to_string()),
            );
            current.insert(segment.to_string(), Value::Object(leaf));
            return;
        }
        let entry = current
            .entry(segment.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() || entry.get("type").is_some() {
            // A value and an object with the same name: cannot happen with
            // validated mappings; keep the value.
            return;
        }
        let Some(object) = entry.as_object_mut() else {
            return;
        };
        let props = object
            .entry("properties".to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        let Some(props) = props.as_object_mut() else {
            return;
        };
        current = props;
    }
}
