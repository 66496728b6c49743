//! Elasticsearch `q=` query strings to tantivy queries.
//!
//! The string is parsed with tantivy's query grammar; the resulting AST is
//! then converted here: boolean structure and boosts directly, most leaves by
//! tantivy's [`QueryParser`], and the leaves tantivy cannot handle for this
//! index model (dates in Elasticsearch formats, ranges and `field:*` on fields
//! living in the `_dynamic` JSON field) by hand.

use std::ops::Bound;

use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, EmptyQuery, InvertedIndexRangeQuery, Occur, Query,
    QueryParser, RangeQuery, TermQuery,
};
use tantivy::query_grammar::{self, UserInputAst, UserInputBound, UserInputLeaf};
use tantivy::schema::{Field, IndexRecordOption, Type};
use tantivy::{DateTime, Index, Term};

use super::date::parse_date;
use super::error::QueryError;
use super::mappings::{FieldType, Mappings};
use super::schema::IndexSchema;
use super::DYNAMIC_FIELD;

/// 2^63 as f64.
const I64_BOUND: f64 = 9_223_372_036_854_775_808.0;
/// 2^64 as f64.
const U64_BOUND: f64 = 18_446_744_073_709_551_616.0;
/// Upper bound used for "any string" ranges on JSON paths.
const MAX_STR: &str = "\u{10FFFF}\u{10FFFF}\u{10FFFF}\u{10FFFF}";

impl IndexSchema {
    /// Builds a query from Elasticsearch `q=` query-string syntax.
    ///
    /// Unqualified terms search `_all` and the mapped text/keyword fields;
    /// `field:value` targets the mapped field, or `_dynamic.<field>` for fields
    /// that live in the JSON field (writing `_dynamic.<field>` explicitly also
    /// works); `*` or an empty string matches all documents. Date fields accept
    /// the same formats as in documents (a `yyyy-MM-dd` day matches the whole
    /// day). A query made only of negative clauses (`-status:ok`) matches all
    /// documents except the excluded ones. `index` must have been created with
    /// this schema. Errors on syntax errors and on values that do not fit the
    /// targeted field.
    pub fn parse_query_string(
        &self,
        index: &Index,
        mappings: &Mappings,
        q: &str,
    ) -> Result<Box<dyn Query>, QueryError> {
        let trimmed = q.trim();
        if trimmed.is_empty() || trimmed == "*" {
            return Ok(Box::new(AllQuery));
        }
        let ast = query_grammar::parse_query(q).map_err(|_| syntax_error(q))?;
        self.converter(index, mappings).convert(ast)
    }

    /// The converter of query-string leaves for this schema: unqualified terms search `_all`
    /// and the mapped text/keyword fields.
    pub(super) fn converter<'a>(&'a self, index: &Index, mappings: &'a Mappings) -> Converter<'a> {
        let mut default_fields = vec![self.all];
        default_fields.extend(
            self.mapped_fields()
                .filter(|(_, _, t)| matches!(t, FieldType::Text | FieldType::Keyword))
                .map(|(_, field, _)| field),
        );
        Converter {
            index_schema: self,
            mappings,
            parser: QueryParser::for_index(index, default_fields),
        }
    }
}

fn syntax_error(q: &str) -> QueryError {
    let (_, errors) = query_grammar::parse_query_lenient(q);
    let message = if errors.is_empty() {
        "invalid query syntax".to_string()
    } else {
        errors
            .iter()
            .map(|e| format!("{} at position {}", e.message, e.pos))
            .collect::<Vec<_>>()
            .join("; ")
    };
    QueryError::Syntax {
        query: q.to_string(),
        message,
    }
}

/// Where a field name of the query points to.
pub(super) enum Target<'n> {
    /// A real tantivy field (mapped at creation, or a meta field: no type).
    Schema(Field, Option<FieldType>),
    /// A path inside `_dynamic` (type `None` if the field is not mapped).
    Dynamic(&'n str, Option<FieldType>),
}

/// Turns query-string leaves into tantivy queries, resolving field names to schema fields or
/// `_dynamic` paths; shared by the `q=` syntax and the query DSL.
pub(super) struct Converter<'a> {
    index_schema: &'a IndexSchema,
    mappings: &'a Mappings,
    parser: QueryParser,
}

