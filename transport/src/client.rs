//! [`HttpLeaderClient`]: the [`LeaderClient`] a follower cluster uses to reach a leader
//! cluster's transport endpoints over HTTP.
//!
//! - One pooled HTTP/1.1 client (hyper's, over [`crate::connector`]) serves every request, so
//!   chunk reads, long polls and lease renewals run side by side on pooled keep-alive
//!   connections.
//! - The leader is reached through a list of `host:port` addresses (the remote cluster's
//!   `seeds` or `proxy_address`): a request starts at the address that last worked and moves
//!   to the next one when it cannot connect (the request never left, so trying elsewhere is
//!   safe for every call); when none connects the error is [`LeaderError::Unavailable`].
//! - Every request has a deadline tied to what it waits for ([`HttpTransportSettings`]): a
//!   long poll its poll timeout plus a margin, a file chunk the leader's throttle
//!   (`chunk_timeout`), anything else a few seconds (`request_timeout`). A timeout is
//!   [`LeaderError::Timeout`], a reset connection [`LeaderError::Unavailable`], both
//!   retryable.
//!
//! ## Dead connections
//!
//! A connection that stops delivering bytes without closing (a black hole: a stateful
//! firewall or NAT entry that forgot it, a proxy whose far side died) is noticed within
//! `idle_timeout` (4 s), whatever the request waits for:
//! - every answer's body must keep arriving: a gap of `idle_timeout` between two pieces ends
//!   the request;
//! - a long poll, the one request that legitimately waits long in silence, is answered as a
//!   heartbeat stream ([`crate::wire`]): its headers must arrive within `idle_timeout` and
//!   the leader sends a heartbeat every second while it waits, so silence means death, not
//!   patience;
//! - the sockets carry TCP keep-alive probes (after 2 s idle, every second) and
//!   `TCP_USER_TIMEOUT` ([`TCP_USER_TIMEOUT`]): the kernel closes a connection whose peer
//!   stopped acknowledging, which covers a request waiting for its headers (a lease, a
//!   throttled chunk) when the network itself drops the packets.
//!
//! Why a heartbeat rather than HTTP/2 keep-alive pings: the leader's port also serves
//! Elasticsearch's REST API over HTTP/1.1, pings would put every follow request of a node on
//! one multiplexed connection (1 MB chunks beside latency-bound long polls, under one flow
//! control window), and a ping proves the leader's connection task is alive, not that the
//! request's bytes flow. Why not TCP keep-alive alone: it sees only the kernel of the next
//! hop, so a proxy (or an in-test fault proxy) that stops forwarding while its own kernel
//! acknowledges goes unnoticed. The heartbeat is seen end to end, by the same reads that
//! carry the answer.
//! - Answers are checked where they enter: bounded body sizes, frame checksums, chunk lengths
//!   and checksums, and operations contiguous from the requested sequence number. A defect is
//!   [`LeaderError::CorruptedResponse`] (retryable).

use std::error::Error as StdError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tandem_engine::index::IndexMetadata;
use tandem_recovery::chunk_bytes::ChunkBytes;
use tandem_recovery::in_process::MAX_POLL_TIMEOUT;
use tandem_recovery::leader_api::{
    AddRetentionLeaseRequest, CloseRecoverySessionRequest, FailbackSourceRequest,
    FailbackSourceResponse, FileChunk, IndexMetadataRequest, LeaderClient, LeaderFuture,
    LeaderIndexSummary, OpenRecoverySessionRequest, ReadFileChunkRequest, RecoverySessionInfo,
    RemoveRetentionLeaseRequest, RenewRetentionLeaseRequest, ShardChangesRequest,
    ShardChangesResponse, VerifyShardRequest, VerifyShardResponse,
};
use tandem_recovery::source::MAX_CHUNK_BYTES;
use tandem_recovery::LeaderError;

