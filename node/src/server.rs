//! Serving a node: bind the HTTP address, serve the REST API until a shutdown signal (SIGTERM
//! or ctrl-c), then stop the follow tasks and commit every index.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::config::NodeConfig;
use crate::node::{Node, NodeError};

/// The line a node prints once it listens, followed by its address (tests and the demo read
/// it to learn a port picked by the OS).
pub const LISTENING_PREFIX: &str = "tandem listening on http://";
/// [`LISTENING_PREFIX`] of a node whose HTTP port speaks TLS.
pub const LISTENING_TLS_PREFIX: &str = "tandem listening on https://";

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The node could not open.
    #[error(transparent)]
    Node(#[from] NodeError),
    /// The TLS files cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] tandem_transport::tls::TlsError),
    /// The HTTP address cannot be bound, or the server failed.
    #[error("http server on [{address}]: {source}")]
    Http {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A node serving HTTP in this process (tests, the demo).
pub struct RunningNode {
    /// The node.
    pub node: Arc<Node>,
    /// The address it listens on.
    pub address: SocketAddr,
    /// Whether the HTTP port speaks TLS.
    pub tls: bool,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningNode {
    /// Opens the node of `config` and serves it in the background.
    pub async fn start(config: NodeConfig) -> Result<RunningNode, ServeError> {
        // Before anything binds or opens: a bad certificate is a refusal to start.
        let tls = config
            .tls
            .as_ref()
            .map(tandem_transport::tls::server_config)
            .transpose()?;
        let listener = bind(config.http).await?;
        let address = listener.local_addr().map_err(|source| ServeError::Http {
            address: config.http,
            source,
        })?;
        let protected = tls.is_some() && config.security;
        if config.insecure && !(config.http.ip().is_loopback() || protected) {
            tracing::warn!(
                address = %config.http,
                "--insecure: serving a non-loopback address without TLS and security; anyone who reaches it can read and delete every index"
            );
        }
        let limits = config.http_limits;
        // The node knows the address it serves (the port chosen for `:0`).
        let mut config = config;
        config.http = address;
        let node = Node::open(config).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = crate::rest::normalized(node.clone());
        let serves_tls = tls.is_some();
        let counters = node.http_counters.clone();
        let server = tokio::spawn(crate::http::serve(
            listener,
            app,
            limits,
            tls,
            counters,
            async {
                let _ = stopped.await;
            },
        ));
        Ok(RunningNode {
            node,
            address,
            tls: serves_tls,
            stop: Some(stop),
            server,
        })
    }

    /// The base URL, `http://127.0.0.1:PORT` (`https://` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.address)
    }

    /// Stops serving (requests in flight finish), then shuts the node down.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Followers' long polls would hold their connections (and the graceful shutdown) for
        // up to their poll timeout: they answer now.
        self.node.leader.stop_long_polls();
        if let Err(error) = (&mut self.server).await {
            tracing::warn!(%error, "http server task failed");
        }
        self.node.shutdown().await;
    }
}

async fn bind(address: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| ServeError::Http { address, source })
}

/// Runs a node until `shutdown` completes: prints [`LISTENING_PREFIX`] (or
/// [`LISTENING_TLS_PREFIX`]) and the address once
/// bound, then serves; on shutdown, finishes requests in flight and shuts the node down.
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    let running = RunningNode::start(config).await?;
    let prefix = if running.tls {
        LISTENING_TLS_PREFIX
    } else {
        LISTENING_PREFIX
    };
    // A node whose stdout was closed (a daemon, a reader that went away) keeps running:
    // these lines are best effort, never a panic on a broken pipe.
    let say = |line: String| {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
    };
    say(format!("{prefix}{}", running.address));
    match running.node.take_bootstrap_password() {
        Some(crate::security::Bootstrap::Generated(password)) => say(format!(
            "tandem security: created the [elastic] superuser. Its password, shown once (change it with `tandem users passwd elastic`):\n\n  {password}\n"
        )),
        Some(crate::security::Bootstrap::FromEnvironment) => say(format!(
            "tandem security: created the [elastic] superuser with the password of {}",
            crate::security::ELASTIC_PASSWORD_ENV
        )),
        None => {}
    }
    tracing::info!(address = %running.address, name = %running.node.config.name, "node started");
    shutdown.await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

/// A future that completes on SIGTERM or ctrl-c (SIGINT). The handlers are installed when
/// this is called, not when the future is first polled: a node must catch a SIGTERM sent as
/// soon as it has printed [`LISTENING_PREFIX`], which [`run`] does before it awaits the
/// shutdown (a handler installed at the first poll left a window in which SIGTERM killed the
/// process). Call it from within the runtime.
#[cfg(unix)]
pub fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        let wait = |installed: std::io::Result<tokio::signal::unix::Signal>, name: &'static str| async move {
            match installed {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for {name}");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = wait(terminate, "SIGTERM") => {}
            _ = wait(interrupt, "ctrl-c") => {}
        }
    }
}

/// A future that completes on ctrl-c.
#[cfg(not(unix))]
pub fn shutdown_signal() -> impl Future<Output = ()> {
    async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    }
}
