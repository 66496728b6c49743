//! Query-string parameters: parsed once, checked against what an endpoint reads, so an unknown
//! parameter is a 400 naming it (as in Elasticsearch) instead of being silently ignored.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use tandem_engine::units::parse_time_millis;

use crate::error::RestError;

/// Parameters every endpoint accepts.
const GLOBAL: &[&str] = &["pretty", "error_trace", "human", "filter_path"];

/// The query-string parameters of a request.
#[derive(Clone, Debug, Default)]
pub struct Params {
    path: String,
    values: BTreeMap<String, String>,
}

impl Params {
    /// Parses a raw query string (`a=1&v` gives `v` the empty value).
    pub fn parse(path: &str, query: Option<&str>) -> Result<Params, RestError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or(""))
            .map_err(|e| RestError::illegal_argument(format!("invalid query string: {e}")))?;
        Ok(Params {
            path: path.to_string(),
            values: pairs.into_iter().collect(),
        })
    }

    /// Fails with Elasticsearch's message on a parameter outside `allowed` (and the global
    /// ones).
    pub fn allow(&self, allowed: &[&str]) -> Result<&Params, RestError> {
        let unknown: Vec<&str> = self
            .values
            .keys()
            .map(String::as_str)
            .filter(|key| !allowed.contains(key) && !GLOBAL.contains(key))
            .collect();
        match unknown.as_slice() {
            [] => Ok(self),
            [one] => Err(RestError::illegal_argument(format!(
                "request [{}] contains unrecognized parameter: [{one}]",
                self.path
            ))),
            many => Err(RestError::illegal_argument(format!(
                "request [{}] contains unrecognized parameters: [{}]",
                self.path,
                many.join("], [")
            ))),
        }
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// A boolean flag: absent is `default`; present with no value or `true` is true.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool, RestError> {
        match self.get(key) {
            None => Ok(default),
            Some("" | "true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => Err(RestError::illegal_argument(format!(
                "Failed to parse value [{other}] as only [true] or [false] are allowed."
            ))),
        }
    }

    /// A non-negative integer.
    pub fn number(&self, key: &str) -> Result<Option<u64>, RestError> {
        self.get(key)
            .map(|value| {
                value.parse::<u64>().map_err(|_| {
                    RestError::illegal_argument(format!(
                        "Failed to parse int parameter [{key}] with value [{value}]"
                    ))
                })
            })
            .transpose()
    }

    /// A time value (`30s`, `1m`, …).
    pub fn time(&self, key: &str) -> Result<Option<Duration>, RestError> {
        self.get(key)
            .map(|value| {
                parse_time_millis(value)
                    .map(Duration::from_millis)
                    .ok_or_else(|| {
                        RestError::illegal_argument(format!(
                            "failed to parse setting [{key}] with value [{value}] as a time value: unit is missing or unrecognized"
                        ))
                    })
            })
            .transpose()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = RestError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Params, RestError> {
        Params::parse(parts.uri.path(), parts.uri.query())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_parameters_are_named() {
        let params = Params::parse("/i/_doc", Some("refresh=true&pretty&colour=red")).unwrap();
        assert!(params.allow(&["refresh", "colour"]).is_ok());
        let error = params.allow(&["refresh"]).unwrap_err();
        assert_eq!(
            error.reason,
            "request [/i/_doc] contains unrecognized parameter: [colour]"
        );
    }

    #[test]
    fn typed_values() {
        let params = Params::parse("/", Some("v&b=false&n=12&t=30s&bad=x")).unwrap();
        assert!(params.flag("v", false).unwrap());
        assert!(!params.flag("b", true).unwrap());
        assert!(params.flag("absent", true).unwrap());
        assert!(params.flag("bad", false).is_err());
        assert_eq!(params.number("n").unwrap(), Some(12));
        assert!(params.number("bad").is_err());
        assert_eq!(params.time("t").unwrap(), Some(Duration::from_secs(30)));
    }
}
