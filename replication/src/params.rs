//! The ten follow parameters of a follower index: what a follow, resume-follow or auto-follow
//! request may set ([`FollowParameters`], every field optional), their validation, and the values
//! a shard follow task runs with ([`ResolvedFollowParameters`], Elasticsearch's defaults filled
//! in).
//!
//! Guarantees: a [`ResolvedFollowParameters`] only exists for parameters that passed
//! [`FollowParameters::validate`], so every count and size a task uses is at least 1 and the
//! retry delay is within `(0, 5m]`.

use std::time::Duration;

use serde_json::{Map, Value};
use tandem_engine::units::{ByteSize, TimeValue};

/// Largest accepted `max_retry_delay`.
pub const MAX_RETRY_DELAY_LIMIT: TimeValue = TimeValue::from_millis(5 * 60 * 1000);

/// Default `max_read_request_operation_count`.
pub const DEFAULT_MAX_READ_REQUEST_OPERATION_COUNT: u32 = 5120;
/// Default `max_outstanding_read_requests`.
pub const DEFAULT_MAX_OUTSTANDING_READ_REQUESTS: u32 = 12;
/// Default `max_read_request_size`.
pub const DEFAULT_MAX_READ_REQUEST_SIZE: ByteSize = ByteSize::mb(32);
/// Default `max_write_request_operation_count`.
pub const DEFAULT_MAX_WRITE_REQUEST_OPERATION_COUNT: u32 = 5120;
/// Default `max_write_request_size` (unlimited).
pub const DEFAULT_MAX_WRITE_REQUEST_SIZE: ByteSize = ByteSize(i64::MAX as u64);
/// Default `max_outstanding_write_requests`.
pub const DEFAULT_MAX_OUTSTANDING_WRITE_REQUESTS: u32 = 9;
/// Default `max_write_buffer_count` (unlimited).
pub const DEFAULT_MAX_WRITE_BUFFER_COUNT: u32 = i32::MAX as u32;
/// Default `max_write_buffer_size`.
pub const DEFAULT_MAX_WRITE_BUFFER_SIZE: ByteSize = ByteSize::mb(512);
/// Default `max_retry_delay`.
pub const DEFAULT_MAX_RETRY_DELAY: TimeValue = TimeValue::from_millis(500);
/// Default `read_poll_timeout`.
pub const DEFAULT_READ_POLL_TIMEOUT: TimeValue = TimeValue::from_millis(60_000);

/// A follow parameter request body that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FollowParametersError {
    /// A value of the wrong type or unit (Elasticsearch's parsing exception).
    #[error("failed to parse field [{field}]: {reason}")]
    Parse {
        /// The parameter.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Values that parse but are out of range, numbered like Elasticsearch's
    /// `action_request_validation_exception`.
    #[error("Validation Failed: {}", numbered(.0))]
    Validation(Vec<String>),
}

fn numbered(messages: &[String]) -> String {
    messages
        .iter()
        .enumerate()
        .map(|(i, message)| format!("{}: {message};", i + 1))
        .collect()
}

/// The follow parameters as requested: `None` means "use the default" (or, on resume, "keep
/// the default", as Elasticsearch does not remember earlier values across a resume).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FollowParameters {
    /// Operations per read request.
    pub max_read_request_operation_count: Option<i64>,
    /// Concurrent read requests.
    pub max_outstanding_read_requests: Option<i64>,
    /// Bytes per read request.
    pub max_read_request_size: Option<ByteSize>,
    /// Operations per write (bulk apply) request.
    pub max_write_request_operation_count: Option<i64>,
    /// Bytes per write request.
    pub max_write_request_size: Option<ByteSize>,
    /// Concurrent write requests.
    pub max_outstanding_write_requests: Option<i64>,
    /// Operations the write buffer may hold before reads are deferred.
    pub max_write_buffer_count: Option<i64>,
    /// Bytes the write buffer may hold before reads are deferred.
    pub max_write_buffer_size: Option<ByteSize>,
    /// Upper bound of the retry delay of recoverable errors.
    pub max_retry_delay: Option<TimeValue>,
    /// How long a caught-up read waits on the leader for new operations.
    pub read_poll_timeout: Option<TimeValue>,
}

