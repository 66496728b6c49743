//! Query-string parameters: parsed once, checked against what an endpoint reads, so an unknown
//! parameter is a 400 naming it (as in Elasticsearch) instead of being silently ignored.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::error::RestError;

/// Parameters every endpoint accepts.
const GLOBAL: &[&str] = &["pretty", "error_trace", "human", "filter_path"];
/// Time-valued parameters: wherever an endpoint accepts one, [`Params::allow`] checks its
/// value, so a bad time value is a 400 even where the endpoint has nothing to wait for.
const TIME_PARAMETERS: &[&str] = &["timeout", "master_timeout"];
/// The duration a time value of `-1` (Elasticsearch's "no timeout") stands for: long enough
/// to be no limit in practice, short enough that adding it to an `Instant` cannot overflow.
pub const UNBOUNDED_TIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// Elasticsearch's `TimeValue.parseTimeValue` for the parameter `key`: a whole number with a
/// unit (`nanos`, `micros`, `ms`, `s`, `m`, `h`, `d`), or a bare `0` or `-1` (no limit,
/// [`UNBOUNDED_TIME`]). Errors carry Elasticsearch's messages.
pub fn parse_time_value(key: &str, value: &str) -> Result<Duration, RestError> {
    let normalized = value.trim().to_lowercase();
    const UNITS: [(&str, u64); 7] = [
        ("nanos", 1),
        ("micros", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60 * 1_000_000_000),
        ("h", 3_600 * 1_000_000_000),
        ("d", 86_400 * 1_000_000_000),
    ];
    let Some((number, nanos_per_unit)) = UNITS
        .iter()
        .find_map(|(unit, nanos)| Some((normalized.strip_suffix(unit)?.trim(), *nanos)))
    else {
        let digits = normalized.trim_start_matches('-').trim_start_matches('0');
        return match (normalized.starts_with('-'), digits) {
            (false, "") if !normalized.is_empty() => Ok(Duration::ZERO),
            (true, "1") => Ok(UNBOUNDED_TIME),
            _ => Err(RestError::illegal_argument(format!(
                "failed to parse setting [{key}] with value [{value}] as a time value: unit is missing or unrecognized"
            ))),
        };
    };
    match number.parse::<i64>() {
        Ok(-1) => Ok(UNBOUNDED_TIME),
        Ok(count) if count < 0 => Err(RestError::illegal_argument(format!(
            "failed to parse setting [{key}] with value [{value}] as a time value: negative durations are not supported"
        ))),
        Ok(count) => Ok(Duration::from_nanos(
            (count as u64).saturating_mul(nanos_per_unit),
        )
        .min(UNBOUNDED_TIME)),
        Err(_) if number.parse::<f64>().is_ok() => Err(RestError::illegal_argument(format!(
            "failed to parse [{value}], fractional time values are not supported"
        ))),
        Err(_) => Err(RestError::illegal_argument(format!(
            "failed to parse [{value}]"
        ))),
    }
}

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
    /// ones), or on a bad value of an allowed time parameter (`timeout`, `master_timeout`).
    pub fn allow(&self, allowed: &[&str]) -> Result<&Params, RestError> {
        for key in TIME_PARAMETERS.iter().filter(|key| allowed.contains(key)) {
            self.time(key)?;
        }
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

    /// A time value (`30s`, `1m`, …; see [`parse_time_value`]).
    pub fn time(&self, key: &str) -> Result<Option<Duration>, RestError> {
        self.get(key)
            .map(|value| parse_time_value(key, value))
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

    #[test]
    fn time_values_follow_elasticsearch() {
        let parse = |value| parse_time_value("timeout", value);
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("1500ms").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("1H").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse("7d").unwrap(), Duration::from_secs(7 * 86_400));
        assert_eq!(parse("10micros").unwrap(), Duration::from_micros(10));
        assert_eq!(parse("0").unwrap(), Duration::ZERO);
        assert_eq!(parse("-1").unwrap(), UNBOUNDED_TIME);
        assert_eq!(parse("-1s").unwrap(), UNBOUNDED_TIME);
        for (value, reason) in [
            ("abc", "failed to parse setting [timeout] with value [abc] as a time value: unit is missing or unrecognized"),
            ("30", "failed to parse setting [timeout] with value [30] as a time value: unit is missing or unrecognized"),
            ("", "failed to parse setting [timeout] with value [] as a time value: unit is missing or unrecognized"),
            ("-5s", "failed to parse setting [timeout] with value [-5s] as a time value: negative durations are not supported"),
            ("1.5s", "failed to parse [1.5s], fractional time values are not supported"),
            ("xs", "failed to parse [xs]"),
        ] {
            let error = parse(value).unwrap_err();
            assert_eq!(error.reason, reason, "{value}");
            assert_eq!(error.status, axum::http::StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn allowed_time_parameters_are_checked_by_allow() {
        let params = Params::parse("/_ccr/stats", Some("master_timeout=soon")).unwrap();
        let error = params.allow(&["master_timeout"]).unwrap_err();
        assert!(
            error.reason.contains("[master_timeout] with value [soon]"),
            "{}",
            error.reason
        );
        let params = Params::parse("/_ccr/stats", Some("master_timeout=5s&timeout=-1")).unwrap();
        assert!(params.allow(&["master_timeout", "timeout"]).is_ok());
    }
}
