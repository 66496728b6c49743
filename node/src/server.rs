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

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The node could not open.
    #[error(transparent)]
    Node(#[from] NodeError),
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
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningNode {
    /// Opens the node of `config` and serves it in the background.
    pub async fn start(config: NodeConfig) -> Result<RunningNode, ServeError> {
        let listener = bind(config.http).await?;
        let address = listener.local_addr().map_err(|source| ServeError::Http {
            address: config.http,
            source,
        })?;
        let node = Node::open(config).await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = crate::rest::service(node.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(RunningNode {
            node,
            address,
            stop: Some(stop),
            server,
        })
    }

    /// The base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
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

/// Runs a node until `shutdown` completes: prints [`LISTENING_PREFIX`] and the address once
/// bound, then serves; on shutdown, finishes requests in flight and shuts the node down.
pub async fn run(config: NodeConfig, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
    let running = RunningNode::start(config).await?;
    println!("{LISTENING_PREFIX}{}", running.address);
    tracing::info!(address = %running.address, name = %running.node.config.name, "node started");
    shutdown.await;
    tracing::info!("shutting down");
    running.stop().await;
    Ok(())
}

/// Completes on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
