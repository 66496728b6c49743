//! Remote clusters: the leader clusters this cluster can follow, by alias
//! (Elasticsearch's `cluster.remote.<alias>`), each reached through a [`LeaderClient`] whose
//! answers are checked by [`CheckedLeaderClient`].

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::RwLock;
use tandem_recovery::leader_api::{CheckedLeaderClient, LeaderClient};

use crate::error::CcrError;

/// The registered remote clusters. Cheap to share; changes apply to later requests only (a
/// running follow task keeps the client it started with).
#[derive(Default)]
pub struct RemoteClusters {
    clients: RwLock<BTreeMap<String, Arc<dyn LeaderClient>>>,
}

impl RemoteClusters {
    /// No remote cluster yet.
    pub fn new() -> RemoteClusters {
        RemoteClusters::default()
    }

    /// Registers (or replaces) the remote cluster `alias`. Its answers are range-checked
    /// ([`CheckedLeaderClient`]) before any follower uses them: every follow, recovery, task
    /// and auto-follow pattern gets its client here.
    pub fn set(&self, alias: impl Into<String>, client: Arc<dyn LeaderClient>) {
        self.clients
            .write()
            .insert(alias.into(), CheckedLeaderClient::wrap(client));
    }

    /// Forgets the remote cluster `alias`; true if it was registered.
    pub fn remove(&self, alias: &str) -> bool {
        self.clients.write().remove(alias).is_some()
    }

    /// The client of `alias`.
    pub fn get(&self, alias: &str) -> Result<Arc<dyn LeaderClient>, CcrError> {
        self.clients
            .read()
            .get(alias)
            .cloned()
            .ok_or_else(|| CcrError::NoSuchRemoteCluster(alias.to_string()))
    }

    /// Every alias.
    pub fn aliases(&self) -> Vec<String> {
        self.clients.read().keys().cloned().collect()
    }
}
