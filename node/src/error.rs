//! `RestError`: every failure a REST request can meet, rendered in Elasticsearch's shape
//! `{"error":{"root_cause":[…],"type","reason",…},"status":N}` with `root_cause` always filled
//! and Elasticsearch's status code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use tandem_engine::EngineError;
use tandem_recovery::LeaderError;
use tandem_replication::error::CcrError;

/// An error answer of the REST API.
#[derive(Clone, Debug, PartialEq)]
pub struct RestError {
    /// HTTP status.
    pub status: StatusCode,
    /// Elasticsearch exception type (`index_not_found_exception`, …).
    pub error_type: String,
    /// Human-readable reason.
    pub reason: String,
    /// Extra fields of the error object (`index`, `resource.id`, …).
    pub extra: Map<String, Value>,
}

impl RestError {
    /// An error of the given status, type and reason.
    pub fn new(status: StatusCode, error_type: &str, reason: impl Into<String>) -> RestError {
        RestError {
            status,
            error_type: error_type.to_string(),
            reason: reason.into(),
            extra: Map::new(),
        }
    }

    /// 400 `illegal_argument_exception`.
    pub fn illegal_argument(reason: impl Into<String>) -> RestError {
        RestError::new(
            StatusCode::BAD_REQUEST,
            "illegal_argument_exception",
            reason,
        )
    }

    /// 400 `parse_exception` (a body that is not what the endpoint reads).
    pub fn parse(reason: impl Into<String>) -> RestError {
        RestError::new(StatusCode::BAD_REQUEST, "parse_exception", reason)
    }

    /// 500 `exception`: the node failed (I/O, a task that died), not the request.
    pub fn internal(reason: impl Into<String>) -> RestError {
        RestError::new(StatusCode::INTERNAL_SERVER_ERROR, "exception", reason)
    }

    /// 404 `index_not_found_exception` for `index`.
    pub fn index_not_found(index: &str) -> RestError {
        RestError::new(
            StatusCode::NOT_FOUND,
            "index_not_found_exception",
            format!("no such index [{index}]"),
        )
        .with("index", index)
    }

    /// Adds a field to the error object (and its root cause).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> RestError {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// The JSON body.
    pub fn to_json(&self) -> Value {
        let mut cause = Map::new();
        cause.insert("type".into(), Value::String(self.error_type.clone()));
        cause.insert("reason".into(), Value::String(self.reason.clone()));
        cause.extend(self.extra.clone());
        let mut error = cause.clone();
        error.insert(
            "root_cause".into(),
            Value::Array(vec![Value::Object(cause)]),
        );
        json!({ "error": error, "status": self.status.as_u16() })
    }
}

impl std::fmt::Display for RestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [{}]: {}", self.status, self.error_type, self.reason)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.to_json())).into_response()
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl From<EngineError> for RestError {
    fn from(error: EngineError) -> RestError {
        let rest = RestError::new(status(error.status()), error.type_name(), error.to_string());
        match &error {
            EngineError::IndexNotFound { name }
            | EngineError::IndexClosed { name }
            | EngineError::IndexAlreadyExists { name } => rest.with("index", name.as_str()),
            _ => rest,
        }
    }
}

impl From<CcrError> for RestError {
    fn from(error: CcrError) -> RestError {
        match error {
            CcrError::Engine(engine) => RestError::from(engine),
            other => {
                let rest =
                    RestError::new(status(other.status()), other.type_name(), other.to_string());
                match &other {
                    CcrError::Leader(LeaderError::IndexNotFound(index)) => {
                        rest.with("index", index.as_str())
                    }
                    _ => rest,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tandem_recovery::error::RecoveryError;

    use super::*;

    #[test]
    fn the_body_has_the_elasticsearch_shape_with_a_root_cause() {
        let body = RestError::index_not_found("logs").to_json();
        assert_eq!(body["status"], 404);
        assert_eq!(body["error"]["type"], "index_not_found_exception");
        assert_eq!(body["error"]["reason"], "no such index [logs]");
        assert_eq!(body["error"]["index"], "logs");
        let root = &body["error"]["root_cause"][0];
        assert_eq!(root["type"], "index_not_found_exception");
        assert_eq!(root["index"], "logs");
        assert!(root.get("root_cause").is_none());
    }

    fn io_error() -> std::io::Error {
        std::io::Error::other("disk failed")
    }

    fn json_error() -> serde_json::Error {
        serde_json::from_str::<Value>("{").unwrap_err()
    }

    #[test]
    fn io_and_corruption_errors_are_server_errors_never_illegal_argument() {
        let engine_io = EngineError::Io {
            path: "data/indices/a/0/index".into(),
            source: io_error(),
        };
        let engine_corrupted = EngineError::Corrupted {
            path: "data/indices/a/index_metadata.json".into(),
            reason: "invalid index metadata".into(),
        };
        let answers = [
            (RestError::from(engine_io), "engine_exception"),
            (RestError::from(engine_corrupted), "corrupt_index_exception"),
            (
                RestError::from(CcrError::Io {
                    path: "data/ccr_followers.json".into(),
                    source: io_error(),
                }),
                "exception",
            ),
            (
                RestError::from(CcrError::Corrupted {
                    path: "data/ccr_followers.json".into(),
                    source: json_error(),
                }),
                "exception",
            ),
            (
                RestError::from(CcrError::Engine(EngineError::Io {
                    path: "data/indices/b/0/translog".into(),
                    source: io_error(),
                })),
                "engine_exception",
            ),
            (
                RestError::from(CcrError::Recovery(RecoveryError::Io {
                    path: "data/indices/b/0/index/meta.json".into(),
                    source: io_error(),
                })),
                "exception",
            ),
        ];
        for (rest, error_type) in answers {
            assert_eq!(rest.status, StatusCode::INTERNAL_SERVER_ERROR, "{rest}");
            assert_eq!(rest.error_type, error_type, "{rest}");
            assert_eq!(rest.to_json()["status"], 500);
        }
    }

    #[test]
    fn lifecycle_errors_keep_their_status_and_type() {
        let rest = RestError::from(CcrError::NotAFollower("x".into()));
        assert_eq!(rest.status, StatusCode::BAD_REQUEST);
        assert_eq!(rest.error_type, "illegal_argument_exception");
        assert_eq!(rest.reason, "index [x] is not a follower index");
        let rest = RestError::from(CcrError::NoSuchRemoteCluster("r".into()));
        assert_eq!(rest.status, StatusCode::NOT_FOUND);
        assert_eq!(rest.reason, "no such remote cluster: [r]");
    }
}
