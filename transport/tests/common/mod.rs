//! A leader cluster served over HTTP in this process: a data directory, the in-process leader
//! over it, and [`tandem_transport::router`] on a free loopback port.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use tandem_engine::indices::Indices;
use tandem_recovery::{InProcessLeaderClient, RecoverySource, RecoverySourceSettings};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running leader: stop it with [`LeaderServer::stop`] (dropping it stops serving too).
pub struct LeaderServer {
    /// Where the transport listens.
    pub address: SocketAddr,
    /// The leader's indices.
    pub indices: Arc<Indices>,
    /// The leader the transport serves.
    pub leader: InProcessLeaderClient,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl LeaderServer {
    /// Opens the data directory `data` and serves it on a free loopback port.
    pub async fn start(data: &Path) -> LeaderServer {
        let indices = Arc::new(Indices::open(data).expect("open the leader's indices"));
        let leader = InProcessLeaderClient::over_indices(
            indices.clone(),
            RecoverySource::new(RecoverySourceSettings::default()),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("local address");
        let app: axum::Router = tandem_transport::router(Arc::new(leader.clone()));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        LeaderServer {
            address,
            indices,
            leader,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Stops serving: long polls end, connections close, the port is released.
    pub async fn stop(mut self) {
        self.shut_down().await;
    }

    async fn shut_down(&mut self) {
        self.leader.stop_long_polls();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server");
        }
    }
}

impl Drop for LeaderServer {
    fn drop(&mut self) {
        self.leader.stop_long_polls();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}