use crate::connector::LeaderConnector;
use crate::server::{
    ADD_LEASE_PATH, CLOSE_SESSION_PATH, FAILBACK_PATH, INDEX_METADATA_PATH, LIST_INDICES_PATH,
    OPEN_SESSION_PATH, READ_CHUNK_PATH, REMOVE_LEASE_PATH, RENEW_LEASE_PATH, SHARD_CHANGES_PATH,
    VERIFY_PATH,
};
use crate::wire::{
    self, ChunkHeader, ERROR_HEADER, FRAME_HEADER_BYTES, HEARTBEAT_BYTE, HEARTBEAT_HEADER,
    MAX_FRAME_BODY_BYTES,
};

/// Largest JSON answer accepted (index metadata with large mappings stays far below).
pub const MAX_JSON_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// Largest error answer accepted.
const MAX_ERROR_ANSWER_BYTES: usize = 1024 * 1024;
/// Frames larger than this are decoded on the blocking pool.
const INLINE_DECODE_BYTES: usize = 256 * 1024;

/// Idle time of a connection before the kernel sends TCP keep-alive probes.
pub const TCP_KEEPALIVE_IDLE: Duration = Duration::from_secs(2);
/// Interval between TCP keep-alive probes.
pub const TCP_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// Unacknowledged probes before the kernel gives a connection up.
pub const TCP_KEEPALIVE_RETRIES: u32 = 3;
/// Longest time sent bytes (or keep-alive probes) may stay unacknowledged before the kernel
/// closes the connection (Linux `TCP_USER_TIMEOUT`).
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The pooled HTTP client.
type HttpClient = Client<LeaderConnector, Full<Bytes>>;

/// Deadlines and pool size of an [`HttpLeaderClient`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpTransportSettings {
    /// Longest wait for a TCP connection to one address.
    pub connect_timeout: Duration,
    /// Longest wait for a whole answer (body included) of a request that waits for nothing
    /// but the leader's work: leases, metadata, sessions, reads without a poll.
    pub request_timeout: Duration,
    /// Longest wait for a whole file chunk: the leader holds it back to keep its recovery
    /// rate, so it may wait behind the other chunks in flight.
    pub chunk_timeout: Duration,
    /// Added to a long poll's own timeout (capped at the leader's longest,
    /// [`MAX_POLL_TIMEOUT`]) to give its answer time to arrive.
    pub long_poll_margin: Duration,
    /// Longest silence accepted from a connection that owes bytes: between two pieces of any
    /// answer's body, and before a long poll's headers (see the module documentation).
    pub idle_timeout: Duration,
    /// Idle connections kept per leader address.
    pub max_idle_connections_per_address: usize,
}

impl Default for HttpTransportSettings {
    fn default() -> Self {
        HttpTransportSettings {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            chunk_timeout: Duration::from_secs(30),
            long_poll_margin: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(4),
            max_idle_connections_per_address: 32,
        }
    }
}

/// How long a request may take.
#[derive(Clone, Copy, Debug)]
struct Deadline {
    /// The whole request, answer included.
    total: Duration,
    /// Until the answer's headers arrive.
    headers: Duration,
}

/// A [`LeaderClient`] over HTTP (see the module documentation).
pub struct HttpLeaderClient {
    /// Replaced whole by [`HttpLeaderClient::set_addresses`]; each request reads it once.
    addresses: parking_lot::RwLock<Arc<Vec<String>>>,
    /// The pooled client.
    http: HttpClient,
    settings: HttpTransportSettings,
    /// Index into `addresses` of the address that last connected.
    preferred: AtomicUsize,
    /// The scheme of an address given without one: `https` when the client was built with a
    /// TLS configuration.
    default_scheme: &'static str,
    /// The `Authorization` header every request carries (a cross-cluster API key), replaced
    /// whole by [`HttpLeaderClient::set_credentials`].
    credentials: parking_lot::RwLock<Option<HeaderValue>>,
}

/// How an answer's body is read back.
enum Expect {
    Json,
    Frame,
    Chunk { requested_length: usize },
}

