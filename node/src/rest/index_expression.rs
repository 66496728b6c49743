//! Index expressions of request paths (`logs`, `a,b`, `logs-*`, `_all`, `*`) resolved to index
//! names, as Elasticsearch does with its defaults (`expand_wildcards=open`,
//! `ignore_unavailable=false`, `allow_no_indices=true`):
//! - a concrete name must exist (else 404 `index_not_found_exception`), open or closed;
//! - a wildcard or `_all` expands to the open indices it matches, possibly none;
//! - the result has no duplicates and keeps the order of the expression (wildcard matches in
//!   name order).

use std::sync::Arc;

use tandem_engine::index::Index;
use tandem_engine::indices::Indices;

use crate::error::RestError;

/// Most comma-separated parts an expression may have.
pub const MAX_EXPRESSION_PARTS: usize = 1024;

/// The open indices `expression` designates (every open index without one), sorted by name:
/// what the stats, `_cat/shards` and the metrics read. A named index that does not exist is an
/// error; closed ones, and those closed or deleted while this runs, are skipped.
pub fn open_indices(
    indices: &Indices,
    expression: Option<&str>,
) -> Result<Vec<(String, Arc<Index>)>, RestError> {
    let mut names = match expression {
        Some(expression) => resolve_indices(indices, expression)?,
        None => indices.names(),
    };
    names.sort();
    Ok(names
        .into_iter()
        .filter(|name| !indices.is_closed(name).unwrap_or(true))
        .filter_map(|name| indices.get(&name).ok().map(|index| (name, index)))
        .collect())
}

/// The index names `expression` designates (see the module documentation).
pub fn resolve_indices(indices: &Indices, expression: &str) -> Result<Vec<String>, RestError> {
    let parts: Vec<&str> = expression.split(',').map(str::trim).collect();
    if parts.len() > MAX_EXPRESSION_PARTS {
        return Err(RestError::illegal_argument(format!(
            "index expression has more than {MAX_EXPRESSION_PARTS} parts"
        )));
    }
    let names = indices.names();
    let mut resolved: Vec<String> = Vec::new();
    let add = |name: &str, resolved: &mut Vec<String>| {
        if !resolved.iter().any(|known| known == name) {
            resolved.push(name.to_string());
        }
    };
    for part in parts {
        if part.is_empty() {
            continue;
        }
        if part == "_all" || part.contains('*') {
            let pattern = if part == "_all" { "*" } else { part };
            for name in &names {
                let open = indices.is_closed(name).is_ok_and(|closed| !closed);
                if open && wildcard_matches(pattern, name) {
                    add(name, &mut resolved);
                }
            }
        } else if names.iter().any(|name| name == part) {
            add(part, &mut resolved);
        } else {
            return Err(RestError::index_not_found(part));
        }
    }
    Ok(resolved)
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
pub fn wildcard_matches(pattern: &str, name: &str) -> bool {
    let pieces: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = match pieces.split_first() {
        Some(split) => split,
        None => return name.is_empty(),
    };
    let Some(mut remaining) = name.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        // No `*` at all: an exact comparison.
        return remaining.is_empty();
    };
    for piece in middle {
        match remaining.find(piece) {
            Some(position) => remaining = &remaining[position + piece.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_elasticsearch_patterns() {
        assert!(wildcard_matches("*", "anything"));
        assert!(wildcard_matches("logs-*", "logs-2026"));
        assert!(!wildcard_matches("logs-*", "metrics"));
        assert!(wildcard_matches("*-metrics", "server-metrics"));
        assert!(wildcard_matches("a*b*c", "axxbyyc"));
        assert!(!wildcard_matches("a*b*c", "axxcyyb"));
        assert!(wildcard_matches("ab*b", "abb"));
        assert!(!wildcard_matches("abb*bb", "abbb"));
        assert!(wildcard_matches("exact", "exact"));
        assert!(!wildcard_matches("exact", "exactly"));
    }

    #[test]
    fn expressions_resolve_to_existing_names() {
        let dir = tempfile::tempdir().unwrap();
        let indices = Indices::open(dir.path()).unwrap();
        for name in ["logs-1", "logs-2", "metrics"] {
            indices
                .create(name, &serde_json::json!({}), &serde_json::json!({}))
                .unwrap();
        }
        assert_eq!(
            resolve_indices(&indices, "metrics,logs-*").unwrap(),
            vec!["metrics", "logs-1", "logs-2"]
        );
        assert_eq!(resolve_indices(&indices, "_all").unwrap().len(), 3);
        assert!(resolve_indices(&indices, "nope-*").unwrap().is_empty());
        let missing = resolve_indices(&indices, "metrics,nope").unwrap_err();
        assert_eq!(missing.error_type, "index_not_found_exception");
        indices.close_index("logs-2").unwrap();
        assert_eq!(resolve_indices(&indices, "logs-*").unwrap(), vec!["logs-1"]);
        assert_eq!(resolve_indices(&indices, "logs-2").unwrap(), vec!["logs-2"]);
    }
}
