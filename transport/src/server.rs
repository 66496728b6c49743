//! The leader side of the transport: [`router`] turns a [`LeaderClient`] into internal
//! endpoints under [`PATH_PREFIX`] that answer a follower's
//! [`HttpLeaderClient`](crate::client::HttpLeaderClient), encoded as [`crate::wire`]
//! describes.
//!
//! Every endpoint is a `POST` whose JSON body is the leader API's request type of the call
//! (at most [`MAX_REQUEST_BYTES`]). A request that cannot be parsed is a
//! [`LeaderError::InvalidRequest`]; every error travels as a JSON [`LeaderError`] with a
//! non-2xx status and [`ERROR_HEADER`], so the follower rebuilds the leader's exact error.
//!
//! A long poll (shard changes with a poll timeout) is answered at once as a heartbeat stream
//! ([`crate::wire`]): a heartbeat byte every [`wire::HEARTBEAT_INTERVAL`] while the leader
//! waits, then the outcome. The poll's future lives in the answer's body, so a follower that
//! goes away ends the wait.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tandem_recovery::leader_api::{
    AddRetentionLeaseRequest, CloseRecoverySessionRequest, FailbackSourceRequest,
    IndexMetadataRequest, LeaderClient, OpenRecoverySessionRequest, ReadFileChunkRequest,
    RemoveRetentionLeaseRequest, RenewRetentionLeaseRequest, ShardChangesRequest,
    ShardChangesResponse, VerifyShardRequest,
};
use tandem_recovery::LeaderError;

use crate::wire::{
    self, ERROR_HEADER, HEARTBEAT_HEADER, HEARTBEAT_INTERVAL, MAX_CHANGES_BATCH_BYTES,
};

/// A transport path: [`PATH_PREFIX`] followed by `$suffix`.
macro_rules! transport_path {
    ($suffix:literal) => {
        concat!("/_tandem/v1", $suffix)
    };
}

/// Every transport path starts with this (the version is the protocol's).
pub const PATH_PREFIX: &str = transport_path!("");
/// `index_metadata` endpoint.
pub const INDEX_METADATA_PATH: &str = transport_path!("/index_metadata");
/// `list_indices` endpoint.
pub const LIST_INDICES_PATH: &str = transport_path!("/list_indices");
/// `shard_changes` endpoint (binary frame answer).
pub const SHARD_CHANGES_PATH: &str = transport_path!("/shard_changes");
/// `add_retention_lease` endpoint.
pub const ADD_LEASE_PATH: &str = transport_path!("/retention_lease/add");
/// `renew_retention_lease` endpoint.
pub const RENEW_LEASE_PATH: &str = transport_path!("/retention_lease/renew");
/// `remove_retention_lease` endpoint.
pub const REMOVE_LEASE_PATH: &str = transport_path!("/retention_lease/remove");
/// `open_recovery_session` endpoint.
pub const OPEN_SESSION_PATH: &str = transport_path!("/recovery_session/open");
/// `read_file_chunk` endpoint (raw bytes answer).
pub const READ_CHUNK_PATH: &str = transport_path!("/recovery_session/chunk");
/// `close_recovery_session` endpoint.
pub const CLOSE_SESSION_PATH: &str = transport_path!("/recovery_session/close");
/// `verify_shard` endpoint (heartbeat stream, then the JSON answer).
pub const VERIFY_PATH: &str = transport_path!("/verify");
/// `failback_source` endpoint (JSON in, JSON out).
pub const FAILBACK_PATH: &str = transport_path!("/failback");
/// Largest request body accepted: every request is a small JSON object (an index name, a
/// shard, a lease or a chunk position), so anything larger is refused before it is parsed.
pub const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// Answers with more operation bytes than this are encoded on the blocking pool, so that
/// compressing a large batch does not stall the async workers.
const INLINE_ENCODE_BYTES: usize = 256 * 1024;

/// The leader's state every handler reads.
type Leader = Arc<dyn LeaderClient>;

