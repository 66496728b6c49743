//! The Elasticsearch query DSL (the `query` object of `_search` and `_count` bodies) to tantivy
//! queries.
//!
//! Supported: `match_all`, `match_none`, `match` (`query`, `operator`), `match_phrase`
//! (`query`, `slop`), `term`, `terms`, `ids`, `range` (`gt`, `gte`, `lt`, `lte` on numeric, date,
//! keyword and text fields), `exists`, `bool` (`must`, `filter`, `should`, `must_not`,
//! `minimum_should_match`), `constant_score` and `query_string` (`query`), each with `boost`.
//!
//! Fields resolve as in the `q=` syntax (`query.rs`, whose leaf conversion this module reuses):
//! mapped schema fields first, else paths of the `_dynamic` JSON field. `name.keyword` falls back
//! to `name` when only `name` is known, because Elasticsearch's dynamic mapping gives every string
//! a `.keyword` sub-field and clients query it. Differences from Elasticsearch: `term` and
//! `terms` values on a text field go through the field's analyzer (so `Error` matches the
//! indexed `error`), and `match` splits text on whitespace before the field's analyzer runs.
//!
//! Guarantees: anything else is a [`QueryError::Parsing`] naming what was not understood, never a
//! panic; nesting is bounded by [`MAX_QUERY_DEPTH`], and clause, term and word counts by
//! [`MAX_CLAUSE_COUNT`].

use serde_json::{Map, Value};
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, EmptyQuery, Occur, Query, TermQuery,
};
use tantivy::query_grammar::{Delimiter, UserInputBound, UserInputLeaf, UserInputLiteral};
use tantivy::schema::IndexRecordOption;
use tantivy::{Index, Term};

use super::error::QueryError;
use super::mappings::{FieldType, Mappings};
use super::query::{Converter, Target};
use super::schema::IndexSchema;

/// Deepest nesting of compound queries (`bool`, `constant_score`) accepted.
pub const MAX_QUERY_DEPTH: usize = 20;
/// Most clauses of one `bool` query, values of one `terms` or `ids` query, or words of one
/// `match` query (Elasticsearch's `indices.query.bool.max_clause_count` order of magnitude).
pub const MAX_CLAUSE_COUNT: usize = 4096;

impl IndexSchema {
    /// Builds a query from an Elasticsearch query DSL object (`{"match": {"f": "x"}}`, …; see
    /// the module documentation for what is supported). `index` must have been created with
    /// this schema.
    pub fn parse_query_dsl(
        &self,
        index: &Index,
        mappings: &Mappings,
        query: &Value,
    ) -> Result<Box<dyn Query>, QueryError> {
        let parser = DslParser {
            schema: self,
            mappings,
            index,
            converter: self.converter(index, mappings),
        };
        parser.query(query, 0)
    }
}

struct DslParser<'a> {
    schema: &'a IndexSchema,
    mappings: &'a Mappings,
    index: &'a Index,
    converter: Converter<'a>,
}

fn parsing(message: impl Into<String>) -> QueryError {
    QueryError::Parsing(message.into())
}

/// The object body of query `kind`, refusing parameters outside `allowed`.
fn options<'v>(
    kind: &str,
    body: &'v Value,
    allowed: &[&str],
) -> Result<&'v Map<String, Value>, QueryError> {
    let Some(object) = body.as_object() else {
        return Err(parsing(format!(
            "[{kind}] query malformed, expected an object"
        )));
    };
    if let Some(unknown) = object.keys().find(|key| !allowed.contains(&key.as_str())) {
        return Err(parsing(format!(
            "[{kind}] query does not support [{unknown}]"
        )));
    }
    Ok(object)
}

/// The single `field: value` entry of a field-level query, next to an optional top-level
/// `boost` when `boost_beside` (the `terms` form).
fn single_field<'v>(
    kind: &str,
    body: &'v Value,
    boost_beside: bool,
) -> Result<(&'v str, &'v Value), QueryError> {
    let Some(object) = body.as_object() else {
        return Err(parsing(format!(
            "[{kind}] query malformed, expected an object"
        )));
    };
    let mut fields = object
        .iter()
        .filter(|(key, _)| !(boost_beside && key.as_str() == "boost"));
    match (fields.next(), fields.next()) {
        (Some((name, value)), None) => Ok((name.as_str(), value)),
        (None, _) => Err(parsing(format!("[{kind}] query requires a field"))),
        (Some((first, _)), Some((second, _))) => Err(parsing(format!(
            "[{kind}] query doesn't support multiple fields, found [{first}] and [{second}]"
        ))),
    }
}

