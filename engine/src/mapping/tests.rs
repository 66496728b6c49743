//! End-to-end tests: real in-RAM tantivy indexes fed through `parse_document`
//! and searched through `parse_query_string`.

use proptest::prelude::*;
use serde_json::{json, Value};
use tantivy::collector::DocSetCollector;
use tantivy::schema::Value as _;
use tantivy::{Index, IndexWriter, TantivyDocument};

use super::*;

pub(super) fn server_metrics_mappings() -> Mappings {
    Mappings::from_es_json(&json!({
        "properties": {
            "@timestamp": {"type": "date"},
            "host": {"properties": {"name": {"type": "keyword"}}},
            "cpu": {"properties": {"usage": {"type": "double"}}},
            "memory": {"properties": {"used": {"type": "long"}}},
            "status": {"type": "keyword"},
            "message": {"type": "text"}
        }
    }))
    .unwrap()
}

pub(super) fn server_metrics_docs() -> Vec<Value> {
    vec![
        json!({
            "@timestamp": "2024-01-01T10:00:00Z",
            "host": {"name": "web-01"},
            "cpu": {"usage": 75.5},
            "memory": {"used": 1024},
            "status": "ok",
            "message": "disk error on sda",
            "user": "kimchy",
            "requests": 42
        }),
        json!({
            "@timestamp": "2024-01-02T08:30:00.123Z",
            "host": {"name": "web-02"},
            "cpu": {"usage": 20.0},
            "memory": {"used": 2048},
            "status": "ok",
            "message": "all good",
            "user": "elastic",
            "requests": 7
        }),
        json!({
            "@timestamp": 1704250800000i64,
            "host": {"name": "web-01"},
            "cpu": {"usage": 99.9},
            "status": "failed",
            "message": "fatal error",
            "requests": 100,
            "latency": 12.5
        }),
        json!({
            "@timestamp": "2024-01-04",
            "host.name": "db-01",
            "cpu.usage": 50,
            "status": "ok",
            "message": "error budget fine",
            "tags": ["alpha", "beta"],
            "extra": null,
            "deploy": {"time": "2024-01-05T00:00:00Z", "enabled": true},
            "latency": 3
        }),
    ]
}

pub(super) struct TestIndex {
    schema: IndexSchema,
    mappings: Mappings,
    index: Index,
}

impl TestIndex {
    pub(super) fn new(mappings: Mappings) -> TestIndex {
        let schema = IndexSchema::build(&mappings);
        let index = Index::create_in_ram(schema.schema.clone());
        TestIndex {
            schema,
            mappings,
            index,
        }
    }

    /// Indexes documents the way the engine does: parse, record new fields,
    /// add the meta fields. The `_record` holds the document number.
    pub(super) fn index_docs(&mut self, docs: &[Value]) {
        let mut writer: IndexWriter = self.index.writer(15_000_000).unwrap();
        for (i, doc) in docs.iter().enumerate() {
            let parsed = self
                .schema
                .parse_document(&self.mappings, doc.to_string().as_bytes())
                .unwrap();
            self.mappings.add_fields(&parsed.new_fields).unwrap();
            let mut document = parsed.document;
            document.add_text(self.schema.id, i.to_string());
            document.add_u64(self.schema.seq_no, i as u64);
            document.add_u64(self.schema.primary_term, 1);
            document.add_u64(self.schema.version, 1);
            document.add_u64(self.schema.op_type, 0);
            document.add_bytes(self.schema.record, i.to_string().as_bytes());
            writer.add_document(document).unwrap();
        }
        writer.commit().unwrap();
    }

    fn try_search(&self, q: &str) -> Result<Vec<usize>, QueryError> {
        let query = self
            .schema
            .parse_query_string(&self.index, &self.mappings, q)?;
        Ok(self.matching(&*query))
    }

    /// The DSL query's matches, by document number.
    pub(super) fn try_search_dsl(&self, dsl: &Value) -> Result<Vec<usize>, QueryError> {
        let query = self
            .schema
            .parse_query_dsl(&self.index, &self.mappings, dsl)?;
        Ok(self.matching(&*query))
    }

