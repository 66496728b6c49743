//! Elasticsearch `_source` to tantivy document.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use tantivy::schema::OwnedValue;
use tantivy::TantivyDocument;

use super::date::{from_epoch_millis, parse_date, parse_rfc3339};
use super::error::{describe_value, DocumentError};
use super::mappings::{validate_field_name, Dynamic, FieldType, Mappings};
use super::schema::IndexSchema;
use super::MAX_TERM_BYTES;

/// The result of [`IndexSchema::parse_document`].
#[derive(Debug)]
pub struct ParsedDocument {
    /// The tantivy document: mapped fields, `_dynamic` and `_all`, without
    /// the meta fields (the caller adds those).
    pub document: TantivyDocument,
    /// Fields of the document that are not in the mappings, with their
    /// inferred type, in order of first appearance. The caller must add them
    /// to the mappings (see [`Mappings::add_fields`]) before acknowledging the
    /// write.
    pub new_fields: Vec<(String, FieldType)>,
}

impl IndexSchema {
    /// Parses an Elasticsearch `_source` (JSON object bytes) into a tantivy
    /// document holding the mapped fields, `_dynamic` and `_all` (not the meta
    /// fields: the caller adds those).
    ///
    /// Returns the new dynamic fields discovered (name, inferred type) that the
    /// caller must add to the mappings before acknowledging the write; `parse`
    /// does not mutate `mappings`. Errors: not a JSON object, invalid JSON, a
    /// value that does not fit the field's type, value/object conflicts,
    /// unmapped fields under `dynamic: strict`.
    ///
    /// This is the parse of a new document from a client: an object holding a key twice is
    /// refused, as Elasticsearch refuses it. A source already in the history is parsed with
    /// [`IndexSchema::parse_recorded_document`].
    pub fn parse_document(
        &self,
        mappings: &Mappings,
        source: &[u8],
    ) -> Result<ParsedDocument, DocumentError> {
        let value: Value = crate::strict_json::from_slice(source).map_err(|error| {
            DocumentError::InvalidJson(if crate::strict_json::is_duplicate_key(&error) {
                crate::strict_json::describe(&error)
            } else {
                error.to_string()
            })
        })?;
        self.parse_value(mappings, value)
    }

    /// Parses a source that is already part of an index's history (a translog record
    /// replayed at open, an operation a follower takes from its leader) as
    /// [`IndexSchema::parse_document`] does, except that a key held twice keeps its last
    /// value: the operation was acknowledged (possibly by a version that accepted such
    /// sources), so refusing it now would leave a hole in the history.
    pub fn parse_recorded_document(
        &self,
        mappings: &Mappings,
        source: &[u8],
    ) -> Result<ParsedDocument, DocumentError> {
        let value: Value = serde_json::from_slice(source)
            .map_err(|error| DocumentError::InvalidJson(error.to_string()))?;
        self.parse_value(mappings, value)
    }