/// The main value of a field-level query and its options, if given as an object.
type FieldParams<'v> = (&'v Value, Option<&'v Map<String, Value>>);

/// The main value of a field-level query given either as `field: value` or as
/// `field: {main: value, options…}`, with the options.
fn field_params<'v>(
    kind: &str,
    value: &'v Value,
    main: &str,
    allowed: &[&str],
) -> Result<FieldParams<'v>, QueryError> {
    match value {
        Value::Object(_) => {
            let object = options(kind, value, allowed)?;
            let main_value = object
                .get(main)
                .ok_or_else(|| parsing(format!("[{kind}] query requires [{main}]")))?;
            Ok((main_value, Some(object)))
        }
        other => Ok((other, None)),
    }
}

/// A string, number or boolean as query text.
fn scalar_text(kind: &str, field: &str, value: &Value) -> Result<String, QueryError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(flag.to_string()),
        other => Err(parsing(format!(
            "[{kind}] query on [{field}] expects a string, a number or a boolean, got {other}"
        ))),
    }
}

/// Wraps `query` in the `boost` of `options`, if any.
fn boosted(
    query: Box<dyn Query>,
    options: Option<&Map<String, Value>>,
) -> Result<Box<dyn Query>, QueryError> {
    match options.and_then(|options| options.get("boost")) {
        None => Ok(query),
        Some(value) => Ok(Box::new(BoostQuery::new(query, boost_value(value)?))),
    }
}

fn boost_value(value: &Value) -> Result<f32, QueryError> {
    match value.as_f64() {
        Some(boost) if boost.is_finite() && boost >= 0.0 => Ok(boost as f32),
        _ => Err(parsing(format!(
            "[boost] must be a non-negative number, got {value}"
        ))),
    }
}

