//! `?filter_path=`: Elasticsearch's response filtering, accepted by every endpoint.
//!
//! A filter is a comma-separated list of dotted paths. A path keeps the fields it names (and
//! everything under them); `*` in a segment matches any part of a field name, `**` matches any
//! number of levels; arrays are transparent (a path applies to each element). Paths starting
//! with `-` exclude instead; when only exclusions are given, everything else is kept. Objects
//! and arrays left empty by the filter disappear, as in Elasticsearch.

use serde_json::{Map, Value};

use super::index_expression::wildcard_matches;

/// A parsed `filter_path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterPath {
    includes: Vec<Vec<String>>,
    excludes: Vec<Vec<String>>,
}

impl FilterPath {
    /// Parses the parameter's value; `None` when it names no path.
    pub fn parse(value: &str) -> Option<FilterPath> {
        let mut filter = FilterPath {
            includes: Vec::new(),
            excludes: Vec::new(),
        };
        for path in value
            .split(',')
            .map(str::trim)
            .filter(|path| !path.is_empty())
        {
            let (target, path) = match path.strip_prefix('-') {
                Some(excluded) => (&mut filter.excludes, excluded),
                None => (&mut filter.includes, path),
            };
            target.push(path.split('.').map(str::to_string).collect());
        }
        (!filter.includes.is_empty() || !filter.excludes.is_empty()).then_some(filter)
    }

    /// Filters `value`; `None` when nothing is left.
    pub fn apply(&self, value: &Value) -> Option<Value> {
        let included = if self.includes.is_empty() {
            Some(value.clone())
        } else {
            let paths: Vec<&[String]> = self.includes.iter().map(Vec::as_slice).collect();
            include(value, &paths)
        }?;
        if self.excludes.is_empty() {
            return Some(included);
        }
        let paths: Vec<&[String]> = self.excludes.iter().map(Vec::as_slice).collect();
        exclude(&included, &paths)
    }
}

/// The paths that continue below field `name`, given the paths at this level. A path that
/// ends at `name` is returned empty (keep all of it).
fn descend<'a>(paths: &[&'a [String]], name: &str) -> Vec<&'a [String]> {
    let mut next = Vec::new();
    for path in paths {
        let Some((first, rest)) = path.split_first() else {
            continue;
        };
        if first == "**" {
            // `**` matches zero levels (the rest applies here) or this level (stays).
            if rest.is_empty() {
                next.push(&path[path.len()..]);
            } else {
                next.extend(descend(&[rest], name));
                next.push(*path);
            }
        } else if wildcard_matches(first, name) {
            next.push(rest);
        }
    }
    next
}

fn include(value: &Value, paths: &[&[String]]) -> Option<Value> {
    if paths.iter().any(|path| path.is_empty()) {
        return Some(value.clone());
    }
    match value {
        Value::Object(map) => {
            let kept: Map<String, Value> = map
                .iter()
                .filter_map(|(name, child)| {
                    let below = descend(paths, name);
                    if below.is_empty() {
                        return None;
                    }
                    include(child, &below).map(|kept| (name.clone(), kept))
                })
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        Value::Array(items) => {
            let kept: Vec<Value> = items
                .iter()
                .filter_map(|item| include(item, paths))
                .collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        // A path that goes deeper than a leaf does not match it.
        _ => None,
    }
}

fn exclude(value: &Value, paths: &[&[String]]) -> Option<Value> {
    if paths.iter().any(|path| path.is_empty()) {
        return None;
    }
    match value {
        Value::Object(map) => {
            let kept: Map<String, Value> = map
                .iter()
                .filter_map(|(name, child)| {
                    let below = descend(paths, name);
                    if below.is_empty() {
                        return Some((name.clone(), child.clone()));
                    }
                    exclude(child, &below).map(|kept| (name.clone(), kept))
                })
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        Value::Array(items) => {
            let kept: Vec<Value> = items
                .iter()
                .filter_map(|item| exclude(item, paths))
                .collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        other => Some(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn filter(paths: &str, value: Value) -> Option<Value> {
        FilterPath::parse(paths).expect("a filter").apply(&value)
    }

    fn search() -> Value {
        json!({"took": 3, "timed_out": false,
               "hits": {"total": {"value": 2, "relation": "eq"},
                        "hits": [{"_id": "1", "_source": {"a": 1}}, {"_id": "2", "_source": {"a": 2}}]}})
    }

    #[test]
    fn includes_keep_named_paths_through_arrays() {
        assert_eq!(
            filter("took,hits.hits._id", search()),
            Some(json!({"took": 3, "hits": {"hits": [{"_id": "1"}, {"_id": "2"}]}}))
        );
        assert_eq!(
            filter("hits.total", search()),
            Some(json!({"hits": {"total": {"value": 2, "relation": "eq"}}}))
        );
    }

    #[test]
    fn wildcards_match_names_and_levels() {
        assert_eq!(
            filter("hits.*.value", search()),
            Some(json!({"hits": {"total": {"value": 2}}}))
        );
        assert_eq!(
            filter("t*", search()),
            Some(json!({"took": 3, "timed_out": false}))
        );
        assert_eq!(
            filter("**.a", search()),
            Some(json!({"hits": {"hits": [{"_source": {"a": 1}}, {"_source": {"a": 2}}]}}))
        );
    }

    #[test]
    fn exclusions_drop_paths_and_empty_results_vanish() {
        assert_eq!(
            filter("-hits", search()),
            Some(json!({"took": 3, "timed_out": false}))
        );
        assert_eq!(
            filter("hits.hits._source,-hits.hits._source.a", search()),
            None
        );
        assert_eq!(filter("nothing.here", search()), None);
        assert_eq!(FilterPath::parse(" , "), None);
    }
}