impl FollowParameters {
    /// Reads the parameters out of a request body object; other keys (`remote_cluster`,
    /// `leader_index`, `settings`, ...) are left to the caller. Counts must be JSON integers
    /// (or strings of one) within a 32-bit int, sizes and times strings with units.
    pub fn from_es_json(
        body: &Map<String, Value>,
    ) -> Result<FollowParameters, FollowParametersError> {
        Ok(FollowParameters {
            max_read_request_operation_count: int(body, "max_read_request_operation_count")?,
            max_outstanding_read_requests: int(body, "max_outstanding_read_requests")?,
            max_read_request_size: size(body, "max_read_request_size")?,
            max_write_request_operation_count: int(body, "max_write_request_operation_count")?,
            max_write_request_size: size(body, "max_write_request_size")?,
            max_outstanding_write_requests: int(body, "max_outstanding_write_requests")?,
            max_write_buffer_count: int(body, "max_write_buffer_count")?,
            max_write_buffer_size: size(body, "max_write_buffer_size")?,
            max_retry_delay: time(body, "max_retry_delay")?,
            read_poll_timeout: time(body, "read_poll_timeout")?,
        })
    }

    /// The set values, as a request body would give them (the inverse of
    /// [`FollowParameters::from_es_json`]).
    pub fn to_es_json(&self) -> Map<String, Value> {
        let mut body = Map::new();
        let counts = [
            (
                "max_read_request_operation_count",
                self.max_read_request_operation_count,
            ),
            (
                "max_outstanding_read_requests",
                self.max_outstanding_read_requests,
            ),
            (
                "max_write_request_operation_count",
                self.max_write_request_operation_count,
            ),
            (
                "max_outstanding_write_requests",
                self.max_outstanding_write_requests,
            ),
            ("max_write_buffer_count", self.max_write_buffer_count),
        ];
        for (name, value) in counts {
            if let Some(value) = value {
                body.insert(name.to_string(), Value::from(value));
            }
        }
        let sizes = [
            ("max_read_request_size", self.max_read_request_size),
            ("max_write_request_size", self.max_write_request_size),
            ("max_write_buffer_size", self.max_write_buffer_size),
        ];
        for (name, value) in sizes {
            if let Some(value) = value {
                body.insert(name.to_string(), Value::from(value.to_string()));
            }
        }
        for (name, value) in [
            ("max_retry_delay", self.max_retry_delay),
            ("read_poll_timeout", self.read_poll_timeout),
        ] {
            if let Some(value) = value {
                body.insert(name.to_string(), Value::from(value.to_string()));
            }
        }
        body
    }

    /// Checks every set value: counts and sizes larger than 0, `max_retry_delay` positive and
    /// at most 5m. Reports every violation at once, in Elasticsearch's words.
    pub fn validate(&self) -> Result<(), FollowParametersError> {
        let mut messages = Vec::new();
        let mut positive_count = |name: &str, value: Option<i64>| {
            if value.is_some_and(|value| value < 1) {
                messages.push(format!("{name} must be larger than 0"));
            }
        };
        positive_count(
            "max_read_request_operation_count",
            self.max_read_request_operation_count,
        );
        positive_count(
            "max_outstanding_read_requests",
            self.max_outstanding_read_requests,
        );
        positive_count(
            "max_write_request_operation_count",
            self.max_write_request_operation_count,
        );
        positive_count(
            "max_outstanding_write_requests",
            self.max_outstanding_write_requests,
        );
        positive_count("max_write_buffer_count", self.max_write_buffer_count);
        for (name, value) in [
            ("max_read_request_size", self.max_read_request_size),
            ("max_write_request_size", self.max_write_request_size),
            ("max_write_buffer_size", self.max_write_buffer_size),
        ] {
            if value.is_some_and(|value| value.bytes() == 0) {
                messages.push(format!("{name} must be larger than 0"));
            }
        }
        if let Some(delay) = self.max_retry_delay {
            if delay.millis() == 0 {
                messages.push(format!(
                    "[max_retry_delay] must be positive but was [{delay}]"
                ));
            } else if delay > MAX_RETRY_DELAY_LIMIT {
                messages.push(format!(
                    "[max_retry_delay] must be less than [{MAX_RETRY_DELAY_LIMIT}] but was [{delay}]"
                ));
            }
        }
        if messages.is_empty() {
            Ok(())
        } else {
            Err(FollowParametersError::Validation(messages))
        }
    }

