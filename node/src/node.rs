//! `Node`: one process, one cluster of one node. Owns the cluster's parts and their persisted
//! state under the data directory:
//!
//! ```text
//! <data>/node.json               cluster name and uuid (written once, atomically)
//! <data>/indices/<dir>/          one directory per index (tandem-engine)
//! <data>/ccr_followers.json      follow state (tandem-replication)
//! <data>/ccr_pending_follows.json follows still recovering, started again on open
//! <data>/ccr_auto_follow.json    auto-follow patterns (tandem-replication)
//! <data>/cluster_settings.json   persistent cluster settings (remote clusters)
//! ```
//!
//! Every file is replaced atomically, so a crash leaves the old or the new state. Opening a
//! node reloads all of it and resumes the followers that were not paused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tandem_engine::durable_file;
use tandem_engine::indices::Indices;
use tandem_engine::storage::Storage;
use tandem_recovery::in_process::InProcessLeaderClient;
use tandem_recovery::source::{RecoverySource, RecoverySourceSettings};
use tandem_replication::auto_follow::AutoFollowCoordinator;
use tandem_replication::follower_indices::FollowerIndices;
use tandem_replication::remote::RemoteClusters;
use tandem_transport::{HttpLeaderClient, HttpTransportSettings};
use tokio::task::JoinHandle;

use crate::cluster_settings::ClusterSettings;
use crate::config::NodeConfig;
use crate::error::RestError;
use crate::security::keystore::Keystore;
use crate::security::{Bootstrap, Security, SecurityError};

/// File of the node's identity.
const NODE_FILE: &str = "node.json";
/// How often auto-follow patterns look for new leader indices.
pub const AUTO_FOLLOW_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Elasticsearch version this node answers as (`GET /`): clients check the major.
pub const COMPATIBLE_VERSION: &str = "8.19.0";