impl Expect {
    fn limit(&self) -> usize {
        match self {
            // One more for the outcome tag of a heartbeat stream's answer (a verify step).
            Expect::Json => MAX_JSON_ANSWER_BYTES + 1,
            // One more for the outcome tag of a long poll's answer.
            Expect::Frame => 1 + FRAME_HEADER_BYTES + MAX_FRAME_BODY_BYTES,
            Expect::Chunk { requested_length } => *requested_length,
        }
    }
}

impl HttpLeaderClient {
    /// A client of the leader cluster reachable at `addresses` (`host:port`, tried in order),
    /// with default settings.
    pub fn new(addresses: Vec<String>) -> HttpLeaderClient {
        HttpLeaderClient::with_settings(addresses, HttpTransportSettings::default())
    }

    /// A client with explicit timeouts and pool size.
    pub fn with_settings(
        addresses: Vec<String>,
        settings: HttpTransportSettings,
    ) -> HttpLeaderClient {
        HttpLeaderClient::with_tls(addresses, settings, None)
    }

    /// A client that reaches the leader over TLS when `tls` is given (see [`crate::tls`]):
    /// addresses without a scheme are dialled as `https://`, and the leader's certificate must
    /// verify against the configuration's certificate authorities and name the address.
    pub fn with_tls(
        addresses: Vec<String>,
        settings: HttpTransportSettings,
        tls: Option<rustls::ClientConfig>,
    ) -> HttpLeaderClient {
        let default_scheme = if tls.is_some() { "https" } else { "http" };
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(settings.connect_timeout));
        tcp.set_nodelay(true);
        tcp.set_keepalive(Some(TCP_KEEPALIVE_IDLE));
        tcp.set_keepalive_interval(Some(TCP_KEEPALIVE_INTERVAL));
        tcp.set_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES));
        #[cfg(target_os = "linux")]
        tcp.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT));
        let http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(settings.max_idle_connections_per_address)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(LeaderConnector::new(tcp, tls));
        HttpLeaderClient {
            addresses: parking_lot::RwLock::new(Arc::new(addresses)),
            http,
            settings,
            preferred: AtomicUsize::new(0),
            default_scheme,
            credentials: parking_lot::RwLock::new(None),
        }
    }

    /// The leader addresses, in the order they are tried.
    pub fn addresses(&self) -> Vec<String> {
        self.addresses.read().as_ref().clone()
    }

    /// Points the client at other addresses of the leader cluster (a remote cluster's seeds
    /// or proxy address changed): requests from now on use them, including those of follow
    /// tasks already running with this client.
    pub fn set_addresses(&self, addresses: Vec<String>) {
        *self.addresses.write() = Arc::new(addresses);
        self.preferred.store(0, Ordering::Relaxed);
    }

    /// Sends `encoded` (a cross-cluster API key, `base64(id:key)`) as
    /// `Authorization: ApiKey` on every request from now on, or nothing with `None`. A value
    /// that cannot be a header is refused.
    pub fn set_credentials(&self, encoded: Option<&str>) -> Result<(), String> {
        let header = encoded
            .map(|encoded| {
                let mut value = HeaderValue::from_str(&format!("ApiKey {encoded}"))
                    .map_err(|_| "the credentials are not a valid header value".to_string())?;
                value.set_sensitive(true);
                Ok::<_, String>(value)
            })
            .transpose()?;
        *self.credentials.write() = header;
        Ok(())
    }

    fn url(address: &str, path: &str, default_scheme: &str) -> String {
        let address = address.trim_end_matches('/');
        if address.starts_with("http://") || address.starts_with("https://") {
            format!("{address}{path}")
        } else {
            format!("{default_scheme}://{address}{path}")
        }
    }

    /// Sends `body` to `path`, trying the addresses from the preferred one on, and returns the
    /// successful answer; error answers are decoded into the leader's error.
    async fn send(
        &self,
        path: &str,
        body: Vec<u8>,
        deadline: Deadline,
    ) -> Result<hyper::Response<Incoming>, LeaderError> {
        let timeout = deadline.total;
        let body = Bytes::from(body);
        let addresses = self.addresses.read().clone();
        if addresses.is_empty() {
            return Err(LeaderError::Unavailable(
                "the remote cluster has no address".to_string(),
            ));
        }
        let first = self.preferred.load(Ordering::Relaxed) % addresses.len();
        let mut failures = Vec::new();
        for attempt in 0..addresses.len() {
            let at = (first + attempt) % addresses.len();
            let address = &addresses[at];
            let mut request = hyper::Request::post(Self::url(address, path, self.default_scheme))
                .header(CONTENT_TYPE, "application/json");
            if let Some(credentials) = self.credentials.read().clone() {
                request = request.header(AUTHORIZATION, credentials);
            }
            let request = match request.body(Full::new(body.clone())) {
                Ok(request) => request,
                // Nothing was sent: the next address may be a good one.
                Err(error) => {
                    failures.push(format!("[{address}] is not a valid address: {error}"));
                    continue;
                }
            };
            let sending = self.http.request(request);
            // Past the header deadline (or the whole request's, if sooner) the request may
            // have reached the leader: it is not sent elsewhere, and dropping it closes its
            // connection.
            let headers_within = deadline.headers.min(timeout);
            let Ok(sent) = tokio::time::timeout(headers_within, sending).await else {
                return Err(LeaderError::Timeout(headers_within));
            };
            match sent {
                Ok(response) => {
                    self.preferred.store(at, Ordering::Relaxed);
                    return check_status(response, timeout, self.settings.idle_timeout).await;
                }
                Err(error) if error.is_connect() => {
                    failures.push(format!("[{address}]: {}", describe(&error)));
                }
                Err(error) => return Err(transport_error(&error, address)),
            }
        }
        Err(LeaderError::Unavailable(format!(
            "cannot connect to the leader: {}",
            failures.join("; ")
        )))
    }

    /// Sends a JSON request and reads the answer as `expect` says.
    async fn call<Request: Serialize>(
        &self,
        path: &str,
        request: &Request,
        deadline: Deadline,
        expect: &Expect,
    ) -> Result<(HeaderMap, Vec<u8>), LeaderError> {
        let (headers, pieces) = self
            .call_for_pieces(path, request, deadline, expect)
            .await?;
        Ok((headers, pieces.to_vec()))
    }

    /// [`HttpLeaderClient::call`] whose answer stays in the pieces it arrived in.
    async fn call_for_pieces<Request: Serialize>(
        &self,
        path: &str,
        request: &Request,
        deadline: Deadline,
        expect: &Expect,
    ) -> Result<(HeaderMap, ChunkBytes), LeaderError> {
        let body = serde_json::to_vec(request)
            .map_err(|e| LeaderError::InvalidRequest(format!("cannot encode the request: {e}")))?;
        let started = tokio::time::Instant::now();
        let response = self.send(path, body, deadline).await?;
        let headers = response.headers().clone();
        let heartbeats = headers.contains_key(HEARTBEAT_HEADER);
        let reading = BodyReading {
            limit: expect.limit(),
            timeout: deadline.total,
            ends_at: started + deadline.total,
            idle_timeout: self.settings.idle_timeout,
            skip_heartbeats: heartbeats,
        };
        let body = read_body(response, reading).await?;
        Ok((headers, body))
    }

    /// The deadline of a request that waits only for the leader's work.
    fn plain_deadline(&self, total: Duration) -> Deadline {
        Deadline {
            total,
            headers: total,
        }
    }

    async fn call_json<Request: Serialize, Answer: DeserializeOwned>(
        &self,
        path: &str,
        request: &Request,
    ) -> Result<Answer, LeaderError> {
        let deadline = self.plain_deadline(self.settings.request_timeout);
        let (_, body) = self.call(path, request, deadline, &Expect::Json).await?;
        serde_json::from_slice(&body)
            .map_err(|e| LeaderError::CorruptedResponse(format!("malformed JSON answer: {e}")))
    }

    /// A call whose answer is an empty acknowledgement.
    async fn call_acknowledged<Request: Serialize>(
        &self,
        path: &str,
        request: &Request,
    ) -> Result<(), LeaderError> {
        let _: serde_json::Value = self.call_json(path, request).await?;
        Ok(())
    }

    async fn fetch_shard_changes(
        &self,
        request: ShardChangesRequest,
    ) -> Result<ShardChangesResponse, LeaderError> {
        let deadline = if request.changes.poll_timeout.is_zero() {
            self.plain_deadline(self.settings.request_timeout)
        } else {
            // A long poll's answer starts at once (a heartbeat stream): waiting longer for
            // its headers than for any other silence would only delay noticing a dead link.
            Deadline {
                total: request.changes.poll_timeout.min(MAX_POLL_TIMEOUT)
                    + self.settings.long_poll_margin,
                headers: self.settings.idle_timeout,
            }
        };
        let (headers, answer) = self
            .call(SHARD_CHANGES_PATH, &request, deadline, &Expect::Frame)
            .await?;
        // A heartbeat stream's heartbeats were skipped as it arrived; its outcome tag remains.
        let frame_start = if headers.contains_key(HEARTBEAT_HEADER) {
            let frame = wire::split_long_poll_outcome(&answer)?;
            answer.len() - frame.len()
        } else {
            0
        };
        let response = if answer.len() - frame_start <= INLINE_DECODE_BYTES {
            wire::decode_shard_changes(&answer[frame_start..])?
        } else {
            tokio::task::spawn_blocking(move || wire::decode_shard_changes(&answer[frame_start..]))
                .await
                .map_err(|e| LeaderError::Unavailable(format!("decoding failed: {e}")))??
        };
        // The batch's numbers and shape are checked by `CheckedLeaderClient`, which wraps
        // every remote cluster's client.
        Ok(response)
    }

    async fn fetch_verify(
        &self,
        request: VerifyShardRequest,
    ) -> Result<VerifyShardResponse, LeaderError> {
        // The answer is a heartbeat stream: silence longer than the idle timeout is a dead link.
        let deadline = Deadline {
            total: wire::VERIFY_STEP_DEADLINE,
            headers: self.settings.idle_timeout,
        };
        let (headers, answer) = self
            .call(VERIFY_PATH, &request, deadline, &Expect::Json)
            .await?;
        let json = if headers.contains_key(HEARTBEAT_HEADER) {
            wire::split_long_poll_outcome(&answer)?
        } else {
            &answer[..]
        };
        serde_json::from_slice(json)
            .map_err(|e| LeaderError::CorruptedResponse(format!("malformed verify answer: {e}")))
    }

    async fn fetch_chunk(&self, request: ReadFileChunkRequest) -> Result<FileChunk, LeaderError> {
        let requested_length = request.length;
        // The leader refuses oversized chunks; the answer limit must not be what refuses them.
        let expect = Expect::Chunk {
            requested_length: requested_length.min(MAX_CHUNK_BYTES),
        };
        let (headers, body) = self
            .call_for_pieces(
                READ_CHUNK_PATH,
                &request,
                self.plain_deadline(self.settings.chunk_timeout),
                &expect,
            )
            .await?;
        let header = ChunkHeader::parse(|name| headers.get(name).and_then(|v| v.to_str().ok()))?;
        if body.len() <= INLINE_DECODE_BYTES {
            wire::decode_chunk(&header, body, requested_length)
        } else {
            tokio::task::spawn_blocking(move || wire::decode_chunk(&header, body, requested_length))
                .await
                .map_err(|e| LeaderError::Unavailable(format!("decoding failed: {e}")))?
        }
    }
}

