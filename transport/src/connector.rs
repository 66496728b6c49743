//! [`LeaderConnector`]: how an [`HttpLeaderClient`](crate::HttpLeaderClient) opens its
//! connections to a leader: TCP with keep-alive probes and `TCP_USER_TIMEOUT`, then, for an
//! `https` address, TLS verified against the client's configuration with the address's host
//! name, over the adapters of [`crate::tls_io`].
//!
//! Guarantees: an `https` address is never dialled in clear text (without a TLS configuration
//! the connection fails, naming why); the name checked against the leader's certificate is
//! the host of the address dialled (a DNS name or an IP address).

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tower_service::Service;

use crate::tls_io;

/// Why a connection could not be opened.
pub(crate) type ConnectError = Box<dyn StdError + Send + Sync>;

/// Opens the connections of a client (see the module documentation).
#[derive(Clone)]
pub(crate) struct LeaderConnector {
    tcp: HttpConnector,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl LeaderConnector {
    /// Dials with `tcp` (its timeouts and socket options), and with TLS configured by `tls`
    /// for `https` addresses.
    pub(crate) fn new(mut tcp: HttpConnector, tls: Option<rustls::ClientConfig>) -> Self {
        // The scheme is this connector's to act on.
        tcp.enforce_http(false);
        LeaderConnector {
            tcp,
            tls: tls.map(|config| tokio_rustls::TlsConnector::from(Arc::new(config))),
        }
    }
}

impl Service<Uri> for LeaderConnector {
    type Response = LeaderConnection;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<LeaderConnection, ConnectError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, address: Uri) -> Self::Future {
        let mut tcp = self.tcp.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            let secure = address.scheme_str() == Some("https");
            let host = address.host().map(|host| {
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string()
            });
            let stream = tcp.call(address).await?.into_inner();
            if !secure {
                return Ok(LeaderConnection::new(stream));
            }
            let tls = tls.ok_or("the address is https, but no TLS is configured for it")?;
            let host = host.ok_or("the address has no host")?;
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| format!("[{host}] is not a host name: {e}"))?;
            let stream = tls_io::connect(&tls, name, stream).await?;
            Ok(LeaderConnection::new(stream))
        })
    }
}

/// What a connection is read and written through.
trait ConnectionIo: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> ConnectionIo for T {}

/// An open connection to a leader, in clear text or TLS.
pub(crate) struct LeaderConnection(TokioIo<Box<dyn ConnectionIo>>);

impl LeaderConnection {
    fn new(io: impl ConnectionIo + 'static) -> Self {
        LeaderConnection(TokioIo::new(Box::new(io)))
    }
}

impl Connection for LeaderConnection {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for LeaderConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for LeaderConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}