/// One query object or an array of them (the clauses of `bool`).
fn as_list(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

/// Elasticsearch's `minimum_should_match` for `optional` should clauses: an integer, a negative
/// integer (all but that many), a percentage or a negative percentage; clamped to
/// `0..=optional`.
pub(super) fn minimum_should_match(value: &Value, optional: usize) -> Result<usize, QueryError> {
    let invalid = || {
        parsing(format!(
            "[minimum_should_match] must be an integer or a percentage, got {value}"
        ))
    };
    let text = match value {
        Value::Number(number) => number.to_string(),
        Value::String(text) => text.trim().to_string(),
        _ => return Err(invalid()),
    };
    let optional_count = optional as i64;
    let computed = match text.strip_suffix('%') {
        Some(percent) => {
            let percent: i64 = percent.trim().parse().map_err(|_| invalid())?;
            let share = optional_count.saturating_mul(percent.abs()) / 100;
            if percent < 0 {
                optional_count - share
            } else {
                share
            }
        }
        None => {
            let count: i64 = text.parse().map_err(|_| invalid())?;
            if count < 0 {
                optional_count.saturating_add(count)
            } else {
                count
            }
        }
    };
    Ok(computed.clamp(0, optional_count) as usize)
}

impl DslParser<'_> {
    fn query(&self, value: &Value, depth: usize) -> Result<Box<dyn Query>, QueryError> {
        if depth > MAX_QUERY_DEPTH {
            return Err(parsing(format!(
                "query is nested deeper than {MAX_QUERY_DEPTH} levels"
            )));
        }
        let Some(object) = value.as_object() else {
            return Err(parsing(
                "[_na] query malformed, must start with start_object",
            ));
        };
        let mut entries = object.iter();
        let (kind, body) = match (entries.next(), entries.next()) {
            (Some(entry), None) => entry,
            (None, _) => return Err(parsing("query malformed, empty clause found")),
            (Some(_), Some((second, _))) => {
                return Err(parsing(format!(
                    "[{second}] malformed query, expected [END_OBJECT] but found [FIELD_NAME]"
                )))
            }
        };
        match kind.as_str() {
            "match_all" => boosted(Box::new(AllQuery), Some(options(kind, body, &["boost"])?)),
            "match_none" => {
                options(kind, body, &["boost"])?;
                Ok(Box::new(EmptyQuery))
            }
            "match" => self.match_query(body, false),
            "match_phrase" => self.match_query(body, true),
            "term" => self.term(body),
            "terms" => self.terms(body),
            "ids" => self.ids(body),
            "range" => self.range(body),
            "exists" => self.exists(body),
            "bool" => self.bool_query(body, depth),
            "constant_score" => {
                let options = options(kind, body, &["filter", "boost"])?;
                let filter = options
                    .get("filter")
                    .ok_or_else(|| parsing("[constant_score] requires a 'filter' element"))?;
                let boost = options.get("boost").map(boost_value).transpose()?;
                let inner = self.query(filter, depth + 1)?;
                Ok(Box::new(ConstScoreQuery::new(inner, boost.unwrap_or(1.0))))
            }
            "query_string" => {
                let options = options(kind, body, &["query", "boost"])?;
                let text = options
                    .get("query")
                    .and_then(Value::as_str)
                    .ok_or_else(|| parsing("[query_string] requires a string [query]"))?;
                let query = self
                    .schema
                    .parse_query_string(self.index, self.mappings, text)?;
                boosted(query, Some(options))
            }
            other => Err(parsing(format!("unknown query [{other}]"))),
        }
    }

    /// Whether `name` is a field this index knows (schema, meta or mapped dynamic field).
    fn known(&self, name: &str) -> bool {
        self.schema.mapped_entry(name).is_some()
            || self.mappings.field_type(name).is_some()
            || self.schema.schema.get_field(name).is_ok()
    }

    /// The field a query names, with `.keyword` sub-fields mapped to their parent.
    fn field_name<'n>(&self, name: &'n str) -> &'n str {
        if self.known(name) {
            return name;
        }
        match name.strip_suffix(".keyword") {
            Some(parent) if self.known(parent) => parent,
            _ => name,
        }
    }

    fn field_type(&self, name: &str) -> Option<FieldType> {
        match self.converter.resolve(name) {
            Target::Schema(_, field_type) | Target::Dynamic(_, field_type) => field_type,
        }
    }

    fn literal(
        &self,
        field: &str,
        text: &str,
        phrase: bool,
        slop: u32,
    ) -> Result<Box<dyn Query>, QueryError> {
        self.converter
            .convert_leaf(UserInputLeaf::Literal(UserInputLiteral {
                field_name: Some(field.to_string()),
                phrase: text.to_string(),
                delimiter: if phrase {
                    Delimiter::DoubleQuotes
                } else {
                    Delimiter::None
                },
                slop,
                prefix: false,
            }))
    }

    /// `match` (analyzed text: one clause per word, joined by `operator`) and `match_phrase`.
    fn match_query(&self, body: &Value, phrase: bool) -> Result<Box<dyn Query>, QueryError> {
        let kind = if phrase { "match_phrase" } else { "match" };
        let (name, value) = single_field(kind, body, false)?;
        let allowed: &[&str] = if phrase {
            &["query", "slop", "boost"]
        } else {
            &["query", "operator", "boost"]
        };
        let (text, options) = field_params(kind, value, "query", allowed)?;
        let text = scalar_text(kind, name, text)?;
        let field = self.field_name(name);
        let option = |key: &str| options.and_then(|options| options.get(key));
        let query = if phrase {
            let slop = match option("slop") {
                None => 0,
                Some(slop) => slop
                    .as_u64()
                    .and_then(|slop| u32::try_from(slop).ok())
                    .ok_or_else(|| {
                        parsing(format!("[slop] must be a small integer, got {slop}"))
                    })?,
            };
            self.literal(field, &text, true, slop)?
        } else {
            let occur = match option("operator") {
                None => Occur::Should,
                Some(Value::String(operator)) if operator.eq_ignore_ascii_case("or") => {
                    Occur::Should
                }
                Some(Value::String(operator)) if operator.eq_ignore_ascii_case("and") => {
                    Occur::Must
                }
                Some(other) => {
                    return Err(parsing(format!(
                        "[match] operator must be [and] or [or], got {other}"
                    )))
                }
            };
            self.match_words(field, &text, occur)?
        };
        boosted(query, options)
    }

    fn match_words(
        &self,
        field: &str,
        text: &str,
        occur: Occur,
    ) -> Result<Box<dyn Query>, QueryError> {
        // Only text is analyzed into words; keyword, numeric, date and boolean values are
        // matched whole, as Elasticsearch does. Unmapped fields are dynamic text.
        if !matches!(self.field_type(field), None | Some(FieldType::Text)) {
            return self.literal(field, text, false, 0);
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        if words.len() > MAX_CLAUSE_COUNT {
            return Err(parsing(format!(
                "[match] query has more than {MAX_CLAUSE_COUNT} words"
            )));
        }
        match words.as_slice() {
            [] => Ok(Box::new(EmptyQuery)),
            [word] => self.literal(field, word, false, 0),
            _ => {
                let clauses = words
                    .iter()
                    .map(|word| Ok((occur, self.literal(field, word, false, 0)?)))
                    .collect::<Result<Vec<_>, QueryError>>()?;
                Ok(Box::new(BooleanQuery::new(clauses)))
            }
        }
    }

    fn term(&self, body: &Value) -> Result<Box<dyn Query>, QueryError> {
        let (name, value) = single_field("term", body, false)?;
        let (value, options) = field_params("term", value, "value", &["value", "boost"])?;
        let text = scalar_text("term", name, value)?;
        let query = self.literal(self.field_name(name), &text, false, 0)?;
        boosted(query, options)
    }

    /// `terms`: any of the values; constant score, as in Elasticsearch.
    fn terms(&self, body: &Value) -> Result<Box<dyn Query>, QueryError> {
        let (name, values) = single_field("terms", body, true)?;
        let Some(values) = values.as_array() else {
            return Err(parsing(format!(
                "[terms] query on [{name}] expects an array of values"
            )));
        };
        if values.len() > MAX_CLAUSE_COUNT {
            return Err(parsing(format!(
                "[terms] query has more than {MAX_CLAUSE_COUNT} values"
            )));
        }
        let field = self.field_name(name);
        let clauses = values
            .iter()
            .map(|value| {
                let text = scalar_text("terms", name, value)?;
                Ok((Occur::Should, self.literal(field, &text, false, 0)?))
            })
            .collect::<Result<Vec<_>, QueryError>>()?;
        let boost = body.get("boost").map(boost_value).transpose()?;
        Ok(constant_union(clauses, boost))
    }

    fn ids(&self, body: &Value) -> Result<Box<dyn Query>, QueryError> {
        let options = options("ids", body, &["values", "boost"])?;
        let values = options
            .get("values")
            .and_then(Value::as_array)
            .ok_or_else(|| parsing("[ids] query requires an array [values]"))?;
        if values.len() > MAX_CLAUSE_COUNT {
            return Err(parsing(format!(
                "[ids] query has more than {MAX_CLAUSE_COUNT} values"
            )));
        }
        let clauses = values
            .iter()
            .map(|value| {
                let id = value
                    .as_str()
                    .ok_or_else(|| parsing(format!("[ids] values must be strings, got {value}")))?;
                let term = Term::from_field_text(self.schema.id, id);
                let query: Box<dyn Query> =
                    Box::new(TermQuery::new(term, IndexRecordOption::Basic));
                Ok((Occur::Should, query))
            })
            .collect::<Result<Vec<_>, QueryError>>()?;
        let boost = options.get("boost").map(boost_value).transpose()?;
        Ok(constant_union(clauses, boost))
    }

    fn range(&self, body: &Value) -> Result<Box<dyn Query>, QueryError> {
        let (name, value) = single_field("range", body, false)?;
        let options = options("range", value, &["gt", "gte", "lt", "lte", "boost"])?;
        let bound = |inclusive: &str, exclusive: &str| -> Result<UserInputBound, QueryError> {
            let text = |value: &Value| scalar_text("range", name, value);
            match (options.get(inclusive), options.get(exclusive)) {
                (Some(_), Some(_)) => Err(parsing(format!(
                    "[range] query on [{name}] has both [{inclusive}] and [{exclusive}]"
                ))),
                (Some(Value::Null) | None, None) | (None, Some(Value::Null)) => {
                    Ok(UserInputBound::Unbounded)
                }
                (Some(value), None) => Ok(UserInputBound::Inclusive(text(value)?)),
                (None, Some(value)) => Ok(UserInputBound::Exclusive(text(value)?)),
            }
        };
        let lower = bound("gte", "gt")?;
        let upper = bound("lte", "lt")?;
        let query = self.converter.convert_leaf(UserInputLeaf::Range {
            field: Some(self.field_name(name).to_string()),
            lower,
            upper,
        })?;
        boosted(query, Some(options))
    }

    fn exists(&self, body: &Value) -> Result<Box<dyn Query>, QueryError> {
        let options = options("exists", body, &["field", "boost"])?;
        let name = options
            .get("field")
            .and_then(Value::as_str)
            .ok_or_else(|| parsing("[exists] query requires a string [field]"))?;
        let query = self.converter.convert_leaf(UserInputLeaf::Exists {
            field: self.field_name(name).to_string(),
        })?;
        boosted(query, Some(options))
    }

    fn bool_query(&self, body: &Value, depth: usize) -> Result<Box<dyn Query>, QueryError> {
        let options = options(
            "bool",
            body,
            &[
                "must",
                "filter",
                "should",
                "must_not",
                "minimum_should_match",
                "boost",
            ],
        )?;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let mut required = false;
        let mut optional = 0usize;
        for (key, value) in options {
            let occur = match key.as_str() {
                "must" | "filter" => Occur::Must,
                "should" => Occur::Should,
                "must_not" => Occur::MustNot,
                _ => continue,
            };
            for clause in as_list(value) {
                if clauses.len() >= MAX_CLAUSE_COUNT {
                    return Err(parsing(format!(
                        "[bool] query has more than {MAX_CLAUSE_COUNT} clauses"
                    )));
                }
                let mut query = self.query(clause, depth + 1)?;
                if key == "filter" {
                    // A filter decides whether a document matches, never its score.
                    query = Box::new(ConstScoreQuery::new(query, 0.0));
                }
                required |= occur == Occur::Must;
                optional += usize::from(occur == Occur::Should);
                clauses.push((occur, query));
            }
        }
        let minimum = match options.get("minimum_should_match") {
            Some(value) => minimum_should_match(value, optional)?,
            None => 0,
        };
        // Without a required clause, at least one should clause must match (Elasticsearch).
        let minimum = if required || optional == 0 {
            minimum
        } else {
            minimum.max(1)
        };
        if !required && optional == 0 {
            // Only exclusions (or nothing): everything but the excluded documents.
            clauses.push((Occur::Must, Box::new(AllQuery)));
        }
        let query = Box::new(BooleanQuery::with_minimum_required_clauses(
            clauses, minimum,
        ));
        boosted(query, Some(options))
    }
}