/// The chain of an error's causes, in one line (hyper's own message is terse).
fn describe(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn transport_error(error: &hyper_util::client::legacy::Error, address: &str) -> LeaderError {
    LeaderError::Unavailable(format!(
        "request to [{address}] failed: {}",
        describe(error)
    ))
}

/// Passes a 2xx answer through; decodes an error answer into the leader's error.
async fn check_status(
    response: hyper::Response<Incoming>,
    timeout: Duration,
    idle_timeout: Duration,
) -> Result<hyper::Response<Incoming>, LeaderError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let from_leader = response.headers().contains_key(ERROR_HEADER);
    let reading = BodyReading {
        limit: MAX_ERROR_ANSWER_BYTES,
        timeout,
        ends_at: tokio::time::Instant::now() + timeout,
        idle_timeout,
        skip_heartbeats: false,
    };
    let body = read_body(response, reading).await?.to_vec();
    if from_leader {
        return Err(
            serde_json::from_slice::<LeaderError>(&body).unwrap_or_else(|e| {
                LeaderError::CorruptedResponse(format!("malformed error answer ({status}): {e}"))
            }),
        );
    }
    // Not the transport's answer (a proxy, or a node without the transport).
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
    let message = format!("the leader answered HTTP {status}: {text}");
    Err(match status.as_u16() {
        // The leader's security refused the credentials (or their absence): its reason, as
        // Elasticsearch's security_exception carries it.
        401 | 403 => {
            let reason = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|error| error["error"]["reason"].as_str().map(str::to_string))
                .unwrap_or(message);
            LeaderError::Unauthorized(format!(
                "the leader cluster refused the request (HTTP {}): {reason}",
                status.as_u16()
            ))
        }
        408 => LeaderError::Timeout(timeout),
        429 | 500..=599 => LeaderError::Unavailable(message),
        _ => LeaderError::InvalidRequest(message),
    })
}