/// Why a node cannot open.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// A file or directory of the data directory cannot be read or written.
    #[error("I/O error on [{path}]: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A state file of the data directory holds bytes that are not what the node wrote.
    #[error("corrupted [{path}]: {source}")]
    Corrupted {
        /// The file.
        path: PathBuf,
        /// Why it does not parse.
        #[source]
        source: serde_json::Error,
    },
    /// A state could not be encoded as JSON (a bug: every state type serializes).
    #[error("cannot encode [{path}]: {source}")]
    Encode {
        /// The file it was meant for.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// The persisted cluster settings cannot be applied.
    #[error("invalid cluster settings: {0}")]
    ClusterSettings(String),
    /// The TLS files for connections to remote clusters cannot be used.
    #[error("TLS for remote clusters: {0}")]
    Tls(#[from] tandem_transport::tls::TlsError),
    /// The security files cannot be used.
    #[error("security: {0}")]
    Security(#[from] SecurityError),
    /// A task opening the node panicked or was cancelled.
    #[error("{context} failed: {source}")]
    Task {
        /// What the task was doing.
        context: &'static str,
        /// The task's failure.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The engine refused to open an index.
    #[error(transparent)]
    Engine(#[from] tandem_engine::EngineError),
    /// The follow state cannot be loaded.
    #[error(transparent)]
    Ccr(#[from] tandem_replication::error::CcrError),
}

impl From<durable_file::DurableFileError> for NodeError {
    fn from(error: durable_file::DurableFileError) -> Self {
        NodeError::Io {
            path: error.path,
            source: error.source,
        }
    }
}

/// The node's persisted identity.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeIdentity {
    /// Cluster (and node) name.
    pub cluster_name: String,
    /// Cluster uuid, chosen when the data directory was created.
    pub cluster_uuid: String,
    /// Node id, chosen with the cluster uuid.
    pub node_id: String,
}

/// A running node's parts (see the module documentation).
pub struct Node {
    /// The configuration it was started with.
    pub config: NodeConfig,
    /// Its identity.
    pub identity: NodeIdentity,
    /// Every index of the cluster.
    pub indices: Arc<Indices>,
    /// The leader side: serves this cluster's indices to followers (over `/_tandem/`).
    pub leader: InProcessLeaderClient,
    /// The leader clusters this cluster follows, by alias.
    pub remotes: Arc<RemoteClusters>,
    /// The follower indices and their tasks.
    pub followers: Arc<FollowerIndices>,
    /// Auto-follow patterns.
    pub auto_follow: Arc<AutoFollowCoordinator>,
    /// Cluster settings (the remote clusters); updates are serialized by the lock.
    cluster_settings: tokio::sync::Mutex<ClusterSettings>,
    /// The HTTP client of each registered remote cluster (the same object `remotes` hands
    /// out), kept to re-point it when the cluster's addresses change.
    remote_clients: parking_lot::Mutex<BTreeMap<String, Arc<HttpLeaderClient>>>,
    /// How remote clusters are reached.
    remote_tls: RemoteTls,
    /// Authentication: whether it is on, and the users.
    pub security: Arc<Security>,
    /// The HTTP server's connections.
    pub http_counters: Arc<crate::http::HttpCounters>,
    /// The transport requests served.
    pub transport_counters: crate::rest::nodes::TransportCounters,
    /// CPU percentages between two stats requests.
    pub cpu: crate::system::CpuSampler,
    /// When the node started.
    pub started: std::time::Instant,
    /// The `elastic` password a first start with security on generated, until printed.
    bootstrap: parking_lot::Mutex<Option<Bootstrap>>,
    /// Secure settings: the remote clusters' credentials.
    keystore: Arc<Keystore>,
    /// The credentials of each remote cluster alias, as last (re)loaded from the keystore.
    remote_credentials: parking_lot::Mutex<BTreeMap<String, String>>,
    /// The disk monitor's settings, as the cluster settings say (see [`crate::disk_monitor`]).
    disk_monitor: tokio::sync::watch::Sender<crate::disk_monitor::DiskMonitorSettings>,
    background: parking_lot::Mutex<Vec<JoinHandle<()>>>,
}

impl Node {
    /// Opens (or creates) the node's data directory, reloads its state and resumes its
    /// followers. Call inside a tokio runtime.
    pub async fn open(config: NodeConfig) -> Result<Arc<Node>, NodeError> {
        let data = config.data.clone();
        // Creating the directory, writing a new identity and opening the indices block on the
        // disk: they run on the blocking pool, not on a runtime worker.
        let (opened, name, secure) = (data.clone(), config.name.clone(), config.security);
        let (identity, indices, settings, ((security, bootstrap), keystore, credentials)) =
            tokio::task::spawn_blocking(move || {
                // The node runs on the file system; the storage seam is for tests and embedders.
                let storage = tandem_engine::storage::real();
                durable_file::create_dir_all(&*storage, &opened).map_err(NodeError::from)?;
                let identity = load_identity(&*storage, &opened, &name)?;
                let settings = ClusterSettings::load(&*storage, &opened)?;
                // Hashing the first password takes a moment: here, on the blocking pool.
                let security = Security::open(storage.clone(), &opened, secure)?;
                let keystore = Keystore::open(storage.clone(), &opened)?;
                let credentials = keystore.remote_credentials()?;
                let indices = Indices::open_on(storage, &opened)?;
                Ok::<_, NodeError>((
                    identity,
                    indices,
                    settings,
                    (security, keystore, credentials),
                ))
            })
            .await
            .map_err(|source| NodeError::Task {
                context: "opening the data directory",
                source,
            })??;
        let indices = Arc::new(indices);
        let source = RecoverySource::new(RecoverySourceSettings::default());
        let reaper = source.spawn_idle_reaper();
        let leader = InProcessLeaderClient::over_indices(indices.clone(), source);
        let verify_reaper = leader.verify_source().spawn_idle_reaper();
        let remote_tls = RemoteTls::of(&config)?;
        let remotes = Arc::new(RemoteClusters::new());
        let mut remote_clients = BTreeMap::new();
        connect_remotes(
            &remotes,
            &settings,
            &remote_tls,
            &credentials,
            &mut remote_clients,
        )
        .map_err(|error| NodeError::ClusterSettings(error.to_string()))?;
        let recovery = settings
            .recovery_settings()
            .map_err(|error| NodeError::ClusterSettings(error.to_string()))?;
        let max_shards = settings
            .max_shards_per_node()
            .map_err(|error| NodeError::ClusterSettings(error.to_string()))?;
        indices.shard_limit().set(max_shards);
        let disk_settings = settings
            .disk_monitor_settings()
            .map_err(|error| NodeError::ClusterSettings(error.to_string()))?;
        let (disk_monitor, disk_settings) = tokio::sync::watch::channel(disk_settings);
        let disk_checker = crate::disk_monitor::spawn(indices.clone(), data.clone(), disk_settings);
        // Remote clusters are known before the followers resume: their tasks need them.
        let followers = Arc::new(
            FollowerIndices::open(
                identity.cluster_name.clone(),
                indices.clone(),
                remotes.clone(),
                recovery,
                &data,
            )
            .await?,
        );
        let auto_follow = Arc::new(AutoFollowCoordinator::open(
            followers.clone(),
            remotes.clone(),
            &data,
        )?);
        let poller = auto_follow.spawn(AUTO_FOLLOW_POLL_INTERVAL);
        let repairer = crate::shard_failures::spawn(indices.clone(), followers.clone());
        let buffer = crate::indexing_buffer::spawn(indices.clone(), config.indexing_buffer_bytes);
        let resumer = {
            let followers = followers.clone();
            tokio::spawn(async move { followers.resume_pending_follows().await })
        };
        Ok(Arc::new(Node {
            config,
            identity,
            indices,
            leader,
            remotes,
            followers,
            auto_follow,
            cluster_settings: tokio::sync::Mutex::new(settings),
            remote_clients: parking_lot::Mutex::new(remote_clients),
            remote_tls,
            security: Arc::new(security),
            http_counters: Arc::default(),
            transport_counters: crate::rest::nodes::TransportCounters::default(),
            cpu: crate::system::CpuSampler::default(),
            started: std::time::Instant::now(),
            bootstrap: parking_lot::Mutex::new(bootstrap),
            keystore: Arc::new(keystore),
            remote_credentials: parking_lot::Mutex::new(credentials),
            disk_monitor,
            background: parking_lot::Mutex::new(vec![
                disk_checker,
                reaper,
                verify_reaper,
                poller,
                resumer,
                repairer,
                buffer,
            ]),
        }))
    }

    /// The `elastic` user's first password, once: `Some` after the start that created it
    /// (generated, or taken from `ELASTIC_PASSWORD`), `None` afterwards.
    pub fn take_bootstrap_password(&self) -> Option<Bootstrap> {
        self.bootstrap.lock().take()
    }

    /// Reads the keystore again and hands each remote cluster's client its credentials as
    /// they are now (`POST /_nodes/reload_secure_settings`): requests from then on carry them,
    /// those of follow tasks already running included.
    pub async fn reload_secure_settings(&self) -> Result<(), RestError> {
        let keystore = self.keystore.clone();
        let credentials = tokio::task::spawn_blocking(move || keystore.remote_credentials())
            .await
            .map_err(|error| RestError::internal(format!("reading the keystore failed: {error}")))?
            .map_err(|error| RestError::internal(format!("cannot read the keystore: {error}")))?;
        for (alias, client) in self.remote_clients.lock().iter() {
            apply_credentials(alias, client, &credentials);
        }
        *self.remote_credentials.lock() = credentials;
        Ok(())
    }

    /// The cluster settings as they are now.
    pub async fn cluster_settings(&self) -> ClusterSettings {
        self.cluster_settings.lock().await.clone()
    }

    /// Applies a `PUT /_cluster/settings` body: validates it whole, stores the persistent
    /// settings atomically, then (re)connects the remote clusters whose addresses changed,
    /// forgets the removed ones and sets the recovery settings of the follows to come. Returns
    /// the persistent and transient changes, nested. Nothing changes when the body is invalid
    /// or cannot be stored.
    ///
    /// A remote cluster whose addresses change keeps its client, re-pointed: follow tasks
    /// already running use the new addresses from their next request. Recoveries already
    /// running keep their settings.
    pub async fn update_cluster_settings(
        &self,
        body: &serde_json::Value,
    ) -> Result<(serde_json::Value, serde_json::Value), RestError> {
        let mut current = self.cluster_settings.lock().await;
        let (next, persistent, transient) = current.updated(body)?;
        if next.persistent != current.persistent {
            let data = self.config.data.clone();
            let stored = next.clone();
            let storage = self.indices.storage().clone();
            tokio::task::spawn_blocking(move || stored.store(&*storage, &data))
                .await
                .map_err(|error| RestError::internal(format!("storing cluster settings: {error}")))?
                .map_err(|error| {
                    RestError::internal(format!("cannot store the cluster settings: {error}"))
                })?;
        }
        let recovery = next.recovery_settings()?;
        let max_shards = next.max_shards_per_node()?;
        let disk_settings = next.disk_monitor_settings()?;
        let credentials = self.remote_credentials.lock().clone();
        connect_remotes(
            &self.remotes,
            &next,
            &self.remote_tls,
            &credentials,
            &mut self.remote_clients.lock(),
        )?;
        self.followers
            .set_recovery_settings(recovery)
            .map_err(|error| RestError::illegal_argument(error.to_string()))?;
        self.indices.shard_limit().set(max_shards);
        // A changed watermark is checked at once.
        self.disk_monitor.send_if_modified(|settings| {
            let changed = *settings != disk_settings;
            *settings = disk_settings;
            changed
        });
        *current = next;
        Ok((persistent, transient))
    }

    /// Stops the follow tasks and background work, then commits every open index so a restart
    /// has nothing to replay.
    pub async fn shutdown(&self) {
        for handle in self.background.lock().drain(..) {
            handle.abort();
        }
        self.followers.shutdown().await;
        self.leader.recovery_source().close_all_sessions();
        let indices = self.indices.clone();
        let flushed = tokio::task::spawn_blocking(move || {
            for name in indices.names() {
                if let Ok(index) = indices.get(&name) {
                    if let Err(error) = index.refresh() {
                        tracing::warn!(index = %name, %error, "cannot commit on shutdown");
                    }
                }
            }
        })
        .await;
        if let Err(error) = flushed {
            tracing::warn!(%error, "shutdown flush failed");
        }
    }
}

/// Makes `remotes` match `settings`: a client for every new remote cluster, the existing
/// client re-pointed for one whose addresses changed (so running follow tasks follow the
/// change), and the aliases that are gone removed. `clients` holds the clients registered.
/// Gives `client` the keystore's credentials for `alias` (or none).
fn apply_credentials(
    alias: &str,
    client: &HttpLeaderClient,
    credentials: &BTreeMap<String, String>,
) {
    if let Err(error) = client.set_credentials(credentials.get(alias).map(String::as_str)) {
        tracing::warn!(%alias, %error, "the keystore's credentials for this remote cluster cannot be used");
    }
}

fn connect_remotes(
    remotes: &RemoteClusters,
    settings: &ClusterSettings,
    tls: &RemoteTls,
    credentials: &BTreeMap<String, String>,
    clients: &mut BTreeMap<String, Arc<HttpLeaderClient>>,
) -> Result<(), RestError> {
    let configured = settings.remote_clusters()?;
    for remote in &configured {
        if let RemoteTls::Unverifiable = tls {
            return Err(RestError::illegal_argument(format!(
                "cannot connect to remote cluster [{}]: this node speaks TLS but has no tls.certificate_authorities to verify the remote cluster's certificate",
                remote.alias
            )));
        }
        let addresses = remote.addresses();
        match clients.get(&remote.alias) {
            Some(client) if client.addresses() == addresses => {}
            Some(client) => {
                tracing::info!(alias = %remote.alias, ?addresses, "remote cluster re-pointed");
                client.set_addresses(addresses);
            }
            None => {
                tracing::info!(alias = %remote.alias, ?addresses, "remote cluster configured");
                let client = Arc::new(HttpLeaderClient::with_tls(
                    addresses,
                    HttpTransportSettings::default(),
                    tls.client_config(),
                ));
                apply_credentials(&remote.alias, &client, credentials);
                remotes.set(remote.alias.clone(), client.clone());
                clients.insert(remote.alias.clone(), client);
            }
        }
    }
    clients.retain(|alias, _| {
        let kept = configured.iter().any(|remote| &remote.alias == alias);
        if !kept {
            tracing::info!(%alias, "remote cluster removed");
            remotes.remove(alias);
        }
        kept
    });
    Ok(())
}

/// How a node reaches remote clusters: plain HTTP when it does not speak TLS itself, TLS
/// verified against its certificate authorities (presenting its own certificate) when it does.
enum RemoteTls {
    Plain,
    Verified(Box<rustls::ClientConfig>),
    /// The node speaks TLS but trusts no certificate authority: no remote can be verified.
    Unverifiable,
}

impl RemoteTls {
    fn of(config: &NodeConfig) -> Result<RemoteTls, NodeError> {
        let Some(files) = &config.tls else {
            return Ok(RemoteTls::Plain);
        };
        if files.certificate_authorities.is_empty() {
            return Ok(RemoteTls::Unverifiable);
        }
        let client = tandem_transport::tls::client_config(
            &files.certificate_authorities,
            Some((&files.certificate, &files.key)),
        )?;
        Ok(RemoteTls::Verified(Box::new(client)))
    }

    fn client_config(&self) -> Option<rustls::ClientConfig> {
        match self {
            RemoteTls::Verified(config) => Some(config.as_ref().clone()),
            RemoteTls::Plain | RemoteTls::Unverifiable => None,
        }
    }
}

fn load_identity(
    storage: &dyn Storage,
    data: &Path,
    name: &str,
) -> Result<NodeIdentity, NodeError> {
    let path = data.join(NODE_FILE);
    match storage.read(&path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|source| NodeError::Corrupted { path, source })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let identity = NodeIdentity {
                cluster_name: name.to_string(),
                cluster_uuid: uuid::Uuid::new_v4().simple().to_string(),
                node_id: uuid::Uuid::new_v4().simple().to_string(),
            };
            let bytes = match serde_json::to_vec_pretty(&identity) {
                Ok(bytes) => bytes,
                Err(source) => return Err(NodeError::Encode { path, source }),
            };
            durable_file::replace_atomically(storage, &path, &bytes)?;
            Ok(identity)
        }
        Err(source) => Err(NodeError::Io { path, source }),
    }
}