    fn parse_value(
        &self,
        mappings: &Mappings,
        value: Value,
    ) -> Result<ParsedDocument, DocumentError> {
        let Value::Object(root) = value else {
            return Err(DocumentError::NotAnObject(json_kind(&value).to_string()));
        };
        let mut leaves = Vec::new();
        flatten_object("", &root, &mut leaves)?;

        let mut document = TantivyDocument::default();
        let mut new_fields: Vec<(String, FieldType)> = Vec::new();
        let mut new_types: BTreeMap<String, FieldType> = BTreeMap::new();
        let mut dynamic_values: BTreeMap<String, Vec<OwnedValue>> = BTreeMap::new();

        for (name, value) in leaves {
            if value.is_null() {
                continue;
            }
            let schema_entry = self.mapped_entry(&name);
            let field_type = match schema_entry
                .map(|(_, t)| t)
                .or_else(|| mappings.field_type(&name))
                .or_else(|| new_types.get(&name).copied())
            {
                Some(field_type) => field_type,
                None => {
                    let conflict = mappings
                        .object_conflict(&name)
                        .or_else(|| conflict_in(&new_types, &name));
                    if let Some(other) = conflict {
                        return Err(DocumentError::ObjectConflict { field: name, other });
                    }
                    match mappings.dynamic() {
                        Dynamic::Strict => {
                            return Err(DocumentError::StrictDynamic { field: name })
                        }
                        Dynamic::False => continue,
                        Dynamic::True => {}
                    }
                    let inferred = infer_type(value);
                    new_types.insert(name.clone(), inferred);
                    new_fields.push((name.clone(), inferred));
                    inferred
                }
            };
            let typed = convert(&name, field_type, value)?;
            if let Value::String(text) = value {
                document.add_text(self.all, text);
            }
            match schema_entry {
                Some((field, _)) => match typed {
                    OwnedValue::Str(text) => document.add_text(field, text),
                    OwnedValue::I64(v) => document.add_i64(field, v),
                    OwnedValue::F64(v) => document.add_f64(field, v),
                    OwnedValue::Bool(v) => document.add_bool(field, v),
                    OwnedValue::Date(v) => document.add_date(field, v),
                    _ => {}
                },
                None => dynamic_values.entry(name).or_default().push(typed),
            }
        }
        if !dynamic_values.is_empty() {
            document.add_object(self.dynamic, nest(dynamic_values));
        }
        Ok(ParsedDocument {
            document,
            new_fields,
        })
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn conflict_in(types: &BTreeMap<String, FieldType>, name: &str) -> Option<String> {
    for (pos, _) in name.match_indices('.') {
        if types.contains_key(&name[..pos]) {
            return Some(name[..pos].to_string());
        }
    }
    let prefix = format!("{name}.");
    types
        .range(prefix.clone()..)
        .next()
        .filter(|(key, _)| key.starts_with(&prefix))
        .map(|(key, _)| key.clone())
}

/// Flattens an object into (dotted name, leaf value) pairs, in document order.
fn flatten_object<'a>(
    prefix: &str,
    object: &'a Map<String, Value>,
    out: &mut Vec<(String, &'a Value)>,
) -> Result<(), DocumentError> {
    for (key, value) in object {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if key.is_empty() {
            return Err(DocumentError::InvalidFieldName {
                field: name,
                reason: "field name cannot be empty".to_string(),
            });
        }
        if let Err(reason) = validate_field_name(&name) {
            return Err(DocumentError::InvalidFieldName {
                field: name,
                reason,
            });
        }
        flatten_value(name, value, out)?;
    }
    Ok(())
}

fn flatten_value<'a>(
    name: String,
    value: &'a Value,
    out: &mut Vec<(String, &'a Value)>,
) -> Result<(), DocumentError> {
    match value {
        Value::Object(object) => flatten_object(&name, object, out),
        Value::Array(items) => {
            for item in items {
                flatten_value(name.clone(), item, out)?;
            }
            Ok(())
        }
        _ => {
            out.push((name, value));
            Ok(())
        }
    }
}

/// Dynamic mapping: the type of a new field from its first value.
fn infer_type(value: &Value) -> FieldType {
    match value {
        Value::String(text) if parse_rfc3339(text).is_some() => FieldType::Date,
        Value::Number(n) if n.is_i64() => FieldType::Long,
        Value::Number(_) => FieldType::Double,
        Value::Bool(_) => FieldType::Boolean,
        _ => FieldType::Text,
    }
}

fn mismatch(name: &str, field_type: FieldType, value: &Value, reason: &str) -> DocumentError {
    DocumentError::TypeMismatch {
        field: name.to_string(),
        field_type,
        value: describe_value(value),
        reason: reason.to_string(),
    }
}

/// Converts a leaf JSON value to the indexed value of a field of `field_type`.
fn convert(name: &str, field_type: FieldType, value: &Value) -> Result<OwnedValue, DocumentError> {
    let err = |reason: &str| mismatch(name, field_type, value, reason);
    match field_type {
        FieldType::Keyword => match value {
            Value::String(text) if text.len() > MAX_TERM_BYTES => {
                Err(DocumentError::ImmenseTerm {
                    field: name.to_string(),
                    max: MAX_TERM_BYTES,
                    prefix: text.chars().take(30).collect(),
                })
            }
            Value::String(text) => Ok(OwnedValue::Str(text.clone())),
            Value::Number(n) => Ok(OwnedValue::Str(n.to_string())),
            Value::Bool(b) => Ok(OwnedValue::Str(b.to_string())),
            _ => Err(err("expected a string")),
        },
        FieldType::Text => match value {
            Value::String(text) => Ok(OwnedValue::Str(text.clone())),
            Value::Number(n) => Ok(OwnedValue::Str(n.to_string())),
            Value::Bool(b) => Ok(OwnedValue::Str(b.to_string())),
            _ => Err(err("expected a string")),
        },
        FieldType::Long | FieldType::Integer => {
            let v = to_i64(value).map_err(&err)?;
            if field_type == FieldType::Integer && i32::try_from(v).is_err() {
                return Err(err("out of range for an integer (32-bit)"));
            }
            Ok(OwnedValue::I64(v))
        }
        FieldType::Double | FieldType::Float => {
            let v = to_f64(value).map_err(&err)?;
            if field_type == FieldType::Float && v.abs() > f64::from(f32::MAX) {
                return Err(err("out of range for a float (32-bit)"));
            }
            Ok(OwnedValue::F64(v))
        }
        FieldType::Boolean => match value {
            Value::Bool(b) => Ok(OwnedValue::Bool(*b)),
            Value::String(s) if s == "true" => Ok(OwnedValue::Bool(true)),
            Value::String(s) if s == "false" => Ok(OwnedValue::Bool(false)),
            _ => Err(err("expected true or false")),
        },
        FieldType::Date => match value {
            Value::String(text) => parse_date(text)
                .map(|d| OwnedValue::Date(d.instant))
                .ok_or_else(|| {
                    err("expected an RFC 3339 date-time, a yyyy-MM-dd date or epoch milliseconds (years 1677 to 2262)")
                }),
            Value::Number(n) => n
                .as_i64()
                .and_then(from_epoch_millis)
                .map(OwnedValue::Date)
                .ok_or_else(|| err("expected integer epoch milliseconds (years 1677 to 2262)")),
            _ => Err(err("expected a date string or epoch milliseconds")),
        },
    }
}

/// 2^63 as f64: the first value above `i64::MAX`.
const I64_BOUND: f64 = 9_223_372_036_854_775_808.0;

fn f64_to_i64(v: f64) -> Result<i64, &'static str> {
    if !v.is_finite() {
        return Err("not a finite number");
    }
    if v.fract() != 0.0 {
        return Err("expected an integer, got a number with a fractional part");
    }
    if !(-I64_BOUND..I64_BOUND).contains(&v) {
        return Err("out of range for a long (64-bit)");
    }
    Ok(v as i64)
}

fn to_i64(value: &Value) -> Result<i64, &'static str> {
    match value {
        Value::Number(n) => {
            if let Some(v) = n.as_i64() {
                Ok(v)
            } else if n.is_u64() {
                Err("out of range for a long (64-bit)")
            } else {
                f64_to_i64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => match s.trim().parse::<i64>() {
            Ok(v) => Ok(v),
            Err(_) => match s.trim().parse::<f64>() {
                Ok(v) => f64_to_i64(v),
                Err(_) => Err("not a number"),
            },
        },
        _ => Err("expected a number"),
    }
}

fn to_f64(value: &Value) -> Result<f64, &'static str> {
    let v = match value {
        Value::Number(n) => n.as_f64().ok_or("not a number")?,
        Value::String(s) => s.trim().parse::<f64>().map_err(|_| "not a number")?,
        _ => return Err("expected a number"),
    };
    if v.is_finite() {
        Ok(v)
    } else {
        Err("not a finite number")
    }
}

/// A tree of dynamic values, to rebuild nested objects from dotted names.
enum Node {
    Leaf(Vec<OwnedValue>),
    Object(BTreeMap<String, Node>),
}

fn nest(values: BTreeMap<String, Vec<OwnedValue>>) -> BTreeMap<String, OwnedValue> {
    let mut root: BTreeMap<String, Node> = BTreeMap::new();
    for (name, leaf_values) in values {
        insert_node(&mut root, &name, leaf_values);
    }
    root.into_iter()
        .map(|(key, node)| (key, node_to_value(node)))
        .collect()
}

fn insert_node(root: &mut BTreeMap<String, Node>, name: &str, values: Vec<OwnedValue>) {
    let mut current = root;
    let mut segments = name.split('.').peekable();
    while let Some(segment) = segments.next() {
        if segments.peek().is_none() {
            current.insert(segment.to_string(), Node::Leaf(values));
            return;
        }
        let node = current
            .entry(segment.to_string())
            .or_insert_with(|| Node::Object(BTreeMap::new()));
        match node {
            Node::Object(children) => current = children,
            // Value/object conflicts are rejected before; never reached.
            Node::Leaf(_) => return,
        }
    }
}

fn node_to_value(node: Node) -> OwnedValue {
    match node {
        Node::Leaf(mut values) => {
            if values.len() == 1 {
                values.pop().unwrap_or(OwnedValue::Null)
            } else {
                OwnedValue::Array(values)
            }
        }
        Node::Object(children) => OwnedValue::Object(
            children
                .into_iter()
                .map(|(key, child)| (key, node_to_value(child)))
                .collect(),
        ),
    }
}
