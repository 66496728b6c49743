//! Request bodies: JSON (and ndjson) under the media types Elasticsearch accepts.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use serde_json::Value;
use tandem_engine::strict_json;

use crate::error::RestError;

/// The raw body of a request whose media type is one Elasticsearch accepts for JSON or ndjson;
/// empty when the request had none.
#[derive(Clone, Debug, Default)]
pub struct RawBody(pub Bytes);

/// A JSON body, `None` when the request had none. Malformed JSON is a 400 `parse_exception`.
#[derive(Clone, Debug, Default)]
pub struct JsonBody(pub Option<Value>);

impl JsonBody {
    /// The body, or an empty object when there was none.
    pub fn or_empty(self) -> Value {
        self.0.unwrap_or_else(|| Value::Object(Default::default()))
    }
}

/// Checks a `Content-Type` value: `application/json`, `application/x-ndjson`, their
/// `vnd.elasticsearch+…` compatibility forms with `compatible-with=7|8|9`, and `text/plain`
/// (curl's `-d` default is form-encoded, which Elasticsearch refuses too).
pub fn check_media_type(value: &str) -> Result<(), RestError> {
    let mut parts = value.split(';').map(str::trim);
    let essence = parts.next().unwrap_or("").to_ascii_lowercase();
    let compatible = parts
        .filter_map(|parameter| parameter.split_once('='))
        .find(|(key, _)| key.trim().eq_ignore_ascii_case("compatible-with"))
        .map(|(_, version)| version.trim().trim_matches('"').to_string());
    match essence.as_str() {
        "application/json" | "application/x-ndjson" | "text/plain" => Ok(()),
        "application/vnd.elasticsearch+json" | "application/vnd.elasticsearch+x-ndjson" => {
            match compatible.as_deref() {
                Some("7" | "8" | "9") => Ok(()),
                Some(other) => Err(RestError::new(
                    StatusCode::BAD_REQUEST,
                    "media_type_header_exception",
                    format!(
                        "Invalid media-type value on headers [Content-Type]: compatible-with={other} is not supported (7, 8 and 9 are)"
                    ),
                )),
                None => Err(RestError::new(
                    StatusCode::BAD_REQUEST,
                    "media_type_header_exception",
                    format!("Invalid media-type value on headers [Content-Type]: [{value}] lacks compatible-with"),
                )),
            }
        }
        _ => Err(RestError::new(
            StatusCode::NOT_ACCEPTABLE,
            "media_type_header_exception",
            format!("Content-Type header [{value}] is not supported"),
        )),
    }
}

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = RestError;

    async fn from_request(request: Request, state: &S) -> Result<RawBody, RestError> {
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .map(|value| value.to_str().unwrap_or("").to_string());
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    RestError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "content_too_long_exception",
                        format!(
                            "request body is larger than the limit of [{}] bytes",
                            super::MAX_BODY_BYTES
                        ),
                    )
                } else {
                    RestError::parse(format!("cannot read the request body: {rejection}"))
                }
            })?;
        if !bytes.is_empty() {
            if let Some(content_type) = content_type {
                check_media_type(&content_type)?;
            }
        }
        Ok(RawBody(bytes))
    }
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = RestError;

    async fn from_request(request: Request, state: &S) -> Result<JsonBody, RestError> {
        let RawBody(bytes) = RawBody::from_request(request, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(None));
        }
        strict_json::from_slice(&bytes)
            .map(|value| JsonBody(Some(value)))
            .map_err(|error| body_parse_error(&error))
    }
}

/// A body that is not JSON, or holds a key twice: 400 `x_content_parse_exception`, with the
/// position as Elasticsearch gives it (`[1:10] Duplicate field 'f'`).
pub fn body_parse_error(error: &serde_json::Error) -> RestError {
    let reason = if strict_json::is_duplicate_key(error) {
        strict_json::describe(error)
    } else {
        format!(
            "[{}:{}] failed to parse the request body: {error}",
            error.line(),
            error.column()
        )
    };
    RestError::new(StatusCode::BAD_REQUEST, "x_content_parse_exception", reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_elasticsearch_accepts() {
        for ok in [
            "application/json",
            "application/json; charset=UTF-8",
            "application/x-ndjson",
            "application/vnd.elasticsearch+json; compatible-with=8",
            "application/vnd.elasticsearch+json;compatible-with=9",
            "application/vnd.elasticsearch+x-ndjson; compatible-with=7",
        ] {
            assert!(check_media_type(ok).is_ok(), "{ok}");
        }
        let old = check_media_type("application/vnd.elasticsearch+json; compatible-with=6");
        assert_eq!(old.unwrap_err().status, StatusCode::BAD_REQUEST);
        let form = check_media_type("application/x-www-form-urlencoded");
        assert_eq!(form.unwrap_err().status, StatusCode::NOT_ACCEPTABLE);
    }
}
