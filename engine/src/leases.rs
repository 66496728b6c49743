//! Retention leases: promises to keep the history at and above a sequence number.
//!
//! A follower (or a recovery) holds one lease per leader shard. The shard never lets a merge drop
//! an operation at or above the smallest `retaining_seq_no` of its leases. Leases expire when not
//! renewed for `index.soft_deletes.retention_lease.period` (12h by default), so no history is
//! held forever by a follower that went away.
//!
//! Persistence: `retention_leases.json` is replaced atomically
//! ([`durable_file::replace_atomically`]) on every change; the leases are also carried in every
//! commit's payload.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::durable_file;
use crate::error::{EngineError, Result};
use crate::types::SeqNo;

/// The file holding a shard's leases.
pub const RETENTION_LEASES_FILE: &str = "retention_leases.json";

/// One retention lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionLease {
    /// Who holds the lease (Elasticsearch's follower lease id format).
    pub id: String,
    /// Operations at or above this sequence number are kept.
    pub retaining_seq_no: SeqNo,
    /// When the lease was added or last renewed, in milliseconds since the Unix epoch.
    pub timestamp_millis: u64,
    /// What kind of holder ("ccr", "peer recovery", ...).
    pub source: String,
}

/// The leases of one shard, with a version that grows on every change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionLeases {
    /// Incremented on every change.
    pub version: u64,
    /// Leases by id.
    pub leases: BTreeMap<String, RetentionLease>,
}

impl RetentionLeases {
    /// Adds a lease. Fails if one with the same id exists.
    pub(crate) fn add(
        &mut self,
        id: &str,
        retaining_seq_no: SeqNo,
        source: &str,
        now_millis: u64,
    ) -> Result<RetentionLease> {
        validate_lease(id, retaining_seq_no)?;
        if self.leases.contains_key(id) {
            return Err(EngineError::RetentionLease(format!(
                "retention lease with ID [{id}] already exists"
            )));
        }
        let lease = RetentionLease {
            id: id.to_string(),
            retaining_seq_no,
            timestamp_millis: now_millis,
            source: source.to_string(),
        };
        self.leases.insert(id.to_string(), lease.clone());
        self.version += 1;
        Ok(lease)
    }

    /// Renews a lease: refreshes its timestamp and raises its retaining sequence number. A
    /// renewal never moves the retaining sequence number backwards (that would promise history
    /// that may already be gone): asking for a lower one is an error.
    pub(crate) fn renew(
        &mut self,
        id: &str,
        retaining_seq_no: SeqNo,
        now_millis: u64,
    ) -> Result<RetentionLease> {
        validate_lease(id, retaining_seq_no)?;
        let Some(lease) = self.leases.get_mut(id) else {
            return Err(EngineError::RetentionLease(format!(
                "retention lease with ID [{id}] not found"
            )));
        };
        if retaining_seq_no < lease.retaining_seq_no {
            return Err(EngineError::RetentionLease(format!(
                "the current retention lease with [{id}] is retaining [{}] which is greater than \
                 the new retaining sequence number [{retaining_seq_no}]",
                lease.retaining_seq_no
            )));
        }
        lease.retaining_seq_no = retaining_seq_no;
        lease.timestamp_millis = now_millis.max(lease.timestamp_millis);
        let renewed = lease.clone();
        self.version += 1;
        Ok(renewed)
    }

    /// Removes a lease. Fails if it does not exist.
    pub(crate) fn remove(&mut self, id: &str) -> Result<RetentionLease> {
        let Some(lease) = self.leases.remove(id) else {
            return Err(EngineError::RetentionLease(format!(
                "retention lease with ID [{id}] not found"
            )));
        };
        self.version += 1;
        Ok(lease)
    }

    /// Removes every lease last renewed more than `period_millis` before `now_millis`;
    /// returns the removed ones.
    pub(crate) fn expire(&mut self, now_millis: u64, period_millis: u64) -> Vec<RetentionLease> {
        let expired: Vec<String> = self
            .leases
            .values()
            .filter(|lease| now_millis.saturating_sub(lease.timestamp_millis) > period_millis)
            .map(|lease| lease.id.clone())
            .collect();
        let removed: Vec<RetentionLease> = expired
            .iter()
            .filter_map(|id| self.leases.remove(id))
            .collect();
        if !removed.is_empty() {
            self.version += 1;
        }
        removed
    }

    /// The smallest retaining sequence number, if any lease exists.
    pub fn min_retaining_seq_no(&self) -> Option<SeqNo> {
        self.leases
            .values()
            .map(|lease| lease.retaining_seq_no)
            .min()
    }

    /// Loads the leases file of `dir`; an absent file means no leases.
    pub(crate) fn load(dir: &Path) -> Result<RetentionLeases> {
        let path = dir.join(RETENTION_LEASES_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| EngineError::Corrupted {
                path,
                reason: format!("retention leases are not valid JSON: {error}"),
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Ok(RetentionLeases::default())
            }
            Err(error) => Err(EngineError::io(path, error)),
        }
    }

    /// Persists the leases into `dir` atomically.
    pub(crate) fn persist(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|error| EngineError::encode("retention leases", error))?;
        durable_file::replace_atomically(&dir.join(RETENTION_LEASES_FILE), &bytes)?;
        Ok(())
    }
}

fn validate_lease(id: &str, retaining_seq_no: SeqNo) -> Result<()> {
    if id.is_empty() {
        return Err(EngineError::RetentionLease(
            "retention lease ID can not be empty".to_string(),
        ));
    }
    if retaining_seq_no.0 < 0 {
        return Err(EngineError::RetentionLease(format!(
            "retention lease retaining sequence number [{retaining_seq_no}] out of range"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renew_never_goes_backwards() {
        let mut leases = RetentionLeases::default();
        leases.add("f", SeqNo(10), "ccr", 1).unwrap();
        assert!(leases.renew("f", SeqNo(9), 2).is_err());
        assert_eq!(leases.leases["f"].retaining_seq_no, SeqNo(10));
        leases.renew("f", SeqNo(20), 3).unwrap();
        assert_eq!(leases.min_retaining_seq_no(), Some(SeqNo(20)));
        assert!(
            leases.add("f", SeqNo(0), "ccr", 4).is_err(),
            "duplicate add"
        );
        assert!(leases.renew("missing", SeqNo(0), 4).is_err());
        assert!(leases.remove("missing").is_err());
    }

    #[test]
    fn expired_leases_are_removed() {
        let mut leases = RetentionLeases::default();
        leases.add("old", SeqNo(1), "ccr", 1_000).unwrap();
        leases.add("new", SeqNo(5), "ccr", 50_000).unwrap();
        let removed = leases.expire(60_000, 30_000);
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].id, "old");
        assert_eq!(leases.min_retaining_seq_no(), Some(SeqNo(5)));
    }

    #[test]
    fn persisted_leases_survive_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut leases = RetentionLeases::default();
        leases.add("a", SeqNo(3), "ccr", 7).unwrap();
        leases.persist(dir.path()).unwrap();
        assert_eq!(RetentionLeases::load(dir.path()).unwrap(), leases);
        fs::write(dir.path().join(RETENTION_LEASES_FILE), b"{garbage").unwrap();
        assert!(matches!(
            RetentionLeases::load(dir.path()),
            Err(EngineError::Corrupted { .. })
        ));
    }
}
