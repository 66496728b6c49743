//! The HTTP server's connections: the accept loop and what bounds a connection.
//!
//! Guarantees:
//! - at most [`HttpLimits::max_open_connections`] connections are open at once; when that many
//!   are, the node logs a warning once, keeps serving the connections it has, and accepts again
//!   as soon as one closes (the kernel's backlog holds the connections waiting meanwhile);
//! - a connection that does not deliver a complete request head within
//!   [`HttpLimits::header_read_timeout`] of opening (or of its first byte, on a kept-alive
//!   connection) is closed (hyper's header-read timeout);
//! - a connection with no request in flight and no byte read or written for
//!   [`HttpLimits::idle_timeout`] is closed; a request in flight (a follower's long poll, say)
//!   is never cut by it;
//! - at most [`HttpLimits::max_connections_per_client`] connections are open at once from one
//!   client IP address; a connection past it is closed at once (logged). As a connection serves
//!   one request at a time (HTTP/1.1), this also bounds the client's requests in flight;
//! - every request carries its client's address ([`ClientAddress`]) for security's
//!   rate-limiting and audit lines;
//! - with TLS configured, every connection speaks TLS: a client that does not complete the
//!   handshake within [`HttpLimits::header_read_timeout`] is closed, as one that sends no
//!   request head is, and a plain-text request is refused by the handshake (never served);
//! - on shutdown, accepting stops, every connection finishes the request it is serving and
//!   closes, and the server waits at most [`SHUTDOWN_DRAIN_TIMEOUT`] for them.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tandem_transport::tls_io;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore, TryAcquireError};
use tokio::time::Instant;

use crate::rest::NormalizedRouter;

/// Default [`HttpLimits::header_read_timeout`] (hyper's and Go's usual 30 s).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`HttpLimits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest default [`HttpLimits::max_open_connections`]; the default is also at most half the
/// process's file-descriptor limit, so that the indices' files always have descriptors left.
pub const MAX_DEFAULT_OPEN_CONNECTIONS: usize = 10_000;
/// Largest `http.max_open_connections` a node accepts.
pub const MAX_OPEN_CONNECTIONS: usize = 1_000_000;
/// How long a shutdown waits for open connections to finish their requests.
pub const SHUTDOWN_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a connection with a request in flight looks whether it became idle.
const IN_FLIGHT_RECHECK: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` (out of file descriptors, say) before the next one.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Default [`HttpLimits::max_connections_per_client`]: room for a follower cluster's long
/// polls (one per followed shard) and pooled connections from one address.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 4096;

/// The address of the client a request came from (a request extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddress(pub std::net::SocketAddr);

/// What bounds the HTTP server's connections (node settings `http.max_open_connections`,
/// `http.max_connections_per_client`, `http.header_read_timeout`, `http.idle_timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Most connections open at once.
    pub max_open_connections: usize,
    /// Most connections open at once from one client IP address.
    pub max_connections_per_client: usize,
    /// Longest wait for a complete request head.
    pub header_read_timeout: Duration,
    /// Longest a connection stays open with no request in flight and no traffic.
    pub idle_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_open_connections: default_max_open_connections(),
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// File descriptors below which the node warns at start, as Elasticsearch's bootstrap check
/// does: every shard holds a few (its translog generation and checkpoint, its lease log) and
/// every HTTP connection one.
pub const RECOMMENDED_OPEN_FILES: u64 = 65_535;

/// Raises the process's soft `RLIMIT_NOFILE` to its hard limit (as the Go runtime and most
/// servers do: the soft default of 1,024 is smaller than the descriptors of a few hundred
/// shards) and returns the soft limit now in effect, or `None` when it cannot be read.
pub fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes the limit into a struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit(2) reads a struct we own; a refusal leaves the limit as it was.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Some(limit.rlim_cur)
}

/// [`MAX_DEFAULT_OPEN_CONNECTIONS`], or half the soft `RLIMIT_NOFILE` when that is lower.
pub fn default_max_open_connections() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes the limit into a struct we own.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    let half_of_fds = if known {
        usize::try_from(limit.rlim_cur / 2).unwrap_or(usize::MAX)
    } else {
        MAX_DEFAULT_OPEN_CONNECTIONS
    };
    half_of_fds.clamp(1, MAX_DEFAULT_OPEN_CONNECTIONS)
}

/// The connections of the HTTP server (`_nodes/stats` `http`, and the metrics).
#[derive(Debug, Default)]
pub struct HttpCounters {
    opened: std::sync::atomic::AtomicU64,
    open: std::sync::atomic::AtomicU64,
}