    /// Validates, then fills in Elasticsearch's defaults.
    pub fn resolve(&self) -> Result<ResolvedFollowParameters, FollowParametersError> {
        self.validate()?;
        // Validated: every count is in 1..=i32::MAX, so the conversions cannot fail.
        let count = |value: Option<i64>, default: u32| {
            value.map_or(default as usize, |value| value as usize)
        };
        Ok(ResolvedFollowParameters {
            max_read_request_operation_count: count(
                self.max_read_request_operation_count,
                DEFAULT_MAX_READ_REQUEST_OPERATION_COUNT,
            ),
            max_outstanding_read_requests: count(
                self.max_outstanding_read_requests,
                DEFAULT_MAX_OUTSTANDING_READ_REQUESTS,
            ),
            max_read_request_size: self
                .max_read_request_size
                .unwrap_or(DEFAULT_MAX_READ_REQUEST_SIZE),
            max_write_request_operation_count: count(
                self.max_write_request_operation_count,
                DEFAULT_MAX_WRITE_REQUEST_OPERATION_COUNT,
            ),
            max_write_request_size: self
                .max_write_request_size
                .unwrap_or(DEFAULT_MAX_WRITE_REQUEST_SIZE),
            max_outstanding_write_requests: count(
                self.max_outstanding_write_requests,
                DEFAULT_MAX_OUTSTANDING_WRITE_REQUESTS,
            ),
            max_write_buffer_count: count(
                self.max_write_buffer_count,
                DEFAULT_MAX_WRITE_BUFFER_COUNT,
            ),
            max_write_buffer_size: self
                .max_write_buffer_size
                .unwrap_or(DEFAULT_MAX_WRITE_BUFFER_SIZE),
            max_retry_delay: self.max_retry_delay.unwrap_or(DEFAULT_MAX_RETRY_DELAY),
            read_poll_timeout: self.read_poll_timeout.unwrap_or(DEFAULT_READ_POLL_TIMEOUT),
        })
    }
}

/// The parameters a shard follow task runs with: every value set and valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolvedFollowParameters {
    /// Operations per read request (>= 1).
    pub max_read_request_operation_count: usize,
    /// Concurrent read requests (>= 1).
    pub max_outstanding_read_requests: usize,
    /// Bytes per read request (>= 1).
    pub max_read_request_size: ByteSize,
    /// Operations per write request (>= 1).
    pub max_write_request_operation_count: usize,
    /// Bytes per write request (>= 1).
    pub max_write_request_size: ByteSize,
    /// Concurrent write requests (>= 1).
    pub max_outstanding_write_requests: usize,
    /// Buffered operations before reads are deferred (>= 1).
    pub max_write_buffer_count: usize,
    /// Buffered bytes before reads are deferred (>= 1).
    pub max_write_buffer_size: ByteSize,
    /// Upper bound of the retry delay, in `(0, 5m]`.
    pub max_retry_delay: TimeValue,
    /// Long-poll timeout of a caught-up read.
    pub read_poll_timeout: TimeValue,
}

impl Default for ResolvedFollowParameters {
    fn default() -> Self {
        match FollowParameters::default().resolve() {
            Ok(resolved) => resolved,
            // The defaults are constants that satisfy `validate`; the unit tests check it.
            Err(error) => unreachable!("the default follow parameters are invalid: {error}"),
        }
    }
}