    fn matching(&self, query: &dyn tantivy::query::Query) -> Vec<usize> {
        let reader = self.index.reader().unwrap();
        let searcher = reader.searcher();
        let addresses = searcher.search(query, &DocSetCollector).unwrap();
        let mut found: Vec<usize> = addresses
            .into_iter()
            .map(|address| {
                let doc: TantivyDocument = searcher.doc(address).unwrap();
                let record = doc.get_first(self.schema.record).unwrap();
                let bytes = record.as_bytes().unwrap();
                std::str::from_utf8(bytes).unwrap().parse().unwrap()
            })
            .collect();
        found.sort_unstable();
        found
    }

    fn search(&self, q: &str) -> Vec<usize> {
        self.try_search(q)
            .unwrap_or_else(|e| panic!("query {q:?} failed: {e}"))
    }
}

pub(super) fn server_metrics_index() -> TestIndex {
    let mut index = TestIndex::new(server_metrics_mappings());
    index.index_docs(&server_metrics_docs());
    index
}

#[test]
fn search_unqualified_terms_use_all() {
    let t = server_metrics_index();
    assert_eq!(t.search("kimchy"), vec![0]);
    assert_eq!(t.search("web-01"), vec![0, 2]);
    assert_eq!(t.search("error"), vec![0, 2, 3]);
    assert_eq!(t.search("alpha"), vec![3]);
    assert_eq!(t.search("\"disk error\""), vec![0]);
    assert_eq!(t.search("nothing-like-this"), Vec::<usize>::new());
}

#[test]
fn search_match_all() {
    let t = server_metrics_index();
    assert_eq!(t.search("*"), vec![0, 1, 2, 3]);
    assert_eq!(t.search(""), vec![0, 1, 2, 3]);
    assert_eq!(t.search("  "), vec![0, 1, 2, 3]);
}

#[test]
fn search_mapped_fields() {
    let t = server_metrics_index();
    assert_eq!(t.search("host.name:web-01"), vec![0, 2]);
    assert_eq!(t.search("host.name:db-01"), vec![3]);
    assert_eq!(t.search("cpu.usage:[50 TO 100]"), vec![0, 2, 3]);
    assert_eq!(t.search("cpu.usage:{50 TO 100]"), vec![0, 2]);
    assert_eq!(t.search("cpu.usage:75.5"), vec![0]);
    assert_eq!(t.search("memory.used:1024"), vec![0]);
    assert_eq!(t.search("memory.used:>=1024"), vec![0, 1]);
    assert_eq!(t.search("status:ok AND message:error"), vec![0, 3]);
    assert_eq!(t.search("status:failed OR user:elastic"), vec![1, 2]);
    assert_eq!(t.search("-status:ok"), vec![2]);
    assert_eq!(t.search("status:ok -message:error"), vec![1]);
    assert_eq!(
        t.search("(host.name:web-01)^2 OR user:elastic"),
        vec![0, 1, 2]
    );
    assert_eq!(t.search("status:*"), vec![0, 1, 2, 3]);
    assert_eq!(t.search("memory.used:*"), vec![0, 1]);
    assert_eq!(t.search("message:*"), vec![0, 1, 2, 3]);
    assert_eq!(t.search("_id:2"), vec![2]);
}

#[test]
fn search_mapped_dates() {
    let t = server_metrics_index();
    assert_eq!(t.search("@timestamp:2024-01-04"), vec![3]);
    assert_eq!(
        t.search("@timestamp:[2024-01-01 TO 2024-01-02]"),
        vec![0, 1]
    );
    assert_eq!(t.search("@timestamp:[2024-01-02 TO *]"), vec![1, 2, 3]);
    assert_eq!(
        t.search("@timestamp:{2024-01-01 TO 2024-01-04}"),
        vec![1, 2]
    );
    assert_eq!(t.search("@timestamp:\"2024-01-01T10:00:00Z\""), vec![0]);
    assert_eq!(t.search("@timestamp:1704250800000"), vec![2]);
    assert_eq!(t.search("@timestamp:<2024-01-02"), vec![0]);
}