impl HttpCounters {
    /// Connections open now.
    pub fn current_open(&self) -> u64 {
        self.open.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Connections accepted since the node started.
    pub fn total_opened(&self) -> u64 {
        self.opened.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Serves `app` on `listener` within `limits` until `stop` completes, then drains (see the
/// module documentation); counts the connections in `counters`.
pub async fn serve(
    listener: TcpListener,
    app: NormalizedRouter,
    limits: HttpLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    counters: Arc<HttpCounters>,
    stop: impl Future<Output = ()>,
) -> io::Result<()> {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    assert!(limits.max_open_connections > 0, "checked when configured");
    let connections = Arc::new(Semaphore::new(limits.max_open_connections));
    let per_client = Arc::new(PerClient::default());
    let (shutdown, shutting_down) = watch::channel(false);
    tokio::pin!(stop);
    loop {
        let permit = match connections.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => break,
            Err(TryAcquireError::NoPermits) => {
                tracing::warn!(
                    limit = limits.max_open_connections,
                    "http.max_open_connections reached: serving the open connections, accepting new ones once some close"
                );
                let permit = tokio::select! {
                    permit = connections.clone().acquire_owned() => permit,
                    () = &mut stop => break,
                };
                let Ok(permit) = permit else { break };
                tracing::info!(
                    limit = limits.max_open_connections,
                    "below http.max_open_connections again: accepting connections"
                );
                permit
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting an http connection failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let Some(client) =
            PerClient::admit(&per_client, peer.ip(), limits.max_connections_per_client)
        else {
            tracing::warn!(
                client = %peer.ip(),
                limit = limits.max_connections_per_client,
                "http.max_connections_per_client reached: closing a new connection from this address"
            );
            drop(stream);
            continue;
        };
        let (app, shutting_down, tls) = (app.clone(), shutting_down.clone(), tls.clone());
        counters
            .opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        counters
            .open
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let counters = counters.clone();
        tokio::spawn(async move {
            accept_connection(stream, peer, tls, app, limits, shutting_down).await;
            counters
                .open
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            drop(client);
            drop(permit);
        });
    }
    drop(listener);
    let _ = shutdown.send(true);
    let all = u32::try_from(limits.max_open_connections).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(SHUTDOWN_DRAIN_TIMEOUT, connections.acquire_many(all));
    if drained.await.is_err() {
        tracing::warn!(
            timeout = ?SHUTDOWN_DRAIN_TIMEOUT,
            "http connections still open at shutdown; closing them"
        );
    }
    Ok(())
}

/// Connections open per client IP address.
#[derive(Default)]
struct PerClient {
    open: parking_lot::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One admitted connection of a client; uncounted when dropped.
struct ClientConnection {
    clients: Arc<PerClient>,
    address: std::net::IpAddr,
}

impl PerClient {
    /// Counts a new connection from `address`, or `None` when it has `limit` open already.
    fn admit(
        clients: &Arc<PerClient>,
        address: std::net::IpAddr,
        limit: usize,
    ) -> Option<ClientConnection> {
        let mut open = clients.open.lock();
        let count = open.entry(address).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(ClientConnection {
            clients: clients.clone(),
            address,
        })
    }
}

impl Drop for ClientConnection {
    fn drop(&mut self) {
        let mut open = self.clients.open.lock();
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// When a connection last moved a byte, and how many of its requests are in flight.
struct Activity {
    origin: Instant,
    last_millis: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            origin: Instant::now(),
            last_millis: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let millis = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_millis.fetch_max(millis, Ordering::Relaxed);
    }

    /// When the connection becomes idle if nothing happens until then.
    fn idle_at(&self, idle_timeout: Duration) -> Instant {
        self.origin + Duration::from_millis(self.last_millis.load(Ordering::Relaxed)) + idle_timeout
    }

    fn is_idle(&self, idle_timeout: Duration) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && Instant::now() >= self.idle_at(idle_timeout)
    }
}

/// Counts a request in flight until dropped (its response head is ready, or it was dropped).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A TCP stream that records its traffic in an [`Activity`].
struct Tracked {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(written)) if written > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Serves one accepted connection, after its TLS handshake when `tls` is given.
async fn accept_connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: NormalizedRouter,
    limits: HttpLimits,
    shutting_down: watch::Receiver<bool>,
) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "cannot set TCP_NODELAY");
    }
    let activity = Arc::new(Activity::new());
    let tracked = Tracked {
        stream,
        activity: activity.clone(),
    };
    let Some(tls) = tls else {
        return serve_connection(tracked, peer, activity, app, limits, shutting_down).await;
    };
    // With the read and send buffers that make large bodies over TLS cost about what they
    // cost in clear text.
    let handshake = tls_io::accept(&tls, tracked);
    match tokio::time::timeout(limits.header_read_timeout, handshake).await {
        Ok(Ok(stream)) => {
            serve_connection(stream, peer, activity, app, limits, shutting_down).await
        }
        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
        Err(_) => tracing::debug!(
            %peer,
            timeout = ?limits.header_read_timeout,
            "TLS handshake timed out"
        ),
    }
}

/// Serves one connection until it ends, times out, or the server shuts down.
async fn serve_connection<S>(
    stream: S,
    peer: std::net::SocketAddr,
    activity: Arc<Activity>,
    app: NormalizedRouter,
    limits: HttpLimits,
    mut shutting_down: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    let requests = activity.clone();
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ClientAddress(peer));
            let in_flight = InFlight::new(&requests);
            let app = app.clone();
            async move {
                let response =
                    tower::ServiceExt::oneshot(app, request.map(axum::body::Body::new)).await;
                drop(in_flight);
                response
            }
        });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        // While a request is in flight the connection cannot become idle: look again later.
        let idle_at = if activity.in_flight.load(Ordering::Acquire) > 0 {
            Instant::now() + limits.idle_timeout.min(IN_FLIGHT_RECHECK)
        } else {
            activity.idle_at(limits.idle_timeout)
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "http connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(idle_at), if !closing => {
                if activity.is_idle(limits.idle_timeout) {
                    tracing::debug!(timeout = ?limits.idle_timeout, "closing an idle http connection");
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            changed = shutting_down.changed(), if !closing => {
                if changed.is_err() || *shutting_down.borrow() {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_file_descriptors_to_the_indices() {
        let cap = default_max_open_connections();
        assert!((1..=MAX_DEFAULT_OPEN_CONNECTIONS).contains(&cap));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_without_requests_in_flight() {
        let activity = Arc::new(Activity::new());
        let timeout = Duration::from_secs(5);
        assert!(!activity.is_idle(timeout));
        let request = InFlight::new(&activity);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(!activity.is_idle(timeout), "a request is in flight");
        drop(request);
        assert!(!activity.is_idle(timeout), "the answer just went out");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(activity.is_idle(timeout));
    }
}