impl ResolvedFollowParameters {
    /// The read poll timeout as a duration.
    pub fn read_poll_timeout(&self) -> Duration {
        self.read_poll_timeout.0
    }

    /// The ten parameters as the follow-info API shows them (sizes and times with units).
    pub fn to_es_json(&self) -> Value {
        serde_json::json!({
            "max_read_request_operation_count": self.max_read_request_operation_count,
            "max_write_request_operation_count": self.max_write_request_operation_count,
            "max_outstanding_read_requests": self.max_outstanding_read_requests,
            "max_outstanding_write_requests": self.max_outstanding_write_requests,
            "max_read_request_size": self.max_read_request_size.to_string(),
            "max_write_request_size": self.max_write_request_size.to_string(),
            "max_write_buffer_count": self.max_write_buffer_count,
            "max_write_buffer_size": self.max_write_buffer_size.to_string(),
            "max_retry_delay": self.max_retry_delay.to_string(),
            "read_poll_timeout": self.read_poll_timeout.to_string(),
        })
    }
}

fn int(
    body: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<i64>, FollowParametersError> {
    let parse_error = |reason: String| FollowParametersError::Parse { field, reason };
    let value = match body.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(number)) => number
            .as_i64()
            .ok_or_else(|| parse_error(format!("[{number}] is not an integer")))?,
        Some(Value::String(text)) => text
            .trim()
            .parse::<i64>()
            .map_err(|_| parse_error(format!("[{text}] is not an integer")))?,
        Some(other) => return Err(parse_error(format!("expected an integer, got [{other}]"))),
    };
    if i32::try_from(value).is_err() {
        return Err(parse_error(format!("[{value}] is out of range for an int")));
    }
    Ok(Some(value))
}

fn size(
    body: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<ByteSize>, FollowParametersError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => ByteSize::parse(text)
            .map(Some)
            .map_err(|reason| FollowParametersError::Parse { field, reason }),
        Some(Value::Number(number)) if number.as_u64() == Some(0) => Ok(Some(ByteSize(0))),
        Some(other) => Err(FollowParametersError::Parse {
            field,
            reason: format!("expected a byte size such as \"32mb\", got [{other}]"),
        }),
    }
}

