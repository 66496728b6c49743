//! The leader side of the transport: internal endpoints under [`PATH_PREFIX`] that answer a
//! follower's [`HttpLeaderClient`](super::client::HttpLeaderClient) from the node's
//! in-process leader client (`node.leader`), encoded as [`super::wire`] describes.
//!
//! Every endpoint is a `POST` with a JSON request body. A request that cannot be parsed is a
//! [`LeaderError::InvalidRequest`]; every error travels as a JSON [`LeaderError`] with a
//! non-2xx status and [`ERROR_HEADER`], so the follower rebuilds the leader's exact error.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tandem_recovery::client::{LeaderClient, ShardChangesRequest, ShardChangesResponse};
use tandem_recovery::error::LeaderError;

use super::wire::{
    self, AddLeaseRequest, CloseSessionRequest, IndexMetadataRequest, OpenSessionRequest,
    ReadChunkRequest, RemoveLeaseRequest, RenewLeaseRequest, ShardChangesWireRequest, ERROR_HEADER,
    MAX_CHANGES_BATCH_BYTES,
};
use crate::rest::NodeState;

/// Every transport path starts with this (the version is the protocol's).
pub const PATH_PREFIX: &str = "/_tandem/v1";
/// `index_metadata` endpoint.
pub const INDEX_METADATA_PATH: &str = "/_tandem/v1/index_metadata";
/// `list_indices` endpoint.
pub const LIST_INDICES_PATH: &str = "/_tandem/v1/list_indices";
/// `shard_changes` endpoint (binary frame answer).
pub const SHARD_CHANGES_PATH: &str = "/_tandem/v1/shard_changes";
/// `add_retention_lease` endpoint.
pub const ADD_LEASE_PATH: &str = "/_tandem/v1/retention_lease/add";
/// `renew_retention_lease` endpoint.
pub const RENEW_LEASE_PATH: &str = "/_tandem/v1/retention_lease/renew";
/// `remove_retention_lease` endpoint.
pub const REMOVE_LEASE_PATH: &str = "/_tandem/v1/retention_lease/remove";
/// `open_recovery_session` endpoint.
pub const OPEN_SESSION_PATH: &str = "/_tandem/v1/recovery_session/open";
/// `read_file_chunk` endpoint (raw bytes answer).
pub const READ_CHUNK_PATH: &str = "/_tandem/v1/recovery_session/chunk";
/// `close_recovery_session` endpoint.
pub const CLOSE_SESSION_PATH: &str = "/_tandem/v1/recovery_session/close";
/// Answers with more operation bytes than this are encoded on the blocking pool, so that
/// compressing a large batch does not stall the async workers.
const INLINE_ENCODE_BYTES: usize = 256 * 1024;

/// The transport endpoints, to merge into the node's router.
pub fn routes() -> Router<NodeState> {
    Router::new()
        .route(INDEX_METADATA_PATH, post(index_metadata))
        .route(LIST_INDICES_PATH, post(list_indices))
        .route(SHARD_CHANGES_PATH, post(shard_changes))
        .route(ADD_LEASE_PATH, post(add_retention_lease))
        .route(RENEW_LEASE_PATH, post(renew_retention_lease))
        .route(REMOVE_LEASE_PATH, post(remove_retention_lease))
        .route(OPEN_SESSION_PATH, post(open_recovery_session))
        .route(READ_CHUNK_PATH, post(read_file_chunk))
        .route(CLOSE_SESSION_PATH, post(close_recovery_session))
}

/// A [`LeaderError`] as a transport answer.
pub struct TransportError(pub LeaderError);

impl From<LeaderError> for TransportError {
    fn from(error: LeaderError) -> Self {
        TransportError(error)
    }
}