/// How [`read_body`] reads an answer's body.
#[derive(Clone, Copy, Debug)]
struct BodyReading {
    /// Most bytes accepted (heartbeats not counted).
    limit: usize,
    /// The request's whole deadline (reported when it passes)...
    timeout: Duration,
    /// ...which passes at this instant.
    ends_at: tokio::time::Instant,
    /// Longest gap between two pieces of the body.
    idle_timeout: Duration,
    /// The body is a long-poll heartbeat stream: leading heartbeat bytes are dropped.
    skip_heartbeats: bool,
}

/// Reads a whole body, refusing one over the limit before reading it, one that stops
/// arriving for the idle timeout (a dead connection), and one not whole by the request's
/// deadline. The body is kept in the pieces the connection delivered: a 1 MB chunk arrives in
/// many, and joining them would copy it (callers that need one buffer join once).
async fn read_body(
    response: hyper::Response<Incoming>,
    reading: BodyReading,
) -> Result<ChunkBytes, LeaderError> {
    let limit = reading.limit;
    let too_large = |length: u64| {
        LeaderError::CorruptedResponse(format!(
            "answer of {length} bytes or more, over the limit of {limit}"
        ))
    };
    if !reading.skip_heartbeats {
        let announced = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if let Some(length) = announced {
            if length > limit as u64 {
                return Err(too_large(length));
            }
        }
    }
    let mut body = response.into_body();
    let mut pieces = Vec::new();
    let mut length = 0;
    let mut in_heartbeats = reading.skip_heartbeats;
    loop {
        let idle_ends_at = tokio::time::Instant::now() + reading.idle_timeout;
        let Ok(next) =
            tokio::time::timeout_at(idle_ends_at.min(reading.ends_at), body.frame()).await
        else {
            return Err(LeaderError::Timeout(if idle_ends_at < reading.ends_at {
                reading.idle_timeout
            } else {
                reading.timeout
            }));
        };
        // Trailers (never sent by the leader) carry no data.
        let next = next.map(|frame| frame.map(|frame| frame.into_data().unwrap_or_default()));
        match next {
            Some(Ok(mut piece)) => {
                if in_heartbeats {
                    let beats = piece.iter().take_while(|&&b| b == HEARTBEAT_BYTE).count();
                    let _ = piece.split_to(beats);
                    if piece.is_empty() {
                        continue;
                    }
                    in_heartbeats = false;
                }
                if length + piece.len() > limit {
                    return Err(too_large((length + piece.len()) as u64));
                }
                length += piece.len();
                pieces.push(piece);
            }
            None => return Ok(ChunkBytes::from_pieces(pieces)),
            Some(Err(error)) => {
                return Err(LeaderError::Unavailable(format!(
                    "the leader's answer was cut: {}",
                    describe(&error)
                )))
            }
        }
    }
}

