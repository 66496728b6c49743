//! How a TLS connection's bytes are read and written so that bulk transfers (1 MB file chunks,
//! shard changes frames, `_bulk` bodies) cost about what they cost in clear text.
//!
//! rustls reads the socket 4 KiB at a time (`read_tls` asks for at most that much beyond a
//! partial record), and tokio-rustls returns one record's plaintext (at most 16 KiB) per read.
//! Over a fast link that is some 256 receive system calls and 64 reads of the HTTP layer per
//! MiB, where plain TCP needs a handful of each: measured on the recovery of a 283 MiB shard
//! over loopback, the follower made 14 times the receive calls of the same recovery in clear
//! text. Two adapters put that right, one on each side of the TLS layer:
//! - below it, a `tokio::io::BufReader` gives the socket a userspace read buffer
//!   ([`TLS_CLIENT_READ_BUFFER_BYTES`] for a transport client's few connections, which receive
//!   the large answers; [`TLS_SERVER_READ_BUFFER_BYTES`] for the HTTP port's many, which
//!   mostly receive small requests), so rustls's small reads are served from memory and the
//!   socket is read in large pieces;
//! - above it, [`CoalescingReads`] fills the caller's buffer from as many decrypted records as
//!   are ready, so the HTTP layer sees large pieces as it does in clear text.
//!
//! And on the sending side, [`TLS_SEND_BUFFER_BYTES`] lets a connection hold more encrypted
//! records before they are written, so one write system call carries up to that much (rustls's
//! default, 64 KiB, is four records a call). A writer must therefore flush: when the socket
//! is full, a write returns with up to that much still held in the TLS layer, and only a
//! flush (or more writes) sends it. hyper, the only writer here, flushes after every message.
//!
//! [`accept`] (the HTTP port) and [`connect`] (a transport client) are the one place a TLS
//! connection is set up this way. Both adapters only move bytes: what is read, in what order,
//! and every error are the inner stream's. Their memory is bounded per connection by the
//! constants.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, BufReader, ReadBuf};

/// Userspace read buffer under a transport client's TLS layer: the most bytes one receive
/// call takes from the socket.
pub const TLS_CLIENT_READ_BUFFER_BYTES: usize = 256 * 1024;

/// Userspace read buffer under the HTTP port's TLS layer (allocated per connection).
pub const TLS_SERVER_READ_BUFFER_BYTES: usize = 32 * 1024;

/// Most encrypted bytes a TLS connection holds before writing them (rustls's buffer limit).
pub const TLS_SEND_BUFFER_BYTES: usize = 256 * 1024;

/// A TLS connection accepted by the HTTP port, buffered as the module documentation says.
pub type ServerTlsStream<S> = CoalescingReads<tokio_rustls::server::TlsStream<BufReader<S>>>;

/// A TLS connection of a transport client, buffered as the module documentation says.
pub type ClientTlsStream<S> = CoalescingReads<tokio_rustls::client::TlsStream<BufReader<S>>>;

/// Runs the server side of a TLS handshake on `stream`, with the HTTP port's buffers.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: S,
) -> io::Result<ServerTlsStream<S>> {
    let buffered = BufReader::with_capacity(TLS_SERVER_READ_BUFFER_BYTES, stream);
    let mut tls = acceptor.accept(buffered).await?;
    tls.get_mut()
        .1
        .set_buffer_limit(Some(TLS_SEND_BUFFER_BYTES));
    Ok(CoalescingReads::new(tls))
}

/// Runs the client side of a TLS handshake with `name` on `stream`, with a transport client's
/// buffers.
pub async fn connect<S: AsyncRead + AsyncWrite + Unpin>(
    connector: &tokio_rustls::TlsConnector,
    name: ServerName<'static>,
    stream: S,
) -> io::Result<ClientTlsStream<S>> {
    let buffered = BufReader::with_capacity(TLS_CLIENT_READ_BUFFER_BYTES, stream);
    let mut tls = connector.connect(name, buffered).await?;
    tls.get_mut()
        .1
        .set_buffer_limit(Some(TLS_SEND_BUFFER_BYTES));
    Ok(CoalescingReads::new(tls))
}

/// A stream whose reads return every byte the inner stream has ready, up to the caller's
/// buffer, instead of one piece at a time. Writes pass through.
#[derive(Debug)]
pub struct CoalescingReads<S> {
    inner: S,
    /// An error met after some bytes were already returned: the next read reports it.
    deferred_error: Option<io::Error>,
}