/// The HTTP status of an error (informative: the follower reads the body).
pub fn status_of(error: &LeaderError) -> StatusCode {
    match error {
        LeaderError::UnknownSession(_)
        | LeaderError::IndexNotFound(_)
        | LeaderError::ShardNotFound { .. }
        | LeaderError::UnknownFile { .. }
        | LeaderError::RetentionLeaseNotFound(_)
        | LeaderError::MissingHistory { .. } => StatusCode::NOT_FOUND,
        LeaderError::RetentionLeaseAlreadyExists(_) | LeaderError::HistoryUuidMismatch { .. } => {
            StatusCode::CONFLICT
        }
        LeaderError::IndexClosed(_) | LeaderError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
        LeaderError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        LeaderError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        LeaderError::CorruptedResponse(_) => StatusCode::BAD_GATEWAY,
        LeaderError::Engine { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for TransportError {
    fn into_response(self) -> Response {
        let status = status_of(&self.0);
        match serde_json::to_vec(&self.0) {
            Ok(body) => (
                status,
                [
                    (header::CONTENT_TYPE, "application/json"),
                    (header::HeaderName::from_static(ERROR_HEADER), "leader"),
                ],
                body,
            )
                .into_response(),
            Err(error) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode the leader error: {error}"),
            )
                .into_response(),
        }
    }
}

type Answer = Result<Response, TransportError>;

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, LeaderError> {
    serde_json::from_slice(body)
        .map_err(|e| LeaderError::InvalidRequest(format!("malformed transport request: {e}")))
}

fn json<T: Serialize>(value: &T) -> Answer {
    let body = serde_json::to_vec(value).map_err(|e| LeaderError::Engine {
        message: format!("cannot encode the answer: {e}"),
        retryable: false,
    })?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The empty acknowledgement of a lease or session change.
fn acknowledged() -> Answer {
    json(&serde_json::json!({}))
}

async fn index_metadata(State(node): State<NodeState>, body: Bytes) -> Answer {
    let request: IndexMetadataRequest = parse(&body)?;
    json(&node.leader.index_metadata(&request.index).await?)
}

async fn list_indices(State(node): State<NodeState>) -> Answer {
    json(&node.leader.list_indices().await?)
}

async fn shard_changes(State(node): State<NodeState>, body: Bytes) -> Answer {
    let request: ShardChangesWireRequest = parse(&body)?;
    let max_operations = usize::try_from(request.max_operations).unwrap_or(usize::MAX);
    let max_bytes = usize::try_from(request.max_bytes)
        .unwrap_or(usize::MAX)
        .min(MAX_CHANGES_BATCH_BYTES);
    let response = node
        .leader
        .shard_changes(ShardChangesRequest {
            shard: request.shard,
            from_seq_no: request.from_seq_no,
            max_operations,
            max_bytes,
            poll_timeout: request.poll_timeout,
            expected_history_uuid: request.expected_history_uuid,
        })
        .await?;
    let frame = encode_changes(response).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        )],
        frame,
    )
        .into_response())
}

async fn encode_changes(response: ShardChangesResponse) -> Result<Vec<u8>, LeaderError> {
    let operation_bytes: usize = response
        .operations
        .iter()
        .map(|operation| operation.size_in_bytes())
        .sum();
    if operation_bytes <= INLINE_ENCODE_BYTES {
        return Ok(wire::encode_shard_changes(&response));
    }
    tokio::task::spawn_blocking(move || wire::encode_shard_changes(&response))
        .await
        .map_err(|e| LeaderError::Unavailable(format!("encoding the changes failed: {e}")))
}

async fn add_retention_lease(State(node): State<NodeState>, body: Bytes) -> Answer {
    let request: AddLeaseRequest = parse(&body)?;
    node.leader
        .add_retention_lease(
            request.shard,
            request.lease_id,
            request.retaining_seq_no,
            request.source,
        )
        .await?;
    acknowledged()
}

async fn renew_retention_lease(State(node): State<NodeState>, body: Bytes) -> Answer {
    let request: RenewLeaseRequest = parse(&body)?;
    node.leader
        .renew_retention_lease(request.shard, request.lease_id, request.retaining_seq_no)
        .await?;
    acknowledged()
}

async fn remove_retention_lease(State(node): State<NodeState>, body: Bytes) -> Answer {
    let request: RemoveLeaseRequest = parse(&body)?;
    node.leader
        .remove_retention_lease(request.shard, request.lease_id)
        .await?;
    acknowledged()
}

async fn open_recovery_session(State(node): State<NodeState>, body: Bytes) -> Answer {
    let request: OpenSessionRequest = parse(&body)?;
    json(&node.leader.open_recovery_session(request.shard).await?)
}

async fn read_file_chunk(State(node): State<NodeState>, body: Bytes) -> Answer {
    let request: ReadChunkRequest = parse(&body)?;
    let length = usize::try_from(request.length).unwrap_or(usize::MAX);
    let chunk = node
        .leader
        .read_file_chunk(
            request.shard,
            request.session,
            request.file,
            request.offset,
            length,
        )
        .await?;
    // Without compression, encoding is a checksum: cheap enough to run inline.
    let (chunk_header, body) = if !wire::COMPRESS_CHUNKS || chunk.data.len() <= INLINE_ENCODE_BYTES
    {
        wire::encode_chunk(chunk, wire::COMPRESS_CHUNKS)
    } else {
        tokio::task::spawn_blocking(move || wire::encode_chunk(chunk, wire::COMPRESS_CHUNKS))
            .await
            .map_err(|e| LeaderError::Unavailable(format!("encoding the chunk failed: {e}")))?
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    for (name, value) in chunk_header.to_pairs() {
        let value = HeaderValue::from_str(&value).map_err(|e| LeaderError::Engine {
            message: format!("cannot encode chunk header [{name}]: {e}"),
            retryable: false,
        })?;
        headers.insert(name, value);
    }
    Ok(response)
}

async fn close_recovery_session(State(node): State<NodeState>, body: Bytes) -> Answer {
    let request: CloseSessionRequest = parse(&body)?;
    node.leader
        .close_recovery_session(request.shard, request.session)
        .await?;
    acknowledged()
}