impl Converter<'_> {
    fn convert(&self, ast: UserInputAst) -> Result<Box<dyn Query>, QueryError> {
        match ast {
            UserInputAst::Clause(children) => {
                if children.is_empty() {
                    return Ok(Box::new(AllQuery));
                }
                let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(children.len());
                for (occur, child) in children {
                    clauses.push((occur.unwrap_or(Occur::Should), self.convert(child)?));
                }
                if clauses.iter().all(|(occur, _)| *occur == Occur::MustNot) {
                    clauses.push((Occur::Must, Box::new(AllQuery)));
                }
                if clauses.len() == 1 {
                    if let Some((_, query)) = clauses.pop() {
                        return Ok(query);
                    }
                }
                Ok(Box::new(BooleanQuery::new(clauses)))
            }
            UserInputAst::Boost(inner, boost) => {
                let inner = self.convert(*inner)?;
                Ok(Box::new(BoostQuery::new(inner, boost.0 as f32)))
            }
            UserInputAst::Leaf(leaf) => self.convert_leaf(*leaf),
        }
    }

    /// Where `name` points to.
    pub(super) fn resolve<'n>(&self, name: &'n str) -> Target<'n> {
        if let Some(path) = name
            .strip_prefix(DYNAMIC_FIELD)
            .and_then(|p| p.strip_prefix('.'))
        {
            return Target::Dynamic(path, self.mappings.field_type(path));
        }
        if let Some((field, field_type)) = self.index_schema.mapped_entry(name) {
            return Target::Schema(field, Some(field_type));
        }
        if let Ok(field) = self.index_schema.schema.get_field(name) {
            return Target::Schema(field, None);
        }
        Target::Dynamic(name, self.mappings.field_type(name))
    }

    fn delegate(
        &self,
        leaf: UserInputLeaf,
        field: Option<&str>,
    ) -> Result<Box<dyn Query>, QueryError> {
        self.parser
            .build_query_from_user_input_ast(UserInputAst::Leaf(Box::new(leaf)))
            .map_err(|e| match field {
                Some(field) => QueryError::Field {
                    field: field.to_string(),
                    message: e.to_string(),
                },
                None => QueryError::Invalid(e.to_string()),
            })
    }

    /// One leaf (a term, phrase, range, set, regex or exists clause).
    pub(super) fn convert_leaf(&self, leaf: UserInputLeaf) -> Result<Box<dyn Query>, QueryError> {
        match leaf {
            UserInputLeaf::All => Ok(Box::new(AllQuery)),
            UserInputLeaf::Literal(mut literal) => {
                let Some(name) = literal.field_name.clone() else {
                    return self.delegate(UserInputLeaf::Literal(literal), None);
                };
                match self.resolve(&name) {
                    Target::Schema(field, Some(FieldType::Date)) => {
                        let (lower, upper) = date_literal_bounds(&name, &literal.phrase)?;
                        Ok(self.date_range(Some(field), &name, lower, upper))
                    }
                    Target::Dynamic(path, Some(FieldType::Date)) => {
                        let (lower, upper) = date_literal_bounds(&name, &literal.phrase)?;
                        Ok(self.date_range(None, path, lower, upper))
                    }
                    Target::Schema(..) => {
                        self.delegate(UserInputLeaf::Literal(literal), Some(&name))
                    }
                    Target::Dynamic(path, _) => {
                        literal.field_name = Some(format!("{DYNAMIC_FIELD}.{path}"));
                        self.delegate(UserInputLeaf::Literal(literal), Some(&name))
                    }
                }
            }
            UserInputLeaf::Range {
                field,
                lower,
                upper,
            } => {
                let Some(name) = field else {
                    return Err(QueryError::Invalid(
                        "range queries need a field (field:[from TO to])".to_string(),
                    ));
                };
                match self.resolve(&name) {
                    Target::Schema(field, Some(FieldType::Date)) => {
                        let (lower, upper) = date_range_bounds(&name, &lower, &upper)?;
                        Ok(self.date_range(Some(field), &name, lower, upper))
                    }
                    Target::Schema(..) => self.delegate(
                        UserInputLeaf::Range {
                            field: Some(name.clone()),
                            lower,
                            upper,
                        },
                        Some(&name),
                    ),
                    Target::Dynamic(_, None) => Ok(Box::new(EmptyQuery)),
                    Target::Dynamic(path, Some(FieldType::Date)) => {
                        let (lower, upper) = date_range_bounds(&name, &lower, &upper)?;
                        Ok(self.date_range(None, path, lower, upper))
                    }
                    Target::Dynamic(path, Some(t)) if t.is_numeric() => {
                        let lower = number_bound(&name, &lower)?;
                        let upper = number_bound(&name, &upper)?;
                        Ok(self.dynamic_numeric_range(path, lower, upper))
                    }
                    Target::Dynamic(path, Some(FieldType::Text | FieldType::Keyword)) => {
                        let lower = string_bound(&lower);
                        let upper = string_bound(&upper);
                        Ok(self.dynamic_string_range(path, lower, upper))
                    }
                    Target::Dynamic(..) => Err(QueryError::Field {
                        field: name.clone(),
                        message: "range queries are not supported on boolean fields".to_string(),
                    }),
                }
            }
            UserInputLeaf::Set { field, elements } => {
                let Some(name) = field else {
                    return self.delegate(UserInputLeaf::Set { field, elements }, None);
                };
                let field = match self.resolve(&name) {
                    Target::Schema(..) => name.clone(),
                    Target::Dynamic(path, _) => format!("{DYNAMIC_FIELD}.{path}"),
                };
                self.delegate(
                    UserInputLeaf::Set {
                        field: Some(field),
                        elements,
                    },
                    Some(&name),
                )
            }
            UserInputLeaf::Regex { field, pattern } => {
                let Some(name) = field else {
                    return self.delegate(UserInputLeaf::Regex { field, pattern }, None);
                };
                let field = match self.resolve(&name) {
                    Target::Schema(..) => name.clone(),
                    Target::Dynamic(path, _) => format!("{DYNAMIC_FIELD}.{path}"),
                };
                self.delegate(
                    UserInputLeaf::Regex {
                        field: Some(field),
                        pattern,
                    },
                    Some(&name),
                )
            }
            UserInputLeaf::Exists { field: name } => self.exists(&name),
        }
    }

    /// `field:*`.
    fn exists(&self, name: &str) -> Result<Box<dyn Query>, QueryError> {
        match self.resolve(name) {
            Target::Schema(field, _) => {
                let entry = self.index_schema.schema.get_field_entry(field);
                if entry.is_fast() {
                    return self.delegate(
                        UserInputLeaf::Exists {
                            field: name.to_string(),
                        },
                        Some(name),
                    );
                }
                if entry.is_indexed() && entry.field_type().value_type() == Type::Str {
                    return Ok(Box::new(InvertedIndexRangeQuery::new(
                        Bound::Included(Term::from_field_text(field, "")),
                        Bound::Unbounded,
                    )));
                }
                Err(QueryError::Field {
                    field: name.to_string(),
                    message: "exists queries (field:*) are not supported on this field".to_string(),
                })
            }
            Target::Dynamic(_, None) => Ok(Box::new(EmptyQuery)),
            Target::Dynamic(path, Some(FieldType::Date)) => {
                Ok(self.date_range(None, path, Bound::Unbounded, Bound::Unbounded))
            }
            Target::Dynamic(path, Some(t)) if t.is_numeric() => {
                Ok(self.dynamic_numeric_range(path, Bound::Unbounded, Bound::Unbounded))
            }
            Target::Dynamic(path, Some(FieldType::Boolean)) => {
                let clauses: Vec<(Occur, Box<dyn Query>)> = [true, false]
                    .into_iter()
                    .map(|value| {
                        let mut term = self.json_term(path);
                        term.append_type_and_fast_value(value);
                        let query: Box<dyn Query> =
                            Box::new(TermQuery::new(term, IndexRecordOption::Basic));
                        (Occur::Should, query)
                    })
                    .collect();
                Ok(Box::new(BooleanQuery::new(clauses)))
            }
            Target::Dynamic(path, Some(_)) => {
                Ok(self.dynamic_string_range(path, Bound::Unbounded, Bound::Unbounded))
            }
        }
    }

    fn json_term(&self, path: &str) -> Term {
        Term::from_field_json_path(self.index_schema.dynamic, path, false)
    }

    /// A date range on a mapped date field (`field` set) or on a `_dynamic`
    /// path (`field` `None`, `name` is the path).
    fn date_range(
        &self,
        field: Option<Field>,
        name: &str,
        lower: Bound<DateTime>,
        upper: Bound<DateTime>,
    ) -> Box<dyn Query> {
        let precision = tantivy::schema::DATE_TIME_PRECISION_INDEXED;
        let lower = match lower {
            Bound::Unbounded => Bound::Included(DateTime::MIN),
            Bound::Included(d) => Bound::Included(d.truncate(precision)),
            Bound::Excluded(d) => Bound::Excluded(d.truncate(precision)),
        };
        let upper = match upper {
            Bound::Unbounded => Bound::Included(DateTime::MAX),
            Bound::Included(d) => Bound::Included(d.truncate(precision)),
            Bound::Excluded(d) => {
                let truncated = d.truncate(precision);
                if truncated == d {
                    Bound::Excluded(d)
                } else {
                    Bound::Included(truncated)
                }
            }
        };
        match field {
            Some(field) => Box::new(RangeQuery::new(
                lower.map(|d| Term::from_field_date(field, d)),
                upper.map(|d| Term::from_field_date(field, d)),
            )),
            None => {
                let term = |d: DateTime| {
                    let mut term = self.json_term(name);
                    term.append_type_and_fast_value(d);
                    term
                };
                Box::new(InvertedIndexRangeQuery::new(
                    lower.map(term),
                    upper.map(term),
                ))
            }
        }
    }

    /// A numeric range on a `_dynamic` path. Numbers in JSON fields are
    /// indexed normalized (integral values as i64, others as f64, huge
    /// integral values as u64), so the range is the union of one range per
    /// representation.
    fn dynamic_numeric_range(
        &self,
        path: &str,
        lower: Bound<f64>,
        upper: Bound<f64>,
    ) -> Box<dyn Query> {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        // Integral bounds, as f64: smallest / largest integer in the range.
        let lo = match lower {
            Bound::Unbounded => f64::NEG_INFINITY,
            Bound::Included(x) => x.ceil(),
            Bound::Excluded(x) => x.floor() + 1.0,
        };
        let hi = match upper {
            Bound::Unbounded => f64::INFINITY,
            Bound::Included(x) => x.floor(),
            Bound::Excluded(x) => x.ceil() - 1.0,
        };
        if lo <= hi && lo < I64_BOUND && hi >= -I64_BOUND {
            // `as` saturates, which clamps to the i64 range.
            let (lo, hi) = (lo as i64, hi as i64);
            let term = |v: i64| {
                let mut term = self.json_term(path);
                term.append_type_and_fast_value(v);
                term
            };
            clauses.push((
                Occur::Should,
                Box::new(InvertedIndexRangeQuery::new(
                    Bound::Included(term(lo)),
                    Bound::Included(term(hi)),
                )),
            ));
        }
        if lo <= hi && hi >= I64_BOUND && lo < U64_BOUND {
            let (lo, hi) = (lo.max(I64_BOUND) as u64, hi as u64);
            let term = |v: u64| {
                let mut term = self.json_term(path);
                term.append_type_and_fast_value(v);
                term
            };
            clauses.push((
                Occur::Should,
                Box::new(InvertedIndexRangeQuery::new(
                    Bound::Included(term(lo)),
                    Bound::Included(term(hi)),
                )),
            ));
        }
        let f64_term = |v: f64| {
            let mut term = self.json_term(path);
            term.append_type_and_fast_value(v);
            term
        };
        let f_lower = match lower {
            Bound::Unbounded => Bound::Included(f64_term(f64::NEG_INFINITY)),
            bound => bound.map(f64_term),
        };
        let f_upper = match upper {
            Bound::Unbounded => Bound::Included(f64_term(f64::INFINITY)),
            bound => bound.map(f64_term),
        };
        clauses.push((
            Occur::Should,
            Box::new(InvertedIndexRangeQuery::new(f_lower, f_upper)),
        ));
        Box::new(BooleanQuery::new(clauses))
    }

    /// A string range on a `_dynamic` path (strings there are tokenized and
    /// lowercased by the default tokenizer).
    fn dynamic_string_range(
        &self,
        path: &str,
        lower: Bound<String>,
        upper: Bound<String>,
    ) -> Box<dyn Query> {
        let term = |s: String| {
            let mut term = self.json_term(path);
            term.append_type_and_str(&s);
            term
        };
        let lower = match lower {
            Bound::Unbounded => Bound::Included(term(String::new())),
            bound => bound.map(term),
        };
        let upper = match upper {
            Bound::Unbounded => Bound::Included(term(MAX_STR.to_string())),
            bound => bound.map(term),
        };
        Box::new(InvertedIndexRangeQuery::new(lower, upper))
    }
}