impl<S> CoalescingReads<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> CoalescingReads<S> {
        CoalescingReads {
            inner,
            deferred_error: None,
        }
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner stream, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CoalescingReads<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(error) = this.deferred_error.take() {
            return Poll::Ready(Err(error));
        }
        let start = buf.filled().len();
        // Ends: every ready read either fills the buffer (stop), adds nothing (the end of the
        // stream: stop) or adds at least a byte, and the buffer is finite.
        loop {
            let before = buf.filled().len();
            match Pin::new(&mut this.inner).poll_read(cx, buf) {
                Poll::Ready(Ok(())) => {
                    if buf.filled().len() == before || buf.remaining() == 0 {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Ready(Err(error)) => {
                    if buf.filled().len() == start {
                        return Poll::Ready(Err(error));
                    }
                    this.deferred_error = Some(error);
                    return Poll::Ready(Ok(()));
                }
                // The inner stream registered the waker; what was read so far is returned.
                Poll::Pending if buf.filled().len() > start => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CoalescingReads<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A reader that hands out its pieces one per read, each only on alternate polls (the
    /// other returns `Pending` after waking), then an error if it has one.
    struct Pieces {
        pieces: std::collections::VecDeque<Vec<u8>>,
        pending_next: bool,
        error_at_end: bool,
    }

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.pending_next {
                self.pending_next = false;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            match self.pieces.pop_front() {
                Some(piece) => {
                    let fits = piece.len().min(buf.remaining());
                    buf.put_slice(&piece[..fits]);
                    if fits < piece.len() {
                        self.pieces.push_front(piece[fits..].to_vec());
                    }
                    Poll::Ready(Ok(()))
                }
                None if self.error_at_end => {
                    self.error_at_end = false;
                    Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset")))
                }
                None => Poll::Ready(Ok(())),
            }
        }
    }

    fn pieces(count: usize, error_at_end: bool) -> Pieces {
        Pieces {
            pieces: (0..count).map(|i| vec![i as u8; 100]).collect(),
            pending_next: false,
            error_at_end,
        }
    }

    #[tokio::test]
    async fn a_read_takes_every_ready_piece_up_to_the_buffer() {
        let mut reader = CoalescingReads::new(pieces(5, false));
        let mut buf = [0u8; 350];
        assert_eq!(reader.read(&mut buf).await.unwrap(), 350);
        assert_eq!(&buf[..100], &[0u8; 100][..]);
        assert_eq!(&buf[300..350], &[3u8; 50][..]);
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest.len(), 150);
        assert_eq!(&rest[..50], &[3u8; 50][..]);
    }

    #[tokio::test]
    async fn a_read_returns_what_it_has_when_the_inner_stream_would_wait() {
        let mut inner = pieces(3, false);
        let mut reader = CoalescingReads::new(&mut inner);
        let mut buf = [0u8; 1000];
        assert_eq!(reader.read(&mut buf).await.unwrap(), 300);
        inner.pieces.push_back(vec![7; 10]);
        inner.pending_next = true;
        let mut reader = CoalescingReads::new(&mut inner);
        assert_eq!(reader.read(&mut buf).await.unwrap(), 10);
        assert_eq!(reader.read(&mut buf).await.unwrap(), 0, "the end");
    }

    #[tokio::test]
    async fn an_error_after_some_bytes_is_reported_by_the_next_read() {
        let mut reader = CoalescingReads::new(pieces(2, true));
        let mut buf = [0u8; 1000];
        assert_eq!(reader.read(&mut buf).await.unwrap(), 200);
        let error = reader.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    }

    /// A server configuration with a self-signed certificate for 127.0.0.1, and a client
    /// configuration that trusts it, both built as the node builds its own.
    fn loopback_configs(
        dir: &std::path::Path,
    ) -> (std::sync::Arc<rustls::ServerConfig>, rustls::ClientConfig) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        let certificate = params.self_signed(&key).unwrap();
        let (cert_path, key_path) = (dir.join("node.crt"), dir.join("node.key"));
        std::fs::write(&cert_path, certificate.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let files = crate::tls::TlsFiles {
            certificate: cert_path.clone(),
            key: key_path,
            certificate_authorities: vec![cert_path.clone()],
            client_authentication: crate::tls::ClientAuthentication::None,
        };
        (
            crate::tls::server_config(&files).unwrap(),
            crate::tls::client_config(&[cert_path], None).unwrap(),
        )
    }

    #[tokio::test]
    async fn tls_over_the_adapters_carries_every_byte_in_order() {
        // A real TLS connection over loopback TCP, both ends wrapped as the node and the
        // transport client wrap theirs: 4 MiB each way arrive intact.
        let dir = tempfile::tempdir().unwrap();
        let (server_config, client_config) = loopback_configs(dir.path());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let payload: Vec<u8> = (0..4 * 1024 * 1024u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let expected = payload.clone();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
            let mut stream = accept(&acceptor, tcp).await.unwrap();
            let mut received = vec![0u8; expected.len()];
            stream.read_exact(&mut received).await.unwrap();
            assert!(received == expected, "the server received other bytes");
            stream.write_all(&received).await.unwrap();
            stream.shutdown().await.unwrap();
        });
        let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client_config));
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let mut stream = connect(&connector, name, tcp).await.unwrap();
        // Both ends prefer AES-128-GCM (`crate::tls`).
        assert_eq!(
            stream
                .get_ref()
                .get_ref()
                .1
                .negotiated_cipher_suite()
                .map(|suite| suite.suite()),
            Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
        stream.write_all(&payload).await.unwrap();
        // A TLS stream may keep up to `TLS_SEND_BUFFER_BYTES` of written records until it is
        // flushed (as hyper does after every message).
        stream.flush().await.unwrap();
        let mut echoed = Vec::new();
        stream.read_to_end(&mut echoed).await.unwrap();
        assert!(echoed == payload, "the client received other bytes");
        server.await.unwrap();
    }
}