/// Which leader indices a request's caller may read, set by the embedder's authorization as a
/// request extension (the node puts one on every transport request when its security is on:
/// a cross-cluster API key's `replication` names, or a user's privileges). Every endpoint that
/// names an index checks it before doing anything; `list_indices` lists only the allowed
/// ones. Without the extension, every index is allowed.
#[derive(Clone)]
pub struct IndexAccess(pub Arc<IndexCheck>);

/// Whether the caller may reach one leader index: `Err` is the refusal it gets.
pub type IndexCheck = dyn Fn(&str) -> Result<(), LeaderError> + Send + Sync;

type Access = Option<axum::Extension<IndexAccess>>;

fn check_access(access: &Access, index: &str) -> Result<(), LeaderError> {
    match access {
        Some(axum::Extension(IndexAccess(allowed))) => allowed(index),
        None => Ok(()),
    }
}

/// The transport endpoints over `leader`, to serve alone or to merge into a larger router
/// (whatever its state type `S`).
pub fn router<S>(leader: Arc<dyn LeaderClient>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
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
        .route(VERIFY_PATH, post(verify_shard))
        .route(FAILBACK_PATH, post(failback_source))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(leader)
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
        LeaderError::CorruptedResponse(_) | LeaderError::InvalidResponse(_) => {
            StatusCode::BAD_GATEWAY
        }
        LeaderError::Engine { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        LeaderError::Unauthorized(_) => StatusCode::FORBIDDEN,
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

async fn index_metadata(State(leader): State<Leader>, access: Access, body: Bytes) -> Answer {
    let request: IndexMetadataRequest = parse(&body)?;
    check_access(&access, &request.index)?;
    json(&leader.index_metadata(request).await?)
}

async fn list_indices(State(leader): State<Leader>, access: Access) -> Answer {
    let mut indices = leader.list_indices().await?;
    indices.retain(|summary| check_access(&access, &summary.name).is_ok());
    json(&indices)
}

async fn shard_changes(State(leader): State<Leader>, access: Access, body: Bytes) -> Answer {
    let mut request: ShardChangesRequest = parse(&body)?;
    check_access(&access, &request.shard.index)?;
    request.changes.max_batch_size = request.changes.max_batch_size.min(MAX_CHANGES_BATCH_BYTES);
    if !request.changes.poll_timeout.is_zero() {
        return Ok(long_poll_answer(leader, request));
    }
    let response = leader.shard_changes(request).await?;
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

/// A long poll's answer: a heartbeat stream that ends with the outcome.
fn long_poll_answer(leader: Leader, request: ShardChangesRequest) -> Response {
    heartbeat_answer(async move {
        let frame = match leader.shard_changes(request).await {
            Ok(response) => encode_changes(response).await,
            Err(error) => Err(error),
        };
        Bytes::from(wire::encode_long_poll_outcome(frame))
    })
}

/// A verify step: its work may take as long as a read of the whole shard (opening a session
/// digests every document), so it answers as a heartbeat stream that ends with the JSON
/// answer or the error.
async fn verify_shard(State(leader): State<Leader>, access: Access, body: Bytes) -> Answer {
    let request: VerifyShardRequest = parse(&body)?;
    check_access(&access, &request.shard.index)?;
    Ok(heartbeat_answer(async move {
        let answer = match leader.verify_shard(request).await {
            Ok(response) => serde_json::to_vec(&response).map_err(|e| LeaderError::Engine {
                message: format!("cannot encode the answer: {e}"),
                retryable: false,
            }),
            Err(error) => Err(error),
        };
        Bytes::from(wire::encode_long_poll_outcome(answer))
    }))
}

/// A request of a failback of the old leader of the promoted index it names.
async fn failback_source(State(leader): State<Leader>, access: Access, body: Bytes) -> Answer {
    let request: FailbackSourceRequest = parse(&body)?;
    let index = match &request {
        FailbackSourceRequest::Promotion { index } => index,
        FailbackSourceRequest::Documents { shard, .. } => &shard.index,
    };
    check_access(&access, index)?;
    json(&leader.failback_source(request).await?)
}

/// An answer that is a heartbeat stream until `outcome` is ready, then the outcome.
fn heartbeat_answer(outcome: impl Future<Output = Bytes> + Send + 'static) -> Response {
    let body = HeartbeatBody {
        outcome: Some(Box::pin(outcome)),
        next_heartbeat: Box::pin(tokio::time::sleep(std::time::Duration::ZERO)),
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::HeaderName::from_static(HEARTBEAT_HEADER),
                HeaderValue::from(HEARTBEAT_INTERVAL.as_millis() as u64),
            ),
        ],
        Body::new(body),
    )
        .into_response()
}

/// The body of a long-poll answer: a heartbeat at once and every [`HEARTBEAT_INTERVAL`] until
/// the outcome is ready, then the outcome, then the end. Dropping it (the follower went away)
/// drops the poll.
struct HeartbeatBody {
    outcome: Option<Pin<Box<dyn Future<Output = Bytes> + Send>>>,
    next_heartbeat: Pin<Box<tokio::time::Sleep>>,
}

impl HttpBody for HeartbeatBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        let Some(outcome) = this.outcome.as_mut() else {
            return Poll::Ready(None);
        };
        if let Poll::Ready(bytes) = outcome.as_mut().poll(context) {
            this.outcome = None;
            return Poll::Ready(Some(Ok(http_body::Frame::data(bytes))));
        }
        if this.next_heartbeat.as_mut().poll(context).is_ready() {
            let next = tokio::time::Instant::now() + HEARTBEAT_INTERVAL;
            this.next_heartbeat.as_mut().reset(next);
            return Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(&[
                wire::HEARTBEAT_BYTE,
            ])))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.outcome.is_none()
    }
}