fn invalid_date(name: &str, text: &str) -> QueryError {
    QueryError::Field {
        field: name.to_string(),
        message: format!(
            "failed to parse date [{text}]: expected an RFC 3339 date-time, a yyyy-MM-dd date or epoch milliseconds"
        ),
    }
}

/// `field:value` on a date field: the instant, or the whole day for `yyyy-MM-dd`.
fn date_literal_bounds(
    name: &str,
    text: &str,
) -> Result<(Bound<DateTime>, Bound<DateTime>), QueryError> {
    let date = parse_date(text).ok_or_else(|| invalid_date(name, text))?;
    if date.day_only {
        let upper = match date.next_day() {
            Some(next) => Bound::Excluded(next),
            None => Bound::Unbounded,
        };
        Ok((Bound::Included(date.instant), upper))
    } else {
        Ok((Bound::Included(date.instant), Bound::Included(date.instant)))
    }
}

/// Range bounds on a date field; `yyyy-MM-dd` bounds round to whole days as
/// Elasticsearch does (`[d TO d]` is the whole day `d`).
fn date_range_bounds(
    name: &str,
    lower: &UserInputBound,
    upper: &UserInputBound,
) -> Result<(Bound<DateTime>, Bound<DateTime>), QueryError> {
    let parse = |text: &str| parse_date(text).ok_or_else(|| invalid_date(name, text));
    let lower = match lower {
        UserInputBound::Unbounded => Bound::Unbounded,
        UserInputBound::Inclusive(text) => Bound::Included(parse(text)?.instant),
        UserInputBound::Exclusive(text) => {
            let date = parse(text)?;
            match (date.day_only, date.next_day()) {
                (true, Some(next)) => Bound::Included(next),
                _ => Bound::Excluded(date.instant),
            }
        }
    };
    let upper = match upper {
        UserInputBound::Unbounded => Bound::Unbounded,
        UserInputBound::Inclusive(text) => {
            let date = parse(text)?;
            match (date.day_only, date.next_day()) {
                (true, Some(next)) => Bound::Excluded(next),
                _ => Bound::Included(date.instant),
            }
        }
        UserInputBound::Exclusive(text) => Bound::Excluded(parse(text)?.instant),
    };
    Ok((lower, upper))
}

fn number_bound(name: &str, bound: &UserInputBound) -> Result<Bound<f64>, QueryError> {
    let parse = |text: &str| match text.parse::<f64>() {
        Ok(v) if !v.is_nan() => Ok(v),
        _ => Err(QueryError::Field {
            field: name.to_string(),
            message: format!("range bound [{text}] is not a number"),
        }),
    };
    Ok(match bound {
        UserInputBound::Unbounded => Bound::Unbounded,
        UserInputBound::Inclusive(text) => Bound::Included(parse(text)?),
        UserInputBound::Exclusive(text) => Bound::Excluded(parse(text)?),
    })
}

fn string_bound(bound: &UserInputBound) -> Bound<String> {
    match bound {
        UserInputBound::Unbounded => Bound::Unbounded,
        UserInputBound::Inclusive(text) => Bound::Included(text.to_lowercase()),
        UserInputBound::Exclusive(text) => Bound::Excluded(text.to_lowercase()),
    }
}