impl LeaderClient for HttpLeaderClient {
    fn index_metadata(&self, request: IndexMetadataRequest) -> LeaderFuture<'_, IndexMetadata> {
        Box::pin(async move { self.call_json(INDEX_METADATA_PATH, &request).await })
    }

    fn list_indices(&self) -> LeaderFuture<'_, Vec<LeaderIndexSummary>> {
        Box::pin(async move {
            self.call_json(LIST_INDICES_PATH, &serde_json::json!({}))
                .await
        })
    }

    fn shard_changes(
        &self,
        request: ShardChangesRequest,
    ) -> LeaderFuture<'_, ShardChangesResponse> {
        Box::pin(self.fetch_shard_changes(request))
    }

    fn add_retention_lease(&self, request: AddRetentionLeaseRequest) -> LeaderFuture<'_, ()> {
        Box::pin(async move { self.call_acknowledged(ADD_LEASE_PATH, &request).await })
    }

    fn renew_retention_lease(&self, request: RenewRetentionLeaseRequest) -> LeaderFuture<'_, ()> {
        Box::pin(async move { self.call_acknowledged(RENEW_LEASE_PATH, &request).await })
    }

    fn remove_retention_lease(&self, request: RemoveRetentionLeaseRequest) -> LeaderFuture<'_, ()> {
        Box::pin(async move { self.call_acknowledged(REMOVE_LEASE_PATH, &request).await })
    }

    fn open_recovery_session(
        &self,
        request: OpenRecoverySessionRequest,
    ) -> LeaderFuture<'_, RecoverySessionInfo> {
        Box::pin(async move { self.call_json(OPEN_SESSION_PATH, &request).await })
    }

    fn read_file_chunk(&self, request: ReadFileChunkRequest) -> LeaderFuture<'_, FileChunk> {
        Box::pin(self.fetch_chunk(request))
    }

    fn close_recovery_session(&self, request: CloseRecoverySessionRequest) -> LeaderFuture<'_, ()> {
        Box::pin(async move { self.call_acknowledged(CLOSE_SESSION_PATH, &request).await })
    }

    fn verify_shard(&self, request: VerifyShardRequest) -> LeaderFuture<'_, VerifyShardResponse> {
        Box::pin(self.fetch_verify(request))
    }

    fn failback_source(
        &self,
        request: FailbackSourceRequest,
    ) -> LeaderFuture<'_, FailbackSourceResponse> {
        Box::pin(async move { self.call_json(FAILBACK_PATH, &request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_become_urls() {
        assert_eq!(
            HttpLeaderClient::url("127.0.0.1:9300", "/p", "http"),
            "http://127.0.0.1:9300/p"
        );
        assert_eq!(
            HttpLeaderClient::url("127.0.0.1:9300", "/p", "https"),
            "https://127.0.0.1:9300/p"
        );
        assert_eq!(
            HttpLeaderClient::url("http://leader:9200/", "/p", "https"),
            "http://leader:9200/p"
        );
        let client = HttpLeaderClient::new(vec!["a:1".into(), "b:2".into()]);
        assert_eq!(client.addresses(), ["a:1", "b:2"]);
    }
}