#[test]
fn search_dynamic_fields() {
    let t = server_metrics_index();
    assert_eq!(t.mappings.field_type("user"), Some(FieldType::Text));
    assert_eq!(t.mappings.field_type("requests"), Some(FieldType::Long));
    assert_eq!(t.mappings.field_type("latency"), Some(FieldType::Double));
    assert_eq!(t.mappings.field_type("deploy.time"), Some(FieldType::Date));
    assert_eq!(
        t.mappings.field_type("deploy.enabled"),
        Some(FieldType::Boolean)
    );
    assert_eq!(t.mappings.field_type("tags"), Some(FieldType::Text));
    assert_eq!(t.mappings.field_type("extra"), None);

    assert_eq!(t.search("user:kimchy"), vec![0]);
    assert_eq!(t.search("_dynamic.user:kimchy"), vec![0]);
    assert_eq!(t.search("tags:beta"), vec![3]);
    assert_eq!(t.search("requests:42"), vec![0]);
    assert_eq!(t.search("requests:[40 TO 100]"), vec![0, 2]);
    assert_eq!(t.search("requests:>50"), vec![2]);
    assert_eq!(t.search("requests:<=7"), vec![1]);
    assert_eq!(t.search("latency:12.5"), vec![2]);
    assert_eq!(t.search("latency:3"), vec![3]);
    assert_eq!(t.search("latency:[2.5 TO 20]"), vec![2, 3]);
    assert_eq!(t.search("latency:[4 TO *]"), vec![2]);
    assert_eq!(t.search("deploy.enabled:true"), vec![3]);
    assert_eq!(t.search("deploy.time:2024-01-05"), vec![3]);
    assert_eq!(t.search("deploy.time:[2024-01-01 TO *]"), vec![3]);
    assert_eq!(
        t.search("deploy.time:[* TO 2024-01-04]"),
        Vec::<usize>::new()
    );
    assert_eq!(t.search("user:[a TO f]"), vec![1]);
    assert_eq!(t.search("user:*"), vec![0, 1]);
    assert_eq!(t.search("requests:*"), vec![0, 1, 2]);
    assert_eq!(t.search("latency:*"), vec![2, 3]);
    assert_eq!(t.search("deploy.enabled:*"), vec![3]);
    assert_eq!(t.search("user:kimchy AND requests:42"), vec![0]);
    assert_eq!(t.search("never.seen:foo"), Vec::<usize>::new());
    assert_eq!(t.search("never.seen:[1 TO 2]"), Vec::<usize>::new());
}

