//! Cross-cluster replication over HTTP with nothing but the libraries: a leader cluster serves
//! its indices through [`tandem_transport::router`] on a loopback port, and a follower cluster
//! in the same process follows one of them through [`tandem_transport::HttpLeaderClient`]
//! (remote recovery of the committed files, then the pull loop), as two services embedding
//! Tandem would. No `tandem-node`.
//!
//! ```sh
//! cargo run -p tandem-transport --example follow_over_http
//! ```

use std::error::Error;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tandem_engine::index::Index;
use tandem_engine::indices::Indices;
use tandem_engine::shard::{DeleteRequest, IndexRequest, WriteRequest};
use tandem_recovery::{InProcessLeaderClient, RecoverySettings, RecoverySource};
use tandem_replication::follower_indices::{FollowRequest, FollowerIndices};
use tandem_replication::params::FollowParameters;
use tandem_replication::remote::RemoteClusters;
use tandem_transport::HttpLeaderClient;
use tokio::net::TcpListener;

/// How long the follower may take to catch up before the example gives up.
const CATCH_UP_DEADLINE: Duration = Duration::from_secs(30);

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    follow_over_http(dir.path()).await
}

async fn follow_over_http(dir: &Path) -> Result<()> {
    // The leader cluster: a data directory, one index, and the transport on a free port.
    let leader_indices = Arc::new(Indices::open(&dir.join("leader"))?);
    let metrics = leader_indices.create(
        "server-metrics",
        &json!({"index": {"number_of_shards": 2}}),
        &json!({"properties": {"host": {"type": "keyword"}, "total": {"type": "long"}}}),
    )?;
    write(&metrics, 0..500)?;
    let leader = InProcessLeaderClient::over_indices(
        leader_indices.clone(),
        RecoverySource::new(Default::default()),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop_serving, stopped) = tokio::sync::oneshot::channel::<()>();
    let app: axum::Router = tandem_transport::router(Arc::new(leader.clone()));
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    println!("leader cluster serves the transport on http://{address}");

    // The follower cluster: its own data directory, the leader as remote cluster `leader`.
    let follower_indices = Arc::new(Indices::open(&dir.join("follower"))?);
    let remotes = Arc::new(RemoteClusters::new());
    remotes.set(
        "leader",
        Arc::new(HttpLeaderClient::new(vec![address.to_string()])),
    );
    let followers = Arc::new(
        FollowerIndices::open(
            "follower",
            follower_indices.clone(),
            remotes,
            RecoverySettings::default(),
            &dir.join("follower-state"),
        )
        .await?,
    );
    let followed = followers
        .follow(FollowRequest {
            remote_cluster: "leader".to_string(),
            leader_index: "server-metrics".to_string(),
            follower_index: "server-metrics-copy".to_string(),
            parameters: FollowParameters::default(),
            wait_for_active_shards: true,
            settings: serde_json::Value::Null,
        })
        .await?;
    println!("follow: {followed:?}");

    // Writes after the recovery reach the follower through the pull loop.
    write(&metrics, 500..1_000)?;
    metrics.delete(DeleteRequest::new("host-7"))?;
    let copy = follower_indices.get("server-metrics-copy")?;
    wait_for_catch_up(&metrics, &copy).await?;
    metrics.refresh()?;
    copy.refresh()?;
    println!(
        "leader holds {} documents, follower {}",
        metrics.doc_count(),
        copy.doc_count()
    );
    if metrics.doc_count() != copy.doc_count() || copy.get("host-7")?.is_some() {
        return Err("the follower does not hold the leader's documents".into());
    }

    followers.shutdown().await;
    leader.stop_long_polls();
    let _ = stop_serving.send(());
    server.await??;
    println!("done: the follower holds every document of the leader");
    Ok(())
}

/// Indexes one document per number of `range` (ids cycle over 100 hosts, so later writes are
/// updates).
fn write(index: &Index, range: std::ops::Range<u64>) -> Result<()> {
    let bulk = range
        .map(|n| {
            WriteRequest::Index(IndexRequest::new(
                format!("host-{}", n % 100),
                json!({"host": format!("web-{:02}", n % 100), "total": n}).to_string(),
            ))
        })
        .collect();
    for result in index.bulk(bulk) {
        result?;
    }
    Ok(())
}

/// Waits until every shard of `follower` has processed what its leader shard has.
async fn wait_for_catch_up(leader: &Index, follower: &Index) -> Result<()> {
    let started = Instant::now();
    loop {
        let caught_up = leader
            .shards()
            .iter()
            .zip(follower.shards())
            .all(|(leader, follower)| follower.local_checkpoint() >= leader.max_seq_no());
        if caught_up {
            return Ok(());
        }
        if started.elapsed() > CATCH_UP_DEADLINE {
            return Err(
                format!("the follower did not catch up within {CATCH_UP_DEADLINE:?}").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_example_runs() {
        super::main().expect("the example");
    }
}
