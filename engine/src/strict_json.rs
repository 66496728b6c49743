//! JSON parsed as Elasticsearch parses it: an object holding the same key twice is an error
//! (`Duplicate field 'f'`), at any depth, where `serde_json` would keep the last value.
//!
//! Every request body and every document `_source` the node accepts is parsed here, once, so
//! a duplicate key is refused before it can mean two things (the last `settings` of a
//! create-index body winning over the first, a document whose stored `_source` holds a field
//! the index never saw). State files written by Tandem itself are read with plain `serde_json`:
//! they never hold duplicates, and a reader of its own files need not pay for the check.
//!
//! Cost: the value is built exactly as `serde_json::Value`'s own deserializer builds it; the
//! only extra work is that each key is inserted through the map's entry, which is the lookup
//! the plain insert does anyway, so parsing costs the same.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// Parses `bytes` as one JSON value, refusing an object that holds a key twice.
///
/// A duplicate key is an error whose [`serde_json::Error::classify`] is
/// [`serde_json::error::Category::Data`] (a `Value` accepts every other well-formed input, so
/// no other error of that class can come from here), positioned just after the repeated key.
pub fn from_slice(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// True when `error` (from [`from_slice`]) is a duplicate key rather than malformed JSON.
pub fn is_duplicate_key(error: &serde_json::Error) -> bool {
    error.classify() == serde_json::error::Category::Data
}

/// The message of `error` without the ` at line L column C` suffix `serde_json` adds, for
/// callers that show the position their own way (Elasticsearch's `[L:C] message`).
pub fn message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    match text.strip_suffix(&suffix) {
        Some(message) => message.to_string(),
        None => text,
    }
}

/// Elasticsearch's rendering of a parse error: `[line:column] message`.
pub fn describe(error: &serde_json::Error) -> String {
    format!("[{}:{}] {}", error.line(), error.column(), message(error))
}

/// Builds a [`Value`], refusing duplicate keys.
#[derive(Clone, Copy)]
struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_string()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut values = Vec::with_capacity(access.size_hint().unwrap_or(0));
        while let Some(value) = access.next_element_seed(StrictValue)? {
            values.push(value);
        }
        Ok(Value::Array(values))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            match map.entry(key) {
                Entry::Occupied(taken) => {
                    return Err(de::Error::custom(format_args!(
                        "Duplicate field '{}'",
                        taken.key()
                    )))
                }
                Entry::Vacant(free) => {
                    free.insert(access.next_value_seed(StrictValue)?);
                }
            }
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth_with_their_position() {
        let error = from_slice(br#"{"f":1,"f":"two"}"#).unwrap_err();
        assert!(is_duplicate_key(&error));
        assert_eq!(describe(&error), "[1:10] Duplicate field 'f'");
        let nested = from_slice(b"{\"a\": [{\"b\": {\"c\": 1,\n \"c\": 2}}]}").unwrap_err();
        assert!(is_duplicate_key(&nested));
        assert_eq!(describe(&nested), "[2:4] Duplicate field 'c'");
    }

    #[test]
    fn everything_else_parses_as_serde_json_parses_it() {
        for text in [
            r#"{"a":1,"b":[1,-2,3.5,"x",null,true,{"a":{}}],"c":{"a":1},"d":18446744073709551615}"#,
            "[]",
            "\"\\u00e9t\\u00e9\"",
            "  12  ",
            r#"{"same":{"k":1},"other":{"k":2}}"#,
        ] {
            let plain: Value = serde_json::from_str(text).unwrap();
            assert_eq!(from_slice(text.as_bytes()).unwrap(), plain, "{text}");
        }
        for bad in ["{", "{\"a\":1} x", "[1,]", ""] {
            let error = from_slice(bad.as_bytes()).unwrap_err();
            assert!(!is_duplicate_key(&error), "{bad}");
            let plain = serde_json::from_str::<Value>(bad).unwrap_err();
            assert_eq!(error.to_string(), plain.to_string(), "{bad}");
        }
    }
}