/// The union of `clauses`, every hit scoring `boost` (1 by default).
fn constant_union(clauses: Vec<(Occur, Box<dyn Query>)>, boost: Option<f32>) -> Box<dyn Query> {
    if clauses.is_empty() {
        return Box::new(EmptyQuery);
    }
    Box::new(ConstScoreQuery::new(
        Box::new(BooleanQuery::new(clauses)),
        boost.unwrap_or(1.0),
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::mapping::tests::{server_metrics_index, TestIndex};

    fn search(index: &TestIndex, dsl: Value) -> Vec<usize> {
        index
            .try_search_dsl(&dsl)
            .unwrap_or_else(|e| panic!("query {dsl} failed: {e}"))
    }

    fn parsing_error(index: &TestIndex, dsl: Value) -> String {
        match index.try_search_dsl(&dsl) {
            Err(QueryError::Parsing(message)) => message,
            other => panic!("query {dsl} should be a parsing error, got {other:?}"),
        }
    }

    #[test]
    fn match_all_and_match_none() {
        let t = server_metrics_index();
        assert_eq!(search(&t, json!({"match_all": {}})), vec![0, 1, 2, 3]);
        assert_eq!(
            search(&t, json!({"match_all": {"boost": 2.0}})),
            vec![0, 1, 2, 3]
        );
        assert!(search(&t, json!({"match_none": {}})).is_empty());
    }

    #[test]
    fn match_analyzes_text_and_matches_other_types_whole() {
        let t = server_metrics_index();
        assert_eq!(
            search(&t, json!({"match": {"message": "disk error"}})),
            vec![0, 2, 3]
        );
        assert_eq!(
            search(
                &t,
                json!({"match": {"message": {"query": "fatal error", "operator": "and"}}})
            ),
            vec![2]
        );
        assert_eq!(search(&t, json!({"match": {"user": "kimchy"}})), vec![0]);
        assert_eq!(
            search(&t, json!({"match": {"status": "ok"}})),
            vec![0, 1, 3]
        );
        assert_eq!(search(&t, json!({"match": {"requests": 42}})), vec![0]);
        assert!(search(&t, json!({"match": {"message": "   "}})).is_empty());
    }

    #[test]
    fn match_phrase_needs_the_words_in_order() {
        let t = server_metrics_index();
        assert_eq!(
            search(&t, json!({"match_phrase": {"message": "disk error"}})),
            vec![0]
        );
        assert!(search(&t, json!({"match_phrase": {"message": "error disk"}})).is_empty());
        assert_eq!(
            search(
                &t,
                json!({"match_phrase": {"message": {"query": "disk sda", "slop": 2}}})
            ),
            vec![0]
        );
    }

    #[test]
    fn term_on_schema_dynamic_and_keyword_sub_fields() {
        let t = server_metrics_index();
        assert_eq!(search(&t, json!({"term": {"status": "failed"}})), vec![2]);
        assert_eq!(
            search(&t, json!({"term": {"host.name": "web-01"}})),
            vec![0, 2]
        );
        assert_eq!(search(&t, json!({"term": {"requests": 100}})), vec![2]);
        assert_eq!(
            search(&t, json!({"term": {"status": {"value": "ok", "boost": 2}}})),
            vec![0, 1, 3]
        );
        assert_eq!(
            search(&t, json!({"term": {"user.keyword": "elastic"}})),
            vec![1]
        );
        assert_eq!(
            search(&t, json!({"term": {"status.keyword": "ok"}})),
            vec![0, 1, 3]
        );
        assert_eq!(
            search(&t, json!({"term": {"deploy.enabled": true}})),
            vec![3]
        );
    }

    #[test]
    fn terms_and_ids_match_any_value() {
        let t = server_metrics_index();
        assert_eq!(
            search(&t, json!({"terms": {"status": ["failed", "missing"]}})),
            vec![2]
        );
        assert_eq!(
            search(
                &t,
                json!({"terms": {"host.name": ["web-02", "db-01"], "boost": 1.5}})
            ),
            vec![1, 3]
        );
        assert!(search(&t, json!({"terms": {"status": []}})).is_empty());
        assert_eq!(
            search(&t, json!({"ids": {"values": ["0", "3", "9"]}})),
            vec![0, 3]
        );
    }

    #[test]
    fn range_on_numbers_dates_and_keywords() {
        let t = server_metrics_index();
        assert_eq!(
            search(&t, json!({"range": {"cpu.usage": {"gte": 50, "lt": 99.9}}})),
            vec![0, 3]
        );
        assert_eq!(
            search(&t, json!({"range": {"memory.used": {"gt": 1024}}})),
            vec![1]
        );
        assert_eq!(
            search(
                &t,
                json!({"range": {"@timestamp": {"gte": "2024-01-02", "lte": "2024-01-03"}}})
            ),
            vec![1, 2]
        );
        assert_eq!(
            search(&t, json!({"range": {"requests": {"gte": 10}}})),
            vec![0, 2]
        );
        assert_eq!(
            search(&t, json!({"range": {"latency": {"lt": 5}}})),
            vec![3]
        );
        assert_eq!(
            search(&t, json!({"range": {"status": {"gte": "o"}}})),
            vec![0, 1, 3]
        );
        assert_eq!(
            search(&t, json!({"range": {"deploy.time": {"gte": "2024-01-05"}}})),
            vec![3]
        );
        assert!(matches!(
            t.try_search_dsl(&json!({"range": {"@timestamp": {"gte": "yesterday"}}})),
            Err(QueryError::Field { .. })
        ));
    }

    #[test]
    fn exists_on_schema_and_dynamic_fields() {
        let t = server_metrics_index();
        assert_eq!(
            search(&t, json!({"exists": {"field": "latency"}})),
            vec![2, 3]
        );
        assert_eq!(
            search(&t, json!({"exists": {"field": "memory.used"}})),
            vec![0, 1]
        );
        assert_eq!(search(&t, json!({"exists": {"field": "tags"}})), vec![3]);
        assert!(search(&t, json!({"exists": {"field": "nothing"}})).is_empty());
    }

    #[test]
    fn bool_combines_clauses_like_elasticsearch() {
        let t = server_metrics_index();
        let ok = json!({"term": {"status": "ok"}});
        let web_01 = json!({"term": {"host.name": "web-01"}});
        let error = json!({"match": {"message": "error"}});
        assert_eq!(
            search(
                &t,
                json!({"bool": {"must": ok, "must_not": [{"match": {"message": "error"}}]}})
            ),
            vec![1]
        );
        // With a filter, should clauses are optional.
        assert_eq!(
            search(
                &t,
                json!({"bool": {"filter": {"range": {"cpu.usage": {"gte": 50}}}, "should": web_01}})
            ),
            vec![0, 2, 3]
        );
        // Without a required clause, one should clause must match.
        assert_eq!(
            search(
                &t,
                json!({"bool": {"should": [{"term": {"status": "failed"}}, {"match": {"user": "elastic"}}]}})
            ),
            vec![1, 2]
        );
        let three = json!([ok, web_01, error]);
        for minimum in [json!(2), json!("2"), json!("-1"), json!("67%")] {
            assert_eq!(
                search(
                    &t,
                    json!({"bool": {"should": three, "minimum_should_match": minimum}})
                ),
                vec![0, 2, 3],
                "{minimum}"
            );
        }
        assert_eq!(
            search(
                &t,
                json!({"bool": {"should": three, "minimum_should_match": "100%"}})
            ),
            vec![0]
        );
        assert_eq!(
            search(
                &t,
                json!({"bool": {"must": {"term": {"status": "ok"}},
                    "should": [{"term": {"host.name": "web-01"}}, {"match": {"user": "elastic"}}],
                    "minimum_should_match": 1}})
            ),
            vec![0, 1]
        );
        assert_eq!(
            search(
                &t,
                json!({"bool": {"must_not": {"term": {"status": "ok"}}}})
            ),
            vec![2]
        );
        assert_eq!(search(&t, json!({"bool": {}})), vec![0, 1, 2, 3]);
    }

    #[test]
    fn constant_score_and_query_string() {
        let t = server_metrics_index();
        assert_eq!(
            search(
                &t,
                json!({"constant_score": {"filter": {"term": {"status": "ok"}}, "boost": 1.2}})
            ),
            vec![0, 1, 3]
        );
        assert_eq!(
            search(
                &t,
                json!({"query_string": {"query": "status:failed OR user:elastic"}})
            ),
            vec![1, 2]
        );
    }

    #[test]
    fn malformed_queries_are_parsing_errors_naming_the_problem() {
        let t = server_metrics_index();
        assert_eq!(
            parsing_error(&t, json!({"fuzzy": {"user": "kimchy"}})),
            "unknown query [fuzzy]"
        );
        assert!(parsing_error(&t, json!({"match": {"a": "x", "b": "y"}}))
            .contains("doesn't support multiple fields"));
        assert!(
            parsing_error(&t, json!({"match": {"a": {"query": "x", "fuzziness": 1}}}))
                .contains("does not support [fuzziness]")
        );
        assert!(parsing_error(&t, json!({"term": {"status": ["ok"]}})).contains("expects"));
        assert!(
            parsing_error(&t, json!({"term": {"status": "ok"}, "match_all": {}}))
                .contains("malformed")
        );
        assert!(parsing_error(&t, json!({})).contains("empty clause"));
        assert!(parsing_error(&t, json!("status:ok")).contains("start_object"));
        assert!(parsing_error(&t, json!({"bool": {"must": {"nope": {}}}}))
            .contains("unknown query [nope]"));
        assert!(
            parsing_error(&t, json!({"range": {"cpu.usage": {"gt": 1, "gte": 2}}}))
                .contains("both")
        );
        let mut deep = json!({"match_all": {}});
        for _ in 0..=MAX_QUERY_DEPTH {
            deep = json!({"bool": {"must": deep}});
        }
        assert!(parsing_error(&t, deep).contains("nested deeper"));
    }

    #[test]
    fn minimum_should_match_forms() {
        let cases = [
            (json!(2), 3, 2),
            (json!("-1"), 3, 2),
            (json!("75%"), 4, 3),
            (json!("-25%"), 4, 3),
            (json!("50%"), 3, 1),
            (json!(5), 3, 3),
            (json!(-5), 3, 0),
        ];
        for (value, optional, expected) in cases {
            assert_eq!(
                minimum_should_match(&value, optional).unwrap(),
                expected,
                "{value}"
            );
        }
        assert!(minimum_should_match(&json!("3<90%"), 4).is_err());
        assert!(minimum_should_match(&json!(true), 4).is_err());
    }
}