fn time(
    body: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<TimeValue>, FollowParametersError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => {
            TimeValue::parse(text)
                .map(Some)
                .ok_or_else(|| FollowParametersError::Parse {
                    field,
                    reason: format!("[{text}] is not a time value such as \"500ms\" or \"1m\""),
                })
        }
        Some(Value::Number(number)) => number
            .as_u64()
            .map(|millis| Some(TimeValue::from_millis(millis)))
            .ok_or_else(|| FollowParametersError::Parse {
                field,
                reason: format!("[{number}] is not a time value"),
            }),
        Some(other) => Err(FollowParametersError::Parse {
            field,
            reason: format!("expected a time value such as \"1m\", got [{other}]"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: Value) -> Result<FollowParameters, FollowParametersError> {
        match body {
            Value::Object(map) => FollowParameters::from_es_json(&map),
            _ => panic!("test bodies are objects"),
        }
    }

    #[test]
    fn defaults_are_elasticsearchs_and_render_with_units() {
        let resolved = ResolvedFollowParameters::default();
        assert_eq!(resolved.max_read_request_operation_count, 5120);
        assert_eq!(resolved.max_outstanding_read_requests, 12);
        assert_eq!(resolved.max_write_request_operation_count, 5120);
        assert_eq!(resolved.max_outstanding_write_requests, 9);
        assert_eq!(resolved.max_write_buffer_count, 2_147_483_647);
        assert_eq!(resolved.read_poll_timeout(), Duration::from_secs(60));
        assert_eq!(
            resolved.to_es_json(),
            json!({
                "max_read_request_operation_count": 5120,
                "max_write_request_operation_count": 5120,
                "max_outstanding_read_requests": 12,
                "max_outstanding_write_requests": 9,
                "max_read_request_size": "32mb",
                "max_write_request_size": "9223372036854775807b",
                "max_write_buffer_count": 2147483647,
                "max_write_buffer_size": "512mb",
                "max_retry_delay": "500ms",
                "read_poll_timeout": "1m",
            })
        );
    }

    #[test]
    fn given_values_override_defaults_and_round_trip_through_follow_info() {
        let body = json!({
            "max_read_request_operation_count": 100,
            "max_outstanding_read_requests": "3",
            "max_read_request_size": "1mb",
            "max_write_buffer_size": "10kb",
            "max_retry_delay": "2s",
            "read_poll_timeout": "30s",
            "remote_cluster": "leader",
        });
        let resolved = parse(body).unwrap().resolve().unwrap();
        assert_eq!(resolved.max_read_request_operation_count, 100);
        assert_eq!(resolved.max_outstanding_read_requests, 3);
        assert_eq!(resolved.max_read_request_size, ByteSize::mb(1));
        assert_eq!(resolved.max_write_buffer_size, ByteSize(10 << 10));
        assert_eq!(resolved.max_write_request_operation_count, 5120);
        let Value::Object(info) = resolved.to_es_json() else {
            panic!("an object")
        };
        assert_eq!(
            parse(Value::Object(info)).unwrap().resolve().unwrap(),
            resolved
        );
    }

    #[test]
    fn given_values_round_trip_through_their_request_form() {
        let given = parse(json!({
            "max_outstanding_read_requests": 3,
            "max_write_buffer_size": "10kb",
            "read_poll_timeout": "30s",
        }))
        .unwrap();
        let body = given.to_es_json();
        assert_eq!(body.len(), 3, "only the values that were set");
        assert_eq!(FollowParameters::from_es_json(&body).unwrap(), given);
        assert!(FollowParameters::default().to_es_json().is_empty());
    }

    #[test]
    fn every_violation_is_reported_in_elasticsearchs_words() {
        let error = parse(json!({
            "max_read_request_operation_count": 0,
            "max_outstanding_write_requests": -4,
            "max_write_buffer_size": "0b",
            "max_retry_delay": "6m",
        }))
        .unwrap()
        .validate()
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "Validation Failed: 1: max_read_request_operation_count must be larger than 0;\
             2: max_outstanding_write_requests must be larger than 0;\
             3: max_write_buffer_size must be larger than 0;\
             4: [max_retry_delay] must be less than [5m] but was [6m];"
        );
        let zero_delay = parse(json!({"max_retry_delay": "0ms"})).unwrap().resolve();
        assert_eq!(
            zero_delay.unwrap_err().to_string(),
            "Validation Failed: 1: [max_retry_delay] must be positive but was [0s];"
        );
        assert!(parse(json!({"max_retry_delay": "5m"}))
            .unwrap()
            .resolve()
            .is_ok());
    }

    #[test]
    fn malformed_values_are_parse_errors_naming_the_field() {
        for (body, field) in [
            (
                json!({"max_read_request_size": "100"}),
                "max_read_request_size",
            ),
            (
                json!({"max_read_request_size": 100}),
                "max_read_request_size",
            ),
            (
                json!({"max_write_buffer_count": 3_000_000_000i64}),
                "max_write_buffer_count",
            ),
            (
                json!({"max_outstanding_read_requests": "many"}),
                "max_outstanding_read_requests",
            ),
            (
                json!({"max_outstanding_read_requests": 1.5}),
                "max_outstanding_read_requests",
            ),
            (json!({"read_poll_timeout": "soon"}), "read_poll_timeout"),
            (json!({"read_poll_timeout": true}), "read_poll_timeout"),
        ] {
            match parse(body.clone()) {
                Err(FollowParametersError::Parse { field: got, .. }) => {
                    assert_eq!(got, field, "{body}")
                }
                other => panic!("{body}: expected a parse error, got {other:?}"),
            }
        }
    }
}