#[test]
fn search_fields_added_by_put_mapping() {
    let mut mappings = server_metrics_mappings();
    let mut t = TestIndex::new(mappings.clone());
    let changed = mappings
        .merge_es_json(
            &json!({"properties": {"level": {"type": "keyword"}, "code": {"type": "integer"}}}),
        )
        .unwrap();
    assert!(changed);
    assert!(!mappings.is_in_schema("level"));
    t.mappings = mappings;
    t.index_docs(&[
        json!({"level": "warn", "code": 3, "status": "ok"}),
        json!({"level": "info", "code": "4", "status": "ok"}),
    ]);
    assert_eq!(t.search("level:warn"), vec![0]);
    assert_eq!(t.search("code:4"), vec![1]);
    assert_eq!(t.search("code:[1 TO 3]"), vec![0]);
    // The new field is typed: a later document must respect it.
    let err = t
        .schema
        .parse_document(&t.mappings, br#"{"code": "many"}"#)
        .unwrap_err();
    assert!(err.to_string().contains("[code]"), "{err}");
}

#[test]
fn search_errors_are_clear() {
    let t = server_metrics_index();
    let err = t.try_search("status:(ok").unwrap_err();
    assert!(matches!(err, QueryError::Syntax { .. }), "{err:?}");
    assert!(err.to_string().contains("status:(ok"), "{err}");

    let err = t.try_search("memory.used:abc").unwrap_err();
    assert!(err.to_string().contains("[memory.used]"), "{err}");

    let err = t.try_search("@timestamp:yesterday").unwrap_err();
    assert!(err.to_string().contains("[@timestamp]"), "{err}");

    let err = t.try_search("requests:[a TO b]").unwrap_err();
    assert!(err.to_string().contains("[requests]"), "{err}");

    let err = t.try_search("[1 TO 2]").unwrap_err();
    assert!(matches!(err, QueryError::Invalid(_)), "{err:?}");
}

#[test]
fn documents_respect_field_types() {
    let mappings = Mappings::from_es_json(&json!({"properties": {
        "n": {"type": "long"},
        "i": {"type": "integer"},
        "d": {"type": "double"},
        "f": {"type": "float"},
        "b": {"type": "boolean"},
        "t": {"type": "date"},
        "k": {"type": "keyword"},
        "obj": {"properties": {"x": {"type": "long"}}}
    }}))
    .unwrap();
    let schema = IndexSchema::build(&mappings);
    let parse = |src: &str| schema.parse_document(&mappings, src.as_bytes());

    let cases: &[(&str, &str)] = &[
        (r#"{"n": "abc"}"#, "[n]"),
        (r#"{"n": 18446744073709551615}"#, "[n]"),
        (r#"{"n": 1.5}"#, "[n]"),
        (r#"{"n": true}"#, "[n]"),
        (r#"{"i": 3.5}"#, "[i]"),
        (r#"{"i": 2147483648}"#, "[i]"),
        (r#"{"d": "x"}"#, "[d]"),
        (r#"{"d": "NaN"}"#, "[d]"),
        (r#"{"f": 1e300}"#, "[f]"),
        (r#"{"b": 1}"#, "[b]"),
        (r#"{"t": "not a date"}"#, "[t]"),
        (r#"{"t": 9223372036854775807}"#, "[t]"),
        (r#"{"t": 1.5}"#, "[t]"),
        (r#"{"obj": 5}"#, "[obj]"),
        (r#"{"n": {"deeper": 1}}"#, "[n"),
        (r#"{"_id": "x"}"#, "[_id]"),
        (r#"{"": 1}"#, "[]"),
        (r#"{"a..b": 1}"#, "[a..b]"),
    ];
    for (src, needle) in cases {
        let err = parse(src).unwrap_err();
        assert!(err.to_string().contains(needle), "{src}: {err}");
    }
    // Values are named in type mismatch messages.
    let err = parse(r#"{"n": "abc"}"#).unwrap_err();
    assert!(err.to_string().contains("\"abc\""), "{err}");

    assert!(matches!(
        parse("[1, 2]"),
        Err(DocumentError::NotAnObject(_))
    ));
    assert!(matches!(
        parse("{\"a\": "),
        Err(DocumentError::InvalidJson(_))
    ));
    assert!(matches!(parse(""), Err(DocumentError::InvalidJson(_))));

    // Accepted coercions.
    for ok in [
        r#"{"n": "42", "i": 3.0, "d": "1.5", "f": 2, "b": "true", "t": "2024-01-01", "k": 12}"#,
        r#"{"t": 0, "n": null, "k": [true, "x"]}"#,
        r#"{"t": "2024-01-01T00:00:00+02:00", "n": -9223372036854775808}"#,
        r#"{"obj": {"x": 1}, "obj.x": 2}"#,
        r#"{}"#,
    ] {
        let parsed = parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        assert!(parsed.new_fields.is_empty(), "{ok}");
    }
}

#[test]
fn dynamic_mapping_infers_types() {
    let mappings = Mappings::empty();
    let schema = IndexSchema::build(&mappings);
    let parsed = schema
        .parse_document(
            &mappings,
            br#"{"s": "hello", "d": "2024-01-01T00:00:00Z", "day": "2024-01-01", "n": 1,
                 "x": 1.5, "b": false, "o": {"p": [1, 2]}, "z": null, "e": [], "big": 18446744073709551615}"#,
        )
        .unwrap();
    let mut new_fields = parsed.new_fields.clone();
    new_fields.sort();
    assert_eq!(
        new_fields,
        vec![
            ("b".to_string(), FieldType::Boolean),
            ("big".to_string(), FieldType::Double),
            ("d".to_string(), FieldType::Date),
            ("day".to_string(), FieldType::Text),
            ("n".to_string(), FieldType::Long),
            ("o.p".to_string(), FieldType::Long),
            ("s".to_string(), FieldType::Text),
            ("x".to_string(), FieldType::Double),
        ]
    );

    // Within a document, the first value fixes the type.
    let err = schema
        .parse_document(&mappings, br#"{"v": [1, "abc"]}"#)
        .unwrap_err();
    assert!(err.to_string().contains("[v]"), "{err}");
    // A value and an object with the same name.
    let err = schema
        .parse_document(&mappings, br#"{"a": 1, "a.b": 2}"#)
        .unwrap_err();
    assert!(matches!(err, DocumentError::ObjectConflict { .. }), "{err}");
}

#[test]
fn dynamic_setting_is_honoured() {
    let strict = Mappings::from_es_json(
        &json!({"dynamic": "strict", "properties": {"a": {"type": "keyword"}}}),
    )
    .unwrap();
    let schema = IndexSchema::build(&strict);
    assert!(schema.parse_document(&strict, br#"{"a": "x"}"#).is_ok());
    let err = schema
        .parse_document(&strict, br#"{"a": "x", "b": 1}"#)
        .unwrap_err();
    assert_eq!(
        err,
        DocumentError::StrictDynamic {
            field: "b".to_string()
        }
    );

    let ignore = Mappings::from_es_json(&json!({"dynamic": false})).unwrap();
    let schema = IndexSchema::build(&ignore);
    let parsed = schema.parse_document(&ignore, br#"{"b": 1}"#).unwrap();
    assert!(parsed.new_fields.is_empty());
}

#[test]
fn bad_mappings_are_rejected() {
    let cases = [
        (json!({"properties": {"a": {"type": "geo_point"}}}), "[a]"),
        (json!({"properties": {"_a": {"type": "keyword"}}}), "[_a]"),
        (json!({"properties": {"": {"type": "keyword"}}}), "[]"),
        (
            json!({"properties": {"a": {"properties": {"": {"type": "long"}}}}}),
            "[a.]",
        ),
        (json!({"properties": {"a": {}}}), "[a]"),
        (json!({"properties": {"a": "keyword"}}), "[a]"),
        (json!({"properties": {"a": {"type": 5}}}), "[a]"),
        (
            json!({"properties": {"a": {"type": "keyword", "boost": 2}}}),
            "[a]",
        ),
        (
            json!({"properties": {"a": {"type": "long", "properties": {}}}}),
            "[a]",
        ),
        (json!({"properties": []}), "<root>"),
        (
            json!({"properties": {"a": {"type": "long"}, "a.b": {"type": "long"}}}),
            "[a",
        ),
        (
            json!({"properties": {"a.b": {"type": "long"}, "a": {"properties": {"b": {"type": "keyword"}}}}}),
            "[a.b]",
        ),
        (json!({"mappings": {}}), "[mappings]"),
        (json!({"dynamic": "runtime"}), "[dynamic]"),
        (json!([]), "<root>"),
    ];
    for (body, needle) in cases {
        let err = Mappings::from_es_json(&body).unwrap_err();
        assert!(err.to_string().contains(needle), "{body}: {err}");
    }
    let err =
        Mappings::from_es_json(&json!({"properties": {"a": {"type": "nested"}}})).unwrap_err();
    assert!(matches!(err, MappingError::UnknownType { .. }), "{err}");
}

#[test]
fn merge_adds_fields_and_rejects_conflicts() {
    let mut mappings = server_metrics_mappings();
    let before = mappings.clone();
    assert!(!mappings.merge_es_json(&json!({})).unwrap());
    assert!(!mappings
        .merge_es_json(&json!({"properties": {"status": {"type": "keyword"}}}))
        .unwrap());

    let err = mappings
        .merge_es_json(
            &json!({"properties": {"new": {"type": "long"}, "status": {"type": "long"}}}),
        )
        .unwrap_err();
    assert_eq!(
        err,
        MappingError::TypeConflict {
            field: "status".to_string(),
            existing: FieldType::Keyword,
            requested: FieldType::Long
        }
    );
    assert!(err.to_string().contains("[status]"));
    let err = mappings
        .merge_es_json(&json!({"properties": {"host": {"type": "keyword"}}}))
        .unwrap_err();
    assert!(matches!(err, MappingError::ObjectConflict { .. }), "{err}");
    let err = mappings
        .merge_es_json(
            &json!({"properties": {"status": {"properties": {"code": {"type": "long"}}}}}),
        )
        .unwrap_err();
    assert!(matches!(err, MappingError::ObjectConflict { .. }), "{err}");
    assert_eq!(
        mappings, before,
        "failed merges must not modify the mappings"
    );

    assert!(mappings
        .merge_es_json(
            &json!({"properties": {"host": {"properties": {"ip": {"type": "keyword"}}}}})
        )
        .unwrap());
    assert_eq!(mappings.field_type("host.ip"), Some(FieldType::Keyword));
    assert!(!mappings.is_in_schema("host.ip"));
    assert!(mappings.is_in_schema("host.name"));
    assert_eq!(mappings.len(), before.len() + 1);

    assert!(mappings
        .merge_es_json(&json!({"dynamic": "strict"}))
        .unwrap());
    assert_eq!(mappings.dynamic(), Dynamic::Strict);

    let err = mappings
        .add_fields(&[
            ("x".to_string(), FieldType::Long),
            ("x".to_string(), FieldType::Text),
        ])
        .unwrap_err();
    assert!(matches!(err, MappingError::TypeConflict { .. }), "{err}");
}

#[test]
fn es_json_round_trip() {
    let body = json!({
        "properties": {
            "@timestamp": {"type": "date"},
            "host": {"properties": {"name": {"type": "keyword"}, "ip": {"type": "keyword"}}},
            "cpu": {"properties": {"usage": {"type": "double"}, "cores": {"type": "integer"}}},
            "flag": {"type": "boolean"},
            "ratio": {"type": "float"},
            "n": {"type": "long"},
            "message": {"type": "text"}
        }
    });
    let mappings = Mappings::from_es_json(&body).unwrap();
    assert_eq!(mappings.len(), 9);
    assert_eq!(mappings.to_es_json(), body);
    assert_eq!(
        Mappings::from_es_json(&mappings.to_es_json()).unwrap(),
        mappings
    );

    // Dotted names and explicit object types re-nest the same way.
    let dotted = Mappings::from_es_json(&json!({"properties": {
        "host.name": {"type": "keyword"},
        "host": {"type": "object", "properties": {"ip": {"type": "keyword"}}}
    }}))
    .unwrap();
    assert_eq!(
        dotted.to_es_json(),
        json!({"properties": {"host": {"properties": {"ip": {"type": "keyword"}, "name": {"type": "keyword"}}}}})
    );

    let empty = Mappings::from_es_json(&json!({})).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty, Mappings::empty());
    assert_eq!(empty.to_es_json(), json!({"properties": {}}));
    let strict = json!({"dynamic": "strict", "properties": {}});
    assert_eq!(
        Mappings::from_es_json(&strict).unwrap().to_es_json(),
        strict
    );
    assert_eq!(
        Mappings::from_es_json(&json!({"dynamic": true}))
            .unwrap()
            .to_es_json(),
        json!({"dynamic": true, "properties": {}})
    );
}

#[test]
fn schema_is_deterministic_and_survives_serialization() {
    let mut mappings = server_metrics_mappings();
    let first = IndexSchema::build(&mappings);
    let second = IndexSchema::build(&mappings.clone());
    let schema_json = |s: &IndexSchema| serde_json::to_string(&s.schema).unwrap();
    assert_eq!(schema_json(&first), schema_json(&second));

    // Fields added later stay out of the schema, across a persist/reload.
    mappings
        .merge_es_json(&json!({"properties": {"zzz": {"type": "long"}, "aaa": {"type": "text"}}}))
        .unwrap();
    let stored = serde_json::to_vec(&mappings).unwrap();
    let reloaded: Mappings = serde_json::from_slice(&stored).unwrap();
    assert_eq!(reloaded, mappings);
    assert_eq!(
        schema_json(&IndexSchema::build(&reloaded)),
        schema_json(&first)
    );

    // Meta fields exist with the documented names and options.
    let schema = &first.schema;
    for name in [
        ID_FIELD,
        SEQ_NO_FIELD,
        PRIMARY_TERM_FIELD,
        VERSION_FIELD,
        OP_TYPE_FIELD,
        RECORD_FIELD,
        DYNAMIC_FIELD,
        ALL_FIELD,
    ] {
        assert!(schema.get_field(name).is_ok(), "{name}");
    }
    assert!(schema.get_field_entry(first.record).is_stored());
    assert!(!schema.get_field_entry(first.id).is_stored());
    assert!(!schema.get_field_entry(first.dynamic).is_stored());
    assert!(!schema.get_field_entry(first.dynamic).is_fast());
    assert!(schema.get_field_entry(first.seq_no).is_indexed());
    assert!(schema.get_field_entry(first.seq_no).is_fast());
    assert!(first.mapped_field("host.name").is_some());
    assert!(first.mapped_field("zzz").is_none());
    let host = schema.get_field_entry(first.mapped_field("host.name").unwrap());
    assert!(host.is_fast() && host.is_indexed() && !host.is_stored());
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|v| json!(v)),
        any::<u64>().prop_map(|v| json!(v)),
        any::<f64>().prop_map(|v| json!(v)),
        "[a-z0-9 :_.-]{0,12}".prop_map(Value::String),
        Just(json!("2024-01-01T00:00:00Z")),
        Just(json!("2024-02-30")),
        Just(json!("1704067200000")),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_.-]{0,4}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn parse_document_never_panics(doc in arbitrary_json()) {
        let mappings = server_metrics_mappings();
        let schema = IndexSchema::build(&mappings);
        let bytes = doc.to_string().into_bytes();
        if let Ok(parsed) = schema.parse_document(&mappings, &bytes) {
            // New fields must always be acceptable to the mappings.
            let mut updated = mappings.clone();
            prop_assert!(updated.add_fields(&parsed.new_fields).is_ok());
            // And the document must parse without new fields afterwards.
            let again = schema.parse_document(&updated, &bytes);
            prop_assert!(again.is_ok());
            prop_assert!(again.map(|p| p.new_fields.is_empty()).unwrap_or(false));
        }
        let dynamic = Mappings::empty();
        let dynamic_schema = IndexSchema::build(&dynamic);
        let _ = dynamic_schema.parse_document(&dynamic, &bytes);
    }

    #[test]
    fn parse_document_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let mappings = server_metrics_mappings();
        let schema = IndexSchema::build(&mappings);
        let _ = schema.parse_document(&mappings, &bytes);
    }

    #[test]
    fn parse_query_string_never_panics(q in "[a-z:*()\\[\\]{} .\"^~0-9<>=+-]{0,24}") {
        let t = TestIndex::new(server_metrics_mappings());
        let _ = t.schema.parse_query_string(&t.index, &t.mappings, &q);
    }
}

#[test]
fn control_characters_in_keys_are_indexable() {
    let mut t = TestIndex::new(server_metrics_mappings());
    t.index_docs(&[
        json!({"a\u{0}b": "x", "c\u{1}d": 1, "e": {"f\u{0}": [1.5, 2]}, "g\u{1}": "2024-01-01T00:00:00Z"}),
        json!({"a\u{0}b": "y"}),
    ]);
    assert_eq!(t.search("*"), vec![0, 1]);
}

#[test]
fn huge_text_values_are_indexable_and_huge_keyword_values_are_refused() {
    let mut t = TestIndex::new(server_metrics_mappings());
    let huge = "x".repeat(70_000);
    // One 70,000-byte word in a text field: tantivy's tokenizer drops it.
    t.index_docs(&[json!({"other": huge.clone(), "host": {"name": "ok"}})]);
    assert_eq!(t.search("host.name:ok"), vec![0]);
    // A keyword value is one term: over the term limit, the document is refused.
    let refused = t
        .schema
        .parse_document(
            &t.mappings,
            json!({"status": huge, "host": {"name": "ok"}})
                .to_string()
                .as_bytes(),
        )
        .unwrap_err();
    assert!(
        matches!(&refused, DocumentError::ImmenseTerm { field, .. } if field == "status"),
        "{refused:?}"
    );
}

fn arbitrary_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,3}",
        "[a-z]{1,2}\\.[a-z]{1,2}",
        any::<String>().prop_map(|s| s.chars().take(4).collect()),
    ]
}

fn arbitrary_doc() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|v| json!(v)),
        any::<f64>().prop_map(|v| json!(v)),
        any::<String>().prop_map(Value::String),
        Just(json!("2024-01-01T00:00:00Z")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(arbitrary_key(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn accepted_documents_are_indexable(docs in prop::collection::vec(arbitrary_doc(), 1..4)) {
        let mappings = Mappings::empty();
        let mut t = TestIndex::new(mappings);
        let mut writer: IndexWriter = t.index.writer(15_000_000).unwrap();
        let mut accepted = 0;
        for doc in &docs {
            let bytes = doc.to_string().into_bytes();
            if let Ok(parsed) = t.schema.parse_document(&t.mappings, &bytes) {
                t.mappings.add_fields(&parsed.new_fields).unwrap();
                writer.add_document(parsed.document).unwrap();
                accepted += 1;
            }
        }
        writer.commit().unwrap();
        let reader = t.index.reader().unwrap();
        let query = t.schema.parse_query_string(&t.index, &t.mappings, "*").unwrap();
        let found = reader.searcher().search(&*query, &DocSetCollector).unwrap();
        prop_assert_eq!(found.len(), accepted);
    }
}

#[test]
fn source_may_be_declared_enabled_but_not_disabled() {
    let enabled =
        json!({"_source": {"enabled": true}, "properties": {"host": {"type": "keyword"}}});
    assert!(Mappings::from_es_json(&enabled).is_ok());
    let disabled = json!({"_source": {"enabled": false}});
    let error = Mappings::from_es_json(&disabled).unwrap_err().to_string();
    assert!(error.contains("always keeps _source"), "{error}");
}