async fn encode_changes(response: ShardChangesResponse) -> Result<Vec<u8>, LeaderError> {
    if response.changes.operations_size_in_bytes() <= INLINE_ENCODE_BYTES {
        return Ok(wire::encode_shard_changes(&response));
    }
    tokio::task::spawn_blocking(move || wire::encode_shard_changes(&response))
        .await
        .map_err(|e| LeaderError::Unavailable(format!("encoding the changes failed: {e}")))
}

async fn add_retention_lease(State(leader): State<Leader>, access: Access, body: Bytes) -> Answer {
    let request: AddRetentionLeaseRequest = parse(&body)?;
    check_access(&access, &request.shard.index)?;
    leader.add_retention_lease(request).await?;
    acknowledged()
}

async fn renew_retention_lease(
    State(leader): State<Leader>,
    access: Access,
    body: Bytes,
) -> Answer {
    let request: RenewRetentionLeaseRequest = parse(&body)?;
    check_access(&access, &request.shard.index)?;
    leader.renew_retention_lease(request).await?;
    acknowledged()
}

async fn remove_retention_lease(
    State(leader): State<Leader>,
    access: Access,
    body: Bytes,
) -> Answer {
    let request: RemoveRetentionLeaseRequest = parse(&body)?;
    check_access(&access, &request.shard.index)?;
    leader.remove_retention_lease(request).await?;
    acknowledged()
}

async fn open_recovery_session(
    State(leader): State<Leader>,
    access: Access,
    body: Bytes,
) -> Answer {
    let request: OpenRecoverySessionRequest = parse(&body)?;
    check_access(&access, &request.shard.index)?;
    json(&leader.open_recovery_session(request).await?)
}

async fn read_file_chunk(State(leader): State<Leader>, access: Access, body: Bytes) -> Answer {
    let request: ReadFileChunkRequest = parse(&body)?;
    check_access(&access, &request.shard.index)?;
    let chunk = leader.read_file_chunk(request).await?;
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

async fn close_recovery_session(
    State(leader): State<Leader>,
    access: Access,
    body: Bytes,
) -> Answer {
    let request: CloseRecoverySessionRequest = parse(&body)?;
    check_access(&access, &request.shard.index)?;
    leader.close_recovery_session(request).await?;
    acknowledged()
}
