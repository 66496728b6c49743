//! Running engine calls off the async runtime: they block on fsync and on tantivy, so every
//! handler runs them through [`blocking`], which keeps the runtime's worker threads free.

use axum::http::StatusCode;

use crate::error::RestError;

/// Runs `work` on tokio's blocking pool and returns its result. A panic in `work` (a bug) is a
/// 500, not a crash of the connection.
pub async fn blocking<T, F>(work: F) -> Result<T, RestError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, RestError> + Send + 'static,
{
    tokio::task::spawn_blocking(work).await.map_err(|error| {
        RestError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            format!("the request failed while running: {error}"),
        )
    })?
}
